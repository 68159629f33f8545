/**
 * The portal's scale-path storage backend: PostgreSQL through `pg` (the only module that imports it).
 *
 * A `pg` Pool; every {@link PortalStorage.transaction} runs `BEGIN ISOLATION LEVEL SERIALIZABLE` on one pooled
 * connection and is re-run (bounded, with jittered exponential backoff) when PostgreSQL reports a serialization
 * failure (40001) or a deadlock (40P01). Compare-and-swap writes are conditional `UPDATE`s and
 * `INSERT … ON CONFLICT DO NOTHING`, so a lost race is a row count of 0 (→ {@link StorageConflict}) or a
 * serialization failure (→ retry, after which the loser sees the winner's row), never a half-applied write.
 * Writing transactions of one process are queued in-process by default (they all append to the one gapless log,
 * so in parallel they would only abort each other); read-only transactions (`{ readOnly: true }`) run
 * concurrently as `READ ONLY`. Migrations run under an advisory lock, so several portals may start at once.
 */
import pg from 'pg';
import {
  SCHEMA_VERSION,
  StorageConflict,
  type AccountRow,
  type ConnectionRow,
  type ConnectionState,
  type OpenStorageOptions,
  type PortalStorage,
  type PortalTx,
  type ProfileFilter,
  type ProfileRow,
  type RequestRecord,
  type SignedHeadRecord,
  type TransactionOptions,
  checkDate,
  checkIndex,
  connectionFromDb,
  type ConnectionDbRow,
} from './storage.js';

/** Advisory lock key of the migrations ("meshkit" in ASCII, as a 64-bit number that fits a bigint). */
const MIGRATION_LOCK = '30506479057758324';

const MIGRATIONS: ReadonlyArray<{ version: number; sql: string }> = [
  {
    version: 1,
    sql: `
      CREATE TABLE IF NOT EXISTS accounts (
        name TEXT PRIMARY KEY,
        master_identifier TEXT NOT NULL,
        created TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS profiles (
        identifier TEXT NOT NULL,
        type TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        account TEXT,
        signed TEXT NOT NULL,
        updated TEXT NOT NULL,
        PRIMARY KEY (identifier, type)
      );
      CREATE INDEX IF NOT EXISTS profiles_account ON profiles (account);
      CREATE TABLE IF NOT EXISTS escrow (
        id TEXT PRIMARY KEY,
        entry TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS connections (
        request_udf TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        device_udf TEXT NOT NULL,
        signed_request TEXT NOT NULL,
        server_nonce TEXT NOT NULL,
        witness TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('Pending', 'Accepted', 'Refused')),
        result TEXT,
        received TEXT NOT NULL,
        seq BIGSERIAL NOT NULL
      );
      CREATE INDEX IF NOT EXISTS connections_account_state ON connections (account, state, seq);
      CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY,
        body_fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        response TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS log (
        idx BIGINT PRIMARY KEY CHECK (idx >= 0),
        id TEXT NOT NULL UNIQUE,
        line TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS signed_heads (
        count BIGINT PRIMARY KEY,
        jws TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS events (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        at BIGINT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS events_kind_key_at ON events (kind, key, at);
    `,
  },
];

/** SQLSTATEs after which the whole transaction is re-run. */
const RETRYABLE = new Set(['40001', '40P01']);

