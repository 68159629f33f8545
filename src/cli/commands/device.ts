/**
 * `meshkit device emulate`: runs the C device emulator (firmware-bindings/emulator, the firmware's own sources on
 * the host platform layer) in the foreground on a tty (docs/bench.md "Emulated devices").
 *
 *   meshkit device emulate (--tty PATH | --pty [--link PATH] | --hidg PATH) --state FILE [--model NAME]
 *                          [--serial S] [--firmware V] [--baud N]
 *                          [--provisioner-key HEX | --provisioner-key-file FILE]
 *
 * Builds firmware-bindings/build/mk-emulator first when it is missing (`make -C firmware-bindings emulator`: needs
 * make, gcc and libsodium-dev). `--model` names a devices/<id>/descriptor.json (its first model name, and its baud
 * rate when the device has a real UART) or, when no descriptor has that id, a literal INFO model name. `--pty`
 * makes a socat pty pair and prints the host-side path on stdout (the bench's `--port`). SIGINT / SIGTERM / SIGHUP
 * are forwarded to the emulator; the command exits when it does (0 on a signal).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import { fromB64u, toHex } from '../../core/bytes.js';
import { parseJsonStrict } from '../../core/jose.js';
import { findDescriptor, loadDescriptors } from '../../device/descriptors.js';
import { ReportedFailure, UsageError } from '../main.js';

/** The repository / package root (bin/, dist/, firmware-bindings/). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Where `make emulator` puts the emulator. */
export const EMULATOR_PATH = join(ROOT, 'firmware-bindings', 'build', 'mk-emulator');

interface EmulateOptions {
  tty?: string;
  pty?: boolean;
  link?: string;
  hidg?: string;
  state: string;
  model?: string;
  serial?: string;
  firmware?: string;
  baud?: string;
  provisionerKey?: string;
  provisionerKeyFile?: string;
}

/**
 * Builds the emulator when it is missing.
 * @returns its path
 * @throws MeshkitError `ERR_IO` naming make / gcc / libsodium-dev when the build fails
 */
export function ensureEmulator(): string {
  if (existsSync(EMULATOR_PATH)) return EMULATOR_PATH;
  process.stderr.write('meshkit: building the device emulator (make -C firmware-bindings emulator)…\n');
  const build = spawnSync('make', ['-C', join(ROOT, 'firmware-bindings'), 'emulator'], { encoding: 'utf8' });
  if (build.error !== undefined || build.status !== 0 || !existsSync(EMULATOR_PATH)) {
    const why = build.error !== undefined ? `cannot run make (${(build.error as NodeJS.ErrnoException).code ?? build.error.message})` : (build.stderr || build.stdout).trim().split('\n').slice(-3).join(' | ');
    throw new MeshkitError(ErrorCode.IO,
      `cannot build the device emulator: ${why}. It needs make, gcc and libsodium (Debian: apt-get install make gcc libsodium-dev)`);
  }
  return EMULATOR_PATH;
}

/** A provisioner key as 64 hex digits: from hex, or a file holding hex, a JWK, or bench.json's PublicJwk. */
async function provisionerKey(opts: EmulateOptions): Promise<string | undefined> {
  if (opts.provisionerKey !== undefined && opts.provisionerKeyFile !== undefined) throw new UsageError('give --provisioner-key or --provisioner-key-file, not both');
  let text = opts.provisionerKey;
  if (opts.provisionerKeyFile !== undefined) {
    try {
      text = (await readFile(opts.provisionerKeyFile, 'utf8')).trim();
    } catch (e) {
      throw new MeshkitError(ErrorCode.IO, `cannot read ${opts.provisionerKeyFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
    if (text.startsWith('{')) {
      type Jwk = { x?: unknown; crv?: unknown };
      const json = parseJsonStrict(text) as Jwk & { PublicJwk?: Jwk; publicJwk?: Jwk };
      const jwk = json.PublicJwk ?? json.publicJwk ?? json;
      if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
        throw new UsageError(`${opts.provisionerKeyFile}: expected an Ed25519 JWK, \`meshkit key show --json\` output or a bench output's bench.json`);
      }
      text = toHex(fromB64u(jwk.x, 'x'));
    }
  }
  if (text === undefined) return undefined;
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new UsageError('the provisioner key must be 64 hex digits (the raw Ed25519 public key of the bench key)');
  return text.toLowerCase();
}

