/**
 * `meshkit portal …`: run the Mesh portal and check its notary log offline (docs/portal.md).
 *
 *   meshkit portal serve [--db sqlite:FILE|postgres://…] [--listen HOST:PORT] [--tls-cert F --tls-key F]
 *                        [--plain-http] [--portal-key file:PATH#portal] [--max-body N]
 *                        [--quota-updates N/h] [--quota-accounts N/h] [--head-interval N] [--head-seconds S]
 *   meshkit portal log export --db … [--head FILE]          the log as JSON lines on stdout
 *   meshkit portal log verify FILE [--head FILE] [--portal-key-jwk FILE]
 *
 * `serve` prints `listening on URL` (one line on stdout; with --json one JSON document) when ready and runs
 * until SIGTERM / SIGINT, then stops accepting, finishes the requests in flight, signs the log head and
 * closes the database. The portal key is created (Ed25519) in its software key store on first start; the
 * store's passphrase comes from --passphrase-file / --passphrase-env / MESHKIT_PASSPHRASE (never argv).
 * `log verify` exits 1 naming the first entry that does not hold.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { Command, InvalidArgumentError } from 'commander';
import { ErrorCode, KeyStoreError, LogError, MeshkitError } from '../../core/errors.js';
import { verifyLog, verifyLogHead } from '../../core/hashlog.js';
import { parseJsonStrict } from '../../core/jose.js';
import { decodePublicKey, keyId, publicKeyFromJwk, type PublicKey } from '../../core/keys.js';
import {
  MAX_KDF_COST,
  MIN_KDF_COST,
  SoftwareKeyStore,
  openKeyReference,
  parseKeyReference,
  type KeyStore,
} from '../../keystore/index.js';
import type { Signer } from '../../core/signer.js';
import { MAX_LOG_ENTRIES, signedHeadPayload } from '../../portal/notary.js';
import { DEFAULT_MAX_BODY, isLoopback, startPortalServer } from '../../portal/server.js';
import { openStorage } from '../../portal/storage.js';
import { DEFAULT_QUOTAS } from '../../portal/transactions.js';
import { ReportedFailure, UsageError } from '../main.js';
import { emit, note } from '../output.js';
import { addSecretOptions, secretSource, type SecretCliOptions } from '../secrets.js';
import { registerPortalFederationCommands } from './portal-federation.js';

interface ServeOptions extends SecretCliOptions {
  db: string;
  listen: string;
  tlsCert?: string;
  tlsKey?: string;
  plainHttp?: boolean;
  portalKey: string;
  maxBody: number;
  quotaUpdates: number;
  quotaAccounts: number;
  headInterval: number;
  headSeconds: number;
  kdfCost?: number;
  json?: boolean;
}

function positiveInt(min: number, what: string) {
  return (value: string): number => {
    const n = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected ${what} (an integer ≥ ${min})`);
    return n;
  };
}

/** `N` or `N/h` (0 = unlimited). */
function perHour(value: string): number {
  const m = /^(\d+)(?:\/h)?$/.exec(value);
  const n = m?.[1] === undefined ? NaN : Number(m[1]);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('expected N/h (a count per hour; 0 = unlimited)');
  return n;
}

/**
 * Parses `HOST:PORT` (`[v6]:PORT` for IPv6).
 * @throws UsageError for anything else.
 */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  const host = m?.[1] ?? m?.[2];
  if (m === null || host === undefined || !Number.isSafeInteger(port) || port > 65535) {
    throw new UsageError(`--listen expected HOST:PORT (e.g. 127.0.0.1:4433 or [::1]:4433), got ${JSON.stringify(value)}`);
  }
  return { host, port };
}

/**
 * Opens (creating on first start) the portal key: an Ed25519 key in a software key store, or a key on a
 * PKCS#11 token. The caller closes `store`.
 */
async function openPortalKey(uri: string, opts: ServeOptions): Promise<{ store: KeyStore; signer: Signer; created: boolean }> {
  const ref = parseKeyReference(uri);
  if (ref.kind === 'pkcs11') {
    const { store, handle } = await openKeyReference(uri, secretSource(opts, { purpose: 'PIN', subject: 'the portal key token' }));
    return { store, signer: handle.signer(), created: false };
  }
  const source = secretSource(opts, { subject: `portal key store ${ref.path}` });
  const store = await SoftwareKeyStore.open(ref.path, source, { create: true, ...(opts.kdfCost === undefined ? {} : { kdfCost: opts.kdfCost }) });
  try {
    let created = false;
    let handle;
    try {
      handle = await store.get(ref.label);
    } catch (e) {
      if (!(e instanceof KeyStoreError && e.code === ErrorCode.KEYSTORE_NOT_FOUND)) throw e;
      handle = await store.generate(ref.label, 'Ed25519');
      created = true;
    }
    if (handle.info.usage !== 'sign') throw new UsageError(`the portal key ${uri} is not a signature key`);
    return { store, signer: handle.signer(), created };
  } catch (e) {
    await store.close();
    throw e;
  }
}

