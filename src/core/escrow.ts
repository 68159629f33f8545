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
 * Wrapped form (KeyOrigin `generate-on-token-wrapped`, docs/ceremony.md): the master keys were made
 * on an HSM and can leave it only wrapped, so the plaintext is `{"WrappedKeySet":{"Wrapping":
 * "CKM_AES_KEY_WRAP_PAD","Keys":[{Role, Label, Curve, PublicKey, Wrapped}]}}` — each private key
 * wrapped by the token under K itself (RFC 5649 AES key wrap with padding, PKCS#8 inside;
 * `Wrapped` is base64url), next to its public JWK. Everything else is the same: the same JWE
 * (`cty` "EscrowedKeySet": the escrowed key set, in either form — the plaintext's single member
 * says which), the same content key HKDF(K) and blob id UDF(K), so the same shares recover it.
 * K is supplied by the caller ({@link createOfflineEscrowWrapped}), who imported it into the token
 * to wrap with; {@link openOfflineEscrowAny} returns either form, discriminated by `Form`.
 *
 * Online escrow: the Master Escrow Key is one more JWE recipient of application private data
 * ({@link encryptWithEscrow} / {@link recoverWithEscrow}).
 */
import { createPrivateKey, createPublicKey, hkdfSync, randomBytes } from 'node:crypto';
import { abytes, aobject, astring, describe, fromB64u, fromUtf8, utf8, wipe } from './bytes.js';
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

/** The role of a wrapped master key. */
export type WrappedKeyRole = 'MasterSignatureKey' | 'MasterEscrowKey';

/** One master private key as its token wrapped it under the session key K. */
export interface WrappedKey {
  Role: WrappedKeyRole;
  /** The CKA_LABEL it had on the token (and gets again on recovery). */
  Label: string;
  Curve: Curve;
  /** Its public key (`{kty, crv, x, y?}`; never a private member). */
  PublicKey: PublicJwk;
  /** base64url of the token's C_WrapKey output (RFC 5649, PKCS#8 PrivateKeyInfo inside). */
  Wrapped: string;
}

/** The master keys escrowed by wrapping on the token (KeyOrigin generate-on-token-wrapped). */
export interface WrappedKeySet {
  /** The wrapping mechanism; K is the wrapping key. */
  Wrapping: 'CKM_AES_KEY_WRAP_PAD';
  /** The MasterSignatureKey first, then the MasterEscrowKey(s). */
  Keys: WrappedKey[];
}

/** What {@link openOfflineEscrowAny} found in a blob; each key with `kid` recomputed from its public part. */
export type OpenedOfflineEscrow =
  | { Form: 'EscrowedKeySet'; KeySet: EscrowedKeySet }
  | { Form: 'WrappedKeySet'; KeySet: { Wrapping: 'CKM_AES_KEY_WRAP_PAD'; Keys: Array<WrappedKey & { kid: string }> } };

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

const WRAPPED_MEMBERS = ['Role', 'Label', 'Curve', 'PublicKey', 'Wrapped'];

