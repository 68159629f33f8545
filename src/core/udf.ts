/**
 * Uniform Data Fingerprints (UDF), as in draft-hallambaker-mesh-udf-13/15 (digest §2, §4.5, §7.1).
 *
 * A UDF is `type byte ‖ BDS` presented in Base32 with a dash every 4 characters.
 * - Content-digest UDFs (types 'M' 96–100 for SHA-512, 'K' 80–84 for SHA3-512):
 *   TCDV = H(UTF8(contentType) ‖ ':' ‖ H(data)); the type byte records work-factor compression
 *   (trailing zero bits of the whole TCDV); presented at a multiple of 20 bits (100…440, default
 *   140), the type byte included.
 * - Fixed-length UDFs (nonce 'N' 104, key 'E' 32/33, PIN/key 'A' 0/1 without a precision, OID 'O'
 *   112, share 'S' 144, seed 'Z' 200) are never truncated.
 * - Authenticator (keyed) UDFs (type 0) are truncated like digests and never compressed.
 *
 * Parsing rejects the 2017/2018 legacy formats (5-character groups, 25-bit precision steps, type
 * codes that only the legacy drafts used) with ERR_UDF_LEGACY.
 *
 * Also here: the PIN / witness functions of the connection protocol (digest §4.5) and key
 * derivation from a 'Z' seed (digest §2.7).
 */
import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { abytes, aint, aobject, astring, concatBytes, utf8, wipe } from './bytes.js';
import { ErrorCode, UdfError } from './errors.js';
import { base32Decode, base32Encode, base32Normalize, groupDashes } from './base32.js';

/** UDF type bytes (mesh-udf-15 Table 1; digest §2.2). */
export const UdfType = {
  HmacSha2: 0,
  HmacSha3: 1,
  Encryption: 32,
  EncryptionSignature: 33,
  Sha3: 80,
  Sha3Compressed20: 81,
  Sha3Compressed30: 82,
  Sha3Compressed40: 83,
  Sha3Compressed50: 84,
  Sha2: 96,
  Sha2Compressed20: 97,
  Sha2Compressed30: 98,
  Sha2Compressed40: 99,
  Sha2Compressed50: 100,
  Nonce: 104,
  Oid: 112,
  Share: 144,
  Seed: 200,
} as const;

/** Content types used with UDFs. The content type is always a parameter, never hard-wired. */
export const ContentType = {
  /** Key identifiers: UDF of the RFC 8410 / RFC 5280 SubjectPublicKeyInfo DER. */
  PkixKeyInfo: 'application/pkix-keyinfo',
  /** Identifier of an E/A key UDF (mesh-udf §4.3): the data is the dashed Base32 string. */
  Udf: 'application/udf',
  UdfEncryption: 'application/udf-encryption',
  UdfLock: 'application/udf-lock',
  PkixCert: 'application/pkix-cert',
  PkixCrl: 'application/pkix-crl',
  PgpKeys: 'application/pgp-keys',
  Dns: 'application/dns',
  TextPlain: 'text/plain',
  /** Default of {@link udfDigest} when no content type is given. */
  OctetStream: 'application/octet-stream',
  /** What the 2020–2022 reference code really hashed for keys (digest §2.4); for reproducing vectors only. */
  LegacyPkixKey: 'PKIXKey',
  /** What the 2017–Oct 2020 reference code hashed for keys; for reproducing vectors only. */
  LegacyX509KeyInfo: 'application/x509-keyinfo',
} as const;

export type UdfAlgorithm = 'SHA-512' | 'SHA3-512';

export interface UdfDigestOptions {
  /** Content type mixed into the outer hash; default `application/octet-stream`. */
  contentType?: string | undefined;
  /** Presentation precision in bits, type byte included: a multiple of 20 in 100…440; default 140. */
  bits?: number | undefined;
  /** Digest algorithm; default SHA-512 (type 'M'). */
  algorithm?: UdfAlgorithm | undefined;
}

/** Default presentation precision (28 characters). */
export const UDF_DEFAULT_BITS = 140;
/** Shortest precision accepted when formatting or parsing a digest UDF. */
export const UDF_MIN_BITS = 100;
/** Longest precision accepted when formatting (the reference MaximumBits). */
export const UDF_MAX_BITS = 440;

const TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [0, 'authenticator HMAC-SHA-2-512'],
  [1, 'authenticator HMAC-SHA-3-512'],
  [32, 'encryption key'],
  [33, 'encryption/signature key'],
  [80, 'SHA-3-512 digest'],
  [81, 'SHA-3-512 digest (20 compressed)'],
  [82, 'SHA-3-512 digest (30 compressed)'],
  [83, 'SHA-3-512 digest (40 compressed)'],
  [84, 'SHA-3-512 digest (50 compressed)'],
  [96, 'SHA-2-512 digest'],
  [97, 'SHA-2-512 digest (20 compressed)'],
  [98, 'SHA-2-512 digest (30 compressed)'],
  [99, 'SHA-2-512 digest (40 compressed)'],
  [100, 'SHA-2-512 digest (50 compressed)'],
  [104, 'nonce'],
  [112, 'OID-identified sequence'],
  [144, 'Shamir secret share'],
  [200, 'secret seed'],
]);

/** Types whose value has a fixed length and is never truncated. */
const FIXED_TYPES: ReadonlySet<number> = new Set([32, 33, 104, 112, 144, 200]);

/** Type codes that exist only in the 2017/2018 drafts (udf-08 … udf-12) and code. */
const LEGACY_ONLY_TYPES: ReadonlyMap<number, string> = new Map([
  [101, 'udf-12 SHA-2-512 compressed (56 leading zero bits)'],
  [136, "udf-08…mesh-udf-11 'R' random nonce"],
  [145, 'udf-12 SHA-3-512 compressed'],
  [146, 'udf-12 SHA-3-512 compressed'],
  [147, 'udf-12 SHA-3-512 compressed'],
  [148, 'udf-12 SHA-3-512 compressed'],
  [149, 'udf-12 SHA-3-512 compressed'],
]);

/** True for the content-digest types 80–84 and 96–100. */
export function isDigestType(type: number): boolean {
  return (type >= 80 && type <= 84) || (type >= 96 && type <= 100);
}

/** True for the types that are never truncated (E, N, O, S, Z). The 'A' types are fixed only when formatted without a precision. */
export function isFixedLengthType(type: number): boolean {
  return FIXED_TYPES.has(type);
}

/** A readable name of a UDF type byte, or undefined for an unknown one. */
export function udfTypeName(type: number): string | undefined {
  return TYPE_NAMES.get(type);
}

function abits(bits: unknown, field = 'bits'): number {
  aint(bits, field);
  const n = bits as number;
  if (n < UDF_MIN_BITS || n > UDF_MAX_BITS || n % 20 !== 0) {
    throw new RangeError(`"${field}" expected a multiple of 20 in [${UDF_MIN_BITS}, ${UDF_MAX_BITS}], got ${n}`);
  }
  return n;
}

function algorithmOf(value: unknown): UdfAlgorithm {
  if (value === undefined || value === 'SHA-512') return 'SHA-512';
  if (value === 'SHA3-512') return 'SHA3-512';
  if (typeof value !== 'string') throw new TypeError(`"algorithm" expected 'SHA-512' or 'SHA3-512', got ${typeof value}`);
  throw new RangeError(`"algorithm" expected 'SHA-512' or 'SHA3-512', got ${JSON.stringify(value)}`);
}

/** The node:crypto hash name of a UDF digest algorithm ('sha512' or 'sha3-512'). */
export function udfNodeHashName(algorithm: UdfAlgorithm = 'SHA-512'): 'sha512' | 'sha3-512' {
  return algorithmOf(algorithm) === 'SHA-512' ? 'sha512' : 'sha3-512';
}

function checkOptions(opts: unknown): { contentType: string; bits: number | undefined; algorithm: UdfAlgorithm } {
  if (opts === undefined) return { contentType: ContentType.OctetStream, bits: undefined, algorithm: 'SHA-512' };
  const o = aobject(opts, 'opts');
  const contentType = o['contentType'] === undefined ? ContentType.OctetStream : astring(o['contentType'], 'contentType');
  const bits = o['bits'] === undefined ? undefined : abits(o['bits']);
  return { contentType, bits, algorithm: algorithmOf(o['algorithm']) };
}

