import { createPrivateKey, diffieHellman, verify as nodeVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ED25519_TORSION_SUBGROUP, ed25519, x25519 } from '@noble/curves/ed25519.js';
import { ed448, x448 } from '@noble/curves/ed448.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { shake256 } from '@noble/hashes/sha3.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { b64u, bigIntToBytesLE, bytesToBigIntLE, fromHex, toHex } from '../../src/core/bytes.js';
import {
  combinePublicKeys,
  combineScalars,
  combineWithScalar,
  ecdhWithScalar,
  edwardsToMontgomery,
  GROUP_ORDER,
  montgomeryExtendedFromScalar,
  publicKeyFromScalar,
  secretScalarFromSeed,
  signWithScalar,
} from '../../src/core/cogen.js';
import { ErrorCode, KeyError } from '../../src/core/errors.js';
import { publicKeyFromRaw, publicKeyObject } from '../../src/core/keys.js';
import { invert, mod, P25519, pow25519Pm5d8, powMod } from '../../src/core/field.js';

const vectorFile = (name: string): unknown => JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), 'utf8'));

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
const RFC8032 = (vectorFile('rfc8032.json') as { vectors: Rfc8032Vector[] }).vectors;
const RFC7748 = (
  vectorFile('rfc7748.json') as {
    vectors: Array<{ id: string; source: string; curve: 'X25519' | 'X448'; alicePrivate: string; alicePublic: string; bobPrivate: string; bobPublic: string; shared: string }>;
  }
).vectors;
interface ThresholdKey {
  udf: string;
  scalar: string;
  private: string;
  public: string;
}
const T06 = vectorFile('threshold-06.json') as {
  X25519: { id: string; source: string; key1: ThresholdKey; key2: ThresholdKey; composite: { scalar: string; private: string; publicUnsigned: string } };
  Ed25519: { id: string; source: string; key1: ThresholdKey; key2SameAsKey1: boolean; composite: { scalar: string; private: string; public: string } };
};

function expectKeyError(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KeyError);
    expect((e as KeyError).code).toBe(ErrorCode.KEY_INVALID);
    return;
  }
  throw new Error('expected a KeyError');
}

/** Verifies an EdDSA signature with node:crypto through meshkit's key path. */
function nativeVerify(curve: 'Ed25519' | 'Ed448', pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  return nodeVerify(null, msg, publicKeyObject(publicKeyFromRaw(curve, pub)), sig);
}

function nobleVerify(curve: 'Ed25519' | 'Ed448', pub: Uint8Array, msg: Uint8Array, sig: Uint8Array, context?: Uint8Array): boolean {
  return curve === 'Ed25519'
    ? ed25519.verify(sig, msg, pub, { zip215: false })
    : ed448.verify(sig, msg, pub, context === undefined ? { zip215: false } : { context, zip215: false });
}

/** The RFC 8032 nonce prefix of a seed: second half of SHA-512(seed) or SHAKE256(seed, 114). */
function rfcPrefix(curve: 'Ed25519' | 'Ed448', seed: Uint8Array): Uint8Array {
  return curve === 'Ed25519' ? sha512(seed).slice(32) : shake256(seed, { dkLen: 114 }).slice(57);
}

// ---------------------------------------------------------------------------------------------

