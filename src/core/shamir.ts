/**
 * Shamir secret sharing with mesh-udf share UDFs (draft-hallambaker-mesh-udf-13 §4.5 and
 * Appendices A/B; digest §2.8). Used for the offline escrow of the master-key session key.
 *
 * - A secret of L bytes (1…64) is the big-endian integer a0; the field prime is
 *   p = 2^(8L) + offset[L] (the smallest prime above 2^(8L), Appendix A).
 * - f(x) = a0 + a1·x + … + a(k−1)·x^(k−1) mod p with random coefficients < p; share i = f(i), i = 1…n.
 * - If any f(i) ≥ 2^(8L) (it would not fit in L bytes) the whole polynomial is drawn again.
 * - Share UDF: `0x90 ‖ (k << 4 | (i − 1)) ‖ f(i)` as L bytes big-endian, presented in Base32.
 * - Recovery: Lagrange interpolation at 0 mod p from k shares; extra shares are checked to lie on
 *   the same polynomial.
 *
 * Threshold 1 is refused by {@link splitSecret}: every share would be the secret in clear
 * (f(x) = a0). {@link combineShares} still accepts threshold-1 shares made elsewhere.
 */
import { randomBytes } from 'node:crypto';
import { abytes, aint, bigIntToBytesBE, bytesToBigIntBE, concatBytes, wipe } from './bytes.js';
import { ErrorCode, ShamirError, UdfError } from './errors.js';
import { UdfType, udfFormat, udfParse } from './udf.js';
import { invert, mod } from './field.js';

/** p − 2^(8L) for L = 1…64 bytes (mesh-udf Appendix A). Index 0 is L = 1. */
export const SHAMIR_PRIME_OFFSETS: readonly number[] = [
  1, 1, 43, 15, 15, 21, 81, 13, 15, 13, 7, 61, 111, 25, 451, 51, 85, 175, 253, 7, 87, 427, 27, 133, 235, 375, 423,
  735, 357, 115, 81, 297, 175, 57, 45, 127, 61, 37, 91, 27, 15, 241, 231, 55, 105, 127, 115, 231, 207, 181, 37, 235,
  163, 1093, 187, 211, 21, 841, 445, 165, 777, 583, 133, 75,
];

/** Largest threshold and share count the share encoding allows here. */
export const SHAMIR_MAX_SHARES = 15;

/** The field prime for a secret of `secretLength` bytes (1…64): 2^(8L) + offset[L]. */
export function shamirPrime(secretLength: number): bigint {
  aint(secretLength, 'secretLength', 1, 64);
  return (1n << BigInt(8 * secretLength)) + BigInt(SHAMIR_PRIME_OFFSETS[secretLength - 1] ?? 0);
}

/** A parsed share. */
export interface Share {
  threshold: number;
  index: number;
  value: bigint;
  secretLength: number;
}

/**
 * Internal: evaluates the polynomial with `coefficients` (a0 first) at x = 1…n mod p.
 * Exposed for vector tests.
 */
export function _evaluateShares(coefficients: readonly bigint[], p: bigint, n: number): bigint[] {
  const out: bigint[] = [];
  for (let x = 1n; x <= BigInt(n); x++) {
    let y = 0n;
    for (let j = coefficients.length - 1; j >= 0; j--) y = mod(y * x + (coefficients[j] ?? 0n), p);
    out.push(y);
  }
  return out;
}

/**
 * Internal: Lagrange interpolation of the points (x, y) at `at` modulo p. With fewer points than
 * the threshold the result is not the secret. Exposed for tests.
 */
export function _interpolate(points: ReadonlyArray<readonly [bigint, bigint]>, at: bigint, p: bigint): bigint {
  let acc = 0n;
  for (let j = 0; j < points.length; j++) {
    const [xj, yj] = points[j] ?? [0n, 0n];
    let num = 1n;
    let den = 1n;
    for (let m = 0; m < points.length; m++) {
      if (m === j) continue;
      const xm = (points[m] ?? [0n, 0n])[0];
      num = mod(num * (at - xm), p);
      den = mod(den * (xj - xm), p);
    }
    acc = mod(acc + yj * num * invert(den, p), p);
  }
  return acc;
}

