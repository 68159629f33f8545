/**
 * Key escrow (architecture-04 §5.5; digest §4.1.5 and §7.5).
 *
 * Offline escrow: a fresh 256-bit session key K encrypts the master private keys (an
 * `EscrowedKeySet`: MasterSignatureKey + MasterEscrowKeys, as private JWKs with `d`). The blob is
 *
 *     {"OfflineEscrowEntry":{"Identifier":<blob id>,"EncryptedData":<JWE>}}
 *
 * where the JWE is General JSON, protected header `{"alg":"dir","enc":"A256GCM","kid":<blob id>,
 * "cty":"EscrowedKeySet"}`, content key = HKDF-SHA-512(IKM = K, salt = empty,
 * info = "meshkit offline escrow v1", 32 bytes), plaintext = UTF-8 JSON `{"EscrowedKeySet":{…}}`.
 * The blob id is `udfEncryptionKeyId(udfEncryptionKey(K), 280)`: the UDF, content type
 * `application/udf`, of the E-UDF string of K (digest §7.5). It names the blob without naming its
 * owner; K itself is then split n-of-m with mesh-udf Shamir by the caller (shamir.ts).
 *
 * Online escrow: the Master Escrow Key is one more JWE recipient of application private data
 * ({@link encryptWithEscrow} / {@link recoverWithEscrow}).
 */
import { createPrivateKey, createPublicKey, hkdfSync, randomBytes } from 'node:crypto';
import { abytes, aobject, astring, describe, fromUtf8, utf8, wipe } from './bytes.js';
import { ErrorCode, EscrowError, JoseError } from './errors.js';
import {
  decryptJwe,
  decryptJweDirect,
  encryptJwe,
  encryptJweDirect,
  parseJsonStrict,
  type JweGeneral,
  type JweGeneralDirect,
} from './jose.js';
import { keyId, publicKeyFromJwk, type PublicKey } from './keys.js';
import { udfEncryptionKey, udfEncryptionKeyId } from './udf.js';
import type { Curve, Decrypter, PrivateJwk, PublicJwk } from './signer.js';

/** The private master keys put in escrow (digest §4.1.1 `EscrowedKeySet`). */
export interface EscrowedKeySet {
  MasterSignatureKey: PrivateJwk;
  MasterEscrowKeys: PrivateJwk[];
}

/** The published offline escrow blob. */
export interface OfflineEscrowBlob {
  OfflineEscrowEntry: { Identifier: string; EncryptedData: JweGeneralDirect };
}

/** HKDF info string of the blob's content key. */
export const OFFLINE_ESCROW_INFO = 'meshkit offline escrow v1';
/** Precision of the blob identifier. */
export const ESCROW_BLOB_ID_BITS = 280;
/** `cty` of the escrow JWE. */
export const ESCROW_CTY = 'EscrowedKeySet';

const SIGNATURE_CURVES: readonly Curve[] = ['Ed25519', 'Ed448', 'P-256'];
const ENCRYPTION_CURVES: readonly Curve[] = ['X25519', 'X448', 'P-256'];

/**
 * The identifier of the blob encrypted under session key `sessionKey`:
 * `udfEncryptionKeyId(udfEncryptionKey(K), 280)`.
 *
 * @throws TypeError / RangeError unless `sessionKey` is 32 bytes.
 */
export function escrowBlobId(sessionKey: Uint8Array): string {
  abytes(sessionKey, 'sessionKey', 32);
  return udfEncryptionKeyId(udfEncryptionKey(sessionKey), ESCROW_BLOB_ID_BITS);
}

function contentKey(sessionKey: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha512', sessionKey, new Uint8Array(0), utf8(OFFLINE_ESCROW_INFO), 32));
}

/**
 * Checks a private JWK (shape, curve in `curves`, `d` matching `x`/`y`) and returns a clean copy
 * `{kty, crv, x, y?, d}` plus its public key.
 */
