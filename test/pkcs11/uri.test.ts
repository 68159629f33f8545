/** RFC 7512 PKCS#11 URIs: the RFC's examples, round trips, malformed input, and the pin-source reader. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode, KeyStoreError, Pkcs11Error } from '../../src/core/errors.js';
import { PIN_VALUE_WARNING, PKCS11_OBJECT_TYPES, formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Uri } from '../../src/keystore/pkcs11/uri.js';
import { pinSourceFromUri, readPinFile } from '../../src/keystore/pkcs11/pin.js';
import vectors from '../vectors/rfc7512.json' with { type: 'json' };

interface Vector {
  id: string;
  comment: string;
  uri: string;
  expect: Record<string, unknown>;
}
const rfc = vectors.vectors as Vector[];

function view(u: Pkcs11Uri): Record<string, unknown> {
  const { id, ...rest } = u;
  return { ...rest, ...(id === undefined ? {} : { idHex: Buffer.from(id).toString('hex') }) };
}

function expectInvalid(uri: string, pattern?: RegExp): Pkcs11Error {
  try {
    parsePkcs11Uri(uri);
  } catch (e) {
    expect(e).toBeInstanceOf(Pkcs11Error);
    expect((e as Pkcs11Error).code).toBe(ErrorCode.PKCS11_URI_INVALID);
    if (pattern !== undefined) expect((e as Error).message).toMatch(pattern);
    return e as Pkcs11Error;
  }
  throw new Error(`expected ${uri} to be refused`);
}

describe('RFC 7512 §3 examples', () => {
  it('all 13 examples are present', () => expect(rfc).toHaveLength(13));

  it.each(rfc)('$id ($comment) parses to the stated attributes', (v) => {
    const { uri } = parsePkcs11Uri(v.uri);
    expect(view(uri)).toEqual(v.expect);
  });

  it.each(rfc)('$id format → parse gives the same attributes (pin-value dropped)', (v) => {
    const { uri } = parsePkcs11Uri(v.uri);
    const text = formatPkcs11Uri(uri);
    expect(text).not.toContain('pin-value');
    const { pinValue: _pv, ...withoutPin } = uri;
    expect(parsePkcs11Uri(text).uri).toEqual(withoutPin);
  });

  it('pin-value gives the warning; other examples give none except vendor attributes', () => {
    for (const v of rfc) {
      const { warnings } = parsePkcs11Uri(v.uri);
      if (v.id === 'rfc7512-3-07') expect(warnings).toEqual([PIN_VALUE_WARNING]);
      else if (v.id === 'rfc7512-3-13') expect(warnings).toHaveLength(2);
      else expect(warnings).toEqual([]);
    }
    expect(PIN_VALUE_WARNING).toContain('use pin-source');
  });

  it('formats the full example canonically (token first, id as %XX per byte)', () => {
    const { uri } = parsePkcs11Uri(rfc[3]!.uri);
    expect(formatPkcs11Uri(uri)).toBe(
      'pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;serial=;' +
        'object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91?pin-source=file:/etc/token_pin',
    );
  });
});

describe('meshkit forms', () => {
  it('the key reference of the README', () => {
    const { uri, warnings } = parsePkcs11Uri(
      'pkcs11:token=Master;object=master-sign?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin',
    );
    expect(uri).toEqual({ token: 'Master', object: 'master-sign', modulePath: '/usr/lib/softhsm/libsofthsm2.so', pinSource: 'file:/run/pin' });
    expect(warnings).toEqual([]);
  });

  it('slot-id is a number; serial, model, slot-manufacturer decode', () => {
    expect(parsePkcs11Uri('pkcs11:slot-id=339160538;serial=a1b2;model=SoftHSM%20v2;slot-manufacturer=X').uri).toEqual({
      slotId: 339160538,
      serial: 'a1b2',
      model: 'SoftHSM v2',
      slotManufacturer: 'X',
    });
  });

  it.each(['env:MY_PIN', '/run/pin', 'file:///run/pin', 'file://localhost/run/pin'])('pin-source %s is accepted', (src) => {
    expect(parsePkcs11Uri(`pkcs11:token=T?pin-source=${src}`).uri.pinSource).toBe(src);
  });

  it('the scheme is case-insensitive', () => {
    expect(parsePkcs11Uri('PKCS11:token=T').uri).toEqual({ token: 'T' });
  });

  it('formatting escapes what would change the structure', () => {
    const u: Pkcs11Uri = { token: 'a;b?c/d%e f', object: 'ä&=', modulePath: '/x y/&lib.so', id: new Uint8Array([0, 255]) };
    const text = formatPkcs11Uri(u);
    expect(text).toBe('pkcs11:token=a%3Bb%3Fc%2Fd%25e%20f;object=%C3%A4&=;id=%00%FF?module-path=/x%20y/%26lib.so');
    expect(parsePkcs11Uri(text).uri).toEqual(u);
  });

  it('formatting never writes pin-value and refuses includePin: true', () => {
    expect(formatPkcs11Uri({ token: 'T', pinValue: '1234' })).toBe('pkcs11:token=T');
    expect(() => formatPkcs11Uri({ token: 'T' }, { includePin: true as unknown as false })).toThrow(RangeError);
  });

  it('formatting checks field types and values', () => {
    expect(() => formatPkcs11Uri(null as unknown as Pkcs11Uri)).toThrow(TypeError);
    expect(() => formatPkcs11Uri({ token: 5 as unknown as string })).toThrow(TypeError);
    expect(() => formatPkcs11Uri({ id: 'ab' as unknown as Uint8Array })).toThrow(TypeError);
    expect(() => formatPkcs11Uri({ slotId: -1 })).toThrow(RangeError);
    expect(() => formatPkcs11Uri({ type: 'key' as unknown as 'private' })).toThrow(RangeError);
    expect(() => formatPkcs11Uri({ libraryVersion: 'v1' })).toThrow(RangeError);
    expect(() => formatPkcs11Uri({ pinSource: 'relative/pin' })).toThrow(RangeError);
  });

  it('parse refuses a non-string with TypeError', () => {
    expect(() => parsePkcs11Uri(42 as unknown as string)).toThrow(TypeError);
  });
});

describe('malformed URIs → ERR_PKCS11_URI_INVALID', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['wrong scheme', 'pkcs12:token=T', /scheme/],
    ['no scheme', 'token=T;object=k', /scheme/],
    ['file reference', 'file:keys.json#k', /scheme/],
    ['truncated escape', 'pkcs11:token=ab%4', /percent-escape/],
    ['non-hex escape', 'pkcs11:object=%zz', /percent-escape/],
    ['bad escape in id', 'pkcs11:id=%0g', /percent-escape/],
    ['bad escape in query', 'pkcs11:token=T?module-path=/a%2', /percent-escape/],
    ['invalid UTF-8 in a text attribute', 'pkcs11:token=%FF%FE', /UTF-8/],
    ['duplicate path attribute', 'pkcs11:token=A;token=B', /more than once/],
    ['duplicate object', 'pkcs11:object=a;type=private;object=b', /more than once/],
    ['duplicate query attribute', 'pkcs11:token=T?module-path=/a&module-path=/b', /more than once/],
    ['slot-id not a number', 'pkcs11:slot-id=abc', /slot-id/],
    ['slot-id negative', 'pkcs11:slot-id=-1', /slot-id/],
    ['slot-id empty', 'pkcs11:slot-id=', /slot-id/],
    ['type not in the list', 'pkcs11:object=k;type=privatekey', /type must be one of/],
    ['type in upper case', 'pkcs11:object=k;type=Private', /type must be one of/],
    ['library-version not digits', 'pkcs11:library-version=1.2.3', /library-version/],
    ['unknown attribute', 'pkcs11:tokn=T', /unknown attribute/],
    ['attribute names are case-sensitive', 'pkcs11:Token=T', /unknown attribute/],
    ['label is not an RFC 7512 attribute', 'pkcs11:label=k', /unknown attribute/],
    ['query attribute in the path', 'pkcs11:token=T;module-path=/x', /belongs in the query/],
    ['path attribute in the query', 'pkcs11:token=T?object=k', /belongs in the path/],
    ['attribute without =', 'pkcs11:token', /name=value/],
    ['empty name', 'pkcs11:=x', /name=value/],
    ['doubled ;', 'pkcs11:token=T;;object=k', /empty attribute/],
    ['trailing &', 'pkcs11:token=T?module-path=/x&', /empty attribute/],
    ['raw space', 'pkcs11:token=My Token', /percent-encoded/],
    ['raw #', 'pkcs11:token=a#b', /percent-encoded/],
    ['raw / in the path', 'pkcs11:object=a/b', /percent-encoded/],
    ['control character', 'pkcs11:token=a\u0001', /percent-encoded/],
    ['pin-source relative', 'pkcs11:token=T?pin-source=pin.txt', /pin-source/],
    ['pin-source remote file', 'pkcs11:token=T?pin-source=file://host/pin', /pin-source/],
    ['pin-source command', 'pkcs11:token=T?pin-source=|/bin/getpin', /pin-source/],
    ['pin-source bad env name', 'pkcs11:token=T?pin-source=env:1X', /pin-source/],
    ['pin-source and pin-value', 'pkcs11:token=T?pin-source=/p&pin-value=1234', /not both/],
    ['empty module-path', 'pkcs11:token=T?module-path=', /module-path is empty/],
  ];
  it.each(cases)('%s: %s', (_name, uri, pattern) => {
    expectInvalid(uri, pattern);
  });

  it('error messages never show the pin-value', () => {
    const e = expectInvalid('pkcs11:token=T;token=U?pin-value=SECRET-9931');
    expect(e.message).not.toContain('SECRET-9931');
    expect(e.message).toContain('pin-value=***');
  });
});

// Arbitrary URIs: every field the contract has, with text from the whole Unicode range.
const text = fc.string({ unit: 'grapheme', maxLength: 12 });
const abs = fc.array(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 3 }).map((p) => `/${p.join('/')}`);
const arbUri: fc.Arbitrary<Pkcs11Uri> = fc.record(
  {
    token: text,
    manufacturer: text,
    model: text,
    serial: text,
    libraryManufacturer: text,
    libraryDescription: text,
    libraryVersion: fc.tuple(fc.nat(99), fc.option(fc.nat(99), { nil: undefined })).map(([a, b]) => (b === undefined ? `${a}` : `${a}.${b}`)),
    slotId: fc.nat({ max: 2 ** 40 }),
    slotDescription: text,
    slotManufacturer: text,
    object: text,
    id: fc.uint8Array({ maxLength: 20 }),
    type: fc.constantFrom(...PKCS11_OBJECT_TYPES),
    modulePath: abs,
    moduleName: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }),
    pinSource: fc.oneof(abs, abs.map((p) => `file:${p}`), fc.constantFrom('env:MESHKIT_PIN', 'env:_P1')),
  },
  { requiredKeys: [] },
);

describe('round trip (fast-check)', () => {
  it('parse(format(u)) equals u for arbitrary attributes, with no warnings', () => {
    fc.assert(
      fc.property(arbUri, (u) => {
        const { uri, warnings } = parsePkcs11Uri(formatPkcs11Uri(u));
        expect(uri).toEqual(u);
        expect(warnings).toEqual([]);
      }),
      { numRuns: 500 },
    );
  });

  it('format(parse(s)) is stable: formatting the parsed form again gives the same text', () => {
    fc.assert(
      fc.property(arbUri, (u) => {
        const once = formatPkcs11Uri(u);
        expect(formatPkcs11Uri(parsePkcs11Uri(once).uri)).toBe(once);
      }),
      { numRuns: 300 },
    );
  });

  it('arbitrary strings after "pkcs11:" either parse or fail with ERR_PKCS11_URI_INVALID', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        try {
          parsePkcs11Uri(`pkcs11:${s}`);
        } catch (e) {
          expect(e).toBeInstanceOf(Pkcs11Error);
          expect((e as Pkcs11Error).code).toBe(ErrorCode.PKCS11_URI_INVALID);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('pinSourceFromUri', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshkit-pin-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const dec = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

  it('file:/path and a plain path read the first line (CRLF stripped)', async () => {
    const p = join(dir, 'pin');
    writeFileSync(p, '4711\r\nignored\n');
    expect(dec(await pinSourceFromUri(parsePkcs11Uri(`pkcs11:token=T?pin-source=file:${p}`).uri)!())).toBe('4711');
    expect(dec(await pinSourceFromUri(parsePkcs11Uri(`pkcs11:token=T?pin-source=file://${p}`).uri)!())).toBe('4711');
    expect(dec(await pinSourceFromUri(parsePkcs11Uri(`pkcs11:token=T?pin-source=${p}`).uri)!())).toBe('4711');
  });

  it('env:VAR reads the variable (injected env)', async () => {
    const src = pinSourceFromUri(parsePkcs11Uri('pkcs11:token=T?pin-source=env:HSM_PIN').uri, { env: { HSM_PIN: '98765' } })!;
    expect(dec(await src())).toBe('98765');
  });

  it('pin-value gives the value; no source gives undefined', async () => {
    expect(dec(await pinSourceFromUri(parsePkcs11Uri('pkcs11:token=T?pin-value=1234').uri)!())).toBe('1234');
    expect(pinSourceFromUri(parsePkcs11Uri('pkcs11:token=T').uri)).toBeUndefined();
  });

  it('faults: missing or empty file, unset or empty variable → ERR_SECRET_SOURCE; bad source → RangeError', async () => {
    const missing = pinSourceFromUri({ pinSource: join(dir, 'nope') })!;
    await expect(missing()).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
    writeFileSync(join(dir, 'empty'), '\n');
    await expect(readPinFile(join(dir, 'empty'))).rejects.toBeInstanceOf(KeyStoreError);
    await expect(pinSourceFromUri({ pinSource: 'env:NOPE_X' }, { env: {} })!()).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
    await expect(pinSourceFromUri({ pinSource: 'env:E' }, { env: { E: '' } })!()).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
    expect(() => pinSourceFromUri({ pinSource: 'pin.txt' })).toThrow(RangeError);
    expect(() => pinSourceFromUri(null as unknown as Pkcs11Uri)).toThrow(TypeError);
    await expect(readPinFile('')).rejects.toThrow(TypeError);
  });
});
