/**
 * `Pkcs11KeyStore`: a logged-in view of one PKCS#11 token as a meshkit {@link KeyStore}.
 *
 * Objects: every key is a CKO_PRIVATE_KEY + CKO_PUBLIC_KEY pair with the same CKA_LABEL (the store
 * label) and CKA_ID = the first 16 bytes of the binary key UDF (`udfParse(keyId).bytes`), so
 * `pkcs11-tool -O` shows the label and an ID that names the key. The public point is read from the
 * public object's CKA_EC_POINT (DER-wrapped or raw) and the curve from CKA_EC_PARAMS.
 *
 * Key types: Ed25519/Ed448 → CKK_EC_EDWARDS + CKM_EC_EDWARDS_KEY_PAIR_GEN; X25519/X448 →
 * CKK_EC_MONTGOMERY when the token offers CKM_EC_MONTGOMERY_KEY_PAIR_GEN, else CKK_EC_EDWARDS with
 * the Montgomery OID (SoftHSM 2.6); P-256 → CKK_EC + CKM_EC_KEY_PAIR_GEN, CKA_SIGN or CKA_DERIVE by usage.
 * Private keys: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE = true, CKA_EXTRACTABLE = false unless asked.
 *
 * Errors (the choice the contract asks to document): `get(label)` of a missing label is a
 * KeyStoreError ERR_KEYSTORE_NOT_FOUND listing the labels present (the KeyStore contract); two
 * private keys with the label are a Pkcs11Error ERR_PKCS11_OBJECT_AMBIGUOUS naming both CKA_IDs.
 * `getById(id)` of a missing id is a Pkcs11Error ERR_PKCS11_OBJECT_NOT_FOUND.
 *
 * Sessions: the store keeps one read-write session for key management (login is per token, so
 * every session of the process shares it); management calls are synchronous Cryptoki calls on it,
 * so two of them never interleave. Signing and deriving: with `sessions: 1` (the default) they are
 * synchronous C_SignInit + C_Sign / C_DeriveKey calls on that session too (the lowest latency);
 * with `sessions: n > 1` the store opens a pool of n more (read-only) sessions and each signature /
 * agreement runs on a free pool session, one operation per session at a time, waiting callers
 * served first in, first out. Signatures there use pkcs11js's asynchronous C_SignAsync (the
 * Cryptoki call runs in the libuv threadpool, so n signatures proceed in parallel). Key agreements
 * on a pool session stay synchronous C_DeriveKey calls (DERIVE_NOTE): concurrent C_DeriveKeyAsync
 * on SoftHSM 2.6.1 intermittently failed with CKR_GENERAL_ERROR, and kept failing for that key
 * afterwards, in this project's tests, so no two derivations ever run at once in this process.
 * SoftHSM 2.6.1 (token manufacturer "SoftHSM project") is not safe for a C_Sign in a worker thread
 * while the main thread calls C_SignInit on another session (a segfault in SoftHSM's std::map code
 * was observed under `npm run bench`); on SoftHSM the pool therefore signs with synchronous C_Sign
 * (the queueing, FIFO order and close() semantics are the same, but signatures do not overlap).
 * `close()` waits for the pooled operations in flight. A session closed underneath (token removed,
 * C_CloseAllSessions) gives ERR_PKCS11_TOKEN_REMOVED, never an untyped crash or a hang.
 */
import { createHash, randomBytes, verify as nodeVerify } from 'node:crypto';
import type * as pkcs11js from 'pkcs11js';
import { abytes, aobject, toHex, wipe } from '../../core/bytes.js';
import { ErrorCode, KeyError, KeyStoreError, MeshkitError, Pkcs11Error, UnsupportedError } from '../../core/errors.js';
import {
  curveFromEcParams,
  ecParams,
  keyId as computeKeyId,
  publicKeyFromEcPoint,
  publicKeyFromJwk,
  publicKeyObject,
  publicKeyToEcPoint,
  publicKeyToJwk,
  signatureAlgorithmFor,
  type PublicKey,
} from '../../core/keys.js';
import type { Curve, Decrypter, PublicJwk, Signer } from '../../core/signer.js';
import { udfParse } from '../../core/udf.js';
import type { SecretSource } from '../software.js';
import {
  acurve,
  alabel,
  resolveUsage,
  type KeyCreateOptions,
  type KeyHandle,
  type KeyInfo,
  type KeyStore,
  type KeyUsage,
  type PrivateJwk,
} from '../types.js';
import { CKK_EC_EDWARDS, CKK_EC_MONTGOMERY, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EC_MONTGOMERY_KEY_PAIR_GEN, CKM_EDDSA, ckrName, mechanismName, pk } from './constants.js';
import { ckrOf, isCkr, toPkcs11Error } from './errors.js';
import { isImportRefusal, probeCapabilities, type TokenCapabilities } from './capabilities.js';
import { Pkcs11Module, readTokenInfo, type SlotInfo, type TokenInfo } from './module.js';
import { pinSourceFromUri } from './pin.js';
import { Pkcs11Session, Pkcs11SessionPool, withPin } from './session.js';
import { formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Uri } from './uri.js';
import { checkPrivateJwk } from '../private-key.js';

/** Options for {@link Pkcs11KeyStore.open}. */
export interface Pkcs11StoreOptions {
  /** The module when the URI has no `module-path` (then `MESHKIT_PKCS11_MODULE` is tried). */
  modulePath?: string;
  /**
   * How many signatures / key agreements may run at once, 1 to 64 (default 1). With 1 they run
   * synchronously on the store's session; with more, on a pool of that many extra sessions through
   * pkcs11js's asynchronous calls (the libuv threadpool: raise UV_THREADPOOL_SIZE above 4 to use
   * more than 4 sessions at once).
   */
  sessions?: number;
}

/** Extra options for keys on a token. */
export interface Pkcs11KeyCreateOptions extends KeyCreateOptions {
  /** CKA_ALWAYS_AUTHENTICATE: the PIN is asked again (context-specific login) before every signature. */
  alwaysAuthenticate?: boolean;
  /** X25519/X448 only: force the key type (default: CKK_EC_MONTGOMERY when offered, else CKK_EC_EDWARDS). */
  keyType?: 'CKK_EC_MONTGOMERY' | 'CKK_EC_EDWARDS';
}

/** Wrap mechanisms meshkit uses. */
export type WrapMechanism = 'CKM_AES_KEY_WRAP' | 'CKM_AES_KEY_WRAP_PAD';

/**
 * An AES key object made by {@link Pkcs11KeyStore.importAesKey}: pass it to `wrapKey` / `unwrapKey`
 * in place of a KEK label, and destroy it with {@link Pkcs11KeyStore.destroyAesKey}. Opaque: the
 * object handle stays inside the store that made it.
 */
export interface AesKeyHandle {
  readonly label: string;
  /** CKA_TOKEN: false for a session object (gone when the store's session closes, also on a crash). */
  readonly token: boolean;
  /** Key length in bits (128, 192 or 256). */
  readonly bits: number;
}

/** Options of {@link Pkcs11KeyStore.importAesKey}. */
export interface AesImportOptions {
  /** CKA_TOKEN (default false: a session object). */
  token?: boolean;
  /** CKA_WRAP (default true). */
  wrap?: boolean;
  /** CKA_UNWRAP (default true). */
  unwrap?: boolean;
}

/** Where {@link Pkcs11KeyStore.unwrapKey} puts the unwrapped key. */
export interface Pkcs11UnwrapTarget extends Pkcs11KeyCreateOptions {
  label: string;
  publicJwk: PublicJwk;
  /** CKA_TOKEN of the private and public objects (default true; false: session objects, e.g. to test an escrow). */
  token?: boolean;
}

/** What {@link Pkcs11KeyStore.probeWrap} found. */
export interface WrapProbe {
  curve: Curve;
  mechanism: WrapMechanism;
  wrappable: boolean;
  /** The CKR_* name or reason when not wrappable. */
  reason?: string;
}

/**
 * Test seam: called after key objects exist and before they are finished (CKA_ID set / public
 * object created). A throw here must leave no object behind.
 * @internal
 */
export const _faultInjection: { afterObjectsCreated?: ((stage: 'generate' | 'import' | 'unwrap') => void) | undefined } = {};

/** Token manufacturers whose modules crash on concurrent Cryptoki calls from several threads (see the header). */
const THREAD_UNSAFE_MANUFACTURERS = new Set(['SoftHSM project']);

const SIG_LENGTH: Record<string, number> = { Ed25519: 64, Ed448: 114, 'P-256': 64 };
const Z_LENGTH: Record<Curve, number> = { Ed25519: 0, Ed448: 0, X25519: 32, X448: 56, 'P-256': 32 };
/** One key on the token, as read from its objects. */
interface KeyRecord {
  priv: Buffer;
  pub: Buffer | undefined;
  label: string;
  id: Buffer;
  curve: Curve;
  usage: KeyUsage;
  extractable: boolean;
  alwaysAuthenticate: boolean;
  publicKey: PublicKey;
  keyId: string;
}

function ulong(buf: Buffer | undefined): number | undefined {
  if (buf === undefined || buf.length === 0) return undefined;
  if (buf.length >= 8) return Number(buf.readBigUInt64LE(0));
  return buf.readUInt32LE(0);
}

