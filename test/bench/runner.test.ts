/**
 * The bench library (src/device/bench-runner.ts) against REAL C emulators on socat pty pairs, an account from a
 * real ceremony on SoftHSM (its admin key on a SoftHSM "card") and a software-keystore bench key: parallel
 * provisioning, the signed record log and its re-verification, a device killed mid-run and resumed, a device
 * unplugged and re-plugged mid-run, a port that never answers, a wrong model, a bench key the device does not pin.
 * HID workers (`hid`): the real HidTransport and hidCodec over a stand-in node-hid back end whose devices are the
 * TypeScript soft device (src/device/soft-device.ts) behind a report↔frame bridge — listing, opening, an unplug
 * (node-hid's 'error'), a re-plug at another hidraw path, an impostor at the old path, discovery by VID/PID. The
 * real kernel path of the same code (hidraw, usbhid, the C emulator on a gadget) is test/usb/usb-vm.test.ts.
 * Skipped, with the reason printed, only where socat, make, gcc, libsodium or SoftHSM is missing.
 */
import { EventEmitter } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAccount, withAccountLock } from '../../src/admin/account.js';
import { HashLog, signLogHead } from '../../src/core/hashlog.js';
import {
  classifyFailure, discoverHidDevices, GroupCommit, runBench, timingStats, verifyBenchOutput, type BenchEvent, type BenchRunOptions,
} from '../../src/device/bench-runner.js';
import { loadDescriptors } from '../../src/device/descriptors.js';
import { DeviceTimeoutError, hidCodec, serialCodec } from '../../src/device/session.js';
import { startSoftDevice, type SoftDevice, type SoftDeviceState } from '../../src/device/soft-device.js';
import type { HidBackend, HidHandle, RawHidDevice } from '../../src/device/transport/hid.js';
import { createLinkPair } from '../../src/device/transport/link.js';
import { DeviceDisconnectedError } from '../../src/device/transport/types.js';
import { makeAccountFixture, type AccountFixture } from '../helpers/account.js';
import { benchSkipReason, buildEmulator, EmulatorLab, makeBenchKey } from './emulators.js';

/**
 * A stand-in node-hid back end with plug-in HID tokens. Each token is a soft device (serial frames) behind a bridge
 * that reassembles the host's 64-byte OUTPUT reports (hidCodec on the request's channel), hands the message to the
 * soft device as a serial frame, and returns its reply as INPUT reports on the same channel — so the host side runs
 * the real HidTransport, hidCodec and DeviceSession. The token keeps its "flash" (soft-device state) across unplugs.
 */
class FakeHidBus {
  readonly tokens = new Map<string, FakeToken>();
  /** Paths opened, in order. */
  readonly opened: string[] = [];
  readonly backend: HidBackend = {
    devices: async () => [...this.tokens.values()].filter((t) => t.path !== undefined).map((t) => t.raw()),
    open: async (path: string) => {
      const token = [...this.tokens.values()].find((t) => t.path === path);
      if (token === undefined) throw new Error(`could not open HID device ${path}`);
      this.opened.push(path);
      return token.connect();
    },
  };

  token(serial: string, provisionerKey: Uint8Array, path: string, ids: { vendorId?: number; productId?: number; usagePage?: number } = {}): FakeToken {
    const t = new FakeToken(serial, provisionerKey, ids);
    t.path = path;
    this.tokens.set(serial, t);
    return t;
  }
}

class FakeToken {
  path: string | undefined;
  state: SoftDeviceState | undefined;
  readonly seen: string[] = [];
  #device: SoftDevice | undefined;
  #handle: (EventEmitter & HidHandle) | undefined;
  constructor(readonly serial: string, readonly provisionerKey: Uint8Array, readonly ids: { vendorId?: number; productId?: number; usagePage?: number }) {}

  raw(): RawHidDevice {
    return {
      vendorId: this.ids.vendorId ?? 0x1209, productId: this.ids.productId ?? 0x0001, path: this.path, serialNumber: this.serial,
      manufacturer: 'meshkit', product: 'fake token', release: 0x100, interface: 0, usagePage: this.ids.usagePage ?? 0xff00, usage: 1,
    };
  }

