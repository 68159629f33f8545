/**
 * Private-key material on the host, shared by the key stores: raw lengths, PKCS#8 wrapping for
 * node:crypto, the P-256 scalar range, and the checks of a private JWK before it is stored or
 * imported into a token (`d` well formed and in range, and `x`/`y` belonging to `d`).
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { aobject, fromB64u, wipe } from '../core/bytes.js';
import { ErrorCode, KeyError } from '../core/errors.js';
import { keyId as computeKeyId, publicKeyFromJwk, publicKeyToJwk } from '../core/keys.js';
import type { Curve, PublicJwk } from '../core/signer.js';
import { acurve, resolveUsage, type KeyUsage } from './types.js';

/** Raw private key lengths (RFC 8032 / RFC 7748 seeds, P-256 scalar). */
export const PRIVATE_LENGTH: Readonly<Record<Curve, number>> = { Ed25519: 32, Ed448: 57, X25519: 32, X448: 56, 'P-256': 32 };

/** PKCS#8 DER prefixes (RFC 8410; RFC 5915 inside PKCS#8 for P-256, without the optional public key). */
const PKCS8_PREFIX: Readonly<Record<Curve, string>> = {
  Ed25519: '302e020100300506032b657004220420',
  X25519: '302e020100300506032b656e04220420',
  Ed448: '3047020100300506032b6571043b0439',
  X448: '3046020100300506032b656f043a0438',
  'P-256': '3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420',
};

const P256_ORDER = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');

/** A node:crypto private KeyObject for raw key bytes (the DER copy is wiped; the KeyObject cannot be). */
export function privateKeyObject(curve: Curve, raw: Uint8Array): KeyObject {
  const der = Buffer.concat([Buffer.from(PKCS8_PREFIX[curve], 'hex'), raw]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    wipe(der);
  }
}

/** True when 1 ≤ d < n for P-256 (big-endian bytes). */
export function p256ScalarInRange(d: Uint8Array): boolean {
  let zero = true;
  for (const b of d) if (b !== 0) zero = false;
  return !zero && Buffer.compare(Buffer.from(d.buffer, d.byteOffset, d.byteLength), P256_ORDER) < 0;
}

/** Public JWK and key id of a private KeyObject, through the core's canonical encoding. */
export function publicOf(priv: KeyObject): { publicJwk: PublicJwk; keyId: string } {
  const jwk = createPublicKey(priv).export({ format: 'jwk' });
  const pub = publicKeyFromJwk({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, ...(jwk.y === undefined ? {} : { y: jwk.y }) });
  return { publicJwk: publicKeyToJwk(pub), keyId: computeKeyId(pub) };
}

/** A private JWK that passed {@link checkPrivateJwk}. The caller wipes `raw` when done. */
export interface CheckedPrivateKey {
  curve: Curve;
  usage: KeyUsage;
  raw: Uint8Array;
  keyId: string;
  publicJwk: PublicJwk;
}

/**
 * Checks a private JWK for import: the curve and usage are known, `d` is base64url of the right
 * length (and in range for P-256), and the public members belong to `d`.
 * @throws TypeError / RangeError for a wrong argument type, an unknown curve or usage.
 * @throws KeyError ERR_KEY_INVALID when `d` is missing, malformed, out of range or not matching x/y.
 */
export function checkPrivateJwk(privateJwk: unknown, usage?: KeyUsage): CheckedPrivateKey {
  const jwk = aobject(privateJwk, 'privateJwk');
  const curve = acurve(jwk['crv'], 'privateJwk.crv');
  const resolvedUsage = resolveUsage(curve, usage);
  if (typeof jwk['d'] !== 'string') throw new KeyError(ErrorCode.KEY_INVALID, `"privateJwk.d" missing: not a private JWK`);
  let raw: Uint8Array;
  try {
    raw = fromB64u(jwk['d'], 'privateJwk.d');
  } catch (e) {
    throw new KeyError(ErrorCode.KEY_INVALID, `"privateJwk.d" is not base64url`, { cause: e });
  }
  try {
    if (raw.length !== PRIVATE_LENGTH[curve]) {
      throw new KeyError(ErrorCode.KEY_INVALID, `"privateJwk.d" expected ${PRIVATE_LENGTH[curve]} bytes for ${curve}, got ${raw.length}`);
    }
    if (curve === 'P-256' && !p256ScalarInRange(raw)) throw new KeyError(ErrorCode.KEY_INVALID, `"privateJwk.d" is out of range for P-256`);
    const { d: _d, ...publicPart } = jwk;
    const claimed = publicKeyFromJwk(publicPart); // KeyError if malformed
    let actual: { publicJwk: PublicJwk; keyId: string };
    try {
      actual = publicOf(privateKeyObject(curve, raw));
    } catch (e) {
      throw new KeyError(ErrorCode.KEY_INVALID, `"privateJwk.d" is not a valid ${curve} private key`, { cause: e });
    }
    if (claimed.curve !== curve || computeKeyId(claimed) !== actual.keyId) {
      throw new KeyError(ErrorCode.KEY_INVALID, `"privateJwk": the public key (x/y) does not belong to d`);
    }
    return { curve, usage: resolvedUsage, raw, keyId: actual.keyId, publicJwk: actual.publicJwk };
  } catch (e) {
    wipe(raw);
    throw e;
  }
}
