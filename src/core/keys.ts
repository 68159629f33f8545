/**
 * Public keys: one validated in-memory form ({@link PublicKey}) and every encoding meshkit meets —
 * raw, RFC 7517 / RFC 8037 JWK, RFC 8410 / RFC 5280 SubjectPublicKeyInfo DER and PEM, and the
 * PKCS#11 `CKA_EC_POINT` / `CKA_EC_PARAMS` attributes — plus the one key identifier
 * (mesh digest §2.5, §7.2): the UDF of the key's RFC 8410 / RFC 5280 SPKI DER with content type
 * `application/pkix-keyinfo`, SHA-512, 140 bits. The same key yields the same identifier whatever
 * encoding it arrived in, because every decoder validates and normalises to the same raw bytes.
 *
 * Public-key functions never accept private material: a JWK with a private member or a PEM
 * `PRIVATE KEY` block is a {@link KeyError}.
 *
 * `keyIdMeshReference` reproduces the identifiers of the 2019–2022 Mesh reference code (a
 * non-standard DER with a NULL parameter and an inner OCTET STRING). It exists only to check the
 * published vectors and to import reference data; meshkit never emits it.
 */
import { createPublicKey, type KeyObject, type JsonWebKey } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { ed448 } from '@noble/curves/ed448.js';
import { p256 } from '@noble/curves/nist.js';
import { abytes, astring, b64u, bytesToBigIntLE, concatBytes, describe, equalBytes, fromB64u, fromUtf8, toHex } from './bytes.js';
import { P25519, P448, powMod } from './field.js';
import { ErrorCode, KeyError, UnsupportedError } from './errors.js';
import { CURVES, type Curve, type PublicJwk, type SignatureAlgorithm } from './signer.js';
import { udfDigest } from './udf.js';

/**
 * A validated public key. `raw`: Ed25519 32, Ed448 57, X25519 32, X448 56, P-256 65 (04‖X‖Y) bytes.
 * Keys returned by this module are frozen and remembered as validated; do not mutate `raw`.
 */
export interface PublicKey {
  readonly curve: Curve;
  readonly raw: Uint8Array;
}

/** Content type of the canonical key identifier (mesh-udf §2.5 text, digest §7.2). */
export const KEY_ID_CONTENT_TYPE = 'application/pkix-keyinfo';
/** Precision of the canonical key identifier in bits. */
export const KEY_ID_BITS = 140;

/** Raw public-key lengths per curve. */
export const RAW_LENGTH: Readonly<Record<Curve, number>> = { Ed25519: 32, Ed448: 57, X25519: 32, X448: 56, 'P-256': 65 };

// ---------------------------------------------------------------------------------------------
// Curve constants

const A25519 = 486662n;
const A448 = 156326n;

/**
 * Small-order u coordinates (canonical, reduced mod p). X25519: 0, 1, p−1 and the two order-8
 * points (the libsodium / RFC 7748 §6.1 blacklist; its non-canonical entries p, p+1, 2^255−1 …
 * are refused earlier as non-canonical). X448: 0, 1, p−1.
 */
export const LOW_ORDER_U: Readonly<Record<'X25519' | 'X448', readonly bigint[]>> = {
  X25519: [
    0n,
    1n,
    P25519 - 1n,
    325606250916557431795983626356110631294008115727848805560023387167927233504n,
    39382357235489614581723060781553021112529911719440698176882885853963445705823n,
  ],
  X448: [0n, 1n, P448 - 1n],
};

// DER object identifiers (contents octets only).
const OID = {
  X25519: Uint8Array.of(0x2b, 0x65, 0x6e), // 1.3.101.110
  X448: Uint8Array.of(0x2b, 0x65, 0x6f), // 1.3.101.111
  Ed25519: Uint8Array.of(0x2b, 0x65, 0x70), // 1.3.101.112
  Ed448: Uint8Array.of(0x2b, 0x65, 0x71), // 1.3.101.113
  ecPublicKey: Uint8Array.of(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01), // 1.2.840.10045.2.1
  prime256v1: Uint8Array.of(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07), // 1.2.840.10045.3.1.7
} as const;

const CFRG_CURVES = ['Ed25519', 'Ed448', 'X25519', 'X448'] as const;
type CfrgCurve = (typeof CFRG_CURVES)[number];

/** PKCS#11 v3 PrintableString names of the CFRG curves (CKA_EC_PARAMS). */
const PRINTABLE_NAMES: Readonly<Record<CfrgCurve, string>> = {
  Ed25519: 'edwards25519',
  Ed448: 'edwards448',
  X25519: 'curve25519',
  X448: 'curve448',
};

// ---------------------------------------------------------------------------------------------
// Argument helpers