function checkPrivateJwk(value: unknown, field: string, curves: readonly Curve[], fail: (msg: string) => never): { jwk: PrivateJwk; pub: PublicKey } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(`${field} must be a private JWK object`);
  const j = value as Record<string, unknown>;
  if (typeof j.d !== 'string') return fail(`${field} has no private member "d"`);
  const publicPart: Record<string, unknown> = { kty: j.kty, crv: j.crv, x: j.x };
  if (j.y !== undefined) publicPart.y = j.y;
  let pub: PublicKey;
  try {
    pub = publicKeyFromJwk(publicPart);
  } catch (e) {
    return fail(`${field} has an invalid public part: ${(e as Error).message}`);
  }
  if (!curves.includes(pub.curve)) return fail(`${field} is a ${pub.curve} key; expected ${curves.join(', ')}`);
  const clean: Record<string, string> = { kty: String(j.kty), crv: String(j.crv), x: String(j.x) };
  if (typeof j.y === 'string') clean.y = j.y;
  clean.d = j.d;
  try {
    const derived = createPublicKey(createPrivateKey({ key: clean, format: 'jwk' })).export({ format: 'jwk' });
    if (derived.x !== clean.x || (clean.y !== undefined && derived.y !== clean.y)) return fail(`${field}: "d" does not belong to the public key`);
  } catch (e) {
    if (e instanceof EscrowError) throw e;
    return fail(`${field}: "d" is not a valid private key`);
  }
  return { jwk: clean as unknown as PrivateJwk, pub };
}

function checkKeySet(value: unknown, fail: (msg: string) => never): { set: EscrowedKeySet; ids: { sign: string; escrow: string[] } } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('key set must be an object');
  const v = value as Record<string, unknown>;
  const sign = checkPrivateJwk(v.MasterSignatureKey, 'MasterSignatureKey', SIGNATURE_CURVES, fail);
  if (!Array.isArray(v.MasterEscrowKeys)) return fail('MasterEscrowKeys must be an array');
  const escrow = v.MasterEscrowKeys.map((k, i) => checkPrivateJwk(k, `MasterEscrowKeys[${i}]`, ENCRYPTION_CURVES, fail));
  return {
    set: { MasterSignatureKey: sign.jwk, MasterEscrowKeys: escrow.map((e) => e.jwk) },
    ids: { sign: keyId(sign.pub), escrow: escrow.map((e) => keyId(e.pub)) },
  };
}

/**
 * Creates an offline escrow blob of `keySet` under a fresh 32-byte session key.
 *
 * The caller must split `sessionKey` (Shamir) and then wipe it.
 *
 * @throws TypeError if `keySet` is not an object.
 * @throws EscrowError `ERR_ESCROW_INVALID` if a key is malformed, of the wrong curve (signature:
 *   Ed25519/Ed448/P-256; escrow: X25519/X448/P-256) or its `d` does not match its public key.
 */
export function createOfflineEscrow(keySet: EscrowedKeySet): { sessionKey: Uint8Array; blobId: string; blob: OfflineEscrowBlob } {
  aobject(keySet, 'keySet');
  const fail = (msg: string): never => {
    throw new EscrowError(ErrorCode.ESCROW_INVALID, `cannot escrow: ${msg}`);
  };
  const { set } = checkKeySet(keySet, fail);
  const sessionKey = new Uint8Array(randomBytes(32));
  const blobId = escrowBlobId(sessionKey);
  const key = contentKey(sessionKey);
  const plaintext = utf8(JSON.stringify({ EscrowedKeySet: set }));
  try {
    const EncryptedData = encryptJweDirect(plaintext, key, { kid: blobId, cty: ESCROW_CTY });
    return { sessionKey, blobId, blob: { OfflineEscrowEntry: { Identifier: blobId, EncryptedData } } };
  } finally {
    wipe(key, plaintext);
  }
}

/**
 * Opens an offline escrow blob with the (recombined) session key.
 *
 * @returns the key set, each key as `{kty, crv, x, y?, d, kid}` with `kid` recomputed from its
 *   public part (never taken from the blob).
 * @throws TypeError / RangeError for bad argument types or a session key that is not 32 bytes.
 * @throws EscrowError `ERR_ESCROW_KEY_MISMATCH` if the blob's Identifier is not the id of this key;
 *   `ERR_ESCROW_INVALID` if the blob is malformed, does not decrypt, or holds invalid keys.
 */
