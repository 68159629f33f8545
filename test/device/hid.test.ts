/**
 * The HID side of the host without a device: the session's HID codec (64-byte reports, message body
 * `seq ‖ CBOR`, docs/protocol-framing.md "HID reports") over an in-process report link with a TypeScript HID device,
 * and HidTransport (src/device/transport/hid.ts) over a stand-in HIDAsync handle and over the real node-hid where no
 * device exists. The real-USB run of the same code is test/usb/usb-vm.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DeviceError } from '../../src/core/errors.js';
import { decodeCbor, encodeCbor } from '../../src/device/cbor.js';
import type { CborInput, CborValue } from '../../src/device/cbor.js';
import { encodeReports, HidReassembler, statusName } from '../../src/device/framing.js';
import { DeviceStatus, Limits, MessageType } from '../../src/device/protocol.generated.js';
import { DeviceReplyError, DeviceSession, DeviceTimeoutError, HID_DEFAULT_CID, hidCodec, serialCodec } from '../../src/device/session.js';
import {
  HID_REPORT_SIZE, HidOpenError, HidTransport, HidUnavailableError, listHidDevices,
} from '../../src/device/transport/hid.js';
import type { HidBackend, HidHandle, RawHidDevice } from '../../src/device/transport/hid.js';
import { createLinkPair } from '../../src/device/transport/link.js';
import { DeviceDisconnectedError, TransportClosedError } from '../../src/device/transport/types.js';
import type { Transport } from '../../src/device/transport/types.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface SeenHid {
  readonly cid: number;
  readonly type: number;
  readonly seq: number;
  readonly payload: CborValue;
}

type HidAnswer = { type: number; payload: CborInput; cid?: number } | { reports: Uint8Array[] } | undefined;

/** A TypeScript HID device: reassembles reports per the spec (independently of the codec) and answers. */
function hidDevice(device: Transport, handler: (request: SeenHid, index: number) => HidAnswer) {
  const seen: SeenHid[] = [];
  const errors: string[] = [];
  let reassembler: HidReassembler | undefined;
  let buffered = new Uint8Array(0);
  device.onData((bytes) => {
    const all = new Uint8Array(buffered.length + bytes.length);
    all.set(buffered);
    all.set(bytes, buffered.length);
    let offset = 0;
    for (; offset + 64 <= all.length; offset += 64) {
      const report = all.subarray(offset, offset + 64);
      const cid = new DataView(report.buffer, report.byteOffset).getUint32(0, false);
      // Idle: an init report picks the channel (the device answers on the request's channel).
      if ((reassembler === undefined || !reassembler.inMessage) && ((report[4] as number) & 0x80) !== 0) reassembler = new HidReassembler(cid);
      if (reassembler === undefined) continue;
      for (const event of reassembler.push(report)) {
        if (event.kind === 'error') {
          errors.push(statusName(event.error.status) ?? '?');
          continue;
        }
        const body = event.message.payload;
        const request = { cid, type: event.message.type, seq: body[0] as number, payload: decodeCbor(body.subarray(1)) };
        seen.push(request);
        const answer = handler(request, seen.length - 1);
        if (answer === undefined) continue;
        let reports: Uint8Array[];
        if ('reports' in answer) reports = answer.reports;
        else {
          const cbor = encodeCbor(answer.payload);
          const replyBody = new Uint8Array(cbor.length + 1);
          replyBody[0] = request.seq;
          replyBody.set(cbor, 1);
          reports = encodeReports(answer.cid ?? cid, answer.type, replyBody);
        }
        for (const r of reports) void device.send(r).catch(() => undefined);
      }
    }
    buffered = all.slice(offset);
  });
  return { seen, errors };
}

const info = { 1: 'hid-token', 2: 'HID-1', 3: '1.0', 4: 0x40, 5: 0, 6: new Uint8Array(32).fill(7) };

