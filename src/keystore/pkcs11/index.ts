/**
 * PKCS#11 tokens (HSMs, smartcards, SoftHSM) as meshkit key stores. The only place that imports
 * `pkcs11js`; everything else sees KeyStore / KeyHandle / Signer / Decrypter.
 */
export { Pkcs11Module, loadedModuleCount, moduleRefCount, trimPadded } from './module.js';
export type { SlotInfo, TokenInfo, ModuleInfo } from './module.js';
export { Pkcs11Session, withSession, withPin, pinStatusText } from './session.js';
export { probeCapabilities } from './capabilities.js';
export type { TokenCapabilities } from './capabilities.js';
export { Pkcs11KeyStore, openPkcs11KeyReference, keyObjectId, ecdsaToRaw } from './store.js';
export type { Pkcs11StoreOptions, Pkcs11KeyCreateOptions, WrapMechanism, AesKeyHandle, AesImportOptions, Pkcs11UnwrapTarget, WrapProbe } from './store.js';
export { ckrName, mechanismName, mechanismCode, CKK_EC_EDWARDS, CKK_EC_MONTGOMERY, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EC_MONTGOMERY_KEY_PAIR_GEN, CKM_EDDSA, CKM_XEDDSA } from './constants.js';
export { toPkcs11Error, codeForCkr } from './errors.js';
export { parsePkcs11Uri, formatPkcs11Uri } from './uri.js';
export type { Pkcs11Uri } from './uri.js';
