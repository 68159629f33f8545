/**
 * Interop, both ways, through the built CLI on a scratch SoftHSM2:
 * - keys meshkit generates are listed by OpenSC's pkcs11-tool with meshkit's label and CKA_ID
 *   (the first 16 bytes of the binary key UDF);
 * - `meshkit key sign` JWS signatures verify with `openssl` and with `jose` (jose 5 for Ed448);
 * - a key pkcs11-tool made is usable by `meshkit key show/sign`;
 * - PIN and token faults through the CLI (exit codes, one-line messages, the PIN never printed).
 * Needs `npm run build` first.
 */
import { createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generalVerify, importJWK } from 'jose';
import * as jose5 from 'jose5';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/core/errors.js';
import { keyId } from '../../src/core/keys.js';
import { udfParse } from '../../src/core/udf.js';
import type { PublicJwk } from '../../src/core/signer.js';
import { SOFTHSM_MODULE, meshkit, requireTools, run, scratchSoftHsm, type Run } from '../helpers/softhsm-cli.js';

const SO_PIN = 'so-40417733';
const PIN = 'pin-93017261';
const TOKEN = 'Interop';
const hsm = scratchSoftHsm('meshkit-interop-');
const outputs: Run[] = [];
afterAll(() => hsm.cleanup());

const pinEnv = { P: PIN };
function cli(args: string[], env: Record<string, string> = {}): Run {
  const r = meshkit(args, hsm, { env });
  outputs.push(r);
  return r;
}
function tool(args: string[]): Run {
  const r = run('pkcs11-tool', ['--module', SOFTHSM_MODULE, ...args], hsm);
  outputs.push(r);
  return r;
}
function openssl(args: string[]): Run {
  return run('openssl', args, hsm);
}
const uriFor = (object: string, extra = ''): string => `pkcs11:token=${TOKEN};object=${object}?module-path=${SOFTHSM_MODULE}${extra}`;

/** Hex of the CKA_ID meshkit sets: the first 16 bytes of the binary key UDF after its type byte (as the adapter documents). */
function ckaIdHex(udf: string): string {
  return Buffer.from(udfParse(udf).bytes).subarray(0, 16).toString('hex');
}

interface Jws {
  payload: string;
  signatures: Array<{ protected: string; signature: string }>;
}
interface ShownKey {
  label: string;
  keyId: string;
  curve: string;
  usage: string;
  publicJwk: PublicJwk;
  location: string;
  extractable: boolean;
  sensitive: boolean;
}