describe('rfc8032.json', () => {
  it.each(RFC8032)('$id ($source): public key via noble and via secretScalarFromSeed + publicKeyFromScalar', (v) => {
    const seed = fromHex(v.secretKey);
    const expected = v.publicKey;
    expect(toHex(v.curve === 'Ed25519' ? ed25519.getPublicKey(seed) : ed448.getPublicKey(seed))).toBe(expected);
    const s = secretScalarFromSeed(v.curve, seed);
    expect(toHex(publicKeyFromScalar(v.curve, s))).toBe(expected);
  });

  it.each(RFC8032)('$id ($source): noble reproduces the RFC signature, node:crypto verifies it', (v) => {
    const seed = fromHex(v.secretKey);
    const msg = fromHex(v.message);
    const ctx = v.context === undefined ? undefined : fromHex(v.context);
    const sig = v.curve === 'Ed25519' ? ed25519.sign(msg, seed) : ed448.sign(msg, seed, ctx === undefined ? {} : { context: ctx });
    expect(toHex(sig)).toBe(v.signature);
    expect(nobleVerify(v.curve, fromHex(v.publicKey), msg, sig, ctx)).toBe(true);
    if (ctx === undefined) expect(nativeVerify(v.curve, fromHex(v.publicKey), msg, sig)).toBe(true);
  });

  it.each(RFC8032)('$id ($source): signWithScalar with the RFC nonce prefix reproduces the RFC signature', (v) => {
    const seed = fromHex(v.secretKey);
    const msg = fromHex(v.message);
    const s = secretScalarFromSeed(v.curve, seed);
    const opts = { noncePrefix: rfcPrefix(v.curve, seed), ...(v.context === undefined ? {} : { context: fromHex(v.context) }) };
    expect(toHex(signWithScalar(v.curve, s, msg, opts))).toBe(v.signature);
  });

  it.each(RFC8032)('$id ($source): signWithScalar with a hedged prefix verifies (node:crypto and noble) and differs from the RFC bytes', (v) => {
    const seed = fromHex(v.secretKey);
    const msg = fromHex(v.message);
    const s = secretScalarFromSeed(v.curve, seed);
    const ctx = v.context === undefined ? undefined : fromHex(v.context);
    const sig = signWithScalar(v.curve, s, msg, ctx === undefined ? {} : { context: ctx });
    expect(sig.length).toBe(v.curve === 'Ed25519' ? 64 : 114);
    expect(toHex(sig)).not.toBe(v.signature);
    expect(nobleVerify(v.curve, fromHex(v.publicKey), msg, sig, ctx)).toBe(true);
    if (ctx === undefined) expect(nativeVerify(v.curve, fromHex(v.publicKey), msg, sig)).toBe(true);
    // the same signature does not verify another message
    expect(nobleVerify(v.curve, fromHex(v.publicKey), Uint8Array.of(...msg, 0), sig, ctx)).toBe(false);
  });
});

