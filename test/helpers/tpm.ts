/**
 * Test fixture: a TPM-backed PKCS#11 token — tpm2-pkcs11 on a software TPM (swtpm) behind the
 * tpm2-abrmd resource manager on a private D-Bus session bus, all in a temporary directory
 * (ENVIRONMENT.md §2b). It stands in for a PIV-like card: P-256 ECDSA only, no EdDSA, no ECDH, no
 * import of private keys.
 *
 * `await startTpm()` at the top of a test file, before the PKCS#11 module is first loaded in that
 * process: it sets TPM2_PKCS11_TCTI, TPM2_PKCS11_STORE, TPM2_PKCS11_BACKEND, TSS2_LOG and
 * DBUS_SESSION_BUS_ADDRESS in `process.env` (tpm2-pkcs11 reads them in C_Initialize). Ports are free
 * loopback ports; nothing outside the temporary directory is touched. `stop()` kills swtpm,
 * tpm2-abrmd and dbus-daemon and removes the directory; it runs also when the start fails, on
 * process exit and on SIGTERM / SIGINT, and a detached watchdog shell does the same if this process
 * dies without running any of them (SIGKILL). The software TPM keeps its default dictionary-attack protection: after a few wrong
 * PINs it locks out (CKR_PIN_LOCKED) until the fixture is restarted. Guard suites with `describe.skipIf(tpmMissing !== undefined)`: when a package is
 * absent, `tpmMissing` names the missing binary or library (and a warning is printed).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { processAlive } from '../../src/util/fs.js';

const MODULE_CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so',
  '/usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so',
  '/usr/lib/pkcs11/libtpm2_pkcs11.so',
  '/usr/local/lib/pkcs11/libtpm2_pkcs11.so',
];
const LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib', '/usr/local/lib'];

/** The tpm2-pkcs11 module path, when installed. */
export const TPM2_PKCS11_MODULE: string | undefined = process.env['MESHKIT_TPM2_PKCS11_MODULE'] ?? MODULE_CANDIDATES.find((p) => existsSync(p));