function acurve(curve: unknown, field = 'curve'): Curve {
  if (typeof curve !== 'string') throw new TypeError(`"${field}" expected a curve name string, got ${describe(curve)}`);
  if (!(CURVES as readonly string[]).includes(curve)) {
    throw new RangeError(`"${field}" expected one of ${CURVES.join(', ')}, got ${JSON.stringify(curve)}`);
  }
  return curve as Curve;
}

function keyError(message: string, cause?: unknown): KeyError {
  return new KeyError(ErrorCode.KEY_INVALID, message, cause === undefined ? undefined : { cause });
}

/** The cache key (`curve:hex`) of every PublicKey this module built, so hot paths skip re-encoding. */
const ownKeys = new WeakMap<PublicKey, string>();

function freezeKey(curve: Curve, raw: Uint8Array, id?: string): PublicKey {
  const key = Object.freeze({ curve, raw });
  ownKeys.set(key, id ?? cacheKey(curve, raw));
  return key;
}

// ---------------------------------------------------------------------------------------------
// Validation (cached: the same raw key is checked once)

/** Entries kept in each per-key cache (validation, key identifier, KeyObject); oldest evicted first. */
const CACHE_LIMIT = 4096;

function cacheKey(curve: Curve, raw: Uint8Array): string {
  return `${curve}:${toHex(raw)}`;
}

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= CACHE_LIMIT) {
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
  map.set(key, value);
}

function validateEdwards(curve: 'Ed25519' | 'Ed448', raw: Uint8Array): Uint8Array {
  const Point = curve === 'Ed25519' ? ed25519.Point : ed448.Point;
  let point;
  try {
    point = Point.fromBytes(raw, false); // strict RFC 8032 decoding (no ZIP-215 leniency)
  } catch (e) {
    throw keyError(`${curve} public key is not a valid point encoding`, e);
  }
  // Strict decoding already refuses the non-canonical encodings (y ≥ p; x = 0 with the sign bit set).
  if (point.isSmallOrder()) throw keyError(`${curve} public key is a small-order point`);
  return raw;
}

/** Validates a Montgomery u coordinate: canonical (< p), not small-order, on the curve (not the twist). */
function validateMontgomery(curve: 'X25519' | 'X448', raw: Uint8Array): Uint8Array {
  const p = curve === 'X25519' ? P25519 : P448;
  const A = curve === 'X25519' ? A25519 : A448;
  const u = bytesToBigIntLE(raw);
  if (u >= p) throw keyError(`${curve} public key is not canonically encoded (u ≥ p)`);
  if (LOW_ORDER_U[curve].includes(u)) throw keyError(`${curve} public key is a small-order point`);
  const rhs = (((u * u) % p) * u + ((A * u) % p) * u + u) % p; // u³ + A·u² + u
  if (powMod(rhs, (p - 1n) / 2n, p) !== 1n) throw keyError(`${curve} public key is not on the curve (twist point)`);
  return raw;
}

function validateP256(raw: Uint8Array): Uint8Array {
  try {
    const point = p256.Point.fromBytes(raw);
    point.assertValidity();
    return point.toBytes(false);
  } catch (e) {
    throw keyError('P-256 public key is not a valid point on the curve', e);
  }
}

const ACCEPTED_LENGTHS: Readonly<Record<Curve, readonly number[]>> = {
  Ed25519: [32],
  Ed448: [57],
  X25519: [32],
  X448: [56],
  'P-256': [65, 33],
};

interface Validated {
  readonly raw: Uint8Array;
  readonly id: string; // cacheKey of the normalised raw
}
const validCache = new Map<string, Validated>();

/** Validates raw bytes for a curve and returns the normalised copy (P-256: uncompressed) and its cache key. */
function validated(curve: Curve, raw: Uint8Array, field: string): Validated {
  abytes(raw, field, ...ACCEPTED_LENGTHS[curve]);
  const key = cacheKey(curve, raw);
  const hit = validCache.get(key);
  if (hit !== undefined) return { raw: hit.raw.slice(), id: hit.id };
  const copy = raw.slice();
  let normal: Uint8Array;
  switch (curve) {
    case 'Ed25519':
    case 'Ed448':
      normal = validateEdwards(curve, copy);
      break;
    case 'X25519':
    case 'X448':
      normal = validateMontgomery(curve, copy);
      break;
    case 'P-256':
      normal = validateP256(copy);
      break;
  }
  const entry: Validated = { raw: normal.slice(), id: normal.length === raw.length ? key : cacheKey(curve, normal) };
  remember(validCache, key, entry);
  return { raw: normal, id: entry.id };
}

/** A frozen, validated PublicKey. */
function validatedKey(curve: Curve, raw: Uint8Array, field: string): PublicKey {
  const v = validated(curve, raw, field);
  return freezeKey(curve, v.raw, v.id);
}

// ---------------------------------------------------------------------------------------------
// Raw

