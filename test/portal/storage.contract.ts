/**
 * The shared storage contract (docs/portal.md "Storage interface"): one suite, run against every backend by
 * `runStorageContract(name, makeStorage)`; `makeStorage` must return a fresh, empty, initialised storage each call.
 * `runConcurrencyContract` is the concurrency part alone (run again on PostgreSQL with writes not queued,
 * so that SERIALIZABLE + CAS, not the in-process queue, decides the races).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterEach, describe, expect, it } from 'vitest';
import {
  StorageConflict,
  type ConnectionRow,
  type PortalStorage,
  type PortalTx,
  type ProfileRow,
} from '../../src/portal/storage.js';

export type MakeStorage = () => Promise<PortalStorage>;

const T0 = '2025-01-01T00:00:00.000Z';

function profile(identifier: string, sequence: number, extra: Partial<ProfileRow> = {}): ProfileRow {
  return {
    identifier,
    type: 'ProfileDevice',
    sequence,
    account: 'alice@example.com',
    signed: JSON.stringify({ id: identifier, seq: sequence }),
    updated: T0,
    ...extra,
  };
}

function connection(requestUdf: string, extra: Partial<ConnectionRow> = {}): ConnectionRow {
  return {
    requestUdf,
    account: 'alice@example.com',
    deviceUdf: `dev-${requestUdf}`,
    signedRequest: `jws-${requestUdf}`,
    serverNonce: 'nonce',
    witness: 'witness',
    state: 'Pending',
    result: null,
    received: T0,
    ...extra,
  };
}

/** Settles every promise; returns [fulfilled values, rejection reasons]. */
async function settle<T>(ps: Array<Promise<T>>): Promise<[T[], unknown[]]> {
  const rs = await Promise.allSettled(ps);
  return [
    rs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])),
    rs.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : [])),
  ];
}

/** Appends `n` lines at the current end of the log inside tx. */
async function appendN(tx: PortalTx, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    const index = await tx.logCount();
    await tx.appendLog(`line-${tag}-${index}`, index, `id-${tag}-${index}`);
  }
}

/** Opens storages through makeStorage and closes them after each test. */
function useStorage(makeStorage: MakeStorage): () => Promise<PortalStorage> {
  const open: PortalStorage[] = [];
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });
  return async () => {
    const s = await makeStorage();
    open.push(s);
    return s;
  };
}

/** Concurrency: CAS, gapless appends and unique names under 20 concurrent transactions. */
export function runConcurrencyContract(name: string, makeStorage: MakeStorage): void {
  describe(`${name}: concurrency`, () => {
    const fresh = useStorage(makeStorage);
    const N = 20;

    it(`${N} concurrent putProfile(expected = n): exactly one wins, the others get StorageConflict`, async () => {
      const s = await fresh();
      await s.transaction(async (tx) => tx.putProfile(profile('P', 1), null));
      const [won, lost] = await settle(Array.from({ length: N }, (_, i) => s.transaction(async (tx) => {
        await tx.putProfile(profile('P', 2, { signed: `writer-${i}` }), 1);
        const index = await tx.logCount();
        await tx.appendLog(`publish-${i}`, index, `pub-${i}`);
        return i;
      })));
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(N - 1);
      for (const e of lost) expect(e).toBeInstanceOf(StorageConflict);
      const stored = await s.transaction(async (tx) => tx.getProfile('P', 'ProfileDevice'));
      expect(stored?.sequence).toBe(2);
      expect(stored?.signed).toBe(`writer-${won[0]}`);
      // nothing is lost and nothing half-written: exactly the winner's log line.
      const lines = await s.transaction(async (tx) => tx.logLines(0, 100));
      expect(lines).toEqual([`publish-${won[0]}`]);
    });

    it(`${N} concurrent read-then-CAS publishes of the same Sequence: exactly one wins`, async () => {
      const s = await fresh();
      await s.transaction(async (tx) => tx.putProfile(profile('Q', 5), null));
      const [won, lost] = await settle(Array.from({ length: N }, (_, i) => s.transaction(async (tx) => {
        const cur = await tx.getProfile('Q', 'ProfileDevice');
        // what the portal does: a Sequence <= the stored one is stale
        if (cur !== undefined && cur.sequence >= 6) throw new StorageConflict('stale Sequence');
        await tx.putProfile(profile('Q', 6, { signed: `writer-${i}` }), cur?.sequence ?? null);
        return i;
      })));
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(N - 1);
      for (const e of lost) expect(e).toBeInstanceOf(StorageConflict);
    });

    it(`${N} concurrent first publishes (expected = null): exactly one wins`, async () => {
      const s = await fresh();
      const [won, lost] = await settle(Array.from({ length: N }, (_, i) =>
        s.transaction(async (tx) => tx.putProfile(profile('R', 1, { signed: `w${i}` }), null))));
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(N - 1);
      for (const e of lost) expect(e).toBeInstanceOf(StorageConflict);
    });

    it(`${N} concurrent createAccount of one name: exactly one wins`, async () => {
      const s = await fresh();
      const [won, lost] = await settle(Array.from({ length: N }, (_, i) => s.transaction(async (tx) =>
        tx.createAccount({ name: 'bob@example.com', masterIdentifier: `M${i}`, created: T0 }))));
      expect(won).toHaveLength(1);
      for (const e of lost) expect(e).toBeInstanceOf(StorageConflict);
    });

    it(`${N} concurrent appenders each at logCount(): all commit, the log is gapless`, async () => {
      const s = await fresh();
      const [won, lost] = await settle(Array.from({ length: N }, (_, i) => s.transaction(async (tx) => {
        await appendN(tx, 2, `w${i}`);
        return i;
      })));
      expect(lost).toEqual([]);
      expect(won).toHaveLength(N);
      const lines = await s.transaction(async (tx) => tx.logLines(0, 1000));
      expect(lines).toHaveLength(2 * N);
      // each transaction's two lines are adjacent (transactions did not interleave)
      for (let i = 0; i < lines.length; i += 2) {
        const tag = /^line-(w\d+)-/.exec(lines[i] ?? '')?.[1];
        expect(lines[i + 1]).toBe(`line-${tag}-${i + 1}`);
        expect(lines[i]).toBe(`line-${tag}-${i}`);
      }
    });
  });
}

