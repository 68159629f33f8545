/**
 * The portal's HTTP(S) server (docs/portal.md "Wire format", "Server and CLI"): node:http / node:https,
 * `POST /.well-known/mmm/` with a JSON body, `GET /.well-known/mmm/health`.
 *
 * Bounded input: a Content-Length above `maxBody` is refused with 413 before any of the body is read, and a
 * chunked body is counted as it arrives and refused with 413 as soon as it passes the limit (the connection
 * is then closed, so the rest is never buffered). Content-Type must be application/json (415). Bodies are
 * strict UTF-8 + strict JSON (duplicate members refused, 400). Header and request timeouts bound slow clients.
 *
 * Plain HTTP is only allowed on a loopback address. `close()` shuts down gracefully: stop accepting, let the
 * requests in flight finish, sign the log head, close storage.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { isIP } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import type { Signer } from '../core/signer.js';
import { Notary } from './notary.js';
import type { PortalStorage } from './storage.js';
import {
  DEFAULT_QUOTAS,
  errorBody,
  handleBody,
  type PortalQuotas,
  type TransactionContext,
  type TransactionResult,
} from './transactions.js';

/** The request path of transactions. */
export const PORTAL_PATH = '/.well-known/mmm/';
/** The health path. */
export const HEALTH_PATH = '/.well-known/mmm/health';
/** Default maximum body size: 1 MiB. */
export const DEFAULT_MAX_BODY = 1024 * 1024;

/** Options of {@link startPortalServer}. */
export interface PortalServerOptions {
  storage: PortalStorage;
  /** The portal key (Ed25519). */
  portalKey: Signer;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: any free port). */
  port?: number;
  /** PEM certificate chain and key; required unless `plainHttp`. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Serve plain HTTP (only on a loopback address). */
  plainHttp?: boolean;
  /** Maximum body size in bytes (default 1 MiB). */
  maxBody?: number;
  quotas?: Partial<PortalQuotas>;
  /** Sign a head every N entries (default 16) and every S seconds (default 10). */
  headEvery?: number;
  headSeconds?: number;
  /** Time to receive the request headers (default 10 s). */
  headersTimeoutMs?: number;
  /** Time to receive the whole request (default 30 s). */
  requestTimeoutMs?: number;
  /** Close storage on close() (default true). */
  closeStorage?: boolean;
  /** Clock (tests). */
  now?: () => Date;
  /** FederationHeads handler (src/portal/federation.ts). */
  federation?: TransactionContext['federation'];
  /** Where background failures (periodic head signing, internal errors) are reported (default: stderr). */
  onError?: (e: unknown) => void;
}

/** A running portal. */
export interface PortalServer {
  /** `http://HOST:PORT` or `https://HOST:PORT` (IPv6 hosts in brackets). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly notary: Notary;
  readonly server: Server;
  /** Graceful shutdown: stop accepting, finish in-flight requests, sign the head, close storage. Idempotent. */
  close(): Promise<void>;
}

/** True for 127.0.0.0/8, ::1, localhost and IPv4-mapped loopback. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

class BodyTooLarge extends Error {}
class BodyTimeout extends Error {}

/**
 * Reads a body of at most `max` bytes; rejects with BodyTooLarge as soon as it passes the limit and with
 * BodyTimeout when it has not arrived within `timeoutMs`.
 */
function readBody(req: IncomingMessage, max: number, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      chunks.length = 0;
      reject(new BodyTimeout());
    }, timeoutMs);
    timer.unref();
    req.on('close', () => clearTimeout(timer));
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > max) {
        done = true;
        chunks.length = 0;
        req.pause();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      clearTimeout(timer);
      if (done) return;
      done = true;
      const buf = Buffer.concat(chunks, size);
      resolve(new Uint8Array(buf.buffer, buf.byteOffset, buf.length));
    });
    req.on('error', (e) => {
      if (done) return;
      done = true;
      reject(e);
    });
    req.on('aborted', () => {
      if (done) return;
      done = true;
      reject(new Error('request aborted'));
    });
  });
}

function send(res: ServerResponse, result: TransactionResult, close = false): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(result.body);
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  };
  if (close) headers.Connection = 'close';
  res.writeHead(result.status, headers);
  res.end(text);
}

function refuse(status: number, message: string): TransactionResult {
  return { status, body: errorBody(status, message) };
}

/**
 * Starts a portal server.
 *
 * @throws TypeError / RangeError for bad options (plain HTTP on a non-loopback address, no TLS material, a
 *   bad max body or port).
 * @throws what `listen` throws (address in use, permission).
 */
