/**
 * Byte helpers and argument checks shared by the pure core.
 *
 * Check helpers start with `a…` and return the checked value; they throw `TypeError` for a wrong
 * type and `RangeError` for a wrong length or value, naming the field.
 */

/** Throws TypeError unless `value` is a Uint8Array; RangeError unless its length is allowed. */
export function abytes(value: unknown, field: string, ...lengths: number[]): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`"${field}" expected Uint8Array, got ${describe(value)}`);
  }
  if (lengths.length > 0 && !lengths.includes(value.length)) {
    throw new RangeError(`"${field}" expected Uint8Array of length ${lengths.join(' or ')}, got length=${value.length}`);
  }
  return value;
}

/** Throws TypeError unless `value` is a safe integer; RangeError unless min ≤ value ≤ max. */
export function aint(value: unknown, field: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new TypeError(`"${field}" expected an integer, got ${describe(value)}`);
  }
  if (value < min || value > max) {
    throw new RangeError(`"${field}" expected an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

/** Throws TypeError unless `value` is a string. */
export function astring(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new TypeError(`"${field}" expected string, got ${describe(value)}`);
  return value;
}

/** Throws TypeError unless `value` is a plain (non-null, non-array) object. */
export function aobject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`"${field}" expected an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** A short, safe description of a value for error messages (never prints contents of buffers). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (value instanceof Uint8Array) return `Uint8Array(length=${value.length})`;
  return typeof value;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

const strictDecoder = new TextDecoder('utf-8', { fatal: true });
/** Decodes UTF-8, throwing TypeError on invalid sequences. */
export function fromUtf8(bytes: Uint8Array): string {
  return strictDecoder.decode(bytes);
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Parses hex (whitespace allowed between bytes). Throws RangeError on odd length or bad digits. */
export function fromHex(hex: string, field = 'hex'): Uint8Array {
  astring(hex, field);
  const clean = hex.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw new RangeError(`"${field}" expected an even number of hex digits`);
  }
  return new Uint8Array(Buffer.from(clean, 'hex'));
}

/** base64url without padding (RFC 7515 §2). */
export function b64u(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/** Strict base64url decoding: rejects padding, '+', '/', whitespace and non-canonical trailing bits. */
export function fromB64u(text: string, field = 'base64url'): Uint8Array {
  astring(text, field);
  const rem = text.length % 4;
  // Node's decoder skips characters outside the alphabet and also accepts '+' and '/'; a skipped
  // character shows up as a length mismatch below, '+' and '/' are refused here.
  if (rem === 1 || text.includes('+') || text.includes('/')) throw new RangeError(`"${field}" is not valid base64url`);
  const buf = Buffer.from(text, 'base64url');
  const expected = (text.length >> 2) * 3 + (rem === 0 ? 0 : rem - 1);
  if (buf.length !== expected) throw new RangeError(`"${field}" is not valid base64url`);
  if (rem !== 0) {
    // The unused low bits of the last character must be zero (canonical encoding).
    const last = B64U_VALUE[text.charCodeAt(text.length - 1)] ?? -1;
    if (last < 0 || (last & (rem === 2 ? 0x0f : 0x03)) !== 0) throw new RangeError(`"${field}" is not canonical base64url`);
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

const B64U_VALUE: Int8Array = (() => {
  const table = new Int8Array(128).fill(-1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i;
  return table;
})();

/** Constant-time comparison of two byte arrays (length is not secret). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** Overwrites secret material. JavaScript cannot promise that no copy survives elsewhere. */
export function wipe(...buffers: (Uint8Array | undefined)[]): void {
  for (const b of buffers) b?.fill(0);
}

/** Big-endian bytes → bigint. */
export function bytesToBigIntBE(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

/** bigint → big-endian bytes of exactly `length` bytes; RangeError if it does not fit. */
export function bigIntToBytesBE(n: bigint, length: number): Uint8Array {
  if (n < 0n || n >= 1n << BigInt(8 * length)) throw new RangeError(`value does not fit in ${length} bytes`);
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

export function bytesToBigIntLE(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] ?? 0);
  return n;
}

export function bigIntToBytesLE(n: bigint, length: number): Uint8Array {
  if (n < 0n || n >= 1n << BigInt(8 * length)) throw new RangeError(`value does not fit in ${length} bytes`);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}