export function openOfflineEscrow(blob: unknown, sessionKey: Uint8Array): EscrowedKeySet {
  abytes(sessionKey, 'sessionKey', 32);
  const invalid = (msg: string, cause?: unknown): never => {
    throw new EscrowError(ErrorCode.ESCROW_INVALID, `escrow blob invalid: ${msg}`, cause === undefined ? undefined : { cause });
  };
  let obj: unknown = blob;
  if (typeof blob === 'string' || blob instanceof Uint8Array) {
    try {
      obj = parseJsonStrict(typeof blob === 'string' ? blob : fromUtf8(blob));
    } catch (e) {
      invalid('not strict JSON', e);
    }
  } else if (typeof blob !== 'object' || blob === null) {
    throw new TypeError(`"blob" expected a JSON string, bytes or an object, got ${describe(blob)}`);
  }
  const entry = (obj as { OfflineEscrowEntry?: unknown } | null)?.OfflineEscrowEntry;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return invalid('no OfflineEscrowEntry');
  const { Identifier, EncryptedData } = entry as Record<string, unknown>;
  if (typeof Identifier !== 'string') return invalid('no Identifier');
  const expected = escrowBlobId(sessionKey);
  if (Identifier !== expected) {
    throw new EscrowError(ErrorCode.ESCROW_KEY_MISMATCH, `escrow blob ${Identifier} is not the blob of this session key (${expected})`);
  }
  const key = contentKey(sessionKey);
  let plaintext: Uint8Array | undefined;
  try {
    let result;
    try {
      result = decryptJweDirect(EncryptedData, key);
    } catch (e) {
      if (e instanceof JoseError || e instanceof TypeError) return invalid('does not decrypt under this session key', e);
      throw e;
    }
    plaintext = result.plaintext;
    if (result.protectedHeader.kid !== Identifier) invalid('encrypted data is bound to another identifier');
    if (result.protectedHeader.cty !== ESCROW_CTY) invalid(`cty is not ${ESCROW_CTY}`);
    let parsed: unknown;
    try {
      parsed = parseJsonStrict(fromUtf8(plaintext));
    } catch (e) {
      return invalid('plaintext is not strict JSON', e);
    }
    const inner = (parsed as { EscrowedKeySet?: unknown } | null)?.EscrowedKeySet;
    const { set, ids } = checkKeySet(inner, (msg) => invalid(msg));
    return {
      MasterSignatureKey: { ...set.MasterSignatureKey, kid: ids.sign },
      MasterEscrowKeys: set.MasterEscrowKeys.map((k, i) => ({ ...k, kid: astring(ids.escrow[i], 'kid') })),
    };
  } finally {
    wipe(key, plaintext);
  }
}

/**
 * Online escrow: encrypts to the recipients and to the Master Escrow Key as one more recipient.
 *
 * @throws as {@link encryptJwe}.
 */
export async function encryptWithEscrow(
  plaintext: Uint8Array,
  recipients: Array<PublicJwk | PublicKey>,
  masterEscrowKey: PublicJwk | PublicKey,
  opts: { cty?: string; aad?: Uint8Array } = {},
): Promise<JweGeneral> {
  if (!Array.isArray(recipients)) throw new TypeError(`"recipients" expected an array, got ${describe(recipients)}`);
  if (typeof masterEscrowKey !== 'object' || masterEscrowKey === null) {
    throw new TypeError(`"masterEscrowKey" expected a public JWK or PublicKey, got ${describe(masterEscrowKey)}`);
  }
  return encryptJwe(plaintext, [...recipients, masterEscrowKey], opts);
}

/**
 * Online escrow recovery: decrypts with the Master Escrow Key's decrypter.
 *
 * @throws as {@link decryptJwe}.
 */
export async function recoverWithEscrow(
  jwe: unknown,
  escrowDecrypter: Decrypter,
): Promise<{ plaintext: Uint8Array; protectedHeader: Record<string, unknown> }> {
  return decryptJwe(jwe, escrowDecrypter);
}
