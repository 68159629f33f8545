/**
 * PKCS#11 module loading, slots and tokens.
 *
 * One pkcs11js `PKCS11` instance per module path per process: {@link Pkcs11Module.open} returns a
 * new reference to a shared, reference-counted library (keyed by the real path, so symlinks share).
 * `C_Initialize` runs once (`CKR_CRYPTOKI_ALREADY_INITIALIZED` is tolerated, and then meshkit does not
 * finalize what it did not initialize); `C_Finalize` runs when the last reference closes.
 *
 * Slot ids are not stable (SoftHSM assigns a random-looking id when a token is initialised), so
 * tokens are found by their RFC 7512 attributes — label, serial, manufacturer, model — and only
 * optionally by slot id.
 */
import { realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type * as pkcs11js from 'pkcs11js';
import { astring, describe as describeValue } from '../../core/bytes.js';
import { ErrorCode, Pkcs11Error, type PinStatus } from '../../core/errors.js';
import { pk, pkcs11js as addon } from './constants.js';
import { call, isCkr, toPkcs11Error } from './errors.js';
import type { Pkcs11Uri } from './uri.js';
import { probeCapabilities, type TokenCapabilities } from './capabilities.js';

export type { TokenCapabilities } from './capabilities.js';

/** Facts about a token (CK_TOKEN_INFO), strings trimmed. */
export interface TokenInfo {
  label: string;
  manufacturer: string;
  model: string;
  serial: string;
  /** Raw CK_TOKEN_INFO flags. */
  flags: number;
  /** CKF_TOKEN_INITIALIZED. */
  initialized: boolean;
  /** CKF_LOGIN_REQUIRED. */
  loginRequired: boolean;
  /** The user PIN flags (CKF_USER_PIN_COUNT_LOW / FINAL_TRY / LOCKED). */
  pinStatus: PinStatus;
}

/** A slot (CK_SLOT_INFO), with its token when one is present. */
export interface SlotInfo {
  /** CK_SLOT_ID as a number (bigint when above 2^53). */
  slotId: bigint | number;
  /** The pkcs11js slot handle. */
  handle: Buffer;
  description: string;
  manufacturer: string;
  tokenPresent: boolean;
  token?: TokenInfo;
}

/** The library's CK_INFO, strings trimmed. */
export interface ModuleInfo {
  manufacturer: string;
  description: string;
  cryptokiVersion: string;
  libraryVersion: string;
}

/** The shared state of one loaded library. */
export interface ModuleCore {
  readonly path: string;
  readonly lib: pkcs11js.PKCS11;
  readonly info: ModuleInfo;
  refs: number;
  /** False when C_Initialize answered CKR_CRYPTOKI_ALREADY_INITIALIZED (someone else owns it). */
  ownsInit: boolean;
  finalized: boolean;
}

const registry = new Map<string, ModuleCore>();

/** Trims the blank padding of CK_* strings (and any NULs). */
export function trimPadded(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000\s]+$/u, '').replace(/^\s+/u, '');
}

function version(v: { major: number; minor: number }): string {
  return `${v.major}.${v.minor}`;
}

/** The PIN flags of a CK_TOKEN_INFO. */
export function pinStatusOf(flags: number): PinStatus {
  return {
    countLow: (flags & pk('CKF_USER_PIN_COUNT_LOW')) !== 0,
    finalTry: (flags & pk('CKF_USER_PIN_FINAL_TRY')) !== 0,
    locked: (flags & pk('CKF_USER_PIN_LOCKED')) !== 0,
  };
}

