/**
 * The bench side of device enrollment (docs/enrollment.md) over a {@link DeviceSession}:
 * `HELLO → BENCH_AUTH → KEYGEN → COGEN → INSTALL → COMMIT → connect`, with every check the host makes, a per-serial
 * journal for resume, and the provisioning record (the Body of a `DeviceProvisioned` hashlog entry) the device's
 * receipt signs. Appending the record to the log is the caller's job (bench run): a device is provisioned only
 * once its record is in the log.
 *
 * Resume (docs/enrollment.md "Resume"): KEYGEN is idempotent, so the host always learns the device's base keys
 * first. A device in KEYS_GENERATED continues (its journal is used when it names the same base device). A device in
 * COGENERATED / INSTALLED / COMMITTED with a journal for the same base device that holds every request the device
 * has already accepted is resumed by replaying those requests byte for byte (the device answers them again). Without
 * such a journal the device is RESET and restarted — except a COMMITTED device, which is reported
 * ({@link EnrollmentError} check `committed`) and never re-provisioned. A replayed COGEN or INSTALL the device
 * refuses with BAD_STATE (a stale journal) also leads to one RESET and restart.
 *
 * The journal holds public data only (the sealed boxes, the expected keys, the signed connection, the record
 * draft and the receipt); the contribution scalars are wiped as soon as the box is sealed. The entry is kept after
 * a successful enrollment (a re-run replays it and returns the same record); the caller removes it
 * (`journal.remove(serial)`) once the record is appended.
 *
 * Byte counts: the session hides its transport, so `bytesSent` / `bytesReceived` come from a {@link ByteCounter}
 * the caller passes in `opts.counter` — wrap the transport with {@link countingTransport} before building the
 * session. Without a counter both are 0.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { aint, astring, b64u, bigIntToBytesLE, bytesToBigIntLE, equalBytes, fromB64u, fromUtf8, utf8, wipe } from '../core/bytes.js';
import { combineWithScalar, GROUP_ORDER } from '../core/cogen.js';
import { DeviceError, ErrorCode } from '../core/errors.js';
import { keyId, publicKeyFromRaw } from '../core/keys.js';
import { verifyProfile, type DeviceProfile, type MasterProfile, type SignedProfile } from '../core/profiles.js';
import type { Signer } from '../core/signer.js';
import { sha512, context, verifyEd25519 } from './enroll-crypto.js';
import { BOX_OVERHEAD, sealBox } from './box.js';
import { encodeCbor, type CborMap, type CborValue } from './cbor.js';
import { DeviceState, DeviceStatus, KeySelect, Limits } from './protocol.generated.js';
import { DeviceReplyError, type DeviceSession } from './session.js';
import type { Transport } from './transport/types.js';
import { writeFileAtomic } from '../util/fs.js';

const L = GROUP_ORDER.Ed25519;
const ALL_KEYS = KeySelect.SIGNATURE | KeySelect.ENCRYPTION | KeySelect.AUTHENTICATION;

// ---------------------------------------------------------------------------------------------------------------
// Types

/** What to enroll a device into, and with which keys. */
export interface EnrollmentPlan {
  /** Ed25519 provisioner key the devices pin (BENCH_AUTH signs the raw challenge). */
  readonly bench: Signer;
  /** Ed25519 administration key; must be listed in master.OnlineSignatureKeys. */
  readonly admin: Signer;
  /** The account's (already verified) Master Profile; the account id is its Identifier. */
  readonly master: MasterProfile;
  /** Application configuration plaintext (≤ 1024 bytes). */
  readonly config: Uint8Array;
  /** Accepted INFO.model values; another model is an error and nothing is sent after HELLO. */
  readonly models?: readonly string[];
  /** Connects the composite Device Profile to the Personal Profile. */
  readonly connect: (device: SignedProfile) => Promise<void>;
  /** Whether a device is already connected (a resumed enrollment then skips `connect`). */
  readonly isConnected?: (deviceId: string) => Promise<boolean>;
  /** The clock (default: the system clock). */
  readonly now?: () => Date;
  /**
   * Reply timeout per attempt for each request, in ms, where it differs from the session's (a slow MCU may need
   * seconds for KEYGEN or COGEN; a descriptor's `timeouts` table). Each value 1–600 000.
   */
  readonly timeouts?: Readonly<Partial<Record<EnrollRequest, number>>>;
}

/** The requests enrollment sends. */
export type EnrollRequest = 'HELLO' | 'BENCH_AUTH' | 'KEYGEN' | 'COGEN' | 'INSTALL' | 'COMMIT' | 'RESET';
export const ENROLL_REQUESTS: readonly EnrollRequest[] = ['HELLO', 'BENCH_AUTH', 'KEYGEN', 'COGEN', 'INSTALL', 'COMMIT', 'RESET'];

/** The provisioning record: the Body of a `DeviceProvisioned` hashlog entry, members in this order. */
export interface DeviceRecord {
  readonly Serial: string;
  readonly Model: string;
  readonly Firmware: string;
  readonly Port: string;
  /** The composite Device Profile identifier. */
  readonly Device: string;
  /** The base Device Profile identifier. */
  readonly BaseDevice: string;
  readonly Account: string;
  /** UDF of the administration key that signed the connection. */
  readonly AdminKey: string;
  /** UDF of the bench (provisioner) key. */
  readonly BenchKey: string;
  /** b64u SHA-512 of the configuration plaintext. */
  readonly ConfigDigest: string;
  readonly Started: string;
  readonly Finished: string;
  readonly Attempts: number;
  /** b64u RECEIPT.signature. */
  readonly Receipt: string;
  /** b64u SHA-512 of the record JSON without Receipt and RecordDigest. */
  readonly RecordDigest: string;
}

