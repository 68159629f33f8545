/**
 * SerialTransport over a REAL pty pair from socat (ENVIRONMENT.md §3): bulk data both ways, DeviceSession
 * exchanges against a TypeScript responder on the other end, and killing socat as the "device unplugged".
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DeviceError } from '../../src/core/errors.js';
import { MessageType } from '../../src/device/protocol.generated.js';
import { DeviceSession } from '../../src/device/session.js';
import { SerialOpenError, SerialTransport } from '../../src/device/transport/serial.js';
import { DeviceDisconnectedError, TransportClosedError } from '../../src/device/transport/types.js';
import { respond } from './responder.js';

const haveSocat = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;
if (!haveSocat) console.warn('test/device/serial.test.ts: skipped — socat is not installed (apt-get install socat)');

const dir = mkdtempSync(join(tmpdir(), 'meshkit-serial-'));
const children = new Set<ChildProcess>();
const opened = new Set<SerialTransport>();

/** Starts `socat` with a raw pty pair linked at dir/<name>-a and dir/<name>-b; waits until both links exist. */
async function ptyPair(name: string): Promise<{ a: string; b: string; socat: ChildProcess }> {
  const a = join(dir, `${name}-a`);
  const b = join(dir, `${name}-b`);
  const socat = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: 'ignore' });
  children.add(socat);
  socat.on('exit', () => children.delete(socat));
  const deadline = Date.now() + 5000;
  while (!(existsSync(a) && existsSync(b))) {
    if (Date.now() > deadline) throw new Error(`socat did not create ${a} and ${b} within 5 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { a, b, socat };
}

async function open(path: string): Promise<SerialTransport> {
  const t = await SerialTransport.open(path, { openTimeoutMs: 3000 });
  opened.add(t);
  return t;
}

/** Rejects after ms: a watchdog so that a stalled link fails the test instead of hanging it. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`watchdog: ${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, watchdog]).finally(() => clearTimeout(timer));
}

function collect(t: SerialTransport, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let filled = 0;
  return new Promise((resolve, reject) => {
    t.onData((bytes) => {
      if (filled + bytes.length > length) return reject(new Error(`received more than ${length} bytes`));
      out.set(bytes, filled);
      filled += bytes.length;
      if (filled === length) resolve(out);
    });
  });
}

