/**
 * Entry point of the key stores: turn a key reference (`file:PATH#LABEL`, later `pkcs11:…`) into an
 * open store and a key handle. Commands and services use these, never a store class directly.
 */
import { ErrorCode, UnsupportedError } from '../core/errors.js';
import type { KeyHandle, KeyStore } from './types.js';
import { SoftwareKeyStore, type SecretSource, type SoftwareKeyStoreOptions } from './software.js';
import { parseKeyReference, parseStoreReference, type KeyReference, type StoreReference } from './uri.js';

export * from './types.js';
export { SoftwareKeyStore, DEFAULT_KDF_COST, MIN_KDF_COST, MAX_KDF_COST } from './software.js';
export type { SecretSource, SoftwareKeyStoreOptions } from './software.js';
export { parseKeyReference, parseStoreReference, formatFileReference } from './uri.js';
export type { KeyReference, StoreReference } from './uri.js';

/** Options for opening the store behind a reference (the software store's options; PKCS#11 adds its own later). */
export type OpenStoreOptions = SoftwareKeyStoreOptions;

function pkcs11NotYet(raw: string): UnsupportedError {
  return new UnsupportedError(ErrorCode.NOT_SUPPORTED, `PKCS#11 key references are not supported yet (${raw.split('?')[0] ?? raw})`);
}

/**
 * Opens the store a key or store reference points into.
 * @param ref a reference string (`file:PATH`, `file:PATH#LABEL`, `pkcs11:…`) or an already parsed one.
 * @param secrets where the passphrase comes from (asked only when needed; see {@link SecretSource}).
 * @throws KeyStoreError ERR_KEY_URI_INVALID, ERR_KEYSTORE_NOT_FOUND, ERR_KEYSTORE_CORRUPT, ERR_KEYSTORE_BAD_PASSPHRASE.
 * @throws UnsupportedError ERR_NOT_SUPPORTED for `pkcs11:` references (until the PKCS#11 store exists).
 */
export async function openKeyStore(
  ref: string | KeyReference | StoreReference,
  secrets: SecretSource,
  opts: OpenStoreOptions = {},
): Promise<KeyStore> {
  const parsed = typeof ref === 'string' ? (ref.includes('#') ? parseKeyReference(ref) : parseStoreReference(ref)) : ref;
  if (parsed.kind === 'pkcs11') throw pkcs11NotYet(parsed.raw);
  return SoftwareKeyStore.open(parsed.path, secrets, opts);
}

/**
 * Opens the store behind a key reference and gets the key. The caller closes `store` when done
 * (handles stop working after that).
 * @param uri `file:PATH#LABEL` (or, later, a `pkcs11:` URI naming an object).
 * @param secrets where the passphrase comes from; by default it is asked only at the first private operation.
 * @throws KeyStoreError ERR_KEY_URI_INVALID, ERR_KEYSTORE_NOT_FOUND (store or label), ERR_KEYSTORE_CORRUPT,
 *   ERR_KEYSTORE_BAD_PASSPHRASE.
 * @throws UnsupportedError ERR_NOT_SUPPORTED for `pkcs11:` references (until the PKCS#11 store exists).
 */
export async function openKeyReference(
  uri: string,
  secrets: SecretSource,
  opts: OpenStoreOptions = { deferUnlock: true },
): Promise<{ store: KeyStore; handle: KeyHandle }> {
  const ref = parseKeyReference(uri);
  if (ref.kind === 'pkcs11') throw pkcs11NotYet(ref.raw);
  const store = await SoftwareKeyStore.open(ref.path, secrets, opts);
  try {
    return { store, handle: await store.get(ref.label) };
  } catch (e) {
    await store.close();
    throw e;
  }
}
