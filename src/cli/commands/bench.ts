/**
 * `meshkit bench …`: the provisioning bench (docs/bench.md; the library is src/device/bench-runner.ts).
 *
 *   meshkit bench run [--port PATH…] [--hid PATH…] [--discover]  --account DIR --admin-key URI --bench-key URI --config FILE
 *                     --out DIR [--parallel N] [--model NAME…] [--retries N] [--replug-timeout S] [--baud N]
 *                     [--timeout-ms MS] [--json]
 *   meshkit bench verify --out DIR [--account DIR] [--bench-key-id UDF] [--json]
 *   meshkit bench ports [--json]
 *
 * `--port` names a serial device (serial frames), `--hid` a USB HID device (a hidraw path or a node-hid path; 64-byte
 * reports); one run may mix both. `--discover` adds the serial ports and HID devices whose USB VID/PID match a
 * devices/ descriptor of that transport.
 *
 * Secrets never come from argv: the admin key's PIN/passphrase from --pin-env/--pin-file (or the --passphrase-*
 * spellings, MESHKIT_PIN / MESHKIT_PASSPHRASE, a prompt); the bench key's from --bench-pin-env/--bench-pin-file
 * (else the same defaults). Exit codes of `run`: 0 every device provisioned, 1 some failed (the summary names
 * them), 2 usage. `verify`: 0 the log, its signed head and every receipt hold, 1 otherwise.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import type { Signer } from '../../core/signer.js';
import { openKeyReference, parseKeyReference, type KeyStore } from '../../keystore/index.js';
import {
  discoverHidDevices,
  runBench,
  verifyBenchOutput,
  type BenchEvent,
  type BenchSummary,
  type DeviceOutcome,
} from '../../device/bench-runner.js';
import { descriptorTimeouts, findDescriptor, loadDescriptors, matchUsb, type DeviceDescriptor } from '../../device/descriptors.js';
import type { EnrollRequest } from '../../device/enroll.js';
import { listHidDevices } from '../../device/transport/hid.js';
import { listSerialPorts } from '../../device/transport/serial.js';
import { secretRequestFor } from '../pin-status.js';
import { collect } from '../io.js';
import { emit } from '../output.js';
import { ReportedFailure, UsageError } from '../main.js';
import { addSecretOptions, secretSource, type SecretCliOptions } from '../secrets.js';
import { resolveModulePath, withCkrName } from './token.js';

interface RunOptions extends SecretCliOptions {
  port?: string[];
  hid?: string[];
  discover?: boolean;
  parallel?: string;
  account: string;
  adminKey: string;
  benchKey: string;
  benchPinEnv?: string;
  benchPinFile?: string;
  config: string;
  out: string;
  model?: string[];
  json?: boolean;
  retries: string;
  replugTimeout: string;
  baud?: string;
  timeoutMs?: string;
  module?: string;
}

function intOption(value: string, name: string, min: number, max: number): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${name} expects a whole number, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`${name} expects ${min}–${max}, got ${n}`);
  return n;
}

/** Opens signers from key references and closes their stores at the end. */
class Keys {
  readonly #stores: KeyStore[] = [];
  constructor(readonly module: string | undefined) {}

  async signer(uri: string, opts: SecretCliOptions, what: string): Promise<Signer> {
    let ref;
    try {
      ref = parseKeyReference(uri);
    } catch (e) {
      throw new UsageError(`${what}: ${(e as Error).message}`);
    }
    const pkcs11 = ref.kind === 'pkcs11' && !uri.includes('module-path=');
    const modulePath = pkcs11 ? resolveModulePath(this.module) : undefined;
    const source = secretSource(opts, secretRequestFor(uri, what, modulePath));
    try {
      const { store, handle } = await openKeyReference(uri, source, { deferUnlock: true, ...(modulePath === undefined ? {} : { modulePath }) });
      this.#stores.push(store);
      return handle.signer();
    } catch (e) {
      throw withCkrName(e);
    }
  }

