/**
 * `npm run bench`: a minimal scratch PostgreSQL server for the portal figures (the tests have their
 * own fixture in test/helpers/postgres.ts; bench code lives in src/ and cannot import tests).
 *
 * Finds `initdb` / `pg_ctl` (PATH, else the newest /usr/lib/postgresql/<v>/bin), runs initdb in a
 * fresh directory under os.tmpdir() with trust auth for the user `meshkit`, starts the server on a
 * free loopback port (as `nobody` through runuser when we are root — PostgreSQL refuses root) with
 * its default durability (fsync on), creates the database `meshkit`, and stops the server and
 * removes the directory on `stop()` or at process exit.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

function which(cmd: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return undefined;
}

function binDir(): string | undefined {
  const onPath = which('initdb');
  if (onPath !== undefined) {
    const dir = dirname(realpathSync(onPath));
    if (existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  for (const v of readdirSync(root).filter((x) => /^\d+$/.test(x)).sort((a, b) => Number(b) - Number(a))) {
    const dir = join(root, v, 'bin');
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

/** A running scratch server. */
export interface BenchPostgres {
  /** `postgres://meshkit@127.0.0.1:PORT/meshkit`. */
  url: string;
  /** Stops the server and removes its directory (idempotent). */
  stop(): void;
}

/** Why a scratch server cannot start here, or undefined. */
export function benchPostgresMissing(): string | undefined {
  if (binDir() === undefined) return 'PostgreSQL initdb not found on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)';
  if (process.getuid?.() === 0 && which('runuser') === undefined) return 'running as root without runuser to start PostgreSQL as nobody';
  return undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr !== null && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no free port'))));
    });
  });
}

/**
 * Starts a scratch server.
 * @throws Error when PostgreSQL is missing ({@link benchPostgresMissing}) or does not start (with its output).
 */
export async function startBenchPostgres(): Promise<BenchPostgres> {
  const missing = benchPostgresMissing();
  const bin = binDir();
  if (missing !== undefined || bin === undefined) throw new Error(missing ?? 'PostgreSQL missing');
  const root = process.getuid?.() === 0;
  const prefix = root ? ['runuser', '-u', 'nobody', '--'] : [];
  const run = (tool: string, args: string[]): void => {
    const [cmd, ...rest] = [...prefix, join(bin, tool), ...args];
    const r = spawnSync(cmd ?? tool, rest, { encoding: 'utf8', cwd: tmpdir(), timeout: 60_000 });
    if (r.status !== 0) throw new Error(`${tool} failed (status ${r.status}): ${(r.stderr || r.stdout || String(r.error)).slice(-1500)}`);
  };
  const dir = mkdtempSync(join(tmpdir(), 'meshkit-bench-pg-'));
  const data = join(dir, 'data');
  let started = false;
  let stopped = false;
  const stop = (mode: 'fast' | 'immediate' = 'fast'): void => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    try {
      if (started) run('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const onExit = (): void => {
    try {
      stop('immediate');
    } catch {
      // best effort at exit
    }
  };
  process.on('exit', onExit);
  try {
    if (root) {
      const uid = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
    }
    run('initdb', ['-D', data, '-U', 'meshkit', '--auth=trust', '-E', 'UTF8', '--locale=C']);
    const port = await freePort();
    run('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`, 'start']);
    started = true;
    execFileSync(join(bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'meshkit', 'meshkit'], { stdio: 'pipe' });
    return { url: `postgres://meshkit@127.0.0.1:${port}/meshkit`, stop: () => stop('fast') };
  } catch (e) {
    stop('immediate');
    throw e;
  }
}
