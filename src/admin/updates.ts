/**
 * Profile updates of day-to-day administration (docs/admin.md): connect and revoke devices, create
 * and update Application Profiles (with per-application administrators, architecture §5.3), add and
 * rotate administration keys (a master-key session).
 *
 * Every update: take the account lock → load the account → compose the new profile(s) → sign (the
 * administration key; the master signature key for a Master Profile; for an application update any
 * key the Personal Profile lists as that application's administrator) → verify the results with
 * verifyProfile against the new chain BEFORE anything is written → commit (account.ts
 * commitChange: new files, publish, current copies, account.json last).
 *
 * Publishing (when account.json names a portal) happens BEFORE account.json is written: the
 * profiles are published in chain order (Master, Personal, Applications). If the FIRST publish
 * fails — a 409 means the portal holds a newer version, i.e. someone else updated the account —
 * the change is refused and nothing is committed locally (its new files are removed). If a later
 * publish fails after an earlier one succeeded, the portal has already moved, so the change is
 * committed locally and the failure is reported in `publishFailed` (the CLI exits 1).
 *
 * A signing failure (wrong PIN, card removed) happens before anything is written.
 */
import { wipe } from '../core/bytes.js';
import { ErrorCode, MeshkitError, ProfileError } from '../core/errors.js';
import { encryptWithEscrow } from '../core/escrow.js';
import { decryptJwe, encryptJwe, type JweGeneral } from '../core/jose.js';
import { publicKeyFromJwk } from '../core/keys.js';
import {
  ProfileType,
  composeApplicationProfile,
  connectDevices,
  disconnectDevice,
  publicKeyEntry,
  readProfile,
  signProfile,
  supersede,
  verifyProfile,
  type ApplicationDevicePublic,
  type ApplicationProfile,
  type ApplicationProfileEntry,
  type DeviceProfile,
  type MasterProfile,
  type PersonalProfile,
  type SignedProfile,
  type VerifiedProfile,
} from '../core/profiles.js';
import type { Decrypter, PublicJwk, Signer } from '../core/signer.js';
import { udfNonce } from '../core/udf.js';
import { PortalClient, PortalError } from '../portal/client.js';
import {
  accountPortal,
  applicationOf,
  commitChange,
  historyFile,
  loadAccount,
  profileText,
  withAccountLock,
  type Account,
  type AccountChange,
  type AccountIndex,
  type CommitFault,
} from './account.js';

/** Options every update takes. */
export interface UpdateOptions {
  /** The account directory. */
  dir: string;
  /** The portal to publish to: default the account's (account.json `Portal`); `false`: do not publish. */
  portal?: { client: PortalClient; account: string } | false;
  /** The time of the new versions (default now). */
  now?: Date;
  /** Test-only fault injection (a simulated crash at that point). */
  fault?: CommitFault;
}

/** What an update did. */
export interface UpdateSummary {
  action: 'connect' | 'revoke' | 'app-create' | 'app-update' | 'rotate' | 'add-admin';
  account: string;
  identifier: string;
  master: { sequence: number; changed: boolean };
  personal: { sequence: number; changed: boolean; signedBy: string };
  device?: { identifier: string; description: string };
  /** The devices a batch connect ({@link connectDevicesBatch}) added, in order. */
  devices?: Array<{ identifier: string; description: string }>;
  applications: Array<{ identifier: string; type: string; sequence: number; change: 'created' | 'updated' | 're-keyed' | 're-signed' }>;
  /** Applications that still need attention (e.g. "needs re-keying"), with the reason. */
  flagged: Array<{ identifier: string; type: string; reason: string }>;
  published: Array<{ type: string; identifier: string; sequence: number; logIndex: number }>;
  publishFailed: Array<{ type: string; identifier: string; sequence: number; error: string }>;
  /** Files written (relative to the account directory). */
  files: string[];
}

interface Draft {
  account: Account;
  master?: SignedProfile;
  personal?: SignedProfile;
  apps: Array<{ identifier: string; signed: SignedProfile; change: UpdateSummary['applications'][number]['change'] }>;
  index: AccountIndex;
  extraFiles?: Array<{ path: string; text: string }>;
  remove?: string[];
  flagged?: UpdateSummary['flagged'];
  device?: UpdateSummary['device'];
  devices?: UpdateSummary['devices'];
}

function checkCommon(opts: UpdateOptions): void {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" expected an object');
  if (typeof opts.dir !== 'string' || opts.dir === '') throw new TypeError('"opts.dir" expected a non-empty string');
  if (opts.now !== undefined && !(opts.now instanceof Date)) throw new TypeError('"opts.now" expected a Date');
}

function checkSigner(s: unknown, field: string): Signer {
  if (typeof s !== 'object' || s === null || typeof (s as Signer).sign !== 'function' || typeof (s as Signer).keyId !== 'string') {
    throw new TypeError(`"${field}" expected a Signer`);
  }
  return s as Signer;
}