  connect(): HidHandle {
    const [host, dev] = createLinkPair(['bridge', 'token']);
    this.#device = startSoftDevice(dev, {
      model: 'meshkit-hid-token', serial: this.serial, provisionerKey: this.provisionerKey,
      ...(this.state === undefined ? {} : { state: this.state }),
      persist: (state, request) => {
        this.state = state;
        this.seen.push(request);
      },
    });
    const handle = new EventEmitter() as EventEmitter & HidHandle;
    const frames = serialCodec();
    let codec: ReturnType<typeof hidCodec> | undefined;
    let cid = 0;
    let closed = false;
    host.onData((bytes) => {
      for (const e of frames.push(bytes)) {
        if (e.kind !== 'message' || codec === undefined) continue;
        const wire = codec.encode(e.message.type, e.message.seq, e.message.payload);
        for (let o = 0; o < wire.length; o += 64) handle.emit('data', Buffer.from(wire.subarray(o, o + 64)));
      }
    });
    handle.write = async (values: number[] | Buffer) => {
      if (closed) throw new Error('write: device gone');
      const report = Uint8Array.from(values).subarray(1); // report id 0 first
      const reportCid = new DataView(report.buffer, report.byteOffset).getUint32(0, false);
      if (codec === undefined || (((report[4] as number) & 0x80) !== 0 && reportCid !== cid)) {
        cid = reportCid;
        codec = hidCodec({ cid });
      }
      for (const e of codec.push(report)) {
        if (e.kind === 'message') void host.send(frames.encode(e.message.type, e.message.seq, e.message.payload)).catch(() => undefined);
      }
      return values.length;
    };
    handle.close = async () => {
      if (closed) return;
      closed = true;
      await this.#device?.close();
    };
    this.#handle = handle;
    return handle;
  }

  /** Unplugs the token: node-hid reports a read error on the open handle; the path goes from the listing. */
  async unplug(): Promise<void> {
    this.path = undefined;
    const h = this.#handle;
    this.#handle = undefined;
    h?.emit('error', new Error('could not read from HID device'));
    await h?.close();
  }

  /** Plugs it back in, at `path`. */
  plug(path: string): void {
    this.path = path;
  }
}

const reason = benchSkipReason();
if (reason !== undefined) console.log(`test/bench/runner.test.ts: device suites skipped: ${reason}`);

describe('bench pure parts', () => {
  it('classifies a disconnect and a timeout as retryable, naming the step; anything else as fatal', () => {
    const unplugged = classifyFailure(new Error('wrapped', { cause: new DeviceDisconnectedError('serial device gone') }), 'cogen');
    expect(unplugged).toMatchObject({ kind: 'unplugged', retryable: true });
    expect(unplugged.reason).toMatch(/^unplugged during cogen/);
    const timeout = classifyFailure(new DeviceTimeoutError('KEYGEN', 3, 3, 2000), 'keygen');
    expect(timeout).toMatchObject({ kind: 'timeout', retryable: true });
    expect(timeout.reason).toContain('during keygen');
    expect(timeout.reason).toContain('no reply to KEYGEN');
    expect(classifyFailure(new Error('composite key mismatch'), 'cogen')).toMatchObject({ kind: 'fatal', retryable: false, reason: 'cogen: composite key mismatch' });
  });

  it('a group commit: items queued while a commit runs go in the next one; each gets its own outcome', async () => {
    const seen: number[][] = [];
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    const g = new GroupCommit<number, string>(async (items) => {
      seen.push([...items]);
      if (seen.length === 1) await gate;
      if (items.includes(99)) throw new Error('the whole group fails');
      return items.map((i) => (i === 3 ? new RangeError('item 3 refused') : `ok ${i}`));
    });
    const first = g.submit(1);
    await new Promise((r) => setImmediate(r)); // the first commit has started (and waits at the gate)
    const rest = [g.submit(2), g.submit(3), g.submit(4)];
    open();
    await expect(first).resolves.toBe('ok 1');
    await expect(rest[0]).resolves.toBe('ok 2');
    await expect(rest[1]).rejects.toThrow(RangeError);
    await expect(rest[2]).resolves.toBe('ok 4');
    expect(seen).toEqual([[1], [2, 3, 4]]);
    expect(g.groups).toEqual([1, 3]);
    await expect(Promise.all([g.submit(5), g.submit(99)])).rejects.toThrow('the whole group fails');
    await expect(g.submit(6)).resolves.toBe('ok 6'); // a failed group does not stop the next
    // with maxGroup 1 it is a mutex: one item per commit, in order
    const one = new GroupCommit<number, number>(async (items) => items.map((i) => i * 10), 1);
    await expect(Promise.all([one.submit(1), one.submit(2), one.submit(3)])).resolves.toEqual([10, 20, 30]);
    expect(one.groups).toEqual([1, 1, 1]);
    expect(() => new GroupCommit(async () => [], 0)).toThrow(RangeError);
    // items submitted in the same turn of the event loop form one group
    await expect(Promise.all([g.submit(7), g.submit(8), g.submit(9)])).resolves.toEqual(['ok 7', 'ok 8', 'ok 9']);
    expect(seen.at(-1)).toEqual([7, 8, 9]);
  });

  it('timing statistics: min, median (odd and even counts), max; null when nothing was provisioned', () => {
    expect(timingStats([])).toBeNull();
    expect(timingStats([30, 10, 20])).toEqual({ minMs: 10, medianMs: 20, maxMs: 30 });
    expect(timingStats([40, 10, 20, 30])).toEqual({ minMs: 10, medianMs: 25, maxMs: 40 });
    expect(() => timingStats([1, Number.NaN])).toThrow(TypeError);
  });
});