/** The whole contract. */
export function runStorageContract(name: string, makeStorage: MakeStorage): void {
  describe(`${name}: storage contract`, () => {
    const fresh = useStorage(makeStorage);

    it('init() is idempotent and keeps the data', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => tx.createAccount({ name: 'a@p', masterIdentifier: 'M', created: T0 }));
      await s.init();
      await s.init();
      expect(await s.transaction(async (tx) => tx.getAccount('a@p'))).toEqual({ name: 'a@p', masterIdentifier: 'M', created: T0 });
    });

    it('accounts: create, get, duplicate name is a StorageConflict', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => {
        expect(await tx.getAccount('alice@example.com')).toBeUndefined();
        await tx.createAccount({ name: 'alice@example.com', masterIdentifier: 'MBCD', created: T0 });
      });
      await expect(s.transaction(async (tx) =>
        tx.createAccount({ name: 'alice@example.com', masterIdentifier: 'OTHER', created: T0 }))).rejects.toBeInstanceOf(StorageConflict);
      expect(await s.transaction(async (tx) => tx.getAccount('alice@example.com')))
        .toEqual({ name: 'alice@example.com', masterIdentifier: 'MBCD', created: T0 });
    });

    it('profiles: CAS insert (null) and update (expected = stored Sequence); stale or missing → StorageConflict', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => tx.putProfile(profile('P1', 1), null));
      await expect(s.transaction(async (tx) => tx.putProfile(profile('P1', 1), null))).rejects.toBeInstanceOf(StorageConflict);
      await s.transaction(async (tx) => tx.putProfile(profile('P1', 2, { signed: 'v2' }), 1));
      await expect(s.transaction(async (tx) => tx.putProfile(profile('P1', 3), 1))).rejects.toBeInstanceOf(StorageConflict);
      await expect(s.transaction(async (tx) => tx.putProfile(profile('NOPE', 2), 1))).rejects.toBeInstanceOf(StorageConflict);
      const got = await s.transaction(async (tx) => tx.getProfile('P1', 'ProfileDevice'));
      expect(got).toEqual(profile('P1', 2, { signed: 'v2' }));
      expect(await s.transaction(async (tx) => tx.getProfile('P1', 'ProfileMaster'))).toBeUndefined();
      // a large Sequence round-trips as a number
      await s.transaction(async (tx) => tx.putProfile(profile('P1', 2 ** 40), 2));
      expect((await s.transaction(async (tx) => tx.getProfile('P1', 'ProfileDevice')))?.sequence).toBe(2 ** 40);
    });

    it('profiles: the same identifier under two types are two rows', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => {
        await tx.putProfile(profile('X', 1, { type: 'ProfileMaster', account: null }), null);
        await tx.putProfile(profile('X', 7, { type: 'ProfileAccount' }), null);
      });
      const rows = await s.transaction(async (tx) => tx.listProfiles({ identifier: 'X' }));
      expect(rows.map((r) => [r.type, r.sequence, r.account])).toEqual([
        ['ProfileAccount', 7, 'alice@example.com'], ['ProfileMaster', 1, null]]);
    });

    it('listProfiles filters by account, identifier and type, ordered by (identifier, type)', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => {
        await tx.putProfile(profile('B', 1), null);
        await tx.putProfile(profile('A', 1), null);
        await tx.putProfile(profile('C', 1, { account: 'bob@example.com', type: 'ProfileApplication' }), null);
        await tx.putProfile(profile('A', 3, { type: 'ProfileAccount' }), null);
      });
      const ids = async (f: Parameters<PortalTx['listProfiles']>[0]) =>
        (await s.transaction(async (tx) => tx.listProfiles(f))).map((r) => `${r.identifier}/${r.type}`);
      expect(await ids({})).toEqual(['A/ProfileAccount', 'A/ProfileDevice', 'B/ProfileDevice', 'C/ProfileApplication']);
      expect(await ids({ account: 'alice@example.com' })).toEqual(['A/ProfileAccount', 'A/ProfileDevice', 'B/ProfileDevice']);
      expect(await ids({ identifier: 'A' })).toEqual(['A/ProfileAccount', 'A/ProfileDevice']);
      expect(await ids({ type: 'ProfileDevice' })).toEqual(['A/ProfileDevice', 'B/ProfileDevice']);
      expect(await ids({ account: 'alice@example.com', type: 'ProfileAccount' })).toEqual(['A/ProfileAccount']);
      expect(await ids({ account: 'bob@example.com', identifier: 'C', type: 'ProfileApplication' })).toEqual(['C/ProfileApplication']);
      expect(await ids({ account: 'nobody@example.com' })).toEqual([]);
    });

    it("escrow: 'created', then 'identical' for the same entry, StorageConflict for a different one", async () => {
      const s = await fresh();
      expect(await s.transaction(async (tx) => tx.putEscrow('E1', '{"a":1}'))).toBe('created');
      expect(await s.transaction(async (tx) => tx.putEscrow('E1', '{"a":1}'))).toBe('identical');
      await expect(s.transaction(async (tx) => tx.putEscrow('E1', '{"a":2}'))).rejects.toBeInstanceOf(StorageConflict);
      expect(await s.transaction(async (tx) => tx.getEscrow('E1'))).toBe('{"a":1}');
      expect(await s.transaction(async (tx) => tx.getEscrow('E2'))).toBeUndefined();
    });

    it('connections: put, get, list by state in order of arrival; an update keeps the order', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => {
        for (const id of ['R3', 'R1', 'R2']) await tx.putConnection(connection(id));
        await tx.putConnection(connection('R9', { account: 'bob@example.com' }));
      });
      const pending = async () => (await s.transaction(async (tx) =>
        tx.listConnections('alice@example.com', 'Pending'))).map((c) => c.requestUdf);
      expect(await pending()).toEqual(['R3', 'R1', 'R2']);
      await s.transaction(async (tx) => {
        const c = await tx.getConnection('R1');
        expect(c).toEqual(connection('R1'));
        await tx.putConnection({ ...connection('R1'), state: 'Accepted', result: 'signed-result' });
      });
      expect(await pending()).toEqual(['R3', 'R2']);
      const accepted = await s.transaction(async (tx) => tx.listConnections('alice@example.com', 'Accepted'));
      expect(accepted).toEqual([connection('R1', { state: 'Accepted', result: 'signed-result' })]);
      expect(await s.transaction(async (tx) => tx.listConnections('alice@example.com', 'Refused'))).toEqual([]);
      expect(await s.transaction(async (tx) => tx.getConnection('nope'))).toBeUndefined();
    });

    it('requests: stored once with fingerprint, status and response; a second put is a StorageConflict', async () => {
      const s = await fresh();
      expect(await s.transaction(async (tx) => tx.getRequest('NQ1'))).toBeUndefined();
      await s.transaction(async (tx) => tx.putRequest('NQ1', 'FP', 201, '{"ok":1}'));
      expect(await s.transaction(async (tx) => tx.getRequest('NQ1'))).toEqual({ bodyFingerprint: 'FP', status: 201, response: '{"ok":1}' });
      await expect(s.transaction(async (tx) => tx.putRequest('NQ1', 'FP2', 409, '{}'))).rejects.toBeInstanceOf(StorageConflict);
    });

    it('log: gapless appends, count, lines, last line, index of an id', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => {
        expect(await tx.logCount()).toBe(0);
        expect(await tx.lastLogLine()).toBeUndefined();
        expect(await tx.logLines(0, 10)).toEqual([]);
      });
      await s.transaction(async (tx) => appendN(tx, 5, 'a'));
      await s.transaction(async (tx) => {
        expect(await tx.logCount()).toBe(5);
        expect(await tx.lastLogLine()).toBe('line-a-4');
        expect(await tx.logLines(1, 2)).toEqual(['line-a-1', 'line-a-2']);
        expect(await tx.logLines(3, 1000)).toEqual(['line-a-3', 'line-a-4']);
        expect(await tx.logLines(5, 10)).toEqual([]);
        expect(await tx.logLines(0, 0)).toEqual([]);
        expect(await tx.logIndexOf('id-a-3')).toBe(3);
        expect(await tx.logIndexOf('id-none')).toBeUndefined();
      });
    });

    it.each([
      ['a gap (index > count)', 6],
      ['an overwrite (index < count)', 2],
    ])('log: appendLog with %s is a StorageConflict and changes nothing', async (_what, index) => {
      const s = await fresh();
      await s.transaction(async (tx) => appendN(tx, 5, 'a'));
      await expect(s.transaction(async (tx) => tx.appendLog('bad', index, 'bad-id'))).rejects.toBeInstanceOf(StorageConflict);
      expect(await s.transaction(async (tx) => tx.logLines(0, 10))).toEqual(
        ['line-a-0', 'line-a-1', 'line-a-2', 'line-a-3', 'line-a-4']);
    });

    it('log: a duplicate entry id is a StorageConflict', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => tx.appendLog('l0', 0, 'same'));
      await expect(s.transaction(async (tx) => tx.appendLog('l1', 1, 'same'))).rejects.toBeInstanceOf(StorageConflict);
      expect(await s.transaction(async (tx) => tx.logCount())).toBe(1);
    });

    it('log: bad index / from / count arguments are RangeError / TypeError', async () => {
      const s = await fresh();
      await expect(s.transaction(async (tx) => tx.appendLog('x', -1, 'i'))).rejects.toThrow(RangeError);
      await expect(s.transaction(async (tx) => tx.appendLog('x', 0.5, 'i'))).rejects.toThrow(RangeError);
      await expect(s.transaction(async (tx) => tx.appendLog('x', '0' as unknown as number, 'i'))).rejects.toThrow(TypeError);
      await expect(s.transaction(async (tx) => tx.logLines(-1, 1))).rejects.toThrow(/"from"/);
      await expect(s.transaction(async (tx) => tx.logLines(0, -1))).rejects.toThrow(/"count"/);
    });

    it('signed heads: latest is the greatest count; the same count is replaced', async () => {
      const s = await fresh();
      expect(await s.transaction(async (tx) => tx.latestSignedHead())).toBeUndefined();
      await s.transaction(async (tx) => {
        await tx.putSignedHead(16, 'jws16');
        await tx.putSignedHead(32, 'jws32');
        await tx.putSignedHead(8, 'jws8');
      });
      expect(await s.transaction(async (tx) => tx.latestSignedHead())).toEqual({ count: 32, jws: 'jws32' });
      await s.transaction(async (tx) => tx.putSignedHead(32, 'jws32b'));
      expect(await s.transaction(async (tx) => tx.latestSignedHead())).toEqual({ count: 32, jws: 'jws32b' });
    });

    it('events: counted by kind and key since a time (inclusive)', async () => {
      const s = await fresh();
      const t = (m: number) => new Date(Date.UTC(2025, 0, 1, 0, m));
      await s.transaction(async (tx) => {
        for (const m of [0, 10, 20, 30]) await tx.addEvent('publish', 'alice', t(m));
        await tx.addEvent('publish', 'bob', t(30));
        await tx.addEvent('account', 'alice', t(30));
      });
      await s.transaction(async (tx) => {
        expect(await tx.countEvents('publish', 'alice', t(0))).toBe(4);
        expect(await tx.countEvents('publish', 'alice', t(10))).toBe(3);
        expect(await tx.countEvents('publish', 'alice', t(11))).toBe(2);
        expect(await tx.countEvents('publish', 'alice', t(31))).toBe(0);
        expect(await tx.countEvents('publish', 'bob', t(0))).toBe(1);
        expect(await tx.countEvents('account', 'carol', t(0))).toBe(0);
      });
      await expect(s.transaction(async (tx) => tx.countEvents('k', 'k', 'now' as unknown as Date))).rejects.toThrow(TypeError);
      await expect(s.transaction(async (tx) => tx.addEvent('k', 'k', new Date(NaN)))).rejects.toThrow(RangeError);
    });

    it('all-or-nothing: a profile and a log line written, then a throw → neither is visible', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => tx.putProfile(profile('K', 1), null));
      const boom = new Error('boom');
      await expect(s.transaction(async (tx) => {
        await tx.putProfile(profile('K', 2), 1);
        await tx.putProfile(profile('NEW', 1), null);
        await tx.appendLog('line', 0, 'id0');
        await tx.putEscrow('E', 'x');
        await tx.createAccount({ name: 'z@p', masterIdentifier: 'M', created: T0 });
        await tx.putRequest('NQ', 'F', 201, '{}');
        await tx.addEvent('publish', 'z', new Date());
        throw boom;
      })).rejects.toBe(boom);
      await s.transaction(async (tx) => {
        expect((await tx.getProfile('K', 'ProfileDevice'))?.sequence).toBe(1);
        expect(await tx.getProfile('NEW', 'ProfileDevice')).toBeUndefined();
        expect(await tx.logCount()).toBe(0);
        expect(await tx.getEscrow('E')).toBeUndefined();
        expect(await tx.getAccount('z@p')).toBeUndefined();
        expect(await tx.getRequest('NQ')).toBeUndefined();
        expect(await tx.countEvents('publish', 'z', new Date(0))).toBe(0);
      });
    });

    it('all-or-nothing: a StorageConflict after writes rolls the writes back', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => tx.appendLog('l0', 0, 'i0'));
      await expect(s.transaction(async (tx) => {
        await tx.putProfile(profile('S', 1), null);
        await tx.appendLog('l1', 1, 'i1');
        await tx.appendLog('l1-again', 1, 'i1b'); // not the next index
      })).rejects.toBeInstanceOf(StorageConflict);
      await s.transaction(async (tx) => {
        expect(await tx.getProfile('S', 'ProfileDevice')).toBeUndefined();
        expect(await tx.logLines(0, 10)).toEqual(['l0']);
      });
    });

    it('a caught StorageConflict does not spoil the transaction (escrow identical path)', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => tx.createAccount({ name: 'a@p', masterIdentifier: 'M', created: T0 }));
      await s.transaction(async (tx) => {
        await expect(tx.createAccount({ name: 'a@p', masterIdentifier: 'M', created: T0 })).rejects.toBeInstanceOf(StorageConflict);
        await tx.appendLog('after', 0, 'after');
      });
      expect(await s.transaction(async (tx) => tx.logLines(0, 10))).toEqual(['after']);
    });

    it('the value of fn is returned; the tx object is dead after its transaction', async () => {
      const s = await fresh();
      let leaked: PortalTx | undefined;
      expect(await s.transaction(async (tx) => { leaked = tx; return 42; })).toBe(42);
      await expect(leaked?.logCount()).rejects.toThrow(/after its transaction ended/);
    });

    it('readOnly transactions read, and refuse writes', async () => {
      const s = await fresh();
      await s.transaction(async (tx) => tx.appendLog('l0', 0, 'i0'));
      expect(await s.transaction(async (tx) => tx.logCount(), { readOnly: true })).toBe(1);
      await expect(s.transaction(async (tx) => tx.appendLog('l1', 1, 'i1'), { readOnly: true })).rejects.toThrow();
      expect(await s.transaction(async (tx) => tx.logCount())).toBe(1);
    });

    it('close() is idempotent; a transaction after close is refused', async () => {
      const s = await makeStorage();
      await s.close();
      await s.close();
      await expect(s.transaction(async (tx) => tx.logCount())).rejects.toThrow(/closed/);
    });
  });

  runConcurrencyContract(name, makeStorage);
}

