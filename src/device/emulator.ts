/**
 * The one launcher of the C device emulator (firmware-bindings/emulator, the firmware's own sources on the host
 * platform layer): builds it when needed, pairs it with a socat pty pair, and hands back the host side of the pair
 * — a real serial device for {@link SerialTransport} or the bench's `--port`. Used by `meshkit device emulate
 * --pty`, the bench (`npm run bench`) and the test suites, so a device can be killed (power loss: the pty stays),
 * unplugged (the pty goes away, as a USB-serial adapter pulled out), restarted on the same state file (its
 * "flash") and pty path, and stopped with nothing left behind.
 *
 * Secrets never go to argv: the emulator generates its keys itself; only the provisioner's PUBLIC key is passed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { abytes, aint, astring, toHex } from '../core/bytes.js';
import { ErrorCode, MeshkitError } from '../core/errors.js';

/** The repository / package root (firmware-bindings/ next to src/ and dist/). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The firmware sources and Makefile. */
const FIRMWARE_DIR = join(ROOT, 'firmware-bindings');
/** Where `make -C firmware-bindings emulator` puts the emulator. */
export const EMULATOR_PATH = join(FIRMWARE_DIR, 'build', 'mk-emulator');
/** The line the emulator prints on stderr once it serves its tty. */
const READY = 'mk-emulator: ready';
/** How long socat and the emulator get to come up. */
const START_TIMEOUT_MS = 10_000;

const found = new Map<string, boolean>();
/** Whether a tool runs here (asked once per process: a spawn costs milliseconds). */
const runs = (tool: string, args: string[] = ['--version']): boolean => {
  let ok = found.get(tool);
  if (ok === undefined) found.set(tool, (ok = spawnSync(tool, args, { stdio: 'ignore' }).error === undefined));
  return ok;
};
const sodiumHeader = (): boolean => ['/usr/include/sodium.h', '/usr/local/include/sodium.h'].some((p) => existsSync(p));

/** Why the build tools are missing, or undefined. */
function buildToolsMissing(): string | undefined {
  if (!runs('make')) return 'make is not installed (Debian: apt-get install make gcc libsodium-dev)';
  if (!runs('gcc')) return 'gcc is not installed (Debian: apt-get install make gcc libsodium-dev)';
  if (!sodiumHeader()) return 'libsodium is not installed (Debian: apt-get install libsodium-dev)';
  return undefined;
}

/**
 * Why an emulated device on a pty cannot run on this machine.
 * @returns a reason fit to print (socat missing; the emulator neither built nor buildable for want of make, gcc
 *   or libsodium-dev), or undefined when it can run
 * @throws nothing
 */
export function emulatorUnavailable(): string | undefined {
  if (!runs('socat', ['-V'])) return 'socat is not installed (Debian: apt-get install socat)';
  // A stale binary is rebuilt when the tools are there; without them an existing one is used as is.
  const missing = buildToolsMissing();
  if (missing !== undefined && !existsSync(EMULATOR_PATH)) return `the device emulator is not built and ${missing}`;
  return undefined;
}

let built = false;

/**
 * Makes sure the emulator is built and current: runs `make -C firmware-bindings emulator` (incremental) once per
 * process when make, gcc and libsodium are there; otherwise uses an existing binary as it is.
 * @returns the emulator's path ({@link EMULATOR_PATH})
 * @throws MeshkitError `ERR_IO` naming make / gcc / libsodium-dev when it is missing and cannot be built, or the
 *   build fails
 */
export function ensureEmulator(): string {
  if (built) return EMULATOR_PATH;
  const present = existsSync(EMULATOR_PATH);
  const missing = buildToolsMissing();
  if (missing !== undefined) {
    if (present) return EMULATOR_PATH;
    throw new MeshkitError(ErrorCode.IO, `cannot build the device emulator: ${missing}; it needs make, gcc and libsodium-dev`);
  }
  if (!present) process.stderr.write('meshkit: building the device emulator (make -C firmware-bindings emulator)…\n');
  const build = spawnSync('make', ['-C', FIRMWARE_DIR, 'emulator'], { encoding: 'utf8' });
  if (build.error !== undefined || build.status !== 0 || !existsSync(EMULATOR_PATH)) {
    const why = build.error !== undefined
      ? `cannot run make (${(build.error as NodeJS.ErrnoException).code ?? build.error.message})`
      : `${build.stderr}\n${build.stdout}`.trim().split('\n').slice(-3).join(' | ');
    throw new MeshkitError(ErrorCode.IO,
      `cannot build the device emulator: ${why}. It needs make, gcc and libsodium (Debian: apt-get install make gcc libsodium-dev)`);
  }
  built = true;
  return EMULATOR_PATH;
}

