import { describe, expect, it } from 'vitest';
import { b64u, fromB64u, fromUtf8, utf8 } from '../../src/core/bytes.js';
import { ErrorCode, ProfileError } from '../../src/core/errors.js';
import { signJws } from '../../src/core/jose.js';
import {
  composeApplicationProfile,
  composeDeviceProfile,
  composeMasterProfile,
  composePersonalProfile,
  connectDevice,
  disconnectDevice,
  ProfileType,
  readProfile,
  signProfile,
  supersede,
  verifyProfile,
  type SignedProfile,
} from '../../src/core/profiles.js';
import type { Curve } from '../../src/core/signer.js';
import { testKey, testSigner, type TestKey } from '../helpers/software-signer.js';

async function expectProfileError(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e, 'expected a ProfileError').toBeInstanceOf(ProfileError);
  expect((e as ProfileError).code).toBe(code);
  if (message) expect((e as ProfileError).message).toMatch(message);
}

interface World {
  masterKey: TestKey;
  escrowKey: TestKey;
  adminKey: TestKey;
  devKeys: TestKey[];
  master: SignedProfile;
  personal: SignedProfile;
  devices: SignedProfile[];
}

async function makeDevice(description: string, sigCurve: Curve = 'Ed25519'): Promise<{ key: TestKey; signed: SignedProfile }> {
  const key = testKey(sigCurve);
  const enc = testKey('X25519');
  const profile = composeDeviceProfile({ description, signatureKey: key.publicJwk, encryptionKey: enc.publicJwk, authenticationKey: testKey('X25519').publicJwk });
  return { key, signed: await signProfile(ProfileType.Device, profile, testSigner(key)) };
}

async function world(masterCurve: Curve = 'Ed448', adminCurve: Curve = 'Ed25519'): Promise<World> {
  const masterKey = testKey(masterCurve);
  const escrowKey = testKey(masterCurve === 'Ed448' ? 'X448' : 'X25519');
  const adminKey = testKey(adminCurve);
  const masterProfile = composeMasterProfile({ signatureKey: masterKey.publicJwk, escrowKeys: [escrowKey.publicJwk], adminKeys: [adminKey.publicJwk] });
  const master = await signProfile(ProfileType.Master, masterProfile, testSigner(masterKey));
  const d1 = await makeDevice('sensor-1');
  const d2 = await makeDevice('gateway', 'Ed448');
  const personalProfile = composePersonalProfile({ master, devices: [d1.signed, d2.signed] });
  const personal = await signProfile(ProfileType.Personal, personalProfile, testSigner(adminKey));
  return { masterKey, escrowKey, adminKey, devKeys: [d1.key, d2.key], master, personal, devices: [d1.signed, d2.signed] };
}

/** Re-encodes the payload of a signed profile after `edit` (the signature is kept, so it no longer holds). */
function tamperPayload(signed: SignedProfile, edit: (p: Record<string, unknown>) => void): SignedProfile {
  const payload = JSON.parse(fromUtf8(fromB64u(signed.payload))) as Record<string, unknown>;
  edit(payload);
  return { ...signed, payload: b64u(utf8(JSON.stringify(payload))) };
}

