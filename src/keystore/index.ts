/**
 * Entry point of the key stores: turn a key reference (`file:PATH#LABEL` or a `pkcs11:` URI) into an
 * open store and a key handle. Commands and services use these, never a store class directly.
 *
 * The PKCS#11 adapter (and with it the native pkcs11js addon) is loaded only when a `pkcs11:`
 * reference is opened.
 */
import type { KeyHandle, KeyStore } from './types.js';
import type { Pkcs11StoreOptions } from './pkcs11/store.js';
import { SoftwareKeyStore, type SecretSource, type SoftwareKeyStoreOptions } from './software.js';
import { parseKeyReference, parseStoreReference, type KeyReference, type StoreReference } from './uri.js';

export * from './types.js';
export { SoftwareKeyStore, DEFAULT_KDF_COST, MIN_KDF_COST, MAX_KDF_COST } from './software.js';
export type { SecretSource, SoftwareKeyStoreOptions } from './software.js';
export { parseKeyReference, parseStoreReference, formatFileReference } from './uri.js';
export type { KeyReference, StoreReference } from './uri.js';

export type { Pkcs11StoreOptions } from './pkcs11/store.js';

/** Options for opening the store behind a reference: the software store's, plus `modulePath` for PKCS#11. */
export type OpenStoreOptions = SoftwareKeyStoreOptions & Pkcs11StoreOptions;

function pkcs11Options(opts: OpenStoreOptions): Pkcs11StoreOptions {
  return opts.modulePath === undefined ? {} : { modulePath: opts.modulePath };
}

/**
 * Opens the store a key or store reference points into.
 * @param ref a reference string (`file:PATH`, `file:PATH#LABEL`, `pkcs11:…`) or an already parsed one.
 * @param secrets where the passphrase (or, for `pkcs11:`, the user PIN unless the URI has `pin-source`) comes from.
 * @throws KeyStoreError ERR_KEY_URI_INVALID, ERR_KEYSTORE_NOT_FOUND, ERR_KEYSTORE_CORRUPT, ERR_KEYSTORE_BAD_PASSPHRASE.
 * @throws Pkcs11Error ERR_PKCS11_* for `pkcs11:` references (module, token not found, PIN incorrect / locked, …).
 */
export async function openKeyStore(
  ref: string | KeyReference | StoreReference,
  secrets: SecretSource,
  opts: OpenStoreOptions = {},
): Promise<KeyStore> {
  const parsed = typeof ref === 'string' ? (ref.includes('#') ? parseKeyReference(ref) : parseStoreReference(ref)) : ref;
  if (parsed.kind === 'pkcs11') {
    const { Pkcs11KeyStore } = await import('./pkcs11/store.js');
    return Pkcs11KeyStore.open(parsed.raw, secrets, pkcs11Options(opts));
  }
  return SoftwareKeyStore.open(parsed.path, secrets, opts);
}

/**
 * Opens the store behind a key reference and gets the key. The caller closes `store` when done
 * (handles stop working after that).
 * @param uri `file:PATH#LABEL`, or a `pkcs11:` URI naming an object (`object=LABEL` and / or `id=…`).
 * @param secrets where the passphrase comes from (by default asked only at the first private operation);
 *   for `pkcs11:`, the user PIN (asked at open, for the login) unless the URI has `pin-source`.
 * @throws KeyStoreError ERR_KEY_URI_INVALID, ERR_KEYSTORE_NOT_FOUND (store or label), ERR_KEYSTORE_CORRUPT,
 *   ERR_KEYSTORE_BAD_PASSPHRASE.
 * @throws Pkcs11Error ERR_PKCS11_* for `pkcs11:` references (ERR_PKCS11_OBJECT_AMBIGUOUS, ERR_PKCS11_OBJECT_NOT_FOUND
 *   for an id that matches nothing, PIN and token errors).
 */
export async function openKeyReference(
  uri: string,
  secrets: SecretSource,
  opts: OpenStoreOptions = { deferUnlock: true },
): Promise<{ store: KeyStore; handle: KeyHandle }> {
  const ref = parseKeyReference(uri);
  if (ref.kind === 'pkcs11') {
    const { openPkcs11KeyReference } = await import('./pkcs11/store.js');
    return openPkcs11KeyReference(ref.raw, secrets, pkcs11Options(opts));
  }
  const store = await SoftwareKeyStore.open(ref.path, secrets, opts);
  try {
    return { store, handle: await store.get(ref.label) };
  } catch (e) {
    await store.close();
    throw e;
  }
}
