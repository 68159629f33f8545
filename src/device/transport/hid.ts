/**
 * {@link HidTransport}: a {@link Transport} over a USB HID device with 64-byte reports, using `node-hid` 3 — the
 * only module that imports it — through its asynchronous API (`HIDAsync`: reads run on node-hid's own thread, so a
 * device simulated in the same process cannot deadlock against a synchronous call).
 *
 * The transport moves whole reports: `send()` takes a multiple of 64 bytes and writes each 64-byte report as one
 * OUTPUT report (prefixed with report id 0, as hidapi wants for devices without numbered reports); every INPUT
 * report is delivered to `onData` as one 64-byte chunk. Messages and channels are the codec's business
 * (session.ts {@link import('../session.js').hidCodec}). A device that goes away (a read error, an unplug) closes
 * the transport with a {@link DeviceDisconnectedError}; pending sends reject with it.
 *
 * node-hid needs `libusb-1.0.so.0` and `libudev.so.1` at run time (Debian: `apt-get install libusb-1.0-0`); when its
 * native binding cannot load, every call fails with a {@link HidUnavailableError} naming the cause.
 */
import { abytes, aint, astring } from '../../core/bytes.js';
import { DeviceError, ErrorCode } from '../../core/errors.js';
import { _TransportEvents, _WriteQueue, DeviceDisconnectedError, TransportClosedError } from './types.js';
import type { CloseListener, DataListener, Transport } from './types.js';

/** The report size this transport speaks (docs/protocol-framing.md "HID reports"). */
export const HID_REPORT_SIZE = 64;

/** One HID device as enumerated. */
export interface HidDeviceInfo {
  /** The path to open (Linux hidraw: `/dev/hidrawN`). */
  readonly path: string;
  readonly vendorId: number;
  readonly productId: number;
  readonly serialNumber: string | undefined;
  readonly manufacturer: string | undefined;
  readonly product: string | undefined;
  /** The HID usage page of the top-level collection (the meshkit token: 0xFF00, vendor defined). */
  readonly usagePage: number | undefined;
  readonly usage: number | undefined;
  /** The USB interface number. */
  readonly interface: number;
}

/** What {@link listHidDevices} keeps; every given field must match. */
export interface HidDeviceFilter {
  readonly vendorId?: number;
  readonly productId?: number;
  readonly usagePage?: number;
  readonly serialNumber?: string;
}

/** The part of node-hid's `HIDAsync` the transport uses (a seam for tests and other HID back ends). */
export interface HidHandle {
  on(event: 'data', listener: (data: Buffer) => void): unknown;
  on(event: 'error', listener: (error: unknown) => void): unknown;
  removeAllListeners(event?: string): unknown;
  write(values: number[] | Buffer): Promise<number>;
  close(): Promise<void>;
}

/** The node-hid functions the transport uses (a seam for tests and other HID back ends). */
export interface HidBackend {
  /** Enumerates devices (node-hid `devicesAsync`). */
  devices(): Promise<readonly RawHidDevice[]>;
  /** Opens a device by path (node-hid `HIDAsync.open`). */
  open(path: string): Promise<HidHandle>;
}

/** A device record as node-hid returns it. */
export interface RawHidDevice {
  readonly vendorId: number;
  readonly productId: number;
  readonly path?: string | undefined;
  readonly serialNumber?: string | undefined;
  readonly manufacturer?: string | undefined;
  readonly product?: string | undefined;
  readonly release: number;
  readonly interface: number;
  readonly usagePage?: number | undefined;
  readonly usage?: number | undefined;
}

/** node-hid cannot be loaded (its native binding, or libusb-1.0 / libudev, is missing). */
export class HidUnavailableError extends DeviceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DEVICE, message, undefined, options);
  }
}

/** Opening a HID device failed or timed out. */
export class HidOpenError extends DeviceError {
  /** The device path. */
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DEVICE, message, undefined, options);
    this.path = path;
  }
}

