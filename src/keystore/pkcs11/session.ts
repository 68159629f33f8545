/**
 * PKCS#11 sessions with guaranteed cleanup, and login.
 *
 * A {@link Pkcs11Session} closes exactly once (`close()` is idempotent, `await using` works), and
 * {@link withSession} closes in `finally`. Login is per token in PKCS#11 (all sessions of the
 * process share it), so `CKR_USER_ALREADY_LOGGED_IN` counts as success — once the PIN given matches the one
 * this process logged in with (compared in memory, the token is not asked). A wrong PIN is reported with
 * what the token says afterwards about the remaining tries (CK_TOKEN_INFO flags).
 *
 * PINs: the bytes are decoded as UTF-8 and handed to pkcs11js as a string (its API); the string
 * cannot be wiped, the bytes from a PIN function are wiped at once.
 *
 * {@link Pkcs11SessionPool}: a fixed set of sessions on one token for concurrent signing / deriving
 * through pkcs11js's asynchronous calls (libuv threadpool). One operation per session at a time
 * (PKCS#11 forbids concurrent use of a session), callers waiting for a free session are served
 * first in, first out, and `close()` waits for the operations in flight before closing the sessions.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type * as pkcs11js from 'pkcs11js';
import { abytes, wipe } from '../../core/bytes.js';
import { ErrorCode, KeyStoreError, Pkcs11Error, type PinStatus } from '../../core/errors.js';
import type { SecretSource } from '../software.js';
import { CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS, pk } from './constants.js';
import { call, ckrOf, isCkr, toPkcs11Error } from './errors.js';
import { readTokenInfo, type Pkcs11Module, type SlotInfo } from './module.js';

/** Reads a PIN from a source; the returned function-owned bytes are wiped after `use`. */
export async function withPin<T>(source: SecretSource, use: (pin: string) => T): Promise<T> {
  const owned = typeof source === 'function';
  let bytes: Uint8Array;
  try {
    bytes = owned ? await source() : source;
  } catch (e) {
    if (e instanceof KeyStoreError) throw e;
    throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `cannot get the PIN: ${(e as Error).message}`, { cause: e });
  }
  try {
    abytes(bytes, 'pin');
    if (bytes.length === 0) throw new KeyStoreError(ErrorCode.SECRET_SOURCE, 'the PIN is empty');
    return use(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } finally {
    if (owned) wipe(bytes);
  }
}

/** The sentence describing what the token reports after a failed login. */
export function pinStatusText(s: PinStatus | undefined): string {
  if (s === undefined) return 'the token status could not be read';
  if (s.locked) return 'the token reports the PIN is now locked (CKF_USER_PIN_LOCKED)';
  if (s.finalTry) return 'the token reports one try left before the PIN locks (CKF_USER_PIN_FINAL_TRY)';
  if (s.countLow) return 'the token reports a failed attempt since the last success (CKF_USER_PIN_COUNT_LOW); the number of tries left is not reported';
  return 'the token does not report how many tries are left';
}

/**
 * Builds the typed error for a failed C_Login, reading CK_TOKEN_INFO afterwards for the PIN flags.
 * @returns ERR_PKCS11_PIN_INCORRECT / ERR_PKCS11_PIN_LOCKED with `pinStatus`, or the mapped error.
 */
export function loginError(e: unknown, lib: pkcs11js.PKCS11, slot: Buffer, tokenLabel: string, userType = 'user'): Error {
  const ckr = ckrOf(e);
  let pinStatus: PinStatus | undefined;
  try {
    pinStatus = readTokenInfo(lib, slot).pinStatus;
  } catch {
    pinStatus = undefined;
  }
  if (isCkr(e, 'CKR_PIN_INCORRECT') || isCkr(e, 'CKR_PIN_LEN_RANGE') || isCkr(e, 'CKR_PIN_INVALID')) {
    const locked = pinStatus?.locked === true;
    return new Pkcs11Error(
      locked ? ErrorCode.PKCS11_PIN_LOCKED : ErrorCode.PKCS11_PIN_INCORRECT,
      `${userType} PIN incorrect for token ${JSON.stringify(tokenLabel)}; ${pinStatusText(pinStatus)}`,
      { ...(ckr === undefined ? {} : { ckr }), ckrName: 'CKR_PIN_INCORRECT', operation: 'C_Login', ...(pinStatus === undefined ? {} : { pinStatus }), cause: e },
    );
  }
  if (isCkr(e, 'CKR_PIN_LOCKED')) {
    return new Pkcs11Error(
      ErrorCode.PKCS11_PIN_LOCKED,
      `${userType} PIN of token ${JSON.stringify(tokenLabel)} is locked (CKR_PIN_LOCKED); the security officer must unblock it`,
      { ...(ckr === undefined ? {} : { ckr }), ckrName: 'CKR_PIN_LOCKED', operation: 'C_Login', ...(pinStatus === undefined ? {} : { pinStatus }), cause: e },
    );
  }
  return toPkcs11Error(e, 'C_Login', `${userType} login to token ${JSON.stringify(tokenLabel)}`, pinStatus);
}