/** Refuses an administration key the current Master Profile does not list. */
function requireAdmin(account: Account, admin: Signer): void {
  const m = account.masterProfile;
  if (!m.OnlineSignatureKeys.some((k) => k.UDF === admin.keyId)) {
    throw new ProfileError(
      ErrorCode.PROFILE_UNAUTHORISED,
      `key ${admin.keyId} is not an administration key of Master Profile ${m.Identifier} (Sequence ${m.Sequence}); nothing was signed or written`,
    );
  }
}

function requireMasterKey(account: Account, master: Signer): void {
  const m = account.masterProfile;
  if (master.keyId !== m.MasterSignatureKey.UDF) {
    throw new ProfileError(
      ErrorCode.PROFILE_UNAUTHORISED,
      `key ${master.keyId} is not the master signature key ${m.MasterSignatureKey.UDF} of Master Profile ${m.Identifier}; nothing was signed or written`,
    );
  }
}

function devicesOf(personal: PersonalProfile): Map<string, DeviceProfile> {
  const out = new Map<string, DeviceProfile>();
  for (const d of personal.Devices) {
    const p = readProfile(d, ProfileType.Device).profile;
    out.set(p.Identifier, p);
  }
  return out;
}

function encryptionKeyOf(devices: Map<string, DeviceProfile>, udf: string): PublicJwk {
  const d = devices.get(udf);
  if (d === undefined) throw new ProfileError(ErrorCode.PROFILE_NOT_CONNECTED, `device ${udf} is not connected`);
  if (d.DeviceEncryptionKey === undefined) throw new RangeError(`device ${udf} (${d.Description}) has no encryption key, so it cannot decrypt application data`);
  return d.DeviceEncryptionKey.PublicParameters;
}

async function sealShared(plaintext: Uint8Array, master: MasterProfile, recipients: PublicJwk[]): Promise<JweGeneral> {
  const escrow = master.MasterEscrowKeys[0];
  if (recipients.length === 0 && escrow === undefined) throw new RangeError('application private data needs at least one recipient (a decrypting device or the Master Escrow Key)');
  return escrow === undefined
    ? encryptJwe(plaintext, recipients)
    : encryptWithEscrow(plaintext, recipients, escrow.PublicParameters);
}

function recipientKids(jwe: JweGeneral): string[] {
  return jwe.recipients.map((r) => (r.header as { kid?: unknown } | undefined)?.kid).filter((k): k is string => typeof k === 'string');
}

