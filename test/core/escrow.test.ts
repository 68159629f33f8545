import { describe, expect, it } from 'vitest';
import * as jose from 'jose';
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, hkdfSync, randomBytes } from 'node:crypto';
import { b64u, fromB64u, utf8 } from '../../src/core/bytes.js';
import { ErrorCode, isMeshkitError } from '../../src/core/errors.js';
import {
  createOfflineEscrow,
  createOfflineEscrowWrapped,
  encryptWithEscrow,
  openOfflineEscrowAny,
  type WrappedKeySet,
  escrowBlobId,
  openOfflineEscrow,
  recoverWithEscrow,
  type EscrowedKeySet,
  type OfflineEscrowBlob,
} from '../../src/core/escrow.js';
import { decryptJwe, encryptJweDirect } from '../../src/core/jose.js';
import { keyId } from '../../src/core/keys.js';
import { udfDigest, udfEncryptionKey, udfParse } from '../../src/core/udf.js';
import { combineShares, splitSecret } from '../../src/core/shamir.js';
import { testDecrypter, testKey } from '../helpers/software-signer.js';

function expectCode(f: () => unknown, code: string): void {
  let error: unknown;
  try {
    f();
  } catch (e) {
    error = e;
  }
  expect(isMeshkitError(error) ? error.code : error).toBe(code);
}

