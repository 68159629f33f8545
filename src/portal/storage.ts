/**
 * The portal's storage interface (docs/portal.md "Storage interface").
 *
 * One interface, two backends: SQLite (`storage-sqlite.ts`, better-sqlite3, the embedded default) and PostgreSQL
 * (`storage-postgres.ts`, pg, the scale path). Everything the portal keeps — accounts, the current version of each
 * profile, escrow blobs, connection requests, processed RequestIds, the notary log, signed heads and quota events —
 * is read and written through a {@link PortalTx} inside {@link PortalStorage.transaction}, which is serializable and
 * all-or-nothing: a state change and its log line are committed together or not at all.
 *
 * Write conflicts the caller must see (an account name taken, a stale profile Sequence, an escrow id holding a
 * different entry, a log index that is not the next one, a RequestId processed twice) are {@link StorageConflict}.
 * Both backends are loaded lazily by {@link openStorage}, so a SQLite portal never loads `pg` and vice versa.
 */

/** A portal account (`user@portal`) and the Master Profile it belongs to. */
export interface AccountRow {
  /** `user@portal`. Unique. */
  name: string;
  /** UDF of the account's Master Profile. */
  masterIdentifier: string;
  /** ISO 8601 time of creation. */
  created: string;
}

/** The current (latest accepted) version of one profile. Keyed by (identifier, type). */
export interface ProfileRow {
  /** Profile UDF. */
  identifier: string;
  /** Profile type, e.g. `ProfileMaster`, `ProfileAccount`, `ProfileDevice`, `ProfileApplication`. */
  type: string;
  /** The profile's Sequence; a later update must carry a greater one (checked by the caller, enforced by CAS). */
  sequence: number;
  /** The account it was published under, or null (e.g. a Master embedded in a Personal Profile). */
  account: string | null;
  /** The signed profile as received (JSON text). */
  signed: string;
  /** ISO 8601 time of the last write. */
  updated: string;
}

/** The state of a device connection request. */
export type ConnectionState = 'Pending' | 'Accepted' | 'Refused';

/** A device connection request (ConnectStart) and, once decided, its signed result (ConnectComplete). */
export interface ConnectionRow {
  /** UDF of the request. Unique. */
  requestUdf: string;
  account: string;
  /** UDF of the device's profile. */
  deviceUdf: string;
  /** The device-signed request (JWS text). */
  signedRequest: string;
  serverNonce: string;
  witness: string;
  state: ConnectionState;
  /** The admin-signed ConnectionResult (JWS text) once decided, else null. */
  result: string | null;
  /** ISO 8601 time of receipt. */
  received: string;
}

/** A processed RequestId: its body fingerprint and the response it got (for idempotent retries). */
export interface RequestRecord {
  bodyFingerprint: string;
  response: string;
  status: number;
}

/** A signed log head as stored. */
export interface SignedHeadRecord {
  /** Number of log entries the head covers. */
  count: number;
  /** The signed head (JWS text). */
  jws: string;
}

/** Filter for {@link PortalTx.listProfiles}; absent members do not filter. */
export interface ProfileFilter {
  account?: string;
  identifier?: string;
  type?: string;
}

/** What a transaction can read and write. Only valid inside the {@link PortalStorage.transaction} callback. */
export interface PortalTx {
  /** The account named `name`, or undefined. */
  getAccount(name: string): Promise<AccountRow | undefined>;
  /** @throws {StorageConflict} if the name exists. */
  createAccount(row: AccountRow): Promise<void>;
  /** The current version of the profile (identifier, type), or undefined. */
  getProfile(identifier: string, type: string): Promise<ProfileRow | undefined>;
  /**
   * Compare-and-swap: writes when the stored Sequence equals `expected` (null = none stored).
   * @throws {StorageConflict} otherwise (of two concurrent writers with the same `expected`, exactly one wins).
   */
  putProfile(row: ProfileRow, expected: number | null): Promise<void>;
  /** Current profiles matching every given filter member, ordered by (identifier, type). */
  listProfiles(filter: ProfileFilter): Promise<ProfileRow[]>;
  /**
   * Stores an escrow entry under `id`: 'created' if new, 'identical' if the same entry is already stored.
   * @throws {StorageConflict} if a different entry is stored under `id`.
   */
  putEscrow(id: string, entry: string): Promise<'created' | 'identical'>;
  getEscrow(id: string): Promise<string | undefined>;
  /** Inserts or replaces (by requestUdf) a connection request. */
  putConnection(row: ConnectionRow): Promise<void>;
  getConnection(requestUdf: string): Promise<ConnectionRow | undefined>;
  /** The account's connection requests in `state`, oldest first. */
  listConnections(account: string, state: ConnectionState): Promise<ConnectionRow[]>;
  /** Idempotency: the stored response of a RequestId, if processed. */
  getRequest(requestId: string): Promise<RequestRecord | undefined>;
  /** @throws {StorageConflict} if the RequestId is already stored. */
  putRequest(requestId: string, bodyFingerprint: string, status: number, response: string): Promise<void>;
  /**
   * Appends a log line at `index` with the entry id `id` (the hashlog entry id, for lookups).
   * @throws {StorageConflict} unless `index` equals the current log count (the log stays gapless).
   */
  appendLog(line: string, index: number, id: string): Promise<void>;
  logCount(): Promise<number>;
  /** Up to `count` lines starting at index `from`, in order. */
  logLines(from: number, count: number): Promise<string[]>;
  lastLogLine(): Promise<string | undefined>;
  /** Index of the log entry whose Id is `id` (as given to appendLog), or undefined. (Beyond docs/portal.md.) */
  logIndexOf(id: string): Promise<number | undefined>;
  /** Stores a signed head (replaces one stored for the same count). */
  putSignedHead(count: number, jws: string): Promise<void>;
  /** The signed head with the greatest count, or undefined. */
  latestSignedHead(): Promise<SignedHeadRecord | undefined>;
  /** Quotas: number of events of `kind` for `key` at or after `since`. */
  countEvents(kind: string, key: string, since: Date): Promise<number>;
  addEvent(kind: string, key: string, at: Date): Promise<void>;
}