function uniqueKeys(keys: PublicJwk[]): PublicJwk[] {
  const seen = new Set<string>();
  return keys.filter((k) => {
    const id = publicKeyEntry(k).UDF;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Verifies the new chain, then commits and publishes; returns the summary. */
async function finish(action: UpdateSummary['action'], opts: UpdateOptions, d: Draft): Promise<UpdateSummary> {
  const { account } = d;
  // Verify everything against the NEW chain before a byte is written.
  const vm = await verifyProfile(d.master ?? account.master, { ...(opts.now === undefined ? {} : { now: opts.now }) });
  if (vm.identifier !== account.index.Identifier) throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `the new Master Profile is ${vm.identifier}, not the account's ${account.index.Identifier}`);
  const vp = (await verifyProfile(d.personal ?? account.personal, { master: vm as VerifiedProfile<'MasterProfile'> })) as VerifiedProfile<'PersonalProfile'>;
  for (const app of d.apps) await verifyProfile(app.signed, { personal: vp });

  const newFiles: AccountChange['newFiles'] = [...(d.extraFiles ?? [])];
  const currentFiles: AccountChange['currentFiles'] = [];
  const toPublish: Array<{ type: string; identifier: string; sequence: number; signed: SignedProfile }> = [];
  const index = d.index;
  if (d.master !== undefined) {
    const p = readProfile(d.master, ProfileType.Master).profile;
    newFiles.push({ path: historyFile(ProfileType.Master, p.Identifier, p.Sequence), text: profileText(d.master) });
    currentFiles.push({ path: index.Master, text: profileText(d.master) });
    index.MasterSequence = p.Sequence;
    toPublish.push({ type: ProfileType.Master, identifier: p.Identifier, sequence: p.Sequence, signed: d.master });
  }
  if (d.personal !== undefined) {
    const p = readProfile(d.personal, ProfileType.Personal).profile;
    newFiles.push({ path: historyFile(ProfileType.Personal, p.Identifier, p.Sequence), text: profileText(d.personal) });
    currentFiles.push({ path: index.Personal, text: profileText(d.personal) });
    index.PersonalSequence = p.Sequence;
    toPublish.push({ type: ProfileType.Personal, identifier: p.Identifier, sequence: p.Sequence, signed: d.personal });
  }
  for (const app of d.apps) {
    const p = applicationOf(app.signed);
    const entry = index.Applications[app.identifier];
    if (entry === undefined) throw new Error(`internal: no index entry for application ${app.identifier}`);
    entry.Sequence = p.Sequence;
    newFiles.push({ path: historyFile(ProfileType.Application, p.Identifier, p.Sequence), text: profileText(app.signed) });
    currentFiles.push({ path: entry.File, text: profileText(app.signed) });
    toPublish.push({ type: ProfileType.Application, identifier: p.Identifier, sequence: p.Sequence, signed: app.signed });
  }

  const portal = opts.portal === false ? undefined : (opts.portal ?? accountPortal(account));
  const ownClient = opts.portal === undefined ? portal?.client : undefined;
  const published: UpdateSummary['published'] = [];
  const publishFailed: UpdateSummary['publishFailed'] = [];
  const publish = async (): Promise<void> => {
    if (portal === undefined) return;
    for (const item of toPublish) {
      try {
        const r = await portal.client.publish(portal.account, item.signed);
        published.push({ type: item.type, identifier: item.identifier, sequence: item.sequence, logIndex: r.LogIndex });
      } catch (e) {
        if (published.length === 0) {
          if (e instanceof PortalError && e.status === 409) {
            throw new MeshkitError(
              ErrorCode.PORTAL_CONFLICT,
              `the portal refused ${item.type} Sequence ${item.sequence} as stale (${e.message}): someone else has updated this account; ` +
                'refused, nothing was committed locally — bring the account up to date before trying again',
              { cause: e },
            );
          }
          throw new MeshkitError(
            e instanceof MeshkitError ? e.code : ErrorCode.PORTAL_UNAVAILABLE,
            `publishing ${item.type} Sequence ${item.sequence} failed: ${describeError(e)}; nothing was committed locally`,
            { cause: e },
          );
        }
        publishFailed.push({ type: item.type, identifier: item.identifier, sequence: item.sequence, error: describeError(e) });
      }
    }
  };
  try {
    await commitChange(account.dir, { newFiles, currentFiles, index, ...(d.remove === undefined ? {} : { remove: d.remove }) }, publish, opts.fault);
  } finally {
    ownClient?.close();
  }
  const mp = readProfile(d.master ?? account.master, ProfileType.Master).profile;
  const pp = readProfile(d.personal ?? account.personal, ProfileType.Personal);
  return {
    action,
    account: account.dir,
    identifier: account.index.Identifier,
    master: { sequence: mp.Sequence, changed: d.master !== undefined },
    personal: { sequence: pp.profile.Sequence, changed: d.personal !== undefined, signedBy: pp.kid },
    ...(d.device === undefined ? {} : { device: d.device }),
    ...(d.devices === undefined ? {} : { devices: d.devices }),
    applications: d.apps.map((a) => {
      const p = applicationOf(a.signed);
      return { identifier: a.identifier, type: p.Type, sequence: p.Sequence, change: a.change };
    }),
    flagged: d.flagged ?? [],
    published,
    publishFailed,
    files: [...newFiles, ...currentFiles].map((f) => f.path).concat('account.json'),
  };
}

function cloneIndex(index: AccountIndex): AccountIndex {
  return JSON.parse(JSON.stringify(index)) as AccountIndex;
}

/**
 * `admin connect`: connects a signed Device Profile (self-signed, valid keys) — a new Personal
 * Profile listing it, signed by the administration key; published.
 *
 * @throws TypeError for bad arguments.
 * @throws ProfileError `ERR_PROFILE_SIGNER_NOT_AUTHORISED` (admin key not in the Master Profile),
 *   `ERR_PROFILE_SIGNATURE` / `ERR_PROFILE_MALFORMED` (a bad Device Profile), `ERR_PROFILE_SUPERSEDED`
 *   (not newer than the connected version), `ERR_PROFILE_MISMATCH` (a revoked device).
 * @throws KeyError for a device key that is not a valid point; signer errors (PIN, card removed);
 *   PortalError / MeshkitError `ERR_PORTAL_CONFLICT` from publishing; `ERR_IO` for the files or lock.
 */
export async function connectDevice(opts: UpdateOptions & { admin: Signer }, device: SignedProfile | string): Promise<UpdateSummary> {
  checkCommon(opts);
  const admin = checkSigner(opts.admin, 'opts.admin');
  const vd = await verifyProfile(device);
  if (vd.type !== 'DeviceProfile') throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `expected a Device Profile, got a ${vd.type}`);
  const dp = vd.profile as DeviceProfile;
  for (const k of [dp.DeviceSignatureKey, dp.DeviceEncryptionKey, dp.DeviceAuthenticationKey]) if (k !== undefined) publicKeyFromJwk(k.PublicParameters);
  return withAccountLock(opts.dir, async () => {
    const account = await loadAccount(opts.dir);
    requireAdmin(account, admin);
    if (account.index.Revoked[dp.Identifier] !== undefined) {
      throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `device ${dp.Identifier} was revoked (${account.index.Revoked[dp.Identifier]?.Reason}); a revoked device is not connected again`);
    }
    const next = connectDevices(account.personalProfile, [vd.signed], opts.now);
    const personal = await signProfile(ProfileType.Personal, next, admin);
    const index = cloneIndex(account.index);
    const file = `devices/${dp.Identifier}.json`;
    index.Devices[dp.Identifier] = { File: file, Description: dp.Description, Connected: next.Updated };
    return finish('connect', opts, {
      account, personal, apps: [], index,
      extraFiles: [{ path: file, text: profileText(vd.signed) }],
      device: { identifier: dp.Identifier, description: dp.Description },
    });
  });
}