function bool(buf: Buffer | undefined): boolean {
  return buf !== undefined && buf.length > 0 && buf[0] !== 0;
}

/** The CKA_ID meshkit gives a key: the first 16 bytes of its binary key UDF (after the type byte). */
export function keyObjectId(keyId: string): Buffer {
  return Buffer.from(udfParse(keyId).bytes.slice(0, 16));
}

/** Raw r‖s (64 bytes) from what a token returned: raw already, or DER (some tokens). */
export function ecdsaToRaw(sig: Uint8Array): Uint8Array {
  if (sig.length === 64) return sig;
  if (sig[0] === 0x30 && sig.length >= 8) {
    let i = 2;
    const out = new Uint8Array(64);
    for (let k = 0; k < 2; k++) {
      if (sig[i] !== 0x02) break;
      const len = sig[i + 1] ?? 0;
      let v = sig.subarray(i + 2, i + 2 + len);
      while (v.length > 32 && v[0] === 0) v = v.subarray(1);
      if (v.length > 32) break;
      out.set(v, k * 32 + (32 - v.length));
      i += 2 + len;
      if (k === 1) return out;
    }
  }
  throw new Pkcs11Error(ErrorCode.PKCS11, `the token returned an ECDSA signature of ${sig.length} bytes that is neither raw r||s nor DER`, {
    operation: 'C_Sign',
  });
}

/** A public KeyObject, JWK and key id of a raw private key (node:crypto), with the PKCS#8 copy wiped. */
/** Ends a signature operation after a failure (C_Sign with a buffer terminates it), so the session stays usable. */
function terminateSign(lib: pkcs11js.PKCS11, session: Buffer, input: Buffer, outLength: number): void {
  try {
    lib.C_Sign(session, input, Buffer.alloc(outLength));
  } catch {
    // expected: the operation was not active any more, or fails again
  }
}

/** The meshkit signature from what C_Sign returned: raw r||s for P-256, checked length for EdDSA. */
function signatureResult(curve: Curve, sig: Buffer): Uint8Array {
  const out = new Uint8Array(sig);
  if (curve === 'P-256') return ecdsaToRaw(out);
  if (out.length !== SIG_LENGTH[curve]) {
    throw new Pkcs11Error(ErrorCode.PKCS11, `the token returned a ${out.length}-byte ${curve} signature`, { operation: 'C_Sign' });
  }
  return out;
}

/** The template of the session secret CKM_ECDH1_DERIVE (CKD_NULL) makes: Z, readable, not on the token. */
function secretTemplate(zLength: number): pkcs11js.Template {
  return [
    { type: pk('CKA_CLASS'), value: pk('CKO_SECRET_KEY') },
    { type: pk('CKA_KEY_TYPE'), value: pk('CKK_GENERIC_SECRET') },
    { type: pk('CKA_TOKEN'), value: false },
    { type: pk('CKA_SENSITIVE'), value: false },
    { type: pk('CKA_EXTRACTABLE'), value: true },
    { type: pk('CKA_VALUE_LEN'), value: zLength },
  ];
}

/** Maps a C_DeriveKey failure: a refused peer point is a KeyError, the rest Pkcs11Errors. */
function deriveError(e: unknown): Error {
  if (isCkr(e, 'CKR_FUNCTION_FAILED') || isCkr(e, 'CKR_ARGUMENTS_BAD') || isCkr(e, 'CKR_MECHANISM_PARAM_INVALID')) {
    return new KeyError(ErrorCode.KEY_INVALID, `key agreement with the peer key failed on the token (low-order or invalid point?): ${toPkcs11Error(e, 'C_DeriveKey').message}`, { cause: e });
  }
  return e instanceof MeshkitError ? e : toPkcs11Error(e, 'C_DeriveKey');
}

/** Reads Z from the derived session object and destroys the object. */
function readSecret(lib: pkcs11js.PKCS11, session: Buffer, secret: Buffer, zLength: number): Uint8Array {
  try {
    const value = lib.C_GetAttributeValue(session, secret, [{ type: pk('CKA_VALUE') }])[0]?.value;
    if (value === undefined || value.length !== zLength) {
      throw new Pkcs11Error(ErrorCode.PKCS11, `the derived secret has ${value?.length ?? 0} bytes, expected ${zLength}`, { operation: 'C_GetAttributeValue' });
    }
    const z = new Uint8Array(value);
    wipe(value);
    if (z.every((b) => b === 0)) {
      throw new KeyError(ErrorCode.KEY_INVALID, 'key agreement produced the all-zero value (low-order peer point)');
    }
    return z;
  } catch (e) {
    throw e instanceof MeshkitError ? e : toPkcs11Error(e, 'C_GetAttributeValue');
  } finally {
    try {
      lib.C_DestroyObject(session, secret);
    } catch {
      // a session object vanishes with the session anyway
    }
  }
}

function assertOwnStoreHandle(handles: WeakMap<KeyHandle, KeyRecord>, h: KeyHandle): KeyRecord {
  const r = handles.get(h);
  if (r === undefined) throw new TypeError('"key" expected a KeyHandle from this Pkcs11KeyStore');
  return r;
}

/** A logged-in view of one token. Open with {@link Pkcs11KeyStore.open}; close (or `await using`) when done. */
export class Pkcs11KeyStore implements KeyStore {
  /** The token's URI (token label + module path), e.g. `pkcs11:token=master?module-path=…`. */
  readonly uri: string;
  /** Token information at open time. */
  readonly token: TokenInfo;
  readonly module: Pkcs11Module;
  readonly slot: SlotInfo;
  /** Warnings from parsing the URI (e.g. pin-value is unsafe). */
  readonly warnings: readonly string[];
  #session: Pkcs11Session;
  /** The signing / deriving pool when opened with `sessions > 1`. */
  #pool: Pkcs11SessionPool | undefined;
  #pin: SecretSource;
  #mechanisms: Set<number>;
  #handles = new WeakMap<KeyHandle, KeyRecord>();
  /** Object handles of the AES keys this store imported (undefined once destroyed). */
  #aesKeys = new WeakMap<AesKeyHandle, { object: Buffer | undefined }>();
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Whether pooled signatures use C_SignAsync (false for tokens known not to be thread-safe). */
  #asyncSign: boolean;

  private constructor(
    module: Pkcs11Module,
    slot: SlotInfo,
    session: Pkcs11Session,
    pool: Pkcs11SessionPool | undefined,
    pin: SecretSource,
    warnings: string[],
  ) {
    this.module = module;
    this.slot = slot;
    this.token = slot.token as TokenInfo;
    this.#session = session;
    this.#pool = pool;
    this.#asyncSign = !THREAD_UNSAFE_MANUFACTURERS.has(this.token.manufacturer);
    this.#pin = pin;
    this.warnings = warnings;
    this.#mechanisms = new Set(session.lib.C_GetMechanismList(slot.handle));
    this.uri = formatPkcs11Uri({ token: this.token.label, modulePath: module.path });
  }

  /**
   * Opens the token a URI names and logs in.
   * @param uri a `pkcs11:` URI (string or parsed) naming the token (token / serial / … attributes) and
   *   usually the module (`module-path`); object attributes are ignored here.
   * @param pin the user PIN source; the URI's `pin-source` / `pin-value` take precedence when present.
   * @param opts modulePath (when the URI has none), sessions (concurrent signing sessions, default 1).
   * @throws TypeError / RangeError when `opts.sessions` is not an integer from 1 to 64.
   * @throws Pkcs11Error ERR_PKCS11_URI_INVALID, ERR_PKCS11_MODULE (no or bad module),
   *   ERR_PKCS11_TOKEN_NOT_FOUND (lists the tokens present), ERR_PKCS11_PIN_INCORRECT (says what the
   *   token reports about tries left), ERR_PKCS11_PIN_LOCKED; KeyStoreError ERR_SECRET_SOURCE.
   */
  static async open(uri: string | Pkcs11Uri, pin: SecretSource, opts: Pkcs11StoreOptions = {}): Promise<Pkcs11KeyStore> {
    let parsed: Pkcs11Uri;
    let warnings: string[] = [];
    if (typeof uri === 'string') ({ uri: parsed, warnings } = parsePkcs11Uri(uri));
    else if (typeof uri === 'object' && uri !== null) parsed = uri;
    else throw new TypeError(`"uri" expected a pkcs11: URI string or a parsed Pkcs11Uri`);
    const sessions = opts.sessions ?? 1;
    if (typeof sessions !== 'number') throw new TypeError(`"opts.sessions" expected a number, got ${typeof sessions}`);
    if (!Number.isInteger(sessions) || sessions < 1 || sessions > 64) {
      throw new RangeError(`"opts.sessions" expected an integer from 1 to 64, got ${sessions}`);
    }
    const modulePath = parsed.modulePath ?? opts.modulePath ?? process.env['MESHKIT_PKCS11_MODULE'];
    if (modulePath === undefined || modulePath === '') {
      throw new Pkcs11Error(
        ErrorCode.PKCS11_MODULE,
        'no PKCS#11 module: add ?module-path=/path/to/module.so to the URI (e.g. /usr/lib/softhsm/libsofthsm2.so) or set MESHKIT_PKCS11_MODULE',
      );
    }
    const source = pinSourceFromUri(parsed) ?? pin;
    const module = await Pkcs11Module.open(modulePath);
    let session: Pkcs11Session | undefined;
    let pool: Pkcs11SessionPool | undefined;
    try {
      const slot = await module.findToken(parsed);
      session = Pkcs11Session.open(module, slot);
      await session.login(source);
      if (sessions > 1) pool = await Pkcs11SessionPool.open(module, slot, sessions);
      return new Pkcs11KeyStore(module, slot, session, pool, source, warnings);
    } catch (e) {
      await pool?.close();
      await session?.close();
      await module.close();
      throw e;
    }
  }