/**
 * Per process: an HMAC (under a random per-process key) of the PIN each token was logged in with, so that a
 * second store on an already logged-in token can be held to the same PIN without asking the token.
 */
const loginVerifiers = new WeakMap<pkcs11js.PKCS11, Map<string, Buffer>>();
const VERIFIER_KEY = randomBytes(32);

function slotKey(slot: Buffer): string {
  return slot.toString('hex');
}

function pinVerifier(pin: string): Buffer {
  return createHmac('sha256', VERIFIER_KEY).update(pin, 'utf8').digest();
}

function rememberLogin(lib: pkcs11js.PKCS11, slot: Buffer, pin: string): void {
  let bySlot = loginVerifiers.get(lib);
  if (bySlot === undefined) loginVerifiers.set(lib, (bySlot = new Map()));
  bySlot.set(slotKey(slot), pinVerifier(pin));
}

/** An open PKCS#11 session. Close it (or `await using`) when done. */
export class Pkcs11Session implements AsyncDisposable {
  readonly module: Pkcs11Module;
  readonly slot: SlotInfo;
  readonly handle: Buffer;
  #closed = false;

  private constructor(module: Pkcs11Module, slot: SlotInfo, handle: Buffer) {
    this.module = module;
    this.slot = slot;
    this.handle = handle;
  }

  /**
   * Opens a session (read-write by default) on the token in `slot`.
   * @throws Pkcs11Error (ERR_PKCS11_TOKEN_REMOVED when the token is gone).
   */
  static open(module: Pkcs11Module, slot: SlotInfo, opts: { readWrite?: boolean } = {}): Pkcs11Session {
    const lib = module.lib;
    const flags = pk('CKF_SERIAL_SESSION') | (opts.readWrite === false ? 0 : pk('CKF_RW_SESSION'));
    const handle = call('C_OpenSession', `opening a session on token ${JSON.stringify(slot.token?.label ?? '?')}`, () =>
      lib.C_OpenSession(slot.handle, flags),
    );
    return new Pkcs11Session(module, slot, handle);
  }

