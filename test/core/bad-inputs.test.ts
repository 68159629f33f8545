/**
 * One list of bad inputs thrown at every export of the core (the noble habit): wrong types, wrong
 * lengths, truncated, oversized, forged and tampered-in-one-byte values. Each must give a typed
 * error — TypeError / RangeError for arguments, a MeshkitError with a stable code for content —
 * never a crash of another kind and never a silent pass.
 */
import { describe, expect, it } from 'vitest';
import { MeshkitError } from '../../src/core/errors.js';
import * as core from '../../src/index.js';
import { testDecrypter, testKey, testSigner } from '../helpers/software-signer.js';

/** Wrong-typed and wrong-sized values, shared by every export. */
const BAD_VALUES: Array<[string, unknown]> = [
  ['undefined', undefined],
  ['null', null],
  ['NaN', Number.NaN],
  ['a negative number', -1],
  ['a float', 1.5],
  ['a boolean', true],
  ['a symbol', Symbol('x')],
  ['a function', () => 1],
  ['an empty object', {}],
  ['an array', [1, 2, 3]],
  ['an empty string', ''],
  ['a junk string', '%%%not-valid%%%'],
  ['an oversized string', 'A'.repeat(1 << 20)],
  ['an empty Uint8Array', new Uint8Array(0)],
  ['a 1-byte Uint8Array', Uint8Array.of(7)],
  ['a 31-byte Uint8Array', new Uint8Array(31).fill(1)],
  ['a 33-byte Uint8Array', new Uint8Array(33).fill(1)],
  ['an oversized Uint8Array', new Uint8Array(1 << 20).fill(0xff)],
  ['a plain array of bytes', Array.from({ length: 32 }, () => 1)],
  ['a bigint', 5n],
];

function isTyped(e: unknown): boolean {
  return e instanceof TypeError || e instanceof RangeError || e instanceof MeshkitError;
}

async function outcome(fn: () => unknown): Promise<{ threw: boolean; error?: unknown }> {
  try {
    await fn();
    return { threw: false };
  } catch (error) {
    return { threw: true, error };
  }
}

/** What each export is called with: `bad` replaces the argument under test. */
const ed = testKey('Ed25519');
const x = testKey('X25519');
const secret = new Uint8Array(32).fill(9);
const shares = core.splitSecret(secret, 2, 3);

/** An export, how to call it with the bad value, and the names of BAD_VALUES that are legitimate input for it. */
type Case = [string, (bad: unknown) => unknown, string[]?];
const ANY_BYTES = ['an empty Uint8Array', 'a 1-byte Uint8Array', 'a 31-byte Uint8Array', 'a 33-byte Uint8Array', 'an oversized Uint8Array'];
const CASES: Case[] = [
  ['udfDigest(data)', (b) => core.udfDigest(b as Uint8Array), ANY_BYTES],
  ['udfDigest(opts.bits)', (b) => core.udfDigest(new Uint8Array(1), { bits: b as number }), ['undefined']],
  ['udfParse', (b) => core.udfParse(b as string)],
  ['udfFormat(type)', (b) => core.udfFormat(b as number, new Uint8Array(20))],
  ['udfMatches', (b) => core.udfMatches(b as string, 'MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF')],
  ['udfEncryptionKey', (b) => core.udfEncryptionKey(b as Uint8Array), ['a 31-byte Uint8Array', 'a 33-byte Uint8Array']],
  ['udfKeyed(key)', (b) => core.udfKeyed(new Uint8Array(1), b as string)],
  ['keyId', (b) => core.keyId(b as Uint8Array)],
  ['publicKeyFromJwk', (b) => core.publicKeyFromJwk(b)],
  ['publicKeyFromSpki', (b) => core.publicKeyFromSpki(b as Uint8Array)],
  ['publicKeyFromPem', (b) => core.publicKeyFromPem(b as string)],
  ['publicKeyFromRaw(Ed25519)', (b) => core.publicKeyFromRaw('Ed25519', b as Uint8Array)],
  ['publicKeyFromRaw(curve)', (b) => core.publicKeyFromRaw(b as 'Ed25519', new Uint8Array(32))],
  ['publicKeyFromEcPoint(X448)', (b) => core.publicKeyFromEcPoint('X448', b as Uint8Array)],
  ['decodePublicKey', (b) => core.decodePublicKey(b as string)],
  ['curveFromEcParams', (b) => core.curveFromEcParams(b as Uint8Array)],
  ['splitSecret(secret)', (b) => core.splitSecret(b as Uint8Array, 2, 3), ['a 1-byte Uint8Array', 'a 31-byte Uint8Array', 'a 33-byte Uint8Array']],
  ['splitSecret(threshold)', (b) => core.splitSecret(secret, b as number, 3)],
  ['combineShares', (b) => core.combineShares(b as string[])],
  ['combineShares([bad, share])', (b) => core.combineShares([b as string, shares[1]!])],
  ['parseShare', (b) => core.parseShare(b as string)],
  ['combinePublicKeys(Ed25519, a)', (b) => core.combinePublicKeys('Ed25519', b as Uint8Array, core.publicKeyFromJwk(ed.publicJwk).raw)],
  ['combinePublicKeys(X448, a)', (b) => core.combinePublicKeys('X448', b as Uint8Array, new Uint8Array(57))],
  ['secretScalarFromSeed(Ed448)', (b) => core.secretScalarFromSeed('Ed448', b as Uint8Array)],
  ['signWithScalar(scalar)', (b) => core.signWithScalar('Ed25519', b as bigint, new Uint8Array(1)), ['a bigint']],
  ['ecdhWithScalar(peer)', (b) => core.ecdhWithScalar('X25519', 12345n, b as Uint8Array)],
  ['parseJsonStrict', (b) => core.parseJsonStrict(b as string)],
  ['signJws(payload)', (b) => core.signJws(b as Uint8Array, [testSigner(ed)]), ANY_BYTES],
  ['signJws(signers)', (b) => core.signJws(new Uint8Array(1), b as never)],
  ['verifyJws', (b) => core.verifyJws(b, () => ed.publicJwk)],
  ['encryptJwe(recipients)', (b) => core.encryptJwe(new Uint8Array(1), b as never)],
  ['decryptJwe', (b) => core.decryptJwe(b, testDecrypter(x))],
  ['readProfile', (b) => core.readProfile(b)],
  ['verifyProfile', (b) => core.verifyProfile(b as object)],
  ['composeMasterProfile', (b) => core.composeMasterProfile(b as never)],
  ['composeDeviceProfile(signatureKey)', (b) => core.composeDeviceProfile({ description: 'd', signatureKey: b as never })],
  ['escrowBlobId', (b) => core.escrowBlobId(b as Uint8Array)],
  ['openOfflineEscrow(blob)', (b) => core.openOfflineEscrow(b, secret)],
  ['createOfflineEscrow', (b) => core.createOfflineEscrow(b as never)],
  ['verifyLog', (b) => core.verifyLog(b as string[])],
  ['verifyLog([bad])', (b) => core.verifyLog([b as string])],
];