describe.skipIf(reason !== undefined)('bench run against C emulators on pty pairs', () => {
  let lab: EmulatorLab;
  let account: AccountFixture;
  let admin: Awaited<ReturnType<AccountFixture['openAdmin']>>;
  let bench: Awaited<ReturnType<typeof makeBenchKey>>;
  let other: Awaited<ReturnType<typeof makeBenchKey>>;
  const config = new TextEncoder().encode(JSON.stringify({ wifi: { ssid: 'factory-7', psk: 'not-a-real-psk' }, mqtt: 'mqtts://broker.example:8883' }));

  beforeAll(async () => {
    buildEmulator();
    lab = new EmulatorLab();
    account = await makeAccountFixture({ spareCards: 0 });
    admin = await account.openAdmin();
    bench = await makeBenchKey(lab.dir, 'bench');
    other = await makeBenchKey(lab.dir, 'other');
  }, 120_000);

  afterAll(async () => {
    await bench?.close();
    await other?.close();
    await account?.cleanup();
    await lab?.cleanup();
  });

  const options = (ports: string[], out: string, extra: Partial<BenchRunOptions> = {}): BenchRunOptions => ({
    ports, out: join(lab.dir, out), account: account.dir, admin: admin.key, bench: bench.signer, config,
    retries: 0, replugTimeoutMs: 0, session: { timeoutMs: 1500, retries: 1 }, ...extra,
  });

  const serialsIn = (out: string): string[] => readFileSync(join(lab.dir, out, 'records.jsonl'), 'utf8').trim().split('\n')
    .map((l) => (JSON.parse(l) as { Body: { Serial: string } }).Body.Serial);

  it('provisions four devices in parallel; the log, its signed head and every receipt verify; one flipped byte fails', async () => {
    const devices = await Promise.all(['a1', 'a2', 'a3', 'a4'].map((name) => lab.device({ name, provisionerKey: bench.hex })));
    const events: BenchEvent[] = [];
    const summary = await runBench(options(devices.map((d) => d.port), 'out-parallel', { parallel: 4, onEvent: (e) => events.push(e) }));
    expect(summary.failed, JSON.stringify(summary.devices)).toBe(0);
    expect(summary.provisioned).toBe(4);
    expect(summary.timing).not.toBeNull();
    expect(summary.log.count).toBe(4);
    expect(serialsIn('out-parallel').sort()).toEqual(devices.map((d) => d.serial).sort());
    for (const d of summary.devices) expect(d).toMatchObject({ status: 'provisioned', resumed: 'fresh', attempts: 1 });
    // every step of every device was reported, and the result came after the record
    for (const d of devices) {
      const steps = events.filter((e) => e.port === d.port && e.phase === 'done').map((e) => e.step);
      expect(steps).toEqual(['open', 'hello', 'auth', 'keygen', 'cogen', 'install', 'commit', 'connect', 'record', 'result']);
    }
    // each device is connected to the account, with the composite profile the bench stored
    const acc = await loadAccount(account.dir);
    for (const d of summary.devices) expect(acc.index.Devices[d.deviceId as string]).toBeDefined();
    const summaryFile = JSON.parse(readFileSync(join(lab.dir, 'out-parallel', 'summary.json'), 'utf8')) as { provisioned: number };
    expect(summaryFile.provisioned).toBe(4);

    const report = await verifyBenchOutput(join(lab.dir, 'out-parallel'), { account: account.dir });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.records).toHaveLength(4);

    // one byte of records.jsonl changed (inside the second record's Receipt) → the chain no longer holds
    const path = join(lab.dir, 'out-parallel', 'records.jsonl');
    const original = readFileSync(path);
    const lines = original.toString('utf8').split('\n');
    const offset = (lines[0] as string).length + 1 + (lines[1] as string).indexOf('"Receipt":"') + 12;
    const changed = Buffer.from(original);
    changed[offset] = changed[offset] === 0x41 ? 0x42 : 0x41;
    writeFileSync(path, changed);
    const broken = await verifyBenchOutput(join(lab.dir, 'out-parallel'));
    expect(broken.ok).toBe(false);
    expect(broken.problems.map((p) => p.message).join('\n')).toMatch(/log entry 1|receipt/);
    writeFileSync(path, original);
    expect((await verifyBenchOutput(join(lab.dir, 'out-parallel'))).ok).toBe(true);

    // A forger with the bench key rebuilds the chain and re-signs the head over a changed record (another Port):
    // chain and head hold, the device's receipt does not.
    const entries = original.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { Type: string; Body: Record<string, unknown>; Time: string });
    const forged = new HashLog();
    for (const [i, e] of entries.entries()) forged.append(e.Type, i === 2 ? { ...e.Body, Port: '/dev/ttyFORGED' } : e.Body, e.Time);
    const headPath = join(lab.dir, 'out-parallel', 'records.head.json');
    const originalHead = readFileSync(headPath);
    writeFileSync(path, `${forged.lines().join('\n')}\n`);
    writeFileSync(headPath, JSON.stringify(await signLogHead(forged.head, bench.signer)));
    const forgedReport = await verifyBenchOutput(join(lab.dir, 'out-parallel'));
    expect(forgedReport.ok).toBe(false);
    expect(forgedReport.problems).toHaveLength(1);
    expect(forgedReport.problems[0]).toMatchObject({ index: 2 });
    expect(forgedReport.problems[0]?.message).toContain('receipt');
    writeFileSync(path, original);
    writeFileSync(headPath, originalHead);
    await Promise.all(devices.map((d) => d.stop()));
  }, 120_000);

  it('devices that reach connect together are connected in fewer Personal Profile updates than devices (group commit)', async () => {
    const n = 4;
    const devices = await Promise.all(['g1', 'g2', 'g3', 'g4'].map((name) => lab.device({ name, provisionerKey: bench.hex })));
    const before = (await loadAccount(account.dir)).personalProfile.Sequence;
    // The account lock is held (as by another admin command) until every device has reached connect: the runner
    // waits for it and takes in the devices that arrive meanwhile. Once it is released, at most the one update
    // already under way (with the devices it had) and one more (the rest) can commit: ≤ 2 updates for 4 devices.
    let release!: () => void;
    const released = new Promise<void>((r) => { release = r; });
    let holding!: () => void;
    const held = new Promise<void>((r) => { holding = r; });
    const lock = withAccountLock(account.dir, async () => { holding(); await released; });
    await held;
    const atConnect = new Set<string>();
    const summary = await runBench(options(devices.map((d) => d.port), 'out-group', {
      parallel: n, groupCommit: true,
      onEvent: (e) => {
        if (e.step === 'connect' && e.phase === 'start') atConnect.add(e.port);
        if (atConnect.size === n) release();
      },
    }));
    await lock;
    expect(summary.failed, JSON.stringify(summary.devices)).toBe(0);
    expect(summary.provisioned).toBe(n);
    const acc = await loadAccount(account.dir);
    for (const d of summary.devices) expect(acc.index.Devices[d.deviceId as string]).toBeDefined();
    const increments = acc.personalProfile.Sequence - before;
    expect(increments).toBeGreaterThanOrEqual(1);
    expect(increments).toBeLessThanOrEqual(2);
    expect((await verifyBenchOutput(join(lab.dir, 'out-group'), { account: account.dir })).problems).toEqual([]);
  }, 60_000);

  it('without groupCommit every device gets its own Personal Profile update (one at a time, the default)', async () => {
    const devices = await Promise.all(['s1', 's2', 's3'].map((name) => lab.device({ name, provisionerKey: bench.hex })));
    const before = (await loadAccount(account.dir)).personalProfile.Sequence;
    const summary = await runBench(options(devices.map((d) => d.port), 'out-serial-connect', { parallel: 3 }));
    expect(summary.provisioned, JSON.stringify(summary.devices)).toBe(3);
    expect((await loadAccount(account.dir)).personalProfile.Sequence - before).toBe(3);
    await expect(runBench(options(devices.map((d) => d.port), 'out-serial-connect', { groupCommit: 'yes' as never }))).rejects.toThrow(TypeError);
  }, 60_000);

  it('an emulator killed mid-run (SIGKILL) is failed-and-retryable, the others provisioned; restarted, it resumes and is recorded once', async () => {
    const devices = await Promise.all(['k1', 'k2', 'k3'].map((name) => lab.device({ name, provisionerKey: bench.hex })));
    const victim = devices[0]!;
    let killed = false;
    const summary = await runBench(options(devices.map((d) => d.port), 'out-kill', {
      onEvent: (e) => {
        if (e.port === victim.port && e.step === 'cogen' && e.phase === 'start' && !killed) {
          killed = true;
          void victim.kill();
        }
      },
    }));
    expect(killed).toBe(true);
    const failed = summary.devices.find((d) => d.port === victim.port);
    expect(failed).toMatchObject({ status: 'failed', retryable: true, step: 'cogen', serial: victim.serial });
    expect(failed?.reason).toMatch(/stopped answering during cogen/);
    expect(summary.provisioned).toBe(2);
    expect(serialsIn('out-kill')).not.toContain(victim.serial);

    await victim.start(); // same state file, same pty path
    const again = await runBench(options([victim.port], 'out-kill'));
    expect(again.devices[0]).toMatchObject({ status: 'provisioned', resumed: 'resumed', serial: victim.serial });
    expect(serialsIn('out-kill').filter((s) => s === victim.serial)).toHaveLength(1);
    expect(serialsIn('out-kill')).toHaveLength(3);
    expect((await verifyBenchOutput(join(lab.dir, 'out-kill'), { account: account.dir })).ok).toBe(true);

    // plugged in once more after it finished: reported as provisioned (already recorded), never recorded again
    const third = await runBench(options([victim.port], 'out-kill'));
    expect(third.devices[0]).toMatchObject({ status: 'provisioned', alreadyRecorded: true });
    expect(serialsIn('out-kill')).toHaveLength(3);
    await Promise.all(devices.map((d) => d.stop()));
  }, 120_000);

  it('a device unplugged mid-enrollment is never provisioned then; re-plugged within --replug-timeout it resumes in the same run', async () => {
    const d = await lab.device({ name: 'u1', provisionerKey: bench.hex });
    const events: BenchEvent[] = [];
    let unplugged = false;
    const summary = await runBench(options([d.port], 'out-unplug', {
      retries: 2,
      replugTimeoutMs: 20_000,
      onEvent: (e) => {
        events.push(e);
        if (e.step === 'install' && e.phase === 'start' && !unplugged) {
          unplugged = true;
          void d.unplug();
        }
        if (e.step === 'replug' && e.phase === 'start') {
          // plug it back in a moment later: same state file, same pty path
          setTimeout(() => void d.start(), 300);
        }
      },
    }));
    expect(unplugged).toBe(true);
    const failure = events.find((e) => e.phase === 'failed');
    expect(failure).toMatchObject({ step: 'install', retryable: true, status: 'waiting' });
    expect(failure?.detail).toMatch(/^unplugged during install/);
    // nothing was recorded before the failure
    expect(events.findIndex((e) => e.step === 'record')).toBeGreaterThan(events.indexOf(failure as BenchEvent));
    expect(summary.devices[0]).toMatchObject({ status: 'provisioned', resumed: 'resumed', attempts: 2 });
    expect(serialsIn('out-unplug')).toEqual([d.serial]);
    await d.stop();
  }, 120_000);

  it('a port that never answers fails with the timeout named, not provisioned', async () => {
    const mute = await lab.device({ name: 'm1', silent: true });
    const summary = await runBench(options([mute.port], 'out-mute', { session: { timeoutMs: 300, retries: 1 } }));
    expect(summary.devices[0]).toMatchObject({ status: 'failed', step: 'hello', retryable: true });
    expect(summary.devices[0]?.reason).toMatch(/stopped answering during hello: no reply to HELLO .* after 2 attempts/);
    expect(summary.provisioned).toBe(0);
    await mute.stop();
  }, 60_000);

  it('a wrong model fails at once (not retried), naming the model', async () => {
    const d = await lab.device({ name: 'w1', model: 'esp32s3-devkit', provisionerKey: bench.hex });
    const summary = await runBench(options([d.port], 'out-model', { models: ['meshkit-emulator'], retries: 3, replugTimeoutMs: 5000 }));
    expect(summary.devices[0]).toMatchObject({ status: 'failed', retryable: false, attempts: 1, step: 'hello' });
    expect(summary.devices[0]?.reason).toContain('"esp32s3-devkit" is not one of "meshkit-emulator"');
    await d.stop();
  }, 60_000);

  it('an output directory written with another bench key is refused before anything is sent', async () => {
    const d = await lab.device({ name: 'o1', provisionerKey: other.hex });
    await expect(runBench({ ...options([d.port], 'out-parallel'), bench: other.signer })).rejects.toThrow(/holds records of bench key .*use another --out/);
    expect(serialsIn('out-parallel')).toHaveLength(4);
    await d.stop();
  }, 60_000);

  it('a bench key the device does not pin fails at auth with BAD_SIGNATURE, not retried', async () => {
    const d = await lab.device({ name: 'b1', provisionerKey: other.hex });
    const summary = await runBench(options([d.port], 'out-untrusted', { retries: 3, replugTimeoutMs: 5000 }));
    expect(summary.devices[0]).toMatchObject({ status: 'failed', retryable: false, attempts: 1, step: 'auth' });
    expect(summary.devices[0]?.reason).toContain('BAD_SIGNATURE');
    await d.stop();
  }, 60_000);

  const hexKey = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'));

  it('a mixed run: two HID tokens (hidCodec over HidTransport) and a serial emulator, provisioned together; events and summary name the transport', async () => {
    const bus = new FakeHidBus();
    bus.token('HID-M1', hexKey(bench.hex), '/dev/hidraw-fake0');
    bus.token('HID-M2', hexKey(bench.hex), '/dev/hidraw-fake1');
    const serialDevice = await lab.device({ name: 'x1', provisionerKey: bench.hex });
    const events: BenchEvent[] = [];
    const summary = await runBench(options([serialDevice.port], 'out-mixed', {
      hid: ['/dev/hidraw-fake0', '/dev/hidraw-fake1'], hidBackend: bus.backend, onEvent: (e) => events.push(e),
    }));
    expect(summary.failed, JSON.stringify(summary.devices)).toBe(0);
    expect(summary.transports).toEqual({ serial: { ports: 1, provisioned: 1, failed: 0 }, hid: { ports: 2, provisioned: 2, failed: 0 } });
    expect(summary.devices.map((d) => [d.port, d.transport, d.serial])).toEqual([
      [serialDevice.port, 'serial', serialDevice.serial], ['/dev/hidraw-fake0', 'hid', 'HID-M1'], ['/dev/hidraw-fake1', 'hid', 'HID-M2'],
    ]);
    for (const e of events) expect(e.transport).toBe(e.port === serialDevice.port ? 'serial' : 'hid');
    for (const port of ['/dev/hidraw-fake0', '/dev/hidraw-fake1']) {
      const steps = events.filter((e) => e.port === port && e.phase === 'done').map((e) => e.step);
      expect(steps).toEqual(['open', 'hello', 'auth', 'keygen', 'cogen', 'install', 'commit', 'connect', 'record', 'result']);
    }
    // the tokens went through the whole state machine on their side (their flash says so)
    for (const t of bus.tokens.values()) expect(t.seen).toEqual(expect.arrayContaining(['KEYGEN', 'COGEN', 'INSTALL', 'COMMIT']));
    expect(serialsIn('out-mixed').sort()).toEqual(['HID-M1', 'HID-M2', serialDevice.serial].sort());
    const report = await verifyBenchOutput(join(lab.dir, 'out-mixed'), { account: account.dir });
    expect(report.problems).toEqual([]);
    expect(report.records).toHaveLength(3);
    await serialDevice.stop();
  }, 120_000);

  it('a HID token unplugged mid-enrollment: failed-and-retryable; an impostor at the old hidraw path is not taken; re-plugged at another path it resumes, one record', async () => {
    const bus = new FakeHidBus();
    const token = bus.token('HID-U1', hexKey(bench.hex), '/dev/hidraw-fake3');
    const events: BenchEvent[] = [];
    let unplugged = false;
    let impostor: FakeToken | undefined;
    const summary = await runBench(options([], 'out-hid-unplug', {
      hid: ['/dev/hidraw-fake3'], hidBackend: bus.backend, retries: 2, replugTimeoutMs: 20_000,
      onEvent: (e) => {
        events.push(e);
        if (e.step === 'cogen' && e.phase === 'start' && !unplugged) {
          unplugged = true;
          void token.unplug();
        }
        if (e.step === 'replug' && e.phase === 'start') {
          // hidraw numbers anew: another token shows up at the old path first, ours at a new one a moment later
          impostor = bus.token('HID-OTHER', hexKey(bench.hex), '/dev/hidraw-fake3');
          setTimeout(() => token.plug('/dev/hidraw-fake4'), 700);
        }
      },
    }));
    expect(unplugged).toBe(true);
    const failure = events.find((e) => e.phase === 'failed');
    expect(failure).toMatchObject({ transport: 'hid', step: 'cogen', retryable: true, status: 'waiting' });
    expect(failure?.detail).toMatch(/^unplugged during cogen/);
    expect(events.findIndex((e) => e.step === 'record')).toBeGreaterThan(events.indexOf(failure as BenchEvent));
    expect(summary.devices[0]).toMatchObject({
      transport: 'hid', status: 'provisioned', resumed: 'resumed', attempts: 2, serial: 'HID-U1', port: '/dev/hidraw-fake3', path: '/dev/hidraw-fake4',
    });
    expect(events.find((e) => e.step === 'replug' && e.phase === 'done')?.detail).toBe('at /dev/hidraw-fake4');
    // the impostor at the old path was never opened, never touched
    expect(impostor?.seen).toEqual([]);
    expect(bus.opened).toEqual(['/dev/hidraw-fake3', '/dev/hidraw-fake4']);
    expect(serialsIn('out-hid-unplug')).toEqual(['HID-U1']);
    expect((await verifyBenchOutput(join(lab.dir, 'out-hid-unplug'), { account: account.dir })).ok).toBe(true);
  }, 120_000);

  it('a HID path that is not a file (a node-hid libusb path) comes back at the same path after an unplug', async () => {
    const bus = new FakeHidBus();
    const token = bus.token('HID-L1', hexKey(bench.hex), '1-1:1.2');
    let unplugged = false;
    const summary = await runBench(options([], 'out-hid-libusb', {
      hid: ['1-1:1.2'], hidBackend: bus.backend, retries: 1, replugTimeoutMs: 20_000,
      onEvent: (e) => {
        if (e.step === 'install' && e.phase === 'start' && !unplugged) {
          unplugged = true;
          void token.unplug();
          setTimeout(() => token.plug('1-1:1.2'), 400);
        }
      },
    }));
    expect(unplugged).toBe(true);
    expect(summary.devices[0]).toMatchObject({ transport: 'hid', status: 'provisioned', resumed: 'resumed', attempts: 2 });
    expect(summary.devices[0]?.path).toBeUndefined();
    expect(serialsIn('out-hid-libusb')).toEqual(['HID-L1']);
  }, 120_000);

  it('a HID token that does not come back within the re-plug timeout is failed-and-retryable, not provisioned; one not there at all fails at open', async () => {
    const bus = new FakeHidBus();
    const token = bus.token('HID-G1', hexKey(bench.hex), '/dev/hidraw-fake5');
    let unplugged = false;
    const summary = await runBench(options([], 'out-hid-gone', {
      hid: ['/dev/hidraw-fake5', '/dev/hidraw-absent'], hidBackend: bus.backend, retries: 1, replugTimeoutMs: 600,
      onEvent: (e) => {
        if (e.port === '/dev/hidraw-fake5' && e.step === 'keygen' && e.phase === 'start' && !unplugged) {
          unplugged = true;
          void token.unplug();
        }
      },
    }));
    expect(summary.devices[0]).toMatchObject({ transport: 'hid', status: 'failed', retryable: true, step: 'keygen', serial: 'HID-G1' });
    expect(summary.devices[0]?.reason).toMatch(/^unplugged during keygen.*not back within/);
    expect(summary.devices[1]).toMatchObject({ transport: 'hid', status: 'failed', retryable: true, step: 'open' });
    expect(summary.devices[1]?.reason).toMatch(/cannot open the port: cannot open HID device \/dev\/hidraw-absent/);
    expect(summary.provisioned).toBe(0);
    expect(readFileSync(join(lab.dir, 'out-hid-gone', 'records.jsonl'), 'utf8')).toBe('');
  }, 60_000);

  it('a HID token that pins another bench key fails at auth with BAD_SIGNATURE, not retried', async () => {
    const bus = new FakeHidBus();
    bus.token('HID-B1', hexKey(other.hex), '/dev/hidraw-fake6');
    const summary = await runBench(options([], 'out-hid-untrusted', { hid: ['/dev/hidraw-fake6'], hidBackend: bus.backend, retries: 3, replugTimeoutMs: 5000 }));
    expect(summary.devices[0]).toMatchObject({ transport: 'hid', status: 'failed', retryable: false, attempts: 1, step: 'auth' });
    expect(summary.devices[0]?.reason).toContain('BAD_SIGNATURE');
  }, 60_000);

  it('checks the port lists: none at all, a path in both lists, a wrong hid list, a wrong back end', async () => {
    await expect(runBench(options([], 'out-args'))).rejects.toThrow(RangeError);
    await expect(runBench(options(['/dev/x'], 'out-args', { hid: ['/dev/x'] }))).rejects.toThrow(/name a port twice/);
    await expect(runBench(options([], 'out-args', { hid: '/dev/hidraw0' as unknown as string[] }))).rejects.toThrow(TypeError);
    await expect(runBench(options([], 'out-args', { hid: [''] }))).rejects.toThrow(RangeError);
    await expect(runBench(options([], 'out-args', { hid: ['/dev/x'], hidBackend: {} as HidBackend }))).rejects.toThrow(TypeError);
  });
});

