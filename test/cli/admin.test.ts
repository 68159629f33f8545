/**
 * `meshkit admin …` in process (src/cli/main.ts `main`, stdout/stderr captured) on real SoftHSM
 * tokens: init, connect, app --create/--update (a delegated device key), revoke, add-admin and
 * rotate with the master key's PIN from --master-pin-env; a wrong PIN leaves the account
 * byte-identical; usage errors exit 2.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAccount, snapshotAccount, verifyAccount } from '../../src/admin/account.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { DEVICE_PASSPHRASE, makeAccountFixture, type AccountFixture, type FixtureDevice } from '../helpers/account.js';
import { runMeshkit } from '../helpers/cli.js';


const cli = runMeshkit;

describe.skipIf(softhsmMissing)('meshkit admin (CLI)', () => {
  let a: AccountFixture;
  let d1: FixtureDevice;
  let d2: FixtureDevice;
  let pins: Record<string, string>;
  let appId: string;

  beforeAll(async () => {
    a = await makeAccountFixture({ spareCards: 2 });
    d1 = await a.makeDevice('phone');
    d2 = await a.makeDevice('laptop');
    pins = { ADMIN_PIN: a.adminPin, MASTER_PIN: a.masterPin, DEV_PASS: DEVICE_PASSPHRASE };
    for (const d of [d1, d2]) writeFileSync(join(a.ceremony.dir, `${d.identifier}.json`), JSON.stringify(d.signed));
  }, 120_000);
  afterAll(async () => a?.cleanup());

  it('admin init makes an account from a ceremony directory', async () => {
    const dir = join(a.ceremony.dir, 'account2');
    const r = await cli(['admin', 'init', '--account', dir, '--ceremony', a.ceremonyDir, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ identifier: a.account.index.Identifier, master: 1, personal: 1 });
    await verifyAccount(await loadAccount(dir));
    const again = await cli(['admin', 'init', '--account', dir, '--ceremony', a.ceremonyDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already holds an account/);
  });

  it('admin connect (default admin key from account.json, PIN from --pin-env)', async () => {
    for (const d of [d1, d2]) {
      const r = await cli(['admin', 'connect', '--account', a.dir, '--device', join(a.ceremony.dir, `${d.identifier}.json`), '--pin-env', 'ADMIN_PIN', '--json'], pins);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ action: 'connect', device: { identifier: d.identifier } });
    }
    expect((await loadAccount(a.dir)).personalProfile.Sequence).toBe(3);
  });

  it('a wrong PIN: exit 1, one line naming the PIN problem, the account byte-identical', async () => {
    const before = await snapshotAccount(a.dir);
    const r = await cli(['admin', 'app', '--account', a.dir, '--create', 'mqtt', '--pin-env', 'BAD_PIN'], { ...pins, BAD_PIN: '000000' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/PIN/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await snapshotAccount(a.dir)).toEqual(before);
  });

  it('admin app --create delegates to a device; that device\'s key updates it; another device is refused', async () => {
    const priv = join(a.ceremony.dir, 'secret.bin');
    writeFileSync(priv, 'broker-password');
    const r = await cli([
      'admin', 'app', '--account', a.dir, '--create', 'mqtt', '--friendly', 'broker', '--admin-device', d1.identifier,
      '--decrypt-device', d1.identifier, '--decrypt-device', d2.identifier, '--public', 'Host=mqtt.example', '--private', priv,
      '--pin-env', 'ADMIN_PIN', '--json',
    ], pins);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    appId = s.applications[0].identifier;
    const u = await cli(['admin', 'app', '--account', a.dir, '--update', appId, '--public', 'Port=8883', '--admin-key', d1.signKeyUri, '--passphrase-env', 'DEV_PASS', '--json'], pins);
    expect(u.stderr).toBe('');
    expect(u.code).toBe(0);
    expect(JSON.parse(u.stdout).applications[0]).toMatchObject({ identifier: appId, sequence: 2 });
    const acc = await loadAccount(a.dir);
    await verifyAccount(acc);
    const refused = await cli(['admin', 'app', '--account', a.dir, '--update', appId, '--public', 'Port=1', '--admin-key', d2.signKeyUri, '--passphrase-env', 'DEV_PASS'], pins);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/not an administrator of application.*ERR_PROFILE_SIGNER_NOT_AUTHORISED/);
  });

  it('admin revoke: flagged when the admin holds no key for the private data; re-keyed with --decrypt-key', async () => {
    const r = await cli(['admin', 'revoke', '--account', a.dir, '--device', d1.identifier, '--reason', 'stolen', '--pin-env', 'ADMIN_PIN',
      '--decrypt-key', d2.encKeyUri, '--decrypt-pin-env', 'DEV_PASS'], pins);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`application ${appId} \\(mqtt\\) Sequence 3: re-keyed`));
    const acc = await loadAccount(a.dir);
    await verifyAccount(acc);
    expect(acc.index.Revoked[d1.identifier]?.Reason).toBe('stolen');
  });

  it('admin add-admin and rotate with the master key on the HSM (--master-pin-env)', async () => {
    const c1 = await a.newCard();
    const add = await cli(['admin', 'add-admin', '--account', a.dir, '--new', c1.uri, '--name', 'bob-card', '--pin-env', 'C1_PIN', '--master-pin-env', 'MASTER_PIN', '--json'], { ...pins, C1_PIN: c1.pin });
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    expect(JSON.parse(add.stdout).master).toEqual({ sequence: 2, changed: true });
    const c2 = await a.newCard();
    const oldUdf = a.account.index.Administrators[0]!.UDF;
    const rot = await cli(['admin', 'rotate', '--account', a.dir, '--old', oldUdf, '--new', c2.uri, '--pin-env', 'C2_PIN', '--master-pin-env', 'MASTER_PIN', '--json'], { ...pins, C2_PIN: c2.pin });
    expect(rot.stderr).toBe('');
    expect(rot.code).toBe(0);
    const acc = await loadAccount(a.dir);
    await verifyAccount(acc);
    expect(acc.masterProfile.Sequence).toBe(3);
    expect(acc.index.Administrators.map((x) => x.UDF)).not.toContain(oldUdf);
    // the retired card is refused
    const late = await cli(['admin', 'app', '--account', a.dir, '--create', 'late', '--admin-key', a.adminKeyUri, '--pin-env', 'ADMIN_PIN'], pins);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/ERR_PROFILE_SIGNER_NOT_AUTHORISED/);
  });

  it('usage errors exit 2', async () => {
    expect((await cli(['admin', 'app', '--account', a.dir])).code).toBe(2);
    expect((await cli(['admin', 'revoke', '--account', a.dir, '--device', 'X', '--reason', 'bored'])).code).toBe(2);
    expect((await cli(['admin', 'init', '--account', 'x', '--ceremony', 'y', '--portal', 'http://127.0.0.1:1'])).code).toBe(2);
  });
});
