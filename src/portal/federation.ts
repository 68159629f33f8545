/**
 * Portal federation, first step (docs/portal.md "Federation"): portals watch each other's signed
 * log heads so that none can rewrite its history unnoticed.
 *
 * For each peer we keep its latest signed head, by the peer's portal key UDF. A new head from the
 * peer must extend the stored one: it is signed by the same portal key, its Count is ≥ the stored
 * Count, and the peer's log entries from the stored Count−1 to the new Count−1 chain — the first
 * has the stored Head id and the last is the new Head (checked with `LogEntries` from the peer and
 * hashlog `verifyInclusion`). Anything else — same Count with a different Head, a shorter log, an
 * entry that does not chain, a head whose signature does not hold — is a contradiction: it is
 * recorded as a {@link FederationReport} (peer, old head, new head, what does not hold) and the
 * stored head is kept as evidence (it is not replaced by the contradicting one).
 *
 * The peer's portal key (needed to check signatures) comes from `Hello` (`PortalKey`, a public JWK
 * whose key UDF must be the `Portal` member) on first contact, or is given by the caller; after
 * that the stored key is used and a change of key is a contradiction.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { aobject, astring, describe, fromUtf8 } from '../core/bytes.js';
import { ErrorCode, MeshkitError } from '../core/errors.js';
import { LOG_HEAD_CTY, verifyInclusion, type LogHeadPayload } from '../core/hashlog.js';
import { parseJsonStrict, verifyJws, type JwsGeneral } from '../core/jose.js';
import { keyId, publicKeyFromJwk } from '../core/keys.js';
import type { PublicJwk } from '../core/signer.js';
import { PortalClient, PortalError, type PortalClientOptions } from './client.js';
import { TransactionError, type TransactionContext } from './transactions.js';

/** Largest page `LogEntries` serves. */
const PAGE = 1000;

/** What we keep about one peer. */
export interface StoredPeerHead {
  /** The peer's portal key UDF (the key of this record). */
  portal: string;
  /** The peer's portal public key (checks its head signatures). */
  key: PublicJwk;
  /** Where it was last reached. */
  url: string;
  /** Its latest signed head that extended the one before. */
  head: JwsGeneral;
  count: number;
  headId: string | null;
  /** When we checked it (ISO 8601). */
  checked: string;
}

/** A contradiction found in a peer's log. */
export interface FederationReport {
  /** The peer's URL. */
  peer: string;
  /** The peer's portal key UDF. */
  portal: string;
  /** The stored head the new one contradicts (null: the new head could not be checked at all). */
  oldHead: JwsGeneral | null;
  /** The head the peer presents now. */
  newHead: JwsGeneral;
  /** What does not hold. */
  problem: string;
  /** When it was found (ISO 8601). */
  detected: string;
}

/** Outcome of {@link checkPeerHead}. */
export type PeerHeadCheck =
  | { ok: true; stored: StoredPeerHead; advanced: boolean }
  | { ok: false; report: FederationReport };

/** Where peer heads and reports are kept. */
export interface PeerHeadStore {
  get(portal: string): Promise<StoredPeerHead | undefined>;
  put(stored: StoredPeerHead): Promise<void>;
  addReport(report: FederationReport): Promise<void>;
  reports(): Promise<FederationReport[]>;
  heads(): Promise<StoredPeerHead[]>;
}

