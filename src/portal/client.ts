/**
 * The Mesh portal client (docs/portal.md "Client"): one method per portal transaction, over
 * HTTP/1.1 + JSON (`POST /.well-known/mmm/`), used by the admin, federation and bench commands.
 *
 * Safety of retries: every call gets a fresh RequestId (a nonce UDF) which is reused for each of
 * its retries, and the portal stores each processed RequestId with its response — so a request
 * whose response was lost is retried without repeating its effect. Network errors, timeouts, 5xx
 * and 429 are retried with exponential backoff and full jitter (429/503 honour `Retry-After`);
 * any other 4xx is a typed {@link PortalError} at once, carrying the HTTP `status` and the
 * portal's `Code`.
 *
 * Also here: the helpers that build the signed request bodies an administrator or a device sends
 * ({@link signPendingQuery}, {@link signConnectionResult}, {@link signConnectionRequest}).
 *
 * Transport: node:http / node:https (not the global fetch, whose TLS trust cannot be given a CA
 * without undici internals), a keep-alive agent per client, one AbortController timeout per
 * attempt covering connect, request and the whole response body.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { aint, aobject, astring, b64u, describe, fromUtf8, utf8 } from '../core/bytes.js';
import { ErrorCode, MeshkitError, type ErrorCodeValue } from '../core/errors.js';
import { LOG_HEAD_CTY, verifyInclusion, type LogEntry, type LogHeadPayload } from '../core/hashlog.js';
import { parseJsonStrict, signJws, verifyJws, type JwsGeneral } from '../core/jose.js';
import type { PublicKey } from '../core/keys.js';
import { readProfile, type SignedProfile } from '../core/profiles.js';
import type { PublicJwk, Signer } from '../core/signer.js';
import { udfNonce } from '../core/udf.js';

/** The path every transaction is posted to. */
export const PORTAL_PATH = '/.well-known/mmm/';
/** The health check path. */
export const PORTAL_HEALTH_PATH = '/.well-known/mmm/health';
/** The `Status` of a successful response body (2017 convention). */
export const PORTAL_STATUS_OK = 201;

/** The portal error codes by HTTP status (docs/portal.md "Wire format"). */
const CODE_BY_STATUS: Record<number, ErrorCodeValue> = {
  400: ErrorCode.PORTAL_BAD_REQUEST,
  401: ErrorCode.PORTAL_SIGNATURE,
  403: ErrorCode.PORTAL_UNAUTHORISED,
  404: ErrorCode.PORTAL_NOT_FOUND,
  405: ErrorCode.PORTAL_METHOD,
  408: ErrorCode.PORTAL_TIMEOUT,
  409: ErrorCode.PORTAL_CONFLICT,
  413: ErrorCode.PORTAL_TOO_LARGE,
  415: ErrorCode.PORTAL_MEDIA_TYPE,
  429: ErrorCode.PORTAL_QUOTA,
  500: ErrorCode.PORTAL_INTERNAL,
  503: ErrorCode.PORTAL_UNAVAILABLE,
};
const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/**
 * A failed portal call. `status` is the HTTP status (undefined when no response came: network
 * error or timeout, code `ERR_PORTAL_UNAVAILABLE`); `portalCode` is the `Code` member of the
 * portal's error body as sent (`code` is that value when it is a meshkit code, else the code of
 * the status); `attempts` is how many times the request was sent.
 */
