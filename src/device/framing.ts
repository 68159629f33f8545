/**
 * Device protocol framing, pure (bytes in, bytes out; docs/protocol.md "Serial frames" and "HID reports").
 *
 * Serial: a message is split into at most 8 frames `version | type | seq | flags | length | payload | CRC-32C`,
 * each COBS-encoded and ended by 0x00 ({@link encodeFrames}); {@link FrameDecoder} turns a byte stream back into
 * messages, reporting bad frames as typed {@link DeviceError}s and resynchronising at the next 0x00, with bounded
 * buffers. HID: 64-byte CTAPHID-style init/continuation reports ({@link encodeReports}, {@link HidReassembler}).
 * Also the building blocks: {@link crc32c}, {@link cobsEncode}, {@link cobsDecode}.
 *
 * Every error carries `status`, the protocol status code shared with the C firmware (protocol.generated.ts).
 */
import { abytes, aint } from '../core/bytes.js';
import { DeviceError, ErrorCode } from '../core/errors.js';
import { DeviceStatus, DeviceStatusNames, Limits } from './protocol.generated.js';

const VERSION = Limits.PROTOCOL_VERSION;
const HEADER = 6;
const CRC_SIZE = 4;
const HID_INIT_HEADER = 7;
const HID_CONT_HEADER = 5;

/** A reassembled serial message. */
export interface FramedMessage {
  /** Message type code (protocol.generated.ts MessageType). */
  readonly type: number;
  /** Sequence number 0–255, echoed by the reply. */
  readonly seq: number;
  /** The message bytes (a CBOR map). */
  readonly payload: Uint8Array;
}

/** A reassembled HID message. */
export interface HidMessage {
  /** Channel id. */
  readonly cid: number;
  /** Message type code (CMD without the high bit). */
  readonly type: number;
  /** The message bytes. */
  readonly payload: Uint8Array;
}

/** What a decoder reports, in stream order: a complete message or a typed error for a dropped frame/report. */
export type DecodeEvent<M> = { readonly kind: 'message'; readonly message: M } | { readonly kind: 'error'; readonly error: DeviceError };

/** A DeviceError (code ERR_DEVICE) whose `status` is the named protocol status. */
export function deviceError(status: keyof typeof DeviceStatus, detail: string): DeviceError {
  return new DeviceError(ErrorCode.DEVICE, `${status}: ${detail}`, DeviceStatus[status]);
}

/** The status name of a DeviceError's `status`, or undefined when it is not a protocol status. */
export function statusName(status: number | undefined): string | undefined {
  return status === undefined ? undefined : (DeviceStatusNames as Readonly<Record<number, string>>)[status];
}

// ---------------------------------------------------------------- CRC-32C

const CRC_TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * CRC-32C (Castagnoli; reflected, polynomial 0x82F63B78, init and final xor 0xFFFFFFFF), table-driven.
 * Check value: crc32c("123456789") = 0xE3069283.
 * @param data the bytes
 * @returns the CRC as an unsigned 32-bit number
 * @throws TypeError when data is not a Uint8Array
 */
