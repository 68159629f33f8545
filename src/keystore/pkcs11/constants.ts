/**
 * PKCS#11 constants for the adapter: the PKCS#11 3.0 values pkcs11js 2.1.7 does not export
 * (EdDSA, Montgomery), the number → name maps for CKR_* and CKM_* (built from pkcs11js's own
 * exports, so every return value and mechanism has its spec name), and the mechanism flag names.
 */
import { createRequire } from 'node:module';
import type * as Pkcs11Js from 'pkcs11js';

/**
 * The pkcs11js addon. Loaded with require: it is a CommonJS module whose constants are set on the
 * native object, which Node's ESM named-export detection does not see (`import *` yields no CKR_*).
 */
export const pkcs11js: typeof Pkcs11Js = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Js;

const all = pkcs11js as unknown as Record<string, unknown>;

/** CKK_EC_EDWARDS (PKCS#11 3.0): Ed25519 / Ed448 keys (SoftHSM 2.6 also uses it for X25519 / X448). */
export const CKK_EC_EDWARDS = 0x40;
/** CKK_EC_MONTGOMERY (PKCS#11 3.0): X25519 / X448 keys. */
export const CKK_EC_MONTGOMERY = 0x41;
/** CKM_EC_EDWARDS_KEY_PAIR_GEN (PKCS#11 3.0). */
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
/** CKM_EC_MONTGOMERY_KEY_PAIR_GEN (PKCS#11 3.0). */
export const CKM_EC_MONTGOMERY_KEY_PAIR_GEN = 0x1056;
/** CKM_EDDSA (PKCS#11 3.0). */
export const CKM_EDDSA = 0x1057;
/** CKM_XEDDSA (PKCS#11 3.0). */
export const CKM_XEDDSA = 0x4029;
/** CKR_ACTION_PROHIBITED (PKCS#11 2.40), absent from some pkcs11js builds. */
export const CKR_ACTION_PROHIBITED = 0x1b;

/** CK_STATE values (pkcs11js 2.1.7 does not export them). */
export const CKS_RO_PUBLIC_SESSION = 0;
export const CKS_RO_USER_FUNCTIONS = 1;
export const CKS_RW_PUBLIC_SESSION = 2;
export const CKS_RW_USER_FUNCTIONS = 3;
export const CKS_RW_SO_FUNCTIONS = 4;

/** Values pkcs11js 2.1.7 does not export, by name. */
const EXTRA_MECHANISMS: Record<string, number> = {
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
  CKM_EDDSA,
  CKM_XEDDSA,
};

/** A numeric pkcs11js constant by name. @throws Error when pkcs11js does not export it (a build problem). */
export function pk(name: string): number {
  const v = all[name];
  if (typeof v !== 'number') throw new Error(`pkcs11js does not export ${name}`);
  return v;
}

function buildNames(prefix: string, extra: Record<string, number>, prefer: readonly string[]): Map<number, string> {
  const map = new Map<number, string>();
  for (const [name, value] of Object.entries(all)) {
    if (name.startsWith(prefix) && typeof value === 'number' && !map.has(value)) map.set(value, name);
  }
  for (const [name, value] of Object.entries(extra)) if (!map.has(value)) map.set(value, name);
  for (const name of prefer) {
    const v = all[name] ?? extra[name];
    if (typeof v === 'number') map.set(v, name);
  }
  return map;
}

const CKR_NAMES = buildNames('CKR_', { CKR_ACTION_PROHIBITED }, []);
const CKM_NAMES = buildNames('CKM_', EXTRA_MECHANISMS, ['CKM_EC_KEY_PAIR_GEN', 'CKM_CAST128_KEY_GEN']);

/** The CKR_* name of a return value, or `CKR_0x…` (vendor-defined) when unknown. */
export function ckrName(ckr: number): string {
  return CKR_NAMES.get(ckr) ?? `CKR_0x${ckr.toString(16).padStart(8, '0')}`;
}

/** The CKR_* value of a name, or undefined. */
export function ckrValue(name: string): number | undefined {
  for (const [v, n] of CKR_NAMES) if (n === name) return v;
  return undefined;
}

/** The CKM_* name of a mechanism, or `CKM_0x…` (vendor-defined) when unknown. */
export function mechanismName(code: number): string {
  return CKM_NAMES.get(code) ?? `CKM_0x${code.toString(16).padStart(8, '0')}`;
}

/** The CKM_* value of a mechanism name (including the PKCS#11 3.0 EdDSA / Montgomery ones), or undefined. */
export function mechanismCode(name: string): number | undefined {
  const v = all[name] ?? EXTRA_MECHANISMS[name];
  return typeof v === 'number' && name.startsWith('CKM_') ? v : undefined;
}

/** CK_MECHANISM_INFO flag names (the values overlap other CKF_ families, so they are listed here). */
const MECHANISM_FLAGS: readonly string[] = [
  'CKF_HW', 'CKF_ENCRYPT', 'CKF_DECRYPT', 'CKF_DIGEST', 'CKF_SIGN', 'CKF_SIGN_RECOVER', 'CKF_VERIFY',
  'CKF_VERIFY_RECOVER', 'CKF_GENERATE', 'CKF_GENERATE_KEY_PAIR', 'CKF_WRAP', 'CKF_UNWRAP', 'CKF_DERIVE',
  'CKF_EC_F_P', 'CKF_EC_F_2M', 'CKF_EC_ECPARAMETERS', 'CKF_EC_NAMEDCURVE', 'CKF_EC_UNCOMPRESS', 'CKF_EC_COMPRESS',
  'CKF_EXTENSION',
];

/** The names of the CK_MECHANISM_INFO flags set in `flags`. */
export function mechanismFlagNames(flags: number): string[] {
  const out: string[] = [];
  for (const name of MECHANISM_FLAGS) {
    const v = all[name];
    if (typeof v === 'number' && v !== 0 && (flags & v) === v) out.push(name);
  }
  return out;
}