/** Internal: encodes one share as an S-UDF string. */
export function _encodeShare(threshold: number, index: number, value: bigint, secretLength: number): string {
  const body = bigIntToBytesBE(value, secretLength);
  const bds = concatBytes(Uint8Array.of((threshold << 4) | (index - 1)), body);
  const out = udfFormat(UdfType.Share, bds);
  wipe(body, bds);
  return out;
}

/** A random integer in [0, p) from `random`, by rejection sampling on 8L+1 bits. */
function randomBelow(p: bigint, secretLength: number, random: (n: number) => Uint8Array): bigint {
  for (;;) {
    const bytes = random(secretLength + 1);
    if (!(bytes instanceof Uint8Array) || bytes.length !== secretLength + 1) {
      throw new TypeError(`random source must return ${secretLength + 1} bytes`);
    }
    bytes[0] = (bytes[0] ?? 0) & 0x01;
    const v = bytesToBigIntBE(bytes);
    wipe(bytes);
    if (v < p) return v;
  }
}

/**
 * Internal: {@link splitSecret} with an injected random source (`random(n)` returns n bytes), so
 * tests can force the redraw of a polynomial whose shares do not fit in L bytes. `onRedraw` is
 * called once per rejected polynomial.
 */
export function _splitSecret(
  secret: Uint8Array,
  threshold: number,
  shares: number,
  random: (n: number) => Uint8Array,
  onRedraw?: (attempt: number) => void,
): string[] {
  abytes(secret, 'secret');
  if (secret.length < 1 || secret.length > 64) {
    throw new RangeError(`"secret" expected Uint8Array of length 1…64, got length=${secret.length}`);
  }
  aint(threshold, 'threshold', 2, SHAMIR_MAX_SHARES);
  aint(shares, 'shares', 1, SHAMIR_MAX_SHARES);
  if (threshold > shares) throw new RangeError(`"threshold" (${threshold}) must not exceed "shares" (${shares})`);
  const length = secret.length;
  const p = shamirPrime(length);
  const limit = 1n << BigInt(8 * length);
  const a0 = bytesToBigIntBE(secret);
  for (let attempt = 1; ; attempt++) {
    const coefficients = [a0];
    for (let j = 1; j < threshold; j++) coefficients.push(randomBelow(p, length, random));
    const values = _evaluateShares(coefficients, p, shares);
    if (values.every((v) => v < limit)) {
      return values.map((v, i) => _encodeShare(threshold, i + 1, v, length));
    }
    onRedraw?.(attempt);
  }
}

/**
 * Splits `secret` (1…64 bytes) into `shares` S-UDF strings, any `threshold` of which recover it.
 * 2 ≤ threshold ≤ shares ≤ 15. Coefficients come from node:crypto randomBytes.
 * @throws TypeError for wrong argument types; RangeError for a secret length outside 1…64, a
 * threshold outside 2…15 (threshold 1 would put the secret in clear in every share), shares
 * outside 1…15 or threshold > shares.
 */
export function splitSecret(secret: Uint8Array, threshold: number, shares: number): string[] {
  return _splitSecret(secret, threshold, shares, (n) => new Uint8Array(randomBytes(n)));
}

/**
 * Parses one S-UDF share: `0x90 ‖ (k << 4 | (i − 1)) ‖ f(i)` (L bytes big-endian, L = 1…64).
 * @throws TypeError if `share` is not a string; ShamirError ERR_SHARE_INVALID (with the UdfError
 * as cause where there is one) if it is not a valid share UDF or its threshold is 0.
 */
export function parseShare(share: string): Share {
  if (typeof share !== 'string') throw new TypeError(`"share" expected string, got ${typeof share}`);
  let parsed: { type: number; bytes: Uint8Array };
  try {
    parsed = udfParse(share);
  } catch (e) {
    if (e instanceof UdfError) throw new ShamirError(ErrorCode.SHARE_INVALID, `invalid share: ${e.message}`, { cause: e });
    throw e;
  }
  if (parsed.type !== UdfType.Share) {
    throw new ShamirError(ErrorCode.SHARE_INVALID, `invalid share: expected a share UDF (type 144, 'S…'), got type ${parsed.type}`);
  }
  const secretLength = parsed.bytes.length - 1;
  if (secretLength < 1 || secretLength > 64) {
    throw new ShamirError(ErrorCode.SHARE_INVALID, `invalid share: secret length ${secretLength} bytes is outside 1…64`);
  }
  const head = parsed.bytes[0] ?? 0;
  const threshold = head >> 4;
  if (threshold === 0) throw new ShamirError(ErrorCode.SHARE_INVALID, 'invalid share: threshold 0');
  const value = bytesToBigIntBE(parsed.bytes.subarray(1));
  wipe(parsed.bytes);
  return { threshold, index: (head & 0x0f) + 1, value, secretLength };
}

