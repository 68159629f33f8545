/**
 * The portal's notary log (docs/portal.md "Notary log"): every accepted state change is appended to a
 * linked-hash log (src/core/hashlog.ts format) in the same storage transaction as the change; the head is
 * signed with the portal key every `headEvery` entries or `headSeconds` seconds, on demand (LogHead,
 * LogProof) and on shutdown; inclusion proofs are the linked chain from an entry to a signed head, which a
 * client checks with hashlog `verifyInclusion`.
 *
 * Entry `Body` = `{RequestId, Account?, Identifier?, Fingerprint}` — never profile or escrow contents.
 * Lines are produced exactly as {@link HashLog.append} produces them (member order Index, Previous, Time,
 * Type, Body, Id), so `verifyLog` accepts them; the writer only needs the last stored line, not the log.
 */
import { aint, aobject, astring, fromB64u, fromUtf8, utf8 } from '../core/bytes.js';
import { LOG_ENTRY_BITS, LOG_ENTRY_CONTENT_TYPE, signLogHead, type LogEntry, type LogHeadPayload } from '../core/hashlog.js';
import { parseJsonStrict, type JwsGeneral } from '../core/jose.js';
import type { Signer } from '../core/signer.js';
import { udfDigest } from '../core/udf.js';
import { StorageConflict, type PortalStorage, type PortalTx, type SignedHeadRecord } from './storage.js';

/**
 * Another writer appended the same log index first (possible with several portal processes on one
 * PostgreSQL database). The whole transaction is rolled back and may simply be run again.
 */
export class LogAppendConflict extends StorageConflict {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LogAppendConflict';
  }
}

/** The body of a notary entry. */
export interface NotaryBody {
  RequestId: string;
  Account?: string;
  Identifier?: string;
  /** `udfDigest(request body bytes)`. */
  Fingerprint: string;
  [member: string]: unknown;
}

/** What {@link Notary.append} wrote. */
export interface AppendedEntry {
  index: number;
  id: string;
  line: string;
}

/** Options of a {@link Notary}. */
export interface NotaryOptions {
  storage: PortalStorage;
  /** The portal key (Ed25519). */
  signer: Signer;
  /** Clock (default: the system clock). */
  now?: () => Date;
  /** Sign a head after this many unsigned entries (default 16; ≥ 1). */
  headEvery?: number;
  /** Sign a head this often while entries are unsigned, in seconds (default 10; 0 disables the timer). */
  headSeconds?: number;
  /** Called when periodic signing fails (default: ignored; the next attempt retries). */
  onError?: (e: unknown) => void;
}

/** Maximum number of lines LogEntries returns at once. */
export const MAX_LOG_ENTRIES = 1000;

/**
 * Builds one log line (hashlog format) from its members; returns the line and its Id.
 *
 * @throws TypeError / RangeError for a bad index, previous id, time, type or body.
 */
export function makeLogLine(index: number, previous: string | null, time: Date, type: string, body: Record<string, unknown>): AppendedEntry {
  aint(index, 'index', 0);
  if (previous !== null) astring(previous, 'previous');
  if ((index === 0) !== (previous === null)) throw new RangeError('"previous" must be null exactly for index 0');
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw new TypeError('"time" expected a valid Date');
  astring(type, 'type');
  aobject(body, 'body');
  const text = JSON.stringify({ Index: index, Previous: previous, Time: time.toISOString(), Type: type, Body: body });
  const id = udfDigest(utf8(text), { contentType: LOG_ENTRY_CONTENT_TYPE, bits: LOG_ENTRY_BITS });
  return { index, id, line: `${text.slice(0, -1)},"Id":"${id}"}` };
}

/** Parses a stored line (trusted: it was written by this portal) into its entry. */
export function parseLogLine(line: string): LogEntry {
  const value = parseJsonStrict(line);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RangeError('log line is not a JSON object');
  return value as LogEntry;
}

/** Decodes the payload of a signed head (no signature check; the portal made it). */
export function signedHeadPayload(jws: JwsGeneral | string): LogHeadPayload {
  const j = (typeof jws === 'string' ? parseJsonStrict(jws) : jws) as JwsGeneral;
  const payload = parseJsonStrict(fromUtf8(fromB64u(j.payload, 'payload'))) as { LogHead: LogHeadPayload };
  return payload.LogHead;
}

/** Appends entries, signs heads, and answers proofs for one portal. */
export class Notary {
  readonly #storage: PortalStorage;
  readonly #signer: Signer;
  readonly #now: () => Date;
  readonly #headEvery: number;
  readonly #headSeconds: number;
  readonly #onError: (e: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  /** Serializes head signing, so two triggers never sign the same count twice. */
  #signing: Promise<unknown> = Promise.resolve();
  /** Count of the latest signed head known to this process (a hint; storage is the truth). */
  #signedCount = -1;
  /** Log count after the latest append this process committed (a hint). */
  #appendedCount = 0;