/** A {@link PeerHeadStore} in memory. */
export class MemoryPeerHeadStore implements PeerHeadStore {
  readonly #heads = new Map<string, StoredPeerHead>();
  readonly #reports: FederationReport[] = [];
  get(portal: string): Promise<StoredPeerHead | undefined> {
    return Promise.resolve(this.#heads.get(portal));
  }
  put(stored: StoredPeerHead): Promise<void> {
    this.#heads.set(stored.portal, stored);
    return Promise.resolve();
  }
  addReport(report: FederationReport): Promise<void> {
    this.#reports.push(report);
    return Promise.resolve();
  }
  reports(): Promise<FederationReport[]> {
    return Promise.resolve([...this.#reports]);
  }
  heads(): Promise<StoredPeerHead[]> {
    return Promise.resolve([...this.#heads.values()]);
  }
}

interface FileState { Heads: StoredPeerHead[]; Reports: FederationReport[] }

/**
 * A {@link PeerHeadStore} in one JSON file (`{"Heads": […], "Reports": […]}`), rewritten atomically
 * (write to a temporary file, then rename) on every change.
 */
export class FilePeerHeadStore implements PeerHeadStore {
  readonly path: string;
  #state: FileState | undefined;
  /** @throws TypeError if path is not a string. */
  constructor(path: string) {
    this.path = astring(path, 'path');
  }
  async #load(): Promise<FileState> {
    if (this.#state !== undefined) return this.#state;
    let text: string | undefined;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new MeshkitError(ErrorCode.IO, `cannot read ${this.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
      }
    }
    if (text === undefined) {
      this.#state = { Heads: [], Reports: [] };
    } else {
      const value = parseJsonStrict(text) as Partial<FileState> | null;
      if (typeof value !== 'object' || value === null || !Array.isArray(value.Heads) || !Array.isArray(value.Reports)) {
        throw new MeshkitError(ErrorCode.PORTAL_FEDERATION, `${this.path} is not a federation state file ({"Heads": […], "Reports": […]})`);
      }
      this.#state = { Heads: value.Heads, Reports: value.Reports };
    }
    return this.#state;
  }
  async #save(): Promise<void> {
    const state = await this.#load();
    const tmp = `${this.path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await mkdir(dirname(this.path), { recursive: true });
      await writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
      await rename(tmp, this.path);
    } catch (e) {
      throw new MeshkitError(ErrorCode.IO, `cannot write ${this.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
  }
  async get(portal: string): Promise<StoredPeerHead | undefined> {
    return (await this.#load()).Heads.find((h) => h.portal === portal);
  }
  async put(stored: StoredPeerHead): Promise<void> {
    const state = await this.#load();
    state.Heads = [...state.Heads.filter((h) => h.portal !== stored.portal), stored];
    await this.#save();
  }
  async addReport(report: FederationReport): Promise<void> {
    (await this.#load()).Reports.push(report);
    await this.#save();
  }
  async reports(): Promise<FederationReport[]> {
    return [...(await this.#load()).Reports];
  }
  async heads(): Promise<StoredPeerHead[]> {
    return [...(await this.#load()).Heads];
  }
}

/** Decodes the payload of a signed head without checking its signature. @throws MeshkitError ERR_PORTAL_FEDERATION */
export function headPayload(jws: JwsGeneral): LogHeadPayload {
  try {
    const value = parseJsonStrict(fromUtf8(Buffer.from(astring(jws.payload, 'head.payload'), 'base64url'))) as { LogHead?: LogHeadPayload } | null;
    const h = value?.LogHead;
    if (h === undefined || !Number.isSafeInteger(h.Count) || h.Count < 0 || (h.Head !== null && typeof h.Head !== 'string')) throw new Error('not {"LogHead":{Count,Head,Time}}');
    return h;
  } catch (e) {
    throw new MeshkitError(ErrorCode.PORTAL_FEDERATION, `signed head is malformed: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Checks a head `newHead` a peer presents against what we stored about it.
 *
 * @param peer a client of the peer (LogEntries is asked from it).
 * @param stored what we stored (undefined: first contact).
 * @param newHead the peer's current signed head.
 * @param opts.key the peer's portal key (required on first contact; afterwards the stored key is used).
 * @param opts.portal the peer's portal key UDF as it announced it (default: the key's UDF).
 * @returns `ok` with the record to store, or a {@link FederationReport}.
 * @throws TypeError for bad arguments; MeshkitError `ERR_PORTAL_FEDERATION` when there is no key to
 *   check with; PortalError when the peer cannot be reached (that is not a contradiction).
 */
export async function checkPeerHead(
  peer: PortalClient,
  stored: StoredPeerHead | undefined,
  newHead: JwsGeneral,
  opts: { key?: PublicJwk; portal?: string; now?: Date } = {},
): Promise<PeerHeadCheck> {
  if (!(peer instanceof PortalClient)) throw new TypeError(`"peer" expected a PortalClient, got ${describe(peer)}`);
  aobject(newHead, 'newHead');
  if (stored !== undefined) aobject(stored, 'stored');
  const now = (opts.now ?? new Date()).toISOString();
  const key = stored?.key ?? opts.key;
  if (key === undefined) throw new MeshkitError(ErrorCode.PORTAL_FEDERATION, `no portal key known for ${peer.baseUrl.origin} (Hello has no PortalKey; give it)`);
  const portal = stored?.portal ?? opts.portal ?? keyId(key);
  const report = (problem: string): PeerHeadCheck => ({
    ok: false,
    report: { peer: peer.baseUrl.origin, portal, oldHead: stored?.head ?? null, newHead, problem, detected: now },
  });
  if (keyId(publicKeyFromJwk(key)) !== portal) return report(`the portal key given does not have the UDF ${portal}`);
  if (stored !== undefined && opts.portal !== undefined && opts.portal !== stored.portal) {
    return report(`the peer now announces portal key ${opts.portal}, not ${stored.portal}`);
  }

  // 1. The signature, by the peer's portal key.
  let head: LogHeadPayload;
  try {
    const v = await verifyJws(newHead, (kid) => (kid === portal ? key : undefined));
    if (v.protectedHeader.cty !== LOG_HEAD_CTY) return report(`the new head has cty ${String(v.protectedHeader.cty)}, not ${LOG_HEAD_CTY}`);
    head = headPayload(newHead);
  } catch (e) {
    if (e instanceof MeshkitError) return report(`the new head's signature does not hold under portal key ${portal}: ${e.message}`);
    throw e;
  }
  const record = (advanced: boolean): PeerHeadCheck => ({
    ok: true,
    advanced,
    stored: { portal, key, url: peer.baseUrl.origin, head: newHead, count: head.Count, headId: head.Head, checked: now },
  });

  // 2. Against the stored head.
  const old = stored === undefined ? undefined : { Count: stored.count, Head: stored.headId };
  if (old !== undefined) {
    if (head.Count < old.Count) return report(`the log is shorter: the new head has Count ${head.Count}, the stored one ${old.Count}`);
    if (head.Count === old.Count) {
      return head.Head === old.Head ? record(false) : report(`same Count ${head.Count}, different Head (${String(head.Head)} ≠ ${String(old.Head)})`);
    }
  }
  if (head.Count === 0) return record(stored === undefined);

  // 3. The peer's entries from the stored Count−1 (or the last entry, on first contact) to the new head.
  const from = old !== undefined && old.Count > 0 ? old.Count - 1 : head.Count - 1;
  const lines: string[] = [];
  while (from + lines.length < head.Count) {
    const want = Math.min(PAGE, head.Count - from - lines.length);
    const page = (await peer.logEntries(from + lines.length, want)).Lines;
    if (!Array.isArray(page)) return report('LogEntries did not return Lines');
    lines.push(...page.slice(0, want));
    if (page.length < want) {
      return report(`the peer's log ends at ${from + lines.length} entries but its head claims ${head.Count}`);
    }
  }
  const first = lines[0];
  if (first === undefined) return report('LogEntries returned nothing');
  if (old !== undefined && old.Count > 0) {
    let firstId: unknown;
    try {
      firstId = (parseJsonStrict(first) as { Id?: unknown } | null)?.Id;
    } catch {
      firstId = undefined;
    }
    if (firstId !== old.Head) {
      return report(`the peer's entry ${old.Count - 1} has Id ${String(firstId)}, not the stored Head ${String(old.Head)}: its log contradicts its earlier head`);
    }
  }
  try {
    verifyInclusion(first, lines, head);
  } catch (e) {
    if (e instanceof MeshkitError) return report(`the peer's entries ${from}…${head.Count - 1} do not chain to the new head: ${e.message}`);
    throw e;
  }
  return record(true);
}

/** What {@link federate} did with one peer. */
export interface PeerOutcome {
  peer: string;
  portal?: string;
  status: 'first-contact' | 'advanced' | 'unchanged' | 'contradiction' | 'unreachable' | 'failed';
  count?: number;
  report?: FederationReport;
  error?: string;
}

/** Options of {@link federate}. */
export interface FederateOptions {
  /** Client options for the peers (timeouts, retries, CA). */
  client?: PortalClientOptions;
  /** Peer portal keys by URL origin (else taken from Hello on first contact). */
  peerKeys?: Record<string, PublicJwk>;
  /** Our own portal: the peers' checked heads are handed to it with FederationHeads. */
  self?: PortalClient;
}

/**
 * One round of federation: for each peer, `Hello` + `LogHead`, {@link checkPeerHead} against the
 * stored head, store the head if it extends the old one, record a report if it does not.
 *
 * @param peers peer URLs or clients.
 * @param store where heads and reports are kept (default: in memory, for this call).
 * @returns one outcome per peer, in order; an unreachable peer is an outcome, not an exception.
 * @throws TypeError for bad arguments; MeshkitError `ERR_IO` if the store cannot be written.
 */
export async function federate(peers: Array<string | PortalClient>, store: PeerHeadStore = new MemoryPeerHeadStore(), opts: FederateOptions = {}): Promise<PeerOutcome[]> {
  if (!Array.isArray(peers)) throw new TypeError(`"peers" expected an array of URLs, got ${describe(peers)}`);
  aobject(store, 'store');
  const outcomes: PeerOutcome[] = [];
  const accepted: JwsGeneral[] = [];
  for (const p of peers) {
    const client = typeof p === 'string' ? new PortalClient(p, opts.client) : p;
    const origin = client.baseUrl.origin;
    try {
      const hello = await client.hello();
      const announced = typeof hello.Portal === 'string' ? hello.Portal : undefined;
      const helloKey = (hello as { PortalKey?: unknown }).PortalKey;
      const key = opts.peerKeys?.[origin] ?? (typeof helloKey === 'object' && helloKey !== null ? (helloKey as PublicJwk) : undefined);
      const portal = announced ?? (key === undefined ? undefined : keyId(key));
      const stored = portal === undefined ? undefined : await store.get(portal);
      const { Head: newHead } = await client.logHead();
      if (newHead === null) {
        outcomes.push({ peer: origin, ...(portal === undefined ? {} : { portal }), status: 'unchanged', count: 0 });
        continue;
      }
      const result = await checkPeerHead(client, stored, newHead, {
        ...(key === undefined ? {} : { key }),
        ...(portal === undefined ? {} : { portal }),
      });
      if (!result.ok) {
        await store.addReport(result.report);
        outcomes.push({ peer: origin, portal: result.report.portal, status: 'contradiction', report: result.report });
        continue;
      }
      await store.put(result.stored);
      accepted.push(newHead);
      outcomes.push({
        peer: origin,
        portal: result.stored.portal,
        status: stored === undefined ? 'first-contact' : result.advanced ? 'advanced' : 'unchanged',
        count: result.stored.count,
      });
    } catch (e) {
      if (!(e instanceof MeshkitError)) throw e;
      outcomes.push({ peer: origin, status: e instanceof PortalError ? 'unreachable' : 'failed', error: `${e.message} [${e.code}]` });
    } finally {
      if (typeof p === 'string') client.close();
    }
  }
  if (opts.self !== undefined && accepted.length > 0) await opts.self.federationHeads(accepted);
  return outcomes;
}

/** Most heads one FederationHeads request may carry. */
export const MAX_FEDERATION_HEADS = 64;

/**
 * The portal side of `FederationHeads` (pass it as `federation` to startPortalServer): each head in
 * `Heads` whose signing portal we already follow (a record in `store`, made by {@link federate}) is
 * checked with {@link checkPeerHead} against that peer (at its stored URL) and stored or reported;
 * heads of portals we do not follow are ignored (we have no key for them). The answer is our own
 * head (signed now if the log grew since the last signed head), what we know (`Known`: `{<portal UDF>: latest head}`) and what became of each
 * head given (`Checked`).
 *
 * @throws TransactionError 400 for a malformed `Heads` (not an array of at most 64 JWS objects).
 */
export function federationHeadsHandler(
  store: PeerHeadStore,
  opts: { client?: PortalClientOptions } = {},
): (request: Record<string, unknown>, ctx: TransactionContext) => Promise<Record<string, unknown>> {
  aobject(store, 'store');
  return async (request, ctx) => {
    const heads = request['Heads'] ?? [];
    if (!Array.isArray(heads) || heads.length > MAX_FEDERATION_HEADS || heads.some((h) => typeof h !== 'object' || h === null || Array.isArray(h))) {
      throw new TransactionError(400, `"Heads" expected an array of at most ${MAX_FEDERATION_HEADS} signed heads`);
    }
    const checked: Array<{ Portal: string | null; Status: string; Problem?: string }> = [];
    for (const head of heads as JwsGeneral[]) {
      const kid = protectedKid(head);
      const stored = kid === undefined ? undefined : await store.get(kid);
      if (stored === undefined) {
        checked.push({ Portal: kid ?? null, Status: 'ignored' });
        continue;
      }
      const client = new PortalClient(stored.url, { timeoutMs: 5_000, retries: 1, ...opts.client });
      try {
        const r = await checkPeerHead(client, stored, head);
        if (r.ok) {
          await store.put(r.stored);
          checked.push({ Portal: stored.portal, Status: r.advanced ? 'advanced' : 'unchanged' });
        } else {
          await store.addReport(r.report);
          checked.push({ Portal: stored.portal, Status: 'contradiction', Problem: r.report.problem });
        }
      } catch (e) {
        if (!(e instanceof MeshkitError)) throw e;
        checked.push({ Portal: stored.portal, Status: 'unreachable', Problem: e.message });
      } finally {
        client.close();
      }
    }
    const own = await ctx.notary.signHead();
    const known: Record<string, JwsGeneral> = {};
    for (const h of await store.heads()) known[h.portal] = h.head;
    return { Head: own === undefined ? null : parseJsonStrict(own.jws), Known: known, Checked: checked };
  };
}

function protectedKid(jws: JwsGeneral): string | undefined {
  try {
    const s = jws.signatures[0];
    if (s === undefined) return undefined;
    const header = parseJsonStrict(fromUtf8(Buffer.from(s.protected, 'base64url'))) as { kid?: unknown } | null;
    return typeof header?.kid === 'string' ? header.kid : undefined;
  } catch {
    return undefined;
  }
}
