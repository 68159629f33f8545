/**
 * TEST-ONLY Signer / Decrypter built on node:crypto KeyObjects, for the core's tests.
 * (The product's software key store lives in src/keystore; this helper is deliberately minimal.)
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { keyId } from '../../src/core/keys.js';
import type { Curve, Decrypter, PublicJwk, Signer } from '../../src/core/signer.js';

export interface TestKey {
  curve: Curve;
  privateKey: KeyObject;
  publicJwk: PublicJwk;
  /** The private JWK (with d). */
  privateJwk: PublicJwk & { d: string };
  keyId: string;
}

function generate(curve: Curve): KeyObject {
  switch (curve) {
    case 'Ed25519': return generateKeyPairSync('ed25519').privateKey;
    case 'Ed448': return generateKeyPairSync('ed448').privateKey;
    case 'X25519': return generateKeyPairSync('x25519').privateKey;
    case 'X448': return generateKeyPairSync('x448').privateKey;
    case 'P-256': return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  }
}

/** A fresh key of `curve`, or the key given as a private JWK. */
export function testKey(curve: Curve, privateJwk?: Record<string, string>): TestKey {
  const privateKey = privateJwk === undefined ? generate(curve) : createPrivateKey({ key: privateJwk, format: 'jwk' });
  const pj = createPublicKey(privateKey).export({ format: 'jwk' });
  const publicJwk: PublicJwk = pj.kty === 'EC'
    ? { kty: 'EC', crv: curve, x: String(pj.x), y: String(pj.y) }
    : { kty: 'OKP', crv: curve, x: String(pj.x) };
  const d = String(privateKey.export({ format: 'jwk' }).d);
  return { curve, privateKey, publicJwk, privateJwk: { ...publicJwk, d }, keyId: keyId(publicJwk) };
}

/** A Signer over a test key; `override` replaces members (to build misbehaving signers). */
export function testSigner(key: TestKey, override: Partial<Signer> = {}): Signer {
  const algorithm = key.curve === 'P-256' ? 'ES256' : 'EdDSA';
  const base: Signer = {
    keyId: key.keyId,
    algorithm,
    publicJwk: key.publicJwk,
    sign: async (data: Uint8Array) =>
      new Uint8Array(key.curve === 'P-256'
        ? sign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' })
        : sign(null, data, key.privateKey)),
  };
  return { ...base, ...override };
}

/** A Decrypter over a test key (X25519, X448 or P-256). */
export function testDecrypter(key: TestKey, override: Partial<Decrypter> = {}): Decrypter {
  const base: Decrypter = {
    keyId: key.keyId,
    publicJwk: key.publicJwk,
    deriveSharedSecret: async (peer: PublicJwk) =>
      new Uint8Array(diffieHellman({
        privateKey: key.privateKey,
        publicKey: createPublicKey({ key: { ...peer } as import('node:crypto').JsonWebKey, format: 'jwk' }),
      })),
  };
  return { ...base, ...override };
}
