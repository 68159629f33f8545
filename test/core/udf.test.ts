import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { concatBytes, fromB64u, fromHex, toHex, utf8 } from '../../src/core/bytes.js';
import { ErrorCode, UdfError, isMeshkitError } from '../../src/core/errors.js';
import { base32Encode, groupDashes } from '../../src/core/base32.js';
import {
  ContentType,
  UdfType,
  _compressionLevel,
  connectionWitness,
  deriveSeedKey,
  isDigestType,
  pinId,
  pinWitness,
  saltedPin,
  udfBinaryFromDigest,
  udfCanonical,
  udfDigest,
  udfDigestBinary,
  udfEncryptionKey,
  udfEncryptionKeyId,
  udfFormat,
  udfFromDigest,
  udfKeyed,
  udfMatches,
  udfNonce,
  udfParse,
  udfSeed,
  type UdfAlgorithm,
  _udfKeyedUnchecked,
} from '../../src/core/udf.js';

// ---------------------------------------------------------------------------------------------
// vector files

function load<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), 'utf8')) as T;
}
const hex = (s: string): Uint8Array => fromHex(s);

interface DigestVector { id: string; data: string; contentType: string; algorithm: UdfAlgorithm; bits: number; udf: string; type?: number }
interface KeyDigestVector { id: string; der: string; contentType: string; udf: string }
interface OidVector { id: string; der: string; udf: string }
interface EKeyVector { id: string; key: string; contentType: string; bits: number; udf: string }
interface SeedVector { id: string; udf: string; ikm?: string; outputBytes: number; okm: string }
interface Udf13 {
  contentDigest: DigestVector[];
  intermediates: Array<{ id: string; data: string; contentType: string; algorithm: UdfAlgorithm; binary: string }>;
  keyed: Array<{ id: string; data: string; contentType: string; key: string; udf: string; binary: string }>;
  oid: OidVector[];
  keyDigest: KeyDigestVector[];
  nonce: Array<{ id: string; udf: string; type: number; length: number }>;
  encryptionKeyId: EKeyVector[];
  seed: SeedVector[];
}
const udf13 = load<Udf13>('mesh-udf-13.json');
const udf15 = load<{ keyDigest: KeyDigestVector[]; oid: OidVector[]; encryptionKeyId: EKeyVector[] }>('mesh-udf-15.json');
interface Proto09 {
  meshDerPrefix: Record<string, string>;
  keyDigest: Array<{ id: string; curve: string; key: string; contentType: string; udf: string }>;
  saltedPin: Array<{ id: string; pin: string; action: string; saltedPin: string }>;
  pinId: Array<{ id: string; saltedPin: string; account: string; pinId: string }>;
  pinWitness: Array<{ id: string; saltedPin: string; account: string; clientNonce: string; payloadDigest: string; witness: string }>;
  connectionWitness: Array<{ id: string; accountKey: string; deviceKey: string; serverNonce: string; clientNonce: string; witness: string }>;
}
const proto09 = load<Proto09>('mesh-protocol-09.json');
const crypto04 = load<{ derPrefix: string; contentType: string; keyDigest: Array<{ id: string; key: string; udf: string }> }>('mesh-cryptography-04.json');
const th06 = load<{ vectors: Array<{ id: string; udf: string; outputBytes: number; clamp?: string; private: string }> }>('threshold-06-seeds.json');
interface LegacyVector { id: string; data: string; contentType: string; algorithm?: UdfAlgorithm; bits: number; udf: string; legacyType?: number; droppedBytes?: number; key?: string }
const udf12 = load<{ vectors: LegacyVector[] }>('udf-12.json');
const udf08 = load<{
  vectors: LegacyVector[];
  rsa2017: Array<{ id: string; n?: string; e?: string; contentType?: string; bits?: number; udf: string; udfCorrectRule?: string }>;
  udf06: Array<{ id: string; udf: string }>;
}>('udf-08.json');