/** The outcome of one device of {@link connectDevicesBatch}. */
export type BatchConnectResult =
  | { status: 'connected'; identifier: string; description: string }
  /** Already listed in the account (with `skipConnected`): nothing was changed for it. */
  | { status: 'already'; identifier: string; description: string }
  /** Refused: its own checks failed; the other devices of the batch are not affected. */
  | { status: 'refused'; identifier?: string; error: Error };

/** What {@link connectDevicesBatch} did. */
export interface BatchConnectSummary {
  /** One result per input device, in input order. */
  results: BatchConnectResult[];
  /** The update (one new Personal Profile listing every connected device); absent when no device was connected. */
  update?: UpdateSummary;
}

/**
 * A batch `admin connect` (a group commit): every device that passes its own checks is connected in ONE new
 * Personal Profile (one Sequence increment, one signature, one publish), with a `devices/<id>.json` file each — the
 * same checks, files, history files and publishing as {@link connectDevice}. Each device is checked on its own first
 * (self-signed Device Profile, valid keys, not revoked, not given twice, newer than the connected version): a device
 * that fails is `refused` with its error and does not sink the others. With `skipConnected`, a device the account
 * already lists is reported `already` and left as it is (a resumed enrollment).
 *
 * @param opts as {@link connectDevice}, plus `skipConnected`
 * @param devices the signed Device Profiles (objects or JSON text), at least one
 * @returns one result per device, in input order, and the update when any device was connected
 * @throws TypeError for bad arguments; RangeError for an empty `devices`.
 * @throws ProfileError `ERR_PROFILE_SIGNER_NOT_AUTHORISED` (admin key not in the Master Profile — nothing is
 *   connected); signer errors (PIN, card removed); PortalError / MeshkitError `ERR_PORTAL_CONFLICT` from publishing;
 *   `ERR_IO` for the files or lock. These fail the whole batch: nothing was committed.
 */
export async function connectDevicesBatch(
  opts: UpdateOptions & { admin: Signer; skipConnected?: boolean },
  devices: ReadonlyArray<SignedProfile | string>,
): Promise<BatchConnectSummary> {
  checkCommon(opts);
  const admin = checkSigner(opts.admin, 'opts.admin');
  if (!Array.isArray(devices)) throw new TypeError('"devices" expected an array of signed Device Profiles');
  if (devices.length === 0) throw new RangeError('"devices" expected at least one signed Device Profile');
  if (opts.skipConnected !== undefined && typeof opts.skipConnected !== 'boolean') throw new TypeError('"opts.skipConnected" expected a boolean');
  const results: Array<BatchConnectResult | undefined> = new Array<BatchConnectResult | undefined>(devices.length).fill(undefined);
  const checked: Array<{ i: number; signed: SignedProfile; dp: DeviceProfile }> = [];
  const refuse = (i: number, error: unknown, identifier?: string): void => {
    const err = error instanceof Error ? error : new Error(String(error));
    results[i] = identifier === undefined ? { status: 'refused', error: err } : { status: 'refused', identifier, error: err };
  };
  // Each device on its own, before the lock: the checks connectDevice makes.
  for (const [i, device] of devices.entries()) {
    try {
      if (typeof device !== 'string' && (typeof device !== 'object' || device === null)) throw new TypeError(`"devices[${i}]" expected a signed Device Profile`);
      const vd = await verifyProfile(device);
      if (vd.type !== 'DeviceProfile') throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `expected a Device Profile, got a ${vd.type}`);
      const dp = vd.profile as DeviceProfile;
      for (const k of [dp.DeviceSignatureKey, dp.DeviceEncryptionKey, dp.DeviceAuthenticationKey]) if (k !== undefined) publicKeyFromJwk(k.PublicParameters);
      checked.push({ i, signed: vd.signed, dp });
    } catch (e) {
      refuse(i, e);
    }
  }
  const done = (update?: UpdateSummary): BatchConnectSummary => ({
    results: results.map((r) => r ?? { status: 'refused', error: new Error('internal: no result') }),
    ...(update === undefined ? {} : { update }),
  });
  if (checked.length === 0) return done();
  return withAccountLock(opts.dir, async () => {
    const account = await loadAccount(opts.dir);
    requireAdmin(account, admin);
    const listed = devicesOf(account.personalProfile);
    const accepted: typeof checked = [];
    const seen = new Set<string>();
    for (const c of checked) {
      const { dp } = c;
      if (account.index.Revoked[dp.Identifier] !== undefined) {
        refuse(c.i, new ProfileError(ErrorCode.PROFILE_MISMATCH,
          `device ${dp.Identifier} was revoked (${account.index.Revoked[dp.Identifier]?.Reason}); a revoked device is not connected again`), dp.Identifier);
        continue;
      }
      if (seen.has(dp.Identifier)) {
        refuse(c.i, new ProfileError(ErrorCode.PROFILE_MALFORMED, `devices[${c.i}]: device ${dp.Identifier} is given twice in this batch`), dp.Identifier);
        continue;
      }
      const current = listed.get(dp.Identifier);
      if (opts.skipConnected === true && account.index.Devices[dp.Identifier] !== undefined) {
        seen.add(dp.Identifier);
        results[c.i] = { status: 'already', identifier: dp.Identifier, description: dp.Description };
        continue;
      }
      if (current !== undefined && current.Sequence >= dp.Sequence) {
        refuse(c.i, new ProfileError(ErrorCode.PROFILE_SUPERSEDED,
          `device ${dp.Identifier} is already connected with Sequence ${current.Sequence} ≥ ${dp.Sequence}`), dp.Identifier);
        continue;
      }
      seen.add(dp.Identifier);
      accepted.push(c);
    }
    if (accepted.length === 0) return done();
    const next = connectDevices(account.personalProfile, accepted.map((c) => c.signed), opts.now);
    const personal = await signProfile(ProfileType.Personal, next, admin);
    const index = cloneIndex(account.index);
    const extraFiles: Array<{ path: string; text: string }> = [];
    const added: NonNullable<UpdateSummary['devices']> = [];
    for (const { signed, dp } of accepted) {
      const file = `devices/${dp.Identifier}.json`;
      index.Devices[dp.Identifier] = { File: file, Description: dp.Description, Connected: next.Updated };
      extraFiles.push({ path: file, text: profileText(signed) });
      added.push({ identifier: dp.Identifier, description: dp.Description });
    }
    const update = await finish('connect', opts, {
      account, personal, apps: [], index, extraFiles, devices: added,
      ...(added.length === 1 ? { device: added[0] as { identifier: string; description: string } } : {}),
    });
    for (const { i, dp } of accepted) results[i] = { status: 'connected', identifier: dp.Identifier, description: dp.Description };
    return done(update);
  });
}

