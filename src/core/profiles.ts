/**
 * Mesh profiles (architecture-04 §5; field names of the 2017 schema, digest §4.1.1): Master,
 * Personal, Device and Application profiles — composing them, signing them through an external
 * {@link Signer}, and verifying them.
 *
 * A signed profile is a JWS in General JSON serialization whose payload is the UTF-8 JSON
 * `{"<ProfileType>": {…}}` and whose protected header carries `cty: "<ProfileType>"` and
 * `kid: <key UDF>`. Verification always works on the received bytes.
 *
 * A profile is Valid iff it is
 * - Verified: the signature verifies under the key whose UDF the protected `kid` names;
 * - Correct: that key is authorised for the profile type (§5.4):
 *   Master ← its own MasterSignatureKey; Personal ← one of the Master Profile's
 *   OnlineSignatureKeys (administration keys); Device ← its own DeviceSignatureKey;
 *   Application ← a key listed as administrator of that application in the Personal Profile;
 * - Current: not superseded. Each profile carries a `Sequence` number; a profile whose Sequence is
 *   lower than the latest one known (from the portal, the account directory, or the Personal
 *   Profile that lists it) is not Current.
 *
 * A Device or Application Profile is connected to a Personal Profile iff the Personal Profile is
 * Valid and lists its identifier in an entry of the right type.
 */
import { aobject, astring, describe, fromB64u, fromUtf8, utf8 } from './bytes.js';
import { ErrorCode, JoseError, ProfileError, type ErrorCodeValue } from './errors.js';
import { type JweGeneral, type JwsGeneral, parseJsonStrict, signJws, verifyJwsSync } from './jose.js';
import { keyId, publicKeyFromJwk, publicKeyToJwk, type PublicKey } from './keys.js';
import type { Curve, PublicJwk, Signer } from './signer.js';

/** The four profile types of architecture-04 §5. */
export const ProfileType = {
  Master: 'MasterProfile',
  Personal: 'PersonalProfile',
  Device: 'DeviceProfile',
  Application: 'ApplicationProfile',
} as const;
export type ProfileTypeName = (typeof ProfileType)[keyof typeof ProfileType];
const PROFILE_TYPES: readonly ProfileTypeName[] = Object.values(ProfileType);

/** A public key as profiles carry it: its UDF and its RFC 7517 / RFC 8037 JWK. */
export interface PublicKeyEntry {
  UDF: string;
  PublicParameters: PublicJwk;
}

/** Fields every profile has (2017 `Entry` + `Profile`, plus the supersession `Sequence`). */
export interface ProfileBase {
  Identifier: string;
  Names: string[];
  /** ISO 8601 time of this version. */
  Updated: string;
  /** Version number, starting at 1; a newer version of the same profile has a higher Sequence. */
  Sequence: number;
  NotaryToken?: string;
}

export interface MasterProfile extends ProfileBase {
  MasterSignatureKey: PublicKeyEntry;
  MasterEscrowKeys: PublicKeyEntry[];
  /** The administration keys (architecture-04 calls them online signature keys). */
  OnlineSignatureKeys: PublicKeyEntry[];
}

export interface ApplicationProfileEntry {
  /** Identifier of the Application Profile. */
  Identifier: string;
  Type: string;
  Friendly?: string;
  /** Key UDFs (device signature keys or administration keys) allowed to sign the Application Profile. */
  AdminDeviceUDF: string[];
  /** Device identifiers that may decrypt the application's private data. */
  DecryptDeviceUDF: string[];
}

export interface PersonalProfile extends ProfileBase {
  SignedMasterProfile: JwsGeneral;
  /** The connected devices: their signed Device Profiles. */
  Devices: JwsGeneral[];
  Applications: ApplicationProfileEntry[];
}

export interface DeviceProfile extends ProfileBase {
  Description: string;
  DeviceSignatureKey: PublicKeyEntry;
  DeviceAuthenticationKey?: PublicKeyEntry;
  DeviceEncryptionKey?: PublicKeyEntry;
}

export interface ApplicationDevicePublic {
  DeviceUDF: string;
  DeviceDescription?: string;
  PublicData?: Record<string, unknown>;
}

export interface ApplicationProfile extends ProfileBase {
  Type: string;
  PublicData?: Record<string, unknown>;
  SharedPrivate?: JweGeneral;
  Devices: ApplicationDevicePublic[];
  DevicePrivate?: JweGeneral[];
}

export interface ProfileByType {
  MasterProfile: MasterProfile;
  PersonalProfile: PersonalProfile;
  DeviceProfile: DeviceProfile;
  ApplicationProfile: ApplicationProfile;
}
export type AnyProfile = ProfileByType[ProfileTypeName];

/** A signed profile: one JWS in General JSON serialization. */
export type SignedProfile = JwsGeneral;

/** What {@link verifyProfile} returns for a Valid profile. */
export interface VerifiedProfile<T extends ProfileTypeName = ProfileTypeName> {
  type: T;
  profile: ProfileByType[T];
  identifier: string;
  sequence: number;
  /** UDF of the key that signed it. */
  signerKeyId: string;
  /** Why that key was allowed to sign: §5.4. */
  signerRole: 'master-signature-key' | 'administration-key' | 'device-signature-key' | 'application-administrator';
  signed: SignedProfile;
  /** The Master Profile the Personal (or Application) Profile was checked against. */
  master?: VerifiedProfile<'MasterProfile'>;
  /** The Personal Profile the Device / Application Profile was checked against (connected rule). */
  personal?: VerifiedProfile<'PersonalProfile'>;
  /** For a Personal Profile: its connected devices, each verified. */
  devices?: VerifiedProfile<'DeviceProfile'>[];
  /** True when checked against a Personal Profile that lists it. */
  connected?: boolean;
}

