/**
 * Base32 (RFC 4648 §6 alphabet `A–Z2–7`, upper case, no padding) as the UDF presentation uses it
 * (mesh-udf §3.1; digest §2.1).
 *
 * - Encoding emits upper case without padding; the final character may carry zero padding bits.
 * - Decoding is case-insensitive, ignores dashes and whitespace, and drops trailing partial bits
 *   (n characters give floor(5n/8) bytes), as the reference implementation does.
 * - Grouping inserts a dash every 4 characters (the 2019+ presentation).
 */
import { abytes, aint, astring } from './bytes.js';

/** The RFC 4648 Base32 alphabet. */
export const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

const DECODE = new Int8Array(128).fill(-1);
for (let i = 0; i < 32; i++) {
  DECODE[BASE32_ALPHABET.charCodeAt(i)] = i;
  DECODE[BASE32_ALPHABET.toLowerCase().charCodeAt(i)] = i;
}

/**
 * Encodes `bytes` as Base32 without padding: ceil(8·len/5) characters, or only the first `chars`
 * characters when `chars` is given.
 * @throws TypeError if `bytes` is not a Uint8Array; RangeError if `chars` exceeds the encoded length.
 */
export function base32Encode(bytes: Uint8Array, chars?: number): string {
  abytes(bytes, 'bytes');
  const full = Math.ceil((bytes.length * 8) / 5);
  const count = chars === undefined ? full : aint(chars, 'chars', 0, full);
  let out = '';
  let buffer = 0;
  let bits = 0;
  let index = 0;
  while (out.length < count) {
    if (bits < 5) {
      if (index < bytes.length) {
        buffer = ((buffer << 8) | (bytes[index++] ?? 0)) & 0xffff;
        bits += 8;
      } else {
        buffer = (buffer << (5 - bits)) & 0xffff; // zero padding bits in the final character
        bits = 5;
      }
    }
    out += BASE32_ALPHABET[(buffer >> (bits - 5)) & 31];
    bits -= 5;
  }
  return out;
}

/**
 * Removes dashes and whitespace and upper-cases the rest; does not check the alphabet.
 * @throws TypeError if `text` is not a string.
 */
export function base32Normalize(text: string): string {
  return astring(text, 'text').replace(/[-\s]/g, '').toUpperCase();
}

/**
 * Decodes Base32 text: case-insensitive, dashes and whitespace ignored, trailing partial bits
 * dropped (n characters give floor(5n/8) bytes).
 * @throws TypeError if `text` is not a string; RangeError naming the first character outside the alphabet.
 */
export function base32Decode(text: string, field = 'text'): Uint8Array {
  astring(text, field);
  const clean = text.replace(/[-\s]/g, '');
  const out = new Uint8Array(Math.floor((clean.length * 5) / 8));
  let buffer = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < clean.length; i++) {
    const code = clean.charCodeAt(i);
    const v = code < 128 ? (DECODE[code] ?? -1) : -1;
    if (v < 0) {
      throw new RangeError(`"${field}" contains a character outside the Base32 alphabet at position ${i}: ${JSON.stringify(clean[i])}`);
    }
    buffer = ((buffer << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      if (o < out.length) out[o++] = (buffer >> bits) & 0xff;
    }
  }
  return out;
}

/**
 * Inserts a dash every `size` characters (default 4, the UDF presentation).
 * @throws TypeError if `text` is not a string; RangeError if `size` < 1.
 */
export function groupDashes(text: string, size = 4): string {
  astring(text, 'text');
  aint(size, 'size', 1);
  const groups: string[] = [];
  for (let i = 0; i < text.length; i += size) groups.push(text.slice(i, i + size));
  return groups.join('-');
}