/** CK_SLOT_ID of a pkcs11js slot handle (8 bytes, little-endian on the platforms pkcs11js supports). */
export function slotIdOf(handle: Buffer): bigint | number {
  const v = handle.length >= 8 ? handle.readBigUInt64LE(0) : BigInt(handle.readUInt32LE(0));
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Reads CK_TOKEN_INFO of a slot. @throws Pkcs11Error. */
export function readTokenInfo(lib: pkcs11js.PKCS11, slot: Buffer): TokenInfo {
  const t = call('C_GetTokenInfo', undefined, () => lib.C_GetTokenInfo(slot));
  return {
    label: trimPadded(t.label),
    manufacturer: trimPadded(t.manufacturerID),
    model: trimPadded(t.model),
    serial: trimPadded(t.serialNumber),
    flags: t.flags,
    initialized: (t.flags & pk('CKF_TOKEN_INITIALIZED')) !== 0,
    loginRequired: (t.flags & pk('CKF_LOGIN_REQUIRED')) !== 0,
    pinStatus: pinStatusOf(t.flags),
  };
}

function moduleError(path: string, why: string, cause?: unknown): Pkcs11Error {
  return new Pkcs11Error(ErrorCode.PKCS11_MODULE, `PKCS#11 module ${path}: ${why}`, {
    operation: 'load',
    ...(cause === undefined ? {} : { cause }),
  });
}

function loadCore(path: string): ModuleCore {
  let real: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw moduleError(path, 'is not a regular file');
    real = realpathSync(path);
  } catch (e) {
    if (e instanceof Pkcs11Error) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw moduleError(path, code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(e)})`, e);
  }
  const existing = registry.get(real);
  if (existing !== undefined && !existing.finalized) {
    existing.refs += 1;
    return existing;
  }
  const lib = new addon.PKCS11();
  try {
    lib.load(real);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw moduleError(path, `is not a PKCS#11 module (cannot load it or it has no C_GetFunctionList: ${msg.split('\n')[0] ?? msg})`, e);
  }
  let ownsInit = true;
  try {
    lib.C_Initialize();
  } catch (e) {
    if (isCkr(e, 'CKR_CRYPTOKI_ALREADY_INITIALIZED')) {
      ownsInit = false;
    } else if (isCkr(e, 'CKR_CANT_LOCK')) {
      // p11-kit-client and some others insist on OS locking.
      try {
        lib.C_Initialize({ flags: pk('CKF_OS_LOCKING_OK') });
      } catch (e2) {
        if (isCkr(e2, 'CKR_CRYPTOKI_ALREADY_INITIALIZED')) ownsInit = false;
        else {
          safeClose(lib);
          throw moduleError(path, `C_Initialize failed: ${toPkcs11Error(e2, 'C_Initialize').message}`, e2);
        }
      }
    } else {
      safeClose(lib);
      throw moduleError(path, `C_Initialize failed: ${toPkcs11Error(e, 'C_Initialize').message}`, e);
    }
  }
  let info: ModuleInfo;
  try {
    const i = lib.C_GetInfo();
    info = {
      manufacturer: trimPadded(i.manufacturerID),
      description: trimPadded(i.libraryDescription),
      cryptokiVersion: version(i.cryptokiVersion),
      libraryVersion: version(i.libraryVersion),
    };
  } catch (e) {
    if (ownsInit) {
      try {
        lib.C_Finalize();
      } catch {
        // ignore
      }
    }
    safeClose(lib);
    throw moduleError(path, `C_GetInfo failed: ${toPkcs11Error(e, 'C_GetInfo').message}`, e);
  }
  const core: ModuleCore = { path: real, lib, info, refs: 1, ownsInit, finalized: false };
  registry.set(real, core);
  return core;
}

function safeClose(lib: pkcs11js.PKCS11): void {
  try {
    lib.close();
  } catch {
    // unloading is best effort
  }
}

function releaseCore(core: ModuleCore): void {
  core.refs -= 1;
  if (core.refs > 0 || core.finalized) return;
  core.finalized = true;
  if (registry.get(core.path) === core) registry.delete(core.path);
  if (core.ownsInit) {
    try {
      core.lib.C_Finalize();
    } catch {
      // already finalized (e.g. by a test simulating removal)
    }
  }
  // The library stays mapped: unloading a module while pkcs11js may still hold pointers is unsafe.
}

/** Matches a token / slot against the RFC 7512 path attributes of a URI. */
export function slotMatches(slot: SlotInfo, match: Pkcs11Uri): boolean {
  const t = slot.token;
  if (!slot.tokenPresent || t === undefined) return false;
  if (match.token !== undefined && t.label !== match.token) return false;
  if (match.serial !== undefined && t.serial !== match.serial) return false;
  if (match.manufacturer !== undefined && t.manufacturer !== match.manufacturer) return false;
  if (match.model !== undefined && t.model !== match.model) return false;
  if (match.slotId !== undefined && String(slot.slotId) !== String(match.slotId)) return false;
  if (match.slotDescription !== undefined && slot.description !== match.slotDescription) return false;
  if (match.slotManufacturer !== undefined && slot.manufacturer !== match.slotManufacturer) return false;
  return true;
}

function describeToken(s: SlotInfo): string {
  const t = s.token;
  return t === undefined
    ? `slot ${String(s.slotId)} (no token)`
    : `${JSON.stringify(t.label)} (serial ${t.serial}, model ${t.model}, slot ${String(s.slotId)}${t.initialized ? '' : ', not initialised'})`;
}

