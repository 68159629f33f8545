/**
 * Runs the KeyStore contract on a TPM-backed token (tpm2-pkcs11 on swtpm behind tpm2-abrmd, made by
 * test/helpers/tpm.ts in a temporary directory): the stand-in for a PIV-like card. It can do P-256
 * ECDSA only — no EdDSA, no ECDH (so no P-256 'derive' keys), no C_CreateObject of private keys.
 */
import { afterAll, describe, it } from 'vitest';
import { startTpm, tpmMissing, type TpmFixture } from '../helpers/tpm.js';
import { runKeyStoreContract } from './keystore-contract.js';

const tpm: TpmFixture | undefined = tpmMissing === undefined ? await startTpm({ label: 'contract', userPin: '4321' }) : undefined;
afterAll(() => tpm?.stop());

if (tpm !== undefined) {
  // Loaded after startTpm: tpm2-pkcs11 reads its environment in C_Initialize.
  const { Pkcs11KeyStore } = await import('../../src/keystore/pkcs11/index.js');
  runKeyStoreContract('tpm2-pkcs11 on swtpm (pkcs11:)', () => Pkcs11KeyStore.open(tpm.uri(), new TextEncoder().encode('4321')), {
    curves: ['P-256'],
    supportsImport: false,
    supportsP256Derive: false,
  });
} else {
  // test/helpers/tpm.ts has printed why (tpmMissing); the title repeats it.
  describe.skipIf(true)(`KeyStore contract: tpm2-pkcs11 (skipped: ${tpmMissing})`, () => {
    it('needs swtpm, tpm2-abrmd, tpm2-tools, libtpm2-pkcs11 and dbus', () => undefined);
  });
}
