import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { base32Decode, base32Encode, base32Normalize, groupDashes } from '../../src/core/base32.js';
import { utf8 } from '../../src/core/bytes.js';

interface Rfc4648Vector { id: string; ascii: string; base32: string }
const rfc4648 = JSON.parse(readFileSync(new URL('../vectors/rfc4648-base32.json', import.meta.url), 'utf8')) as { vectors: Rfc4648Vector[] };

describe('base32 — rfc4648-base32.json', () => {
  it.each(rfc4648.vectors)('rfc4648 $id encodes', (v) => {
    expect(base32Encode(utf8(v.ascii))).toBe(v.base32);
  });
  it.each(rfc4648.vectors)('rfc4648 $id decodes', (v) => {
    expect(Buffer.from(base32Decode(v.base32)).toString('latin1')).toBe(v.ascii);
  });
});

describe('base32', () => {
  it('decodes case-insensitively and ignores dashes and whitespace', () => {
    expect(base32Decode('mz-xw 6y\ttb\noi')).toEqual(utf8('foobar'));
  });
  it('drops trailing partial bits: n characters give floor(5n/8) bytes', () => {
    expect(base32Decode('MZXW6Y').length).toBe(3);
    expect(base32Decode('M').length).toBe(0);
    expect(base32Decode('MY').length).toBe(1);
  });
  it('encodes a prefix of characters when asked', () => {
    expect(base32Encode(utf8('foobar'), 4)).toBe('MZXW');
    expect(() => base32Encode(utf8('f'), 3)).toThrow(RangeError);
  });
  it('rejects characters outside the alphabet, naming the position', () => {
    expect(() => base32Decode('MZ0W')).toThrow(/position 2/);
    expect(() => base32Decode('MZ1W')).toThrow(RangeError);
    expect(() => base32Decode('MZ=W')).toThrow(RangeError);
    expect(() => base32Decode('MZé')).toThrow(RangeError);
  });
  it('checks argument types', () => {
    expect(() => base32Encode('abc' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => base32Decode(5 as unknown as string)).toThrow(TypeError);
    expect(() => groupDashes('ABCD', 0)).toThrow(RangeError);
  });
  it('groups by 4 (or any size)', () => {
    expect(groupDashes('ABCDEFGHIJ')).toBe('ABCD-EFGH-IJ');
    expect(groupDashes('ABCDEFGHIJ', 5)).toBe('ABCDE-FGHIJ');
    expect(groupDashes('')).toBe('');
    expect(base32Normalize(' ab-cd ')).toBe('ABCD');
  });
  it('round-trips any bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const text = base32Encode(bytes);
        expect(text.length).toBe(Math.ceil((bytes.length * 8) / 5));
        expect(base32Decode(groupDashes(text).toLowerCase())).toEqual(bytes);
      }),
    );
  });
});
