import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, verify as nodeVerify, KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { ed448, x448 } from '@noble/curves/ed448.js';
import { p256 } from '@noble/curves/nist.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { b64u, fromB64u, fromHex, toHex } from '../../src/core/bytes.js';
import { ErrorCode, KeyError, UnsupportedError } from '../../src/core/errors.js';
import {
  curveFromEcParams,
  decodePublicKey,
  ecParams,
  keyId,
  keyIdMeshReference,
  LOW_ORDER_U,
  meshReferenceDer,
  publicKeyFromEcPoint,
  publicKeyFromJwk,
  publicKeyFromPem,
  publicKeyFromRaw,
  publicKeyFromSpki,
  publicKeyObject,
  publicKeyToEcPoint,
  publicKeyToJwk,
  publicKeyToPem,
  publicKeyToSpki,
  signatureAlgorithmFor,
  type PublicKey,
} from '../../src/core/keys.js';
import type { Curve } from '../../src/core/signer.js';
import { udfDigest, udfFormat } from '../../src/core/udf.js';

const vectorFile = (name: string): unknown => JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), 'utf8'));

interface MeshRefVector {
  id: string;
  source: string;
  curve: 'Ed25519' | 'Ed448' | 'X25519' | 'X448';
  era: '2019' | '2021';
  keyHex?: string;
  keyB64u?: string;
  meshDerPrefixHex?: string;
  fingerprint: string;
  oidUdf?: string;
  meshDerPkixKeyinfo?: string;
}
const FP = vectorFile('key-fingerprints.json') as {
  canonical: Array<{ id: string; source: string; curve: Curve; keyHex: string; keyId: string }>;
  meshReference: MeshRefVector[];
  rfc8410Prefixes: Array<{ id: string; source: string; curve: Curve; prefixHex: string }>;
};
const RFC8410 = vectorFile('rfc8410.json') as {
  vectors: Array<{ id: string; source: string; curve: Curve; pem: string; rawHex: string }>;
  privateKeys: Array<{ id: string; source: string; curve: Curve; pem: string; publicRawHex: string }>;
};

const ALL: Curve[] = ['Ed25519', 'Ed448', 'X25519', 'X448', 'P-256'];
const SEED_LEN: Record<Curve, number> = { Ed25519: 32, Ed448: 57, X25519: 32, X448: 56, 'P-256': 32 };

/** A real public key of the curve from a seed (noble). */
function rawFromSeed(curve: Curve, seed: Uint8Array): Uint8Array {
  switch (curve) {
    case 'Ed25519':
      return ed25519.getPublicKey(seed);
    case 'Ed448':
      return ed448.getPublicKey(seed);
    case 'X25519':
      return x25519.getPublicKey(seed);
    case 'X448':
      return x448.getPublicKey(seed);
    case 'P-256':
      return p256.getPublicKey(seed, false);
  }
}

const NODE_TYPE: Record<Curve, 'ed25519' | 'ed448' | 'x25519' | 'x448' | 'ec'> = {
  Ed25519: 'ed25519',
  Ed448: 'ed448',
  X25519: 'x25519',
  X448: 'x448',
  'P-256': 'ec',
};

function nodeKeyPair(curve: Curve) {
  const t = NODE_TYPE[curve];
  return t === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }) : generateKeyPairSync(t as 'ed25519');
}

function expectKeyError(fn: () => unknown, code: string = ErrorCode.KEY_INVALID): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KeyError);
    expect((e as KeyError).code).toBe(code);
    return;
  }
  throw new Error('expected a KeyError');
}

function meshRefRaw(v: MeshRefVector): Uint8Array {
  if (v.keyHex !== undefined) return fromHex(v.keyHex);
  if (v.keyB64u !== undefined) return fromB64u(v.keyB64u);
  throw new Error(`vector ${v.id} has no key`);
}

// ---------------------------------------------------------------------------------------------