  // -------------------------------------------------------------------------------------------
  // KeyStore

  /**
   * Every meshkit-usable key on the token (EC / Edwards / Montgomery private keys with a public
   * point), in label order.
   * @throws Pkcs11Error (ERR_PKCS11_TOKEN_REMOVED when the session is gone).
   */
  async list(): Promise<KeyInfo[]> {
    const records = this.#run('listing keys', () => this.#privateKeys([]).map((h) => this.#record(h)));
    return records
      .filter((r): r is KeyRecord => r !== undefined)
      .map((r) => this.#info(r))
      .sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  }

  /**
   * Generates a key pair on the token.
   * @throws TypeError / RangeError for bad arguments; KeyStoreError ERR_KEYSTORE_EXISTS when the label is taken.
   * @throws UnsupportedError ERR_NOT_SUPPORTED naming token and mechanism when the token lacks it.
   * @throws Pkcs11Error for a Cryptoki failure (nothing is left behind).
   */
  async generate(label: string, curve: Curve, opts: Pkcs11KeyCreateOptions = {}): Promise<KeyHandle> {
    alabel(label);
    acurve(curve);
    aobject(opts, 'opts');
    const usage = resolveUsage(curve, opts.usage);
    this.#assertOpen();
    this.#assertLabelFree(label);
    const keyType = this.#keyTypeFor(curve, opts.keyType);
    const genMech = curve === 'P-256' ? pk('CKM_EC_KEY_PAIR_GEN') : keyType === CKK_EC_MONTGOMERY ? CKM_EC_MONTGOMERY_KEY_PAIR_GEN : CKM_EC_EDWARDS_KEY_PAIR_GEN;
    this.#requireMechanism(genMech, `generating ${curve} keys`);
    this.#requireUsageMechanism(curve, usage);
    const lib = this.#session.lib;
    const tmpId = randomBytes(16);
    const common = [
      { type: pk('CKA_TOKEN'), value: true },
      { type: pk('CKA_KEY_TYPE'), value: keyType },
      { type: pk('CKA_LABEL'), value: label },
      { type: pk('CKA_ID'), value: tmpId },
    ];
    const publicTemplate: pkcs11js.Template = [
      ...common,
      { type: pk('CKA_CLASS'), value: pk('CKO_PUBLIC_KEY') },
      { type: pk('CKA_PRIVATE'), value: false },
      { type: pk('CKA_EC_PARAMS'), value: Buffer.from(ecParams(curve)) },
      ...(usage === 'sign' ? [{ type: pk('CKA_VERIFY'), value: true }] : []),
    ];
    const privateTemplate: pkcs11js.Template = [
      ...common,
      ...this.#privateAttributes(usage, opts),
    ];
    let pair: pkcs11js.KeyPair;
    try {
      pair = lib.C_GenerateKeyPair(this.#session.handle, { mechanism: genMech }, publicTemplate, privateTemplate);
    } catch (e) {
      throw this.#mapError(e, 'C_GenerateKeyPair', `generating ${curve} key ${JSON.stringify(label)}`);
    }
    try {
      const point = this.#session.attributes(pair.publicKey, [pk('CKA_EC_POINT')]).get(pk('CKA_EC_POINT'));
      if (point === undefined) throw new Pkcs11Error(ErrorCode.PKCS11, `the new ${curve} public key has no CKA_EC_POINT`, { operation: 'C_GetAttributeValue' });
      const publicKey = publicKeyFromEcPoint(curve, point);
      const keyId = computeKeyId(publicKey);
      const id = keyObjectId(keyId);
      _faultInjection.afterObjectsCreated?.('generate');
      this.#setId(pair.publicKey, id);
      this.#setId(pair.privateKey, id);
      return this.#handle({
        priv: pair.privateKey,
        pub: pair.publicKey,
        label,
        id,
        curve,
        usage,
        extractable: opts.extractable === true,
        alwaysAuthenticate: opts.alwaysAuthenticate === true,
        publicKey,
        keyId,
      });
    } catch (e) {
      this.#session.destroyQuietly(pair.privateKey);
      this.#session.destroyQuietly(pair.publicKey);
      throw this.#mapError(e, 'C_SetAttributeValue', `finishing ${curve} key ${JSON.stringify(label)} (the new objects were deleted)`);
    }
  }

