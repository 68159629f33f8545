/**
 * The strict CBOR subset of the device protocol (docs/protocol.md "CBOR subset"), pure.
 *
 * Unsigned and negative integers (to ±2^64), byte strings, UTF-8 text strings, arrays, maps with unsigned integer
 * keys in strictly increasing order, false / true / null; definite lengths, nesting at most 8, shortest encodings
 * only. {@link encodeCbor} always writes that canonical form; {@link decodeCbor} rejects everything else with a
 * DeviceError whose `status` is CBOR_INVALID or CBOR_NONCANONICAL, so that a message has exactly one encoding —
 * the same rule the C firmware applies (shared vectors: firmware-bindings/vectors/cbor*.hex).
 */
import { abytes, describe } from '../core/bytes.js';
import type { DeviceError } from '../core/errors.js';
import { deviceError } from './framing.js';
import { Limits } from './protocol.generated.js';

/** A decoded value. Integers within ±(2^53−1) are numbers; larger magnitudes are bigints (map keys too). */
export type CborValue = number | bigint | string | boolean | null | Uint8Array | CborValue[] | CborMap;
/** A decoded map: unsigned integer keys in increasing order. */
export type CborMap = Map<number | bigint, CborValue>;
/** A value {@link encodeCbor} accepts: as CborValue, plus readonly containers and plain objects with integer keys. */
export type CborInput =
  | number
  | bigint
  | string
  | boolean
  | null
  | Uint8Array
  | readonly CborInput[]
  | ReadonlyMap<number | bigint, CborInput>
  | { readonly [key: string]: CborInput };

const MAX_U64 = (1n << 64n) - 1n;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const INTEGER_KEY = /^(0|[1-9][0-9]*)$/;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

class Writer {
  buf = new Uint8Array(256);
  len = 0;
  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  /** Initial byte and argument in the shortest form. */
  head(major: number, value: number | bigint): void {
    const m = major << 5;
    if (typeof value === 'number' && value < 24) return this.byte(m | value);
    if (typeof value === 'number' && value <= 0xff) return this.bytes(Uint8Array.of(m | 24, value));
    if (typeof value === 'number' && value <= 0xffff) return this.bytes(Uint8Array.of(m | 25, value >>> 8, value & 0xff));
    if (typeof value === 'number' && value <= 0xffffffff) {
      const b = new Uint8Array(5);
      b[0] = m | 26;
      new DataView(b.buffer).setUint32(1, value, false);
      return this.bytes(b);
    }
    const big = BigInt(value);
    if (big <= 0xffffffffn) return this.head(major, Number(big));
    const b = new Uint8Array(9);
    b[0] = m | 27;
    new DataView(b.buffer).setBigUint64(1, big, false);
    this.bytes(b);
  }
}

function keyOf(key: unknown, path: string): bigint {
  if (typeof key === 'number') {
    if (!Number.isSafeInteger(key) || key < 0) throw new RangeError(`"${path}" map key expected an unsigned integer, got ${key}`);
    return BigInt(key);
  }
  if (typeof key === 'bigint') {
    if (key < 0n || key > MAX_U64) throw new RangeError(`"${path}" map key expected an unsigned 64-bit integer, got ${key}`);
    return key;
  }
  if (typeof key === 'string') {
    if (!INTEGER_KEY.test(key)) throw new RangeError(`"${path}" object key expected an unsigned integer, got "${key}"`);
    return BigInt(key);
  }
  throw new TypeError(`"${path}" map key expected an unsigned integer, got ${describe(key)}`);
}

