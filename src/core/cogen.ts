/**
 * Key co-generation (PHB-CoKey; threshold-06 §3.3, §5; mesh digest §3, §7.4).
 *
 * Key Combination Law: for key pairs {X, x} and {Y, y}, {X ⊕ Y, (x + y) mod L} is a key pair. A
 * device holding a base key and an administrator supplying a contribution therefore each learn the
 * composite public key, and only the device learns the composite private scalar.
 *
 * - Secret scalars come from seeds as RFC 8032 / RFC 7748 expand and clamp them; Ed448 also accepts
 *   the 56-byte seeds the Mesh reference derives (`KeySeed(448)`).
 * - Ed25519 / Ed448 public keys combine as Edwards points (RFC 8032 encodings).
 * - X25519 / X448 public keys combine in affine Montgomery coordinates using the extended encodings
 *   of threshold-06 §5.2: u (32 / 56 bytes, little-endian) ‖ one byte, 0x80 when v is odd, else 0x00
 *   (33 / 57 bytes). The base points are (9, RFC 7748 v) and (5, RFC 7748 v).
 * - Signing with a raw composite scalar uses the RFC 8032 equations with a SECRET, hedged nonce
 *   prefix H(domain ‖ LE(s) ‖ 32 fresh random bytes) — never the reference code's null prefix
 *   (digest §3.6), which leaks the key from one signature. Ed448 uses dom4 with an empty context.
 * - ECDH with a composite scalar runs an unclamped Montgomery ladder; the scalar is lifted to
 *   s + j·L ≡ 0 (mod cofactor), which gives the same result as a standard peer on prime-order keys
 *   and clears any small-order component of a hostile peer key.
 *
 * JavaScript BigInt arithmetic is not constant time; see the README's Security section.
 */
import { randomBytes } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { ed448 } from '@noble/curves/ed448.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { shake256 } from '@noble/hashes/sha3.js';
import { abytes, bigIntToBytesLE, bytesToBigIntLE, concatBytes, describe, utf8, wipe } from './bytes.js';
import { ErrorCode, KeyError } from './errors.js';
import { LOW_ORDER_U, publicKeyFromRaw } from './keys.js';
import { invert, mod, P25519, P448, pow25519Pm5d8, powMod } from './field.js';

/** Curves that co-generation supports. */
export type CogenCurve = 'Ed25519' | 'Ed448' | 'X25519' | 'X448';
/** Curves that sign. */
export type EdwardsCurve = 'Ed25519' | 'Ed448';
/** Curves that agree keys. */
export type MontgomeryCurve = 'X25519' | 'X448';

const COGEN_CURVES: readonly CogenCurve[] = ['Ed25519', 'Ed448', 'X25519', 'X448'];

/** Prime order L of the base point: Ed25519/X25519 share one, Ed448/X448 the other. */
export const GROUP_ORDER: Readonly<Record<CogenCurve, bigint>> = {
  Ed25519: ed25519.Point.Fn.ORDER,
  X25519: ed25519.Point.Fn.ORDER,
  Ed448: ed448.Point.Fn.ORDER,
  X448: ed448.Point.Fn.ORDER,
};

// ---------------------------------------------------------------------------------------------
// Montgomery curve arithmetic (affine, B = 1: v² = u³ + A·u² + u)

interface MontParams {
  readonly name: MontgomeryCurve;
  readonly p: bigint;
  readonly A: bigint;
  readonly a24: bigint;
  readonly L: bigint;
  readonly cofactor: bigint;
  readonly len: number; // bytes of u
  readonly ladderBits: number;
  readonly Bu: bigint;
  readonly Bv: bigint;
  readonly sqrt: (a: bigint) => bigint | undefined;
}

const SQRT_M1_25519 = powMod(2n, (P25519 - 1n) / 4n, P25519);