  /**
   * Imports a private key (C_CreateObject) as sensitive and non-extractable (unless asked), with its
   * public key object.
   * @throws KeyError ERR_KEY_INVALID when the JWK is malformed or its public part does not belong to `d`.
   * @throws KeyStoreError ERR_KEYSTORE_EXISTS; UnsupportedError ERR_NOT_SUPPORTED naming the token and
   *   C_CreateObject when the token does not import private keys (tpm2-pkcs11, most cards), or lacks
   *   the mechanism for the key's usage; Pkcs11Error (nothing is left behind).
   */
  async importPrivate(label: string, privateJwk: PrivateJwk, opts: Pkcs11KeyCreateOptions = {}): Promise<KeyHandle> {
    alabel(label);
    aobject(opts, 'opts');
    const { curve, usage, raw, keyId, publicJwk } = checkPrivateJwk(privateJwk, opts.usage);
    const actual = publicKeyFromJwk(publicJwk);
    const value = Buffer.from(raw);
    try {
      this.#assertOpen();
      this.#assertLabelFree(label);
      const keyType = this.#keyTypeFor(curve, opts.keyType);
      this.#requireUsageMechanism(curve, usage);
      const id = keyObjectId(keyId);
      const priv = this.#createPrivate(
        [
          { type: pk('CKA_CLASS'), value: pk('CKO_PRIVATE_KEY') },
          { type: pk('CKA_KEY_TYPE'), value: keyType },
          { type: pk('CKA_TOKEN'), value: true },
          { type: pk('CKA_LABEL'), value: label },
          { type: pk('CKA_ID'), value: id },
          { type: pk('CKA_EC_PARAMS'), value: Buffer.from(ecParams(curve)) },
          { type: pk('CKA_VALUE'), value },
          ...this.#privateAttributes(usage, opts),
        ],
        curve,
        label,
      );
      let pub: Buffer | undefined;
      try {
        _faultInjection.afterObjectsCreated?.('import');
        pub = this.#createPublic(actual, label, id, usage, keyType);
      } catch (e) {
        this.#session.destroyQuietly(priv);
        throw this.#mapError(e, 'C_CreateObject', `importing ${curve} key ${JSON.stringify(label)} (the private object was deleted)`);
      }
      return this.#handle({
        priv,
        pub,
        label,
        id,
        curve,
        usage,
        extractable: opts.extractable === true,
        alwaysAuthenticate: opts.alwaysAuthenticate === true,
        publicKey: actual,
        keyId,
      });
    } finally {
      wipe(raw, value);
    }
  }

  /**
   * The key whose private object has CKA_LABEL = `label`.
   * @throws KeyStoreError ERR_KEYSTORE_NOT_FOUND listing the labels present.
   * @throws Pkcs11Error ERR_PKCS11_OBJECT_AMBIGUOUS naming the CKA_IDs when two keys share the label.
   */
  async get(label: string): Promise<KeyHandle> {
    alabel(label);
    return this.#handle(await this.#findOne({ label }));
  }

  /**
   * The key whose private object has CKA_ID = `id`.
   * @throws TypeError if `id` is not a Uint8Array.
   * @throws Pkcs11Error ERR_PKCS11_OBJECT_NOT_FOUND, or ERR_PKCS11_OBJECT_AMBIGUOUS.
   */
  async getById(id: Uint8Array): Promise<KeyHandle> {
    abytes(id, 'id');
    return this.#handle(await this.#findOne({ id }));
  }

  /**
   * The key matching a label and / or an id (what an object URI names).
   * @throws as {@link get} (by label) or {@link getById} (by id only).
   */
  async find(match: { label?: string; id?: Uint8Array }): Promise<KeyHandle> {
    if (match.label === undefined && match.id === undefined) throw new TypeError('"match" needs a label or an id');
    if (match.label !== undefined) alabel(match.label);
    if (match.id !== undefined) abytes(match.id, 'id');
    return this.#handle(await this.#findOne(match));
  }

  /**
   * Destroys the private and public objects of the key labelled `label`.
   * @throws KeyStoreError ERR_KEYSTORE_NOT_FOUND; Pkcs11Error ERR_PKCS11_OBJECT_AMBIGUOUS or a Cryptoki failure.
   */
  /**
   * Destroys every object (private key, public key, any class) whose label AND CKA_ID both match —
   * also a private key whose public object was never created (a process killed inside
   * {@link importPrivate} or {@link generate}), which {@link list} cannot show. Used by
   * `ceremony abort`, which knows the CKA_IDs an interrupted ceremony recorded.
   * @returns the number of objects destroyed.
   * @throws Pkcs11Error when the token refuses.
   */
  async destroyObjects(match: { label: string; id: Uint8Array }): Promise<number> {
    alabel(match.label);
    abytes(match.id, 'match.id');
    if (match.id.length === 0) throw new RangeError('"match.id" must not be empty');
    return this.#run(`destroying objects labelled ${JSON.stringify(match.label)}`, () => {
      const found = this.#session.find([
        { type: pk('CKA_LABEL'), value: match.label },
        { type: pk('CKA_ID'), value: Buffer.from(match.id) },
      ]);
      for (const o of found) {
        try {
          this.#session.lib.C_DestroyObject(this.#session.handle, o);
        } catch (e) {
          throw this.#mapError(e, 'C_DestroyObject', `destroying objects labelled ${JSON.stringify(match.label)}`);
        }
      }
      return found.length;
    });
  }

  async delete(label: string): Promise<void> {
    alabel(label);
    const r = await this.#findOne({ label }, true);
    this.#run(`deleting key ${JSON.stringify(label)}`, () => {
      const lib = this.#session.lib;
      const publics = this.#session.find([
        { type: pk('CKA_CLASS'), value: pk('CKO_PUBLIC_KEY') },
        { type: pk('CKA_ID'), value: r.id },
      ]);
      try {
        lib.C_DestroyObject(this.#session.handle, r.priv);
      } catch (e) {
        throw this.#mapError(e, 'C_DestroyObject', `deleting key ${JSON.stringify(label)}`);
      }
      for (const p of publics) this.#session.destroyQuietly(p);
    });
  }

  /** The number of concurrent signing / deriving sessions (`opts.sessions` of {@link open}). */
  get sessions(): number {
    return this.#pool?.size ?? 1;
  }

  /** Whether pooled signatures overlap (pkcs11js C_SignAsync); false with one session or a token known not to be thread-safe (SoftHSM). */
  get parallelSigning(): boolean {
    return this.#pool !== undefined && this.#asyncSign;
  }

  /**
   * Closes the sessions and releases the module; handles stop working. With a session pool, waits
   * first for the signatures / agreements already started (or queued). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      await this.#pool?.close();
      await this.#session.close();
      await this.module.close();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -------------------------------------------------------------------------------------------
  // Beyond KeyStore

  /**
   * The capability probe of this token (see {@link TokenCapabilities}).
   * @throws Pkcs11Error.
   */
  async capabilities(): Promise<TokenCapabilities> {
    this.#assertOpen();
    return this.#run('probing capabilities', () => probeCapabilities(this.#session.lib, this.slot.handle));
  }

  /** Current token information (PIN flags change after failed logins). @throws Pkcs11Error. */
  tokenInfo(): TokenInfo {
    return this.#run('reading token info', () => readTokenInfo(this.#session.lib, this.slot.handle));
  }

  /**
   * Generates an AES key-encryption key on the token (CKA_WRAP / CKA_UNWRAP, sensitive, non-extractable).
   * @param bits 128, 192 or 256 (default 256).
   * @throws KeyStoreError ERR_KEYSTORE_EXISTS; UnsupportedError when the token has no CKM_AES_KEY_GEN.
   */
  async generateAesKek(label: string, bits = 256): Promise<{ label: string; id: Uint8Array }> {
    alabel(label);
    if (bits !== 128 && bits !== 192 && bits !== 256) throw new RangeError(`"bits" expected 128, 192 or 256, got ${bits}`);
    this.#assertOpen();
    if (this.#session.find([{ type: pk('CKA_LABEL'), value: label }]).length > 0) throw this.#exists(label);
    this.#requireMechanism(pk('CKM_AES_KEY_GEN'), 'generating an AES key-encryption key');
    const id = randomBytes(16);
    const lib = this.#session.lib;
    try {
      lib.C_GenerateKey(this.#session.handle, { mechanism: pk('CKM_AES_KEY_GEN') }, [
        { type: pk('CKA_CLASS'), value: pk('CKO_SECRET_KEY') },
        { type: pk('CKA_KEY_TYPE'), value: pk('CKK_AES') },
        { type: pk('CKA_TOKEN'), value: true },
        { type: pk('CKA_PRIVATE'), value: true },
        { type: pk('CKA_SENSITIVE'), value: true },
        { type: pk('CKA_EXTRACTABLE'), value: false },
        { type: pk('CKA_WRAP'), value: true },
        { type: pk('CKA_UNWRAP'), value: true },
        { type: pk('CKA_VALUE_LEN'), value: bits / 8 },
        { type: pk('CKA_LABEL'), value: label },
        { type: pk('CKA_ID'), value: id },
      ]);
    } catch (e) {
      throw this.#mapError(e, 'C_GenerateKey', `generating AES key-encryption key ${JSON.stringify(label)}`);
    }
    return { label, id: new Uint8Array(id) };
  }

  /**
   * Wraps a private key (created `extractable: true`) under an AES key-encryption key on the token.
   * @param key a handle from this store, or the key's label.
   * @param wrappingKey the CKA_LABEL of the AES KEK, or an {@link AesKeyHandle} from {@link importAesKey}.
   * @throws UnsupportedError ERR_NOT_SUPPORTED naming token and mechanism when the token lacks the
   *   mechanism, refuses this key type (SoftHSM 2.6: EdDSA keys, CKR_KEY_NOT_WRAPPABLE) or the key is not extractable.
   * @throws KeyStoreError ERR_KEYSTORE_NOT_FOUND; Pkcs11Error ERR_PKCS11_OBJECT_NOT_FOUND (no KEK).
   */
  async wrapKey(key: KeyHandle | string, wrappingKey: string | AesKeyHandle, mechanism: WrapMechanism = 'CKM_AES_KEY_WRAP_PAD'): Promise<Uint8Array> {
    const r = typeof key === 'string' ? await this.#findOne({ label: alabel(key) }) : assertOwnStoreHandle(this.#handles, key);
    const mech = this.#wrapMechanism(mechanism);
    const kek = this.#kek(wrappingKey, 'wrappingKey');
    const lib = this.#session.lib;
    try {
      const out = lib.C_WrapKey(this.#session.handle, { mechanism: mech }, kek, r.priv, Buffer.alloc(8192));
      return new Uint8Array(out);
    } catch (e) {
      if (isCkr(e, 'CKR_KEY_NOT_WRAPPABLE') || isCkr(e, 'CKR_KEY_UNEXTRACTABLE') || isCkr(e, 'CKR_KEY_TYPE_INCONSISTENT')) {
        const why = isCkr(e, 'CKR_KEY_UNEXTRACTABLE') ? 'the key is not extractable' : `the token cannot wrap ${r.curve} private keys`;
        throw new UnsupportedError(
          ErrorCode.NOT_SUPPORTED,
          `token ${JSON.stringify(this.token.label)} cannot wrap key ${JSON.stringify(r.label)} with ${mechanism}: ${why} (${isCkr(e, 'CKR_KEY_UNEXTRACTABLE') ? 'CKR_KEY_UNEXTRACTABLE' : 'CKR_KEY_NOT_WRAPPABLE'})`,
          { cause: e },
        );
      }
      throw this.#mapError(e, 'C_WrapKey', `wrapping key ${JSON.stringify(r.label)}`);
    }
  }

  /**
   * Unwraps a private key wrapped by {@link wrapKey} (or off-token with the same mechanism, PKCS#8
   * inside) under the AES KEK `unwrappingKey` (its label, or an {@link AesKeyHandle}), stores it as
   * `target.label` (CKA_ID from its key UDF; token objects unless `target.token === false`) with its
   * public key object, and checks with a test signature that a signing key belongs to `publicJwk`
   * (a key-agreement key cannot be checked without a peer: the caller tests it).
   * @throws UnsupportedError naming token and mechanism when the token cannot unwrap it.
   * @throws KeyError ERR_KEY_INVALID when the unwrapped key does not belong to `publicJwk` (nothing is kept).
   * @throws KeyStoreError ERR_KEYSTORE_EXISTS; Pkcs11Error.
   */
  async unwrapKey(
    wrapped: Uint8Array,
    unwrappingKey: string | AesKeyHandle,
    mechanism: WrapMechanism,
    target: Pkcs11UnwrapTarget,
  ): Promise<KeyHandle> {
    abytes(wrapped, 'wrapped');
    aobject(target, 'target');
    if (target.token !== undefined && typeof target.token !== 'boolean') throw new TypeError(`"target.token" expected a boolean, got ${typeof target.token}`);
    const onToken = target.token !== false;
    const label = alabel(target.label, 'target.label');
    const publicKey = publicKeyFromJwk(target.publicJwk);
    const curve = publicKey.curve;
    const usage = resolveUsage(curve, target.usage);
    this.#assertOpen();
    this.#assertLabelFree(label);
    const mech = this.#wrapMechanism(mechanism);
    const kek = this.#kek(unwrappingKey, 'unwrappingKey');
    const keyType = this.#keyTypeFor(curve, target.keyType);
    const keyId = computeKeyId(publicKey);
    const id = keyObjectId(keyId);
    const lib = this.#session.lib;
    let priv: Buffer;
    try {
      priv = lib.C_UnwrapKey(this.#session.handle, { mechanism: mech }, kek, Buffer.from(wrapped), [
        { type: pk('CKA_CLASS'), value: pk('CKO_PRIVATE_KEY') },
        { type: pk('CKA_KEY_TYPE'), value: keyType },
        { type: pk('CKA_TOKEN'), value: onToken },
        { type: pk('CKA_LABEL'), value: label },
        { type: pk('CKA_ID'), value: id },
        ...this.#privateAttributes(usage, target),
      ]);
    } catch (e) {
      if (isCkr(e, 'CKR_FUNCTION_FAILED') || isCkr(e, 'CKR_KEY_TYPE_INCONSISTENT') || isCkr(e, 'CKR_TEMPLATE_INCONSISTENT')) {
        throw new UnsupportedError(
          ErrorCode.NOT_SUPPORTED,
          `token ${JSON.stringify(this.token.label)} cannot unwrap a ${curve} private key with ${mechanism} (${toPkcs11Error(e, 'C_UnwrapKey').message})`,
          { cause: e },
        );
      }
      throw this.#mapError(e, 'C_UnwrapKey', `unwrapping key ${JSON.stringify(label)}`);
    }
    let pub: Buffer | undefined;
    try {
      const params = this.#session.attributes(priv, [pk('CKA_EC_PARAMS')]).get(pk('CKA_EC_PARAMS'));
      if (params !== undefined && curveFromEcParams(params) !== curve) {
        throw new KeyError(ErrorCode.KEY_INVALID, `the unwrapped key is a ${curveFromEcParams(params)} key, "publicJwk" is ${curve}`);
      }
      _faultInjection.afterObjectsCreated?.('unwrap');
      pub = this.#createPublic(publicKey, label, id, usage, keyType, onToken);
      const record: KeyRecord = {
        priv,
        pub,
        label,
        id,
        curve,
        usage,
        extractable: target.extractable === true,
        alwaysAuthenticate: target.alwaysAuthenticate === true,
        publicKey,
        keyId,
      };
      const handle = this.#handle(record);
      await this.#checkPair(handle, record);
      return handle;
    } catch (e) {
      this.#session.destroyQuietly(priv);
      if (pub !== undefined) this.#session.destroyQuietly(pub);
      throw this.#mapError(e, 'C_UnwrapKey', `finishing unwrapped key ${JSON.stringify(label)} (the new objects were deleted)`);
    }
  }

  /**
   * Imports an AES key (C_CreateObject, CKK_AES) for wrapping and unwrapping — e.g. an escrow
   * session key drawn on the host. Sensitive and non-extractable; a session object unless
   * `opts.token`. The caller keeps (and wipes) `value`; the store's copy is wiped.
   * @param value 16, 24 or 32 bytes.
   * @throws TypeError / RangeError for bad arguments (`value` length names the field).
   * @throws KeyStoreError ERR_KEYSTORE_EXISTS when an object already has the label.
   * @throws UnsupportedError when the token has no AES key wrapping (CKM_AES_KEY_WRAP_PAD / CKM_AES_KEY_WRAP).
   * @throws Pkcs11Error when the token refuses the object.
   */
  async importAesKey(label: string, value: Uint8Array, opts: AesImportOptions = {}): Promise<AesKeyHandle> {
    alabel(label);
    abytes(value, 'value', 16, 24, 32);
    aobject(opts, 'opts');
    for (const f of ['token', 'wrap', 'unwrap'] as const) {
      if (opts[f] !== undefined && typeof opts[f] !== 'boolean') throw new TypeError(`"opts.${f}" expected a boolean, got ${typeof opts[f]}`);
    }
    this.#assertOpen();
    if (!this.#mechanisms.has(pk('CKM_AES_KEY_WRAP_PAD')) && !this.#mechanisms.has(pk('CKM_AES_KEY_WRAP'))) {
      this.#requireMechanism(pk('CKM_AES_KEY_WRAP_PAD'), 'importing an AES key-encryption key');
    }
    if (this.#run('checking the label', () => this.#session.find([{ type: pk('CKA_LABEL'), value: label }], 1).length > 0)) throw this.#exists(label);
    const token = opts.token === true;
    const copy = Buffer.from(value);
    try {
      const object = this.#create(
        [
          { type: pk('CKA_CLASS'), value: pk('CKO_SECRET_KEY') },
          { type: pk('CKA_KEY_TYPE'), value: pk('CKK_AES') },
          { type: pk('CKA_TOKEN'), value: token },
          { type: pk('CKA_PRIVATE'), value: true },
          { type: pk('CKA_SENSITIVE'), value: true },
          { type: pk('CKA_EXTRACTABLE'), value: false },
          { type: pk('CKA_WRAP'), value: opts.wrap !== false },
          { type: pk('CKA_UNWRAP'), value: opts.unwrap !== false },
          { type: pk('CKA_ENCRYPT'), value: false },
          { type: pk('CKA_DECRYPT'), value: false },
          { type: pk('CKA_LABEL'), value: label },
          { type: pk('CKA_VALUE'), value: copy },
        ],
        `importing AES key ${JSON.stringify(label)}`,
      );
      const handle: AesKeyHandle = Object.freeze({ label, token, bits: value.length * 8 });
      this.#aesKeys.set(handle, { object });
      return handle;
    } finally {
      wipe(copy);
    }
  }

  /**
   * Destroys an AES key made by {@link importAesKey}. Idempotent (a second call does nothing).
   * @throws TypeError if `key` is not from this store; Pkcs11Error when the token refuses.
   */
  async destroyAesKey(key: AesKeyHandle): Promise<void> {
    const entry = typeof key === 'object' && key !== null ? this.#aesKeys.get(key) : undefined;
    if (entry === undefined) throw new TypeError('"key" expected an AesKeyHandle from this Pkcs11KeyStore');
    const object = entry.object;
    if (object === undefined) return;
    this.#run(`destroying AES key ${JSON.stringify(key.label)}`, () => {
      try {
        this.#session.lib.C_DestroyObject(this.#session.handle, object);
      } catch (e) {
        throw this.#mapError(e, 'C_DestroyObject', `destroying AES key ${JSON.stringify(key.label)}`);
      }
    });
    entry.object = undefined;
  }

  /**
   * Destroys exactly the private and public objects behind `key` (a handle of this store) — unlike
   * {@link delete}, which finds the key by label and every public object with its CKA_ID. Used for
   * session copies (unwrapKey with `token: false`) that share a CKA_ID with a token key.
   * @throws TypeError if `key` is not from this store; Pkcs11Error when the token refuses.
   */
  async destroyKey(key: KeyHandle): Promise<void> {
    const r = assertOwnStoreHandle(this.#handles, key);
    this.#run(`destroying key ${JSON.stringify(r.label)}`, () => {
      try {
        this.#session.lib.C_DestroyObject(this.#session.handle, r.priv);
      } catch (e) {
        throw this.#mapError(e, 'C_DestroyObject', `destroying key ${JSON.stringify(r.label)}`);
      }
      if (r.pub !== undefined) this.#session.destroyQuietly(r.pub);
    });
    this.#handles.delete(key);
  }

  /**
   * Whether the token can wrap `curve` private keys with `mechanism`, found by trying: a session key
   * pair of that curve (extractable, sensitive) and a random session AES key are made, the private
   * key is wrapped, and all are destroyed. Nothing is left on the token.
   * @throws TypeError / RangeError for bad arguments; UnsupportedError when the token lacks the
   *   mechanism or cannot make the key pair; Pkcs11Error for other failures.
   */
  async probeWrap(curve: Curve, mechanism: WrapMechanism = 'CKM_AES_KEY_WRAP_PAD'): Promise<WrapProbe> {
    acurve(curve);
    const mech = this.#wrapMechanism(mechanism);
    this.#assertOpen();
    const usage = resolveUsage(curve, undefined);
    const keyType = this.#keyTypeFor(curve, undefined);
    const genMech = curve === 'P-256' ? pk('CKM_EC_KEY_PAIR_GEN') : keyType === CKK_EC_MONTGOMERY ? CKM_EC_MONTGOMERY_KEY_PAIR_GEN : CKM_EC_EDWARDS_KEY_PAIR_GEN;
    this.#requireMechanism(genMech, `generating ${curve} keys`);
    const lib = this.#session.lib;
    const session = this.#session.handle;
    const label = `meshkit-wrap-probe-${randomBytes(6).toString('hex')}`;
    const common = [
      { type: pk('CKA_TOKEN'), value: false },
      { type: pk('CKA_KEY_TYPE'), value: keyType },
      { type: pk('CKA_LABEL'), value: label },
    ];
    let pair: pkcs11js.KeyPair | undefined;
    let kek: AesKeyHandle | undefined;
    const secret = new Uint8Array(randomBytes(32));
    try {
      try {
        pair = lib.C_GenerateKeyPair(
          session,
          { mechanism: genMech },
          [...common, { type: pk('CKA_CLASS'), value: pk('CKO_PUBLIC_KEY') }, { type: pk('CKA_EC_PARAMS'), value: Buffer.from(ecParams(curve)) }],
          [...common, ...this.#privateAttributes(usage, { extractable: true })],
        );
      } catch (e) {
        throw this.#mapError(e, 'C_GenerateKeyPair', `making a session ${curve} key to probe wrapping`);
      }
      kek = await this.importAesKey(`${label}-kek`, secret, { token: false });
      const kekObject = this.#kek(kek, 'kek');
      try {
        lib.C_WrapKey(session, { mechanism: mech }, kekObject, pair.privateKey, Buffer.alloc(8192));
        return { curve, mechanism, wrappable: true };
      } catch (e) {
        for (const ckr of ['CKR_KEY_NOT_WRAPPABLE', 'CKR_KEY_UNEXTRACTABLE', 'CKR_KEY_TYPE_INCONSISTENT', 'CKR_MECHANISM_INVALID', 'CKR_FUNCTION_FAILED']) {
          if (isCkr(e, ckr)) return { curve, mechanism, wrappable: false, reason: ckr };
        }
        throw this.#mapError(e, 'C_WrapKey', `probing ${mechanism} with a ${curve} key`);
      }
    } finally {
      wipe(secret);
      if (kek !== undefined) await this.destroyAesKey(kek).catch(() => undefined);
      if (pair !== undefined) {
        this.#session.destroyQuietly(pair.privateKey);
        this.#session.destroyQuietly(pair.publicKey);
      }
    }
  }

  /**
   * Sets CKA_EXTRACTABLE to false on a key of this store (allowed once true → false, never back):
   * e.g. after its escrow by wrapping is made and verified, so it can never leave the token again.
   * @returns whether the token now reports the key non-extractable (false when it refused the change).
   * @throws TypeError if `key` is not from this store; Pkcs11Error for an unexpected failure.
   */
  async lockExtractable(key: KeyHandle): Promise<boolean> {
    const r = assertOwnStoreHandle(this.#handles, key);
    return this.#run(`making key ${JSON.stringify(r.label)} non-extractable`, () => {
      try {
        this.#session.lib.C_SetAttributeValue(this.#session.handle, r.priv, [{ type: pk('CKA_EXTRACTABLE'), value: false }]);
      } catch (e) {
        if (isCkr(e, 'CKR_ATTRIBUTE_READ_ONLY') || isCkr(e, 'CKR_ACTION_PROHIBITED') || isCkr(e, 'CKR_TEMPLATE_INCONSISTENT')) return false;
        throw e;
      }
      const now = bool(this.#session.attributes(r.priv, [pk('CKA_EXTRACTABLE')]).get(pk('CKA_EXTRACTABLE')));
      if (!now) r.extractable = false;
      return !now;
    });
  }

  // -------------------------------------------------------------------------------------------
  // internals

  #assertOpen(): void {
    // A programming error (like the software store's), not a token condition.
    if (this.#closed) throw new Error(`PKCS#11 key store ${this.uri} is closed`);
  }

  #exists(label: string): KeyStoreError {
    return new KeyStoreError(ErrorCode.KEYSTORE_EXISTS, `a key labelled ${JSON.stringify(label)} already exists on token ${JSON.stringify(this.token.label)}`);
  }

  #assertLabelFree(label: string): void {
    const found = this.#run('checking the label', () =>
      [pk('CKO_PRIVATE_KEY'), pk('CKO_PUBLIC_KEY')].some(
        (cls) => this.#session.find([{ type: pk('CKA_CLASS'), value: cls }, { type: pk('CKA_LABEL'), value: label }], 1).length > 0,
      ),
    );
    if (found) throw this.#exists(label);
  }

  /** Runs synchronous Cryptoki work, mapping untyped failures. */
  #run<T>(what: string, fn: () => T): T {
    this.#assertOpen();
    try {
      return fn();
    } catch (e) {
      throw this.#mapError(e, 'C_*', what);
    }
  }

  #mapError(e: unknown, operation: string, context: string): Error {
    if (e instanceof MeshkitError || e instanceof TypeError || e instanceof RangeError) return e;
    const err = toPkcs11Error(e, operation, `${context} on token ${JSON.stringify(this.token.label)}`);
    return err;
  }

  #requireMechanism(code: number, why: string): void {
    if (!this.#mechanisms.has(code)) {
      throw new UnsupportedError(
        ErrorCode.NOT_SUPPORTED,
        `token ${JSON.stringify(this.token.label)} (${this.token.manufacturer} ${this.token.model}) does not offer ${mechanismName(code)}, needed for ${why}`,
      );
    }
  }

  #requireUsageMechanism(curve: Curve, usage: KeyUsage): void {
    if (usage === 'sign') this.#requireMechanism(curve === 'P-256' ? pk('CKM_ECDSA') : CKM_EDDSA, `${curve} signatures`);
    else this.#requireMechanism(pk('CKM_ECDH1_DERIVE'), `${curve} key agreement`);
  }

  #keyTypeFor(curve: Curve, forced: Pkcs11KeyCreateOptions['keyType']): number {
    if (curve === 'P-256') return pk('CKK_EC');
    if (curve === 'Ed25519' || curve === 'Ed448') return CKK_EC_EDWARDS;
    if (forced !== undefined && forced !== 'CKK_EC_MONTGOMERY' && forced !== 'CKK_EC_EDWARDS') {
      throw new RangeError(`"keyType" expected 'CKK_EC_MONTGOMERY' or 'CKK_EC_EDWARDS', got ${JSON.stringify(forced)}`);
    }
    if (forced === 'CKK_EC_MONTGOMERY') {
      this.#requireMechanism(CKM_EC_MONTGOMERY_KEY_PAIR_GEN, `${curve} keys of type CKK_EC_MONTGOMERY`);
      return CKK_EC_MONTGOMERY;
    }
    if (forced === 'CKK_EC_EDWARDS') return CKK_EC_EDWARDS;
    return this.#mechanisms.has(CKM_EC_MONTGOMERY_KEY_PAIR_GEN) ? CKK_EC_MONTGOMERY : CKK_EC_EDWARDS;
  }

  #privateAttributes(usage: KeyUsage, opts: Pkcs11KeyCreateOptions): pkcs11js.Template {
    return [
      { type: pk('CKA_CLASS'), value: pk('CKO_PRIVATE_KEY') },
      { type: pk('CKA_PRIVATE'), value: true },
      { type: pk('CKA_SENSITIVE'), value: true },
      { type: pk('CKA_EXTRACTABLE'), value: opts.extractable === true },
      { type: pk('CKA_SIGN'), value: usage === 'sign' },
      { type: pk('CKA_DERIVE'), value: usage === 'derive' },
      ...(opts.alwaysAuthenticate === true ? [{ type: pk('CKA_ALWAYS_AUTHENTICATE'), value: true }] : []),
    ].filter((a, i, all) => all.findIndex((b) => b.type === a.type) === i);
  }

  #create(template: pkcs11js.Template, what: string): Buffer {
    const lib = this.#session.lib;
    try {
      return lib.C_CreateObject(this.#session.handle, template);
    } catch (e) {
      throw this.#mapError(e, 'C_CreateObject', what);
    }
  }

  /**
   * C_CreateObject of a private key; a token that refuses host-made private keys (tpm2-pkcs11, most
   * cards: CKR_ATTRIBUTE_VALUE_INVALID, CKR_TEMPLATE_INCONSISTENT …) gives an UnsupportedError
   * naming the token and C_CreateObject — the key was already checked on the host.
   */
  #createPrivate(template: pkcs11js.Template, curve: Curve, label: string): Buffer {
    const lib = this.#session.lib;
    try {
      return lib.C_CreateObject(this.#session.handle, template);
    } catch (e) {
      if (isImportRefusal(e)) {
        throw new UnsupportedError(
          ErrorCode.NOT_SUPPORTED,
          `token ${JSON.stringify(this.token.label)} (${this.token.manufacturer} ${this.token.model}) does not import private keys: ` +
            `C_CreateObject of ${curve} key ${JSON.stringify(label)} failed with ${ckrName(ckrOf(e) ?? 0)}; generate the key on the token instead`,
          { cause: e },
        );
      }
      throw this.#mapError(e, 'C_CreateObject', `importing ${curve} key ${JSON.stringify(label)}`);
    }
  }

  #createPublic(publicKey: PublicKey, label: string, id: Buffer, usage: KeyUsage, keyType: number, onToken = true): Buffer {
    return this.#create(
      [
        { type: pk('CKA_CLASS'), value: pk('CKO_PUBLIC_KEY') },
        { type: pk('CKA_KEY_TYPE'), value: keyType },
        { type: pk('CKA_TOKEN'), value: onToken },
        { type: pk('CKA_PRIVATE'), value: false },
        { type: pk('CKA_LABEL'), value: label },
        { type: pk('CKA_ID'), value: id },
        { type: pk('CKA_EC_PARAMS'), value: Buffer.from(ecParams(publicKey.curve)) },
        { type: pk('CKA_EC_POINT'), value: Buffer.from(publicKeyToEcPoint(publicKey)) },
        ...(usage === 'sign' ? [{ type: pk('CKA_VERIFY'), value: true }] : []),
      ],
      `creating the public key object of ${JSON.stringify(label)}`,
    );
  }

  #setId(object: Buffer, id: Buffer): void {
    const lib = this.#session.lib;
    try {
      lib.C_SetAttributeValue(this.#session.handle, object, [{ type: pk('CKA_ID'), value: id }]);
    } catch (e) {
      throw toPkcs11Error(e, 'C_SetAttributeValue', 'setting CKA_ID');
    }
  }

  /** The object handle of a KEK given by label or by an AesKeyHandle of this store. */
  #kek(key: string | AesKeyHandle, field: string): Buffer {
    if (typeof key === 'string') return this.#findKek(key);
    const entry = typeof key === 'object' && key !== null ? this.#aesKeys.get(key) : undefined;
    if (entry === undefined) throw new TypeError(`"${field}" expected a KEK label or an AesKeyHandle from this Pkcs11KeyStore`);
    if (entry.object === undefined) throw new TypeError(`"${field}": AES key ${JSON.stringify(key.label)} was destroyed`);
    this.#assertOpen();
    return entry.object;
  }

  #findKek(label: string): Buffer {
    alabel(label, 'wrappingKeyLabel');
    const found = this.#run('finding the key-encryption key', () =>
      this.#session.find([
        { type: pk('CKA_CLASS'), value: pk('CKO_SECRET_KEY') },
        { type: pk('CKA_LABEL'), value: label },
      ]),
    );
    if (found.length === 0) {
      throw new Pkcs11Error(ErrorCode.PKCS11_OBJECT_NOT_FOUND, `no secret key labelled ${JSON.stringify(label)} on token ${JSON.stringify(this.token.label)}`);
    }
    if (found.length > 1) {
      throw new Pkcs11Error(ErrorCode.PKCS11_OBJECT_AMBIGUOUS, `${found.length} secret keys are labelled ${JSON.stringify(label)} on token ${JSON.stringify(this.token.label)}`);
    }
    return found[0] as Buffer;
  }

  #wrapMechanism(name: WrapMechanism): number {
    if (name !== 'CKM_AES_KEY_WRAP' && name !== 'CKM_AES_KEY_WRAP_PAD') {
      throw new RangeError(`"mechanism" expected 'CKM_AES_KEY_WRAP' or 'CKM_AES_KEY_WRAP_PAD', got ${JSON.stringify(name)}`);
    }
    const code = pk(name);
    this.#requireMechanism(code, 'key wrapping');
    return code;
  }

  #privateKeys(extra: pkcs11js.Template): Buffer[] {
    return this.#session.find([{ type: pk('CKA_CLASS'), value: pk('CKO_PRIVATE_KEY') }, ...extra]);
  }

  /** Reads a private key object and its public key; undefined for keys meshkit cannot use. */
  #record(priv: Buffer): KeyRecord | undefined {
    const s = this.#session;
    const a = s.attributes(priv, [
      pk('CKA_LABEL'),
      pk('CKA_ID'),
      pk('CKA_KEY_TYPE'),
      pk('CKA_EC_PARAMS'),
      pk('CKA_SIGN'),
      pk('CKA_DERIVE'),
      pk('CKA_EXTRACTABLE'),
      pk('CKA_ALWAYS_AUTHENTICATE'),
    ]);
    const keyType = ulong(a.get(pk('CKA_KEY_TYPE')));
    if (keyType !== pk('CKK_EC') && keyType !== CKK_EC_EDWARDS && keyType !== CKK_EC_MONTGOMERY) return undefined;
    const params = a.get(pk('CKA_EC_PARAMS'));
    if (params === undefined) return undefined;
    let curve: Curve;
    try {
      curve = curveFromEcParams(params);
    } catch {
      return undefined; // another curve (P-384, secp256k1 …)
    }
    const id = a.get(pk('CKA_ID')) ?? Buffer.alloc(0);
    const label = (a.get(pk('CKA_LABEL')) ?? Buffer.alloc(0)).toString('utf8');
    const pubs = s.find([
      { type: pk('CKA_CLASS'), value: pk('CKO_PUBLIC_KEY') },
      { type: pk('CKA_ID'), value: id },
    ]);
    let point: Buffer | undefined;
    let pub: Buffer | undefined;
    for (const p of pubs) {
      point = s.attributes(p, [pk('CKA_EC_POINT')]).get(pk('CKA_EC_POINT'));
      if (point !== undefined) {
        pub = p;
        break;
      }
    }
    point ??= s.attributes(priv, [pk('CKA_EC_POINT')]).get(pk('CKA_EC_POINT'));
    if (point === undefined) return undefined;
    let publicKey: PublicKey;
    try {
      publicKey = publicKeyFromEcPoint(curve, point);
    } catch {
      return undefined;
    }
    const sign = bool(a.get(pk('CKA_SIGN')));
    const derive = bool(a.get(pk('CKA_DERIVE')));
    const usage: KeyUsage = curve === 'X25519' || curve === 'X448' ? 'derive' : curve === 'P-256' ? (sign || !derive ? 'sign' : 'derive') : 'sign';
    return {
      priv,
      pub,
      label,
      id,
      curve,
      usage,
      extractable: bool(a.get(pk('CKA_EXTRACTABLE'))),
      alwaysAuthenticate: bool(a.get(pk('CKA_ALWAYS_AUTHENTICATE'))),
      publicKey,
      keyId: computeKeyId(publicKey),
    };
  }

  async #findOne(match: { label?: string; id?: Uint8Array }, _forDelete = false): Promise<KeyRecord> {
    const template: pkcs11js.Template = [];
    if (match.label !== undefined) template.push({ type: pk('CKA_LABEL'), value: match.label });
    if (match.id !== undefined) template.push({ type: pk('CKA_ID'), value: Buffer.from(match.id) });
    const records = this.#run('finding a key', () => this.#privateKeys(template).map((h) => this.#record(h)));
    const usable = records.filter((r): r is KeyRecord => r !== undefined);
    const what = [
      ...(match.label === undefined ? [] : [`labelled ${JSON.stringify(match.label)}`]),
      ...(match.id === undefined ? [] : [`with id ${toHex(match.id)}`]),
    ].join(' ');
    if (usable.length === 0) {
      const note = records.length > 0 ? ` (${records.length} private key object(s) match but are not Ed25519/Ed448/X25519/X448/P-256 keys with a public point)` : '';
      if (match.label !== undefined) {
        const labels = (await this.list()).map((i) => JSON.stringify(i.label));
        throw new KeyStoreError(
          ErrorCode.KEYSTORE_NOT_FOUND,
          `no key ${what} on token ${JSON.stringify(this.token.label)}${note}; ` +
            (labels.length === 0 ? 'the token holds no keys' : `labels present: ${labels.join(', ')}`),
        );
      }
      throw new Pkcs11Error(ErrorCode.PKCS11_OBJECT_NOT_FOUND, `no key ${what} on token ${JSON.stringify(this.token.label)}${note}`, {
        operation: 'C_FindObjects',
      });
    }
    if (usable.length > 1) {
      throw new Pkcs11Error(
        ErrorCode.PKCS11_OBJECT_AMBIGUOUS,
        `${usable.length} keys ${what} on token ${JSON.stringify(this.token.label)}: ` +
          `${usable.map((r) => `id=${r.id.toString('hex')} (${r.curve}, ${r.keyId})`).join(', ')}; name the key by id=`,
        { operation: 'C_FindObjects' },
      );
    }
    return usable[0] as KeyRecord;
  }

  #info(r: KeyRecord): KeyInfo {
    return {
      label: r.label,
      keyId: r.keyId,
      curve: r.curve,
      usage: r.usage,
      publicJwk: publicKeyToJwk(r.publicKey),
      location: formatPkcs11Uri({
        token: this.token.label,
        object: r.label,
        id: new Uint8Array(r.id),
        type: 'private',
        modulePath: this.module.path,
      }),
      extractable: r.extractable,
    };
  }

  /** A sign / derive with the context-specific login a CKA_ALWAYS_AUTHENTICATE key needs. */
  async #withKey<T>(r: KeyRecord, what: string, op: (lib: pkcs11js.PKCS11, session: Buffer, contextLogin: () => void) => T): Promise<T> {
    this.#assertOpen();
    const session = this.#session;
    const run = (pin: string | undefined): T => {
      try {
        const lib = session.lib;
        return op(lib, session.handle, () => {
          if (pin !== undefined) session.contextLogin(pin);
        });
      } catch (e) {
        throw this.#mapError(e, 'C_*', `${what} with key ${JSON.stringify(r.label)}`);
      }
    };
    if (!r.alwaysAuthenticate) return run(undefined);
    return withPin(this.#pin, (pin) => run(pin));
  }

  /** What a failed signature says it was doing (a removed card must name the token and the key). */
  #signContext(r: KeyRecord): string {
    return `signing with key ${JSON.stringify(r.label)} on token ${JSON.stringify(this.token.label)}`;
  }

  #sign(r: KeyRecord, data: Uint8Array): Promise<Uint8Array> {
    const curve = r.curve;
    const pool = this.#pool;
    // An empty Buffer may reach the module as a NULL pointer (SoftHSM: CKR_ARGUMENTS_BAD): pass an
    // empty view of a real allocation instead. The pooled (asynchronous) path signs a copy: the
    // module reads it on another thread, after the caller got control back.
    const input =
      curve === 'P-256'
        ? createHash('sha256').update(data).digest()
        : data.length === 0
          ? Buffer.alloc(1).subarray(0, 0)
          : pool === undefined
            ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
            : Buffer.from(data);
    const mechanism = curve === 'P-256' ? pk('CKM_ECDSA') : CKM_EDDSA;
    const outLength = curve === 'P-256' ? 144 : (SIG_LENGTH[curve] ?? 114);
    if (pool !== undefined) return this.#poolSign(pool, r, input, mechanism, outLength);
    return this.#withKey(r, 'signing', (lib, session, contextLogin) => {
      try {
        lib.C_SignInit(session, { mechanism }, r.priv);
      } catch (e) {
        throw toPkcs11Error(e, 'C_SignInit', this.#signContext(r));
      }
      let sig: Buffer;
      try {
        contextLogin();
        sig = lib.C_Sign(session, input, Buffer.alloc(outLength));
      } catch (e) {
        terminateSign(lib, session, input, outLength);
        throw e instanceof MeshkitError ? e : toPkcs11Error(e, 'C_Sign', this.#signContext(r));
      }
      return signatureResult(curve, sig);
    });
  }

  /**
   * A signature on a free pool session: C_SignInit (+ the context-specific login of a
   * CKA_ALWAYS_AUTHENTICATE key, on this same session) synchronously, then C_SignAsync.
   */
  async #poolSign(pool: Pkcs11SessionPool, r: KeyRecord, input: Buffer, mechanism: number, outLength: number): Promise<Uint8Array> {
    this.#assertOpen();
    try {
      return await pool.use(async (session) => {
        const lib = session.lib;
        const h = session.handle;
        const begin = (pin: string | undefined): void => {
          try {
            lib.C_SignInit(h, { mechanism }, r.priv);
          } catch (e) {
            throw toPkcs11Error(e, 'C_SignInit', this.#signContext(r));
          }
          if (pin === undefined) return;
          try {
            session.contextLogin(pin);
          } catch (e) {
            terminateSign(lib, h, input, outLength);
            throw e;
          }
        };
        if (r.alwaysAuthenticate) await withPin(this.#pin, begin);
        else begin(undefined);
        let sig: Buffer;
        try {
          sig = this.#asyncSign ? await lib.C_SignAsync(h, input, Buffer.alloc(outLength)) : lib.C_Sign(h, input, Buffer.alloc(outLength));
        } catch (e) {
          // (the reference to `input` here also keeps it alive while the module reads it)
          terminateSign(lib, h, input, outLength);
          throw toPkcs11Error(e, 'C_Sign', this.#signContext(r));
        }
        return signatureResult(r.curve, sig);
      });
    } catch (e) {
      throw this.#mapError(e, 'C_*', `signing with key ${JSON.stringify(r.label)}`);
    }
  }

  async #derive(r: KeyRecord, peer: PublicJwk): Promise<Uint8Array> {
    let peerKey: PublicKey;
    try {
      peerKey = publicKeyFromJwk(peer);
    } catch (e) {
      if (e instanceof MeshkitError && !(e instanceof KeyError)) throw new KeyError(ErrorCode.KEY_INVALID, e.message, { cause: e });
      throw e;
    }
    if (peerKey.curve !== r.curve) throw new KeyError(ErrorCode.KEY_INVALID, `"peer" is a ${peerKey.curve} key, expected ${r.curve}`);
    const zLength = Z_LENGTH[r.curve];
    const mechanism = {
      mechanism: pk('CKM_ECDH1_DERIVE'),
      parameter: { type: pk('CK_PARAMS_EC_DH'), kdf: pk('CKD_NULL'), publicData: Buffer.from(peerKey.raw) } as pkcs11js.ECDH1,
    };
    const template = secretTemplate(zLength);
    const pool = this.#pool;
    if (pool !== undefined) {
      this.#assertOpen();
      try {
        return await pool.use(async (session) => {
          const lib = session.lib;
          const h = session.handle;
          if (r.alwaysAuthenticate) await withPin(this.#pin, (pin) => session.contextLogin(pin));
          // Synchronous on purpose (DERIVE_NOTE in the header): never two C_DeriveKey at once in this process.
          let secret: Buffer;
          try {
            secret = lib.C_DeriveKey(h, mechanism, r.priv, template);
          } catch (e) {
            throw deriveError(e);
          }
          return readSecret(lib, h, secret, zLength);
        });
      } catch (e) {
        throw this.#mapError(e, 'C_*', `key agreement with key ${JSON.stringify(r.label)}`);
      }
    }
    return this.#withKey(r, 'key agreement', (lib, session, contextLogin) => {
      let secret: Buffer;
      try {
        contextLogin();
        secret = lib.C_DeriveKey(session, mechanism, r.priv, template);
      } catch (e) {
        throw deriveError(e);
      }
      return readSecret(lib, session, secret, zLength);
    });
  }

  /** Checks that a freshly unwrapped private key belongs to its public key. */
  async #checkPair(handle: KeyHandle, r: KeyRecord): Promise<void> {
    if (r.usage === 'sign') {
      const challenge = randomBytes(32);
      const sig = await handle.signer().sign(challenge);
      const key = publicKeyObject(r.publicKey);
      const ok = r.curve === 'P-256' ? nodeVerify('sha256', challenge, { key, dsaEncoding: 'ieee-p1363' }, sig) : nodeVerify(null, challenge, key, sig);
      if (!ok) throw new KeyError(ErrorCode.KEY_INVALID, `the unwrapped key does not belong to "publicJwk"`);
    }
    // derive keys: a wrong pair cannot be detected without a peer private key; the curve was checked.
  }

  #handle(r: KeyRecord): KeyHandle {
    const info = this.#info(r);
    const sign = (data: Uint8Array): Promise<Uint8Array> => this.#sign(r, data);
    const derive = (peer: PublicJwk): Promise<Uint8Array> => this.#derive(r, peer);
    const tokenLabel = this.token.label;
    const handle: KeyHandle = {
      info,
      signer(): Signer {
        if (r.usage !== 'sign') {
          throw new UnsupportedError(ErrorCode.NOT_SUPPORTED, `key ${JSON.stringify(r.label)} (${r.curve}) is a ${r.usage} key, not a signing key`);
        }
        return {
          keyId: info.keyId,
          algorithm: signatureAlgorithmFor(r.curve),
          publicJwk: { ...info.publicJwk },
          async sign(data: Uint8Array): Promise<Uint8Array> {
            abytes(data, 'data');
            return sign(data);
          },
        };
      },
      decrypter(): Decrypter {
        if (r.usage !== 'derive') {
          throw new UnsupportedError(ErrorCode.NOT_SUPPORTED, `key ${JSON.stringify(r.label)} (${r.curve}) is a ${r.usage} key, not a key-agreement key`);
        }
        return {
          keyId: info.keyId,
          publicJwk: { ...info.publicJwk },
          deriveSharedSecret: derive,
        };
      },
      async exportPrivateJwk(): Promise<PrivateJwk> {
        throw new UnsupportedError(
          ErrorCode.NOT_SUPPORTED,
          `key ${JSON.stringify(r.label)} is on token ${JSON.stringify(tokenLabel)}: token keys are not exported` +
            (r.extractable ? ' (it is extractable: use wrapKey under a key-encryption key)' : ''),
        );
      },
    };
    this.#handles.set(handle, r);
    return handle;
  }
}


