/**
 * The byte-stream transport the device session runs over, and the typed errors every transport reports.
 *
 * A {@link Transport} moves raw bytes to and from one device (a serial port, a HID device, an in-process link);
 * it knows nothing of frames or messages. Implementations: serial.ts (`serialport`, the only importer), link.ts
 * (an in-process pair for tests and the demo). Everything above a transport receives this interface, never a
 * native module (docs: ARCHITECTURE.md "Device protocol").
 */
import { DeviceError, ErrorCode } from '../../core/errors.js';

/** Called with the bytes as they arrive (any split: partial frames, several frames). */
export type DataListener = (bytes: Uint8Array) => void;

/**
 * Called once when the transport closes: `undefined` when it was closed locally with `close()`, a
 * {@link DeviceDisconnectedError} when the device went away (unplugged, the tty closed or failed).
 */
export type CloseListener = (error: DeviceError | undefined) => void;

/** A bidirectional byte stream to one device. Close it (or `await using` it); `close()` is idempotent. */
export interface Transport extends AsyncDisposable {
  /** True until the transport closes (locally or because the device went away). */
  readonly isOpen: boolean;
  /**
   * Writes bytes to the device; resolves once they are handed to the link (serial: written and drained).
   * Concurrent calls are written in call order, never interleaved.
   * @throws TransportClosedError when the transport was closed locally; DeviceDisconnectedError when the device went away
   */
  send(bytes: Uint8Array): Promise<void>;
  /** Subscribes to incoming bytes. @returns a function that unsubscribes */
  onData(listener: DataListener): () => void;
  /**
   * Subscribes to the close. A listener added after the close is called at once (asynchronously) with the same
   * reason. @returns a function that unsubscribes
   */
  onClose(listener: CloseListener): () => void;
  /** Closes the transport; idempotent, resolves when it is closed. Never rejects. */
  close(): Promise<void>;
}

/** The device went away: unplugged, its tty closed or failed, or the other end of a link closed. */
export class DeviceDisconnectedError extends DeviceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DEVICE, message, undefined, options);
  }
}

/** The transport (or session) was closed locally and cannot be used any more. */
export class TransportClosedError extends DeviceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DEVICE, message, undefined, options);
  }
}

/**
 * Listener bookkeeping shared by the transports: data fan-out, a once-only close with late subscribers.
 * @internal
 */
export class _TransportEvents {
  readonly #data = new Set<DataListener>();
  readonly #close = new Set<CloseListener>();
  #closed = false;
  #reason: DeviceError | undefined;

  get closed(): boolean {
    return this.#closed;
  }

  get reason(): DeviceError | undefined {
    return this.#reason;
  }

  onData(listener: DataListener): () => void {
    if (typeof listener !== 'function') throw new TypeError('"listener" expected a function');
    this.#data.add(listener);
    return () => void this.#data.delete(listener);
  }

  onClose(listener: CloseListener): () => void {
    if (typeof listener !== 'function') throw new TypeError('"listener" expected a function');
    if (this.#closed) {
      const reason = this.#reason;
      let active = true;
      queueMicrotask(() => {
        if (active) listener(reason);
      });
      return () => {
        active = false;
      };
    }
    this.#close.add(listener);
    return () => void this.#close.delete(listener);
  }

  emitData(bytes: Uint8Array): void {
    if (this.#closed) return;
    for (const listener of [...this.#data]) listener(bytes);
  }

  /** Marks the transport closed and tells the listeners once; later calls do nothing. */
  emitClose(reason: DeviceError | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reason = reason;
    this.#data.clear();
    const listeners = [...this.#close];
    this.#close.clear();
    for (const listener of listeners) listener(reason);
  }
}

/**
 * Runs a transport's writes one at a time in call order (concurrent sends are queued, never interleaved); a failed
 * write rejects its own send only, the ones queued after it still run.
 * @internal
 */
export class _WriteQueue {
  #tail: Promise<void> = Promise.resolve();

  /**
   * Queues `write` behind the writes queued before it.
   * @param write the write to run (called once, when the previous ones have settled)
   * @returns settles as `write` does
   * @throws TypeError (as a rejection) when write is not a function
   */
  run(write: () => Promise<void>): Promise<void> {
    if (typeof write !== 'function') return Promise.reject(new TypeError('"write" expected a function'));
    const done = this.#tail.then(write);
    this.#tail = done.catch(() => undefined);
    return done;
  }
}