/** Options of one {@link PortalStorage.transaction} (beyond docs/portal.md; all optional). */
export interface TransactionOptions {
  /**
   * The transaction only reads (Get, EscrowGet, LogEntries, …). PostgreSQL runs it `READ ONLY`, concurrently
   * with everything else; without it a transaction counts as a writer, and writers of one process are queued
   * (they all append to the one log, so they cannot run in parallel anyway). A write inside a read-only
   * transaction fails.
   */
  readOnly?: boolean;
}

/** A portal database. */
export interface PortalStorage {
  readonly kind: 'sqlite' | 'postgres';
  /** Creates tables if missing (idempotent migrations). */
  init(): Promise<void>;
  /**
   * Runs fn in one serializable transaction; retried on serialization failure; all-or-nothing.
   * fn may run more than once (PostgreSQL retries on 40001/40P01): keep side effects out of it.
   */
  transaction<T>(fn: (tx: PortalTx) => Promise<T>, options?: TransactionOptions): Promise<T>;
  close(): Promise<void>;
}

/**
 * A write the stored state does not allow: a name or id taken, a stale Sequence (CAS lost), a log index that is
 * not the next one. The portal maps it to 409. Not retried by {@link PortalStorage.transaction}.
 */
/** A connection row as both backends store it (snake_case columns). @internal */
export interface ConnectionDbRow {
  request_udf: string;
  account: string;
  device_udf: string;
  signed_request: string;
  server_nonce: string;
  witness: string;
  state: ConnectionState;
  result: string | null;
  received: string;
}

/** @internal */
export function connectionFromDb(r: ConnectionDbRow): ConnectionRow {
  return {
    requestUdf: r.request_udf,
    account: r.account,
    deviceUdf: r.device_udf,
    signedRequest: r.signed_request,
    serverNonce: r.server_nonce,
    witness: r.witness,
    state: r.state,
    result: r.result,
    received: r.received,
  };
}

/** A log index or count argument: a non-negative safe integer. @internal */
export function checkIndex(name: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`"${name}" expected number, got ${typeof v}`);
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`"${name}" expected a non-negative integer, got ${v}`);
  return v;
}

/** A Date argument, as milliseconds. @internal */
export function checkDate(name: string, v: unknown): number {
  if (!(v instanceof Date)) throw new TypeError(`"${name}" expected Date`);
  const t = v.getTime();
  if (Number.isNaN(t)) throw new RangeError(`"${name}" expected a valid Date, got Invalid Date`);
  return t;
}

export class StorageConflict extends Error {
  /** Stable code, the same on both backends. */
  readonly code = 'ERR_STORAGE_CONFLICT';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StorageConflict';
  }
}

/** Options for {@link openStorage}. */
export interface OpenStorageOptions {
  /** PostgreSQL: maximum pool size (default 10). */
  poolSize?: number;
  /** PostgreSQL: attempts for a transaction that fails with 40001/40P01 (default 10). */
  maxAttempts?: number;
  /**
   * PostgreSQL: queue writing transactions of this process (default true), so they do not abort each other on
   * the log's single append point. false leaves it all to SERIALIZABLE and retries (tests use it to exercise CAS).
   */
  serializeWrites?: boolean;
}

/** The current schema version both backends record in `schema_version`. */
export const SCHEMA_VERSION = 1;

/**
 * Opens and initialises (runs the idempotent migrations of) a portal database.
 * `spec` is `sqlite:FILE` (`sqlite::memory:` for an in-memory database) or `postgres://…` / `postgresql://…`.
 * @throws {TypeError} if spec is not a string.
 * @throws {RangeError} if spec names no supported backend or no file.
 * @throws {Error} what the driver throws when the database cannot be opened or migrated.
 */
export async function openStorage(spec: string, options: OpenStorageOptions = {}): Promise<PortalStorage> {
  if (typeof spec !== 'string') throw new TypeError(`"spec" expected string, got ${typeof spec}`);
  let storage: PortalStorage;
  if (spec.startsWith('sqlite:')) {
    const file = spec.slice('sqlite:'.length);
    if (file.length === 0) throw new RangeError('"spec" expected sqlite:FILE, got an empty file name');
    const { SqliteStorage } = await import('./storage-sqlite.js');
    storage = new SqliteStorage(file);
  } else if (spec.startsWith('postgres://') || spec.startsWith('postgresql://')) {
    const { PostgresStorage } = await import('./storage-postgres.js');
    storage = new PostgresStorage(spec, options);
  } else {
    throw new RangeError(`"spec" expected sqlite:FILE or postgres://…, got "${spec.slice(0, 40)}"`);
  }
  try {
    await storage.init();
  } catch (e) {
    await storage.close().catch(() => undefined);
    throw e;
  }
  return storage;
}
