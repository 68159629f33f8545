/**
 * A TypeScript device stand-in for session and transport tests: decodes request frames from a transport and
 * answers through a handler. Records every request it saw (type, seq) so tests can check retries reuse the seq.
 */
import { decodeCbor, encodeCbor } from '../../src/device/cbor.js';
import type { CborInput, CborValue } from '../../src/device/cbor.js';
import { encodeFrames, FrameDecoder } from '../../src/device/framing.js';
import type { Transport } from '../../src/device/transport/types.js';

export interface SeenRequest {
  readonly type: number;
  readonly seq: number;
  readonly payload: CborValue;
}

/** What the handler answers: a reply, raw wire bytes to send instead, or nothing (drop the request). */
export type HandlerResult = { type: number; payload: CborInput; delayMs?: number } | { wire: Uint8Array } | undefined;

export interface Responder {
  readonly seen: SeenRequest[];
  stop(): void;
}

/** Answers every request arriving on `device` with `handler`'s result (framed with the request's seq). */
export function respond(device: Transport, handler: (request: SeenRequest, index: number) => HandlerResult): Responder {
  const decoder = new FrameDecoder();
  const seen: SeenRequest[] = [];
  const unsubscribe = device.onData((bytes) => {
    for (const event of decoder.push(bytes)) {
      if (event.kind !== 'message') continue;
      const request = { type: event.message.type, seq: event.message.seq, payload: decodeCbor(event.message.payload) };
      seen.push(request);
      const result = handler(request, seen.length - 1);
      if (result === undefined) continue;
      const wire = 'wire' in result ? result.wire : concat(encodeFrames(result.type, request.seq, encodeCbor(result.payload)));
      const send = (): void => void device.send(wire).catch(() => undefined);
      const delay = 'delayMs' in result ? result.delayMs : undefined;
      if (delay === undefined) send();
      else setTimeout(send, delay);
    }
  });
  return { seen, stop: unsubscribe };
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