describe('hidCodec: the HID message body is seq ‖ CBOR in 64-byte reports', () => {
  it('lays out the init report as CID | 0x80|type | BCNT (seq + CBOR) | seq | CBOR, zero-padded', () => {
    const codec = hidCodec({ cid: 0x01020304 });
    const cbor = encodeCbor(new Map([[1, 1]]));
    const wire = codec.encode(MessageType.HELLO, 0x2a, cbor);
    expect(wire.length).toBe(64);
    expect([...wire.subarray(0, 4)]).toEqual([1, 2, 3, 4]);
    expect(wire[4]).toBe(0x80 | MessageType.HELLO);
    expect((wire[5] as number) * 256 + (wire[6] as number)).toBe(cbor.length + 1);
    expect(wire[7]).toBe(0x2a);
    expect([...wire.subarray(8, 8 + cbor.length)]).toEqual([...cbor]);
    expect(wire.subarray(8 + cbor.length).every((b) => b === 0)).toBe(true);
  });

  it('splits a long message into init + continuations (SEQ 0, 1, …) and reassembles it from any chunking', () => {
    const tx = hidCodec();
    const rx = hidCodec();
    const message = Uint8Array.from({ length: 1000 }, (_, i) => (i * 13) & 0xff);
    const wire = tx.encode(0x06, 200, message);
    const body = 1 + message.length;
    const reports = 1 + Math.ceil((body - Limits.HID_INIT_DATA) / Limits.HID_CONT_DATA);
    expect(wire.length).toBe(reports * 64);
    for (let i = 1; i < reports; i++) expect(wire[i * 64 + 4]).toBe(i - 1);
    const events = [];
    for (let offset = 0; offset < wire.length; offset += 37) events.push(...rx.push(wire.subarray(offset, offset + 37)));
    expect(events).toEqual([{ kind: 'message', message: { type: 0x06, seq: 200, payload: message } }]);
  });

  it('carries at most 4095 CBOR bytes (BCNT ≤ 4096 counts the seq byte) and checks its arguments', () => {
    const codec = hidCodec();
    expect(codec.maxMessage).toBe(4095);
    expect(codec.encode(1, 0, new Uint8Array(4095)).length).toBe(64 * (1 + Math.ceil((4096 - 57) / 59)));
    expect(() => codec.encode(1, 0, new Uint8Array(4096))).toThrow(RangeError);
    expect(() => codec.encode(1, 256, new Uint8Array(1))).toThrow(RangeError);
    expect(() => codec.encode(0x80, 0, new Uint8Array(1))).toThrow(RangeError);
    expect(() => codec.encode(1, 0, 'x' as unknown as Uint8Array)).toThrow(TypeError);
    for (const cid of [0, 0xffffffff, -1]) expect(() => hidCodec({ cid })).toThrow(RangeError);
    expect(() => hidCodec({ cid: 1.5 })).toThrow(TypeError);
    expect(() => hidCodec({ cid: '1' as unknown as number })).toThrow(TypeError);
  });

  it('reports a message without its seq byte (BCNT 0), another channel and an out-of-order continuation', () => {
    const codec = hidCodec({ cid: 9 });
    const empty = encodeReports(9, MessageType.INFO, new Uint8Array(0))[0] as Uint8Array;
    const other = encodeReports(10, MessageType.INFO, new Uint8Array([1, 0xa0]))[0] as Uint8Array;
    const long = encodeReports(9, MessageType.INFO, new Uint8Array(200));
    const events = codec.push(new Uint8Array([...empty, ...other, ...(long[0] as Uint8Array), ...(long[2] as Uint8Array)]));
    expect(events.map((e) => (e.kind === 'error' ? statusName(e.error.status) : 'message'))).toEqual(['BAD_LENGTH', 'BAD_CHANNEL', 'FRAGMENT_ORDER']);
    for (const e of events) if (e.kind === 'error') expect(e.error).toBeInstanceOf(DeviceError);
  });

  it('reset() drops a partial report and a partial message', () => {
    const codec = hidCodec();
    const reports = encodeReports(HID_DEFAULT_CID, MessageType.INFO, new Uint8Array(100).fill(1));
    expect(codec.push((reports[0] as Uint8Array).subarray(0, 30))).toEqual([]);
    codec.reset();
    expect(codec.push(reports[1] as Uint8Array).map((e) => e.kind)).toEqual(['error']);
    const whole = codec.encode(MessageType.INFO, 3, encodeCbor(new Map([[1, 2]])));
    expect(codec.push(whole)).toEqual([{ kind: 'message', message: { type: MessageType.INFO, seq: 3, payload: encodeCbor(new Map([[1, 2]])) } }]);
  });

  it('serialCodec is the default and still speaks COBS frames', () => {
    const codec = serialCodec();
    const wire = codec.encode(MessageType.HELLO, 5, encodeCbor(new Map([[1, 1]])));
    expect(wire[wire.length - 1]).toBe(0);
    expect(codec.push(wire)).toEqual([{ kind: 'message', message: { type: MessageType.HELLO, seq: 5, payload: encodeCbor(new Map([[1, 1]])) } }]);
  });
});

