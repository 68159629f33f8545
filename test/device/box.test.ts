/**
 * MKBOX1 (docs/enrollment.md): sealed with node:crypto X25519 on the host, opened with a raw unclamped scalar as a
 * device does. The expected bytes are assembled here from the document's formula with node:crypto primitives.
 */
import { createCipheriv, createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { b64u, bytesToBigIntLE, concatBytes, fromB64u } from '../../src/core/bytes.js';
import { GROUP_ORDER, publicKeyFromScalar, secretScalarFromSeed } from '../../src/core/cogen.js';
import { DeviceError } from '../../src/core/errors.js';
import { BOX_OVERHEAD, openBox, sealBox } from '../../src/device/box.js';
import { DeviceStatus } from '../../src/device/protocol.generated.js';

const L = GROUP_ORDER.X25519;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function randomScalar(): bigint {
  const s = bytesToBigIntLE(randomBytes(64)) % L;
  return s === 0n ? 1n : s;
}

function expectDecryptFailed(fn: () => unknown): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DeviceError);
  expect((caught as DeviceError).status).toBe(DeviceStatus.DECRYPT_FAILED);
}

describe('MKBOX1', () => {
  it('a box sealed to a raw scalar key opens with that scalar, for the 32- and 33-byte key forms', () => {
    const s = randomScalar();
    const u = publicKeyFromScalar('X25519', s);
    const extended = publicKeyFromScalar('X25519', s, { extended: true });
    expect(extended.subarray(0, 32)).toEqual(u);
    const message = text('ssid=meshkit\npsk=correct horse');
    for (const recipient of [u, extended]) {
      for (const mine of [u, extended]) {
        const box = sealBox(recipient, 'config', message);
        expect(box.length).toBe(message.length + BOX_OVERHEAD);
        expect(openBox(s, mine, 'config', box)).toEqual(message);
      }
    }
    expect(openBox(s, u, 'contribution', sealBox(u, 'contribution', new Uint8Array(0)))).toEqual(new Uint8Array(0));
  });

  it('matches the document formula byte for byte (fixed ephemeral key)', () => {
    const s = randomScalar();
    const r = publicKeyFromScalar('X25519', s);
    const e = new Uint8Array(randomBytes(32));
    const plaintext = text('{"mqtt":"mqtts://broker"}');
    const box = sealBox(r, 'config', plaintext, { ephemeral: e });
    // independent assembly: standard X25519 (clamped e) with node:crypto, SHA-512 okm, RFC 8439 AEAD
    const priv = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: b64u(e), x: '' }, format: 'jwk' } as never);
    const epk = fromB64u(String(createPublicKey(priv).export({ format: 'jwk' }).x));
    const shared = diffieHellman({ privateKey: priv, publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64u(r) }, format: 'jwk' }) });
    const okm = createHash('sha512').update(concatBytes(text('meshkit-box-v1'), Uint8Array.of(0), text('config'), Uint8Array.of(0), shared, epk, r)).digest();
    const cipher = createCipheriv('chacha20-poly1305', okm.subarray(0, 32), okm.subarray(32, 44), { authTagLength: 16 });
    cipher.setAAD(text('config'), { plaintextLength: plaintext.length });
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    expect(box).toEqual(concatBytes(epk, ct, cipher.getAuthTag()));
  });

  it('a standard X25519 key opens as its clamped scalar (the device agreement equals X25519(clamp(k)))', () => {
    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    const k = fromB64u(String(privateKey.export({ format: 'jwk' }).d));
    const u = fromB64u(String(publicKey.export({ format: 'jwk' }).x));
    const s = secretScalarFromSeed('X25519', k);
    const box = sealBox(u, 'contribution', text('hello'));
    expect(openBox(s, u, 'contribution', box)).toEqual(text('hello'));
  });

  it('a wrong label, a wrong key, an altered byte or a short box is DECRYPT_FAILED', () => {
    const s = randomScalar();
    const u = publicKeyFromScalar('X25519', s);
    const box = sealBox(u, 'config', text('secret config'));
    expectDecryptFailed(() => openBox(s, u, 'contribution', box));
    const other = randomScalar();
    expectDecryptFailed(() => openBox(other, publicKeyFromScalar('X25519', other), 'config', box));
    // the right scalar with another recipient u bound into the key derivation
    expectDecryptFailed(() => openBox(s, publicKeyFromScalar('X25519', other), 'config', box));
    for (const index of [0, 33, box.length - 1]) {
      const altered = box.slice();
      altered[index] = (altered[index] ?? 0) ^ 0x01;
      expectDecryptFailed(() => openBox(s, u, 'config', altered));
    }
    expectDecryptFailed(() => openBox(s, u, 'config', box.subarray(0, 47)));
    // an all-zero ephemeral key (small order) fails the agreement
    const zero = box.slice();
    zero.fill(0, 0, 32);
    expectDecryptFailed(() => openBox(s, u, 'config', zero));
  });

  it('sealing to a small-order recipient key fails; bad arguments are TypeError / RangeError', () => {
    expectDecryptFailed(() => sealBox(new Uint8Array(32), 'config', text('x')));
    const u = publicKeyFromScalar('X25519', randomScalar());
    expect(() => sealBox(u.subarray(0, 31), 'config', text('x'))).toThrow(RangeError);
    expect(() => sealBox(concatBytes(u, Uint8Array.of(0x01)), 'config', text('x'))).toThrow(RangeError);
    expect(() => sealBox(u, '', text('x'))).toThrow(RangeError);
    expect(() => sealBox(u, 'config', 'x' as never)).toThrow(TypeError);
    expect(() => sealBox(u, 'config', text('x'), { ephemeral: new Uint8Array(31) })).toThrow(RangeError);
    expect(() => openBox(1 as never, u, 'config', new Uint8Array(64))).toThrow(TypeError);
  });
});