/** A program on PATH (or in /usr/sbin, /sbin: tpm2-abrmd lives there). */
function findProgram(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (d === '') continue;
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function hasLibrary(name: string): boolean {
  return LIB_DIRS.some((d) => existsSync(join(d, name)));
}

const PROGRAMS = {
  swtpm: { name: 'swtpm', pkg: 'swtpm' },
  abrmd: { name: 'tpm2-abrmd', pkg: 'tpm2-abrmd' },
  dbus: { name: 'dbus-daemon', pkg: 'dbus' },
  ptool: { name: 'tpm2_ptool', pkg: 'libtpm2-pkcs11-tools' },
  getcap: { name: 'tpm2_getcap', pkg: 'tpm2-tools' },
} as const;

const found: Partial<Record<keyof typeof PROGRAMS, string>> = {};
for (const [k, v] of Object.entries(PROGRAMS)) {
  const p = findProgram(v.name);
  if (p !== undefined) found[k as keyof typeof PROGRAMS] = p;
}

function missingReason(): string | undefined {
  for (const [k, v] of Object.entries(PROGRAMS)) {
    if (found[k as keyof typeof PROGRAMS] === undefined) return `${v.name} is not installed (apt-get install ${v.pkg})`;
  }
  if (TPM2_PKCS11_MODULE === undefined) return 'libtpm2_pkcs11.so is not installed (apt-get install libtpm2-pkcs11-1)';
  if (!hasLibrary('libtss2-tcti-swtpm.so.0')) return 'libtss2-tcti-swtpm.so.0 is not installed (apt-get install libtss2-tcti-swtpm0)';
  if (!hasLibrary('libtss2-tcti-tabrmd.so.0')) return 'libtss2-tcti-tabrmd.so.0 is not installed (apt-get install libtss2-tcti-tabrmd0)';
  if (!existsSync('/usr/share/dbus-1/session.conf')) return '/usr/share/dbus-1/session.conf is missing (apt-get install dbus)';
  return undefined;
}

/** Why the TPM token tests cannot run here (names the missing binary or library), or undefined when they can. */
export const tpmMissing: string | undefined = missingReason();

if (tpmMissing !== undefined) console.warn(`skipping TPM (tpm2-pkcs11 + swtpm) tests: ${tpmMissing}`);

export interface TpmFixture {
  /** libtpm2_pkcs11.so */
  modulePath: string;
  /** The temporary directory (swtpm state, token store, logs). */
  dir: string;
  /** The token label. */
  label: string;
  userPin: string;
  soPin: string;
  /** The variables set in process.env for the module. */
  env: Record<string, string>;
  /** `pkcs11:token=LABEL?module-path=…` */
  uri(extra?: string): string;
  /** Kills swtpm, tpm2-abrmd and dbus-daemon and removes the directory. Idempotent. */
  stop(): void;
}

export interface TpmOptions {
  label?: string;
  userPin?: string;
  soPin?: string;
  /** How long to wait for each daemon, ms (default 15 000). */
  timeoutMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Whether a loopback TCP port can be bound now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A port P with P and P+1 free (the swtpm TCTI uses P for commands and P+1 for control). */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const p = 20000 + 2 * Math.floor(Math.random() * 20000);
    if ((await portFree(p)) && (await portFree(p + 1))) return p;
  }
  throw new Error('no free pair of loopback TCP ports for swtpm');
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

function alive(pid: number | undefined): boolean {
  return pid !== undefined && processAlive(pid);
}

function tail(file: string): string {
  try {
    const t = readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ');
    return t === '' ? '(empty log)' : t;
  } catch {
    return '(no log)';
  }
}

/**
 * Starts swtpm, a private D-Bus session bus and tpm2-abrmd, makes a tpm2-pkcs11 store with one
 * token, and sets the module's environment in `process.env`.
 * @throws Error when a package is missing (guard with `describe.skipIf(tpmMissing !== undefined)`)
 *   or a daemon does not come up (the message carries the command and its log; everything started is stopped).
 */
export async function startTpm(opts: TpmOptions = {}): Promise<TpmFixture> {
  if (tpmMissing !== undefined || TPM2_PKCS11_MODULE === undefined) throw new Error(tpmMissing);
  const label = opts.label ?? 'tpmtoken';
  const userPin = opts.userPin ?? '1234';
  const soPin = opts.soPin ?? '12345678';
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const modulePath = TPM2_PKCS11_MODULE;
  const dir = mkdtempSync(join(tmpdir(), 'meshkit-tpm-'));
  const state = join(dir, 'state');
  const store = join(dir, 'store');
  mkdirSync(state);
  mkdirSync(store);
  const children: ChildProcess[] = [];
  let watchdog: ChildProcess | undefined;
  let stopped = false;

  const onSignal = (signal: NodeJS.Signals): void => {
    stop();
    process.kill(process.pid, signal); // the default action, now that the handler is gone
  };
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', stop);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    if (watchdog?.pid !== undefined && alive(watchdog.pid)) {
      try {
        process.kill(watchdog.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    // abrmd first (it holds the swtpm connection), then swtpm, then the bus.
    for (const c of [...children].reverse()) {
      if (c.pid !== undefined && alive(c.pid)) {
        try {
          process.kill(c.pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
    }
    const deadline = Date.now() + 3000;
    const wait = new Int32Array(new SharedArrayBuffer(4));
    while (children.some((c) => alive(c.pid)) && Date.now() < deadline) Atomics.wait(wait, 0, 0, 20);
    for (const c of children) {
      if (alive(c.pid)) {
        try {
          process.kill(c.pid as number, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  };
  process.on('exit', stop);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  const start = (what: keyof typeof PROGRAMS, args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; log: string } => {
    const log = join(dir, `${PROGRAMS[what].name}.log`);
    const fd = openSync(log, 'w');
    try {
      const child = spawn(found[what] as string, args, { stdio: ['ignore', fd, fd], env });
      child.on('error', () => undefined); // reported through the readiness checks
      children.push(child);
      return { child, log };
    } finally {
      closeSync(fd);
    }
  };
  const waitFor = async (what: string, log: string, child: ChildProcess, ready: () => Promise<boolean> | boolean): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await ready()) return;
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}): ${tail(log)}`);
      }
      if (Date.now() > deadline) throw new Error(`${what} did not become ready within ${timeoutMs} ms: ${tail(log)}`);
      await sleep(50);
    }
  };

  try {
    const port = await freePortPair();
    const swtpmArgs = [
      'socket', '--tpm2',
      '--tpmstate', `dir=${state}`,
      '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
      '--flags', 'not-need-init,startup-clear',
    ];
    const swtpm = start('swtpm', swtpmArgs, process.env);
    await waitFor(`swtpm ${swtpmArgs.join(' ')}`, swtpm.log, swtpm.child, () => canConnect(port + 1));

    const busSocket = join(dir, 'bus');
    const busAddress = `unix:path=${busSocket}`;
    const bus = start('dbus', ['--config-file=/usr/share/dbus-1/session.conf', '--nofork', `--address=${busAddress}`], process.env);
    await waitFor('dbus-daemon --session', bus.log, bus.child, () => existsSync(busSocket));

    const env: Record<string, string> = {
      DBUS_SESSION_BUS_ADDRESS: busAddress,
      TPM2_PKCS11_TCTI: 'tabrmd:bus_type=session',
      TPM2TOOLS_TCTI: 'tabrmd:bus_type=session',
      TPM2_PKCS11_STORE: store,
      // The esysdb backend only: the default also tries FAPI, which is not configured here and logs errors.
      TPM2_PKCS11_BACKEND: 'esysdb',
      // tss2-esys logs every TPM error (a wrong PIN is one) on stderr; the tests check the typed errors instead.
      TSS2_LOG: process.env['TSS2_LOG'] ?? 'all+NONE',
    };
    const childEnv = { ...process.env, ...env };
    // tpm2-abrmd refuses to run as root without --allow-root; direct swtpm: TCTI without it runs
    // out of TPM object slots ("out of memory for object contexts").
    const abrmdArgs = ['--allow-root', '--session', `--tcti=swtpm:host=127.0.0.1,port=${port}`];
    const abrmd = start('abrmd', abrmdArgs, childEnv);
    await waitFor(`tpm2-abrmd ${abrmdArgs.join(' ')}`, abrmd.log, abrmd.child, () => {
      try {
        execFileSync(found.getcap as string, ['properties-fixed'], { env: childEnv, stdio: 'pipe', timeout: 5000 });
        return true;
      } catch {
        return false;
      }
    });

    const ptool = (args: string[]): void => {
      try {
        execFileSync(found.ptool as string, args, { env: childEnv, stdio: 'pipe', timeout: 60_000 });
      } catch (e) {
        const err = e as { stderr?: Buffer; message: string };
        throw new Error(`tpm2_ptool ${args.filter((a) => !a.includes('pin=')).join(' ')} failed: ${err.stderr?.toString().trim() ?? err.message}`);
      }
    };
    ptool(['init', '--path', store]);
    ptool(['addtoken', '--pid=1', `--label=${label}`, `--sopin=${soPin}`, `--userpin=${userPin}`, '--path', store]);

    // A process killed without running its exit hooks (SIGKILL, a worker torn down) must not leave
    // the daemons behind: a detached shell polls this process and cleans up once it is gone.
    const pids = children.map((c) => c.pid).filter((p): p is number => p !== undefined);
    watchdog = spawn(
      '/bin/sh',
      ['-c', 'p=$1; d=$2; shift 2; while kill -0 "$p" 2>/dev/null; do sleep 1; done; kill "$@" 2>/dev/null; sleep 2; kill -9 "$@" 2>/dev/null; rm -rf "$d"', 'tpm-watchdog', String(process.pid), dir, ...pids.map(String)],
      { detached: true, stdio: 'ignore' },
    );
    watchdog.on('error', () => undefined);
    watchdog.unref();

    Object.assign(process.env, env);
    return {
      modulePath,
      dir,
      label,
      userPin,
      soPin,
      env,
      uri: (extra = '') => `pkcs11:token=${encodeURIComponent(label)}${extra}?module-path=${modulePath}`,
      stop,
    };
  } catch (e) {
    stop();
    throw e;
  }
}