function expectUdfError(fn: () => unknown, code: string, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(UdfError);
  expect((caught as UdfError).code).toBe(code);
  if (message) expect((caught as Error).message).toMatch(message);
}

describe('mesh-udf-13.json content digests', () => {
  it.each(udf13.contentDigest)('mesh-udf-13 $id: $comment', (v) => {
    const udf = udfDigest(utf8(v.data), { contentType: v.contentType, bits: v.bits, algorithm: v.algorithm });
    expect(udf).toBe(v.udf);
    const parsed = udfParse(v.udf);
    if (v.type !== undefined) expect(parsed.type).toBe(v.type);
    expect(udfMatches(v.udf, udf)).toBe(true);
  });
  it.each(udf13.contentDigest)('mesh-udf-13 $id streamed (udfFromDigest) equals one-shot', (v) => {
    const inner = createHash(v.algorithm === 'SHA-512' ? 'sha512' : 'sha3-512').update(v.data).digest();
    expect(udfFromDigest(new Uint8Array(inner), { contentType: v.contentType, bits: v.bits, algorithm: v.algorithm })).toBe(v.udf);
  });
  it.each(udf13.intermediates)('mesh-udf-13 $id: $comment', (v) => {
    expect(toHex(udfDigestBinary(utf8(v.data), { contentType: v.contentType, algorithm: v.algorithm }))).toBe(toHex(hex(v.binary)));
  });
});

describe('keyed (authenticator) UDF — mesh-udf-13.json', () => {
  it.each(udf13.keyed)('mesh-udf-13 $id: $comment', (v) => {
    expect(udfKeyed(utf8(v.data), v.key, { contentType: v.contentType })).toBe(v.udf);
    // At 440 bits the BDS is a prefix of the printed 64-byte MAC; type 0, never compressed.
    const long = udfParse(udfKeyed(utf8(v.data), v.key, { contentType: v.contentType, bits: 440 }));
    const binary = hex(v.binary);
    expect(long.type).toBe(binary[0]);
    expect(toHex(long.bytes)).toBe(toHex(binary.subarray(1, 1 + long.bytes.length)));
  });
  it('changes with the key and with the content type', () => {
    const d = utf8('Konrad is the traitor');
    const base = udfKeyed(d, 'NDD7-6CMX-H2FW-ISAL-K4VB-DQ3E-PEDM', { contentType: 'text/plain' });
    expect(udfKeyed(d, 'NDD7-6CMX-H2FW-ISAL-K4VB-DQ3E-PEDN', { contentType: 'text/plain' })).not.toBe(base);
    expect(udfKeyed(d, 'NDD7-6CMX-H2FW-ISAL-K4VB-DQ3E-PEDM', { contentType: 'text/html' })).not.toBe(base);
  });
});

describe('OID and key-digest UDFs — mesh-udf-13/15, mesh-protocol-09, mesh-cryptography-04', () => {
  const oids = [...udf13.oid.map((v) => ({ ...v, src: 'mesh-udf-13' })), ...udf15.oid.map((v) => ({ ...v, src: 'mesh-udf-15' }))];
  it.each(oids)('$src $id: $comment', (v) => {
    expect(udfFormat(UdfType.Oid, hex(v.der))).toBe(v.udf);
    const parsed = udfParse(v.udf);
    expect(parsed.type).toBe(112);
    expect(toHex(parsed.bytes)).toBe(toHex(hex(v.der)));
  });
  const keys = [...udf13.keyDigest.map((v) => ({ ...v, src: 'mesh-udf-13' })), ...udf15.keyDigest.map((v) => ({ ...v, src: 'mesh-udf-15' }))];
  it.each(keys)('$src $id: $comment', (v) => {
    expect(udfDigest(hex(v.der), { contentType: v.contentType })).toBe(v.udf);
  });
  it.each(proto09.keyDigest)('mesh-protocol-09 $id: $comment', (v) => {
    const prefix = proto09.meshDerPrefix[v.curve];
    expect(prefix).toBeDefined();
    const der = concatBytes(hex(prefix ?? ''), fromB64u(v.key));
    expect(udfDigest(der, { contentType: v.contentType })).toBe(v.udf);
  });
  it.each(crypto04.keyDigest)('mesh-cryptography-04 $id', (v) => {
    const der = concatBytes(hex(crypto04.derPrefix), hex(v.key));
    expect(udfDigest(der, { contentType: crypto04.contentType })).toBe(v.udf);
  });
  it('a different content type gives a different UDF (semantic substitution)', () => {
    const der = hex(udf15.keyDigest[0]?.der ?? '');
    expect(udfDigest(der, { contentType: ContentType.PkixKeyInfo })).not.toBe(udfDigest(der, { contentType: ContentType.LegacyPkixKey }));
  });
});

