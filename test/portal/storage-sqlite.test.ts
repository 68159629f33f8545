/**
 * The storage contract on SQLite (better-sqlite3), plus what only SQLite has: the file format (WAL), reopening a
 * file, openStorage's spec checks, and crash safety against SIGKILL of a writing process.
 */
import { mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStorage, type PortalStorage } from '../../src/portal/storage.js';
import { SqliteStorage } from '../../src/portal/storage-sqlite.js';
import { builtStorageModule, checkWriterState, runStorageContract, runWriterAndKill } from './storage.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'meshkit-sqlite-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const nextFile = () => join(dir, `portal-${++n}.db`);

runStorageContract('sqlite (file)', () => openStorage(`sqlite:${nextFile()}`));
runStorageContract('sqlite (:memory:)', () => openStorage('sqlite::memory:'));

describe('sqlite specifics', () => {
  it('the database file is in WAL mode (header bytes 18-19 = 2)', async () => {
    const file = nextFile();
    const s = await openStorage(`sqlite:${file}`);
    await s.transaction(async (tx) => tx.appendLog('l', 0, 'i'));
    await s.close();
    const fd = openSync(file, 'r');
    const header = Buffer.alloc(20);
    readSync(fd, header, 0, 20, 0);
    closeSync(fd);
    expect(header.subarray(0, 16).toString('latin1')).toBe('SQLite format 3\0');
    expect([header[18], header[19]]).toEqual([2, 2]);
  });

  it('data survives close and reopen; init on an existing file migrates nothing twice', async () => {
    const file = nextFile();
    const a = await openStorage(`sqlite:${file}`);
    await a.transaction(async (tx) => {
      await tx.createAccount({ name: 'a@p', masterIdentifier: 'M', created: 'now' });
      await tx.appendLog('l0', 0, 'i0');
    });
    await a.close();
    const b = await openStorage(`sqlite:${file}`);
    expect(await b.transaction(async (tx) => [await tx.getAccount('a@p'), await tx.logLines(0, 5)]))
      .toEqual([{ name: 'a@p', masterIdentifier: 'M', created: 'now' }, ['l0']]);
    await b.close();
  });

  it('two storages on one file: the second waits for the first one\'s write lock', async () => {
    const file = nextFile();
    const a = await openStorage(`sqlite:${file}`);
    const b = await openStorage(`sqlite:${file}`);
    await a.transaction(async (tx) => tx.appendLog('a0', 0, 'a0'));
    await b.transaction(async (tx) => tx.appendLog('b1', await tx.logCount(), 'b1'));
    expect(await a.transaction(async (tx) => tx.logLines(0, 5))).toEqual(['a0', 'b1']);
    await a.close();
    await b.close();
  });

  it('transaction() before init() is refused', async () => {
    const s = new SqliteStorage(':memory:');
    await expect(s.transaction(async (tx) => tx.logCount())).rejects.toThrow(/init\(\) has not run/);
    await s.close();
  });

  it('openStorage refuses a bad spec', async () => {
    await expect(openStorage('mysql://x')).rejects.toThrow(RangeError);
    await expect(openStorage('sqlite:')).rejects.toThrow(/empty file name/);
    await expect(openStorage(42 as unknown as string)).rejects.toThrow(TypeError);
  });

  it('openStorage reports a file it cannot open', async () => {
    await expect(openStorage(`sqlite:${join(dir, 'no', 'such', 'dir', 'x.db')}`)).rejects.toThrow();
  });
});

describe('sqlite crash safety (SIGKILL of a writing process)', () => {
  const built = builtStorageModule();
  afterAll(() => built.cleanup());

  it('after 3 kills mid-write the log is gapless, chained, agrees with the profiles and keeps every acknowledged commit', async () => {
    const file = nextFile();
    let count = 0;
    for (let round = 0; round < 3; round++) {
      const acknowledged = await runWriterAndKill(built.url, `sqlite:${file}`, 40);
      const s: PortalStorage = await openStorage(`sqlite:${file}`);
      try {
        const now = await checkWriterState(s, acknowledged);
        expect(now).toBeGreaterThanOrEqual(count + 40);
        count = now;
      } finally {
        await s.close();
      }
    }
  });
});