/**
 * Builds a validated {@link PublicKey} from its raw encoding (RFC 8032 point for Ed25519/Ed448,
 * RFC 7748 u coordinate for X25519/X448, SEC 1 point for P-256; a compressed 33-byte P-256 point is
 * accepted and normalised to the uncompressed 65-byte form). The bytes are copied.
 * @throws TypeError if `curve` is not a string or `raw` not a Uint8Array; RangeError for an unknown
 *   curve or a wrong length; KeyError (ERR_KEY_INVALID) for a point that does not decode, is not on
 *   the curve, is of small order or is not canonically encoded.
 */
export function publicKeyFromRaw(curve: Curve, raw: Uint8Array): PublicKey {
  const c = acurve(curve);
  return validatedKey(c, raw, 'raw');
}

// ---------------------------------------------------------------------------------------------
// JWK

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

/**
 * How thoroughly a decoder checks the point:
 * - `full` (default): the point decodes and lies on the curve (Ed: RFC 8032 strict decoding;
 *   X: not on the twist; P-256: on the curve), is canonical and not of small order.
 * - `encoding`: everything that needs no square root: lengths, canonical encoding (y < p,
 *   u < p), no small-order point. For keys inside a signed object that is being verified: OpenSSL
 *   rejects an Ed25519/Ed448 key that is not a point when it checks the signature, and an
 *   agreement key is fully validated when it is used (e.g. as a JWE recipient). This avoids a
 *   pure-JS square root per key (~100 µs) when a Personal Profile lists a thousand devices.
 */
export type PointCheck = 'full' | 'encoding';

/**
 * Decodes a public JWK (RFC 7517; OKP per RFC 8037, EC per RFC 7518). `kty` and `crv` must agree,
 * `x` (and `y` for EC) must be strict base64url of the right length, and the point must validate
 * (see {@link PointCheck}; default `full`).
 * @throws TypeError if `jwk` is not an object; KeyError (ERR_KEY_INVALID) for a private member
 *   (`d` …), mismatched or missing members, bad base64url, wrong lengths or an invalid point;
 *   UnsupportedError (ERR_ALG_UNSUPPORTED) for a key type or curve meshkit does not speak.
 */
export function publicKeyFromJwk(jwk: unknown, opts?: { check?: PointCheck }): PublicKey {
  const check = opts?.check ?? 'full';
  if (check !== 'full' && check !== 'encoding') throw new RangeError(`"opts.check" expected "full" or "encoding", got ${String(check)}`);
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) {
    throw new TypeError(`"jwk" expected an object, got ${describe(jwk)}`);
  }
  const o = jwk as Record<string, unknown>;
  for (const m of PRIVATE_JWK_MEMBERS) {
    if (Object.hasOwn(o, m)) throw keyError(`JWK carries private member "${m}"; public-key functions never accept private keys`);
  }
  const { kty, crv, x, y } = o;
  if (typeof kty !== 'string') throw keyError('JWK "kty" is missing or not a string');
  if (kty !== 'OKP' && kty !== 'EC') {
    throw new UnsupportedError(ErrorCode.ALG_UNSUPPORTED, `JWK key type "${kty}" is not supported`);
  }
  if (typeof crv !== 'string') throw keyError('JWK "crv" is missing or not a string');
  if (!(CURVES as readonly string[]).includes(crv)) {
    throw new UnsupportedError(ErrorCode.ALG_UNSUPPORTED, `JWK curve "${crv}" is not supported`);
  }
  const curve = crv as Curve;
  const memo = typeof x === 'string' && (y === undefined || typeof y === 'string') ? `${check}|${crv}|${x}|${(y as string | undefined) ?? ''}` : undefined;
  const known = memo === undefined ? undefined : jwkCache.get(memo);
  if (known !== undefined && known.curve === curve && kty === (curve === 'P-256' ? 'EC' : 'OKP')) return known;
  const key = decodeJwk(curve, kty, x, y, check);
  if (memo !== undefined) remember(jwkCache, memo, key);
  return key;
}

/** Keys decoded from JWKs, by check level and members (the same JWK is decoded once). */
const jwkCache = new Map<string, PublicKey>();

/**
 * Empties the per-key caches (validation, JWK decoding, key identifiers, KeyObjects), so a
 * benchmark can measure first sight of every key.
 * @internal
 */
export function _clearKeyCaches(): void {
  validCache.clear();
  jwkCache.clear();
  keyIdCache.clear();
  keyObjectCache.clear();
}

function decodeJwk(curve: Curve, kty: string, x: unknown, y: unknown, check: PointCheck): PublicKey {
  const expectedKty = curve === 'P-256' ? 'EC' : 'OKP';
  if (kty !== expectedKty) throw keyError(`JWK "kty" ${kty} does not match "crv" ${curve} (expected ${expectedKty})`);
  const xBytes = jwkCoordinate(x, 'x', curve === 'P-256' ? 32 : RAW_LENGTH[curve]);
  if (curve === 'P-256') {
    const yBytes = jwkCoordinate(y, 'y', 32);
    return publicKeyFromRawAsKeyError(curve, concatBytes(Uint8Array.of(4), xBytes, yBytes), check);
  }
  if (y !== undefined) throw keyError(`JWK for ${curve} must not carry "y"`);
  return publicKeyFromRawAsKeyError(curve, xBytes, check);
}

