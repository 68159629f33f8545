/**
 * JOSE for meshkit: strict JSON, JWS and JWE in General JSON serialization (RFC 7515 / RFC 7516),
 * with the private key always outside the core (a {@link Signer} or {@link Decrypter}).
 *
 * - {@link parseJsonStrict}: an RFC 8259 parser that rejects what `JSON.parse` lets through and
 *   what makes signed JSON ambiguous: duplicate members (at any depth), raw control characters and
 *   lone surrogates in strings, trailing garbage, nesting deeper than 64.
 * - {@link signJws}: builds the signing input `ASCII(b64u(protected) '.' b64u(payload))` itself and
 *   asks each signer for the raw signature (EdDSA: 64/114 bytes; ES256: r‖s, 64 bytes). The key
 *   identifier (`kid` = key UDF) is ALWAYS in the protected header, so the key binding is signed.
 * - {@link verifyJws}: strict shape checks, `kid` must be protected and must equal the identifier of
 *   the key the resolver returns, algorithm/curve confusion is refused, and the signature is
 *   checked over the received bytes only (never re-serialized).
 * - {@link encryptJwe} / {@link decryptJwe}: `ECDH-ES+A256KW` (X25519, X448, P-256) + `A256GCM`,
 *   recipient `kid` = key UDF; {@link encryptJweDirect} / {@link decryptJweDirect}: `dir` + `A256GCM`
 *   with a 32-byte symmetric key (used by offline escrow).
 *
 * Library choice (deliberate, measured): the cryptographic checks are OpenSSL's through
 * `node:crypto` — one-shot `verify` for Ed25519, Ed448 and ES256, and ECDH, the Concat KDF of
 * RFC 7518 §4.6.2, AES key wrap (RFC 3394) and AES-GCM for JWE — one path for all curves. `jose` 6
 * refuses Ed448 and X448, and its WebCrypto path costs ~30 µs per verification here (0.70× of
 * `node:crypto` alone), which would put verifying a Personal Profile listing 1,000 devices below
 * the 0.8× aim. `jose` is the independent oracle instead: test/core/jose.test.ts proves both
 * directions of interoperability with jose 6 (Ed25519, P-256, X25519) and jose 5 (Ed448, X448).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import {
  abytes,
  aobject,
  astring,
  b64u,
  concatBytes,
  describe,
  fromB64u,
  fromUtf8,
  utf8,
  wipe,
} from './bytes.js';
import { ErrorCode, JoseError, KeyError, type ErrorCodeValue } from './errors.js';
import {
  keyId,
  publicKeyFromJwk,
  publicKeyObject,
  publicKeyToJwk,
  signatureAlgorithmFor,
  type PublicKey,
} from './keys.js';
import type { Curve, Decrypter, PublicJwk, SignatureAlgorithm, Signer } from './signer.js';

// ---------------------------------------------------------------------------------------------
// Strict JSON
// ---------------------------------------------------------------------------------------------

/** Maximum nesting depth of arrays and objects accepted by {@link parseJsonStrict}. */
export const JSON_MAX_DEPTH = 64;

