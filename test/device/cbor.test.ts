import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../src/core/bytes.js';
import { DeviceError } from '../../src/core/errors.js';
import { decodeCbor, encodeCbor, type CborInput, type CborValue } from '../../src/device/cbor.js';
import { statusName } from '../../src/device/framing.js';
import { readVectors } from './hex-vectors.js';

const good = readVectors('cbor.hex');
const bad = readVectors('cbor-bad.hex');

/** RFC 8949 Appendix A diagnostic values of the rfc8949_* lines of cbor.hex (copied from the RFC's table). */
const rfcValues: Record<string, CborValue> = {
  rfc8949_0: 0, rfc8949_1: 1, rfc8949_10: 10, rfc8949_23: 23, rfc8949_24: 24, rfc8949_25: 25, rfc8949_100: 100,
  rfc8949_1000: 1000, rfc8949_1000000: 1000000, rfc8949_1000000000000: 1000000000000,
  rfc8949_18446744073709551615: 18446744073709551615n, rfc8949_neg18446744073709551616: -18446744073709551616n,
  rfc8949_neg1: -1, rfc8949_neg10: -10, rfc8949_neg100: -100, rfc8949_neg1000: -1000,
  rfc8949_false: false, rfc8949_true: true, rfc8949_null: null,
  rfc8949_bstr_empty: new Uint8Array(0), rfc8949_bstr_01020304: Uint8Array.of(1, 2, 3, 4),
  rfc8949_tstr_empty: '', rfc8949_tstr_a: 'a', rfc8949_tstr_IETF: 'IETF', rfc8949_tstr_quote_backslash: '"\\',
  rfc8949_tstr_u00fc: '\u00fc', rfc8949_tstr_u6c34: '\u6c34', rfc8949_tstr_u10151: '\ud800\udd51',
  rfc8949_array_empty: [], rfc8949_array_123: [1, 2, 3], rfc8949_array_nested: [1, [2, 3], [4, 5]],
  rfc8949_array_1_to_25: Array.from({ length: 25 }, (_, i) => i + 1),
  rfc8949_map_empty: new Map(), rfc8949_map_1_2_3_4: new Map([[1, 2], [3, 4]]),
  uint_2pow53_minus1: Number.MAX_SAFE_INTEGER, uint_2pow53: 2n ** 53n,
  neg_2pow53_plus1: Number.MIN_SAFE_INTEGER, neg_2pow53: -(2n ** 53n),
};

describe('CBOR subset: shared good vectors', () => {
  it.each(good.map((v) => [v.id, v] as const))('%s', (id, v) => {
    const value = decodeCbor(v.input);
    expect(encodeCbor(value)).toEqual(v.input);
    const name = id.slice('cbor.hex:'.length);
    if (name in rfcValues) expect(value).toEqual(rfcValues[name]);
  });
  it('every RFC value is checked', () => {
    const names = new Set(good.map((v) => v.id.slice('cbor.hex:'.length)));
    for (const n of Object.keys(rfcValues)) expect(names.has(n), n).toBe(true);
  });
});