export function crc32c(data: Uint8Array): number {
  abytes(data, 'data');
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    crc = (crc >>> 8) ^ (CRC_TABLE[(crc ^ (data[i] as number)) & 0xff] as number);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------- COBS

/**
 * COBS-encodes `data` (Cheshire & Baker; like the Wikipedia reference encoder, no extra 0x01 block after a final
 * full 254-byte block). The result contains no 0x00 and excludes the frame delimiter.
 * @param data the bytes to encode
 * @returns the encoded bytes, at most data.length + ceil(data.length / 254) + 1 long
 * @throws TypeError when data is not a Uint8Array
 */
export function cobsEncode(data: Uint8Array): Uint8Array {
  abytes(data, 'data');
  const out = new Uint8Array(data.length + Math.ceil(data.length / 254) + 1);
  let codeAt = 0;
  let o = 1;
  let code = 1;
  for (let i = 0; i < data.length; i++) {
    const b = data[i] as number;
    if (b !== 0) {
      out[o++] = b;
      code++;
    }
    if (b === 0 || code === 0xff) {
      out[codeAt] = code;
      code = 1;
      codeAt = o;
      if (b === 0 || i < data.length - 1) o++;
    }
  }
  if (codeAt < o) out[codeAt] = code;
  return out.slice(0, o);
}

/** COBS decode; undefined when malformed (a 0x00 inside, a code byte pointing past the end, empty input). */
function cobsDecodeOrUndefined(encoded: Uint8Array): Uint8Array | undefined {
  if (encoded.length === 0) return undefined;
  const out = new Uint8Array(encoded.length);
  let o = 0;
  let i = 0;
  while (i < encoded.length) {
    const code = encoded[i] as number;
    if (code === 0 || i + code > encoded.length) return undefined;
    for (let k = 1; k < code; k++) {
      const b = encoded[i + k] as number;
      if (b === 0) return undefined;
      out[o++] = b;
    }
    i += code;
    if (code !== 0xff && i < encoded.length) out[o++] = 0;
  }
  return out.slice(0, o);
}

/**
 * Decodes one COBS-encoded block (without the 0x00 delimiter). Accepts both forms of a final full block.
 * @param encoded the encoded bytes
 * @returns the decoded bytes
 * @throws TypeError when encoded is not a Uint8Array
 * @throws DeviceError (status BAD_LENGTH) when the encoding is malformed or empty
 */
export function cobsDecode(encoded: Uint8Array): Uint8Array {
  abytes(encoded, 'encoded');
  const out = cobsDecodeOrUndefined(encoded);
  if (out === undefined) throw deviceError('BAD_LENGTH', 'malformed COBS encoding');
  return out;
}

// ---------------------------------------------------------------- serial frames

function checkHeaderArgs(type: number, message: Uint8Array): void {
  aint(type, 'type', 0, 0x7f);
  abytes(message, 'message');
  if (message.length > Limits.MAX_MESSAGE) {
    throw new RangeError(`"message" expected at most ${Limits.MAX_MESSAGE} bytes, got length=${message.length}`);
  }
}

/**
 * Splits a message into serial frames: full 512-byte fragments then the rest (one empty frame for an empty
 * message), each `version | type | seq | flags | length | payload | CRC-32C`, COBS-encoded and followed by 0x00.
 * @param type message type code, 0–127
 * @param seq sequence number, 0–255
 * @param message the message bytes, at most 4096
 * @returns the wire bytes of each frame, in order
 * @throws TypeError / RangeError for a wrong type, seq or message
 */
export function encodeFrames(type: number, seq: number, message: Uint8Array): Uint8Array[] {
  checkHeaderArgs(type, message);
  aint(seq, 'seq', 0, 0xff);
  const count = Math.max(1, Math.ceil(message.length / Limits.MAX_FRAME_PAYLOAD));
  const frames: Uint8Array[] = [];
  for (let index = 0; index < count; index++) {
    const chunk = message.subarray(index * Limits.MAX_FRAME_PAYLOAD, (index + 1) * Limits.MAX_FRAME_PAYLOAD);
    const raw = new Uint8Array(HEADER + chunk.length + CRC_SIZE);
    raw[0] = VERSION;
    raw[1] = type;
    raw[2] = seq;
    raw[3] = (index << 1) | (index < count - 1 ? 1 : 0);
    raw[4] = chunk.length >>> 8;
    raw[5] = chunk.length & 0xff;
    raw.set(chunk, HEADER);
    const crc = crc32c(raw.subarray(0, HEADER + chunk.length));
    new DataView(raw.buffer).setUint32(HEADER + chunk.length, crc, false);
    const encoded = cobsEncode(raw);
    const wire = new Uint8Array(encoded.length + 1);
    wire.set(encoded);
    frames.push(wire);
  }
  return frames;
}

interface Pending {
  type: number;
  seq: number;
  next: number;
  parts: Uint8Array[];
  total: number;
}

/**
 * Streaming serial decoder: feed it bytes as they arrive; it returns complete messages and typed errors in order.
 * Buffers are bounded (one encoded frame of at most MAX_ENCODED_FRAME bytes, one message of at most MAX_MESSAGE);
 * a bad frame is dropped and decoding resumes after the next 0x00. Checks, in order: encoded size (TOO_LARGE),
 * COBS (BAD_LENGTH), decoded size < 10 (BAD_LENGTH), CRC (BAD_CRC), version (BAD_VERSION), length field (TOO_LARGE
 * above 512, BAD_LENGTH when it disagrees with the frame), fragment order (FRAGMENT_ORDER), fragment count (TOO_LARGE).
 */
export class FrameDecoder {
  readonly #frame = new Uint8Array(Limits.MAX_ENCODED_FRAME);
  #used = 0;
  #discarding = false;
  #pending: Pending | undefined;

  /**
   * Feeds bytes from the link.
   * @param bytes any number of bytes, possibly several or partial frames
   * @returns the messages completed and the frames rejected by these bytes, in stream order
   * @throws TypeError when bytes is not a Uint8Array
   */
  push(bytes: Uint8Array): DecodeEvent<FramedMessage>[] {
    abytes(bytes, 'bytes');
    const events: DecodeEvent<FramedMessage>[] = [];
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i] as number;
      if (b === 0) {
        if (this.#discarding) this.#discarding = false;
        else if (this.#used > 0) this.#frameEnd(this.#frame.subarray(0, this.#used), events);
        this.#used = 0;
      } else if (!this.#discarding) {
        if (this.#used === this.#frame.length) {
          this.#used = 0;
          this.#discarding = true;
          this.#dropPending();
          events.push({ kind: 'error', error: deviceError('TOO_LARGE', `encoded frame longer than ${Limits.MAX_ENCODED_FRAME} bytes`) });
        } else {
          this.#frame[this.#used++] = b;
        }
      }
    }
    return events;
  }

  /** True while a fragmented message is partly received. */
  get inMessage(): boolean {
    return this.#pending !== undefined;
  }

  /** Forgets any partial frame and message (e.g. after a reconnect). */
  reset(): void {
    this.#used = 0;
    this.#discarding = false;
    this.#dropPending();
  }

  #dropPending(): void {
    this.#pending = undefined;
  }

  #frameEnd(encoded: Uint8Array, events: DecodeEvent<FramedMessage>[]): void {
    const fail = (status: keyof typeof DeviceStatus, detail: string): void => {
      events.push({ kind: 'error', error: deviceError(status, detail) });
    };
    const raw = cobsDecodeOrUndefined(encoded);
    if (raw === undefined) return fail('BAD_LENGTH', 'malformed COBS encoding');
    if (raw.length < HEADER + CRC_SIZE) return fail('BAD_LENGTH', `frame of ${raw.length} bytes is shorter than ${HEADER + CRC_SIZE}`);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const crc = view.getUint32(raw.length - CRC_SIZE, false);
    if (crc32c(raw.subarray(0, raw.length - CRC_SIZE)) !== crc) return fail('BAD_CRC', 'frame CRC-32C mismatch');
    if (raw[0] !== VERSION) return fail('BAD_VERSION', `frame version ${raw[0] as number}, expected ${VERSION}`);
    const length = view.getUint16(4, false);
    if (length > Limits.MAX_FRAME_PAYLOAD) return fail('TOO_LARGE', `frame payload length ${length} > ${Limits.MAX_FRAME_PAYLOAD}`);
    if (HEADER + length + CRC_SIZE !== raw.length) {
      return fail('BAD_LENGTH', `frame length field ${length} disagrees with frame size ${raw.length}`);
    }
    const type = raw[1] as number;
    const seq = raw[2] as number;
    const more = ((raw[3] as number) & 1) === 1;
    const index = (raw[3] as number) >>> 1;
    const payload = raw.slice(HEADER, HEADER + length);
    let pending = this.#pending;
    if (pending !== undefined) {
      if (index === 0) {
        this.#dropPending();
        fail('FRAGMENT_ORDER', 'new message started before the previous one was complete');
        pending = undefined;
      } else if (index !== pending.next || type !== pending.type || seq !== pending.seq) {
        this.#dropPending();
        return fail('FRAGMENT_ORDER', `fragment ${index} (type ${type}, seq ${seq}) does not continue fragment ${pending.next - 1} (type ${pending.type}, seq ${pending.seq})`);
      }
    }
    if (pending === undefined) {
      if (index !== 0) return fail('FRAGMENT_ORDER', `fragment ${index} without fragment 0`);
      pending = { type, seq, next: 0, parts: [], total: 0 };
      this.#pending = pending;
    }
    pending.parts.push(payload);
    pending.total += payload.length;
    pending.next = index + 1;
    if (pending.total > Limits.MAX_MESSAGE) {
      this.#dropPending();
      return fail('TOO_LARGE', `message longer than ${Limits.MAX_MESSAGE} bytes`);
    }
    if (more) {
      if (pending.next >= Limits.MAX_FRAGMENTS) {
        this.#dropPending();
        return fail('TOO_LARGE', `more than ${Limits.MAX_FRAGMENTS} fragments`);
      }
      return;
    }
    this.#dropPending();
    const message = new Uint8Array(pending.total);
    let offset = 0;
    for (const part of pending.parts) {
      message.set(part, offset);
      offset += part.length;
    }
    events.push({ kind: 'message', message: { type, seq, payload: message } });
  }
}