describe('DeviceSession with hidCodec over an in-process report link', () => {
  function setup(handler: (request: SeenHid, index: number) => HidAnswer, cid?: number) {
    const [host, device] = createLinkPair(['host', 'hid-device']);
    const dev = hidDevice(device, handler);
    const frameErrors: string[] = [];
    const session = new DeviceSession(host, {
      codec: hidCodec(cid === undefined ? {} : { cid }), firstSeq: 250, timeoutMs: 150, retries: 2,
      onFrameError: (e) => frameErrors.push(statusName(e.status) ?? e.message),
    });
    return { session, dev, frameErrors, host };
  }

  it('HELLO → INFO on the session channel, seq carried in the body and wrapping 255 → 0', async () => {
    const { session, dev } = setup(() => ({ type: MessageType.INFO, payload: info }), 0x11223344);
    for (let i = 0; i < 8; i++) {
      const reply = await session.exchange('HELLO', { 1: 1 });
      expect(reply.name).toBe('INFO');
      expect((reply.payload as Map<number, unknown>).get(2)).toBe('HID-1');
    }
    expect(dev.seen.map((r) => r.seq)).toEqual([250, 251, 252, 253, 254, 255, 0, 1]);
    expect(dev.seen.every((r) => r.cid === 0x11223344)).toBe(true);
    await session.close();
  });

  it('carries a 3000-byte field both ways (52 reports each way)', async () => {
    const { session } = setup((r) => ({ type: MessageType.RECEIPT, payload: { 1: (r.payload as Map<number, Uint8Array>).get(1) as Uint8Array } }));
    const big = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);
    const reply = await session.exchange('COMMIT', new Map([[1, big]]));
    expect((reply.payload as Map<number, unknown>).get(1)).toEqual(big);
    await session.close();
  });

  it('an ERROR reply becomes DeviceReplyError with the device status', async () => {
    const { session } = setup(() => ({ type: MessageType.ERROR, payload: { 1: DeviceStatus.BAD_SIGNATURE, 2: 'untrusted bench' } }));
    const error = await session.exchange('BENCH_AUTH', { 1: new Uint8Array(32), 2: new Uint8Array(32), 3: new Uint8Array(64) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeviceReplyError);
    expect((error as DeviceReplyError).status).toBe(DeviceStatus.BAD_SIGNATURE);
    await session.close();
  });

  it('a corrupted request report (BCNT > 4096) is dropped by the device; the retry (same seq) is answered', async () => {
    const [host, device] = createLinkPair();
    const dev = hidDevice(device, () => ({ type: MessageType.INFO, payload: info }));
    let corrupt = true;
    const corrupting: Transport = {
      get isOpen() { return host.isOpen; },
      send: (bytes) => {
        const copy = bytes.slice();
        if (corrupt) {
          corrupt = false;
          copy[5] = 0xff;
        }
        return host.send(copy);
      },
      onData: (l) => host.onData(l),
      onClose: (l) => host.onClose(l),
      close: () => host.close(),
      [Symbol.asyncDispose]: () => host.close(),
    };
    const session = new DeviceSession(corrupting, { codec: hidCodec(), firstSeq: 9, timeoutMs: 100, retries: 2 });
    const reply = await session.exchange('HELLO', { 1: 1 });
    expect(reply.name).toBe('INFO');
    expect(dev.errors).toEqual(['TOO_LARGE']);
    expect(dev.seen.map((r) => r.seq)).toEqual([9]);
    await session.close();
  });

  it('a reply on another channel is dropped (BAD_CHANNEL) and the retry is answered on the right one', async () => {
    const { session, dev, frameErrors } = setup((_r, i) => ({ type: MessageType.INFO, payload: info, ...(i === 0 ? { cid: 0x0badcafe } : {}) }));
    const reply = await session.exchange('HELLO', { 1: 1 });
    expect(reply.name).toBe('INFO');
    // every report of the misdirected reply is dropped
    const reports = encodeReports(1, MessageType.INFO, new Uint8Array(1 + encodeCbor(info).length)).length;
    expect(reports).toBeGreaterThan(1);
    expect(frameErrors).toEqual(Array(reports).fill('BAD_CHANNEL'));
    expect(dev.seen.map((r) => r.seq)).toEqual([250, 250]);
    await session.close();
  });

  it('a reply without its seq byte is reported (BAD_LENGTH); no reply at all ends in DeviceTimeoutError', async () => {
    const empty = encodeReports(HID_DEFAULT_CID, MessageType.INFO, new Uint8Array(0));
    const { session, frameErrors, dev } = setup(() => ({ reports: empty }));
    const error = await session.exchange('HELLO', { 1: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeviceTimeoutError);
    expect((error as DeviceTimeoutError).attempts).toBe(3);
    expect(frameErrors).toEqual(['BAD_LENGTH', 'BAD_LENGTH', 'BAD_LENGTH']);
    expect(dev.seen).toHaveLength(3);
    await session.close();
  });

  it('rejects a message the HID codec cannot carry (4095 + 1 CBOR bytes) before sending anything', async () => {
    const { session, dev } = setup(() => undefined);
    const error = await session.exchange('INSTALL', new Map([[1, new Uint8Array(4091)]])).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RangeError);
    await sleep(20);
    expect(dev.seen).toEqual([]);
    await session.close();
  });

  it('rejects a codec that is not one', () => {
    const [host] = createLinkPair();
    expect(() => new DeviceSession(host, { codec: {} as never })).toThrow(TypeError);
  });
});