const X25519_PARAMS: MontParams = {
  name: 'X25519',
  p: P25519,
  A: 486662n,
  a24: 121665n,
  L: GROUP_ORDER.X25519,
  cofactor: 8n,
  len: 32,
  ladderBits: 256,
  Bu: 9n,
  // RFC 7748 §4.1
  Bv: 14781619447589544791020593568409986887264606134616475288964881837755586237401n,
  sqrt(a) {
    const p = P25519;
    const x = (mod(a, p) * pow25519Pm5d8(a)) % p; // a^((p + 3) / 8), by an addition chain
    const x2 = (x * x) % p;
    if (x2 === mod(a, p)) return x;
    if (x2 === mod(-a, p)) return (x * SQRT_M1_25519) % p;
    return undefined;
  },
};

const X448_PARAMS: MontParams = {
  name: 'X448',
  p: P448,
  A: 156326n,
  a24: 39081n,
  L: GROUP_ORDER.X448,
  cofactor: 4n,
  len: 56,
  ladderBits: 448,
  Bu: 5n,
  // RFC 7748 §4.2
  Bv: 355293926785568175264127502063783334808976399387714271831880898435169088786967410002932673765864550910142774147268105838985595290606362n,
  sqrt(a) {
    const p = P448;
    const x = powMod(a, (p + 1n) / 4n, p);
    return (x * x) % p === mod(a, p) ? x : undefined;
  },
};

const MONT: Readonly<Record<MontgomeryCurve, MontParams>> = { X25519: X25519_PARAMS, X448: X448_PARAMS };

interface Affine {
  u: bigint;
  v: bigint;
}

function keyError(message: string, cause?: unknown): KeyError {
  return new KeyError(ErrorCode.KEY_INVALID, message, cause === undefined ? undefined : { cause });
}

/** Affine Montgomery addition (B = 1). Returns undefined for the point at infinity. */
function montAdd(c: MontParams, P1: Affine, P2: Affine): Affine | undefined {
  const { p, A } = c;
  let lambda: bigint;
  if (P1.u === P2.u) {
    if (mod(P1.v + P2.v, p) === 0n) return undefined; // P + (−P), including 2-torsion doubling
    // doubling: λ = (3u² + 2Au + 1) / 2v
    lambda = mod((3n * P1.u * P1.u + 2n * A * P1.u + 1n) * invert(2n * P1.v, p), p);
  } else {
    lambda = mod((P2.v - P1.v) * invert(P2.u - P1.u, p), p);
  }
  const u3 = mod(lambda * lambda - A - P1.u - P2.u, p);
  const v3 = mod(lambda * (P1.u - u3) - P1.v, p);
  return { u: u3, v: v3 };
}

interface LadderResult {
  x2: bigint;
  z2: bigint;
  x3: bigint;
  z3: bigint;
}

/** RFC 7748 §5 ladder without clamping: (x2:z2) = k·P and (x3:z3) = (k+1)·P for u(P) = u. */
function ladder(c: MontParams, k: bigint, u: bigint): LadderResult {
  const { p, a24 } = c;
  const x1 = u;
  let x2 = 1n;
  let z2 = 0n;
  let x3 = u;
  let z3 = 1n;
  let swap = 0n;
  for (let t = c.ladderBits - 1; t >= 0; t--) {
    const kt = (k >> BigInt(t)) & 1n;
    swap ^= kt;
    if (swap) {
      [x2, x3] = [x3, x2];
      [z2, z3] = [z3, z2];
    }
    swap = kt;
    const A = x2 + z2;
    const AA = (A * A) % p;
    const B = x2 - z2;
    const BB = mod(B * B, p);
    const E = mod(AA - BB, p);
    const C = x3 + z3;
    const D = x3 - z3;
    const DA = mod(D * A, p);
    const CB = mod(C * B, p);
    const s = DA + CB;
    const d = DA - CB;
    x3 = (s * s) % p;
    z3 = (x1 * mod(d * d, p)) % p;
    x2 = (AA * BB) % p;
    z2 = (E * ((AA + a24 * E) % p)) % p;
  }
  if (swap) {
    [x2, x3] = [x3, x2];
    [z2, z3] = [z3, z2];
  }
  return { x2, z2, x3, z3 };
}