export class PortalError extends MeshkitError {
  readonly status: number | undefined;
  readonly portalCode: string | undefined;
  readonly transaction: string;
  readonly requestId: string;
  readonly attempts: number;
  /** Seconds from a Retry-After header, when the portal sent one. */
  readonly retryAfter: number | undefined;
  constructor(
    code: ErrorCodeValue,
    message: string,
    fields: { status?: number; portalCode?: string; transaction: string; requestId: string; attempts: number; retryAfter?: number; cause?: unknown },
  ) {
    super(code, message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.status = fields.status;
    this.portalCode = fields.portalCode;
    this.transaction = fields.transaction;
    this.requestId = fields.requestId;
    this.attempts = fields.attempts;
    this.retryAfter = fields.retryAfter;
  }
}

/** The meshkit error code for an HTTP status and the portal's `Code` member. */
export function portalErrorCode(status: number | undefined, portalCode?: string): ErrorCodeValue {
  if (portalCode !== undefined && portalCode.startsWith('ERR_PORTAL_') && KNOWN_CODES.has(portalCode)) return portalCode as ErrorCodeValue;
  if (status === undefined) return ErrorCode.PORTAL_UNAVAILABLE;
  return CODE_BY_STATUS[status] ?? (status >= 500 ? ErrorCode.PORTAL_INTERNAL : status >= 400 ? ErrorCode.PORTAL_BAD_REQUEST : ErrorCode.PORTAL_PROTOCOL);
}

/** Options of {@link PortalClient}. */
export interface PortalClientOptions {
  /** Per attempt: connect + request + whole response (default 10 000 ms). */
  timeoutMs?: number;
  /** Retries after the first attempt (default 3). */
  retries?: number;
  /** PEM CA certificate(s) to trust for an https portal with a self-signed certificate. */
  ca?: string | Uint8Array;
  /** A file holding the PEM CA certificate(s) (read once, at construction). */
  caFile?: string;
  /** First backoff step (default 100 ms); step n waits a random time in [0, min(max, base·2ⁿ)]. */
  backoffMs?: number;
  /** Backoff cap (default 5 000 ms). */
  maxBackoffMs?: number;
  /** A Retry-After longer than this is not waited for: the 429/503 is thrown (default 30 000 ms). */
  maxRetryAfterMs?: number;
  /** Largest response body accepted (default 64 MiB). */
  maxResponseBytes?: number;
  /** Maximum sockets to the portal (default 64). */
  maxSockets?: number;
  /** Called before every attempt (for logging and tests). */
  onAttempt?: (info: { transaction: string; requestId: string; attempt: number }) => void;
}

/** Per-call options. */
export interface CallOptions {
  /** The RequestId to use (default: a fresh `udfNonce()`); reuse one only for the very same body. */
  requestId?: string;
}

/** A response body's inner object; every response has Status and StatusDescription. */
export interface PortalResponse {
  Status: number;
  StatusDescription: string;
  [member: string]: unknown;
}
export interface HelloResponse extends PortalResponse { Version: string; Portal: string; LogHead: JwsGeneral | null }
export interface CreateAccountResponse extends PortalResponse { Account: string; Identifier: string }
export interface PublishResponse extends PortalResponse { Identifier: string; Type: string; Sequence: number; LogIndex: number }
export interface GetResponse extends PortalResponse { Entries: SignedProfile[] }
export interface ConnectStartResponse extends PortalResponse { RequestUDF: string; ServerNonce: string; Witness: string }
export interface PendingConnection { RequestUDF: string; SignedRequest: JwsGeneral; ServerNonce: string; Witness: string; Received: string }
export interface ConnectPendingResponse extends PortalResponse { Pending: PendingConnection[] }
export interface ConnectCompleteResponse extends PortalResponse { RequestUDF: string; Result: string }
export interface ConnectStatusResponse extends PortalResponse { Result: 'Pending' | JwsGeneral }
export interface EscrowPutResponse extends PortalResponse { Identifier: string }
export interface EscrowGetResponse extends PortalResponse { Entry: unknown }
export interface LogHeadResponse extends PortalResponse { Head: JwsGeneral | null; Count: number }
export interface LogProofResponse extends PortalResponse { Index: number; Entry: string; Proof: string[]; Head: JwsGeneral }
export interface LogEntriesResponse extends PortalResponse { Lines: string[] }
export interface FederationHeadsResponse extends PortalResponse { Head: JwsGeneral | null; Known: Record<string, JwsGeneral> }

interface RawResponse { status: number; text: string; retryAfter: number | undefined }

/** Thrown inside an attempt for a failure worth retrying. */
class Retryable extends Error {
  constructor(message: string, readonly status?: number, readonly retryAfter?: number, readonly portalCode?: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const when = Date.parse(v);
  return Number.isNaN(when) ? undefined : Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function checkPositive(value: number | undefined, field: string, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`"${field}" expected a number, got ${describe(value)}`);
  if (value < min || !Number.isFinite(value)) throw new RangeError(`"${field}" expected a finite number ≥ ${min}, got ${value}`);
  return value;
}

/**
 * A client of one portal.
 *
 * @example
 *   const portal = new PortalClient('https://portal.example:8443', { caFile: 'portal-ca.pem' });
 *   await portal.createAccount('alice@portal.example', signedPersonal);
 */
export class PortalClient {
  readonly baseUrl: URL;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #maxRetryAfterMs: number;
  readonly #maxResponseBytes: number;
  readonly #agent: http.Agent;
  readonly #onAttempt: PortalClientOptions['onAttempt'];

