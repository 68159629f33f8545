/**
 * The KeyStore contract (test/contracts/keystore-contract.ts) against a real PKCS#11 token: an HSM,
 * a smartcard through OpenSC, or any other module. Enabled by environment variables:
 *
 *   MESHKIT_HW_PKCS11_MODULE     the PKCS#11 library (e.g. /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so)
 *   MESHKIT_HW_PKCS11_TOKEN      the token label
 *   MESHKIT_HW_PKCS11_PIN_FILE   a file whose first line is the user PIN, or
 *   MESHKIT_HW_PKCS11_PIN_ENV    the name of a variable holding the user PIN
 *   MESHKIT_HW_PKCS11_CURVES     optional, comma-separated (Ed25519,Ed448,X25519,X448,P-256);
 *                                default: the curves the capability probe says the token can generate
 *                                and use (sign or derive)
 *   MESHKIT_HW_PKCS11_IMPORT     optional, "0" when the token refuses C_CreateObject of private keys
 *
 * Without the module, token and a PIN source the suite is skipped with a printed reason. The suite
 * creates keys labelled `contract-…` and deletes them afterwards.
 */
import { existsSync } from 'node:fs';
import { describe, it } from 'vitest';
import { CURVES, type Curve } from '../src/core/signer.js';
import { Pkcs11Module } from '../src/keystore/pkcs11/module.js';
import { Pkcs11KeyStore } from '../src/keystore/pkcs11/store.js';
import { readPinFile } from '../src/keystore/pkcs11/pin.js';
import { runKeyStoreContract } from '../test/contracts/keystore-contract.js';

const VARS = 'MESHKIT_HW_PKCS11_MODULE, MESHKIT_HW_PKCS11_TOKEN and MESHKIT_HW_PKCS11_PIN_FILE or MESHKIT_HW_PKCS11_PIN_ENV';
const env = process.env;
const modulePath = env['MESHKIT_HW_PKCS11_MODULE'];
const tokenLabel = env['MESHKIT_HW_PKCS11_TOKEN'];
const pinFile = env['MESHKIT_HW_PKCS11_PIN_FILE'];
const pinEnv = env['MESHKIT_HW_PKCS11_PIN_ENV'];

function missingReason(): string | undefined {
  if (modulePath === undefined || modulePath === '') return 'MESHKIT_HW_PKCS11_MODULE is not set';
  if (!existsSync(modulePath)) return `MESHKIT_HW_PKCS11_MODULE=${modulePath} does not exist`;
  if (tokenLabel === undefined || tokenLabel === '') return 'MESHKIT_HW_PKCS11_TOKEN is not set';
  if ((pinFile === undefined || pinFile === '') && (pinEnv === undefined || pinEnv === '')) {
    return 'neither MESHKIT_HW_PKCS11_PIN_FILE nor MESHKIT_HW_PKCS11_PIN_ENV is set';
  }
  if (pinEnv !== undefined && pinEnv !== '' && (pinFile === undefined || pinFile === '') && (env[pinEnv] ?? '') === '') {
    return `MESHKIT_HW_PKCS11_PIN_ENV names ${pinEnv}, which is not set`;
  }
  return undefined;
}

const reason = missingReason();
if (reason !== undefined) {
  console.warn(`hardware-test/pkcs11.test.ts skipped: ${reason} (set ${VARS}; see hardware-test/README.md)`);
}

/** A fresh copy of the PIN for each store (the store may wipe what it is given). */
async function pin(): Promise<Uint8Array> {
  if (pinFile !== undefined && pinFile !== '') return readPinFile(pinFile);
  return new Uint8Array(Buffer.from(env[pinEnv as string] ?? '', 'utf8'));
}

/** The curves to test: MESHKIT_HW_PKCS11_CURVES, else what the token's capability probe allows. */
async function curvesToTest(): Promise<Curve[]> {
  const listed = env['MESHKIT_HW_PKCS11_CURVES'];
  if (listed !== undefined && listed.trim() !== '') {
    const curves = listed.split(',').map((c) => c.trim());
    for (const c of curves) if (!(CURVES as readonly string[]).includes(c)) throw new Error(`MESHKIT_HW_PKCS11_CURVES: unknown curve ${c} (use ${CURVES.join(', ')})`);
    return curves as Curve[];
  }
  const module = await Pkcs11Module.open(modulePath as string);
  try {
    const slot = await module.findToken({ token: tokenLabel as string });
    const p = await pin();
    const caps = await module.capabilities(slot, p);
    return CURVES.filter((c) => {
      const k = caps.curves[c];
      return k !== undefined && k.generate && (k.sign === true || k.derive === true);
    });
  } finally {
    await module.close();
  }
}

if (reason === undefined) {
  const curves = await curvesToTest();
  console.warn(`hardware-test/pkcs11.test.ts: ${modulePath} token ${JSON.stringify(tokenLabel)}, curves ${curves.join(', ') || '(none)'}`);
  runKeyStoreContract(
    `PKCS#11 ${tokenLabel} (${modulePath})`,
    () => Pkcs11KeyStore.open({ token: tokenLabel as string }, pin, { modulePath: modulePath as string }),
    { curves, supportsImport: env['MESHKIT_HW_PKCS11_IMPORT'] !== '0' },
  );
} else {
  describe.skipIf(true)(`KeyStore contract: PKCS#11 hardware token (${reason})`, () => {
    it('needs ' + VARS, () => undefined);
  });
}
