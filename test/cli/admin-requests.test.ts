/**
 * `meshkit admin pending|accept|reject` and `meshkit device connect|status`, run in process through
 * commander (the same code path as bin/meshkit.js: parse, act, print, exit code by reportError) against a
 * real portal on loopback and a real ceremony's account (administration key on a SoftHSM token).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softhsmMissing } from '../helpers/softhsm.js';
import { DEVICE_PASSPHRASE, makeAccountFixture, type AccountFixture, type FixtureDevice } from '../helpers/account.js';
import { startTestPortal, type TestPortal } from '../helpers/portal.js';
import { loadAccount, snapshotAccount } from '../../src/admin/account.js';
import { buildProgram } from '../../src/cli/main.js';
import { ProfileType, readProfile, verifyProfile } from '../../src/core/profiles.js';
import { PortalClient } from '../../src/portal/client.js';
import { runMeshkit, type CliRun } from '../helpers/cli.js';

const ACCOUNT = 'alice@example.com';

/** Runs `meshkit ARGS` in process with a fresh program; returns the exit code and what was printed. */
const meshkit = (args: string[]): Promise<CliRun> => runMeshkit(args);

describe('command registration', () => {
  it('the meshkit program has admin pending|accept|reject and device connect|status', () => {
    const program = buildProgram();
    const admin = program.commands.find((c) => c.name() === 'admin');
    const device = program.commands.find((c) => c.name() === 'device');
    expect(admin?.commands.map((c) => c.name())).toEqual(expect.arrayContaining(['pending', 'accept', 'reject']));
    expect(device?.commands.map((c) => c.name())).toEqual(expect.arrayContaining(['connect', 'status']));
    expect(program.commands.filter((c) => c.name() === 'device')).toHaveLength(1);
  });
});