  /**
   * @param baseUrl `http://HOST:PORT` or `https://HOST:PORT` (a path, if any, is replaced by the portal path).
   * @throws TypeError / RangeError for a bad URL or option; MeshkitError `ERR_IO` if `caFile` cannot be read.
   */
  constructor(baseUrl: string | URL, opts: PortalClientOptions = {}) {
    let url: URL;
    try {
      url = new URL(typeof baseUrl === 'string' ? astring(baseUrl, 'baseUrl') : baseUrl);
    } catch (e) {
      if (e instanceof TypeError && !(e as { code?: string }).code?.startsWith('ERR_INVALID_URL')) throw e;
      throw new RangeError(`"baseUrl" is not a URL: ${String(baseUrl)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RangeError(`"baseUrl" must be http: or https:, got ${url.protocol}`);
    aobject(opts, 'opts');
    this.baseUrl = url;
    this.timeoutMs = checkPositive(opts.timeoutMs, 'timeoutMs', 10_000, 1);
    this.retries = aint(opts.retries ?? 3, 'retries', 0, 100);
    this.#backoffMs = checkPositive(opts.backoffMs, 'backoffMs', 100);
    this.#maxBackoffMs = checkPositive(opts.maxBackoffMs, 'maxBackoffMs', 5_000);
    this.#maxRetryAfterMs = checkPositive(opts.maxRetryAfterMs, 'maxRetryAfterMs', 30_000);
    this.#maxResponseBytes = checkPositive(opts.maxResponseBytes, 'maxResponseBytes', 64 * 1024 * 1024, 1);
    const maxSockets = aint(opts.maxSockets ?? 64, 'maxSockets', 1);
    this.#onAttempt = opts.onAttempt;
    let ca: string | Buffer | undefined;
    if (opts.ca !== undefined) ca = typeof opts.ca === 'string' ? opts.ca : Buffer.from(opts.ca);
    if (opts.caFile !== undefined) {
      astring(opts.caFile, 'caFile');
      try {
        ca = readFileSync(opts.caFile);
      } catch (e) {
        throw new MeshkitError(ErrorCode.IO, `cannot read CA file ${opts.caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
      }
    }
    this.#agent = url.protocol === 'https:'
      ? new https.Agent({ keepAlive: true, maxSockets, ...(ca === undefined ? {} : { ca }) })
      : new http.Agent({ keepAlive: true, maxSockets });
  }

  /** Closes idle keep-alive connections. The client must not be used afterwards. */
  close(): void {
    this.#agent.destroy();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Sends one transaction `{"<name>Request": {RequestId, …members}}` and returns the inner object
   * of `{"<name>Response": …}`. Retries as the module header says.
   *
   * @throws PortalError — the portal's error (4xx at once; 5xx/429 after the retries), or
   *   `ERR_PORTAL_UNAVAILABLE` when no response came, or `ERR_PORTAL_PROTOCOL` for a response that is
   *   not the expected `{"<name>Response": {"Status": 201, …}}`.
   * @throws TypeError for a bad name or members.
   */
  async request<T extends PortalResponse = PortalResponse>(name: string, members: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<T> {
    astring(name, 'name');
    if (!/^[A-Z][A-Za-z]*$/.test(name)) throw new RangeError(`"name" expected a transaction name like "Publish", got ${JSON.stringify(name)}`);
    aobject(members, 'members');
    const requestId = opts.requestId ?? udfNonce();
    astring(requestId, 'requestId');
    const body = JSON.stringify({ [`${name}Request`]: { RequestId: requestId, ...members } });
    let last: Retryable | undefined;
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      if (attempt > 0) {
        const cap = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** (attempt - 1));
        const jitter = Math.random() * cap;
        const retryAfterMs = (last?.retryAfter ?? 0) * 1000;
        await sleep(Math.max(jitter, retryAfterMs));
      }
      this.#onAttempt?.({ transaction: name, requestId, attempt });
      let raw: RawResponse;
      try {
        raw = await this.#send('POST', PORTAL_PATH, body);
      } catch (e) {
        if (e instanceof Retryable) {
          last = e;
          continue;
        }
        throw e;
      }
      if (raw.status === 200) return this.#parseSuccess<T>(name, raw.text, requestId, attempt + 1);
      const err = parseErrorBody(raw.text);
      const retryable = raw.status >= 500 || raw.status === 429;
      const tooLong = raw.retryAfter !== undefined && raw.retryAfter * 1000 > this.#maxRetryAfterMs;
      if (!retryable || tooLong || attempt === this.retries) {
        throw new PortalError(portalErrorCode(raw.status, err.code), `portal ${name}: ${raw.status} ${err.description}`, {
          status: raw.status,
          ...(err.code === undefined ? {} : { portalCode: err.code }),
          transaction: name,
          requestId,
          attempts: attempt + 1,
          ...(raw.retryAfter === undefined ? {} : { retryAfter: raw.retryAfter }),
        });
      }
      last = new Retryable(`${raw.status} ${err.description}`, raw.status, raw.retryAfter, err.code);
    }
    throw new PortalError(ErrorCode.PORTAL_UNAVAILABLE, `portal ${name}: no response from ${this.baseUrl.origin} after ${this.retries + 1} attempts (${last?.message ?? 'unknown'})`, {
      transaction: name,
      requestId,
      attempts: this.retries + 1,
      ...(last?.cause === undefined ? {} : { cause: last.cause }),
    });
  }

  #parseSuccess<T>(name: string, text: string, requestId: string, attempts: number): T {
    const protocol = (what: string, cause?: unknown): never => {
      throw new PortalError(ErrorCode.PORTAL_PROTOCOL, `portal ${name}: ${what}`, {
        status: 200,
        transaction: name,
        requestId,
        attempts,
        ...(cause === undefined ? {} : { cause }),
      });
    };
    let value: unknown;
    try {
      value = parseJsonStrict(text);
    } catch (e) {
      return protocol('response is not strict JSON', e);
    }
    const inner = (value as Record<string, unknown> | null)?.[`${name}Response`];
    if (typeof value !== 'object' || value === null || Object.keys(value).length !== 1 || typeof inner !== 'object' || inner === null || Array.isArray(inner)) {
      return protocol(`response is not {"${name}Response": {…}}`);
    }
    const status = (inner as { Status?: unknown }).Status;
    if (status !== PORTAL_STATUS_OK) protocol(`response Status is ${String(status)}, expected ${PORTAL_STATUS_OK}`);
    return inner as T;
  }