function jwkCoordinate(value: unknown, name: string, length: number): Uint8Array {
  if (typeof value !== 'string') throw keyError(`JWK "${name}" is missing or not a string`);
  let bytes: Uint8Array;
  try {
    bytes = fromB64u(value, name);
  } catch (e) {
    throw keyError(`JWK "${name}" is not strict base64url`, e);
  }
  if (bytes.length !== length) throw keyError(`JWK "${name}" expected ${length} bytes, got ${bytes.length}`);
  return bytes;
}

/** Raw validation where a wrong length is a content error of an encoding, not an argument error. */
function publicKeyFromRawAsKeyError(curve: Curve, raw: Uint8Array, check: PointCheck = 'full'): PublicKey {
  if (!ACCEPTED_LENGTHS[curve].includes(raw.length)) {
    throw keyError(`${curve} public key expected ${ACCEPTED_LENGTHS[curve].join(' or ')} bytes, got ${raw.length}`);
  }
  if (check === 'encoding' && curve !== 'P-256' && !validCache.has(cacheKey(curve, raw))) {
    return freezeKey(curve, checkEncoding(curve, raw.slice()));
  }
  return validatedKey(curve, raw, 'raw');
}

/** y (Edwards) values of the small-order points: the 8-torsion of edwards25519, the 4-torsion of edwards448. */
const SMALL_ORDER_Y: Readonly<Record<'Ed25519' | 'Ed448', readonly bigint[]>> = {
  Ed25519: [
    0n, 1n, P25519 - 1n,
    // order-8 points (the libsodium blacklist's 26e8958f… and c7176a70… encodings)
    2707385501144840649318225287225658788936804267575313519463743609750303402022n,
    P25519 - 2707385501144840649318225287225658788936804267575313519463743609750303402022n,
  ],
  Ed448: [0n, 1n, P448 - 1n],
};

/** The `encoding` point check: canonical encoding and no small-order point, without a square root. */
function checkEncoding(curve: 'Ed25519' | 'Ed448' | 'X25519' | 'X448', raw: Uint8Array): Uint8Array {
  if (curve === 'X25519' || curve === 'X448') {
    const p = curve === 'X25519' ? P25519 : P448;
    const u = bytesToBigIntLE(raw);
    if (u >= p) throw keyError(`${curve} public key is not canonically encoded (u ≥ p)`);
    if (LOW_ORDER_U[curve].includes(u)) throw keyError(`${curve} public key is a small-order point`);
    return raw;
  }
  const p = curve === 'Ed25519' ? P25519 : P448;
  const y = curve === 'Ed25519'
    ? bytesToBigIntLE(raw) & ((1n << 255n) - 1n)
    : bytesToBigIntLE(raw.subarray(0, 56));
  if (curve === 'Ed448' && ((raw[56] ?? 0) & 0x7f) !== 0) throw keyError('Ed448 public key is not a valid point encoding');
  if (y >= p) throw keyError(`${curve} public key is not canonically encoded (y ≥ p)`);
  if (SMALL_ORDER_Y[curve].includes(y)) throw keyError(`${curve} public key is a small-order point`);
  return raw;
}

/**
 * Encodes a public key as a JWK: `{kty:"OKP",crv,x}` (RFC 8037) or `{kty:"EC",crv:"P-256",x,y}`.
 * @throws TypeError / RangeError / KeyError as {@link publicKeyFromRaw} for an invalid `key`.
 */
export function publicKeyToJwk(key: PublicKey): PublicJwk {
  const k = checkedKey(key);
  if (k.curve === 'P-256') {
    return { kty: 'EC', crv: 'P-256', x: b64u(k.raw.subarray(1, 33)), y: b64u(k.raw.subarray(33, 65)) };
  }
  return { kty: 'OKP', crv: k.curve, x: b64u(k.raw) };
}

/** Validates a PublicKey-shaped argument (it may have been built by hand) and returns a normalised one. */
function checkedKey(key: unknown, field = 'key'): PublicKey {
  if (typeof key !== 'object' || key === null) throw new TypeError(`"${field}" expected a PublicKey, got ${describe(key)}`);
  if (ownKeys.has(key as PublicKey)) return key as PublicKey; // built (and validated) here
  const { curve, raw } = key as { curve?: unknown; raw?: unknown };
  const c = acurve(curve, `${field}.curve`);
  if (!(raw instanceof Uint8Array)) throw new TypeError(`"${field}.raw" expected Uint8Array, got ${describe(raw)}`);
  return validatedKey(c, raw, `${field}.raw`);
}

