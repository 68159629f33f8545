/**
 * The provisioning bench: enrolls the devices on many serial ports and USB HID devices at once (docs/bench.md).
 *
 * One worker per port, at most `parallel` at a time. A worker opens the port ({@link SerialTransport} with serial
 * frames for `ports`, {@link HidTransport} with 64-byte reports ({@link hidCodec}) for `hid` paths), runs
 * {@link enrollDevice} (docs/enrollment.md) with the journal in `OUT/journal/`, and — only once the device has
 * signed its RECEIPT and is connected to the account — appends the record to the signed linked-hash log
 * `OUT/records.jsonl` (HashLog entry Type `DeviceProvisioned`), stores the composite Device Profile as
 * `OUT/devices/<deviceId>.json` and signs the new head with the bench key into `OUT/records.head.json`. A device is
 * "provisioned" only after that append.
 *
 * Faults: a port that goes away mid-enrollment ({@link DeviceDisconnectedError}) or a device that stops answering
 * ({@link DeviceTimeoutError}) is failed-and-retryable: the worker waits up to `replugTimeoutMs` for the port to be
 * back (serial: the path exists again; HID: the HID listing shows the device again — the same path, or, when the
 * device has a USB serial number, the same VID/PID/serial number at another hidraw path) and runs the enrollment again — the journal makes the device resume (every step is idempotent) — up to
 * `retries` more times. Anything else (wrong model, a bench key the device does not pin, a composite mismatch, a
 * device the account refuses) fails the device at once with the reason. Personal Profile updates run one at a time
 * (`connectDevicesBatch`, which takes the account lock itself); with `groupCommit` they are a group commit
 * ({@link GroupCommit}): the devices that reach `connect` while an update runs are connected together in the next
 * one — one Personal Profile version, one signature, one publish for them all — each with its own outcome (a device
 * the account refuses fails alone).
 * Record appends are grouped the same way (one log write + fsync and one head signature per group; each Device
 * Profile file still written and fsynced on its own; nobody returns before its record is on disk).
 */
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { aint, aobject, astring, describe, fromB64u } from '../core/bytes.js';
import { DeviceError, ErrorCode, MeshkitError } from '../core/errors.js';
import { HashLog, signLogHead, verifyLog, verifyLogHead, type LogEntry } from '../core/hashlog.js';
import { parseJsonStrict } from '../core/jose.js';
import { keyId } from '../core/keys.js';
import { ProfileType, readProfile, verifyProfile, type SignedProfile } from '../core/profiles.js';
import type { PublicJwk, Signer } from '../core/signer.js';
import { loadAccount, verifyAccount } from '../admin/account.js';
import { connectDevicesBatch } from '../admin/updates.js';
import { countingTransport, enrollDevice, EnrollmentError, fileJournal, verifyRecord, type EnrollmentPlan, type EnrollmentResult, type EnrollStep, type StepEvent } from './enroll.js';
import type { DeviceDescriptor, UsbId } from './descriptors.js';
import { DeviceSession, DeviceTimeoutError, hidCodec, type DeviceSessionOptions, type SessionCodec } from './session.js';
import { HidOpenError, HidTransport, listHidDevices, type HidBackend, type HidDeviceInfo } from './transport/hid.js';
import { SerialOpenError, SerialTransport } from './transport/serial.js';
import { DeviceDisconnectedError, type Transport } from './transport/types.js';
import { processAlive, readLinesIfExists, writeFileAtomic } from '../util/fs.js';

/** The hashlog entry type of a bench record. */
export const RECORD_TYPE = 'DeviceProvisioned';
/** Files under the output directory. */
export const BenchFiles = {
  records: 'records.jsonl',
  head: 'records.head.json',
  bench: 'bench.json',
  summary: 'summary.json',
  journal: 'journal',
  devices: 'devices',
  lock: 'bench.lock',
} as const;

/** Default retries after the first attempt, per port. */
export const DEFAULT_BENCH_RETRIES = 2;
/** Default wait for a port to come back, in ms. */
export const DEFAULT_REPLUG_TIMEOUT_MS = 30_000;

/** What a worker is doing: an enrollment step, or the bench's own `open` / `replug` / `record` / `result`. */
export type BenchStep = EnrollStep | 'open' | 'replug' | 'record' | 'result';

/** How a bench port is reached. */
export type BenchTransport = 'serial' | 'hid';

/** One progress event (one JSON line of `meshkit bench run --json`). */
export interface BenchEvent {
  readonly port: string;
  /** serial (`ports`) or hid (`hid`). */
  readonly transport: BenchTransport;
  readonly serial?: string;
  readonly step: BenchStep;
  readonly phase: 'start' | 'done' | 'failed';
  /** Duration of the step (phase done) or of the whole device (step result). */
  readonly ms?: number;
  /** running while a step runs, waiting for a re-plug, and the final provisioned / failed. */
  readonly status: 'running' | 'waiting' | 'provisioned' | 'failed';
  readonly attempt: number;
  readonly detail?: string;
  readonly retryable?: boolean;
}

/** The outcome for one port. */
export interface DeviceOutcome {
  readonly port: string;
  readonly transport: BenchTransport;
  /** HID: the path the device was last opened at, when it came back at another one. */
  readonly path?: string;
  readonly status: 'provisioned' | 'failed';
  readonly serial?: string;
  readonly model?: string;
  /** The composite Device Profile identifier. */
  readonly deviceId?: string;
  readonly attempts: number;
  /** Wall time from the first open to the outcome. */
  readonly ms: number;
  readonly resumed?: EnrollmentResult['resumed'];
  /** The step that failed. */
  readonly step?: BenchStep;
  readonly reason?: string;
  /** True when running the bench again on this device can complete it (its journal resumes it). */
  readonly retryable?: boolean;
  /** The record's position and Id in records.jsonl. */
  readonly recordIndex?: number;
  readonly recordId?: string;
  /** The record was already in the log (a re-run of a finished device): not appended again. */
  readonly alreadyRecorded?: boolean;
  readonly bytesSent?: number;
  readonly bytesReceived?: number;
}

