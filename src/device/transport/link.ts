/**
 * An in-process transport pair: what one end sends, the other receives (asynchronously, as a copy). For tests,
 * the demo when socat is absent, and TypeScript device responders. Closing one end looks to the other end like
 * the device going away ({@link DeviceDisconnectedError}); {@link LinkTransport.disconnect} simulates an unplug
 * seen by both ends.
 */
import { abytes } from '../../core/bytes.js';
import type { DeviceError } from '../../core/errors.js';
import { _TransportEvents, DeviceDisconnectedError, TransportClosedError } from './types.js';
import type { CloseListener, DataListener, Transport } from './types.js';

/** One end of an in-process link (see {@link createLinkPair}). */
export class LinkTransport implements Transport {
  readonly #events = new _TransportEvents();
  readonly #name: string;
  #peer: LinkTransport | undefined;

  /** @internal use {@link createLinkPair} */
  constructor(name: string) {
    this.#name = name;
  }

  /** The name given to this end. */
  get name(): string {
    return this.#name;
  }

  get isOpen(): boolean {
    return !this.#events.closed;
  }

  /** @internal */
  _connect(peer: LinkTransport): void {
    this.#peer = peer;
  }

  /**
   * Delivers a copy of `bytes` to the other end on a later tick.
   * @throws TypeError when bytes is not a Uint8Array
   * @throws TransportClosedError / DeviceDisconnectedError when this end is closed
   */
  async send(bytes: Uint8Array): Promise<void> {
    abytes(bytes, 'bytes');
    this.#assertOpen();
    const copy = bytes.slice();
    const peer = this.#peer;
    setImmediate(() => peer?._deliver(copy));
  }

  /** @internal */
  _deliver(bytes: Uint8Array): void {
    this.#events.emitData(bytes);
  }

  onData(listener: DataListener): () => void {
    return this.#events.onData(listener);
  }

  onClose(listener: CloseListener): () => void {
    return this.#events.onClose(listener);
  }

  /** Closes this end (reason undefined); the other end closes with a DeviceDisconnectedError. Idempotent. */
  async close(): Promise<void> {
    if (this.#events.closed) return;
    this.#events.emitClose(undefined);
    this.#peer?._lose(new DeviceDisconnectedError(`link "${this.#peer.name}": the other end ("${this.#name}") closed`));
  }

  /** Simulates an unplug: both ends close with a DeviceDisconnectedError. Idempotent. */
  disconnect(): void {
    this._lose(new DeviceDisconnectedError(`link "${this.#name}": disconnected`));
    const peer = this.#peer;
    peer?._lose(new DeviceDisconnectedError(`link "${peer.name}": disconnected`));
  }

  /** @internal */
  _lose(reason: DeviceError): void {
    this.#events.emitClose(reason);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertOpen(): void {
    if (!this.#events.closed) return;
    const reason = this.#events.reason;
    if (reason !== undefined) throw new DeviceDisconnectedError(`link "${this.#name}" is disconnected`, { cause: reason });
    throw new TransportClosedError(`link "${this.#name}" is closed`);
  }
}

/**
 * Creates two connected in-process transports.
 * @param names names of the two ends, used in error messages (default "host" and "device")
 * @returns [host end, device end]
 * @throws TypeError when a name is not a string
 */
export function createLinkPair(names: readonly [string, string] = ['host', 'device']): [LinkTransport, LinkTransport] {
  const [a, b] = names;
  if (typeof a !== 'string' || typeof b !== 'string') throw new TypeError('"names" expected two strings');
  const left = new LinkTransport(a);
  const right = new LinkTransport(b);
  left._connect(right);
  right._connect(left);
  return [left, right];
}