describe.skipIf(softhsmMissing)('admin pending|accept|reject and device connect|status (CLI)', () => {
  let portal: TestPortal;
  let fx: AccountFixture;

  beforeAll(async () => {
    portal = await startTestPortal();
    fx = await makeAccountFixture({ portal: { Url: portal.url, Account: ACCOUNT } });
    process.env['TEST_ADMIN_PIN'] = fx.adminPin;
    process.env['TEST_DEVICE_PASS'] = DEVICE_PASSPHRASE;
  }, 120_000);

  afterAll(async () => {
    delete process.env['TEST_ADMIN_PIN'];
    delete process.env['TEST_DEVICE_PASS'];
    await fx?.cleanup();
    await portal?.close();
  });

  async function device(description: string): Promise<FixtureDevice & { file: string }> {
    const d = await fx.makeDevice(description);
    const file = join(fx.ceremony.dir, `${d.identifier.slice(0, 8)}.json`);
    writeFileSync(file, JSON.stringify(d.signed));
    return { ...d, file };
  }

  async function connect(d: { file: string; signKeyUri: string }): Promise<{ requestUdf: string; witness: string; shortWitness: string; masterId: string }> {
    const r = await meshkit(['device', 'connect', '--portal', portal.url, '--account', ACCOUNT, '--device', d.file, '--key', d.signKeyUri,
      '--passphrase-env', 'TEST_DEVICE_PASS', '--json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { requestUdf: string; witness: string; shortWitness: string; masterId: string };
  }

  const admin = (sub: string, ...rest: string[]): string[] => ['admin', sub, ...rest, '--account', fx.dir, '--pin-env', 'TEST_ADMIN_PIN'];

  it('connect → pending shows fingerprint and witness → wrong witness refused → accept → status Accepted', async () => {
    const d = await device('laptop');
    const human = await meshkit(['device', 'connect', '--portal', portal.url, '--account', ACCOUNT, '--device', d.file, '--key', d.signKeyUri,
      '--passphrase-env', 'TEST_DEVICE_PASS']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^request {2}M/m);
    expect(human.stdout).toMatch(/witness {2}[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4} /);
    const requestUdf = /^request {2}(\S+)/m.exec(human.stdout)?.[1] ?? '';
    const shortW = /^witness {2}(\S+)/m.exec(human.stdout)?.[1] ?? '';

    const pending = await meshkit(admin('pending', '--json'));
    expect(pending.code, pending.stderr).toBe(0);
    const list = (JSON.parse(pending.stdout) as { pending: Array<Record<string, unknown>> }).pending;
    const mine = list.find((p) => p.requestUdf === requestUdf);
    expect(mine).toMatchObject({ deviceUdf: d.identifier, description: 'laptop', shortWitness: shortW });
    expect(mine?.problem).toBeUndefined();
    const text = await meshkit(admin('pending'));
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(d.identifier);
    expect(text.stdout).toContain(shortW);

    const before = await snapshotAccount(fx.dir);
    const wrong = await meshkit(admin('accept', requestUdf, '--witness', 'AAAA-BBBB-CCCC-DDDD'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/does not match.*nothing was signed/);
    expect(wrong.stderr.trim().split('\n')).toHaveLength(1);
    expect(await snapshotAccount(fx.dir)).toEqual(before);

    const ok = await meshkit(admin('accept', requestUdf, '--witness', shortW, '--json'));
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ result: 'Accepted', deviceUdf: d.identifier });

    const status = await meshkit(['device', 'status', '--portal', portal.url, '--account', ACCOUNT, '--request', requestUdf, '--device', d.file, '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ state: 'Accepted', connected: true });
    const statusText = await meshkit(['device', 'status', '--portal', portal.url, '--account', ACCOUNT, '--request', requestUdf, '--device', d.file]);
    expect(statusText.stdout).toMatch(/this device is connected/);

    // The Personal Profile at the portal lists the device and verifies.
    const client = new PortalClient(portal.url, { retries: 0 });
    try {
      const entry = (await client.get({ identifier: fx.account.index.Identifier, type: ProfileType.Personal })).Entries[0];
      const personal = await verifyProfile(entry as object, { master: (await loadAccount(fx.dir)).master });
      expect(personal.devices?.some((v) => v.identifier === d.identifier)).toBe(true);
      expect(readProfile(entry, ProfileType.Personal).profile.Sequence).toBe((await loadAccount(fx.dir)).index.PersonalSequence);
    } finally {
      client.close();
    }
  });

  it('reject → device status reports Refused with exit 1', async () => {
    const d = await device('phone');
    const t = await connect(d);
    const pending = await meshkit(['device', 'status', '--portal', portal.url, '--account', ACCOUNT, '--request', t.requestUdf]);
    expect(pending.code).toBe(0);
    expect(pending.stdout).toMatch(/pending/);
    const before = await snapshotAccount(fx.dir);
    const r = await meshkit(admin('reject', t.requestUdf, '--admin-key', fx.adminKeyUri, '--json'));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ result: 'Refused', deviceUdf: d.identifier });
    expect(await snapshotAccount(fx.dir)).toEqual(before);
    const s = await meshkit(['device', 'status', '--portal', portal.url, '--account', ACCOUNT, '--request', t.requestUdf, '--witness', t.witness]);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/was refused by M/);
    const sj = await meshkit(['device', 'status', '--portal', portal.url, '--account', ACCOUNT, '--request', t.requestUdf, '--json']);
    expect(sj.code).toBe(1);
    expect(JSON.parse(sj.stdout)).toMatchObject({ state: 'Refused' });
    // Already decided: accept says so in one line.
    const again = await meshkit(admin('accept', t.requestUdf, '--witness', t.witness));
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is not pending/);
  });

  it('a wrong PIN fails before anything is signed', async () => {
    const d = await device('tablet');
    const t = await connect(d);
    process.env['TEST_WRONG_PIN'] = '000000';
    try {
      const before = await snapshotAccount(fx.dir);
      const r = await meshkit(['admin', 'accept', t.requestUdf, '--witness', t.witness, '--account', fx.dir, '--pin-env', 'TEST_WRONG_PIN']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/PIN incorrect.*ERR_PKCS11_PIN_INCORRECT/);
      expect(await snapshotAccount(fx.dir)).toEqual(before);
    } finally {
      delete process.env['TEST_WRONG_PIN'];
    }
    const s = await meshkit(['device', 'status', '--portal', portal.url, '--account', ACCOUNT, '--request', t.requestUdf, '--json']);
    expect(JSON.parse(s.stdout)).toMatchObject({ state: 'Pending' });
  });

  it('usage errors exit 2', async () => {
    expect((await meshkit(['admin', 'pending'])).code).toBe(2);
    expect((await meshkit(['admin', 'accept', 'MABC', '--account', fx.dir])).code).toBe(2);
    expect((await meshkit(['device', 'connect', '--portal', portal.url])).code).toBe(2);
  });
});