describe('key-fingerprints.json: canonical key identifier (digest §7.2)', () => {
  it.each(FP.canonical)('$id ($source): every encoding gives $keyId', (v) => {
    const raw = fromHex(v.keyHex);
    const key = publicKeyFromRaw(v.curve, raw);
    expect(keyId(key)).toBe(v.keyId);
    expect(keyId(publicKeyToJwk(key))).toBe(v.keyId);
    expect(keyId(publicKeyToSpki(key))).toBe(v.keyId);
    expect(keyId(publicKeyFromPem(publicKeyToPem(key)))).toBe(v.keyId);
    expect(keyId(publicKeyFromEcPoint(v.curve, publicKeyToEcPoint(key)))).toBe(v.keyId);
    expect(keyId(publicKeyFromEcPoint(v.curve, raw))).toBe(v.keyId);
    // the SPKI is what node:crypto exports for the same key
    const nodeDer = createPublicKey({ key: { kty: 'OKP', crv: v.curve, x: b64u(raw) }, format: 'jwk' }).export({ type: 'spki', format: 'der' });
    expect(toHex(publicKeyToSpki(key))).toBe(toHex(new Uint8Array(nodeDer)));
    expect(udfDigest(new Uint8Array(nodeDer), { contentType: 'application/pkix-keyinfo', bits: 140 })).toBe(v.keyId);
  });

  it('a different content type changes the identifier (negative check)', () => {
    const v = FP.canonical[0];
    if (v === undefined) throw new Error('no canonical vector');
    const spki = publicKeyToSpki(publicKeyFromRaw(v.curve, fromHex(v.keyHex)));
    expect(udfDigest(spki, { contentType: 'PKIXKey', bits: 140 })).not.toBe(v.keyId);
  });
});

describe('key-fingerprints.json: Mesh reference adapter (digest §2.5 C1, C2, C4/C5, C6)', () => {
  it.each(FP.meshReference)('$id ($source, era $era) → $fingerprint', (v) => {
    const raw = meshRefRaw(v);
    expect(keyIdMeshReference({ curve: v.curve, raw }, v.era)).toBe(v.fingerprint);
    // never equal to the canonical identifier
    if (v.curve === 'Ed25519' || v.curve === 'Ed448') expect(keyId(publicKeyFromRaw(v.curve, raw))).not.toBe(v.fingerprint);
  });

  const c1 = FP.meshReference.find((v) => v.id === 'C1');
  it('C1: Mesh DER prefix, type-112 OID UDF, and Mesh DER under application/pkix-keyinfo', () => {
    if (c1 === undefined || c1.meshDerPrefixHex === undefined || c1.oidUdf === undefined || c1.meshDerPkixKeyinfo === undefined) {
      throw new Error('C1 vector incomplete');
    }
    const raw = meshRefRaw(c1);
    const meshDer = meshReferenceDer('Ed25519', raw);
    expect(toHex(meshDer)).toBe(toHex(fromHex(c1.meshDerPrefixHex)) + toHex(raw));
    expect(udfFormat(112, meshDer)).toBe(c1.oidUdf);
    expect(udfDigest(meshDer, { contentType: 'application/pkix-keyinfo', bits: 140 })).toBe(c1.meshDerPkixKeyinfo);
  });

  it('the adapter rejects wrong eras, curves and lengths', () => {
    const raw = fromHex(FP.meshReference[0]?.keyHex ?? '');
    expect(() => keyIdMeshReference({ curve: 'Ed25519', raw }, '2017' as '2019')).toThrow(RangeError);
    expect(() => keyIdMeshReference({ curve: 'P-256', raw }, '2021')).toThrow(RangeError);
    expect(() => keyIdMeshReference({ curve: 'Ed25519', raw: raw.subarray(1) }, '2021')).toThrow(RangeError);
    expect(() => keyIdMeshReference({ curve: 'X25519', raw: new Uint8Array(34) }, '2021')).toThrow(RangeError);
  });
});

