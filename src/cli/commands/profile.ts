/**
 * `meshkit profile show|verify`: read and check signed profiles on disk.
 *
 * `profile verify` follows the chain Master → Personal → Device / Application (§5.4 signer rules), and
 * optionally takes its context from an account directory (`--account DIR`: the account's current Master
 * and Personal Profiles, and its revocation list) and checks Current at a portal (`--portal URL`: the
 * latest Sequence of every identifier involved, fetched with `Get`, verified before it is believed).
 * Every failure is one line a person can act on.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ErrorCode, MeshkitError, ProfileError } from '../../core/errors.js';
import {
  ProfileType,
  readProfile,
  verifyProfile,
  type AnyProfile,
  type DecodedProfile,
  type ProfileTypeName,
  type VerifiedProfile,
  type VerifyContext,
} from '../../core/profiles.js';
import { PortalClient, PortalError } from '../../portal/client.js';
import { loadAccount } from '../../admin/account.js';
import { ReportedFailure } from '../main.js';
import { emit, type OutputOptions } from '../output.js';

/** Signed profiles larger than this are refused before parsing (a Personal Profile with 10,000 devices is ~10 MiB). */
export const MAX_PROFILE_BYTES = 64 * 1024 * 1024;

/** Reads a signed profile file as text, bounded. */
export async function readProfileFile(path: string): Promise<string> {
  const data = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    throw new MeshkitError('ERR_IO', `cannot read ${path}: ${e.code ?? e.message}`);
  });
  if (data.length > MAX_PROFILE_BYTES) throw new MeshkitError('ERR_IO', `${path} is larger than ${MAX_PROFILE_BYTES} bytes`);
  return data.toString('utf8');
}