describe('fixed-length UDFs', () => {
  it.each(udf13.nonce)('mesh-udf-13 $id: $comment', (v) => {
    const parsed = udfParse(v.udf);
    expect(parsed.type).toBe(v.type);
    expect(parsed.bytes.length).toBe(v.length);
    expect(udfFormat(parsed.type, parsed.bytes)).toBe(v.udf);
  });
  it('udfNonce: 128 random bits by default, type N, 28 characters', () => {
    const n = udfNonce();
    expect(n).toMatch(/^N[A-Z2-7]{3}(-[A-Z2-7]{4}){6}$/);
    const p = udfParse(n);
    expect(p.type).toBe(UdfType.Nonce);
    expect(p.bytes.length).toBe(16);
    expect(udfNonce()).not.toBe(n);
  });
  it('udfNonce with given random bytes is deterministic; bad arguments throw', () => {
    const r = new Uint8Array(32).fill(7);
    expect(udfParse(udfNonce(256, r)).bytes).toEqual(r);
    expect(() => udfNonce(100)).toThrow(RangeError);
    expect(() => udfNonce(128, new Uint8Array(15))).toThrow(RangeError);
    expect(() => udfNonce(8)).toThrow(RangeError);
  });
  it('udfEncryptionKey: type E (32), the whole key, never truncated', () => {
    const key = new Uint8Array(32).map((_, i) => i);
    const e = udfEncryptionKey(key);
    expect(e.startsWith('E')).toBe(true);
    expect(udfParse(e)).toEqual({ type: 32, bytes: key });
    expect(() => udfEncryptionKey(new Uint8Array(8))).toThrow(RangeError);
    expect(() => udfEncryptionKey('key' as unknown as Uint8Array)).toThrow(TypeError);
  });
  const ekeys = [...udf13.encryptionKeyId.map((v) => ({ ...v, src: 'mesh-udf-13' })), ...udf15.encryptionKeyId.map((v) => ({ ...v, src: 'mesh-udf-15' }))];
  it.each(ekeys)('$src $id: $comment', (v) => {
    expect(udfEncryptionKeyId(v.key, v.bits, { contentType: v.contentType })).toBe(v.udf);
    // the canonical dashed upper-case string is hashed, whatever the input spelling
    expect(udfEncryptionKeyId(v.key.toLowerCase().replace(/-/g, ''), v.bits, { contentType: v.contentType })).toBe(v.udf);
  });
  it('udfEncryptionKeyId: application/udf and 280 bits by default; only key types', () => {
    const e = 'EADA-YKC5-WSUK-AACN-WRRO-MJOQ-PVSK-SM';
    const id = udfEncryptionKeyId(e);
    expect(id).toBe(udfDigest(utf8(e), { contentType: 'application/udf', bits: 280 }));
    expect(id.replace(/-/g, '').length).toBe(56);
    expectUdfError(() => udfEncryptionKeyId('MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF'), ErrorCode.UDF_TYPE);
    expect(() => udfEncryptionKeyId(e, 290)).toThrow(RangeError);
  });
  it('udfFormat refuses a precision for fixed-length types', () => {
    expect(() => udfFormat(UdfType.Nonce, new Uint8Array(16), 140)).toThrow(RangeError);
    expect(() => udfFormat(UdfType.Share, new Uint8Array(17), 140)).toThrow(/never truncated/);
  });
});