/** Checks a WrappedKeySet (shape, roles and order, curves, public keys, wrapped bytes) and returns a clean copy and the key ids. */
function checkWrappedSet(value: unknown, fail: (msg: string) => never): { set: WrappedKeySet; ids: string[] } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('wrapped key set must be an object');
  const v = value as Record<string, unknown>;
  if (v.Wrapping !== 'CKM_AES_KEY_WRAP_PAD') return fail(`Wrapping ${JSON.stringify(v.Wrapping)} is not "CKM_AES_KEY_WRAP_PAD"`);
  if (!Array.isArray(v.Keys) || v.Keys.length < 2) return fail('Keys must be an array of the MasterSignatureKey and at least one MasterEscrowKey');
  const keys: WrappedKey[] = [];
  const ids: string[] = [];
  for (const [i, item] of (v.Keys as unknown[]).entries()) {
    const field = `Keys[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return fail(`${field} must be an object`);
    const k = item as Record<string, unknown>;
    const extra = Object.keys(k).filter((m) => !WRAPPED_MEMBERS.includes(m));
    if (extra.length > 0) return fail(`${field} has unexpected member(s) ${extra.map((m) => JSON.stringify(m)).join(', ')} (a wrapped key holds no private key in clear)`);
    const role = i === 0 ? 'MasterSignatureKey' : 'MasterEscrowKey';
    if (k.Role !== role) return fail(`${field}.Role is ${JSON.stringify(k.Role)}, expected ${role} (the signature key first, then escrow keys)`);
    if (typeof k.Label !== 'string' || k.Label === '') return fail(`${field}.Label must be a non-empty string`);
    const pk = k.PublicKey;
    if (typeof pk !== 'object' || pk === null || Array.isArray(pk)) return fail(`${field}.PublicKey must be a public JWK object`);
    const j = pk as Record<string, unknown>;
    if (j.d !== undefined) return fail(`${field}.PublicKey holds a private member "d"`);
    const publicPart: Record<string, unknown> = { kty: j.kty, crv: j.crv, x: j.x };
    if (j.y !== undefined) publicPart.y = j.y;
    let pub: PublicKey;
    try {
      pub = publicKeyFromJwk(publicPart);
    } catch (e) {
      return fail(`${field}.PublicKey is invalid: ${(e as Error).message}`);
    }
    const curves = role === 'MasterSignatureKey' ? SIGNATURE_CURVES : ENCRYPTION_CURVES;
    if (!curves.includes(pub.curve)) return fail(`${field} is a ${pub.curve} key; expected ${curves.join(', ')}`);
    if (k.Curve !== pub.curve) return fail(`${field}.Curve ${JSON.stringify(k.Curve)} is not the curve of its PublicKey (${pub.curve})`);
    if (typeof k.Wrapped !== 'string') return fail(`${field}.Wrapped must be a base64url string`);
    let wrapped: Uint8Array;
    try {
      wrapped = fromB64u(k.Wrapped, `${field}.Wrapped`);
    } catch {
      return fail(`${field}.Wrapped is not base64url`);
    }
    // RFC 5649 output: a multiple of 8 bytes, at least 16.
    if (wrapped.length < 16 || wrapped.length % 8 !== 0) return fail(`${field}.Wrapped is ${wrapped.length} bytes, not AES key wrap (with padding) output`);
    const clean: Record<string, string> = { kty: String(j.kty), crv: String(j.crv), x: String(j.x) };
    if (typeof j.y === 'string') clean.y = j.y;
    keys.push({ Role: role, Label: k.Label, Curve: pub.curve, PublicKey: clean as unknown as PublicJwk, Wrapped: k.Wrapped });
    ids.push(keyId(pub));
  }
  return { set: { Wrapping: 'CKM_AES_KEY_WRAP_PAD', Keys: keys }, ids };
}

/** Encrypts a checked plaintext object under K. */
function seal(content: object, sessionKey: Uint8Array): { blobId: string; blob: OfflineEscrowBlob } {
  const blobId = escrowBlobId(sessionKey);
  const key = contentKey(sessionKey);
  const plaintext = utf8(JSON.stringify(content));
  try {
    const EncryptedData = encryptJweDirect(plaintext, key, { kid: blobId, cty: ESCROW_CTY });
    return { blobId, blob: { OfflineEscrowEntry: { Identifier: blobId, EncryptedData } } };
  } finally {
    wipe(key, plaintext);
  }
}

/**
 * Creates an offline escrow blob of `keySet` under a 32-byte session key: a fresh one from the OS
 * CSPRNG, or `sessionKey` when given (then the same array is returned; it stays the caller's).
 *
 * The caller must split `sessionKey` (Shamir) and then wipe it.
 *
 * @throws TypeError if `keySet` is not an object or `sessionKey` is not a Uint8Array; RangeError
 *   unless `sessionKey` is 32 bytes.
 * @throws EscrowError `ERR_ESCROW_INVALID` if a key is malformed, of the wrong curve (signature:
 *   Ed25519/Ed448/P-256; escrow: X25519/X448/P-256) or its `d` does not match its public key.
 */
export function createOfflineEscrow(keySet: EscrowedKeySet, sessionKey?: Uint8Array): { sessionKey: Uint8Array; blobId: string; blob: OfflineEscrowBlob } {
  aobject(keySet, 'keySet');
  if (sessionKey !== undefined) abytes(sessionKey, 'sessionKey', 32);
  const fail = (msg: string): never => {
    throw new EscrowError(ErrorCode.ESCROW_INVALID, `cannot escrow: ${msg}`);
  };
  const { set } = checkKeySet(keySet, fail);
  const k = sessionKey ?? new Uint8Array(randomBytes(32));
  return { sessionKey: k, ...seal({ EscrowedKeySet: set }, k) };
}

/**
 * Creates an offline escrow blob of master keys wrapped on a token under the session key
 * `sessionKey` (which the caller imported into the token to wrap with, and will split and wipe).
 * The blob id, content key and JWE are those of {@link createOfflineEscrow}; the plaintext is
 * `{"WrappedKeySet":…}`.
 *
 * @throws TypeError if `keySet` is not an object or `sessionKey` is not a Uint8Array; RangeError
 *   unless `sessionKey` is 32 bytes.
 * @throws EscrowError `ERR_ESCROW_INVALID` if the set is malformed: Wrapping is not
 *   CKM_AES_KEY_WRAP_PAD, roles out of order (MasterSignatureKey first, then at least one
 *   MasterEscrowKey), a curve not allowed for its role or not that of its PublicKey, a PublicKey
 *   with a private member, a Wrapped value that is not base64url AES-KWP output, or any other member.
 */
export function createOfflineEscrowWrapped(keySet: WrappedKeySet, sessionKey: Uint8Array): { blobId: string; blob: OfflineEscrowBlob } {
  aobject(keySet, 'keySet');
  abytes(sessionKey, 'sessionKey', 32);
  const { set } = checkWrappedSet(keySet, (msg: string): never => {
    throw new EscrowError(ErrorCode.ESCROW_INVALID, `cannot escrow: ${msg}`);
  });
  return seal({ WrappedKeySet: set }, sessionKey);
}

/**
 * Opens an offline escrow blob of private JWKs (`EscrowedKeySet`) with the (recombined) session key.
 *
 * @returns the key set, each key as `{kty, crv, x, y?, d, kid}` with `kid` recomputed from its
 *   public part (never taken from the blob).
 * @throws TypeError / RangeError for bad argument types or a session key that is not 32 bytes.
 * @throws EscrowError `ERR_ESCROW_KEY_MISMATCH` if the blob's Identifier is not the id of this key;
 *   `ERR_ESCROW_INVALID` if the blob is malformed, does not decrypt, or holds invalid keys — or
 *   holds the wrapped form (open that with {@link openOfflineEscrowAny}).
 */
export function openOfflineEscrow(blob: unknown, sessionKey: Uint8Array): EscrowedKeySet {
  const opened = openOfflineEscrowAny(blob, sessionKey);
  if (opened.Form !== 'EscrowedKeySet') {
    throw new EscrowError(
      ErrorCode.ESCROW_INVALID,
      'escrow blob invalid: it holds a WrappedKeySet (keys wrapped on a token under the session key), not private keys: open it with openOfflineEscrowAny and unwrap on a token',
    );
  }
  return opened.KeySet;
}

/**
 * Opens an offline escrow blob with the (recombined) session key, in either form: private JWKs
 * (`Form: 'EscrowedKeySet'`, as {@link openOfflineEscrow}) or keys wrapped on a token under the
 * session key (`Form: 'WrappedKeySet'`; each key gets `kid` recomputed from its PublicKey).
 *
 * @throws TypeError / RangeError for bad argument types or a session key that is not 32 bytes.
 * @throws EscrowError `ERR_ESCROW_KEY_MISMATCH` if the blob's Identifier is not the id of this key;
 *   `ERR_ESCROW_INVALID` if the blob is malformed, does not decrypt, its plaintext is not exactly
 *   one of `{"EscrowedKeySet":…}` / `{"WrappedKeySet":…}`, or it holds invalid keys.
 */
export function openOfflineEscrowAny(blob: unknown, sessionKey: Uint8Array): OpenedOfflineEscrow {
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
    const members = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? Object.keys(parsed) : [];
    if (members.length !== 1 || (members[0] !== 'EscrowedKeySet' && members[0] !== 'WrappedKeySet')) {
      return invalid(`plaintext must be {"EscrowedKeySet":…} or {"WrappedKeySet":…}, has ${members.length === 0 ? 'no member' : members.map((m) => JSON.stringify(m)).join(', ')}`);
    }
    const p = parsed as Record<string, unknown>;
    if (members[0] === 'WrappedKeySet') {
      const { set, ids } = checkWrappedSet(p.WrappedKeySet, (msg) => invalid(msg));
      return { Form: 'WrappedKeySet', KeySet: { Wrapping: set.Wrapping, Keys: set.Keys.map((k, i) => ({ ...k, kid: astring(ids[i], 'kid') })) } };
    }
    const { set, ids } = checkKeySet(p.EscrowedKeySet, (msg) => invalid(msg));
    return {
      Form: 'EscrowedKeySet',
      KeySet: {
        MasterSignatureKey: { ...set.MasterSignatureKey, kid: ids.sign },
        MasterEscrowKeys: set.MasterEscrowKeys.map((k, i) => ({ ...k, kid: astring(ids.escrow[i], 'kid') })),
      },
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