function describeMatch(match: Pkcs11Uri): string {
  const parts: string[] = [];
  if (match.token !== undefined) parts.push(`token=${JSON.stringify(match.token)}`);
  if (match.serial !== undefined) parts.push(`serial=${JSON.stringify(match.serial)}`);
  if (match.manufacturer !== undefined) parts.push(`manufacturer=${JSON.stringify(match.manufacturer)}`);
  if (match.model !== undefined) parts.push(`model=${JSON.stringify(match.model)}`);
  if (match.slotId !== undefined) parts.push(`slot-id=${match.slotId}`);
  if (match.slotDescription !== undefined) parts.push(`slot-description=${JSON.stringify(match.slotDescription)}`);
  if (match.slotManufacturer !== undefined) parts.push(`slot-manufacturer=${JSON.stringify(match.slotManufacturer)}`);
  return parts.length === 0 ? 'any token' : parts.join(', ');
}

/** A reference to a loaded PKCS#11 library. Close it (or `await using`) when done. */
export class Pkcs11Module implements AsyncDisposable {
  /** The module path as given (the registry key is its real path). */
  readonly path: string;
  readonly info: ModuleInfo;
  #core: ModuleCore;
  #closed = false;

  private constructor(path: string, core: ModuleCore) {
    this.path = path;
    this.#core = core;
    this.info = core.info;
  }

  /**
   * Loads (or shares) the PKCS#11 library at `modulePath` and initialises it.
   * @throws TypeError if `modulePath` is not a string.
   * @throws Pkcs11Error ERR_PKCS11_MODULE when the file does not exist, is not a PKCS#11 module,
   *   or C_Initialize fails.
   */
  static async open(modulePath: string): Promise<Pkcs11Module> {
    astring(modulePath, 'modulePath');
    if (modulePath === '') throw new RangeError('"modulePath" must not be empty');
    const path = resolve(modulePath);
    return new Pkcs11Module(path, loadCore(path));
  }

  /** The shared pkcs11js instance (adapter-internal). @throws Error when this reference is closed. */
  get lib(): pkcs11js.PKCS11 {
    this.#assertOpen();
    return this.#core.lib;
  }

  /** The real path the library was loaded from. */
  get realPath(): string {
    return this.#core.path;
  }

  /**
   * Every slot with its token information (strings trimmed).
   * @throws Pkcs11Error for a Cryptoki failure.
   */
  async slots(): Promise<SlotInfo[]> {
    const lib = this.lib;
    const handles = call('C_GetSlotList', undefined, () => lib.C_GetSlotList(false));
    return handles.map((handle) => this.#slotInfo(handle));
  }

  #slotInfo(handle: Buffer): SlotInfo {
    const lib = this.lib;
    const s = call('C_GetSlotInfo', undefined, () => lib.C_GetSlotInfo(handle));
    const tokenPresent = (s.flags & pk('CKF_TOKEN_PRESENT')) !== 0;
    const slot: SlotInfo = {
      slotId: slotIdOf(handle),
      handle,
      description: trimPadded(s.slotDescription),
      manufacturer: trimPadded(s.manufacturerID),
      tokenPresent,
    };
    if (tokenPresent) {
      try {
        slot.token = readTokenInfo(lib, handle);
      } catch {
        // a token that cannot be read (being removed) is listed without info
      }
    }
    return slot;
  }

  /**
   * The one slot whose token matches the URI's token attributes (label, serial, manufacturer,
   * model, slot-id, slot-description, slot-manufacturer).
   * @throws Pkcs11Error ERR_PKCS11_TOKEN_NOT_FOUND (the message lists the tokens present) or
   *   ERR_PKCS11_OBJECT_AMBIGUOUS when several tokens match.
   */
  async findToken(match: Pkcs11Uri): Promise<SlotInfo> {
    if (typeof match !== 'object' || match === null) throw new TypeError(`"match" expected object, got ${describeValue(match)}`);
    const slots = await this.slots();
    const found = slots.filter((s) => slotMatches(s, match));
    const present = slots.filter((s) => s.tokenPresent && s.token?.initialized === true);
    if (found.length === 0) {
      throw new Pkcs11Error(
        ErrorCode.PKCS11_TOKEN_NOT_FOUND,
        `no token matching ${describeMatch(match)} in ${this.path}; ` +
          (present.length === 0 ? 'no initialised token is present' : `tokens present: ${present.map(describeToken).join(', ')}`),
        { operation: 'C_GetTokenInfo' },
      );
    }
    if (found.length > 1) {
      throw new Pkcs11Error(
        ErrorCode.PKCS11_OBJECT_AMBIGUOUS,
        `${found.length} tokens match ${describeMatch(match)} in ${this.path}: ${found.map(describeToken).join(', ')}; add serial= to choose one`,
        { operation: 'C_GetTokenInfo' },
      );
    }
    return found[0] as SlotInfo;
  }

