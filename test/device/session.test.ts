import { describe, expect, it } from 'vitest';
import { DeviceError } from '../../src/core/errors.js';
import { cobsDecode, cobsEncode, encodeFrames } from '../../src/device/framing.js';
import { DeviceStatus, MessageType } from '../../src/device/protocol.generated.js';
import {
  DeviceBusyError, DeviceProtocolError, DeviceReplyError, DeviceSession, DeviceTimeoutError,
} from '../../src/device/session.js';
import { createLinkPair } from '../../src/device/transport/link.js';
import { DeviceDisconnectedError, TransportClosedError } from '../../src/device/transport/types.js';
import { concat, respond } from './responder.js';
import type { HandlerResult, SeenRequest } from './responder.js';

const info = (): HandlerResult => ({ type: MessageType.INFO, payload: { 1: 'emulator', 2: 'SN1', 3: '1.0', 4: 0x31, 5: 0, 6: new Uint8Array(32) } });
/** Answers each request with its protocol reply (state 1), echoing field 1. */
const echo = (r: SeenRequest): HandlerResult => {
  const replyOf: Record<number, number> = { 1: MessageType.INFO, 3: MessageType.BENCH_AUTH_OK, 5: MessageType.PUBKEYS, 11: MessageType.RECEIPT };
  if (r.type === MessageType.HELLO) return info();
  const field = r.payload instanceof Map ? r.payload.get(1) : undefined;
  return { type: replyOf[r.type] ?? MessageType.ACK, payload: { 1: field as Uint8Array } };
};

function setup(handler: (r: SeenRequest, i: number) => HandlerResult, options: ConstructorParameters<typeof DeviceSession>[1] = {}) {
  const [host, device] = createLinkPair();
  const responder = respond(device, handler);
  const frameErrors: DeviceError[] = [];
  const session = new DeviceSession(host, { firstSeq: 7, timeoutMs: 200, retries: 2, onFrameError: (e) => frameErrors.push(e), ...options });
  return { host, device, responder, session, frameErrors };
}