/** DER SEQUENCE { INTEGER r, INTEGER s } from a raw r‖s ECDSA signature. */
function rawToDer(sig: Buffer): Buffer {
  const int = (b: Buffer): Buffer => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    let v = b.subarray(i);
    if ((v[0] as number) & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
    return Buffer.concat([Buffer.from([0x02, v.length]), v]);
  };
  const body = Buffer.concat([int(sig.subarray(0, 32)), int(sig.subarray(32))]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

/** Writes pub.pem, the JWS signing input and the signature, and verifies with openssl. */
function opensslVerifies(name: string, jwk: PublicJwk, jws: Jws): Run {
  const sig = jws.signatures[0]!;
  const pem = createPublicKey({ key: jwk as unknown as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  const pub = join(hsm.dir, `${name}.pub.pem`);
  const input = join(hsm.dir, `${name}.input`);
  const sigFile = join(hsm.dir, `${name}.sig`);
  writeFileSync(pub, pem);
  writeFileSync(input, `${sig.protected}.${jws.payload}`);
  const raw = Buffer.from(sig.signature, 'base64url');
  if (jwk.crv === 'P-256') {
    writeFileSync(sigFile, rawToDer(raw));
    return openssl(['dgst', '-sha256', '-verify', pub, '-signature', sigFile, input]);
  }
  writeFileSync(sigFile, raw);
  return openssl(['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', input, '-sigfile', sigFile]);
}

beforeAll(() => {
  requireTools();
  const r = cli(['token', 'init', '--label', TOKEN, '--so-pin-env', 'SO', '--pin-env', 'P'], { SO: SO_PIN, P: PIN });
  if (r.code !== 0) throw new Error(`token init failed: ${r.stderr}`);
  writeFileSync(join(hsm.dir, 'message.txt'), 'the message signed on the token\n');
  writeFileSync(join(hsm.dir, 'pin.txt'), `${PIN}\n`);
});

describe.each([
  { curve: 'Ed25519', object: 'k-ed25519', verifier: 'jose' },
  { curve: 'Ed448', object: 'k-ed448', verifier: 'jose5' },
  { curve: 'P-256', object: 'k-p256', verifier: 'jose' },
])('meshkit key generate/show/sign $curve on the token', ({ curve, object, verifier }) => {
  let key: ShownKey;
  let jws: Jws;

  it('generate --pin-env prints the key info (non-extractable, sensitive, location with id)', () => {
    const r = cli(['key', 'generate', '--key', uriFor(object), '--alg', curve, '--pin-env', 'P', '--json'], pinEnv);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    key = JSON.parse(r.stdout) as ShownKey;
    expect(key).toMatchObject({ label: object, curve, usage: 'sign', extractable: false, sensitive: true });
    expect(key.keyId).toBe(keyId(key.publicJwk));
    expect(key.location).toMatch(/^pkcs11:/);
    expect(key.location).toContain(`object=${object}`);
    expect(key.location).toContain('id=');
  });

  it('pkcs11-tool lists it with the label and the CKA_ID meshkit set', () => {
    const r = tool(['--token-label', TOKEN, '--list-objects', '--login', '--pin', PIN]);
    expect(r.code).toBe(0);
    const id = ckaIdHex(key.keyId);
    // pkcs11-tool prints each object as a block: "Private Key Object; EC…", "  label: …", "  ID: …".
    const blocks = r.stdout.split(/\n(?=\S)/u).filter((b) => b.includes(`label:      ${object}\n`));
    expect(blocks.length).toBeGreaterThanOrEqual(2); // the private and the public key
    for (const b of blocks) expect(b).toContain(`ID:         ${id}`);
    expect(blocks.some((b) => b.startsWith('Private Key Object'))).toBe(true);
    expect(blocks.find((b) => b.startsWith('Private Key Object'))).toMatch(/Access:\s+sensitive, always sensitive, never extractable/u);
  });

  it('show (PIN from the URI pin-source) gives the same key UDF and public key', () => {
    const r = cli(['key', 'show', '--key', uriFor(object, `&pin-source=file:${join(hsm.dir, 'pin.txt')}`), '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ keyId: key.keyId, publicJwk: key.publicJwk, curve, sensitive: true, extractable: false });
    const h = cli(['key', 'show', '--key', uriFor(object)], { MESHKIT_PIN: PIN });
    expect(h.code).toBe(0);
    expect(h.stdout).toContain(key.keyId);
    expect(h.stdout).toMatch(/sensitive\s+yes/);
    expect(h.stdout).toMatch(/extractable\s+no/);
  });

  it('sign prints a JWS whose kid is the key UDF', () => {
    const r = cli(['key', 'sign', '--key', uriFor(object), '--pin-file', join(hsm.dir, 'pin.txt'), 'message.txt']);
    expect(r.code).toBe(0);
    jws = JSON.parse(r.stdout) as Jws;
    expect(jws.signatures).toHaveLength(1);
    const header = JSON.parse(Buffer.from(jws.signatures[0]!.protected, 'base64url').toString('utf8')) as { alg: string; kid: string };
    expect(header).toMatchObject({ alg: curve === 'P-256' ? 'ES256' : 'EdDSA', kid: key.keyId });
  });

  it('the signature verifies with openssl', () => {
    const r = opensslVerifies(object, key.publicJwk, jws);
    expect(r.stdout + r.stderr).toMatch(/Verif(ied OK|ication OK|ied Successfully)/u);
    expect(r.code).toBe(0);
    // and a changed payload does not
    const bad = opensslVerifies(`${object}-bad`, key.publicJwk, { ...jws, payload: Buffer.from('other').toString('base64url') });
    expect(bad.code).not.toBe(0);
  });

  it(`the signature verifies with ${verifier}`, async () => {
    if (verifier === 'jose5') {
      const k = await jose5.importJWK({ ...key.publicJwk }, 'EdDSA');
      const v = await jose5.generalVerify(jws, k);
      expect(Buffer.from(v.payload).toString('utf8')).toBe('the message signed on the token\n');
    } else {
      const k = await importJWK({ ...key.publicJwk }, curve === 'P-256' ? 'ES256' : 'EdDSA');
      const v = await generalVerify(jws, k);
      expect(Buffer.from(v.payload).toString('utf8')).toBe('the message signed on the token\n');
    }
  });
});

describe('a key made by pkcs11-tool is usable by meshkit', () => {
  let shown: ShownKey;
  it('pkcs11-tool --keypairgen EC:edwards25519 --label tool-ed --id 0a', () => {
    const r = tool(['--token-label', TOKEN, '--login', '--pin', PIN, '--keypairgen', '--key-type', 'EC:edwards25519', '--label', 'tool-ed', '--id', '0a']);
    expect(r.code).toBe(0);
  });

  it('meshkit key show finds it by label, and by id', () => {
    const r = cli(['key', 'show', '--key', uriFor('tool-ed'), '--json'], { MESHKIT_PIN: PIN });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    shown = JSON.parse(r.stdout) as ShownKey;
    expect(shown).toMatchObject({ curve: 'Ed25519', usage: 'sign' });
    expect(shown.keyId).toBe(keyId(shown.publicJwk));
    const byId = cli(['key', 'show', '--key', `pkcs11:token=${TOKEN};id=%0A?module-path=${SOFTHSM_MODULE}`, '--json'], { MESHKIT_PIN: PIN });
    expect(byId.code).toBe(0);
    expect((JSON.parse(byId.stdout) as ShownKey).keyId).toBe(shown.keyId);
  });

  it('the public key meshkit shows is the one pkcs11-tool reads off the token', () => {
    const r = tool(['--token-label', TOKEN, '--read-object', '--type', 'pubkey', '--id', '0a', '-o', join(hsm.dir, 'tool-ed.pub')]);
    expect(r.code).toBe(0);
    const jwk = createPublicKey(readToolPublicKey(join(hsm.dir, 'tool-ed.pub'))).export({ format: 'jwk' });
    expect(jwk.x).toBe(shown.publicJwk.x);
  });

  it('meshkit key sign with it verifies with openssl and jose', async () => {
    const r = cli(['key', 'sign', '--key', uriFor('tool-ed'), 'message.txt'], { MESHKIT_PIN: PIN });
    expect(r.code).toBe(0);
    const jws = JSON.parse(r.stdout) as Jws;
    expect(opensslVerifies('tool-ed', shown.publicJwk, jws).code).toBe(0);
    await generalVerify(jws, await importJWK({ ...shown.publicJwk }, 'EdDSA'));
  });
});

/** Reads what pkcs11-tool wrote for a public key: PEM for EdDSA keys, DER otherwise. */
describe('meshkit key list --store pkcs11:', () => {
  it('lists every key on the token — meshkit\'s and pkcs11-tool\'s — with UDF, curve and location', () => {
    const r = cli(['key', 'list', '--store', `pkcs11:token=${TOKEN}?module-path=${SOFTHSM_MODULE}`, '--json'], { MESHKIT_PIN: PIN });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const listed = JSON.parse(r.stdout) as { keys: ShownKey[] };
    const labels = listed.keys.map((k) => k.label);
    expect(labels).toEqual(expect.arrayContaining(['k-ed25519', 'k-ed448', 'k-p256', 'tool-ed']));
    for (const k of listed.keys) {
      expect(k.keyId).toBe(keyId(k.publicJwk));
      expect(k.location).toContain(`object=${k.label}`);
    }
    const human = cli(['key', 'list', '--store', `pkcs11:token=${TOKEN}?module-path=${SOFTHSM_MODULE}`], { MESHKIT_PIN: PIN });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^k-ed448\tEd448\tsign\tM[A-Z2-7-]+\tnon-extractable\tpkcs11:/mu);
  });

  it('a wrong PIN fails with exit 1 naming CKR_PIN_INCORRECT', () => {
    const r = cli(['key', 'list', '--store', `pkcs11:token=${TOKEN}?module-path=${SOFTHSM_MODULE}`], { MESHKIT_PIN: 'not-the-pin' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/CKR_PIN_INCORRECT/);
  });
});

function readToolPublicKey(path: string): import('node:crypto').PublicKeyInput | Buffer {
  const data = run('cat', [path], hsm).stdout;
  if (data.startsWith('-----BEGIN')) return { key: data, format: 'pem' };
  return { key: run('openssl', ['pkey', '-pubin', '-inform', 'DER', '-in', path], hsm).stdout, format: 'pem' };
}

describe('PIN and token faults through the CLI', () => {
  it('a wrong PIN: exit 1, one line naming CKR_PIN_INCORRECT and what the token says about tries left', () => {
    const r = cli(['key', 'sign', '--key', uriFor('k-ed25519'), '--pin-env', 'P', 'message.txt'], { P: 'wrong-0000' });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('CKR_PIN_INCORRECT');
    expect(lines[0]).toContain(ErrorCode.PKCS11_PIN_INCORRECT);
    expect(lines[0]).toMatch(/tries|attempt/iu);
    expect(r.stdout).toBe('');
  });

  it('no PIN source and no TTY: exit 2 naming the options', () => {
    const r = cli(['key', 'sign', '--key', uriFor('k-ed25519'), 'message.txt']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--pin-file');
    expect(r.stderr).toContain('MESHKIT_PIN');
  });

  it('pin-value in the URI works but warns on stderr (and is never echoed)', () => {
    const r = cli(['key', 'sign', '--key', uriFor('k-ed25519', `&pin-value=${PIN}`), 'message.txt']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^meshkit: warning: pin-value puts the PIN in the URI.*use pin-source/mu);
    expect(JSON.parse(r.stdout)).toHaveProperty('signatures');
  });

  it('--pin-env wins over the URI pin-source', () => {
    writeFileSync(join(hsm.dir, 'wrong-pin.txt'), 'wrong-1111\n');
    const r = cli(['key', 'show', '--key', uriFor('k-ed25519', `&pin-source=file:${join(hsm.dir, 'wrong-pin.txt')}`), '--pin-env', 'P'], pinEnv);
    expect(r.code).toBe(0);
  });

  it('a missing token: exit 1 listing the tokens present', () => {
    const r = cli(['key', 'show', '--key', `pkcs11:token=NoSuchToken;object=x?module-path=${SOFTHSM_MODULE}`], { MESHKIT_PIN: PIN });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(ErrorCode.PKCS11_TOKEN_NOT_FOUND);
    expect(r.stderr).toContain(TOKEN);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a missing object: exit 1 with ERR_KEYSTORE_NOT_FOUND naming the labels present; a missing id: ERR_PKCS11_OBJECT_NOT_FOUND', () => {
    const r = cli(['key', 'show', '--key', uriFor('no-such-key')], { MESHKIT_PIN: PIN });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(ErrorCode.KEYSTORE_NOT_FOUND);
    expect(r.stderr).toContain('k-ed25519');
    const byId = cli(['key', 'show', '--key', `pkcs11:token=${TOKEN};id=%EE%EE?module-path=${SOFTHSM_MODULE}`], { MESHKIT_PIN: PIN });
    expect(byId.code).toBe(1);
    expect(byId.stderr).toContain(ErrorCode.PKCS11_OBJECT_NOT_FOUND);
  });

  it('a wrong module path: exit 1 with ERR_PKCS11_MODULE', () => {
    const r = cli(['key', 'show', '--key', `pkcs11:token=${TOKEN};object=k-ed25519?module-path=/nonexistent/libp11.so`], { MESHKIT_PIN: PIN });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(ErrorCode.PKCS11_MODULE);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a malformed URI: exit 1 with ERR_PKCS11_URI_INVALID', () => {
    const r = cli(['key', 'show', '--key', `pkcs11:token=${TOKEN};object=a;object=b`], { MESHKIT_PIN: PIN });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(ErrorCode.PKCS11_URI_INVALID);
  });

  it('generate without object= is a usage error (exit 2); a taken label fails (exit 1)', () => {
    expect(cli(['key', 'generate', '--key', `pkcs11:token=${TOKEN}?module-path=${SOFTHSM_MODULE}`, '--alg', 'Ed25519'], { MESHKIT_PIN: PIN }).code).toBe(2);
    const taken = cli(['key', 'generate', '--key', uriFor('k-ed25519'), '--alg', 'Ed25519'], { MESHKIT_PIN: PIN });
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain(ErrorCode.KEYSTORE_EXISTS);
  });

  it('the PIN never appears in meshkit output', () => {
    expect(outputs.length).toBeGreaterThan(20);
    for (const r of outputs) {
      // pkcs11-tool echoes nothing of the PIN either; check every captured stream.
      expect(r.stdout).not.toContain(PIN);
      expect(r.stderr).not.toContain(PIN);
      expect(r.stdout).not.toContain(SO_PIN);
      expect(r.stderr).not.toContain(SO_PIN);
    }
  });
});