describe('HID discovery by the devices/ descriptors', () => {
  it('finds the HID devices whose VID/PID match a hid descriptor; other VID/PIDs are left out', async () => {
    const bus = new FakeHidBus();
    const key = new Uint8Array(32);
    bus.token('D1', key, '/dev/hidraw7');
    bus.token('D2', key, '/dev/hidraw8', { vendorId: 0x1234, productId: 0x5678 });
    bus.token('D3', key, '/dev/hidraw9', { productId: 0x0002 });
    const found = await discoverHidDevices(await loadDescriptors(), bus.backend);
    expect(found.map((d) => [d.path, d.descriptor, d.serialNumber])).toEqual([['/dev/hidraw7', 'hid-token', 'D1']]);
    await expect(discoverHidDevices('x' as never, bus.backend)).rejects.toThrow(TypeError);
  });

  it('honours a usage page given in a descriptor USB entry', async () => {
    const bus = new FakeHidBus();
    const key = new Uint8Array(32);
    bus.token('P1', key, '/dev/hidraw10', { usagePage: 0xff00 });
    bus.token('P2', key, '/dev/hidraw11', { usagePage: 0x0001 });
    const descriptors = (await loadDescriptors()).map((d) => (d.transport === 'hid' ? { ...d, usb: d.usb.map((u) => ({ ...u, usagePage: 'ff00' })) } : d));
    const found = await discoverHidDevices(descriptors, bus.backend);
    expect(found.map((d) => d.path)).toEqual(['/dev/hidraw10']);
  });
});