/** Options of {@link HidTransport.open}. */
export interface HidTransportOptions {
  /** Give up opening after this many ms (default 5000). */
  readonly openTimeoutMs?: number;
  /** The HID back end (default: node-hid). */
  readonly backend?: HidBackend;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

let nodeHidBackend: Promise<HidBackend> | undefined;

/**
 * The node-hid back end, loaded on first use (so that importing this module never loads the native binding).
 * @returns the back end
 * @throws HidUnavailableError when node-hid cannot be imported
 */
export function nodeHid(): Promise<HidBackend> {
  nodeHidBackend ??= import('node-hid').then(
    (hid): HidBackend => ({
      devices: () => hid.devicesAsync(),
      open: (path: string) => hid.HIDAsync.open(path) as Promise<HidHandle>,
    }),
    (error: unknown) => {
      nodeHidBackend = undefined;
      throw new HidUnavailableError(`node-hid cannot be loaded: ${message(error)}`, { cause: error });
    },
  );
  return nodeHidBackend;
}

/** A failure inside node-hid that means its binding or a shared library is missing. */
function isLoadFailure(error: unknown): boolean {
  return /shared object|cannot open shared|file too short|Could not locate the bindings|No native build|MODULE_NOT_FOUND|ERR_DLOPEN/i
    .test(message(error)) || (error as { code?: unknown } | null)?.code === 'ERR_DLOPEN_FAILED';
}

function checkFilter(filter: HidDeviceFilter): void {
  if (typeof filter !== 'object' || filter === null) throw new TypeError('"filter" expected an object');
  if (filter.vendorId !== undefined) aint(filter.vendorId, 'filter.vendorId', 0, 0xffff);
  if (filter.productId !== undefined) aint(filter.productId, 'filter.productId', 0, 0xffff);
  if (filter.usagePage !== undefined) aint(filter.usagePage, 'filter.usagePage', 0, 0xffff);
  if (filter.serialNumber !== undefined) astring(filter.serialNumber, 'filter.serialNumber');
}

/**
 * Lists the HID devices that match a filter (each HID interface once; devices without a path are left out).
 * @param filter vendor id, product id, usage page, serial number to match (all optional)
 * @param backend the HID back end (default node-hid)
 * @returns the matching devices, in enumeration order
 * @throws TypeError / RangeError for a wrong filter field
 * @throws HidUnavailableError when node-hid (or libusb-1.0 / libudev) cannot be loaded
 * @throws DeviceError (ERR_DEVICE) when enumeration fails otherwise
 */
export async function listHidDevices(filter: HidDeviceFilter = {}, backend?: HidBackend): Promise<HidDeviceInfo[]> {
  checkFilter(filter);
  const hid = backend ?? (await nodeHid());
  let raw: readonly RawHidDevice[];
  try {
    raw = await hid.devices();
  } catch (error) {
    if (isLoadFailure(error)) {
      throw new HidUnavailableError(`node-hid cannot load its native binding (is libusb-1.0-0 installed?): ${message(error)}`, { cause: error });
    }
    throw new DeviceError(ErrorCode.DEVICE, `HID enumeration failed: ${message(error)}`, undefined, { cause: error });
  }
  const out: HidDeviceInfo[] = [];
  for (const d of raw) {
    if (typeof d.path !== 'string' || d.path === '') continue;
    if (filter.vendorId !== undefined && d.vendorId !== filter.vendorId) continue;
    if (filter.productId !== undefined && d.productId !== filter.productId) continue;
    if (filter.usagePage !== undefined && d.usagePage !== filter.usagePage) continue;
    if (filter.serialNumber !== undefined && d.serialNumber !== filter.serialNumber) continue;
    out.push({
      path: d.path, vendorId: d.vendorId, productId: d.productId, serialNumber: d.serialNumber,
      manufacturer: d.manufacturer, product: d.product, usagePage: d.usagePage, usage: d.usage, interface: d.interface,
    });
  }
  return out;
}

/** A HID device as a {@link Transport} of 64-byte reports. Create with {@link HidTransport.open}. */
export class HidTransport implements Transport {
  readonly #device: HidHandle;
  readonly #path: string;
  readonly #events = new _TransportEvents();
  readonly #writes = new _WriteQueue();
  #closing: Promise<void> | undefined;