describe('signWithScalar nonce handling', () => {
  const s = secretScalarFromSeed('Ed25519', new Uint8Array(32).fill(4));
  const msg = new TextEncoder().encode('MeshCoKey');
  it('fresh randomness gives different signatures; fixed `random` is deterministic', () => {
    expect(toHex(signWithScalar('Ed25519', s, msg))).not.toBe(toHex(signWithScalar('Ed25519', s, msg)));
    const random = new Uint8Array(32).fill(1);
    expect(toHex(signWithScalar('Ed25519', s, msg, { random }))).toBe(toHex(signWithScalar('Ed25519', s, msg, { random })));
  });
  it('the nonce is never the reference code null prefix r = H(M) (digest §3.6)', () => {
    const sig = signWithScalar('Ed25519', s, msg, { random: new Uint8Array(32) });
    const L = GROUP_ORDER.Ed25519;
    const rNull = bytesToBigIntLE(sha512(msg)) % L;
    expect(toHex(sig.subarray(0, 32))).not.toBe(toHex(ed25519.Point.BASE.multiply(rNull).toBytes()));
  });
  it('argument checks', () => {
    expect(() => signWithScalar('Ed25519', s, msg, { noncePrefix: new Uint8Array(31) })).toThrow(RangeError);
    expect(() => signWithScalar('Ed448', s, msg, { noncePrefix: new Uint8Array(32) })).toThrow(RangeError);
    expect(() => signWithScalar('Ed25519', s, msg, { random: new Uint8Array(16) })).toThrow(RangeError);
    expect(() => signWithScalar('Ed25519', s, msg, { context: Uint8Array.of(1) })).toThrow(RangeError);
    expect(() => signWithScalar('Ed448', s, msg, { context: new Uint8Array(256) })).toThrow(RangeError);
    expect(() => signWithScalar('Ed25519', 0n, msg)).toThrow(RangeError);
    expect(() => signWithScalar('Ed25519', GROUP_ORDER.Ed25519, msg)).toThrow(RangeError);
    expect(() => signWithScalar('Ed25519', -1n, msg)).toThrow(RangeError);
    expect(() => signWithScalar('Ed25519', 5 as unknown as bigint, msg)).toThrow(TypeError);
    expect(() => signWithScalar('Ed25519', s, 'text' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => signWithScalar('X25519' as 'Ed25519', s, msg)).toThrow(RangeError);
  });
});

describe('rfc7748.json: ecdhWithScalar on clamped scalars equals the RFC shared secret', () => {
  it.each(RFC7748)('$id ($source)', (v) => {
    const a = secretScalarFromSeed(v.curve, fromHex(v.alicePrivate));
    const b = secretScalarFromSeed(v.curve, fromHex(v.bobPrivate));
    expect(toHex(publicKeyFromScalar(v.curve, a))).toBe(v.alicePublic);
    expect(toHex(publicKeyFromScalar(v.curve, b))).toBe(v.bobPublic);
    expect(toHex(ecdhWithScalar(v.curve, a, fromHex(v.bobPublic)))).toBe(v.shared);
    expect(toHex(ecdhWithScalar(v.curve, b, fromHex(v.alicePublic)))).toBe(v.shared);
  });
});

// ---------------------------------------------------------------------------------------------

describe('threshold-06.json (digest §3.5)', () => {
  const X = T06.X25519;
  const E = T06.Ed25519;

  it(`${X.id}: printed private → scalar → extended public (33 bytes)`, () => {
    for (const k of [X.key1, X.key2]) {
      const s = secretScalarFromSeed('X25519', fromHex(k.private));
      expect(s).toBe(BigInt(k.scalar));
      expect(toHex(publicKeyFromScalar('X25519', BigInt(k.scalar), { extended: true }))).toBe(toHex(fromHex(k.public)));
      expect(toHex(montgomeryExtendedFromScalar('X25519', BigInt(k.scalar)))).toBe(toHex(fromHex(k.public)));
      expect(toHex(publicKeyFromScalar('X25519', BigInt(k.scalar)))).toBe(toHex(fromHex(k.public).subarray(0, 32)));
    }
  });

  it(`${X.id}: combineScalars, composite private, combinePublicKeys`, () => {
    const composite = combineScalars('X25519', BigInt(X.key1.scalar), BigInt(X.key2.scalar));
    expect(composite).toBe(BigInt(X.composite.scalar));
    expect(toHex(bigIntToBytesLE(composite, 32))).toBe(toHex(fromHex(X.composite.private)));
    const sum = combinePublicKeys('X25519', fromHex(X.key1.public), fromHex(X.key2.public));
    expect(sum.length).toBe(33);
    expect(toHex(sum.subarray(0, 32))).toBe(toHex(fromHex(X.composite.publicUnsigned)));
    expect(toHex(publicKeyFromScalar('X25519', composite))).toBe(toHex(fromHex(X.composite.publicUnsigned)));
    expect(toHex(publicKeyFromScalar('X25519', composite, { extended: true }))).toBe(toHex(sum));
    // the sign bits matter: flipping one input's sign gives another sum
    const flipped = fromHex(X.key2.public);
    flipped[32] = 0x00;
    expect(toHex(combinePublicKeys('X25519', fromHex(X.key1.public), flipped).subarray(0, 32))).not.toBe(toHex(fromHex(X.composite.publicUnsigned)));
  });

  it(`${E.id}: private → scalar → public; composite scalar, private and public`, () => {
    expect(E.key2SameAsKey1).toBe(true);
    const seed = fromHex(E.key1.private);
    const s1 = secretScalarFromSeed('Ed25519', seed);
    expect(s1).toBe(BigInt(E.key1.scalar));
    expect(toHex(publicKeyFromScalar('Ed25519', s1))).toBe(toHex(fromHex(E.key1.public)));
    expect(toHex(ed25519.getPublicKey(seed))).toBe(toHex(fromHex(E.key1.public)));
    const composite = combineScalars('Ed25519', s1, s1);
    expect(composite).toBe(BigInt(E.composite.scalar));
    expect(toHex(bigIntToBytesLE(composite, 32))).toBe(toHex(fromHex(E.composite.private)));
    expect(toHex(combinePublicKeys('Ed25519', fromHex(E.key1.public), fromHex(E.key1.public)))).toBe(toHex(fromHex(E.composite.public)));
    expect(toHex(publicKeyFromScalar('Ed25519', composite))).toBe(toHex(fromHex(E.composite.public)));
    // a composite signature verifies natively under the composite public key
    const msg = new TextEncoder().encode('threshold-06');
    expect(nativeVerify('Ed25519', fromHex(E.composite.public), msg, signWithScalar('Ed25519', composite, msg))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

describe('secretScalarFromSeed', () => {
  it('Ed448 accepts 56-byte Mesh KeySeed seeds (SHAKE256 of the 56 bytes) as well as 57-byte RFC seeds', () => {
    const seed56 = new Uint8Array(56).fill(0x5a);
    const h = shake256(seed56, { dkLen: 114 }).slice(0, 57);
    h[0] = (h[0] ?? 0) & 252;
    h[55] = (h[55] ?? 0) | 128;
    h[56] = 0;
    expect(secretScalarFromSeed('Ed448', seed56)).toBe(bytesToBigIntLE(h));
    expect(() => secretScalarFromSeed('Ed448', new Uint8Array(55))).toThrow(RangeError);
  });
  it('X25519 / X448 clamp per RFC 7748 and match noble public keys', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 56, maxLength: 56 }), (a, b) => {
        expect(toHex(publicKeyFromScalar('X25519', secretScalarFromSeed('X25519', a)))).toBe(toHex(x25519.getPublicKey(a)));
        expect(toHex(publicKeyFromScalar('X448', secretScalarFromSeed('X448', b)))).toBe(toHex(x448.getPublicKey(b)));
      }),
      { numRuns: 10 },
    );
  });
  it('argument checks', () => {
    expect(() => secretScalarFromSeed('Ed25519', new Uint8Array(31))).toThrow(RangeError);
    expect(() => secretScalarFromSeed('X448', new Uint8Array(57))).toThrow(RangeError);
    expect(() => secretScalarFromSeed('P-256' as 'Ed25519', new Uint8Array(32))).toThrow(RangeError);
    expect(() => secretScalarFromSeed('Ed25519', 'seed' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => combineScalars('Ed25519', 1n, 2 as unknown as bigint)).toThrow(TypeError);
    expect(() => combineScalars('Ed25519', -1n, 2n)).toThrow(RangeError);
  });
});

describe('edwardsToMontgomery', () => {
  it('maps c·B_ed to c·B_mont for both curves (digest §7.4)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: GROUP_ORDER.Ed448 - 1n }), (c) => {
        const c25519 = (c % (GROUP_ORDER.Ed25519 - 1n)) + 1n;
        expect(toHex(edwardsToMontgomery('Ed25519', publicKeyFromScalar('Ed25519', c25519)))).toBe(toHex(publicKeyFromScalar('X25519', c25519)));
        expect(toHex(edwardsToMontgomery('Ed448', publicKeyFromScalar('Ed448', c)))).toBe(toHex(publicKeyFromScalar('X448', c)));
      }),
      { numRuns: 10 },
    );
  });
  it('rejects invalid Edwards points', () => {
    const y2 = new Uint8Array(32);
    y2[0] = 2;
    expectKeyError(() => edwardsToMontgomery('Ed25519', y2));
    expect(() => edwardsToMontgomery('X25519' as 'Ed25519', new Uint8Array(32))).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------------------------

const seedArb = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

describe('property: composite signatures verify under the combined public key (fast-check)', () => {
  it.each([
    ['Ed25519', 32],
    ['Ed448', 57],
    ['Ed448', 56],
  ] as const)('%s (seed length %d): node:crypto and noble verify signWithScalar(sa + sb) under A ⊕ B', (curve, len) => {
    fc.assert(
      fc.property(seedArb(len), seedArb(len), fc.uint8Array({ maxLength: 64 }), (a, b, msg) => {
        const sa = secretScalarFromSeed(curve, a);
        const sb = secretScalarFromSeed(curve, b);
        const A = publicKeyFromScalar(curve, sa);
        const B = publicKeyFromScalar(curve, sb);
        const composite = combinePublicKeys(curve, A, B);
        const s = combineScalars(curve, sa, sb);
        expect(toHex(publicKeyFromScalar(curve, s))).toBe(toHex(composite));
        const sig = signWithScalar(curve, s, msg);
        expect(nodeVerify(null, msg, publicKeyObject(publicKeyFromRaw(curve, composite)), sig)).toBe(true);
        expect(nobleVerify(curve, composite, msg, sig)).toBe(true);
        // and not under a base key alone
        expect(nobleVerify(curve, A, msg, sig)).toBe(false);
      }),
      { numRuns: 12 },
    );
  });
});

describe('property: extended Montgomery keys add like their scalars (fast-check)', () => {
  it.each(['X25519', 'X448'] as const)('%s: ext(a) ⊕ ext(b) = ext(a + b), and u matches noble', (curve) => {
    const L = GROUP_ORDER[curve];
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: L - 1n }), fc.bigInt({ min: 1n, max: L - 1n }), (a, b) => {
        fc.pre((a + b) % L !== 0n);
        const ea = montgomeryExtendedFromScalar(curve, a);
        const eb = montgomeryExtendedFromScalar(curve, b);
        const sum = combinePublicKeys(curve, ea, eb);
        expect(toHex(sum)).toBe(toHex(montgomeryExtendedFromScalar(curve, combineScalars(curve, a, b))));
        // doubling: a ⊕ a = 2a
        expect(toHex(combinePublicKeys(curve, ea, ea))).toBe(toHex(montgomeryExtendedFromScalar(curve, (2n * a) % L)));
        // u coordinate agrees with the Edwards route through noble
        const ed = curve === 'X25519' ? 'Ed25519' : 'Ed448';
        expect(toHex(sum.subarray(0, sum.length - 1))).toBe(toHex(edwardsToMontgomery(ed, publicKeyFromScalar(ed, combineScalars(curve, a, b)))));
      }),
      { numRuns: 12 },
    );
  });

  it('the base point encodes with the sign of the RFC 7748 v (X25519: odd → 0x80; X448: even → 0x00)', () => {
    expect(toHex(montgomeryExtendedFromScalar('X25519', 1n))).toBe('09' + '00'.repeat(31) + '80');
    expect(toHex(montgomeryExtendedFromScalar('X448', 1n))).toBe('05' + '00'.repeat(55) + '00');
    // −B has the other sign
    expect(toHex(montgomeryExtendedFromScalar('X25519', GROUP_ORDER.X25519 - 1n))).toBe('09' + '00'.repeat(31) + '00');
    expect(toHex(montgomeryExtendedFromScalar('X448', GROUP_ORDER.X448 - 1n))).toBe('05' + '00'.repeat(55) + '80');
  });
});

