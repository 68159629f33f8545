/**
 * `meshkit profile verify --account DIR --portal URL`: the chain Master → Personal → Device checked with
 * the account as context, Current checked at a real portal (loopback), and revocation reported in one
 * line. Also what the portal does with a stale Personal Profile (409) and with a revoked device's
 * own Device Profile (accepted: the portal does not require devices to be connected — so the check that
 * matters is that `profile verify` reports the device as revoked / not connected).
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softhsmMissing } from '../helpers/softhsm.js';
import { makeAccountFixture, type AccountFixture, type FixtureDevice } from '../helpers/account.js';
import { startTestPortal, type TestPortal } from '../helpers/portal.js';
import { connectDevice, revokeDevice } from '../../src/admin/updates.js';
import { loadAccount } from '../../src/admin/account.js';
import { ProfileType, readProfile, signProfile, supersede } from '../../src/core/profiles.js';
import type { Signer } from '../../src/core/signer.js';
import { PortalClient, PortalError } from '../../src/portal/client.js';
import { runMeshkit, type CliRun } from '../helpers/cli.js';

const ACCOUNT = 'alice@example.com';

const meshkit = (args: string[]): Promise<CliRun> => runMeshkit(args);

describe.skipIf(softhsmMissing)('profile verify --account --portal', () => {
  let portal: TestPortal;
  let fx: AccountFixture;
  let admin: { key: Signer; close(): Promise<void> };
  let client: PortalClient;
  let kept: FixtureDevice;
  let lost: FixtureDevice;
  let stalePersonal: string;
  let keptFile: string;
  let lostFile: string;

  beforeAll(async () => {
    portal = await startTestPortal();
    fx = await makeAccountFixture({ portal: { Url: portal.url, Account: ACCOUNT } });
    admin = await fx.openAdmin();
    client = new PortalClient(portal.url, { retries: 0 });
    kept = await fx.makeDevice('desktop');
    lost = await fx.makeDevice('old phone');
    await connectDevice({ dir: fx.dir, admin: admin.key }, kept.signed);
    // Keep a copy of this Personal Profile: it is superseded by the next change.
    stalePersonal = join(fx.ceremony.dir, 'stale-personal.json');
    copyFileSync(join(fx.dir, 'personal.json'), stalePersonal);
    await connectDevice({ dir: fx.dir, admin: admin.key }, lost.signed);
    keptFile = join(fx.dir, 'devices', `${kept.identifier}.json`);
    lostFile = join(fx.ceremony.dir, 'lost-device.json');
    writeFileSync(lostFile, JSON.stringify(lost.signed));
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await fx?.cleanup();
    await portal?.close();
  });

  it('a connected device verifies through the chain, current at the portal', async () => {
    const r = await meshkit(['profile', 'verify', '--account', fx.dir, '--portal', portal.url, keptFile]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/valid DeviceProfile .*connected, current at the portal/);
    const j = await meshkit(['profile', 'verify', '--account', fx.dir, '--portal', portal.url, '--json', join(fx.dir, 'master.json'), join(fx.dir, 'personal.json'), keptFile]);
    expect(j.code, j.stderr).toBe(0);
    const out = JSON.parse(j.stdout) as { valid: boolean; results: Array<{ type: string; connected?: boolean; current?: string }> };
    expect(out.valid).toBe(true);
    expect(out.results.map((x) => x.type)).toEqual(['MasterProfile', 'PersonalProfile', 'DeviceProfile']);
    expect(out.results.every((x) => x.current === 'portal')).toBe(true);
  });

  it('a stale Personal Profile replayed to the portal → 409, and profile verify --portal says it is superseded', async () => {
    const stale = readProfile(JSON.parse((await import('node:fs')).readFileSync(stalePersonal, 'utf8')) as object, ProfileType.Personal);
    const err = await client.publish(ACCOUNT, stale.signed).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortalError);
    expect((err as PortalError).status).toBe(409);
    const current = (await loadAccount(fx.dir)).index.PersonalSequence;
    const r = await meshkit(['profile', 'verify', '--portal', portal.url, stalePersonal]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`is superseded: Sequence ${stale.profile.Sequence}, latest known ${current} at the portal`);
    // Without the portal the same file still verifies (it is well signed): Current needs the portal.
    expect((await meshkit(['profile', 'verify', stalePersonal])).code).toBe(0);
    // The account's own copy is current.
    expect((await meshkit(['profile', 'verify', '--portal', portal.url, join(fx.dir, 'personal.json')])).code).toBe(0);
  });

  it('a stale account directory is reported against the portal', async () => {
    // Someone else (another admin copy) moved the account at the portal: a newer Personal Profile.
    const account = await loadAccount(fx.dir);
    const next = await signProfile(ProfileType.Personal, supersede(account.personalProfile), admin.key);
    await client.publish(ACCOUNT, next);
    const r = await meshkit(['profile', 'verify', '--account', fx.dir, '--portal', portal.url, keptFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/personal\.json: Personal Profile \S+ is superseded: Sequence \d+, latest known \d+/);
    // Bring the account back in line for the next test: the portal's version becomes the account's.
    writeFileSync(join(fx.dir, 'personal.json'), JSON.stringify(next, null, 2) + '\n');
    const idx = JSON.parse((await import('node:fs')).readFileSync(join(fx.dir, 'account.json'), 'utf8')) as { Account: { PersonalSequence: number } };
    idx.Account.PersonalSequence += 1;
    writeFileSync(join(fx.dir, 'account.json'), JSON.stringify(idx, null, 2));
    expect((await meshkit(['profile', 'verify', '--account', fx.dir, '--portal', portal.url, keptFile])).code).toBe(0);
  });

  it('a revoked device: its own publish is accepted by the portal, but profile verify reports it revoked in one line', async () => {
    const summary = await revokeDevice({ dir: fx.dir, admin: admin.key }, lost.identifier, { reason: 'stolen' });
    const revokedIn = summary.personal.sequence;
    // The revoked device publishes its Device Profile to the portal: the portal only checks its self-signature.
    const published = await client.publish(ACCOUNT, lost.signed);
    expect(published.Type).toBe(ProfileType.Device);

    const r = await meshkit(['profile', 'verify', '--account', fx.dir, '--portal', portal.url, lostFile]);
    expect(r.code).toBe(1);
    const line = r.stderr.trim();
    expect(line.split('\n')).toHaveLength(1);
    expect(line).toContain(`device ${lost.identifier} was revoked in Personal Profile Sequence ${revokedIn} (stolen, `);
    expect(line).toContain('it is not connected');
    expect(line).toContain('ERR_PROFILE_NOT_CONNECTED');

    // Without the account's revocation list, the portal's current Personal Profile still does not list it.
    const personal = join(fx.ceremony.dir, 'portal-personal.json');
    writeFileSync(personal, JSON.stringify((await client.get({ identifier: fx.account.index.Identifier, type: ProfileType.Personal })).Entries[0]));
    const p = await meshkit(['profile', 'verify', '--portal', portal.url, '--personal', personal, lostFile]);
    expect(p.code).toBe(1);
    expect(p.stderr).toMatch(/is not connected: Personal Profile \S+ \(Sequence \d+\) does not list it/);
    // The device that stayed is still fine.
    expect((await meshkit(['profile', 'verify', '--account', fx.dir, '--portal', portal.url, keptFile])).code).toBe(0);
  });

  it('a portal that is not there is a one-line failure', async () => {
    const r = await meshkit(['profile', 'verify', '--portal', 'http://127.0.0.1:9', keptFile]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/ERR_PORTAL_UNAVAILABLE/);
  });
});