  /** The pkcs11js instance. @throws Error when the session is closed. */
  get lib(): pkcs11js.PKCS11 {
    if (this.#closed) throw new Pkcs11Error(ErrorCode.PKCS11_TOKEN_REMOVED, `the PKCS#11 session on token ${JSON.stringify(this.tokenLabel)} is closed`);
    return this.module.lib;
  }

  get tokenLabel(): string {
    return this.slot.token?.label ?? '?';
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Logs the user in (a no-op when the token needs no login or the user is already logged in).
   * @param pin the PIN source, consulted only when a login is needed.
   * @throws Pkcs11Error ERR_PKCS11_PIN_INCORRECT (message says what the token reports about tries left),
   *   ERR_PKCS11_PIN_LOCKED, or another mapped failure; KeyStoreError ERR_SECRET_SOURCE from the source.
   */
  async login(pin: SecretSource): Promise<void> {
    const lib = this.lib;
    const info = readTokenInfo(lib, this.slot.handle);
    if (!info.loginRequired) return;
    let loggedIn: boolean;
    try {
      const state = lib.C_GetSessionInfo(this.handle).state;
      loggedIn = state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
    } catch (e) {
      throw toPkcs11Error(e, 'C_GetSessionInfo', `token ${JSON.stringify(this.tokenLabel)}`);
    }
    if (loggedIn) {
      await this.#checkAgainstLogin(pin);
      return;
    }
    if (info.pinStatus.locked) {
      throw new Pkcs11Error(
        ErrorCode.PKCS11_PIN_LOCKED,
        `user PIN of token ${JSON.stringify(this.tokenLabel)} is locked (CKF_USER_PIN_LOCKED); the security officer must unblock it`,
        { operation: 'C_GetTokenInfo', pinStatus: info.pinStatus },
      );
    }
    let already = false;
    await withPin(pin, (p) => {
      try {
        lib.C_Login(this.handle, pk('CKU_USER'), p);
        rememberLogin(lib, this.slot.handle, p);
      } catch (e) {
        if (!isCkr(e, 'CKR_USER_ALREADY_LOGGED_IN')) throw loginError(e, lib, this.slot.handle, this.tokenLabel);
        already = true;
      }
    });
    if (already) await this.#checkAgainstLogin(pin);
  }

  /**
   * The token is already logged in (login state is per token and per process in PKCS#11): the PIN given now is
   * compared with the one this process logged in with, so a store opened later with a wrong PIN is refused even
   * though the token would not ask. Nothing is sent to the token, so no try is counted. A login this process did
   * not make through {@link login} (another library in the process) cannot be checked and is accepted as before.
   */
  async #checkAgainstLogin(pin: SecretSource): Promise<void> {
    const expected = loginVerifiers.get(this.module.lib)?.get(slotKey(this.slot.handle));
    if (expected === undefined) return;
    const same = await withPin(pin, (p) => timingSafeEqual(pinVerifier(p), expected));
    if (!same) {
      throw new Pkcs11Error(
        ErrorCode.PKCS11_PIN_INCORRECT,
        `user PIN incorrect for token ${JSON.stringify(this.tokenLabel)}: it is not the PIN this process logged in with (the token was not asked, no try was counted)`,
        { operation: 'C_Login' },
      );
    }
  }

  /**
   * Context-specific login (CKU_CONTEXT_SPECIFIC) right after an operation's *Init, for keys with
   * CKA_ALWAYS_AUTHENTICATE. Synchronous: the caller fetched the PIN before the *Init.
   * @throws Pkcs11Error as {@link login}.
   */
  contextLogin(pin: string): void {
    const lib = this.lib;
    try {
      lib.C_Login(this.handle, pk('CKU_CONTEXT_SPECIFIC'), pin);
    } catch (e) {
      throw loginError(e, lib, this.slot.handle, this.tokenLabel, 'context-specific');
    }
  }

  /**
   * Finds objects matching `template` (C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal).
   * @throws Pkcs11Error.
   */
  find(template: pkcs11js.Template, max = 1000): Buffer[] {
    const lib = this.lib;
    call('C_FindObjectsInit', undefined, () => lib.C_FindObjectsInit(this.handle, template));
    try {
      const out: Buffer[] = [];
      for (;;) {
        const batch = call('C_FindObjects', undefined, () => lib.C_FindObjects(this.handle, 64));
        out.push(...batch);
        if (batch.length < 64 || out.length >= max) break;
      }
      return out;
    } finally {
      try {
        lib.C_FindObjectsFinal(this.handle);
      } catch {
        // the session may be gone; the find error (if any) is what matters
      }
    }
  }

  /**
   * Reads attributes; an attribute the object does not have (or keeps secret) is `undefined`.
   * @throws Pkcs11Error for a failure other than a missing / sensitive attribute.
   */
  attributes(object: Buffer, types: readonly number[]): Map<number, Buffer | undefined> {
    const lib = this.lib;
    const out = new Map<number, Buffer | undefined>();
    try {
      for (const a of lib.C_GetAttributeValue(this.handle, object, types.map((type) => ({ type })))) out.set(a.type, a.value);
      return out;
    } catch (e) {
      if (!isCkr(e, 'CKR_ATTRIBUTE_TYPE_INVALID') && !isCkr(e, 'CKR_ATTRIBUTE_SENSITIVE')) throw toPkcs11Error(e, 'C_GetAttributeValue');
    }
    for (const type of types) {
      try {
        out.set(type, lib.C_GetAttributeValue(this.handle, object, [{ type }])[0]?.value);
      } catch (e) {
        if (!isCkr(e, 'CKR_ATTRIBUTE_TYPE_INVALID') && !isCkr(e, 'CKR_ATTRIBUTE_SENSITIVE')) throw toPkcs11Error(e, 'C_GetAttributeValue');
        out.set(type, undefined);
      }
    }
    return out;
  }

  /** Destroys an object, ignoring failures (cleanup paths). @returns whether it was destroyed. */
  destroyQuietly(object: Buffer): boolean {
    try {
      this.module.lib.C_DestroyObject(this.handle, object);
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the session. Idempotent; a session already closed underneath is not an error. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (this.module.isOpen) this.module.lib.C_CloseSession(this.handle);
    } catch {
      // closed underneath (C_CloseAllSessions, token removed, module finalized)
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Opens a session, runs `fn`, and closes the session whatever happens.
 * @throws whatever `fn` throws; Pkcs11Error when the session cannot be opened.
 */
export async function withSession<T>(
  module: Pkcs11Module,
  slot: SlotInfo,
  fn: (session: Pkcs11Session) => T | Promise<T>,
  opts: { readWrite?: boolean } = {},
): Promise<T> {
  const session = Pkcs11Session.open(module, slot, opts);
  try {
    return await fn(session);
  } finally {
    await session.close();
  }
}

/**
 * A fixed set of sessions on one token, each used by one operation at a time. Waiting callers are
 * served first in, first out. Login is per token, so sessions opened after the login are logged in.
 */
export class Pkcs11SessionPool implements AsyncDisposable {
  /** Every session of the pool (free or busy). */
  readonly sessions: readonly Pkcs11Session[];
  #free: Pkcs11Session[];
  #waiting: Array<(s: Pkcs11Session) => void> = [];
  /** Operations accepted (waiting or running). */
  #pending = 0;
  #idle: Array<() => void> = [];
  #closing: Promise<void> | undefined;

  private constructor(sessions: Pkcs11Session[]) {
    this.sessions = sessions;
    this.#free = [...sessions];
  }

  /**
   * Opens `size` sessions on the token in `slot` (all or none).
   * @param size 1 to 64.
   * @param opts readWrite: read-write sessions (default false: signing and deriving session objects need none).
   * @throws RangeError when `size` is not an integer from 1 to 64.
   * @throws Pkcs11Error when a session cannot be opened (the ones already opened are closed).
   */
  static async open(module: Pkcs11Module, slot: SlotInfo, size: number, opts: { readWrite?: boolean } = {}): Promise<Pkcs11SessionPool> {
    if (!Number.isInteger(size) || size < 1 || size > 64) throw new RangeError(`"size" expected an integer from 1 to 64, got ${String(size)}`);
    const sessions: Pkcs11Session[] = [];
    try {
      for (let i = 0; i < size; i++) sessions.push(Pkcs11Session.open(module, slot, { readWrite: opts.readWrite === true }));
    } catch (e) {
      for (const s of sessions) await s.close();
      throw e;
    }
    return new Pkcs11SessionPool(sessions);
  }

  /** The number of sessions. */
  get size(): number {
    return this.sessions.length;
  }

  /** Sessions running an operation now. */
  get busy(): number {
    return this.sessions.length - this.#free.length;
  }

  /** Callers waiting for a free session. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Runs `fn` on a free session (waiting, FIFO, while all are busy); the session is returned to the
   * pool when `fn` settles. `fn` must not keep the session.
   * @throws Error when the pool is closed (a programming error); whatever `fn` throws.
   */
  async use<T>(fn: (session: Pkcs11Session) => Promise<T> | T): Promise<T> {
    if (this.#closing !== undefined) throw new Error('the PKCS#11 session pool is closed');
    this.#pending += 1;
    let session: Pkcs11Session | undefined;
    try {
      session = this.#free.pop() ?? (await new Promise<Pkcs11Session>((resolve) => this.#waiting.push(resolve)));
      return await fn(session);
    } finally {
      if (session !== undefined) this.#release(session);
      this.#pending -= 1;
      if (this.#pending === 0) for (const done of this.#idle.splice(0)) done();
    }
  }

  #release(session: Pkcs11Session): void {
    const next = this.#waiting.shift();
    if (next === undefined) this.#free.push(session);
    else next(session);
  }

  /**
   * Refuses new operations, waits for those accepted (running or queued), then closes every
   * session. Idempotent (later calls return the same promise).
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#pending > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
      for (const s of this.sessions) await s.close();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
