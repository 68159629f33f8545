/**
 * `meshkit admin …`: day-to-day administration with an administration key on a smartcard
 * (docs/admin.md; the services are src/admin/). Thin: parse options, open keys, call the service,
 * print the summary.
 *
 *   meshkit admin init --account DIR --ceremony DIR [--portal URL --portal-account NAME [--portal-ca FILE]]
 *   meshkit admin connect --account DIR [--admin-key URI] --device FILE
 *   meshkit admin revoke  --account DIR [--admin-key URI] --device UDF [--reason lost|stolen|retired] [--decrypt-key URI…]
 *   meshkit admin app     --account DIR [--admin-key URI] --create TYPE [--friendly N] [--admin-device UDF…]
 *                         [--decrypt-device UDF…] [--public KEY=VALUE…] [--private FILE]
 *   meshkit admin app     --account DIR --admin-key URI --update ID [--public KEY=VALUE…] [--private FILE]
 *   meshkit admin rotate    --account DIR --old UDF --new URI [--name N] [--master-key URI]
 *   meshkit admin add-admin --account DIR --new URI [--name N] [--master-key URI]
 *
 * `--admin-key` defaults to the first administrator in account.json that has a key reference;
 * `--master-key` to account.json `MasterKeys.Signature`. PINs never come from argv: the admin
 * key's (for rotate/add-admin: the NEW key's) from `--pin-env/--pin-file` (or the --passphrase-*
 * spellings, MESHKIT_PIN, the URI's pin-source, a prompt); the master key's from
 * `--master-pin-env/--master-pin-file` (or its URI's pin-source, MESHKIT_PIN, a prompt); decryption
 * keys' from `--decrypt-pin-env/--decrypt-pin-file`.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { fromUtf8 } from '../../core/bytes.js';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import { parseJsonStrict } from '../../core/jose.js';
import type { Decrypter, Signer } from '../../core/signer.js';
import { openKeyReference, parseKeyReference, type KeyStore } from '../../keystore/index.js';
import { loadAccount, initAccount, type AccountPortal } from '../../admin/account.js';
import {
  addAdmin,
  connectDevice,
  createApplication,
  revokeDevice,
  rotateAdmin,
  updateApplication,
  type RevokeReason,
  type UpdateSummary,
} from '../../admin/updates.js';
import { secretRequestFor } from '../pin-status.js';
import { emit, note } from '../output.js';
import { ReportedFailure, UsageError } from '../main.js';
import { addSecretOptions, secretSource, type SecretCliOptions } from '../secrets.js';
import { resolveModulePath, withCkrName } from './token.js';
import { registerAdminRequestCommands } from './admin-requests.js';

interface CommonOptions extends SecretCliOptions {
  account: string;
  adminKey?: string;
  module?: string;
  json?: boolean;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

async function readFileOrFail(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new MeshkitError(ErrorCode.IO, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** Opens keys and closes every store at the end. */
class Keys {
  readonly #stores: KeyStore[] = [];
  constructor(readonly module: string | undefined) {}

