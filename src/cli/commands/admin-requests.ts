/**
 * Connection requests through the portal, from both screens (docs/admin.md; thin over
 * src/admin/requests.ts and src/device/connect.ts):
 *
 *   meshkit admin pending --account DIR [--portal URL] --admin-key URI [PIN options] [--json]
 *   meshkit admin accept REQUEST-UDF --witness W --account DIR [--portal URL] --admin-key URI [--json]
 *   meshkit admin reject REQUEST-UDF --account DIR [--portal URL] --admin-key URI [--json]
 *   meshkit device connect --portal URL --account NAME --device FILE --key URI [--master UDF] [--json]
 *   meshkit device status --portal URL --account NAME --request UDF [--device FILE] [--master UDF] [--witness W] [--json]
 *
 * The portal URL and account name of the admin commands come from the account's account.json
 * (`Portal`), `--portal` overrides the URL. The admin key defaults to the account's only administrator
 * with a key reference. PINs and passphrases: `--pin-env VAR`, `--pin-file PATH`, MESHKIT_PIN /
 * MESHKIT_PASSPHRASE, a prompt, or the `pin-source` of a pkcs11: URI — never argv.
 *
 * Exit codes: 0 success (for `device status`: Pending or Accepted); 1 failure — a witness that does not
 * match (nothing signed), a request that is not pending, a decision of Refused (`device status`); 2 usage.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import { parseJsonStrict } from '../../core/jose.js';
import { readProfile, type SignedProfile } from '../../core/profiles.js';
import type { Signer } from '../../core/signer.js';
import { openKeyReference, parseKeyReference, type KeyStore } from '../../keystore/index.js';
import { loadAccount, type Account } from '../../admin/account.js';
import { acceptRequest, listPending, rejectRequest, type PendingRequest } from '../../admin/requests.js';
import { connectionStatus, requestConnection, type ConnectionStatus } from '../../device/connect.js';
import { PortalClient } from '../../portal/client.js';
import { ReportedFailure, UsageError } from '../main.js';
import { secretRequestFor } from '../pin-status.js';
import { emit, type OutputOptions } from '../output.js';
import { addSecretOptions, secretSource, type SecretCliOptions } from '../secrets.js';

interface AdminOptions extends SecretCliOptions, OutputOptions {
  account: string;
  portal?: string;
  ca?: string;
  adminKey?: string;
}

/**
 * Opens a signing key from a reference (`pkcs11:…` or `file:PATH#LABEL`) with the command's PIN /
 * passphrase options. The caller closes the store.
 * @throws KeyStoreError / Pkcs11Error as openKeyReference; UsageError for a missing secret source.
 */
export async function openSigningKey(uri: string, opts: SecretCliOptions, what: string): Promise<{ store: KeyStore; signer: Signer }> {
  const ref = parseKeyReference(uri);
  const subject = ref.kind === 'pkcs11' ? `${what} (${uri.split('?')[0] ?? uri})` : `${what} (key store ${ref.path})`;
  const { store, handle } = await openKeyReference(uri, secretSource(opts, secretRequestFor(uri, subject)), { deferUnlock: true });
  return { store, signer: handle.signer() };
}

/** The admin key reference: `--admin-key`, else the account's only administrator with a key reference. */
function adminKeyOf(account: Account, given: string | undefined): string {
  if (given !== undefined) return given;
  const withKeys = account.index.Administrators.filter((a) => a.Key !== undefined);
  const only = withKeys[0];
  if (withKeys.length === 1 && only?.Key !== undefined) return only.Key;
  throw new UsageError(withKeys.length === 0
    ? 'give the administration key with --admin-key URI (account.json names none)'
    : `give the administration key with --admin-key URI (account.json names ${withKeys.length}: ${withKeys.map((a) => a.Name).join(', ')})`);
}

/** The portal client for the admin commands: `--portal` or account.json's Portal.Url. */
function adminPortal(account: Account, opts: AdminOptions): PortalClient {
  const url = opts.portal ?? account.index.Portal?.Url;
  if (url === undefined) throw new UsageError(`account ${opts.account} has no portal: give --portal URL (and "admin init --portal-account NAME")`);
  if (account.index.Portal?.Account === undefined) throw new UsageError(`account ${opts.account} has no portal account name (account.json Portal.Account)`);
  const ca = opts.ca ?? (account.index.Portal.Ca === undefined ? undefined : `${account.dir}/${account.index.Portal.Ca}`);
  return new PortalClient(url, ca === undefined ? {} : { caFile: ca });
}

