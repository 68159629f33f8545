/**
 * The capability probe: what one token can do, kept as data (shown by `token list`, used to choose
 * mechanisms and key types).
 *
 * From C_GetMechanismList / C_GetMechanismInfo: every mechanism with its name, key sizes and flags;
 * per curve whether keys can be generated, sign / derive, and under which key type. Quirks are
 * found by trying on temporary session objects (CKA_TOKEN=false, CKA_PRIVATE=false), destroyed at once:
 * whether CKA_EC_POINT comes DER-wrapped or raw, whether the PrintableString curve names are accepted,
 * whether X25519/X448 are made as CKK_EC_EDWARDS (SoftHSM 2.6), whether EdDSA private keys can be wrapped,
 * and whether a private key made on the host is accepted at all (a P-256 session key with
 * CKA_PRIVATE=true, so this one needs the login; tpm2-pkcs11 and most cards refuse it).
 */
import { randomBytes } from 'node:crypto';
import type * as pkcs11js from 'pkcs11js';
import { wipe } from '../../core/bytes.js';
import { ecParams } from '../../core/keys.js';
import type { Curve } from '../../core/signer.js';
import {
  CKK_EC_EDWARDS,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
  CKM_EDDSA,
  mechanismFlagNames,
  mechanismName,
  pk,
} from './constants.js';
import { call, isCkr } from './errors.js';

/** What a token can do. */
export interface TokenCapabilities {
  mechanisms: Array<{ name: string; code: number; minKeySize: number; maxKeySize: number; flags: string[] }>;
  curves: Record<
    Curve,
    { generate: boolean; sign?: boolean; derive?: boolean; keyType: 'CKK_EC_EDWARDS' | 'CKK_EC_MONTGOMERY' | 'CKK_EC' | null }
  >;
  wrap: { aesKeyWrap: boolean; aesKeyWrapPad: boolean; edPrivateKeys: boolean | 'unknown' };
  /**
   * Whether the token accepts a private key made on the host (C_CreateObject of a P-256 session
   * private key, destroyed at once): false for tokens that only generate keys (tpm2-pkcs11, most
   * cards); 'unknown' when the probe could not try (no session, or no login where the token needs one).
   */
  privateKeyImport: boolean | 'unknown';
  /** e.g. 'ec-point-der-wrapped', 'edwards-curve-as-printable-string-accepted', 'no-CKM_ECDSA_SHA256 (hash on host)', 'x25519-as-CKK_EC_EDWARDS'. */
  quirks: string[];
}

/** The mechanisms a token offers (codes), for quick checks. */
export function mechanismSet(lib: pkcs11js.PKCS11, slot: Buffer): Set<number> {
  return new Set(call('C_GetMechanismList', undefined, () => lib.C_GetMechanismList(slot)));
}

/** PrintableString CKA_EC_PARAMS for the Edwards curves (PKCS#11 3.0 §2.3.10). */
export function printableCurveParams(name: 'edwards25519' | 'edwards448'): Buffer {
  return Buffer.concat([Buffer.from([0x13, name.length]), Buffer.from(name, 'ascii')]);
}

function tryGenerateEdwards(
  lib: pkcs11js.PKCS11,
  session: Buffer,
  params: Uint8Array,
): { ok: true; ecPoint: Buffer | undefined } | { ok: false } {
  let pair: pkcs11js.KeyPair | undefined;
  try {
    pair = lib.C_GenerateKeyPair(
      session,
      { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN },
      [
        { type: pk('CKA_TOKEN'), value: false },
        { type: pk('CKA_KEY_TYPE'), value: CKK_EC_EDWARDS },
        { type: pk('CKA_EC_PARAMS'), value: Buffer.from(params) },
      ],
      [
        { type: pk('CKA_TOKEN'), value: false },
        { type: pk('CKA_PRIVATE'), value: false },
        { type: pk('CKA_KEY_TYPE'), value: CKK_EC_EDWARDS },
      ],
    );
    let ecPoint: Buffer | undefined;
    try {
      ecPoint = lib.C_GetAttributeValue(session, pair.publicKey, [{ type: pk('CKA_EC_POINT') }])[0]?.value;
    } catch {
      ecPoint = undefined;
    }
    return { ok: true, ecPoint };
  } catch {
    return { ok: false };
  } finally {
    if (pair !== undefined) {
      for (const h of [pair.publicKey, pair.privateKey]) {
        try {
          lib.C_DestroyObject(session, h);
        } catch {
          // session objects vanish with the session anyway
        }
      }
    }
  }
}