  private constructor(device: HidHandle, path: string) {
    this.#device = device;
    this.#path = path;
    device.on('error', (error: unknown) => {
      if (this.#closing !== undefined) return;
      this.#lost(error);
    });
    device.on('data', (data: Buffer) => {
      this.#events.emitData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice());
    });
  }

  /**
   * Opens a HID device by path and starts reading its INPUT reports.
   * @param path the device path (`/dev/hidraw0`; see {@link listHidDevices})
   * @param options open timeout, HID back end
   * @returns the open transport
   * @throws TypeError / RangeError for a wrong path or option
   * @throws HidUnavailableError when node-hid (or libusb-1.0 / libudev) cannot be loaded
   * @throws HidOpenError when the device cannot be opened, or not within openTimeoutMs
   */
  static async open(path: string, options: HidTransportOptions = {}): Promise<HidTransport> {
    astring(path, 'path');
    if (path.length === 0) throw new RangeError('"path" expected a device path, got ""');
    if (typeof options !== 'object' || options === null) throw new TypeError('"options" expected an object');
    const openTimeoutMs = aint(options.openTimeoutMs ?? 5000, 'openTimeoutMs', 1, 600_000);
    const backend = options.backend ?? (await nodeHid());
    if (typeof backend.open !== 'function') throw new TypeError('"options.backend" expected a HidBackend');
    const device = await new Promise<HidHandle>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(new HidOpenError(path, `opening ${path} timed out after ${openTimeoutMs} ms`));
      }, openTimeoutMs);
      backend.open(path).then(
        (handle) => {
          if (done) {
            // Opened after we gave up: close it again, nobody owns it.
            void handle.close().catch(() => undefined);
            return;
          }
          done = true;
          clearTimeout(timer);
          resolve(handle);
        },
        (error: unknown) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          if (isLoadFailure(error)) {
            reject(new HidUnavailableError(`node-hid cannot load its native binding (is libusb-1.0-0 installed?): ${message(error)}`, { cause: error }));
          } else {
            reject(new HidOpenError(path, `cannot open HID device ${path}: ${message(error)}`, { cause: error }));
          }
        },
      );
    });
    return new HidTransport(device, path);
  }

  /** The device path. */
  get path(): string {
    return this.#path;
  }

  get isOpen(): boolean {
    return !this.#events.closed;
  }

  /**
   * Writes `bytes` as consecutive 64-byte OUTPUT reports, in order. Concurrent sends are queued, never interleaved.
   * @param bytes whole reports: a non-zero multiple of 64 bytes
   * @throws TypeError when bytes is not a Uint8Array
   * @throws RangeError when its length is not a non-zero multiple of 64
   * @throws TransportClosedError after close(); DeviceDisconnectedError when the device went away (also mid-send)
   */
  send(bytes: Uint8Array): Promise<void> {
    try {
      abytes(bytes, 'bytes');
      if (bytes.length === 0 || bytes.length % HID_REPORT_SIZE !== 0) {
        throw new RangeError(`"bytes" expected whole ${HID_REPORT_SIZE}-byte reports, got length=${bytes.length}`);
      }
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

  /** Closes the device; idempotent, never rejects. Pending sends reject with TransportClosedError. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const lost = this.#events.closed;
      this.#events.emitClose(this.#events.reason);
      if (lost) return;
      try {
        await this.#device.close();
      } catch {
        // already gone; nothing to release
      }
      this.#device.removeAllListeners();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #write(bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length; offset += HID_REPORT_SIZE) {
      this.#assertOpen();
      const report = Buffer.alloc(HID_REPORT_SIZE + 1);
      report.set(bytes.subarray(offset, offset + HID_REPORT_SIZE), 1);
      let written: number;
      try {
        written = await this.#device.write(report);
      } catch (error) {
        if (this.#events.closed || this.#closing !== undefined) throw this.#closedError();
        const lost = new DeviceDisconnectedError(`HID device ${this.#path}: write failed: ${message(error)}`, { cause: error });
        this.#events.emitClose(lost);
        throw lost;
      }
      if (written < HID_REPORT_SIZE) {
        throw new DeviceError(ErrorCode.DEVICE, `HID device ${this.#path}: short write (${written} of ${HID_REPORT_SIZE + 1} bytes)`);
      }
    }
  }

  #lost(cause: unknown): void {
    if (this.#events.closed) return;
    this.#events.emitClose(new DeviceDisconnectedError(`HID device ${this.#path} disconnected: ${message(cause)}`, { cause }));
    // Release the handle; the device is gone.
    this.#device.close().catch(() => undefined);
  }

  #closedError(): DeviceError {
    const reason = this.#events.reason;
    if (reason !== undefined) return new DeviceDisconnectedError(reason.message, { cause: reason });
    return new TransportClosedError(`HID device ${this.#path} is closed`);
  }

  #assertOpen(): void {
    if (this.#events.closed || this.#closing !== undefined) throw this.#closedError();
  }
}
