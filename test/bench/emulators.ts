/**
 * TEST helper for the bench suites: real C device emulators (firmware-bindings/build/mk-emulator) on socat pty
 * pairs, each with its own state file (its "flash"), plus the bench's inputs (an account from a real ceremony on
 * SoftHSM, a software-keystore bench key). A device can be killed (SIGKILL: it stops answering), unplugged (the
 * emulator and socat SIGKILLed: the host tty goes away) and started again on the same state file and pty paths.
 * The emulators are launched by src/device/emulator.ts (the one launcher); this only names and collects them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SoftwareKeyStore } from '../../src/keystore/index.js';
import type { Signer } from '../../src/core/signer.js';
import { emulatorUnavailable, ensureEmulator, startEmulatedDevice, type EmulatedDevice as LaunchedDevice } from '../../src/device/emulator.js';
import { softhsmMissing } from '../helpers/softhsm.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Why the suites cannot run here (printed), or undefined. */
export function benchSkipReason(): string | undefined {
  return emulatorUnavailable() ?? softhsmMissing;
}

/** Builds the emulator (make -C firmware-bindings emulator); throws with make's output on failure. */
export function buildEmulator(): void {
  ensureEmulator();
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
  readonly #devices = new Set<LaunchedDevice>();

  /** Creates (and starts) an emulated device. */
  async device(opts: DeviceOptions): Promise<EmulatedDevice> {
    const launched = await startEmulatedDevice({
      link: join(this.dir, `${opts.name}-host`),
      state: join(this.dir, `${opts.name}.state`),
      serial: opts.serial ?? `SN-${opts.name.toUpperCase()}`,
      ...(opts.model === undefined ? {} : { model: opts.model }),
      ...(opts.provisionerKey === undefined ? {} : { provisionerKey: new Uint8Array(Buffer.from(opts.provisionerKey, 'hex')) }),
      ...(opts.silent === true ? { silent: true } : {}),
    });
    this.#devices.add(launched);
    return {
      port: launched.port, serial: launched.serial, state: launched.state,
      log: () => launched.log(),
      start: async () => {
        if (opts.silent !== true && !launched.running) await launched.restart();
      },
      kill: async () => {
        launched.kill('SIGKILL');
        await launched.exited;
      },
      unplug: () => launched.unplug(),
      stop: () => launched.stop(),
    };
  }

  /** Stops every device and removes the directory. */
  async cleanup(): Promise<void> {
    await Promise.all([...this.#devices].map((d) => d.stop()));
    rmSync(this.dir, { recursive: true, force: true });
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