// ---------------------------------------------------------------------------------------------
// DER (strict reader for SubjectPublicKeyInfo and CKA_EC_PARAMS / CKA_EC_POINT)

interface Tlv {
  tag: number;
  value: Uint8Array;
  end: number;
}

function readTlv(der: Uint8Array, offset: number, what: string): Tlv {
  const tag = der[offset];
  const first = der[offset + 1];
  if (tag === undefined || first === undefined) throw keyError(`${what}: truncated DER`);
  if ((tag & 0x1f) === 0x1f) throw keyError(`${what}: multi-byte DER tags are not expected`);
  let length: number;
  let pos = offset + 2;
  if (first < 0x80) {
    length = first;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw keyError(`${what}: indefinite DER length`);
    if (n > 2) throw keyError(`${what}: DER length too large`);
    length = 0;
    for (let i = 0; i < n; i++) {
      const b = der[pos + i];
      if (b === undefined) throw keyError(`${what}: truncated DER length`);
      if (i === 0 && b === 0) throw keyError(`${what}: non-minimal DER length`);
      length = length * 256 + b;
    }
    if (length < 0x80) throw keyError(`${what}: non-minimal DER length`);
    pos += n;
  }
  const end = pos + length;
  if (end > der.length) throw keyError(`${what}: DER length exceeds the input`);
  return { tag, value: der.subarray(pos, end), end };
}

/** Reads exactly one TLV that spans the whole input. */
function readOnly(der: Uint8Array, what: string): Tlv {
  const tlv = readTlv(der, 0, what);
  if (tlv.end !== der.length) throw keyError(`${what}: trailing bytes after DER`);
  return tlv;
}

function derLength(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  if (n < 0x100) return Uint8Array.of(0x81, n);
  return Uint8Array.of(0x82, n >> 8, n & 0xff);
}

function der(tag: number, ...content: Uint8Array[]): Uint8Array {
  const body = concatBytes(...content);
  return concatBytes(Uint8Array.of(tag), derLength(body.length), body);
}

function oidCurve(oid: Uint8Array): CfrgCurve | undefined {
  for (const c of CFRG_CURVES) if (equalBytes(OID[c], oid)) return c;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// SPKI / PEM

/**
 * Decodes an RFC 8410 (Ed25519, Ed448, X25519, X448) or RFC 5480 (id-ecPublicKey with
 * prime256v1) SubjectPublicKeyInfo. DER is parsed strictly: exact lengths, minimal length forms,
 * no trailing bytes, no parameters for the RFC 8410 algorithms, a BIT STRING with 0 unused bits.
 * @throws TypeError if `der` is not a Uint8Array; KeyError (ERR_KEY_INVALID) for malformed DER or
 *   an invalid point; UnsupportedError (ERR_ALG_UNSUPPORTED) for another algorithm or curve.
 */
export function publicKeyFromSpki(der: Uint8Array): PublicKey {
  abytes(der, 'der');
  const what = 'SubjectPublicKeyInfo';
  const spki = readOnly(der, what);
  if (spki.tag !== 0x30) throw keyError(`${what}: expected SEQUENCE`);
  const algId = readTlv(spki.value, 0, what);
  if (algId.tag !== 0x30) throw keyError(`${what}: expected AlgorithmIdentifier SEQUENCE`);
  const bits = readTlv(spki.value, algId.end, what);
  if (bits.tag !== 0x03) throw keyError(`${what}: expected BIT STRING`);
  if (bits.end !== spki.value.length) throw keyError(`${what}: unexpected elements after the BIT STRING`);
  if (bits.value[0] !== 0) throw keyError(`${what}: BIT STRING must have 0 unused bits`);
  const key = bits.value.subarray(1);
  const oid = readTlv(algId.value, 0, what);
  if (oid.tag !== 0x06) throw keyError(`${what}: expected algorithm OBJECT IDENTIFIER`);
  const cfrg = oidCurve(oid.value);
  if (cfrg !== undefined) {
    if (oid.end !== algId.value.length) throw keyError(`${what}: RFC 8410 algorithms take no parameters`);
    return publicKeyFromRawAsKeyError(cfrg, key);
  }
  if (equalBytes(oid.value, OID.ecPublicKey)) {
    const params = readTlv(algId.value, oid.end, what);
    if (params.end !== algId.value.length) throw keyError(`${what}: unexpected elements in AlgorithmIdentifier`);
    if (params.tag !== 0x06 || !equalBytes(params.value, OID.prime256v1)) {
      throw new UnsupportedError(ErrorCode.ALG_UNSUPPORTED, `${what}: only the prime256v1 named curve is supported for EC keys`);
    }
    return publicKeyFromRawAsKeyError('P-256', key);
  }
  throw new UnsupportedError(ErrorCode.ALG_UNSUPPORTED, `${what}: unsupported algorithm OID ${toHex(oid.value)}`);
}

/**
 * Encodes a public key as RFC 8410 / RFC 5480 SubjectPublicKeyInfo DER (the input of the key
 * identifier; byte-identical to Node's `KeyObject.export({type:'spki',format:'der'})`).
 * @throws TypeError / RangeError / KeyError as {@link publicKeyFromRaw} for an invalid `key`.
 */
export function publicKeyToSpki(key: PublicKey): Uint8Array {
  const k = checkedKey(key);
  return spkiOf(k);
}

function spkiOf(k: PublicKey): Uint8Array {
  const algId =
    k.curve === 'P-256' ? der(0x30, der(0x06, OID.ecPublicKey), der(0x06, OID.prime256v1)) : der(0x30, der(0x06, OID[k.curve]));
  return der(0x30, algId, der(0x03, Uint8Array.of(0), k.raw));
}

const PEM_RE = /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\s]*?)-----END ([A-Z0-9 ]+)-----\s*$/;