async function waitForPaths(paths: string[], child: ChildProcess, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!paths.every((p) => existsSync(p))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new MeshkitError(ErrorCode.IO, `socat did not create ${paths.join(' and ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Registers `meshkit device emulate` (on the `device` group the admin commands may already have made). */
export function registerDeviceCommands(program: Command): void {
  const device = program.commands.find((c) => c.name() === 'device') ?? program.command('device').description('devices: the device side, and the C device emulator');
  device
    .command('emulate')
    .description('run the C device emulator in the foreground on a tty (or a new pty pair)')
    .option('--tty <path>', 'the tty the emulator serves (the device side of a pty pair, /dev/ttyGS0, …)')
    .option('--pty', 'make a socat pty pair and serve its device side; the host side is printed on stdout')
    .option('--link <path>', 'with --pty: the host-side link path (default: a new temporary directory)')
    .option('--hidg <path>', 'serve a HID gadget (/dev/hidg0) instead of a tty')
    .requiredOption('--state <file>', 'the emulator\'s flash (created when missing; keep it to resume)')
    .option('--model <name>', 'a devices/ descriptor id (defaults from it) or an INFO model name')
    .option('--serial <s>', 'the serial number (default: derived from the state file path)')
    .option('--firmware <v>', 'the firmware version it reports')
    .option('--baud <n>', 'throttle replies to this line rate (8N1)')
    .option('--provisioner-key <hex>', 'the bench public key the device pins (64 hex digits)')
    .option('--provisioner-key-file <file>', 'the same from a file: hex, an Ed25519 JWK, `meshkit key show --json` output or a bench.json')
    .action(async (opts: EmulateOptions) => {
      const targets = [opts.tty !== undefined, opts.pty === true, opts.hidg !== undefined].filter(Boolean).length;
      if (targets !== 1) throw new UsageError('give exactly one of --tty PATH, --pty or --hidg PATH');
      if (opts.link !== undefined && opts.pty !== true) throw new UsageError('--link goes with --pty');
      let model = opts.model;
      let baud = opts.baud;
      if (opts.model !== undefined) {
        const d = findDescriptor(await loadDescriptors(), opts.model);
        if (d !== undefined && d.id === opts.model) {
          if (d.transport === 'hid' && opts.hidg === undefined) throw new UsageError(`${d.id} is a HID device: serve it with --hidg PATH`);
          model = d.models[0];
          if (baud === undefined && d.baud !== undefined && !d.quirks.ignoresBaud) baud = String(d.baud);
        }
      }
      if (baud !== undefined && !/^\d+$/.test(baud)) throw new UsageError(`--baud expects a whole number, got ${JSON.stringify(baud)}`);
      const pkey = await provisionerKey(opts);
      const state = resolve(opts.state);
      const serial = opts.serial ?? `EMU-${createHash('sha256').update(state).digest('hex').slice(0, 8).toUpperCase()}`;
      const emulator = ensureEmulator();

      let socat: ChildProcess | undefined;
      let scratch: string | undefined;
      let tty = opts.tty;
      if (opts.pty === true) {
        if (spawnSync('socat', ['-V'], { stdio: 'ignore' }).error !== undefined) throw new MeshkitError(ErrorCode.IO, 'socat is not installed (Debian: apt-get install socat)');
        const host = opts.link !== undefined ? resolve(opts.link) : join((scratch = mkdtempSync(join(tmpdir(), 'meshkit-pty-'))), 'host');
        const dev = scratch !== undefined ? join(scratch, 'device') : `${host}.device`;
        // A link left by a killed socat would stop socat from making the pair again.
        for (const p of [dev, host]) if (lstatSync(p, { throwIfNoEntry: false })?.isSymbolicLink() === true) unlinkSync(p);
        socat = spawn('socat', [`pty,raw,echo=0,link=${dev}`, `pty,raw,echo=0,link=${host}`], { stdio: ['ignore', 'ignore', 'inherit'] });
        await waitForPaths([dev, host], socat, 5000);
        tty = dev;
        process.stdout.write(`${host}\n`);
      }
      const args = [...(opts.hidg !== undefined ? ['--hidg', opts.hidg] : ['--tty', tty as string]), '--state', state, '--serial', serial,
        ...(model === undefined ? [] : ['--model', model]),
        ...(opts.firmware === undefined ? [] : ['--firmware', opts.firmware]),
        ...(baud === undefined ? [] : ['--baud', baud]),
        ...(pkey === undefined ? [] : ['--provisioner-key', pkey])];
      const child = spawn(emulator, args, { stdio: ['ignore', 'inherit', 'inherit'] });
      const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
      // If this process ends any other way (an exception), the emulator and socat end with it.
      const orphans = (): void => {
        if (child.exitCode === null) child.kill('SIGTERM');
        socat?.kill('SIGTERM');
      };
      process.once('exit', orphans);
      const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
      for (const s of signals) process.on(s, forward);
      let result: { code: number | null; signal: NodeJS.Signals | null };
      try {
        result = await new Promise((resolveExit, reject) => {
          child.once('error', reject);
          child.once('exit', (code, signal) => resolveExit({ code, signal }));
        });
      } finally {
        for (const s of signals) process.off(s, forward);
        process.off('exit', orphans);
        socat?.kill('SIGTERM');
        if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
      }
      if (result.code !== 0) {
        process.stderr.write(`meshkit: the emulator exited with ${result.signal ?? `status ${result.code}`}\n`);
        throw new ReportedFailure('emulator failed');
      }
    });
}