async function serve(opts: ServeOptions): Promise<void> {
  const out = { json: opts.json === true };
  const { host, port } = parseListen(opts.listen);
  if (opts.plainHttp === true && !isLoopback(host)) throw new UsageError(`--plain-http is allowed only on a loopback address, not ${host}`);
  if (opts.plainHttp !== true && (opts.tlsCert === undefined || opts.tlsKey === undefined)) {
    throw new UsageError('give --tls-cert and --tls-key (or --plain-http on a loopback address)');
  }
  const tls = opts.plainHttp === true ? undefined : { cert: await readFileOrFail(opts.tlsCert as string), key: await readFileOrFail(opts.tlsKey as string) };
  const key = await openPortalKey(opts.portalKey, opts);
  let storage;
  try {
    storage = await openStorage(opts.db);
  } catch (e) {
    await key.store.close();
    throw e;
  }
  let portal;
  try {
    portal = await startPortalServer({
      storage, portalKey: key.signer, host, port, maxBody: opts.maxBody,
      quotas: { updatesPerHour: opts.quotaUpdates, accountsPerHour: opts.quotaAccounts },
      headEvery: opts.headInterval, headSeconds: opts.headSeconds,
      ...(opts.plainHttp === true ? { plainHttp: true } : {}),
      ...(tls === undefined ? {} : { tls }),
    });
  } catch (e) {
    await storage.close().catch(() => undefined);
    await key.store.close();
    throw e;
  }
  if (key.created) note(out, `meshkit: created the portal key ${key.signer.keyId} in ${opts.portalKey}`);
  emit(out, { url: portal.url, portal: key.signer.keyId }, `listening on ${portal.url}`);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  note(out, `meshkit: ${signal}: stopping the portal (finishing requests in flight, signing the log head)`);
  try {
    await portal.close();
  } finally {
    await key.store.close();
  }
}