describe('DeviceSession over the in-process link', () => {
  it('HELLO → INFO: decodes the reply and matches it by seq', async () => {
    const { session, responder } = setup(echo);
    const reply = await session.exchange('HELLO', { 1: 1 });
    expect(reply.type).toBe(MessageType.INFO);
    expect(reply.name).toBe('INFO');
    expect(reply.seq).toBe(7);
    expect(reply.payload).toBeInstanceOf(Map);
    expect((reply.payload as Map<number, unknown>).get(1)).toBe('emulator');
    expect(responder.seen).toEqual([{ type: MessageType.HELLO, seq: 7, payload: new Map([[1, 1]]) }]);
    expect(session.nextSeq).toBe(8);
    await session.close();
  });

  it('accepts a type code and carries fragmented messages both ways (3000-byte field)', async () => {
    const { session, responder } = setup(echo);
    const big = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);
    const reply = await session.exchange(MessageType.COMMIT, new Map([[1, big]]));
    expect(reply.name).toBe('RECEIPT');
    expect((reply.payload as Map<number, unknown>).get(1)).toEqual(big);
    expect(responder.seen).toHaveLength(1);
    await session.close();
  });

  it('an ERROR reply becomes DeviceReplyError with status = its code and the detail', async () => {
    const { session } = setup(() => ({ type: MessageType.ERROR, payload: { 1: DeviceStatus.NOT_AUTHENTICATED, 2: 'bench first' } }));
    const err = await session.exchange('KEYGEN', { 1: 7 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceReplyError);
    expect(err).toBeInstanceOf(DeviceError);
    const e = err as DeviceReplyError;
    expect(e.code).toBe('ERR_DEVICE');
    expect(e.status).toBe(66);
    expect(e.request).toBe('KEYGEN');
    expect(e.detail).toBe('bench first');
    expect(e.message).toBe('device refused KEYGEN: NOT_AUTHENTICATED (bench first)');
    // an ERROR without detail
    const { session: s2 } = setup(() => ({ type: MessageType.ERROR, payload: { 1: DeviceStatus.BAD_STATE } }));
    await expect(s2.exchange('COMMIT', { 1: new Uint8Array(32) })).rejects.toMatchObject({ status: 64, detail: undefined, message: 'device refused COMMIT: BAD_STATE' });
  });

  it('no reply: DeviceTimeoutError naming the message after 1 + retries attempts, all with the same seq', async () => {
    const { session, responder } = setup(() => undefined);
    const started = Date.now();
    const err = await session.exchange('KEYGEN', { 1: 7 }, { timeoutMs: 50, retries: 3 }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(err).toBeInstanceOf(DeviceTimeoutError);
    expect(err).toMatchObject({ code: 'ERR_DEVICE', request: 'KEYGEN', attempts: 4, timeoutMs: 50, message: 'no reply to KEYGEN (seq 7) after 4 attempts of 50 ms' });
    expect(responder.seen.map((r) => [r.type, r.seq])).toEqual([[5, 7], [5, 7], [5, 7], [5, 7]]);
    // the session is usable again, with the next seq
    expect(session.busy).toBe(false);
    expect(session.nextSeq).toBe(8);
  });

  it('retries: a responder that drops the first request gets the same seq again and the exchange succeeds', async () => {
    const { session, responder } = setup((r, i) => (i === 0 ? undefined : echo(r)));
    const reply = await session.exchange('BENCH_AUTH', { 1: new Uint8Array(32), 2: new Uint8Array(32), 3: new Uint8Array(64) }, { timeoutMs: 80 });
    expect(reply.name).toBe('BENCH_AUTH_OK');
    expect(responder.seen).toHaveLength(2);
    expect(responder.seen[0]).toEqual(responder.seen[1]);
    expect(responder.seen[1]?.seq).toBe(7);
    await session.exchange('HELLO', { 1: 1 });
    expect(responder.seen[2]?.seq).toBe(8);
  });

  it('retries: 0 means one attempt only', async () => {
    const { session, responder } = setup((r, i) => (i === 0 ? undefined : echo(r)));
    await expect(session.exchange('HELLO', { 1: 1 }, { timeoutMs: 50, retries: 0 })).rejects.toThrow('after 1 attempt of 50 ms');
    expect(responder.seen).toHaveLength(1);
  });

  it('one exchange in flight: a second call fails fast with DeviceBusyError and sends nothing', async () => {
    const { session, responder } = setup((r) => ({ ...(echo(r) as { type: number; payload: never }), delayMs: 60 }));
    const first = session.exchange('HELLO', { 1: 1 });
    expect(session.busy).toBe(true);
    const err = await session.exchange('KEYGEN', { 1: 7 }).catch((e: unknown) => e);
    expect(session.busy).toBe(true); // failed fast: the first exchange is still waiting for its reply
    expect(err).toBeInstanceOf(DeviceBusyError);
    expect((err as Error).message).toBe('cannot send KEYGEN: HELLO is still in flight (one exchange at a time)');
    expect((await first).name).toBe('INFO');
    expect(responder.seen.map((r) => r.type)).toEqual([MessageType.HELLO]);
    expect(session.busy).toBe(false);
    expect((await session.exchange('KEYGEN', { 1: 7 })).name).toBe('PUBKEYS');
  });

  it('a corrupted reply frame is dropped (reported BAD_CRC), then the retry succeeds', async () => {
    const { session, responder, frameErrors } = setup((r, i) => {
      if (i > 0) return echo(r);
      const wire = concat(encodeFrames(MessageType.INFO, r.seq, new Uint8Array([0xa1, 0x01, 0x61, 0x78])));
      const raw = cobsDecode(wire.subarray(0, wire.length - 1));
      raw[9] = 0x79; // corrupt a payload byte ('x' → 'y'): the CRC no longer matches
      return { wire: concat([cobsEncode(raw), Uint8Array.of(0)]) };
    }, { timeoutMs: 80 });
    const reply = await session.exchange('HELLO', { 1: 1 });
    expect(reply.name).toBe('INFO');
    expect(responder.seen).toHaveLength(2);
    expect(responder.seen[1]?.seq).toBe(responder.seen[0]?.seq);
    expect(frameErrors.map((e) => e.status)).toEqual([DeviceStatus.BAD_CRC]);
  });

  it('ignores stray frames: replies to another seq and garbage between frames', async () => {
    const { session, frameErrors } = setup((r) => {
      const stray = concat(encodeFrames(MessageType.INFO, (r.seq + 1) & 0xff, new Uint8Array([0xa0])));
      const good = concat(encodeFrames(MessageType.INFO, r.seq, new Uint8Array([0xa1, 0x01, 0x01])));
      return { wire: concat([stray, Uint8Array.of(0x05, 0x01, 0x02, 0x00), good]) };
    });
    const reply = await session.exchange('HELLO', { 1: 1 });
    expect(reply.seq).toBe(7);
    expect(reply.payload).toEqual(new Map([[1, 1]]));
    expect(frameErrors).toHaveLength(1);
  });

  it('a reply of the wrong type for the seq is a DeviceProtocolError; invalid CBOR too', async () => {
    const { session } = setup(() => ({ type: MessageType.ACK, payload: { 1: 0 } }));
    await expect(session.exchange('HELLO', { 1: 1 })).rejects.toSatisfy((e) => e instanceof DeviceProtocolError && /reply to HELLO \(seq 7\) is ACK, expected INFO/.test(e.message));
    const { session: s2 } = setup((r) => ({ wire: concat(encodeFrames(MessageType.INFO, r.seq, Uint8Array.of(0xa1, 0x01))) }));
    await expect(s2.exchange('HELLO', { 1: 1 })).rejects.toSatisfy((e) => e instanceof DeviceProtocolError && e.status === DeviceStatus.CBOR_INVALID);
  });

  it('close() during an exchange waits for it, then closes the transport; later exchanges fail', async () => {
    const { session, host, device } = setup((r) => ({ ...(echo(r) as { type: number; payload: never }), delayMs: 80 }));
    const order: string[] = [];
    const running = session.exchange('HELLO', { 1: 1 }).then((r) => order.push(`reply ${r.name ?? ''}`));
    await new Promise((r) => setTimeout(r, 10));
    const closing = session.close().then(() => order.push('closed'));
    expect(session.close()).toBe(session.close()); // idempotent
    await Promise.all([running, closing]);
    expect(order).toEqual(['reply INFO', 'closed']);
    expect(host.isOpen).toBe(false);
    expect(device.isOpen).toBe(false);
    await expect(session.exchange('HELLO', { 1: 1 })).rejects.toBeInstanceOf(TransportClosedError);
  });

  it('the device going away mid-exchange rejects at once with DeviceDisconnectedError (no wait for the timeout)', async () => {
    const { session, host } = setup(() => undefined, { timeoutMs: 10_000 });
    const started = Date.now();
    const pending = session.exchange('KEYGEN', { 1: 7 });
    setTimeout(() => host.disconnect(), 20);
    const err = await pending.catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(err).toBeInstanceOf(DeviceDisconnectedError);
    expect(err).toBeInstanceOf(DeviceError);
    await expect(session.exchange('HELLO', { 1: 1 })).rejects.toBeInstanceOf(DeviceDisconnectedError);
    await session.close();
  });

  it('seq counts up and wraps 255 → 0', async () => {
    const { session, responder } = setup(echo, { firstSeq: 254 });
    for (let i = 0; i < 3; i++) await session.exchange('HELLO', { 1: 1 });
    expect(responder.seen.map((r) => r.seq)).toEqual([254, 255, 0]);
  });

  it('argument checks: unknown type name, type out of range, a message over 4096 bytes, bad options', async () => {
    const { session, responder } = setup(echo);
    await expect(session.exchange('NOPE' as 'HELLO', {})).rejects.toThrow(RangeError);
    await expect(session.exchange(0x80, {})).rejects.toThrow(RangeError);
    await expect(session.exchange('COMMIT', { 1: new Uint8Array(4100) })).rejects.toThrow(/"message" expected at most 4096 bytes/);
    await expect(session.exchange('HELLO', { 1: 1 }, { timeoutMs: 0 })).rejects.toThrow(RangeError);
    await expect(session.exchange('HELLO', { 1: 1.5 })).rejects.toThrow(RangeError);
    expect(() => new DeviceSession({} as never)).toThrow(TypeError);
    expect(() => new DeviceSession(createLinkPair()[0], { firstSeq: 256 })).toThrow(RangeError);
    expect(responder.seen).toHaveLength(0);
    expect(session.nextSeq).toBe(7);
    expect((await session.exchange('HELLO', { 1: 1 })).seq).toBe(7);
  });
});

describe('in-process link', () => {
  it('delivers copies both ways, closes the peer with DeviceDisconnectedError, rejects sends after close', async () => {
    const [a, b] = createLinkPair(['a', 'b']);
    const got: number[][] = [];
    b.onData((bytes) => got.push([...bytes]));
    const buf = Uint8Array.of(1, 2, 3);
    await a.send(buf);
    buf[0] = 9;
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual([[1, 2, 3]]);
    const reasons: (DeviceError | undefined)[] = [];
    a.onClose((r) => reasons.push(r));
    b.onClose((r) => reasons.push(r));
    await a.close();
    await a.close();
    expect(reasons[0]).toBeUndefined();
    expect(reasons[1]).toBeInstanceOf(DeviceDisconnectedError);
    expect(reasons).toHaveLength(2);
    await expect(a.send(buf)).rejects.toBeInstanceOf(TransportClosedError);
    await expect(b.send(buf)).rejects.toBeInstanceOf(DeviceDisconnectedError);
    // a late close listener hears the same reason
    const late = await new Promise((resolve) => b.onClose(resolve));
    expect(late).toBe(reasons[1]);
    await expect(a.send('x' as never)).rejects.toThrow(TypeError);
  });
});
