/**
 * A revoked device trying to publish (issue 7): a device that administered an application (§5.3) is
 * revoked; afterwards its signature on a new version of that Application Profile is refused by
 * the portal (403, it is no longer an administrator in the current Personal Profile) and by
 * verifyProfile, and nothing changes at the portal. Real SoftHSM card, real ceremony, real portal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAccount, snapshotAccount } from '../../src/admin/account.js';
import { openPkcs11KeyReference } from '../../src/keystore/pkcs11/index.js';
import { connectDevice, createApplication, revokeDevice, updateApplication } from '../../src/admin/updates.js';
import { ErrorCode } from '../../src/core/errors.js';
import { ProfileType, readProfile, signProfile, supersede, verifyProfile, type ApplicationProfile } from '../../src/core/profiles.js';
import { PortalClient, PortalError } from '../../src/portal/client.js';
import { makeAccountFixture, type AccountFixture, type FixtureDevice, type OpenKey } from '../helpers/account.js';
import { startTestPortal, type TestPortal } from '../helpers/portal.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import type { Signer } from '../../src/core/signer.js';

const ACCOUNT = 'delegate@portal.test';

describe.skipIf(softhsmMissing)('a revoked application administrator cannot publish', () => {
  let portal: TestPortal;
  let a: AccountFixture;
  let admin: OpenKey<Signer>;
  let d1: FixtureDevice;
  let d2: FixtureDevice;
  let client: PortalClient;

  beforeAll(async () => {
    portal = await startTestPortal();
    a = await makeAccountFixture({ portal: { Url: portal.url, Account: ACCOUNT } });
    admin = await a.openAdmin();
    d1 = await a.makeDevice('delegate');
    d2 = await a.makeDevice('other');
    client = new PortalClient(portal.url, { retries: 0 });
    await connectDevice({ dir: a.dir, admin: admin.key }, d1.signed);
    await connectDevice({ dir: a.dir, admin: admin.key }, d2.signed);
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await d1?.close();
    await d2?.close();
    await admin?.close();
    await a?.cleanup();
    await portal?.close();
  });

  it('before revocation the delegate publishes; after it, its update is refused with 403 and the portal keeps the last version', async () => {
    const created = await createApplication({ dir: a.dir, admin: admin.key }, { type: 'web', adminDevices: [d1.identifier], publicData: { Colour: 'blue' } });
    const appId = created.applications[0]!.identifier;
    const byDelegate = await updateApplication({ dir: a.dir, signer: d1.signer }, appId, { publicData: { Colour: 'green' } });
    expect(byDelegate.published.map((p) => p.type)).toContain(ProfileType.Application);

    await revokeDevice({ dir: a.dir, admin: admin.key }, d1.identifier, { reason: 'stolen' });
    const account = await loadAccount(a.dir);
    const current = account.applications.get(appId);
    expect(current).toBeDefined();
    const currentProfile = readProfile(current!, ProfileType.Application).profile;

    // The stolen device signs a newer version on its own and sends it to the portal.
    const rogue: ApplicationProfile = supersede(currentProfile, { PublicData: { Colour: 'attacker' } } as Partial<ApplicationProfile>);
    const signed = await signProfile(ProfileType.Application, rogue, d1.signer);
    const e = await client.publish(ACCOUNT, signed).then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(PortalError);
    expect((e as PortalError).status).toBe(403);

    await expect(verifyProfile(signed, { personal: account.personal })).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
    const atPortal = await client.get({ identifier: appId, type: ProfileType.Application });
    expect(atPortal.Entries).toHaveLength(1);
    expect(readProfile(atPortal.Entries[0]!, ProfileType.Application).profile.PublicData).not.toEqual({ Colour: 'attacker' });
  });

  it('the admin card removed mid-update: a typed error, nothing written to the account, nothing published', async () => {
    const d3 = await a.makeDevice('late');
    try {
      const { store, handle } = await openPkcs11KeyReference(a.adminKeyUri, new TextEncoder().encode(a.adminPin));
      try {
        const before = await snapshotAccount(a.dir);
        const personalBefore = JSON.stringify((await client.get({ account: ACCOUNT, type: ProfileType.Personal })).Entries);
        // The card is pulled: every session of its slot is gone before the update signs.
        store.module.closeAllSessions(store.slot);
        const e = await connectDevice({ dir: a.dir, admin: handle.signer() }, d3.signed).then(() => undefined, (err: unknown) => err);
        expect(e).toMatchObject({ code: ErrorCode.PKCS11_TOKEN_REMOVED });
        expect(await snapshotAccount(a.dir)).toEqual(before);
        expect(JSON.stringify((await client.get({ account: ACCOUNT, type: ProfileType.Personal })).Entries)).toBe(personalBefore);
      } finally {
        await store.close().catch(() => undefined);
      }
    } finally {
      await d3.close();
    }
  });
});