/** Number of trailing zero bits of `bytes` read as one big-endian number (LSB of the last byte first). */
function trailingZeroBits(bytes: Uint8Array): number {
  let count = 0;
  for (let i = bytes.length - 1; i >= 0; i--) {
    const b = bytes[i] ?? 0;
    if (b === 0) {
      count += 8;
      continue;
    }
    let v = b;
    while ((v & 1) === 0) {
      count++;
      v >>= 1;
    }
    break;
  }
  return count;
}

/** Internal: compression level 0…4 of a TCDV (digest §2.1: 20/30/40/50 trailing zero bits of the whole TCDV). */
export function _compressionLevel(tcdv: Uint8Array): number {
  const tz = trailingZeroBits(tcdv);
  if (tz >= 50) return 4;
  if (tz >= 40) return 3;
  if (tz >= 30) return 2;
  if (tz >= 20) return 1;
  return 0;
}

/**
 * The 64-byte binary UDF ("UDFbin512": type ‖ first 63 bytes of the TCDV) from the inner digest
 * H(data), for callers that hash the data themselves (streams).
 * @throws TypeError / RangeError for a wrong `digest` (must be the 64-byte H(data)) or options.
 */
export function udfBinaryFromDigest(digest: Uint8Array, opts?: UdfDigestOptions): Uint8Array {
  abytes(digest, 'digest', 64);
  const { contentType, algorithm } = checkOptions(opts);
  const tcdv = new Uint8Array(
    createHash(udfNodeHashName(algorithm)).update(utf8(contentType)).update(COLON).update(digest).digest(),
  );
  const base = algorithm === 'SHA-512' ? UdfType.Sha2 : UdfType.Sha3;
  const out = new Uint8Array(64);
  out[0] = base + _compressionLevel(tcdv);
  out.set(tcdv.subarray(0, 63), 1);
  return out;
}

const COLON = new Uint8Array([0x3a]);

/**
 * The UDF string from the inner digest H(data) (64 bytes), so that large inputs can be hashed as a
 * stream: `udfFromDigest(createHash('sha512').update(…).digest(), opts)` equals `udfDigest(data, opts)`.
 * @throws TypeError / RangeError for a wrong `digest` length or wrong options.
 */
export function udfFromDigest(digest: Uint8Array, opts?: UdfDigestOptions): string {
  const { bits } = checkOptions(opts);
  return formatTruncated(udfBinaryFromDigest(digest, opts), bits ?? UDF_DEFAULT_BITS);
}

/**
 * Content-digest UDF of `data`: type ('M' 96–100 or 'K' 80–84 with compression) ‖ TCDV, presented
 * at `bits` (default 140; a multiple of 20 in 100…440).
 * @throws TypeError if `data` is not a Uint8Array or an option has the wrong type; RangeError for
 * a `bits` value that is not a multiple of 20 in 100…440 or an unknown algorithm.
 */
export function udfDigest(data: Uint8Array, opts?: UdfDigestOptions): string {
  abytes(data, 'data');
  const { algorithm } = checkOptions(opts);
  const digest = new Uint8Array(createHash(udfNodeHashName(algorithm)).update(data).digest());
  return udfFromDigest(digest, opts);
}

/**
 * The 64-byte binary content-digest UDF of `data` ("UDFbin512": type ‖ first 63 bytes of the TCDV).
 * `opts.bits` is ignored.
 * @throws TypeError / RangeError as {@link udfDigest}.
 */
export function udfDigestBinary(data: Uint8Array, opts?: UdfDigestOptions): Uint8Array {
  abytes(data, 'data');
  const { algorithm } = checkOptions(opts);
  const digest = new Uint8Array(createHash(udfNodeHashName(algorithm)).update(data).digest());
  return udfBinaryFromDigest(digest, opts);
}

function formatTruncated(binary: Uint8Array, bits: number): string {
  const needed = Math.ceil(bits / 8);
  if (binary.length < needed) {
    throw new RangeError(`"bds" expected at least ${needed - 1} bytes for ${bits} bits, got length=${binary.length - 1}`);
  }
  return groupDashes(base32Encode(binary.subarray(0, needed), bits / 5));
}

/**
 * Presents `type ‖ bds` as a UDF string.
 * - Digest types (80–84, 96–100): truncated to `bits` (default 140).
 * - Authenticator types (0, 1): truncated to `bits` when given, otherwise presented whole (a key/PIN).
 * - Fixed-length types (32, 33, 104, 112, 144, 200): presented whole; `bits` must be omitted.
 * @throws TypeError for wrong argument types; RangeError for an unknown type, a `bits` value that
 * is not a multiple of 20 in 100…440, `bits` given for a fixed-length type, or a `bds` too short for `bits`.
 */