export function registerProfileCommands(program: Command): void {
  const profile = program.command('profile').description('show and verify signed Mesh profiles (JWS General JSON files)');

  profile
    .command('show')
    .description('decode a signed profile and print its contents (does NOT verify it; use "profile verify")')
    .argument('<file>', 'signed profile (.json)')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: OutputOptions) => {
      const decoded = readProfile(await readProfileFile(file));
      emit(opts, { file, verified: false, type: decoded.type, signer: decoded.kid, profile: decoded.profile }, () => showText(file, decoded));
    });

  profile
    .command('verify')
    .description('verify signed profiles: signature, §5.4 signer rules, supersession, revocation, and (for devices/applications) connection')
    .argument('<files...>', 'signed profiles; a Master or Personal Profile given earlier is the context for the ones after it')
    .option('--master <file>', 'Master Profile to check Personal Profiles against')
    .option('--personal <file>', 'Personal Profile that Device / Application Profiles must be connected to')
    .option('--account <dir>', "account directory: its Master and Personal Profiles are the context, its Revoked list is checked")
    .option('--portal <url>', 'check Current at this portal: a profile superseded there is reported')
    .option('--ca <file>', "PEM CA of an https portal (default: the account's Portal.Ca)")
    .option('--json', 'print JSON')
    .action(async (files: string[], opts: VerifyOptions) => {
      const context: VerifyContext = {};
      const account = opts.account === undefined ? undefined : await readAccountContext(opts.account);
      const latest = new Map<string, number>();
      let client: PortalClient | undefined;
      if (opts.portal !== undefined) {
        const ca = opts.ca ?? account?.ca;
        client = new PortalClient(opts.portal, { retries: 1, ...(ca === undefined ? {} : { caFile: ca }) });
        context.latestSequence = (identifier, type) => latest.get(`${type} ${identifier}`);
      }
      try {
        const texts = new Map<string, string>();
        for (const file of files) texts.set(file, await readProfileFile(file));
        if (client !== undefined) {
          await fetchLatest(client, latest, [
            ...(account === undefined ? [] : [account.masterText, account.personalText]),
            ...(opts.master === undefined ? [] : [await readProfileFile(opts.master)]),
            ...(opts.personal === undefined ? [] : [await readProfileFile(opts.personal)]),
            ...texts.values(),
          ]);
        }
        if (account !== undefined) {
          context.master = await verifyAt(account.masterFile, account.masterText, context) as VerifiedProfile<'MasterProfile'>;
          context.personal = await verifyAt(account.personalFile, account.personalText, context) as VerifiedProfile<'PersonalProfile'>;
        }
        if (opts.master !== undefined) context.master = await verifyAt(opts.master, await readProfileFile(opts.master), context) as VerifiedProfile<'MasterProfile'>;
        if (opts.personal !== undefined) {
          context.personal = await verifyAt(opts.personal, await readProfileFile(opts.personal), context) as VerifiedProfile<'PersonalProfile'>;
        }
        const results: VerifyResult[] = [];
        for (const file of files) {
          try {
            const text = texts.get(file) ?? '';
            const revoked = account === undefined ? undefined : revocationOf(text, account);
            if (revoked !== undefined) throw new ProfileError(ErrorCode.PROFILE_NOT_CONNECTED, revoked);
            const v = await verifyProfile(text, context);
            if (v.type === 'MasterProfile' && opts.master === undefined && account === undefined) context.master = v as VerifiedProfile<'MasterProfile'>;
            if (v.type === 'PersonalProfile' && opts.personal === undefined && account === undefined) context.personal = v as VerifiedProfile<'PersonalProfile'>;
            const r = okResult(file, v);
            if (client !== undefined) r.current = 'portal';
            results.push(r);
          } catch (e) {
            if (!(e instanceof MeshkitError)) throw e;
            const atPortal = client !== undefined && e.code === ErrorCode.PROFILE_SUPERSEDED ? ` at the portal ${client.baseUrl.origin}` : '';
            results.push({ file, valid: false, error: { code: e.code, message: `${e.message}${atPortal}` } });
          }
        }
        emit(opts, { valid: results.every((r) => r.valid), results }, () => results.map(resultText).join('\n'));
        const failed = results.find((r) => !r.valid);
        if (failed?.error !== undefined) {
          if (opts.json) throw new ReportedFailure(failed.error.message);
          throw new MeshkitError(failed.error.code as MeshkitError['code'], `${failed.file}: ${failed.error.message}`);
        }
      } finally {
        client?.close();
      }
    });
}

interface VerifyOptions extends OutputOptions {
  master?: string;
  personal?: string;
  account?: string;
  portal?: string;
  ca?: string;
}