describe('every export rejects every bad value with a typed error', () => {
  for (const [name, call, legitimate = []] of CASES) {
    it(name, async () => {
      const failures: string[] = [];
      for (const [what, value] of BAD_VALUES) {
        if (legitimate.includes(what)) continue;
        const r = await outcome(() => call(value));
        if (!r.threw) failures.push(`${what}: accepted silently`);
        else if (!isTyped(r.error)) failures.push(`${what}: threw ${(r.error as Error)?.constructor?.name}: ${(r.error as Error)?.message}`);
      }
      expect(failures, failures.join('\n')).toEqual([]);
    });
  }
});

/** Flips one bit of one character/byte position of a string, keeping it a string. */
function flipChar(s: string, at: number): string {
  const c = s.charCodeAt(at);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const next = alphabet[(alphabet.indexOf(String.fromCharCode(c)) + 1) % alphabet.length] ?? 'A';
  return s.slice(0, at) + next + s.slice(at + 1);
}

describe('tampered in one place, truncated, forged: signed and encrypted objects', () => {
  it('a signed profile tampered at any of 40 positions, or truncated, never verifies', async () => {
    const key = testKey('Ed25519');
    const profile = core.composeDeviceProfile({ description: 'bad-input target', signatureKey: key.publicJwk });
    const signed = await core.signProfile('DeviceProfile', profile, testSigner(key));
    await expect(core.verifyProfile(signed)).resolves.toBeDefined();
    const text = JSON.stringify(signed);
    const failures: string[] = [];
    const step = Math.max(1, Math.floor(text.length / 40));
    for (let at = 0; at < text.length; at += step) {
      const tampered = flipChar(text, at);
      if (tampered === text) continue;
      const r = await outcome(() => core.verifyProfile(tampered));
      if (!r.threw) failures.push(`position ${at}: accepted`);
      else if (!(r.error instanceof MeshkitError)) failures.push(`position ${at}: ${String(r.error)}`);
    }
    for (const cut of [1, 10, Math.floor(text.length / 2), text.length - 1]) {
      const r = await outcome(() => core.verifyProfile(text.slice(0, cut)));
      if (!r.threw || !(r.error instanceof MeshkitError)) failures.push(`truncated to ${cut}: ${r.threw ? String(r.error) : 'accepted'}`);
    }
    expect(failures).toEqual([]);
  });

  it('a JWE tampered in any member, or truncated, never decrypts', async () => {
    const jwe = await core.encryptJwe(new TextEncoder().encode('device config'), [x.publicJwk]);
    const failures: string[] = [];
    for (const member of ['protected', 'iv', 'ciphertext', 'tag'] as const) {
      const tampered = { ...jwe, [member]: flipChar(jwe[member], 2) };
      const r = await outcome(() => core.decryptJwe(tampered, testDecrypter(x)));
      if (!r.threw || !(r.error instanceof MeshkitError)) failures.push(`${member}: ${r.threw ? String(r.error) : 'accepted'}`);
    }
    const rec = jwe.recipients[0]!;
    const tamperedKey = { ...jwe, recipients: [{ ...rec, encrypted_key: flipChar(rec.encrypted_key, 3) }] };
    const r = await outcome(() => core.decryptJwe(tamperedKey, testDecrypter(x)));
    if (!r.threw || !(r.error instanceof MeshkitError)) failures.push('encrypted_key accepted');
    const text = JSON.stringify(jwe);
    const cut = await outcome(() => core.decryptJwe(text.slice(0, text.length - 5), testDecrypter(x)));
    if (!cut.threw || !(cut.error instanceof MeshkitError)) failures.push('truncated accepted');
    expect(failures).toEqual([]);
  });

  it('a share tampered in one character gives a typed error or a different secret, never a crash', () => {
    const failures: string[] = [];
    for (let at = 0; at < shares[0]!.length; at += 3) {
      if (shares[0]![at] === '-') continue;
      const r = (() => { try { return { out: core.combineShares([flipChar(shares[0]!, at).toUpperCase(), shares[1]!]) }; } catch (e) { return { e }; } })();
      if ('e' in r && !isTyped(r.e)) failures.push(`position ${at}: ${String(r.e)}`);
      if ('out' in r && r.out.every((v, i) => v === secret[i])) failures.push(`position ${at}: same secret from a different share`);
    }
    expect(failures).toEqual([]);
  });
});
