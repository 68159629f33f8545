/**
 * Runs the KeyStore contract on a SoftHSM2 token through PKCS#11 (a scratch token directory made by
 * test/helpers/softhsm.ts; the system token store is never touched).
 */
import { afterAll, describe, it } from 'vitest';
import { Pkcs11KeyStore } from '../../src/keystore/pkcs11/index.js';
import { createSoftHsm, softhsmMissing, type SoftHsmFixture } from '../helpers/softhsm.js';
import { runKeyStoreContract } from './keystore-contract.js';

const hsm: SoftHsmFixture | undefined = softhsmMissing === undefined ? createSoftHsm([{ label: 'contract', userPin: '4321' }]) : undefined;
afterAll(() => hsm?.cleanup());

if (hsm !== undefined) {
  runKeyStoreContract('softhsm (pkcs11:)', () => Pkcs11KeyStore.open(hsm.uri('contract'), new TextEncoder().encode('4321')));
} else {
  // test/helpers/softhsm.ts has printed why (softhsmMissing); the title repeats it.
  describe.skipIf(true)(`KeyStore contract: softhsm (skipped: ${softhsmMissing})`, () => {
    it('needs SoftHSM2', () => undefined);
  });
}