describe('profiles: compose, sign, verify', () => {
  it.each([
    ['Ed448 master, Ed25519 admin', 'Ed448', 'Ed25519'],
    ['Ed25519 master, P-256 admin (smartcard without EdDSA)', 'Ed25519', 'P-256'],
    ['P-256 master, Ed448 admin', 'P-256', 'Ed448'],
  ] as const)('%s: Master, Personal and Devices verify, devices are connected', async (_name, mc, ac) => {
    const w = await world(mc, ac);
    const m = await verifyProfile(w.master);
    expect(m.type).toBe('MasterProfile');
    expect(m.identifier).toBe(w.masterKey.keyId);
    expect(m.signerRole).toBe('master-signature-key');
    const p = await verifyProfile(JSON.stringify(w.personal));
    expect(p.type).toBe('PersonalProfile');
    expect(p.identifier).toBe(w.masterKey.keyId);
    expect(p.signerKeyId).toBe(w.adminKey.keyId);
    expect(p.devices?.map((d) => d.identifier)).toEqual(w.devKeys.map((k) => k.keyId));
    for (const d of w.devices) {
      const v = await verifyProfile(d, { personal: w.personal });
      expect(v.connected).toBe(true);
      expect(v.signerRole).toBe('device-signature-key');
    }
  });

  it('the profile payload is {"<Type>": …} with cty and a protected kid', async () => {
    const w = await world();
    const header = JSON.parse(fromUtf8(fromB64u(w.master.signatures[0]!.protected))) as Record<string, unknown>;
    expect(header).toEqual({ alg: 'EdDSA', kid: w.masterKey.keyId, cty: 'MasterProfile' });
    const payload = JSON.parse(fromUtf8(fromB64u(w.master.payload))) as Record<string, Record<string, unknown>>;
    expect(Object.keys(payload)).toEqual(['MasterProfile']);
    expect(payload.MasterProfile!.Identifier).toBe(w.masterKey.keyId);
    expect(w.master.signatures[0]!.header).toBeUndefined();
  });

  it('a verified profile of the wrong type given as context is refused, not trusted', async () => {
    const w = await world();
    const device = await verifyProfile(w.devices[0]!);
    await expectProfileError(verifyProfile(w.personal, { master: device }), ErrorCode.PROFILE_MISMATCH, /verified DeviceProfile, not a Master Profile/);
    await expectProfileError(verifyProfile(w.devices[1]!, { personal: device }), ErrorCode.PROFILE_MISMATCH, /not a Personal Profile/);
    const personal = await verifyProfile(w.personal);
    await expect(verifyProfile(w.devices[1]!, { personal })).resolves.toMatchObject({ connected: true });
  });

  it('a Personal Profile verifies against a given Master Profile and refuses a foreign one', async () => {
    const w = await world();
    await expect(verifyProfile(w.personal, { master: w.master })).resolves.toMatchObject({ type: 'PersonalProfile' });
    const other = await world();
    await expectProfileError(verifyProfile(w.personal, { master: other.master }), ErrorCode.PROFILE_MISMATCH);
  });
});

describe('profiles: §5.4 signer rules', () => {
  it('a Personal Profile signed by a key that is not an administration key is refused', async () => {
    const w = await world();
    const profile = readProfile(w.personal, ProfileType.Personal).profile;
    const rogue = testKey('Ed25519');
    const forged = await signProfile(ProfileType.Personal, profile, testSigner(rogue));
    await expectProfileError(verifyProfile(forged), ErrorCode.PROFILE_UNAUTHORISED, /not an administration key/);
  });

  it('a Personal Profile signed by the master signature key itself is refused (only admin keys sign it)', async () => {
    const w = await world();
    const profile = readProfile(w.personal, ProfileType.Personal).profile;
    const bySelf = await signProfile(ProfileType.Personal, profile, testSigner(w.masterKey));
    await expectProfileError(verifyProfile(bySelf), ErrorCode.PROFILE_UNAUTHORISED);
  });

  it('a Master Profile signed by another key is refused, at signing and at verification', async () => {
    const w = await world();
    const profile = readProfile(w.master, ProfileType.Master).profile;
    await expectProfileError(signProfile(ProfileType.Master, profile, testSigner(w.adminKey)), ErrorCode.PROFILE_UNAUTHORISED);
    // Built by hand, bypassing signProfile's check.
    const forged = await signJws(utf8(JSON.stringify({ MasterProfile: profile })), [testSigner(w.adminKey)], { cty: 'MasterProfile' });
    await expectProfileError(verifyProfile(forged), ErrorCode.PROFILE_UNAUTHORISED, /not its master signature key/);
  });

  it('a Device Profile signed by a key other than its device signature key is refused', async () => {
    const w = await world();
    const profile = readProfile(w.devices[0], ProfileType.Device).profile;
    const forged = await signJws(utf8(JSON.stringify({ DeviceProfile: profile })), [testSigner(w.adminKey)], { cty: 'DeviceProfile' });
    await expectProfileError(verifyProfile(forged), ErrorCode.PROFILE_UNAUTHORISED);
  });

  it('a forged signature (altered payload) is ERR_PROFILE_SIGNATURE', async () => {
    const w = await world();
    const altered = tamperPayload(w.master, (p) => { (p.MasterProfile as Record<string, unknown>).Names = ['mallory']; });
    await expectProfileError(verifyProfile(altered), ErrorCode.PROFILE_SIGNATURE, /does not verify/);
  });

  it('an added administration key in a tampered Master Profile does not verify', async () => {
    const w = await world();
    const rogue = testKey('Ed25519');
    const altered = tamperPayload(w.master, (p) => {
      const m = p.MasterProfile as Record<string, unknown[]>;
      m.OnlineSignatureKeys!.push({ UDF: rogue.keyId, PublicParameters: rogue.publicJwk });
    });
    await expectProfileError(verifyProfile(altered), ErrorCode.PROFILE_SIGNATURE);
  });

  it('a tampered embedded device fails the Personal Profile, naming the device index', async () => {
    const w = await world();
    const badDevice = tamperPayload(w.devices[1]!, (p) => { (p.DeviceProfile as Record<string, unknown>).Description = 'evil'; });
    const profile = readProfile(w.personal, ProfileType.Personal).profile;
    const personal = await signProfile(ProfileType.Personal, { ...profile, Devices: [w.devices[0]!, badDevice] }, testSigner(w.adminKey));
    await expectProfileError(verifyProfile(personal), ErrorCode.PROFILE_SIGNATURE, /Devices\[1\]/);
  });
});

