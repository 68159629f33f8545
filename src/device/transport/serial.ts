/**
 * {@link SerialTransport}: a {@link Transport} over a serial device (USB-serial, CDC-ACM, a pty) using
 * `serialport` 13 — the only module that imports it.
 *
 * Habits from ENVIRONMENT.md §3: writes go out in chunks of at most 4 KiB, each awaited and drained before the
 * next (one large write under full-duplex traffic can stall forever in serialport's write queue); ptys ignore
 * the baud rate and refuse DTR/RTS ioctls, so nothing here touches the modem lines. A device that goes away (the
 * tty closes or fails) closes the transport with a {@link DeviceDisconnectedError}; pending sends reject with it.
 */
import { SerialPort } from 'serialport';
import { abytes, aint, astring } from '../../core/bytes.js';
import { DeviceError, ErrorCode } from '../../core/errors.js';
import { _TransportEvents, _WriteQueue, DeviceDisconnectedError, TransportClosedError } from './types.js';
import type { CloseListener, DataListener, Transport } from './types.js';

/** Largest single write handed to serialport. */
export const SERIAL_MAX_CHUNK = 4096;

/** Options of {@link SerialTransport.open}. */
export interface SerialTransportOptions {
  /** Baud rate (default 115200; ignored by ptys). */
  readonly baudRate?: number;
  /** Give up opening after this many ms (default 5000). */
  readonly openTimeoutMs?: number;
  /** Write chunk size, 1–4096 (default 4096). */
  readonly chunkSize?: number;
}

/** Opening a serial device failed or timed out. */
export class SerialOpenError extends DeviceError {
  /** The device path. */
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DEVICE, message, undefined, options);
    this.path = path;
  }
}

/** A serial device as a {@link Transport}. Create with {@link SerialTransport.open}. */
export class SerialTransport implements Transport {
  readonly #port: SerialPort;
  readonly #path: string;
  readonly #chunkSize: number;
  readonly #events = new _TransportEvents();
  readonly #closed: Promise<void>;
  readonly #writes = new _WriteQueue();
  #closing: Promise<void> | undefined;
  #failure: Error | undefined;

