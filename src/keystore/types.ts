/**
 * The key store interfaces shared by every place a private key can live: the software store (an
 * encrypted file, `file:PATH#LABEL`), PKCS#11 tokens (`pkcs11:` URIs) and, later, devices.
 *
 * A store hands out {@link KeyHandle}s; a handle gives a {@link Signer} (for `sign` keys) or a
 * {@link Decrypter} (for `derive` keys). The pure core only ever sees those two interfaces.
 *
 * Usage is strict (key separation): a `sign` key has no decrypter and a `derive` key has no signer.
 * Defaults: Ed25519/Ed448 → `sign`; X25519/X448 → `derive`; P-256 → `sign` (P-256 may be created
 * with `usage: 'derive'` for ECDH-ES on tokens without X25519).
 */
import type { Curve, Decrypter, PrivateJwk, PublicJwk, Signer } from '../core/signer.js';
import { CURVES } from '../core/signer.js';
import { describe as describeValue } from '../core/bytes.js';

export type { Curve, Decrypter, PrivateJwk, PublicJwk, Signer };

/** What a key may do: produce signatures, or do key agreement (ECDH). */
export type KeyUsage = 'sign' | 'derive';


/** Public facts about a stored key. Never contains private material. */
export interface KeyInfo {
  /** The label the key is stored under (unique in its store). */
  label: string;
  /** The key UDF (UDF of the SPKI DER, application/pkix-keyinfo, 140 bits). */
  keyId: string;
  curve: Curve;
  usage: KeyUsage;
  publicJwk: PublicJwk;
  /** A key reference (URI) that finds this key again, e.g. `file:/abs/keys.json#master-sign`. */
  location: string;
  /** True when the private key may be exported (the ceremony's escrow path). */
  extractable: boolean;
  /** ISO 8601 creation time, when the store records it. */
  created?: string;
}

/** A stored private key. Operations go through the signer / decrypter; the private key stays in the store. */
export interface KeyHandle {
  readonly info: KeyInfo;
  /**
   * A Signer for this key.
   * @throws UnsupportedError (ERR_NOT_SUPPORTED) when the key's usage is not `sign`.
   */
  signer(): Signer;
  /**
   * A Decrypter (ECDH) for this key.
   * @throws UnsupportedError (ERR_NOT_SUPPORTED) when the key's usage is not `derive`.
   */
  decrypter(): Decrypter;
  /**
   * The private key as a JWK, only for keys created or imported with `extractable: true`.
   * The caller must not log or keep it longer than needed.
   * @throws UnsupportedError (ERR_NOT_SUPPORTED) when the key is not extractable or the store cannot export.
   */
  exportPrivateJwk(): Promise<PrivateJwk>;
}

/** Options for {@link KeyStore.generate} and {@link KeyStore.importPrivate}. */
export interface KeyCreateOptions {
  /** Default: {@link defaultUsage} of the curve. */
  usage?: KeyUsage;
  /** Default false. */
  extractable?: boolean;
}

/** A place that holds labelled private keys. Close it (or `await using`) when done. */
export interface KeyStore extends AsyncDisposable {
  /** The store's own reference, e.g. `file:/abs/keys.json` or a `pkcs11:` token URI. */
  readonly uri: string;
  /** Public information about every key, in label order. */
  list(): Promise<KeyInfo[]>;
  /**
   * Creates a fresh key under `label`.
   * @throws KeyStoreError ERR_KEYSTORE_EXISTS when the label is taken.
   * @throws RangeError for an unknown curve, a bad label or a usage the curve cannot have.
   */
  generate(label: string, curve: Curve, opts?: KeyCreateOptions): Promise<KeyHandle>;
  /**
   * Stores an existing private key under `label`.
   * @throws KeyStoreError ERR_KEYSTORE_EXISTS when the label is taken.
   * @throws KeyError ERR_KEY_INVALID when the JWK is malformed or its public part does not match `d`.
   */
  importPrivate(label: string, privateJwk: PrivateJwk, opts?: KeyCreateOptions): Promise<KeyHandle>;
  /**
   * The key stored under `label`.
   * @throws KeyStoreError ERR_KEYSTORE_NOT_FOUND (the message lists the labels present).
   */
  get(label: string): Promise<KeyHandle>;
  /**
   * Removes the key stored under `label`.
   * @throws KeyStoreError ERR_KEYSTORE_NOT_FOUND.
   */
  delete(label: string): Promise<void>;
  /** Releases the store (wipes held secrets, closes sessions). Idempotent. */
  close(): Promise<void>;
}

/** The default usage of a curve: Ed* and P-256 sign, X* derive. */
export function defaultUsage(curve: Curve): KeyUsage {
  return curve === 'X25519' || curve === 'X448' ? 'derive' : 'sign';
}

/** The usages a curve can have. */
export function allowedUsages(curve: Curve): readonly KeyUsage[] {
  switch (curve) {
    case 'Ed25519':
    case 'Ed448':
      return ['sign'];
    case 'X25519':
    case 'X448':
      return ['derive'];
    case 'P-256':
      return ['sign', 'derive'];
  }
}

/**
 * Checks a curve name.
 * @throws TypeError if not a string; RangeError if not one of the five curves.
 */
export function acurve(value: unknown, field = 'curve'): Curve {
  if (typeof value !== 'string') throw new TypeError(`"${field}" expected string, got ${describeValue(value)}`);
  if (!(CURVES as readonly string[]).includes(value)) {
    throw new RangeError(`"${field}" expected one of ${CURVES.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as Curve;
}

/**
 * Resolves and checks the usage of a new key.
 * @throws TypeError / RangeError when `usage` is not a usage the curve can have.
 */
export function resolveUsage(curve: Curve, usage: unknown): KeyUsage {
  if (usage === undefined) return defaultUsage(curve);
  if (usage !== 'sign' && usage !== 'derive') {
    throw new TypeError(`"usage" expected 'sign' or 'derive', got ${describeValue(usage)}`);
  }
  if (!allowedUsages(curve).includes(usage)) {
    throw new RangeError(`"usage" ${usage} is not possible for ${curve} (allowed: ${allowedUsages(curve).join(', ')})`);
  }
  return usage;
}

/** Largest label length accepted by the stores (characters). */
export const MAX_LABEL_LENGTH = 128;

/**
 * Checks a key label: 1–128 characters, no control characters.
 * @throws TypeError if not a string; RangeError if empty, too long or containing control characters.
 */
export function alabel(value: unknown, field = 'label'): string {
  if (typeof value !== 'string') throw new TypeError(`"${field}" expected string, got ${describeValue(value)}`);
  if (value.length === 0 || value.length > MAX_LABEL_LENGTH) {
    throw new RangeError(`"${field}" expected 1 to ${MAX_LABEL_LENGTH} characters, got length=${value.length}`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new RangeError(`"${field}" must not contain control characters`);
  return value;
}
