/** Runs the KeyStore contract on the software key store (a fresh encrypted file per test, scrypt N = 2^14). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SoftwareKeyStore } from '../../src/keystore/software.js';
import { runKeyStoreContract } from './keystore-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'meshkit-contract-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

runKeyStoreContract('software (file:)', () =>
  SoftwareKeyStore.open(join(dir, `store-${++n}.json`), new TextEncoder().encode('contract passphrase'), { create: true, kdfCost: 14 }),
);
