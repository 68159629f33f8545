/**
 * publishDemoAccount — the portal step `meshkit demo` calls: against a real portal on loopback
 * (SQLite), it creates the account, publishes the devices, fetches and verifies everything back and
 * proves the last publish against the signed head.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/core/errors.js';
import {
  composeDeviceProfile,
  composeMasterProfile,
  composePersonalProfile,
  ProfileType,
  signProfile,
  type SignedProfile,
} from '../../src/core/profiles.js';
import { PortalClient } from '../../src/portal/client.js';
import { publishDemoAccount } from '../../src/portal/demo.js';
import { startPortalServer, type PortalServer } from '../../src/portal/server.js';
import { openStorage } from '../../src/portal/storage.js';
import { testKey, testSigner } from '../helpers/software-signer.js';

describe('publishDemoAccount', () => {
  let dir: string;
  let portal: PortalServer;
  const portalKey = testKey('Ed25519');
  let master: SignedProfile;
  let personal: SignedProfile;
  let devices: SignedProfile[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshkit-portal-demo-'));
    portal = await startPortalServer({ storage: await openStorage(`sqlite:${join(dir, 'p.db')}`), portalKey: testSigner(portalKey), plainHttp: true, headSeconds: 0, onError: () => undefined });
    const m = testKey('Ed448');
    const admin = testKey('Ed25519');
    master = await signProfile(ProfileType.Master, composeMasterProfile({ signatureKey: m.publicJwk, adminKeys: [admin.publicJwk] }), testSigner(m));
    devices = [];
    for (const name of ['sensor', 'gateway']) {
      const d = testKey('Ed25519');
      devices.push(await signProfile(ProfileType.Device, composeDeviceProfile({ description: name, signatureKey: d.publicJwk }), testSigner(d)));
    }
    personal = await signProfile(ProfileType.Personal, composePersonalProfile({ master, devices }), testSigner(admin));
  });
  afterAll(async () => {
    await portal.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the account, publishes the devices, fetches and verifies them, proves the last publish', async () => {
    const r = await publishDemoAccount(portal.url, 'alice@portal.test', master, personal, devices, { portalKey: portalKey.publicJwk });
    expect(r.portal).toBe(portalKey.keyId);
    expect(r.account).toBe('alice@portal.test');
    expect(r.published.map((p) => [p.type, p.sequence, p.logIndex])).toEqual([[ProfileType.Device, 1, 1], [ProfileType.Device, 1, 2]]);
    expect(r.fetched).toBeGreaterThanOrEqual(3); // the Personal Profile and both devices (and the Master, if the portal lists it)
    expect(r.logCount).toBe(3);
    expect(r.proven).toBe(true);
    const client = new PortalClient(portal.url);
    expect((await client.get({ account: 'alice@portal.test', type: ProfileType.Device })).Entries).toHaveLength(2);
    client.close();
  });

  it('is refused by the portal when run twice for the same account (typed 409)', async () => {
    await expect(publishDemoAccount(portal.url, 'alice@portal.test', master, personal, devices)).rejects.toMatchObject({ status: 409, code: ErrorCode.PORTAL_CONFLICT });
  });

  it('refuses a Personal Profile that does not embed the given Master', async () => {
    const other = testKey('Ed25519');
    const otherMaster = await signProfile(ProfileType.Master, composeMasterProfile({ signatureKey: other.publicJwk, adminKeys: [other.publicJwk] }), testSigner(other));
    await expect(publishDemoAccount(portal.url, 'bob@portal.test', otherMaster, personal, devices)).rejects.toThrow(RangeError);
    await expect(publishDemoAccount(portal.url, 'bob@portal.test', master, personal, 'x' as unknown as SignedProfile[])).rejects.toThrow(TypeError);
  });
});