/** Context for {@link verifyProfile}. */
export interface VerifyContext {
  /** The Master Profile to check a Personal Profile against (else the one embedded in it). */
  master?: SignedProfile | VerifiedProfile | string;
  /** The Personal Profile a Device or Application Profile must be connected to. */
  personal?: SignedProfile | VerifiedProfile | string;
  /** Latest known Sequence for a profile identifier (from the portal or the account); older is superseded. */
  latestSequence?: (identifier: string, type: ProfileTypeName) => number | undefined;
  /** The time to check `Updated` against (default: now); profiles dated more than a day ahead are refused. */
  now?: Date;
}

const FUTURE_SKEW_MS = 24 * 3600 * 1000;

// ---------------------------------------------------------------------------------------------
// Composing
// ---------------------------------------------------------------------------------------------

/**
 * The profile form of a public key: `{UDF, PublicParameters}`.
 *
 * @throws KeyError if the key is invalid or a JWK carries private members.
 */
export function publicKeyEntry(key: PublicJwk | PublicKey): PublicKeyEntry {
  const pk = 'raw' in key ? key : publicKeyFromJwk(key);
  return { UDF: keyId(pk), PublicParameters: publicKeyToJwk(pk) };
}

interface ComposeBase {
  names?: string[];
  sequence?: number;
  updated?: Date | string;
}

function base(identifier: string, opts: ComposeBase): ProfileBase {
  const sequence = opts.sequence ?? 1;
  if (!Number.isSafeInteger(sequence) || sequence < 1) throw new RangeError(`"sequence" expected an integer ≥ 1, got ${sequence}`);
  const names = opts.names ?? [];
  if (!Array.isArray(names) || names.some((n) => typeof n !== 'string')) throw new TypeError('"names" expected an array of strings');
  return { Identifier: identifier, Names: [...names], Updated: isoTime(opts.updated), Sequence: sequence };
}

function isoTime(t: Date | string | undefined): string {
  if (t === undefined) return new Date().toISOString();
  const d = typeof t === 'string' ? new Date(t) : t;
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new RangeError(`"updated" is not a valid time: ${String(t)}`);
  return d.toISOString();
}

function requireCurves(entry: PublicKeyEntry, field: string, curves: readonly Curve[]): PublicKeyEntry {
  if (!curves.includes(entry.PublicParameters.crv)) {
    throw new RangeError(`"${field}" must be a ${curves.join('/')} key, got ${entry.PublicParameters.crv}`);
  }
  return entry;
}

const SIGNING_CURVES: readonly Curve[] = ['Ed25519', 'Ed448', 'P-256'];
const AGREEMENT_CURVES: readonly Curve[] = ['X25519', 'X448', 'P-256'];

/**
 * A Master Profile: the master signature key (its UDF is the identifier, forever), the master
 * escrow keys and the administration keys allowed to sign Personal Profiles.
 *
 * @throws TypeError / RangeError for missing or wrong-curve keys; KeyError for invalid keys.
 */
export function composeMasterProfile(args: {
  signatureKey: PublicJwk | PublicKey;
  escrowKeys?: Array<PublicJwk | PublicKey>;
  adminKeys: Array<PublicJwk | PublicKey>;
} & ComposeBase): MasterProfile {
  aobject(args, 'args');
  const signatureKey = requireCurves(publicKeyEntry(args.signatureKey), 'signatureKey', SIGNING_CURVES);
  if (!Array.isArray(args.adminKeys) || args.adminKeys.length === 0) throw new RangeError('"adminKeys" expected at least one administration key');
  const escrow = (args.escrowKeys ?? []).map((k, i) => requireCurves(publicKeyEntry(k), `escrowKeys[${i}]`, AGREEMENT_CURVES));
  const admins = args.adminKeys.map((k, i) => requireCurves(publicKeyEntry(k), `adminKeys[${i}]`, SIGNING_CURVES));
  return {
    ...base(signatureKey.UDF, args),
    MasterSignatureKey: signatureKey,
    MasterEscrowKeys: escrow,
    OnlineSignatureKeys: uniqueByUdf(admins, 'adminKeys'),
  };
}

/**
 * A Device Profile: a description and the device's signature key (its UDF is the identifier),
 * plus optional authentication and encryption keys.
 *
 * @throws TypeError / RangeError / KeyError for bad keys.
 */
export function composeDeviceProfile(args: {
  description: string;
  signatureKey: PublicJwk | PublicKey;
  encryptionKey?: PublicJwk | PublicKey;
  authenticationKey?: PublicJwk | PublicKey;
} & ComposeBase): DeviceProfile {
  aobject(args, 'args');
  astring(args.description, 'description');
  const signatureKey = requireCurves(publicKeyEntry(args.signatureKey), 'signatureKey', SIGNING_CURVES);
  const profile: DeviceProfile = { ...base(signatureKey.UDF, args), Description: args.description, DeviceSignatureKey: signatureKey };
  if (args.authenticationKey !== undefined) {
    profile.DeviceAuthenticationKey = requireCurves(publicKeyEntry(args.authenticationKey), 'authenticationKey', AGREEMENT_CURVES);
  }
  if (args.encryptionKey !== undefined) {
    profile.DeviceEncryptionKey = requireCurves(publicKeyEntry(args.encryptionKey), 'encryptionKey', AGREEMENT_CURVES);
  }
  return profile;
}

