/**
 * TEST helper for the bench suites: real C device emulators (firmware-bindings/build/mk-emulator) on socat pty
 * pairs, each with its own state file (its "flash"), plus the bench's inputs (an account from a real ceremony on
 * SoftHSM, a software-keystore bench key). A device can be killed (SIGKILL: it stops answering), unplugged (the
 * emulator and socat SIGKILLed: the host tty goes away) and started again on the same state file and pty paths.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SoftwareKeyStore } from '../../src/keystore/index.js';
import type { Signer } from '../../src/core/signer.js';
import { softhsmMissing } from '../helpers/softhsm.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const emulatorPath = join(repoRoot, 'firmware-bindings', 'build', 'mk-emulator');

/** Why the suites cannot run here (printed), or undefined. */
export function benchSkipReason(): string | undefined {
  for (const tool of ['socat', 'make', 'gcc']) {
    if (spawnSync(tool, ['-V'], { stdio: 'ignore' }).error !== undefined) return `'${tool}' is not installed`;
  }
  if (!existsSync('/usr/include/sodium.h')) return 'libsodium is not installed (apt-get install libsodium-dev)';
  if (softhsmMissing !== undefined) return softhsmMissing;
  return undefined;
}

/** Builds the emulator (make -C firmware-bindings emulator); throws with make's output on failure. */
export function buildEmulator(): void {
  const build = spawnSync('make', ['-C', 'firmware-bindings', 'emulator'], { cwd: repoRoot, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`make emulator failed:\n${build.stdout}\n${build.stderr}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export interface EmulatedDevice {
  /** The host side of the pty pair: the bench's --port. */
  readonly port: string;
  readonly serial: string;
  readonly state: string;
  /** The emulator's stderr so far. */
  log(): string;
  /** Starts socat (if not running) and the emulator (if not running), on the same paths and state file. */
  start(): Promise<void>;
  /** SIGKILLs the emulator (socat stays: the port is there, nobody answers). */
  kill(): Promise<void>;
  /** SIGKILLs the emulator and socat (the port goes away, as on a USB unplug). */
  unplug(): Promise<void>;
  stop(): Promise<void>;
}

export interface DeviceOptions {
  readonly name: string;
  readonly model?: string;
  readonly serial?: string;
  /** 64 hex digits, the provisioner key the device pins (omit: none). */
  readonly provisionerKey?: string;
  /** Do not start the emulator (a port that never answers). */
  readonly silent?: boolean;
}

/** A scratch directory with emulated devices in it. */
export class EmulatorLab {
  readonly dir = mkdtempSync(join(tmpdir(), 'meshkit-bench-'));
  readonly #children = new Set<ChildProcess>();

  #spawn(cmd: string, args: string[]): ChildProcess {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#children.add(child);
    child.on('exit', () => this.#children.delete(child));
    return child;
  }

  /** Creates (and starts) an emulated device. */
  async device(opts: DeviceOptions): Promise<EmulatedDevice> {
    const port = join(this.dir, `${opts.name}-host`);
    const dev = join(this.dir, `${opts.name}-dev`);
    const state = join(this.dir, `${opts.name}.state`);
    const serial = opts.serial ?? `SN-${opts.name.toUpperCase()}`;
    let socat: ChildProcess | undefined;
    let emulator: ChildProcess | undefined;
    let log = '';
    const exited = (c: ChildProcess | undefined): boolean => c === undefined || c.exitCode !== null || c.signalCode !== null;
    const killWait = async (c: ChildProcess | undefined): Promise<void> => {
      if (c === undefined || exited(c)) return;
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    };
    const device: EmulatedDevice = {
      port, serial, state,
      log: () => log,
      start: async () => {
        if (exited(socat)) {
          for (const p of [port, dev]) if (existsSync(p) || isLink(p)) unlinkSync(p);
          socat = this.#spawn('socat', [`pty,raw,echo=0,link=${dev}`, `pty,raw,echo=0,link=${port}`]);
          await waitFor(`socat ${opts.name}`, () => existsSync(dev) && existsSync(port), 5000);
        }
        if (opts.silent === true || !exited(emulator)) return;
        const mark = log.length;
        emulator = this.#spawn(emulatorPath, ['--tty', dev, '--state', state, '--serial', serial,
          ...(opts.model === undefined ? [] : ['--model', opts.model]),
          ...(opts.provisionerKey === undefined ? [] : ['--provisioner-key', opts.provisionerKey])]);
        emulator.stderr?.on('data', (c: Buffer) => {
          log += c.toString('utf8');
        });
        await waitFor(`emulator ${opts.name} ready`, () => log.slice(mark).includes('mk-emulator: ready') || exited(emulator), 5000);
        if (exited(emulator)) throw new Error(`emulator ${opts.name} exited: ${log}`);
      },
      kill: () => killWait(emulator),
      unplug: async () => {
        await killWait(emulator);
        await killWait(socat);
      },
      stop: async () => {
        await killWait(emulator);
        await killWait(socat);
      },
    };
    await device.start();
    return device;
  }

  /** Kills every child and removes the directory. */
  async cleanup(): Promise<void> {
    for (const c of [...this.#children]) c.kill('SIGKILL');
    await sleep(50);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Passphrase of the test bench key store. */
export const BENCH_PASSPHRASE = 'bench-pass-4417';

/** A software key store with an Ed25519 key `bench` (the provisioner key); its URI and the open signer. */
export async function makeBenchKey(dir: string, name = 'bench'): Promise<{ uri: string; signer: Signer; hex: string; close(): Promise<void> }> {
  const path = join(dir, `${name}.keys`);
  const store = await SoftwareKeyStore.open(path, new TextEncoder().encode(BENCH_PASSPHRASE), { create: true, kdfCost: 14 });
  const key = await store.generate('bench', 'Ed25519');
  const signer = key.signer();
  const hex = Buffer.from(signer.publicJwk.x, 'base64url').toString('hex');
  return { uri: `file:${path}#bench`, signer, hex, close: () => store.close() };
}
