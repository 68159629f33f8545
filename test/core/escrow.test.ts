import { describe, expect, it } from 'vitest';
import * as jose from 'jose';
import { hkdfSync } from 'node:crypto';
import { b64u, fromB64u, utf8 } from '../../src/core/bytes.js';
import { ErrorCode, isMeshkitError } from '../../src/core/errors.js';
import {
  createOfflineEscrow,
  encryptWithEscrow,
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
