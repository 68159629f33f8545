/**
 * The baseline for `npm run bench`'s PKCS#11 figures: a bare pkcs11js C_SignInit + C_Sign loop on a
 * key of a {@link Pkcs11KeyStore}, on its own session, with nothing of meshkit in the loop. The only
 * place outside the store that calls pkcs11js for benchmarking.
 */
import { createHash } from 'node:crypto';
import { abytes, aint } from '../../core/bytes.js';
import { ErrorCode, Pkcs11Error } from '../../core/errors.js';
import type { KeyHandle } from '../types.js';
import { CKM_EDDSA, pk } from './constants.js';
import { call } from './errors.js';
import { withSession } from './session.js';
import { keyObjectId, type Pkcs11KeyStore } from './store.js';

/**
 * Signs `data` `count` times with plain pkcs11js calls (C_SignInit + C_Sign; for P-256 SHA-256 on
 * the host + CKM_ECDSA, the same work meshkit's signer does) on a session of its own, finding the
 * private key by the CKA_ID meshkit gave it.
 * @returns the last signature (as the token returned it).
 * @throws TypeError / RangeError for bad arguments; Pkcs11Error when the key is not on the token or a call fails.
 */
export async function bareSignLoop(store: Pkcs11KeyStore, key: KeyHandle, data: Uint8Array, count: number): Promise<Uint8Array> {
  abytes(data, 'data');
  aint(count, 'count', 1);
  const curve = key.info.curve;
  if (curve !== 'Ed25519' && curve !== 'Ed448' && curve !== 'P-256') throw new RangeError(`"key" expected a signing key, got ${curve}`);
  const mechanism = { mechanism: curve === 'P-256' ? pk('CKM_ECDSA') : CKM_EDDSA };
  const outLength = curve === 'P-256' ? 144 : 114;
  const message = Buffer.from(data);
  return withSession(
    store.module,
    store.slot,
    (session) => {
      const lib = session.lib;
      const h = session.handle;
      const found = session.find([
        { type: pk('CKA_CLASS'), value: pk('CKO_PRIVATE_KEY') },
        { type: pk('CKA_ID'), value: keyObjectId(key.info.keyId) },
      ]);
      const priv = found[0];
      if (priv === undefined) throw new Pkcs11Error(ErrorCode.PKCS11_OBJECT_NOT_FOUND, `key ${key.info.label} is not on token ${store.token.label}`);
      let sig: Buffer = Buffer.alloc(0);
      call('C_Sign', 'bare sign loop', () => {
        for (let i = 0; i < count; i++) {
          const input = curve === 'P-256' ? createHash('sha256').update(message).digest() : message;
          lib.C_SignInit(h, mechanism, priv);
          sig = lib.C_Sign(h, input, Buffer.alloc(outLength));
        }
      });
      return new Uint8Array(sig);
    },
    { readWrite: false },
  );
}