/** The bench summary (also OUT/summary.json). */
export interface BenchSummary {
  readonly started: string;
  readonly finished: string;
  readonly elapsedMs: number;
  readonly ports: number;
  readonly provisioned: number;
  readonly failed: number;
  /** Per transport: ports, provisioned, failed (a transport no port used is left out). */
  readonly transports: Partial<Record<BenchTransport, { readonly ports: number; readonly provisioned: number; readonly failed: number }>>;
  readonly devices: readonly DeviceOutcome[];
  /** Time per provisioned device (null when none was). */
  readonly timing: { readonly minMs: number; readonly medianMs: number; readonly maxMs: number } | null;
  /** Provisioned devices per hour of wall time. */
  readonly devicesPerHour: number;
  readonly log: { readonly file: string; readonly count: number; readonly head: string | null };
}

/** Options of {@link runBench}. */
export interface BenchRunOptions {
  /** Serial device paths, one worker each (may be empty when `hid` names devices). */
  readonly ports: readonly string[];
  /** USB HID device paths (hidraw `/dev/hidrawN`, or a node-hid path), one worker each, speaking 64-byte reports. */
  readonly hid?: readonly string[];
  /** The HID back end for opening and listing HID devices (default: node-hid); a seam for tests. */
  readonly hidBackend?: HidBackend;
  /** The output directory (records, head, journal, devices, summary). */
  readonly out: string;
  /** The account directory (src/admin/account.ts). */
  readonly account: string;
  /** An administration key of the account (Ed25519): signs the connection and the Personal Profile. */
  readonly admin: Signer;
  /** The bench key (Ed25519) the devices pin: BENCH_AUTH and the log head. */
  readonly bench: Signer;
  /** The application configuration sealed to every device. */
  readonly config: Uint8Array;
  /** INFO.model values accepted (default: any). */
  readonly models?: readonly string[];
  /** Reply timeouts per request where devices need longer than the session's (descriptorTimeouts of the models). */
  readonly timeouts?: EnrollmentPlan['timeouts'];
  /** Workers at once (default: every port). */
  readonly parallel?: number;
  /** Retries per port after a disconnect or timeout (default 2). */
  readonly retries?: number;
  /** How long to wait for a port to come back, in ms (default 30 000). */
  readonly replugTimeoutMs?: number;
  /** Serial line rate (default 115200). */
  readonly baudRate?: number;
  /** Per-exchange timeout and resends of the device session. */
  readonly session?: Pick<DeviceSessionOptions, 'timeoutMs' | 'retries'>;
  /** A fresh message codec per session of a `ports` entry (default: serial frames); `hid` entries use {@link hidCodec}. */
  readonly codec?: () => SessionCodec;
  /**
   * Opens a `ports` entry (default: {@link SerialTransport.open}); a seam for other transports. Re-plug waits poll
   * the path with `existsSync`, so a port must be a filesystem path. `hid` entries are opened with
   * {@link HidTransport.open} over `hidBackend`.
   */
  readonly openTransport?: (port: string) => Promise<Transport>;
  /**
   * Connect the devices that reach `connect` while a Personal Profile update runs together, in the next update (one
   * new Personal Profile for all of them: one Sequence, one signature, one publish; each device still gets its own
   * outcome). Default false: one update per device, one at a time.
   */
  readonly groupCommit?: boolean;
  /** Progress events. */
  readonly onEvent?: (event: BenchEvent) => void;
  /** Clock (default: now). */
  readonly now?: () => Date;
}

/** Serialises async work: one at a time, in call order. */
class Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn, fn);
    this.#tail = next.catch(() => undefined);
    return next;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A group commit: `submit` queues an item; one `commit` runs at a time over EVERY item queued meanwhile, and each
 * submitter gets its own outcome (`commit` returns one per item, in order: an Error rejects that submitter only; a
 * throw from `commit` rejects the whole group). An idle group commit starts on the next turn of the event loop
 * (setImmediate: items submitted by the I/O callbacks of the same turn join it, no timer waits for company); items
 * that arrive while a commit runs form the next group.
 */
export class GroupCommit<T, R> {
  #queue: Array<{ item: T; resolve: (r: R) => void; reject: (e: unknown) => void }> = [];
  #running = false;
  /** Groups committed so far, and their sizes (for tests and the summary). */
  readonly groups: number[] = [];
  /**
   * @param commit commits a group (`more()` takes in the items queued since, e.g. while it waits for a lock)
   * @param maxGroup the largest group (1: one item at a time, in order — a plain mutex)
   */
  constructor(private readonly commit: (items: T[], more: () => T[]) => Promise<Array<R | Error>>, private readonly maxGroup = Infinity) {
    if (typeof commit !== 'function') throw new TypeError('"commit" expected a function');
    if (maxGroup !== Infinity) aint(maxGroup, 'maxGroup', 1, Number.MAX_SAFE_INTEGER);
  }

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#running) {
        this.#running = true;
        setImmediate(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue.splice(0, this.maxGroup);
        // `more()` lets a commit that has to wait (a lock) take in the items that arrived meanwhile.
        const more = (): T[] => {
          const late = this.#queue.splice(0, Math.max(0, this.maxGroup - group.length));
          group.push(...late);
          return late.map((w) => w.item);
        };
        try {
          const out = await this.commit(group.map((w) => w.item), more);
          this.groups.push(group.length);
          for (const [i, w] of group.entries()) {
            const r = out[i];
            if (i >= out.length) w.reject(new Error('internal: the group commit returned no outcome'));
            else if (r instanceof Error) w.reject(r);
            else w.resolve(r as R);
          }
        } catch (e) {
          for (const w of group) w.reject(e);
        }
      }
    } finally {
      this.#running = false;
    }
  }
}

