/** Key references: file:PATH#LABEL and pkcs11: recognition. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, KeyStoreError } from '../../src/core/errors.js';
import { formatFileReference, parseKeyReference, parseStoreReference } from '../../src/keystore/uri.js';

describe('parseKeyReference', () => {
  it.each([
    ['file:keys.json#master-sign', 'keys.json', 'master-sign'],
    ['file:./dir/keys.json#a', './dir/keys.json', 'a'],
    ['file:/abs/keys.json#a', '/abs/keys.json', 'a'],
    ['FILE:/abs/keys.json#a', '/abs/keys.json', 'a'],
    ['file:///abs/keys.json#a', '/abs/keys.json', 'a'],
    ['file://localhost/abs/keys.json#a', '/abs/keys.json', 'a'],
    ['file:my%20keys%23.json#label%20with%20space', 'my keys#.json', 'label with space'],
    ['file:k.json#a%23b', 'k.json', 'a#b'],
    ['file:k.json#a#b', 'k.json', 'a#b'],
    ['file:k.json#%C3%A9t%C3%A9', 'k.json', 'été'],
    ['file:C:/keys.json#x', 'C:/keys.json', 'x'],
  ])('%s → path %s, label %s', (uri, path, label) => {
    expect(parseKeyReference(uri)).toEqual({ kind: 'file', path, label });
  });

  it.each([
    'pkcs11:token=Master;object=master-sign?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin',
    'PKCS11:object=x',
  ])('recognises %s as pkcs11 (raw)', (uri) => {
    expect(parseKeyReference(uri)).toEqual({ kind: 'pkcs11', raw: uri });
  });

  it.each([
    ['no label', 'file:keys.json'],
    ['empty label', 'file:keys.json#'],
    ['empty path', 'file:#a'],
    ['no scheme', 'keys.json#a'],
    ['unknown scheme', 'http://example.com/keys.json#a'],
    ['remote host', 'file://server/keys.json#a'],
    ['bad percent-encoding in the path', 'file:%zz#a'],
    ['bad percent-encoding in the label', 'file:k.json#%E0%A4%A'],
    ['control character in the label', 'file:k.json#a%0Ab'],
    ['NUL in the path', 'file:k%00.json#a'],
    ['label too long', `file:k.json#${'x'.repeat(129)}`],
    ['empty string', ''],
  ])('%s → ERR_KEY_URI_INVALID with an example of the right form', (_why, uri) => {
    let err: unknown;
    try {
      parseKeyReference(uri);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KeyStoreError);
    expect((err as KeyStoreError).code).toBe(ErrorCode.KEY_URI_INVALID);
    expect((err as Error).message).toContain('file:PATH#LABEL');
  });

  it('a non-string is a TypeError', () => {
    expect(() => parseKeyReference(42 as unknown as string)).toThrow(TypeError);
  });
});

describe('parseStoreReference', () => {
  it('reads file:PATH and pkcs11:', () => {
    expect(parseStoreReference('file:keys.json')).toEqual({ kind: 'file', path: 'keys.json' });
    expect(parseStoreReference('file:///a/b%20c.json')).toEqual({ kind: 'file', path: '/a/b c.json' });
    expect(parseStoreReference('pkcs11:token=Master')).toEqual({ kind: 'pkcs11', raw: 'pkcs11:token=Master' });
  });

  it('refuses a #LABEL and other forms', () => {
    for (const uri of ['file:keys.json#a', 'keys.json', 'file:']) {
      expect(() => parseStoreReference(uri)).toThrow(expect.objectContaining({ code: ErrorCode.KEY_URI_INVALID }) as Error);
    }
  });
});

describe('formatFileReference', () => {
  it('formats what the parser reads back', () => {
    expect(formatFileReference('/a/keys.json', 'master-sign')).toBe('file:/a/keys.json#master-sign');
    expect(formatFileReference('/a b/k#1%.json', 'x y#z')).toBe('file:/a%20b/k%231%25.json#x%20y%23z');
    expect(formatFileReference('/a/keys.json')).toBe('file:/a/keys.json');
  });

  it('round-trips any path and label (property)', () => {
    const label = fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }).filter((s) => ![...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f) && s.length <= 128);
    const path = fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme' }).filter((s) => !s.includes('\u0000'));
    fc.assert(
      fc.property(path, label, (p, l) => {
        expect(parseKeyReference(formatFileReference(p, l))).toEqual({ kind: 'file', path: p, label: l });
        expect(parseStoreReference(formatFileReference(p))).toEqual({ kind: 'file', path: p });
      }),
      { numRuns: 500 },
    );
  });
});