/** Why a device is revoked. */
export type RevokeReason = 'lost' | 'stolen' | 'retired';

/**
 * `admin revoke`: removes a device from the Personal Profile and every application entry; every
 * Application Profile whose private data it could decrypt is re-keyed (its SharedPrivate decrypted
 * with one of `decrypters` — keys the administrator holds that are recipients of it — and
 * re-encrypted to the remaining decrypting devices, the Master Escrow Key and that administrator
 * key) or, when no decrypter fits or the administration key is not an administrator of the
 * application, flagged "needs re-keying" with the reason. Applications that list the device (or
 * were signed by it) get a new version without it. The Device Profile is kept under revoked/.
 *
 * @throws TypeError / RangeError for bad arguments (unknown reason).
 * @throws ProfileError `ERR_PROFILE_SIGNER_NOT_AUTHORISED`, `ERR_PROFILE_NOT_CONNECTED` (not connected);
 *   signer and portal errors as {@link connectDevice}.
 */
export async function revokeDevice(
  opts: UpdateOptions & { admin: Signer; decrypters?: Decrypter[] },
  deviceUdf: string,
  revoke: { reason?: RevokeReason } = {},
): Promise<UpdateSummary> {
  checkCommon(opts);
  const admin = checkSigner(opts.admin, 'opts.admin');
  if (typeof deviceUdf !== 'string' || deviceUdf === '') throw new TypeError('"deviceUdf" expected a non-empty string');
  const reason = revoke.reason ?? 'lost';
  if (!['lost', 'stolen', 'retired'].includes(reason)) throw new RangeError(`"reason" expected lost, stolen or retired, got ${String(reason)}`);
  const decrypters = opts.decrypters ?? [];
  return withAccountLock(opts.dir, async () => {
    const account = await loadAccount(opts.dir);
    requireAdmin(account, admin);
    const before = devicesOf(account.personalProfile);
    const revoked = before.get(deviceUdf);
    if (revoked === undefined) throw new ProfileError(ErrorCode.PROFILE_NOT_CONNECTED, `device ${deviceUdf} is not connected to ${account.index.Identifier}`);
    const revokedSigned = account.personalProfile.Devices.find((d) => readProfile(d, ProfileType.Device).profile.Identifier === deviceUdf) as SignedProfile;
    const nextPersonal = disconnectDevice(account.personalProfile, deviceUdf, opts.now);
    const after = devicesOf(nextPersonal);
    const personal = await signProfile(ProfileType.Personal, nextPersonal, admin);
    const revokedEnc = revoked.DeviceEncryptionKey?.UDF;

    const apps: Draft['apps'] = [];
    const flagged: UpdateSummary['flagged'] = [];
    for (const [id, signed] of account.applications) {
      const decoded = readProfile(signed, ProfileType.Application);
      const app = decoded.profile;
      const oldEntry = account.personalProfile.Applications.find((a) => a.Identifier === id);
      const entry = nextPersonal.Applications.find((a) => a.Identifier === id);
      if (oldEntry === undefined || entry === undefined) continue;
      const couldDecrypt = oldEntry.DecryptDeviceUDF.includes(deviceUdf) && app.SharedPrivate !== undefined;
      const listed = app.Devices.some((d) => d.DeviceUDF === deviceUdf);
      const signedByIt = decoded.kid === deviceUdf;
      if (!couldDecrypt && !listed && !signedByIt) continue;
      if (!entry.AdminDeviceUDF.includes(admin.keyId)) {
        flagged.push({
          identifier: id, type: app.Type,
          reason: `${couldDecrypt ? 'needs re-keying' : 'needs a new version'}: administration key ${admin.keyId} is not an administrator of this application ` +
            `(its administrators: ${entry.AdminDeviceUDF.join(', ') || 'none'})`,
        });
        continue;
      }
      const changes: Partial<ApplicationProfile> = { Devices: app.Devices.filter((d) => d.DeviceUDF !== deviceUdf) };
      let change: Draft['apps'][number]['change'] = 'updated';
      if (couldDecrypt && app.SharedPrivate !== undefined) {
        const kids = recipientKids(app.SharedPrivate);
        const usable = decrypters.find((dec) => kids.includes(dec.keyId) && dec.keyId !== revokedEnc);
        if (usable === undefined) {
          flagged.push({
            identifier: id, type: app.Type,
            reason: `needs re-keying: revoked device ${deviceUdf} could decrypt its SharedPrivate and the administrator holds none of its recipient keys (${kids.join(', ')})`,
          });
        } else {
          const { plaintext } = await decryptJwe(app.SharedPrivate, usable);
          try {
            const recipients = uniqueKeys([...entry.DecryptDeviceUDF.map((u) => encryptionKeyOf(after, u)), usable.publicJwk]);
            changes.SharedPrivate = await sealShared(plaintext, account.masterProfile, recipients);
          } finally {
            wipe(plaintext);
          }
          change = 're-keyed';
        }
      }
      const next = supersede(app, changes, opts.now);
      apps.push({ identifier: id, signed: await signProfile(ProfileType.Application, next, admin), change });
    }

    const index = cloneIndex(account.index);
    const when = nextPersonal.Updated;
    delete index.Devices[deviceUdf];
    const revokedFile = `revoked/${deviceUdf}.json`;
    index.Revoked[deviceUdf] = { File: revokedFile, Revoked: when, Reason: reason, PersonalSequence: nextPersonal.Sequence };
    const record = {
      Revocation: { Device: deviceUdf, Description: revoked.Description, Revoked: when, Reason: reason, PersonalSequence: nextPersonal.Sequence, SignedBy: admin.keyId },
      DeviceProfile: revokedSigned,
    };
    return finish('revoke', opts, {
      account, personal, apps, index, flagged,
      extraFiles: [{ path: revokedFile, text: JSON.stringify(record, null, 2) + '\n' }],
      remove: [account.index.Devices[deviceUdf]?.File ?? `devices/${deviceUdf}.json`],
      device: { identifier: deviceUdf, description: revoked.Description },
    });
  });
}

