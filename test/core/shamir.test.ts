import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bigIntToBytesBE, bytesToBigIntBE, concatBytes, fromHex, toHex } from '../../src/core/bytes.js';
import { ErrorCode, ShamirError } from '../../src/core/errors.js';
import { base32Decode } from '../../src/core/base32.js';
import { udfFormat, udfParse } from '../../src/core/udf.js';
import {
  SHAMIR_PRIME_OFFSETS,
  _encodeShare,
  _evaluateShares,
  _interpolate,
  _splitSecret,
  combineShares,
  parseShare,
  shamirPrime,
  splitSecret,
} from '../../src/core/shamir.js';

interface E1 {
  id: string;
  comment: string;
  secret: string;
  secretBase32: string;
  threshold: number;
  coefficients: string[];
  shares: Array<{ x: number; f: string; bytes: string; udf: string }>;
}
const e1 = (JSON.parse(readFileSync(new URL('../vectors/mesh-udf-13.json', import.meta.url), 'utf8')) as { shamir: E1 }).shamir;

function expectShamirError(fn: () => unknown, code: string, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(ShamirError);
  expect((caught as ShamirError).code).toBe(code);
  if (message) expect((caught as Error).message).toMatch(message);
}

/** All k-subsets of an array. */
function subsets<T>(items: readonly T[], k: number): T[][] {
  if (k === 0) return [[]];
  if (items.length < k) return [];
  const [head, ...rest] = items as [T, ...T[]];
  return [...subsets(rest, k - 1).map((s) => [head, ...s]), ...subsets(rest, k)];
}

describe('mesh-udf-13.json E1 (k=3, n=5, p = 2^128+51)', () => {
  const p = shamirPrime(16);
  it('mesh-udf-13 E1: the secret is a0 and its raw Base32 is as printed', () => {
    expect(p).toBe((1n << 128n) + 51n);
    expect(bytesToBigIntBE(fromHex(e1.secret)).toString()).toBe(e1.coefficients[0]);
    expect(toHex(base32Decode(e1.secretBase32))).toBe(toHex(fromHex(e1.secret)));
  });
  it('mesh-udf-13 E1: f(1)…f(5) from a0, a1, a2 are exactly the printed values, bytes and UDFs', () => {
    const values = _evaluateShares(e1.coefficients.map((c) => BigInt(c)), p, 5);
    expect(values.map(String)).toEqual(e1.shares.map((s) => s.f));
    e1.shares.forEach((s, i) => {
      const udf = _encodeShare(e1.threshold, s.x, values[i] ?? -1n, 16);
      expect(udf).toBe(s.udf);
      expect(toHex(concatBytes(Uint8Array.of(0x90), fromHex(s.bytes)))).toBe(toHex(concatBytes(Uint8Array.of(udfParse(udf).type), udfParse(udf).bytes)));
      expect(udfFormat(144, fromHex(s.bytes))).toBe(s.udf);
    });
  });
  it('mesh-udf-13 E1: a0, a1, a2 fed through the random source give the printed shares', () => {
    const draws = e1.coefficients.slice(1).map((c) => bigIntToBytesBE(BigInt(c), 17));
    let i = 0;
    const shares = _splitSecret(fromHex(e1.secret), 3, 5, (n) => {
      expect(n).toBe(17);
      const d = draws[i++];
      if (d === undefined) throw new Error('unexpected extra draw');
      return new Uint8Array(d);
    });
    expect(shares).toEqual(e1.shares.map((s) => s.udf));
  });
  it.each(subsets([0, 1, 2, 3, 4], 3).map((s) => [s.map((i) => i + 1).join(',')] as const))(
    'mesh-udf-13 E1: shares %s recover the secret',
    (label) => {
      const chosen = label.split(',').map((x) => e1.shares[Number(x) - 1]?.udf ?? '');
      expect(toHex(combineShares(chosen))).toBe(toHex(fromHex(e1.secret)));
    },
  );
  it('mesh-udf-13 E1: all five shares (extras checked) recover the secret; any order; lower case', () => {
    const all = e1.shares.map((s) => s.udf);
    expect(toHex(combineShares(all))).toBe(toHex(fromHex(e1.secret)));
    expect(toHex(combineShares([...all].reverse().map((s) => s.toLowerCase())))).toBe(toHex(fromHex(e1.secret)));
  });
  it('mesh-udf-13 E1: parseShare', () => {
    expect(parseShare(e1.shares[3]?.udf ?? '')).toEqual({ threshold: 3, index: 4, value: BigInt(e1.shares[3]?.f ?? 0), secretLength: 16 });
  });
});