/**
 * A Personal Profile for the Master Profile `master`, listing connected devices and applications.
 * Its identifier is the master identifier.
 *
 * @throws ProfileError `ERR_PROFILE_MALFORMED` if `master` or a device is not a well-formed signed profile.
 */
export function composePersonalProfile(args: {
  master: SignedProfile;
  devices?: SignedProfile[];
  applications?: ApplicationProfileEntry[];
} & ComposeBase): PersonalProfile {
  aobject(args, 'args');
  const master = readProfile(args.master, ProfileType.Master);
  const devices = args.devices ?? [];
  const seen = new Set<string>();
  for (const [i, d] of devices.entries()) {
    const id = readProfile(d, ProfileType.Device).profile.Identifier;
    if (seen.has(id)) throw new RangeError(`"devices[${i}]" lists device ${id} twice`);
    seen.add(id);
  }
  return {
    ...base(master.profile.Identifier, args),
    SignedMasterProfile: args.master,
    Devices: [...devices],
    Applications: (args.applications ?? []).map((a) => ({ ...a, AdminDeviceUDF: [...a.AdminDeviceUDF], DecryptDeviceUDF: [...a.DecryptDeviceUDF] })),
  };
}

/**
 * An Application Profile. Its identifier is given (normally a fresh nonce UDF) and must also
 * appear in an {@link ApplicationProfileEntry} of the Personal Profile.
 */
export function composeApplicationProfile(args: {
  identifier: string;
  type: string;
  devices?: ApplicationDevicePublic[];
  publicData?: Record<string, unknown>;
  sharedPrivate?: JweGeneral;
  devicePrivate?: JweGeneral[];
} & ComposeBase): ApplicationProfile {
  aobject(args, 'args');
  astring(args.identifier, 'identifier');
  astring(args.type, 'type');
  const profile: ApplicationProfile = { ...base(args.identifier, args), Type: args.type, Devices: [...(args.devices ?? [])] };
  if (args.publicData !== undefined) profile.PublicData = aobject(args.publicData, 'publicData');
  if (args.sharedPrivate !== undefined) profile.SharedPrivate = args.sharedPrivate;
  if (args.devicePrivate !== undefined) profile.DevicePrivate = [...args.devicePrivate];
  return profile;
}

/**
 * A new version of `profile`: Sequence + 1, Updated = now (or `updated`), with `changes` applied.
 * The Identifier never changes.
 */
export function supersede<T extends AnyProfile>(profile: T, changes: Partial<Omit<T, 'Identifier' | 'Sequence'>> = {}, updated?: Date | string): T {
  const next = { ...profile, ...changes, Identifier: profile.Identifier, Sequence: profile.Sequence + 1, Updated: isoTime(updated) };
  return next as T;
}

/**
 * Connects devices: one new version of the Personal Profile that lists each of `devices`
 * (replacing an older version of the same Device Profile, which must have a lower Sequence).
 *
 * @throws ProfileError `ERR_PROFILE_MALFORMED` if a device is not a signed Device Profile or is
 *   given twice, `ERR_PROFILE_SUPERSEDED` if it is not newer than the version already listed.
 */
export function connectDevices(personal: PersonalProfile, devices: SignedProfile[], updated?: Date | string): PersonalProfile {
  if (!Array.isArray(devices) || devices.length === 0) throw new RangeError('"devices" expected at least one signed Device Profile');
  const incoming = new Map<string, { signed: SignedProfile; sequence: number }>();
  for (const [i, d] of devices.entries()) {
    const p = readProfile(d, ProfileType.Device).profile;
    if (incoming.has(p.Identifier)) fail(ErrorCode.PROFILE_MALFORMED, `devices[${i}]: device ${p.Identifier} is given twice`);
    incoming.set(p.Identifier, { signed: d, sequence: p.Sequence });
  }
  const kept: SignedProfile[] = [];
  for (const d of personal.Devices) {
    const listed = readProfile(d, ProfileType.Device).profile;
    const replacement = incoming.get(listed.Identifier);
    if (replacement === undefined) {
      kept.push(d);
    } else if (listed.Sequence >= replacement.sequence) {
      fail(ErrorCode.PROFILE_SUPERSEDED, `device ${listed.Identifier} is already connected with Sequence ${listed.Sequence} ≥ ${replacement.sequence}`);
    }
  }
  return supersede(personal, { Devices: [...kept, ...devices] } as Partial<PersonalProfile>, updated);
}

/** {@link connectDevices} for one device. */
export function connectDevice(personal: PersonalProfile, device: SignedProfile, updated?: Date | string): PersonalProfile {
  return connectDevices(personal, [device], updated);
}

/**
 * Disconnects a device: a new version of the Personal Profile without it, also removed from every
 * application entry.
 *
 * @throws ProfileError `ERR_PROFILE_NOT_CONNECTED` if the device is not listed.
 */
