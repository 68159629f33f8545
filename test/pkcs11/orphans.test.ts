/**
 * An orphaned private key — its public object never made, as when a process is killed inside an
 * import — is invisible to list(), but destroyObjects (what `ceremony abort` uses) finds it by
 * label + CKA_ID and removes exactly it. Real SoftHSM; the orphan is made with OpenSC's pkcs11-tool.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { udfParse } from '../../src/core/udf.js';
import { Pkcs11KeyStore } from '../../src/keystore/pkcs11/index.js';
import { createSoftHsm, softhsmMissing, type SoftHsmFixture } from '../helpers/softhsm.js';

const hsm: SoftHsmFixture | undefined = softhsmMissing === undefined ? createSoftHsm([{ label: 'orphans', userPin: '1234' }]) : undefined;
afterAll(() => hsm?.cleanup());

let toolMissing: string | undefined;
try {
  execFileSync('pkcs11-tool', ['--help'], { stdio: 'ignore' });
} catch (e) {
  // --help exits with status 2; only a missing binary means OpenSC is absent
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') toolMissing = 'pkcs11-tool (OpenSC) is not installed';
}
if (toolMissing !== undefined) console.warn(`skipping orphan-object test: ${toolMissing}`);

describe.skipIf(hsm === undefined || toolMissing !== undefined)('destroyObjects removes orphaned private keys', () => {
  it('a private key without its public object is not listed, and destroyObjects removes exactly it', async () => {
    const store = await Pkcs11KeyStore.open(hsm!.uri('orphans'), new TextEncoder().encode('1234'));
    try {
      const orphan = await store.generate('orphan', 'Ed25519');
      const keep = await store.generate('keep', 'Ed25519');
      const id = udfParse(orphan.info.keyId).bytes.subarray(0, 16);
      const tool = (...args: string[]): string =>
        execFileSync('pkcs11-tool', ['--module', hsm!.modulePath, '--token-label', 'orphans', '--login', '--pin', '1234', ...args], {
          env: { ...process.env, SOFTHSM2_CONF: hsm!.conf },
          encoding: 'utf8',
        });
      tool('--delete-object', '--type', 'pubkey', '--id', Buffer.from(id).toString('hex'));
      expect((await store.list()).map((k) => k.label)).toEqual(['keep']);
      expect(tool('--list-objects', '--type', 'privkey')).toContain('orphan');

      // A different id under the same label is left alone.
      expect(await store.destroyObjects({ label: 'orphan', id: new Uint8Array(16).fill(7) })).toBe(0);
      expect(await store.destroyObjects({ label: 'orphan', id })).toBe(1);
      expect(tool('--list-objects', '--type', 'privkey')).not.toContain('orphan');
      expect((await store.list()).map((k) => k.label)).toEqual(['keep']);
      expect(keep.info.label).toBe('keep');
    } finally {
      await store.close();
    }
  });
});