  /**
   * Probes what a token can do (mechanisms, curves, wrap, quirks) and returns it as data. Probes
   * that need objects use temporary session objects (CKA_TOKEN=false) that are destroyed at once.
   * @param pin optional user PIN: some tokens only allow private session objects after login.
   * @throws Pkcs11Error for a Cryptoki failure of the mechanism list.
   */
  async capabilities(slot: SlotInfo, pin?: Uint8Array): Promise<TokenCapabilities> {
    return probeCapabilities(this.lib, slot.handle, pin);
  }

  /**
   * Initialises a token in `slotOrLabel` (a SlotInfo, or the label of the token to re-initialise;
   * SoftHSM also offers a free uninitialised slot: pass `{ free: true }` as the slot) and sets the
   * user PIN. The PIN buffers stay the caller's.
   * @throws TypeError / RangeError for bad arguments.
   * @throws Pkcs11Error ERR_PKCS11_TOKEN_NOT_FOUND when no such slot, or the Cryptoki failure.
   * @returns the slot of the new token, looked up again by label (its slot id may have changed).
   */
  async initToken(
    slotOrLabel: SlotInfo | string | { free: true },
    opts: { label: string; soPin: Uint8Array; userPin: Uint8Array },
  ): Promise<SlotInfo> {
    astring(opts.label, 'label');
    if (opts.label.length === 0 || Buffer.byteLength(opts.label) > 32) {
      throw new RangeError(`"label" expected 1 to 32 bytes, got ${Buffer.byteLength(opts.label)}`);
    }
    let slot: SlotInfo;
    if (typeof slotOrLabel === 'string') slot = await this.findToken({ token: slotOrLabel });
    else if ('free' in slotOrLabel) {
      const free = (await this.slots()).find((s) => s.tokenPresent && s.token !== undefined && !s.token.initialized);
      if (free === undefined) throw new Pkcs11Error(ErrorCode.PKCS11_TOKEN_NOT_FOUND, `no free (uninitialised) token slot in ${this.path}`);
      slot = free;
    } else slot = slotOrLabel;
    const lib = this.lib;
    const so = Buffer.from(opts.soPin).toString('utf8');
    const user = Buffer.from(opts.userPin).toString('utf8');
    call('C_InitToken', `initialising token ${JSON.stringify(opts.label)}`, () => lib.C_InitToken(slot.handle, so, opts.label));
    const fresh = await this.findToken({ token: opts.label });
    const session = call('C_OpenSession', undefined, () =>
      lib.C_OpenSession(fresh.handle, pk('CKF_SERIAL_SESSION') | pk('CKF_RW_SESSION')),
    );
    try {
      call('C_Login', 'security officer login', () => lib.C_Login(session, pk('CKU_SO'), so));
      call('C_InitPIN', 'setting the user PIN', () => lib.C_InitPIN(session, user));
      call('C_Logout', undefined, () => lib.C_Logout(session));
    } finally {
      try {
        lib.C_CloseSession(session);
      } catch {
        // ignore
      }
    }
    return this.findToken({ token: opts.label });
  }

  /**
   * Closes every session this process has with the token in `slot` (C_CloseAllSessions): an
   * emergency stop, and the way tests simulate a removed token. Stores on that token then fail
   * with ERR_PKCS11_TOKEN_REMOVED.
   * @throws Pkcs11Error for a Cryptoki failure.
   */
  async closeAllSessions(slot: SlotInfo): Promise<void> {
    const lib = this.lib;
    call('C_CloseAllSessions', undefined, () => lib.C_CloseAllSessions(slot.handle));
  }

  /** Releases this reference; the library is finalised when the last reference closes. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    releaseCore(this.#core);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** True while this reference is open and the library is initialised. */
  get isOpen(): boolean {
    return !this.#closed && !this.#core.finalized;
  }

  #assertOpen(): void {
    if (this.#closed) throw new Pkcs11Error(ErrorCode.PKCS11_MODULE, `PKCS#11 module ${this.path} is closed`);
  }
}

/** Number of distinct libraries loaded now (for tests of the registry). */
export function loadedModuleCount(): number {
  return registry.size;
}

/** The reference count of the library at `path`, 0 when not loaded (for tests of the registry). */
export function moduleRefCount(path: string): number {
  try {
    return registry.get(realpathSync(path))?.refs ?? 0;
  } catch {
    return 0;
  }
}