export function disconnectDevice(personal: PersonalProfile, deviceIdentifier: string, updated?: Date | string): PersonalProfile {
  astring(deviceIdentifier, 'deviceIdentifier');
  const devices = personal.Devices.filter((d) => readProfile(d, ProfileType.Device).profile.Identifier !== deviceIdentifier);
  if (devices.length === personal.Devices.length) fail(ErrorCode.PROFILE_NOT_CONNECTED, `device ${deviceIdentifier} is not connected`);
  const applications = personal.Applications.map((a) => ({
    ...a,
    AdminDeviceUDF: a.AdminDeviceUDF.filter((u) => u !== deviceIdentifier),
    DecryptDeviceUDF: a.DecryptDeviceUDF.filter((u) => u !== deviceIdentifier),
  }));
  return supersede(personal, { Devices: devices, Applications: applications } as Partial<PersonalProfile>, updated);
}

function uniqueByUdf(entries: PublicKeyEntry[], field: string): PublicKeyEntry[] {
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.UDF)) throw new RangeError(`"${field}" lists key ${e.UDF} twice`);
    seen.add(e.UDF);
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

/**
 * Signs a profile: a JWS (General JSON) over `{"<type>": profile}` with `cty` = type and the
 * signer's key UDF as protected `kid`. The profile is checked for well-formedness first, and a
 * self-signed type (Master, Device) must be signed by its own key.
 *
 * @throws ProfileError `ERR_PROFILE_MALFORMED` for a malformed profile,
 *   `ERR_PROFILE_SIGNER_NOT_AUTHORISED` when a Master/Device Profile is given another key.
 */
export async function signProfile<T extends ProfileTypeName>(type: T, profile: ProfileByType[T], signer: Signer): Promise<SignedProfile> {
  if (!PROFILE_TYPES.includes(type)) throw new RangeError(`"type" expected one of ${PROFILE_TYPES.join(', ')}, got ${String(type)}`);
  aobject(signer, 'signer');
  checkProfileShape(type, profile, type);
  if (type === ProfileType.Master && signer.keyId !== (profile as MasterProfile).MasterSignatureKey.UDF) {
    fail(ErrorCode.PROFILE_UNAUTHORISED, `a Master Profile must be signed by its master signature key ${(profile as MasterProfile).MasterSignatureKey.UDF}, not ${signer.keyId}`);
  }
  if (type === ProfileType.Device && signer.keyId !== (profile as DeviceProfile).DeviceSignatureKey.UDF) {
    fail(ErrorCode.PROFILE_UNAUTHORISED, `a Device Profile must be signed by its device signature key ${(profile as DeviceProfile).DeviceSignatureKey.UDF}, not ${signer.keyId}`);
  }
  const payload = utf8(JSON.stringify({ [type]: profile }));
  return signJws(payload, [signer], { cty: type });
}

// ---------------------------------------------------------------------------------------------
// Reading (no verification)
// ---------------------------------------------------------------------------------------------

/** A signed profile decoded WITHOUT verifying its signature (for display; never for trust). */
export interface DecodedProfile<T extends ProfileTypeName = ProfileTypeName> {
  type: T;
  profile: ProfileByType[T];
  /** The protected `kid` of the first signature. */
  kid: string;
  signed: SignedProfile;
}

/**
 * Decodes a signed profile (a JWS object or its JSON text) and checks its shape, but NOT its
 * signature. Use {@link verifyProfile} before trusting anything in it.
 *
 * @throws ProfileError `ERR_PROFILE_MALFORMED` naming what is wrong (or the wrong type when `expected` is given).
 */
export function readProfile<T extends ProfileTypeName>(signed: unknown, expected?: T): DecodedProfile<T> {
  const jws = loadSigned(signed);
  let payloadText: string;
  try {
    payloadText = fromUtf8(fromB64u(jws.payload, 'payload'));
  } catch (e) {
    return fail(ErrorCode.PROFILE_MALFORMED, 'profile payload is not base64url UTF-8', e);
  }
  const payload = parseOrFail(payloadText, 'profile payload');
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) fail(ErrorCode.PROFILE_MALFORMED, 'profile payload must be a JSON object');
  const keys = Object.keys(payload);
  const type = keys[0];
  if (keys.length !== 1 || type === undefined || !PROFILE_TYPES.includes(type as ProfileTypeName)) {
    fail(ErrorCode.PROFILE_MALFORMED, `profile payload must be {"<ProfileType>": {…}} with one of ${PROFILE_TYPES.join(', ')}; got members ${JSON.stringify(keys)}`);
  }
  if (expected !== undefined && type !== expected) fail(ErrorCode.PROFILE_MALFORMED, `expected a ${expected}, got a ${type}`);
  const header = protectedHeaderOf(jws);
  if (header.cty !== type) fail(ErrorCode.PROFILE_MALFORMED, `protected "cty" is ${JSON.stringify(header.cty)} but the payload is a ${type}`);
  const profile = (payload as Record<string, unknown>)[type as string];
  checkProfileShape(type as ProfileTypeName, profile, type as string);
  return { type: type as T, profile: profile as ProfileByType[T], kid: header.kid as string, signed: jws };
}

function loadSigned(signed: unknown): SignedProfile {
  let value = signed;
  if (typeof signed === 'string') value = parseOrFail(signed, 'signed profile');
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(ErrorCode.PROFILE_MALFORMED, `a signed profile must be a JWS object, got ${describe(value)}`);
  }
  const v = value as Record<string, unknown>;
  if (typeof v.payload !== 'string' || !Array.isArray(v.signatures) || v.signatures.length === 0) {
    fail(ErrorCode.PROFILE_MALFORMED, 'a signed profile must be a JWS in General JSON serialization ({"payload":…,"signatures":[…]})');
  }
  return v as unknown as SignedProfile;
}