describe('key-fingerprints.json: RFC 8410 SPKI prefixes', () => {
  it.each(FP.rfc8410Prefixes)('$id ($source)', (v) => {
    const raw = rawFromSeed(v.curve, new Uint8Array(SEED_LEN[v.curve]).fill(7));
    const spki = publicKeyToSpki(publicKeyFromRaw(v.curve, raw));
    expect(toHex(spki)).toBe(toHex(fromHex(v.prefixHex)) + toHex(raw));
  });

  it('P-256 SPKI is RFC 5480 (id-ecPublicKey, prime256v1, uncompressed point) and matches node:crypto', () => {
    const { publicKey } = nodeKeyPair('P-256');
    const der = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
    const key = publicKeyFromSpki(der);
    expect(key.raw.length).toBe(65);
    expect(toHex(publicKeyToSpki(key))).toBe(toHex(der));
    expect(toHex(der.subarray(0, 27))).toBe('3059301306072a8648ce3d020106082a8648ce3d03010703420004');
  });
});

describe('rfc8410.json', () => {
  it.each(RFC8410.vectors)('$id ($source): PEM ↔ raw', (v) => {
    const key = publicKeyFromPem(v.pem);
    expect(key.curve).toBe(v.curve);
    expect(toHex(key.raw)).toBe(v.rawHex);
    expect(publicKeyToPem(key)).toBe(v.pem);
    expect(keyId(key)).toBe(keyId(publicKeyFromRaw(v.curve, fromHex(v.rawHex))));
    expect(decodePublicKey(v.pem).raw).toEqual(key.raw);
  });

  it.each(RFC8410.privateKeys)('$id ($source): a PRIVATE KEY PEM is refused; its public key matches', (v) => {
    expectKeyError(() => publicKeyFromPem(v.pem));
    expectKeyError(() => decodePublicKey(v.pem));
    const pub = createPublicKey(createPrivateKey(v.pem)).export({ format: 'jwk' });
    expect(toHex(publicKeyFromJwk(pub).raw)).toBe(v.publicRawHex);
  });
});

// ---------------------------------------------------------------------------------------------