/**
 * Decodes a PEM `-----BEGIN PUBLIC KEY-----` block (exactly one; base64 body, line breaks allowed).
 * @throws TypeError if `pem` is not a string; KeyError (ERR_KEY_INVALID) for another label (a
 *   `PRIVATE KEY` is refused outright), bad base64, several blocks, or an invalid SPKI inside.
 */
export function publicKeyFromPem(pem: string): PublicKey {
  astring(pem, 'pem');
  const m = PEM_RE.exec(pem);
  if (m === null) throw keyError('PEM: expected exactly one -----BEGIN PUBLIC KEY----- block');
  const [, begin = '', body = '', end = ''] = m;
  if (begin !== end) throw keyError(`PEM: BEGIN ${begin} does not match END ${end}`);
  if (begin.includes('PRIVATE')) throw keyError('PEM holds a private key; public-key functions never accept private keys');
  if (begin !== 'PUBLIC KEY') throw keyError(`PEM: expected "PUBLIC KEY", got "${begin}"`);
  const b64 = body.replace(/\s+/g, '');
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(b64)) throw keyError('PEM: invalid base64 body');
  const bytes = new Uint8Array(Buffer.from(b64, 'base64'));
  if (Buffer.from(bytes).toString('base64') !== b64) throw keyError('PEM: non-canonical base64 body');
  return publicKeyFromSpki(bytes);
}

/**
 * Encodes a public key as a PEM `PUBLIC KEY` block (64-character lines, trailing newline).
 * @throws TypeError / RangeError / KeyError as {@link publicKeyFromRaw} for an invalid `key`.
 */