/** The record before the device signs it. */
export type RecordDraft = Omit<DeviceRecord, 'Receipt' | 'RecordDigest'>;

/** Three public keys, b64u: Ed25519 signature (32 bytes), X25519 extended encryption and authentication (33). */
export interface JournalKeys {
  readonly signature: string;
  readonly encryption: string;
  readonly authentication: string;
}

/** One device's journal (public data only). */
export interface JournalEntry {
  readonly version: 1;
  readonly serial: string;
  readonly model: string;
  readonly firmware: string;
  readonly port: string;
  /** ISO time the enrollment (this round) started. */
  readonly started: string;
  /** Attempts so far, this one included. */
  readonly attempts: number;
  readonly baseDevice?: string;
  readonly baseKeys?: JournalKeys;
  /** The COGEN request: the contribution box (b64u), its time, and the composite keys it must give. */
  readonly cogen?: { readonly box: string; readonly time: number; readonly expected: JournalKeys };
  /** The composite Device Profile identifier, once PROOF was checked. */
  readonly device?: string;
  /** The INSTALL request: connection CBOR and config box (b64u). */
  readonly install?: { readonly connection: string; readonly config: string; readonly configDigest: string };
  readonly record?: RecordDraft;
  readonly receipt?: string;
  readonly connected?: boolean;
}

/** Where the bench keeps journals (one entry per serial). */
export interface EnrollJournal {
  load(serial: string): Promise<JournalEntry | undefined>;
  save(serial: string, e: JournalEntry): Promise<void>;
  remove(serial: string): Promise<void>;
}

/** The enrollment steps, in order. */
export type EnrollStep = 'hello' | 'auth' | 'keygen' | 'cogen' | 'install' | 'commit' | 'connect';

/** A progress event. */
export interface StepEvent {
  step: EnrollStep;
  phase: 'start' | 'done';
  /** Duration, on `done`. */
  ms?: number;
  serial?: string;
  detail?: string;
}