/** Options of {@link startEmulatedDevice}. */
export interface EmulatorOptions {
  /** The emulator's flash file (created when missing; keep it to resume). */
  readonly state: string;
  /** The serial number it reports in INFO. */
  readonly serial: string;
  /** The INFO model name (default: the emulator's own). */
  readonly model?: string;
  /** The firmware version it reports. */
  readonly firmware?: string;
  /** Throttle its replies to this line rate (8N1), as a real UART would. */
  readonly baud?: number;
  /** The raw Ed25519 public key (32 bytes) of the bench key the device pins. */
  readonly provisionerKey?: Uint8Array;
  /** The host-side pty path (a symlink socat makes; the device side is `<link>.device`). Default: in a fresh temp dir. */
  readonly link?: string;
  /** Each line the emulator writes on stderr. */
  readonly onLog?: (line: string) => void;
  /** Make only the pty pair, no emulator on it: a port nobody answers (until {@link EmulatedDevice.restart}). */
  readonly silent?: boolean;
}

/** How the emulator process ended. */
export interface EmulatorExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A running emulated device: the C emulator on the device side of a socat pty pair. */
export interface EmulatedDevice {
  /** The host side of the pty pair, for SerialTransport / `--port`. */
  readonly port: string;
  readonly serial: string;
  /** The state file (absolute). */
  readonly state: string;
  /** Settles when the current emulator process ends (never rejects; already settled while none runs, e.g. `silent`). */
  readonly exited: Promise<EmulatorExit>;
  /** Whether an emulator process is running now. */
  readonly running: boolean;
  /** Everything the emulator(s) wrote on stderr so far. */
  log(): string;
  /** Signals the emulator only (default SIGKILL: power loss); the pty stays. */
  kill(signal?: NodeJS.Signals): void;
  /** Kills the emulator and socat: the pty goes away, the host sees the tty vanish. */
  unplug(): Promise<void>;
  /** Ends a running emulator and starts a fresh one on the same state file and link (and a new pty pair if unplugged). */
  restart(): Promise<void>;
  /** Ends both, removes its temp dir; idempotent. */
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const gone = (c: ChildProcess | undefined): boolean => c === undefined || c.exitCode !== null || c.signalCode !== null;

function isLink(p: string): boolean {
  return lstatSync(p, { throwIfNoEntry: false })?.isSymbolicLink() === true;
}

async function killAndWait(child: ChildProcess | undefined, exited: Promise<unknown> | undefined): Promise<void> {
  if (child === undefined || gone(child)) {
    await exited;
    return;
  }
  child.kill('SIGKILL');
  await exited;
}

/** Every live device, so that an exiting process leaves no emulator or socat behind. */
const live = new Set<() => void>();
let setprivChecked: boolean | undefined;

/**
 * Spawns a helper process (socat, the emulator) that dies with this process even when this process is killed
 * with SIGKILL (no exit hook runs then): through util-linux `setpriv --pdeathsig TERM`, which sets
 * PR_SET_PDEATHSIG and execs the program (same pid). Without setpriv, a plain spawn (the exit hook still covers
 * normal exits and signals).
 */
function spawnTied(command: string, args: readonly string[]): ChildProcess {
  setprivChecked ??= spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
  const options = { stdio: ['ignore', 'ignore', 'pipe'] as ['ignore', 'ignore', 'pipe'] };
  return setprivChecked ? spawn('setpriv', ['--pdeathsig', 'TERM', '--', command, ...args], options) : spawn(command, [...args], options);
}

let exitHook = false;
function onProcessExit(): void {
  for (const kill of live) kill();
}

/**
 * Starts socat (a pty pair) and the C emulator on its device side, and waits until the emulator is ready.
 * @param opts state file, serial, model, firmware, baud, provisioner key, link path, log sink
 * @returns the device; `port` is the host side of the pair
 * @throws TypeError / RangeError naming the option for a wrong option
 * @throws MeshkitError `ERR_IO` when socat is missing or does not make the pair, the emulator cannot be built, or
 *   it exits before it is ready (its log in the message)
 */
export async function startEmulatedDevice(opts: EmulatorOptions): Promise<EmulatedDevice> {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" expected an object');
  astring(opts.state, 'state');
  astring(opts.serial, 'serial');
  if (opts.state.length === 0) throw new RangeError('"state" expected a file path, got ""');
  if (opts.serial.length === 0 || opts.serial.length > 64) throw new RangeError('"serial" expected 1..64 characters');
  if (opts.model !== undefined) astring(opts.model, 'model');
  if (opts.firmware !== undefined) astring(opts.firmware, 'firmware');
  if (opts.baud !== undefined) {
    aint(opts.baud, 'baud', 10, 10_000_000);
  }
  if (opts.provisionerKey !== undefined) abytes(opts.provisionerKey, 'provisionerKey', 32);
  if (opts.link !== undefined) {
    astring(opts.link, 'link');
    if (opts.link.length === 0) throw new RangeError('"link" expected a path, got ""');
  }
  if (opts.onLog !== undefined && typeof opts.onLog !== 'function') throw new TypeError('"onLog" expected a function');
  if (!runs('socat', ['-V'])) throw new MeshkitError(ErrorCode.IO, 'socat is not installed (Debian: apt-get install socat)');
  const emulatorPath = ensureEmulator();

  const scratch = opts.link === undefined ? mkdtempSync(join(tmpdir(), 'meshkit-emu-')) : undefined;
  const port = scratch !== undefined ? join(scratch, 'host') : resolve(opts.link as string);
  const tty = scratch !== undefined ? join(scratch, 'device') : `${port}.device`;
  const state = resolve(opts.state);
  const args = ['--tty', tty, '--state', state, '--serial', opts.serial,
    ...(opts.model === undefined ? [] : ['--model', opts.model]),
    ...(opts.firmware === undefined ? [] : ['--firmware', opts.firmware]),
    ...(opts.baud === undefined ? [] : ['--baud', String(opts.baud)]),
    ...(opts.provisionerKey === undefined ? [] : ['--provisioner-key', toHex(opts.provisionerKey)])];

  let socat: ChildProcess | undefined;
  let socatExited: Promise<unknown> | undefined;
  let socatErr = '';
  let emulator: ChildProcess | undefined;
  let exited: Promise<EmulatorExit> = Promise.resolve({ code: null, signal: null });
  let log = '';
  let stopped = false;

  const startSocat = async (): Promise<void> => {
    for (const p of [tty, port]) if (isLink(p)) unlinkSync(p); // left by a killed socat: it would refuse to start
    socatErr = '';
    const child = spawnTied('socat', [`pty,raw,echo=0,link=${tty}`, `pty,raw,echo=0,link=${port}`]);
    socat = child;
    socatExited = new Promise((r) => child.once('close', r));
    child.stderr?.on('data', (c: Buffer) => void (socatErr += c.toString('utf8')));
    child.once('error', (e) => void (socatErr += e.message));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(existsSync(tty) && existsSync(port))) {
      if (gone(child) || Date.now() > deadline) {
        throw new MeshkitError(ErrorCode.IO, `socat did not create the pty pair ${tty} / ${port}${socatErr === '' ? '' : `: ${socatErr.trim()}`}`);
      }
      await sleep(10);
    }
  };