describe('property: ECDH with a composite scalar equals the peer’s standard X25519/X448 (fast-check)', () => {
  it.each([
    ['X25519', 32],
    ['X448', 56],
  ] as const)('%s: ecdhWithScalar(s, peer) = noble and node:crypto getSharedSecret(peer private, composite u)', (curve, len) => {
    const noble = curve === 'X25519' ? x25519 : x448;
    fc.assert(
      fc.property(seedArb(len), seedArb(len), seedArb(len), (a, b, peerPriv) => {
        const s = combineScalars(curve, secretScalarFromSeed(curve, a), secretScalarFromSeed(curve, b));
        fc.pre(s !== 0n);
        const compositeU = publicKeyFromScalar(curve, s);
        const ext = combinePublicKeys(curve, publicKeyFromScalar(curve, secretScalarFromSeed(curve, a), { extended: true }), publicKeyFromScalar(curve, secretScalarFromSeed(curve, b), { extended: true }));
        expect(toHex(ext.subarray(0, len))).toBe(toHex(compositeU));
        const peerPub = noble.getPublicKey(peerPriv);
        const ours = ecdhWithScalar(curve, s, peerPub);
        expect(toHex(ours)).toBe(toHex(noble.getSharedSecret(peerPriv, compositeU)));
        const nodePriv = createPrivateKey({ key: { kty: 'OKP', crv: curve, d: b64u(peerPriv), x: b64u(peerPub) }, format: 'jwk' });
        const nodeShared = diffieHellman({ privateKey: nodePriv, publicKey: publicKeyObject(publicKeyFromRaw(curve, compositeU)) });
        expect(toHex(ours)).toBe(toHex(new Uint8Array(nodeShared)));
        // the extended form of the peer key is accepted too
        const peerExt = montgomeryExtendedFromScalar(curve, secretScalarFromSeed(curve, peerPriv));
        expect(toHex(peerExt.subarray(0, len))).toBe(toHex(peerPub));
        expect(toHex(ecdhWithScalar(curve, s, peerExt))).toBe(toHex(ours));
      }),
      { numRuns: 8 },
    );
  });

  it('the cofactor lift clears a small-order component of a hostile peer key (X25519)', () => {
    const s = combineScalars('X25519', secretScalarFromSeed('X25519', new Uint8Array(32).fill(1)), 12345n);
    const peerScalar = 98765n;
    const P = ed25519.Point.BASE.multiply(peerScalar);
    // an order-8 Edwards point, added to P, maps to a Montgomery u with a torsion component
    const T = ed25519.Point.fromHex(ED25519_TORSION_SUBGROUP[1] ?? '');
    expect(T.multiply(8n).is0() || T.multiplyUnsafe(8n).is0()).toBe(true);
    expect(T.is0()).toBe(false);
    const hostile = ed25519.utils.toMontgomery(P.add(T).toBytes());
    const clean = ed25519.utils.toMontgomery(P.toBytes());
    expect(toHex(ecdhWithScalar('X25519', s, hostile))).toBe(toHex(ecdhWithScalar('X25519', s, clean)));
  });

  it('rejects small-order peers and bad arguments', () => {
    const s = 7n;
    expectKeyError(() => ecdhWithScalar('X25519', s, new Uint8Array(32)));
    const one = new Uint8Array(32);
    one[0] = 1;
    expectKeyError(() => ecdhWithScalar('X25519', s, one));
    expectKeyError(() => ecdhWithScalar('X448', s, new Uint8Array(56)));
    expect(() => ecdhWithScalar('X25519', s, new Uint8Array(31))).toThrow(RangeError);
    expect(() => ecdhWithScalar('X25519', 0n, x25519.getPublicKey(new Uint8Array(32).fill(1)))).toThrow(RangeError);
    expect(() => ecdhWithScalar('Ed25519' as 'X25519', s, new Uint8Array(32))).toThrow(RangeError);
  });
});