function chain(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let x: unknown = e; x !== undefined && x !== null && out.length < 8; x = (x as { cause?: unknown }).cause) out.push(x);
  return out;
}

/** How a failure is treated. */
export interface FailureClass {
  readonly kind: 'unplugged' | 'timeout' | 'open' | 'fatal';
  readonly retryable: boolean;
  readonly reason: string;
}

/**
 * Classifies an enrollment failure: unplugged (DeviceDisconnectedError anywhere in the cause chain) and timeout
 * (DeviceTimeoutError) are retryable, an open failure is retryable (the port may come back), anything else is fatal.
 * @param error what enrollDevice (or opening the port) threw
 * @param step the step that was running, when known
 * @returns the class and a one-line reason naming the step
 */
export function classifyFailure(error: unknown, step: BenchStep | undefined): FailureClass {
  const causes = chain(error);
  const message = error instanceof Error ? error.message : String(error);
  const at = step === undefined ? '' : ` during ${step}`;
  if (causes.some((c) => c instanceof DeviceDisconnectedError)) return { kind: 'unplugged', retryable: true, reason: `unplugged${at}: ${message}` };
  if (causes.some((c) => c instanceof DeviceTimeoutError)) return { kind: 'timeout', retryable: true, reason: `stopped answering${at}: ${message}` };
  if (causes.some((c) => c instanceof SerialOpenError || c instanceof HidOpenError)) return { kind: 'open', retryable: true, reason: `cannot open the port: ${message}` };
  return { kind: 'fatal', retryable: false, reason: `${step ?? 'enrollment'}: ${message}` };
}

/**
 * Time statistics over durations in ms: min, median (mean of the middle two for an even count), max.
 * @returns null for an empty list
 * @throws TypeError when durations is not an array of finite numbers
 */
export function timingStats(durations: readonly number[]): { minMs: number; medianMs: number; maxMs: number } | null {
  if (!Array.isArray(durations) || durations.some((d) => typeof d !== 'number' || !Number.isFinite(d))) {
    throw new TypeError(`"durations" expected an array of finite numbers, got ${describe(durations)}`);
  }
  if (durations.length === 0) return null;
  const s = [...durations].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
  return { minMs: s[0] as number, medianMs: median, maxMs: s[s.length - 1] as number };
}

function checkEd25519(signer: Signer, field: string): void {
  aobject(signer, field);
  if (typeof signer.sign !== 'function' || signer.publicJwk?.crv !== 'Ed25519') {
    throw new RangeError(`"${field}" expected an Ed25519 signer, got ${describe(signer.publicJwk?.crv)}`);
  }
}

/** The raw 32-byte public key of an Ed25519 signer (what a device pins as its provisioner key). */
export function rawEd25519(signer: Pick<Signer, 'publicJwk'>): Uint8Array {
  if (signer.publicJwk.crv !== 'Ed25519') throw new RangeError(`"signer" expected an Ed25519 key, got ${signer.publicJwk.crv}`);
  return fromB64u(signer.publicJwk.x, 'publicJwk.x');
}

/** Bench output files: 0644, no directory fsync (each file fsynced before its rename, as the bench always did). */
async function writeAtomic(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, text, { mode: 0o644, syncDir: false });
}