describe('profiles: malformed input', () => {
  const malformed: Array<[string, (w: World) => unknown]> = [
    ['not JSON', () => '{"payload":'],
    ['a number', () => 42],
    ['null', () => null],
    ['compact JWS string', () => 'eyJhbGciOiJFZERTQSJ9.e30.AAAA'],
    ['no signatures', (w) => ({ payload: w.master.payload, signatures: [] })],
    ['payload not base64url', (w) => ({ ...w.master, payload: 'not base64!' })],
    ['payload is an array', (w) => ({ ...w.master, payload: b64u(utf8('[]')) })],
    ['payload with two profile types', (w) => tamperPayload(w.master, (p) => { p.DeviceProfile = {}; })],
    ['unknown profile type', (w) => ({ ...w.master, payload: b64u(utf8('{"EvilProfile":{}}')) })],
    ['duplicate JSON member in payload', (w) => ({ ...w.master, payload: b64u(utf8(fromUtf8(fromB64u(w.master.payload)).replace('{"MasterProfile":{', '{"MasterProfile":{"Sequence":9,'))) })],
    ['missing Identifier', (w) => tamperPayload(w.master, (p) => { delete (p.MasterProfile as Record<string, unknown>).Identifier; })],
    ['Identifier not the master key UDF', (w) => tamperPayload(w.master, (p) => { (p.MasterProfile as Record<string, unknown>).Identifier = w.adminKey.keyId; })],
    ['Sequence zero', (w) => tamperPayload(w.master, (p) => { (p.MasterProfile as Record<string, unknown>).Sequence = 0; })],
    ['Sequence a string', (w) => tamperPayload(w.master, (p) => { (p.MasterProfile as Record<string, unknown>).Sequence = '2'; })],
    ['Updated not a time', (w) => tamperPayload(w.master, (p) => { (p.MasterProfile as Record<string, unknown>).Updated = 'yesterday'; })],
    ['key UDF not matching its key', (w) => tamperPayload(w.master, (p) => {
      const m = p.MasterProfile as Record<string, Array<Record<string, unknown>>>;
      m.OnlineSignatureKeys![0]!.UDF = w.masterKey.keyId;
    })],
    ['escrow key that is a signature key', (w) => tamperPayload(w.master, (p) => {
      const m = p.MasterProfile as Record<string, unknown[]>;
      m.MasterEscrowKeys = [{ UDF: w.adminKey.keyId, PublicParameters: w.adminKey.publicJwk }];
    })],
    ['private key material in a JWK', (w) => tamperPayload(w.master, (p) => {
      const m = p.MasterProfile as Record<string, Record<string, unknown>>;
      m.MasterSignatureKey!.PublicParameters = w.masterKey.privateJwk;
    })],
    ['cty not matching the payload', (w) => ({ ...w.master, signatures: [{ ...w.master.signatures[0]!, protected: b64u(utf8(JSON.stringify({ alg: 'EdDSA', kid: w.masterKey.keyId, cty: 'DeviceProfile' }))) }] })],
    ['Devices not an array', (w) => tamperPayload(w.personal, (p) => { (p.PersonalProfile as Record<string, unknown>).Devices = {}; })],
  ];

  it.each(malformed)('%s → ERR_PROFILE_MALFORMED', async (_name, make) => {
    const w = await world();
    await expectProfileError(verifyProfile(make(w) as object), ErrorCode.PROFILE_MALFORMED);
  });

  it('a second signature is refused (one profile, one signer)', async () => {
    const w = await world();
    const twice = { ...w.master, signatures: [w.master.signatures[0]!, w.master.signatures[0]!] };
    await expectProfileError(verifyProfile(twice), ErrorCode.PROFILE_MALFORMED, /exactly one signature/);
  });

  it('accepts the 2017 misspelling DeviceEncryptiontionKey on input', async () => {
    const key = testKey('Ed25519');
    const enc = testKey('X25519');
    const profile = composeDeviceProfile({ description: 'legacy', signatureKey: key.publicJwk, encryptionKey: enc.publicJwk });
    const legacy = JSON.stringify({ DeviceProfile: profile }).replace('"DeviceEncryptionKey"', '"DeviceEncryptiontionKey"');
    const signed = await signJws(utf8(legacy), [testSigner(key)], { cty: 'DeviceProfile' });
    const v = await verifyProfile(signed);
    expect((v.profile as { DeviceEncryptionKey?: { UDF: string } }).DeviceEncryptionKey?.UDF).toBe(enc.keyId);
  });

  it('a profile dated more than a day in the future is refused', async () => {
    const key = testKey('Ed25519');
    const profile = composeDeviceProfile({ description: 'time traveller', signatureKey: key.publicJwk, updated: new Date(Date.now() + 3 * 86400e3) });
    const signed = await signProfile(ProfileType.Device, profile, testSigner(key));
    await expectProfileError(verifyProfile(signed), ErrorCode.PROFILE_MALFORMED, /future/);
    await expect(verifyProfile(signed, { now: new Date(Date.now() + 3 * 86400e3) })).resolves.toMatchObject({ type: 'DeviceProfile' });
  });
});