/** A stand-in for node-hid's HIDAsync: records writes, emits data/error like the real one. */
class FakeHandle extends EventEmitter implements HidHandle {
  readonly writes: Buffer[] = [];
  closed = 0;
  failWrites: Error | undefined;
  onWrite: ((report: Uint8Array) => void) | undefined;
  async write(values: number[] | Buffer): Promise<number> {
    if (this.failWrites !== undefined) throw this.failWrites;
    const buffer = Buffer.from(values as Buffer);
    this.writes.push(buffer);
    this.onWrite?.(new Uint8Array(buffer.subarray(1)));
    return buffer.length;
  }
  async close(): Promise<void> {
    this.closed++;
  }
  input(report: Uint8Array): void {
    this.emit('data', Buffer.from(report));
  }
}

function fakeBackend(handle: FakeHandle, devices: RawHidDevice[] = [], openError?: Error): HidBackend & { opened: string[] } {
  const opened: string[] = [];
  return {
    opened,
    devices: async () => devices,
    open: async (path: string) => {
      opened.push(path);
      if (openError !== undefined) throw openError;
      return handle;
    },
  };
}

describe('HidTransport over a stand-in HIDAsync handle', () => {
  it('writes each 64-byte report as one OUTPUT report behind report id 0, in order, and delivers INPUT reports', async () => {
    const handle = new FakeHandle();
    const backend = fakeBackend(handle);
    const transport = await HidTransport.open('/dev/hidraw7', { backend });
    expect(backend.opened).toEqual(['/dev/hidraw7']);
    expect(transport.path).toBe('/dev/hidraw7');
    const two = Uint8Array.from({ length: 128 }, (_, i) => i + 1);
    await Promise.all([transport.send(two), transport.send(new Uint8Array(64).fill(0xee))]);
    expect(handle.writes.map((w) => w.length)).toEqual([65, 65, 65]);
    expect(handle.writes.map((w) => w[0])).toEqual([0, 0, 0]);
    expect([...(handle.writes[0] as Buffer).subarray(1)]).toEqual([...two.subarray(0, 64)]);
    expect([...(handle.writes[1] as Buffer).subarray(1)]).toEqual([...two.subarray(64)]);
    expect((handle.writes[2] as Buffer)[1]).toBe(0xee);
    const received: Uint8Array[] = [];
    transport.onData((bytes) => received.push(bytes));
    handle.input(new Uint8Array(64).fill(5));
    expect(received).toEqual([new Uint8Array(64).fill(5)]);
    await transport.close();
  });

  it('refuses sends that are not whole reports, and bad open arguments', async () => {
    const transport = await HidTransport.open('/dev/hidraw7', { backend: fakeBackend(new FakeHandle()) });
    await expect(transport.send(new Uint8Array(63))).rejects.toThrow(RangeError);
    await expect(transport.send(new Uint8Array(0))).rejects.toThrow(RangeError);
    await expect(transport.send('x' as unknown as Uint8Array)).rejects.toThrow(TypeError);
    await transport.close();
    await expect(HidTransport.open('')).rejects.toThrow(RangeError);
    await expect(HidTransport.open(7 as unknown as string)).rejects.toThrow(TypeError);
    await expect(HidTransport.open('/dev/hidraw7', { openTimeoutMs: 0, backend: fakeBackend(new FakeHandle()) })).rejects.toThrow(RangeError);
  });

  it('a read error (unplug) closes it with DeviceDisconnectedError; sends then reject with it', async () => {
    const handle = new FakeHandle();
    const transport = await HidTransport.open('/dev/hidraw7', { backend: fakeBackend(handle) });
    const closed = new Promise((resolve) => transport.onClose(resolve));
    handle.emit('error', new Error('could not read from HID device'));
    const reason = await closed;
    expect(reason).toBeInstanceOf(DeviceDisconnectedError);
    expect((reason as Error).message).toContain('/dev/hidraw7');
    expect(transport.isOpen).toBe(false);
    await expect(transport.send(new Uint8Array(64))).rejects.toBeInstanceOf(DeviceDisconnectedError);
    expect(handle.closed).toBe(1);
    await transport.close();
  });

  it('a failing write closes it with DeviceDisconnectedError', async () => {
    const handle = new FakeHandle();
    handle.failWrites = new Error('Cannot write to hid device');
    const transport = await HidTransport.open('/dev/hidraw7', { backend: fakeBackend(handle) });
    await expect(transport.send(new Uint8Array(64))).rejects.toBeInstanceOf(DeviceDisconnectedError);
    expect(transport.isOpen).toBe(false);
  });

  it('close() is idempotent, closes the handle once; later sends reject with TransportClosedError', async () => {
    const handle = new FakeHandle();
    const transport = await HidTransport.open('/dev/hidraw7', { backend: fakeBackend(handle) });
    const reasons: unknown[] = [];
    transport.onClose((r) => reasons.push(r));
    await Promise.all([transport.close(), transport.close()]);
    await transport.close();
    expect(handle.closed).toBe(1);
    expect(reasons).toEqual([undefined]);
    await expect(transport.send(new Uint8Array(64))).rejects.toBeInstanceOf(TransportClosedError);
  });

  it('open failures: HidOpenError naming the path; a missing shared library is HidUnavailableError; a hung open times out', async () => {
    const denied = await HidTransport.open('/dev/hidraw3', { backend: fakeBackend(new FakeHandle(), [], new Error('cannot open device with path /dev/hidraw3')) }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(HidOpenError);
    expect((denied as HidOpenError).path).toBe('/dev/hidraw3');
    expect((denied as HidOpenError).code).toBe('ERR_DEVICE');
    const noLib = await HidTransport.open('/dev/hidraw3', { backend: fakeBackend(new FakeHandle(), [], new Error('libusb-1.0.so.0: cannot open shared object file: No such file or directory')) }).catch((e: unknown) => e);
    expect(noLib).toBeInstanceOf(HidUnavailableError);
    expect((noLib as Error).message).toContain('libusb-1.0-0');
    const handle = new FakeHandle();
    let release: (h: HidHandle) => void = () => undefined;
    const hung: HidBackend = { devices: async () => [], open: () => new Promise<HidHandle>((resolve) => { release = resolve; }) };
    const timedOut = await HidTransport.open('/dev/hidraw3', { backend: hung, openTimeoutMs: 30 }).catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(HidOpenError);
    expect((timedOut as Error).message).toContain('timed out');
    release(handle); // opened after we gave up: released again
    await sleep(10);
    expect(handle.closed).toBe(1);
  });

  it('a DeviceSession runs over it end to end (HID device behind the stand-in handle)', async () => {
    const handle = new FakeHandle();
    const [deviceSide, wire] = createLinkPair(['device', 'wire']);
    const dev = hidDevice(deviceSide, () => ({ type: MessageType.INFO, payload: info }));
    handle.onWrite = (report) => void wire.send(report);
    wire.onData((bytes) => {
      for (let o = 0; o < bytes.length; o += 64) handle.input(bytes.subarray(o, o + 64));
    });
    const transport = await HidTransport.open('/dev/hidraw7', { backend: fakeBackend(handle) });
    const session = new DeviceSession(transport, { codec: hidCodec(), firstSeq: 1, timeoutMs: 500 });
    const reply = await session.exchange('HELLO', { 1: 1 });
    expect(reply.name).toBe('INFO');
    expect(dev.seen).toHaveLength(1);
    handle.emit('error', new Error('device disconnected'));
    await expect(session.exchange('HELLO', { 1: 1 })).rejects.toBeInstanceOf(DeviceDisconnectedError);
    await session.close();
  });
});

describe('listHidDevices', () => {
  const devices: RawHidDevice[] = [
    { vendorId: 0x1209, productId: 1, path: '/dev/hidraw0', serialNumber: 'A', release: 1, interface: 1, usagePage: 0xff00, usage: 1 },
    { vendorId: 0x1209, productId: 1, path: '/dev/hidraw1', serialNumber: 'B', release: 1, interface: 0, usagePage: 0x01, usage: 6 },
    { vendorId: 0x1209, productId: 2, path: '/dev/hidraw2', serialNumber: 'C', release: 1, interface: 0, usagePage: 0xff00 },
    { vendorId: 0x1209, productId: 1, release: 1, interface: 2, usagePage: 0xff00 },
  ];

  it('filters by VID, PID, usage page and serial, and leaves out devices without a path', async () => {
    const backend = fakeBackend(new FakeHandle(), devices);
    expect((await listHidDevices({ vendorId: 0x1209, productId: 1, usagePage: 0xff00 }, backend)).map((d) => d.path)).toEqual(['/dev/hidraw0']);
    expect((await listHidDevices({ usagePage: 0xff00 }, backend)).map((d) => d.path)).toEqual(['/dev/hidraw0', '/dev/hidraw2']);
    expect((await listHidDevices({ serialNumber: 'B' }, backend)).map((d) => d.path)).toEqual(['/dev/hidraw1']);
    expect(await listHidDevices({}, backend)).toHaveLength(3);
  });

  it('checks the filter and reports enumeration failures as DeviceError', async () => {
    const backend = fakeBackend(new FakeHandle(), devices);
    await expect(listHidDevices({ vendorId: 0x10000 }, backend)).rejects.toThrow(RangeError);
    await expect(listHidDevices({ productId: -1 }, backend)).rejects.toThrow(RangeError);
    await expect(listHidDevices({ serialNumber: 5 as unknown as string }, backend)).rejects.toThrow(TypeError);
    await expect(listHidDevices(null as never, backend)).rejects.toThrow(TypeError);
    const broken: HidBackend = { devices: async () => { throw new Error('udev gone'); }, open: async () => new FakeHandle() };
    const error = await listHidDevices({}, broken).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeviceError);
    expect((error as Error).message).toContain('udev gone');
  });
});

