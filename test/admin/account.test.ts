/**
 * The account directory: init from a real ceremony (copies; the ceremony directory untouched),
 * load, the lock, and publishing to a portal (each update published and fetched back; a stale
 * update refused with nothing committed locally).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/core/errors.js';
import { ProfileType, readProfile, verifyProfile, type SignedProfile } from '../../src/core/profiles.js';
import { PortalClient } from '../../src/portal/client.js';
import { LOCK_FILE, initAccount, loadAccount, snapshotAccount, verifyAccount, withAccountLock } from '../../src/admin/account.js';
import { connectDevice, createApplication, revokeDevice } from '../../src/admin/updates.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { startTestPortal, type TestPortal } from '../helpers/portal.js';
import { makeAccountFixture, type AccountFixture, type OpenKey } from '../helpers/account.js';
import type { Signer } from '../../src/core/signer.js';

describe.skipIf(softhsmMissing)('account directory', () => {
  let a: AccountFixture;
  beforeAll(async () => {
    a = await makeAccountFixture({ spareCards: 0 });
  }, 120_000);
  afterAll(async () => a?.cleanup());

  it('init copies the ceremony outputs and leaves the ceremony directory untouched', async () => {
    const ceremonyBefore = await snapshotAccount(a.ceremonyDir);
    const acc = await loadAccount(a.dir);
    expect(readFileSync(join(a.dir, 'master.json'))).toEqual(readFileSync(join(a.ceremonyDir, 'master.json')));
    expect(readFileSync(join(a.dir, 'personal.json'))).toEqual(readFileSync(join(a.ceremonyDir, 'personal.json')));
    expect(acc.index).toMatchObject({ Master: 'master.json', Personal: 'personal.json', MasterSequence: 1, PersonalSequence: 1, Devices: {}, Applications: {}, Revoked: {} });
    expect(acc.index.Administrators[0]).toMatchObject({ Name: 'alice-card', Key: a.adminKeyUri });
    expect(acc.index.MasterKeys.Signature).toBe(a.masterKeyUri);
    await verifyAccount(acc);
    // a second init into the same directory is refused
    await expect(initAccount(a.dir, a.ceremonyDir)).rejects.toMatchObject({ code: ErrorCode.IO });
    // updates never touch the ceremony directory
    const admin = await a.openAdmin();
    await connectDevice({ dir: a.dir, admin: admin.key }, (await a.makeDevice()).signed);
    expect(await snapshotAccount(a.ceremonyDir)).toEqual(ceremonyBefore);
  });

  it('loading a missing or malformed account fails with a clear error', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'meshkit-noacct-'));
    await expect(loadAccount(empty)).rejects.toMatchObject({ code: ErrorCode.IO });
    writeFileSync(join(empty, 'account.json'), '{"Account": {"Identifier": 1}}');
    await expect(loadAccount(empty)).rejects.toMatchObject({ code: ErrorCode.PROFILE_MALFORMED });
    await expect(loadAccount(42 as unknown as string)).rejects.toThrow(TypeError);
    rmSync(empty, { recursive: true, force: true });
  });

  it('the lock: a second admin command on the same account is refused while the first runs; a stale lock is taken over', async () => {
    const admin = await a.openAdmin();
    const device = await a.makeDevice();
    const before = await snapshotAccount(a.dir);
    let inner: unknown;
    await withAccountLock(a.dir, async () => {
      inner = await connectDevice({ dir: a.dir, admin: admin.key }, device.signed).catch((e: unknown) => e);
    });
    expect(inner).toMatchObject({ code: ErrorCode.IO, message: expect.stringMatching(/locked by another admin command \(pid \d+\)/) });
    expect(await snapshotAccount(a.dir)).toEqual(before);
    // a lock left by a process that no longer exists
    writeFileSync(join(a.dir, LOCK_FILE), '999999999 deadbeef 2020-01-01T00:00:00Z\n');
    const s = await connectDevice({ dir: a.dir, admin: admin.key }, device.signed);
    expect(s.device?.identifier).toBe(device.identifier);
    // two concurrent commands: exactly one wins, the other is refused by the lock
    const [x, y] = await Promise.allSettled([
      createApplication({ dir: a.dir, admin: admin.key }, { type: 'one' }),
      createApplication({ dir: a.dir, admin: admin.key }, { type: 'two' }),
    ]);
    const outcomes = [x.status, y.status].sort();
    expect(outcomes).toEqual(['fulfilled', 'rejected']);
    await verifyAccount(await loadAccount(a.dir));
  });
});

describe.skipIf(softhsmMissing)('with a portal', () => {
  let portal: TestPortal;
  let a: AccountFixture;
  let admin: OpenKey<Signer>;
  let client: PortalClient;
  const name = `alice-${process.pid}@example.com`;

  beforeAll(async () => {
    portal = await startTestPortal();
    a = await makeAccountFixture({ portal: { Url: portal.url, Account: name }, spareCards: 0 });
    admin = await a.openAdmin();
    client = new PortalClient(portal.url, { retries: 0 });
  }, 120_000);
  afterAll(async () => {
    client?.close();
    await a?.cleanup();
    await portal?.close();
  });

  async function fetchCurrent(identifier: string, type: string): Promise<unknown> {
    const r = await client.get({ identifier, type });
    expect(r.Entries).toHaveLength(1);
    return r.Entries[0];
  }

  it('init creates the account at the portal; each update is published and fetched back', async () => {
    const acc0 = await loadAccount(a.dir);
    expect(acc0.index.Portal).toEqual({ Url: portal.url, Account: name });
    const d1 = await a.makeDevice('phone');
    const d2 = await a.makeDevice('laptop');
    const s1 = await connectDevice({ dir: a.dir, admin: admin.key }, d1.signed);
    expect(s1.published).toEqual([expect.objectContaining({ type: 'PersonalProfile', sequence: 2 })]);
    await connectDevice({ dir: a.dir, admin: admin.key }, d2.signed);
    const s3 = await createApplication({ dir: a.dir, admin: admin.key }, { type: 'mqtt', decryptDevices: [d1.identifier, d2.identifier], privateData: new Uint8Array([1, 2, 3]) });
    expect(s3.published.map((p) => p.type)).toEqual(['PersonalProfile', 'ApplicationProfile']);
    const appId = s3.applications[0]!.identifier;
    const s4 = await revokeDevice({ dir: a.dir, admin: admin.key }, d1.identifier);
    expect(s4.flagged).toHaveLength(1); // no administrator copy: needs re-keying
    expect(s4.publishFailed).toEqual([]);
    const acc = await loadAccount(a.dir);
    const personal = await fetchCurrent(acc.index.Identifier, ProfileType.Personal);
    expect(personal).toEqual(acc.personal);
    expect(readProfile(personal, ProfileType.Personal).profile.Sequence).toBe(5);
    const app = await fetchCurrent(appId, ProfileType.Application);
    expect(app).toEqual(acc.applications.get(appId));
    expect((await verifyProfile(app as SignedProfile, { personal: personal as SignedProfile })).connected).toBe(true);
  });

  it('a portal that holds a newer version (409): refused, nothing committed locally', async () => {
    // a copy of the account advances the portal first
    const other = join(mkdtempSync(join(tmpdir(), 'meshkit-acct-copy-')), 'account');
    cpSync(a.dir, other, { recursive: true });
    await createApplication({ dir: other, admin: admin.key }, { type: 'elsewhere' });
    const before = await snapshotAccount(a.dir);
    const err = await createApplication({ dir: a.dir, admin: admin.key }, { type: 'stale' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.PORTAL_CONFLICT, message: expect.stringMatching(/someone else has updated this account.*nothing was committed locally/) });
    expect(await snapshotAccount(a.dir)).toEqual(before);
    // the local account still loads and verifies at its old state
    const acc = await loadAccount(a.dir);
    await verifyAccount(acc);
    expect(acc.personalProfile.Applications.map((x) => x.Type)).not.toContain('stale');
    rmSync(dirname(other), { recursive: true, force: true });
  });
});