  private constructor(port: SerialPort, path: string, chunkSize: number) {
    this.#port = port;
    this.#path = path;
    this.#chunkSize = chunkSize;
    port.on('data', (chunk: Buffer) => this.#events.emitData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    port.on('error', (err: Error) => {
      // A read/write failure on an open tty: treat the device as gone.
      this.#failure ??= err;
      if (port.isOpen && !port.closing) port.close();
      else this.#lost(err);
    });
    this.#closed = new Promise<void>((resolve) => {
      port.on('close', (err: Error | null) => {
        if (this.#closing !== undefined && err === null && this.#failure === undefined) this.#events.emitClose(undefined);
        else this.#lost(err ?? this.#failure);
        resolve();
      });
    });
  }

  /**
   * Opens a serial device.
   * @param path the device path (`/dev/ttyUSB0`, `/dev/ttyACM0`, a pty link)
   * @param options baud rate, open timeout, write chunk size
   * @returns the open transport
   * @throws TypeError / RangeError for a wrong path or option
   * @throws SerialOpenError when the device cannot be opened, or not within openTimeoutMs
   */
  static async open(path: string, options: SerialTransportOptions = {}): Promise<SerialTransport> {
    astring(path, 'path');
    if (path.length === 0) throw new RangeError('"path" expected a device path, got ""');
    const baudRate = aint(options.baudRate ?? 115200, 'baudRate', 1, 16_000_000);
    const openTimeoutMs = aint(options.openTimeoutMs ?? 5000, 'openTimeoutMs', 1, 600_000);
    const chunkSize = aint(options.chunkSize ?? SERIAL_MAX_CHUNK, 'chunkSize', 1, SERIAL_MAX_CHUNK);
    const port = new SerialPort({ path, baudRate, autoOpen: false });
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(new SerialOpenError(path, `opening ${path} timed out after ${openTimeoutMs} ms`));
      }, openTimeoutMs);
      port.open((err) => {
        if (done) {
          // Opened after we gave up: close it again, nobody owns it.
          if (err === null) port.close();
          return;
        }
        done = true;
        clearTimeout(timer);
        if (err !== null) reject(new SerialOpenError(path, `cannot open ${path}: ${err.message}`, { cause: err }));
        else resolve();
      });
    });
    return new SerialTransport(port, path, chunkSize);
  }

  /** The device path. */
  get path(): string {
    return this.#path;
  }

  get isOpen(): boolean {
    return !this.#events.closed;
  }

  /**
   * Writes bytes in chunks of at most 4 KiB, awaiting each write and a drain before the next. Concurrent sends are
   * queued and written in call order.
   * @throws TypeError when bytes is not a Uint8Array
   * @throws TransportClosedError after close(); DeviceDisconnectedError when the device went away (also mid-send)
   */
  send(bytes: Uint8Array): Promise<void> {
    try {
      abytes(bytes, 'bytes');
      this.#assertOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    const copy = bytes.slice();
    return this.#writes.run(() => this.#write(copy));
  }

  onData(listener: DataListener): () => void {
    return this.#events.onData(listener);
  }

  onClose(listener: CloseListener): () => void {
    return this.#events.onClose(listener);
  }

  /** Closes the port; idempotent, never rejects. Pending sends reject with TransportClosedError. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#events.closed || !this.#port.isOpen) {
        this.#events.emitClose(this.#events.reason);
        return;
      }
      await new Promise<void>((resolve) => {
        this.#port.close((err) => {
          if (err !== null) this.#failure ??= err;
          resolve();
        });
      });
      await this.#closed;
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #write(bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length; offset += this.#chunkSize) {
      this.#assertOpen();
      const chunk = bytes.subarray(offset, offset + this.#chunkSize);
      await this.#step((done) => this.#port.write(chunk, (err) => done(err ?? null)));
      await this.#step((done) => this.#port.drain((err) => done(err ?? null)));
    }
  }

  /** Runs one callback-style port operation, failing at once if the port closes meanwhile. */
  #step(operation: (done: (err: Error | null) => void) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const unsubscribe = this.#events.onClose(() => {
        reject(this.#closedError());
      });
      operation((err) => {
        unsubscribe();
        if (err === null) resolve();
        else if (this.#events.closed) reject(this.#closedError());
        else reject(new DeviceDisconnectedError(`serial device ${this.#path}: write failed: ${err.message}`, { cause: err }));
      });
    });
  }

  #lost(cause: Error | undefined): void {
    const detail = cause === undefined ? 'the port closed' : cause.message;
    this.#events.emitClose(new DeviceDisconnectedError(`serial device ${this.#path} disconnected: ${detail}`, { cause }));
  }

  #closedError(): DeviceError {
    const reason = this.#events.reason;
    if (reason !== undefined) return new DeviceDisconnectedError(reason.message, { cause: reason });
    return new TransportClosedError(`serial device ${this.#path} is closed`);
  }

  #assertOpen(): void {
    if (this.#events.closed || this.#closing !== undefined) throw this.#closedError();
  }
}

/** One serial device the system knows of, with its USB identity when it has one. */
export interface SerialPortInfo {
  /** The device path (`/dev/ttyACM0`). */
  readonly path: string;
  /** USB vendor id, 4 lowercase hex digits, when the device is on USB. */
  readonly vendorId?: string;
  /** USB product id, 4 lowercase hex digits. */
  readonly productId?: string;
  /** USB serial number string, when reported. */
  readonly serialNumber?: string;
  /** Manufacturer string, when reported. */
  readonly manufacturer?: string;
}

/**
 * Lists the serial devices of the system (serialport's enumeration: udev on Linux), for discovery by VID/PID.
 * Ptys are not listed (they have no USB identity): name them with their path.
 * @returns the ports, sorted by path
 * @throws DeviceError (`ERR_DEVICE`) when the enumeration fails
 */
export async function listSerialPorts(): Promise<SerialPortInfo[]> {
  let ports;
  try {
    ports = await SerialPort.list();
  } catch (e) {
    throw new DeviceError(ErrorCode.DEVICE, `cannot list serial ports: ${(e as Error).message}`, undefined, { cause: e });
  }
  const hex = (s: string | undefined): string | undefined => (s === undefined || s === '' ? undefined : s.toLowerCase().replace(/^0x/, '').padStart(4, '0'));
  return ports
    .map((p) => {
      const vendorId = hex(p.vendorId);
      const productId = hex(p.productId);
      return {
        path: p.path,
        ...(vendorId === undefined ? {} : { vendorId }),
        ...(productId === undefined ? {} : { productId }),
        ...(p.serialNumber === undefined || p.serialNumber === '' ? {} : { serialNumber: p.serialNumber }),
        ...(p.manufacturer === undefined || p.manufacturer === '' ? {} : { manufacturer: p.manufacturer }),
      };
    })
    .sort((a, b) => a.path.localeCompare(b.path));
}
