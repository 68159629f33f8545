/**
 * meshkit — the Mathematical Mesh for HSMs, smartcards and embedded devices.
 *
 * The package entry point: the pure profile core (UDF, keys, JOSE, Shamir, co-generation,
 * profiles, escrow, linked-hash logs) and the key stores. See docs/core-api.md and README.md.
 */
export * from './core/errors.js';
export * from './core/signer.js';
export * from './core/bytes.js';
export * from './core/base32.js';
export * from './core/udf.js';
export * from './core/keys.js';
export * from './core/jose.js';
export * from './core/shamir.js';
export * from './core/cogen.js';
export * from './core/profiles.js';
export * from './core/escrow.js';
export * from './core/hashlog.js';
export {
  SoftwareKeyStore,
  openKeyStore,
  openKeyReference,
  parseKeyReference,
  parseStoreReference,
  formatFileReference,
  DEFAULT_KDF_COST,
  type KeyStore,
  type KeyHandle,
  type KeyInfo,
  type KeyUsage,
  type KeyCreateOptions,
  type SecretSource,
} from './keystore/index.js';