// ---------------------------------------------------------------- HID reports

/**
 * Splits a message into 64-byte HID reports: an init packet `CID | 0x80|type | BCNT | 57 bytes`, then continuation
 * packets `CID | SEQ | 59 bytes` with SEQ 0, 1, …; unused bytes are zero.
 * @param cid channel id, 0–0xFFFFFFFF
 * @param type message type code, 0–127
 * @param message the message bytes, at most 4096
 * @returns the reports, each 64 bytes
 * @throws TypeError / RangeError for a wrong cid, type or message
 */
export function encodeReports(cid: number, type: number, message: Uint8Array): Uint8Array[] {
  aint(cid, 'cid', 0, 0xffffffff);
  checkHeaderArgs(type, message);
  const reports: Uint8Array[] = [];
  const init = new Uint8Array(Limits.HID_REPORT_SIZE);
  const view = new DataView(init.buffer);
  view.setUint32(0, cid, false);
  init[4] = 0x80 | type;
  view.setUint16(5, message.length, false);
  init.set(message.subarray(0, Limits.HID_INIT_DATA), HID_INIT_HEADER);
  reports.push(init);
  for (let offset = Limits.HID_INIT_DATA, seq = 0; offset < message.length; offset += Limits.HID_CONT_DATA, seq++) {
    const cont = new Uint8Array(Limits.HID_REPORT_SIZE);
    new DataView(cont.buffer).setUint32(0, cid, false);
    cont[4] = seq;
    cont.set(message.subarray(offset, offset + Limits.HID_CONT_DATA), HID_CONT_HEADER);
    reports.push(cont);
  }
  return reports;
}

