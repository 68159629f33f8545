/**
 * Modular arithmetic on bigints shared by the pure core (curve checks, co-generation, Shamir),
 * and the field primes of the CFRG curves. Not constant-time: never for secret exponents.
 */

/** 2^255 − 19, the field of Curve25519 / edwards25519. */
export const P25519 = 2n ** 255n - 19n;
/** 2^448 − 2^224 − 1, the field of Curve448 / edwards448. */
export const P448 = 2n ** 448n - 2n ** 224n - 1n;

/** `a mod p` in [0, p). */
export function mod(a: bigint, p: bigint): bigint {
  const r = a % p;
  return r < 0n ? r + p : r;
}

/** `base^exp mod p` by square-and-multiply (public exponents only). */
export function powMod(base: bigint, exp: bigint, p: bigint): bigint {
  let result = 1n;
  let b = mod(base, p);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % p;
    b = (b * b) % p;
    e >>= 1n;
  }
  return result;
}

/**
 * The inverse of `a` modulo `p` (extended Euclid).
 * @throws RangeError when `a` has no inverse (a ≡ 0 or gcd(a, p) ≠ 1).
 */
export function invert(a: bigint, p: bigint): bigint {
  let [r0, r1] = [mod(a, p), p];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new RangeError('value has no inverse modulo p');
  return mod(s0, p);
}

/** `x^(2^n) mod p` by n squarings. */
function pow2k(x: bigint, n: number, p: bigint): bigint {
  let r = x;
  for (let i = 0; i < n; i++) r = (r * r) % p;
  return r;
}

/**
 * `x^((p − 5) / 8) mod p` for p = 2^255 − 19, i.e. x^(2^252 − 3), by the usual addition chain (254 squarings and 11
 * multiplications instead of square-and-multiply's ~500 operations): the core of a square root in that field.
 * Equal to `powMod(x, (P25519 - 5n) / 8n, P25519)`.
 * @throws TypeError when x is not a bigint
 */
export function pow25519Pm5d8(x: bigint): bigint {
  if (typeof x !== 'bigint') throw new TypeError('"x" expected a bigint');
  const p = P25519;
  const a = mod(x, p);
  const x2 = (a * a) % p;
  const b2 = (x2 * a) % p; // 2^2 − 1
  const b4 = (pow2k(b2, 2, p) * b2) % p; // 2^4 − 1
  const b5 = (pow2k(b4, 1, p) * a) % p; // 2^5 − 1
  const b10 = (pow2k(b5, 5, p) * b5) % p;
  const b20 = (pow2k(b10, 10, p) * b10) % p;
  const b40 = (pow2k(b20, 20, p) * b20) % p;
  const b80 = (pow2k(b40, 40, p) * b40) % p;
  const b160 = (pow2k(b80, 80, p) * b80) % p;
  const b240 = (pow2k(b160, 80, p) * b80) % p;
  const b250 = (pow2k(b240, 10, p) * b10) % p; // 2^250 − 1
  return (pow2k(b250, 2, p) * a) % p; // 2^252 − 3
}
