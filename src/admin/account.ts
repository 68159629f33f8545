/**
 * The account directory of day-to-day administration (docs/admin.md): loading it, creating it from
 * a ceremony's outputs, committing a change crash-safely, and a lock so that two admin commands on
 * one account cannot interleave.
 *
 * Layout (docs/admin.md): `account.json` (the index), `master.json`, `personal.json`,
 * `devices/<udf>.json`, `applications/<id>.json`, `history/<Type>-<prefix>-<Sequence>.json`,
 * `revoked/<udf>.json`.
 *
 * Crash safety — `account.json` is the commit point:
 * - the index records the Sequence of every current profile (`MasterSequence`, `PersonalSequence`,
 *   `Applications[id].Sequence`), and every version ever made is also kept in `history/` (a superset
 *   of "every superseded version": the current one is there too, written before anything else);
 * - a change writes its new files first (history versions, new device / revoked files), then
 *   publishes (when a portal is configured; see updates.ts), then the current copies (`personal.json`
 *   …), and `account.json` last;
 * - {@link loadAccount} reads each current profile from its file and, when the file holds another
 *   Sequence than the index (a crash between the files and `account.json`), from `history/` — so
 *   the previous state stays intact and loadable;
 * - a change that fails before `account.json` is written removes the new files it made.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readFile, readdir, rm, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { astring, describe, fromUtf8 } from '../core/bytes.js';
import { ErrorCode, MeshkitError, ProfileError } from '../core/errors.js';
import { parseJsonStrict } from '../core/jose.js';
import {
  ProfileType,
  readProfile,
  verifyProfile,
  type ApplicationProfile,
  type MasterProfile,
  type PersonalProfile,
  type ProfileTypeName,
  type SignedProfile,
} from '../core/profiles.js';
import { exists } from '../ceremony/files.js';
import { processAlive, writeFileAtomic } from '../util/fs.js';
import { PortalClient } from '../portal/client.js';

/** The portal an account publishes to. */
export interface AccountPortal {
  Url: string;
  /** The account name at the portal (`user@portal`). */
  Account: string;
  /** A PEM CA file (relative to the account directory or absolute) for an https portal. */
  Ca?: string;
}

/** One administration key of the account. */
export interface AccountAdministrator {
  Name: string;
  UDF: string;
  /** A key reference (`pkcs11:…` or `file:PATH#LABEL`) when known. */
  Key?: string;
}

/** The `Account` member of account.json. */
export interface AccountIndex {
  Identifier: string;
  Names: string[];
  Portal?: AccountPortal;
  Master: string;
  /** Sequence of the current Master Profile (the commit record; see the module header). */
  MasterSequence: number;
  Personal: string;
  PersonalSequence: number;
  MasterKeys: { Signature?: string; Escrow?: string };
  Administrators: AccountAdministrator[];
  Devices: Record<string, { File: string; Description: string; Connected: string }>;
  Applications: Record<string, { File: string; Type: string; Sequence: number; Friendly?: string }>;
  Revoked: Record<string, { File: string; Revoked: string; Reason: string; PersonalSequence: number }>;
  /** The ceremony directory this account was made from (never modified). */
  Ceremony?: string;
}

/** A loaded account directory. */
export interface Account {
  dir: string;
  index: AccountIndex;
  master: SignedProfile;
  masterProfile: MasterProfile;
  personal: SignedProfile;
  personalProfile: PersonalProfile;
  /** Current Application Profiles by identifier. */
  applications: Map<string, SignedProfile>;
}

export const ACCOUNT_FILE = 'account.json';
export const LOCK_FILE = 'account.lock';

/** File name of a version in `history/`: `<Type>-<Identifier-prefix>-<Sequence>.json`. */
export function historyFile(type: ProfileTypeName, identifier: string, sequence: number): string {
  const prefix = identifier.replace(/[^A-Za-z0-9]/g, '').slice(0, 20);
  return `history/${type}-${prefix}-${sequence}.json`;
}

/** The JSON text every profile file holds. */
export function profileText(signed: SignedProfile): string {
  return JSON.stringify(signed, null, 2) + '\n';
}

