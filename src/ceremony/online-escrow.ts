/**
 * Online escrow (architecture-04 §5.5.2; docs/ceremony.md "Online escrow"): application private
 * data — typically an application's private decryption key — is encrypted to its normal
 * recipients AND to the Master Escrow Key as one more JWE recipient, so the holder of the master
 * escrow key (on the HSM) can recover it when every device is lost.
 *
 * The JWE is the core's `ECDH-ES+A256KW` + `A256GCM` General JSON ({@link encryptWithEscrow}); a
 * private JWK is carried as its UTF-8 JSON with `cty` {@link ESCROWED_JWK_CTY}. Recovery goes
 * through a {@link Decrypter}, so the master escrow key never leaves its token (PKCS#11
 * CKM_ECDH1_DERIVE) — or a normal recipient decrypts with its own key.
 */
import { encryptWithEscrow, recoverWithEscrow } from '../core/escrow.js';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { aobject, describe, fromUtf8, utf8, wipe } from '../core/bytes.js';
import { EscrowError, ErrorCode, JoseError } from '../core/errors.js';
import { parseJsonStrict, type JweGeneral } from '../core/jose.js';
import { keyId, publicKeyFromJwk, type PublicKey } from '../core/keys.js';
import { readProfile, verifyProfile, type MasterProfile, type SignedProfile } from '../core/profiles.js';
import type { Decrypter, PrivateJwk, PublicJwk } from '../core/signer.js';

/** `cty` of an escrowed private JWK. */
export const ESCROWED_JWK_CTY = 'jwk+json';

/** What {@link recoverApplicationKey} returns. */
export interface RecoveredApplicationData {
  /** The decrypted bytes (the caller wipes them). */
  plaintext: Uint8Array;
  /** The private JWK, when the JWE carries one (`cty` jwk+json). */
  privateJwk?: PrivateJwk;
  protectedHeader: Record<string, unknown>;
  /** The key UDF of the decrypter used. */
  decryptedBy: string;
}

function isPrivateJwk(value: unknown): value is PrivateJwk {
  return typeof value === 'object' && value !== null && !(value instanceof Uint8Array) && typeof (value as { d?: unknown }).d === 'string';
}

/**
 * The Master Escrow Key of a signed Master Profile (verified first: self-signed by its master
 * signature key). With several escrow keys, the first one.
 *
 * @param master the signed Master Profile (JWS object or its JSON text, e.g. master.json).
 * @throws ProfileError when the profile is malformed, forged or not a Master Profile.
 * @throws EscrowError `ERR_ESCROW_INVALID` when the Master Profile lists no escrow key.
 */
export async function masterEscrowKeyOf(master: SignedProfile | string): Promise<{ publicJwk: PublicJwk; keyId: string; master: string }> {
  readProfile(master, 'MasterProfile');
  const verified = await verifyProfile(master);
  const profile = verified.profile as MasterProfile;
  const entry = profile.MasterEscrowKeys[0];
  if (entry === undefined) throw new EscrowError(ErrorCode.ESCROW_INVALID, `Master Profile ${profile.Identifier} lists no master escrow key`);
  return { publicJwk: entry.PublicParameters, keyId: entry.UDF, master: profile.Identifier };
}

/**
 * Encrypts application private data to `recipients` and to the Master Escrow Key.
 *
 * @param data a private JWK (sent as its JSON, `cty` jwk+json) or plaintext bytes.
 * @param recipients the normal recipients' public keys (may be empty: escrow only).
 * @param masterEscrowKey the Master Escrow Key (public JWK or PublicKey; see {@link masterEscrowKeyOf}).
 * @param opts `cty` for plaintext bytes (ignored for a JWK).
 * @throws TypeError for wrong argument types; KeyError `ERR_KEY_INVALID` for a recipient key that
 *   cannot receive ECDH-ES (a signature key) or is malformed.
 */
