/**
 * The host side of one device conversation over a {@link Transport}: request → reply exchanges with one exchange
 * in flight, per-exchange timeouts and retries (docs/protocol.md "Flow").
 *
 * A request is CBOR-encoded (cbor.ts) and put on the wire by a {@link SessionCodec}: serial COBS frames by default
 * ({@link serialCodec}), or 64-byte HID reports ({@link hidCodec}; the HID message body is `seq ‖ CBOR`,
 * docs/protocol-framing.md "HID reports"). Replies are reassembled by the same codec and matched by seq.
 * A retry resends the SAME seq — safe because every device step is idempotent (the device
 * answers a repeated request with the same result). Corrupted or stray frames are dropped (and reported to
 * `onFrameError`); the retry recovers. An ERROR reply becomes a {@link DeviceReplyError} whose `status` is the
 * device's code; a request that gets no reply becomes a {@link DeviceTimeoutError} naming the message.
 */
import { abytes, aint } from '../core/bytes.js';
import { DeviceError, ErrorCode } from '../core/errors.js';
import { decodeCbor, encodeCbor } from './cbor.js';
import type { CborInput, CborValue } from './cbor.js';
import { deviceError, encodeFrames, encodeReports, FrameDecoder, HidReassembler, statusName } from './framing.js';
import type { DecodeEvent, FramedMessage } from './framing.js';
import { Limits, MessageType, MessageTypeNames, Replies } from './protocol.generated.js';
import type { MessageTypeName } from './protocol.generated.js';
import { DeviceDisconnectedError, TransportClosedError } from './transport/types.js';
import type { Transport } from './transport/types.js';

/** Default time to wait for a reply to one attempt. */
export const DEFAULT_TIMEOUT_MS = 2000;
/** Default number of resends after the first attempt. */
export const DEFAULT_RETRIES = 2;

/**
 * How messages are put on a transport and taken off it. A codec keeps reassembly state for one link; give each
 * session its own.
 */
export interface SessionCodec {
  /** A short name for messages ("serial", "hid"). */
  readonly name: string;
  /** The largest CBOR message this codec carries, in bytes. */
  readonly maxMessage: number;
  /**
   * The wire bytes of one message, ready for `Transport.send`.
   * @throws TypeError / RangeError for a wrong type, seq or message (e.g. longer than `maxMessage`)
   */
  encode(type: number, seq: number, message: Uint8Array): Uint8Array;
  /** Feeds received bytes (any split); returns the messages completed and the errors, in order. */
  push(bytes: Uint8Array): DecodeEvent<FramedMessage>[];
  /** Forgets any partial message. */
  reset(): void;
}

/**
 * The serial codec: COBS frames with CRC-32C (framing.ts {@link encodeFrames} / {@link FrameDecoder}); the
 * session's default.
 * @returns a fresh codec
 */
export function serialCodec(): SessionCodec {
  const decoder = new FrameDecoder();
  return {
    name: 'serial',
    maxMessage: Limits.MAX_MESSAGE,
    encode: (type, seq, message) => concatFrames(encodeFrames(type, seq, message)),
    push: (bytes) => decoder.push(bytes),
    reset: () => decoder.reset(),
  };
}

/** The channel id the host uses on HID when none is given (the device answers on the request's channel). */
export const HID_DEFAULT_CID = 0x4d4b0001;

/** Options of {@link hidCodec}. */
export interface HidCodecOptions {
  /** Channel id of every report, 1–0xFFFFFFFE (default {@link HID_DEFAULT_CID}). */
  readonly cid?: number;
}

/**
 * The HID codec: 64-byte init/continuation reports (framing.ts {@link encodeReports} / {@link HidReassembler}).
 * HID reports have no seq field, so the HID message body is `seq (1 byte) ‖ CBOR message` and BCNT counts both
 * (docs/protocol-framing.md "HID reports"); the largest CBOR message is therefore 4095 bytes. Received bytes are
 * cut into 64-byte reports whatever the transport's chunking.
 * @param options the channel id
 * @returns a fresh codec
 * @throws TypeError / RangeError when cid is not an integer in 1–0xFFFFFFFE
 */