const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
/** A run of string characters that need no attention (no quote, backslash, control character or surrogate). */
// eslint-disable-next-line no-control-regex -- the point is to find control characters
const PLAIN_RUN_RE = /[^"\\\u0000-\u001f\ud800-\udfff]*/y;

class StrictJsonParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  fail(what: string, at = this.pos): never {
    throw new JoseError(ErrorCode.JSON_INVALID, `invalid JSON at position ${at}: ${what}`);
  }

  parse(): unknown {
    this.ws();
    const value = this.value(0);
    this.ws();
    if (this.pos !== this.text.length) this.fail('unexpected data after the JSON value');
    return value;
  }

  private ws(): void {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  private value(depth: number): unknown {
    const t = this.text;
    const c = t.charCodeAt(this.pos);
    switch (c) {
      case 0x22: // "
        return this.string();
      case 0x7b: // {
        return this.object(depth + 1);
      case 0x5b: // [
        return this.array(depth + 1);
      case 0x74: // t
        return this.literal('true', true);
      case 0x66: // f
        return this.literal('false', false);
      case 0x6e: // n
        return this.literal('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        if (Number.isNaN(c)) this.fail('unexpected end of input');
        return this.fail(`unexpected character ${JSON.stringify(t[this.pos])}`);
    }
  }

  private literal<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('invalid literal');
    this.pos += word.length;
    return value;
  }

  private number(): number {
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.text);
    if (m === null || m[0] === '-') this.fail('invalid number');
    this.pos += m[0].length;
    const n = Number(m[0]);
    if (!Number.isFinite(n)) this.fail('number out of range', this.pos - m[0].length);
    return n;
  }

  private string(): string {
    const t = this.text;
    let p = this.pos + 1; // after the opening quote
    let start = p;
    let out = '';
    for (;;) {
      // Skip plain characters with the regex engine (base64url payloads are long plain runs).
      PLAIN_RUN_RE.lastIndex = p;
      PLAIN_RUN_RE.test(t);
      p = PLAIN_RUN_RE.lastIndex;
      const c = t.charCodeAt(p);
      if (c === 0x22) {
        out += t.slice(start, p);
        this.pos = p + 1;
        return out;
      }
      if (c === 0x5c) {
        out += t.slice(start, p);
        p = this.escape(p, (s) => (out += s));
        start = p;
        continue;
      }
      if (c < 0x20 || Number.isNaN(c)) {
        if (Number.isNaN(c)) this.fail('unterminated string', p);
        this.fail(`raw control character U+${c.toString(16).padStart(4, '0')} in string`, p);
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        if (c <= 0xdbff) {
          const d = t.charCodeAt(p + 1);
          if (d >= 0xdc00 && d <= 0xdfff) {
            p += 2;
            continue;
          }
        }
        this.fail('lone surrogate in string', p);
      }
      p++;
    }
  }

  /** Decodes the escape at `p` (pointing at the backslash); returns the position after it. */
  private escape(p: number, emit: (s: string) => void): number {
    const t = this.text;
    const e = t[p + 1];
    switch (e) {
      case '"': emit('"'); return p + 2;
      case '\\': emit('\\'); return p + 2;
      case '/': emit('/'); return p + 2;
      case 'b': emit('\b'); return p + 2;
      case 'f': emit('\f'); return p + 2;
      case 'n': emit('\n'); return p + 2;
      case 'r': emit('\r'); return p + 2;
      case 't': emit('\t'); return p + 2;
      case 'u': {
        const hi = this.hex4(p + 2);
        if (hi >= 0xd800 && hi <= 0xdbff) {
          if (t[p + 6] === '\\' && t[p + 7] === 'u') {
            const lo = this.hex4(p + 8);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
              emit(String.fromCharCode(hi, lo));
              return p + 12;
            }
          }
          this.fail('lone surrogate escape in string', p);
        }
        if (hi >= 0xdc00 && hi <= 0xdfff) this.fail('lone surrogate escape in string', p);
        emit(String.fromCharCode(hi));
        return p + 6;
      }
      default:
        return this.fail('invalid escape sequence', p);
    }
  }

  private hex4(p: number): number {
    const s = this.text.slice(p, p + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(s)) this.fail('invalid \\u escape', p);
    return parseInt(s, 16);
  }

  private object(depth: number): Record<string, unknown> {
    if (depth > JSON_MAX_DEPTH) this.fail(`nesting deeper than ${JSON_MAX_DEPTH}`);
    const t = this.text;
    const obj: Record<string, unknown> = {};
    this.pos++; // {
    this.ws();
    if (t.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return obj;
    }
    for (;;) {
      if (t.charCodeAt(this.pos) !== 0x22) this.fail('expected a member name');
      const keyAt = this.pos;
      const key = this.string();
      this.ws();
      if (t.charCodeAt(this.pos) !== 0x3a) this.fail("expected ':'");
      this.pos++;
      this.ws();
      const v = this.value(depth);
      if (Object.prototype.hasOwnProperty.call(obj, key)) this.fail(`duplicate member ${JSON.stringify(key)}`, keyAt);
      if (key === '__proto__') Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
      else obj[key] = v;
      this.ws();
      const c = t.charCodeAt(this.pos);
      if (c === 0x2c) {
        this.pos++;
        this.ws();
        continue;
      }
      if (c === 0x7d) {
        this.pos++;
        return obj;
      }
      this.fail("expected ',' or '}'");
    }
  }

  private array(depth: number): unknown[] {
    if (depth > JSON_MAX_DEPTH) this.fail(`nesting deeper than ${JSON_MAX_DEPTH}`);
    const t = this.text;
    const arr: unknown[] = [];
    this.pos++; // [
    this.ws();
    if (t.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.value(depth));
      this.ws();
      const c = t.charCodeAt(this.pos);
      if (c === 0x2c) {
        this.pos++;
        this.ws();
        continue;
      }
      if (c === 0x5d) {
        this.pos++;
        return arr;
      }
      this.fail("expected ',' or ']'");
    }
  }
}

/**
 * Parses RFC 8259 JSON strictly.
 *
 * Rejects duplicate object members at any depth, raw control characters (U+0000–U+001F) and lone
 * surrogates (raw or escaped) in strings, anything after the value, and nesting deeper than
 * {@link JSON_MAX_DEPTH}. A `__proto__` member becomes an own property (as with `JSON.parse`).
 *
 * @throws TypeError if `text` is not a string.
 * @throws JoseError `ERR_JSON_INVALID`, naming the position, for any malformed input.
 */