describe('CBOR subset: shared bad vectors', () => {
  it.each(bad.map((v) => [v.id, v] as const))('%s', (_id, v) => {
    let caught: unknown;
    try {
      decodeCbor(v.input);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(DeviceError);
    expect((caught as DeviceError).code).toBe('ERR_DEVICE');
    expect(statusName((caught as DeviceError).status)).toBe(v.error);
  });
});

describe('CBOR subset: encoder', () => {
  it('encodes plain objects with integer keys in key order', () => {
    expect(toHex(encodeCbor({ 10: 1, 2: 'x', 1: new Uint8Array([0xff]) }))).toBe('a30141ff0261780a01');
    expect(encodeCbor(new Map<number | bigint, CborInput>([[3, 4], [1n, 2]]))).toEqual(fromHex('a201020304'));
  });
  it('encodes bigints and numbers alike', () => {
    expect(encodeCbor(5n)).toEqual(encodeCbor(5));
    expect(toHex(encodeCbor(-(2n ** 64n)))).toBe('3bffffffffffffffff');
    expect(toHex(encodeCbor(4294967296))).toBe('1b0000000100000000');
  });
  it('rejects values outside the subset', () => {
    expect(() => encodeCbor(1.5)).toThrow(RangeError);
    expect(() => encodeCbor(Number.NaN)).toThrow(RangeError);
    expect(() => encodeCbor(2 ** 53)).toThrow(RangeError);
    expect(() => encodeCbor(2n ** 64n)).toThrow(RangeError);
    expect(() => encodeCbor(-(2n ** 64n) - 1n)).toThrow(RangeError);
    expect(() => encodeCbor(undefined as unknown as CborInput)).toThrow(TypeError);
    expect(() => encodeCbor(new Date() as unknown as CborInput)).toThrow(TypeError);
    expect(() => encodeCbor({ a: 1 })).toThrow(RangeError);
    expect(() => encodeCbor({ '01': 1 })).toThrow(RangeError);
    expect(() => encodeCbor(new Map<number | bigint, CborInput>([[-1, 1]]))).toThrow(RangeError);
    expect(() => encodeCbor(new Map<number | bigint, CborInput>([[1, 1], [1n, 2]]))).toThrow(RangeError);
    expect(() => encodeCbor('\ud800')).toThrow(RangeError);
    let deep: CborInput = 1;
    for (let i = 0; i < 8; i++) deep = [deep];
    expect(() => encodeCbor(deep)).not.toThrow();
    expect(() => encodeCbor([deep])).toThrow(RangeError);
  });
  it('decodeCbor rejects a non-Uint8Array and empty input', () => {
    expect(() => decodeCbor('a0' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => decodeCbor(new Uint8Array(0))).toThrow(DeviceError);
  });
});

const leaf: fc.Arbitrary<CborInput> = fc.oneof(
  fc.maxSafeInteger(),
  fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n - 1n }),
  fc.uint8Array({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.boolean(),
  fc.constant(null),
);
const { value: cborValue } = fc.letrec<{ value: CborInput }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('value'), { maxLength: 5 }),
    fc.uniqueArray(fc.tuple(fc.nat({ max: 100_000 }), tie('value')), { selector: (t) => t[0], maxLength: 5 }).map((entries) => new Map<number | bigint, CborInput>(entries)),
  ),
}));

/** What decode gives back for an input value: safe bigints become numbers, -0 becomes 0. */
function normalise(v: CborInput): CborValue {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (typeof v === 'number') return v === 0 ? 0 : v;
  if (Array.isArray(v)) return (v as readonly CborInput[]).map(normalise);
  if (v instanceof Map) return new Map([...(v as Map<number, CborInput>).entries()].sort((a, b) => a[0] - b[0]).map(([k, x]) => [k, normalise(x)]));
  return v as CborValue;
}

function depthOf(v: CborInput): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...(v as readonly CborInput[]).map(depthOf));
  if (v instanceof Map) return 1 + Math.max(0, ...[...(v as Map<number, CborInput>).values()].map(depthOf));
  return 0;
}

describe('CBOR subset: properties', () => {
  it('decode(encode(v)) == v and the encoding is canonical', () => {
    fc.assert(
      fc.property(cborValue.filter((v) => depthOf(v) <= 8), (v) => {
        const bytes = encodeCbor(v);
        const back = decodeCbor(bytes);
        expect(back).toEqual(normalise(v));
        expect(encodeCbor(back)).toEqual(bytes);
      }),
      { numRuns: 300 },
    );
  });
  it('every strict prefix of an encoding is rejected with CBOR_INVALID, and so is any trailing byte', () => {
    fc.assert(
      fc.property(cborValue.filter((v) => depthOf(v) <= 8), fc.integer({ min: 0, max: 255 }), (v, extra) => {
        const bytes = encodeCbor(v);
        for (let n = 0; n < bytes.length; n++) {
          expect(() => decodeCbor(bytes.subarray(0, n))).toThrow(expect.objectContaining({ status: 32 }));
        }
        const longer = new Uint8Array(bytes.length + 1);
        longer.set(bytes);
        longer[bytes.length] = extra;
        expect(() => decodeCbor(longer)).toThrow(expect.objectContaining({ status: 32 }));
      }),
      { numRuns: 100 },
    );
  });
  it('random bytes either decode to a value that re-encodes identically or throw a DeviceError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        let value: CborValue;
        try {
          value = decodeCbor(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(DeviceError);
          expect([32, 33]).toContain((e as DeviceError).status);
          return;
        }
        expect(encodeCbor(value)).toEqual(bytes);
      }),
      { numRuns: 2000 },
    );
  });
});