afterEach(async () => {
  await Promise.all([...opened].map((t) => t.close()));
  opened.clear();
});

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe.runIf(haveSocat)('SerialTransport over a socat pty pair', () => {
  it('streams 1 MiB both ways at once, intact (4 KiB chunks, drained)', async () => {
    const { a, b } = await ptyPair('bulk');
    const [ta, tb] = [await open(a), await open(b)];
    const ab = randomBytes(1 << 20);
    const ba = randomBytes(1 << 20);
    const atB = collect(tb, ab.length);
    const atA = collect(ta, ba.length);
    await within(20_000, '1 MiB both ways', Promise.all([ta.send(ab), tb.send(ba)]));
    const [gotB, gotA] = await within(20_000, 'receiving 1 MiB both ways', Promise.all([atB, atA]));
    expect(Buffer.compare(gotB, ab)).toBe(0);
    expect(Buffer.compare(gotA, ba)).toBe(0);
  });

  it('concurrent sends are written in call order, never interleaved', async () => {
    const { a, b } = await ptyPair('order');
    const [ta, tb] = [await open(a), await open(b)];
    const parts = Array.from({ length: 8 }, (_, i) => new Uint8Array(10_000).fill(i + 1));
    const got = collect(tb, 80_000);
    await within(10_000, 'sends', Promise.all(parts.map((p) => ta.send(p))));
    const bytes = await within(10_000, 'receive', got);
    for (let i = 0; i < 8; i++) expect(bytes.subarray(i * 10_000, (i + 1) * 10_000).every((x) => x === i + 1)).toBe(true);
  });

  it('a DeviceSession and a responder on the other end do 200 exchanges', async () => {
    const { a, b } = await ptyPair('session');
    const [host, device] = [await open(a), await open(b)];
    const responder = respond(device, (r) => ({ type: MessageType.RECEIPT, payload: { 1: (r.payload as Map<number, Uint8Array>).get(1) as Uint8Array } }));
    const session = new DeviceSession(host, { firstSeq: 0, timeoutMs: 2000, retries: 0 });
    await within(30_000, '200 exchanges', (async () => {
      for (let i = 0; i < 200; i++) {
        const digest = randomBytes(i % 2 === 0 ? 32 : 1500); // odd exchanges fragment into 3 frames
        const reply = await session.exchange('COMMIT', { 1: digest });
        expect(reply.seq).toBe(i & 0xff);
        expect(Buffer.compare((reply.payload as Map<number, Uint8Array>).get(1) as Uint8Array, digest)).toBe(0);
      }
    })());
    expect(responder.seen).toHaveLength(200);
    await session.close();
    expect(host.isOpen).toBe(false);
  });

  it('killing socat mid-exchange ("device unplugged") gives DeviceDisconnectedError, never a hang', async () => {
    const { a, b, socat } = await ptyPair('unplug');
    const [host, device] = [await open(a), await open(b)];
    const closeReasons: (DeviceError | undefined)[] = [];
    host.onClose((reason) => closeReasons.push(reason));
    respond(device, () => undefined); // the device never answers
    const session = new DeviceSession(host, { firstSeq: 0, timeoutMs: 10_000, retries: 5 });
    const pending = session.exchange('KEYGEN', { 1: 7 });
    await new Promise((r) => setTimeout(r, 100));
    socat.kill('SIGKILL');
    const err = await within(5000, 'exchange after unplug', pending.catch((e: unknown) => e));
    expect(err).toBeInstanceOf(DeviceDisconnectedError);
    expect(err).toBeInstanceOf(DeviceError);
    expect((err as DeviceError).code).toBe('ERR_DEVICE');
    expect((err as Error).message).toMatch(/^serial device .*unplug-a disconnected/);
    expect(closeReasons).toHaveLength(1);
    expect(closeReasons[0]).toBeInstanceOf(DeviceDisconnectedError);
    expect(host.isOpen).toBe(false);
    await expect(host.send(Uint8Array.of(1))).rejects.toBeInstanceOf(DeviceDisconnectedError);
    await within(5000, 'close after unplug', session.close());
    await within(5000, 'second close', host.close());
  });

  it('a send in progress when socat dies rejects with DeviceDisconnectedError', async () => {
    const { a, b, socat } = await ptyPair('unplug-send');
    const [ta] = [await open(a), await open(b)];
    const sending = ta.send(randomBytes(8 << 20)); // larger than the pty buffers: it is mid-send when socat dies
    await new Promise((r) => setTimeout(r, 30));
    socat.kill('SIGKILL');
    const err = await within(5000, 'send after unplug', sending.catch((e: unknown) => e));
    expect(err).toBeInstanceOf(DeviceDisconnectedError);
  });

  it('close is idempotent, reports no error locally, and later sends fail with TransportClosedError', async () => {
    const { a, b } = await ptyPair('close');
    const [ta, tb] = [await open(a), await open(b)];
    const reasons: (DeviceError | undefined)[] = [];
    ta.onClose((r) => reasons.push(r));
    await Promise.all([ta.close(), ta.close()]);
    await ta.close();
    expect(reasons).toEqual([undefined]);
    expect(ta.isOpen).toBe(false);
    await expect(ta.send(Uint8Array.of(1))).rejects.toBeInstanceOf(TransportClosedError);
    expect(tb.isOpen).toBe(true);
  });

  it('open fails with SerialOpenError for a missing path; argument checks', async () => {
    await expect(SerialTransport.open(join(dir, 'missing'))).rejects.toSatisfy(
      (e) => e instanceof SerialOpenError && e.path === join(dir, 'missing') && /cannot open/.test(e.message),
    );
    await expect(SerialTransport.open('')).rejects.toThrow(RangeError);
    await expect(SerialTransport.open(1 as never)).rejects.toThrow(TypeError);
    await expect(SerialTransport.open('/dev/null', { chunkSize: 8192 })).rejects.toThrow(RangeError);
  });
});
