/**
 * The software key store: several labelled private keys in one encrypted JSON file
 * (`file:PATH#LABEL`), the embedded default when no token is configured.
 *
 * File format (version 1, mode 0600):
 * ```json
 * { "format": "meshkit-keystore", "version": 1,
 *   "kdf": { "alg": "scrypt", "N": 131072, "r": 8, "p": 1, "salt": "<16 bytes, base64url>" },
 *   "check": { "iv": "…", "data": "…" },
 *   "keys": [ { "label", "curve", "usage", "extractable", "created", "keyId", "publicJwk", "iv", "data" } ] }
 * ```
 * - The key-encryption key (KEK, 32 bytes) is scrypt(passphrase, salt) — memory-hard, N = 2^17,
 *   r = 8, p = 1 by default (128 MiB). Weaker parameters (down to N = 2^14, for tests) only through
 *   an explicit `kdfCost` option; the parameters are stored in the file.
 * - Each private key (the raw JWK `d` bytes) is sealed with AES-256-GCM under the KEK, a fresh
 *   12-byte IV and AAD = JSON `["meshkit-keystore", version, label, curve, keyId, usage, extractable]`,
 *   so a ciphertext moved to another label, or an edited curve / key id / flag, fails to open.
 * - `check` is AES-256-GCM over a constant (AAD binds the KDF parameters): a wrong passphrase is
 *   reported as ERR_KEYSTORE_BAD_PASSPHRASE before any key is touched.
 * - Writes are atomic: a temporary file in the same directory, fsync, rename (or link for a new
 *   store, so an existing one is never replaced), fsync of the directory. A kill mid-write leaves
 *   the old file intact. There is no cross-process lock: concurrent writers may lose one update.
 *
 * Secret handling (the choice the brief asks to document): the store holds only the KEK while it is
 * open (a Buffer, wiped by `close()`). Private keys are decrypted on each use (sign, derive, export)
 * into a Buffer, turned into a PKCS#8 DER Buffer and a node KeyObject, used, and both Buffers are
 * wiped at once. KeyObjects (OpenSSL memory) cannot be wiped from JavaScript; they are never cached,
 * so they live only until garbage collection. Strings (an exported JWK's `d`) cannot be wiped either.
 */
import {
  createCipheriv,
  createDecipheriv,
  diffieHellman,
  randomBytes,
  scrypt as scryptCb,
  sign as nodeSign,
  type KeyObject,
} from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { abytes, aobject, b64u, equalBytes, fromB64u, utf8, wipe } from '../core/bytes.js';
import { ErrorCode, KeyError, KeyStoreError, MeshkitError, UnsupportedError } from '../core/errors.js';
import { keyId as computeKeyId, publicKeyFromJwk, publicKeyObject, signatureAlgorithmFor } from '../core/keys.js';
import type { Curve, Decrypter, PublicJwk, Signer } from '../core/signer.js';
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
} from './types.js';
import { formatFileReference } from './uri.js';
import { writeFileAtomic } from '../util/fs.js';
import { checkPrivateJwk, p256ScalarInRange, PRIVATE_LENGTH, privateKeyObject, publicOf } from './private-key.js';

/**
 * Where a passphrase comes from. A function is called only when the store needs the passphrase
 * (creating it, or the first private operation) and the bytes it returns are wiped after use.
 * A Uint8Array is used as given and stays the caller's to wipe.
 */
export type SecretSource = Uint8Array | (() => Uint8Array | Promise<Uint8Array>);

/** Options for {@link SoftwareKeyStore.open}. */
export interface SoftwareKeyStoreOptions {
  /** Create the store file when it does not exist (default false: a missing file is ERR_KEYSTORE_NOT_FOUND). */
  create?: boolean;
  /** log2 of the scrypt N for a new store: 14…22, default 17. Ignored for an existing store. */
  kdfCost?: number;
  /**
   * Default false: the passphrase is asked for and checked by `open`. When true, it is asked for
   * only at the first private operation, so public information (`list`, `get(...).info`) needs none.
   */
  deferUnlock?: boolean;
}