/** What `admin app --create` makes. */
export interface CreateApplicationArgs {
  type: string;
  friendly?: string;
  /** Devices (not profile administrators) delegated to administer this application (§5.3). */
  adminDevices?: string[];
  /** Devices that may decrypt the application's private data. */
  decryptDevices?: string[];
  publicData?: Record<string, unknown>;
  /** Shared private data, encrypted to the decrypting devices, the Master Escrow Key and `recipients`. */
  privateData?: Uint8Array;
  /** More recipients of the private data (e.g. the administrator's own encryption key, for re-keying later). */
  recipients?: PublicJwk[];
}

function deviceEntries(devices: Map<string, DeviceProfile>, udfs: string[]): ApplicationDevicePublic[] {
  return [...new Set(udfs)].map((u) => {
    const d = devices.get(u);
    if (d === undefined) throw new ProfileError(ErrorCode.PROFILE_NOT_CONNECTED, `device ${u} is not connected`);
    return { DeviceUDF: u, DeviceDescription: d.Description };
  });
}

/**
 * `admin app --create`: a new Application Profile (identifier: a nonce UDF), signed by the
 * administration key, and its entry in a new Personal Profile (administrators: the administration
 * key and `adminDevices`); published.
 *
 * @throws TypeError / RangeError for bad arguments (a decrypting device without an encryption key).
 * @throws ProfileError `ERR_PROFILE_SIGNER_NOT_AUTHORISED`, `ERR_PROFILE_NOT_CONNECTED` (unknown device);
 *   signer and portal errors as {@link connectDevice}.
 */
