import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { concatBytes, fromHex, utf8 } from '../../src/core/bytes.js';
import { DeviceError } from '../../src/core/errors.js';
import {
  cobsDecode,
  cobsEncode,
  crc32c,
  encodeFrames,
  encodeReports,
  FrameDecoder,
  HidReassembler,
  statusName,
  type DecodeEvent,
  type FramedMessage,
} from '../../src/device/framing.js';
import { DeviceStatus } from '../../src/device/protocol.generated.js';
import { readVectors } from './hex-vectors.js';

const crcVectors = readVectors('crc32c.hex');
const cobsVectors = readVectors('cobs.hex');
const frameVectors = readVectors('frames.hex');
const hidVectors = readVectors('hid.hex');

function errorsOf<M>(events: DecodeEvent<M>[]): string[] {
  return events.flatMap((e) => (e.kind === 'error' ? [statusName(e.error.status) ?? '?'] : []));
}
function messagesOf<M>(events: DecodeEvent<M>[]): M[] {
  return events.flatMap((e) => (e.kind === 'message' ? [e.message] : []));
}
function splitReports(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += 64) out.push(bytes.slice(i, i + 64));
  return out;
}

describe('CRC-32C', () => {
  it('check value 0xE3069283 and empty input', () => {
    expect(crc32c(utf8('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });
  it.each(crcVectors.map((v) => [v.id, v] as const))('%s', (_id, v) => {
    const expected = new DataView((v.expected as Uint8Array).buffer).getUint32(0, false);
    expect(crc32c(v.input)).toBe(expected);
  });
  it('rejects a non-Uint8Array', () => {
    expect(() => crc32c('123' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('COBS', () => {
  it.each(cobsVectors.map((v) => [v.id, v] as const))('%s', (_id, v) => {
    if (v.error !== undefined) {
      let caught: unknown;
      try {
        cobsDecode(v.input);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(DeviceError);
      expect(statusName((caught as DeviceError).status)).toBe(v.error);
    } else {
      expect(cobsEncode(v.input)).toEqual(v.expected);
      expect(cobsDecode(v.expected as Uint8Array)).toEqual(v.input);
    }
  });
  it('decodes the form with a trailing 0x01 after a final full block', () => {
    const data = new Uint8Array(254).map((_, i) => i + 1);
    expect(cobsDecode(concatBytes(Uint8Array.of(0xff), data, Uint8Array.of(0x01)))).toEqual(data);
  });
  it('rejects empty input', () => {
    expect(() => cobsDecode(new Uint8Array(0))).toThrow(DeviceError);
  });
  it('round-trips random data and never emits 0x00', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), (data) => {
        const e = cobsEncode(data);
        expect(e.includes(0)).toBe(false);
        expect(e.length).toBeLessThanOrEqual(data.length + Math.ceil(data.length / 254) + 1);
        expect(cobsDecode(e)).toEqual(data);
      }),
    );
  });
});

describe('serial frames: shared vectors', () => {
  it.each(frameVectors.map((v) => [v.id, v] as const))('%s', (_id, v) => {
    const d = new FrameDecoder();
    if (v.error !== undefined) {
      const events = d.push(v.input);
      expect(messagesOf(events)).toEqual([]);
      expect(errorsOf(events)[0]).toBe(v.error);
      for (const e of events) if (e.kind === 'error') expect(e.error.code).toBe('ERR_DEVICE');
      return;
    }
    const type = v.input[0] as number;
    const seq = v.input[1] as number;
    const message = v.input.slice(2);
    expect(concatBytes(...encodeFrames(type, seq, message))).toEqual(v.expected);
    const events = d.push(v.expected as Uint8Array);
    expect(errorsOf(events)).toEqual([]);
    expect(messagesOf(events)).toEqual([{ type, seq, payload: message }]);
    expect(d.inMessage).toBe(false);
  });
});

describe('serial frames: behaviour', () => {
  it('frame sizes are bounded and fragments are full', () => {
    const frames = encodeFrames(6, 1, new Uint8Array(4096).fill(0x11));
    expect(frames).toHaveLength(8);
    for (const f of frames) expect(f.length).toBeLessThanOrEqual(525 + 1);
    expect(encodeFrames(1, 0, new Uint8Array(0))).toHaveLength(1);
  });

  it('random messages through random chunking come back intact, in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: fc.integer({ min: 0, max: 127 }), seq: fc.integer({ min: 0, max: 255 }), payload: fc.uint8Array({ maxLength: 4096 }) }), { minLength: 1, maxLength: 3 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }),
        (messages, chunkSizes) => {
          const wire = concatBytes(...messages.flatMap((m) => encodeFrames(m.type, m.seq, m.payload)));
          const d = new FrameDecoder();
          const events: DecodeEvent<FramedMessage>[] = [];
          for (let i = 0, k = 0; i < wire.length; k++) {
            const n = chunkSizes[k % chunkSizes.length] as number;
            events.push(...d.push(wire.subarray(i, i + n)));
            i += n;
          }
          expect(errorsOf(events)).toEqual([]);
          expect(messagesOf(events)).toEqual(messages);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('flipping any byte of a frame gives a typed error or nothing, never a wrong message; the next frame still decodes', () => {
    const message = utf8('corruption sweep: a message of a few dozen bytes, with a zero \u0000 inside');
    const frame = encodeFrames(9, 42, message)[0] as Uint8Array;
    const next = encodeFrames(10, 43, Uint8Array.of(0xa1, 0x01, 0x04))[0] as Uint8Array;
    for (let i = 0; i < frame.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = frame.slice();
        bad[i] = (bad[i] as number) ^ mask;
        const d = new FrameDecoder();
        const events = d.push(concatBytes(bad, Uint8Array.of(0), next));
        for (const e of events) {
          if (e.kind === 'error') {
            expect(e.error).toBeInstanceOf(DeviceError);
            expect(statusName(e.error.status)).toBeDefined();
          }
        }
        const got = messagesOf(events);
        expect(got.filter((m) => m.type === 9)).toEqual([]);
        expect(got.at(-1)).toEqual({ type: 10, seq: 43, payload: Uint8Array.of(0xa1, 0x01, 0x04) });
      }
    }
  });

  it('every truncation of a frame is an error, and the decoder recovers', () => {
    const frame = encodeFrames(2, 5, utf8('truncate me')).at(0) as Uint8Array;
    const good = encodeFrames(2, 6, utf8('ok')).at(0) as Uint8Array;
    for (let n = 1; n < frame.length - 1; n++) {
      const d = new FrameDecoder();
      const events = d.push(concatBytes(frame.subarray(0, n), Uint8Array.of(0), good));
      expect(errorsOf(events)).toHaveLength(1);
      expect(messagesOf(events)).toEqual([{ type: 2, seq: 6, payload: utf8('ok') }]);
    }
  });

  it('an oversized run is discarded without buffering and the stream resyncs', () => {
    const d = new FrameDecoder();
    const events = d.push(new Uint8Array(100_000).fill(0x55));
    expect(errorsOf(events)).toEqual(['TOO_LARGE']);
    const after = d.push(concatBytes(Uint8Array.of(0), ...encodeFrames(1, 1, Uint8Array.of(0xa0))));
    expect(messagesOf(after)).toEqual([{ type: 1, seq: 1, payload: Uint8Array.of(0xa0) }]);
  });

  it('empty runs between delimiters are ignored; a retry restarts a message', () => {
    const d = new FrameDecoder();
    const frames = encodeFrames(6, 1, new Uint8Array(1000).fill(7));
    const events = d.push(concatBytes(Uint8Array.of(0, 0), frames[0] as Uint8Array, ...frames));
    expect(errorsOf(events)).toEqual(['FRAGMENT_ORDER']);
    expect(messagesOf(events)).toEqual([{ type: 6, seq: 1, payload: new Uint8Array(1000).fill(7) }]);
    d.push(frames[0] as Uint8Array);
    expect(d.inMessage).toBe(true);
    d.reset();
    expect(d.inMessage).toBe(false);
  });

  it('argument checks', () => {
    expect(() => encodeFrames(128, 0, new Uint8Array(0))).toThrow(RangeError);
    expect(() => encodeFrames(1, 256, new Uint8Array(0))).toThrow(RangeError);
    expect(() => encodeFrames(1, 0, new Uint8Array(4097))).toThrow(RangeError);
    expect(() => encodeFrames(1, 0, [1] as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => new FrameDecoder().push('x' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('HID reports', () => {
  it.each(hidVectors.map((v) => [v.id, v] as const))('%s', (_id, v) => {
    if (v.error !== undefined) {
      const cid = new DataView(v.input.buffer).getUint32(0, false);
      const r = new HidReassembler(cid);
      const events = splitReports(v.input).flatMap((rep) => r.push(rep));
      expect(messagesOf(events)).toEqual([]);
      expect(errorsOf(events)[0]).toBe(v.error);
      return;
    }
    const cid = new DataView(v.input.buffer).getUint32(0, false);
    const type = v.input[4] as number;
    const message = v.input.slice(5);
    const reports = encodeReports(cid, type, message);
    expect(concatBytes(...reports)).toEqual(v.expected);
    const r = new HidReassembler(cid);
    const events = splitReports(v.expected as Uint8Array).flatMap((rep) => r.push(rep));
    expect(errorsOf(events)).toEqual([]);
    expect(messagesOf(events)).toEqual([{ cid, type, payload: message }]);
  });

  it('random messages round-trip', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 127 }), fc.uint8Array({ maxLength: 4096 }), (cid, type, payload) => {
        const reports = encodeReports(cid, type, payload);
        const r = new HidReassembler(cid);
        const events = reports.flatMap((rep) => r.push(rep));
        for (const rep of reports) expect(rep.length).toBe(64);
        expect(messagesOf(events)).toEqual([{ cid, type, payload }]);
      }),
      { numRuns: 60 },
    );
  });

  it('a report on another channel, even an init packet, is BAD_CHANNEL', () => {
    const r = new HidReassembler(1);
    const events = r.push(encodeReports(2, 1, Uint8Array.of(1))[0] as Uint8Array);
    expect(errorsOf(events)).toEqual(['BAD_CHANNEL']);
    expect((events[0] as { error: DeviceError }).error.status).toBe(DeviceStatus.BAD_CHANNEL);
  });

  it('an init packet mid-message reports FRAGMENT_ORDER and starts the new message', () => {
    const r = new HidReassembler(7);
    r.push(encodeReports(7, 6, new Uint8Array(100))[0] as Uint8Array);
    const events = r.push(encodeReports(7, 1, fromHex('a10101'))[0] as Uint8Array);
    expect(errorsOf(events)).toEqual(['FRAGMENT_ORDER']);
    expect(messagesOf(events)).toEqual([{ cid: 7, type: 1, payload: fromHex('a10101') }]);
  });

  it('argument checks', () => {
    expect(() => encodeReports(-1, 1, new Uint8Array(0))).toThrow(RangeError);
    expect(() => encodeReports(2 ** 32, 1, new Uint8Array(0))).toThrow(RangeError);
    expect(() => encodeReports(1, 1, new Uint8Array(4097))).toThrow(RangeError);
    expect(() => new HidReassembler(1.5)).toThrow(TypeError);
  });
});