const FORMAT = 'meshkit-keystore';
const VERSION = 1;
/** Default scrypt cost: N = 2^17 (128 MiB with r = 8). */
export const DEFAULT_KDF_COST = 17;
/** Smallest scrypt cost accepted (explicitly, e.g. by tests): N = 2^14. */
export const MIN_KDF_COST = 14;
/** Largest scrypt cost accepted: N = 2^22 (4 GiB with r = 8). */
export const MAX_KDF_COST = 22;
const KDF_R = 8;
const KDF_P = 1;
const SALT_LENGTH = 16;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const KEK_LENGTH = 32;
const CHECK_PLAINTEXT = 'meshkit-keystore passphrase check v1';
const MAX_FILE_SIZE = 16 * 1024 * 1024;

interface KdfParams {
  alg: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
}
interface Sealed {
  iv: string;
  data: string;
}
interface KeyEntry extends Sealed {
  label: string;
  curve: Curve;
  usage: KeyUsage;
  extractable: boolean;
  created?: string;
  keyId: string;
  publicJwk: PublicJwk;
}
interface StoreFile {
  format: typeof FORMAT;
  version: typeof VERSION;
  kdf: KdfParams;
  check: Sealed;
  keys: KeyEntry[];
}

function scrypt(passphrase: Uint8Array, salt: Uint8Array, kdf: KdfParams): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    scryptCb(passphrase, salt, KEK_LENGTH, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r + 1024 * 1024 }, (err, key) => {
      if (err) reject(err);
      else resolvePromise(key);
    });
  });
}