export async function startPortalServer(opts: PortalServerOptions): Promise<PortalServer> {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" expected an object');
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 0;
  if (!Number.isSafeInteger(port) || port < 0 || port > 65535) throw new RangeError(`"port" expected 0…65535, got ${port}`);
  const maxBody = opts.maxBody ?? DEFAULT_MAX_BODY;
  if (!Number.isSafeInteger(maxBody) || maxBody < 64) throw new RangeError(`"maxBody" expected an integer ≥ 64, got ${maxBody}`);
  if (opts.plainHttp === true && !isLoopback(host)) throw new RangeError(`plain HTTP is allowed only on a loopback address, not ${host}`);
  if (opts.plainHttp !== true && opts.tls === undefined) throw new TypeError('"tls" (cert and key) is required unless "plainHttp" is set');
  const now = opts.now ?? (() => new Date());
  const onError = opts.onError ?? ((e: unknown) => process.stderr.write(`meshkit portal: ${e instanceof Error ? e.message : String(e)}\n`));
  const quotas: PortalQuotas = { ...DEFAULT_QUOTAS, ...opts.quotas };
  const requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  const headersTimeoutMs = Math.min(opts.headersTimeoutMs ?? 10_000, requestTimeoutMs);
  const notary = new Notary({
    storage: opts.storage, signer: opts.portalKey, now,
    headEvery: opts.headEvery ?? 16, headSeconds: opts.headSeconds ?? 10, onError,
  });
  // After a crash the log may be longer than its last signed head: sign it now.
  await notary.signHead();

  let inFlight = 0;
  let closing = false;
  let idle: (() => void) | undefined;

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (closing) {
      send(res, refuse(503, 'the portal is shutting down'), true);
      return;
    }
    if (path === HEALTH_PATH) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, refuse(405, `${req.method ?? '?'} is not allowed on ${HEALTH_PATH}`));
        return;
      }
      send(res, { status: 200, body: { ok: true } });
      return;
    }
    if (path !== PORTAL_PATH && path !== PORTAL_PATH.slice(0, -1)) {
      send(res, refuse(404, `no such path ${path.slice(0, 100)}`), true);
      return;
    }
    if (req.method !== 'POST') {
      send(res, refuse(405, `use POST on ${PORTAL_PATH}`), true);
      return;
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json') {
      send(res, refuse(415, `Content-Type must be application/json, got ${JSON.stringify(type ?? '')}`), true);
      return;
    }
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBody) {
      send(res, refuse(413, `the body (${declared} bytes) is larger than the limit of ${maxBody} bytes`), true);
      return;
    }
    let body: Uint8Array;
    try {
      body = await readBody(req, maxBody, requestTimeoutMs);
    } catch (e) {
      if (e instanceof BodyTooLarge) send(res, refuse(413, `the body is larger than the limit of ${maxBody} bytes`), true);
      else if (e instanceof BodyTimeout) send(res, refuse(408, `the request body did not arrive within ${requestTimeoutMs} ms`), true);
      else res.destroy();
      return;
    }
    const ctx: TransactionContext = {
      storage: opts.storage, portalKey: opts.portalKey, notary, now, quotas,
      clientAddress: req.socket.remoteAddress ?? 'unknown',
    };
    if (opts.federation !== undefined) ctx.federation = opts.federation;
    const result = await handleBody(body, ctx);
    if (result.status === 500) onError(new Error(`internal error answering a request: ${JSON.stringify(result.body)}`));
    send(res, result);
  };

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    inFlight += 1;
    res.on('close', () => {
      inFlight -= 1;
      if (inFlight === 0 && idle !== undefined) idle();
    });
    onRequest(req, res).catch((e: unknown) => {
      onError(e);
      send(res, refuse(500, 'internal error'), true);
    });
  };

  // Node checks header / request timeouts every connectionsCheckingInterval (default 30 s): check often.
  const serverOptions = { connectionsCheckingInterval: Math.min(1000, headersTimeoutMs), headersTimeout: headersTimeoutMs, requestTimeout: requestTimeoutMs };
  const server: Server = opts.plainHttp === true
    ? createHttpServer(serverOptions, listener)
    : (createHttpsServer({ ...serverOptions, cert: opts.tls?.cert, key: opts.tls?.key }, listener) as unknown as Server);
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 100;
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return socket.destroy();
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const text = JSON.stringify(errorBody(status, status === 408 ? 'request timeout' : 'malformed HTTP request'));
    socket.end(`HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
    return undefined;
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  notary.start();
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' || address.address.includes(':') ? `[${address.address}]` : address.address;
  const url = `${opts.plainHttp === true ? 'http' : 'https'}://${shownHost}:${address.port}`;

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) {
        await Promise.race([
          new Promise<void>((resolve) => {
            idle = resolve;
          }),
          new Promise<void>((resolve) => setTimeout(resolve, requestTimeoutMs).unref()),
        ]);
      }
      for (const s of sockets) s.destroy();
      await stopped;
      await notary.stop();
      try {
        await notary.signHead();
      } catch (e) {
        onError(e);
      }
      if (opts.closeStorage !== false) await opts.storage.close();
    })();
    return closed;
  };

  return { url, host: address.address, port: address.port, notary, server, close };
}