export function udfFormat(type: number, bds: Uint8Array, bits?: number): string {
  aint(type, 'type', 0, 255);
  abytes(bds, 'bds');
  if (!TYPE_NAMES.has(type)) throw new RangeError(`"type" expected a known UDF type byte, got ${type}`);
  const binary = concatBytes(Uint8Array.of(type), bds);
  if (FIXED_TYPES.has(type) || ((type === 0 || type === 1) && bits === undefined)) {
    if (bits !== undefined) {
      throw new RangeError(`"bits" must be omitted: a ${TYPE_NAMES.get(type) ?? ''} UDF (type ${type}) is never truncated`);
    }
    return groupDashes(base32Encode(binary));
  }
  return formatTruncated(binary, bits === undefined ? UDF_DEFAULT_BITS : abits(bits));
}

interface ParsedUdf {
  type: number;
  bytes: Uint8Array;
  /** Normalised characters (upper case, no dashes). */
  chars: string;
}

/**
 * Longest UDF string accepted by the parser (dashes included): 128 bytes of binary (an OID UDF of
 * a P-256 SPKI is 92) in groups of 4. Anything longer is not a UDF.
 */
export const UDF_MAX_STRING_LENGTH = 256;

function legacyError(reason: string): UdfError {
  return new UdfError(
    ErrorCode.UDF_LEGACY,
    `legacy UDF: ${reason}; this is a 2017/2018 format (draft-hallambaker-udf-06…-12) that meshkit does not accept`,
  );
}

function parseInternal(udf: unknown): ParsedUdf {
  astring(udf, 'udf');
  const text = (udf as string).trim();
  if (text.length === 0) throw new UdfError(ErrorCode.UDF_INVALID, 'invalid UDF: empty string');
  // 2017/2018 presentation: groups of 5 characters.
  const groups = text.split('-').map((g) => g.trim());
  if (groups.length >= 2 && groups.slice(0, -1).every((g) => g.length === 5) && (groups.at(-1)?.length ?? 0) <= 5) {
    throw legacyError('groups of 5 characters');
  }
  if (text.length > UDF_MAX_STRING_LENGTH) {
    throw new UdfError(ErrorCode.UDF_INVALID, `invalid UDF: too long (${text.length} characters, at most ${UDF_MAX_STRING_LENGTH})`);
  }
  const chars = base32Normalize(text);
  let binary: Uint8Array;
  try {
    binary = base32Decode(chars, 'udf');
  } catch (e) {
    throw new UdfError(ErrorCode.UDF_INVALID, `invalid UDF: ${(e as Error).message}`, { cause: e });
  }
  if (binary.length < 2) {
    throw new UdfError(ErrorCode.UDF_INVALID, `invalid UDF: too short (${chars.length} characters)`);
  }
  const type = binary[0] ?? 0;
  const legacyType = LEGACY_ONLY_TYPES.get(type);
  if (legacyType !== undefined) throw legacyError(`type ${type} (${legacyType})`);
  if (!TYPE_NAMES.has(type)) {
    throw new UdfError(ErrorCode.UDF_TYPE, `unknown UDF type byte ${type} (initial '${chars[0] ?? ''}')`);
  }
  if (isDigestType(type)) {
    if (chars.length % 5 === 0 && chars.length % 4 !== 0) {
      throw legacyError(`${chars.length * 5}-bit precision (25-bit steps)`);
    }
    if (chars.length * 5 < UDF_MIN_BITS) {
      throw new UdfError(
        ErrorCode.UDF_INVALID,
        `invalid UDF: a digest UDF needs at least ${UDF_MIN_BITS} bits, got ${chars.length * 5}`,
      );
    }
  }
  return { type, bytes: binary.slice(1), chars };
}

/**
 * Parses a UDF string: case-insensitive, dashes and whitespace ignored, trailing partial bits
 * dropped. `bytes` is the BDS after the type byte.
 * @throws TypeError if `udf` is not a string; UdfError ERR_UDF_LEGACY for a 2017/2018 legacy UDF,
 * ERR_UDF_TYPE for an unknown type byte, ERR_UDF_INVALID for bad characters, a too-short value or
 * a digest UDF below 100 bits.
 */
