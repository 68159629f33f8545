/**
 * src/device/emulator.ts, the one launcher of the C device emulator: the real mk-emulator on a real socat pty
 * pair, driven from the host side with SerialTransport + DeviceSession. Start, kill (power loss: the host times
 * out), restart on the same state file (same serial, same device state), unplug (the host sees the tty go:
 * DeviceDisconnectedError), stop (no socat or emulator process left, checked by pid; the temp dir gone), and the
 * option checks. Skipped, with the reason printed, only where emulatorUnavailable() says it cannot run.
 */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { CborMap } from '../../src/device/cbor.js';
import { emulatorUnavailable, startEmulatedDevice, type EmulatedDevice } from '../../src/device/emulator.js';
import { DeviceState } from '../../src/device/protocol.generated.js';
import { DeviceSession, DeviceTimeoutError } from '../../src/device/session.js';
import { DeviceDisconnectedError } from '../../src/device/transport/types.js';
import { SerialTransport } from '../../src/device/transport/serial.js';
import { processAlive } from '../../src/util/fs.js';
import { testKey, testSigner } from '../helpers/software-signer.js';

const reason = emulatorUnavailable();
if (reason !== undefined) console.log(`emulator-launcher.test.ts: skipped: ${reason}`);

const root = mkdtempSync(join(tmpdir(), 'meshkit-launcher-'));
const devices: EmulatedDevice[] = [];
afterAll(async () => {
  for (const d of devices) await d.stop();
  rmSync(root, { recursive: true, force: true });
});