describe('prime table (mesh-udf Appendix A)', () => {
  it('has 64 offsets; spot values from the table', () => {
    expect(SHAMIR_PRIME_OFFSETS.length).toBe(64);
    expect(shamirPrime(1)).toBe(257n);
    expect(shamirPrime(2)).toBe(65537n);
    expect(shamirPrime(32)).toBe((1n << 256n) + 297n);
    expect(shamirPrime(35)).toBe((1n << 280n) + 45n);
    expect(shamirPrime(54)).toBe((1n << 432n) + 1093n);
    expect(shamirPrime(64)).toBe((1n << 512n) + 75n);
    expect(() => shamirPrime(0)).toThrow(RangeError);
    expect(() => shamirPrime(65)).toThrow(RangeError);
  });
  it('each p passes a Fermat test to several bases (probable prime)', () => {
    const powmod = (b: bigint, e: bigint, m: bigint): bigint => {
      let r = 1n;
      b %= m;
      while (e > 0n) {
        if (e & 1n) r = (r * b) % m;
        b = (b * b) % m;
        e >>= 1n;
      }
      return r;
    };
    for (let L = 1; L <= 64; L++) {
      const p = shamirPrime(L);
      for (const base of [2n, 3n, 5n, 7n]) expect(powmod(base, p - 1n, p), `L=${L} base=${base}`).toBe(1n);
    }
  });
});

describe('splitSecret / combineShares', () => {
  it('makes n S-UDF shares with the threshold and index encoded', () => {
    const secret = new Uint8Array(32).fill(0xab);
    const shares = splitSecret(secret, 3, 5);
    expect(shares).toHaveLength(5);
    shares.forEach((s, i) => {
      expect(s.startsWith('S')).toBe(true);
      expect(parseShare(s)).toMatchObject({ threshold: 3, index: i + 1, secretLength: 32 });
    });
    expect(combineShares(shares.slice(2))).toEqual(secret);
  });
  it('redraws the polynomial when a share does not fit in L bytes (forced with an injected random source)', () => {
    // L = 1, p = 257, k = 2, secret 0: a1 = 256 gives f(1) = 256 ≥ 2^8 → redraw; then a1 = 1.
    const draws = [Uint8Array.of(0x01, 0x00), Uint8Array.of(0x00, 0x01)];
    let calls = 0;
    const redraws: number[] = [];
    const shares = _splitSecret(
      Uint8Array.of(0),
      2,
      3,
      () => new Uint8Array(draws[calls++] ?? Uint8Array.of(0, 2)),
      (attempt) => redraws.push(attempt),
    );
    expect(calls).toBe(2);
    expect(redraws).toEqual([1]);
    expect(shares.map((s) => parseShare(s).value)).toEqual([1n, 2n, 3n]);
    expect(combineShares(shares.slice(1))).toEqual(Uint8Array.of(0));
  });
  it('rejects random draws ≥ p (rejection sampling) without counting them as coefficients', () => {
    // 0x01 0x01 = 257 = p is not < p → drawn again.
    const draws = [Uint8Array.of(0x01, 0x01), Uint8Array.of(0xfe, 0x05)]; // second: top byte masked to 0 → 5
    let calls = 0;
    const shares = _splitSecret(Uint8Array.of(10), 2, 2, () => new Uint8Array(draws[calls++] ?? Uint8Array.of(0, 0)));
    expect(calls).toBe(2);
    expect(shares.map((s) => parseShare(s).value)).toEqual([15n, 20n]);
  });
  it('argument checks (k = 1 is refused: it would put the secret in clear in every share)', () => {
    const s = new Uint8Array(16);
    expect(() => splitSecret(s, 1, 3)).toThrow(RangeError);
    expect(() => splitSecret(s, 4, 3)).toThrow(/must not exceed/);
    expect(() => splitSecret(s, 2, 16)).toThrow(RangeError);
    expect(() => splitSecret(s, 16, 16)).toThrow(RangeError);
    expect(() => splitSecret(new Uint8Array(0), 2, 3)).toThrow(RangeError);
    expect(() => splitSecret(new Uint8Array(65), 2, 3)).toThrow(RangeError);
    expect(() => splitSecret('secret' as unknown as Uint8Array, 2, 3)).toThrow(TypeError);
    expect(() => splitSecret(s, 2.5, 3)).toThrow(TypeError);
    expect(() => combineShares('S' as unknown as string[])).toThrow(TypeError);
    expect(() => combineShares([5 as unknown as string])).toThrow(TypeError);
  });
  it('accepts threshold-1 shares made elsewhere (each share is the secret)', () => {
    const one = _encodeShare(1, 1, 0x1234n, 2);
    expect(combineShares([one])).toEqual(Uint8Array.of(0x12, 0x34));
    expect(combineShares([one, _encodeShare(1, 2, 0x1234n, 2)])).toEqual(Uint8Array.of(0x12, 0x34));
    expectShamirError(() => combineShares([one, _encodeShare(1, 2, 0x1235n, 2)]), ErrorCode.SHARES_INCONSISTENT);
  });
});