export function udfParse(udf: string): { type: number; bytes: Uint8Array } {
  const { type, bytes } = parseInternal(udf);
  return { type, bytes };
}

/**
 * The canonical presentation of a UDF string: upper case, dashes every 4 characters, same
 * characters (no re-encoding). Validates the UDF first.
 * @throws as {@link udfParse}.
 */
export function udfCanonical(udf: string): string {
  return groupDashes(parseInternal(udf).chars);
}

/**
 * True when `candidate` matches `expected`: same type byte, both at least 100 bits, and the shorter
 * presentation is a prefix of the longer (precision improvement, mesh-udf §3.1.1).
 * @throws TypeError / UdfError as {@link udfParse} when either is not a valid UDF.
 */
export function udfMatches(expected: string, candidate: string): boolean {
  const a = parseInternal(expected);
  const b = parseInternal(candidate);
  if (a.type !== b.type) return false;
  if (a.chars.length * 5 < UDF_MIN_BITS || b.chars.length * 5 < UDF_MIN_BITS) return false;
  const [short, long] = a.chars.length <= b.chars.length ? [a.chars, b.chars] : [b.chars, a.chars];
  return long.startsWith(short);
}

/**
 * A nonce UDF (type 'N' 104) of `bits` random bits (default 128; a multiple of 8 in 64…512).
 * `random`, when given, supplies the bits (its length must be bits/8).
 * @throws TypeError / RangeError for a wrong `bits` or `random`.
 */
export function udfNonce(bits = 128, random?: Uint8Array): string {
  aint(bits, 'bits', 64, 512);
  if (bits % 8 !== 0) throw new RangeError(`"bits" expected a multiple of 8, got ${bits}`);
  const data = random === undefined ? new Uint8Array(randomBytes(bits / 8)) : abytes(random, 'random', bits / 8);
  return udfFormat(UdfType.Nonce, data);
}

/**
 * An encryption-key UDF (type 'E' 32) of a symmetric key (16…64 bytes). The result is secret.
 * @throws TypeError / RangeError for a wrong `key`.
 */
export function udfEncryptionKey(key: Uint8Array): string {
  abytes(key, 'key');
  if (key.length < 16 || key.length > 64) {
    throw new RangeError(`"key" expected Uint8Array of length 16…64, got length=${key.length}`);
  }
  return udfFormat(UdfType.Encryption, key);
}

/**
 * Identifier of an E/A key UDF (mesh-udf §4.3, §6.2.2): the content-digest UDF, content type
 * `application/udf` (override with `opts.contentType`), of the UTF-8 canonical dashed string.
 * Default precision 280 bits ("twice the precision", as the reference code).
 * @throws TypeError / RangeError for wrong arguments; UdfError if `eUdf` is not a type 0, 1, 32 or 33 UDF.
 */
export function udfEncryptionKeyId(eUdf: string, bits = 280, opts?: { contentType?: string | undefined }): string {
  const parsed = parseInternal(eUdf);
  if (![0, 1, 32, 33].includes(parsed.type)) {
    throw new UdfError(ErrorCode.UDF_TYPE, `expected an encryption/authentication key UDF (type 0, 1, 32 or 33), got type ${parsed.type}`);
  }
  const contentType = opts?.contentType === undefined ? ContentType.Udf : astring(opts.contentType, 'contentType');
  return udfDigest(utf8(groupDashes(parsed.chars)), { contentType, bits: abits(bits) });
}