const sign = testKey('Ed448');
const escrow1 = testKey('X448');
const escrow2 = testKey('X25519');
const keySet: EscrowedKeySet = {
  MasterSignatureKey: sign.privateJwk,
  MasterEscrowKeys: [escrow1.privateJwk, escrow2.privateJwk],
};

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe('offline escrow', () => {
  it('creates a blob named by the UDF of the session key and opens it again', () => {
    const { sessionKey, blobId, blob } = createOfflineEscrow(keySet);
    expect(sessionKey).toHaveLength(32);
    expect(blob.OfflineEscrowEntry.Identifier).toBe(blobId);
    expect(escrowBlobId(sessionKey)).toBe(blobId);
    // digest §7.5: udfDigest(UTF8(E-UDF string of K), "application/udf", 280).
    expect(blobId).toBe(udfDigest(utf8(udfEncryptionKey(sessionKey)), { contentType: 'application/udf', bits: 280 }));
    expect(udfParse(blobId).bytes.length).toBeGreaterThanOrEqual(34);
    const opened = openOfflineEscrow(JSON.stringify(blob), sessionKey);
    expect(opened.MasterSignatureKey).toEqual({ ...sign.privateJwk, kid: sign.keyId });
    expect(opened.MasterEscrowKeys).toEqual([
      { ...escrow1.privateJwk, kid: escrow1.keyId },
      { ...escrow2.privateJwk, kid: escrow2.keyId },
    ]);
  });

  it('the blob never contains the private keys in clear and its header binds the id', () => {
    const { blob, blobId } = createOfflineEscrow(keySet);
    const text = JSON.stringify(blob);
    expect(text).not.toContain(sign.privateJwk.d);
    expect(text).not.toContain(escrow1.privateJwk.d);
    const header = JSON.parse(new TextDecoder().decode(fromB64u(blob.OfflineEscrowEntry.EncryptedData.protected))) as unknown;
    expect(header).toEqual({ alg: 'dir', enc: 'A256GCM', kid: blobId, cty: 'EscrowedKeySet' });
  });

  it('is standard JOSE: jose 6 decrypts it with HKDF-SHA-512(K, "meshkit offline escrow v1")', async () => {
    const { sessionKey, blob } = createOfflineEscrow(keySet);
    const cek = new Uint8Array(hkdfSync('sha512', sessionKey, new Uint8Array(0), utf8('meshkit offline escrow v1'), 32));
    const r = await jose.generalDecrypt(blob.OfflineEscrowEntry.EncryptedData, cek);
    const parsed = JSON.parse(new TextDecoder().decode(r.plaintext)) as { EscrowedKeySet: EscrowedKeySet };
    expect(parsed.EscrowedKeySet.MasterSignatureKey.d).toBe(sign.privateJwk.d);
  });

  it('works end to end with Shamir shares of the session key (3 of 5)', () => {
    const { sessionKey, blob } = createOfflineEscrow(keySet);
    const shares = splitSecret(sessionKey, 3, 5);
    const recovered = combineShares([shares[4] ?? '', shares[1] ?? '', shares[2] ?? '']);
    expect(openOfflineEscrow(blob, recovered).MasterSignatureKey.d).toBe(sign.privateJwk.d);
  });

  it('a wrong session key is a key mismatch', () => {
    const { blob } = createOfflineEscrow(keySet);
    expectCode(() => openOfflineEscrow(blob, new Uint8Array(32)), ErrorCode.ESCROW_KEY_MISMATCH);
  });

  it('a blob whose Identifier was changed to match another key does not decrypt', () => {
    const { blob } = createOfflineEscrow(keySet);
    const other = new Uint8Array(32).fill(9);
    const forged = clone(blob);
    forged.OfflineEscrowEntry.Identifier = escrowBlobId(other);
    expectCode(() => openOfflineEscrow(forged, other), ErrorCode.ESCROW_INVALID);
  });

  it('tampered or malformed blobs are invalid', () => {
    const { sessionKey, blob } = createOfflineEscrow(keySet);
    const tampered = clone(blob);
    const ct = fromB64u(tampered.OfflineEscrowEntry.EncryptedData.ciphertext);
    ct[0] = (ct[0] ?? 0) ^ 1;
    tampered.OfflineEscrowEntry.EncryptedData.ciphertext = b64u(ct);
    expectCode(() => openOfflineEscrow(tampered, sessionKey), ErrorCode.ESCROW_INVALID);
    expectCode(() => openOfflineEscrow('{"OfflineEscrowEntry":', sessionKey), ErrorCode.ESCROW_INVALID);
    expectCode(() => openOfflineEscrow({}, sessionKey), ErrorCode.ESCROW_INVALID);
    expectCode(() => openOfflineEscrow({ OfflineEscrowEntry: { Identifier: blob.OfflineEscrowEntry.Identifier } }, sessionKey), ErrorCode.ESCROW_INVALID);
    const dup = JSON.stringify(blob).replace('{"OfflineEscrowEntry":', '{"OfflineEscrowEntry":{},"OfflineEscrowEntry":');
    expectCode(() => openOfflineEscrow(dup, sessionKey), ErrorCode.ESCROW_INVALID);
    expect(() => openOfflineEscrow(blob, new Uint8Array(16))).toThrow(RangeError);
  });

  it('a correctly encrypted blob holding a key whose d does not match x is invalid', () => {
    const sessionKey = new Uint8Array(32).fill(3);
    const blobId = escrowBlobId(sessionKey);
    const bad = { ...sign.privateJwk, d: testKey('Ed448').privateJwk.d };
    const plaintext = utf8(JSON.stringify({ EscrowedKeySet: { MasterSignatureKey: bad, MasterEscrowKeys: [] } }));
    const cek = new Uint8Array(hkdfSync('sha512', sessionKey, new Uint8Array(0), utf8('meshkit offline escrow v1'), 32));
    const blob: OfflineEscrowBlob = { OfflineEscrowEntry: { Identifier: blobId, EncryptedData: encryptJweDirect(plaintext, cek, { kid: blobId, cty: 'EscrowedKeySet' }) } };
    expectCode(() => openOfflineEscrow(blob, sessionKey), ErrorCode.ESCROW_INVALID);
    // The same blob with the right key opens, which shows the refusal above is about the key.
    const good = utf8(JSON.stringify({ EscrowedKeySet: { MasterSignatureKey: sign.privateJwk, MasterEscrowKeys: [] } }));
    blob.OfflineEscrowEntry.EncryptedData = encryptJweDirect(good, cek, { kid: blobId, cty: 'EscrowedKeySet' });
    expect(openOfflineEscrow(blob, sessionKey).MasterEscrowKeys).toEqual([]);
  });

  it('refuses to escrow inconsistent, public-only or wrong-curve keys', () => {
    expectCode(() => createOfflineEscrow({ ...keySet, MasterSignatureKey: { ...sign.privateJwk, d: testKey('Ed448').privateJwk.d } }), ErrorCode.ESCROW_INVALID);
    expectCode(() => createOfflineEscrow({ ...keySet, MasterSignatureKey: sign.publicJwk as EscrowedKeySet['MasterSignatureKey'] }), ErrorCode.ESCROW_INVALID);
    expectCode(() => createOfflineEscrow({ ...keySet, MasterSignatureKey: escrow1.privateJwk }), ErrorCode.ESCROW_INVALID);
    expectCode(() => createOfflineEscrow({ ...keySet, MasterEscrowKeys: [sign.privateJwk] }), ErrorCode.ESCROW_INVALID);
    expect(() => createOfflineEscrow(null as unknown as EscrowedKeySet)).toThrow(TypeError);
    expectCode(() => createOfflineEscrow({ ...keySet, MasterSignatureKey: { ...sign.privateJwk, d: 'AAAA' } }), ErrorCode.ESCROW_INVALID);
    expectCode(() => createOfflineEscrow({ ...keySet, MasterEscrowKeys: 'x' as unknown as [] }), ErrorCode.ESCROW_INVALID);
  });

  it('escrowBlobId checks the key length and differs per key', () => {
    expect(() => escrowBlobId(new Uint8Array(31))).toThrow(RangeError);
    expect(escrowBlobId(new Uint8Array(32))).not.toBe(escrowBlobId(new Uint8Array(32).fill(1)));
  });
});