/** The pids of the processes whose command line names this path (socat and the emulator both do). */
function pidsNaming(path: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(path)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function hello(port: string, timeoutMs = 3000): Promise<{ info: CborMap; session: DeviceSession }> {
  const session = new DeviceSession(await SerialTransport.open(port, { openTimeoutMs: 3000 }), { timeoutMs, retries: 0 });
  const reply = await session.exchange('HELLO', { 1: 1 });
  return { info: reply.payload as CborMap, session };
}

describe.skipIf(reason !== undefined)('startEmulatedDevice: the C emulator on a socat pty pair', () => {
  it('starts, answers HELLO on its port; killed it stops answering; restarted on the same state it is the same device', async () => {
    const bench = testKey('Ed25519');
    const key = new Uint8Array(Buffer.from(bench.publicJwk.x, 'base64url'));
    const lines: string[] = [];
    const d = await startEmulatedDevice({
      state: join(root, 'a.state'), serial: 'LAUNCH-A', model: 'esp32s3-devkit', firmware: '9.8.7', provisionerKey: key,
      onLog: (l) => lines.push(l),
    });
    devices.push(d);
    expect(d.running).toBe(true);
    expect(existsSync(d.port)).toBe(true);
    expect(lines.some((l) => l.startsWith('mk-emulator: ready') && l.includes('LAUNCH-A'))).toBe(true);
    const first = await hello(d.port);
    expect(first.info.get(1)).toBe('esp32s3-devkit');
    expect(first.info.get(2)).toBe('LAUNCH-A');
    expect(first.info.get(3)).toBe('9.8.7');
    expect(first.info.get(5)).toBe(DeviceState.FACTORY);
    // move the device on (its flash changes): BENCH_AUTH with the pinned key, then KEYGEN
    const challenge = first.info.get(6) as Uint8Array;
    await first.session.exchange('BENCH_AUTH', new Map<number, Uint8Array>([[1, challenge], [2, key], [3, await testSigner(bench).sign(challenge)]]));
    const keys = (await first.session.exchange('KEYGEN', { 1: 7, 2: Math.floor(Date.now() / 1000) })).payload as CborMap;
    expect(keys.get(1)).toBeInstanceOf(Uint8Array);

    d.kill(); // power loss: the pty stays, nobody answers
    expect(await d.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(d.log()).toContain('KEYGEN seq'); // all its stderr is in once it has exited
    expect(d.running).toBe(false);
    expect(existsSync(d.port)).toBe(true);
    const timedOut = await first.session.exchange('HELLO', { 1: 1 }, { timeoutMs: 500, retries: 0 }).then(() => undefined, (e: unknown) => e);
    expect(timedOut).toBeInstanceOf(DeviceTimeoutError);
    await first.session.close();

    await d.restart();
    expect(d.running).toBe(true);
    const again = await hello(d.port);
    expect(again.info.get(2)).toBe('LAUNCH-A');
    expect(again.info.get(5)).toBe(DeviceState.KEYS_GENERATED); // its flash survived the power loss
    expect(again.info.get(6)).not.toEqual(first.info.get(6));
    await again.session.close();
    await d.stop();
  });

  it('SIGTERM ends the emulator cleanly (status 0), restart brings it back', async () => {
    const d = await startEmulatedDevice({ state: join(root, 't.state'), serial: 'LAUNCH-T' });
    devices.push(d);
    d.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    expect(d.log()).toContain('mk-emulator: stopped');
    await d.restart();
    const { info, session } = await hello(d.port);
    expect(info.get(2)).toBe('LAUNCH-T');
    await session.close();
    await d.stop();
  });

  it('unplugged, the host sees DeviceDisconnectedError; restarted (re-plugged) on the same link it answers again', async () => {
    const link = join(root, 'plug-host');
    const d = await startEmulatedDevice({ state: join(root, 'u.state'), serial: 'LAUNCH-U', link, baud: 115200 });
    devices.push(d);
    expect(d.port).toBe(link);
    const { session } = await hello(d.port);
    await d.unplug();
    expect(existsSync(d.port)).toBe(false);
    expect(lstatSync(d.port, { throwIfNoEntry: false })).toBeUndefined(); // no dangling link to a pty number left
    const after = await session.exchange('HELLO', { 1: 1 }, { timeoutMs: 2000, retries: 0 }).then(() => undefined, (e: unknown) => e);
    expect(after).toBeInstanceOf(DeviceDisconnectedError);
    await session.close();
    await d.restart();
    expect(existsSync(link)).toBe(true);
    const back = await hello(link);
    expect(back.info.get(2)).toBe('LAUNCH-U');
    await back.session.close();
    await d.stop();
    expect(existsSync(link)).toBe(false);
    expect(existsSync(`${link}.device`)).toBe(false);
  });

  it('stop ends socat and the emulator (by pid), removes its temp dir, and is idempotent', async () => {
    const d = await startEmulatedDevice({ state: join(root, 's.state'), serial: 'LAUNCH-S' });
    devices.push(d);
    const dir = dirname(d.port);
    const pids = pidsNaming(dir);
    expect(pids.length).toBe(2); // socat and mk-emulator, both name the temp dir in argv
    expect(pids.every((pid) => processAlive(pid))).toBe(true);
    await d.stop();
    await d.stop();
    expect(pids.filter((pid) => processAlive(pid))).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    await expect(d.restart()).rejects.toThrow(/stopped/);
  });

  it('a bench process killed with SIGKILL (no exit hook runs) takes socat and the emulator with it', async () => {
    // `meshkit device emulate --pty` (the built CLI) starts both through the launcher; then the CLI process is killed
    const bin = fileURLToPath(new URL('../../bin/meshkit.js', import.meta.url));
    const link = join(root, 'orphan-host');
    const cli = spawn(process.execPath, [bin, 'device', 'emulate', '--pty', '--link', link, '--state', join(root, 'orphan.state'), '--serial', 'LAUNCH-O'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    cli.stdout.on('data', (c: Buffer) => void (out += c.toString('utf8')));
    cli.stderr.on('data', (c: Buffer) => void (out += c.toString('utf8')));
    const deadline = Date.now() + 10_000;
    while (!out.includes(link) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(out).toContain(link);
    const pids = pidsNaming(link).filter((pid) => pid !== cli.pid);
    expect(pids.length).toBe(2); // socat and mk-emulator
    cli.kill('SIGKILL');
    const until = Date.now() + 5000;
    while (pids.some((pid) => processAlive(pid)) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(pids.filter((pid) => processAlive(pid))).toEqual([]);
  });

  it('a silent device is a port nobody answers until restart() starts the emulator', async () => {
    const d = await startEmulatedDevice({ state: join(root, 'q.state'), serial: 'LAUNCH-Q', silent: true });
    devices.push(d);
    expect(d.running).toBe(false);
    const session = new DeviceSession(await SerialTransport.open(d.port), { timeoutMs: 400, retries: 0 });
    await expect(session.exchange('HELLO', { 1: 1 })).rejects.toBeInstanceOf(DeviceTimeoutError);
    await session.close();
    await d.restart();
    const { info, session: s2 } = await hello(d.port);
    expect(info.get(2)).toBe('LAUNCH-Q');
    await s2.close();
    await d.stop();
  });

  it('an emulator that refuses its state file is reported with its own message, and nothing is left running', async () => {
    writeFileSync(join(root, 'bad.state'), 'not a state file');
    const before = pidsNaming(join(root, 'bad.state'));
    const failure = await startEmulatedDevice({ state: join(root, 'bad.state'), serial: 'LAUNCH-BAD' })
      .then(() => undefined, (e: unknown) => e);
    expect(failure).toMatchObject({ code: 'ERR_IO' });
    expect((failure as Error).message).toMatch(/did not start: mk-emulator: device init failed .*corrupt/);
    expect(before).toEqual([]);
    expect(pidsNaming(join(root, 'bad.state'))).toEqual([]);
  });

  it('checks its options, naming the field', async () => {
    const ok = { state: join(root, 'o.state'), serial: 'LAUNCH-O' };
    await expect(startEmulatedDevice({ ...ok, state: 7 as unknown as string })).rejects.toThrow(/"state"/);
    await expect(startEmulatedDevice({ ...ok, state: '' })).rejects.toBeInstanceOf(RangeError);
    await expect(startEmulatedDevice({ ...ok, serial: '' })).rejects.toThrow(/"serial"/);
    await expect(startEmulatedDevice({ ...ok, baud: 1.5 })).rejects.toThrow(/"baud"/);
    await expect(startEmulatedDevice({ ...ok, baud: 5 })).rejects.toBeInstanceOf(RangeError);
    await expect(startEmulatedDevice({ ...ok, provisionerKey: new Uint8Array(31) })).rejects.toThrow(/"provisionerKey"/);
    await expect(startEmulatedDevice({ ...ok, link: '' })).rejects.toThrow(/"link"/);
    await expect(startEmulatedDevice({ ...ok, onLog: 'x' as unknown as () => void })).rejects.toThrow(/"onLog"/);
  });
});