export async function createApplication(opts: UpdateOptions & { admin: Signer }, args: CreateApplicationArgs): Promise<UpdateSummary> {
  checkCommon(opts);
  const admin = checkSigner(opts.admin, 'opts.admin');
  if (typeof args !== 'object' || args === null) throw new TypeError('"args" expected an object');
  if (typeof args.type !== 'string' || args.type === '') throw new TypeError('"args.type" expected a non-empty string');
  return withAccountLock(opts.dir, async () => {
    const account = await loadAccount(opts.dir);
    requireAdmin(account, admin);
    const devices = devicesOf(account.personalProfile);
    const adminDevices = args.adminDevices ?? [];
    const decryptDevices = [...new Set(args.decryptDevices ?? [])];
    const identifier = udfNonce();
    const entry: ApplicationProfileEntry = {
      Identifier: identifier, Type: args.type, ...(args.friendly === undefined ? {} : { Friendly: args.friendly }),
      AdminDeviceUDF: [...new Set([admin.keyId, ...adminDevices])], DecryptDeviceUDF: decryptDevices,
    };
    let sharedPrivate: JweGeneral | undefined;
    if (args.privateData !== undefined) {
      const recipients = uniqueKeys([...decryptDevices.map((u) => encryptionKeyOf(devices, u)), ...(args.recipients ?? [])]);
      sharedPrivate = await sealShared(args.privateData, account.masterProfile, recipients);
    }
    const app = composeApplicationProfile({
      identifier, type: args.type, devices: deviceEntries(devices, [...adminDevices, ...decryptDevices]),
      ...(args.publicData === undefined ? {} : { publicData: args.publicData }),
      ...(sharedPrivate === undefined ? {} : { sharedPrivate }),
      ...(opts.now === undefined ? {} : { updated: opts.now }),
    });
    const nextPersonal = supersede(account.personalProfile, { Applications: [...account.personalProfile.Applications, entry] }, opts.now);
    const personal = await signProfile(ProfileType.Personal, nextPersonal, admin);
    const signedApp = await signProfile(ProfileType.Application, app, admin);
    const index = cloneIndex(account.index);
    index.Applications[identifier] = { File: `applications/${identifier}.json`, Type: args.type, Sequence: 1, ...(args.friendly === undefined ? {} : { Friendly: args.friendly }) };
    return finish('app-create', opts, { account, personal, apps: [{ identifier, signed: signedApp, change: 'created' }], index });
  });
}

/** What `admin app --update` changes. */
export interface UpdateApplicationArgs {
  /** Members merged into PublicData (a value of `null` removes the member). */
  publicData?: Record<string, unknown>;
  /** New shared private data, encrypted to the entry's decrypting devices, the Master Escrow Key and `recipients`. */
  privateData?: Uint8Array;
  recipients?: PublicJwk[];
}

/**
 * `admin app --update ID`: a new version of an Application Profile signed by `opts.signer` — an
 * administrator of that application per the Personal Profile (a delegated device key or an
 * administration key, §5.3); the Personal Profile is unchanged; published.
 *
 * @throws TypeError for bad arguments.
 * @throws ProfileError `ERR_PROFILE_NOT_CONNECTED` (no such application), `ERR_PROFILE_SIGNER_NOT_AUTHORISED`
 *   (the key is not an administrator of it — refused before anything is signed); signer and portal errors.
 */
export async function updateApplication(opts: UpdateOptions & { signer: Signer }, identifier: string, args: UpdateApplicationArgs): Promise<UpdateSummary> {
  checkCommon(opts);
  const signer = checkSigner(opts.signer, 'opts.signer');
  if (typeof identifier !== 'string' || identifier === '') throw new TypeError('"identifier" expected a non-empty string');
  if (typeof args !== 'object' || args === null) throw new TypeError('"args" expected an object');
  return withAccountLock(opts.dir, async () => {
    const account = await loadAccount(opts.dir);
    const current = account.applications.get(identifier);
    const entry = account.personalProfile.Applications.find((a) => a.Identifier === identifier);
    if (current === undefined || entry === undefined) throw new ProfileError(ErrorCode.PROFILE_NOT_CONNECTED, `account ${account.index.Identifier} has no application ${identifier}`);
    if (!entry.AdminDeviceUDF.includes(signer.keyId)) {
      throw new ProfileError(
        ErrorCode.PROFILE_UNAUTHORISED,
        `key ${signer.keyId} is not an administrator of application ${identifier} (${entry.Type}); its administrators are ${entry.AdminDeviceUDF.join(', ')}; nothing was signed or written`,
      );
    }
    const app = applicationOf(current);
    const changes: Partial<ApplicationProfile> = {};
    if (args.publicData !== undefined) {
      const merged: Record<string, unknown> = { ...(app.PublicData ?? {}) };
      for (const [k, v] of Object.entries(args.publicData)) {
        if (v === null) delete merged[k];
        else merged[k] = v;
      }
      changes.PublicData = merged;
    }
    if (args.privateData !== undefined) {
      const devices = devicesOf(account.personalProfile);
      const recipients = uniqueKeys([...entry.DecryptDeviceUDF.map((u) => encryptionKeyOf(devices, u)), ...(args.recipients ?? [])]);
      changes.SharedPrivate = await sealShared(args.privateData, account.masterProfile, recipients);
    }
    const signed = await signProfile(ProfileType.Application, supersede(app, changes, opts.now), signer);
    const index = cloneIndex(account.index);
    return finish('app-update', opts, { account, apps: [{ identifier, signed, change: 'updated' }], index });
  });
}

