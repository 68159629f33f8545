/**
 * The KeyStore contract: the same assertions for every place a private key can live — the software
 * store, SoftHSM2 through PKCS#11, and real tokens (hardware-test/). Written against the KeyStore
 * interface only.
 *
 * Usage: `runKeyStoreContract('software', () => SoftwareKeyStore.open(...), { curves: [...] })`.
 * `makeStore` is called before each test and the store is closed after it; every key a test
 * creates gets a unique label and is deleted afterwards, so a persistent token stays clean.
 */
import { createPublicKey, diffieHellman, generateKeyPairSync, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, KeyError, KeyStoreError, UnsupportedError } from '../../src/core/errors.js';
import { signJws, verifyJws } from '../../src/core/jose.js';
import { keyId, publicKeyFromJwk, publicKeyObject } from '../../src/core/keys.js';
import type { Curve, PublicJwk } from '../../src/core/signer.js';
import type { KeyHandle, KeyStore, KeyUsage, PrivateJwk } from '../../src/keystore/types.js';

/** What a store under test can do. */
export interface KeyStoreContractOptions {
  /** Curves the store supports (default all five). */
  curves?: readonly Curve[];
  /** Whether importPrivate is supported (default true); false: it must be refused with ERR_NOT_SUPPORTED, leaving nothing. */
  supportsImport?: boolean;
  /** Whether P-256 keys can be created with usage 'derive' (default true). */
  supportsP256Derive?: boolean;
}

const ALL: readonly Curve[] = ['Ed25519', 'Ed448', 'X25519', 'X448', 'P-256'];
const SIG_LENGTH: Record<string, number> = { Ed25519: 64, Ed448: 114, 'P-256': 64 };
const Z_LENGTH: Record<string, number> = { X25519: 32, X448: 56, 'P-256': 32 };

function nodePair(curve: Curve): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (curve) {
    case 'Ed25519':
      return generateKeyPairSync('ed25519');
    case 'Ed448':
      return generateKeyPairSync('ed448');
    case 'X25519':
      return generateKeyPairSync('x25519');
    case 'X448':
      return generateKeyPairSync('x448');
    case 'P-256':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  }
}

function jwkOf(key: KeyObject): PublicJwk {
  const j = (key.type === 'public' ? key : createPublicKey(key)).export({ format: 'jwk' });
  return { kty: j.kty as 'OKP' | 'EC', crv: j.crv as Curve, x: String(j.x), ...(j.y === undefined ? {} : { y: String(j.y) }) };
}

function privateJwkOf(key: KeyObject): PrivateJwk {
  const j = key.export({ format: 'jwk' });
  return { ...jwkOf(key), d: String(j.d) };
}

function nodeVerifies(curve: Curve, publicJwk: PublicJwk, data: Uint8Array, sig: Uint8Array): boolean {
  const key = publicKeyObject(publicKeyFromJwk(publicJwk));
  return curve === 'P-256' ? nodeVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig) : nodeVerify(null, data, key, sig);
}