/** Runs `fn` with the account, its portal client and the admin signer; closes them after. */
async function withAdmin<T>(opts: AdminOptions, fn: (account: Account, signer: Signer, client: PortalClient) => Promise<T>): Promise<T> {
  const account = await loadAccount(opts.account);
  const client = adminPortal(account, opts);
  try {
    const { store, signer } = await openSigningKey(adminKeyOf(account, opts.adminKey), opts, 'administration key');
    try {
      return await fn(account, signer, client);
    } finally {
      await store.close();
    }
  } finally {
    client.close();
  }
}

function adminCommand(cmd: Command): Command {
  return addSecretOptions(cmd)
    .requiredOption('--account <dir>', 'the account directory (account.json names its portal)')
    .option('--portal <url>', "the portal (default: the account's Portal.Url)")
    .option('--ca <file>', "PEM CA of an https portal (default: the account's Portal.Ca)")
    .option('--admin-key <uri>', "the administration key: pkcs11:… or file:PATH#LABEL (default: the account's only one)")
    .option('--json', 'print JSON');
}

function pendingJson(p: PendingRequest): Record<string, unknown> {
  const { device: _device, ...rest } = p;
  return rest;
}

function pendingText(list: PendingRequest[]): string {
  if (list.length === 0) return 'no connection requests are waiting';
  return list.map((p) => [
    `${p.requestUdf}`,
    `  device    ${p.deviceUdf || '(unreadable)'}${p.description ? `  "${p.description}"` : ''}`,
    `  witness   ${p.shortWitness || '-'}${p.witness ? `   (full ${p.witness})` : ''}`,
    `  received  ${p.received}`,
    ...(p.problem === undefined ? [] : [`  PROBLEM   ${p.problem}`]),
  ].join('\n')).join('\n');
}

/**
 * Registers `admin pending|accept|reject` on the `admin` command, and — when `admin` hangs off the
 * program and no `device` command exists yet — the device-side `device connect|status`.
 * @throws TypeError if `admin` is not a commander Command.
 */
export function registerAdminRequestCommands(admin: Command): void {
  if (typeof admin?.command !== 'function') throw new TypeError('"admin" expected a commander Command');
  adminCommand(admin.command('pending').description('list connection requests waiting at the portal, with each device\'s fingerprint and witness'))
    .action(async (opts: AdminOptions) => {
      const list = await withAdmin(opts, (account, signer, client) => listPending(account, signer, client));
      emit(opts, { pending: list.map(pendingJson) }, () => pendingText(list));
    });

  adminCommand(admin.command('accept').description('accept a connection request: compare the witness with the device\'s screen, connect the device, sign the decision'))
    .argument('<request>', 'the request UDF (from "admin pending")')
    .requiredOption('--witness <w>', "the witness the device's screen shows (the full value or its first four groups)")
    .action(async (request: string, opts: AdminOptions & { witness: string }) => {
      const d = await withAdmin(opts, (account, signer, client) => acceptRequest(account, request, opts.witness, signer, client));
      emit(opts, d, `accepted ${d.requestUdf}: device ${d.deviceUdf} connected in Personal Profile Sequence ${String(d.personalSequence)}; decision signed by ${d.decidedBy}`);
    });

  adminCommand(admin.command('reject').description('refuse a connection request (an admin-signed decision the device can check)'))
    .argument('<request>', 'the request UDF (from "admin pending")')
    .action(async (request: string, opts: AdminOptions) => {
      const d = await withAdmin(opts, (account, signer, client) => rejectRequest(account, request, signer, client));
      emit(opts, d, `refused ${d.requestUdf} (device ${d.deviceUdf || 'unreadable'}); decision signed by ${d.decidedBy}`);
    });

  const program = admin.parent;
  if (program !== null && !program.commands.some((c) => c.name() === 'device')) registerDeviceConnectCommands(program.command('device').description('the device side: ask an account to connect this device'));
}

interface DeviceOptions extends SecretCliOptions, OutputOptions {
  portal: string;
  account: string;
  ca?: string;
  master?: string;
}