function ioError(what: string, e: unknown): MeshkitError {
  return new MeshkitError(ErrorCode.IO, `${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
}

async function readLines(path: string): Promise<string[]> {
  try {
    return (await readLinesIfExists(path)) ?? [];
  } catch (e) {
    throw ioError(`cannot read ${path}`, e);
  }
}

/** Holds OUT/bench.lock for the run: two benches never write the same log. */
async function lockOut(out: string): Promise<() => Promise<void>> {
  const path = join(out, BenchFiles.lock);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return () => unlink(path).catch(() => undefined);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(`cannot create ${path}`, e);
      const pid = Number.parseInt((await readFile(path, 'utf8').catch(() => '')).trim(), 10);
      if (attempt === 0 && Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      throw new MeshkitError(ErrorCode.IO, `${out} is in use by another bench (pid ${Number.isSafeInteger(pid) ? pid : '?'}); remove ${path} if none runs`);
    }
  }
  throw new MeshkitError(ErrorCode.IO, `cannot lock ${path}`);
}

/** The signed record log of a bench output directory: append + sign head, one at a time. */
class RecordLog {
  readonly #mutex = new Mutex();
  #log: HashLog;
  private constructor(readonly out: string, log: HashLog, readonly bench: Signer, readonly now: () => Date) {
    this.#log = log;
  }

  static async open(out: string, bench: Signer, now: () => Date): Promise<RecordLog> {
    const lines = await readLines(join(out, BenchFiles.records));
    const log = HashLog.fromLines(lines);
    return new RecordLog(out, log, bench, now);
  }

  get count(): number {
    return this.#log.count;
  }

  get head(): string | null {
    return this.#log.head.id;
  }

  /** The entry recording this serial and device, if any. */
  find(serial: string, deviceId: string): LogEntry | undefined {
    for (const line of this.#log.lines()) {
      const e = parseJsonStrict(line) as LogEntry;
      if (e.Type === RECORD_TYPE && e.Body['Serial'] === serial && e.Body['Device'] === deviceId) return e;
    }
    return undefined;
  }

  /** The latest entry recording this serial, if any. */
  findSerial(serial: string): LogEntry | undefined {
    let found: LogEntry | undefined;
    for (const line of this.#log.lines()) {
      const e = parseJsonStrict(line) as LogEntry;
      if (e.Type === RECORD_TYPE && e.Body['Serial'] === serial) found = e;
    }
    return found;
  }

  /**
   * Stores the profile, appends the record line (fsync), signs the head. A group commit: records that arrive while
   * an append runs are appended together in the next one — each profile file still written and fsynced on its own,
   * the lines in one write + one fsync, one head signature — and each caller returns only once its line is on disk.
   */
  append(result: EnrollmentResult): Promise<{ entry: LogEntry; existing: boolean }> {
    return this.#appends.submit(result);
  }

  readonly #appends = new GroupCommit<EnrollmentResult, { entry: LogEntry; existing: boolean }>((results) => this.#mutex.run(async () => {
    const before = this.#log.lines();
    const now = this.now();
    // The profiles first (each written and fsynced on its own, all at once), then the log lines in input order.
    const existing = results.map((r) => this.find(r.serial, r.deviceId));
    const dir = join(this.out, BenchFiles.devices);
    if (existing.some((e) => e === undefined)) await mkdir(dir, { recursive: true }).catch(() => undefined);
    const stored = await Promise.all(results.map(async (result, i): Promise<Error | undefined> => {
      if (existing[i] !== undefined) return undefined;
      try {
        const profileText = typeof result.deviceProfile === 'string' ? result.deviceProfile : `${JSON.stringify(result.deviceProfile, null, 2)}\n`;
        await writeAtomic(join(dir, `${result.deviceId}.json`), profileText);
        return undefined;
      } catch (e) {
        return e instanceof MeshkitError ? e : ioError(`cannot store the Device Profile of ${result.serial}`, e);
      }
    }));
    let fresh = 0;
    const out = results.map((result, i): { entry: LogEntry; existing: boolean } | Error => {
      const found = existing[i];
      if (found !== undefined) return { entry: found, existing: true };
      const failed = stored[i];
      if (failed !== undefined) return failed;
      // the same serial and device twice in one group: recorded once
      const again = this.find(result.serial, result.deviceId);
      if (again !== undefined) return { entry: again, existing: true };
      fresh++;
      return { entry: this.#log.append(RECORD_TYPE, result.record as unknown as Record<string, unknown>, now), existing: false };
    });
    if (fresh === 0) return out;
    const lines = this.#log.lines().slice(before.length);
    const path = join(this.out, BenchFiles.records);
    try {
      const fh = await open(path, 'a', 0o644);
      try {
        await fh.writeFile(lines.map((l) => `${l}\n`).join(''));
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (e) {
      this.#log = HashLog.fromLines(before);
      throw ioError(`cannot append to ${path}`, e);
    }
    await this.signHead();
    return out;
  }));

  async signHead(): Promise<void> {
    const jws = await signLogHead(this.#log.head, this.bench, this.now());
    await writeAtomic(join(this.out, BenchFiles.head), `${JSON.stringify(jws, null, 2)}\n`);
  }
}

/** Waits until `port` exists and opens, until the deadline; open failures meanwhile do not count as attempts. */
async function reopen(port: string, openTransport: (port: string) => Promise<Transport>, deadline: number, wasUnplugged: boolean): Promise<Transport | undefined> {
  // After an unplug the old path can linger a moment before the system removes it: let it go first.
  if (wasUnplugged) await sleep(200);
  let last: unknown;
  while (Date.now() <= deadline) {
    if (existsSync(port)) {
      try {
        return await openTransport(port);
      } catch (e) {
        last = e;
      }
    }
    await sleep(150);
  }
  void last;
  return undefined;
}

/** A USB identity that names one device: VID, PID and a non-empty USB serial number. */
interface HidIdentity {
  readonly vendorId: number;
  readonly productId: number;
  readonly serialNumber: string;
}

function sameHid(d: HidDeviceInfo, id: HidIdentity): boolean {
  return d.vendorId === id.vendorId && d.productId === id.productId && d.serialNumber === id.serialNumber;
}

/** How one bench worker reaches its device: first open, re-plug wait, codec, the path it is at now. */
interface Endpoint {
  readonly port: string;
  readonly transport: BenchTransport;
  /** Where the device is now (HID: may differ from `port` after a re-plug). */
  readonly path: string;
  open(): Promise<Transport>;
  /** Waits until the device is back and opens it, until the deadline; open failures meanwhile do not count. */
  waitBack(deadline: number, wasUnplugged: boolean): Promise<Transport | undefined>;
  codec(): SessionCodec | undefined;
}

/**
 * A HID worker's endpoint. The re-plug wait polls the HID listing ({@link listHidDevices}), not the file system, so
 * node-hid paths that are not files (libusb `1-1:1.2`) work too. Once the device has been opened and listed with a
 * USB serial number, only that device (same VID, PID and serial number) is taken back — at its old path or, when
 * hidraw numbered it anew, at another path that no other worker holds open.
 */
function hidEndpoint(port: string, backend: HidBackend | undefined, held: Set<string>): Endpoint {
  let path = port;
  let identity: HidIdentity | undefined;
  const list = async (): Promise<HidDeviceInfo[] | undefined> => {
    try {
      return await listHidDevices({}, backend);
    } catch {
      return undefined;
    }
  };
  const openAt = async (at: string): Promise<Transport> => {
    const t = await HidTransport.open(at, { openTimeoutMs: 5000, ...(backend === undefined ? {} : { backend }) });
    path = at;
    held.add(at);
    t.onClose(() => held.delete(at));
    if (identity === undefined) {
      const me = (await list())?.find((d) => d.path === at);
      if (me !== undefined && me.serialNumber !== undefined && me.serialNumber !== '') {
        identity = { vendorId: me.vendorId, productId: me.productId, serialNumber: me.serialNumber };
      }
    }
    return t;
  };
  return {
    port,
    transport: 'hid',
    get path() {
      return path;
    },
    open: () => openAt(path),
    waitBack: async (deadline, wasUnplugged) => {
      if (wasUnplugged) await sleep(200);
      while (Date.now() <= deadline) {
        const devices = await list();
        if (devices !== undefined) {
          const id = identity;
          const there = devices.find((d) => d.path === path);
          const target = id === undefined
            ? there?.path
            : there !== undefined && sameHid(there, id) ? there.path : devices.find((d) => sameHid(d, id) && !held.has(d.path))?.path;
          if (target !== undefined) {
            try {
              return await openAt(target);
            } catch {
              // not ready yet (permissions, a node that lingers): poll again
            }
          }
        }
        await sleep(150);
      }
      return undefined;
    },
    codec: () => hidCodec(),
  };
}

/**
 * The HID devices whose USB VID/PID match a `devices/` descriptor with transport hid (and its usage page, when the
 * descriptor's USB entry gives one as `usagePage`, 4 hex digits), with the descriptor id — what `--discover` adds.
 * @param descriptors the descriptors (src/device/descriptors.ts `loadDescriptors`)
 * @param backend the HID back end (default node-hid)
 * @returns the matching devices, in listing order, one per path
 * @throws TypeError when descriptors is not an array
 * @throws HidUnavailableError when node-hid (or libusb-1.0 / libudev) cannot be loaded
 * @throws DeviceError (ERR_DEVICE) when the enumeration fails
 */
export async function discoverHidDevices(descriptors: readonly DeviceDescriptor[], backend?: HidBackend): Promise<Array<HidDeviceInfo & { readonly descriptor: string }>> {
  if (!Array.isArray(descriptors)) throw new TypeError(`"descriptors" expected an array, got ${describe(descriptors)}`);
  const hex = (n: number): string => n.toString(16).padStart(4, '0');
  const found: Array<HidDeviceInfo & { descriptor: string }> = [];
  for (const d of await listHidDevices({}, backend)) {
    if (found.some((f) => f.path === d.path)) continue;
    const match = descriptors.find((desc: DeviceDescriptor) => desc.transport === 'hid' && desc.usb.some((u: UsbId) => {
      if (u.vid !== hex(d.vendorId) || u.pid !== hex(d.productId)) return false;
      return u.usagePage === undefined || Number.parseInt(u.usagePage, 16) === d.usagePage;
    }));
    if (match !== undefined) found.push({ ...d, descriptor: match.id });
  }
  return found;
}

/**
 * Runs the bench over every port (serial `ports` and HID `hid`) and returns the summary (also written to OUT/summary.json).
 * @param options ports, output directory, account, keys, configuration, limits, progress observer
 * @returns the summary; devices that failed are in it with their reasons (nothing throws for a device failure)
 * @throws TypeError / RangeError for a wrong option (non-Ed25519 keys, no port in `ports` and `hid` together, a path
 *   named twice or empty, a `hidBackend` that is not one, parallel out of range)
 * @throws MeshkitError `ERR_IO` (output directory, lock), `ERR_LOG_BROKEN` (an existing records.jsonl that does not
 *   verify), `ERR_PROFILE_MISMATCH` (the output directory belongs to another bench key or account), ProfileError (an
 *   account that does not verify)
 */
export async function runBench(options: BenchRunOptions): Promise<BenchSummary> {
  aobject(options, 'options');
  if (!Array.isArray(options.ports)) throw new TypeError(`"ports" expected an array, got ${describe(options.ports)}`);
  options.ports.forEach((p, i) => astring(p, `ports[${i}]`));
  const hidPaths = options.hid ?? [];
  if (!Array.isArray(hidPaths)) throw new TypeError(`"hid" expected an array, got ${describe(hidPaths)}`);
  hidPaths.forEach((p, i) => astring(p, `hid[${i}]`));
  const total = options.ports.length + hidPaths.length;
  if (total === 0) throw new RangeError('"ports" and "hid" expected at least one port');
  for (const [field, list] of [['ports', options.ports], ['hid', hidPaths]] as const) {
    if (list.some((p) => p === '')) throw new RangeError(`"${field}" names an empty path`);
  }
  if (new Set([...options.ports, ...hidPaths]).size !== total) throw new RangeError('"ports" and "hid" name a port twice');
  if (options.hidBackend !== undefined && (typeof options.hidBackend !== 'object' || typeof options.hidBackend.open !== 'function')) {
    throw new TypeError('"hidBackend" expected a HidBackend');
  }
  astring(options.out, 'out');
  astring(options.account, 'account');
  checkEd25519(options.admin, 'admin');
  checkEd25519(options.bench, 'bench');
  if (!(options.config instanceof Uint8Array)) throw new TypeError(`"config" expected a Uint8Array, got ${describe(options.config)}`);
  const parallel = aint(options.parallel ?? total, 'parallel', 1, 1024);
  const retries = aint(options.retries ?? DEFAULT_BENCH_RETRIES, 'retries', 0, 100);
  const replugTimeoutMs = aint(options.replugTimeoutMs ?? DEFAULT_REPLUG_TIMEOUT_MS, 'replugTimeoutMs', 0, 86_400_000);
  const baudRate = aint(options.baudRate ?? 115200, 'baudRate', 1, 16_000_000);
  if (options.groupCommit !== undefined && typeof options.groupCommit !== 'boolean') {
    throw new TypeError(`"groupCommit" expected a boolean, got ${describe(options.groupCommit)}`);
  }
  const now = options.now ?? (() => new Date());
  const emit = (e: BenchEvent): void => {
    try {
      options.onEvent?.(e);
    } catch {
      // an observer's failure never stops the bench
    }
  };
  const openTransport = options.openTransport ?? ((port: string) => SerialTransport.open(port, { baudRate, openTimeoutMs: 5000 }));
  const serialEndpoint = (port: string): Endpoint => ({
    port,
    transport: 'serial',
    path: port,
    open: () => openTransport(port),
    waitBack: (deadline, wasUnplugged) => reopen(port, openTransport, deadline, wasUnplugged),
    codec: () => options.codec?.(),
  });
  const heldHid = new Set<string>();
  const endpoints: Endpoint[] = [
    ...options.ports.map(serialEndpoint),
    ...hidPaths.map((p) => hidEndpoint(p, options.hidBackend, heldHid)),
  ];

  const out = resolve(options.out);
  await mkdir(join(out, BenchFiles.journal), { recursive: true }).catch((e: unknown) => {
    throw ioError(`cannot create ${out}`, e);
  });
  const unlock = await lockOut(out);
  try {
    const account = await loadAccount(options.account);
    await verifyAccount(account);
    const benchId = keyId(options.bench.publicJwk);
    // One output directory, one bench key and one account: a log signed by two keys would not verify.
    const previous = await readFile(join(out, BenchFiles.bench), 'utf8').then((t) => parseJsonStrict(t) as { BenchKey?: unknown; Account?: unknown }, () => undefined);
    if (previous !== undefined && (previous.BenchKey !== benchId || previous.Account !== account.index.Identifier)) {
      throw new MeshkitError(ErrorCode.PROFILE_MISMATCH,
        `${out} holds records of bench key ${String(previous.BenchKey)} for account ${String(previous.Account)}; this run uses bench key ${benchId} ` +
        `for account ${account.index.Identifier}: use another --out`);
    }
    if (!existsSync(join(out, BenchFiles.records))) await writeAtomic(join(out, BenchFiles.records), '');
    await writeAtomic(join(out, BenchFiles.bench), `${JSON.stringify({ BenchKey: benchId, PublicJwk: options.bench.publicJwk, Account: account.index.Identifier }, null, 2)}\n`);
    const records = await RecordLog.open(out, options.bench, now);
    if (!existsSync(join(out, BenchFiles.head))) await records.signHead();
    const journal = fileJournal(join(out, BenchFiles.journal));
    // Personal Profile updates as a group commit (groupCommit): devices that reach `connect` while an update runs (or
    // waits for the account lock) are connected together in the next one — one Sequence, one signature, one publish —
    // and each gets its own outcome (a device the account refuses does not sink the others). Without it: one device
    // per update, one at a time.
    const connects = new GroupCommit<SignedProfile, void>(async (first, more) => {
      const items = [...first];
      for (let attempt = 0; ; attempt++) {
        try {
          const { results } = await connectDevicesBatch({ dir: options.account, admin: options.admin, skipConnected: true }, items);
          return results.map((r) => (r.status === 'refused' ? r.error : undefined));
        } catch (e) {
          // connectDevicesBatch takes the account lock itself; another process holding it is waited for, briefly.
          if (attempt < 50 && e instanceof MeshkitError && e.code === ErrorCode.IO && e.message.includes('is locked by another')) {
            await sleep(200);
            items.push(...more());
            continue;
          }
          throw e;
        }
      }
    }, options.groupCommit === true ? Infinity : 1);
    const plan: EnrollmentPlan = {
      bench: options.bench,
      admin: options.admin,
      master: account.masterProfile,
      config: options.config,
      ...(options.models === undefined ? {} : { models: options.models }),
      ...(options.timeouts === undefined ? {} : { timeouts: options.timeouts }),
      // A device the account already lists (a resumed enrollment) is skipped inside the group commit
      // (skipConnected), under the account lock: no separate isConnected look-up per device.
      connect: (device: SignedProfile) => connects.submit(device),
      now,
    };

    const started = now();
    const t0 = Date.now();

    const runPort = async (endpoint: Endpoint): Promise<DeviceOutcome> => {
      const { port, transport: kind } = endpoint;
      const start = Date.now();
      let serial: string | undefined;
      let model: string | undefined;
      let failure: (FailureClass & { step: BenchStep | undefined }) | undefined;
      let attempts = 0;
      const maxAttempts = retries + 1;
      const base = (): { port: string; transport: BenchTransport; serial?: string } => (serial === undefined ? { port, transport: kind } : { port, transport: kind, serial });
      const moved = (): { path?: string } => (endpoint.path === port ? {} : { path: endpoint.path });
      while (attempts < maxAttempts) {
        attempts++;
        let transport: Transport | undefined;
        emit({ ...base(), step: attempts === 1 ? 'open' : 'replug', phase: 'start', status: attempts === 1 ? 'running' : 'waiting', attempt: attempts });
        if (attempts === 1) {
          try {
            transport = await endpoint.open();
          } catch (e) {
            failure = { ...classifyFailure(e, 'open'), step: 'open' };
          }
          if (transport === undefined && failure?.retryable === true && replugTimeoutMs > 0 && retries > 0) {
            emit({ ...base(), step: 'open', phase: 'failed', status: 'waiting', attempt: attempts, detail: `${failure.reason}; waiting for the port`, retryable: true });
            transport = await endpoint.waitBack(Date.now() + replugTimeoutMs, false);
            if (transport !== undefined) failure = undefined;
          }
          if (transport === undefined && failure?.retryable === false) break;
        } else {
          transport = await endpoint.waitBack(Date.now() + replugTimeoutMs, failure?.kind === 'unplugged');
          if (transport === undefined && failure !== undefined) {
            failure = { ...failure, reason: `${failure.reason}; not back within ${Math.round(replugTimeoutMs / 1000)} s` };
          }
        }
        if (transport === undefined) {
          failure ??= { kind: 'open', retryable: true, reason: `cannot open ${port}`, step: 'open' };
          break;
        }
        emit({ ...base(), step: attempts === 1 ? 'open' : 'replug', phase: 'done', status: 'running', attempt: attempts,
          ...(endpoint.path === port ? {} : { detail: `at ${endpoint.path}` }) });
        const counted = countingTransport(transport);
        const codec = endpoint.codec();
        const session = new DeviceSession(counted, { ...options.session, ...(codec === undefined ? {} : { codec }) });
        let current: BenchStep | undefined;
        const attempt = attempts;
        try {
          const result = await enrollDevice(session, plan, {
            port,
            journal,
            attempts: attempt,
            counter: counted,
            onStep: (ev: StepEvent) => {
              if (ev.serial !== undefined) serial = ev.serial;
              if (ev.phase === 'start') current = ev.step;
              emit({ ...base(), step: ev.step, phase: ev.phase, status: 'running', attempt,
                ...(ev.ms === undefined ? {} : { ms: ev.ms }), ...(ev.detail === undefined ? {} : { detail: ev.detail }) });
            },
          });
          serial = result.serial;
          model = result.model;
          current = 'record';
          emit({ ...base(), step: 'record', phase: 'start', status: 'running', attempt });
          const r0 = Date.now();
          const { entry, existing } = await records.append(result);
          // The record is in the log: the journal has done its job (a re-plugged COMMITTED device is now reported).
          await journal.remove(result.serial).catch(() => undefined);
          emit({ ...base(), step: 'record', phase: 'done', status: 'running', attempt, ms: Date.now() - r0 });
          const ms = Date.now() - start;
          emit({ ...base(), step: 'result', phase: 'done', status: 'provisioned', attempt, ms, detail: `${result.resumed}; record ${entry.Index}` });
          return {
            port, transport: kind, ...moved(), status: 'provisioned', serial: result.serial, model: result.model, deviceId: result.deviceId, attempts, ms,
            resumed: result.resumed, recordIndex: entry.Index, recordId: entry.Id,
            ...(existing ? { alreadyRecorded: true } : {}),
            bytesSent: result.bytesSent, bytesReceived: result.bytesReceived,
          };
        } catch (e) {
          const done = e instanceof EnrollmentError && e.check === 'committed' && e.serial !== undefined ? records.findSerial(e.serial) : undefined;
          if (done !== undefined) {
            // A COMMITTED device this bench already recorded (re-plugged after it finished): provisioned, not again.
            const ms = Date.now() - start;
            emit({ ...base(), step: 'result', phase: 'done', status: 'provisioned', attempt, ms, detail: `already recorded (record ${done.Index})` });
            return {
              port, transport: kind, ...moved(), status: 'provisioned', serial: String(done.Body['Serial']), model: String(done.Body['Model']), deviceId: String(done.Body['Device']),
              attempts, ms, recordIndex: done.Index, recordId: done.Id, alreadyRecorded: true,
            };
          }
          failure = { ...classifyFailure(e, current), step: current };
          if (current === 'record') failure = { ...failure, retryable: false };
          emit({ ...base(), step: current ?? 'open', phase: 'failed', status: failure.retryable && attempts < maxAttempts ? 'waiting' : 'failed',
            attempt, detail: failure.reason, retryable: failure.retryable });
          if (!failure.retryable) break;
        } finally {
          await session.close().catch(() => undefined);
        }
      }
      const f = failure ?? { kind: 'fatal' as const, retryable: false, reason: 'no attempt was made', step: undefined };
      const ms = Date.now() - start;
      emit({ ...base(), step: 'result', phase: 'failed', status: 'failed', attempt: attempts, ms, detail: f.reason, retryable: f.retryable });
      return {
        port, transport: kind, ...moved(), status: 'failed', attempts, ms, reason: f.reason, retryable: f.retryable,
        ...(serial === undefined ? {} : { serial }), ...(model === undefined ? {} : { model }),
        ...(f.step === undefined ? {} : { step: f.step }),
      };
    };

    // At most `parallel` workers at once, ports taken in order.
    const outcomes: DeviceOutcome[] = new Array<DeviceOutcome>(endpoints.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        const endpoint = endpoints[i];
        if (endpoint === undefined) return;
        outcomes[i] = await runPort(endpoint);
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, endpoints.length) }, worker));

    const finished = now();
    const elapsedMs = Math.max(1, Date.now() - t0);
    const provisioned = outcomes.filter((o) => o.status === 'provisioned');
    const summary: BenchSummary = {
      started: started.toISOString(),
      finished: finished.toISOString(),
      elapsedMs,
      ports: outcomes.length,
      provisioned: provisioned.length,
      failed: outcomes.length - provisioned.length,
      transports: perTransport(outcomes),
      devices: outcomes,
      timing: timingStats(provisioned.map((o) => o.ms)),
      devicesPerHour: Math.round((provisioned.length * 3_600_000 / elapsedMs) * 10) / 10,
      log: { file: join(out, BenchFiles.records), count: records.count, head: records.head },
    };
    await writeAtomic(join(out, BenchFiles.summary), `${JSON.stringify(summary, null, 2)}\n`);
    return summary;
  } finally {
    await unlock();
  }
}

function perTransport(outcomes: readonly DeviceOutcome[]): BenchSummary['transports'] {
  const out: Partial<Record<BenchTransport, { ports: number; provisioned: number; failed: number }>> = {};
  for (const o of outcomes) {
    const t = (out[o.transport] ??= { ports: 0, provisioned: 0, failed: 0 });
    t.ports++;
    if (o.status === 'provisioned') t.provisioned++;
    else t.failed++;
  }
  return out;
}

/** One problem {@link verifyBenchOutput} found. */
export interface BenchProblem {
  /** The log entry, when the problem is one record's. */
  readonly index?: number;
  readonly message: string;
}

/** The result of {@link verifyBenchOutput}. */
export interface BenchVerifyReport {
  readonly ok: boolean;
  readonly count: number;
  readonly head: string | null;
  readonly benchKey: string | undefined;
  readonly records: readonly { index: number; serial: string; device: string }[];
  readonly problems: readonly BenchProblem[];
}

/**
 * Re-verifies a bench output directory: the log chain of records.jsonl, the bench-key signature of
 * records.head.json over exactly that log, and every record — its Body member order, its RecordDigest, its Receipt
 * against the composite Device Profile stored in devices/<Device>.json (self-signed, identifier = Device). With an
 * account directory, also that each record names that account and that the device is connected to it.
 * @param out the bench output directory
 * @param opts `account`: the account directory; `benchKey`: the bench key UDF to require (else bench.json's)
 * @returns the report; `ok` is false when any problem was found (each named, with the entry index)
 * @throws TypeError for wrong argument types
 * @throws MeshkitError `ERR_IO` when records.jsonl cannot be read
 */
export async function verifyBenchOutput(out: string, opts: { account?: string; benchKey?: string } = {}): Promise<BenchVerifyReport> {
  astring(out, 'out');
  aobject(opts, 'opts');
  const problems: BenchProblem[] = [];
  const records: { index: number; serial: string; device: string }[] = [];
  const recordsPath = join(out, BenchFiles.records);
  if (!existsSync(recordsPath)) throw new MeshkitError(ErrorCode.IO, `cannot read ${recordsPath}: ENOENT`);
  const lines = await readLines(recordsPath);
  let count = 0;
  let head: string | null = null;
  try {
    ({ count, head } = verifyLog(lines));
  } catch (e) {
    problems.push({ ...(typeof (e as { index?: unknown }).index === 'number' ? { index: (e as { index: number }).index } : {}), message: `log: ${(e as Error).message}` });
  }
  let benchKey: string | undefined;
  let benchJwk: PublicJwk | undefined;
  try {
    const b = parseJsonStrict(await readFile(join(out, BenchFiles.bench), 'utf8')) as { BenchKey?: unknown; PublicJwk?: PublicJwk };
    benchJwk = b.PublicJwk;
    benchKey = benchJwk === undefined ? undefined : keyId(benchJwk);
    if (benchKey !== b.BenchKey) problems.push({ message: `${BenchFiles.bench}: BenchKey does not match its PublicJwk` });
  } catch (e) {
    problems.push({ message: `${BenchFiles.bench}: ${(e as Error).message}` });
  }
  if (opts.benchKey !== undefined && benchKey !== opts.benchKey) {
    problems.push({ message: `the bench key is ${benchKey ?? '(unknown)'}, expected ${opts.benchKey}` });
  }
  if (problems.length === 0 && benchJwk !== undefined) {
    try {
      const jws = parseJsonStrict(await readFile(join(out, BenchFiles.head), 'utf8'));
      const jwk = benchJwk;
      await verifyLogHead(jws, lines, (kid) => (kid === benchKey ? jwk : undefined));
    } catch (e) {
      problems.push({ message: `head: ${(e as Error).message}` });
    }
  }
  const account = opts.account === undefined ? undefined : await loadAccount(opts.account);
  if (account !== undefined) await verifyAccount(account);
  const seen = new Map<string, number>();
  for (const [index, line] of lines.entries()) {
    let entry: LogEntry;
    try {
      entry = parseJsonStrict(line) as LogEntry;
    } catch (e) {
      problems.push({ index, message: `not strict JSON: ${(e as Error).message}` });
      continue;
    }
    const body = entry.Body as Record<string, unknown>;
    const serial = String(body['Serial']);
    const device = String(body['Device']);
    const problem = (message: string): void => void problems.push({ index, message: `record ${index} (${serial}): ${message}` });
    if (entry.Type !== RECORD_TYPE) {
      problem(`Type ${String(entry.Type)}, expected ${RECORD_TYPE}`);
      continue;
    }
    records.push({ index, serial, device });
    if (seen.has(serial)) problem(`serial already recorded in entry ${seen.get(serial)}`);
    seen.set(serial, index);
    if (benchKey !== undefined && body['BenchKey'] !== benchKey) problem(`BenchKey ${String(body['BenchKey'])} is not the bench key ${benchKey}`);
    let profile: SignedProfile;
    try {
      profile = parseJsonStrict(await readFile(join(out, BenchFiles.devices, `${device}.json`), 'utf8')) as SignedProfile;
      const vp = await verifyProfile(profile);
      const id = readProfile(profile, ProfileType.Device).profile.Identifier;
      if (vp.type !== 'DeviceProfile' || id !== device) throw new DeviceError(ErrorCode.DEVICE, `the stored profile is ${id}, not ${device}`);
    } catch (e) {
      problem(`Device Profile: ${(e as Error).message}`);
      continue;
    }
    try {
      await verifyRecord(body as never, profile);
    } catch (e) {
      problem(`receipt: ${(e as Error).message}`);
    }
    if (account !== undefined) {
      if (body['Account'] !== account.index.Identifier) problem(`Account ${String(body['Account'])} is not ${account.index.Identifier}`);
      if (account.index.Devices[device] === undefined) problem(`device ${device} is not connected to the account`);
    }
  }
  return { ok: problems.length === 0, count, head, benchKey, records, problems };
}