/**
 * Opens the store behind an object URI and finds the key (by `object` = label and / or `id`).
 * The caller closes `store`.
 * @throws KeyStoreError ERR_KEY_URI_INVALID when the URI names no object or a non-private type.
 * @throws as {@link Pkcs11KeyStore.open}, {@link Pkcs11KeyStore.get} and {@link Pkcs11KeyStore.getById}.
 */
export async function openPkcs11KeyReference(
  uri: string,
  pin: SecretSource,
  opts: Pkcs11StoreOptions = {},
): Promise<{ store: Pkcs11KeyStore; handle: KeyHandle }> {
  const { uri: parsed } = parsePkcs11Uri(uri);
  if (parsed.object === undefined && parsed.id === undefined) {
    throw new KeyStoreError(ErrorCode.KEY_URI_INVALID, `the PKCS#11 URI names no key: add object=LABEL or id=%XX… (e.g. pkcs11:token=master;object=admin)`);
  }
  if (parsed.type !== undefined && parsed.type !== 'private') {
    throw new KeyStoreError(ErrorCode.KEY_URI_INVALID, `the PKCS#11 URI names a ${parsed.type} object; meshkit keys are type=private`);
  }
  const store = await Pkcs11KeyStore.open(uri, pin, opts);
  try {
    const match: { label?: string; id?: Uint8Array } = {};
    if (parsed.object !== undefined) match.label = parsed.object;
    if (parsed.id !== undefined) match.id = parsed.id;
    return { store, handle: await store.find(match) };
  } catch (e) {
    await store.close();
    throw e;
  }
}
