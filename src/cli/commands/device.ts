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
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import { fromB64u, fromHex, toHex } from '../../core/bytes.js';
import { parseJsonStrict } from '../../core/jose.js';
import { findDescriptor, loadDescriptors } from '../../device/descriptors.js';
import { ensureEmulator, startEmulatedDevice, type EmulatorExit } from '../../device/emulator.js';
import { ReportedFailure, UsageError } from '../main.js';

export { EMULATOR_PATH, ensureEmulator } from '../../device/emulator.js';

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
      const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
      let result: EmulatorExit;
      if (opts.pty === true) {
        // socat pty pair + emulator, through the one launcher (src/device/emulator.ts)
        const device = await startEmulatedDevice({
          state, serial,
          ...(model === undefined ? {} : { model }),
          ...(opts.firmware === undefined ? {} : { firmware: opts.firmware }),
          ...(baud === undefined ? {} : { baud: Number(baud) }),
          ...(pkey === undefined ? {} : { provisionerKey: fromHex(pkey) }),
          ...(opts.link === undefined ? {} : { link: resolve(opts.link) }),
          onLog: (line) => void process.stderr.write(`${line}\n`),
        });
        const forward = (signal: NodeJS.Signals): void => device.kill(signal);
        for (const s of signals) process.on(s, forward);
        try {
          process.stdout.write(`${device.port}\n`);
          result = await device.exited;
        } finally {
          for (const s of signals) process.off(s, forward);
          await device.stop();
        }
      } else {
        const emulator = ensureEmulator();
        const args = [...(opts.hidg !== undefined ? ['--hidg', opts.hidg] : ['--tty', opts.tty as string]), '--state', state, '--serial', serial,
          ...(model === undefined ? [] : ['--model', model]),
          ...(opts.firmware === undefined ? [] : ['--firmware', opts.firmware]),
          ...(baud === undefined ? [] : ['--baud', baud]),
          ...(pkey === undefined ? [] : ['--provisioner-key', pkey])];
        const child = spawn(emulator, args, { stdio: ['ignore', 'inherit', 'inherit'] });
        const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
        // If this process ends any other way (an exception), the emulator ends with it.
        const orphan = (): void => {
          if (child.exitCode === null) child.kill('SIGTERM');
        };
        process.once('exit', orphan);
        for (const s of signals) process.on(s, forward);
        try {
          result = await new Promise((resolveExit, reject) => {
            child.once('error', reject);
            child.once('exit', (code, signal) => resolveExit({ code, signal }));
          });
        } finally {
          for (const s of signals) process.off(s, forward);
          process.off('exit', orphan);
        }
      }
      if (result.code !== 0) {
        process.stderr.write(`meshkit: the emulator exited with ${result.signal ?? `status ${result.code}`}\n`);
        throw new ReportedFailure('emulator failed');
      }
    });
}