describe('seed-derived keys (§2.7)', () => {
  it.each(udf13.seed)('mesh-udf-13 $id: $comment (variant udf-example)', (v) => {
    if (v.ikm !== undefined) expect(toHex(udfParse(v.udf).bytes)).toBe(toHex(hex(v.ikm)));
    expect(toHex(deriveSeedKey(v.udf, '', v.outputBytes, { variant: 'udf-example' }))).toBe(toHex(hex(v.okm)));
  });
  it.each(th06.vectors)('threshold-06 $id: $comment (variant library)', (v) => {
    const okm = deriveSeedKey(v.udf, '', v.outputBytes);
    if (v.clamp === 'X25519') {
      okm[0] = (okm[0] ?? 0) & 248;
      okm[31] = ((okm[31] ?? 0) & 127) | 64;
    }
    expect(toHex(okm)).toBe(toHex(hex(v.private)));
  });
  it('variant library: info = key specifier ‖ keyName (names give different keys)', () => {
    const seed = udfSeed(3, new Uint8Array(32).fill(1));
    const a = deriveSeedKey(seed, 'ActivationDeviceSign', 32);
    const b = deriveSeedKey(seed, 'ActivationDeviceEncrypt', 32);
    expect(toHex(a)).not.toBe(toHex(b));
    expect(toHex(deriveSeedKey(seed, 'ActivationDeviceSign', 32))).toBe(toHex(a));
    expect(toHex(deriveSeedKey(seed, 'ActivationDeviceSign', 32, { variant: 'udf-example' }))).not.toBe(toHex(a));
  });
  it('udfSeed: 200 ‖ specifier ‖ random; deriveSeedKey rejects other types and bad lengths', () => {
    const seed = udfSeed(257, new Uint8Array(16).fill(9));
    expect(seed.startsWith('ZAAQ')).toBe(true); // 200, 0x01 0x01
    expect(udfParse(seed).bytes.subarray(0, 2)).toEqual(Uint8Array.of(1, 1));
    expect(udfParse(udfSeed(0)).bytes.length).toBe(34);
    expect(() => udfSeed(70000)).toThrow(RangeError);
    expect(() => udfSeed(1, new Uint8Array(8))).toThrow(RangeError);
    expectUdfError(() => deriveSeedKey('ND5L-Y3E6-GDDZ-KICR-NPDL-5WWM-4QSA', '', 32), ErrorCode.UDF_TYPE);
    expect(() => deriveSeedKey(seed, '', 0)).toThrow(RangeError);
    expect(() => deriveSeedKey(seed, 5 as unknown as string, 32)).toThrow(TypeError);
  });
});

describe('PIN and witness — mesh-protocol-09.json', () => {
  it.each(proto09.saltedPin)('mesh-protocol-09 $id: $comment', (v) => {
    expect(saltedPin(v.pin, v.action)).toBe(v.saltedPin);
  });
  it.each(proto09.pinId)('mesh-protocol-09 $id', (v) => {
    expect(pinId(v.saltedPin, v.account)).toBe(v.pinId);
    expect(pinId(v.saltedPin, v.account.toUpperCase())).toBe(v.pinId); // the account is lower-cased
  });
  it.each(proto09.pinWitness)('mesh-protocol-09 $id', (v) => {
    const w = pinWitness(v.saltedPin, v.account, fromB64u(v.clientNonce), fromB64u(v.payloadDigest));
    expect(Buffer.from(w).toString('base64url')).toBe(v.witness);
  });
  it.each(proto09.connectionWitness)('mesh-protocol-09 $id: $comment', (v) => {
    const prefix = hex(proto09.meshDerPrefix['Ed448'] ?? '');
    const account = udfDigestBinary(concatBytes(prefix, fromB64u(v.accountKey)), { contentType: 'PKIXKey' });
    const device = udfDigestBinary(concatBytes(prefix, fromB64u(v.deviceKey)), { contentType: 'PKIXKey' });
    expect(connectionWitness(account, fromB64u(v.serverNonce), device, fromB64u(v.clientNonce))).toBe(v.witness);
  });
  it('saltedPin defaults to the Device action; Contact differs', () => {
    expect(saltedPin('AAJP-KPYV-NSB4-GIYL-AM')).toBe('ADBB-JTKR-RGGL-ACEM-TW6E-ZFY6-NQXF');
    expect(saltedPin('AAJP-KPYV-NSB4-GIYL-AM', 'Contact')).not.toBe('ADBB-JTKR-RGGL-ACEM-TW6E-ZFY6-NQXF');
  });
  it('argument checks', () => {
    expect(() => connectionWitness(new Uint8Array(63), new Uint8Array(16), new Uint8Array(64), new Uint8Array(16))).toThrow(RangeError);
    expect(() => pinWitness('ADBB-JTKR-RGGL-ACEM-TW6E-ZFY6-NQXF', 'a', 'x' as unknown as Uint8Array, new Uint8Array(64))).toThrow(TypeError);
    expectUdfError(() => saltedPin('not a udf!'), ErrorCode.UDF_INVALID);
  });
});