/**
 * Recovers the secret from S-UDF shares (Lagrange interpolation at 0 mod p). With more than the
 * threshold, every extra share must lie on the same polynomial.
 * @throws TypeError if `shares` is not an array of strings; ShamirError ERR_SHARE_INVALID (a share
 * that does not parse, or a value ≥ 2^(8L)), ERR_SHARES_INCONSISTENT (different thresholds or
 * secret lengths, an extra share off the polynomial, or a result that does not fit in L bytes),
 * ERR_SHARE_DUPLICATE (the same index twice), ERR_SHARES_INSUFFICIENT (fewer than the threshold).
 */
export function combineShares(shares: string[]): Uint8Array {
  if (!Array.isArray(shares)) throw new TypeError(`"shares" expected an array of strings, got ${typeof shares}`);
  if (shares.length === 0) throw new ShamirError(ErrorCode.SHARES_INSUFFICIENT, 'no shares given');
  const parsed = shares.map((s, i) => {
    if (typeof s !== 'string') throw new TypeError(`"shares[${i}]" expected string, got ${typeof s}`);
    try {
      return parseShare(s);
    } catch (e) {
      if (e instanceof ShamirError) {
        throw new ShamirError(e.code, `share ${i + 1}: ${e.message}`, { cause: e });
      }
      throw e;
    }
  });
  const first = parsed[0] as Share;
  const { threshold, secretLength } = first;
  parsed.forEach((s, i) => {
    if (s.threshold !== threshold || s.secretLength !== secretLength) {
      throw new ShamirError(
        ErrorCode.SHARES_INCONSISTENT,
        `share ${i + 1} (threshold ${s.threshold}, ${s.secretLength}-byte secret) does not belong with share 1 (threshold ${threshold}, ${secretLength}-byte secret)`,
      );
    }
  });
  const seen = new Map<number, number>();
  parsed.forEach((s, i) => {
    const earlier = seen.get(s.index);
    if (earlier !== undefined) {
      throw new ShamirError(ErrorCode.SHARE_DUPLICATE, `share index ${s.index} given twice (shares ${earlier + 1} and ${i + 1})`);
    }
    seen.set(s.index, i);
  });
  if (parsed.length < threshold) {
    throw new ShamirError(ErrorCode.SHARES_INSUFFICIENT, `need ${threshold} shares, got ${parsed.length}`);
  }
  return _combine(parsed, threshold, secretLength);
}

/** Internal: combination of already-parsed shares (checks values, extra shares and the result). */
export function _combine(parsed: readonly Share[], threshold: number, secretLength: number): Uint8Array {
  const p = shamirPrime(secretLength);
  const limit = 1n << BigInt(8 * secretLength);
  parsed.forEach((s, i) => {
    if (s.value < 0n || s.value >= limit) {
      throw new ShamirError(ErrorCode.SHARE_INVALID, `share ${i + 1} (index ${s.index}): value does not fit in ${secretLength} bytes`);
    }
  });
  const basis = parsed.slice(0, threshold).map((s) => [BigInt(s.index), s.value] as const);
  for (let i = threshold; i < parsed.length; i++) {
    const s = parsed[i] as Share;
    if (_interpolate(basis, BigInt(s.index), p) !== s.value) {
      throw new ShamirError(
        ErrorCode.SHARES_INCONSISTENT,
        `share ${i + 1} (index ${s.index}) does not lie on the polynomial of the first ${threshold} shares`,
      );
    }
  }
  const secret = _interpolate(basis, 0n, p);
  if (secret >= limit) {
    throw new ShamirError(ErrorCode.SHARES_INCONSISTENT, `the shares do not belong to one secret (result does not fit in ${secretLength} bytes)`);
  }
  return bigIntToBytesBE(secret, secretLength);
}