function probeEdWrap(lib: pkcs11js.PKCS11, session: Buffer, mechanism: number): boolean | 'unknown' {
  const made: Buffer[] = [];
  try {
    const kek = lib.C_GenerateKey(session, { mechanism: pk('CKM_AES_KEY_GEN') }, [
      { type: pk('CKA_TOKEN'), value: false },
      { type: pk('CKA_PRIVATE'), value: false },
      { type: pk('CKA_CLASS'), value: pk('CKO_SECRET_KEY') },
      { type: pk('CKA_KEY_TYPE'), value: pk('CKK_AES') },
      { type: pk('CKA_VALUE_LEN'), value: 32 },
      { type: pk('CKA_WRAP'), value: true },
    ]);
    made.push(kek);
    const pair = lib.C_GenerateKeyPair(
      session,
      { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN },
      [
        { type: pk('CKA_TOKEN'), value: false },
        { type: pk('CKA_EC_PARAMS'), value: Buffer.from(ecParams('Ed25519')) },
      ],
      [
        { type: pk('CKA_TOKEN'), value: false },
        { type: pk('CKA_PRIVATE'), value: false },
        { type: pk('CKA_SENSITIVE'), value: true },
        { type: pk('CKA_EXTRACTABLE'), value: true },
      ],
    );
    made.push(pair.publicKey, pair.privateKey);
    try {
      lib.C_WrapKey(session, { mechanism }, kek, pair.privateKey, Buffer.alloc(4096));
      return true;
    } catch (e) {
      return isCkr(e, 'CKR_KEY_NOT_WRAPPABLE') || isCkr(e, 'CKR_MECHANISM_INVALID') ? false : 'unknown';
    }
  } catch {
    return 'unknown';
  } finally {
    for (const h of made) {
      try {
        lib.C_DestroyObject(session, h);
      } catch {
        // ignore
      }
    }
  }
}

/** CKRs meaning "this token does not take private keys from outside" (vs. a session / login problem). */
const IMPORT_REFUSED = [
  'CKR_ATTRIBUTE_VALUE_INVALID',
  'CKR_ATTRIBUTE_TYPE_INVALID',
  'CKR_TEMPLATE_INCONSISTENT',
  'CKR_KEY_TYPE_INCONSISTENT',
  'CKR_FUNCTION_NOT_SUPPORTED',
  'CKR_ACTION_PROHIBITED',
  'CKR_ATTRIBUTE_READ_ONLY',
];

/** True when a C_CreateObject failure means the token refuses host-made private keys. */
export function isImportRefusal(e: unknown): boolean {
  return IMPORT_REFUSED.some((name) => isCkr(e, name));
}

function probeImport(lib: pkcs11js.PKCS11, session: Buffer): boolean | 'unknown' {
  // A random 32-byte scalar is below the P-256 order with overwhelming probability (1 - 2^-32).
  const value = randomBytes(32);
  value[0] = (value[0] ?? 0) & 0x7f;
  let object: Buffer | undefined;
  try {
    object = lib.C_CreateObject(session, [
      { type: pk('CKA_CLASS'), value: pk('CKO_PRIVATE_KEY') },
      { type: pk('CKA_KEY_TYPE'), value: pk('CKK_EC') },
      { type: pk('CKA_TOKEN'), value: false },
      { type: pk('CKA_PRIVATE'), value: true },
      { type: pk('CKA_SENSITIVE'), value: true },
      { type: pk('CKA_EXTRACTABLE'), value: false },
      { type: pk('CKA_SIGN'), value: true },
      { type: pk('CKA_EC_PARAMS'), value: Buffer.from(ecParams('P-256')) },
      { type: pk('CKA_VALUE'), value },
    ]);
    return true;
  } catch (e) {
    return isImportRefusal(e) ? false : 'unknown';
  } finally {
    wipe(value);
    if (object !== undefined) {
      try {
        lib.C_DestroyObject(session, object);
      } catch {
        // a session object vanishes with the session anyway
      }
    }
  }
}

/**
 * Probes a token. Opens its own session (closed before returning); logs in with `pin` when given
 * and needed (a wrong PIN only disables the object probes).
 * @throws Pkcs11Error when the mechanism list cannot be read.
 */