export function parseJsonStrict(text: string): unknown {
  astring(text, 'text');
  return new StrictJsonParser(text).parse();
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

function joseFail(code: ErrorCodeValue, message: string, cause?: unknown): never {
  throw new JoseError(code, message, cause === undefined ? undefined : { cause });
}

/** Accepts a JSON string, UTF-8 bytes or an already parsed value; returns a plain object. */
function loadJson(input: unknown, field: string, code: ErrorCodeValue): Record<string, unknown> {
  let value: unknown = input;
  if (input instanceof Uint8Array) {
    let text: string;
    try {
      text = fromUtf8(input);
    } catch (e) {
      return joseFail(code, `"${field}" is not valid UTF-8`, e);
    }
    value = parseJsonStrict(text);
  } else if (typeof input === 'string') {
    value = parseJsonStrict(input);
  } else if (typeof input !== 'object' || input === null) {
    throw new TypeError(`"${field}" expected a JSON string, bytes or an object, got ${describe(input)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return joseFail(code, `"${field}" is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function decodeB64u(value: unknown, field: string, code: ErrorCodeValue): Uint8Array {
  if (typeof value !== 'string') return joseFail(code, `"${field}" must be a base64url string`);
  try {
    return fromB64u(value, field);
  } catch (e) {
    return joseFail(code, `"${field}" is not valid base64url`, e);
  }
}

/** Decodes a base64url protected header: strict UTF-8, strict JSON, must be an object. */
function decodeProtectedHeader(value: unknown, field: string, code: ErrorCodeValue): Record<string, unknown> {
  const bytes = decodeB64u(value, field, code);
  let text: string;
  try {
    text = fromUtf8(bytes);
  } catch (e) {
    return joseFail(code, `"${field}" is not valid UTF-8`, e);
  }
  let header: unknown;
  try {
    header = parseJsonStrict(text);
  } catch (e) {
    return joseFail(code, `"${field}" is not strict JSON: ${(e as Error).message}`, e);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    return joseFail(code, `"${field}" is not a JSON object`);
  }
  return header as Record<string, unknown>;
}

function isPublicKey(value: unknown): value is PublicKey {
  return typeof value === 'object' && value !== null && 'curve' in value && 'raw' in value
    && (value as { raw: unknown }).raw instanceof Uint8Array;
}

function toPublicKey(value: unknown): PublicKey {
  if (isPublicKey(value)) return value;
  return publicKeyFromJwk(value);
}

/** Signature length in bytes for a signing curve. */
function signatureLength(curve: Curve): number | undefined {
  switch (curve) {
    case 'Ed25519': return 64;
    case 'Ed448': return 114;
    case 'P-256': return 64;
    default: return undefined;
  }
}

function algorithmFor(curve: Curve): SignatureAlgorithm | undefined {
  if (curve !== 'Ed25519' && curve !== 'Ed448' && curve !== 'P-256') return undefined;
  return signatureAlgorithmFor(curve);
}

// ---------------------------------------------------------------------------------------------
// JWS
// ---------------------------------------------------------------------------------------------

/** A JWS in General JSON serialization (RFC 7515 §7.2.1). */
export interface JwsGeneral {
  payload: string;
  signatures: Array<{ protected: string; header?: Record<string, unknown>; signature: string }>;
}

/** Finds the public key for a `kid`; `undefined` means "not a key I know" (the signature is skipped). */
export type KeyResolver = (
  kid: string,
  header: Record<string, unknown>,
) => PublicJwk | PublicKey | undefined | Promise<PublicJwk | PublicKey | undefined>;

/** The result of a successful {@link verifyJws}. */
export interface VerifiedJws {
  /** The payload bytes exactly as received. */
  payload: Uint8Array;
  protectedHeader: Record<string, unknown>;
  /** The protected `kid`, equal to `keyId(key)`. */
  keyId: string;
  key: PublicKey;
}

const SIGNATURE_ALGORITHMS: readonly SignatureAlgorithm[] = ['EdDSA', 'ES256'];

/**
 * The JWS signing input `ASCII(protectedB64u '.' payloadB64u)` (RFC 7515 §5.1 step 8).
 *
 * @throws TypeError if an argument is not a string.
 */
export function jwsSigningInput(protectedB64u: string, payloadB64u: string): Uint8Array {
  astring(protectedB64u, 'protectedB64u');
  astring(payloadB64u, 'payloadB64u');
  return utf8(`${protectedB64u}.${payloadB64u}`);
}

/**
 * Checks one raw JWS signature value over a JWS signing input (`b64u(protected) '.' b64u(payload)`)
 * with `key` for `algorithm`, refusing algorithm/curve confusion and wrong signature lengths
 * (returns false for those). The check is OpenSSL's through `node:crypto` one-shot `verify`
 * (EdDSA: Ed25519 and Ed448; ES256: SHA-256 with IEEE P1363 r‖s).
 *
 * @throws TypeError for wrong argument types.
 */
export async function verifySignatureValue(
  key: PublicKey,
  algorithm: SignatureAlgorithm,
  signingInput: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  return verifySignatureValueSync(key, algorithm, signingInput, signature);
}

function verifySignatureValueSync(key: PublicKey, algorithm: SignatureAlgorithm, signingInput: Uint8Array, signature: Uint8Array): boolean {
  if (!isPublicKey(key)) throw new TypeError(`"key" expected a PublicKey, got ${describe(key)}`);
  abytes(signingInput, 'signingInput');
  abytes(signature, 'signature');
  if (algorithmFor(key.curve) !== algorithm) return false;
  if (signature.length !== signatureLength(key.curve)) return false;
  const keyObject = publicKeyObject(key);
  if (algorithm === 'ES256') return nodeVerify('sha256', signingInput, { key: keyObject, dsaEncoding: 'ieee-p1363' }, signature);
  return nodeVerify(null, signingInput, keyObject, signature);
}

/** The signing input as bytes; base64url is ASCII, so latin1 is an exact and fast encoding. */
function signingInputBytes(protectedB64u: string, payloadB64u: string): Uint8Array {
  return Buffer.from(`${protectedB64u}.${payloadB64u}`, 'latin1');
}

/**
 * Signs `payload` with each signer, giving a JWS in General JSON serialization.
 *
 * Each signature's protected header is `{"alg": signer.algorithm, "kid": signer.keyId, "cty"?, "typ"?}`
 * (the `kid` is never unprotected). The signature returned by each signer is checked for length
 * and verified against the signer's public JWK, whose key identifier must equal `signer.keyId`.
 *
 * @throws TypeError / RangeError for bad arguments (no signers, non-string cty/typ).
 * @throws KeyError `ERR_KEY_INVALID` if a signer's public key does not match its algorithm or keyId.
 * @throws JoseError `ERR_JWS_SIGNATURE_VERIFICATION_FAILED` if a signer returns a bad signature.
 */
export async function signJws(
  payload: Uint8Array,
  signers: Signer[],
  opts: { cty?: string; typ?: string } = {},
): Promise<JwsGeneral> {
  abytes(payload, 'payload');
  if (!Array.isArray(signers)) throw new TypeError(`"signers" expected an array, got ${describe(signers)}`);
  if (signers.length === 0) throw new RangeError('"signers" expected at least one signer');
  aobject(opts, 'opts');
  if (opts.cty !== undefined) astring(opts.cty, 'opts.cty');
  if (opts.typ !== undefined) astring(opts.typ, 'opts.typ');
  const payloadB64 = b64u(payload);
  const signatures: JwsGeneral['signatures'] = [];
  for (const [i, signer] of signers.entries()) {
    aobject(signer, `signers[${i}]`);
    const kid = astring(signer.keyId, `signers[${i}].keyId`);
    if (kid.length === 0) throw new RangeError(`"signers[${i}].keyId" must not be empty`);
    if (!SIGNATURE_ALGORITHMS.includes(signer.algorithm)) {
      throw new RangeError(`"signers[${i}].algorithm" expected EdDSA or ES256, got ${String(signer.algorithm)}`);
    }
    const key = publicKeyFromJwk(signer.publicJwk);
    if (algorithmFor(key.curve) !== signer.algorithm) {
      throw new KeyError(ErrorCode.KEY_INVALID, `signers[${i}]: algorithm ${signer.algorithm} does not fit a ${key.curve} key`);
    }
    if (keyId(key) !== kid) {
      throw new KeyError(ErrorCode.KEY_INVALID, `signers[${i}]: keyId ${kid} is not the identifier of its public key`);
    }
    const header: Record<string, string> = { alg: signer.algorithm, kid };
    if (opts.cty !== undefined) header.cty = opts.cty;
    if (opts.typ !== undefined) header.typ = opts.typ;
    const protectedB64 = b64u(utf8(JSON.stringify(header)));
    const input = jwsSigningInput(protectedB64, payloadB64);
    const sig: unknown = await signer.sign(input);
    if (!(sig instanceof Uint8Array) || sig.length !== signatureLength(key.curve)) {
      joseFail(ErrorCode.JWS_SIGNATURE, `signers[${i}] returned ${describe(sig)}, expected a ${String(signatureLength(key.curve))}-byte ${key.curve} signature`);
    }
    if (!(await verifySignatureValue(key, signer.algorithm, input, sig))) {
      joseFail(ErrorCode.JWS_SIGNATURE, `signers[${i}] returned a signature that does not verify under its public key`);
    }
    signatures.push({ protected: protectedB64, signature: b64u(sig) });
  }
  return { payload: payloadB64, signatures };
}

interface CheckedSignature {
  index: number;
  protectedB64: string;
  header: Record<string, unknown>;
  kid: string;
  alg: SignatureAlgorithm;
  signature: Uint8Array;
}

const FORBIDDEN_UNPROTECTED = ['alg', 'kid', 'crit', 'b64', 'jwk', 'jku', 'x5u', 'x5c'];

function checkJwsShape(
  jws: unknown,
  algorithms: readonly SignatureAlgorithm[],
): { payloadB64: string; payload: Uint8Array; signatures: CheckedSignature[] } {
  const obj = loadJson(jws, 'jws', ErrorCode.JWS_INVALID);
  const bad = (msg: string): never => joseFail(ErrorCode.JWS_INVALID, msg);
  if ('signature' in obj || 'protected' in obj) bad('JWS must be in General JSON serialization (no top-level "signature"/"protected")');
  for (const k of Object.keys(obj)) if (k !== 'payload' && k !== 'signatures') bad(`unexpected JWS member "${k}"`);
  if (typeof obj.payload !== 'string') bad('JWS "payload" must be a string');
  const payloadB64 = obj.payload as string;
  const payload = decodeB64u(payloadB64, 'payload', ErrorCode.JWS_INVALID);
  if (!Array.isArray(obj.signatures) || obj.signatures.length === 0) bad('JWS "signatures" must be a non-empty array');
  const signatures: CheckedSignature[] = [];
  for (const [index, entry] of (obj.signatures as unknown[]).entries()) {
    const at = `signatures[${index}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) bad(`${at} must be an object`);
    const s = entry as Record<string, unknown>;
    for (const k of Object.keys(s)) if (k !== 'protected' && k !== 'header' && k !== 'signature') bad(`${at} has unexpected member "${k}"`);
    if (typeof s.protected !== 'string' || s.protected.length === 0) bad(`${at}.protected must be present`);
    const protectedB64 = s.protected as string;
    const header = decodeProtectedHeader(protectedB64, `${at}.protected`, ErrorCode.JWS_INVALID);
    if (s.header !== undefined) {
      if (typeof s.header !== 'object' || s.header === null || Array.isArray(s.header)) bad(`${at}.header must be an object`);
      for (const k of Object.keys(s.header as object)) {
        if (FORBIDDEN_UNPROTECTED.includes(k)) bad(`${at}.header must not carry "${k}" (it must be protected)`);
        if (k in header) bad(`${at}: header parameter "${k}" is both protected and unprotected`);
      }
    }
    const alg = header.alg;
    if (typeof alg !== 'string') bad(`${at}: protected "alg" missing`);
    if (alg === 'none') bad(`${at}: "alg":"none" is never accepted`);
    if (!algorithms.includes(alg as SignatureAlgorithm)) bad(`${at}: algorithm ${String(alg)} not allowed`);
    if (typeof header.kid !== 'string' || header.kid.length === 0) bad(`${at}: protected "kid" missing`);
    if (header.crit !== undefined) bad(`${at}: unknown critical header parameters ${JSON.stringify(header.crit)}`);
    if (header.b64 !== undefined && header.b64 !== true) bad(`${at}: "b64" other than true is not supported`);
    const signature = decodeB64u(s.signature, `${at}.signature`, ErrorCode.JWS_INVALID);
    signatures.push({ index, protectedB64, header, kid: header.kid as string, alg: alg as SignatureAlgorithm, signature });
  }
  return { payloadB64, payload, signatures };
}

function verifyOne(
  s: CheckedSignature,
  payloadB64: string,
  payload: Uint8Array,
  resolved: PublicJwk | PublicKey,
): VerifiedJws {
  const at = `signatures[${s.index}]`;
  let key: PublicKey;
  try {
    key = toPublicKey(resolved);
  } catch (e) {
    return joseFail(ErrorCode.JWS_INVALID, `${at}: the resolver returned an invalid key`, e);
  }
  if (keyId(key) !== s.kid) joseFail(ErrorCode.JWS_INVALID, `${at}: the resolved key is not the key named by kid ${s.kid}`);
  const expected = algorithmFor(key.curve);
  if (expected === undefined) joseFail(ErrorCode.JWS_INVALID, `${at}: a ${key.curve} key cannot verify signatures`);
  if (expected !== s.alg) joseFail(ErrorCode.JWS_INVALID, `${at}: algorithm ${s.alg} does not fit a ${key.curve} key`);
  if (s.signature.length !== signatureLength(key.curve)) {
    joseFail(ErrorCode.JWS_SIGNATURE, `${at}: signature is ${s.signature.length} bytes, expected ${String(signatureLength(key.curve))} for ${key.curve}`);
  }
  const ok = verifySignatureValueSync(key, s.alg, signingInputBytes(s.protectedB64, payloadB64), s.signature);
  if (!ok) joseFail(ErrorCode.JWS_SIGNATURE, `${at}: signature by ${s.kid} does not verify`);
  return { payload, protectedHeader: s.header, keyId: s.kid, key };
}

function checkAlgorithms(opts: { algorithms?: SignatureAlgorithm[] }): readonly SignatureAlgorithm[] {
  aobject(opts, 'opts');
  const algorithms = opts.algorithms ?? SIGNATURE_ALGORITHMS;
  if (!Array.isArray(algorithms)) throw new TypeError('"opts.algorithms" expected an array');
  for (const a of algorithms) {
    if (!SIGNATURE_ALGORITHMS.includes(a)) throw new RangeError(`"opts.algorithms" contains unsupported ${String(a)}`);
  }
  return algorithms;
}

/**
 * Verifies a JWS (General JSON serialization; a string, UTF-8 bytes or a parsed object).
 *
 * Signatures are tried in order; the first whose protected `kid` the resolver knows is verified
 * (a resolver returning `undefined` skips that signature). The resolved key's identifier must
 * equal the `kid`, its curve must fit `alg` (EdDSA: Ed25519/Ed448; ES256: P-256), and the
 * signature is checked over the received bytes.
 *
 * @throws TypeError for a `jws` of the wrong type or a resolver that is not a function.
 * @throws JoseError `ERR_JSON_INVALID` (not strict JSON), `ERR_JWS_INVALID` (malformed, unprotected
 *   kid/alg, alg none, unknown crit, b64:false, kid/key mismatch, alg/key confusion, no signature by
 *   a known key), `ERR_JWS_SIGNATURE_VERIFICATION_FAILED` (the known key's signature fails).
 */
export async function verifyJws(
  jws: unknown,
  resolve: KeyResolver,
  opts: { algorithms?: SignatureAlgorithm[] } = {},
): Promise<VerifiedJws> {
  if (typeof resolve !== 'function') throw new TypeError(`"resolve" expected a function, got ${describe(resolve)}`);
  const algorithms = checkAlgorithms(opts);
  const { payloadB64, payload, signatures } = checkJwsShape(jws, algorithms);
  for (const s of signatures) {
    const resolved = await resolve(s.kid, s.header);
    if (resolved === undefined) continue;
    return verifyOne(s, payloadB64, payload, resolved);
  }
  return joseFail(ErrorCode.JWS_INVALID, 'no signature by a known key');
}

/**
 * {@link verifyJws} for a resolver that answers synchronously (the key is already at hand, as when
 * a profile names its own signature key): the same checks, without a promise per signature.
 *
 * @throws as {@link verifyJws}.
 */
export function verifyJwsSync(
  jws: unknown,
  resolve: (kid: string, header: Record<string, unknown>) => PublicJwk | PublicKey | undefined,
  opts: { algorithms?: SignatureAlgorithm[] } = {},
): VerifiedJws {
  if (typeof resolve !== 'function') throw new TypeError(`"resolve" expected a function, got ${describe(resolve)}`);
  const algorithms = checkAlgorithms(opts);
  const { payloadB64, payload, signatures } = checkJwsShape(jws, algorithms);
  for (const s of signatures) {
    const resolved = resolve(s.kid, s.header);
    if (resolved === undefined) continue;
    return verifyOne(s, payloadB64, payload, resolved);
  }
  return joseFail(ErrorCode.JWS_INVALID, 'no signature by a known key');
}

/**
 * Verifies every signature of a JWS; each `kid` must be known to the resolver.
 *
 * @throws as {@link verifyJws}; `ERR_JWS_INVALID` if any signature's key is unknown.
 */
export async function verifyJwsAll(
  jws: unknown,
  resolve: KeyResolver,
  opts: { algorithms?: SignatureAlgorithm[] } = {},
): Promise<VerifiedJws[]> {
  if (typeof resolve !== 'function') throw new TypeError(`"resolve" expected a function, got ${describe(resolve)}`);
  const algorithms = checkAlgorithms(opts);
  const { payloadB64, payload, signatures } = checkJwsShape(jws, algorithms);
  const out: VerifiedJws[] = [];
  for (const s of signatures) {
    const resolved = await resolve(s.kid, s.header);
    if (resolved === undefined) joseFail(ErrorCode.JWS_INVALID, `signatures[${s.index}]: unknown key ${s.kid}`);
    out.push(await verifyOne(s, payloadB64, payload, resolved));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JWE
// ---------------------------------------------------------------------------------------------

/** A JWE in General JSON serialization (RFC 7516 §7.2.1), as {@link encryptJwe} writes it. */
export interface JweGeneral {
  protected: string;
  unprotected?: object;
  recipients: Array<{ header: Record<string, unknown>; encrypted_key: string }>;
  iv: string;
  ciphertext: string;
  tag: string;
  aad?: string;
}

/** A `dir` JWE in General JSON serialization: one recipient and no encrypted key (RFC 7516 §7.2.1). */
export interface JweGeneralDirect {
  protected: string;
  recipients: Array<Record<string, never>>;
  iv: string;
  ciphertext: string;
  tag: string;
  aad?: string;
}

const KEY_AGREEMENT_ALG = 'ECDH-ES+A256KW';
const CONTENT_ENC = 'A256GCM';
const AES_KW_IV = Buffer.from('A6A6A6A6A6A6A6A6', 'hex');

/** Shared-secret length for each key-agreement curve. */
const Z_LENGTH: Partial<Record<Curve, number>> = { X25519: 32, X448: 56, 'P-256': 32 };

function u32be(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

function lengthPrefixed(data: Uint8Array): Uint8Array {
  return concatBytes(u32be(data.length), data);
}

/**
 * Concat KDF of RFC 7518 §4.6.2 (NIST SP 800-56A §5.8.1) with SHA-256, producing a 256-bit key:
 * SHA-256(00000001 ‖ Z ‖ len(alg) ‖ alg ‖ len(apu) ‖ apu ‖ len(apv) ‖ apv ‖ 00000100).
 *
 * @throws TypeError for wrong argument types.
 */
export function concatKdf(z: Uint8Array, algorithmId: string, apu: Uint8Array = new Uint8Array(0), apv: Uint8Array = new Uint8Array(0)): Uint8Array {
  abytes(z, 'z');
  astring(algorithmId, 'algorithmId');
  abytes(apu, 'apu');
  abytes(apv, 'apv');
  const h = createHash('sha256');
  h.update(u32be(1));
  h.update(z);
  h.update(lengthPrefixed(utf8(algorithmId)));
  h.update(lengthPrefixed(apu));
  h.update(lengthPrefixed(apv));
  h.update(u32be(256));
  return new Uint8Array(h.digest());
}

function aesKeyWrap(kek: Uint8Array, cek: Uint8Array): Uint8Array {
  const c = createCipheriv('id-aes256-wrap', kek, AES_KW_IV);
  return new Uint8Array(Buffer.concat([c.update(cek), c.final()]));
}

function aesKeyUnwrap(kek: Uint8Array, wrapped: Uint8Array): Uint8Array {
  const d = createDecipheriv('id-aes256-wrap', kek, AES_KW_IV);
  return new Uint8Array(Buffer.concat([d.update(wrapped), d.final()]));
}

function gcmAad(protectedB64: string, aadB64: string | undefined): Uint8Array {
  return utf8(aadB64 === undefined ? protectedB64 : `${protectedB64}.${aadB64}`);
}

function gcmEncrypt(cek: Uint8Array, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): { ciphertext: Uint8Array; tag: Uint8Array } {
  const c = createCipheriv('aes-256-gcm', cek, iv, { authTagLength: 16 });
  c.setAAD(aad);
  const ciphertext = new Uint8Array(Buffer.concat([c.update(plaintext), c.final()]));
  return { ciphertext, tag: new Uint8Array(c.getAuthTag()) };
}

function gcmDecrypt(cek: Uint8Array, iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): Uint8Array {
  const d = createDecipheriv('aes-256-gcm', cek, iv, { authTagLength: 16 });
  d.setAAD(aad);
  d.setAuthTag(tag);
  return new Uint8Array(Buffer.concat([d.update(ciphertext), d.final()]));
}

function ephemeralKeyPair(curve: Curve): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (curve) {
    case 'X25519': return generateKeyPairSync('x25519');
    case 'X448': return generateKeyPairSync('x448');
    case 'P-256': return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    default: throw new KeyError(ErrorCode.KEY_INVALID, `a ${curve} key cannot receive ECDH-ES`);
  }
}

function epkJwk(publicKey: KeyObject): Record<string, string> {
  const j = publicKey.export({ format: 'jwk' });
  const out: Record<string, string> = { kty: String(j.kty), crv: String(j.crv), x: String(j.x) };
  if (j.y !== undefined) out.y = j.y;
  return out;
}

function protectedB64For(header: Record<string, unknown>): string {
  return b64u(utf8(JSON.stringify(header)));
}

/**
 * Encrypts `plaintext` to each recipient key: JWE General JSON, `enc` A256GCM, per recipient
 * `alg` ECDH-ES+A256KW with a fresh ephemeral key of the recipient's curve (X25519, X448, P-256),
 * recipient header `{alg, kid: keyId(recipient), epk}`; shared protected header `{enc, cty?}`.
 *
 * @throws TypeError / RangeError for bad arguments (no recipients, non-bytes plaintext or aad).
 * @throws KeyError `ERR_KEY_INVALID` for a recipient key that is malformed or not an ECDH curve.
 */
export async function encryptJwe(
  plaintext: Uint8Array,
  recipients: Array<PublicJwk | PublicKey>,
  opts: { cty?: string; aad?: Uint8Array } = {},
): Promise<JweGeneral> {
  abytes(plaintext, 'plaintext');
  if (!Array.isArray(recipients)) throw new TypeError(`"recipients" expected an array, got ${describe(recipients)}`);
  if (recipients.length === 0) throw new RangeError('"recipients" expected at least one recipient');
  aobject(opts, 'opts');
  if (opts.cty !== undefined) astring(opts.cty, 'opts.cty');
  if (opts.aad !== undefined) abytes(opts.aad, 'opts.aad');
  const keys = recipients.map((r, i) => {
    const k = toPublicKey(r);
    if (Z_LENGTH[k.curve] === undefined) throw new KeyError(ErrorCode.KEY_INVALID, `recipients[${i}]: a ${k.curve} key cannot receive ECDH-ES`);
    return k;
  });
  const header: Record<string, string> = { enc: CONTENT_ENC };
  if (opts.cty !== undefined) header.cty = opts.cty;
  const protectedB64 = protectedB64For(header);
  const cek = new Uint8Array(randomBytes(32));
  try {
    const out: JweGeneral['recipients'] = [];
    for (const key of keys) {
      const eph = ephemeralKeyPair(key.curve);
      const z = new Uint8Array(diffieHellman({ privateKey: eph.privateKey, publicKey: publicKeyObject(key) }));
      const kek = concatKdf(z, KEY_AGREEMENT_ALG);
      try {
        out.push({
          header: { alg: KEY_AGREEMENT_ALG, kid: keyId(key), epk: epkJwk(eph.publicKey) },
          encrypted_key: b64u(aesKeyWrap(kek, cek)),
        });
      } finally {
        wipe(z, kek);
      }
    }
    const iv = new Uint8Array(randomBytes(12));
    const aadB64 = opts.aad === undefined ? undefined : b64u(opts.aad);
    const { ciphertext, tag } = gcmEncrypt(cek, iv, gcmAad(protectedB64, aadB64), plaintext);
    const jwe: JweGeneral = { protected: protectedB64, recipients: out, iv: b64u(iv), ciphertext: b64u(ciphertext), tag: b64u(tag) };
    if (aadB64 !== undefined) jwe.aad = aadB64;
    return jwe;
  } finally {
    wipe(cek);
  }
}

interface ParsedJwe {
  protectedB64: string;
  protectedHeader: Record<string, unknown>;
  unprotected: Record<string, unknown>;
  recipients: Array<{ header: Record<string, unknown>; encryptedKey: Uint8Array | undefined }>;
  iv: Uint8Array;
  ciphertext: Uint8Array;
  tag: Uint8Array;
  aadB64: string | undefined;
}

function parseJwe(jwe: unknown): ParsedJwe {
  const obj = loadJson(jwe, 'jwe', ErrorCode.JWE_INVALID);
  const bad = (msg: string): never => joseFail(ErrorCode.JWE_INVALID, msg);
  const allowed = ['protected', 'unprotected', 'recipients', 'iv', 'ciphertext', 'tag', 'aad'];
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) bad(`unexpected JWE member "${k}" (General JSON serialization expected)`);
  if (typeof obj.protected !== 'string') bad('JWE "protected" must be present');
  const protectedB64 = obj.protected as string;
  const protectedHeader = decodeProtectedHeader(protectedB64, 'protected', ErrorCode.JWE_INVALID);
  let unprotected: Record<string, unknown> = {};
  if (obj.unprotected !== undefined) {
    if (typeof obj.unprotected !== 'object' || obj.unprotected === null || Array.isArray(obj.unprotected)) bad('JWE "unprotected" must be an object');
    unprotected = obj.unprotected as Record<string, unknown>;
  }
  if (!Array.isArray(obj.recipients) || obj.recipients.length === 0) bad('JWE "recipients" must be a non-empty array');
  const recipients = (obj.recipients as unknown[]).map((r, i) => {
    if (typeof r !== 'object' || r === null || Array.isArray(r)) bad(`recipients[${i}] must be an object`);
    const rec = r as Record<string, unknown>;
    for (const k of Object.keys(rec)) if (k !== 'header' && k !== 'encrypted_key') bad(`recipients[${i}] has unexpected member "${k}"`);
    let header: Record<string, unknown> = {};
    if (rec.header !== undefined) {
      if (typeof rec.header !== 'object' || rec.header === null || Array.isArray(rec.header)) bad(`recipients[${i}].header must be an object`);
      header = rec.header as Record<string, unknown>;
    }
    const encryptedKey = rec.encrypted_key === undefined ? undefined : decodeB64u(rec.encrypted_key, `recipients[${i}].encrypted_key`, ErrorCode.JWE_INVALID);
    return { header, encryptedKey };
  });
  const iv = decodeB64u(obj.iv, 'iv', ErrorCode.JWE_INVALID);
  const ciphertext = decodeB64u(obj.ciphertext, 'ciphertext', ErrorCode.JWE_INVALID);
  const tag = decodeB64u(obj.tag, 'tag', ErrorCode.JWE_INVALID);
  let aadB64: string | undefined;
  if (obj.aad !== undefined) {
    decodeB64u(obj.aad, 'aad', ErrorCode.JWE_INVALID);
    aadB64 = obj.aad as string;
  }
  if (iv.length !== 12) bad('JWE "iv" must be 12 bytes for A256GCM');
  if (tag.length !== 16) bad('JWE "tag" must be 16 bytes for A256GCM');
  return { protectedB64, protectedHeader, unprotected, recipients, iv, ciphertext, tag, aadB64 };
}

/** Joins the protected, shared unprotected and recipient headers; they must be disjoint. */
function jointHeader(p: ParsedJwe, recipientHeader: Record<string, unknown>): Record<string, unknown> {
  const joint: Record<string, unknown> = { ...p.protectedHeader };
  for (const part of [p.unprotected, recipientHeader]) {
    for (const [k, v] of Object.entries(part)) {
      if (k in joint) joseFail(ErrorCode.JWE_INVALID, `JWE header parameter "${k}" appears more than once`);
      joint[k] = v;
    }
  }
  if (joint.enc !== CONTENT_ENC) joseFail(ErrorCode.JWE_INVALID, `JWE "enc" must be ${CONTENT_ENC}`);
  if (joint.zip !== undefined) joseFail(ErrorCode.JWE_INVALID, 'JWE "zip" is not supported');
  if (joint.crit !== undefined) joseFail(ErrorCode.JWE_INVALID, 'JWE with unknown critical header parameters');
  return joint;
}

function decryptionFailed(): never {
  throw new JoseError(ErrorCode.JWE_DECRYPTION, 'JWE decryption failed');
}

/**
 * Decrypts a JWE made by {@link encryptJwe} (or any ECDH-ES+A256KW / A256GCM General JSON JWE)
 * for the recipient whose `kid` equals `decrypter.keyId`. The decrypter does the ECDH; the
 * ephemeral key is checked to be a valid point of the decrypter's curve first.
 *
 * @throws TypeError for a `jwe` of the wrong type or a decrypter without keyId/deriveSharedSecret.
 * @throws JoseError `ERR_JSON_INVALID` / `ERR_JWE_INVALID` (malformed, unsupported alg/enc/zip/crit),
 *   `ERR_JWE_NO_MATCHING_RECIPIENT` (no recipient with this kid), `ERR_JWE_DECRYPTION_FAILED`
 *   (anything that fails from the key agreement on; no detail is given).
 */
export async function decryptJwe(
  jwe: unknown,
  decrypter: Decrypter,
): Promise<{ plaintext: Uint8Array; protectedHeader: Record<string, unknown> }> {
  aobject(decrypter, 'decrypter');
  astring(decrypter.keyId, 'decrypter.keyId');
  if (typeof decrypter.deriveSharedSecret !== 'function') throw new TypeError('"decrypter.deriveSharedSecret" expected a function');
  const p = parseJwe(jwe);
  let found: { joint: Record<string, unknown>; encryptedKey: Uint8Array | undefined } | undefined;
  for (const r of p.recipients) {
    const joint = jointHeader(p, r.header);
    if (joint.kid === decrypter.keyId) {
      found = { joint, encryptedKey: r.encryptedKey };
      break;
    }
  }
  if (found === undefined) joseFail(ErrorCode.JWE_NO_RECIPIENT, `no JWE recipient with kid ${decrypter.keyId}`);
  const { joint, encryptedKey } = found;
  if (joint.alg !== KEY_AGREEMENT_ALG) joseFail(ErrorCode.JWE_INVALID, `JWE "alg" must be ${KEY_AGREEMENT_ALG}`);
  if (encryptedKey === undefined) joseFail(ErrorCode.JWE_INVALID, 'JWE recipient has no "encrypted_key"');
  const apu = joint.apu === undefined ? new Uint8Array(0) : decodeB64u(joint.apu, 'apu', ErrorCode.JWE_INVALID);
  const apv = joint.apv === undefined ? new Uint8Array(0) : decodeB64u(joint.apv, 'apv', ErrorCode.JWE_INVALID);

  let z: Uint8Array | undefined;
  let kek: Uint8Array | undefined;
  let cek: Uint8Array | undefined;
  try {
    let epk: PublicKey;
    try {
      epk = publicKeyFromJwk(joint.epk);
    } catch {
      return decryptionFailed();
    }
    const ownCurve = decrypter.publicJwk.crv;
    if (epk.curve !== ownCurve || Z_LENGTH[epk.curve] === undefined) return decryptionFailed();
    let zValue: unknown;
    try {
      zValue = await decrypter.deriveSharedSecret(publicKeyToJwk(epk));
    } catch {
      return decryptionFailed();
    }
    if (!(zValue instanceof Uint8Array) || zValue.length !== Z_LENGTH[epk.curve] || zValue.every((b) => b === 0)) {
      return decryptionFailed();
    }
    z = zValue;
    kek = concatKdf(z, KEY_AGREEMENT_ALG, apu, apv);
    try {
      cek = aesKeyUnwrap(kek, encryptedKey);
    } catch {
      return decryptionFailed();
    }
    if (cek.length !== 32) return decryptionFailed();
    try {
      const plaintext = gcmDecrypt(cek, p.iv, gcmAad(p.protectedB64, p.aadB64), p.ciphertext, p.tag);
      return { plaintext, protectedHeader: p.protectedHeader };
    } catch {
      return decryptionFailed();
    }
  } finally {
    wipe(z, kek, cek);
  }
}

/**
 * Encrypts `plaintext` directly under a 32-byte key: JWE General JSON with protected header
 * `{"alg":"dir","enc":"A256GCM","kid"?,"cty"?}` and one recipient without an encrypted key.
 *
 * @throws TypeError / RangeError for bad arguments (key not 32 bytes).
 */
export function encryptJweDirect(
  plaintext: Uint8Array,
  key: Uint8Array,
  opts: { kid?: string; cty?: string; aad?: Uint8Array } = {},
): JweGeneralDirect {
  abytes(plaintext, 'plaintext');
  abytes(key, 'key', 32);
  aobject(opts, 'opts');
  const header: Record<string, string> = { alg: 'dir', enc: CONTENT_ENC };
  if (opts.kid !== undefined) header.kid = astring(opts.kid, 'opts.kid');
  if (opts.cty !== undefined) header.cty = astring(opts.cty, 'opts.cty');
  if (opts.aad !== undefined) abytes(opts.aad, 'opts.aad');
  const protectedB64 = protectedB64For(header);
  const iv = new Uint8Array(randomBytes(12));
  const aadB64 = opts.aad === undefined ? undefined : b64u(opts.aad);
  const { ciphertext, tag } = gcmEncrypt(key, iv, gcmAad(protectedB64, aadB64), plaintext);
  const jwe: JweGeneralDirect = { protected: protectedB64, recipients: [{}], iv: b64u(iv), ciphertext: b64u(ciphertext), tag: b64u(tag) };
  if (aadB64 !== undefined) jwe.aad = aadB64;
  return jwe;
}

/**
 * Decrypts a `dir` + A256GCM JWE (General JSON, exactly one recipient, no encrypted key).
 *
 * @throws TypeError / RangeError for bad arguments (key not 32 bytes).
 * @throws JoseError `ERR_JSON_INVALID` / `ERR_JWE_INVALID` (malformed, not dir/A256GCM),
 *   `ERR_JWE_DECRYPTION_FAILED` (wrong key or tampered data).
 */
export function decryptJweDirect(
  jwe: unknown,
  key: Uint8Array,
): { plaintext: Uint8Array; protectedHeader: Record<string, unknown> } {
  abytes(key, 'key', 32);
  const p = parseJwe(jwe);
  if (p.recipients.length !== 1) joseFail(ErrorCode.JWE_INVALID, 'a "dir" JWE has exactly one recipient');
  const r = p.recipients[0];
  if (r === undefined) return joseFail(ErrorCode.JWE_INVALID, 'a "dir" JWE has exactly one recipient');
  const joint = jointHeader(p, r.header);
  if (joint.alg !== 'dir') joseFail(ErrorCode.JWE_INVALID, 'JWE "alg" must be dir');
  if (r.encryptedKey !== undefined) joseFail(ErrorCode.JWE_INVALID, 'a "dir" JWE has no encrypted_key');
  try {
    return { plaintext: gcmDecrypt(key, p.iv, gcmAad(p.protectedB64, p.aadB64), p.ciphertext, p.tag), protectedHeader: p.protectedHeader };
  } catch {
    return decryptionFailed();
  }
}