  async close(): Promise<void> {
    for (const s of this.#stores.splice(0)) await s.close().catch(() => undefined);
  }
}

/** The serial ports and HID devices whose USB VID/PID match a descriptor of devices/ with that transport. */
async function discoverPorts(json: boolean): Promise<{ path: string; descriptor: string; transport: 'serial' | 'hid' }[]> {
  const descriptors = await loadDescriptors();
  const found: { path: string; descriptor: string; transport: 'serial' | 'hid' }[] = [];
  for (const p of await listSerialPorts()) {
    if (p.vendorId === undefined || p.productId === undefined) continue;
    const match = matchUsb(descriptors.filter((d) => d.transport === 'serial'), p.vendorId, p.productId)[0];
    if (match !== undefined) found.push({ path: p.path, descriptor: match.id, transport: 'serial' });
  }
  if (descriptors.some((d) => d.transport === 'hid')) {
    try {
      for (const d of await discoverHidDevices(descriptors)) found.push({ path: d.path, descriptor: d.descriptor, transport: 'hid' });
    } catch (e) {
      // No node-hid here (libusb-1.0-0 missing): serial discovery still works; say why HID found nothing.
      if (!json) process.stderr.write(`meshkit: --discover: HID devices not listed: ${(e as Error).message}\n`);
    }
  }
  return found;
}

/** The descriptor a USB VID/PID matches, among those of one transport. */
function descriptorFor(descriptors: readonly DeviceDescriptor[], transport: 'serial' | 'hid', vid: string | undefined, pid: string | undefined): string | null {
  if (vid === undefined || pid === undefined) return null;
  return matchUsb(descriptors.filter((d) => d.transport === transport), vid, pid)[0]?.id ?? null;
}

/**
 * --model NAME: a descriptor id (its models) or a literal INFO.model; and the reply timeouts the devices need
 * (the longest per request among the descriptors named, or among all of them without --model).
 */
async function modelsFor(names: string[] | undefined): Promise<{ models: string[] | undefined; timeouts: Partial<Record<EnrollRequest, number>> }> {
  const descriptors = await loadDescriptors();
  if (names === undefined || names.length === 0) return { models: undefined, timeouts: descriptorTimeouts(descriptors) };
  const chosen: DeviceDescriptor[] = [];
  const models = names.flatMap((n) => {
    const d = findDescriptor(descriptors, n);
    if (d !== undefined) chosen.push(d);
    return d !== undefined && d.id === n ? [...d.models] : [n];
  });
  return { models, timeouts: descriptorTimeouts(chosen) };
}

const STEPS = ['hello', 'auth', 'keygen', 'cogen', 'install', 'commit', 'connect', 'record'];

/** Live progress: a cli-progress MultiBar on a TTY, plain lines otherwise, JSON lines with --json. */
async function progress(ports: string[], hid: ReadonlySet<string>, json: boolean): Promise<{ onEvent: (e: BenchEvent) => void; stop: () => void }> {
  if (json) {
    return { onEvent: (e) => void process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`), stop: () => undefined };
  }
  const shown = (p: string): string => (hid.has(p) ? `hid:${p}` : p);
  const width = Math.max(...ports.map((p) => shown(p).length));
  if (process.stderr.isTTY !== true) {
    return {
      onEvent: (e) => {
        if (e.phase === 'start' && e.step !== 'result') return;
        const what = e.step === 'result' ? e.status.toUpperCase() : `${e.step} ${e.phase}`;
        process.stderr.write(`${shown(e.port).padEnd(width)}  ${(e.serial ?? '').padEnd(12)} ${what}${e.ms === undefined ? '' : ` ${e.ms} ms`}${e.detail === undefined ? '' : ` — ${e.detail}`}\n`);
      },
      stop: () => undefined,
    };
  }
  const { MultiBar, Presets } = (await import('cli-progress')).default;
  // Lines must fit the terminal (cli-progress cuts them): long port paths keep their end.
  const label = (p: string): string => (p.length <= 24 ? p.padEnd(Math.min(width, 24)) : `…${p.slice(-23)}`);
  const multi = new MultiBar({
    format: ' {port} {bar} {state} {serial}',
    hideCursor: true,
    clearOnComplete: false,
    stopOnComplete: false,
    stream: process.stderr,
    barsize: 14,
  }, Presets.shades_classic);
  const bars = new Map(ports.map((p) => [p, multi.create(STEPS.length, 0, { port: label(shown(p)), serial: '', state: 'waiting'.padEnd(11) })]));
  return {
    onEvent: (e) => {
      const bar = bars.get(e.port);
      if (bar === undefined) return;
      const i = STEPS.indexOf(e.step);
      const state = e.step === 'result'
        ? (e.status === 'provisioned' ? 'PROVISIONED' : `FAILED: ${e.detail ?? ''}`)
        : e.status === 'waiting' ? `re-plug… ${e.detail ?? ''}` : e.step.padEnd(11);
      const payload = { port: label(shown(e.port)), serial: e.serial ?? '', state };
      if (e.step === 'result' && e.status === 'provisioned') bar.update(STEPS.length, payload);
      else if (i >= 0) bar.update(e.phase === 'done' ? i + 1 : i, payload);
      else bar.update(payload);
    },
    stop: () => multi.stop(),
  };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function summaryText(s: BenchSummary, out: string): string {
  const lines = [
    '',
    `bench: ${s.provisioned} provisioned, ${s.failed} failed of ${s.ports} in ${seconds(s.elapsedMs)}` +
      (s.timing === null ? '' : ` — per device min ${seconds(s.timing.minMs)}, median ${seconds(s.timing.medianMs)}, max ${seconds(s.timing.maxMs)}; ${s.devicesPerHour} devices/hour`),
  ];
  const where = (d: DeviceOutcome): string => `${d.transport === 'hid' ? 'hid:' : ''}${d.port}${d.path === undefined ? '' : ` (now ${d.path})`}`;
  const row = (d: DeviceOutcome): string => d.status === 'provisioned'
    ? `  ok      ${where(d)}  ${d.serial ?? ''} ${d.deviceId ?? ''} (${d.resumed ?? 'fresh'}, ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}, ${seconds(d.ms)}, record ${d.recordIndex ?? '?'}${d.alreadyRecorded === true ? ', already recorded' : ''})`
    : `  FAILED  ${where(d)}  ${d.serial ?? ''} ${d.reason ?? ''}${d.retryable === true ? ' [retryable: run the bench again on this device]' : ''}`;
  const per = Object.entries(s.transports).map(([t, c]) => `${t} ${c.provisioned}/${c.ports}`);
  if (per.length > 1) lines.push(`  by transport: ${per.join(', ')} provisioned`);
  lines.push(...s.devices.map(row));
  lines.push(`  records ${s.log.file} (${s.log.count} entries, head ${s.log.head ?? '(empty)'}); summary ${out}/summary.json`);
  return lines.join('\n');
}

/** Registers `meshkit bench run|verify|ports`. */
export function registerBenchCommands(program: Command): void {
  const bench = program.command('bench').description('the provisioning bench: enroll devices on many ports, signed records');

  addSecretOptions(
    bench
      .command('run')
      .description('enroll the devices on the given ports in parallel; append a signed record per provisioned device')
      .option('--port <path>', 'a serial port with a device (repeat for more)', collect)
      .option('--hid <path>', 'a USB HID device: a hidraw path (/dev/hidrawN) or a node-hid path (repeat for more)', collect)
      .option('--discover', 'add the serial ports and HID devices whose USB VID/PID match a descriptor in devices/')
      .option('--parallel <n>', 'devices enrolled at once (default: all ports)')
      .requiredOption('--account <dir>', 'the account directory the devices are connected to')
      .requiredOption('--admin-key <uri>', 'the administration key (its PIN/passphrase: --pin-env/--pin-file)')
      .requiredOption('--bench-key <uri>', 'the bench key the devices pin (its PIN/passphrase: --bench-pin-env/--bench-pin-file)')
      .option('--bench-pin-env <var>', 'read the bench key PIN/passphrase from an environment variable')
      .option('--bench-pin-file <path>', 'read the bench key PIN/passphrase from the first line of a file')
      .requiredOption('--config <file>', 'the application configuration sealed to every device (≤ 1024 bytes)')
      .requiredOption('--out <dir>', 'output: records.jsonl, records.head.json, devices/, journal/, summary.json')
      .option('--model <name>', 'accept only this model: a devices/ descriptor id or an INFO model name (repeat)', collect)
      .option('--retries <n>', 'retries per device after an unplug or a timeout', '2')
      .option('--replug-timeout <s>', 'seconds to wait for an unplugged device to come back', '30')
      .option('--baud <n>', 'serial line rate (default 115200)')
      .option('--timeout-ms <ms>', 'reply timeout per exchange attempt (default 2000)')
      .option('--module <lib>', 'PKCS#11 library when a pkcs11: URI has no module-path'),
  )
    .option('--json', 'one JSON event per line on stdout, then the summary as the last line')
    .action(async (opts: RunOptions) => {
      const json = opts.json === true;
      const ports = [...(opts.port ?? [])];
      const hid = [...(opts.hid ?? [])];
      for (const p of [...ports, ...hid]) if (p === '') throw new UsageError('--port and --hid expect a path, got ""');
      const twice = [...ports, ...hid].find((p, i, all) => all.indexOf(p) !== i);
      if (twice !== undefined) throw new UsageError(`${twice} is named twice (--port and --hid each take a device once)`);
      if (opts.discover === true) {
        for (const p of await discoverPorts(json)) {
          if (ports.includes(p.path) || hid.includes(p.path)) continue;
          (p.transport === 'hid' ? hid : ports).push(p.path);
        }
      }
      const all = [...ports, ...hid];
      if (all.length === 0) throw new UsageError(opts.discover === true ? 'no --port/--hid given and --discover found no device (meshkit bench ports lists them)' : 'give --port PATH or --hid PATH (repeat), or --discover');
      const parallel = opts.parallel === undefined ? all.length : intOption(opts.parallel, '--parallel', 1, 1024);
      const retries = intOption(opts.retries, '--retries', 0, 100);
      const replugTimeoutMs = intOption(opts.replugTimeout, '--replug-timeout', 0, 86_400) * 1000;
      const baudRate = opts.baud === undefined ? undefined : intOption(opts.baud, '--baud', 300, 16_000_000);
      const timeoutMs = opts.timeoutMs === undefined ? undefined : intOption(opts.timeoutMs, '--timeout-ms', 1, 600_000);
      let config: Uint8Array;
      try {
        config = new Uint8Array(await readFile(opts.config));
      } catch (e) {
        throw new MeshkitError(ErrorCode.IO, `cannot read ${opts.config}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
      }
      if (config.length > 1024) throw new UsageError(`--config ${opts.config} is ${config.length} bytes; a device stores at most 1024`);
      const { models, timeouts } = await modelsFor(opts.model);
      const keys = new Keys(opts.module);
      let summary: BenchSummary;
      try {
        const admin = await keys.signer(opts.adminKey, opts, 'the administration key');
        const benchSecrets: SecretCliOptions = {
          ...(opts.benchPinEnv === undefined ? {} : { pinEnv: opts.benchPinEnv }),
          ...(opts.benchPinFile === undefined ? {} : { pinFile: opts.benchPinFile }),
        };
        const benchKey = await keys.signer(opts.benchKey, benchSecrets, 'the bench key');
        const view = await progress(all, new Set(hid), json);
        try {
          summary = await runBench({
            ports, hid, out: opts.out, account: opts.account, admin, bench: benchKey, config, parallel, retries, replugTimeoutMs,
            ...(models === undefined ? {} : { models }),
            timeouts,
            groupCommit: true,
            ...(baudRate === undefined ? {} : { baudRate }),
            ...(timeoutMs === undefined ? {} : { session: { timeoutMs } }),
            onEvent: view.onEvent,
          });
        } finally {
          view.stop();
        }
      } finally {
        await keys.close();
      }
      if (json) process.stdout.write(`${JSON.stringify({ summary })}\n`);
      else process.stdout.write(`${summaryText(summary, opts.out)}\n`);
      if (summary.failed > 0) throw new ReportedFailure(`${summary.failed} device(s) failed`);
    });

  bench
    .command('verify')
    .description('re-verify a bench output: the record log, its signed head, every receipt against its Device Profile')
    .requiredOption('--out <dir>', 'the bench output directory')
    .option('--account <dir>', 'also check the records name this account and the devices are connected to it')
    .option('--bench-key-id <udf>', 'require this bench key (else the one in bench.json)')
    .option('--json', 'print JSON')
    .action(async (opts: { out: string; account?: string; benchKeyId?: string; json?: boolean }) => {
      const report = await verifyBenchOutput(opts.out, {
        ...(opts.account === undefined ? {} : { account: opts.account }),
        ...(opts.benchKeyId === undefined ? {} : { benchKey: opts.benchKeyId }),
      });
      emit({ json: opts.json === true }, report, () => report.ok
        ? `bench records ${opts.out}: ${report.count} record(s), chain and signed head hold (bench key ${report.benchKey ?? '?'}), every receipt verifies`
        : [`bench records ${opts.out}: ${report.problems.length} problem(s)`, ...report.problems.map((p) => `  ${p.message}`)].join('\n'));
      if (!report.ok) throw new ReportedFailure('bench verify failed');
    });

  bench
    .command('ports')
    .description('list serial ports and HID devices, and the devices/ descriptor their USB VID/PID matches')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const descriptors = await loadDescriptors();
      const serial = (await listSerialPorts()).map((p) => ({
        transport: 'serial' as const,
        ...p,
        descriptor: descriptorFor(descriptors, 'serial', p.vendorId, p.productId),
      }));
      const hex = (n: number): string => n.toString(16).padStart(4, '0');
      let hid: Array<Record<string, unknown> & { path: string; vendorId: string; productId: string; descriptor: string | null }> = [];
      let hidError: string | undefined;
      try {
        const matched = new Map((await discoverHidDevices(descriptors)).map((d) => [d.path, d.descriptor]));
        hid = (await listHidDevices()).map((d) => ({
          transport: 'hid' as const,
          path: d.path,
          vendorId: hex(d.vendorId),
          productId: hex(d.productId),
          ...(d.serialNumber === undefined || d.serialNumber === '' ? {} : { serialNumber: d.serialNumber }),
          ...(d.manufacturer === undefined || d.manufacturer === '' ? {} : { manufacturer: d.manufacturer }),
          ...(d.product === undefined || d.product === '' ? {} : { product: d.product }),
          ...(d.usagePage === undefined ? {} : { usagePage: hex(d.usagePage) }),
          descriptor: matched.get(d.path) ?? null,
        }));
      } catch (e) {
        hidError = (e as Error).message;
      }
      const ports = [...serial, ...hid];
      if (hidError !== undefined && opts.json === true) process.stderr.write(`meshkit: HID devices cannot be listed: ${hidError}\n`);
      emit({ json: opts.json === true }, ports, () => [
        serial.length === 0
          ? 'no serial ports (ptys are not listed: name them with --port)'
          : serial.map((p) => `serial  ${p.path}  ${p.vendorId ?? '----'}:${p.productId ?? '----'}  ${p.descriptor ?? '(no descriptor)'}  ${p.manufacturer ?? ''}`).join('\n'),
        hidError !== undefined
          ? `HID devices cannot be listed: ${hidError}`
          : hid.length === 0
            ? 'no HID devices'
            : hid.map((p) => `hid     ${p.path}  ${p.vendorId}:${p.productId}${p.usagePage === undefined ? '' : ` page ${String(p.usagePage)}`}  ${p.descriptor ?? '(no descriptor)'}  ${String(p.product ?? p.manufacturer ?? '')}`).join('\n'),
      ].join('\n'));
    });
}
