/**
 * Pkcs11KeyStore against a real SoftHSM2 token (no mocks): vectors, interop with node:crypto, jose
 * and OpenSC's pkcs11-tool, and the faults of issue 3 (wrong PIN, missing token / mechanism,
 * ambiguous label, half-created objects, session closed underneath, CKA_ALWAYS_AUTHENTICATE, wrap).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createPublicKey, diffieHellman, generateKeyPairSync, verify as nodeVerify } from 'node:crypto';
import { generalVerify, importJWK } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, KeyError, KeyStoreError, Pkcs11Error, UnsupportedError } from '../../src/core/errors.js';
import { signJws } from '../../src/core/jose.js';
import { keyId, publicKeyFromJwk, publicKeyObject } from '../../src/core/keys.js';
import { udfParse } from '../../src/core/udf.js';
import type { PublicJwk } from '../../src/core/signer.js';
import { openKeyReference, openKeyStore } from '../../src/keystore/index.js';
import { Pkcs11KeyStore, openPkcs11KeyReference, parsePkcs11Uri } from '../../src/keystore/pkcs11/index.js';
import { _faultInjection } from '../../src/keystore/pkcs11/store.js';
import { createSoftHsm, softhsmMissing, type SoftHsmFixture } from '../helpers/softhsm.js';

const hsm: SoftHsmFixture | undefined =
  softhsmMissing === undefined
    ? createSoftHsm([
        { label: 'main', userPin: '1234' },
        { label: 'pins', userPin: '2468' },
      ])
    : undefined;
afterAll(() => hsm?.cleanup());

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

interface Rfc8032Vector {
  id: string;
  source: string;
  curve: 'Ed25519' | 'Ed448';
  secretKey: string;
  publicKey: string;
  message: string;
  context?: string;
  signature: string;
}
const rfc8032 = (JSON.parse(readFileSync(new URL('../vectors/rfc8032.json', import.meta.url), 'utf8')) as { vectors: Rfc8032Vector[] }).vectors
  // CKM_EDDSA without parameters is pure Ed25519 / Ed448 with an empty context.
  .filter((v) => v.context === undefined || v.context === '');

function hasPkcs11Tool(): boolean {
  try {
    execFileSync('pkcs11-tool', ['--help'], { stdio: 'pipe' });
    return true;
  } catch (e) {
    // pkcs11-tool --help exits with status 2; only a missing binary (ENOENT) means it is absent
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

const pkcs11ToolPresent = hasPkcs11Tool();
if (!pkcs11ToolPresent) console.warn('skipping pkcs11-tool interop: OpenSC pkcs11-tool is not installed (apt-get install opensc)');

describe.skipIf(hsm === undefined)('Pkcs11KeyStore on SoftHSM2', () => {
  const h = hsm as SoftHsmFixture;
  let store: Pkcs11KeyStore;
  let n = 0;
  const label = (hint: string): string => `t${++n}-${hint}`;

  beforeEach(async () => {
    store = await Pkcs11KeyStore.open(h.uri('main'), enc('1234'));
  });
  afterEach(async () => {
    _faultInjection.afterObjectsCreated = undefined;
    await store.close();
  });

  it.each(rfc8032.map((v) => [v.id, v]))('%s (RFC 8032) imported on the token: CKM_EDDSA signature equals the RFC', async (_id, v) => {
    const jwk = { kty: 'OKP' as const, crv: v.curve, x: b64u(hex(v.publicKey)), d: b64u(hex(v.secretKey)) };
    const k = await store.importPrivate(label(v.curve), jwk);
    expect(k.info.keyId).toBe(keyId({ kty: 'OKP', crv: v.curve, x: jwk.x }));
    const sig = await k.signer().sign(hex(v.message));
    expect(Buffer.from(sig).toString('hex'), `${v.source} ${v.id}`).toBe(v.signature);
  });

  it('imported keys are sensitive and not extractable; CKA_ID is the first 16 bytes of the key UDF', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const j = privateKey.export({ format: 'jwk' });
    const k = await store.importPrivate(label('imp'), { kty: 'OKP', crv: 'Ed25519', x: String(j.x), d: String(j.d) });
    expect(k.info.extractable).toBe(false);
    const loc = parsePkcs11Uri(k.info.location).uri;
    expect(loc.token).toBe('main');
    expect(loc.object).toBe(k.info.label);
    expect(loc.type).toBe('private');
    expect(loc.modulePath).toBe(h.modulePath);
    expect(Buffer.from(loc.id ?? []).equals(Buffer.from(udfParse(k.info.keyId).bytes.slice(0, 16)))).toBe(true);
    await expect(k.exportPrivateJwk()).rejects.toBeInstanceOf(UnsupportedError);
  });

  it('Ed25519 signature verifies with node:crypto and with jose 6 generalVerify of a signJws JWS', async () => {
    const k = await store.generate(label('ed'), 'Ed25519');
    const data = enc('signed on the token');
    const sig = await k.signer().sign(data);
    expect(nodeVerify(null, data, publicKeyObject(publicKeyFromJwk(k.info.publicJwk)), sig)).toBe(true);
    const jws = await signJws(data, [k.signer()], { cty: 'Test' });
    const key = await importJWK({ ...k.info.publicJwk }, 'EdDSA');
    const result = await generalVerify(jws as Parameters<typeof generalVerify>[0], key);
    expect(Buffer.from(result.payload).equals(Buffer.from(data))).toBe(true);
    expect(result.protectedHeader?.kid).toBe(k.info.keyId);
  });

  it('P-256 ES256: raw 64-byte r||s, verified by node:crypto and jose', async () => {
    const k = await store.generate(label('p256'), 'P-256');
    const data = enc('es256');
    for (let i = 0; i < 5; i++) {
      const sig = await k.signer().sign(data);
      expect(sig.length).toBe(64);
      expect(nodeVerify('sha256', data, { key: publicKeyObject(publicKeyFromJwk(k.info.publicJwk)), dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
    }
    const jws = await signJws(data, [k.signer()]);
    const result = await generalVerify(jws as Parameters<typeof generalVerify>[0], await importJWK({ ...k.info.publicJwk }, 'ES256'));
    expect(result.protectedHeader?.alg).toBe('ES256');
  });

  it.each([['X25519'], ['X448']] as const)('%s derive equals node:crypto diffieHellman (both directions)', async (curve) => {
    const k = await store.generate(label(curve), curve);
    const peer = generateKeyPairSync(curve.toLowerCase() as 'x25519');
    const pj = peer.publicKey.export({ format: 'jwk' });
    const z = await k.decrypter().deriveSharedSecret({ kty: 'OKP', crv: curve, x: String(pj.x) } as PublicJwk);
    const expected = diffieHellman({ privateKey: peer.privateKey, publicKey: publicKeyObject(publicKeyFromJwk(k.info.publicJwk)) });
    expect(Buffer.from(z).equals(expected)).toBe(true);
  });

  it('parallel signatures on one store all verify (operations never interleave on the session)', async () => {
    const ed = await store.generate(label('par-ed'), 'Ed25519');
    const ec = await store.generate(label('par-ec'), 'P-256');
    const msgs = Array.from({ length: 40 }, (_, i) => enc(`message ${i}`));
    const sigs = await Promise.all(msgs.map((m, i) => (i % 2 === 0 ? ed : ec).signer().sign(m)));
    for (const [i, m] of msgs.entries()) {
      const k = i % 2 === 0 ? ed : ec;
      const key = publicKeyObject(publicKeyFromJwk(k.info.publicJwk));
      const sig = sigs[i] as Uint8Array;
      expect(i % 2 === 0 ? nodeVerify(null, m, key, sig) : nodeVerify('sha256', m, { key, dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
    }
  });

  it('a closed store refuses work; handles stop working', async () => {
    const s = await Pkcs11KeyStore.open(h.uri('main'), enc('1234'));
    const k = await s.generate(label('closed'), 'Ed25519');
    await s.close();
    await expect(k.signer().sign(enc('x'))).rejects.toThrow(/is closed/);
    await expect(s.list()).rejects.toThrow(/is closed/);
  });

  it('generate refuses a label that exists, and leaves the first key alone', async () => {
    const l = label('dup');
    const k = await store.generate(l, 'Ed25519');
    const err = await store.generate(l, 'X25519').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyStoreError);
    expect((err as KeyStoreError).code).toBe(ErrorCode.KEYSTORE_EXISTS);
    expect((await store.get(l)).info.keyId).toBe(k.info.keyId);
  });

  it.each(['generate', 'import'] as const)('a failure after the objects exist (%s) deletes what was created', async (stage) => {
    const before = (await store.list()).length;
    const l = label(`half-${stage}`);
    _faultInjection.afterObjectsCreated = (s) => {
      if (s === stage) throw new Error('injected failure');
    };
    const attempt =
      stage === 'generate'
        ? store.generate(l, 'Ed25519')
        : (() => {
            const { privateKey } = generateKeyPairSync('x25519');
            const j = privateKey.export({ format: 'jwk' });
            return store.importPrivate(l, { kty: 'OKP', crv: 'X25519', x: String(j.x), d: String(j.d) });
          })();
    const err = await attempt.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain('injected failure');
    _faultInjection.afterObjectsCreated = undefined;
    expect((await store.list()).length).toBe(before);
    await expect(store.get(l)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_NOT_FOUND });
    // no public object either: the label is free again
    const again = await store.generate(l, 'Ed25519');
    expect(again.info.label).toBe(l);
  });

  it('asking for CKM_EC_MONTGOMERY_KEY_PAIR_GEN (CKK_EC_MONTGOMERY) is UnsupportedError naming token and mechanism', async () => {
    const err = await store.generate(label('mont'), 'X25519', { keyType: 'CKK_EC_MONTGOMERY' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedError);
    expect((err as UnsupportedError).code).toBe(ErrorCode.NOT_SUPPORTED);
    expect((err as Error).message).toContain('"main"');
    expect((err as Error).message).toContain('CKM_EC_MONTGOMERY_KEY_PAIR_GEN');
  });

  it('getById finds a key; an unknown id is ERR_PKCS11_OBJECT_NOT_FOUND', async () => {
    const k = await store.generate(label('byid'), 'Ed448');
    const id = parsePkcs11Uri(k.info.location).uri.id as Uint8Array;
    expect((await store.getById(id)).info.keyId).toBe(k.info.keyId);
    const err = await store.getById(new Uint8Array(16)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Pkcs11Error);
    expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_OBJECT_NOT_FOUND);
  });

  it('openKeyStore / openKeyReference open pkcs11: URIs; the location URI finds the key again', async () => {
    const k = await store.generate(label('ref'), 'Ed25519');
    const s2 = await openKeyStore(h.uri('main'), enc('1234'));
    try {
      expect(s2.uri.startsWith('pkcs11:')).toBe(true);
      expect((await s2.list()).some((i) => i.keyId === k.info.keyId)).toBe(true);
    } finally {
      await s2.close();
    }
    const { store: s3, handle } = await openKeyReference(k.info.location, enc('1234'));
    try {
      expect(handle.info.keyId).toBe(k.info.keyId);
      const data = enc('via reference');
      expect(nodeVerify(null, data, publicKeyObject(publicKeyFromJwk(k.info.publicJwk)), await handle.signer().sign(data))).toBe(true);
    } finally {
      await s3.close();
    }
    await expect(openPkcs11KeyReference(h.uri('main'), enc('1234'))).rejects.toMatchObject({ code: ErrorCode.KEY_URI_INVALID });
  });

  it('a URI naming a missing token: ERR_PKCS11_TOKEN_NOT_FOUND listing the tokens present', async () => {
    const err = await Pkcs11KeyStore.open(h.uri('nope'), enc('1234')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Pkcs11Error);
    expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_TOKEN_NOT_FOUND);
    expect((err as Error).message).toContain('token="nope"');
    expect((err as Error).message).toContain('"main"');
    expect((err as Error).message).toContain('"pins"');
  });

  it('a URI without module-path: ERR_PKCS11_MODULE saying how to name it', async () => {
    const saved = process.env['MESHKIT_PKCS11_MODULE'];
    delete process.env['MESHKIT_PKCS11_MODULE'];
    try {
      await expect(Pkcs11KeyStore.open('pkcs11:token=main', enc('1234'))).rejects.toMatchObject({
        code: ErrorCode.PKCS11_MODULE,
        message: expect.stringContaining('module-path'),
      });
    } finally {
      if (saved !== undefined) process.env['MESHKIT_PKCS11_MODULE'] = saved;
    }
  });

  it('pin-source in the URI is used instead of the given PIN', async () => {
    process.env['MESHKIT_TEST_PIN'] = '1234';
    const s = await Pkcs11KeyStore.open(`pkcs11:token=main?module-path=${h.modulePath}&pin-source=env:MESHKIT_TEST_PIN`, () => {
      throw new Error('the PIN function must not be asked');
    });
    await s.close();
  });

  it('a session closed underneath (C_CloseAllSessions) → ERR_PKCS11_TOKEN_REMOVED, not an untyped crash', async () => {
    const k = await store.generate(label('removed'), 'Ed25519');
    const x = await store.generate(label('removed-x'), 'X25519');
    await store.module.closeAllSessions(store.slot);
    const err = await k.signer().sign(enc('after removal')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Pkcs11Error);
    expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_TOKEN_REMOVED);
    expect((err as Pkcs11Error).ckrName).toBe('CKR_SESSION_HANDLE_INVALID');
    const peer = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
    await expect(x.decrypter().deriveSharedSecret({ kty: 'OKP', crv: 'X25519', x: String(peer.x) })).rejects.toMatchObject({
      code: ErrorCode.PKCS11_TOKEN_REMOVED,
    });
    await expect(store.list()).rejects.toMatchObject({ code: ErrorCode.PKCS11_TOKEN_REMOVED });
    await store.close(); // still closes cleanly
    await store.close();
  });

  it('CKA_ALWAYS_AUTHENTICATE: the PIN source is asked again before every signature', async () => {
    let asked = 0;
    const s = await Pkcs11KeyStore.open(h.uri('main'), () => {
      asked += 1;
      return enc('1234');
    });
    try {
      // 1: the token is already logged in through the store of beforeEach (login is per token), and the PIN given
      // here is still checked against that login
      expect(asked).toBe(1);
      const k = await s.generate(label('always'), 'Ed25519', { alwaysAuthenticate: true });
      const data = enc('always authenticate');
      const pub = publicKeyObject(publicKeyFromJwk(k.info.publicJwk));
      expect(nodeVerify(null, data, pub, await k.signer().sign(data))).toBe(true);
      expect(asked).toBe(2);
      expect(nodeVerify(null, data, pub, await (await s.get(k.info.label)).signer().sign(data))).toBe(true);
      expect(asked).toBe(3);
      // a key without CKA_ALWAYS_AUTHENTICATE does not ask
      const plain = await s.generate(label('plain'), 'Ed25519');
      await plain.signer().sign(data);
      expect(asked).toBe(3);
    } finally {
      await s.close();
    }
  });

  it('CKA_ALWAYS_AUTHENTICATE with a wrong context PIN: ERR_PKCS11_PIN_INCORRECT, and the session stays usable', async () => {
    let pin = '1234';
    const s = await Pkcs11KeyStore.open(h.uri('main'), () => enc(pin));
    try {
      const k = await s.generate(label('always-bad'), 'P-256', { alwaysAuthenticate: true });
      pin = '0000';
      await expect(k.signer().sign(enc('x'))).rejects.toMatchObject({ code: ErrorCode.PKCS11_PIN_INCORRECT });
      pin = '1234';
      expect((await k.signer().sign(enc('x'))).length).toBe(64);
    } finally {
      await s.close();
    }
  });

  describe('wrap / unwrap (CKM_AES_KEY_WRAP_PAD)', () => {
    let kek: string;
    beforeAll(async () => {
      const s = await Pkcs11KeyStore.open(h.uri('main'), enc('1234'));
      kek = `kek-${Date.now()}`;
      await s.generateAesKek(kek);
      await s.close();
    });

    it('an extractable P-256 key wraps and unwraps to the same key (signature verifies)', async () => {
      const k = await store.generate(label('wrapme'), 'P-256', { extractable: true });
      expect(k.info.extractable).toBe(true);
      const wrapped = await store.wrapKey(k, kek, 'CKM_AES_KEY_WRAP_PAD');
      expect(wrapped.length).toBeGreaterThan(32);
      await store.delete(k.info.label);
      const u = await store.unwrapKey(wrapped, kek, 'CKM_AES_KEY_WRAP_PAD', { label: label('unwrapped'), publicJwk: k.info.publicJwk });
      expect(u.info.keyId).toBe(k.info.keyId);
      const data = enc('unwrapped');
      expect(nodeVerify('sha256', data, { key: publicKeyObject(publicKeyFromJwk(k.info.publicJwk)), dsaEncoding: 'ieee-p1363' }, await u.signer().sign(data))).toBe(true);
    });

    it('unwrapping under the wrong public key is refused and leaves nothing behind', async () => {
      const k = await store.generate(label('wrap2'), 'P-256', { extractable: true });
      const wrapped = await store.wrapKey(k, kek);
      const other = createPublicKey(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey).export({ format: 'jwk' });
      const l = label('wrong-pub');
      await expect(
        store.unwrapKey(wrapped, kek, 'CKM_AES_KEY_WRAP_PAD', { label: l, publicJwk: { kty: 'EC', crv: 'P-256', x: String(other.x), y: String(other.y) } }),
      ).rejects.toBeInstanceOf(KeyError);
      await expect(store.get(l)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_NOT_FOUND });
    });

    it('SoftHSM refuses to wrap an extractable Ed25519 key: UnsupportedError naming token and mechanism', async () => {
      const k = await store.generate(label('edwrap'), 'Ed25519', { extractable: true });
      const err = await store.wrapKey(k, kek, 'CKM_AES_KEY_WRAP_PAD').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnsupportedError);
      expect((err as Error).message).toContain('"main"');
      expect((err as Error).message).toContain('CKM_AES_KEY_WRAP_PAD');
      expect((err as Error).message).toContain('CKR_KEY_NOT_WRAPPABLE');
    });

    it('a non-extractable key cannot be wrapped: UnsupportedError (CKR_KEY_UNEXTRACTABLE)', async () => {
      const k = await store.generate(label('nowrap'), 'P-256');
      await expect(store.wrapKey(k, kek)).rejects.toThrow(/CKR_KEY_UNEXTRACTABLE/);
      await expect(store.wrapKey(k, kek)).rejects.toBeInstanceOf(UnsupportedError);
    });

    it('a missing key-encryption key is ERR_PKCS11_OBJECT_NOT_FOUND', async () => {
      const k = await store.generate(label('nokek'), 'P-256', { extractable: true });
      await expect(store.wrapKey(k, 'no-such-kek')).rejects.toMatchObject({ code: ErrorCode.PKCS11_OBJECT_NOT_FOUND });
    });
  });

  describe.skipIf(!pkcs11ToolPresent)('interop with OpenSC pkcs11-tool', () => {
    const tool = (...args: string[]): string =>
      execFileSync('pkcs11-tool', ['--module', h.modulePath, '--token-label', 'main', '--login', '--pin', '1234', ...args], {
        env: { ...process.env, SOFTHSM2_CONF: h.conf },
        stdio: 'pipe',
      }).toString('utf8');

    it('pkcs11-tool lists meshkit keys with their label and CKA_ID', async () => {
      const k = await store.generate(label('tool-list'), 'Ed25519');
      const id = Buffer.from(parsePkcs11Uri(k.info.location).uri.id ?? []).toString('hex');
      const out = tool('--list-objects', '--type', 'privkey');
      expect(out).toContain(`label:      ${k.info.label}`);
      expect(out).toContain(`ID:         ${id}`);
    });

    it('a key made by pkcs11-tool (PrintableString curve) is listed, signs, and a shared label is ERR_PKCS11_OBJECT_AMBIGUOUS', async () => {
      const l = label('tool-made');
      tool('--keypairgen', '--key-type', 'EC:edwards25519', '--label', l, '--id', 'a1b2');
      // reopen so SoftHSM re-reads the token directory
      await store.close();
      store = await Pkcs11KeyStore.open(h.uri('main'), enc('1234'));
      const k = await store.get(l);
      expect(k.info.curve).toBe('Ed25519');
      const data = enc('tool key');
      expect(nodeVerify(null, data, publicKeyObject(publicKeyFromJwk(k.info.publicJwk)), await k.signer().sign(data))).toBe(true);

      tool('--keypairgen', '--key-type', 'EC:edwards25519', '--label', l, '--id', 'c3d4');
      await store.close();
      store = await Pkcs11KeyStore.open(h.uri('main'), enc('1234'));
      const err = await store.get(l).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Pkcs11Error);
      expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_OBJECT_AMBIGUOUS);
      expect((err as Error).message).toContain('a1b2');
      expect((err as Error).message).toContain('c3d4');
      // the id picks one
      const byId = await openPkcs11KeyReference(`pkcs11:token=main;object=${l};id=%c3%d4?module-path=${h.modulePath}`, enc('1234'));
      try {
        expect(byId.handle.info.curve).toBe('Ed25519');
      } finally {
        await byId.store.close();
      }
      await expect(store.delete(l)).rejects.toMatchObject({ code: ErrorCode.PKCS11_OBJECT_AMBIGUOUS });
    });
  });
});

describe.skipIf(hsm === undefined)('login faults on SoftHSM2', () => {
  const h = hsm as SoftHsmFixture;

  it('a wrong PIN: ERR_PKCS11_PIN_INCORRECT with CKR_PIN_INCORRECT and what the token reports about tries left', async () => {
    const err = await Pkcs11KeyStore.open(h.uri('pins'), enc('0000')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Pkcs11Error);
    const e = err as Pkcs11Error;
    expect(e.code).toBe(ErrorCode.PKCS11_PIN_INCORRECT);
    expect(e.ckrName).toBe('CKR_PIN_INCORRECT');
    expect(e.operation).toBe('C_Login');
    expect(e.pinStatus).toBeDefined();
    expect(e.message).toMatch(/^user PIN incorrect for token "pins"; the token /);
    // SoftHSM 2.6.1 sets CKF_USER_PIN_COUNT_LOW after a failed login and never locks the PIN.
    const status = e.pinStatus as NonNullable<Pkcs11Error['pinStatus']>;
    if (status.countLow) expect(e.message).toContain('CKF_USER_PIN_COUNT_LOW');
    else expect(e.message).toContain('does not report how many tries are left');
    expect(status.locked).toBe(false);
  });

  it('repeated wrong PINs keep reporting, and the right PIN still works (SoftHSM does not lock)', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const e = (await Pkcs11KeyStore.open(h.uri('pins'), enc('9999')).catch((x: unknown) => x)) as Pkcs11Error;
      expect(e.code).toBe(ErrorCode.PKCS11_PIN_INCORRECT);
      seen.push(JSON.stringify(e.pinStatus));
    }
    console.info(`SoftHSM PIN flags after wrong PINs: ${seen.join(' ')}`);
    const s = await Pkcs11KeyStore.open(h.uri('pins'), enc('2468'));
    expect(s.tokenInfo().pinStatus.countLow).toBe(false);
    await s.close();
  });

  it('a second store on an already logged-in token is held to the same PIN (checked in memory, no try counted)', async () => {
    const first = await Pkcs11KeyStore.open(h.uri('pins'), enc('2468'));
    try {
      const e = (await Pkcs11KeyStore.open(h.uri('pins'), enc('1111')).catch((x: unknown) => x)) as Pkcs11Error;
      expect(e).toBeInstanceOf(Pkcs11Error);
      expect(e.code).toBe(ErrorCode.PKCS11_PIN_INCORRECT);
      expect(e.message).toMatch(/not the PIN this process logged in with/);
      // the token was not asked: it does not report a failed try
      expect(first.tokenInfo().pinStatus.countLow).toBe(false);
      let asked = 0;
      const second = await Pkcs11KeyStore.open(h.uri('pins'), () => {
        asked++;
        return Promise.resolve(enc('2468'));
      });
      expect(asked).toBe(1);
      expect((await second.list()).length).toBeGreaterThanOrEqual(0);
      await second.close();
    } finally {
      await first.close();
    }
  });

  it('an empty PIN or a failing PIN source: KeyStoreError ERR_SECRET_SOURCE', async () => {
    await expect(Pkcs11KeyStore.open(h.uri('pins'), new Uint8Array(0))).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
    await expect(
      Pkcs11KeyStore.open(h.uri('pins'), () => {
        throw new Error('no terminal');
      }),
    ).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
  });
});