export function probeCapabilities(lib: pkcs11js.PKCS11, slot: Buffer, pin?: Uint8Array): TokenCapabilities {
  const codes = [...mechanismSet(lib, slot)].sort((a, b) => a - b);
  const mechanisms = codes.map((code) => {
    let info: pkcs11js.MechanismInfo | undefined;
    try {
      info = lib.C_GetMechanismInfo(slot, code);
    } catch {
      info = undefined;
    }
    return {
      name: mechanismName(code),
      code,
      minKeySize: info?.minKeySize ?? 0,
      maxKeySize: info?.maxKeySize ?? 0,
      flags: info === undefined ? [] : mechanismFlagNames(info.flags),
    };
  });
  const has = (code: number): boolean => codes.includes(code);
  const edGen = has(CKM_EC_EDWARDS_KEY_PAIR_GEN);
  const montGen = has(CKM_EC_MONTGOMERY_KEY_PAIR_GEN);
  const ecdh = has(pk('CKM_ECDH1_DERIVE'));
  const quirks: string[] = [];
  const wrapPad = has(pk('CKM_AES_KEY_WRAP_PAD'));
  const wrapPlain = has(pk('CKM_AES_KEY_WRAP'));
  let edPrivateKeys: boolean | 'unknown' = 'unknown';
  let privateKeyImport: boolean | 'unknown' = 'unknown';
  let xAsEdwards = { X25519: false, X448: false };

  let session: Buffer | undefined;
  try {
    session = lib.C_OpenSession(slot, pk('CKF_SERIAL_SESSION') | pk('CKF_RW_SESSION'));
  } catch {
    session = undefined;
  }
  if (session !== undefined) {
    try {
      if (pin !== undefined) {
        try {
          lib.C_Login(session, pk('CKU_USER'), Buffer.from(pin).toString('utf8'));
        } catch {
          // already logged in, or a wrong PIN: probes run as far as they can
        }
      }
      if (has(pk('CKM_EC_KEY_PAIR_GEN')) || has(pk('CKM_ECDSA'))) privateKeyImport = probeImport(lib, session);
      if (edGen) {
        const oid = tryGenerateEdwards(lib, session, ecParams('Ed25519'));
        if (oid.ok && oid.ecPoint !== undefined) {
          if (oid.ecPoint.length === 34 && oid.ecPoint[0] === 0x04 && oid.ecPoint[1] === 32) quirks.push('ec-point-der-wrapped');
          else if (oid.ecPoint.length === 32) quirks.push('ec-point-raw');
        }
        if (tryGenerateEdwards(lib, session, printableCurveParams('edwards25519')).ok) {
          quirks.push('edwards-curve-as-printable-string-accepted');
        }
        if (!montGen) {
          xAsEdwards = {
            X25519: tryGenerateEdwards(lib, session, ecParams('X25519')).ok,
            X448: tryGenerateEdwards(lib, session, ecParams('X448')).ok,
          };
          if (xAsEdwards.X25519) quirks.push('x25519-as-CKK_EC_EDWARDS');
          if (xAsEdwards.X448) quirks.push('x448-as-CKK_EC_EDWARDS');
        }
        if (wrapPad || wrapPlain) edPrivateKeys = probeEdWrap(lib, session, pk(wrapPad ? 'CKM_AES_KEY_WRAP_PAD' : 'CKM_AES_KEY_WRAP'));
      }
    } finally {
      try {
        lib.C_CloseSession(session);
      } catch {
        // ignore
      }
    }
  }
  if (has(pk('CKM_ECDSA')) && !has(pk('CKM_ECDSA_SHA256'))) quirks.push('no-CKM_ECDSA_SHA256 (hash on host)');
  if (!edGen && !montGen) edPrivateKeys = false;

  const ed = { generate: edGen, sign: has(CKM_EDDSA), keyType: edGen ? ('CKK_EC_EDWARDS' as const) : null };
  const x = (c: 'X25519' | 'X448'): TokenCapabilities['curves']['X25519'] =>
    montGen
      ? { generate: true, derive: ecdh, keyType: 'CKK_EC_MONTGOMERY' }
      : xAsEdwards[c]
        ? { generate: true, derive: ecdh, keyType: 'CKK_EC_EDWARDS' }
        : { generate: false, derive: ecdh, keyType: null };
  const ecGen = has(pk('CKM_EC_KEY_PAIR_GEN'));
  return {
    mechanisms,
    curves: {
      Ed25519: { ...ed },
      Ed448: { ...ed },
      X25519: x('X25519'),
      X448: x('X448'),
      'P-256': { generate: ecGen, sign: has(pk('CKM_ECDSA')), derive: ecdh, keyType: ecGen ? 'CKK_EC' : null },
    },
    wrap: { aesKeyWrap: wrapPlain, aesKeyWrapPad: wrapPad, edPrivateKeys },
    privateKeyImport,
    quirks,
  };
}