// ---------------------------------------------------------------------------------------------
// legacy formats: reproduce (test-only presentation) and reject

/** Test-only 2017/2018 presentation: 25-bit steps, 5-character groups; `bug2017` = the aa1722b32 truncation bug. */
function legacyPresentation(binary: Uint8Array, bits: number, bug2017 = false): string {
  if (!bug2017) return groupDashes(base32Encode(binary.subarray(0, Math.ceil(bits / 8)), bits / 5), 5);
  const full = Math.floor(bits / 8);
  const extra = bits % 8;
  const out = new Uint8Array(full + 1);
  out.set(binary.subarray(0, full));
  out[full] = ((binary[full] ?? 0) << (8 - extra)) & 0xff;
  return groupDashes(base32Encode(out), 5).slice(0, 6 * (bits / 25) - 1);
}

describe('legacy UDFs — udf-12.json', () => {
  it.each(udf12.vectors)('udf-12 $id: $comment — reproduced by the test-only legacy presentation', (v) => {
    let binary: Uint8Array;
    if (v.key !== undefined) {
      const av = udfParse(_udfKeyedUnchecked(utf8(v.data), v.key, { contentType: v.contentType, bits: 440 })).bytes;
      binary = concatBytes(Uint8Array.of(v.legacyType ?? 0), av);
    } else {
      const bin = udfDigestBinary(utf8(v.data), { contentType: v.contentType, algorithm: v.algorithm ?? 'SHA-512' });
      const dropped = v.droppedBytes ?? 0;
      expect(bin.subarray(1, 1 + dropped).every((b) => b === 0)).toBe(true);
      binary = concatBytes(Uint8Array.of(v.legacyType ?? (bin[0] ?? 0)), bin.subarray(1 + dropped));
    }
    expect(legacyPresentation(binary, v.bits)).toBe(v.udf);
  });
  it.each(udf12.vectors)('udf-12 $id is rejected with ERR_UDF_LEGACY', (v) => {
    expectUdfError(() => udfParse(v.udf), ErrorCode.UDF_LEGACY, /legacy.*2017\/2018/);
  });
});

