/**
 * ES256 administration signing on a TPM-backed token (tpm2-pkcs11 on swtpm, test/helpers/tpm.ts):
 * the stand-in for a PIV card that cannot do EdDSA. A P-256 key generated on the token is enrolled
 * as an administration key of a Master Profile and signs a Personal Profile; verifyProfile accepts
 * it, and so do node:crypto and jose 6 independently. The capability probe reports what the token
 * lacks (EdDSA, ECDH, private-key import), and asking for those is a typed UnsupportedError naming
 * the token and the mechanism.
 */
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { generalVerify, importJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, UnsupportedError } from '../../src/core/errors.js';
import { composeMasterProfile, composePersonalProfile, signProfile, verifyProfile, type SignedProfile } from '../../src/core/profiles.js';
import type { KeyHandle } from '../../src/keystore/types.js';
import type { Pkcs11KeyStore as StoreType } from '../../src/keystore/pkcs11/store.js';
import { startTpm, tpmMissing, type TpmFixture } from '../helpers/tpm.js';
import { testKey, testSigner } from '../helpers/software-signer.js';

const tpm: TpmFixture | undefined = tpmMissing === undefined ? await startTpm({ label: 'piv-standin', userPin: '2468' }) : undefined;
afterAll(() => tpm?.stop());

// Loaded after startTpm: tpm2-pkcs11 reads its environment in C_Initialize.
const { Pkcs11KeyStore } = await import('../../src/keystore/pkcs11/store.js');

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