  /** One HTTP exchange; network failures and timeouts become {@link Retryable}. */
  #send(method: 'GET' | 'POST', path: string, body?: string): Promise<RawResponse> {
    return new Promise<RawResponse>((resolve, reject) => {
      const controller = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, this.timeoutMs);
      const done = (fn: () => void): void => {
        clearTimeout(timer);
        fn();
      };
      const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
      const mod = this.baseUrl.protocol === 'https:' ? https : http;
      const req = mod.request(new URL(path, this.baseUrl), {
        method,
        agent: this.#agent,
        signal: controller.signal,
        headers: {
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length }),
        },
      });
      const fail = (e: unknown): void => done(() => {
        const why = timedOut ? `timed out after ${this.timeoutMs} ms` : (e as NodeJS.ErrnoException).code ?? (e as Error).message;
        // TLS trust failures will not heal by retrying: report them at once.
        const code = (e as NodeJS.ErrnoException).code ?? '';
        if (!timedOut && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT/.test(code)) {
          reject(new MeshkitError(ErrorCode.PORTAL_UNAVAILABLE, `portal ${this.baseUrl.origin}: TLS certificate not trusted (${code}); give the portal's CA with --ca / caFile`, { cause: e }));
          return;
        }
        reject(new Retryable(why, undefined, undefined, undefined, { cause: e }));
      });
      req.on('error', fail);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > this.#maxResponseBytes) {
            res.destroy(new Error(`response larger than ${this.#maxResponseBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', fail);
        res.on('aborted', () => fail(new Error('response aborted')));
        res.on('end', () => {
          if (!res.complete) {
            fail(new Error('response cut short'));
            return;
          }
          done(() => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), retryAfter: parseRetryAfter(res.headers['retry-after']) }));
        });
      });
      req.end(payload);
    });
  }

  /**
   * `GET /.well-known/mmm/health` (no retries).
   * @throws PortalError `ERR_PORTAL_UNAVAILABLE` when the portal does not answer `{"ok":true}`.
   */
  async health(): Promise<boolean> {
    try {
      const raw = await this.#send('GET', PORTAL_HEALTH_PATH);
      const value = raw.status === 200 ? (JSON.parse(raw.text) as { ok?: unknown }) : undefined;
      if (value?.ok === true) return true;
      throw new Retryable(`health answered ${raw.status}`);
    } catch (e) {
      if (e instanceof MeshkitError) throw e;
      throw new PortalError(ErrorCode.PORTAL_UNAVAILABLE, `portal ${this.baseUrl.origin} is not healthy: ${(e as Error).message}`, {
        transaction: 'health',
        requestId: '',
        attempts: 1,
        cause: e,
      });
    }
  }

  /** `Hello`: version, portal key UDF, latest signed log head. @throws PortalError */
  hello(opts?: CallOptions): Promise<HelloResponse> {
    return this.request<HelloResponse>('Hello', {}, opts);
  }

  /**
   * `CreateAccount`: `account` (`user@portal`) with its signed Personal Profile (which embeds the Master).
   * @throws TypeError for bad arguments; PortalError (409 account exists, 401/403 bad profile, 429 quota).
   */
  createAccount(account: string, signedPersonal: SignedProfile, opts?: CallOptions): Promise<CreateAccountResponse> {
    astring(account, 'account');
    aobject(signedPersonal, 'signedPersonal');
    return this.request<CreateAccountResponse>('CreateAccount', { Account: account, Profile: signedPersonal }, opts);
  }

  /**
   * `Publish`: a signed profile of any type for `account` (a new version must have a higher Sequence).
   * @throws TypeError for bad arguments; PortalError (409 stale Sequence / replay, 401, 403, 429).
   */
  publish(account: string, signed: SignedProfile, opts?: CallOptions): Promise<PublishResponse> {
    astring(account, 'account');
    aobject(signed, 'signed');
    return this.request<PublishResponse>('Publish', { Account: account, Entry: signed }, opts);
  }

  /**
   * `Get`: current signed profiles by identifier and/or account, optionally of one type.
   * @throws TypeError / RangeError when neither identifier nor account is given; PortalError.
   */
  get(query: { identifier?: string; account?: string; type?: string }, opts?: CallOptions): Promise<GetResponse> {
    aobject(query, 'query');
    if (query.identifier === undefined && query.account === undefined) throw new RangeError('"query" needs an identifier or an account');
    const members: Record<string, unknown> = {};
    if (query.identifier !== undefined) members['Identifier'] = astring(query.identifier, 'query.identifier');
    if (query.account !== undefined) members['Account'] = astring(query.account, 'query.account');
    if (query.type !== undefined) members['Type'] = astring(query.type, 'query.type');
    return this.request<GetResponse>('Get', members, opts);
  }

  /**
   * `ConnectStart`: a device posts its signed connection request (see {@link signConnectionRequest}).
   * @throws TypeError; PortalError.
   */
  connectStart(account: string, signedRequest: JwsGeneral, opts?: CallOptions): Promise<ConnectStartResponse> {
    astring(account, 'account');
    aobject(signedRequest, 'signedRequest');
    return this.request<ConnectStartResponse>('ConnectStart', { Account: account, SignedRequest: signedRequest }, opts);
  }

  /**
   * `ConnectPending`: the pending connection requests, asked with an administration key.
   * @throws TypeError; PortalError (401/403 for a key that is not an administration key of the account).
   */
  async connectPending(account: string, adminSigner: Signer, opts?: CallOptions): Promise<ConnectPendingResponse> {
    const adminRequest = await signPendingQuery(account, adminSigner);
    return this.request<ConnectPendingResponse>('ConnectPending', { Account: account, AdminRequest: adminRequest }, opts);
  }

  /**
   * `ConnectComplete`: accept or refuse a pending request; `witness` must be the one the device showed.
   * @throws TypeError / RangeError; PortalError (409 witness mismatch).
   */
  async connectComplete(
    account: string,
    requestUdf: string,
    result: 'Accepted' | 'Refused',
    witness: string,
    adminSigner: Signer,
    opts?: CallOptions,
  ): Promise<ConnectCompleteResponse> {
    astring(account, 'account');
    const signed = await signConnectionResult(requestUdf, result, witness, adminSigner);
    return this.request<ConnectCompleteResponse>('ConnectComplete', { Account: account, Result: signed }, opts);
  }

  /** `ConnectStatus`: `Pending` or the signed result. @throws TypeError; PortalError (404). */
  connectStatus(account: string, requestUdf: string, opts?: CallOptions): Promise<ConnectStatusResponse> {
    astring(account, 'account');
    astring(requestUdf, 'requestUdf');
    return this.request<ConnectStatusResponse>('ConnectStatus', { Account: account, RequestUDF: requestUdf }, opts);
  }

  /**
   * `EscrowPut`: an offline escrow blob (`{"OfflineEscrowEntry": {Identifier, EncryptedData}}`), anonymous.
   * @throws TypeError; PortalError (409 a different blob with that id).
   */
  escrowPut(entry: object, opts?: CallOptions): Promise<EscrowPutResponse> {
    aobject(entry, 'entry');
    return this.request<EscrowPutResponse>('EscrowPut', { Entry: entry }, opts);
  }

  /** `EscrowGet`: the blob by id. @throws TypeError; PortalError (404). */
  escrowGet(id: string, opts?: CallOptions): Promise<EscrowGetResponse> {
    astring(id, 'id');
    return this.request<EscrowGetResponse>('EscrowGet', { Identifier: id }, opts);
  }

  /** `LogHead`: the latest signed head and the entry count. @throws PortalError */
  logHead(opts?: CallOptions): Promise<LogHeadResponse> {
    return this.request<LogHeadResponse>('LogHead', {}, opts);
  }

  /**
   * `LogProof`: the inclusion proof of the entry at `target` (an index) or of the state-changing
   * transaction that had RequestId `target` (a string: LogProof is read-only, so it is sent as this
   * call's own RequestId, which is how the portal reads it). Check the result with
   * {@link verifyLogProof}.
   * @throws TypeError / RangeError; PortalError (404).
   */
  logProof(target: number | string): Promise<LogProofResponse> {
    if (typeof target === 'number') return this.request<LogProofResponse>('LogProof', { Index: aint(target, 'target', 0) });
    return this.request<LogProofResponse>('LogProof', {}, { requestId: astring(target, 'target') });
  }

  /** `LogEntries`: `count` (1…1000) log lines from index `from`. @throws RangeError; PortalError. */
  logEntries(from: number, count: number, opts?: CallOptions): Promise<LogEntriesResponse> {
    aint(from, 'from', 0);
    aint(count, 'count', 1, 1000);
    return this.request<LogEntriesResponse>('LogEntries', { From: from, Count: count }, opts);
  }

  /** `FederationHeads`: give the portal signed heads of peers; get its own head and what it knows. @throws PortalError */
  federationHeads(heads: JwsGeneral[] = [], opts?: CallOptions): Promise<FederationHeadsResponse> {
    if (!Array.isArray(heads)) throw new TypeError(`"heads" expected an array of signed heads, got ${describe(heads)}`);
    return this.request<FederationHeadsResponse>('FederationHeads', heads.length === 0 ? {} : { Heads: heads }, opts);
  }
}

function parseErrorBody(text: string): { code: string | undefined; description: string } {
  try {
    const value = JSON.parse(text) as { Error?: { Code?: unknown; StatusDescription?: unknown } } | null;
    const e = value?.Error;
    const code = typeof e?.Code === 'string' ? e.Code : undefined;
    const description = typeof e?.StatusDescription === 'string' ? e.StatusDescription.split('\n')[0] ?? '' : text.slice(0, 200);
    return { code, description };
  } catch {
    return { code: undefined, description: text.slice(0, 200).replace(/\s+/g, ' ') };
  }
}

/**
 * Checks a `LogProof` answer offline: the head's signature under the portal key (cty "LogHead"),
 * then the linked chain from the entry to that head (hashlog `verifyInclusion`).
 *
 * @param portalKey the portal's public key (its UDF is the `Portal` member of Hello).
 * @returns the proven entry and the signed head.
 * @throws TypeError for bad arguments; LogError `ERR_LOG_BROKEN` if the chain does not hold;
 *   JoseError / LogError `ERR_LOG_SIGNATURE` if the head is not signed by the portal key.
 */
export async function verifyLogProof(proof: LogProofResponse, portalKey: PublicJwk | PublicKey): Promise<{ entry: LogEntry; head: LogHeadPayload }> {
  aobject(proof, 'proof');
  aobject(portalKey, 'portalKey');
  const v = await verifyJws(proof.Head, () => portalKey);
  if (v.protectedHeader.cty !== LOG_HEAD_CTY) throw new MeshkitError(ErrorCode.LOG_SIGNATURE, `the proof's head has cty ${String(v.protectedHeader.cty)}, not ${LOG_HEAD_CTY}`);
  const parsed = parseJsonStrict(fromUtf8(v.payload)) as { LogHead?: LogHeadPayload } | null;
  const head = parsed?.LogHead;
  if (head === undefined || typeof head !== 'object') throw new MeshkitError(ErrorCode.LOG_SIGNATURE, 'the proof\'s head payload is not {"LogHead": …}');
  const entry = verifyInclusion(astring(proof.Entry, 'proof.Entry'), proof.Proof, head);
  return { entry, head };
}

// ---------------------------------------------------------------------------------------------
// Signed request bodies
// ---------------------------------------------------------------------------------------------


/**
 * The `AdminRequest` of `ConnectPending`: a JWS (cty "PendingQuery") by an administration key
 * over `{"PendingQuery": {"Account", "Time"}}`.
 *
 * @throws TypeError for bad arguments; whatever the signer throws.
 */
export async function signPendingQuery(account: string, adminSigner: Signer, time: Date = new Date()): Promise<JwsGeneral> {
  astring(account, 'account');
  aobject(adminSigner, 'adminSigner');
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw new TypeError('"time" expected a valid Date');
  return signJws(utf8(JSON.stringify({ PendingQuery: { Account: account, Time: time.toISOString() } })), [adminSigner], { cty: 'PendingQuery' });
}

/**
 * The `Result` of `ConnectComplete`: a JWS (cty "ConnectionResult") by an administration key over
 * `{"ConnectionResult": {"RequestUDF", "Result", "Witness"}}`.
 *
 * @throws TypeError / RangeError for bad arguments (result not Accepted/Refused); whatever the signer throws.
 */
export async function signConnectionResult(requestUdf: string, result: 'Accepted' | 'Refused', witness: string, adminSigner: Signer): Promise<JwsGeneral> {
  astring(requestUdf, 'requestUdf');
  if (result !== 'Accepted' && result !== 'Refused') throw new RangeError(`"result" expected "Accepted" or "Refused", got ${describe(result)}`);
  astring(witness, 'witness');
  aobject(adminSigner, 'adminSigner');
  const payload = { ConnectionResult: { RequestUDF: requestUdf, Result: result, Witness: witness } };
  return signJws(utf8(JSON.stringify(payload)), [adminSigner], { cty: 'ConnectionResult' });
}

/**
 * The `SignedRequest` of `ConnectStart`: a JWS (cty "ConnectionRequest") by the device's signature
 * key over `{"ConnectionRequest": {"Account", "ParentUDF", "Device", "ClientNonce"}}`.
 *
 * @param masterId the account's Master Profile identifier (ParentUDF).
 * @param signedDevice the device's self-signed Device Profile (signed by `deviceSigner`).
 * @param clientNonce 16 bytes (default: random); the device keeps it to check the witness.
 * @returns the JWS and the client nonce.
 * @throws TypeError / RangeError for bad arguments; ProfileError if `signedDevice` is not a Device
 *   Profile of `deviceSigner`'s key; whatever the signer throws.
 */
export async function signConnectionRequest(
  account: string,
  masterId: string,
  signedDevice: SignedProfile,
  deviceSigner: Signer,
  clientNonce: Uint8Array = new Uint8Array(randomBytes(16)),
): Promise<{ signedRequest: JwsGeneral; clientNonce: Uint8Array }> {
  astring(account, 'account');
  astring(masterId, 'masterId');
  aobject(deviceSigner, 'deviceSigner');
  if (!(clientNonce instanceof Uint8Array)) throw new TypeError(`"clientNonce" expected Uint8Array, got ${describe(clientNonce)}`);
  if (clientNonce.length !== 16) throw new RangeError(`"clientNonce" expected Uint8Array of length 16, got length=${clientNonce.length}`);
  const device = readProfile(signedDevice, 'DeviceProfile');
  if (device.profile.DeviceSignatureKey.UDF !== deviceSigner.keyId) {
    throw new RangeError(`"deviceSigner" (${deviceSigner.keyId}) is not the signature key of the Device Profile (${device.profile.DeviceSignatureKey.UDF})`);
  }
  const payload = { ConnectionRequest: { Account: account, ParentUDF: masterId, Device: signedDevice, ClientNonce: b64u(clientNonce) } };
  const signedRequest = await signJws(utf8(JSON.stringify(payload)), [deviceSigner], { cty: 'ConnectionRequest' });
  return { signedRequest, clientNonce: new Uint8Array(clientNonce) };
}

/** Decodes (does not verify) the payload of a JWS made by the helpers above. @throws MeshkitError ERR_JSON_INVALID */
export function decodeSignedRequest(jws: JwsGeneral): Record<string, unknown> {
  aobject(jws, 'jws');
  const text = fromUtf8(Buffer.from(astring(jws.payload, 'jws.payload'), 'base64url'));
  return aobject(parseJsonStrict(text), 'payload');
}
