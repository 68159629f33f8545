/**
 * Connection requests through a real portal (loopback, SQLite) with a real ceremony's account: the
 * administration key on a SoftHSM token standing in for a smartcard, devices with software keys.
 * src/admin/requests.ts (the administrator's side) and src/device/connect.ts (the device's side).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softhsmMissing } from '../helpers/softhsm.js';
import { makeAccountFixture, type AccountFixture, type FixtureDevice } from '../helpers/account.js';
import { startTestPortal, type TestPortal } from '../helpers/portal.js';
import { testKey, testSigner } from '../helpers/software-signer.js';
import { loadAccount, snapshotAccount } from '../../src/admin/account.js';
import { revokeDevice } from '../../src/admin/updates.js';
import { RequestNotPending, acceptRequest, listPending, rejectRequest } from '../../src/admin/requests.js';
import {
  SHORT_WITNESS_CHARS,
  WitnessMismatch,
  connectionStatus,
  requestConnection,
  shortWitness,
  witnessMatches,
} from '../../src/device/connect.js';
import { ErrorCode, ProfileError } from '../../src/core/errors.js';
import { utf8 } from '../../src/core/bytes.js';
import { signJws } from '../../src/core/jose.js';
import { ProfileType, readProfile, verifyProfile, type SignedProfile } from '../../src/core/profiles.js';
import type { Signer } from '../../src/core/signer.js';
import { PortalClient, PortalError, type ConnectPendingResponse, type ConnectStartResponse, type ConnectStatusResponse } from '../../src/portal/client.js';

const ACCOUNT = 'alice@example.com';

describe('witness helpers', () => {
  const full = 'KB3G-NC35-X6IU-BEKJ-YIQR-J4GX-IKKN';
  it('shortWitness is the first four groups', () => {
    expect(shortWitness(full)).toBe('KB3G-NC35-X6IU-BEKJ');
    expect(shortWitness('kb3gnc35x6iubekjyiqr')).toBe('KB3G-NC35-X6IU-BEKJ');
  });
  it('shortWitness refuses a value shorter than the short form', () => {
    expect(() => shortWitness('KB3G-NC35')).toThrow(RangeError);
    expect(() => shortWitness(42 as unknown as string)).toThrow(TypeError);
  });
  it('witnessMatches takes the full value or the short form, any case and separators', () => {
    expect(witnessMatches(full, full)).toBe(true);
    expect(witnessMatches('kb3g nc35 x6iu bekj', full)).toBe(true);
    expect(witnessMatches('KB3GNC35X6IUBEKJYIQR', full)).toBe(true);
  });
  it('witnessMatches refuses a different, a too short or a too long value', () => {
    expect(witnessMatches('KB3G-NC35-X6IU-BEKK', full)).toBe(false);
    expect(witnessMatches('KB3G-NC35-X6IU', full)).toBe(false);
    expect(witnessMatches(`${full}-AAAA`, full)).toBe(false);
    expect(witnessMatches('', full)).toBe(false);
    expect(SHORT_WITNESS_CHARS).toBe(16);
    expect(() => witnessMatches(undefined as unknown as string, full)).toThrow(TypeError);
  });
});

describe.skipIf(softhsmMissing)('connection requests through a portal', () => {
  let portal: TestPortal;
  let fx: AccountFixture;
  let admin: { key: Signer; close(): Promise<void> };
  let client: PortalClient;

  beforeAll(async () => {
    portal = await startTestPortal();
    fx = await makeAccountFixture({ portal: { Url: portal.url, Account: ACCOUNT } });
    admin = await fx.openAdmin();
    client = new PortalClient(portal.url, { retries: 0 });
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await fx?.cleanup();
    await portal?.close();
  });

  async function portalPersonal(): Promise<SignedProfile> {
    const res = await client.get({ identifier: fx.account.index.Identifier, type: ProfileType.Personal });
    return res.Entries[0] as SignedProfile;
  }

  async function post(device: FixtureDevice): Promise<Awaited<ReturnType<typeof requestConnection>>> {
    return requestConnection(client, ACCOUNT, fx.account.index.Identifier, device.signed, device.signer);
  }

  it('device posts → admin sees fingerprint and the same witness → accept → device learns Accepted and is listed', async () => {
    const device = await fx.makeDevice('laptop');
    const ticket = await post(device);
    expect(ticket.deviceUdf).toBe(device.identifier);
    expect(ticket.witness).toMatch(/^([A-Z2-7]{4}-){6}[A-Z2-7]{4}$/);
    expect(ticket.shortWitness).toBe(ticket.witness.slice(0, 19));

    const account = await loadAccount(fx.dir);
    const pending = await listPending(account, admin.key, client);
    const mine = pending.find((p) => p.requestUdf === ticket.requestUdf);
    expect(mine).toBeDefined();
    expect(mine?.problem).toBeUndefined();
    expect(mine?.deviceUdf).toBe(device.identifier);
    expect(mine?.description).toBe('laptop');
    expect(mine?.witness).toBe(ticket.witness);
    expect(mine?.shortWitness).toBe(ticket.shortWitness);

    expect((await connectionStatus(client, ACCOUNT, ticket.requestUdf)).state).toBe('Pending');

    const before = readProfile(await portalPersonal(), ProfileType.Personal).profile.Sequence;
    // The administrator types the short form off the device's screen, in lower case.
    const d = await acceptRequest(account, ticket.requestUdf, ticket.shortWitness.toLowerCase(), admin.key, client);
    expect(d).toMatchObject({ result: 'Accepted', deviceUdf: device.identifier, personalSequence: before + 1, decidedBy: admin.key.keyId });

    const status = await connectionStatus(client, ACCOUNT, ticket.requestUdf, { masterId: ticket.masterId, device: device.signed, witness: ticket.witness });
    expect(status.state).toBe('Accepted');
    if (status.state !== 'Accepted') return;
    expect(status.connected).toBe(true);
    expect(status.decidedBy).toBe(admin.key.keyId);
    expect(status.personal.sequence).toBe(before + 1);
    // Independently: the portal's Personal Profile verifies against the account's Master and lists the device.
    const personal = await verifyProfile(await portalPersonal(), { master: (await loadAccount(fx.dir)).master });
    expect(personal.devices?.map((x) => x.identifier)).toContain(device.identifier);
    const v = await verifyProfile(device.signed, { personal: personal.signed });
    expect(v.connected).toBe(true);
    // And the account directory lists it.
    expect((await loadAccount(fx.dir)).index.Devices[device.identifier]?.Description).toBe('laptop');
    // The request is no longer pending.
    expect((await listPending(await loadAccount(fx.dir), admin.key, client)).some((p) => p.requestUdf === ticket.requestUdf)).toBe(false);
  });

  it('a witness that does not match is refused: nothing signed, nothing written, nothing changes at the portal', async () => {
    const device = await fx.makeDevice('tablet');
    const ticket = await post(device);
    const account = await loadAccount(fx.dir);
    const files = await snapshotAccount(fx.dir);
    const personalBefore = JSON.stringify(await portalPersonal());
    let signatures = 0;
    const counting: Signer = { ...admin.key, sign: async (data: Uint8Array) => {
      signatures++;
      return admin.key.sign(data);
    } };
    const wrong = ticket.witness.startsWith('A') ? `B${ticket.witness.slice(1)}` : `A${ticket.witness.slice(1)}`;
    const err = await acceptRequest(account, ticket.requestUdf, wrong, counting, client).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WitnessMismatch);
    expect((err as WitnessMismatch).code).toBe(ErrorCode.PROFILE_MISMATCH);
    expect((err as Error).message).toMatch(/does not match/);
    // Only the PendingQuery was signed (to list the requests); no profile, no decision.
    expect(signatures).toBe(1);
    expect(await snapshotAccount(fx.dir)).toEqual(files);
    expect(JSON.stringify(await portalPersonal())).toBe(personalBefore);
    expect((await connectionStatus(client, ACCOUNT, ticket.requestUdf)).state).toBe('Pending');
    // A witness too short to mean anything is refused the same way.
    await expect(acceptRequest(account, ticket.requestUdf, ticket.witness.slice(0, 9), admin.key, client)).rejects.toBeInstanceOf(WitnessMismatch);
  });

  it('reject: the device learns Refused (admin-signed); the account does not change', async () => {
    const device = await fx.makeDevice('phone');
    const ticket = await post(device);
    const files = await snapshotAccount(fx.dir);
    const d = await rejectRequest(await loadAccount(fx.dir), ticket.requestUdf, admin.key, client);
    expect(d).toMatchObject({ result: 'Refused', deviceUdf: device.identifier, decidedBy: admin.key.keyId });
    const status = await connectionStatus(client, ACCOUNT, ticket.requestUdf, { witness: ticket.witness, device: device.signed });
    expect(status).toMatchObject({ state: 'Refused', decidedBy: admin.key.keyId });
    expect(await snapshotAccount(fx.dir)).toEqual(files);
    // Decided: neither accept nor reject finds it again.
    await expect(acceptRequest(await loadAccount(fx.dir), ticket.requestUdf, ticket.witness, admin.key, client)).rejects.toBeInstanceOf(RequestNotPending);
    await expect(rejectRequest(await loadAccount(fx.dir), ticket.requestUdf, admin.key, client)).rejects.toBeInstanceOf(RequestNotPending);
  });

  it('a key that is not an administration key cannot list the requests (portal 403)', async () => {
    const stranger = testSigner(testKey('Ed25519'));
    const err = await listPending(await loadAccount(fx.dir), stranger, client).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortalError);
    expect((err as PortalError).status).toBe(403);
  });

  it('a portal that reports a wrong witness is caught on both sides', async () => {
    const device = await fx.makeDevice('kiosk');
    // Device side: the portal answers ConnectStart with another witness.
    class LyingStart extends PortalClient {
      override async connectStart(...args: Parameters<PortalClient['connectStart']>): Promise<ConnectStartResponse> {
        const r = await super.connectStart(...args);
        return { ...r, Witness: 'AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA' };
      }
    }
    const lyingStart = new LyingStart(portal.url, { retries: 0 });
    await expect(requestConnection(lyingStart, ACCOUNT, fx.account.index.Identifier, device.signed, device.signer)).rejects.toBeInstanceOf(WitnessMismatch);

    // Admin side: the portal lists a request with another witness; it is flagged and cannot be accepted.
    const ticket = await post(device);
    class LyingPending extends PortalClient {
      override async connectPending(...args: Parameters<PortalClient['connectPending']>): Promise<ConnectPendingResponse> {
        const r = await super.connectPending(...args);
        return { ...r, Pending: r.Pending.map((p) => (p.RequestUDF === ticket.requestUdf ? { ...p, Witness: 'AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA' } : p)) };
      }
    }
    const lyingPending = new LyingPending(portal.url, { retries: 0 });
    const account = await loadAccount(fx.dir);
    const listed = (await listPending(account, admin.key, lyingPending)).find((p) => p.requestUdf === ticket.requestUdf);
    expect(listed?.witness).toBe(ticket.witness);
    expect(listed?.problem).toMatch(/not the one computed here/);
    const files = await snapshotAccount(fx.dir);
    const err = await acceptRequest(account, ticket.requestUdf, ticket.witness, admin.key, lyingPending).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProfileError);
    expect(await snapshotAccount(fx.dir)).toEqual(files);
    await rejectRequest(account, ticket.requestUdf, admin.key, client);
  });

  it('a decision not signed by an administration key is not believed by the device', async () => {
    const device = await fx.makeDevice('sensor');
    const ticket = await post(device);
    const stranger = testSigner(testKey('Ed25519'));
    const forged = await signJws(utf8(JSON.stringify({ ConnectionResult: { RequestUDF: ticket.requestUdf, Result: 'Accepted', Witness: ticket.witness } })), [stranger], { cty: 'ConnectionResult' });
    let answer = forged;
    class LyingStatus extends PortalClient {
      override async connectStatus(): Promise<ConnectStatusResponse> {
        return { Status: 201, StatusDescription: 'OK', Result: answer };
      }
    }
    const lying = new LyingStatus(portal.url, { retries: 0 });
    const err = await connectionStatus(lying, ACCOUNT, ticket.requestUdf).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProfileError);
    expect((err as ProfileError).code).toBe(ErrorCode.PROFILE_UNAUTHORISED);
    // A genuine decision for ANOTHER request replayed for this one is refused too.
    const other = await signJws(utf8(JSON.stringify({ ConnectionResult: { RequestUDF: 'MOTHER-REQUEST', Result: 'Accepted', Witness: ticket.witness } })), [admin.key], { cty: 'ConnectionResult' });
    answer = other;
    await expect(connectionStatus(lying, ACCOUNT, ticket.requestUdf)).rejects.toMatchObject({ code: ErrorCode.PROFILE_MISMATCH });
    await rejectRequest(await loadAccount(fx.dir), ticket.requestUdf, admin.key, client);
  });

  it('a revoked device: its old acceptance no longer connects it, and a new request cannot be accepted', async () => {
    const device = await fx.makeDevice('lost laptop');
    const ticket = await post(device);
    await acceptRequest(await loadAccount(fx.dir), ticket.requestUdf, ticket.witness, admin.key, client);
    await revokeDevice({ dir: fx.dir, admin: admin.key }, device.identifier, { reason: 'lost' });
    const err = await connectionStatus(client, ACCOUNT, ticket.requestUdf, { device: device.signed }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProfileError);
    expect((err as ProfileError).code).toBe(ErrorCode.PROFILE_NOT_CONNECTED);
    expect((err as Error).message).toMatch(/does not list device/);

    const again = await post(device);
    const files = await snapshotAccount(fx.dir);
    await expect(acceptRequest(await loadAccount(fx.dir), again.requestUdf, again.witness, admin.key, client)).rejects.toThrow(/revoked/);
    expect(await snapshotAccount(fx.dir)).toEqual(files);
    expect((await connectionStatus(client, ACCOUNT, again.requestUdf)).state).toBe('Pending');
  });

  it('argument checks', async () => {
    const account = await loadAccount(fx.dir);
    await expect(listPending(undefined as unknown as typeof account, admin.key, client)).rejects.toThrow(TypeError);
    await expect(acceptRequest(account, 42 as unknown as string, 'x', admin.key, client)).rejects.toThrow(TypeError);
    await expect(acceptRequest(account, 'MABC', undefined as unknown as string, admin.key, client)).rejects.toThrow(TypeError);
    await expect(rejectRequest(account, 'MABC', {} as Signer, client)).rejects.toThrow(TypeError);
    await expect(requestConnection(client, 7 as unknown as string, undefined, {} as SignedProfile, admin.key)).rejects.toThrow(TypeError);
    await expect(connectionStatus(client, ACCOUNT, undefined as unknown as string)).rejects.toThrow(TypeError);
  });
});