async function readSigned(file: string): Promise<SignedProfile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new MeshkitError(ErrorCode.IO, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  return readProfile(parseJsonStrict(text), 'DeviceProfile').signed;
}

function deviceClient(opts: DeviceOptions): PortalClient {
  return new PortalClient(opts.portal, opts.ca === undefined ? {} : { caFile: opts.ca });
}

function statusText(s: ConnectionStatus): string {
  switch (s.state) {
    case 'Pending': return `request ${s.requestUdf} is pending: the administrator has not decided yet`;
    case 'Refused': return `request ${s.requestUdf} was refused by ${s.decidedBy}`;
    case 'Accepted': return s.connected
      ? `request ${s.requestUdf} was accepted by ${s.decidedBy}: this device is connected (Personal Profile Sequence ${s.personal.sequence} verified)`
      : `request ${s.requestUdf} was accepted by ${s.decidedBy} (Personal Profile Sequence ${s.personal.sequence} verified; give --device FILE to check it lists this device)`;
  }
}

/**
 * Registers `connect` and `status` on a `device` command group.
 * @throws TypeError if `device` is not a commander Command.
 */
export function registerDeviceConnectCommands(device: Command): void {
  if (typeof device?.command !== 'function') throw new TypeError('"device" expected a commander Command');
  const common = (cmd: Command): Command => cmd
    .requiredOption('--portal <url>', 'the portal')
    .requiredOption('--account <name>', 'the account at the portal (user@portal)')
    .option('--master <udf>', "the account's master identifier, when known (else the portal's is taken and shown)")
    .option('--ca <file>', 'PEM CA of an https portal')
    .option('--json', 'print JSON');

  addSecretOptions(common(device.command('connect').description('post a connection request; prints the witness to compare with the administrator\'s screen')))
    .requiredOption('--device <file>', "this device's signed Device Profile")
    .requiredOption('--key <uri>', "the device's signature key: file:PATH#LABEL or pkcs11:…")
    .option('--out <file>', 'also write the request ticket (JSON) here, for "device status"')
    .action(async (opts: DeviceOptions & { device: string; key: string; out?: string }) => {
      const signedDevice = await readSigned(opts.device);
      const client = deviceClient(opts);
      try {
        const { store, signer } = await openSigningKey(opts.key, opts, 'device key');
        try {
          const ticket = await requestConnection(client, opts.account, opts.master, signedDevice, signer);
          if (opts.out !== undefined) await writeFile(opts.out, JSON.stringify(ticket, null, 2) + '\n', { mode: 0o600 });
          emit(opts, ticket, () => [
            `request  ${ticket.requestUdf}`,
            `witness  ${ticket.shortWitness}   (full ${ticket.witness})`,
            `master   ${ticket.masterId}`,
            'Compare the witness with the administrator\'s screen ("meshkit admin pending"); it must be the same.',
          ].join('\n'));
        } finally {
          await store.close();
        }
      } finally {
        client.close();
      }
    });

  common(device.command('status').description('learn the administrator\'s decision on a connection request (checked: admin-signed, for this request)'))
    .requiredOption('--request <udf>', 'the request UDF (from "device connect")')
    .option('--device <file>', "this device's signed Device Profile: Accepted then requires the Personal Profile to list it")
    .option('--witness <w>', 'the witness "device connect" printed: the decision must carry it')
    .action(async (opts: DeviceOptions & { request: string; device?: string; witness?: string }) => {
      const client = deviceClient(opts);
      let status: ConnectionStatus;
      try {
        status = await connectionStatus(client, opts.account, opts.request, {
          ...(opts.master === undefined ? {} : { masterId: opts.master }),
          ...(opts.device === undefined ? {} : { device: await readSigned(opts.device) }),
          ...(opts.witness === undefined ? {} : { witness: opts.witness }),
        });
      } finally {
        client.close();
      }
      const json = status.state === 'Accepted'
        ? { state: status.state, requestUdf: status.requestUdf, decidedBy: status.decidedBy, witness: status.witness, connected: status.connected, personalSequence: status.personal.sequence, master: status.personal.identifier }
        : status;
      if (status.state === 'Refused') {
        if (!opts.json) throw new MeshkitError(ErrorCode.PROFILE_NOT_CONNECTED, statusText(status));
        emit(opts, json, '');
        throw new ReportedFailure(statusText(status));
      }
      emit(opts, json, () => statusText(status));
    });
}