describe('profiles: supersession and the connected rule', () => {
  it('an older profile is not Current once a newer Sequence is known', async () => {
    const w = await world();
    const profile = readProfile(w.personal, ProfileType.Personal).profile;
    const newer = supersede(profile);
    expect(newer.Sequence).toBe(profile.Sequence + 1);
    expect(newer.Identifier).toBe(profile.Identifier);
    // Master and Personal Profiles share the identifier; the type tells them apart.
    const latest = (id: string, type: string): number | undefined =>
      (id === profile.Identifier && type === 'PersonalProfile' ? newer.Sequence : undefined);
    await expectProfileError(verifyProfile(w.personal, { latestSequence: latest }), ErrorCode.PROFILE_SUPERSEDED, /Sequence 1, latest known 2/);
    const signedNewer = await signProfile(ProfileType.Personal, newer, testSigner(w.adminKey));
    await expect(verifyProfile(signedNewer, { latestSequence: latest })).resolves.toMatchObject({ sequence: 2 });
  });

  it('connect and disconnect produce superseding Personal Profiles; a removed device is no longer connected', async () => {
    const w = await world();
    const d3 = await makeDevice('camera');
    const p1 = readProfile(w.personal, ProfileType.Personal).profile;
    const p2 = connectDevice(p1, d3.signed);
    expect(p2.Sequence).toBe(2);
    const s2 = await signProfile(ProfileType.Personal, p2, testSigner(w.adminKey));
    await expect(verifyProfile(d3.signed, { personal: s2 })).resolves.toMatchObject({ connected: true });
    await expectProfileError(verifyProfile(d3.signed, { personal: w.personal }), ErrorCode.PROFILE_NOT_CONNECTED);
    const p3 = disconnectDevice(p2, d3.key.keyId);
    const s3 = await signProfile(ProfileType.Personal, p3, testSigner(w.adminKey));
    await expectProfileError(verifyProfile(d3.signed, { personal: s3 }), ErrorCode.PROFILE_NOT_CONNECTED, /not connected/);
    expect(() => disconnectDevice(p3, d3.key.keyId)).toThrow(ProfileError);
  });

  it('an older version of a connected device is superseded; connecting an older version is refused', async () => {
    const w = await world();
    const dev0 = readProfile(w.devices[0], ProfileType.Device).profile;
    const dev1 = supersede(dev0, { Description: 'sensor-1 (renamed)' });
    const signed1 = await signProfile(ProfileType.Device, dev1, testSigner(w.devKeys[0]!));
    const p1 = readProfile(w.personal, ProfileType.Personal).profile;
    const p2 = connectDevice(p1, signed1);
    const s2 = await signProfile(ProfileType.Personal, p2, testSigner(w.adminKey));
    await expect(verifyProfile(signed1, { personal: s2 })).resolves.toMatchObject({ connected: true, sequence: 2 });
    await expectProfileError(verifyProfile(w.devices[0]!, { personal: s2 }), ErrorCode.PROFILE_SUPERSEDED);
    expect(() => connectDevice(p2, w.devices[0]!)).toThrow(/already connected with Sequence 2/);
  });
});