describe('combinePublicKeys: bad inputs → typed errors', () => {
  const e1 = publicKeyFromScalar('Ed25519', 11n);
  const x1 = montgomeryExtendedFromScalar('X25519', 11n);
  const x448a = montgomeryExtendedFromScalar('X448', 11n);

  it('wrong lengths and types', () => {
    expect(() => combinePublicKeys('Ed25519', e1, e1.subarray(1))).toThrow(RangeError);
    expect(() => combinePublicKeys('X25519', x1, x1.subarray(0, 32))).toThrow(RangeError);
    expect(() => combinePublicKeys('X448', x448a, x448a.subarray(0, 56))).toThrow(RangeError);
    expect(() => combinePublicKeys('Ed448', e1, e1)).toThrow(RangeError);
    expect(() => combinePublicKeys('P-256' as 'Ed25519', e1, e1)).toThrow(RangeError);
    expect(() => combinePublicKeys('Ed25519', 'x' as unknown as Uint8Array, e1)).toThrow(TypeError);
  });

  it('off-curve, small-order and tampered points', () => {
    const y2 = new Uint8Array(32);
    y2[0] = 2;
    expectKeyError(() => combinePublicKeys('Ed25519', e1, y2));
    const identity = new Uint8Array(32);
    identity[0] = 1;
    expectKeyError(() => combinePublicKeys('Ed25519', e1, identity));
    // P + (−P) is the identity
    expectKeyError(() => combinePublicKeys('Ed25519', e1, publicKeyFromScalar('Ed25519', GROUP_ORDER.Ed25519 - 11n)));
    // X25519: twist point u = 2, bad sign byte, non-canonical u, u = 0, P + (−P)
    const twist = new Uint8Array(33);
    twist[0] = 2;
    expectKeyError(() => combinePublicKeys('X25519', x1, twist));
    const badSign = x1.slice();
    badSign[32] = 0x01;
    expectKeyError(() => combinePublicKeys('X25519', x1, badSign));
    const big = new Uint8Array(33).fill(0xff);
    big[32] = 0;
    expectKeyError(() => combinePublicKeys('X25519', x1, big));
    expectKeyError(() => combinePublicKeys('X25519', x1, new Uint8Array(33)));
    const neg = x1.slice();
    neg[32] = (neg[32] ?? 0) ^ 0x80;
    expectKeyError(() => combinePublicKeys('X25519', x1, neg));
    expectKeyError(() => combinePublicKeys('X448', x448a, new Uint8Array(57)));
    // a tampered u either leaves the curve (KeyError) or gives a different sum
    const tampered = x1.slice();
    tampered[3] = (tampered[3] ?? 0) ^ 0x10;
    let sum: Uint8Array | undefined;
    try {
      sum = combinePublicKeys('X25519', x1, tampered);
    } catch (e) {
      expect(e).toBeInstanceOf(KeyError);
    }
    if (sum !== undefined) expect(toHex(sum)).not.toBe(toHex(montgomeryExtendedFromScalar('X25519', 22n)));
  });

  it('publicKeyFromScalar argument checks', () => {
    expect(() => publicKeyFromScalar('Ed25519', 0n)).toThrow(RangeError);
    expect(() => publicKeyFromScalar('X448', GROUP_ORDER.X448)).toThrow(RangeError);
    expect(() => publicKeyFromScalar('Ed25519', 5n, { extended: true })).toThrow(RangeError);
    expect(() => montgomeryExtendedFromScalar('Ed25519' as 'X25519', 5n)).toThrow(RangeError);
  });
});