/** RFC 5649 AES key wrap with padding of the key's PKCS#8 under K, as a token's C_WrapKey(CKM_AES_KEY_WRAP_PAD) makes it. */
const KWP_IV = Buffer.from('A65959A6', 'hex');
function hostWrap(key: ReturnType<typeof testKey>, k: Uint8Array): string {
  const der = key.privateKey.export({ format: 'der', type: 'pkcs8' });
  const c = createCipheriv('id-aes256-wrap-pad', k, KWP_IV);
  return b64u(new Uint8Array(Buffer.concat([c.update(der), c.final()])));
}
function hostUnwrap(wrapped: string, k: Uint8Array): Buffer {
  const d = createDecipheriv('id-aes256-wrap-pad', k, KWP_IV);
  return Buffer.concat([d.update(fromB64u(wrapped)), d.final()]);
}

describe('offline escrow, wrapped form (generate-on-token-wrapped)', () => {
  const wSign = testKey('P-256');
  const wEsc = testKey('P-256');
  const K = new Uint8Array(randomBytes(32));
  const wrappedSet = (): WrappedKeySet => ({
    Wrapping: 'CKM_AES_KEY_WRAP_PAD',
    Keys: [
      { Role: 'MasterSignatureKey', Label: 'mesh-master-signature', Curve: 'P-256', PublicKey: wSign.publicJwk, Wrapped: hostWrap(wSign, K) },
      { Role: 'MasterEscrowKey', Label: 'mesh-master-escrow', Curve: 'P-256', PublicKey: wEsc.publicJwk, Wrapped: hostWrap(wEsc, K) },
    ],
  });

  it('is named by the UDF of the caller\'s K, opens as Form WrappedKeySet, and the wrapped keys unwrap under K', () => {
    const { blobId, blob } = createOfflineEscrowWrapped(wrappedSet(), K);
    expect(blobId).toBe(escrowBlobId(K));
    expect(blob.OfflineEscrowEntry.Identifier).toBe(blobId);
    const opened = openOfflineEscrowAny(JSON.stringify(blob), K);
    expect(opened.Form).toBe('WrappedKeySet');
    if (opened.Form !== 'WrappedKeySet') return;
    expect(opened.KeySet.Wrapping).toBe('CKM_AES_KEY_WRAP_PAD');
    expect(opened.KeySet.Keys.map((k) => k.kid)).toEqual([wSign.keyId, wEsc.keyId]);
    expect(opened.KeySet.Keys.map((k) => k.Role)).toEqual(['MasterSignatureKey', 'MasterEscrowKey']);
    // What was wrapped under K is the private key of PublicKey (a real RFC 5649 round trip).
    for (const [i, k] of opened.KeySet.Keys.entries()) {
      const pub = createPublicKey(createPrivateKey({ key: hostUnwrap(k.Wrapped, K), format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
      expect({ x: pub.x, y: pub.y }).toEqual({ x: [wSign, wEsc][i]?.publicJwk.x, y: [wSign, wEsc][i]?.publicJwk.y });
    }
    // The same shares recover it: K's Shamir shares.
    const shares = splitSecret(K, 3, 5);
    expect(openOfflineEscrowAny(blob, combineShares([shares[3] ?? '', shares[0] ?? '', shares[2] ?? ''])).Form).toBe('WrappedKeySet');
  });

  it('holds no private key in clear: the plaintext has only Wrapped members, no "d"', async () => {
    const { blob } = createOfflineEscrowWrapped(wrappedSet(), K);
    const cek = new Uint8Array(hkdfSync('sha512', K, new Uint8Array(0), utf8('meshkit offline escrow v1'), 32));
    const r = await jose.generalDecrypt(blob.OfflineEscrowEntry.EncryptedData, cek);
    const text = new TextDecoder().decode(r.plaintext);
    expect(Object.keys(JSON.parse(text) as object)).toEqual(['WrappedKeySet']);
    expect(text).not.toContain('"d"');
    expect(text).not.toContain(wSign.privateJwk.d);
    expect(r.protectedHeader).toEqual({ alg: 'dir', enc: 'A256GCM', kid: escrowBlobId(K), cty: 'EscrowedKeySet' });
  });

  it('openOfflineEscrow (private-key form only) refuses a wrapped blob; openOfflineEscrowAny opens the other form too', () => {
    const { blob } = createOfflineEscrowWrapped(wrappedSet(), K);
    expectCode(() => openOfflineEscrow(blob, K), ErrorCode.ESCROW_INVALID);
    expect(() => openOfflineEscrow(blob, K)).toThrow(/WrappedKeySet/);
    const plain = createOfflineEscrow(keySet);
    const any = openOfflineEscrowAny(plain.blob, plain.sessionKey);
    expect(any.Form).toBe('EscrowedKeySet');
    if (any.Form === 'EscrowedKeySet') expect(any.KeySet.MasterSignatureKey.d).toBe(sign.privateJwk.d);
  });

  it('createOfflineEscrow takes the caller\'s session key when given', () => {
    const k = new Uint8Array(32).fill(7);
    const made = createOfflineEscrow(keySet, k);
    expect(made.sessionKey).toBe(k);
    expect(made.blobId).toBe(escrowBlobId(k));
    expect(openOfflineEscrow(made.blob, k).MasterSignatureKey.d).toBe(sign.privateJwk.d);
    expect(() => createOfflineEscrow(keySet, new Uint8Array(31))).toThrow(RangeError);
    expect(() => createOfflineEscrow(keySet, 'k' as unknown as Uint8Array)).toThrow(TypeError);
  });

  it.each<[string, (s: WrappedKeySet) => unknown]>([
    ['another Wrapping mechanism', (s) => ({ ...s, Wrapping: 'CKM_AES_KEY_WRAP' })],
    ['only one key', (s) => ({ ...s, Keys: s.Keys.slice(0, 1) })],
    ['roles out of order', (s) => ({ ...s, Keys: [s.Keys[1], s.Keys[0]] })],
    ['a private member in PublicKey', (s) => ({ ...s, Keys: [{ ...s.Keys[0], PublicKey: { ...s.Keys[0]?.PublicKey, d: wSign.privateJwk.d } }, s.Keys[1]] })],
    ['a "d" next to Wrapped', (s) => ({ ...s, Keys: [{ ...s.Keys[0], d: wSign.privateJwk.d }, s.Keys[1]] })],
    ['Curve not that of PublicKey', (s) => ({ ...s, Keys: [{ ...s.Keys[0], Curve: 'Ed448' }, s.Keys[1]] })],
    ['an X448 signature key', (s) => ({ ...s, Keys: [{ ...s.Keys[0], Curve: 'X448', PublicKey: escrow1.publicJwk }, s.Keys[1]] })],
    ['an Ed448 escrow key', (s) => ({ ...s, Keys: [s.Keys[0], { ...s.Keys[1], Curve: 'Ed448', PublicKey: sign.publicJwk }] })],
    ['Wrapped not base64url', (s) => ({ ...s, Keys: [{ ...s.Keys[0], Wrapped: 'not base64url!' }, s.Keys[1]] })],
    ['Wrapped of 12 bytes', (s) => ({ ...s, Keys: [{ ...s.Keys[0], Wrapped: b64u(new Uint8Array(12)) }, s.Keys[1]] })],
    ['an empty Label', (s) => ({ ...s, Keys: [{ ...s.Keys[0], Label: '' }, s.Keys[1]] })],
  ])('refuses a wrapped set with %s (on creation and in a blob)', (_name, mutate) => {
    const bad = mutate(wrappedSet()) as WrappedKeySet;
    expectCode(() => createOfflineEscrowWrapped(bad, K), ErrorCode.ESCROW_INVALID);
    // The same set inside a correctly encrypted blob is refused on opening.
    const blobId = escrowBlobId(K);
    const cek = new Uint8Array(hkdfSync('sha512', K, new Uint8Array(0), utf8('meshkit offline escrow v1'), 32));
    const blob: OfflineEscrowBlob = {
      OfflineEscrowEntry: { Identifier: blobId, EncryptedData: encryptJweDirect(utf8(JSON.stringify({ WrappedKeySet: bad })), cek, { kid: blobId, cty: 'EscrowedKeySet' }) },
    };
    expectCode(() => openOfflineEscrowAny(blob, K), ErrorCode.ESCROW_INVALID);
  });

  it('refuses a plaintext with both forms or an unknown one, and checks its arguments', () => {
    const blobId = escrowBlobId(K);
    const cek = new Uint8Array(hkdfSync('sha512', K, new Uint8Array(0), utf8('meshkit offline escrow v1'), 32));
    for (const content of [{ WrappedKeySet: wrappedSet(), EscrowedKeySet: keySet }, { KeySet: {} }, []]) {
      const blob = { OfflineEscrowEntry: { Identifier: blobId, EncryptedData: encryptJweDirect(utf8(JSON.stringify(content)), cek, { kid: blobId, cty: 'EscrowedKeySet' }) } };
      expectCode(() => openOfflineEscrowAny(blob, K), ErrorCode.ESCROW_INVALID);
    }
    expect(() => createOfflineEscrowWrapped(wrappedSet(), new Uint8Array(16))).toThrow(RangeError);
    expect(() => createOfflineEscrowWrapped(null as unknown as WrappedKeySet, K)).toThrow(TypeError);
    expectCode(() => openOfflineEscrowAny(createOfflineEscrowWrapped(wrappedSet(), K).blob, new Uint8Array(32)), ErrorCode.ESCROW_KEY_MISMATCH);
  });
});

describe('online escrow', () => {
  it('X448 master escrow key: one more recipient, recovers what the devices can read', async () => {
    const device = testKey('X25519');
    const data = utf8('{"ApplicationProfilePrivate":{"k":"…"}}');
    const jwe = await encryptWithEscrow(data, [device.publicJwk], escrow1.publicJwk, { cty: 'ApplicationProfilePrivate' });
    expect(jwe.recipients.map((r) => r.header.kid)).toEqual([device.keyId, keyId(escrow1.publicJwk)]);
    expect((await recoverWithEscrow(jwe, testDecrypter(escrow1))).plaintext).toEqual(data);
    expect((await decryptJwe(jwe, testDecrypter(device))).plaintext).toEqual(data);
    let code: unknown;
    try {
      await recoverWithEscrow(jwe, testDecrypter(testKey('X448')));
    } catch (e) {
      code = isMeshkitError(e) ? e.code : e;
    }
    expect(code).toBe(ErrorCode.JWE_NO_RECIPIENT);
  });

  it('checks its arguments', async () => {
    await expect(encryptWithEscrow(utf8('x'), 'no' as unknown as [], escrow1.publicJwk)).rejects.toThrow(TypeError);
    await expect(encryptWithEscrow(utf8('x'), [], null as unknown as typeof escrow1.publicJwk)).rejects.toThrow(TypeError);
  });
});
