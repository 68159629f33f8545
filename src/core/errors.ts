/**
 * The one error hierarchy of meshkit.
 *
 * Every failure meshkit reports on purpose is a {@link MeshkitError} with a stable string `code`
 * (`ERR_…`) that callers and scripts can switch on. Raw numbers from the outside world stay in
 * their own fields (a PKCS#11 CKR value and name, a device status code). Argument errors are
 * plain `TypeError` / `RangeError` naming the field, as noble and jose do.
 */

/** Stable error codes. Add new ones; never rename or reuse one. */
export const ErrorCode = {
  // UDF
  UDF_INVALID: 'ERR_UDF_INVALID',
  UDF_LEGACY: 'ERR_UDF_LEGACY',
  UDF_TYPE: 'ERR_UDF_TYPE',
  // keys
  KEY_INVALID: 'ERR_KEY_INVALID',
  ALG_UNSUPPORTED: 'ERR_ALG_UNSUPPORTED',
  // JOSE
  JSON_INVALID: 'ERR_JSON_INVALID',
  JWS_INVALID: 'ERR_JWS_INVALID',
  JWS_SIGNATURE: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  JWE_INVALID: 'ERR_JWE_INVALID',
  JWE_DECRYPTION: 'ERR_JWE_DECRYPTION_FAILED',
  JWE_NO_RECIPIENT: 'ERR_JWE_NO_MATCHING_RECIPIENT',
  // Shamir
  SHARE_INVALID: 'ERR_SHARE_INVALID',
  SHARES_INSUFFICIENT: 'ERR_SHARES_INSUFFICIENT',
  SHARES_INCONSISTENT: 'ERR_SHARES_INCONSISTENT',
  SHARE_DUPLICATE: 'ERR_SHARE_DUPLICATE',
  // co-generation
  COGEN_MISMATCH: 'ERR_COGEN_MISMATCH',
  // profiles
  PROFILE_MALFORMED: 'ERR_PROFILE_MALFORMED',
  PROFILE_SIGNATURE: 'ERR_PROFILE_SIGNATURE',
  PROFILE_UNAUTHORISED: 'ERR_PROFILE_SIGNER_NOT_AUTHORISED',
  PROFILE_SUPERSEDED: 'ERR_PROFILE_SUPERSEDED',
  PROFILE_NOT_CONNECTED: 'ERR_PROFILE_NOT_CONNECTED',
  PROFILE_MISMATCH: 'ERR_PROFILE_MISMATCH',
  // escrow
  ESCROW_INVALID: 'ERR_ESCROW_INVALID',
  ESCROW_KEY_MISMATCH: 'ERR_ESCROW_KEY_MISMATCH',
  // logs
  LOG_BROKEN: 'ERR_LOG_BROKEN',
  LOG_SIGNATURE: 'ERR_LOG_SIGNATURE',
  // key stores
  KEYSTORE_NOT_FOUND: 'ERR_KEYSTORE_NOT_FOUND',
  KEYSTORE_EXISTS: 'ERR_KEYSTORE_EXISTS',
  KEYSTORE_PASSPHRASE: 'ERR_KEYSTORE_BAD_PASSPHRASE',
  KEYSTORE_CORRUPT: 'ERR_KEYSTORE_CORRUPT',
  KEY_URI_INVALID: 'ERR_KEY_URI_INVALID',
  SECRET_SOURCE: 'ERR_SECRET_SOURCE',
  // PKCS#11 (the CKR name is kept in Pkcs11Error.ckrName)
  PKCS11: 'ERR_PKCS11',
  PKCS11_MODULE: 'ERR_PKCS11_MODULE',
  PKCS11_TOKEN_NOT_FOUND: 'ERR_PKCS11_TOKEN_NOT_FOUND',
  PKCS11_TOKEN_REMOVED: 'ERR_PKCS11_TOKEN_REMOVED',
  PKCS11_PIN_INCORRECT: 'ERR_PKCS11_PIN_INCORRECT',
  PKCS11_PIN_LOCKED: 'ERR_PKCS11_PIN_LOCKED',
  PKCS11_NOT_LOGGED_IN: 'ERR_PKCS11_NOT_LOGGED_IN',
  PKCS11_OBJECT_NOT_FOUND: 'ERR_PKCS11_OBJECT_NOT_FOUND',
  PKCS11_OBJECT_AMBIGUOUS: 'ERR_PKCS11_OBJECT_AMBIGUOUS',
  PKCS11_MECHANISM: 'ERR_PKCS11_MECHANISM_NOT_SUPPORTED',
  PKCS11_URI_INVALID: 'ERR_PKCS11_URI_INVALID',
  NOT_SUPPORTED: 'ERR_NOT_SUPPORTED',
  DEVICE: 'ERR_DEVICE',
  // ceremony (Step 3)
  CEREMONY_PLAN: 'ERR_CEREMONY_PLAN_INVALID',
  CEREMONY_STATE: 'ERR_CEREMONY_STATE',
  CEREMONY_VERIFY: 'ERR_CEREMONY_VERIFY_FAILED',
  // portal (Step 5): one code per HTTP error status of docs/portal.md, plus client-side failures
  PORTAL_BAD_REQUEST: 'ERR_PORTAL_BAD_REQUEST',
  PORTAL_SIGNATURE: 'ERR_PORTAL_SIGNATURE',
  PORTAL_UNAUTHORISED: 'ERR_PORTAL_UNAUTHORISED',
  PORTAL_NOT_FOUND: 'ERR_PORTAL_NOT_FOUND',
  PORTAL_CONFLICT: 'ERR_PORTAL_CONFLICT',
  PORTAL_TOO_LARGE: 'ERR_PORTAL_TOO_LARGE',
  PORTAL_MEDIA_TYPE: 'ERR_PORTAL_MEDIA_TYPE',
  PORTAL_QUOTA: 'ERR_PORTAL_QUOTA',
  PORTAL_INTERNAL: 'ERR_PORTAL_INTERNAL',
  PORTAL_UNAVAILABLE: 'ERR_PORTAL_UNAVAILABLE',
  PORTAL_PROTOCOL: 'ERR_PORTAL_PROTOCOL',
  PORTAL_FEDERATION: 'ERR_PORTAL_FEDERATION',
  PORTAL_METHOD: 'ERR_PORTAL_METHOD',
  PORTAL_TIMEOUT: 'ERR_PORTAL_TIMEOUT',
  // generic I/O for the CLI
  IO: 'ERR_IO',
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error meshkit throws on purpose. */
export class MeshkitError extends Error {
  readonly code: ErrorCodeValue;

  constructor(code: ErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
}

/** A UDF string or binary value that is malformed, of the wrong type, or in a legacy format. */
export class UdfError extends MeshkitError {}
/** A public or private key that cannot be parsed, is of the wrong curve, or is not on the curve. */
export class KeyError extends MeshkitError {}
/** An algorithm, curve or mechanism meshkit (or a token) does not support. */
export class UnsupportedError extends MeshkitError {}
/** A JWS or JWE that is malformed or fails verification / decryption. */
export class JoseError extends MeshkitError {}
/** Shamir shares that are malformed, too few, duplicated or from different secrets. */
export class ShamirError extends MeshkitError {}
/** Co-generation results that do not agree. */
export class CogenError extends MeshkitError {}
/** A profile that is malformed, forged, signed by the wrong key, superseded or not connected. */
export class ProfileError extends MeshkitError {}
/** An escrow blob that is malformed or does not match. */
export class EscrowError extends MeshkitError {}
/** A linked-hash log whose chain or head signature does not hold. */
export class LogError extends MeshkitError {
  /** Zero-based index of the first entry that does not hold, when known. */
  readonly index: number | undefined;
  constructor(code: ErrorCodeValue, message: string, index?: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.index = index;
  }
}
/** Key store failures: missing key, wrong passphrase, corrupt file, bad key reference. */
export class KeyStoreError extends MeshkitError {}

/** What a token said about the user PIN after a failed login (CK_TOKEN_INFO flags). */
export interface PinStatus {
  /** CKF_USER_PIN_COUNT_LOW: an incorrect PIN has been entered at least once since the last success. */
  countLow: boolean;
  /** CKF_USER_PIN_FINAL_TRY: one more wrong PIN locks it. */
  finalTry: boolean;
  /** CKF_USER_PIN_LOCKED. */
  locked: boolean;
}

/**
 * A PKCS#11 failure. `code` is meshkit's stable code (e.g. ERR_PKCS11_PIN_INCORRECT); the raw
 * Cryptoki return value stays in `ckr` / `ckrName`, and `operation` names the C_ function.
 */
export class Pkcs11Error extends MeshkitError {
  readonly ckr: number | undefined;
  readonly ckrName: string | undefined;
  readonly operation: string | undefined;
  readonly pinStatus: PinStatus | undefined;
  constructor(
    code: ErrorCodeValue,
    message: string,
    fields: { ckr?: number; ckrName?: string; operation?: string; pinStatus?: PinStatus; cause?: unknown } = {},
  ) {
    super(code, message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.ckr = fields.ckr;
    this.ckrName = fields.ckrName;
    this.operation = fields.operation;
    this.pinStatus = fields.pinStatus;
  }
}

/** A device protocol failure; `status` is the device's status code (shared with the C firmware). */
export class DeviceError extends MeshkitError {
  readonly status: number | undefined;
  constructor(code: ErrorCodeValue, message: string, status?: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
  }
}

/** True when `e` is a MeshkitError with the given code. */
export function isMeshkitError(e: unknown, code?: ErrorCodeValue): e is MeshkitError {
  return e instanceof MeshkitError && (code === undefined || e.code === code);
}
