/**
 * A real, throw-away PostgreSQL server from Debian's `postgresql` package, for `npm run bench` and
 * the portal tests (test/helpers/postgres.ts re-exports it).
 *
 * `startScratchPostgres()` finds `initdb` (on PATH, else the newest /usr/lib/postgresql/<v>/bin), runs
 * `initdb -D DIR/data -U meshkit --auth=trust` in a fresh directory under os.tmpdir(), starts it with
 * `pg_ctl` on a free loopback port, and returns `{ url, createDatabase, stop }`. `stop()` runs
 * `pg_ctl stop -m fast` and removes the directory; it is idempotent, and a process 'exit' hook does the
 * same (with `-m immediate`), so no server outlives the process even when something fails.
 *
 * Running as root (CI containers): PostgreSQL refuses to run as root, so initdb / pg_ctl run as `nobody`
 * through `runuser -u nobody --` (util-linux), falling back to `setpriv --reuid=nobody --regid=nogroup
 * --clear-groups`; the directory is chown'ed to that user first. Clients connect as the database user
 * `meshkit` over TCP on 127.0.0.1 with trust auth.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

function which(cmd: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir === '') continue;
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function findBinDir(): string | undefined {
  const onPath = which('initdb');
  if (onPath !== undefined) {
    const dir = dirname(realpathSync(onPath));
    if (existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const dir = join(root, v, 'bin');
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

/** Directory holding initdb / pg_ctl / createdb, when PostgreSQL is installed. */
export const POSTGRES_BIN: string | undefined = findBinDir();

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** How to drop root for the server: a command prefix, or why we cannot. */
function dropRootPrefix(): string[] | string {
  if (!isRoot) return [];
  if (which('runuser') !== undefined) return ['runuser', '-u', 'nobody', '--'];
  if (which('setpriv') !== undefined) return ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];
  return 'running as root and neither runuser nor setpriv is available to start PostgreSQL as an unprivileged user';
}
const PREFIX = dropRootPrefix();

/** Why a scratch server cannot start here, or undefined when it can. */
export const scratchPostgresMissing: string | undefined =
  POSTGRES_BIN === undefined
    ? 'PostgreSQL initdb not found on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)'
    : typeof PREFIX === 'string' ? PREFIX : undefined;

/** A running scratch server. */
export interface ScratchPostgres {
  /** `postgres://meshkit@127.0.0.1:PORT/meshkit` (a database created at start). */
  url: string;
  port: number;
  /** Creates another empty database and returns its URL. */
  createDatabase(name: string): string;
  /** Stops the server (`pg_ctl stop -m fast`) and removes its directory. Idempotent. */
  stop(): void;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr !== null && typeof addr === 'object') resolve(addr.port);
        else reject(new Error('no port'));
      });
    });
  });
}

function uidGid(user: string, group: string): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('getent', ['group', group], { encoding: 'utf8' }).split(':')[2]);
  return { uid, gid };
}

/** Runs a server binary (as `nobody` when we are root). */
function runServerTool(bin: string, tool: string, args: string[]): void {
  const prefix = typeof PREFIX === 'string' ? [] : PREFIX;
  const argv = [...prefix, join(bin, tool), ...args];
  const [cmd, ...rest] = argv;
  if (cmd === undefined) throw new Error('empty command');
  const r = spawnSync(cmd, rest, { encoding: 'utf8', cwd: tmpdir(), timeout: 60_000 });
  if (r.status !== 0) {
    throw new Error(`${tool} failed (status ${r.status}, signal ${r.signal}): ${(r.stderr || r.stdout || String(r.error)).slice(-2000)}`);
  }
}

/**
 * Starts a scratch PostgreSQL server on 127.0.0.1 and creates the database `meshkit`. `durable`
 * keeps PostgreSQL's default fsync (the bench); tests turn it off for speed.
 * @throws {Error} if PostgreSQL is missing ({@link scratchPostgresMissing}) or does not start (with its log tail).
 */
export async function startScratchPostgres(opts: { durable?: boolean } = {}): Promise<ScratchPostgres> {
  const bin = POSTGRES_BIN;
  if (bin === undefined || scratchPostgresMissing !== undefined) throw new Error(scratchPostgresMissing ?? 'PostgreSQL missing');
  const durability = opts.durable === true ? '' : ' -c fsync=off';
  const dir = mkdtempSync(join(tmpdir(), 'meshkit-pg-'));
  const data = join(dir, 'data');
  let started = false;
  let stopped = false;

  const stopSync = (mode: 'fast' | 'immediate'): void => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    try {
      if (started) runServerTool(bin, 'pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const onExit = (): void => {
    try {
      stopSync('immediate');
    } catch {
      // best effort at process exit
    }
  };
  process.on('exit', onExit);

  try {
    if (isRoot) {
      const { uid, gid } = uidGid('nobody', 'nogroup');
      chownSync(dir, uid, gid);
    }
    runServerTool(bin, 'initdb', ['-D', data, '-U', 'meshkit', '--auth=trust', '-N', '-E', 'UTF8', '--locale=C']);
    let port = 0;
    for (let attempt = 0; ; attempt++) {
      port = await freePort();
      try {
        runServerTool(bin, 'pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60', '-o',
          `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1${durability} -c max_connections=200`, 'start']);
        started = true;
        break;
      } catch (e) {
        // Another process may have taken the port between freePort() and the start: try another one.
        if (attempt >= 2) {
          const logFile = join(dir, 'server.log');
          const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-2000) : '(no server log)';
          throw new Error(`PostgreSQL did not start: ${(e as Error).message}\nserver log: ${tail}`, { cause: e });
        }
      }
    }
    const createDatabase = (name: string): string => {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new RangeError(`"name" expected a lower-case identifier, got "${name}"`);
      execFileSync(join(bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'meshkit', name], { stdio: 'pipe' });
      return `postgres://meshkit@127.0.0.1:${port}/${name}`;
    };
    const url = createDatabase('meshkit');
    return { url, port, createDatabase, stop: () => stopSync('fast') };
  } catch (e) {
    stopSync('immediate');
    throw e;
  }
}