/** Verifies a context profile; a failure names its file. */
async function verifyAt(file: string, text: string, context: VerifyContext): Promise<VerifiedProfile> {
  try {
    return await verifyProfile(text, context);
  } catch (e) {
    if (e instanceof MeshkitError) throw new MeshkitError(e.code, `${file}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** What `profile verify --account DIR` needs from the account directory (docs/admin.md). */
export interface AccountContext {
  dir: string;
  identifier: string;
  masterFile: string;
  masterText: string;
  personalFile: string;
  personalText: string;
  /** Revoked devices by UDF. */
  revoked: Map<string, { revoked?: string; reason?: string; personalSequence?: number }>;
  /** The portal CA file (absolute), when account.json names one. */
  ca?: string;
  portalUrl?: string;
  portalAccount?: string;
}

/**
 * Loads the account directory (src/admin/account.ts `loadAccount`: the current Master and Personal
 * Profiles, crash-safe) and takes what `profile verify` needs from it.
 * @throws MeshkitError as loadAccount (ERR_IO, ERR_JSON_INVALID, ERR_PROFILE_MALFORMED, ERR_PROFILE_MISMATCH).
 */
export async function readAccountContext(dir: string): Promise<AccountContext> {
  const account = await loadAccount(dir);
  const { index } = account;
  const revoked = new Map<string, { revoked?: string; reason?: string; personalSequence?: number }>();
  for (const [udf, e] of Object.entries(index.Revoked)) {
    const info: { revoked?: string; reason?: string; personalSequence?: number } = {};
    if (typeof e.Revoked === 'string') info.revoked = e.Revoked;
    if (typeof e.Reason === 'string') info.reason = e.Reason;
    if (typeof e.PersonalSequence === 'number') info.personalSequence = e.PersonalSequence;
    revoked.set(udf, info);
  }
  const ctx: AccountContext = {
    dir: account.dir, identifier: index.Identifier,
    masterFile: join(account.dir, index.Master), masterText: JSON.stringify(account.master),
    personalFile: join(account.dir, index.Personal), personalText: JSON.stringify(account.personal), revoked,
  };
  if (index.Portal !== undefined) {
    if (index.Portal.Ca !== undefined) ctx.ca = resolve(account.dir, index.Portal.Ca);
    ctx.portalUrl = index.Portal.Url;
    ctx.portalAccount = index.Portal.Account;
  }
  return ctx;
}

/** The one-line revocation message for a Device Profile the account lists under Revoked, else undefined. */
function revocationOf(text: string, account: AccountContext): string | undefined {
  let decoded: DecodedProfile;
  try {
    decoded = readProfile(text);
  } catch {
    return undefined; // verifyProfile reports the malformed profile
  }
  if (decoded.type !== ProfileType.Device) return undefined;
  const r = account.revoked.get(decoded.profile.Identifier);
  if (r === undefined) return undefined;
  const when = [r.reason, r.revoked].filter((x) => x !== undefined).join(', ');
  const where = r.personalSequence === undefined ? '' : ` in Personal Profile Sequence ${r.personalSequence}`;
  return `device ${decoded.profile.Identifier} was revoked${where}${when === '' ? '' : ` (${when})`}; it is not connected`;
}

/**
 * Fills `latest` ("<Type> <Identifier>" → Sequence) with the portal's current version of every profile in
 * `texts` (and of the Master / Personal Profiles they name). The portal's copy is verified before its
 * Sequence is believed; a profile the portal does not hold (404) has no entry.
 */
async function fetchLatest(client: PortalClient, latest: Map<string, number>, texts: string[]): Promise<void> {
  const wanted = new Map<string, { identifier: string; type: ProfileTypeName }>();
  const want = (identifier: string, type: ProfileTypeName): void => {
    wanted.set(`${type} ${identifier}`, { identifier, type });
  };
  for (const text of texts) {
    let d: DecodedProfile;
    try {
      d = readProfile(text);
    } catch {
      continue;
    }
    want(d.profile.Identifier, d.type);
    if (d.type === ProfileType.Personal) want(d.profile.Identifier, ProfileType.Master);
  }
  // Masters first, then Personal Profiles (checked against the portal's Master), then the rest.
  const order: ProfileTypeName[] = [ProfileType.Master, ProfileType.Personal, ProfileType.Device, ProfileType.Application];
  const masters = new Map<string, VerifiedProfile<'MasterProfile'>>();
  let personal: VerifiedProfile<'PersonalProfile'> | undefined;
  for (const type of order) {
    for (const { identifier } of [...wanted.values()].filter((w) => w.type === type)) {
      let entries: unknown[];
      try {
        entries = (await client.get({ identifier, type })).Entries;
      } catch (e) {
        if (e instanceof PortalError && e.status === 404) continue;
        throw e;
      }
      const entry = entries[0];
      if (entry === undefined) continue;
      let v: VerifiedProfile;
      try {
        const master = masters.get(identifier);
        v = await verifyProfile(entry as object, {
          ...(master === undefined ? {} : { master }),
          ...(type === ProfileType.Application && personal !== undefined ? { personal } : {}),
        });
      } catch (e) {
        if (!(e instanceof MeshkitError)) throw e;
        throw new MeshkitError(e.code, `the portal's current ${type} ${identifier} does not verify (${e.message}); the portal cannot be trusted for Current`, { cause: e });
      }
      if (v.type === ProfileType.Master) masters.set(v.identifier, v as VerifiedProfile<'MasterProfile'>);
      if (v.type === ProfileType.Personal) personal = v as VerifiedProfile<'PersonalProfile'>;
      latest.set(`${type} ${identifier}`, v.sequence);
    }
  }
}

