/**
 * MKBOX1 — a sealed box addressed to a device key (docs/enrollment.md "MKBOX1").
 *
 * `box = epk (32, X25519 u of a fresh ephemeral key) ‖ ciphertext ‖ tag (16)`;
 * `shared = X25519(e, R)` (R = the recipient's 32-byte u), all-zero → failure;
 * `okm = SHA-512("meshkit-box-v1" ‖ 0x00 ‖ label ‖ 0x00 ‖ shared ‖ epk ‖ R)`, key = okm[0..32], nonce = okm[32..44];
 * ChaCha20-Poly1305 (RFC 8439) with AAD = label. `shared` and `okm` are wiped after use.
 *
 * The host seals with plain `node:crypto` X25519 ({@link sealBox}); a device (or the in-process soft device) opens
 * with its raw, unclamped scalar through {@link ecdhWithScalar} ({@link openBox}).
 */
import { createCipheriv, createDecipheriv, createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { abytes, b64u, concatBytes, fromB64u, wipe } from '../core/bytes.js';
import { ecdhWithScalar } from '../core/cogen.js';
import { deviceError } from './framing.js';

/** The labels of docs/enrollment.md. */
export type BoxLabel = 'contribution' | 'config';

/** Bytes a box adds to its plaintext: the ephemeral u (32) and the tag (16). */
export const BOX_OVERHEAD = 48;

const DOMAIN = new TextEncoder().encode('meshkit-box-v1');
const X25519_PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);

function alabel(label: unknown): Uint8Array {
  if (typeof label !== 'string' || label.length === 0 || label.length > 64 || !/^[\x21-\x7e]+$/.test(label)) {
    throw new RangeError(`"label" expected a non-empty printable ASCII string, got ${typeof label === 'string' ? JSON.stringify(label) : typeof label}`);
  }
  return new TextEncoder().encode(label);
}

/** The 32-byte u of a recipient given as u (32) or extended u ‖ sign (33). */
function recipientU(key: Uint8Array, field: string): Uint8Array {
  abytes(key, field, 32, 33);
  if (key.length === 33 && key[32] !== 0x00 && key[32] !== 0x80) {
    throw new RangeError(`"${field}" extended X25519 key must end in 0x00 or 0x80`);
  }
  return key.slice(0, 32);
}

function keyAndNonce(label: Uint8Array, shared: Uint8Array, epk: Uint8Array, r: Uint8Array): { key: Uint8Array; nonce: Uint8Array; okm: Uint8Array } {
  const okm = new Uint8Array(createHash('sha512').update(concatBytes(DOMAIN, Uint8Array.of(0), label, Uint8Array.of(0), shared, epk, r)).digest());
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32, 44), okm };
}

function allZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (const b of bytes) acc |= b;
  return acc === 0;
}

/**
 * Seals `plaintext` to an X25519 recipient key (MKBOX1).
 * @param recipient the recipient's X25519 public key: u (32 bytes) or the extended u ‖ sign form (33 bytes)
 * @param label the box label (`contribution` or `config`; any printable ASCII is accepted), bound as AAD
 * @param plaintext the bytes to seal
 * @param opts.ephemeral a fixed 32-byte X25519 private key instead of a fresh one (deterministic tests only)
 * @returns epk ‖ ciphertext ‖ tag
 * @throws TypeError / RangeError for a wrong recipient, label, plaintext or ephemeral key
 * @throws DeviceError (status DECRYPT_FAILED) when the recipient key is invalid or of small order (all-zero or failed agreement)
 */
export function sealBox(recipient: Uint8Array, label: string, plaintext: Uint8Array, opts: { ephemeral?: Uint8Array } = {}): Uint8Array {
  const r = recipientU(recipient, 'recipient');
  const l = alabel(label);
  abytes(plaintext, 'plaintext');
  if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" expected an object');
  let privateKey: KeyObject;
  if (opts.ephemeral !== undefined) {
    abytes(opts.ephemeral, 'opts.ephemeral', 32);
    const der = concatBytes(X25519_PKCS8_PREFIX, opts.ephemeral);
    privateKey = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
    wipe(der);
  } else {
    privateKey = generateKeyPairSync('x25519').privateKey;
  }
  const epk = fromB64u(String(createPublicKey(privateKey).export({ format: 'jwk' }).x), 'epk');
  let shared: Uint8Array;
  try {
    const peer = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64u(r) }, format: 'jwk' });
    shared = new Uint8Array(diffieHellman({ privateKey, publicKey: peer }));
  } catch (e) {
    throw deviceError('DECRYPT_FAILED', `cannot seal to this recipient key: ${(e as Error).message}`);
  }
  if (allZero(shared)) throw deviceError('DECRYPT_FAILED', 'cannot seal to this recipient key: the shared secret is all zero');
  const { key, nonce, okm } = keyAndNonce(l, shared, epk, r);
  try {
    const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    cipher.setAAD(l, { plaintextLength: plaintext.length });
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return concatBytes(epk, body, cipher.getAuthTag());
  } finally {
    wipe(shared, okm);
  }
}

/**
 * Opens an MKBOX1 box addressed to the key whose raw (unclamped) X25519 scalar is `scalar` — the device side.
 * @param scalar the recipient's raw scalar, 1 ≤ s < L
 * @param myU the recipient's public key: u (32 bytes) or extended (33 bytes), as bound into the key derivation
 * @param label the label the box was sealed under
 * @param box epk ‖ ciphertext ‖ tag
 * @returns the plaintext
 * @throws TypeError / RangeError for a wrong scalar, key, label or box type
 * @throws DeviceError (status DECRYPT_FAILED) for a box shorter than 48 bytes, a failed or all-zero agreement, or a
 *   tag that does not verify (wrong key, wrong label, altered bytes)
 */
export function openBox(scalar: bigint, myU: Uint8Array, label: string, box: Uint8Array): Uint8Array {
  if (typeof scalar !== 'bigint') throw new TypeError('"scalar" expected a bigint');
  const r = recipientU(myU, 'myU');
  const l = alabel(label);
  abytes(box, 'box');
  if (box.length < BOX_OVERHEAD) throw deviceError('DECRYPT_FAILED', `${label} box of ${box.length} bytes is shorter than ${BOX_OVERHEAD}`);
  const epk = box.slice(0, 32);
  let shared: Uint8Array;
  try {
    shared = ecdhWithScalar('X25519', scalar, epk);
  } catch (e) {
    throw deviceError('DECRYPT_FAILED', `${label} box: key agreement failed (${(e as Error).message})`);
  }
  const { key, nonce, okm } = keyAndNonce(l, shared, epk, r);
  try {
    const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    decipher.setAAD(l, { plaintextLength: box.length - BOX_OVERHEAD });
    decipher.setAuthTag(box.subarray(box.length - 16));
    const out = decipher.update(box.subarray(32, box.length - 16));
    try {
      decipher.final();
    } catch {
      out.fill(0);
      throw deviceError('DECRYPT_FAILED', `${label} box: authentication tag does not verify`);
    }
    const plaintext = new Uint8Array(out);
    out.fill(0);
    return plaintext;
  } finally {
    wipe(shared, okm);
  }
}
