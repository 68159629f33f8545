/**
 * The bench library (src/device/bench-runner.ts) against REAL C emulators on socat pty pairs, an account from a
 * real ceremony on SoftHSM (its admin key on a SoftHSM "card") and a software-keystore bench key: parallel
 * provisioning, the signed record log and its re-verification, a device killed mid-run and resumed, a device
 * unplugged and re-plugged mid-run, a port that never answers, a wrong model, a bench key the device does not pin.
 * Skipped, with the reason printed, only where socat, make, gcc, libsodium or SoftHSM is missing.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAccount } from '../../src/admin/account.js';
import { HashLog, signLogHead } from '../../src/core/hashlog.js';
import { classifyFailure, runBench, timingStats, verifyBenchOutput, type BenchEvent, type BenchRunOptions } from '../../src/device/bench-runner.js';
import { DeviceTimeoutError } from '../../src/device/session.js';
import { DeviceDisconnectedError } from '../../src/device/transport/types.js';
import { makeAccountFixture, type AccountFixture } from '../helpers/account.js';
import { benchSkipReason, buildEmulator, EmulatorLab, makeBenchKey } from './emulators.js';

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
});