describe('profiles: Application Profiles (§5.3 delegated administration)', () => {
  it('an application administered by a device that is not a profile admin verifies; other signers are refused', async () => {
    const w = await world();
    const appId = 'NBXX-APPL-ICAT-ION0-0000-0000-0001';
    const delegate = w.devKeys[0]!;
    const p1 = readProfile(w.personal, ProfileType.Personal).profile;
    const p2 = supersede(p1, { Applications: [{ Identifier: appId, Type: 'mqtt', AdminDeviceUDF: [delegate.keyId], DecryptDeviceUDF: [delegate.keyId] }] });
    const personal = await signProfile(ProfileType.Personal, p2, testSigner(w.adminKey));
    const app = composeApplicationProfile({ identifier: appId, type: 'mqtt', publicData: { broker: 'mqtts://broker.example:8883' }, devices: [{ DeviceUDF: delegate.keyId }] });
    const byDelegate = await signProfile(ProfileType.Application, app, testSigner(delegate));
    const v = await verifyProfile(byDelegate, { personal });
    expect(v).toMatchObject({ type: 'ApplicationProfile', signerRole: 'application-administrator', signerKeyId: delegate.keyId, connected: true });
    const byOtherDevice = await signProfile(ProfileType.Application, app, testSigner(w.devKeys[1]!));
    await expectProfileError(verifyProfile(byOtherDevice, { personal }), ErrorCode.PROFILE_UNAUTHORISED, /not listed as an administrator/);
    await expectProfileError(verifyProfile(byDelegate), ErrorCode.PROFILE_MISMATCH);
    await expectProfileError(verifyProfile(byDelegate, { personal: w.personal }), ErrorCode.PROFILE_NOT_CONNECTED);
    // Revoking the delegate's device removes its admin right.
    const p3 = disconnectDevice(p2, delegate.keyId);
    const personal3 = await signProfile(ProfileType.Personal, p3, testSigner(w.adminKey));
    await expectProfileError(verifyProfile(byDelegate, { personal: personal3 }), ErrorCode.PROFILE_UNAUTHORISED);
  });
});

describe('profiles: compose argument checks', () => {
  it('rejects wrong curves, empty admin lists and bad sequence numbers', () => {
    const ed = testKey('Ed25519');
    const x = testKey('X25519');
    expect(() => composeMasterProfile({ signatureKey: x.publicJwk, adminKeys: [ed.publicJwk] })).toThrow(RangeError);
    expect(() => composeMasterProfile({ signatureKey: ed.publicJwk, adminKeys: [] })).toThrow(RangeError);
    expect(() => composeMasterProfile({ signatureKey: ed.publicJwk, adminKeys: [ed.publicJwk], escrowKeys: [ed.publicJwk] })).toThrow(RangeError);
    expect(() => composeMasterProfile({ signatureKey: ed.publicJwk, adminKeys: [ed.publicJwk, ed.publicJwk] })).toThrow(/twice/);
    expect(() => composeDeviceProfile({ description: 'd', signatureKey: ed.publicJwk, sequence: 0 })).toThrow(RangeError);
    expect(() => composeDeviceProfile({ description: 'd', signatureKey: ed.publicJwk, updated: 'not a date' })).toThrow(RangeError);
    expect(() => composeDeviceProfile({ description: 42 as unknown as string, signatureKey: ed.publicJwk })).toThrow(TypeError);
  });
});