function ioError(message: string, cause?: unknown): MeshkitError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  return new MeshkitError(ErrorCode.IO, code === undefined ? message : `${message}: ${code}`, cause === undefined ? undefined : { cause });
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = fromUtf8(new Uint8Array(await readFile(path)));
  } catch (e) {
    throw ioError(`cannot read ${what} ${path}`, e);
  }
  try {
    return parseJsonStrict(text);
  } catch (e) {
    throw new MeshkitError(ErrorCode.JSON_INVALID, `${what} ${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

function checkIndex(value: unknown, path: string): AccountIndex {
  const bad = (m: string): never => {
    throw new MeshkitError(ErrorCode.PROFILE_MALFORMED, `${path}: ${m}`);
  };
  if (typeof value !== 'object' || value === null || !('Account' in value)) return bad('expected {"Account": {…}}');
  const a = (value as { Account: unknown }).Account as Record<string, unknown>;
  if (typeof a !== 'object' || a === null) return bad('"Account" must be an object');
  for (const k of ['Identifier', 'Master', 'Personal']) if (typeof a[k] !== 'string') bad(`"Account.${k}" must be a string`);
  for (const k of ['MasterSequence', 'PersonalSequence']) if (!Number.isSafeInteger(a[k])) bad(`"Account.${k}" must be an integer (not an account made by "admin init"?)`);
  if (!Array.isArray(a.Administrators)) bad('"Account.Administrators" must be an array');
  for (const k of ['Devices', 'Applications', 'Revoked']) if (typeof a[k] !== 'object' || a[k] === null) bad(`"Account.${k}" must be an object`);
  return a as unknown as AccountIndex;
}

/** Reads the current version of a profile: its file, or history/ when the file holds another Sequence. */
async function readCurrent<T extends ProfileTypeName>(dir: string, file: string, type: T, identifier: string, sequence: number): Promise<SignedProfile> {
  const path = join(dir, file);
  if (await exists(path)) {
    const signed = (await readJson(path, type)) as SignedProfile;
    const p = readProfile(signed, type).profile;
    if (p.Sequence === sequence && p.Identifier === identifier) return signed;
  }
  const hist = join(dir, historyFile(type, identifier, sequence));
  if (!(await exists(hist))) {
    throw new MeshkitError(ErrorCode.PROFILE_MISMATCH, `account ${dir}: ${file} does not hold ${type} ${identifier} Sequence ${sequence} and ${hist} is missing`);
  }
  const signed = (await readJson(hist, type)) as SignedProfile;
  const p = readProfile(signed, type).profile;
  if (p.Sequence !== sequence || p.Identifier !== identifier) {
    throw new MeshkitError(ErrorCode.PROFILE_MISMATCH, `account ${dir}: ${hist} does not hold ${type} ${identifier} Sequence ${sequence}`);
  }
  return signed;
}

/**
 * Loads an account directory: the index and the current Master, Personal and Application Profiles
 * (decoded, NOT verified — {@link verifyAccount} verifies).
 *
 * @throws TypeError for a non-string `dir`.
 * @throws MeshkitError `ERR_IO` (missing / unreadable files), `ERR_JSON_INVALID`, `ERR_PROFILE_MALFORMED`
 *   (a malformed index or profile), `ERR_PROFILE_MISMATCH` (a current profile that cannot be found).
 */
export async function loadAccount(dir: string): Promise<Account> {
  astring(dir, 'dir');
  const root = resolve(dir);
  const path = join(root, ACCOUNT_FILE);
  const index = checkIndex(await readJson(path, 'account index'), path);
  const master = await readCurrent(root, index.Master, ProfileType.Master, index.Identifier, index.MasterSequence);
  const personal = await readCurrent(root, index.Personal, ProfileType.Personal, index.Identifier, index.PersonalSequence);
  const applications = new Map<string, SignedProfile>();
  for (const [id, entry] of Object.entries(index.Applications)) {
    applications.set(id, await readCurrent(root, entry.File, ProfileType.Application, id, entry.Sequence));
  }
  return {
    dir: root,
    index,
    master,
    masterProfile: readProfile(master, ProfileType.Master).profile,
    personal,
    personalProfile: readProfile(personal, ProfileType.Personal).profile,
    applications,
  };
}

/**
 * Verifies a loaded account: Master, Personal (against that Master) and every Application Profile
 * (against the Personal Profile).
 *
 * @throws ProfileError as {@link verifyProfile}.
 */
export async function verifyAccount(account: Account): Promise<void> {
  const master = await verifyProfile(account.master);
  const personal = await verifyProfile(account.personal, { master });
  for (const app of account.applications.values()) await verifyProfile(app, { personal });
}

/**
 * A PortalClient for the account's portal, or undefined when none is configured.
 * @throws TypeError / RangeError for a bad URL; MeshkitError `ERR_IO` for an unreadable CA file.
 */
export function accountPortal(account: Pick<Account, 'dir' | 'index'>): { client: PortalClient; account: string } | undefined {
  const p = account.index.Portal;
  if (p === undefined) return undefined;
  const client = new PortalClient(p.Url, p.Ca === undefined ? {} : { caFile: resolve(account.dir, p.Ca) });
  return { client, account: p.Account };
}

/**
 * Creates an account directory from a finished ceremony's outputs (copies; the ceremony directory
 * is never modified). With `portal`, the account is also created at the portal (CreateAccount with
 * the ceremony's Personal Profile).
 *
 * @throws TypeError for bad arguments.
 * @throws MeshkitError `ERR_IO` when `dir` already holds an account or a file cannot be read/written;
 *   ProfileError when the ceremony's profiles do not verify; PortalError from CreateAccount.
 */
export async function initAccount(dir: string, ceremonyDir: string, portal?: AccountPortal): Promise<Account> {
  astring(dir, 'dir');
  astring(ceremonyDir, 'ceremonyDir');
  if (portal !== undefined) {
    if (typeof portal !== 'object' || portal === null) throw new TypeError(`"portal" expected an object, got ${describe(portal)}`);
    astring(portal.Url, 'portal.Url');
    astring(portal.Account, 'portal.Account');
  }
  const root = resolve(dir);
  const src = resolve(ceremonyDir);
  if (await exists(join(root, ACCOUNT_FILE))) throw new MeshkitError(ErrorCode.IO, `${root} already holds an account (${ACCOUNT_FILE})`);
  const cer = (await readJson(join(src, ACCOUNT_FILE), 'ceremony account index')) as { Account?: Record<string, unknown> };
  const ca = cer.Account ?? {};
  const masterText = fromUtf8(new Uint8Array(await readFile(join(src, 'master.json')).catch((e: unknown) => { throw ioError(`cannot read ${join(src, 'master.json')}`, e); })));
  const personalText = fromUtf8(new Uint8Array(await readFile(join(src, 'personal.json')).catch((e: unknown) => { throw ioError(`cannot read ${join(src, 'personal.json')}`, e); })));
  const master = await verifyProfile(masterText);
  const personal = await verifyProfile(personalText, { master });
  if (master.type !== 'MasterProfile' || personal.type !== 'PersonalProfile') throw new ProfileError(ErrorCode.PROFILE_MISMATCH, 'ceremony master.json / personal.json have the wrong types');
  const admins = Array.isArray(ca.Administrators) ? (ca.Administrators as AccountAdministrator[]) : [];
  const keys = (ca.MasterKeys ?? {}) as AccountIndex['MasterKeys'];
  const index: AccountIndex = {
    Identifier: master.identifier,
    Names: [...(master.profile as MasterProfile).Names],
    ...(portal === undefined ? {} : { Portal: { ...portal } }),
    Master: 'master.json',
    MasterSequence: master.sequence,
    Personal: 'personal.json',
    PersonalSequence: personal.sequence,
    MasterKeys: { ...keys },
    Administrators: admins.map((a) => ({ Name: a.Name, UDF: a.UDF, ...(a.Key === undefined ? {} : { Key: a.Key }) })),
    Devices: {},
    Applications: {},
    Revoked: {},
    Ceremony: src,
  };
  for (const d of (personal.profile as PersonalProfile).Devices) {
    const dp = readProfile(d, ProfileType.Device).profile;
    index.Devices[dp.Identifier] = { File: `devices/${dp.Identifier}.json`, Description: dp.Description, Connected: dp.Updated };
  }
  await mkdir(root, { recursive: true });
  for (const sub of ['devices', 'applications', 'history', 'revoked']) await mkdir(join(root, sub), { recursive: true });
  return withAccountLock(root, async () => {
    if (portal !== undefined) {
      const client = new PortalClient(portal.Url, portal.Ca === undefined ? {} : { caFile: resolve(root, portal.Ca) });
      try {
        await client.createAccount(portal.Account, personal.signed);
      } finally {
        client.close();
      }
    }
    for (const d of (personal.profile as PersonalProfile).Devices) {
      const id = readProfile(d, ProfileType.Device).profile.Identifier;
      await writeFileAtomic(join(root, `devices/${id}.json`), profileText(d), { mode: 0o644 });
    }
    await writeFileAtomic(join(root, historyFile(ProfileType.Master, master.identifier, master.sequence)), masterText, { mode: 0o644 });
    await writeFileAtomic(join(root, historyFile(ProfileType.Personal, personal.identifier, personal.sequence)), personalText, { mode: 0o644 });
    await copyFile(join(src, 'master.json'), join(root, 'master.json'));
    await copyFile(join(src, 'personal.json'), join(root, 'personal.json'));
    await writeIndex(root, index);
    return loadAccount(root);
  });
}

/** Writes account.json atomically. */
export async function writeIndex(dir: string, index: AccountIndex): Promise<void> {
  await writeFileAtomic(join(dir, ACCOUNT_FILE), JSON.stringify({ Account: index }, null, 2) + '\n', { mode: 0o644 });
}

/**
 * Runs `fn` holding the account's lock file (`account.lock`, created exclusively, holding the pid).
 * A lock left by a process that no longer runs is taken over.
 *
 * @throws MeshkitError `ERR_IO` when another live process holds the lock (naming it), or the lock
 *   file cannot be created; whatever `fn` throws.
 */
export async function withAccountLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  astring(dir, 'dir');
  const path = join(resolve(dir), LOCK_FILE);
  const token = `${process.pid} ${randomBytes(8).toString('hex')} ${new Date().toISOString()}\n`;
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o644);
      try {
        await fh.writeFile(token);
        await fh.sync();
      } finally {
        await fh.close();
      }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(`cannot create the lock ${path}`, e);
      const held = await readFile(path, 'utf8').catch(() => '');
      const pid = Number.parseInt(held.split(' ')[0] ?? '', 10);
      if (attempt === 0 && Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      throw new MeshkitError(
        ErrorCode.IO,
        `account ${resolve(dir)} is locked by another admin command (${Number.isSafeInteger(pid) ? `pid ${pid}` : 'unknown process'}); ` +
          `wait for it, or remove ${path} if no such command is running`,
      );
    }
  }
  try {
    return await fn();
  } finally {
    const held = await readFile(path, 'utf8').catch(() => '');
    if (held === token) await unlink(path).catch(() => undefined);
  }
}

/** Where a test can make a change fail (fault injection): after the new files, or after the current copies. */
export type CommitFault = 'after-new-files' | 'after-current-files';

/** Thrown by an injected fault: like a crash, nothing is rolled back. */
export class InjectedCrash extends MeshkitError {
  constructor(where: string) {
    super(ErrorCode.IO, `injected crash ${where}`);
  }
}

/** One crash-safe change of the account directory (see the module header). */
export interface AccountChange {
  /** New files (paths relative to the account directory) — history versions, new device/revoked files. */
  newFiles: Array<{ path: string; text: string }>;
  /** Current copies overwritten after publishing (master.json, personal.json, applications/<id>.json). */
  currentFiles: Array<{ path: string; text: string }>;
  /** The new index, written last. */
  index: AccountIndex;
  /** Files removed after the commit (e.g. devices/<udf>.json of a revoked device). */
  remove?: string[];
}

/**
 * Commits a change: new files → `publish()` → current copies → account.json → removals.
 * When `publish` (or anything before account.json) throws, the new files this change created are
 * removed and the current copies it overwrote are restored, then the error is rethrown.
 *
 * @throws MeshkitError `ERR_IO`; whatever `publish` throws.
 */
export async function commitChange(dir: string, change: AccountChange, publish: () => Promise<void>, fault?: CommitFault): Promise<void> {
  const root = resolve(dir);
  const created: string[] = [];
  const previous = new Map<string, Uint8Array | undefined>();
  try {
    for (const f of change.newFiles) {
      const p = join(root, f.path);
      if (!(await exists(p))) created.push(p);
      await mkdir(join(p, '..'), { recursive: true });
      await writeFileAtomic(p, f.text, { mode: 0o644 });
    }
    if (fault === 'after-new-files') throw new InjectedCrash('after the new files');
    await publish();
    for (const f of change.currentFiles) {
      const p = join(root, f.path);
      previous.set(p, (await exists(p)) ? new Uint8Array(await readFile(p)) : undefined);
      await mkdir(join(p, '..'), { recursive: true });
      await writeFileAtomic(p, f.text, { mode: 0o644 });
    }
    if (fault === 'after-current-files') throw new InjectedCrash('after the current files, before account.json');
    await writeIndex(root, change.index);
  } catch (e) {
    // An injected crash leaves everything as a killed process would.
    if (e instanceof InjectedCrash) throw e;
    // Roll back what this change wrote; account.json was not written.
    for (const [p, old] of previous) {
      await (old === undefined ? unlink(p) : writeFileAtomic(p, old, { mode: 0o644 })).catch(() => undefined);
    }
    for (const p of created) await unlink(p).catch(() => undefined);
    throw e;
  }
  for (const r of change.remove ?? []) await rm(join(root, r), { force: true }).catch(() => undefined);
}

/**
 * Every file of the account directory (relative path → bytes), for tests and audits; skips the lock.
 * @throws the file system error.
 */
export async function snapshotAccount(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(dir, rel))) {
      const r = rel === '' ? name : `${rel}/${name}`;
      if (r === LOCK_FILE) continue;
      const s = await stat(join(dir, r));
      if (s.isDirectory()) await walk(r);
      else out.set(r, Buffer.from(await readFile(join(dir, r))).toString('hex'));
    }
  };
  await walk('');
  return out;
}

/** Type guard used by updates.ts: the Application Profile of a signed profile. */
export function applicationOf(signed: SignedProfile): ApplicationProfile {
  return readProfile(signed, ProfileType.Application).profile;
}
