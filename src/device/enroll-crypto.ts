/**
 * The small hashing and signature helpers the enrollment protocol uses on both ends: the host (enroll.ts) and the
 * in-process device (soft-device.ts). See docs/enrollment.md for where each one is used.
 */

import { createHash, verify } from 'node:crypto';
import { abytes, astring, concatBytes, utf8 } from '../core/bytes.js';
import { publicKeyFromRaw, publicKeyObject } from '../core/keys.js';

/**
 * SHA-512 of the concatenation of `parts`.
 * @param parts the byte strings, hashed in order
 * @returns the 64-byte digest
 * @throws TypeError when a part is not a Uint8Array.
 */
export function sha512(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha512');
  parts.forEach((p, i) => h.update(abytes(p, `parts[${i}]`)));
  return new Uint8Array(h.digest());
}

/**
 * A signed or hashed context of docs/enrollment.md: the UTF-8 label, one zero byte, then the parts.
 * @param label the ASCII label
 * @param parts the byte strings that follow
 * @returns label ‖ 0x00 ‖ parts…
 * @throws TypeError when label is not a string or a part is not a Uint8Array.
 */
export function context(label: string, ...parts: Uint8Array[]): Uint8Array {
  astring(label, 'label');
  return concatBytes(utf8(label), Uint8Array.of(0), ...parts);
}

/**
 * Verifies an Ed25519 signature over `message` with a raw 32-byte public key. Wrong lengths or an invalid key give
 * false, not an error.
 * @param signature the 64-byte signature
 * @param message the signed bytes
 * @param publicKey the raw 32-byte public key
 * @returns whether the signature is valid
 * @throws TypeError when an argument is not a Uint8Array.
 */
export function verifyEd25519(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  abytes(signature, 'signature');
  abytes(message, 'message');
  abytes(publicKey, 'publicKey');
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return verify(null, message, publicKeyObject(publicKeyFromRaw('Ed25519', publicKey)), signature);
  } catch {
    return false;
  }
}