export function publicKeyToPem(key: PublicKey): string {
  const b64 = Buffer.from(publicKeyToSpki(key)).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN PUBLIC KEY-----\n${lines.join('\n')}\n-----END PUBLIC KEY-----\n`;
}

// ---------------------------------------------------------------------------------------------
// PKCS#11 CKA_EC_POINT / CKA_EC_PARAMS

/**
 * Decodes a PKCS#11 `CKA_EC_POINT`: either DER-wrapped (`04 len point`, as SoftHSM and most
 * tokens return it) or the bare point. The two forms are told apart by length, which is
 * unambiguous for every curve.
 * @throws TypeError / RangeError for a wrong curve name or argument type; KeyError
 *   (ERR_KEY_INVALID) for a wrong length, malformed wrapping or an invalid point.
 */
export function publicKeyFromEcPoint(curve: Curve, ecPoint: Uint8Array): PublicKey {
  const c = acurve(curve);
  abytes(ecPoint, 'ecPoint');
  if (ACCEPTED_LENGTHS[c].includes(ecPoint.length)) return publicKeyFromRawAsKeyError(c, ecPoint);
  if (ecPoint[0] !== 0x04) throw keyError(`CKA_EC_POINT for ${c}: expected ${ACCEPTED_LENGTHS[c].join(' or ')} bytes or a DER OCTET STRING`);
  const inner = readOnly(ecPoint, 'CKA_EC_POINT');
  return publicKeyFromRawAsKeyError(c, inner.value);
}

/**
 * Encodes a public key as a PKCS#11 `CKA_EC_POINT`: DER OCTET STRING by default (PKCS#11 v2.40 /
 * v3.0), the bare point with `{ derWrapped: false }`.
 * @throws TypeError / RangeError / KeyError as {@link publicKeyFromRaw} for an invalid `key`.
 */
export function publicKeyToEcPoint(key: PublicKey, opts?: { derWrapped?: boolean }): Uint8Array {
  const k = checkedKey(key);
  return opts?.derWrapped === false ? k.raw.slice() : der(0x04, k.raw);
}

/**
 * PKCS#11 `CKA_EC_PARAMS` for a curve: the DER OBJECT IDENTIFIER (RFC 8410 OIDs; prime256v1).
 * @throws TypeError / RangeError for an unknown curve.
 */
export function ecParams(curve: Curve): Uint8Array {
  const c = acurve(curve);
  return der(0x06, c === 'P-256' ? OID.prime256v1 : OID[c]);
}

/**
 * Reads a PKCS#11 `CKA_EC_PARAMS`: an OBJECT IDENTIFIER (RFC 8410 OIDs, prime256v1) or one of the
 * PKCS#11 v3 PrintableString names `edwards25519`, `edwards448`, `curve25519`, `curve448`.
 * @throws TypeError if `der` is not a Uint8Array; KeyError (ERR_KEY_INVALID) for malformed DER;
 *   UnsupportedError (ERR_ALG_UNSUPPORTED) for another curve.
 */
export function curveFromEcParams(der: Uint8Array): Curve {
  abytes(der, 'der');
  const tlv = readOnly(der, 'CKA_EC_PARAMS');
  if (tlv.tag === 0x06) {
    const c = oidCurve(tlv.value);
    if (c !== undefined) return c;
    if (equalBytes(tlv.value, OID.prime256v1)) return 'P-256';
    throw new UnsupportedError(ErrorCode.ALG_UNSUPPORTED, `CKA_EC_PARAMS: unsupported curve OID ${toHex(tlv.value)}`);
  }
  if (tlv.tag === 0x13) {
    let name: string;
    try {
      name = fromUtf8(tlv.value);
    } catch (e) {
      throw keyError('CKA_EC_PARAMS: PrintableString is not valid text', e);
    }
    for (const c of CFRG_CURVES) if (PRINTABLE_NAMES[c] === name) return c;
    throw new UnsupportedError(ErrorCode.ALG_UNSUPPORTED, `CKA_EC_PARAMS: unsupported curve name ${JSON.stringify(name)}`);
  }
  throw keyError(`CKA_EC_PARAMS: expected OBJECT IDENTIFIER or PrintableString, got tag 0x${tlv.tag.toString(16)}`);
}

// ---------------------------------------------------------------------------------------------
// Sniffing, identifiers, native objects

/**
 * Decodes a public key from PEM text, JWK JSON text, or DER SPKI bytes (bytes that start with
 * `-` or `{` after whitespace are read as UTF-8 text).
 * @throws TypeError if `input` is neither a string nor a Uint8Array; KeyError (ERR_KEY_INVALID)
 *   when the input is none of the three forms or is invalid; UnsupportedError for other algorithms.
 */
export function decodePublicKey(input: Uint8Array | string): PublicKey {
  let text: string;
  if (input instanceof Uint8Array) {
    let i = 0;
    while (i < input.length && [0x20, 0x09, 0x0a, 0x0d].includes(input[i] ?? 0)) i++;
    const first = input[i];
    if (first === 0x30 && i === 0) return publicKeyFromSpki(input);
    if (first !== 0x2d && first !== 0x7b) throw keyError('public key: not PEM, JWK JSON or DER SPKI');
    try {
      text = fromUtf8(input);
    } catch (e) {
      throw keyError('public key: text is not valid UTF-8', e);
    }
  } else if (typeof input === 'string') {
    text = input;
  } else {
    throw new TypeError(`"input" expected Uint8Array or string, got ${describe(input)}`);
  }
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN')) return publicKeyFromPem(text);
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch (e) {
      throw keyError('public key: JWK text is not valid JSON', e);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw keyError('public key: JWK JSON is not an object');
    return publicKeyFromJwk(parsed);
  }
  throw keyError('public key: not PEM, JWK JSON or DER SPKI');
}

/** Turns any accepted key form into a validated PublicKey. */
function toPublicKey(publicKey: unknown): PublicKey {
  if (publicKey instanceof Uint8Array) return publicKeyFromSpki(publicKey);
  if (typeof publicKey === 'object' && publicKey !== null && !Array.isArray(publicKey)) {
    if ('kty' in publicKey) return publicKeyFromJwk(publicKey);
    if ('curve' in publicKey && 'raw' in publicKey) return checkedKey(publicKey, 'publicKey');
  }
  throw new TypeError(`"publicKey" expected a JWK, a PublicKey or SPKI DER bytes, got ${describe(publicKey)}`);
}

/**
 * The key identifier: UDF (SHA-512, 140 bits) of the RFC 8410 / RFC 5280 SPKI DER with content type
 * `application/pkix-keyinfo` (mesh digest §7.2). The same key gives the same identifier from a JWK,
 * a PublicKey, or SPKI DER.
 * @throws TypeError for an argument of another type; KeyError / UnsupportedError as the decoders.
 */
export function keyId(publicKey: JsonWebKey | PublicJwk | PublicKey | Uint8Array): string {
  const key = toPublicKey(publicKey);
  const id = ownKeys.get(key) ?? cacheKey(key.curve, key.raw);
  const hit = keyIdCache.get(id);
  if (hit !== undefined) return hit;
  const udf = udfDigest(spkiOf(key), { contentType: KEY_ID_CONTENT_TYPE, bits: KEY_ID_BITS });
  remember(keyIdCache, id, udf);
  return udf;
}

const keyIdCache = new Map<string, string>();

const keyObjectCache = new Map<string, KeyObject>();

/**
 * A node:crypto public KeyObject for native verification / ECDH (imported from the JWK form, the
 * fastest import path). Cached per key (bounded, 4096 entries, oldest evicted first), so verifying
 * many signatures by the same key costs one validation and one import.
 * @throws TypeError / RangeError / KeyError as {@link publicKeyFromRaw} for an invalid `key`.
 */
export function publicKeyObject(key: PublicKey): KeyObject {
  if (typeof key !== 'object' || key === null || !(key.raw instanceof Uint8Array)) {
    throw new TypeError(`"key" expected a PublicKey, got ${describe(key)}`);
  }
  const id = ownKeys.get(key) ?? cacheKey(key.curve, key.raw);
  const hit = keyObjectCache.get(id);
  if (hit !== undefined) return hit;
  const k = checkedKey(key);
  // JWK import is several times faster than SPKI DER import in Node/OpenSSL 3 (no decoder lookup).
  const obj = createPublicKey({ key: publicKeyToJwk(k) as JsonWebKey, format: 'jwk' });
  remember(keyObjectCache, id, obj);
  return obj;
}

/**
 * The JWS algorithm for a signing curve: Ed25519 / Ed448 → `EdDSA` (RFC 8037), P-256 → `ES256`.
 * @throws TypeError / RangeError for an unknown curve; UnsupportedError (ERR_ALG_UNSUPPORTED) for
 *   X25519 / X448, which cannot sign.
 */
export function signatureAlgorithmFor(curve: Curve): SignatureAlgorithm {
  const c = acurve(curve);
  if (c === 'Ed25519' || c === 'Ed448') return 'EdDSA';
  if (c === 'P-256') return 'ES256';
  throw new UnsupportedError(ErrorCode.ALG_UNSUPPORTED, `${c} is a key-agreement curve and cannot sign`);
}

// ---------------------------------------------------------------------------------------------
// Compatibility adapter for the Mesh reference code (tests and reference-data import only)

/** Content types the reference code hashed (digest §1 fact 1, §2.4). */
export const MESH_REFERENCE_CONTENT_TYPE = { '2019': 'application/x509-keyinfo', '2021': 'PKIXKey' } as const;

/**
 * The key identifier the Mesh reference code computed (digest §2.5): UDF over the non-standard
 * `SEQ{SEQ{OID, NULL}, BIT STRING{OCTET STRING{key}}}` with content type `application/x509-keyinfo`
 * (era `2019`: Nov 2019 – Oct 2020) or the literal `PKIXKey` (era `2021`). `raw` may be the 33 / 57
 * byte extended X25519 / X448 encodings of threshold co-generation, which the reference fingerprinted.
 * Never use it as meshkit's own identifier — that is {@link keyId}.
 * @throws TypeError / RangeError for a wrong curve, era or length; KeyError for an invalid Edwards point.
 */
export function keyIdMeshReference(key: { readonly curve: Curve; readonly raw: Uint8Array }, era: '2019' | '2021'): string {
  if (typeof key !== 'object' || key === null) throw new TypeError(`"key" expected an object, got ${describe(key)}`);
  const curve = acurve(key.curve, 'key.curve');
  if (curve === 'P-256') throw new RangeError('"key.curve" expected Ed25519, Ed448, X25519 or X448, got "P-256"');
  if (era !== '2019' && era !== '2021') throw new RangeError(`"era" expected "2019" or "2021", got ${JSON.stringify(era)}`);
  const lengths = { Ed25519: [32], Ed448: [57], X25519: [32, 33], X448: [56, 57] }[curve];
  const raw = abytes(key.raw, 'key.raw', ...lengths);
  if (curve === 'Ed25519' || curve === 'Ed448') validated(curve, raw, 'key.raw');
  return udfDigest(meshReferenceDer(curve, raw), { contentType: MESH_REFERENCE_CONTENT_TYPE[era], bits: KEY_ID_BITS });
}

/**
 * The Mesh reference DER of a key (digest §2.5), exported for tests that check the published
 * type-112 OID UDF. Same arguments as {@link keyIdMeshReference}.
 * @throws TypeError / RangeError for a wrong curve or length.
 */
export function meshReferenceDer(curve: CfrgCurve, raw: Uint8Array): Uint8Array {
  const c = acurve(curve);
  if (c === 'P-256') throw new RangeError('"curve" expected Ed25519, Ed448, X25519 or X448, got "P-256"');
  abytes(raw, 'raw', ...{ Ed25519: [32], Ed448: [57], X25519: [32, 33], X448: [56, 57] }[c]);
  return der(0x30, der(0x30, der(0x06, OID[c]), Uint8Array.of(0x05, 0x00)), der(0x03, Uint8Array.of(0), der(0x04, raw)));
}