  /**
   * @throws TypeError / RangeError for bad options.
   */
  constructor(opts: NotaryOptions) {
    aobject(opts, 'opts');
    aobject(opts.storage, 'storage');
    aobject(opts.signer, 'signer');
    this.#storage = opts.storage;
    this.#signer = opts.signer;
    this.#now = opts.now ?? (() => new Date());
    this.#headEvery = aint(opts.headEvery ?? 16, 'headEvery', 1);
    this.#headSeconds = aint(opts.headSeconds ?? 10, 'headSeconds', 0);
    this.#onError = opts.onError ?? (() => undefined);
  }

  /** The portal key's identifier. */
  get portalKeyId(): string {
    return this.#signer.keyId;
  }

  /**
   * Appends an entry inside the caller's transaction (so it commits with the state change or not at all).
   *
   * @throws LogAppendConflict if another writer appended meanwhile (roll back and run the transaction again).
   */
  async append(tx: PortalTx, type: string, body: NotaryBody): Promise<AppendedEntry> {
    const last = await tx.lastLogLine();
    let index = 0;
    let previous: string | null = null;
    if (last !== undefined) {
      const entry = parseLogLine(last);
      index = entry.Index + 1;
      previous = entry.Id;
    }
    const appended = makeLogLine(index, previous, this.#now(), type, body);
    try {
      await tx.appendLog(appended.line, appended.index, appended.id);
    } catch (e) {
      if (e instanceof StorageConflict) throw new LogAppendConflict(`log entry ${appended.index} was appended by another writer: ${e.message}`, { cause: e });
      throw e;
    }
    return appended;
  }

  /**
   * Tells the notary that a transaction that appended entry `index` has committed; signs a head when
   * `headEvery` entries are unsigned. Never throws (failures go to `onError`).
   */
  committed(index: number): void {
    this.#appendedCount = Math.max(this.#appendedCount, index + 1);
    if (this.#appendedCount - Math.max(this.#signedCount, 0) >= this.#headEvery) {
      this.signHead().catch(this.#onError);
    }
  }

  /**
   * Signs the current head unless the latest signed head already covers the whole log (or `force`).
   * Returns the latest signed head afterwards (undefined only for an empty log that was never signed and
   * `signEmpty` is false).
   *
   * @throws what the storage or the signer throws.
   */
  async signHead(opts: { force?: boolean; signEmpty?: boolean } = {}): Promise<SignedHeadRecord | undefined> {
    const run = this.#signing.then(() => this.#signHeadNow(opts));
    this.#signing = run.catch(() => undefined);
    return run;
  }

  async #signHeadNow(opts: { force?: boolean; signEmpty?: boolean }): Promise<SignedHeadRecord | undefined> {
    // Read outside the write path first: the common case (already signed) needs no signature.
    const state = await this.#storage.transaction(async (tx) => ({
      count: await tx.logCount(),
      last: await tx.lastLogLine(),
      latest: await tx.latestSignedHead(),
    }));
    this.#appendedCount = Math.max(this.#appendedCount, state.count);
    if (state.latest !== undefined && state.latest.count >= state.count && opts.force !== true) {
      this.#signedCount = state.latest.count;
      return state.latest;
    }
    if (state.count === 0 && opts.signEmpty !== true && opts.force !== true) return state.latest;
    const id = state.last === undefined ? null : parseLogLine(state.last).Id;
    const jws = JSON.stringify(await signLogHead({ index: state.count - 1, id }, this.#signer, this.#now()));
    await this.#storage.transaction(async (tx) => {
      const latest = await tx.latestSignedHead();
      // A head for a longer log may have been stored by another process meanwhile: keep the latest.
      if (latest === undefined || latest.count <= state.count) await tx.putSignedHead(state.count, jws);
    });
    this.#signedCount = Math.max(this.#signedCount, state.count);
    return { count: state.count, jws };
  }

  /** Starts the periodic signer (every `headSeconds`, when entries are unsigned). Idempotent. */
  start(): void {
    if (this.#timer !== undefined || this.#headSeconds === 0) return;
    this.#timer = setInterval(() => {
      this.signHead().catch(this.#onError);
    }, this.#headSeconds * 1000);
    this.#timer.unref();
  }

  /** Stops the periodic signer and waits for a signing in progress. Idempotent. */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#signing;
  }

  /**
   * The inclusion proof of entry `index`: the entry line, the lines from it to a signed head that covers
   * it (signing a fresh head when the latest does not), and that head.
   *
   * @throws RangeError if `index` is not in the log.
   */
  async proof(index: number): Promise<{ entry: string; proof: string[]; head: string }> {
    aint(index, 'index', 0);
    let head = await this.#storage.transaction((tx) => tx.latestSignedHead());
    if (head === undefined || head.count <= index) head = await this.signHead();
    if (head === undefined || head.count <= index) throw new RangeError(`"index" ${index} is not in the log`);
    const headCount = head.count;
    const lines = await this.#storage.transaction(async (tx) => {
      const out: string[] = [];
      for (let from = index; from < headCount; from += MAX_LOG_ENTRIES) {
        out.push(...(await tx.logLines(from, Math.min(MAX_LOG_ENTRIES, headCount - from))));
      }
      return out;
    });
    const entry = lines[0];
    if (entry === undefined) throw new RangeError(`"index" ${index} is not in the log`);
    return { entry, proof: lines, head: head.jws };
  }
}
