/**
 * Turns what pkcs11js throws into meshkit's typed errors.
 *
 * pkcs11js 2.1.7 throws three shapes: a `Pkcs11Error` with a numeric `.code` (most calls), a plain
 * `Error` whose message is `"CKR_ATTRIBUTE_READ_ONLY:16"` (C_SetAttributeValue, C_CopyObject), and a
 * `NativeError` without a CKR (library load failures). All become a {@link Pkcs11Error} with a
 * stable `code`, the raw `ckr` and its `ckrName`, and the C_ function in `operation`.
 */
import { ErrorCode, MeshkitError, Pkcs11Error, type ErrorCodeValue, type PinStatus } from '../../core/errors.js';
import { ckrName, ckrValue } from './constants.js';

/** The CKR number in a pkcs11js error, when there is one. */
export function ckrOf(e: unknown): number | undefined {
  if (e === null || typeof e !== 'object') return undefined;
  const err = e as { code?: unknown; message?: unknown };
  const msg = typeof err.message === 'string' ? err.message : '';
  const m = /(CKR_[A-Z0-9_]+)(?::(\d+))?/.exec(msg);
  if (m?.[2] !== undefined) return Number(m[2]);
  if (typeof err.code === 'number' && m !== null) return err.code;
  if (m?.[1] !== undefined) return ckrValue(m[1]);
  if (typeof err.code === 'number' && err.code !== 0 && (e as Error).name === 'Pkcs11Error') return err.code;
  return undefined;
}

/** meshkit's code for a CKR value. */
export function codeForCkr(name: string): ErrorCodeValue {
  switch (name) {
    case 'CKR_PIN_INCORRECT':
    case 'CKR_PIN_INVALID':
    case 'CKR_PIN_LEN_RANGE':
      return ErrorCode.PKCS11_PIN_INCORRECT;
    case 'CKR_PIN_LOCKED':
    case 'CKR_PIN_EXPIRED':
      return ErrorCode.PKCS11_PIN_LOCKED;
    case 'CKR_USER_NOT_LOGGED_IN':
      return ErrorCode.PKCS11_NOT_LOGGED_IN;
    case 'CKR_TOKEN_NOT_PRESENT':
    case 'CKR_TOKEN_NOT_RECOGNIZED':
    case 'CKR_DEVICE_REMOVED':
    case 'CKR_SESSION_HANDLE_INVALID':
    case 'CKR_SESSION_CLOSED':
    case 'CKR_SLOT_ID_INVALID':
    case 'CKR_CRYPTOKI_NOT_INITIALIZED':
      return ErrorCode.PKCS11_TOKEN_REMOVED;
    case 'CKR_MECHANISM_INVALID':
    case 'CKR_MECHANISM_PARAM_INVALID':
    case 'CKR_CURVE_NOT_SUPPORTED':
    case 'CKR_DOMAIN_PARAMS_INVALID':
      return ErrorCode.PKCS11_MECHANISM;
    case 'CKR_OBJECT_HANDLE_INVALID':
    case 'CKR_KEY_HANDLE_INVALID':
      return ErrorCode.PKCS11_OBJECT_NOT_FOUND;
    default:
      return ErrorCode.PKCS11;
  }
}

/** Short human explanations for the CKRs users meet. */
const HINTS: Record<string, string> = {
  CKR_SESSION_HANDLE_INVALID: 'the session was closed underneath (token removed or sessions closed by another user of the module)',
  CKR_SESSION_CLOSED: 'the session was closed underneath',
  CKR_DEVICE_REMOVED: 'the token was removed',
  CKR_TOKEN_NOT_PRESENT: 'no token in the slot',
  CKR_CRYPTOKI_NOT_INITIALIZED: 'the PKCS#11 module was finalized underneath',
  CKR_USER_NOT_LOGGED_IN: 'not logged in to the token',
  CKR_MECHANISM_INVALID: 'the token does not offer this mechanism',
  CKR_PIN_LOCKED: 'the user PIN is locked; the security officer must unblock it',
};

/**
 * Wraps any error thrown by a pkcs11js call as a Pkcs11Error (a MeshkitError is returned as is).
 * @param e what pkcs11js threw.
 * @param operation the C_ function that failed, e.g. `C_Sign`.
 * @param context what meshkit was doing, e.g. `signing with key "admin" on token "master"`.
 */
export function toPkcs11Error(e: unknown, operation: string, context?: string, pinStatus?: PinStatus): MeshkitError {
  if (e instanceof MeshkitError) return e;
  if (e instanceof TypeError || e instanceof RangeError) throw e;
  const ckr = ckrOf(e);
  const where = context === undefined ? operation : `${context}: ${operation}`;
  if (ckr === undefined) {
    const msg = e instanceof Error ? e.message : String(e);
    return new Pkcs11Error(ErrorCode.PKCS11, `${where} failed: ${msg}`, { operation, cause: e });
  }
  const name = ckrName(ckr);
  const hint = HINTS[name];
  return new Pkcs11Error(codeForCkr(name), `${where} failed with ${name}${hint === undefined ? '' : ` (${hint})`}`, {
    ckr,
    ckrName: name,
    operation,
    ...(pinStatus === undefined ? {} : { pinStatus }),
    cause: e,
  });
}

/** True when `e` (from pkcs11js) carries the CKR named `name`. */
export function isCkr(e: unknown, name: string): boolean {
  const ckr = ckrOf(e);
  return ckr !== undefined && ckrName(ckr) === name;
}

/**
 * Runs one pkcs11js call and converts a failure with {@link toPkcs11Error}.
 * @throws Pkcs11Error for any Cryptoki failure.
 */
export function call<T>(operation: string, context: string | undefined, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toPkcs11Error(e, operation, context);
  }
}