// ---------------------------------------------------------------------------------------------------------------
// Crash safety: a child process writes in a loop and is killed with SIGKILL; the reopened database must hold a
// gapless, hash-chained log that agrees with the stored profiles, and every acknowledged commit.

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const BACKEND_FILES = ['storage', 'storage-sqlite', 'storage-postgres'];

/**
 * A file: URL of the built `storage.js`: dist/portal/ when it is at least as new as src/portal/ (after
 * `npm run build`), else a copy transpiled now (typescript transpileModule) into node_modules/.cache, so that
 * `npx vitest run` alone also tests the current source. Returns the URL and a cleanup function.
 */
export function builtStorageModule(): { url: string; cleanup: () => void } {
  const fresh = BACKEND_FILES.every((f) => {
    const js = join(REPO, 'dist', 'portal', `${f}.js`);
    return existsSync(js) && statSync(js).mtimeMs >= statSync(join(REPO, 'src', 'portal', `${f}.ts`)).mtimeMs;
  });
  if (fresh) return { url: pathToFileURL(join(REPO, 'dist', 'portal', 'storage.js')).href, cleanup: () => undefined };
  const dir = join(REPO, 'node_modules', '.cache', `meshkit-portal-storage-${process.pid}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  for (const f of BACKEND_FILES) {
    const source = readFileSync(join(REPO, 'src', 'portal', `${f}.ts`), 'utf8');
    const out = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
      fileName: `${f}.ts`,
    });
    writeFileSync(join(dir, `${f}.js`), out.outputText);
  }
  return { url: pathToFileURL(join(dir, 'storage.js')).href, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const WRITER = fileURLToPath(new URL('./fixtures/storage-crash-writer.mjs', import.meta.url));

/** Starts the writer, waits until it has committed at least `minCommits` more, kills it with SIGKILL. */
export async function runWriterAndKill(moduleUrl: string, spec: string, minCommits: number): Promise<number> {
  const child = spawn(process.execPath, [WRITER, moduleUrl, spec], { stdio: ['ignore', 'pipe', 'pipe'] });
  let acknowledged = 0;
  let seen = 0;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })));
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`writer made no progress: ${stderr}`)), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const n = Number(/^committed (\d+)$/.exec(l)?.[1]);
        if (Number.isFinite(n)) acknowledged = n;
        if (++seen === minCommits) {
          clearTimeout(timer);
          // kill at a random moment of the next few transactions
          setTimeout(resolve, Math.random() * 15);
        }
      }
    });
    child.on('exit', () => { clearTimeout(timer); reject(new Error(`writer exited early: ${stderr}`)); });
  }).catch(async (e: unknown) => {
    child.kill('SIGKILL');
    await exited;
    throw e;
  });
  child.kill('SIGKILL');
  const { signal } = await exited;
  expect(signal).toBe('SIGKILL');
  return acknowledged;
}

/** Checks the state the writer leaves: gapless chained log, each profile version has its line, commits durable. */
export async function checkWriterState(storage: PortalStorage, acknowledged: number): Promise<number> {
  return storage.transaction(async (tx) => {
    const count = await tx.logCount();
    expect(count).toBeGreaterThanOrEqual(acknowledged);
    const lines = await tx.logLines(0, count + 10);
    expect(lines).toHaveLength(count);
    const perIdentifier = new Map<string, number[]>();
    let previous: string | null = null;
    lines.forEach((line, i) => {
      const e = JSON.parse(line) as { Index: number; Previous: string | null; Identifier: string; Sequence: number };
      expect(e.Index).toBe(i);
      expect(e.Previous).toBe(previous);
      previous = createHash('sha256').update(line).digest('hex');
      perIdentifier.set(e.Identifier, [...(perIdentifier.get(e.Identifier) ?? []), e.Sequence]);
    });
    const profiles = await tx.listProfiles({ account: 'crash@example.com' });
    expect(profiles.map((p) => p.identifier).sort()).toEqual([...perIdentifier.keys()].sort());
    for (const p of profiles) {
      const seqs = perIdentifier.get(p.identifier) ?? [];
      // versions 1..n, each with exactly one log line, the last one stored
      expect(seqs).toEqual(Array.from({ length: p.sequence }, (_, k) => k + 1));
      expect(JSON.parse(p.signed)).toMatchObject({ identifier: p.identifier, sequence: p.sequence });
    }
    return count;
  });
}