export function hidCodec(options: HidCodecOptions = {}): SessionCodec {
  const cid = aint(options.cid ?? HID_DEFAULT_CID, 'cid', 1, 0xfffffffe);
  const reassembler = new HidReassembler(cid);
  const size = Limits.HID_REPORT_SIZE;
  let partial = new Uint8Array(0);
  return {
    name: 'hid',
    maxMessage: Limits.MAX_MESSAGE - 1,
    encode: (type, seq, message) => {
      aint(seq, 'seq', 0, 0xff);
      abytes(message, 'message');
      if (message.length > Limits.MAX_MESSAGE - 1) {
        throw new RangeError(`"message" expected at most ${Limits.MAX_MESSAGE - 1} bytes on HID, got length=${message.length}`);
      }
      const body = new Uint8Array(message.length + 1);
      body[0] = seq;
      body.set(message, 1);
      return concatFrames(encodeReports(cid, type, body));
    },
    push: (bytes) => {
      const all = partial.length === 0 ? bytes : concatFrames([partial, bytes]);
      const events: DecodeEvent<FramedMessage>[] = [];
      let offset = 0;
      for (; offset + size <= all.length; offset += size) {
        for (const event of reassembler.push(all.subarray(offset, offset + size))) {
          if (event.kind === 'error') events.push(event);
          else if (event.message.payload.length === 0) {
            events.push({ kind: 'error', error: deviceError('BAD_LENGTH', 'HID message without its seq byte (BCNT 0)') });
          } else {
            const { type, payload } = event.message;
            events.push({ kind: 'message', message: { type, seq: payload[0] as number, payload: payload.slice(1) } });
          }
        }
      }
      partial = all.slice(offset);
      return events;
    },
    reset: () => {
      partial = new Uint8Array(0);
      reassembler.reset();
    },
  };
}

/** Per-exchange options. */
export interface ExchangeOptions {
  /** How long to wait for the reply to each attempt, in ms (default: the session's, else 2000). */
  readonly timeoutMs?: number;
  /** How many times to resend (same seq) after a timeout (default: the session's, else 2). */
  readonly retries?: number;
}

/** Session options. */
export interface DeviceSessionOptions extends ExchangeOptions {
  /** The seq of the first exchange, 0–255 (default: random; later exchanges count up mod 256). */
  readonly firstSeq?: number;
  /** Told about every frame the decoder dropped (bad CRC, malformed, out of order…). */
  readonly onFrameError?: (error: DeviceError) => void;
  /** How messages go on the wire (default: a fresh {@link serialCodec}; {@link hidCodec} for HID devices). */
  readonly codec?: SessionCodec;
}

/** A reply from the device. */
export interface DeviceReply {
  /** The reply's message type code. */
  readonly type: number;
  /** Its name, when the type is known. */
  readonly name: MessageTypeName | undefined;
  /** The seq it answered. */
  readonly seq: number;
  /** The decoded CBOR message (a Map with integer keys for every protocol message). */
  readonly payload: CborValue;
}

/** The device answered with ERROR{code, detail}; `status` is the code (docs/protocol.md "Status codes"). */
export class DeviceReplyError extends DeviceError {
  /** The request that failed. */
  readonly request: string;
  /** ERROR.detail, when the device sent one. */
  readonly detail: string | undefined;
  constructor(request: string, status: number, detail: string | undefined) {
    const name = statusName(status) ?? `status ${status}`;
    super(ErrorCode.DEVICE, `device refused ${request}: ${name}${detail === undefined ? '' : ` (${detail})`}`, status);
    this.request = request;
    this.detail = detail;
  }
}

/** No reply to a request after every attempt. */
export class DeviceTimeoutError extends DeviceError {
  /** The request that got no reply. */
  readonly request: string;
  /** How many times it was sent. */
  readonly attempts: number;
  /** The wait per attempt, in ms. */
  readonly timeoutMs: number;
  constructor(request: string, seq: number, attempts: number, timeoutMs: number) {
    super(ErrorCode.DEVICE, `no reply to ${request} (seq ${seq}) after ${attempts} attempt${attempts === 1 ? '' : 's'} of ${timeoutMs} ms`);
    this.request = request;
    this.attempts = attempts;
    this.timeoutMs = timeoutMs;
  }
}

/** An exchange was started while another was in flight (one exchange at a time per device). */
export class DeviceBusyError extends DeviceError {
  constructor(request: string, running: string) {
    super(ErrorCode.DEVICE, `cannot send ${request}: ${running} is still in flight (one exchange at a time)`);
  }
}

/** A reply that does not fit the request (wrong type for the seq, not a valid CBOR message). */
export class DeviceProtocolError extends DeviceError {}

interface Inflight {
  readonly request: string;
  readonly seq: number;
  readonly expect: number | undefined;
  readonly resolve: (message: FramedMessage) => void;
  readonly reject: (error: unknown) => void;
}

function requestName(type: number): string {
  return (MessageTypeNames as Readonly<Record<number, string>>)[type] ?? `message 0x${type.toString(16).padStart(2, '0')}`;
}