function protectedHeaderOf(jws: SignedProfile): Record<string, unknown> {
  const first = jws.signatures[0];
  if (first === undefined || typeof first !== 'object' || first === null || typeof first.protected !== 'string') {
    return fail(ErrorCode.PROFILE_MALFORMED, 'the profile signature has no protected header');
  }
  let text: string;
  try {
    text = fromUtf8(fromB64u(first.protected, 'protected'));
  } catch (e) {
    return fail(ErrorCode.PROFILE_MALFORMED, 'the protected header is not base64url UTF-8', e);
  }
  const header = parseOrFail(text, 'protected header');
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail(ErrorCode.PROFILE_MALFORMED, 'the protected header must be an object');
  const h = header as Record<string, unknown>;
  if (typeof h.kid !== 'string') fail(ErrorCode.PROFILE_MALFORMED, 'the protected header has no "kid"');
  return h;
}

function parseOrFail(text: string, what: string): unknown {
  try {
    return parseJsonStrict(text);
  } catch (e) {
    return fail(ErrorCode.PROFILE_MALFORMED, `${what} is not strict JSON: ${e instanceof Error ? e.message : String(e)}`, e);
  }
}

// ---------------------------------------------------------------------------------------------
// Shape checks
// ---------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;

function checkProfileShape(type: ProfileTypeName, value: unknown, at: string): void {
  const p = obj(value, at);
  str(p.Identifier, `${at}.Identifier`);
  strArray(p.Names, `${at}.Names`);
  const updated = str(p.Updated, `${at}.Updated`);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(updated) || Number.isNaN(Date.parse(updated))) {
    bad(`${at}.Updated must be an ISO 8601 UTC time, got ${JSON.stringify(updated)}`);
  }
  if (typeof p.Sequence !== 'number' || !Number.isSafeInteger(p.Sequence) || p.Sequence < 1) bad(`${at}.Sequence must be an integer ≥ 1`);
  if (p.NotaryToken !== undefined) str(p.NotaryToken, `${at}.NotaryToken`);
  switch (type) {
    case ProfileType.Master: {
      const sig = keyEntry(p.MasterSignatureKey, `${at}.MasterSignatureKey`, SIGNING_CURVES);
      if (p.Identifier !== sig.UDF) bad(`${at}.Identifier must be the UDF of the MasterSignatureKey (${sig.UDF})`);
      keyEntries(p.MasterEscrowKeys, `${at}.MasterEscrowKeys`, AGREEMENT_CURVES);
      const admins = keyEntries(p.OnlineSignatureKeys, `${at}.OnlineSignatureKeys`, SIGNING_CURVES);
      if (admins.length === 0) bad(`${at}.OnlineSignatureKeys must list at least one administration key`);
      break;
    }
    case ProfileType.Personal: {
      loadSignedShape(p.SignedMasterProfile, `${at}.SignedMasterProfile`);
      const devices = arr(p.Devices, `${at}.Devices`);
      devices.forEach((d, i) => loadSignedShape(d, `${at}.Devices[${i}]`));
      arr(p.Applications, `${at}.Applications`).forEach((a, i) => {
        const e = obj(a, `${at}.Applications[${i}]`);
        str(e.Identifier, `${at}.Applications[${i}].Identifier`);
        str(e.Type, `${at}.Applications[${i}].Type`);
        if (e.Friendly !== undefined) str(e.Friendly, `${at}.Applications[${i}].Friendly`);
        strArray(e.AdminDeviceUDF, `${at}.Applications[${i}].AdminDeviceUDF`);
        strArray(e.DecryptDeviceUDF, `${at}.Applications[${i}].DecryptDeviceUDF`);
      });
      break;
    }
    case ProfileType.Device: {
      str(p.Description, `${at}.Description`);
      // The 2017 wire format misspelled the encryption key; accept it on input, never write it.
      if (p.DeviceEncryptiontionKey !== undefined && p.DeviceEncryptionKey === undefined) {
        p.DeviceEncryptionKey = p.DeviceEncryptiontionKey;
        delete p.DeviceEncryptiontionKey;
      }
      const sig = keyEntry(p.DeviceSignatureKey, `${at}.DeviceSignatureKey`, SIGNING_CURVES);
      if (p.Identifier !== sig.UDF) bad(`${at}.Identifier must be the UDF of the DeviceSignatureKey (${sig.UDF})`);
      if (p.DeviceAuthenticationKey !== undefined) keyEntry(p.DeviceAuthenticationKey, `${at}.DeviceAuthenticationKey`, AGREEMENT_CURVES);
      if (p.DeviceEncryptionKey !== undefined) keyEntry(p.DeviceEncryptionKey, `${at}.DeviceEncryptionKey`, AGREEMENT_CURVES);
      break;
    }
    case ProfileType.Application: {
      str(p.Type, `${at}.Type`);
      if (p.PublicData !== undefined) obj(p.PublicData, `${at}.PublicData`);
      if (p.SharedPrivate !== undefined) obj(p.SharedPrivate, `${at}.SharedPrivate`);
      if (p.DevicePrivate !== undefined) arr(p.DevicePrivate, `${at}.DevicePrivate`).forEach((j, i) => obj(j, `${at}.DevicePrivate[${i}]`));
      arr(p.Devices, `${at}.Devices`).forEach((d, i) => {
        const e = obj(d, `${at}.Devices[${i}]`);
        str(e.DeviceUDF, `${at}.Devices[${i}].DeviceUDF`);
        if (e.DeviceDescription !== undefined) str(e.DeviceDescription, `${at}.Devices[${i}].DeviceDescription`);
        if (e.PublicData !== undefined) obj(e.PublicData, `${at}.Devices[${i}].PublicData`);
      });
      break;
    }
  }
}