interface VerifyResult {
  file: string;
  valid: boolean;
  type?: string;
  identifier?: string;
  sequence?: number;
  signer?: string;
  signerRole?: string;
  connected?: boolean;
  devices?: number;
  /** Set when Current was checked at a portal. */
  current?: 'portal';
  error?: { code: string; message: string };
}

function okResult(file: string, v: VerifiedProfile): VerifyResult {
  const r: VerifyResult = { file, valid: true, type: v.type, identifier: v.identifier, sequence: v.sequence, signer: v.signerKeyId, signerRole: v.signerRole };
  if (v.connected !== undefined) r.connected = v.connected;
  if (v.devices !== undefined) r.devices = v.devices.length;
  return r;
}

function resultText(r: VerifyResult): string {
  if (!r.valid) return `${r.file}: INVALID — ${r.error?.message ?? 'unknown error'} [${r.error?.code ?? ''}]`;
  const role = (r.signerRole ?? '').replace(/-/g, ' ');
  const extra = [
    r.devices !== undefined ? `${r.devices} device${r.devices === 1 ? '' : 's'} verified` : '',
    r.connected === true ? 'connected' : '',
    r.current === 'portal' ? 'current at the portal' : '',
  ].filter(Boolean).join(', ');
  return `${r.file}: valid ${r.type} ${r.identifier} (Sequence ${r.sequence}), signed by ${role} ${r.signer}${extra ? `; ${extra}` : ''}`;
}

function showText(file: string, d: DecodedProfile): string {
  const p: AnyProfile = d.profile;
  const lines = [
    `${file}: ${d.type} (NOT verified — run "meshkit profile verify")`,
    `  Identifier  ${p.Identifier}`,
    `  Sequence    ${p.Sequence}`,
    `  Updated     ${p.Updated}`,
    `  Signed by   ${d.kid}`,
  ];
  if (p.Names.length > 0) lines.push(`  Names       ${p.Names.join(', ')}`);
  const key = (label: string, k: { UDF: string; PublicParameters: { crv: string } } | undefined): void => {
    if (k !== undefined) lines.push(`  ${label.padEnd(11)} ${k.UDF} (${k.PublicParameters.crv})`);
  };
  if ('MasterSignatureKey' in p) {
    key('Master key', p.MasterSignatureKey);
    p.MasterEscrowKeys.forEach((k) => key('Escrow key', k));
    p.OnlineSignatureKeys.forEach((k) => key('Admin key', k));
  } else if ('SignedMasterProfile' in p) {
    lines.push(`  Devices     ${p.Devices.length}`);
    for (const dev of p.Devices) {
      try {
        const dp = readProfile(dev, 'DeviceProfile').profile;
        lines.push(`    ${dp.Identifier}  ${dp.Description}`);
      } catch {
        lines.push('    (malformed device entry)');
      }
    }
    lines.push(`  Applications ${p.Applications.length}`);
    for (const a of p.Applications) lines.push(`    ${a.Identifier}  ${a.Type}${a.Friendly ? ` (${a.Friendly})` : ''}`);
  } else if ('DeviceSignatureKey' in p) {
    lines.push(`  Description ${p.Description}`);
    key('Signature', p.DeviceSignatureKey);
    key('Encryption', p.DeviceEncryptionKey);
    key('Auth', p.DeviceAuthenticationKey);
  } else {
    lines.push(`  Type        ${p.Type}`, `  Devices     ${p.Devices.length}`);
  }
  return lines.join('\n');
}
