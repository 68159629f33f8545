/**
 * The portal's embedded storage backend: SQLite through better-sqlite3 (the only module that imports it).
 *
 * One connection, WAL mode, `synchronous = FULL` (a committed transaction survives a process kill and a power
 * cut). better-sqlite3 is synchronous, but {@link PortalStorage.transaction} takes an async callback, so
 * transactions are serialized in-process by an async mutex: each one runs `BEGIN IMMEDIATE` … `COMMIT` alone on
 * the connection, and a second `transaction()` call queues until the first has committed or rolled back. Another
 * process opening the same file (e.g. `meshkit portal log export`) waits up to the busy timeout for the write lock.
 * Every statement is prepared once, in {@link SqliteStorage.init}.
 */
import Database from 'better-sqlite3';
import {
  SCHEMA_VERSION,
  StorageConflict,
  type AccountRow,
  type ConnectionRow,
  type ConnectionState,
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

/** Schema migrations, by version; each runs once, in order, inside one transaction. */
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
        sequence INTEGER NOT NULL,
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
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        request_udf TEXT NOT NULL UNIQUE,
        account TEXT NOT NULL,
        device_udf TEXT NOT NULL,
        signed_request TEXT NOT NULL,
        server_nonce TEXT NOT NULL,
        witness TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('Pending', 'Accepted', 'Refused')),
        result TEXT,
        received TEXT NOT NULL
      );
      -- seq (order of arrival; an upsert keeps it) is the rowid, implicitly the last column of the index
      CREATE INDEX IF NOT EXISTS connections_account_state ON connections (account, state);
      CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY,
        body_fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        response TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS log (
        idx INTEGER PRIMARY KEY CHECK (idx >= 0),
        id TEXT NOT NULL UNIQUE,
        line TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS signed_heads (
        count INTEGER PRIMARY KEY,
        jws TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS events (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        at INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS events_kind_key_at ON events (kind, key, at);
    `,
  },
];

interface ProfileDbRow {
  identifier: string;
  type: string;
  sequence: number;
  account: string | null;
  signed: string;
  updated: string;
}


function toProfile(r: ProfileDbRow): ProfileRow {
  return { identifier: r.identifier, type: r.type, sequence: r.sequence, account: r.account, signed: r.signed, updated: r.updated };
}

/** The prepared statements, made once per connection. */
function prepareStatements(db: Database.Database) {
  return {
    begin: db.prepare('BEGIN IMMEDIATE'),
    beginRead: db.prepare('BEGIN DEFERRED'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),
    getAccount: db.prepare<[string], AccountRow>(
      'SELECT name, master_identifier AS masterIdentifier, created FROM accounts WHERE name = ?'),
    insertAccount: db.prepare<[string, string, string]>(
      'INSERT INTO accounts (name, master_identifier, created) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING'),
    getProfile: db.prepare<[string, string], ProfileDbRow>(
      'SELECT identifier, type, sequence, account, signed, updated FROM profiles WHERE identifier = ? AND type = ?'),
    insertProfile: db.prepare<[string, string, number, string | null, string, string]>(
      'INSERT INTO profiles (identifier, type, sequence, account, signed, updated) VALUES (?, ?, ?, ?, ?, ?) ' +
      'ON CONFLICT (identifier, type) DO NOTHING'),
    casProfile: db.prepare<[number, string | null, string, string, string, string, number]>(
      'UPDATE profiles SET sequence = ?, account = ?, signed = ?, updated = ? ' +
      'WHERE identifier = ? AND type = ? AND sequence = ?'),
    // One statement per combination of filter members, so each can use its index.
    listProfiles: [0, 1, 2, 3, 4, 5, 6, 7].map((mask) => {
      const where = [mask & 1 ? 'account = @account' : '', mask & 2 ? 'identifier = @identifier' : '',
        mask & 4 ? 'type = @type' : ''].filter((c) => c !== '');
      return db.prepare<[Record<string, string>], ProfileDbRow>(
        'SELECT identifier, type, sequence, account, signed, updated FROM profiles' +
        (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') + ' ORDER BY identifier, type');
    }),
    insertEscrow: db.prepare<[string, string]>('INSERT INTO escrow (id, entry) VALUES (?, ?) ON CONFLICT (id) DO NOTHING'),
    getEscrow: db.prepare<[string], { entry: string }>('SELECT entry FROM escrow WHERE id = ?'),
    putConnection: db.prepare<[string, string, string, string, string, string, string, string | null, string]>(
      'INSERT INTO connections (request_udf, account, device_udf, signed_request, server_nonce, witness, state, ' +
      'result, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ' +
      'ON CONFLICT (request_udf) DO UPDATE SET account = excluded.account, device_udf = excluded.device_udf, ' +
      'signed_request = excluded.signed_request, server_nonce = excluded.server_nonce, witness = excluded.witness, ' +
      'state = excluded.state, result = excluded.result, received = excluded.received'),
    getConnection: db.prepare<[string], ConnectionDbRow>('SELECT * FROM connections WHERE request_udf = ?'),
    listConnections: db.prepare<[string, string], ConnectionDbRow>(
      'SELECT * FROM connections WHERE account = ? AND state = ? ORDER BY seq'),
    getRequest: db.prepare<[string], RequestRecord>(
      'SELECT body_fingerprint AS bodyFingerprint, status, response FROM requests WHERE request_id = ?'),
    insertRequest: db.prepare<[string, string, number, string]>(
      'INSERT INTO requests (request_id, body_fingerprint, status, response) VALUES (?, ?, ?, ?) ' +
      'ON CONFLICT (request_id) DO NOTHING'),
    // Gapless: the row is only inserted when idx is the current count (max(idx) + 1 of a gapless log).
    appendLog: db.prepare<[number, string, string, number]>(
      'INSERT INTO log (idx, id, line) SELECT ?, ?, ? WHERE ? = (SELECT coalesce(max(idx) + 1, 0) FROM log)'),
    logCount: db.prepare<[], { n: number }>('SELECT coalesce(max(idx) + 1, 0) AS n FROM log'),
    logLines: db.prepare<[number, number], { line: string }>(
      'SELECT line FROM log WHERE idx >= ? ORDER BY idx LIMIT ?'),
    lastLogLine: db.prepare<[], { line: string }>('SELECT line FROM log ORDER BY idx DESC LIMIT 1'),
    logIndexOf: db.prepare<[string], { idx: number }>('SELECT idx FROM log WHERE id = ?'),
    putSignedHead: db.prepare<[number, string]>(
      'INSERT INTO signed_heads (count, jws) VALUES (?, ?) ON CONFLICT (count) DO UPDATE SET jws = excluded.jws'),
    latestSignedHead: db.prepare<[], SignedHeadRecord>('SELECT count, jws FROM signed_heads ORDER BY count DESC LIMIT 1'),
    countEvents: db.prepare<[string, string, number], { n: number }>(
      'SELECT count(*) AS n FROM events WHERE kind = ? AND key = ? AND at >= ?'),
    addEvent: db.prepare<[string, string, number]>('INSERT INTO events (kind, key, at) VALUES (?, ?, ?)'),
  };
}
type Statements = ReturnType<typeof prepareStatements>;


/** The transaction view handed to callbacks; refuses use after its transaction has ended. */
class SqliteTx implements PortalTx {
  active = true;
  constructor(private readonly s: Statements, private readonly readOnly: boolean) {}

  private st(): Statements {
    if (!this.active) throw new Error('portal storage: transaction object used after its transaction ended');
    return this.s;
  }

  private wst(): Statements {
    if (this.readOnly) throw new Error('portal storage: write in a read-only transaction');
    return this.st();
  }

  async getAccount(name: string): Promise<AccountRow | undefined> {
    return this.st().getAccount.get(name);
  }
  async createAccount(row: AccountRow): Promise<void> {
    const r = this.wst().insertAccount.run(row.name, row.masterIdentifier, row.created);
    if (r.changes === 0) throw new StorageConflict(`account "${row.name}" exists`);
  }
  async getProfile(identifier: string, type: string): Promise<ProfileRow | undefined> {
    const r = this.st().getProfile.get(identifier, type);
    return r === undefined ? undefined : toProfile(r);
  }
  async putProfile(row: ProfileRow, expected: number | null): Promise<void> {
    const s = this.wst();
    checkIndex('row.sequence', row.sequence);
    if (expected === null) {
      const r = s.insertProfile.run(row.identifier, row.type, row.sequence, row.account, row.signed, row.updated);
      if (r.changes === 0) throw new StorageConflict(`profile ${row.identifier} (${row.type}) is already stored`);
    } else {
      checkIndex('expected', expected);
      const r = s.casProfile.run(row.sequence, row.account, row.signed, row.updated, row.identifier, row.type, expected);
      if (r.changes === 0) {
        throw new StorageConflict(`profile ${row.identifier} (${row.type}) is not at Sequence ${expected}`);
      }
    }
  }
  async listProfiles(filter: ProfileFilter): Promise<ProfileRow[]> {
    const params: Record<string, string> = {};
    let mask = 0;
    if (filter.account !== undefined) { params['account'] = filter.account; mask |= 1; }
    if (filter.identifier !== undefined) { params['identifier'] = filter.identifier; mask |= 2; }
    if (filter.type !== undefined) { params['type'] = filter.type; mask |= 4; }
    const stmt = this.st().listProfiles[mask];
    if (stmt === undefined) throw new Error('unreachable: listProfiles mask');
    return stmt.all(params).map(toProfile);
  }
  async putEscrow(id: string, entry: string): Promise<'created' | 'identical'> {
    const s = this.wst();
    if (s.insertEscrow.run(id, entry).changes === 1) return 'created';
    const stored = s.getEscrow.get(id);
    if (stored !== undefined && stored.entry === entry) return 'identical';
    throw new StorageConflict(`escrow id ${id} holds a different entry`);
  }
  async getEscrow(id: string): Promise<string | undefined> {
    return this.st().getEscrow.get(id)?.entry;
  }
  async putConnection(row: ConnectionRow): Promise<void> {
    this.wst().putConnection.run(row.requestUdf, row.account, row.deviceUdf, row.signedRequest, row.serverNonce,
      row.witness, row.state, row.result, row.received);
  }
  async getConnection(requestUdf: string): Promise<ConnectionRow | undefined> {
    const r = this.st().getConnection.get(requestUdf);
    return r === undefined ? undefined : connectionFromDb(r);
  }
  async listConnections(account: string, state: ConnectionState): Promise<ConnectionRow[]> {
    return this.st().listConnections.all(account, state).map(connectionFromDb);
  }
  async getRequest(requestId: string): Promise<RequestRecord | undefined> {
    return this.st().getRequest.get(requestId);
  }
  async putRequest(requestId: string, bodyFingerprint: string, status: number, response: string): Promise<void> {
    if (this.wst().insertRequest.run(requestId, bodyFingerprint, status, response).changes === 0) {
      throw new StorageConflict(`RequestId ${requestId} is already stored`);
    }
  }
  async appendLog(line: string, index: number, id: string): Promise<void> {
    const s = this.wst();
    checkIndex('index', index);
    let changes: number;
    try {
      changes = s.appendLog.run(index, id, line, index).changes;
    } catch (e) {
      if ((e as { code?: unknown }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new StorageConflict(`log entry id ${id} is already in the log`, { cause: e });
      }
      throw e;
    }
    if (changes === 0) {
      throw new StorageConflict(`log index ${index} is not the next one (count is ${s.logCount.get()?.n ?? 0})`);
    }
  }
  async logCount(): Promise<number> {
    return this.st().logCount.get()?.n ?? 0;
  }
  async logLines(from: number, count: number): Promise<string[]> {
    checkIndex('from', from);
    checkIndex('count', count);
    return this.st().logLines.all(from, count).map((r) => r.line);
  }
  async lastLogLine(): Promise<string | undefined> {
    return this.st().lastLogLine.get()?.line;
  }
  async logIndexOf(id: string): Promise<number | undefined> {
    return this.st().logIndexOf.get(id)?.idx;
  }
  async putSignedHead(count: number, jws: string): Promise<void> {
    checkIndex('count', count);
    this.wst().putSignedHead.run(count, jws);
  }
  async latestSignedHead(): Promise<SignedHeadRecord | undefined> {
    return this.st().latestSignedHead.get();
  }
  async countEvents(kind: string, key: string, since: Date): Promise<number> {
    return this.st().countEvents.get(kind, key, checkDate('since', since))?.n ?? 0;
  }
  async addEvent(kind: string, key: string, at: Date): Promise<void> {
    this.wst().addEvent.run(kind, key, checkDate('at', at));
  }
}

/** {@link PortalStorage} on one SQLite file. Use {@link openStorage}(`sqlite:FILE`), which also runs init(). */
export class SqliteStorage implements PortalStorage {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;
  private statements: Statements | undefined;
  /** Tail of the queue of transactions (the async mutex). */
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  /**
   * Opens (creating if missing) the database file; `:memory:` for an in-memory database.
   * @throws {TypeError} if file is not a string.
   * @throws {Error} what better-sqlite3 throws when the file cannot be opened.
   */
  constructor(file: string) {
    if (typeof file !== 'string') throw new TypeError(`"file" expected string, got ${typeof file}`);
    this.db = new Database(file);
    try {
      if (file !== ':memory:') this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('busy_timeout = 10000');
    } catch (e) {
      this.db.close();
      throw e;
    }
  }

  /**
   * Runs the migrations not yet applied (recorded in `schema_version`) and prepares the statements. Idempotent.
   * @throws {Error} if the database was written by a newer meshkit (schema version above {@link SCHEMA_VERSION}).
   */
  async init(): Promise<void> {
    await this.exclusive(() => {
      this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)');
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const row = this.db.prepare<[], { v: number | null }>('SELECT max(version) AS v FROM schema_version').get();
        const current = row?.v ?? 0;
        if (current > SCHEMA_VERSION) {
          throw new Error(`portal database schema version ${current} is newer than this meshkit (${SCHEMA_VERSION})`);
        }
        for (const m of MIGRATIONS) {
          if (m.version <= current) continue;
          this.db.exec(m.sql);
          this.db.prepare('INSERT INTO schema_version (version, applied) VALUES (?, ?)').run(m.version, new Date().toISOString());
        }
        this.db.exec('COMMIT');
      } catch (e) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw e;
      }
      this.statements ??= prepareStatements(this.db);
    });
  }

  /**
   * Runs fn alone on the connection inside `BEGIN IMMEDIATE` … `COMMIT`; rolls everything back if fn throws.
   * Calls queue in order. Not retried: with one in-process writer there are no serialization failures.
   * `readOnly` transactions use `BEGIN DEFERRED` (no write lock) and refuse writes.
   * @throws what fn throws (after the rollback); {@link StorageConflict} from the tx methods.
   * @throws {Error} if the storage is closed or init() has not run.
   */
  async transaction<T>(fn: (tx: PortalTx) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    const readOnly = options.readOnly === true;
    return this.exclusive(async () => {
      const s = this.statements;
      if (s === undefined) throw new Error('portal storage: init() has not run');
      (readOnly ? s.beginRead : s.begin).run();
      const tx = new SqliteTx(s, readOnly);
      try {
        const result = await fn(tx);
        tx.active = false;
        s.commit.run();
        return result;
      } catch (e) {
        tx.active = false;
        if (this.db.inTransaction) s.rollback.run();
        throw e;
      }
    });
  }

  /** Waits for queued transactions, then closes the connection (checkpointing the WAL). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail.catch(() => undefined);
    this.db.close();
  }

  /** The async mutex: runs job after every job queued before it. */
  private exclusive<T>(job: () => T | Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('portal storage is closed'));
    const run = this.tail.then(job, job);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
