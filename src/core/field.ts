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
