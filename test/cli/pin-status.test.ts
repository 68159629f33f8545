/**
 * The PIN prompt for a key on a token shows what the token reports about the PIN tries (issue 7:
 * "the PIN prompt shows the tries left"). Real SoftHSM; the prompt itself is the injected seam of
 * src/cli/secrets.ts, so no terminal is needed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { secretRequestFor, tokenPinStatus } from '../../src/cli/pin-status.js';
import { secretSource } from '../../src/cli/secrets.js';
import { ErrorCode } from '../../src/core/errors.js';
import { Pkcs11KeyStore } from '../../src/keystore/pkcs11/index.js';
import { createSoftHsm, softhsmMissing, type SoftHsmFixture } from '../helpers/softhsm.js';

const hsm: SoftHsmFixture | undefined = softhsmMissing === undefined ? createSoftHsm([{ label: 'prompted', userPin: '2580' }]) : undefined;
afterAll(() => hsm?.cleanup());

describe.skipIf(hsm === undefined)('PIN prompts show the token\'s PIN state', () => {
  it('before and after a wrong PIN', async () => {
    const uri = hsm!.uri('prompted', ';object=admin');
    expect(await tokenPinStatus(uri)).toBe('prompted: the token does not report how many tries are left');
    const wrong = await Pkcs11KeyStore.open(hsm!.uri('prompted'), new TextEncoder().encode('0000')).then(() => undefined, (e: unknown) => e);
    expect(wrong).toMatchObject({ code: ErrorCode.PKCS11_PIN_INCORRECT });
    expect(await tokenPinStatus(uri)).toMatch(/^prompted: the token reports a failed attempt since the last success \(CKF_USER_PIN_COUNT_LOW\)/u);

    const asked: string[] = [];
    const source = secretSource({}, {
      ...secretRequestFor(uri, 'the administration key'),
      env: {},
      isTTY: true,
      prompt: async (message) => {
        asked.push(message);
        return '2580';
      },
    });
    const pin = await source();
    expect(new TextDecoder().decode(pin)).toBe('2580');
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatch(/CKF_USER_PIN_COUNT_LOW[^\n]*\n.*PIN/su);
  });

  it('a software key reference asks for a passphrase, with no token status', () => {
    expect(secretRequestFor('file:keys.json#admin', 'the administration key')).toEqual({ subject: 'the administration key' });
  });
});