export async function escrowApplicationKey(
  data: PrivateJwk | Uint8Array,
  recipients: Array<PublicJwk | PublicKey>,
  masterEscrowKey: PublicJwk | PublicKey,
  opts: { cty?: string } = {},
): Promise<JweGeneral> {
  if (!Array.isArray(recipients)) throw new TypeError(`"recipients" expected an array, got ${describe(recipients)}`);
  if (typeof masterEscrowKey !== 'object' || masterEscrowKey === null) {
    throw new TypeError(`"masterEscrowKey" expected a public JWK or PublicKey, got ${describe(masterEscrowKey)}`);
  }
  aobject(opts, 'opts');
  const escrowId = keyId(masterEscrowKey);
  // A recipient listed twice (or the escrow key listed as a recipient) would only repeat itself.
  const seen = new Set<string>([escrowId]);
  const unique = recipients.filter((r) => {
    const id = keyId(r);
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
  if (data instanceof Uint8Array) {
    return encryptWithEscrow(data, unique, masterEscrowKey, opts.cty === undefined ? {} : { cty: opts.cty });
  }
  if (!isPrivateJwk(data)) throw new TypeError(`"data" expected a private JWK (with "d") or a Uint8Array, got ${describe(data)}`);
  const { kid: _kid, ...jwk } = data;
  // The public part must be a valid key; this also refuses an unknown curve early.
  publicKeyFromJwk({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, ...(jwk.y === undefined ? {} : { y: jwk.y }) });
  const plaintext = utf8(JSON.stringify(jwk));
  try {
    return await encryptWithEscrow(plaintext, unique, masterEscrowKey, { cty: ESCROWED_JWK_CTY });
  } finally {
    wipe(plaintext);
  }
}

/**
 * Decrypts an escrowed JWE with a {@link Decrypter}: the Master Escrow Key on the HSM, or a
 * normal recipient's key.
 *
 * @returns the plaintext and, for `cty` jwk+json, the parsed private JWK (its public part checked).
 * @throws JoseError `ERR_JWE_NO_MATCHING_RECIPIENT` when the key is not a recipient,
 *   `ERR_JWE_DECRYPTION_FAILED` / `ERR_JWE_INVALID` as the core's decryptJwe.
 * @throws EscrowError `ERR_ESCROW_INVALID` when a jwk+json payload is not a private JWK.
 */
export async function recoverApplicationKey(jwe: unknown, decrypter: Decrypter): Promise<RecoveredApplicationData> {
  aobject(decrypter, 'decrypter');
  const { plaintext, protectedHeader } = await recoverWithEscrow(jwe, decrypter);
  const out: RecoveredApplicationData = { plaintext, protectedHeader, decryptedBy: decrypter.keyId };
  if (protectedHeader.cty === ESCROWED_JWK_CTY) {
    let parsed: unknown;
    try {
      parsed = parseJsonStrict(fromUtf8(plaintext));
    } catch (e) {
      throw new EscrowError(ErrorCode.ESCROW_INVALID, 'the escrowed key is not strict JSON', { cause: e instanceof JoseError ? e : undefined });
    }
    if (!isPrivateJwk(parsed)) throw new EscrowError(ErrorCode.ESCROW_INVALID, 'the escrowed data is not a private JWK');
    try {
      const pub = publicKeyFromJwk({ kty: parsed.kty, crv: parsed.crv, x: parsed.x, ...(parsed.y === undefined ? {} : { y: parsed.y }) });
      const jwk = { kty: parsed.kty, crv: parsed.crv, x: parsed.x, ...(parsed.y === undefined ? {} : { y: parsed.y }), d: parsed.d };
      const derived = createPublicKey(createPrivateKey({ key: jwk, format: 'jwk' })).export({ format: 'jwk' });
      if (derived.x !== jwk.x || (jwk.y !== undefined && derived.y !== jwk.y)) throw new Error('"d" does not belong to the public key');
      out.privateJwk = { ...jwk, kid: keyId(pub) };
    } catch (e) {
      throw new EscrowError(ErrorCode.ESCROW_INVALID, `the escrowed private JWK has an invalid public part: ${(e as Error).message}`, { cause: e });
    }
  }
  return out;
}