/** Byte counts at the transport. */
export interface ByteCounter {
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/** A finished enrollment. Nothing in it is secret. */
export interface EnrollmentResult {
  serial: string;
  model: string;
  firmware: string;
  /** The composite Device Profile identifier. */
  deviceId: string;
  baseDeviceId: string;
  /** The composite Device Profile (the one connected). */
  deviceProfile: SignedProfile;
  baseProfile: SignedProfile;
  record: DeviceRecord;
  resumed: 'fresh' | 'resumed' | 'restarted';
  steps: Array<{ step: EnrollStep; ms: number }>;
  bytesSent: number;
  bytesReceived: number;
}

/** Options of {@link enrollDevice}. */
export interface EnrollOptions {
  /** The port name recorded in the record. */
  port: string;
  /** The journal (default: none — an interrupted device is then restarted, or reported if COMMITTED). */
  journal?: EnrollJournal;
  /** Progress events. */
  onStep?: (e: StepEvent) => void;
  /** This attempt's number as the caller counts (default 1); with a journal entry, at least its count + 1. */
  attempts?: number;
  /** Byte counter of the session's transport ({@link countingTransport}). */
  counter?: ByteCounter;
}

/** Why the host refused a device (every check of docs/enrollment.md the host makes). */
export type EnrollmentCheck =
  | 'plan' | 'admin-key' | 'bench-key' | 'info' | 'model' | 'base-profile' | 'base-keys' | 'composite-keys' | 'proof'
  | 'composite-profile' | 'ack' | 'receipt' | 'committed' | 'journal';

/** The host refused a device or a plan; `check` names the check that failed (stable, for summaries). */
export class EnrollmentError extends DeviceError {
  /** The failed check. */
  readonly check: EnrollmentCheck;
  /** The device serial, when known. */
  readonly serial: string | undefined;
  constructor(check: EnrollmentCheck, message: string, serial?: string, options?: { cause?: unknown }) {
    super(ErrorCode.DEVICE, serial === undefined ? message : `${serial}: ${message}`, undefined, options);
    this.check = check;
    this.serial = serial;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Byte counting

/**
 * Wraps a transport to count the bytes sent and received (give the wrapper to the session and the counter to
 * {@link enrollDevice}). Everything else is delegated; closing the wrapper closes the transport.
 * @param transport the transport to wrap
 * @returns a transport that is also a {@link ByteCounter}
 * @throws TypeError when transport is not a Transport
 */
export function countingTransport(transport: Transport): Transport & ByteCounter {
  if (typeof transport !== 'object' || transport === null || typeof transport.send !== 'function' || typeof transport.onData !== 'function') {
    throw new TypeError('"transport" expected a Transport');
  }
  let sent = 0;
  let received = 0;
  return {
    get isOpen() {
      return transport.isOpen;
    },
    get bytesSent() {
      return sent;
    },
    get bytesReceived() {
      return received;
    },
    async send(bytes: Uint8Array) {
      await transport.send(bytes);
      sent += bytes.length;
    },
    onData(listener) {
      return transport.onData((bytes) => {
        received += bytes.length;
        listener(bytes);
      });
    },
    onClose: (listener) => transport.onClose(listener),
    close: () => transport.close(),
    [Symbol.asyncDispose]: () => transport.close(),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Records

const RECORD_MEMBERS = [
  'Serial', 'Model', 'Firmware', 'Port', 'Device', 'BaseDevice', 'Account', 'AdminKey', 'BenchKey', 'ConfigDigest',
  'Started', 'Finished', 'Attempts',
] as const;

function draftJson(body: RecordDraft): string {
  const out: Record<string, unknown> = {};
  for (const member of RECORD_MEMBERS) {
    const v = body[member];
    if (member === 'Attempts') aint(v, 'body.Attempts', 1);
    else astring(v, `body.${member}`);
    out[member] = v;
  }
  return JSON.stringify(out);
}

/**
 * The record digest: SHA-512 of the UTF-8 JSON of the Body without `Receipt` and `RecordDigest`, members in the
 * order of docs/enrollment.md (extra members are ignored).
 * @param body a record or record draft
 * @returns 64 bytes
 * @throws TypeError / RangeError when a member is missing or of the wrong type
 */
export function recordDigest(body: RecordDraft | DeviceRecord): Uint8Array {
  if (typeof body !== 'object' || body === null) throw new TypeError('"body" expected a record object');
  return sha512(utf8(draftJson(body)));
}

const RECEIPT_CONTEXT = 'meshkit-receipt-v1';
const PROOF_CONTEXT = 'meshkit-cogen-proof-v1';
const CONNECTION_CONTEXT = 'meshkit-connection-v1';

/**
 * Verifies a provisioning record against the (composite) Device Profile: the profile is a valid self-signed Device
 * Profile, the record names it, `RecordDigest` is the digest of the record, and `Receipt` is the device's Ed25519
 * signature over `"meshkit-receipt-v1" ‖ 0x00 ‖ digest` by the profile's signature key.
 * @param body the record
 * @param deviceProfile the composite Device Profile the record names
 * @throws TypeError when body is not a record
 * @throws ProfileError when the Device Profile does not verify
 * @throws EnrollmentError (check `receipt`) when the record does not name the profile, the digest differs or the
 *   receipt does not verify
 */
export async function verifyRecord(body: DeviceRecord, deviceProfile: SignedProfile): Promise<void> {
  if (typeof body !== 'object' || body === null) throw new TypeError('"body" expected a record object');
  astring(body.Receipt, 'body.Receipt');
  astring(body.RecordDigest, 'body.RecordDigest');
  const verified = await verifyProfile(deviceProfile);
  if (verified.type !== 'DeviceProfile') throw new EnrollmentError('receipt', `expected a Device Profile, got a ${verified.type}`);
  const profile = verified.profile as DeviceProfile;
  if (body.Device !== profile.Identifier) {
    throw new EnrollmentError('receipt', `the record names device ${body.Device}, the profile is ${profile.Identifier}`, body.Serial);
  }
  const digest = recordDigest(body);
  if (b64u(digest) !== body.RecordDigest) throw new EnrollmentError('receipt', 'RecordDigest is not the digest of the record', body.Serial);
  const pub = fromB64u(profile.DeviceSignatureKey.PublicParameters.x, 'DeviceSignatureKey.x');
  let receipt: Uint8Array;
  try {
    receipt = fromB64u(body.Receipt, 'body.Receipt');
  } catch (e) {
    throw new EnrollmentError('receipt', 'Receipt is not base64url', body.Serial, { cause: e });
  }
  if (!verifyEd25519(receipt, context(RECEIPT_CONTEXT, digest), pub)) {
    throw new EnrollmentError('receipt', 'the receipt signature does not verify under the device signature key', body.Serial);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Journal

function journalFileName(serial: string): string {
  astring(serial, 'serial');
  if (serial.length === 0 || serial.length > 128) throw new RangeError('"serial" expected 1 to 128 characters');
  const name = encodeURIComponent(serial).replace(/\./g, '%2E');
  return `${name}.json`;
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isKeys = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && isStr((v as JournalKeys).signature) && isStr((v as JournalKeys).encryption) && isStr((v as JournalKeys).authentication);

function validEntry(v: unknown, serial: string): v is JournalEntry {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  if (e.version !== 1 || e.serial !== serial || !isStr(e.model) || !isStr(e.firmware) || !isStr(e.port) || !isStr(e.started)) return false;
  if (typeof e.attempts !== 'number' || !Number.isSafeInteger(e.attempts) || e.attempts < 1) return false;
  if (e.baseDevice !== undefined && !isStr(e.baseDevice)) return false;
  if (e.baseKeys !== undefined && !isKeys(e.baseKeys)) return false;
  if (e.cogen !== undefined) {
    const c = e.cogen as Record<string, unknown>;
    if (typeof c !== 'object' || c === null || !isStr(c.box) || typeof c.time !== 'number' || !isKeys(c.expected)) return false;
  }
  if (e.install !== undefined) {
    const i = e.install as Record<string, unknown>;
    if (typeof i !== 'object' || i === null || !isStr(i.connection) || !isStr(i.config) || !isStr(i.configDigest)) return false;
  }
  if (e.record !== undefined) {
    try {
      draftJson(e.record as RecordDraft);
    } catch {
      return false;
    }
  }
  if (e.device !== undefined && !isStr(e.device)) return false;
  if (e.receipt !== undefined && !isStr(e.receipt)) return false;
  return true;
}

/**
 * A journal of JSON files `dir/<serial>.json` (the serial percent-encoded), each written atomically (a temporary
 * file renamed over the old one). The directory is created on the first save. Entries hold public data only.
 * @param dir the journal directory (bench run: `--out DIR/journal`)
 * @returns the journal
 * @throws TypeError when dir is not a non-empty string. Its methods throw RangeError for an empty serial,
 *   EnrollmentError (check `journal`) for an entry that is not valid JSON of the right shape, and the fs errors.
 */
export function fileJournal(dir: string): EnrollJournal {
  astring(dir, 'dir');
  if (dir.length === 0) throw new TypeError('"dir" expected a non-empty path');
  let made = false; // the directory exists (made once per journal object, not once per save)
  return {
    async load(serial) {
      const file = join(dir, journalFileName(serial));
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new EnrollmentError('journal', `journal ${file} is not valid JSON`, serial, { cause: e });
      }
      if (!validEntry(value, serial)) throw new EnrollmentError('journal', `journal ${file} is not a journal entry for this serial`, serial);
      return value;
    },
    async save(serial, entry) {
      const file = join(dir, journalFileName(serial));
      if (!validEntry(entry, serial)) throw new TypeError('"entry" expected a journal entry for this serial');
      const text = `${JSON.stringify(entry, null, 1)}\n`;
      for (let attempt = 0; ; attempt++) {
        if (!made) {
          await mkdir(dir, { recursive: true });
          made = true;
        }
        try {
          // 0666 narrowed by the umask (as writeFile made it), data fsynced before the rename, no directory fsync.
          await writeFileAtomic(file, text, { mode: 0o666, syncDir: false });
          return;
        } catch (e) {
          // The directory was removed since it was made: make it again and write once more.
          if ((e as NodeJS.ErrnoException).code === 'ENOENT' && attempt === 0) {
            made = false;
            continue;
          }
          throw e;
        }
      }
    },
    async remove(serial) {
      await rm(join(dir, journalFileName(serial)), { force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

function randomContribution(): bigint {
  for (;;) {
    const bytes = randomBytes(64);
    const c = bytesToBigIntLE(bytes) % L;
    bytes.fill(0);
    if (c !== 0n) return c;
  }
}

function ed25519Raw(signer: Signer, field: string): Uint8Array {
  if (typeof signer !== 'object' || signer === null || typeof signer.sign !== 'function' || typeof signer.publicJwk !== 'object' || signer.publicJwk === null) {
    throw new TypeError(`"${field}" expected a Signer`);
  }
  const jwk = signer.publicJwk;
  if (signer.algorithm !== 'EdDSA' || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new EnrollmentError(field === 'plan.admin' ? 'admin-key' : 'bench-key',
      `${field} must be an Ed25519 key (EdDSA), got ${String(jwk.crv)} / ${String(signer.algorithm)}`);
  }
  const raw = fromB64u(jwk.x, `${field}.publicJwk.x`);
  if (raw.length !== 32) throw new EnrollmentError(field === 'plan.admin' ? 'admin-key' : 'bench-key', `${field} public key is not 32 bytes`);
  return raw;
}

function asMap(value: CborValue, what: string, serial: string | undefined): CborMap {
  if (!(value instanceof Map)) throw new EnrollmentError('info', `${what} is not a CBOR map`, serial);
  return value;
}

function field<T>(map: CborMap, key: number, ok: (v: CborValue) => v is T & CborValue, what: string, check: EnrollmentCheck, serial: string | undefined): T {
  const v = map.get(key);
  if (v === undefined || !ok(v)) throw new EnrollmentError(check, `${what} is missing or of the wrong type`, serial);
  return v;
}

const isBytes = (v: CborValue): v is Uint8Array => v instanceof Uint8Array;
const isText = (v: CborValue): v is string => typeof v === 'string';
const isUint = (v: CborValue): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

interface KeyTriple {
  sig: Uint8Array;
  enc: Uint8Array;
  auth: Uint8Array;
}

function triple(map: CborMap, what: string, check: EnrollmentCheck, serial: string): KeyTriple {
  const sig = field(map, 1, isBytes, `${what}.signature_key`, check, serial);
  const enc = field(map, 2, isBytes, `${what}.encryption_key`, check, serial);
  const auth = field(map, 3, isBytes, `${what}.authentication_key`, check, serial);
  if (sig.length !== 32 || enc.length !== 33 || auth.length !== 33) {
    throw new EnrollmentError(check, `${what}: keys of ${sig.length}/${enc.length}/${auth.length} bytes, expected 32/33/33`, serial);
  }
  return { sig, enc, auth };
}

function keysToJournal(k: KeyTriple): JournalKeys {
  return { signature: b64u(k.sig), encryption: b64u(k.enc), authentication: b64u(k.auth) };
}

function keysFromJournal(k: JournalKeys): KeyTriple {
  return { sig: fromB64u(k.signature, 'signature'), enc: fromB64u(k.encryption, 'encryption'), auth: fromB64u(k.authentication, 'authentication') };
}

function sameKeys(a: KeyTriple, b: KeyTriple): boolean {
  return equalBytes(a.sig, b.sig) && equalBytes(a.enc, b.enc) && equalBytes(a.auth, b.auth);
}

/** Parses and verifies a Device Profile the device signed, and checks that its keys are `keys`. */
async function checkDeviceProfile(bytes: Uint8Array, keys: KeyTriple, check: EnrollmentCheck, what: string, serial: string, now: Date):
Promise<{ signed: SignedProfile; id: string }> {
  let signed: SignedProfile;
  try {
    signed = JSON.parse(fromUtf8(bytes)) as SignedProfile;
  } catch (e) {
    throw new EnrollmentError(check, `the ${what} Device Profile is not JSON`, serial, { cause: e });
  }
  let profile: DeviceProfile;
  try {
    const verified = await verifyProfile(signed, { now });
    if (verified.type !== 'DeviceProfile') throw new EnrollmentError(check, `the ${what} profile is a ${verified.type}`, serial);
    profile = verified.profile as DeviceProfile;
  } catch (e) {
    if (e instanceof EnrollmentError) throw e;
    throw new EnrollmentError(check, `the ${what} Device Profile does not verify: ${(e as Error).message}`, serial, { cause: e });
  }
  const id = keyId(publicKeyFromRaw('Ed25519', keys.sig));
  const encU = keys.enc.subarray(0, 32);
  const authU = keys.auth.subarray(0, 32);
  const entryIs = (entry: DeviceProfile['DeviceSignatureKey'] | undefined, crv: string, raw: Uint8Array): boolean =>
    entry !== undefined && entry.PublicParameters.crv === crv && entry.PublicParameters.x === b64u(raw) &&
    entry.UDF === keyId(publicKeyFromRaw(crv as 'Ed25519' | 'X25519', raw));
  if (profile.Identifier !== id || !entryIs(profile.DeviceSignatureKey, 'Ed25519', keys.sig) ||
    !entryIs(profile.DeviceEncryptionKey, 'X25519', encU) || !entryIs(profile.DeviceAuthenticationKey, 'X25519', authU)) {
    throw new EnrollmentError(check, `the ${what} Device Profile's keys differ from the keys in the reply`, serial);
  }
  return { signed, id };
}

// ---------------------------------------------------------------------------------------------------------------
// Enrollment

function checkPlan(plan: EnrollmentPlan): { adminRaw: Uint8Array; benchRaw: Uint8Array; adminId: string; benchId: string } {
  if (typeof plan !== 'object' || plan === null) throw new TypeError('"plan" expected an object');
  if (typeof plan.connect !== 'function') throw new TypeError('"plan.connect" expected a function');
  if (plan.isConnected !== undefined && typeof plan.isConnected !== 'function') throw new TypeError('"plan.isConnected" expected a function');
  if (plan.now !== undefined && typeof plan.now !== 'function') throw new TypeError('"plan.now" expected a function');
  if (!(plan.config instanceof Uint8Array)) throw new TypeError('"plan.config" expected a Uint8Array');
  if (plan.config.length > Limits.MAX_CONFIG) throw new RangeError(`"plan.config" expected at most ${Limits.MAX_CONFIG} bytes, got ${plan.config.length}`);
  if (plan.models !== undefined && (!Array.isArray(plan.models) || plan.models.some((m) => typeof m !== 'string'))) {
    throw new TypeError('"plan.models" expected an array of strings');
  }
  if (plan.timeouts !== undefined) {
    if (typeof plan.timeouts !== 'object' || plan.timeouts === null) throw new TypeError('"plan.timeouts" expected an object');
    for (const [name, ms] of Object.entries(plan.timeouts)) {
      if (!(ENROLL_REQUESTS as readonly string[]).includes(name)) throw new RangeError(`"plan.timeouts.${name}": not a request enrollment sends (${ENROLL_REQUESTS.join(', ')})`);
      aint(ms, `plan.timeouts.${name}`, 1, 600_000);
    }
  }
  const master = plan.master;
  if (typeof master !== 'object' || master === null || typeof master.Identifier !== 'string' || !Array.isArray(master.OnlineSignatureKeys)) {
    throw new TypeError('"plan.master" expected a Master Profile');
  }
  const benchRaw = ed25519Raw(plan.bench, 'plan.bench');
  const adminRaw = ed25519Raw(plan.admin, 'plan.admin');
  const adminId = keyId(publicKeyFromRaw('Ed25519', adminRaw));
  if (!master.OnlineSignatureKeys.some((k) => k.UDF === adminId)) {
    throw new EnrollmentError('admin-key', `the admin key ${adminId} is not an administration key (OnlineSignatureKeys) of account ${master.Identifier}`);
  }
  return { adminRaw, benchRaw, adminId, benchId: keyId(publicKeyFromRaw('Ed25519', benchRaw)) };
}

const needs = (state: number, entry: JournalEntry | undefined): boolean => {
  if (entry === undefined) return false;
  if (state >= DeviceState.COGENERATED && entry.cogen === undefined) return false;
  if (state >= DeviceState.INSTALLED && entry.install === undefined) return false;
  if (state >= DeviceState.COMMITTED && entry.record === undefined) return false;
  return true;
};

/**
 * Enrolls one device over an open session (docs/enrollment.md): HELLO, BENCH_AUTH, KEYGEN (base keys and the
 * self-signed base Device Profile), COGEN (random contributions sealed to the base encryption key; composite keys,
 * proof of possession and the composite Device Profile checked), INSTALL (the admin-signed connection and the
 * configuration sealed to the composite encryption key), COMMIT (the device signs the record digest), then
 * `plan.connect(compositeProfile)`. Resumes or restarts an interrupted device as the module comment says.
 * The session is not closed.
 * @param session an open session with the device
 * @param plan keys, account, configuration and the connect hook
 * @param opts port name, journal, progress hook, attempt count, byte counter
 * @returns the result with the record (not yet appended to any log)
 * @throws TypeError / RangeError for a bad plan or option (a config over 1024 bytes, …), before anything is sent
 * @throws EnrollmentError — before anything is sent: `admin-key` (not Ed25519, or not in the Master Profile's
 *   OnlineSignatureKeys), `bench-key` (not Ed25519); after HELLO: `info` (a malformed INFO), `model` (a model not in
 *   plan.models; nothing more is sent); `base-keys` / `base-profile` (PUBKEYS malformed, the base profile does not
 *   verify or its keys differ), `composite-keys` ("composite key mismatch"), `proof`, `composite-profile`, `ack`,
 *   `receipt` (the receipt does not verify), `committed` (a COMMITTED device without a matching journal: not
 *   re-provisioned), `journal`
 * @throws DeviceReplyError (with the device's status, e.g. BAD_SIGNATURE for an untrusted bench key)
 * @throws DeviceTimeoutError / DeviceDisconnectedError when the device stops answering or goes away (no result)
 * @throws whatever `plan.connect` / the journal throw
 */
export async function enrollDevice(session: DeviceSession, plan: EnrollmentPlan, opts: EnrollOptions): Promise<EnrollmentResult> {
  if (typeof session !== 'object' || session === null || typeof session.exchange !== 'function') throw new TypeError('"session" expected a DeviceSession');
  if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" expected an object');
  astring(opts.port, 'opts.port');
  if (opts.attempts !== undefined) aint(opts.attempts, 'opts.attempts', 1);
  if (opts.onStep !== undefined && typeof opts.onStep !== 'function') throw new TypeError('"opts.onStep" expected a function');
  const keys = checkPlan(plan);
  const run = new Enrollment(session, plan, opts, keys);
  return run.run();
}

class Enrollment {
  readonly steps: Array<{ step: EnrollStep; ms: number }> = [];
  readonly sent0: number;
  readonly received0: number;
  serial: string | undefined;
  entry: JournalEntry | undefined;

  constructor(
    readonly session: DeviceSession,
    readonly plan: EnrollmentPlan,
    readonly opts: EnrollOptions,
    readonly keys: { adminRaw: Uint8Array; benchRaw: Uint8Array; adminId: string; benchId: string },
  ) {
    this.sent0 = opts.counter?.bytesSent ?? 0;
    this.received0 = opts.counter?.bytesReceived ?? 0;
  }

  now(): Date {
    return this.plan.now?.() ?? new Date();
  }

  seconds(): number {
    return Math.floor(this.now().getTime() / 1000);
  }

  async step<T>(step: EnrollStep, fn: () => Promise<T>, detail?: string): Promise<T> {
    const t0 = performance.now();
    this.emit({ step, phase: 'start', ...(detail === undefined ? {} : { detail }) });
    const out = await fn();
    const ms = performance.now() - t0;
    this.steps.push({ step, ms });
    this.emit({ step, phase: 'done', ms });
    return out;
  }

  emit(e: StepEvent): void {
    this.opts.onStep?.(this.serial === undefined ? e : { ...e, serial: this.serial });
  }

  async exchange(type: EnrollRequest, message: Map<number, unknown>): Promise<CborMap> {
    const timeoutMs = this.plan.timeouts?.[type];
    const reply = await this.session.exchange(type, message as never, timeoutMs === undefined ? {} : { timeoutMs });
    return asMap(reply.payload, `reply to ${type}`, this.serial);
  }

  async save(next: JournalEntry): Promise<void> {
    this.entry = next;
    if (this.opts.journal !== undefined) await this.opts.journal.save(next.serial, next);
  }

  async run(): Promise<EnrollmentResult> {
    // HELLO
    const info = await this.step('hello', async () => {
      const m = await this.exchange('HELLO', new Map([[1, Limits.PROTOCOL_VERSION]]));
      const text = (key: number, name: string): string => {
        const v = field(m, key, isText, `INFO.${name}`, 'info', undefined);
        if (v.length === 0 || utf8(v).length > 64) throw new EnrollmentError('info', `INFO.${name} must be 1 to 64 bytes, got ${utf8(v).length}`);
        return v;
      };
      const model = text(1, 'model');
      const serial = text(2, 'serial');
      const firmware = text(3, 'firmware');
      field(m, 4, isUint, 'INFO.capabilities', 'info', serial);
      const state = field(m, 5, isUint, 'INFO.state', 'info', serial);
      if (state > DeviceState.COMMITTED) throw new EnrollmentError('info', `INFO.state ${state} is not a device state`, serial);
      const challenge = field(m, 6, isBytes, 'INFO.challenge', 'info', serial);
      if (challenge.length !== 32) throw new EnrollmentError('info', `INFO.challenge is ${challenge.length} bytes, expected 32`, serial);
      return { model, serial, firmware, state: state === DeviceState.AUTHENTICATED ? DeviceState.FACTORY : state, challenge };
    });
    this.serial = info.serial;
    const serial = info.serial;
    if (this.plan.models !== undefined && !this.plan.models.includes(info.model)) {
      throw new EnrollmentError('model', `device model "${info.model}" is not one of ${this.plan.models.map((m) => `"${m}"`).join(', ')}`, serial);
    }

    // BENCH_AUTH
    await this.step('auth', async () => {
      const signature = await this.plan.bench.sign(info.challenge);
      await this.exchange('BENCH_AUTH', new Map<number, unknown>([[1, info.challenge], [2, this.keys.benchRaw], [3, signature]]));
    });

    // journal and resume decision
    const stored = this.opts.journal === undefined ? undefined : await this.opts.journal.load(serial);
    const attempts = Math.max(this.opts.attempts ?? 1, stored === undefined ? 1 : stored.attempts + 1);
    const fresh = (): JournalEntry => ({
      version: 1, serial, model: info.model, firmware: info.firmware, port: this.opts.port, started: this.now().toISOString(), attempts,
    });

    let resumed: EnrollmentResult['resumed'];
    let base: { keys: KeyTriple; profile: SignedProfile; id: string } | undefined;
    let state = info.state;
    if (state === DeviceState.FACTORY) {
      resumed = 'fresh';
      this.entry = fresh();
    } else {
      base = await this.keygen();
      const matching = stored !== undefined && stored.baseDevice === base.id ? stored : undefined;
      if (state === DeviceState.KEYS_GENERATED || needs(state, matching)) {
        resumed = 'resumed';
        this.entry = matching === undefined ? fresh() : { ...matching, attempts, port: this.opts.port };
      } else if (state === DeviceState.COMMITTED) {
        throw new EnrollmentError('committed', 'the device is already provisioned (COMMITTED) and there is no matching journal; not re-provisioned', serial);
      } else {
        await this.reset(serial);
        resumed = 'restarted';
        state = DeviceState.FACTORY;
        base = undefined;
        this.entry = fresh();
      }
    }

    let outcome: Awaited<ReturnType<Enrollment['proceed']>>;
    try {
      base ??= await this.keygen();
      await this.saveBase(base);
      outcome = await this.proceed(info, base);
    } catch (e) {
      // A replayed request the device refuses with BAD_STATE: the journal is stale. Restart once (never COMMITTED).
      if (!(resumed === 'resumed' && e instanceof DeviceReplyError && e.status === DeviceStatus.BAD_STATE &&
        (e.request === 'COGEN' || e.request === 'INSTALL') && state !== DeviceState.COMMITTED)) {
        throw e;
      }
      await this.reset(serial);
      resumed = 'restarted';
      this.entry = fresh();
      base = await this.keygen();
      await this.saveBase(base);
      outcome = await this.proceed(info, base);
    }

    return {
      serial, model: info.model, firmware: info.firmware,
      deviceId: outcome.deviceId, baseDeviceId: base.id, deviceProfile: outcome.deviceProfile, baseProfile: base.profile,
      record: outcome.record, resumed, steps: this.steps,
      bytesSent: (this.opts.counter?.bytesSent ?? 0) - this.sent0,
      bytesReceived: (this.opts.counter?.bytesReceived ?? 0) - this.received0,
    };
  }

  async reset(serial: string): Promise<void> {
    await this.step('auth', async () => {
      await this.exchange('RESET', new Map([[1, serial]]));
    }, 'RESET');
  }

  async keygen(): Promise<{ keys: KeyTriple; profile: SignedProfile; id: string }> {
    const serial = this.serial as string;
    return this.step('keygen', async () => {
      const m = await this.exchange('KEYGEN', new Map([[1, ALL_KEYS], [2, this.seconds()]]));
      const keys = triple(m, 'PUBKEYS', 'base-keys', serial);
      const profileBytes = field(m, 4, isBytes, 'PUBKEYS.device_profile', 'base-keys', serial);
      const { signed, id } = await checkDeviceProfile(profileBytes, keys, 'base-profile', 'base', serial, this.now());
      return { keys, profile: signed, id };
    });
  }

  async saveBase(base: { keys: KeyTriple; id: string }): Promise<void> {
    const entry = this.entry as JournalEntry;
    if (entry.baseDevice === base.id) return;
    await this.save({ ...entry, baseDevice: base.id, baseKeys: keysToJournal(base.keys) });
  }

  async proceed(info: { model: string; serial: string; firmware: string }, base: { keys: KeyTriple; id: string }):
  Promise<{ deviceId: string; deviceProfile: SignedProfile; record: DeviceRecord }> {
    const serial = info.serial;
    // COGEN
    const composite = await this.step('cogen', async () => {
      let cogen = (this.entry as JournalEntry).cogen;
      if (cogen === undefined) {
        const c = [randomContribution(), randomContribution(), randomContribution()] as const;
        const cBytes = c.map((s) => bigIntToBytesLE(s, 32));
        let expected: KeyTriple;
        let box: Uint8Array;
        let plaintext: Uint8Array | undefined;
        try {
          expected = {
            // base ⊕ contribution·B (= combinePublicKeys(base, publicKeyFromScalar(c)), without re-decoding c·B)
            sig: combineWithScalar('Ed25519', base.keys.sig, c[0]),
            enc: combineWithScalar('X25519', base.keys.enc, c[1]),
            auth: combineWithScalar('X25519', base.keys.auth, c[2]),
          };
          plaintext = encodeCbor(new Map<number, Uint8Array>([
            [1, cBytes[0] as Uint8Array], [2, cBytes[1] as Uint8Array], [3, cBytes[2] as Uint8Array],
            [4, expected.sig], [5, expected.enc], [6, expected.auth],
          ]));
          box = sealBox(base.keys.enc, 'contribution', plaintext);
        } finally {
          wipe(...cBytes, plaintext);
        }
        cogen = { box: b64u(box), time: this.seconds(), expected: keysToJournal(expected) };
        await this.save({ ...(this.entry as JournalEntry), cogen });
      }
      const box = fromB64u(cogen.box, 'journal.cogen.box');
      const expected = keysFromJournal(cogen.expected);
      const m = await this.exchange('COGEN', new Map<number, unknown>([[1, box], [2, cogen.time]]));
      const got = triple(m, 'PROOF', 'composite-keys', serial);
      if (!sameKeys(got, expected)) throw new EnrollmentError('composite-keys', 'composite key mismatch: the keys in PROOF differ from base ⊕ contribution', serial);
      const proof = field(m, 4, isBytes, 'PROOF.proof', 'proof', serial);
      if (!verifyEd25519(proof, context(PROOF_CONTEXT, sha512(box), got.sig, got.enc, got.auth), got.sig)) {
        throw new EnrollmentError('proof', 'the proof of possession does not verify under the composite signature key', serial);
      }
      const profileBytes = field(m, 5, isBytes, 'PROOF.device_profile', 'composite-profile', serial);
      const profile = await checkDeviceProfile(profileBytes, got, 'composite-profile', 'composite', serial, this.now());
      if ((this.entry as JournalEntry).device !== profile.id) await this.save({ ...(this.entry as JournalEntry), device: profile.id });
      return { keys: got, ...profile };
    });

    // INSTALL
    await this.step('install', async () => {
      let install = (this.entry as JournalEntry).install;
      if (install === undefined) {
        const unsigned = new Map<number, string | Uint8Array | number>([
          [1, this.plan.master.Identifier], [2, composite.id], [3, this.keys.adminRaw], [4, this.seconds()],
        ]);
        const signature = await this.plan.admin.sign(context(CONNECTION_CONTEXT, encodeCbor(unsigned)));
        if (!(signature instanceof Uint8Array) || signature.length !== 64) throw new EnrollmentError('admin-key', 'the admin signer returned a signature that is not 64 bytes', serial);
        const connection = encodeCbor(new Map([...unsigned, [5, signature]]));
        const config = sealBox(composite.keys.enc, 'config', this.plan.config);
        install = { connection: b64u(connection), config: b64u(config), configDigest: b64u(sha512(this.plan.config)) };
        await this.save({ ...(this.entry as JournalEntry), install });
      }
      const config = fromB64u(install.config, 'journal.install.config');
      if (config.length < BOX_OVERHEAD) throw new EnrollmentError('journal', 'journal config box is too short', serial);
      const m = await this.exchange('INSTALL', new Map<number, unknown>([[1, fromB64u(install.connection, 'journal.install.connection')], [2, config]]));
      const state = field(m, 1, isUint, 'ACK.state', 'ack', serial);
      if (state !== DeviceState.INSTALLED && state !== DeviceState.COMMITTED) {
        throw new EnrollmentError('ack', `ACK to INSTALL reports state ${state}, expected INSTALLED or COMMITTED`, serial);
      }
    });

    // COMMIT
    const record = await this.step('commit', async () => {
      let draft = (this.entry as JournalEntry).record;
      const entry = this.entry as JournalEntry;
      if (draft === undefined) {
        draft = {
          Serial: serial, Model: info.model, Firmware: info.firmware, Port: this.opts.port, Device: composite.id, BaseDevice: base.id,
          Account: this.plan.master.Identifier, AdminKey: this.keys.adminId, BenchKey: this.keys.benchId,
          ConfigDigest: (entry.install as NonNullable<JournalEntry['install']>).configDigest,
          Started: entry.started, Finished: this.now().toISOString(), Attempts: entry.attempts,
        };
        await this.save({ ...entry, record: draft });
      }
      const digest = recordDigest(draft);
      const m = await this.exchange('COMMIT', new Map([[1, digest]]));
      const receipt = field(m, 1, isBytes, 'RECEIPT.signature', 'receipt', serial);
      if (!verifyEd25519(receipt, context(RECEIPT_CONTEXT, digest), composite.keys.sig)) {
        throw new EnrollmentError('receipt', 'the receipt does not verify under the composite signature key', serial);
      }
      const full: DeviceRecord = { ...draft, Receipt: b64u(receipt), RecordDigest: b64u(digest) };
      await this.save({ ...(this.entry as JournalEntry), receipt: full.Receipt });
      return full;
    });

    // connect
    await this.step('connect', async () => {
      const already = this.plan.isConnected !== undefined && await this.plan.isConnected(composite.id);
      if (!already) await this.plan.connect(composite.signed);
      if ((this.entry as JournalEntry).connected !== true) await this.save({ ...(this.entry as JournalEntry), connected: true });
    });

    return { deviceId: composite.id, deviceProfile: composite.signed, record };
  }
}