function encodeInto(w: Writer, value: unknown, depth: number, path: string): void {
  if (value === null) return w.byte(0xf6);
  if (value === false) return w.byte(0xf4);
  if (value === true) return w.byte(0xf5);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`"${path}" expected a safe integer (floats are outside the subset), got ${value}`);
    return value >= 0 ? w.head(0, value) : w.head(1, -1 - value);
  }
  if (typeof value === 'bigint') {
    if (value > MAX_U64 || value < -MAX_U64 - 1n) throw new RangeError(`"${path}" expected an integer in [-2^64, 2^64-1], got ${value}`);
    return value >= 0n ? w.head(0, value) : w.head(1, -1n - value);
  }
  if (typeof value === 'string') {
    if (LONE_SURROGATE.test(value)) throw new RangeError(`"${path}" string contains a lone surrogate`);
    const b = textEncoder.encode(value);
    w.head(3, b.length);
    return w.bytes(b);
  }
  if (value instanceof Uint8Array) {
    w.head(2, value.length);
    return w.bytes(value);
  }
  if (typeof value !== 'object') throw new TypeError(`"${path}" expected a CBOR subset value, got ${describe(value)}`);
  if (depth >= Limits.CBOR_MAX_DEPTH) throw new RangeError(`"${path}" nesting deeper than ${Limits.CBOR_MAX_DEPTH}`);
  if (Array.isArray(value)) {
    w.head(4, value.length);
    value.forEach((item, i) => encodeInto(w, item, depth + 1, `${path}[${i}]`));
    return;
  }
  let entries: [unknown, unknown][];
  if (value instanceof Map) {
    entries = [...(value as Map<unknown, unknown>).entries()];
  } else {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) throw new TypeError(`"${path}" expected a plain object, Map or array, got ${describe(value)}`);
    entries = Object.entries(value as Record<string, unknown>);
  }
  const keyed = entries.map(([k, v]) => [keyOf(k, path), v] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (let i = 1; i < keyed.length; i++) {
    if ((keyed[i] as (typeof keyed)[number])[0] === (keyed[i - 1] as (typeof keyed)[number])[0]) {
      throw new RangeError(`"${path}" duplicate map key ${(keyed[i] as (typeof keyed)[number])[0]}`);
    }
  }
  w.head(5, keyed.length);
  for (const [k, v] of keyed) {
    w.head(0, k);
    encodeInto(w, v, depth + 1, `${path}{${k}}`);
  }
}

/**
 * Encodes a value in the protocol's CBOR subset, canonically: shortest integers and lengths, map keys sorted.
 * Plain objects are maps whose keys are decimal integer strings ("1", "2", …).
 * @param value number (safe integer), bigint (−2^64 … 2^64−1), string, Uint8Array, boolean, null, array, Map with
 *   unsigned integer keys, or plain object with integer-like keys; nesting at most 8
 * @returns the encoding
 * @throws TypeError for a value of a type outside the subset (undefined, symbol, function, class instance)
 * @throws RangeError for a float, an out-of-range integer or key, a duplicate key, a lone surrogate, or nesting over 8
 */
export function encodeCbor(value: CborInput): Uint8Array {
  const w = new Writer();
  encodeInto(w, value, 0, 'value');
  return w.buf.slice(0, w.len);
}

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  invalid(detail: string): DeviceError {
    return deviceError('CBOR_INVALID', `${detail} at offset ${this.pos}`);
  }
  take(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) throw this.invalid(`truncated: ${n} bytes needed`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** Reads an initial byte's argument; enforces the shortest form. Returns number when ≤ 2^53−1. */
  argument(ai: number): number | bigint {
    if (ai < 24) return ai;
    const at = this.pos - 1;
    const noncanonical = (): DeviceError => deviceError('CBOR_NONCANONICAL', `integer or length not in shortest form at offset ${at}`);
    if (ai === 24) {
      const v = this.take(1)[0] as number;
      if (v < 24) throw noncanonical();
      return v;
    }
    if (ai === 25) {
      const b = this.take(2);
      const v = ((b[0] as number) << 8) | (b[1] as number);
      if (v <= 0xff) throw noncanonical();
      return v;
    }
    if (ai === 26) {
      const b = this.take(4);
      const v = new DataView(b.buffer, b.byteOffset, 4).getUint32(0, false);
      if (v <= 0xffff) throw noncanonical();
      return v;
    }
    if (ai === 27) {
      const b = this.take(8);
      const v = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, false);
      if (v <= 0xffffffffn) throw noncanonical();
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    this.pos = at;
    throw this.invalid(ai === 31 ? 'indefinite length or break' : `reserved additional information ${ai}`);
  }
}