/** Registers the contract suite for one store. */
export function runKeyStoreContract(name: string, makeStore: () => Promise<KeyStore>, options: KeyStoreContractOptions = {}): void {
  const curves = options.curves ?? ALL;
  const signCurves = curves.filter((c) => c === 'Ed25519' || c === 'Ed448' || c === 'P-256');
  const deriveCases: Array<{ curve: Curve; usage?: KeyUsage }> = curves
    .filter((c) => c === 'X25519' || c === 'X448' || (c === 'P-256' && options.supportsP256Derive !== false))
    .map((c) => (c === 'P-256' ? { curve: c, usage: 'derive' as const } : { curve: c }));
  const supportsImport = options.supportsImport !== false;
  const defaultUsageOf = (c: Curve): KeyUsage => (c === 'X25519' || c === 'X448' ? 'derive' : 'sign');
  const run = Math.random().toString(36).slice(2, 8);
  let counter = 0;

  describe(`KeyStore contract: ${name}`, () => {
    let store: KeyStore;
    let created: string[];
    const label = (hint: string): string => {
      const l = `contract-${run}-${++counter}-${hint}`;
      created.push(l);
      return l;
    };
    const fresh = async (curve: Curve, usage?: KeyUsage): Promise<KeyHandle> =>
      store.generate(label(curve), curve, usage === undefined ? {} : { usage });

    beforeEach(async () => {
      created = [];
      store = await makeStore();
    });
    afterEach(async () => {
      for (const l of created) await store.delete(l).catch(() => undefined);
      await store.close();
    });

    it('has a uri', () => {
      expect(typeof store.uri).toBe('string');
      expect(store.uri.length).toBeGreaterThan(0);
    });

    it.each(curves.map((c) => [c]))('generate %s: info is complete and keyId is the key UDF', async (curve) => {
      const l = label(curve);
      const h = await store.generate(l, curve);
      expect(h.info.label).toBe(l);
      expect(h.info.curve).toBe(curve);
      expect(h.info.usage).toBe(defaultUsageOf(curve));
      expect(h.info.extractable).toBe(false);
      expect(publicKeyFromJwk(h.info.publicJwk).curve).toBe(curve);
      expect(h.info.keyId).toBe(keyId(h.info.publicJwk));
      expect(h.info.keyId).toMatch(/^M[A-Z2-7]{3}(-[A-Z2-7]{4}){6}$/);
      expect(h.info.location.length).toBeGreaterThan(0);
      expect(h.info.publicJwk).not.toHaveProperty('d');
    });

    it.each(signCurves.map((c) => [c]))('sign %s: node:crypto and verifyJws accept, a changed message fails', async (curve) => {
      const h = await fresh(curve);
      const signer = h.signer();
      expect(signer.keyId).toBe(h.info.keyId);
      expect(signer.algorithm).toBe(curve === 'P-256' ? 'ES256' : 'EdDSA');
      expect(keyId(signer.publicJwk)).toBe(h.info.keyId);
      const data = new TextEncoder().encode(`contract message for ${curve}`);
      const sig = await signer.sign(data);
      expect(sig).toBeInstanceOf(Uint8Array);
      expect(sig.length).toBe(SIG_LENGTH[curve]);
      expect(nodeVerifies(curve, h.info.publicJwk, data, sig)).toBe(true);
      const other = data.slice();
      other[0] = (other[0] ?? 0) ^ 1;
      expect(nodeVerifies(curve, h.info.publicJwk, other, sig)).toBe(false);

      const jws = await signJws(data, [signer], { cty: 'Contract' });
      const verified = await verifyJws(jws, (kid) => (kid === h.info.keyId ? h.info.publicJwk : undefined));
      expect(verified.keyId).toBe(h.info.keyId);
      expect(verified.protectedHeader['kid']).toBe(h.info.keyId);
      expect(Buffer.from(verified.payload).equals(Buffer.from(data))).toBe(true);
    });

    it.each(deriveCases.map((c) => [c.curve, c.usage]))('derive %s: equals node:crypto diffieHellman with a peer', async (curve, usage) => {
      const h = await fresh(curve, usage);
      expect(h.info.usage).toBe('derive');
      const dec = h.decrypter();
      expect(dec.keyId).toBe(h.info.keyId);
      const peer = nodePair(curve);
      const z = await dec.deriveSharedSecret(jwkOf(peer.publicKey));
      const expected = diffieHellman({ privateKey: peer.privateKey, publicKey: publicKeyObject(publicKeyFromJwk(h.info.publicJwk)) });
      expect(z.length).toBe(Z_LENGTH[curve]);
      expect(Buffer.from(z).equals(expected)).toBe(true);
    });

    it.each(deriveCases.map((c) => [c.curve, c.usage]))('derive %s: a peer key of another curve is refused', async (curve, usage) => {
      const h = await fresh(curve, usage);
      const wrong: Curve = curve === 'X25519' ? 'X448' : 'X25519';
      await expect(h.decrypter().deriveSharedSecret(jwkOf(nodePair(wrong).publicKey))).rejects.toBeInstanceOf(KeyError);
    });

    it('usage is enforced: no signer for a derive key, no decrypter for a sign key', async () => {
      const d = deriveCases[0];
      if (d !== undefined) {
        const h = await fresh(d.curve, d.usage);
        expect(() => h.signer()).toThrow(UnsupportedError);
      }
      const s = signCurves[0];
      if (s !== undefined) {
        const h = await fresh(s);
        expect(() => h.decrypter()).toThrow(UnsupportedError);
      }
      expect(d ?? s).toBeDefined();
    });

    it('get returns the same key as generate, and its signer works', async () => {
      const curve = signCurves[0] ?? curves[0] ?? 'Ed25519';
      const h = await fresh(curve);
      const g = await store.get(h.info.label);
      expect(g.info.keyId).toBe(h.info.keyId);
      expect(g.info.publicJwk).toEqual(h.info.publicJwk);
      expect(g.info.curve).toBe(curve);
      if (g.info.usage === 'sign') {
        const data = new TextEncoder().encode('via get');
        expect(nodeVerifies(curve, h.info.publicJwk, data, await g.signer().sign(data))).toBe(true);
      }
    });

    it('list shows every generated key with its public information', async () => {
      const handles: KeyHandle[] = [];
      for (const c of curves.slice(0, 3)) handles.push(await fresh(c));
      const listed = await store.list();
      for (const h of handles) {
        const found = listed.find((i) => i.label === h.info.label);
        expect(found).toBeDefined();
        expect(found?.keyId).toBe(h.info.keyId);
        expect(found?.curve).toBe(h.info.curve);
        expect(found?.usage).toBe(h.info.usage);
        expect(found?.publicJwk).toEqual(h.info.publicJwk);
      }
      for (const i of listed) expect(i.publicJwk).not.toHaveProperty('d');
    });

    it('get of a missing label: ERR_KEYSTORE_NOT_FOUND listing the labels present', async () => {
      const h = await fresh(curves[0] ?? 'Ed25519');
      const missing = `contract-${run}-missing`;
      const err = await store.get(missing).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(KeyStoreError);
      expect((err as KeyStoreError).code).toBe(ErrorCode.KEYSTORE_NOT_FOUND);
      expect((err as Error).message).toContain(missing);
      expect((err as Error).message).toContain(h.info.label);
    });

    it('generate on an existing label: ERR_KEYSTORE_EXISTS and the key is unchanged', async () => {
      const curve = curves[0] ?? 'Ed25519';
      const h = await fresh(curve);
      await expect(store.generate(h.info.label, curve)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_EXISTS });
      expect((await store.get(h.info.label)).info.keyId).toBe(h.info.keyId);
    });

    it('delete removes the key; deleting again is ERR_KEYSTORE_NOT_FOUND', async () => {
      const h = await fresh(curves[0] ?? 'Ed25519');
      await store.delete(h.info.label);
      await expect(store.get(h.info.label)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_NOT_FOUND });
      expect((await store.list()).some((i) => i.label === h.info.label)).toBe(false);
      await expect(store.delete(h.info.label)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_NOT_FOUND });
    });

    it('a non-extractable key cannot be exported', async () => {
      const h = await fresh(curves[0] ?? 'Ed25519');
      await expect(h.exportPrivateJwk()).rejects.toBeInstanceOf(UnsupportedError);
    });

    it('bad arguments: unknown curve, empty label', async () => {
      await expect(store.generate(label('bad'), 'secp256k1' as Curve)).rejects.toBeInstanceOf(RangeError);
      await expect(store.generate('', curves[0] ?? 'Ed25519')).rejects.toBeInstanceOf(RangeError);
    });

    if (supportsImport) {
      it.each(curves.map((c) => [c]))('importPrivate %s: same keyId as the public key, and the key works', async (curve) => {
        const pair = nodePair(curve);
        const publicJwk = jwkOf(pair.publicKey);
        const usage = defaultUsageOf(curve);
        const h = await store.importPrivate(label(`import-${curve}`), privateJwkOf(pair.privateKey));
        expect(h.info.keyId).toBe(keyId(publicJwk));
        expect(h.info.curve).toBe(curve);
        expect(h.info.usage).toBe(usage);
        if (usage === 'sign') {
          const data = new TextEncoder().encode('imported');
          expect(nodeVerifies(curve, publicJwk, data, await h.signer().sign(data))).toBe(true);
        } else {
          const peer = nodePair(curve);
          const z = await h.decrypter().deriveSharedSecret(jwkOf(peer.publicKey));
          expect(Buffer.from(z).equals(diffieHellman({ privateKey: peer.privateKey, publicKey: pair.publicKey }))).toBe(true);
        }
      });

      it('importPrivate refuses a JWK whose public part does not belong to d', async () => {
        const curve = curves[0] ?? 'Ed25519';
        const a = privateJwkOf(nodePair(curve).privateKey);
        const b = jwkOf(nodePair(curve).publicKey);
        const l = label('mismatch');
        await expect(store.importPrivate(l, { ...b, d: a.d })).rejects.toMatchObject({ code: ErrorCode.KEY_INVALID });
        await expect(store.get(l)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_NOT_FOUND });
      });
    } else {
      it.each(curves.map((c) => [c]))('importPrivate %s is refused: UnsupportedError, nothing left behind', async (curve) => {
        const l = label(`import-${curve}`);
        const err = await store.importPrivate(l, privateJwkOf(nodePair(curve).privateKey)).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(UnsupportedError);
        expect((err as UnsupportedError).code).toBe(ErrorCode.NOT_SUPPORTED);
        await expect(store.get(l)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_NOT_FOUND });
        expect((await store.list()).some((i) => i.label === l)).toBe(false);
      });
    }

    it('close is idempotent', async () => {
      await store.close();
      await store.close();
    });
  });
}