function seal(kek: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Sealed {
  const iv = randomBytes(IV_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', kek, iv, { authTagLength: TAG_LENGTH });
  cipher.setAAD(aad);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { iv: b64u(iv), data: b64u(ct) };
}

/** Opens a sealed value; returns undefined when authentication fails. The result is the caller's to wipe. */
function unseal(kek: Uint8Array, sealed: Sealed, aad: Uint8Array): Buffer | undefined {
  const iv = fromB64u(sealed.iv, 'iv');
  const all = fromB64u(sealed.data, 'data');
  if (iv.length !== IV_LENGTH || all.length < TAG_LENGTH) return undefined;
  const decipher = createDecipheriv('aes-256-gcm', kek, iv, { authTagLength: TAG_LENGTH });
  decipher.setAAD(aad);
  decipher.setAuthTag(all.subarray(all.length - TAG_LENGTH));
  const out = decipher.update(all.subarray(0, all.length - TAG_LENGTH));
  try {
    const last = decipher.final();
    return last.length === 0 ? out : Buffer.concat([out, last]);
  } catch {
    wipe(out);
    return undefined;
  }
}

function keyAad(e: Pick<KeyEntry, 'label' | 'curve' | 'keyId' | 'usage' | 'extractable'>): Uint8Array {
  return utf8(JSON.stringify([FORMAT, VERSION, e.label, e.curve, e.keyId, e.usage, e.extractable]));
}

function checkAad(kdf: KdfParams): Uint8Array {
  return utf8(JSON.stringify([FORMAT, VERSION, 'check', kdf.alg, kdf.N, kdf.r, kdf.p, kdf.salt]));
}

/** A node KeyObject for a raw private key; the DER copy is wiped before returning. */
function closedError(path: string): Error {
  return new Error(`key store ${path} is closed`);
}

/** Validates the parsed JSON of a store file; throws ERR_KEYSTORE_CORRUPT naming the path and the fault. */
function validateFile(value: unknown, path: string): StoreFile {
  const corrupt = (why: string): KeyStoreError =>
    new KeyStoreError(ErrorCode.KEYSTORE_CORRUPT, `key store ${path} is corrupt: ${why}`);
  const isB64u = (v: unknown, len?: number): boolean => {
    if (typeof v !== 'string') return false;
    try {
      const b = fromB64u(v);
      return len === undefined || b.length === len;
    } catch {
      return false;
    }
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw corrupt('not a JSON object');
  const f = value as Record<string, unknown>;
  if (f['format'] !== FORMAT) throw corrupt(`"format" is not ${FORMAT}`);
  if (f['version'] !== VERSION) throw corrupt(`unsupported version ${JSON.stringify(f['version'])}`);
  const kdf = f['kdf'] as Record<string, unknown> | undefined;
  if (typeof kdf !== 'object' || kdf === null) throw corrupt('"kdf" missing');
  const N = kdf['N'];
  if (
    kdf['alg'] !== 'scrypt' ||
    typeof N !== 'number' ||
    !Number.isSafeInteger(N) ||
    N < 2 ** MIN_KDF_COST ||
    N > 2 ** MAX_KDF_COST ||
    (N & (N - 1)) !== 0 ||
    kdf['r'] !== KDF_R ||
    kdf['p'] !== KDF_P ||
    !isB64u(kdf['salt'], SALT_LENGTH)
  ) {
    throw corrupt('bad "kdf" parameters');
  }
  const sealedOk = (s: unknown): boolean =>
    typeof s === 'object' && s !== null && isB64u((s as Sealed).iv, IV_LENGTH) && isB64u((s as Sealed).data);
  if (!sealedOk(f['check'])) throw corrupt('bad "check"');
  const keys = f['keys'];
  if (!Array.isArray(keys)) throw corrupt('"keys" is not an array');
  const seen = new Set<string>();
  for (const [i, k] of keys.entries()) {
    if (typeof k !== 'object' || k === null || !sealedOk(k)) throw corrupt(`key #${i} is malformed`);
    const e = k as Record<string, unknown>;
    const label = e['label'];
    try {
      alabel(label);
      acurve(e['curve']);
      resolveUsage(e['curve'] as Curve, e['usage']);
    } catch {
      throw corrupt(`key #${i} has a bad label, curve or usage`);
    }
    if (seen.has(label as string)) throw corrupt(`label ${JSON.stringify(label)} appears twice`);
    seen.add(label as string);
    if (typeof e['extractable'] !== 'boolean') throw corrupt(`key ${JSON.stringify(label)}: bad "extractable"`);
    if (e['created'] !== undefined && typeof e['created'] !== 'string') throw corrupt(`key ${JSON.stringify(label)}: bad "created"`);
    try {
      const pub = publicKeyFromJwk(e['publicJwk']);
      if (pub.curve !== e['curve'] || computeKeyId(pub) !== e['keyId']) throw new Error('mismatch');
    } catch {
      throw corrupt(`key ${JSON.stringify(label)}: public key and key id do not match`);
    }
  }
  return value as StoreFile;
}

async function readStoreFile(path: string): Promise<StoreFile | undefined> {
  let bytes: Buffer;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new KeyStoreError(ErrorCode.KEYSTORE_CORRUPT, `key store ${path} is not a regular file`);
    if (st.size > MAX_FILE_SIZE) throw new KeyStoreError(ErrorCode.KEYSTORE_CORRUPT, `key store ${path} is corrupt: too large`);
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (e instanceof MeshkitError) throw e;
    throw new KeyStoreError(ErrorCode.IO, `cannot read key store ${path}: ${(e as Error).message}`, { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new KeyStoreError(ErrorCode.KEYSTORE_CORRUPT, `key store ${path} is corrupt: not valid JSON (truncated?)`, { cause: e });
  }
  return validateFile(parsed, path);
}

function serialise(file: StoreFile): string {
  return JSON.stringify(file, null, 2) + '\n';
}

/** A key store in one encrypted file. Create with {@link SoftwareKeyStore.open}. */
export class SoftwareKeyStore implements KeyStore {
  /** `file:` reference of the store (absolute path). */
  readonly uri: string;
  /** Absolute path of the store file. */
  readonly path: string;
  #file: StoreFile;
  #source: SecretSource;
  #kek: Buffer | undefined;
  #unlocking: Promise<Buffer> | undefined;
  #closed = false;

  private constructor(path: string, file: StoreFile, source: SecretSource, kek: Buffer | undefined) {
    this.path = path;
    this.uri = formatFileReference(path);
    this.#file = file;
    this.#source = source;
    this.#kek = kek;
  }

  /**
   * Opens (or with `create`, creates) the store at `path`.
   * @param path the store file, relative to the working directory or absolute.
   * @param passphrase the passphrase, or a function returning it (see {@link SecretSource}).
   * @throws TypeError / RangeError for bad arguments (e.g. `kdfCost` outside 14…22).
   * @throws KeyStoreError ERR_KEYSTORE_NOT_FOUND (no file and no `create`), ERR_KEYSTORE_CORRUPT
   *   (unreadable, truncated or malformed file, naming the path), ERR_KEYSTORE_BAD_PASSPHRASE
   *   (unless `deferUnlock`), ERR_SECRET_SOURCE / ERR_IO from the passphrase source or the file system.
   */
  static async open(path: string, passphrase: SecretSource, opts: SoftwareKeyStoreOptions = {}): Promise<SoftwareKeyStore> {
    if (typeof path !== 'string' || path === '') throw new TypeError(`"path" expected a non-empty string`);
    if (!(passphrase instanceof Uint8Array) && typeof passphrase !== 'function') {
      throw new TypeError(`"passphrase" expected Uint8Array or function, got ${typeof passphrase}`);
    }
    aobject(opts, 'opts');
    const cost = opts.kdfCost ?? DEFAULT_KDF_COST;
    if (typeof cost !== 'number' || !Number.isSafeInteger(cost)) throw new TypeError(`"kdfCost" expected an integer, got ${typeof cost}`);
    if (cost < MIN_KDF_COST || cost > MAX_KDF_COST) {
      throw new RangeError(`"kdfCost" expected an integer in [${MIN_KDF_COST}, ${MAX_KDF_COST}], got ${cost}`);
    }
    const abs = resolve(path);
    const existing = await readStoreFile(abs);
    if (existing !== undefined) {
      const store = new SoftwareKeyStore(abs, existing, passphrase, undefined);
      if (opts.deferUnlock !== true) await store.unlock();
      return store;
    }
    if (opts.create !== true) {
      throw new KeyStoreError(ErrorCode.KEYSTORE_NOT_FOUND, `key store ${abs} does not exist (create it with "meshkit key generate")`);
    }
    const kdf: KdfParams = { alg: 'scrypt', N: 2 ** cost, r: KDF_R, p: KDF_P, salt: b64u(randomBytes(SALT_LENGTH)) };
    const kek = await deriveKek(passphrase, kdf);
    const file: StoreFile = { format: FORMAT, version: VERSION, kdf, check: seal(kek, utf8(CHECK_PLAINTEXT), checkAad(kdf)), keys: [] };
    try {
      await writeFileAtomic(abs, serialise(file), { mode: 0o600, exclusive: true, syncDir: 'best-effort' });
    } catch (e) {
      wipe(kek);
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        // Someone created it meanwhile: open theirs.
        return SoftwareKeyStore.open(path, passphrase, { ...opts, create: false });
      }
      throw new KeyStoreError(ErrorCode.IO, `cannot create key store ${abs}: ${(e as Error).message}`, { cause: e });
    }
    return new SoftwareKeyStore(abs, file, passphrase, kek);
  }

  /**
   * Derives the KEK from the passphrase and checks it (done by `open` unless `deferUnlock`).
   * Concurrent calls share one derivation; after a failure the next call asks the source again.
   * @throws KeyStoreError ERR_KEYSTORE_BAD_PASSPHRASE, ERR_SECRET_SOURCE.
   */
  async unlock(): Promise<void> {
    await this.#getKek();
  }

  async #getKek(): Promise<Buffer> {
    if (this.#closed) throw closedError(this.path);
    if (this.#kek !== undefined) return this.#kek;
    this.#unlocking ??= (async () => {
      const kdf = this.#file.kdf;
      const kek = await deriveKek(this.#source, kdf);
      const check = unseal(kek, this.#file.check, checkAad(kdf));
      const ok = check !== undefined && equalBytes(check, utf8(CHECK_PLAINTEXT));
      wipe(check);
      if (!ok) {
        wipe(kek);
        throw new KeyStoreError(ErrorCode.KEYSTORE_PASSPHRASE, `wrong passphrase for key store ${this.path}`);
      }
      if (this.#closed) {
        wipe(kek);
        throw closedError(this.path);
      }
      this.#kek = kek;
      return kek;
    })();
    try {
      return await this.#unlocking;
    } finally {
      this.#unlocking = undefined;
    }
  }

  /** Public information about every key, in label order. No passphrase needed. */
  async list(): Promise<KeyInfo[]> {
    this.#assertOpen();
    return this.#file.keys.map((e) => this.#info(e)).sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  }

  /**
   * Generates a fresh key from node:crypto's CSPRNG and stores it encrypted.
   * @throws RangeError / TypeError for a bad label, curve or usage.
   * @throws KeyStoreError ERR_KEYSTORE_EXISTS, ERR_KEYSTORE_BAD_PASSPHRASE, ERR_KEYSTORE_CORRUPT, ERR_IO.
   */
  async generate(label: string, curve: Curve, opts: KeyCreateOptions = {}): Promise<KeyHandle> {
    alabel(label);
    acurve(curve);
    aobject(opts, 'opts');
    const usage = resolveUsage(curve, opts.usage);
    let raw: Buffer;
    do {
      raw = randomBytes(PRIVATE_LENGTH[curve]);
    } while (curve === 'P-256' && !p256ScalarInRange(raw));
    try {
      return await this.#store(label, curve, raw, usage, opts.extractable === true);
    } finally {
      wipe(raw);
    }
  }

  /**
   * Stores an existing private key (e.g. recovered from escrow).
   * @throws TypeError / RangeError for bad arguments.
   * @throws KeyError ERR_KEY_INVALID when the JWK is malformed, `d` has the wrong length or range,
   *   or `x`/`y` do not belong to `d`.
   * @throws KeyStoreError ERR_KEYSTORE_EXISTS, ERR_KEYSTORE_BAD_PASSPHRASE, ERR_KEYSTORE_CORRUPT, ERR_IO.
   */
  async importPrivate(label: string, privateJwk: PrivateJwk, opts: KeyCreateOptions = {}): Promise<KeyHandle> {
    alabel(label);
    aobject(opts, 'opts');
    const { curve, usage, raw } = checkPrivateJwk(privateJwk, opts.usage);
    try {
      return await this.#store(label, curve, raw, usage, opts.extractable === true);
    } finally {
      wipe(raw);
    }
  }

  /**
   * The key stored under `label` (public information now; the private key is decrypted on use).
   * @throws KeyStoreError ERR_KEYSTORE_NOT_FOUND listing the labels present.
   */
  async get(label: string): Promise<KeyHandle> {
    alabel(label);
    this.#assertOpen();
    return this.#handle(this.#find(this.#file, label));
  }

  /**
   * Deletes the key under `label` (re-reading the file first, then writing it atomically).
   * @throws KeyStoreError ERR_KEYSTORE_NOT_FOUND, ERR_KEYSTORE_CORRUPT, ERR_IO.
   */
  async delete(label: string): Promise<void> {
    alabel(label);
    this.#assertOpen();
    await this.#update((file) => {
      this.#find(file, label);
      return { ...file, keys: file.keys.filter((k) => k.label !== label) };
    });
  }

  /** Wipes the KEK; handles stop working. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    wipe(this.#kek);
    this.#kek = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw closedError(this.path);
  }

  #find(file: StoreFile, label: string): KeyEntry {
    const entry = file.keys.find((k) => k.label === label);
    if (entry === undefined) {
      const labels = file.keys.map((k) => JSON.stringify(k.label)).sort();
      throw new KeyStoreError(
        ErrorCode.KEYSTORE_NOT_FOUND,
        `no key labelled ${JSON.stringify(label)} in key store ${this.path}; ` +
          (labels.length === 0 ? 'the store is empty' : `labels present: ${labels.join(', ')}`),
      );
    }
    return entry;
  }

  /** Re-reads the file, applies `change`, writes atomically and adopts the result. */
  async #update(change: (file: StoreFile) => StoreFile): Promise<void> {
    const current = await readStoreFile(this.path);
    if (current === undefined) throw new KeyStoreError(ErrorCode.KEYSTORE_NOT_FOUND, `key store ${this.path} was removed`);
    const k = current.kdf;
    const mine = this.#file.kdf;
    if (k.salt !== mine.salt || k.N !== mine.N || k.r !== mine.r || k.p !== mine.p || current.check.data !== this.#file.check.data) {
      throw new KeyStoreError(ErrorCode.KEYSTORE_CORRUPT, `key store ${this.path} was replaced by another store while open`);
    }
    const next = change(current);
    try {
      await writeFileAtomic(this.path, serialise(next), { mode: 0o600, syncDir: 'best-effort' });
    } catch (e) {
      throw new KeyStoreError(ErrorCode.IO, `cannot write key store ${this.path}: ${(e as Error).message}`, { cause: e });
    }
    this.#file = next;
  }

  async #store(label: string, curve: Curve, raw: Uint8Array, usage: KeyUsage, extractable: boolean): Promise<KeyHandle> {
    this.#assertOpen();
    if (this.#file.keys.some((k) => k.label === label)) throw this.#exists(label);
    const { publicJwk, keyId } = publicOf(privateKeyObject(curve, raw));
    const kek = await this.#getKek();
    const meta = { label, curve, usage, extractable, keyId };
    const entry: KeyEntry = { ...meta, created: new Date().toISOString(), publicJwk, ...seal(kek, raw, keyAad(meta)) };
    await this.#update((file) => {
      if (file.keys.some((k) => k.label === label)) throw this.#exists(label);
      return { ...file, keys: [...file.keys, entry] };
    });
    return this.#handle(entry);
  }

  #exists(label: string): KeyStoreError {
    return new KeyStoreError(ErrorCode.KEYSTORE_EXISTS, `a key labelled ${JSON.stringify(label)} already exists in key store ${this.path}`);
  }

  #info(e: KeyEntry): KeyInfo {
    return {
      label: e.label,
      keyId: e.keyId,
      curve: e.curve,
      usage: e.usage,
      publicJwk: { ...e.publicJwk },
      location: formatFileReference(this.path, e.label),
      extractable: e.extractable,
      ...(e.created === undefined ? {} : { created: e.created }),
    };
  }

  /** Decrypts the private key of `entry`, hands `use` a KeyObject, and wipes the decrypted bytes. */
  async #withPrivate<T>(entry: KeyEntry, use: (key: KeyObject, raw: Uint8Array) => T): Promise<T> {
    const kek = await this.#getKek();
    const raw = unseal(kek, entry, keyAad(entry));
    if (raw === undefined || raw.length !== PRIVATE_LENGTH[entry.curve]) {
      wipe(raw);
      throw new KeyStoreError(
        ErrorCode.KEYSTORE_CORRUPT,
        `key store ${this.path} is corrupt: key ${JSON.stringify(entry.label)} fails authentication (tampered or moved ciphertext)`,
      );
    }
    try {
      return use(privateKeyObject(entry.curve, raw), raw);
    } finally {
      wipe(raw);
    }
  }

  #handle(entry: KeyEntry): KeyHandle {
    const info = this.#info(entry);
    const withPrivate = <T>(use: (key: KeyObject, raw: Uint8Array) => T): Promise<T> => this.#withPrivate(entry, use);
    return {
      info,
      signer(): Signer {
        if (entry.usage !== 'sign') {
          throw new UnsupportedError(ErrorCode.NOT_SUPPORTED, `key ${JSON.stringify(entry.label)} (${entry.curve}) is a ${entry.usage} key, not a signing key`);
        }
        const algorithm = signatureAlgorithmFor(entry.curve);
        return {
          keyId: info.keyId,
          algorithm,
          publicJwk: { ...info.publicJwk },
          async sign(data: Uint8Array): Promise<Uint8Array> {
            abytes(data, 'data');
            return withPrivate((key) => {
              const sig = algorithm === 'ES256' ? nodeSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }) : nodeSign(null, data, key);
              return new Uint8Array(sig);
            });
          },
        };
      },
      decrypter(): Decrypter {
        if (entry.usage !== 'derive') {
          throw new UnsupportedError(ErrorCode.NOT_SUPPORTED, `key ${JSON.stringify(entry.label)} (${entry.curve}) is a ${entry.usage} key, not a key-agreement key`);
        }
        return {
          keyId: info.keyId,
          publicJwk: { ...info.publicJwk },
          async deriveSharedSecret(peer: PublicJwk): Promise<Uint8Array> {
            const peerKey = publicKeyFromJwk(peer);
            if (peerKey.curve !== entry.curve) {
              throw new KeyError(ErrorCode.KEY_INVALID, `"peer" is a ${peerKey.curve} key, expected ${entry.curve}`);
            }
            const publicKey = publicKeyObject(peerKey);
            return withPrivate((privateKey) => {
              try {
                return new Uint8Array(diffieHellman({ privateKey, publicKey }));
              } catch (e) {
                throw new KeyError(ErrorCode.KEY_INVALID, `key agreement with the peer key failed (low-order or invalid point?)`, { cause: e });
              }
            });
          },
        };
      },
      async exportPrivateJwk(): Promise<PrivateJwk> {
        if (!entry.extractable) {
          throw new UnsupportedError(ErrorCode.NOT_SUPPORTED, `key ${JSON.stringify(entry.label)} was not created extractable`);
        }
        return withPrivate((_key, raw) => ({ ...info.publicJwk, d: b64u(raw) }));
      },
    };
  }
}

async function deriveKek(source: SecretSource, kdf: KdfParams): Promise<Buffer> {
  const owned = typeof source === 'function';
  const passphrase = owned ? await source() : source;
  try {
    abytes(passphrase, 'passphrase');
    if (passphrase.length === 0) throw new KeyStoreError(ErrorCode.SECRET_SOURCE, 'the passphrase is empty');
    return await scrypt(passphrase, fromB64u(kdf.salt, 'salt'), kdf);
  } finally {
    if (owned) wipe(passphrase);
  }
}
