/**
 * CKR → typed error mapping for every pkcs11js error shape, the PIN status text, and the ECDSA
 * signature normalisation (no token needed: these are the pure parts of the adapter).
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, MeshkitError, Pkcs11Error } from '../../src/core/errors.js';
import { ckrName, codeForCkr, ecdsaToRaw, mechanismCode, mechanismName, pinStatusText, toPkcs11Error } from '../../src/keystore/pkcs11/index.js';
import { ckrOf } from '../../src/keystore/pkcs11/errors.js';

/** The three shapes pkcs11js 2.1.7 throws. */
function pkcs11jsError(name: string, code: number): Error {
  const e = new Error(name) as Error & { code: number };
  e.name = 'Pkcs11Error';
  e.code = code;
  return e;
}

describe('CKR names and codes', () => {
  it.each([
    [0xa0, 'CKR_PIN_INCORRECT', ErrorCode.PKCS11_PIN_INCORRECT],
    [0xa4, 'CKR_PIN_LOCKED', ErrorCode.PKCS11_PIN_LOCKED],
    [0x101, 'CKR_USER_NOT_LOGGED_IN', ErrorCode.PKCS11_NOT_LOGGED_IN],
    [0xb3, 'CKR_SESSION_HANDLE_INVALID', ErrorCode.PKCS11_TOKEN_REMOVED],
    [0x32, 'CKR_DEVICE_REMOVED', ErrorCode.PKCS11_TOKEN_REMOVED],
    [0xe0, 'CKR_TOKEN_NOT_PRESENT', ErrorCode.PKCS11_TOKEN_REMOVED],
    [0x190, 'CKR_CRYPTOKI_NOT_INITIALIZED', ErrorCode.PKCS11_TOKEN_REMOVED],
    [0x70, 'CKR_MECHANISM_INVALID', ErrorCode.PKCS11_MECHANISM],
    [0x82, 'CKR_OBJECT_HANDLE_INVALID', ErrorCode.PKCS11_OBJECT_NOT_FOUND],
    [0x10, 'CKR_ATTRIBUTE_READ_ONLY', ErrorCode.PKCS11],
    [0x05, 'CKR_GENERAL_ERROR', ErrorCode.PKCS11],
  ])('0x%s is %s → %s', (ckr, name, code) => {
    expect(ckrName(ckr)).toBe(name);
    expect(codeForCkr(name)).toBe(code);
    const e = toPkcs11Error(pkcs11jsError(name, ckr), 'C_Test', 'testing') as Pkcs11Error;
    expect(e).toBeInstanceOf(Pkcs11Error);
    expect(e.code).toBe(code);
    expect(e.ckr).toBe(ckr);
    expect(e.ckrName).toBe(name);
    expect(e.operation).toBe('C_Test');
    expect(e.message).toContain(name);
    expect(e.message).toContain('testing: C_Test');
  });

  it('an unknown (vendor) CKR keeps its number', () => {
    expect(ckrName(0x80000001)).toBe('CKR_0x80000001');
  });

  it('the plain Error "CKR_X:16" shape of C_SetAttributeValue is parsed', () => {
    const plain = new Error('CKR_ATTRIBUTE_READ_ONLY:16');
    expect(ckrOf(plain)).toBe(16);
    const e = toPkcs11Error(plain, 'C_SetAttributeValue') as Pkcs11Error;
    expect(e.ckrName).toBe('CKR_ATTRIBUTE_READ_ONLY');
    expect(e.code).toBe(ErrorCode.PKCS11);
  });

  it('a NativeError without CKR becomes ERR_PKCS11 with the message; MeshkitErrors pass through', () => {
    const e = toPkcs11Error(new Error('dlopen failed'), 'load') as Pkcs11Error;
    expect(e.code).toBe(ErrorCode.PKCS11);
    expect(e.ckr).toBeUndefined();
    expect(e.message).toContain('dlopen failed');
    const m = new Pkcs11Error(ErrorCode.PKCS11_PIN_LOCKED, 'x');
    expect(toPkcs11Error(m, 'C_Login')).toBe(m);
    expect(m).toBeInstanceOf(MeshkitError);
    expect(() => toPkcs11Error(new TypeError('t'), 'C_X')).toThrow(TypeError);
  });

  it('mechanism names include the PKCS#11 3.0 values pkcs11js lacks', () => {
    expect(mechanismName(0x1057)).toBe('CKM_EDDSA');
    expect(mechanismName(0x1056)).toBe('CKM_EC_MONTGOMERY_KEY_PAIR_GEN');
    expect(mechanismName(0x1040)).toBe('CKM_EC_KEY_PAIR_GEN');
    expect(mechanismCode('CKM_EDDSA')).toBe(0x1057);
    expect(mechanismCode('CKM_ECDSA')).toBe(0x1041);
    expect(mechanismCode('CKA_LABEL')).toBeUndefined();
  });
});

describe('PIN status text', () => {
  it.each([
    [{ countLow: false, finalTry: false, locked: false }, 'does not report how many tries are left'],
    [{ countLow: true, finalTry: false, locked: false }, 'CKF_USER_PIN_COUNT_LOW'],
    [{ countLow: true, finalTry: true, locked: false }, 'one try left before the PIN locks (CKF_USER_PIN_FINAL_TRY)'],
    [{ countLow: true, finalTry: false, locked: true }, 'locked (CKF_USER_PIN_LOCKED)'],
  ])('%j → %s', (status, text) => {
    expect(pinStatusText(status)).toContain(text);
  });
});

describe('ECDSA signature normalisation', () => {
  it('raw r||s passes unchanged', () => {
    const raw = new Uint8Array(64).fill(7);
    expect(ecdsaToRaw(raw)).toBe(raw);
  });

  it('DER (with a leading zero and a short s) becomes 64-byte r||s', () => {
    const r = Buffer.concat([Buffer.from([0x00, 0x80]), Buffer.alloc(31, 1)]); // 33 bytes, high bit set
    const s = Buffer.alloc(31, 2); // 31 bytes: left-padded
    const der = Buffer.concat([Buffer.from([0x30, 2 + r.length + 2 + s.length, 0x02, r.length]), r, Buffer.from([0x02, s.length]), s]);
    const out = ecdsaToRaw(der);
    expect(out.length).toBe(64);
    expect(Buffer.from(out.subarray(0, 32)).equals(r.subarray(1))).toBe(true);
    expect(out[32]).toBe(0);
    expect(Buffer.from(out.subarray(33)).equals(s)).toBe(true);
  });

  it('anything else is a Pkcs11Error', () => {
    expect(() => ecdsaToRaw(new Uint8Array(63))).toThrow(Pkcs11Error);
  });
});