  async #open(uri: string, opts: SecretCliOptions, what: string): Promise<{ signer(): Signer; decrypter(): Decrypter }> {
    let ref;
    try {
      ref = parseKeyReference(uri);
    } catch (e) {
      throw new UsageError(`${what}: ${(e as Error).message}`);
    }
    const pkcs11 = ref.kind === 'pkcs11';
    const source = secretSource(opts, secretRequestFor(uri, what, pkcs11 && !uri.includes('module-path=') ? resolveModulePath(this.module) : undefined));
    try {
      const { store, handle } = await openKeyReference(uri, source, {
        deferUnlock: true,
        ...(pkcs11 && !uri.includes('module-path=') ? { modulePath: resolveModulePath(this.module) } : {}),
      });
      this.#stores.push(store);
      return handle;
    } catch (e) {
      throw withCkrName(e);
    }
  }

  async signer(uri: string, opts: SecretCliOptions, what: string): Promise<Signer> {
    return (await this.#open(uri, opts, what)).signer();
  }

  async decrypter(uri: string, opts: SecretCliOptions, what: string): Promise<Decrypter> {
    return (await this.#open(uri, opts, what)).decrypter();
  }

  async close(): Promise<void> {
    for (const s of this.#stores.splice(0)) await s.close().catch(() => undefined);
  }
}

async function defaultAdminKey(dir: string): Promise<string> {
  const account = await loadAccount(dir);
  const first = account.index.Administrators.find((a) => a.Key !== undefined);
  if (first?.Key === undefined) throw new UsageError(`account ${dir} names no administrator key reference: give --admin-key URI`);
  return first.Key;
}

function human(s: UpdateSummary): string {
  const lines = [
    `${s.action}: account ${s.identifier}`,
    `  Master Profile Sequence ${s.master.sequence}${s.master.changed ? ' (new)' : ''}`,
    `  Personal Profile Sequence ${s.personal.sequence}${s.personal.changed ? ` (new, signed by ${s.personal.signedBy})` : ''}`,
  ];
  if (s.device !== undefined) lines.push(`  device ${s.device.identifier} (${s.device.description})`);
  for (const a of s.applications) lines.push(`  application ${a.identifier} (${a.type}) Sequence ${a.sequence}: ${a.change}`);
  for (const f of s.flagged) lines.push(`  FLAGGED application ${f.identifier} (${f.type}): ${f.reason}`);
  for (const p of s.published) lines.push(`  published ${p.type} Sequence ${p.sequence} (log index ${p.logIndex})`);
  for (const p of s.publishFailed) lines.push(`  NOT PUBLISHED ${p.type} Sequence ${p.sequence}: ${p.error}`);
  return lines.join('\n');
}

function report(opts: { json?: boolean }, s: UpdateSummary): void {
  emit({ json: opts.json === true }, s, () => human(s));
  if (s.publishFailed.length > 0) {
    process.stderr.write(`meshkit: committed locally, but ${s.publishFailed.length} profile(s) were not published: ${s.publishFailed.map((p) => `${p.type} ${p.sequence}: ${p.error}`).join('; ')}\n`);
    throw new ReportedFailure('publish failed');
  }
}

function parsePublic(pairs: string[] | undefined): Record<string, unknown> | undefined {
  if (pairs === undefined) return undefined;
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new UsageError(`--public expects KEY=VALUE, got ${JSON.stringify(p)}`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

function common(cmd: Command, adminKeyHelp = 'the administration key (default: the first administrator in account.json)'): Command {
  return addSecretOptions(
    cmd
      .requiredOption('--account <dir>', 'the account directory')
      .option('--admin-key <uri>', adminKeyHelp)
      .option('--module <lib>', 'PKCS#11 library when a pkcs11: URI has no module-path'),
  ).option('--json', 'print JSON');
}

function masterOptions(cmd: Command): Command {
  return cmd
    .option('--master-key <uri>', 'the master signature key on the HSM (default: account.json MasterKeys.Signature)')
    .option('--master-pin-env <var>', 'read the master key token PIN from an environment variable')
    .option('--master-pin-file <path>', 'read the master key token PIN from the first line of a file');
}

/** Registers `meshkit admin init|connect|revoke|app|rotate|add-admin` (and A3's request commands). */
export function registerAdminCommands(program: Command): void {
  const admin = program.command('admin').description('day-to-day administration: connect, revoke, applications, administration keys');

  admin
    .command('init')
    .description('create an account directory from a ceremony\'s outputs (the ceremony directory is not modified)')
    .requiredOption('--account <dir>', 'the account directory to create')
    .requiredOption('--ceremony <dir>', 'the ceremony output directory')
    .option('--portal <url>', 'the portal to publish to (the account is created there)')
    .option('--portal-account <name>', 'the account name at the portal (user@portal)')
    .option('--portal-ca <file>', 'PEM CA certificate of an https portal')
    .option('--json', 'print JSON')
    .action(async (opts: { account: string; ceremony: string; portal?: string; portalAccount?: string; portalCa?: string; json?: boolean }) => {
      if ((opts.portal === undefined) !== (opts.portalAccount === undefined)) throw new UsageError('give --portal and --portal-account together');
      const portal: AccountPortal | undefined = opts.portal === undefined
        ? undefined
        : { Url: opts.portal, Account: opts.portalAccount as string, ...(opts.portalCa === undefined ? {} : { Ca: opts.portalCa }) };
      const acc = await initAccount(opts.account, opts.ceremony, portal);
      const summary = { account: acc.dir, identifier: acc.index.Identifier, master: acc.index.MasterSequence, personal: acc.index.PersonalSequence, administrators: acc.index.Administrators, portal: acc.index.Portal ?? null };
      emit({ json: opts.json === true }, summary, `account ${acc.index.Identifier} initialised in ${acc.dir}${portal === undefined ? '' : ` (created at ${portal.Url} as ${portal.Account})`}`);
    });

  common(admin.command('connect').description('connect a device: a new Personal Profile listing its signed Device Profile'))
    .requiredOption('--device <file>', 'the signed Device Profile (JSON)')
    .action(async (opts: CommonOptions & { device: string }) => {
      const device = parseJsonStrict(fromUtf8(await readFileOrFail(opts.device))) as object;
      const keys = new Keys(opts.module);
      try {
        const signer = await keys.signer(opts.adminKey ?? (await defaultAdminKey(opts.account)), opts, 'the administration key');
        note({ json: opts.json === true }, 'meshkit: signing with the administration key…');
        report(opts, await connectDevice({ dir: opts.account, admin: signer }, device as never));
      } finally {
        await keys.close();
      }
    });

  common(admin.command('revoke').description('revoke a device: removed, and every application it could decrypt re-keyed or flagged'))
    .requiredOption('--device <udf>', 'the device identifier (UDF)')
    .option('--reason <reason>', 'lost, stolen or retired', 'lost')
    .option('--decrypt-key <uri>', 'a key you hold that can decrypt application private data (repeat for more)', collect)
    .option('--decrypt-pin-env <var>', 'PIN / passphrase of the --decrypt-key stores, from an environment variable')
    .option('--decrypt-pin-file <path>', 'PIN / passphrase of the --decrypt-key stores, from a file')
    .action(async (opts: CommonOptions & { device: string; reason: string; decryptKey?: string[]; decryptPinEnv?: string; decryptPinFile?: string }) => {
      if (!['lost', 'stolen', 'retired'].includes(opts.reason)) throw new UsageError(`--reason expects lost, stolen or retired, got ${opts.reason}`);
      const keys = new Keys(opts.module);
      try {
        const signer = await keys.signer(opts.adminKey ?? (await defaultAdminKey(opts.account)), opts, 'the administration key');
        const decrypters: Decrypter[] = [];
        const decOpts: SecretCliOptions = {
          ...(opts.decryptPinEnv === undefined ? {} : { pinEnv: opts.decryptPinEnv }),
          ...(opts.decryptPinFile === undefined ? {} : { pinFile: opts.decryptPinFile }),
        };
        for (const uri of opts.decryptKey ?? []) decrypters.push(await keys.decrypter(uri, decOpts, `decryption key ${uri}`));
        report(opts, await revokeDevice({ dir: opts.account, admin: signer, decrypters }, opts.device, { reason: opts.reason as RevokeReason }));
      } finally {
        await keys.close();
      }
    });

  common(admin.command('app').description('create an Application Profile, or update one (signed by an application administrator)'),
    'the signing key: an administration key, or for --update a delegated device key (default: the first administrator)')
    .option('--create <type>', 'create an application of this type')
    .option('--update <id>', 'update this application')
    .option('--friendly <name>', 'a friendly name (--create)')
    .option('--admin-device <udf>', 'a device delegated to administer the application (repeat)', collect)
    .option('--decrypt-device <udf>', 'a device that may decrypt its private data (repeat)', collect)
    .option('--public <key=value>', 'a PublicData member (repeat)', collect)
    .option('--private <file>', 'shared private data, encrypted to the decrypting devices and the Master Escrow Key')
    .action(async (opts: CommonOptions & { create?: string; update?: string; friendly?: string; adminDevice?: string[]; decryptDevice?: string[]; public?: string[]; private?: string }) => {
      if ((opts.create === undefined) === (opts.update === undefined)) throw new UsageError('give exactly one of --create TYPE or --update ID');
      if (opts.update !== undefined && (opts.friendly !== undefined || opts.adminDevice !== undefined || opts.decryptDevice !== undefined)) {
        throw new UsageError('--friendly, --admin-device and --decrypt-device are for --create (they change the Personal Profile)');
      }
      const publicData = parsePublic(opts.public);
      const privateData = opts.private === undefined ? undefined : await readFileOrFail(opts.private);
      const keys = new Keys(opts.module);
      try {
        const signer = await keys.signer(opts.adminKey ?? (await defaultAdminKey(opts.account)), opts, 'the signing key');
        if (opts.create !== undefined) {
          report(opts, await createApplication({ dir: opts.account, admin: signer }, {
            type: opts.create,
            ...(opts.friendly === undefined ? {} : { friendly: opts.friendly }),
            ...(opts.adminDevice === undefined ? {} : { adminDevices: opts.adminDevice }),
            ...(opts.decryptDevice === undefined ? {} : { decryptDevices: opts.decryptDevice }),
            ...(publicData === undefined ? {} : { publicData }),
            ...(privateData === undefined ? {} : { privateData }),
          }));
        } else {
          report(opts, await updateApplication({ dir: opts.account, signer }, opts.update as string, {
            ...(publicData === undefined ? {} : { publicData }),
            ...(privateData === undefined ? {} : { privateData }),
          }));
        }
      } finally {
        await keys.close();
      }
    });

  type MasterCli = CommonOptions & { new: string; name?: string; masterKey?: string; masterPinEnv?: string; masterPinFile?: string };
  const session = async (opts: MasterCli, run: (master: Signer, newAdmin: Signer) => Promise<UpdateSummary>): Promise<void> => {
    const keys = new Keys(opts.module);
    try {
      const account = await loadAccount(opts.account);
      const masterUri = opts.masterKey ?? account.index.MasterKeys.Signature;
      if (masterUri === undefined) throw new UsageError(`account ${opts.account} names no master signature key: give --master-key URI`);
      const masterOpts: SecretCliOptions = {
        ...(opts.masterPinEnv === undefined ? {} : { pinEnv: opts.masterPinEnv }),
        ...(opts.masterPinFile === undefined ? {} : { pinFile: opts.masterPinFile }),
      };
      const master = await keys.signer(masterUri, masterOpts, 'the master signature key');
      const newAdmin = await keys.signer(opts.new, opts, 'the new administration key');
      report(opts, await run(master, newAdmin));
    } finally {
      await keys.close();
    }
  };

  masterOptions(common(admin.command('rotate').description('replace an administration key (a master-key session)'), '(unused)'))
    .requiredOption('--old <udf>', 'the administration key to retire (its UDF)')
    .requiredOption('--new <uri>', 'the new administration key (its PIN: --pin-env/--pin-file)')
    .option('--name <name>', 'the new administrator\'s name in account.json')
    .action(async (opts: MasterCli & { old: string }) => {
      await session(opts, (master, newAdmin) =>
        rotateAdmin({ dir: opts.account, master, newAdmin, key: opts.new, ...(opts.name === undefined ? {} : { name: opts.name }) }, opts.old));
    });

  masterOptions(common(admin.command('add-admin').description('enrol another administration key (a master-key session)'), '(unused)'))
    .requiredOption('--new <uri>', 'the new administration key (its PIN: --pin-env/--pin-file)')
    .option('--name <name>', 'the new administrator\'s name in account.json')
    .action(async (opts: MasterCli) => {
      await session(opts, (master, newAdmin) =>
        addAdmin({ dir: opts.account, master, newAdmin, key: opts.new, ...(opts.name === undefined ? {} : { name: opts.name }) }));
    });

  registerAdminRequestCommands(admin);
}