function errorFields(payload: CborValue): { code: number | undefined; detail: string | undefined } {
  if (!(payload instanceof Map)) return { code: undefined, detail: undefined };
  const code = payload.get(1);
  const detail = payload.get(2);
  return { code: typeof code === 'number' ? code : undefined, detail: typeof detail === 'string' ? detail : undefined };
}

/**
 * One conversation with one device over a transport. One exchange at a time: a second `exchange()` while one is
 * in flight rejects at once with {@link DeviceBusyError}. `close()` waits for the exchange in flight, then closes
 * the transport. If the transport closes (device unplugged) the exchange in flight rejects with its
 * {@link DeviceDisconnectedError} at once, without waiting for the timeout.
 */
export class DeviceSession implements AsyncDisposable {
  readonly #transport: Transport;
  readonly #codec: SessionCodec;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #onFrameError: ((error: DeviceError) => void) | undefined;
  readonly #unsubscribe: (() => void)[] = [];
  #seq: number;
  #inflight: Inflight | undefined;
  #running: Promise<unknown> | undefined;
  #closing: Promise<void> | undefined;
  #lost: DeviceError | undefined;

  /**
   * @param transport the link to the device; the session owns it from now on (closes it in `close()`)
   * @param options default timeout and retries, the first seq, a frame-error observer, the codec
   * @throws TypeError / RangeError for a wrong option
   */
  constructor(transport: Transport, options: DeviceSessionOptions = {}) {
    if (typeof transport !== 'object' || transport === null || typeof transport.send !== 'function') {
      throw new TypeError('"transport" expected a Transport');
    }
    this.#transport = transport;
    this.#timeoutMs = aint(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', 1, 600_000);
    this.#retries = aint(options.retries ?? DEFAULT_RETRIES, 'retries', 0, 100);
    this.#seq = aint(options.firstSeq ?? Math.floor(Math.random() * 256), 'firstSeq', 0, 255);
    if (options.onFrameError !== undefined && typeof options.onFrameError !== 'function') {
      throw new TypeError('"onFrameError" expected a function');
    }
    this.#onFrameError = options.onFrameError;
    const codec = options.codec ?? serialCodec();
    if (typeof codec !== 'object' || codec === null || typeof codec.encode !== 'function' || typeof codec.push !== 'function') {
      throw new TypeError('"codec" expected a SessionCodec');
    }
    this.#codec = codec;
    this.#unsubscribe.push(transport.onData((bytes) => this.#receive(bytes)));
    this.#unsubscribe.push(
      transport.onClose((reason) => {
        this.#lost = reason ?? new TransportClosedError('the transport was closed');
        this.#inflight?.reject(this.#lost);
      }),
    );
  }

  /** True while an exchange is in flight. */
  get busy(): boolean {
    return this.#running !== undefined;
  }

  /** The seq the next exchange will use. */
  get nextSeq(): number {
    return this.#seq;
  }

  /**
   * Sends a request and waits for its reply, resending it (same seq) after each timeout.
   * @param type the request type, by name (`'HELLO'`) or code
   * @param message the request fields, a CBOR map with integer keys (e.g. `{ 1: 1 }` or a Map)
   * @param options timeout per attempt and number of retries
   * @returns the reply (its type is the request's reply type from protocol.json, when the request has one)
   * @throws DeviceBusyError when another exchange is in flight (at once, nothing is sent)
   * @throws DeviceReplyError (status = the device's code) when the device answers ERROR
   * @throws DeviceTimeoutError when no reply came after every attempt
   * @throws DeviceDisconnectedError when the device went away; TransportClosedError after close()
   * @throws DeviceProtocolError when the reply has the right seq but the wrong type, or is not valid CBOR
   * @throws TypeError / RangeError for an unknown type name, a bad option, or a message that cannot be encoded or is
   *   larger than the codec carries (4096 bytes serial, 4095 HID)
   */
  exchange(type: MessageTypeName | number, message: CborInput, options: ExchangeOptions = {}): Promise<DeviceReply> {
    let code: number;
    try {
      code = typeof type === 'string' ? this.#typeCode(type) : aint(type, 'type', 0, 0x7f);
    } catch (e) {
      return Promise.reject(e);
    }
    const request = requestName(code);
    if (this.#running !== undefined) {
      return Promise.reject(new DeviceBusyError(request, this.#inflight?.request ?? 'an exchange'));
    }
    if (this.#closing !== undefined) return Promise.reject(new TransportClosedError(`cannot send ${request}: the session is closed`));
    if (this.#lost !== undefined) {
      const lost = this.#lost;
      return Promise.reject(lost instanceof DeviceDisconnectedError
        ? new DeviceDisconnectedError(`cannot send ${request}: ${lost.message}`, { cause: lost })
        : new TransportClosedError(`cannot send ${request}: ${lost.message}`, { cause: lost }));
    }
    const running = this.#run(code, request, message, options);
    this.#running = running;
    const clear = (): void => {
      if (this.#running === running) this.#running = undefined;
    };
    running.then(clear, clear);
    return running;
  }

  /** Waits for the exchange in flight (whatever its outcome), then closes the transport. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#running !== undefined) await this.#running.catch(() => undefined);
      for (const unsubscribe of this.#unsubscribe) unsubscribe();
      await this.#transport.close();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #typeCode(name: string): number {
    const code = (MessageType as Readonly<Record<string, number>>)[name];
    if (code === undefined) throw new RangeError(`"type" expected a message name of protocol.json, got "${name}"`);
    return code;
  }

  async #run(code: number, request: string, message: CborInput, options: ExchangeOptions): Promise<DeviceReply> {
    const timeoutMs = aint(options.timeoutMs ?? this.#timeoutMs, 'timeoutMs', 1, 600_000);
    const retries = aint(options.retries ?? this.#retries, 'retries', 0, 100);
    const seq = this.#seq;
    const wire = this.#codec.encode(code, seq, encodeCbor(message));
    this.#seq = (seq + 1) & 0xff;
    const replyName = (Replies as Readonly<Record<string, string>>)[request];
    const expect = replyName === undefined ? undefined : (MessageType as Readonly<Record<string, number>>)[replyName];
    const attempts = retries + 1;
    let timer: NodeJS.Timeout | undefined;
    try {
      for (let attempt = 1; attempt <= attempts; attempt++) {
        const reply = new Promise<FramedMessage | 'timeout'>((resolve, reject) => {
          this.#inflight = { request, seq, expect, resolve, reject };
          timer = setTimeout(() => resolve('timeout'), timeoutMs);
        });
        // A send failure (device gone) rejects the exchange at once; the reply promise may still win the race.
        const sent = this.#transport.send(wire);
        const outcome = await Promise.race([reply, sent.then(() => reply)]);
        clearTimeout(timer);
        if (outcome === 'timeout') continue;
        return this.#reply(request, outcome);
      }
      throw new DeviceTimeoutError(request, seq, attempts, timeoutMs);
    } finally {
      clearTimeout(timer);
      this.#inflight = undefined;
    }
  }

  #reply(request: string, message: FramedMessage): DeviceReply {
    let payload: CborValue;
    try {
      payload = decodeCbor(message.payload);
    } catch (e) {
      throw new DeviceProtocolError(ErrorCode.DEVICE, `reply to ${request} is not valid CBOR: ${(e as Error).message}`,
        e instanceof DeviceError ? e.status : undefined, { cause: e });
    }
    if (message.type === MessageType.ERROR) {
      const { code, detail } = errorFields(payload);
      if (code === undefined) {
        throw new DeviceProtocolError(ErrorCode.DEVICE, `ERROR reply to ${request} without a numeric code`);
      }
      throw new DeviceReplyError(request, code, detail);
    }
    const name = (MessageTypeNames as Readonly<Record<number, MessageTypeName>>)[message.type];
    return { type: message.type, name, seq: message.seq, payload };
  }

  #receive(bytes: Uint8Array): void {
    for (const event of this.#codec.push(bytes)) {
      if (event.kind === 'error') {
        this.#onFrameError?.(event.error);
        continue;
      }
      const message = event.message;
      const inflight = this.#inflight;
      // Stray frames (no exchange running, a late reply to an earlier seq) are ignored.
      if (inflight === undefined || message.seq !== inflight.seq) continue;
      if (message.type !== MessageType.ERROR && inflight.expect !== undefined && message.type !== inflight.expect) {
        inflight.reject(new DeviceProtocolError(ErrorCode.DEVICE,
          `reply to ${inflight.request} (seq ${inflight.seq}) is ${requestName(message.type)}, expected ${requestName(inflight.expect)}`));
        continue;
      }
      inflight.resolve(message);
    }
  }
}

function concatFrames(frames: Uint8Array[]): Uint8Array {
  if (frames.length === 1) return frames[0] as Uint8Array;
  const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let offset = 0;
  for (const frame of frames) {
    out.set(frame, offset);
    offset += frame.length;
  }
  return out;
}