describe('X25519 k·B through edwards25519 (the fast path) equals the ladder with the Okeya–Sakurai v recovery', () => {
  // An independent route: u(k·B) and u((k+1)·B) from the RFC 7748 ladder (ecdhWithScalar on the base point u = 9;
  // k·B has order L, so the cofactor lift does not change it), v by the Okeya–Sakurai formula computed here.
  const p = P25519;
  const A = 486662n;
  const Bu = 9n;
  const Bv = 14781619447589544791020593568409986887264606134616475288964881837755586237401n;
  const base = bigIntToBytesLE(Bu, 32);
  const reference = (k: bigint): string => {
    const L = GROUP_ORDER.X25519;
    const xQ = bytesToBigIntLE(ecdhWithScalar('X25519', k, base));
    const v = (k + 1n) % L === 0n
      ? mod(-Bv, p)
      : mod(mod((Bu * xQ + 1n) * (Bu + xQ + 2n * A) - 2n * A - (Bu - xQ) * (Bu - xQ) * bytesToBigIntLE(ecdhWithScalar('X25519', k + 1n, base)), p) * invert(2n * Bv, p), p);
    return toHex(bigIntToBytesLE(xQ, 32)) + ((v & 1n) === 1n ? '80' : '00');
  };
  it('for random scalars, 1, 2, L − 2 and L − 1 (fast-check)', () => {
    const L = GROUP_ORDER.X25519;
    for (const k of [1n, 2n, 3n, L - 2n, L - 1n]) expect(toHex(montgomeryExtendedFromScalar('X25519', k))).toBe(reference(k));
    fc.assert(fc.property(fc.bigInt({ min: 1n, max: L - 2n }), (k) => {
      expect(toHex(montgomeryExtendedFromScalar('X25519', k))).toBe(reference(k));
      expect(toHex(publicKeyFromScalar('X25519', k))).toBe(reference(k).slice(0, 64));
    }), { numRuns: 25 });
  });
});