function sqlState(e: unknown): string | undefined {
  for (let cur: unknown = e, depth = 0; cur !== null && typeof cur === 'object' && depth < 5; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}


interface ProfileDbRow {
  identifier: string;
  type: string;
  sequence: string;
  account: string | null;
  signed: string;
  updated: string;
}

function toProfile(r: ProfileDbRow): ProfileRow {
  return { identifier: r.identifier, type: r.type, sequence: Number(r.sequence), account: r.account, signed: r.signed, updated: r.updated };
}

const PROFILE_COLUMNS = 'identifier, type, sequence, account, signed, updated';
const CONNECTION_COLUMNS = 'request_udf, account, device_udf, signed_request, server_nonce, witness, state, result, received';

/** The transaction view handed to callbacks: one pooled client inside BEGIN … COMMIT. */
class PostgresTx implements PortalTx {
  active = true;
  /** A retryable SQLSTATE seen by any statement, even one whose error fn swallowed. */
  retryableSeen = false;
  constructor(private readonly client: pg.PoolClient) {}

  private async q<R extends pg.QueryResultRow>(name: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    if (!this.active) throw new Error('portal storage: transaction object used after its transaction ended');
    try {
      // Named queries are prepared once per connection by pg.
      return await this.client.query<R>({ name, text, values });
    } catch (e) {
      const state = sqlState(e);
      if (state !== undefined && RETRYABLE.has(state)) this.retryableSeen = true;
      throw e;
    }
  }

  async getAccount(name: string): Promise<AccountRow | undefined> {
    const r = await this.q<AccountRow>('getAccount',
      'SELECT name, master_identifier AS "masterIdentifier", created FROM accounts WHERE name = $1', [name]);
    return r.rows[0];
  }
  async createAccount(row: AccountRow): Promise<void> {
    const r = await this.q('createAccount',
      'INSERT INTO accounts (name, master_identifier, created) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING',
      [row.name, row.masterIdentifier, row.created]);
    if (r.rowCount !== 1) throw new StorageConflict(`account "${row.name}" exists`);
  }
  async getProfile(identifier: string, type: string): Promise<ProfileRow | undefined> {
    const r = await this.q<ProfileDbRow>('getProfile',
      `SELECT ${PROFILE_COLUMNS} FROM profiles WHERE identifier = $1 AND type = $2`, [identifier, type]);
    const row = r.rows[0];
    return row === undefined ? undefined : toProfile(row);
  }
  async putProfile(row: ProfileRow, expected: number | null): Promise<void> {
    checkIndex('row.sequence', row.sequence);
    if (expected === null) {
      const r = await this.q('insertProfile',
        `INSERT INTO profiles (${PROFILE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (identifier, type) DO NOTHING`,
        [row.identifier, row.type, row.sequence, row.account, row.signed, row.updated]);
      if (r.rowCount !== 1) throw new StorageConflict(`profile ${row.identifier} (${row.type}) is already stored`);
    } else {
      checkIndex('expected', expected);
      const r = await this.q('casProfile',
        'UPDATE profiles SET sequence = $1, account = $2, signed = $3, updated = $4 ' +
        'WHERE identifier = $5 AND type = $6 AND sequence = $7',
        [row.sequence, row.account, row.signed, row.updated, row.identifier, row.type, expected]);
      if (r.rowCount !== 1) throw new StorageConflict(`profile ${row.identifier} (${row.type}) is not at Sequence ${expected}`);
    }
  }
  async listProfiles(filter: ProfileFilter): Promise<ProfileRow[]> {
    const where: string[] = [];
    const values: string[] = [];
    let name = 'listProfiles';
    for (const key of ['account', 'identifier', 'type'] as const) {
      const v = filter[key];
      if (v === undefined) continue;
      values.push(v);
      where.push(`${key} = $${values.length}`);
      name += `_${key}`;
    }
    const r = await this.q<ProfileDbRow>(name,
      `SELECT ${PROFILE_COLUMNS} FROM profiles${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY identifier, type`,
      values);
    return r.rows.map(toProfile);
  }
  async putEscrow(id: string, entry: string): Promise<'created' | 'identical'> {
    const r = await this.q('insertEscrow', 'INSERT INTO escrow (id, entry) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [id, entry]);
    if (r.rowCount === 1) return 'created';
    if ((await this.getEscrow(id)) === entry) return 'identical';
    throw new StorageConflict(`escrow id ${id} holds a different entry`);
  }
  async getEscrow(id: string): Promise<string | undefined> {
    const r = await this.q<{ entry: string }>('getEscrow', 'SELECT entry FROM escrow WHERE id = $1', [id]);
    return r.rows[0]?.entry;
  }
  async putConnection(row: ConnectionRow): Promise<void> {
    await this.q('putConnection',
      `INSERT INTO connections (${CONNECTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ` +
      'ON CONFLICT (request_udf) DO UPDATE SET account = excluded.account, device_udf = excluded.device_udf, ' +
      'signed_request = excluded.signed_request, server_nonce = excluded.server_nonce, witness = excluded.witness, ' +
      'state = excluded.state, result = excluded.result, received = excluded.received',
      [row.requestUdf, row.account, row.deviceUdf, row.signedRequest, row.serverNonce, row.witness, row.state,
        row.result, row.received]);
  }
  async getConnection(requestUdf: string): Promise<ConnectionRow | undefined> {
    const r = await this.q<ConnectionDbRow>('getConnection',
      `SELECT ${CONNECTION_COLUMNS} FROM connections WHERE request_udf = $1`, [requestUdf]);
    const row = r.rows[0];
    return row === undefined ? undefined : connectionFromDb(row);
  }
  async listConnections(account: string, state: ConnectionState): Promise<ConnectionRow[]> {
    const r = await this.q<ConnectionDbRow>('listConnections',
      `SELECT ${CONNECTION_COLUMNS} FROM connections WHERE account = $1 AND state = $2 ORDER BY seq`, [account, state]);
    return r.rows.map(connectionFromDb);
  }
  async getRequest(requestId: string): Promise<RequestRecord | undefined> {
    const r = await this.q<RequestRecord>('getRequest',
      'SELECT body_fingerprint AS "bodyFingerprint", status, response FROM requests WHERE request_id = $1', [requestId]);
    return r.rows[0];
  }
  async putRequest(requestId: string, bodyFingerprint: string, status: number, response: string): Promise<void> {
    const r = await this.q('putRequest',
      'INSERT INTO requests (request_id, body_fingerprint, status, response) VALUES ($1, $2, $3, $4) ' +
      'ON CONFLICT (request_id) DO NOTHING', [requestId, bodyFingerprint, status, response]);
    if (r.rowCount !== 1) throw new StorageConflict(`RequestId ${requestId} is already stored`);
  }
  async appendLog(line: string, index: number, id: string): Promise<void> {
    checkIndex('index', index);
    // Gapless: inserted only when idx is the current count. A concurrent append of the same index is a
    // serialization failure under SERIALIZABLE (retried); a duplicate id is a conflict.
    const r = await this.q('appendLog',
      'INSERT INTO log (idx, id, line) SELECT $1, $2, $3 ' +
      'WHERE $1 = (SELECT coalesce(max(idx) + 1, 0) FROM log) ON CONFLICT DO NOTHING', [index, id, line]);
    if (r.rowCount !== 1) {
      const count = await this.logCount();
      throw new StorageConflict(index === count
        ? `log entry id ${id} is already in the log`
        : `log index ${index} is not the next one (count is ${count})`);
    }
  }
  async logCount(): Promise<number> {
    const r = await this.q<{ n: string }>('logCount', 'SELECT coalesce(max(idx) + 1, 0) AS n FROM log', []);
    return Number(r.rows[0]?.n ?? 0);
  }
  async logLines(from: number, count: number): Promise<string[]> {
    checkIndex('from', from);
    checkIndex('count', count);
    const r = await this.q<{ line: string }>('logLines', 'SELECT line FROM log WHERE idx >= $1 ORDER BY idx LIMIT $2', [from, count]);
    return r.rows.map((x) => x.line);
  }
  async lastLogLine(): Promise<string | undefined> {
    const r = await this.q<{ line: string }>('lastLogLine', 'SELECT line FROM log ORDER BY idx DESC LIMIT 1', []);
    return r.rows[0]?.line;
  }
  async logIndexOf(id: string): Promise<number | undefined> {
    const r = await this.q<{ idx: string }>('logIndexOf', 'SELECT idx FROM log WHERE id = $1', [id]);
    const row = r.rows[0];
    return row === undefined ? undefined : Number(row.idx);
  }
  async putSignedHead(count: number, jws: string): Promise<void> {
    checkIndex('count', count);
    await this.q('putSignedHead',
      'INSERT INTO signed_heads (count, jws) VALUES ($1, $2) ON CONFLICT (count) DO UPDATE SET jws = excluded.jws', [count, jws]);
  }
  async latestSignedHead(): Promise<SignedHeadRecord | undefined> {
    const r = await this.q<{ count: string; jws: string }>('latestSignedHead',
      'SELECT count, jws FROM signed_heads ORDER BY count DESC LIMIT 1', []);
    const row = r.rows[0];
    return row === undefined ? undefined : { count: Number(row.count), jws: row.jws };
  }
  async countEvents(kind: string, key: string, since: Date): Promise<number> {
    const r = await this.q<{ n: string }>('countEvents',
      'SELECT count(*) AS n FROM events WHERE kind = $1 AND key = $2 AND at >= $3', [kind, key, checkDate('since', since)]);
    return Number(r.rows[0]?.n ?? 0);
  }
  async addEvent(kind: string, key: string, at: Date): Promise<void> {
    await this.q('addEvent', 'INSERT INTO events (kind, key, at) VALUES ($1, $2, $3)', [kind, key, checkDate('at', at)]);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** {@link PortalStorage} on a PostgreSQL database. Use {@link openStorage}(`postgres://…`), which also runs init(). */
export class PostgresStorage implements PortalStorage {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly maxAttempts: number;
  private readonly serializeWrites: boolean;
  /** Tail of the in-process queue of writing transactions. */
  private writeTail: Promise<unknown> = Promise.resolve();
  private closed = false;

  /**
   * Creates the pool (connections are made on first use).
   * @throws {TypeError} if url is not a string.
   * @throws {RangeError} if poolSize or maxAttempts is not a positive integer.
   */
  constructor(url: string, options: OpenStorageOptions = {}) {
    if (typeof url !== 'string') throw new TypeError(`"url" expected string, got ${typeof url}`);
    const poolSize = options.poolSize ?? 10;
    const maxAttempts = options.maxAttempts ?? 10;
    if (!Number.isSafeInteger(poolSize) || poolSize < 1) throw new RangeError(`"poolSize" expected a positive integer, got ${poolSize}`);
    if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) {
      throw new RangeError(`"maxAttempts" expected a positive integer, got ${maxAttempts}`);
    }
    this.maxAttempts = maxAttempts;
    this.serializeWrites = options.serializeWrites ?? true;
    this.pool = new pg.Pool({ connectionString: url, max: poolSize });
    // An idle client whose connection dies is dropped by the pool; without a listener the error would crash.
    this.pool.on('error', () => undefined);
  }

  /**
   * Runs the migrations not yet applied (recorded in `schema_version`), under an advisory lock. Idempotent.
   * @throws {Error} if the database was written by a newer meshkit, or what pg throws.
   */
  async init(): Promise<void> {
    this.assertOpen();
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)');
      const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_version');
      const current = r.rows[0]?.v ?? 0;
      if (current > SCHEMA_VERSION) {
        throw new Error(`portal database schema version ${current} is newer than this meshkit (${SCHEMA_VERSION})`);
      }
      for (const m of MIGRATIONS) {
        if (m.version <= current) continue;
        await client.query(m.sql);
        await client.query('INSERT INTO schema_version (version, applied) VALUES ($1, $2)', [m.version, new Date().toISOString()]);
      }
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch((err: unknown) => { broken = err instanceof Error ? err : new Error(String(err)); });
      throw e;
    } finally {
      client.release(broken);
    }
  }

  /**
   * Runs fn in one SERIALIZABLE transaction on one pooled connection; re-runs it on 40001/40P01 (up to
   * maxAttempts, jittered exponential backoff); rolls everything back if fn throws.
   * @throws what fn throws (after the rollback); {@link StorageConflict} from the tx methods; the last
   *   serialization failure when the attempts are used up; {@link Error} if the storage is closed.
   */
  async transaction<T>(fn: (tx: PortalTx) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    this.assertOpen();
    const readOnly = options.readOnly === true;
    if (readOnly || !this.serializeWrites) return this.attempts(fn, readOnly);
    const run = this.writeTail.then(() => this.attempts(fn, false));
    this.writeTail = run.catch(() => undefined);
    return run;
  }

  /** Waits for queued writers, then ends the pool. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writeTail.catch(() => undefined);
    await this.pool.end();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('portal storage is closed');
  }

  private async attempts<T>(fn: (tx: PortalTx) => Promise<T>, readOnly: boolean): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      const tx = new PostgresTx(client);
      let broken: Error | undefined;
      try {
        await client.query(readOnly ? 'BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY' : 'BEGIN ISOLATION LEVEL SERIALIZABLE');
        const result = await fn(tx);
        tx.active = false;
        await client.query('COMMIT');
        return result;
      } catch (e) {
        tx.active = false;
        await client.query('ROLLBACK').catch((err: unknown) => { broken = err instanceof Error ? err : new Error(String(err)); });
        const state = sqlState(e);
        const retryable = (state !== undefined && RETRYABLE.has(state)) || tx.retryableSeen;
        if (!retryable || attempt >= this.maxAttempts || this.closed) throw e;
      } finally {
        client.release(broken);
      }
      // Full jitter: 0 … min(250, 4·2^attempt) ms.
      await sleep(Math.random() * Math.min(250, 4 * 2 ** attempt));
    }
  }
}