describe('interop with node:crypto for all 5 curves', () => {
  it.each(ALL)('%s: SPKI DER, JWK and PEM from node:crypto decode to the same key and keyId', (curve) => {
    const { publicKey, privateKey } = nodeKeyPair(curve);
    const der = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
    const jwk = publicKey.export({ format: 'jwk' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const fromDer = publicKeyFromSpki(der);
    const fromJwk = publicKeyFromJwk(jwk);
    const fromPem = publicKeyFromPem(pem);
    expect(fromDer.curve).toBe(curve);
    expect(fromJwk.raw).toEqual(fromDer.raw);
    expect(fromPem.raw).toEqual(fromDer.raw);
    expect(publicKeyToPem(fromDer)).toBe(pem);
    const out = publicKeyToJwk(fromDer);
    expect(out.x).toBe(jwk.x);
    expect(out.y).toBe(jwk.y);
    expect(out.kty).toBe(jwk.kty);
    const id = keyId(der);
    expect(keyId(jwk)).toBe(id);
    expect(keyId(fromPem)).toBe(id);
    expect(keyId(publicKeyFromEcPoint(curve, publicKeyToEcPoint(fromDer)))).toBe(id);
    expect(keyId(publicKeyFromEcPoint(curve, publicKeyToEcPoint(fromDer, { derWrapped: false })))).toBe(id);
    expect(decodePublicKey(der).raw).toEqual(fromDer.raw);
    expect(decodePublicKey(JSON.stringify(jwk)).raw).toEqual(fromDer.raw);
    expect(decodePublicKey(new TextEncoder().encode(pem)).raw).toEqual(fromDer.raw);
    // the native KeyObject is the same key
    const obj = publicKeyObject(fromJwk);
    expect(obj).toBeInstanceOf(KeyObject);
    expect(new Uint8Array(obj.export({ type: 'spki', format: 'der' }))).toEqual(der);
    if (curve === 'Ed25519' || curve === 'Ed448' || curve === 'P-256') {
      const msg = new TextEncoder().encode(`hello ${curve}`);
      const sig = nodeSign(curve === 'P-256' ? 'sha256' : null, msg, privateKey);
      expect(nodeVerify(curve === 'P-256' ? 'sha256' : null, msg, obj, sig)).toBe(true);
    }
  });

  it('publicKeyObject caches per key', () => {
    const key = publicKeyFromRaw('Ed25519', rawFromSeed('Ed25519', new Uint8Array(32).fill(3)));
    expect(publicKeyObject(key)).toBe(publicKeyObject({ curve: 'Ed25519', raw: key.raw.slice() }));
    expect(publicKeyObject(key).asymmetricKeyType).toBe('ed25519');
  });

  it('publicKeyObject validates a hand-built key before importing it', () => {
    expectKeyError(() => publicKeyObject({ curve: 'X25519', raw: new Uint8Array(32) }));
    expect(() => publicKeyObject({ curve: 'Ed25519', raw: new Uint8Array(31) })).toThrow(RangeError);
  });
});

describe('property: encodings round-trip with an equal keyId (fast-check)', () => {
  it.each(ALL)('%s', (curve) => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: SEED_LEN[curve], maxLength: SEED_LEN[curve] }), (seed) => {
        let raw: Uint8Array;
        try {
          raw = rawFromSeed(curve, seed);
        } catch {
          return; // P-256: a seed ≥ n or 0 is not a private key
        }
        const key = publicKeyFromRaw(curve, raw);
        const id = keyId(key);
        const viaJwk = publicKeyFromJwk(JSON.parse(JSON.stringify(publicKeyToJwk(key))));
        const viaSpki = publicKeyFromSpki(publicKeyToSpki(key));
        const viaPem = publicKeyFromPem(publicKeyToPem(key));
        const viaPoint = publicKeyFromEcPoint(curve, publicKeyToEcPoint(key));
        const viaBare = publicKeyFromEcPoint(curve, publicKeyToEcPoint(key, { derWrapped: false }));
        for (const k of [viaJwk, viaSpki, viaPem, viaPoint, viaBare]) {
          expect(k.curve).toBe(curve);
          expect(toHex(k.raw)).toBe(toHex(raw));
          expect(keyId(k)).toBe(id);
        }
        expect(keyId(publicKeyToSpki(key))).toBe(id);
        expect(keyId(publicKeyToJwk(key))).toBe(id);
      }),
      { numRuns: 25 },
    );
  });
});

describe('P-256 compressed points', () => {
  it('are accepted (raw, EC_POINT) and normalised to 65 bytes with the same keyId', () => {
    const sk = new Uint8Array(32).fill(9);
    const full = p256.getPublicKey(sk, false);
    const compressed = p256.getPublicKey(sk, true);
    const a = publicKeyFromRaw('P-256', compressed);
    expect(a.raw).toEqual(full);
    expect(keyId(a)).toBe(keyId(publicKeyFromRaw('P-256', full)));
    expect(publicKeyFromEcPoint('P-256', Uint8Array.of(0x04, 33, ...compressed)).raw).toEqual(full);
    expect(publicKeyFromEcPoint('P-256', Uint8Array.of(0x04, 65, ...full)).raw).toEqual(full);
  });
});