/** Options of the master-key session ({@link addAdmin}, {@link rotateAdmin}). */
export interface MasterSessionOptions extends UpdateOptions {
  /** The master signature key (on the HSM). */
  master: Signer;
  /** The new administration key; it signs the new Personal Profile. */
  newAdmin: Signer;
  /** Name of the new administrator in account.json. */
  name?: string;
  /** The new key's reference (recorded in account.json). */
  key?: string;
}

async function masterSession(action: 'rotate' | 'add-admin', opts: MasterSessionOptions, old?: string): Promise<UpdateSummary> {
  checkCommon(opts);
  const masterSigner = checkSigner(opts.master, 'opts.master');
  const newAdmin = checkSigner(opts.newAdmin, 'opts.newAdmin');
  return withAccountLock(opts.dir, async () => {
    const account = await loadAccount(opts.dir);
    requireMasterKey(account, masterSigner);
    const m = account.masterProfile;
    if (m.OnlineSignatureKeys.some((k) => k.UDF === newAdmin.keyId)) {
      throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `key ${newAdmin.keyId} is already an administration key of Master Profile ${m.Identifier}`);
    }
    if (old !== undefined && !m.OnlineSignatureKeys.some((k) => k.UDF === old)) {
      throw new ProfileError(ErrorCode.PROFILE_NOT_CONNECTED, `key ${old} is not an administration key of Master Profile ${m.Identifier}`);
    }
    const keys = [...m.OnlineSignatureKeys.filter((k) => k.UDF !== old), publicKeyEntry(newAdmin.publicJwk)];
    const nextMaster = supersede(m, { OnlineSignatureKeys: keys }, opts.now);
    const master = await signProfile(ProfileType.Master, nextMaster, masterSigner);
    const applications = account.personalProfile.Applications.map((a) => ({
      ...a,
      AdminDeviceUDF: old === undefined ? [...a.AdminDeviceUDF] : [...new Set(a.AdminDeviceUDF.map((u) => (u === old ? newAdmin.keyId : u)))],
    }));
    const nextPersonal = supersede(account.personalProfile, { SignedMasterProfile: master, Applications: applications }, opts.now);
    const personal = await signProfile(ProfileType.Personal, nextPersonal, newAdmin);
    // Application Profiles signed by the retired key would no longer verify: re-sign them with the new key.
    const apps: Draft['apps'] = [];
    if (old !== undefined) {
      for (const [id, signed] of account.applications) {
        const decoded = readProfile(signed, ProfileType.Application);
        if (decoded.kid !== old) continue;
        apps.push({ identifier: id, signed: await signProfile(ProfileType.Application, supersede(decoded.profile, {}, opts.now), newAdmin), change: 're-signed' });
      }
    }
    const index = cloneIndex(account.index);
    const previous = index.Administrators.find((a) => a.UDF === old);
    const entry = { Name: opts.name ?? previous?.Name ?? `admin-${index.Administrators.length + 1}`, UDF: newAdmin.keyId, ...(opts.key === undefined ? {} : { Key: opts.key }) };
    index.Administrators = [...index.Administrators.filter((a) => a.UDF !== old), entry];
    return finish(action, opts, { account, master, personal, apps, index });
  });
}

/**
 * `admin add-admin`: a master-key session — a new Master Profile (Sequence + 1) also listing
 * `newAdmin`, signed by the master signature key, then a new Personal Profile signed by the new key;
 * published.
 *
 * @throws TypeError for bad arguments.
 * @throws ProfileError `ERR_PROFILE_SIGNER_NOT_AUTHORISED` (not the master signature key),
 *   `ERR_PROFILE_MISMATCH` (already an administrator); signer and portal errors.
 */
export async function addAdmin(opts: MasterSessionOptions): Promise<UpdateSummary> {
  return masterSession('add-admin', opts);
}

/**
 * `admin rotate`: a master-key session — a new Master Profile listing `newAdmin` instead of the
 * administration key `oldUdf`, signed by the master signature key; then a new Personal Profile
 * signed by the new key, with `oldUdf` replaced by the new key in every application entry, and
 * Application Profiles the old key signed re-signed by the new one; published. The old key can no
 * longer sign a valid Personal Profile.
 *
 * @throws TypeError for bad arguments.
 * @throws ProfileError `ERR_PROFILE_SIGNER_NOT_AUTHORISED` (not the master signature key),
 *   `ERR_PROFILE_NOT_CONNECTED` (`oldUdf` is not an administration key), `ERR_PROFILE_MISMATCH`; signer and portal errors.
 */
export async function rotateAdmin(opts: MasterSessionOptions, oldUdf: string): Promise<UpdateSummary> {
  if (typeof oldUdf !== 'string' || oldUdf === '') throw new TypeError('"oldUdf" expected a non-empty string');
  return masterSession('rotate', opts, oldUdf);
}