describe.skipIf(tpm === undefined)(`TPM-backed token (tpm2-pkcs11 + swtpm)${tpmMissing === undefined ? '' : ` — skipped: ${tpmMissing}`}`, () => {
  let store: StoreType;
  let admin: KeyHandle;
  const master = testKey('Ed448');

  beforeAll(async () => {
    store = await Pkcs11KeyStore.open((tpm as TpmFixture).uri(), utf8('2468'));
    admin = await store.generate('admin-es256', 'P-256');
  });
  afterAll(async () => {
    await store?.delete('admin-es256').catch(() => undefined);
    await store?.close();
  });

  it('the P-256 admin key is a non-extractable token key with an ES256 signer', async () => {
    expect(admin.info.curve).toBe('P-256');
    expect(admin.info.extractable).toBe(false);
    expect(admin.signer().algorithm).toBe('ES256');
    expect(admin.info.location).toContain('pkcs11:token=piv-standin');
    expect((await store.get('admin-es256')).info.keyId).toBe(admin.info.keyId);
    await expect(admin.exportPrivateJwk()).rejects.toBeInstanceOf(UnsupportedError);
  });

  it('signs a Personal Profile (ES256) that verifyProfile, node:crypto and jose 6 accept', async () => {
    const masterProfile = composeMasterProfile({ signatureKey: master.publicJwk, adminKeys: [admin.info.publicJwk], names: ['alice@example.com'] });
    const signedMaster = await signProfile('MasterProfile', masterProfile, testSigner(master));
    const personal = composePersonalProfile({ master: signedMaster, names: ['alice@example.com'] });
    const signed: SignedProfile = await signProfile('PersonalProfile', personal, admin.signer());

    const verified = await verifyProfile(signed, { master: signedMaster });
    expect(verified.type).toBe('PersonalProfile');
    expect(verified.signerKeyId).toBe(admin.info.keyId);
    expect(verified.signerRole).toBe('administration-key');
    expect(verified.identifier).toBe(master.keyId);

    const sig = signed.signatures[0];
    expect(signed.signatures).toHaveLength(1);
    const header = JSON.parse(Buffer.from(sig?.protected ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
    expect(header).toMatchObject({ alg: 'ES256', kid: admin.info.keyId, cty: 'PersonalProfile' });

    // node:crypto over the JWS signing input, raw r||s (IEEE P1363)
    const input = Buffer.from(`${sig?.protected}.${signed.payload}`, 'ascii');
    const key = createPublicKey({ key: { ...admin.info.publicJwk }, format: 'jwk' });
    const rs = Buffer.from(sig?.signature ?? '', 'base64url');
    expect(rs.length).toBe(64);
    expect(nodeVerify('sha256', input, { key, dsaEncoding: 'ieee-p1363' }, rs)).toBe(true);
    const flipped = Buffer.from(rs);
    flipped[10] = (flipped[10] ?? 0) ^ 1;
    expect(nodeVerify('sha256', input, { key, dsaEncoding: 'ieee-p1363' }, flipped)).toBe(false);

    // jose 6, independently
    const joseKey = await importJWK({ ...admin.info.publicJwk }, 'ES256');
    const result = await generalVerify(signed, joseKey);
    expect(result.protectedHeader?.alg).toBe('ES256');
    expect(JSON.parse(new TextDecoder().decode(result.payload))).toHaveProperty('PersonalProfile.Identifier', master.keyId);
    await expect(generalVerify({ ...signed, signatures: [{ ...(sig as object), signature: flipped.toString('base64url') } as never] }, joseKey)).rejects.toThrow();
  });

  it('a profile signed by a TPM key that the Master Profile does not list is refused', async () => {
    const other = await store.generate('not-an-admin', 'P-256');
    try {
      const masterProfile = composeMasterProfile({ signatureKey: master.publicJwk, adminKeys: [admin.info.publicJwk] });
      const signedMaster = await signProfile('MasterProfile', masterProfile, testSigner(master));
      const signed = await signProfile('PersonalProfile', composePersonalProfile({ master: signedMaster }), other.signer());
      await expect(verifyProfile(signed, { master: signedMaster })).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
    } finally {
      await store.delete('not-an-admin');
    }
  });

  it('the capability probe reports P-256 ECDSA only: no EdDSA, no ECDH, no private-key import', async () => {
    const caps = await store.capabilities();
    const names = caps.mechanisms.map((m) => m.name);
    expect(names).toEqual(expect.arrayContaining(['CKM_EC_KEY_PAIR_GEN', 'CKM_ECDSA', 'CKM_ECDSA_SHA256']));
    for (const absent of ['CKM_EDDSA', 'CKM_EC_EDWARDS_KEY_PAIR_GEN', 'CKM_EC_MONTGOMERY_KEY_PAIR_GEN', 'CKM_ECDH1_DERIVE', 'CKM_AES_KEY_WRAP_PAD']) {
      expect(names).not.toContain(absent);
    }
    expect(caps.curves['P-256']).toEqual({ generate: true, sign: true, derive: false, keyType: 'CKK_EC' });
    for (const c of ['Ed25519', 'Ed448'] as const) expect(caps.curves[c]).toEqual({ generate: false, sign: false, keyType: null });
    for (const c of ['X25519', 'X448'] as const) expect(caps.curves[c]).toEqual({ generate: false, derive: false, keyType: null });
    expect(caps.privateKeyImport).toBe(false);
    expect(caps.wrap).toEqual({ aesKeyWrap: false, aesKeyWrapPad: false, edPrivateKeys: false });
    // the probe leaves nothing behind
    expect((await store.list()).map((i) => i.label)).toEqual(['admin-es256']);
  });

  it.each([
    ['Ed25519', {}, 'CKM_EC_EDWARDS_KEY_PAIR_GEN'],
    ['Ed448', {}, 'CKM_EC_EDWARDS_KEY_PAIR_GEN'],
    ['X25519', {}, 'CKM_EC_EDWARDS_KEY_PAIR_GEN'],
    ['P-256', { usage: 'derive' }, 'CKM_ECDH1_DERIVE'],
  ] as const)('generate %s %j: UnsupportedError naming the token and %s, nothing created', async (curve, opts, mechanism) => {
    const err = await store.generate(`unsupported-${curve}`, curve, opts).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnsupportedError);
    expect((err as UnsupportedError).code).toBe(ErrorCode.NOT_SUPPORTED);
    expect((err as Error).message).toContain('"piv-standin"');
    expect((err as Error).message).toContain(mechanism);
    expect((await store.list()).map((i) => i.label)).toEqual(['admin-es256']);
  });

  it('importPrivate: UnsupportedError naming the token and C_CreateObject, nothing created', async () => {
    const k = testKey('P-256');
    const err = await store.importPrivate('imported', k.privateJwk).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnsupportedError);
    expect((err as Error).message).toContain('"piv-standin"');
    expect((err as Error).message).toContain('C_CreateObject');
    expect((await store.list()).map((i) => i.label)).toEqual(['admin-es256']);
  });
});