/**
 * √(−486664) mod p with the sign that makes the birational map of RFC 7748 §4.1, (u, v) = ((1 + y)/(1 − y),
 * √(−486664)·u/x), take the edwards25519 base point to the curve25519 one (u = 9, v = Bv): the map is then a group
 * isomorphism that takes k·B (Edwards) to k·B (Montgomery) for every k.
 */
const SQRT_NEG_486664 = ((): bigint => {
  const p = P25519;
  const root = X25519_PARAMS.sqrt(mod(-486664n, p));
  if (root === undefined) throw new Error('internal: −486664 has no square root mod p');
  const { x, y } = ed25519.Point.BASE.toAffine();
  const inv = invert((1n - y) * x, p);
  if (mod((1n + y) * x * inv, p) !== X25519_PARAMS.Bu) throw new Error('internal: the birational map does not take B to B');
  return mod(root * (1n + y) * inv, p) === X25519_PARAMS.Bv ? root : mod(-root, p);
})();

/**
 * k·B on curve25519 through edwards25519: noble's base-point multiplication (precomputed tables) and the birational
 * map — the same point as the ladder and the Okeya–Sakurai recovery give, far cheaper. 0 < k < L.
 */
function x25519MulBase(k: bigint): Affine {
  const p = P25519;
  const { x, y } = ed25519.Point.BASE.multiply(k).toAffine();
  // k·B has prime order L, so x ≠ 0 and y ≠ 1: one inversion gives both 1/(1 − y) and 1/x.
  const inv = invert((1n - y) * x, p);
  const u = mod((1n + y) * x * inv, p);
  const v = mod(SQRT_NEG_486664 * (1n + y) * inv, p);
  return { u, v };
}

/** k·B as an affine point (u, v), with v recovered by the Okeya–Sakurai formula (X25519: through edwards25519). */
function montMulBase(c: MontParams, k: bigint): Affine {
  if (c.name === 'X25519') return x25519MulBase(k);
  return montMulBaseLadder(c, k);
}

/** k·B by the ladder and the Okeya–Sakurai formula (any Montgomery curve here; X448 uses it). */
function montMulBaseLadder(c: MontParams, k: bigint): Affine {
  const { p, A, Bu, Bv } = c;
  const r = ladder(c, k, Bu);
  if (r.z2 === 0n) throw new RangeError('"scalar" is 0 modulo the group order');
  const xQ = mod(r.x2 * invert(r.z2, p), p);
  if (r.z3 === 0n) return { u: xQ, v: mod(-Bv, p) }; // (k+1)·B = O, so k·B = −B
  const xR = mod(r.x3 * invert(r.z3, p), p);
  const num = mod((Bu * xQ + 1n) * (Bu + xQ + 2n * A) - 2n * A - (Bu - xQ) * (Bu - xQ) * xR, p);
  const v = mod(num * invert(2n * Bv, p), p);
  return { u: xQ, v };
}

function encodeExtended(c: MontParams, P: Affine): Uint8Array {
  const out = new Uint8Array(c.len + 1);
  out.set(bigIntToBytesLE(P.u, c.len), 0);
  out[c.len] = P.v & 1n ? 0x80 : 0x00;
  return out;
}

