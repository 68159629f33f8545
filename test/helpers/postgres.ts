/**
 * Test fixture: a real, throw-away PostgreSQL server (src/bench/postgres-server.ts). When it cannot
 * start here (no initdb), the PostgreSQL suites are skipped with `describe.skipIf(postgresMissing !==
 * undefined)` and the reason is printed.
 */
import { scratchPostgresMissing, startScratchPostgres, type ScratchPostgres } from '../../src/bench/postgres-server.js';

export { POSTGRES_BIN } from '../../src/bench/postgres-server.js';
export type PostgresFixture = ScratchPostgres;

/** Why PostgreSQL tests cannot run here, or undefined when they can. */
export const postgresMissing: string | undefined = scratchPostgresMissing;
if (postgresMissing !== undefined) console.warn(`skipping PostgreSQL tests: ${postgresMissing}`);

/** Starts a scratch server with fsync off (tests). */
export function startPostgres(): Promise<PostgresFixture> {
  return startScratchPostgres();
}