describe('legacy UDFs — udf-08.json (2017 code)', () => {
  const bin = udfDigestBinary(utf8('UDF Data Value'), { contentType: 'text/plain' });
  it.each(udf08.vectors)('udf-08 $id reproduced with the 2017 truncation bug', (v) => {
    expect(legacyPresentation(bin, v.bits, true)).toBe(v.udf);
  });
  it.each([...udf08.vectors, ...udf08.rsa2017, ...udf08.udf06])('udf-08 $id is rejected with ERR_UDF_LEGACY', (v) => {
    expectUdfError(() => udfParse(v.udf), ErrorCode.UDF_LEGACY);
    expectUdfError(() => udfParse(v.udf.toLowerCase()), ErrorCode.UDF_LEGACY);
  });
  const b6 = udf08.rsa2017.filter((v) => v.n !== undefined);
  it.each(b6)('2017 profile $id reproduced (bug and correct rule)', (v) => {
    const der = concatBytes(hex('30 82 01 0A 02 82 01 01 00'), fromB64u(v.n ?? ''), hex('02 03'), fromB64u(v.e ?? ''));
    const binary = udfDigestBinary(der, { contentType: v.contentType });
    expect(legacyPresentation(binary, v.bits ?? 0, true)).toBe(v.udf);
    expect(legacyPresentation(binary, v.bits ?? 0)).toBe(v.udfCorrectRule);
  });
  it('other legacy shapes: ungrouped 25-bit precision, legacy-only type codes', () => {
    expectUdfError(() => udfParse('MDDK7N6A727AJZNOSTRXXKS7D'), ErrorCode.UDF_LEGACY, /25-bit/); // 125 bits
    expectUdfError(() => udfParse('MDDK7N6A727AJZNOSTRXXKS7DJAFXI'), ErrorCode.UDF_LEGACY); // 150 bits
    expectUdfError(() => udfParse(base32Encode(concatBytes(Uint8Array.of(136), new Uint8Array(16)))), ErrorCode.UDF_LEGACY, /136/);
    expectUdfError(() => udfParse(base32Encode(concatBytes(Uint8Array.of(145), new Uint8Array(16)))), ErrorCode.UDF_LEGACY);
    expectUdfError(() => udfParse(base32Encode(concatBytes(Uint8Array.of(101), new Uint8Array(16)))), ErrorCode.UDF_LEGACY);
  });
});

// ---------------------------------------------------------------------------------------------
// parsing, formatting, matching

describe('udfParse', () => {
  it('is case-insensitive and ignores dashes and whitespace', () => {
    const a = udfParse('MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF');
    expect(udfParse(' mddk7n6a 727a-jzno-strx\nxks7djaf ')).toEqual(a);
    expect(a.type).toBe(96);
    expect(a.bytes.length).toBe(16); // 140 bits → 17 bytes, partial bits dropped
  });
  it('bad characters, empty and too short → ERR_UDF_INVALID', () => {
    expectUdfError(() => udfParse('MDDK-7N6A-727A-JZNO-STR1'), ErrorCode.UDF_INVALID, /alphabet/);
    expectUdfError(() => udfParse(''), ErrorCode.UDF_INVALID);
    expectUdfError(() => udfParse('---'), ErrorCode.UDF_INVALID);
    expectUdfError(() => udfParse('MD'), ErrorCode.UDF_INVALID);
    expectUdfError(() => udfParse('MDDK-7N6A-727A'), ErrorCode.UDF_INVALID, /100 bits/); // digest, 60 bits
    expectUdfError(() => udfParse('MDDK-7N6A-727A-JZNO'), ErrorCode.UDF_INVALID, /100 bits/); // 80 bits
  });
  it('unknown type byte → ERR_UDF_TYPE', () => {
    expectUdfError(() => udfParse('7777-7777-7777-7777-7777'), ErrorCode.UDF_TYPE, /255/);
    expectUdfError(() => udfParse(base32Encode(concatBytes(Uint8Array.of(2), new Uint8Array(16)))), ErrorCode.UDF_TYPE);
  });
  it('short A (PIN) UDFs are accepted: the 100-bit minimum is for digests', () => {
    expect(udfParse('AAJP-KPYV-NSB4-GIYL-AM')).toMatchObject({ type: 0 });
    expect(udfParse('AAJP-KPYV-NSB4-GIYL-AM').bytes.length).toBe(10);
  });
  it('rejects non-strings with TypeError', () => {
    for (const bad of [undefined, null, 5, {}, new Uint8Array(3)]) expect(() => udfParse(bad as unknown as string)).toThrow(TypeError);
  });
  it('udfCanonical re-groups without re-encoding', () => {
    expect(udfCanonical('eada ykc5wsukaacnwrromjoqpvsksm')).toBe('EADA-YKC5-WSUK-AACN-WRRO-MJOQ-PVSK-SM');
  });
});