function decodeExtended(c: MontParams, bytes: Uint8Array, field: string): Affine {
  abytes(bytes, field, c.len + 1);
  const sign = bytes[c.len];
  if (sign !== 0x00 && sign !== 0x80) throw keyError(`${c.name} extended key "${field}": last byte must be 0x00 or 0x80`);
  const u = bytesToBigIntLE(bytes.subarray(0, c.len));
  if (u >= c.p) throw keyError(`${c.name} extended key "${field}": u is not canonical (u ≥ p)`);
  if (LOW_ORDER_U[c.name].includes(u)) throw keyError(`${c.name} extended key "${field}": small-order point`);
  const rhs = mod(u * u * u + c.A * u * u + u, c.p);
  const root = c.sqrt(rhs);
  if (root === undefined) throw keyError(`${c.name} extended key "${field}": not a point on the curve`);
  const v = (root & 1n) === (sign === 0x80 ? 1n : 0n) ? root : mod(-root, c.p);
  return { u, v };
}

// ---------------------------------------------------------------------------------------------
// Argument helpers

function acogen(curve: unknown, allowed: readonly string[] = COGEN_CURVES): CogenCurve {
  if (typeof curve !== 'string') throw new TypeError(`"curve" expected a curve name string, got ${describe(curve)}`);
  if (!allowed.includes(curve)) throw new RangeError(`"curve" expected one of ${allowed.join(', ')}, got ${JSON.stringify(curve)}`);
  return curve as CogenCurve;
}

function ascalar(value: unknown, field: string): bigint {
  if (typeof value !== 'bigint') throw new TypeError(`"${field}" expected bigint, got ${describe(value)}`);
  if (value < 0n) throw new RangeError(`"${field}" expected a non-negative bigint`);
  if (value >= 1n << 912n) throw new RangeError(`"${field}" is implausibly large`);
  return value;
}

function reducedNonZero(curve: CogenCurve, scalar: bigint, field: string): bigint {
  const k = ascalar(scalar, field) % GROUP_ORDER[curve];
  if (k === 0n) throw new RangeError(`"${field}" is 0 modulo the group order`);
  return k;
}