describe('CKA_EC_PARAMS', () => {
  it.each(ALL)('%s: ecParams is the DER OID and round-trips', (curve) => {
    const params = ecParams(curve);
    expect(params[0]).toBe(0x06);
    expect(curveFromEcParams(params)).toBe(curve);
  });
  it('OID bytes are the RFC 8410 / prime256v1 ones', () => {
    expect(toHex(ecParams('Ed25519'))).toBe('06032b6570');
    expect(toHex(ecParams('Ed448'))).toBe('06032b6571');
    expect(toHex(ecParams('X25519'))).toBe('06032b656e');
    expect(toHex(ecParams('X448'))).toBe('06032b656f');
    expect(toHex(ecParams('P-256'))).toBe('06082a8648ce3d030107');
  });
  it.each([
    ['edwards25519', 'Ed25519'],
    ['edwards448', 'Ed448'],
    ['curve25519', 'X25519'],
    ['curve448', 'X448'],
  ] as const)('PrintableString "%s" → %s', (name, curve) => {
    const bytes = new TextEncoder().encode(name);
    expect(curveFromEcParams(Uint8Array.of(0x13, bytes.length, ...bytes))).toBe(curve);
  });
  it('rejects other curves, tags and malformed DER', () => {
    const secp384 = Uint8Array.of(0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22);
    expect(() => curveFromEcParams(secp384)).toThrow(UnsupportedError);
    const other = new TextEncoder().encode('secp256k1');
    expect(() => curveFromEcParams(Uint8Array.of(0x13, other.length, ...other))).toThrow(UnsupportedError);
    expectKeyError(() => curveFromEcParams(Uint8Array.of(0x04, 0x03, 0x2b, 0x65, 0x70)));
    expectKeyError(() => curveFromEcParams(Uint8Array.of(0x06, 0x03, 0x2b, 0x65, 0x70, 0x00)));
    expectKeyError(() => curveFromEcParams(Uint8Array.of(0x06, 0x04, 0x2b, 0x65, 0x70)));
    expect(() => curveFromEcParams('06032b6570' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('signatureAlgorithmFor', () => {
  it('maps signing curves and refuses key-agreement curves', () => {
    expect(signatureAlgorithmFor('Ed25519')).toBe('EdDSA');
    expect(signatureAlgorithmFor('Ed448')).toBe('EdDSA');
    expect(signatureAlgorithmFor('P-256')).toBe('ES256');
    expect(() => signatureAlgorithmFor('X25519')).toThrow(UnsupportedError);
    expect(() => signatureAlgorithmFor('X448')).toThrow(UnsupportedError);
    expect(() => signatureAlgorithmFor('secp256k1' as Curve)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------------------------

describe('bad inputs → typed errors', () => {
  const ed = publicKeyFromRaw('Ed25519', rawFromSeed('Ed25519', new Uint8Array(32).fill(1)));
  const edSpki = publicKeyToSpki(ed);

  it('argument types and lengths: TypeError / RangeError naming the field', () => {
    expect(() => publicKeyFromRaw('Ed25519', 'abc' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => publicKeyFromRaw('Ed25519', new Uint8Array(31))).toThrow(/"raw" expected Uint8Array of length 32, got length=31/);
    expect(() => publicKeyFromRaw('Ed448', new Uint8Array(56))).toThrow(RangeError);
    expect(() => publicKeyFromRaw('X448', new Uint8Array(57))).toThrow(RangeError);
    expect(() => publicKeyFromRaw('P-256', new Uint8Array(64))).toThrow(RangeError);
    expect(() => publicKeyFromRaw('RSA' as Curve, new Uint8Array(32))).toThrow(RangeError);
    expect(() => publicKeyFromRaw(7 as unknown as Curve, new Uint8Array(32))).toThrow(TypeError);
    expect(() => publicKeyFromJwk(null)).toThrow(TypeError);
    expect(() => publicKeyFromJwk('{}')).toThrow(TypeError);
    expect(() => publicKeyFromSpki([1, 2] as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => publicKeyFromPem(5 as unknown as string)).toThrow(TypeError);
    expect(() => keyId('MDTU' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => decodePublicKey(42 as unknown as string)).toThrow(TypeError);
  });

  it('Edwards points that do not decode, are small order or non-canonical', () => {
    // y = 2 is not on edwards25519 (no x); all-0xFF is y ≥ p
    const y2 = new Uint8Array(32);
    y2[0] = 2;
    expectKeyError(() => publicKeyFromRaw('Ed25519', y2));
    expectKeyError(() => publicKeyFromRaw('Ed25519', new Uint8Array(32).fill(0xff)));
    // identity (y = 1) and the order-2 point (y = p − 1) are small order
    const identity = new Uint8Array(32);
    identity[0] = 1;
    expectKeyError(() => publicKeyFromRaw('Ed25519', identity));
    const order2 = fromHex('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
    expectKeyError(() => publicKeyFromRaw('Ed25519', order2));
    const id448 = new Uint8Array(57);
    id448[0] = 1;
    expectKeyError(() => publicKeyFromRaw('Ed448', id448));
    expectKeyError(() => publicKeyFromRaw('Ed448', new Uint8Array(57).fill(0xff)));
  });

  it('tampered bytes: a flipped bit either fails to decode or gives a different keyId', () => {
    const raw = ed.raw.slice();
    raw[5] = (raw[5] ?? 0) ^ 0x01;
    let other: string | undefined;
    try {
      other = keyId(publicKeyFromRaw('Ed25519', raw));
    } catch (e) {
      expect(e).toBeInstanceOf(KeyError);
    }
    expect(other).not.toBe(keyId(ed));
  });

  it('X25519 / X448: small-order, non-canonical and twist u values', () => {
    for (const u of LOW_ORDER_U.X25519) {
      const b = new Uint8Array(32);
      let n = u;
      for (let i = 0; i < 32; i++, n >>= 8n) b[i] = Number(n & 0xffn);
      expectKeyError(() => publicKeyFromRaw('X25519', b));
    }
    for (const u of LOW_ORDER_U.X448) {
      const b = new Uint8Array(56);
      let n = u;
      for (let i = 0; i < 56; i++, n >>= 8n) b[i] = Number(n & 0xffn);
      expectKeyError(() => publicKeyFromRaw('X448', b));
    }
    expectKeyError(() => publicKeyFromRaw('X25519', new Uint8Array(32).fill(0xff))); // ≥ p, high bit set
    expectKeyError(() => publicKeyFromRaw('X448', new Uint8Array(56).fill(0xff)));
    // u = 2 is on the twist of curve25519 (2³ + A·4 + 2 is a non-square)
    const two = new Uint8Array(32);
    two[0] = 2;
    expectKeyError(() => publicKeyFromRaw('X25519', two));
  });

  it('P-256 points off the curve', () => {
    const full = p256.getPublicKey(new Uint8Array(32).fill(5), false);
    const bad = full.slice();
    bad[64] = (bad[64] ?? 0) ^ 1;
    expectKeyError(() => publicKeyFromRaw('P-256', bad));
    const wrongPrefix = full.slice();
    wrongPrefix[0] = 0x05;
    expectKeyError(() => publicKeyFromRaw('P-256', wrongPrefix));
  });

  it('JWK: private members, mismatched kty/crv, bad base64url, wrong lengths', () => {
    const jwk = publicKeyToJwk(ed);
    expectKeyError(() => publicKeyFromJwk({ ...jwk, d: 'AAAA' }));
    const p256Jwk = publicKeyToJwk(publicKeyFromRaw('P-256', p256.getPublicKey(new Uint8Array(32).fill(5), false)));
    expectKeyError(() => publicKeyFromJwk({ ...p256Jwk, d: 'AAAA' }));
    expectKeyError(() => publicKeyFromJwk({ ...jwk, kty: 'EC' }));
    expectKeyError(() => publicKeyFromJwk({ ...p256Jwk, kty: 'OKP' }));
    expectKeyError(() => publicKeyFromJwk({ ...jwk, crv: 'Ed448' })); // 32-byte x for a 57-byte curve
    expectKeyError(() => publicKeyFromJwk({ kty: 'OKP', crv: 'Ed25519' }));
    expectKeyError(() => publicKeyFromJwk({ ...jwk, x: jwk.x + '=' }));
    expectKeyError(() => publicKeyFromJwk({ ...jwk, x: '+' + jwk.x.slice(1) })); // base64, not base64url
    expectKeyError(() => publicKeyFromJwk({ ...jwk, x: ` ${jwk.x}` }));
    expectKeyError(() => publicKeyFromJwk({ ...jwk, x: jwk.x.slice(0, -2) }));
    expectKeyError(() => publicKeyFromJwk({ ...jwk, y: jwk.x }));
    expectKeyError(() => publicKeyFromJwk({ ...p256Jwk, y: undefined }));
    expectKeyError(() => publicKeyFromJwk({ ...jwk, x: 5 }));
    expect(() => publicKeyFromJwk({ kty: 'RSA', n: 'AQAB', e: 'AQAB' })).toThrow(UnsupportedError);
    expect(() => publicKeyFromJwk({ kty: 'EC', crv: 'P-384', x: 'AA', y: 'AA' })).toThrow(UnsupportedError);
    expect(() => keyId({ ...jwk, d: 'AAAA' } as unknown as PublicKey)).toThrow(KeyError);
  });

  it('SPKI: trailing bytes, wrong OID, parameters, bad lengths, wrong unused bits', () => {
    expectKeyError(() => publicKeyFromSpki(Uint8Array.of(...edSpki, 0)));
    expectKeyError(() => publicKeyFromSpki(edSpki.subarray(0, edSpki.length - 1)));
    const wrongOid = edSpki.slice();
    wrongOid[8] = 0x72; // 1.3.101.114 (not a key OID)
    expect(() => publicKeyFromSpki(wrongOid)).toThrow(UnsupportedError);
    const outerLen = edSpki.slice();
    outerLen[1] = 0x2b;
    expectKeyError(() => publicKeyFromSpki(outerLen));
    const unusedBits = edSpki.slice();
    unusedBits[11] = 0x01;
    expectKeyError(() => publicKeyFromSpki(unusedBits));
    // the Mesh reference DER (NULL parameter + OCTET STRING) is not RFC 8410
    expectKeyError(() => publicKeyFromSpki(meshReferenceDer('Ed25519', ed.raw)));
    // long-form length where short form is required (non-minimal DER)
    const nonMinimal = Uint8Array.of(0x30, 0x81, 0x2a, ...edSpki.subarray(2));
    expectKeyError(() => publicKeyFromSpki(nonMinimal));
    // ecPublicKey with another named curve (secp384r1)
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey.export({ type: 'spki', format: 'der' });
    expect(() => publicKeyFromSpki(new Uint8Array(p384))).toThrow(UnsupportedError);
    // RSA
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'der' });
    expect(() => publicKeyFromSpki(new Uint8Array(rsa))).toThrow(UnsupportedError);
    expectKeyError(() => publicKeyFromSpki(new Uint8Array(0)));
  });

  it('PEM: wrong labels, bad base64, two blocks', () => {
    const pem = publicKeyToPem(ed);
    expectKeyError(() => publicKeyFromPem(pem.replace(/PUBLIC KEY/g, 'CERTIFICATE')));
    expectKeyError(() => publicKeyFromPem(pem.replace('-----END PUBLIC KEY-----', '-----END PRIVATE KEY-----')));
    expectKeyError(() => publicKeyFromPem(pem.replace('MC', 'M!')));
    expectKeyError(() => publicKeyFromPem(pem + pem));
    expectKeyError(() => publicKeyFromPem('not a pem'));
    expect(publicKeyFromPem(`\n  ${pem.replace(/\n/g, '\r\n')}\n`).raw).toEqual(ed.raw);
  });

  it('EC_POINT: wrong lengths and broken wrapping', () => {
    expectKeyError(() => publicKeyFromEcPoint('Ed25519', new Uint8Array(33)));
    expectKeyError(() => publicKeyFromEcPoint('Ed25519', Uint8Array.of(0x04, 0x21, ...ed.raw)));
    expectKeyError(() => publicKeyFromEcPoint('Ed25519', Uint8Array.of(0x04, 0x20, ...ed.raw, 0)));
    expectKeyError(() => publicKeyFromEcPoint('Ed448', Uint8Array.of(0x04, 0x20, ...ed.raw)));
  });

  it('decodePublicKey: neither PEM, JWK nor DER', () => {
    expectKeyError(() => decodePublicKey('hello'));
    expectKeyError(() => decodePublicKey('{not json'));
    expectKeyError(() => decodePublicKey('[1,2]'));
    expectKeyError(() => decodePublicKey(Uint8Array.of(1, 2, 3)));
  });
});
