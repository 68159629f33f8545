/**
 * The storage contract on PostgreSQL: a real server from Debian's package (test/helpers/postgres.ts), one fresh
 * database per test. The concurrency part runs twice: with writers queued in-process (the default) and with
 * `serializeWrites: false`, where SERIALIZABLE + retries + CAS alone decide the races. Crash safety: the writing
 * client process is killed with SIGKILL (the server keeps running). Skipped, with the reason printed, only when
 * PostgreSQL's initdb is not installed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStorage, type OpenStorageOptions, type PortalStorage } from '../../src/portal/storage.js';
import { postgresMissing, startPostgres, type PostgresFixture } from '../helpers/postgres.js';
import {
  builtStorageModule,
  checkWriterState,
  runConcurrencyContract,
  runStorageContract,
  runWriterAndKill,
} from './storage.contract.js';

describe.skipIf(postgresMissing !== undefined)('postgres', () => {
  let server: PostgresFixture | undefined;
  let n = 0;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(() => {
    server?.stop();
  });

  const newDatabase = (): string => {
    if (server === undefined) throw new Error('PostgreSQL did not start');
    return server.createDatabase(`t${process.pid}_${++n}`);
  };
  const fresh = (options: OpenStorageOptions = {}) => async (): Promise<PortalStorage> => openStorage(newDatabase(), options);

  runStorageContract('postgres', fresh());
  runConcurrencyContract('postgres (writes not queued: SERIALIZABLE + CAS only)', fresh({ serializeWrites: false, poolSize: 20 }));

  describe('postgres specifics', () => {
    it('two storages (two "portals") on one database: migrations once, CAS across them', async () => {
      const url = newDatabase();
      const [a, b] = await Promise.all([openStorage(url), openStorage(url)]);
      try {
        await a.transaction(async (tx) => tx.putProfile({ identifier: 'P', type: 'T', sequence: 1, account: null, signed: 's', updated: 'u' }, null));
        const results = await Promise.allSettled([a, b, a, b].map((s, i) => s.transaction(async (tx) =>
          tx.putProfile({ identifier: 'P', type: 'T', sequence: 2, account: null, signed: `w${i}`, updated: 'u' }, 1))));
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('openStorage reports a server that is not there', async () => {
      await expect(openStorage('postgres://meshkit@127.0.0.1:1/none')).rejects.toThrow();
    });
  });

  describe('postgres crash safety (SIGKILL of the writing client)', () => {
    const built = builtStorageModule();
    afterAll(() => built.cleanup());

    it('after 3 kills mid-write the log is gapless, chained, agrees with the profiles and keeps every acknowledged commit', async () => {
      const url = newDatabase();
      let count = 0;
      for (let round = 0; round < 3; round++) {
        const acknowledged = await runWriterAndKill(built.url, url, 40);
        const s = await openStorage(url);
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
});