/** A length must be a number that fits in what is left (each item takes at least `unit` bytes). */
function aLength(r: Reader, value: number | bigint, unit: number): number {
  if (typeof value === 'bigint' || value * unit > r.buf.length - r.pos) throw r.invalid(`length ${value} exceeds the input`);
  return value;
}

function decodeItem(r: Reader, depth: number): CborValue {
  const start = r.pos;
  const ib = r.take(1)[0] as number;
  const major = ib >>> 5;
  const ai = ib & 0x1f;
  switch (major) {
    case 0:
      return r.argument(ai);
    case 1: {
      const v = r.argument(ai);
      return typeof v === 'number' && v < Number.MAX_SAFE_INTEGER ? -1 - v : -1n - BigInt(v);
    }
    case 2:
      return r.take(aLength(r, r.argument(ai), 1)).slice();
    case 3: {
      const bytes = r.take(aLength(r, r.argument(ai), 1));
      try {
        return textDecoder.decode(bytes);
      } catch {
        r.pos = start;
        throw r.invalid('invalid UTF-8 in text string');
      }
    }
    case 4:
    case 5: {
      if (depth >= Limits.CBOR_MAX_DEPTH) {
        r.pos = start;
        throw r.invalid(`nesting deeper than ${Limits.CBOR_MAX_DEPTH}`);
      }
      if (major === 4) {
        const n = aLength(r, r.argument(ai), 1);
        const out: CborValue[] = [];
        for (let i = 0; i < n; i++) out.push(decodeItem(r, depth + 1));
        return out;
      }
      const n = aLength(r, r.argument(ai), 2);
      const out: CborMap = new Map();
      let previous = -1n;
      for (let i = 0; i < n; i++) {
        const keyAt = r.pos;
        const kb = r.take(1)[0] as number;
        if (kb >>> 5 !== 0) {
          r.pos = keyAt;
          throw r.invalid('map key is not an unsigned integer');
        }
        const key = r.argument(kb & 0x1f);
        const big = BigInt(key);
        if (big <= previous) throw deviceError('CBOR_NONCANONICAL', `map key ${key} not greater than the previous key at offset ${keyAt}`);
        previous = big;
        out.set(key, decodeItem(r, depth + 1));
      }
      return out;
    }
    case 6:
      r.pos = start;
      throw r.invalid('tags are outside the subset');
    default:
      if (ai === 20) return false;
      if (ai === 21) return true;
      if (ai === 22) return null;
      r.pos = start;
      throw r.invalid(ai >= 25 && ai <= 27 ? 'floats are outside the subset' : `simple value or break 0x${ib.toString(16)} outside the subset`);
  }
}

/**
 * Decodes one item of the protocol's CBOR subset, rejecting anything else.
 * @param bytes exactly one encoded item
 * @returns the value (integers beyond ±(2^53−1) as bigint; maps as Map with number or bigint keys)
 * @throws TypeError when bytes is not a Uint8Array
 * @throws DeviceError status CBOR_NONCANONICAL for a non-shortest integer or length or unordered/duplicate map keys;
 *   status CBOR_INVALID for anything else outside the subset (tags, floats, simple values other than
 *   false/true/null, indefinite lengths, reserved values, non-integer map keys, invalid UTF-8, truncation,
 *   trailing bytes, nesting over 8)
 */
export function decodeCbor(bytes: Uint8Array): CborValue {
  abytes(bytes, 'bytes');
  const r = new Reader(bytes);
  const value = decodeItem(r, 0);
  if (r.pos !== bytes.length) throw r.invalid(`${bytes.length - r.pos} trailing bytes`);
  return value;
}