  const startEmulator = async (): Promise<void> => {
    const child = spawnTied(emulatorPath, args);
    emulator = child;
    const mark = log.length;
    let pending = '';
    child.stderr?.on('data', (c: Buffer) => {
      const text = c.toString('utf8');
      log += text;
      if (opts.onLog === undefined) return;
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) opts.onLog(line);
    });
    exited = new Promise((r) => {
      child.once('error', (e) => {
        log += `mk-emulator: cannot start: ${e.message}\n`;
        r({ code: null, signal: null });
      });
      child.once('close', (code, signal) => {
        if (pending !== '') opts.onLog?.(pending);
        pending = '';
        r({ code, signal });
      });
    });
    let ended = false;
    void exited.then(() => void (ended = true));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!log.slice(mark).includes(READY)) {
      if (ended || Date.now() > deadline) {
        if (!ended) child.kill('SIGKILL');
        throw new MeshkitError(ErrorCode.IO, `the device emulator did not start: ${log.slice(mark).trim() || '(no output)'}`);
      }
      await sleep(10);
    }
  };

  const killAll = (): void => {
    if (!gone(emulator)) emulator?.kill('SIGKILL');
    if (!gone(socat)) socat?.kill('SIGKILL');
  };

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    live.delete(killAll);
    await killAndWait(emulator, exited);
    if (!gone(socat)) {
      socat?.kill('SIGTERM'); // socat removes its links on SIGTERM
      const timer = setTimeout(() => socat?.kill('SIGKILL'), 2000);
      await socatExited;
      clearTimeout(timer);
    }
    await socatExited;
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
    else for (const p of [tty, port]) if (isLink(p)) rmSync(p, { force: true });
  };

  live.add(killAll);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', onProcessExit);
  }
  try {
    await startSocat();
    if (opts.silent !== true) await startEmulator();
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    port,
    serial: opts.serial,
    state,
    get exited() {
      return exited;
    },
    get running() {
      return !gone(emulator);
    },
    log: () => log,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!gone(emulator)) emulator?.kill(signal);
    },
    async unplug() {
      await killAndWait(emulator, exited);
      await killAndWait(socat, socatExited);
      // The device node goes with the device: a dangling link could later point at another pty with the same number.
      for (const p of [tty, port]) if (isLink(p)) rmSync(p, { force: true });
    },
    async restart() {
      if (stopped) throw new MeshkitError(ErrorCode.IO, `the emulated device ${opts.serial} was stopped`);
      await killAndWait(emulator, exited);
      if (gone(socat)) await startSocat();
      await startEmulator();
    },
    stop,
  };
}