describe('HidTransport and listHidDevices on the real node-hid (this machine has no HID devices)', () => {
  it('enumerates without failing (an array) and refuses a path that does not exist with HidOpenError', async () => {
    const found = await listHidDevices({ vendorId: 0x1209, productId: 1 });
    expect(Array.isArray(found)).toBe(true);
    const error = await HidTransport.open('/dev/hidraw-meshkit-does-not-exist').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HidOpenError);
    expect((error as HidOpenError).path).toBe('/dev/hidraw-meshkit-does-not-exist');
    expect(HID_REPORT_SIZE).toBe(Limits.HID_REPORT_SIZE);
  });
});

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const emulatorMissing = ((): string | undefined => {
  for (const tool of ['make', 'gcc']) if (spawnSync(tool, ['--version']).error !== undefined) return `'${tool}' is not installed`;
  if (!existsSync('/usr/include/sodium.h')) return 'libsodium is not installed (apt-get install libsodium-dev)';
  return undefined;
})();
if (emulatorMissing !== undefined) console.log(`hid.test.ts: emulator argument tests skipped: ${emulatorMissing}`);

describe.skipIf(emulatorMissing !== undefined)('mk-emulator --hidg arguments (the HID path itself runs in test/usb)', () => {
  it('needs exactly one of --tty / --hidg, refuses --baud with --hidg, and fails (1) on a missing hidg node', () => {
    const build = spawnSync('make', ['-s', '-C', 'firmware-bindings', 'emulator'], { cwd: repoRoot, encoding: 'utf8' });
    expect(build.status, `${build.stdout}\n${build.stderr}`).toBe(0);
    const emulator = join(repoRoot, 'firmware-bindings', 'build', 'mk-emulator');
    const dir = mkdtempSync(join(tmpdir(), 'meshkit-hidg-'));
    try {
      const state = join(dir, 'state.bin');
      const run = (args: string[]) => spawnSync(emulator, args, { encoding: 'utf8', timeout: 10_000 });
      const both = run(['--tty', join(dir, 'tty'), '--hidg', join(dir, 'hidg'), '--state', state]);
      expect(both.status).toBe(2);
      expect(both.stderr).toContain('--hidg PATH');
      expect(run(['--state', state]).status).toBe(2);
      const baud = run(['--hidg', join(dir, 'hidg'), '--state', state, '--baud', '115200']);
      expect(baud.status).toBe(2);
      expect(baud.stderr).toContain('--baud applies to --tty only');
      const missing = run(['--hidg', join(dir, 'no-such-hidg'), '--state', state]);
      expect(missing.status).toBe(1);
      expect(missing.stderr).toContain('cannot open');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