function hmac512(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac('sha512', key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/**
 * Authenticator (keyed) UDF (mesh-udf §5.2; digest §2.9), type 0, never compressed:
 * PRK = HMAC-SHA512(UTF8("KeyedUDFMaster"), UTF8(key)); OKM = HKDF-Expand(PRK, "KeyedUDFExpand", 64);
 * AV = HMAC-SHA512(OKM, UTF8(contentType) ‖ ':' ‖ SHA-512(data)). The key is a string (typically a
 * UDF string) and is used exactly as given.
 * @throws TypeError / RangeError for wrong arguments; UdfError if `key` is not a UDF string.
 */
export function udfKeyed(
  data: Uint8Array,
  key: string,
  opts?: { contentType?: string | undefined; bits?: number | undefined },
): string {
  abytes(data, 'data');
  parseInternal(key); // the key must be a UDF string (usually a nonce); it is hashed exactly as given
  return _udfKeyedUnchecked(data, key, opts);
}

/**
 * {@link udfKeyed} without checking that `key` is a current UDF string — for reproducing legacy
 * (udf-12) vectors whose keys are 2017-style strings. Not for new data.
 * @internal
 */
export function _udfKeyedUnchecked(
  data: Uint8Array,
  key: string,
  opts?: { contentType?: string | undefined; bits?: number | undefined },
): string {
  abytes(data, 'data');
  astring(key, 'key');
  const { contentType, bits } = checkOptions(opts === undefined ? undefined : { contentType: opts.contentType, bits: opts.bits });
  const prk = hmac512(utf8('KeyedUDFMaster'), utf8(key));
  const okm = hmac512(prk, utf8('KeyedUDFExpand'), Uint8Array.of(1)); // HKDF-Expand, one 64-byte block
  const cdv = new Uint8Array(createHash('sha512').update(data).digest());
  const av = hmac512(okm, utf8(contentType), COLON, cdv);
  wipe(prk, okm);
  return udfFormat(UdfType.HmacSha2, av, bits ?? UDF_DEFAULT_BITS);
}

// ---------------------------------------------------------------------------------------------
// PIN and witness (digest §4.5; protocol-09)

/** PIN actions of the Mesh (MeshConstants). */
export const PinAction = { Device: 'Device', Contact: 'Contact' } as const;

function bdsOf(udf: string, field: string): Uint8Array {
  astring(udf, field);
  return parseInternal(udf).bytes;
}

/**
 * SaltedPin = UDF140(0x00 ‖ HMAC-SHA512(key = BDS(pin), UTF8(action))).
 * @throws TypeError for wrong argument types; UdfError if `pin` is not a valid UDF.
 */
export function saltedPin(pin: string, action: string = PinAction.Device): string {
  astring(action, 'action');
  const key = bdsOf(pin, 'pin');
  const mac = hmac512(key, utf8(action));
  wipe(key);
  return udfFormat(UdfType.HmacSha2, mac, UDF_DEFAULT_BITS);
}

/**
 * PinId = UDF140(0x00 ‖ HMAC-SHA512(key = BDS(saltedPin), UTF8(lowercase(account)))) — the
 * MessageId of the MessagePin.
 * @throws TypeError for wrong argument types; UdfError if `saltedPinUdf` is not a valid UDF.
 */
export function pinId(saltedPinUdf: string, account: string): string {
  astring(account, 'account');
  const key = bdsOf(saltedPinUdf, 'saltedPin');
  const mac = hmac512(key, utf8(account.toLowerCase()));
  wipe(key);
  return udfFormat(UdfType.HmacSha2, mac, UDF_DEFAULT_BITS);
}

/**
 * PinWitness = HMAC-SHA512(key = BDS(saltedPin), UTF8(account) ‖ clientNonce ‖ payloadDigest).
 * @throws TypeError / RangeError for wrong arguments; UdfError if `saltedPinUdf` is not a valid UDF.
 */
export function pinWitness(saltedPinUdf: string, account: string, clientNonce: Uint8Array, payloadDigest: Uint8Array): Uint8Array {
  astring(account, 'account');
  abytes(clientNonce, 'clientNonce');
  abytes(payloadDigest, 'payloadDigest');
  const key = bdsOf(saltedPinUdf, 'saltedPin');
  const mac = hmac512(key, utf8(account), clientNonce, payloadDigest);
  wipe(key);
  return mac;
}

/**
 * Connection witness (MeshPersist.cs; digest §4.5, vector K1):
 * W = SHA512(SHA512(accountKeyUdf512 ‖ serverNonce) ‖ SHA512(deviceKeyUdf512 ‖ clientNonce)),
 * presented as the first 28 Base32 characters of W grouped by 4 (no type byte). The key inputs
 * are the 64-byte binary key UDFs ({@link udfDigestBinary} of the key data).
 * @throws TypeError / RangeError for wrong arguments.
 */
export function connectionWitness(
  accountKeyUdf512: Uint8Array,
  serverNonce: Uint8Array,
  deviceKeyUdf512: Uint8Array,
  clientNonce: Uint8Array,
): string {
  abytes(accountKeyUdf512, 'accountKeyUdf512', 64);
  abytes(serverNonce, 'serverNonce');
  abytes(deviceKeyUdf512, 'deviceKeyUdf512', 64);
  abytes(clientNonce, 'clientNonce');
  const a = createHash('sha512').update(accountKeyUdf512).update(serverNonce).digest();
  const d = createHash('sha512').update(deviceKeyUdf512).update(clientNonce).digest();
  const w = new Uint8Array(createHash('sha512').update(a).update(d).digest());
  return groupDashes(base32Encode(w, 28));
}

// ---------------------------------------------------------------------------------------------
// Seeds ('Z', digest §2.6–§2.7)

/** Key-specifier algorithm codes of a 'Z' seed (mesh-udf §4.4). */
export const SeedAlgorithm = {
  Any: 0,
  X25519: 1,
  X448: 2,
  Ed25519: 3,
  Ed448: 4,
  P256: 5,
  P384: 6,
  P521: 7,
  RSA2048: 8,
  RSA3072: 9,
  RSA4096: 10,
  MeshProfileDevice: 256,
  MeshActivationDevice: 257,
  MeshProfileAccount: 258,
  MeshActivationAccount: 259,
  MeshProfileService: 260,
  MeshActivationService: 261,
} as const;

/**
 * A seed UDF (type 'Z' 200): 200 ‖ keySpecifier (2 bytes, big-endian) ‖ random (≥ 16 bytes;
 * 32 fresh random bytes by default). The result is secret.
 * @throws TypeError / RangeError for a wrong `keySpecifier` (0…65535) or `random`.
 */
export function udfSeed(keySpecifier: number, random?: Uint8Array): string {
  aint(keySpecifier, 'keySpecifier', 0, 0xffff);
  const data = random === undefined ? new Uint8Array(randomBytes(32)) : abytes(random, 'random');
  if (data.length < 16) throw new RangeError(`"random" expected at least 16 bytes, got length=${data.length}`);
  const bds = concatBytes(Uint8Array.of(keySpecifier >> 8, keySpecifier & 0xff), data);
  const out = udfFormat(UdfType.Seed, bds);
  wipe(bds);
  if (random === undefined) wipe(data);
  return out;
}

/**
 * Derives key material from a 'Z' seed UDF (digest §2.7). IKM = the BDS (key specifier included).
 * - variant 'library' (default, (a), the reference KeySeed used by real Mesh keys):
 *   HKDF-SHA-512(IKM, salt = empty, info = keySpecifier ‖ UTF8(keyName), L).
 * - variant 'udf-example' ((b), the mesh-udf §4.4.1 worked example): HKDF-SHA-512(IKM,
 *   salt = keySpecifier, info = UTF8(keyName), L); with keyName '' this is the printed example.
 * The result is secret; wipe it after use.
 * @throws TypeError / RangeError for wrong arguments (outputBytes 1…16320); UdfError if `seedUdf`
 * is not a valid type-200 UDF with at least 2 bytes of key specifier.
 */
export function deriveSeedKey(
  seedUdf: string,
  keyName: string,
  outputBytes: number,
  opts?: { variant?: 'library' | 'udf-example' | undefined },
): Uint8Array {
  astring(keyName, 'keyName');
  aint(outputBytes, 'outputBytes', 1, 255 * 64);
  const variant = opts?.variant ?? 'library';
  if (variant !== 'library' && variant !== 'udf-example') {
    throw new RangeError(`"variant" expected 'library' or 'udf-example', got ${JSON.stringify(variant)}`);
  }
  const parsed = parseInternal(seedUdf);
  if (parsed.type !== UdfType.Seed) {
    throw new UdfError(ErrorCode.UDF_TYPE, `expected a seed UDF (type 200), got type ${parsed.type}`);
  }
  const ikm = parsed.bytes;
  if (ikm.length < 3) throw new UdfError(ErrorCode.UDF_INVALID, 'invalid seed UDF: no key material after the key specifier');
  const spec = ikm.slice(0, 2);
  const salt = variant === 'library' ? new Uint8Array(0) : spec;
  const info = variant === 'library' ? concatBytes(spec, utf8(keyName)) : utf8(keyName);
  const okm = new Uint8Array(hkdfSync('sha512', ikm, salt, info, outputBytes));
  wipe(ikm);
  return okm;
}