describe('udfFormat and udfDigest arguments', () => {
  const data = utf8('UDF Data Value');
  it.each([99, 120.5, 133, 80, 460, 0, -20])('bits %s is rejected with RangeError/TypeError', (bits) => {
    expect(() => udfDigest(data, { bits })).toThrow(Number.isInteger(bits) ? RangeError : TypeError);
  });
  it.each([100, 120, 140, 160, 200, 260, 300, 440])('bits %s gives bits/5 characters, and shorter is a prefix of longer', (bits) => {
    const u = udfDigest(data, { bits, contentType: 'text/plain' });
    expect(u.replace(/-/g, '').length).toBe(bits / 5);
    expect(udfDigest(data, { bits: 440, contentType: 'text/plain' }).startsWith(u)).toBe(true);
  });
  it('default: SHA-512, application/octet-stream, 140 bits', () => {
    expect(udfDigest(data)).toBe(udfDigest(data, { contentType: 'application/octet-stream', bits: 140, algorithm: 'SHA-512' }));
    expect(udfDigest(data)).toMatch(/^M[A-Z2-7]{3}(-[A-Z2-7]{4}){6}$/);
  });
  it('rejects wrong argument types and values', () => {
    expect(() => udfDigest('text' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => udfDigest(data, { contentType: 5 as unknown as string })).toThrow(TypeError);
    expect(() => udfDigest(data, { algorithm: 'MD5' as UdfAlgorithm })).toThrow(RangeError);
    expect(() => udfFromDigest(new Uint8Array(32))).toThrow(RangeError);
    expect(() => udfBinaryFromDigest(new Uint8Array(65))).toThrow(RangeError);
    expect(() => udfFormat(2, new Uint8Array(20))).toThrow(RangeError);
    expect(() => udfFormat(256, new Uint8Array(20))).toThrow(RangeError);
    expect(() => udfFormat(96, new Uint8Array(10), 140)).toThrow(/at least 17 bytes/);
  });
  it('udfDigestBinary is type ‖ 63 bytes and its presentation prefixes udfDigest', () => {
    const bin = udfDigestBinary(data, { contentType: 'text/plain', algorithm: 'SHA3-512' });
    expect(bin.length).toBe(64);
    expect(udfFormat(bin[0] ?? 0, bin.subarray(1), 200)).toBe(udfDigest(data, { contentType: 'text/plain', algorithm: 'SHA3-512', bits: 200 }));
  });
});

describe('compression (§2.1)', () => {
  const tcdv = (tz: number): Uint8Array => {
    const t = new Uint8Array(64).fill(0xff);
    for (let bit = 0; bit < tz; bit++) t[63 - (bit >> 3)] = (t[63 - (bit >> 3)] ?? 0) & ~(1 << (bit & 7));
    return t;
  };
  it.each([
    [0, 0], [19, 0], [20, 1], [29, 1], [30, 2], [39, 2], [40, 3], [49, 3], [50, 4], [64, 4], [512, 4],
  ])('%s trailing zero bits → level %s', (tz, level) => {
    expect(_compressionLevel(tcdv(tz))).toBe(level);
  });
  it('the type byte of vectors A3/A4 records level 1 (types 97 and 81)', () => {
    expect(udfParse('MGHB-JWIZ-J3LA-EEWD-GCT3-WX6H-C5W2').type).toBe(97);
    expect(udfParse('KEJI-Y225-BDUG-XX22-MXKE-5ITF-YVYM').type).toBe(81);
    expect(isDigestType(97) && isDigestType(81) && !isDigestType(101)).toBe(true);
  });
});

describe('udfMatches', () => {
  const d = utf8('UDF Data Value');
  const u100 = udfDigest(d, { contentType: 'text/plain', bits: 100 });
  const u260 = udfDigest(d, { contentType: 'text/plain', bits: 260 });
  it('shorter is a prefix of longer, either order, any spelling', () => {
    expect(udfMatches(u100, u260)).toBe(true);
    expect(udfMatches(u260, u100)).toBe(true);
    expect(udfMatches(u260.toLowerCase().replace(/-/g, ' '), u100)).toBe(true);
  });
  it('different data, content type or algorithm do not match', () => {
    expect(udfMatches(u100, udfDigest(utf8('UDF Data Valuf'), { contentType: 'text/plain', bits: 260 }))).toBe(false);
    expect(udfMatches(u100, udfDigest(d, { contentType: 'text/html' }))).toBe(false);
    expect(udfMatches(u100, udfDigest(d, { contentType: 'text/plain', algorithm: 'SHA3-512' }))).toBe(false);
  });
  it('a value under 100 bits never matches; malformed input throws', () => {
    expect(udfMatches('AAJP-KPYV-NSB4-GIYL-AM', 'AAJP-KPYV-NSB4-GIYL-AM')).toBe(false);
    expectUdfError(() => udfMatches(u100, 'MDDK7-N6A72-7AJZN-OSTRX'), ErrorCode.UDF_LEGACY);
    expectUdfError(() => udfMatches('x!', u100), ErrorCode.UDF_INVALID);
  });
  it('same type byte, different value with the same first characters does not match', () => {
    const other = udfFormat(96, new Uint8Array(63).fill(0xc6), 140);
    expect(udfMatches(u100, other)).toBe(false);
  });
});

describe('format/parse round trip for every type (property)', () => {
  const fixed = [32, 33, 104, 112, 144, 200];
  const truncated = [0, 1, 80, 81, 82, 83, 84, 96, 97, 98, 99, 100];
  it('fixed-length types return the exact BDS', () => {
    fc.assert(
      fc.property(fc.constantFrom(...fixed), fc.uint8Array({ minLength: 1, maxLength: 80 }), (type, bds) => {
        const s = udfFormat(type, bds);
        const p = udfParse(s);
        expect(p.type).toBe(type);
        expect(p.bytes).toEqual(bds);
        expect(udfFormat(p.type, p.bytes)).toBe(s);
      }),
    );
  });
  it('A types without a precision are fixed-length too', () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 1), fc.uint8Array({ minLength: 10, maxLength: 64 }), (type, bds) => {
        expect(udfParse(udfFormat(type, bds))).toEqual({ type, bytes: bds });
      }),
    );
  });
  it('digest and authenticator types: the parsed BDS is the prefix the precision carries', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...truncated),
        fc.uint8Array({ minLength: 63, maxLength: 63 }),
        fc.integer({ min: 5, max: 22 }).map((k) => k * 20),
        (type, bds, bits) => {
          const s = udfFormat(type, bds, bits);
          expect(s.replace(/-/g, '').length).toBe(bits / 5);
          const p = udfParse(s);
          expect(p.type).toBe(type);
          expect(p.bytes).toEqual(bds.subarray(0, Math.floor(bits / 8) - 1));
          expect(udfMatches(s, udfFormat(type, bds, 440))).toBe(true);
          expect(udfCanonical(s.toLowerCase())).toBe(s);
        },
      ),
    );
  });
});

describe('large input', () => {
  // Timing is measured by `npm run bench`, never here; this checks the large-input path is the same hash.
  it('UDF of 64 MiB equals the UDF built from a plain SHA-512 of the same bytes', () => {
    const data = new Uint8Array(64 * 1024 * 1024).fill(0x5a);
    const direct = createHash('sha512').update(data).digest();
    expect(udfDigest(data)).toBe(udfFromDigest(new Uint8Array(direct)));
  });
});

describe('errors carry stable codes', () => {
  it('UdfError is a MeshkitError', () => {
    try {
      udfParse('MDDK7-N6A72-7AJZN-OSTRX');
    } catch (e) {
      expect(isMeshkitError(e, ErrorCode.UDF_LEGACY)).toBe(true);
      return;
    }
    throw new Error('expected a throw');
  });
});