interface HidPending {
  type: number;
  buffer: Uint8Array;
  filled: number;
  nextSeq: number;
}

/**
 * Reassembles HID reports of one channel into messages. Errors: a report that is not 64 bytes (BAD_LENGTH), another
 * CID (BAD_CHANNEL), BCNT > 4096 (TOO_LARGE), a continuation out of order or without an init packet, or an init
 * packet while a message is in progress (FRAGMENT_ORDER; that init packet then starts a new message).
 */
export class HidReassembler {
  readonly #cid: number;
  #pending: HidPending | undefined;

  /**
   * @param cid the channel id expected on every report
   * @throws TypeError / RangeError when cid is not an integer in 0–0xFFFFFFFF
   */
  constructor(cid: number) {
    this.#cid = aint(cid, 'cid', 0, 0xffffffff);
  }

  /**
   * Feeds one report.
   * @param report the report bytes (64)
   * @returns the error this report caused, if any, then the message it completed, if any
   * @throws TypeError when report is not a Uint8Array
   */
  push(report: Uint8Array): DecodeEvent<HidMessage>[] {
    abytes(report, 'report');
    const events: DecodeEvent<HidMessage>[] = [];
    const fail = (status: keyof typeof DeviceStatus, detail: string): DecodeEvent<HidMessage>[] => {
      events.push({ kind: 'error', error: deviceError(status, detail) });
      return events;
    };
    if (report.length !== Limits.HID_REPORT_SIZE) {
      this.#pending = undefined;
      return fail('BAD_LENGTH', `HID report of ${report.length} bytes, expected ${Limits.HID_REPORT_SIZE}`);
    }
    const view = new DataView(report.buffer, report.byteOffset, report.byteLength);
    const cid = view.getUint32(0, false);
    if (cid !== this.#cid) {
      this.#pending = undefined;
      return fail('BAD_CHANNEL', `HID report on channel 0x${cid.toString(16)}, expected 0x${this.#cid.toString(16)}`);
    }
    const cmd = report[4] as number;
    let pending = this.#pending;
    if ((cmd & 0x80) !== 0) {
      const bcnt = view.getUint16(5, false);
      if (pending !== undefined) {
        this.#pending = undefined;
        fail('FRAGMENT_ORDER', 'init packet while a message was in progress');
      }
      if (bcnt > Limits.MAX_MESSAGE) return fail('TOO_LARGE', `BCNT ${bcnt} > ${Limits.MAX_MESSAGE}`);
      pending = { type: cmd & 0x7f, buffer: new Uint8Array(bcnt), filled: 0, nextSeq: 0 };
      const take = Math.min(Limits.HID_INIT_DATA, bcnt);
      pending.buffer.set(report.subarray(HID_INIT_HEADER, HID_INIT_HEADER + take));
      pending.filled = take;
    } else {
      if (pending === undefined) return fail('FRAGMENT_ORDER', `continuation ${cmd} without an init packet`);
      if (cmd !== pending.nextSeq) {
        this.#pending = undefined;
        return fail('FRAGMENT_ORDER', `continuation ${cmd}, expected ${pending.nextSeq}`);
      }
      const take = Math.min(Limits.HID_CONT_DATA, pending.buffer.length - pending.filled);
      pending.buffer.set(report.subarray(HID_CONT_HEADER, HID_CONT_HEADER + take), pending.filled);
      pending.filled += take;
      pending.nextSeq++;
    }
    if (pending.filled === pending.buffer.length) {
      this.#pending = undefined;
      events.push({ kind: 'message', message: { cid, type: pending.type, payload: pending.buffer } });
    } else {
      this.#pending = pending;
    }
    return events;
  }

  /** True while a message is partly received. */
  get inMessage(): boolean {
    return this.#pending !== undefined;
  }

  /** Forgets any partial message. */
  reset(): void {
    this.#pending = undefined;
  }
}
