/**
 * `meshkit portal federate`: watch peer portals' signed log heads (docs/portal.md "Federation";
 * the service is src/portal/federation.ts).
 *
 *   meshkit portal federate --peer URL [--peer URL…] [--state FILE] [--peer-key URL=FILE…]
 *                           [--ca FILE] [--self URL] [--interval S] [--timeout MS] [--json]
 *
 * Each round asks every peer for Hello and its signed log head, checks the head extends the one
 * stored for that peer's portal key (in the --state file, default federation.json), stores it, and
 * records a report when it does not. The peer's portal key comes from Hello (`PortalKey`) or from
 * --peer-key URL=FILE (a JWK, PEM, or `key show --json` output). --self hands the checked heads to
 * our own portal (FederationHeads). Without --interval one round runs; with it, rounds repeat every
 * S seconds until SIGINT / SIGTERM.
 *
 * Exit codes: 0 no contradiction; 1 a peer's log contradicts its earlier head (reported, one line
 * per contradiction on stderr, or in the --json document) or the state file cannot be used;
 * 2 usage. An unreachable peer is printed but is not a failure.
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import { parseJsonStrict } from '../../core/jose.js';
import { decodePublicKey, publicKeyFromJwk, publicKeyToJwk } from '../../core/keys.js';
import type { PublicJwk } from '../../core/signer.js';
import { PortalClient, type PortalClientOptions } from '../../portal/client.js';
import { federate, FilePeerHeadStore, type PeerOutcome } from '../../portal/federation.js';
import { ReportedFailure, UsageError } from '../main.js';
import { emit } from '../output.js';

interface FederateOptions {
  peer: string[];
  state: string;
  peerKey?: string[];
  ca?: string;
  self?: string;
  interval?: number;
  timeout?: number;
  json?: boolean;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number of seconds > 0');
  return n;
}

function millis(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected milliseconds ≥ 1');
  return n;
}

function origin(url: string): string {
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    return u.origin;
  } catch {
    throw new UsageError(`not a portal URL: ${url}`);
  }
}

async function loadPeerKeys(specs: string[]): Promise<Record<string, PublicJwk>> {
  const keys: Record<string, PublicJwk> = {};
  for (const spec of specs) {
    const eq = spec.lastIndexOf('=');
    if (eq <= 0) throw new UsageError(`--peer-key expects URL=FILE, got ${spec}`);
    const url = origin(spec.slice(0, eq));
    const file = spec.slice(eq + 1);
    let text: string;
    try {
      text = (await readFile(file, 'utf8')).trim();
    } catch (e) {
      throw new MeshkitError(ErrorCode.IO, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
    let key;
    if (text.startsWith('{')) {
      const value = parseJsonStrict(text) as Record<string, unknown>;
      key = publicKeyFromJwk(typeof value['publicJwk'] === 'object' ? value['publicJwk'] : value);
    } else {
      key = decodePublicKey(text);
    }
    keys[url] = publicKeyToJwk(key);
  }
  return keys;
}

function describeOutcome(o: PeerOutcome): string {
  switch (o.status) {
    case 'first-contact': return `${o.peer}: first contact, portal ${o.portal ?? '?'}, log Count ${o.count ?? 0} stored`;
    case 'advanced': return `${o.peer}: head advanced to Count ${o.count ?? 0}, extends the stored one`;
    case 'unchanged': return `${o.peer}: head unchanged (Count ${o.count ?? 0})`;
    case 'contradiction': return `${o.peer}: CONTRADICTION — ${o.report?.problem ?? ''}`;
    case 'unreachable': return `${o.peer}: unreachable (${o.error ?? ''})`;
    case 'failed': return `${o.peer}: not checked (${o.error ?? ''})`;
  }
}

async function runFederate(opts: FederateOptions): Promise<void> {
  const out = { json: opts.json === true };
  if (opts.peer.length === 0) throw new UsageError('give at least one --peer URL');
  const peers = opts.peer.map((p) => {
    origin(p);
    return p;
  });
  const peerKeys = await loadPeerKeys(opts.peerKey ?? []);
  const client: PortalClientOptions = { retries: 2, ...(opts.timeout === undefined ? {} : { timeoutMs: opts.timeout }), ...(opts.ca === undefined ? {} : { caFile: opts.ca }) };
  const store = new FilePeerHeadStore(opts.state);
  const self = opts.self === undefined ? undefined : new PortalClient(opts.self, client);
  let contradictions = 0;
  const rounds: PeerOutcome[][] = [];
  let stop = false;
  let wake: (() => void) | undefined;
  const onSignal = (): void => {
    stop = true;
    wake?.();
  };
  if (opts.interval !== undefined) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  try {
    do {
      const outcomes = await federate(peers, store, { client, peerKeys, ...(self === undefined ? {} : { self }) });
      contradictions += outcomes.filter((o) => o.status === 'contradiction').length;
      if (opts.interval === undefined || out.json) rounds.push(outcomes);
      if (!out.json) {
        for (const o of outcomes) (o.status === 'contradiction' ? process.stderr : process.stdout).write(`${describeOutcome(o)}\n`);
      }
      if (opts.interval === undefined || stop) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, (opts.interval ?? 0) * 1000).unref();
      });
    } while (!stop);
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    self?.close();
  }
  if (out.json) emit(out, { ok: contradictions === 0, state: opts.state, rounds, reports: await store.reports() }, '');
  if (contradictions > 0) {
    if (out.json) throw new ReportedFailure(`${contradictions} contradiction(s)`);
    throw new MeshkitError(ErrorCode.PORTAL_FEDERATION, `${contradictions} peer head(s) contradict the stored ones; reports kept in ${opts.state}`);
  }
}

/**
 * Registers `portal federate` on the `portal` command (called from src/cli/commands/portal.ts).
 * @throws nothing; the command's action throws UsageError / MeshkitError as documented above.
 */
export function registerPortalFederationCommands(portalCommand: Command): void {
  portalCommand
    .command('federate')
    .description("check peer portals' signed log heads against the ones stored; report contradictions")
    .option('--peer <url>', 'a peer portal (repeatable)', collect, [])
    .option('--state <file>', 'where peer heads and reports are kept', 'federation.json')
    .option('--peer-key <url=file>', "a peer's portal public key (JWK/PEM) when its Hello carries none (repeatable)", collect)
    .option('--ca <file>', 'PEM CA certificate(s) to trust for https peers')
    .option('--self <url>', 'our own portal: hand it the checked heads (FederationHeads)')
    .option('--interval <s>', 'repeat every S seconds until SIGINT/SIGTERM', seconds)
    .option('--timeout <ms>', 'per-request timeout', millis)
    .option('--json', 'print one JSON document')
    .action(runFederate);
}