function loadSignedShape(value: unknown, at: string): void {
  const v = obj(value, at);
  if (typeof v.payload !== 'string' || !Array.isArray(v.signatures) || v.signatures.length === 0) {
    bad(`${at} must be a JWS in General JSON serialization`);
  }
}

function keyEntry(value: unknown, at: string, curves: readonly Curve[]): PublicKeyEntry {
  const e = obj(value, at);
  const udf = str(e.UDF, `${at}.UDF`);
  let key: PublicKey;
  try {
    // Encoding checks only: a signature key proves itself when its signature verifies (OpenSSL
    // decodes the point), and agreement keys are fully validated when they are used.
    key = publicKeyFromJwk(e.PublicParameters, { check: 'encoding' });
  } catch (err) {
    return bad(`${at}.PublicParameters is not a valid public JWK: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  if (!curves.includes(key.curve)) bad(`${at} must be a ${curves.join('/')} key, got ${key.curve}`);
  if (keyId(key) !== udf) bad(`${at}.UDF ${udf} is not the UDF of its key (${keyId(key)})`);
  return e as unknown as PublicKeyEntry;
}

function keyEntries(value: unknown, at: string, curves: readonly Curve[]): PublicKeyEntry[] {
  const entries = arr(value, at).map((v, i) => keyEntry(v, `${at}[${i}]`, curves));
  const seen = new Set<string>();
  for (const [i, e] of entries.entries()) {
    if (seen.has(e.UDF)) bad(`${at}[${i}] repeats key ${e.UDF}`);
    seen.add(e.UDF);
  }
  return entries;
}

function obj(value: unknown, at: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad(`${at} must be an object`);
  return value as Json;
}
function arr(value: unknown, at: string): unknown[] {
  if (!Array.isArray(value)) bad(`${at} must be an array`);
  return value as unknown[];
}
function str(value: unknown, at: string): string {
  if (typeof value !== 'string') bad(`${at} must be a string`);
  return value as string;
}
function strArray(value: unknown, at: string): string[] {
  const a = arr(value, at);
  a.forEach((v, i) => str(v, `${at}[${i}]`));
  return a as string[];
}
function bad(message: string, cause?: unknown): never {
  return fail(ErrorCode.PROFILE_MALFORMED, message, cause);
}
function fail(code: ErrorCodeValue, message: string, cause?: unknown): never {
  throw new ProfileError(code, message, cause === undefined ? undefined : { cause });
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/**
 * Verifies a signed profile: Verified (signature under the key its protected `kid` names),
 * Correct (§5.4 signer rules), Current (not superseded, per `context.latestSequence` and, for
 * devices, the Personal Profile that lists them), and — when `context.personal` is given for a
 * Device or Application Profile — connected.
 *
 * - Master: self-signed by its MasterSignatureKey.
 * - Personal: signed by an administration key of `context.master` (or of the embedded
 *   SignedMasterProfile, whichever has the higher Sequence; both must verify and have the same
 *   identifier); every listed Device Profile is verified too.
 * - Device: self-signed by its DeviceSignatureKey.
 * - Application: needs `context.personal`; signed by a key listed in the Personal Profile's entry
 *   for that application (`AdminDeviceUDF`: a connected device's signature key or an
 *   administration key).
 *
 * @throws ProfileError with code `ERR_PROFILE_MALFORMED`, `ERR_PROFILE_SIGNATURE`,
 *   `ERR_PROFILE_SIGNER_NOT_AUTHORISED`, `ERR_PROFILE_SUPERSEDED`, `ERR_PROFILE_NOT_CONNECTED` or
 *   `ERR_PROFILE_MISMATCH`, with a message naming the rule broken.
 */
export async function verifyProfile(signed: string | object, context: VerifyContext = {}): Promise<VerifiedProfile> {
  if (typeof context !== 'object' || context === null) throw new TypeError(`"context" expected an object, got ${describe(context)}`);
  const decoded = readProfile(signed);
  switch (decoded.type) {
    case ProfileType.Master:
      return verifyMaster(decoded as DecodedProfile<'MasterProfile'>, context);
    case ProfileType.Personal:
      return verifyPersonal(decoded as DecodedProfile<'PersonalProfile'>, context);
    case ProfileType.Device: {
      const device = verifyDevice(decoded as DecodedProfile<'DeviceProfile'>, context, 'Device Profile');
      if (context.personal !== undefined) {
        const personal = await resolvePersonal(context.personal, context);
        return checkConnectedDevice(device, personal);
      }
      return device;
    }
    case ProfileType.Application:
      return verifyApplication(decoded as DecodedProfile<'ApplicationProfile'>, context);
  }
  return fail(ErrorCode.PROFILE_MALFORMED, `unknown profile type ${String(decoded.type)}`);
}

function verifySignature(decoded: DecodedProfile, key: PublicKeyEntry, what: string): void {
  try {
    const pk = publicKeyFromJwk(key.PublicParameters, { check: 'encoding' });
    verifyJwsSync(decoded.signed, (kid) => (kid === key.UDF ? pk : undefined));
  } catch (e) {
    if (e instanceof JoseError && e.code === ErrorCode.JWS_SIGNATURE) {
      fail(ErrorCode.PROFILE_SIGNATURE, `${what} ${decoded.profile.Identifier}: the signature by ${key.UDF} does not verify (forged or altered)`, e);
    }
    if (e instanceof JoseError) fail(ErrorCode.PROFILE_MALFORMED, `${what} ${decoded.profile.Identifier}: ${e.message}`, e);
    throw e;
  }
}

function checkCurrent(decoded: DecodedProfile, context: VerifyContext, what: string): void {
  const latest = context.latestSequence?.(decoded.profile.Identifier, decoded.type);
  if (latest !== undefined && decoded.profile.Sequence < latest) {
    fail(ErrorCode.PROFILE_SUPERSEDED, `${what} ${decoded.profile.Identifier} is superseded: Sequence ${decoded.profile.Sequence}, latest known ${latest}`);
  }
  const now = (context.now ?? new Date()).getTime();
  if (Date.parse(decoded.profile.Updated) > now + FUTURE_SKEW_MS) {
    fail(ErrorCode.PROFILE_MALFORMED, `${what} ${decoded.profile.Identifier} is dated in the future (${decoded.profile.Updated})`);
  }
}

function onlySigner(decoded: DecodedProfile, allowed: (kid: string) => PublicKeyEntry | undefined, what: string, rule: string): PublicKeyEntry {
  if (decoded.signed.signatures.length !== 1) fail(ErrorCode.PROFILE_MALFORMED, `${what} must carry exactly one signature, has ${decoded.signed.signatures.length}`);
  const key = allowed(decoded.kid);
  if (key === undefined) fail(ErrorCode.PROFILE_UNAUTHORISED, `${what} ${decoded.profile.Identifier} is signed by ${decoded.kid}, which ${rule}`);
  return key;
}

async function verifyMaster(decoded: DecodedProfile<'MasterProfile'>, context: VerifyContext): Promise<VerifiedProfile<'MasterProfile'>> {
  const p = decoded.profile;
  const key = onlySigner(decoded, (kid) => (kid === p.MasterSignatureKey.UDF ? p.MasterSignatureKey : undefined),
    'Master Profile', 'is not its master signature key');
  verifySignature(decoded, key, 'Master Profile');
  checkCurrent(decoded, context, 'Master Profile');
  return {
    type: 'MasterProfile', profile: p, identifier: p.Identifier, sequence: p.Sequence, signerKeyId: key.UDF,
    signerRole: 'master-signature-key', signed: decoded.signed,
  };
}

function verifyDevice(decoded: DecodedProfile<'DeviceProfile'>, context: VerifyContext, what: string): VerifiedProfile<'DeviceProfile'> {
  const p = decoded.profile;
  const key = onlySigner(decoded, (kid) => (kid === p.DeviceSignatureKey.UDF ? p.DeviceSignatureKey : undefined),
    what, 'is not its device signature key');
  verifySignature(decoded, key, what);
  checkCurrent(decoded, context, what);
  return {
    type: 'DeviceProfile', profile: p, identifier: p.Identifier, sequence: p.Sequence, signerKeyId: key.UDF,
    signerRole: 'device-signature-key', signed: decoded.signed,
  };
}

async function resolveMaster(master: NonNullable<VerifyContext['master']>, context: VerifyContext): Promise<VerifiedProfile<'MasterProfile'>> {
  if (isVerified(master, 'MasterProfile')) return master;
  if (isVerified(master)) fail(ErrorCode.PROFILE_MISMATCH, `context.master is a verified ${master.type}, not a Master Profile`);
  return verifyMaster(readProfile(master, ProfileType.Master), context);
}

async function resolvePersonal(personal: NonNullable<VerifyContext['personal']>, context: VerifyContext): Promise<VerifiedProfile<'PersonalProfile'>> {
  if (isVerified(personal, 'PersonalProfile')) return personal;
  if (isVerified(personal)) fail(ErrorCode.PROFILE_MISMATCH, `context.personal is a verified ${personal.type}, not a Personal Profile`);
  return verifyPersonal(readProfile(personal, ProfileType.Personal), context);
}

function isVerified<T extends ProfileTypeName>(v: unknown, type?: T): v is VerifiedProfile<T> {
  return typeof v === 'object' && v !== null && (type === undefined || (v as VerifiedProfile).type === type) && 'signerKeyId' in v && 'signed' in v;
}

async function verifyPersonal(decoded: DecodedProfile<'PersonalProfile'>, context: VerifyContext): Promise<VerifiedProfile<'PersonalProfile'>> {
  const p = decoded.profile;
  const embedded = await verifyMaster(readProfile(p.SignedMasterProfile, ProfileType.Master), context);
  let master = embedded;
  if (context.master !== undefined) {
    const given = await resolveMaster(context.master, context);
    if (given.identifier !== embedded.identifier) {
      fail(ErrorCode.PROFILE_MISMATCH, `Personal Profile belongs to master ${embedded.identifier}, not to the given Master Profile ${given.identifier}`);
    }
    if (given.sequence > embedded.sequence) master = given;
  }
  if (p.Identifier !== master.identifier) {
    fail(ErrorCode.PROFILE_MALFORMED, `Personal Profile Identifier ${p.Identifier} is not its master's identifier ${master.identifier}`);
  }
  const admins = master.profile.OnlineSignatureKeys;
  const key = onlySigner(decoded, (kid) => admins.find((k) => k.UDF === kid), 'Personal Profile',
    `is not an administration key of Master Profile ${master.identifier} (Sequence ${master.sequence})`);
  verifySignature(decoded, key, 'Personal Profile');
  checkCurrent(decoded, context, 'Personal Profile');

  const deviceContext: VerifyContext = { ...context };
  delete deviceContext.personal;
  const devices = p.Devices.map((d, i) => {
    let dev: DecodedProfile<'DeviceProfile'>;
    try {
      dev = readProfile(d, ProfileType.Device);
    } catch (e) {
      return rethrowAt(e, `Personal Profile Devices[${i}]`);
    }
    return verifyDevice(dev, deviceContext, `Device Profile (Devices[${i}])`);
  });
  const seen = new Set<string>();
  for (const [i, d] of devices.entries()) {
    if (seen.has(d.identifier)) fail(ErrorCode.PROFILE_MALFORMED, `Personal Profile Devices[${i}] lists device ${d.identifier} twice`);
    seen.add(d.identifier);
  }
  const adminUdfs = new Set(admins.map((k) => k.UDF));
  for (const [i, app] of p.Applications.entries()) {
    for (const u of app.AdminDeviceUDF) {
      if (!seen.has(u) && !adminUdfs.has(u)) {
        fail(ErrorCode.PROFILE_MALFORMED, `Personal Profile Applications[${i}] (${app.Type}) names administrator ${u}, which is neither a connected device nor an administration key`);
      }
    }
    for (const u of app.DecryptDeviceUDF) {
      if (!seen.has(u)) fail(ErrorCode.PROFILE_MALFORMED, `Personal Profile Applications[${i}] (${app.Type}) names decrypting device ${u}, which is not connected`);
    }
  }
  return {
    type: 'PersonalProfile', profile: p, identifier: p.Identifier, sequence: p.Sequence, signerKeyId: key.UDF,
    signerRole: 'administration-key', signed: decoded.signed, master, devices,
  };
}

function checkConnectedDevice(device: VerifiedProfile<'DeviceProfile'>, personal: VerifiedProfile<'PersonalProfile'>): VerifiedProfile<'DeviceProfile'> {
  const listed = personal.devices?.find((d) => d.identifier === device.identifier);
  if (listed === undefined) {
    fail(ErrorCode.PROFILE_NOT_CONNECTED, `Device Profile ${device.identifier} is not connected: Personal Profile ${personal.identifier} (Sequence ${personal.sequence}) does not list it`);
  }
  if (device.sequence < listed.sequence) {
    fail(ErrorCode.PROFILE_SUPERSEDED, `Device Profile ${device.identifier} is superseded: Sequence ${device.sequence}, the Personal Profile lists Sequence ${listed.sequence}`);
  }
  if (device.sequence > listed.sequence) {
    fail(ErrorCode.PROFILE_NOT_CONNECTED, `Device Profile ${device.identifier} Sequence ${device.sequence} is newer than the connected version (${listed.sequence}); it must be connected again`);
  }
  return { ...device, personal, connected: true };
}

async function verifyApplication(decoded: DecodedProfile<'ApplicationProfile'>, context: VerifyContext): Promise<VerifiedProfile<'ApplicationProfile'>> {
  if (context.personal === undefined) {
    fail(ErrorCode.PROFILE_MISMATCH, `Application Profile ${decoded.profile.Identifier} can only be verified against the Personal Profile that lists it (give context.personal)`);
  }
  const personal = await resolvePersonal(context.personal, context);
  const p = decoded.profile;
  const entry = personal.profile.Applications.find((a) => a.Identifier === p.Identifier);
  if (entry === undefined) {
    fail(ErrorCode.PROFILE_NOT_CONNECTED, `Application Profile ${p.Identifier} is not connected: Personal Profile ${personal.identifier} has no entry for it`);
  }
  if (entry.Type !== p.Type) fail(ErrorCode.PROFILE_MISMATCH, `Application Profile ${p.Identifier} is of type ${p.Type}, but the Personal Profile lists it as ${entry.Type}`);
  const candidates = new Map<string, PublicKeyEntry>();
  for (const d of personal.devices ?? []) candidates.set(d.identifier, d.profile.DeviceSignatureKey);
  for (const k of personal.master?.profile.OnlineSignatureKeys ?? []) candidates.set(k.UDF, k);
  const key = onlySigner(decoded, (kid) => (entry.AdminDeviceUDF.includes(kid) ? candidates.get(kid) : undefined),
    'Application Profile', `is not listed as an administrator of application ${entry.Type} in Personal Profile ${personal.identifier}`);
  verifySignature(decoded, key, 'Application Profile');
  checkCurrent(decoded, context, 'Application Profile');
  for (const [i, d] of p.Devices.entries()) {
    if (!personal.devices?.some((v) => v.identifier === d.DeviceUDF)) {
      fail(ErrorCode.PROFILE_MALFORMED, `Application Profile Devices[${i}] names device ${d.DeviceUDF}, which is not connected`);
    }
  }
  return {
    type: 'ApplicationProfile', profile: p, identifier: p.Identifier, sequence: p.Sequence, signerKeyId: key.UDF,
    signerRole: 'application-administrator', signed: decoded.signed, personal, connected: true,
  };
}

function rethrowAt(e: unknown, at: string): never {
  if (e instanceof ProfileError) throw new ProfileError(e.code, `${at}: ${e.message}`, { cause: e });
  throw e;
}