async function readFileOrFail(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new MeshkitError(ErrorCode.IO, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

async function exportLog(opts: { db: string; head?: string }): Promise<void> {
  const storage = await openStorage(opts.db);
  try {
    const { count, head } = await storage.transaction(async (tx) => ({ count: await tx.logCount(), head: await tx.latestSignedHead() }));
    for (let from = 0; from < count; from += MAX_LOG_ENTRIES) {
      const lines = await storage.transaction((tx) => tx.logLines(from, Math.min(MAX_LOG_ENTRIES, count - from)));
      const text = lines.map((l) => `${l}\n`).join('');
      if (!process.stdout.write(text)) await new Promise<void>((resolve) => process.stdout.once('drain', () => resolve()));
    }
    if (opts.head !== undefined) {
      if (head === undefined) throw new MeshkitError(ErrorCode.LOG_SIGNATURE, 'the portal has no signed log head yet');
      await writeFile(opts.head, `${head.jws}\n`);
    }
  } finally {
    await storage.close();
  }
}

function loadPublicKey(text: string, file: string): PublicKey {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    const value = parseJsonStrict(trimmed) as Record<string, unknown>;
    // A bare JWK, or `meshkit key show --json` output ({publicJwk: …}).
    return publicKeyFromJwk(typeof value.publicJwk === 'object' ? value.publicJwk : value);
  }
  try {
    return decodePublicKey(trimmed);
  } catch (e) {
    throw new MeshkitError(ErrorCode.KEY_INVALID, `${file} holds no public key (a JWK, "key show --json" output, or PEM)`, { cause: e });
  }
}

interface VerifyReport {
  ok: boolean;
  count: number;
  head: string | null;
  signedHead?: { count: number; head: string | null; time: string; signatureChecked: boolean; keyId?: string };
  index?: number;
  error?: string;
}

async function verifyLogFile(file: string, opts: { head?: string; portalKeyJwk?: string; json?: boolean }): Promise<void> {
  const out = { json: opts.json === true };
  const text = (await readFileOrFail(file)).toString('utf8');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const report: VerifyReport = { ok: false, count: lines.length, head: null };
  const failWith = (e: unknown): never => {
    report.error = e instanceof Error ? e.message : String(e);
    if (e instanceof LogError && e.index !== undefined) report.index = e.index;
    if (out.json) {
      emit(out, report, '');
      throw new ReportedFailure(report.error);
    }
    throw e;
  };
  try {
    const verified = verifyLog(lines);
    report.head = verified.head;
  } catch (e) {
    failWith(e);
  }
  if (opts.head !== undefined) {
    try {
      const jws = parseJsonStrict((await readFileOrFail(opts.head)).toString('utf8').trim());
      const payload = signedHeadPayload(jws as never);
      if (payload.Count > lines.length) {
        throw new LogError(ErrorCode.LOG_SIGNATURE, `the signed head covers ${payload.Count} entries but the log has only ${lines.length}`);
      }
      const prefix = lines.slice(0, payload.Count);
      if (opts.portalKeyJwk !== undefined) {
        const key = loadPublicKey((await readFileOrFail(opts.portalKeyJwk)).toString('utf8'), opts.portalKeyJwk);
        const id = keyId(key);
        const checked = await verifyLogHead(jws, prefix, (kid) => (kid === id ? key : undefined));
        report.signedHead = { count: checked.Count, head: checked.Head, time: checked.Time, signatureChecked: true, keyId: checked.keyId };
      } else {
        const { count, head } = verifyLog(prefix);
        if (count !== payload.Count || head !== payload.Head) {
          throw new LogError(ErrorCode.LOG_SIGNATURE, `the signed head (Count ${payload.Count}) does not match the log's entry ${payload.Count - 1}`);
        }
        report.signedHead = { count: payload.Count, head: payload.Head, time: payload.Time, signatureChecked: false };
      }
    } catch (e) {
      failWith(e);
    }
  }
  report.ok = true;
  emit(out, report, () => [
    `log verified: ${report.count} entries, head ${report.head ?? '(empty)'}`,
    ...(report.signedHead === undefined ? [] : [
      `signed head: Count ${report.signedHead.count} at ${report.signedHead.time} matches the log; signature ${report.signedHead.signatureChecked ? `verified (portal key ${report.signedHead.keyId ?? ''})` : 'NOT checked (give --portal-key-jwk)'}`,
    ]),
  ].join('\n'));
}

/** Registers `meshkit portal serve|log export|log verify`. */
export function registerPortalCommands(program: Command): void {
  const portal = program.command('portal').description('the Mesh portal: serve it, export and verify its notary log');

  addSecretOptions(
    portal
      .command('serve')
      .description('run the portal (HTTPS; plain HTTP only on loopback with --plain-http)')
      .option('--db <spec>', 'database: sqlite:FILE or postgres://…', 'sqlite:portal.db')
      .option('--listen <host:port>', 'address to listen on', '127.0.0.1:4433')
      .option('--tls-cert <file>', 'PEM certificate (chain)')
      .option('--tls-key <file>', 'PEM private key of the certificate')
      .option('--plain-http', 'serve plain HTTP (only on a loopback address)')
      .option('--portal-key <uri>', 'the portal key (created on first start): file:PATH#LABEL or pkcs11:…', 'file:portal-key.json#portal')
      .option('--max-body <bytes>', 'largest request body accepted', positiveInt(64, 'a size in bytes'), DEFAULT_MAX_BODY)
      .option('--quota-updates <n/h>', 'state changes per account per hour (0 = unlimited)', perHour, DEFAULT_QUOTAS.updatesPerHour)
      .option('--quota-accounts <n/h>', 'accounts created per client address per hour (0 = unlimited)', perHour, DEFAULT_QUOTAS.accountsPerHour)
      .option('--head-interval <n>', 'sign the log head every N entries', positiveInt(1, 'a count'), 16)
      .option('--head-seconds <s>', 'sign the log head every S seconds while entries are unsigned (0 = never)', positiveInt(0, 'seconds'), 10)
      .option('--kdf-cost <n>', `scrypt cost of a new portal key store, log2 N (${MIN_KDF_COST}-${MAX_KDF_COST})`, positiveInt(MIN_KDF_COST, 'log2 N')),
  )
    .option('--json', 'print the URL as JSON')
    .action(serve);

  const log = portal.command('log').description('the portal notary log');
  log
    .command('export')
    .description('print the notary log as JSON lines (one entry a line)')
    .requiredOption('--db <spec>', 'database: sqlite:FILE or postgres://…')
    .option('--head <file>', 'also write the latest signed head (JWS) to FILE')
    .action(exportLog);
  log
    .command('verify')
    .description('check an exported log offline (and a signed head); names the first entry that does not hold')
    .argument('<file>', 'the exported log (JSON lines)')
    .option('--head <file>', 'a signed head (JWS) to check against the log')
    .option('--portal-key-jwk <file>', 'the portal public key (JWK, PEM, or "key show --json" output) to check the head signature')
    .option('--json', 'print JSON')
    .action(verifyLogFile);

  registerPortalFederationCommands(portal);
}
