/**
 * Admin profile updates on real SoftHSM tokens (master keys on an HSM token, the administration
 * key on a second token standing in for a smartcard), devices with software key stores: connect,
 * revoke (re-key / flag), applications with delegated administrators (§5.3), add-admin and rotate
 * with the master key, and the faults (unauthorised key, wrong PIN, crash between files).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromUtf8, utf8 } from '../../src/core/bytes.js';
import { ErrorCode } from '../../src/core/errors.js';
import { decryptJwe } from '../../src/core/jose.js';
import { ProfileType, readProfile, signProfile, supersede, verifyProfile, type ApplicationProfile, type PersonalProfile } from '../../src/core/profiles.js';
import { InjectedCrash, loadAccount, snapshotAccount, verifyAccount } from '../../src/admin/account.js';
import { addAdmin, connectDevice, connectDevicesBatch, createApplication, revokeDevice, rotateAdmin, updateApplication } from '../../src/admin/updates.js';
import type { PortalClient } from '../../src/portal/client.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { makeAccountFixture, type AccountFixture, type FixtureDevice, type OpenKey } from '../helpers/account.js';
import type { Signer } from '../../src/core/signer.js';
import { testDecrypter, testKey, testSigner } from '../helpers/software-signer.js';

const appOf = (s: unknown): ApplicationProfile => readProfile(s, ProfileType.Application).profile;

describe.skipIf(softhsmMissing)('admin updates on SoftHSM', () => {
  let a: AccountFixture;
  let admin: OpenKey<Signer>;
  let d1: FixtureDevice;
  let d2: FixtureDevice;
  let d3: FixtureDevice;

  beforeAll(async () => {
    a = await makeAccountFixture();
    admin = await a.openAdmin();
    d1 = await a.makeDevice('phone');
    d2 = await a.makeDevice('laptop');
    d3 = await a.makeDevice('sensor');
  }, 120_000);
  afterAll(async () => a?.cleanup());

  it('connects two devices; the chain Master → Personal → Devices verifies', async () => {
    const s1 = await connectDevice({ dir: a.dir, admin: admin.key }, d1.signed);
    expect(s1.personal.sequence).toBe(2);
    const s2 = await connectDevice({ dir: a.dir, admin: admin.key }, d2.signed);
    expect(s2.personal).toMatchObject({ sequence: 3, changed: true, signedBy: admin.key.keyId });
    const acc = await loadAccount(a.dir);
    const vm = await verifyProfile(acc.master);
    const vp = await verifyProfile(acc.personal, { master: vm });
    expect(vp.signerRole).toBe('administration-key');
    expect(vp.devices?.map((d) => d.identifier).sort()).toEqual([d1.identifier, d2.identifier].sort());
    for (const d of [d1, d2]) expect((await verifyProfile(d.signed, { personal: vp })).connected).toBe(true);
    expect(Object.keys(acc.index.Devices).sort()).toEqual([d1.identifier, d2.identifier].sort());
    expect(JSON.parse(readFileSync(join(a.dir, `devices/${d1.identifier}.json`), 'utf8'))).toEqual(d1.signed);
    // every version is kept in history/
    expect(readProfile(JSON.parse(readFileSync(join(a.dir, `history/PersonalProfile-${acc.index.Identifier.replace(/-/g, '').slice(0, 20)}-2.json`), 'utf8'))).profile.Sequence).toBe(2);
  });

  it('refuses a forged device profile (nothing written)', async () => {
    const before = await snapshotAccount(a.dir);
    const forged = structuredClone(d3.signed);
    forged.payload = forged.payload.slice(0, -4) + (forged.payload.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await expect(connectDevice({ dir: a.dir, admin: admin.key }, forged)).rejects.toMatchObject({ code: expect.stringMatching(/ERR_PROFILE_(SIGNATURE|MALFORMED)|ERR_JSON_INVALID/) });
    expect(await snapshotAccount(a.dir)).toEqual(before);
  });

  let app1: string;
  let app2: string;
  let app3: string;
  const secret1 = utf8('mqtt-password-one');
  const adminEnc = testKey('X25519');
  const adminDecrypter = testDecrypter(adminEnc);

  it('creates applications: one with an administrator copy of its private data, one without, one delegated to a device', async () => {
    const c1 = await createApplication({ dir: a.dir, admin: admin.key }, {
      type: 'mqtt', friendly: 'broker', decryptDevices: [d1.identifier, d2.identifier], privateData: secret1,
      recipients: [adminEnc.publicJwk], publicData: { Host: 'mqtt.example' },
    });
    app1 = c1.applications[0]!.identifier;
    expect(c1.applications[0]).toMatchObject({ change: 'created', sequence: 1, type: 'mqtt' });
    const c2 = await createApplication({ dir: a.dir, admin: admin.key }, { type: 'ssh', decryptDevices: [d1.identifier, d2.identifier], privateData: utf8('ssh-secret') });
    app2 = c2.applications[0]!.identifier;
    const c3 = await createApplication({ dir: a.dir, admin: admin.key }, { type: 'web', adminDevices: [d2.identifier], publicData: { Colour: 'blue' } });
    app3 = c3.applications[0]!.identifier;
    const acc = await loadAccount(a.dir);
    await verifyAccount(acc);
    expect(acc.personalProfile.Applications.find((x) => x.Identifier === app3)?.AdminDeviceUDF).toEqual([admin.key.keyId, d2.identifier]);
    // d1 decrypts app1's SharedPrivate
    const jwe = appOf(acc.applications.get(app1)).SharedPrivate;
    expect(fromUtf8((await decryptJwe(jwe, d1.decrypter)).plaintext)).toBe('mqtt-password-one');
  });

  it('a delegated device (not a profile admin) updates its Application Profile (§5.3); another device is refused', async () => {
    const s = await updateApplication({ dir: a.dir, signer: d2.signer }, app3, { publicData: { Colour: 'green' } });
    expect(s.applications[0]).toMatchObject({ identifier: app3, sequence: 2, change: 'updated' });
    const acc = await loadAccount(a.dir);
    const v = await verifyProfile(acc.applications.get(app3)!, { personal: acc.personal });
    expect(v.signerRole).toBe('application-administrator');
    expect(v.signerKeyId).toBe(d2.identifier);
    expect(appOf(v.signed).PublicData).toEqual({ Colour: 'green' });
    // d1 is not an administrator of app3: refused before anything is written
    const before = await snapshotAccount(a.dir);
    await expect(updateApplication({ dir: a.dir, signer: d1.signer }, app3, { publicData: { Colour: 'red' } })).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
    expect(await snapshotAccount(a.dir)).toEqual(before);
    // and a profile signed by d1 anyway does not verify
    const forged = await signProfile(ProfileType.Application, supersede(appOf(v.signed), {}), d1.signer);
    await expect(verifyProfile(forged, { personal: acc.personal })).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
  });

  it('an admin key not listed in the Master Profile is refused before anything is written', async () => {
    const before = await snapshotAccount(a.dir);
    const card = await a.newCard();
    const stranger = await card.open();
    await expect(connectDevice({ dir: a.dir, admin: stranger.key }, d3.signed)).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
    await expect(revokeDevice({ dir: a.dir, admin: stranger.key }, d1.identifier)).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
    await expect(createApplication({ dir: a.dir, admin: stranger.key }, { type: 'x' })).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
    expect(await snapshotAccount(a.dir)).toEqual(before);
  });

  it('a wrong PIN for the admin card: nothing written, account files byte-identical', async () => {
    const before = await snapshotAccount(a.dir);
    await admin.close(); // log out, so the token checks the PIN again
    await expect(a.openAdmin('0000-wrong')).rejects.toMatchObject({ code: ErrorCode.PKCS11_PIN_INCORRECT });
    expect(await snapshotAccount(a.dir)).toEqual(before);
    admin = await a.openAdmin();
  });

  it('a crash between the profile file and account.json leaves the previous state intact and loadable', async () => {
    const before = await loadAccount(a.dir);
    await expect(connectDevice({ dir: a.dir, admin: admin.key, fault: 'after-current-files' }, d3.signed)).rejects.toBeInstanceOf(InjectedCrash);
    // personal.json on disk is the uncommitted version …
    const onDisk = readProfile(JSON.parse(readFileSync(join(a.dir, 'personal.json'), 'utf8')), ProfileType.Personal).profile;
    expect(onDisk.Sequence).toBe(before.personalProfile.Sequence + 1);
    // … but the account loads as before, and verifies
    const after = await loadAccount(a.dir);
    expect(after.personal).toEqual(before.personal);
    expect(after.index).toEqual(before.index);
    await verifyAccount(after);
    // a crash right after the new files: also intact
    await expect(connectDevice({ dir: a.dir, admin: admin.key, fault: 'after-new-files' }, d3.signed)).rejects.toBeInstanceOf(InjectedCrash);
    expect((await loadAccount(a.dir)).personal).toEqual(before.personal);
    // the next update goes through normally
    const s = await connectDevice({ dir: a.dir, admin: admin.key }, d3.signed);
    expect(s.personal.sequence).toBe(before.personalProfile.Sequence + 1);
    await verifyAccount(await loadAccount(a.dir));
  });

  it('revokes a device: removed, application entries updated, re-keyed where the admin can decrypt, flagged otherwise', async () => {
    const before = await loadAccount(a.dir);
    const s = await revokeDevice({ dir: a.dir, admin: admin.key, decrypters: [adminDecrypter] }, d1.identifier, { reason: 'stolen' });
    expect(s.personal.sequence).toBe(before.personalProfile.Sequence + 1);
    expect(s.applications.find((x) => x.identifier === app1)).toMatchObject({ change: 're-keyed', sequence: 2 });
    expect(s.flagged.find((x) => x.identifier === app2)?.reason).toMatch(/needs re-keying/);
    const acc = await loadAccount(a.dir);
    await verifyAccount(acc);
    const p: PersonalProfile = acc.personalProfile;
    expect(p.Devices.map((d) => readProfile(d, ProfileType.Device).profile.Identifier)).not.toContain(d1.identifier);
    for (const e of p.Applications) {
      expect(e.DecryptDeviceUDF).not.toContain(d1.identifier);
      expect(e.AdminDeviceUDF).not.toContain(d1.identifier);
    }
    const newJwe = appOf(acc.applications.get(app1)).SharedPrivate;
    expect(fromUtf8((await decryptJwe(newJwe, d2.decrypter)).plaintext)).toBe('mqtt-password-one');
    await expect(decryptJwe(newJwe, d1.decrypter)).rejects.toMatchObject({ code: ErrorCode.JWE_NO_RECIPIENT });
    // the revoked device's profile is kept under revoked/ with the record
    expect(acc.index.Revoked[d1.identifier]).toMatchObject({ Reason: 'stolen', PersonalSequence: p.Sequence });
    const record = JSON.parse(readFileSync(join(a.dir, `revoked/${d1.identifier}.json`), 'utf8'));
    expect(record.DeviceProfile).toEqual(d1.signed);
    expect(acc.index.Devices[d1.identifier]).toBeUndefined();
    // connected-check: the revoked device no longer verifies as connected
    await expect(verifyProfile(d1.signed, { personal: acc.personal })).rejects.toMatchObject({ code: ErrorCode.PROFILE_NOT_CONNECTED });
    // a revoked device is not connected again
    await expect(connectDevice({ dir: a.dir, admin: admin.key }, d1.signed)).rejects.toMatchObject({ code: ErrorCode.PROFILE_MISMATCH });
  });

  let card2: { uri: string; open(): Promise<OpenKey<Signer>> };
  it('add-admin with the master key on the HSM: Master Profile Sequence 2 verifies, the new key signs the Personal Profile', async () => {
    const master = await a.openMaster();
    const c = await a.newCard();
    card2 = c;
    const newAdmin = await c.open();
    const s = await addAdmin({ dir: a.dir, master: master.key, newAdmin: newAdmin.key, name: 'bob-card', key: c.uri });
    expect(s.master).toEqual({ sequence: 2, changed: true });
    expect(s.personal.signedBy).toBe(newAdmin.key.keyId);
    const acc = await loadAccount(a.dir);
    const vm = await verifyProfile(acc.master);
    expect(vm.sequence).toBe(2);
    expect((vm.profile as { OnlineSignatureKeys: Array<{ UDF: string }> }).OnlineSignatureKeys.map((k) => k.UDF)).toContain(newAdmin.key.keyId);
    await verifyAccount(acc);
    expect(acc.index.Administrators.map((x) => x.Name)).toContain('bob-card');
    // the master key is required
    await expect(addAdmin({ dir: a.dir, master: admin.key, newAdmin: d2.signer })).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
  });

  it('rotate: the old admin key is replaced; it can no longer sign a valid Personal Profile', async () => {
    const master = await a.openMaster();
    const c = await a.newCard();
    const next = await c.open();
    const old = admin.key.keyId;
    const s = await rotateAdmin({ dir: a.dir, master: master.key, newAdmin: next.key, key: c.uri }, old);
    expect(s.master.sequence).toBe(3);
    // app1 and app2 entries now name the new key; app1 (signed by the old key) is re-signed
    const acc = await loadAccount(a.dir);
    await verifyAccount(acc);
    for (const e of acc.personalProfile.Applications) expect(e.AdminDeviceUDF).not.toContain(old);
    expect(acc.index.Administrators.map((x) => x.UDF)).not.toContain(old);
    // the old key signs a Personal Profile: refused against the new Master
    const forged = await signProfile(ProfileType.Personal, supersede(acc.personalProfile, {}), admin.key);
    await expect(verifyProfile(forged, { master: acc.master })).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
    // and the services refuse it
    await expect(createApplication({ dir: a.dir, admin: admin.key }, { type: 'late' })).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
    // the new key works
    const more = await createApplication({ dir: a.dir, admin: next.key }, { type: 'late' });
    expect(more.personal.signedBy).toBe(next.key.keyId);
    expect(card2.uri).toMatch(/^pkcs11:/);
  });

  it('checks arguments', async () => {
    await expect(connectDevice({ dir: '', admin: admin.key }, d1.signed)).rejects.toThrow(TypeError);
    await expect(revokeDevice({ dir: a.dir, admin: admin.key }, d2.identifier, { reason: 'bored' as 'lost' })).rejects.toThrow(RangeError);
    await expect(createApplication({ dir: a.dir, admin: {} as Signer }, { type: 'x' })).rejects.toThrow(TypeError);
  });
});

describe.skipIf(softhsmMissing)('batch connect (group commit) on SoftHSM', () => {
  let a: AccountFixture;
  let admin: OpenKey<Signer>;
  let d: FixtureDevice[];

  beforeAll(async () => {
    a = await makeAccountFixture();
    admin = await a.openAdmin();
    d = [];
    for (const name of ['b-phone', 'b-laptop', 'b-sensor', 'b-watch', 'b-revoked']) d.push(await a.makeDevice(name));
  }, 120_000);
  afterAll(async () => a?.cleanup());

  const personalSequence = async (): Promise<number> => (await loadAccount(a.dir)).personalProfile.Sequence;

  it('connects two devices in ONE Personal Profile update: one Sequence, one history file, a file per device, the chain verifies', async () => {
    const [d0, d1] = [d[0]!, d[1]!];
    const before = await personalSequence();
    // A recording portal client (the portal itself is tested in test/portal): publishes are counted, not sent.
    const published: Array<{ account: string; type: string; sequence: number; devices: number }> = [];
    const client = {
      publish: async (account: string, signed: unknown) => {
        const { type, profile } = readProfile(signed);
        published.push({ account, type, sequence: (profile as { Sequence: number }).Sequence, devices: (profile as PersonalProfile).Devices?.length ?? 0 });
        return { LogIndex: published.length };
      },
    } as unknown as PortalClient;
    const r = await connectDevicesBatch({ dir: a.dir, admin: admin.key, portal: { client, account: 'bench@example.com' } }, [d0.signed, JSON.stringify(d1.signed)]);
    expect(r.results.map((x) => x.status)).toEqual(['connected', 'connected']);
    expect(r.results.map((x) => (x as { identifier: string }).identifier)).toEqual([d0.identifier, d1.identifier]);
    expect(r.update?.personal).toMatchObject({ sequence: before + 1, changed: true, signedBy: admin.key.keyId });
    expect(r.update?.devices?.map((x) => x.identifier)).toEqual([d0.identifier, d1.identifier]);
    expect(r.update?.device).toBeUndefined();
    expect(await personalSequence()).toBe(before + 1);
    // one publish: the one new Personal Profile, listing both devices
    expect(published).toEqual([{ account: 'bench@example.com', type: ProfileType.Personal, sequence: before + 1, devices: 2 }]);
    expect(r.update?.published).toEqual([{ type: ProfileType.Personal, identifier: expect.any(String), sequence: before + 1, logIndex: 1 }]);
    const acc = await loadAccount(a.dir);
    await verifyAccount(acc);
    const vp = await verifyProfile(acc.personal, { master: await verifyProfile(acc.master) });
    expect(vp.devices?.map((x) => x.identifier).sort()).toEqual([d0.identifier, d1.identifier].sort());
    for (const x of [d0, d1]) {
      expect(JSON.parse(readFileSync(join(a.dir, `devices/${x.identifier}.json`), 'utf8'))).toEqual(x.signed);
      expect(acc.index.Devices[x.identifier]).toMatchObject({ File: `devices/${x.identifier}.json`, Description: x.description });
    }
    const hist = join(a.dir, `history/PersonalProfile-${acc.index.Identifier.replace(/-/g, '').slice(0, 20)}-${before + 1}.json`);
    expect(readProfile(JSON.parse(readFileSync(hist, 'utf8'))).profile.Sequence).toBe(before + 1);
    expect(r.update?.files).toEqual(expect.arrayContaining([`devices/${d0.identifier}.json`, `devices/${d1.identifier}.json`, 'account.json']));
  });

  it('a bad device is refused with its own error while the others are connected in the same update', async () => {
    const [d2, d3] = [d[2]!, d[3]!];
    const before = await personalSequence();
    const forged = structuredClone(d2.signed);
    forged.payload = forged.payload.slice(0, -4) + (forged.payload.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const r = await connectDevicesBatch({ dir: a.dir, admin: admin.key, portal: false }, [forged, d3.signed, d[0]!.signed, d3.signed]);
    expect(r.results.map((x) => x.status)).toEqual(['refused', 'connected', 'refused', 'refused']);
    expect((r.results[0] as unknown as { error: { code: string } }).error.code).toMatch(/ERR_PROFILE_(SIGNATURE|MALFORMED)|ERR_JSON_INVALID/);
    // d0 is already connected with the same Sequence: superseded; d3 given twice: the second is refused
    expect((r.results[2] as unknown as { error: { code: string } }).error.code).toBe(ErrorCode.PROFILE_SUPERSEDED);
    expect((r.results[3] as unknown as { error: { code: string } }).error.code).toBe(ErrorCode.PROFILE_MALFORMED);
    expect(r.update?.personal.sequence).toBe(before + 1);
    const acc = await loadAccount(a.dir);
    expect(acc.index.Devices[d3.identifier]).toBeDefined();
    expect(acc.index.Devices[d2.identifier]).toBeUndefined();
    expect(acc.personalProfile.Devices).toHaveLength(3);
  });

  it('skipConnected reports devices already listed as "already" without a new version; all refused or already: nothing written', async () => {
    const before = await snapshotAccount(a.dir);
    const seq = await personalSequence();
    const r = await connectDevicesBatch({ dir: a.dir, admin: admin.key, portal: false, skipConnected: true }, [d[0]!.signed, d[3]!.signed]);
    expect(r.results.map((x) => x.status)).toEqual(['already', 'already']);
    expect(r.update).toBeUndefined();
    expect(await personalSequence()).toBe(seq);
    expect(await snapshotAccount(a.dir)).toEqual(before);
  });

  it('a revoked device is refused in a batch; the rest of the batch still connects', async () => {
    const victim = d[4]!;
    await connectDevice({ dir: a.dir, admin: admin.key }, victim.signed);
    await revokeDevice({ dir: a.dir, admin: admin.key }, victim.identifier, { reason: 'retired' });
    const fresh = await a.makeDevice('b-late');
    const r = await connectDevicesBatch({ dir: a.dir, admin: admin.key, portal: false }, [victim.signed, fresh.signed]);
    expect(r.results.map((x) => x.status)).toEqual(['refused', 'connected']);
    expect((r.results[0] as unknown as { error: { code: string; message: string } }).error).toMatchObject({ code: ErrorCode.PROFILE_MISMATCH, message: expect.stringContaining('revoked') });
  });

  it('an admin key the Master Profile does not list fails the whole batch before anything is written', async () => {
    const before = await snapshotAccount(a.dir);
    const stranger = testKey('Ed25519');
    const other = await a.makeDevice('b-other');
    await expect(connectDevicesBatch({ dir: a.dir, admin: testSigner(stranger), portal: false }, [other.signed])).rejects.toMatchObject({ code: ErrorCode.PROFILE_UNAUTHORISED });
    expect(await snapshotAccount(a.dir)).toEqual(before);
  });

  it('checks arguments', async () => {
    await expect(connectDevicesBatch({ dir: a.dir, admin: admin.key }, [])).rejects.toThrow(RangeError);
    await expect(connectDevicesBatch({ dir: a.dir, admin: admin.key }, 'x' as never)).rejects.toThrow(TypeError);
    await expect(connectDevicesBatch({ dir: a.dir, admin: {} as never }, [d[0]!.signed])).rejects.toThrow(TypeError);
    await expect(connectDevicesBatch({ dir: a.dir, admin: admin.key, skipConnected: 1 as never }, [d[0]!.signed])).rejects.toThrow(TypeError);
    const r = await connectDevicesBatch({ dir: a.dir, admin: admin.key, portal: false }, [null as never]);
    expect(r.results[0]).toMatchObject({ status: 'refused', error: expect.any(TypeError) });
  });
});