describe('combineShares errors', () => {
  const all = e1.shares.map((s) => s.udf);
  it('too few → ERR_SHARES_INSUFFICIENT "need 3 shares, got 2"', () => {
    expectShamirError(() => combineShares(all.slice(0, 2)), ErrorCode.SHARES_INSUFFICIENT, /need 3 shares, got 2/);
    expectShamirError(() => combineShares([]), ErrorCode.SHARES_INSUFFICIENT);
  });
  it('same index twice → ERR_SHARE_DUPLICATE naming it', () => {
    const a = all[1] ?? '';
    expectShamirError(() => combineShares([a, all[0] ?? '', a.toLowerCase()]), ErrorCode.SHARE_DUPLICATE, /index 2/);
  });
  it('different thresholds or secret lengths → ERR_SHARES_INCONSISTENT', () => {
    const other = splitSecret(new Uint8Array(16), 2, 3);
    expectShamirError(() => combineShares([all[0] ?? '', all[1] ?? '', other[2] ?? '']), ErrorCode.SHARES_INCONSISTENT, /share 3/);
    const longer = splitSecret(new Uint8Array(17), 3, 3);
    expectShamirError(() => combineShares([all[0] ?? '', longer[1] ?? '', all[2] ?? '']), ErrorCode.SHARES_INCONSISTENT, /17-byte/);
  });
  it('an extra share off the polynomial → ERR_SHARES_INCONSISTENT naming the first bad one', () => {
    const forged = _encodeShare(3, 5, BigInt(e1.shares[4]?.f ?? 0) ^ 1n, 16);
    expectShamirError(
      () => combineShares([all[0] ?? '', all[1] ?? '', all[2] ?? '', all[3] ?? '', forged]),
      ErrorCode.SHARES_INCONSISTENT,
      /share 5 \(index 5\)/,
    );
    const forged4 = _encodeShare(3, 4, 7n, 16);
    expectShamirError(() => combineShares([all[0] ?? '', all[1] ?? '', all[2] ?? '', forged4, forged]), ErrorCode.SHARES_INCONSISTENT, /share 4 \(index 4\)/);
  });
  it('shares of different secrets with the same parameters: wrong secret or ERR_SHARES_INCONSISTENT, never the original', () => {
    const a = splitSecret(new Uint8Array(16).fill(1), 2, 2);
    const b = splitSecret(new Uint8Array(16).fill(2), 2, 2);
    let result: Uint8Array | undefined;
    try {
      result = combineShares([a[0] ?? '', b[1] ?? '']);
    } catch (e) {
      expect((e as ShamirError).code).toBe(ErrorCode.SHARES_INCONSISTENT);
    }
    if (result !== undefined) {
      expect(toHex(result)).not.toBe(toHex(new Uint8Array(16).fill(1)));
      expect(toHex(result)).not.toBe(toHex(new Uint8Array(16).fill(2)));
    }
  });
  it('not a share → ERR_SHARE_INVALID naming the position', () => {
    expectShamirError(() => combineShares([all[0] ?? '', 'MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF', all[2] ?? '']), ErrorCode.SHARE_INVALID, /share 2/);
    expectShamirError(() => combineShares([all[0] ?? '', 'S!!!', all[2] ?? '']), ErrorCode.SHARE_INVALID, /share 2/);
    expectShamirError(() => parseShare('SAYC7-UW4N5-6UIVT-TZ62U-NJ6FP'), ErrorCode.SHARE_INVALID, /legacy/);
    expectShamirError(() => parseShare(udfFormat(144, Uint8Array.of(0x00, 1, 2, 3))), ErrorCode.SHARE_INVALID, /threshold 0/);
    expectShamirError(() => parseShare(udfFormat(144, Uint8Array.of(0x30))), ErrorCode.SHARE_INVALID, /secret length/);
    expectShamirError(() => parseShare(udfFormat(144, new Uint8Array(66).fill(0x30))), ErrorCode.SHARE_INVALID, /secret length/);
  });
});

describe('properties (fast-check)', () => {
  const params = fc
    .record({
      secret: fc.uint8Array({ minLength: 1, maxLength: 64 }),
      n: fc.integer({ min: 2, max: 15 }),
      kSeed: fc.integer({ min: 0, max: 1000 }),
      pick: fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 15, maxLength: 15 }),
    })
    .map(({ secret, n, kSeed, pick }) => ({ secret, n, k: 2 + (kSeed % (n - 1)), pick }));

  function choose(shares: string[], count: number, pick: number[]): string[] {
    const pool = [...shares];
    const out: string[] = [];
    for (let i = 0; i < count; i++) out.push(pool.splice((pick[i] ?? 0) % pool.length, 1)[0] ?? '');
    return out;
  }

  it('any k of n shares recover the secret', () => {
    fc.assert(
      fc.property(params, ({ secret, n, k, pick }) => {
        const shares = splitSecret(secret, k, n);
        expect(combineShares(choose(shares, k, pick))).toEqual(secret);
      }),
      { numRuns: 150 },
    );
  });
  it('k−1 shares do not give the secret: combineShares refuses, raw interpolation gives another value', () => {
    fc.assert(
      fc.property(params.filter((v) => v.secret.length >= 8), ({ secret, n, k, pick }) => {
        const chosen = choose(splitSecret(secret, k, n), k - 1, pick);
        expect(() => combineShares(chosen)).toThrow(new RegExp(`need ${k} shares, got ${k - 1}`));
        const points = chosen.map((s) => parseShare(s)).map((s) => [BigInt(s.index), s.value] as const);
        expect(_interpolate(points, 0n, shamirPrime(secret.length))).not.toBe(bytesToBigIntBE(secret));
      }),
      { numRuns: 150 },
    );
  });
});