function edPoint(curve: EdwardsCurve) {
  return curve === 'Ed25519' ? ed25519.Point : ed448.Point;
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Combines two public keys by point addition (the composite public key of co-generation).
 * Ed25519 / Ed448: RFC 8032 encodings (32 / 57 bytes) in and out. X25519 / X448: the extended
 * u ‖ sign encodings (33 / 57 bytes) in and out.
 * @throws TypeError / RangeError for a wrong curve, type or length; KeyError (ERR_KEY_INVALID) for
 *   an input that is not a valid point (off the curve, small order, non-canonical, bad sign byte)
 *   or a sum at the point at infinity.
 */
export function combinePublicKeys(curve: CogenCurve, a: Uint8Array, b: Uint8Array): Uint8Array {
  const c = acogen(curve);
  if (c === 'Ed25519' || c === 'Ed448') {
    const len = c === 'Ed25519' ? 32 : 57;
    abytes(a, 'a', len);
    abytes(b, 'b', len);
    const A = edPoint(c).fromBytes(publicKeyFromRaw(c, a).raw, false);
    const B = edPoint(c).fromBytes(publicKeyFromRaw(c, b).raw, false);
    const sum = A.add(B);
    if (sum.is0()) throw keyError(`${c} composite public key is the identity`);
    return sum.toBytes();
  }
  const params = MONT[c];
  const P1 = decodeExtended(params, a, 'a');
  const P2 = decodeExtended(params, b, 'b');
  const sum = montAdd(params, P1, P2);
  if (sum === undefined) throw keyError(`${c} composite public key is the point at infinity`);
  return encodeExtended(params, sum);
}

/**
 * `a` + scalar·B: {@link combinePublicKeys}(curve, a, {@link publicKeyFromScalar}(curve, scalar, extended for X25519 /
 * X448)) without encoding and decoding scalar·B again (the host's side of co-generation: base key ⊕ contribution).
 * Same encodings, checks and result as that composition.
 * @throws TypeError / RangeError for a wrong curve, type or length, or a scalar ≡ 0 mod L; KeyError (ERR_KEY_INVALID)
 *   for an `a` that is not a valid point or a sum at the identity / point at infinity.
 */
export function combineWithScalar(curve: CogenCurve, a: Uint8Array, scalar: bigint): Uint8Array {
  const c = acogen(curve);
  const k = reducedNonZero(c, scalar, 'scalar');
  if (c === 'Ed25519' || c === 'Ed448') {
    abytes(a, 'a', c === 'Ed25519' ? 32 : 57);
    const A = edPoint(c).fromBytes(publicKeyFromRaw(c, a).raw, false);
    const sum = A.add(edPoint(c).BASE.multiply(k));
    if (sum.is0()) throw keyError(`${c} composite public key is the identity`);
    return sum.toBytes();
  }
  const params = MONT[c];
  const P1 = decodeExtended(params, a, 'a');
  const sum = montAdd(params, P1, montMulBase(params, k));
  if (sum === undefined) throw keyError(`${c} composite public key is the point at infinity`);
  return encodeExtended(params, sum);
}

/**
 * The secret scalar of a seed / private key (not reduced mod L):
 * Ed25519: SHA-512(32-byte seed)[0..32] clamped (RFC 8032 §5.1.5);
 * Ed448: SHAKE256(seed, 114)[0..57] clamped (RFC 8032 §5.2.5) — 57-byte RFC seeds and the 56-byte
 * seeds of the Mesh reference (`KeySeed(448)`, digest §2.7) are both accepted;
 * X25519 / X448: the 32 / 56-byte private key clamped as RFC 7748 §5 decodeScalar.
 * @throws TypeError / RangeError for a wrong curve, type or length.
 */
export function secretScalarFromSeed(curve: CogenCurve, seed: Uint8Array): bigint {
  const c = acogen(curve);
  let a: Uint8Array;
  switch (c) {
    case 'Ed25519': {
      abytes(seed, 'seed', 32);
      const h = sha512(seed);
      a = h.slice(0, 32);
      wipe(h);
      a[0] = (a[0] ?? 0) & 248;
      a[31] = ((a[31] ?? 0) & 127) | 64;
      break;
    }
    case 'Ed448': {
      abytes(seed, 'seed', 57, 56);
      const h = shake256(seed, { dkLen: 114 });
      a = h.slice(0, 57);
      wipe(h);
      a[0] = (a[0] ?? 0) & 252;
      a[55] = (a[55] ?? 0) | 128;
      a[56] = 0;
      break;
    }
    case 'X25519':
      a = abytes(seed, 'seed', 32).slice();
      a[0] = (a[0] ?? 0) & 248;
      a[31] = ((a[31] ?? 0) & 127) | 64;
      break;
    case 'X448':
      a = abytes(seed, 'seed', 56).slice();
      a[0] = (a[0] ?? 0) & 252;
      a[55] = (a[55] ?? 0) | 128;
      break;
  }
  const s = bytesToBigIntLE(a);
  wipe(a);
  return s;
}

/**
 * Combines two secret scalars: (a + b) mod L, L the prime order of the curve's base point.
 * @throws TypeError if a scalar is not a bigint; RangeError for a negative scalar or unknown curve.
 */
export function combineScalars(curve: CogenCurve, a: bigint, b: bigint): bigint {
  const c = acogen(curve);
  return (ascalar(a, 'a') + ascalar(b, 'b')) % GROUP_ORDER[c];
}

/**
 * The public key of a secret scalar: Ed25519 / Ed448 s·B in RFC 8032 encoding; X25519 / X448 the
 * Montgomery u of s·B (32 / 56 bytes), or with `{ extended: true }` the 33 / 57-byte u ‖ sign form.
 * The scalar is used as given (no clamping), reduced mod L.
 * @throws TypeError / RangeError for a wrong curve or type, or a scalar ≡ 0 mod L; RangeError for
 *   `extended` on an Edwards curve.
 */
export function publicKeyFromScalar(curve: CogenCurve, scalar: bigint, opts?: { extended?: boolean }): Uint8Array {
  const c = acogen(curve);
  const k = reducedNonZero(c, scalar, 'scalar');
  if (c === 'Ed25519' || c === 'Ed448') {
    if (opts?.extended === true) throw new RangeError(`"extended" applies to X25519 / X448 only, not ${c}`);
    return edPoint(c).BASE.multiply(k).toBytes();
  }
  const params = MONT[c];
  if (opts?.extended === true) return encodeExtended(params, montMulBase(params, k));
  if (c === 'X25519') return bigIntToBytesLE(x25519MulBase(k).u, params.len);
  const r = ladder(params, k, params.Bu);
  return bigIntToBytesLE(mod(r.x2 * invert(r.z2, params.p), params.p), params.len);
}

/**
 * The extended (u ‖ sign) public key of a scalar on X25519 / X448 (33 / 57 bytes).
 * @throws TypeError / RangeError for a wrong curve or type, or a scalar ≡ 0 mod L.
 */
export function montgomeryExtendedFromScalar(curve: MontgomeryCurve, scalar: bigint): Uint8Array {
  const c = acogen(curve, ['X25519', 'X448']) as MontgomeryCurve;
  return encodeExtended(MONT[c], montMulBase(MONT[c], reducedNonZero(c, scalar, 'scalar')));
}

/**
 * Maps an Ed25519 / Ed448 public key to the X25519 / X448 u coordinate (RFC 7748 §4.1 birational
 * map; §4.2 4-isogeny), as noble's `toMontgomery`. For a scalar c, c·B_ed maps to c·B_mont.
 * @throws TypeError / RangeError for a wrong curve, type or length; KeyError for an invalid point.
 */
export function edwardsToMontgomery(curve: EdwardsCurve, edPublic: Uint8Array): Uint8Array {
  const c = acogen(curve, ['Ed25519', 'Ed448']) as EdwardsCurve;
  const key = publicKeyFromRaw(c, edPublic);
  return c === 'Ed25519' ? ed25519.utils.toMontgomery(key.raw) : ed448.utils.toMontgomery(key.raw);
}

const NONCE_DOMAIN: Readonly<Record<EdwardsCurve, Uint8Array>> = {
  Ed25519: utf8('meshkit cogen nonce prefix v1 Ed25519'),
  Ed448: utf8('meshkit cogen nonce prefix v1 Ed448'),
};

function dom4(context: Uint8Array): Uint8Array {
  return concatBytes(utf8('SigEd448'), Uint8Array.of(0, context.length), context);
}

/**
 * Signs `message` with a raw secret scalar (a composite co-generation key) by the RFC 8032
 * equations: Ed25519 (PureEdDSA, SHA-512) or Ed448 (dom4(0, context), SHAKE256). The nonce prefix
 * is secret and hedged: H(domain ‖ LE(s) ‖ 32 random bytes) (`random` may be given for tests);
 * `noncePrefix` (32 / 57 bytes) replaces it for deterministic tests — e.g. the RFC 8032 prefix
 * reproduces the RFC signature. The signature verifies under {@link publicKeyFromScalar}(s).
 * @throws TypeError / RangeError for a wrong curve or type, a scalar ≡ 0 mod L, a wrong prefix,
 *   random or context length, or a context on Ed25519.
 */
export function signWithScalar(
  curve: EdwardsCurve,
  scalar: bigint,
  message: Uint8Array,
  opts?: { noncePrefix?: Uint8Array; random?: Uint8Array; context?: Uint8Array },
): Uint8Array {
  const c = acogen(curve, ['Ed25519', 'Ed448']) as EdwardsCurve;
  const s = reducedNonZero(c, scalar, 'scalar');
  abytes(message, 'message');
  const L = GROUP_ORDER[c];
  const Point = edPoint(c);
  const len = c === 'Ed25519' ? 32 : 57;
  let dom: Uint8Array = new Uint8Array(0);
  if (opts?.context !== undefined) {
    abytes(opts.context, 'context');
    if (c === 'Ed25519') throw new RangeError('"context" is not defined for pure Ed25519');
    if (opts.context.length > 255) throw new RangeError(`"context" expected at most 255 bytes, got length=${opts.context.length}`);
  }
  if (c === 'Ed448') dom = dom4(opts?.context ?? new Uint8Array(0));
  const H = (data: Uint8Array): bigint =>
    bytesToBigIntLE(c === 'Ed25519' ? sha512(data) : shake256(data, { dkLen: 114 })) % L;

  const sBytes = bigIntToBytesLE(s, len);
  let prefix: Uint8Array;
  let ownPrefix = false;
  if (opts?.noncePrefix !== undefined) {
    prefix = abytes(opts.noncePrefix, 'noncePrefix', len);
  } else {
    const rnd = opts?.random !== undefined ? abytes(opts.random, 'random', 32).slice() : new Uint8Array(randomBytes(32));
    const input = concatBytes(NONCE_DOMAIN[c], sBytes, rnd);
    prefix = c === 'Ed25519' ? sha512(input).slice(0, 32) : shake256(input, { dkLen: 57 });
    ownPrefix = true;
    wipe(rnd, input);
  }
  const A = Point.BASE.multiply(s).toBytes();
  const rInput = concatBytes(dom, prefix, message);
  const r = H(rInput);
  wipe(rInput, sBytes);
  if (ownPrefix) wipe(prefix);
  if (r === 0n) throw new RangeError('nonce is 0 modulo the group order');
  const R = Point.BASE.multiply(r).toBytes();
  const k = H(concatBytes(dom, R, A, message));
  const S = (r + k * s) % L;
  return concatBytes(R, bigIntToBytesLE(S, len));
}

/**
 * X25519 / X448 key agreement with a raw (unclamped) secret scalar, e.g. a composite
 * co-generation key: the Montgomery ladder on s' = s + j·L, j chosen so that s' ≡ 0 mod the
 * cofactor (equal to s·P on prime-order keys, and small-order components are cleared). `peer` is a
 * standard u (32 / 56 bytes, RFC 7748 decoding) or an extended key (33 / 57 bytes; sign ignored).
 * @throws TypeError / RangeError for a wrong curve, type or length, or a scalar ≡ 0 mod L; KeyError
 *   (ERR_KEY_INVALID) for a small-order peer key or an all-zero shared secret.
 */
export function ecdhWithScalar(curve: MontgomeryCurve, scalar: bigint, peer: Uint8Array): Uint8Array {
  const c = acogen(curve, ['X25519', 'X448']) as MontgomeryCurve;
  const params = MONT[c];
  const s = reducedNonZero(c, scalar, 'scalar');
  abytes(peer, 'peer', params.len, params.len + 1);
  const signByte = peer[params.len];
  if (signByte !== undefined && signByte !== 0x00 && signByte !== 0x80) {
    throw keyError(`${c} extended public key must end in 0x00 or 0x80, got 0x${signByte.toString(16).padStart(2, '0')}`);
  }
  const uBytes = peer.slice(0, params.len);
  if (c === 'X25519') uBytes[31] = (uBytes[31] ?? 0) & 127; // RFC 7748 §5
  const u = bytesToBigIntLE(uBytes) % params.p;
  if (LOW_ORDER_U[c].includes(u)) throw keyError(`${c} peer public key is a small-order point`);
  // s' ≡ s (mod L) and s' ≡ 0 (mod cofactor)
  let lifted = s;
  while (lifted % params.cofactor !== 0n) lifted += params.L;
  const r = ladder(params, lifted, u);
  const shared = r.z2 === 0n ? 0n : mod(r.x2 * invert(r.z2, params.p), params.p);
  if (shared === 0n) throw keyError(`${c} shared secret is all zero`);
  return bigIntToBytesLE(shared, params.len);
}