describe('combineWithScalar = combinePublicKeys(a, publicKeyFromScalar(scalar)) (fast-check)', () => {
  it.each(['Ed25519', 'Ed448', 'X25519', 'X448'] as const)('%s', (curve) => {
    const L = GROUP_ORDER[curve];
    const extended = curve === 'X25519' || curve === 'X448' ? { extended: true } : undefined;
    fc.assert(fc.property(fc.bigInt({ min: 1n, max: L - 1n }), fc.bigInt({ min: 1n, max: (1n << 300n) }), (a, c) => {
      fc.pre((a + c) % L !== 0n && c % L !== 0n);
      const pa = publicKeyFromScalar(curve, a, extended);
      const expected = combinePublicKeys(curve, pa, publicKeyFromScalar(curve, c, extended));
      expect(toHex(combineWithScalar(curve, pa, c))).toBe(toHex(expected));
      expect(toHex(expected)).toBe(toHex(publicKeyFromScalar(curve, combineScalars(curve, a, c), extended)));
    }), { numRuns: 8 });
  });

  it('refuses what combinePublicKeys refuses: a bad point, a sum at the identity, a zero scalar, wrong types', () => {
    const L = GROUP_ORDER.X25519;
    const one = montgomeryExtendedFromScalar('X25519', 1n);
    expect(() => combineWithScalar('X25519', one, L - 1n)).toThrow(KeyError); // B + (L − 1)·B = point at infinity
    expect(() => combineWithScalar('Ed25519', publicKeyFromScalar('Ed25519', 1n), L - 1n)).toThrow(KeyError);
    const offCurve = one.slice();
    offCurve[0] = 2; // u = 2: not on curve25519 (a twist point)
    expect(() => combineWithScalar('X25519', offCurve, 5n)).toThrow(KeyError);
    const badSign = one.slice();
    badSign[32] = 0x01;
    expect(() => combineWithScalar('X25519', badSign, 5n)).toThrow(KeyError);
    expect(() => combineWithScalar('X25519', one, L)).toThrow(RangeError);
    expect(() => combineWithScalar('X25519', one, 5 as never)).toThrow(TypeError);
    expect(() => combineWithScalar('X25519', one.subarray(0, 32), 5n)).toThrow(RangeError);
    expect(() => combineWithScalar('P-256' as never, one, 5n)).toThrow(RangeError);
    expect(() => combineWithScalar('Ed25519', new Uint8Array(32).fill(0xff), 5n)).toThrow(KeyError);
  });
});

describe('pow25519Pm5d8 (addition chain) = powMod(x, (p − 5) / 8, p)', () => {
  it('edge values and random values (fast-check)', () => {
    const e = (P25519 - 5n) / 8n;
    for (const x of [0n, 1n, 2n, P25519 - 1n, P25519, P25519 + 3n, -7n]) expect(pow25519Pm5d8(x)).toBe(powMod(x, e, P25519));
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: P25519 - 1n }), (x) => {
      expect(pow25519Pm5d8(x)).toBe(powMod(x, e, P25519));
    }), { numRuns: 50 });
    expect(() => pow25519Pm5d8(1 as never)).toThrow(TypeError);
  });
});
