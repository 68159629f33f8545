/**
 * An in-process meshkit device in TypeScript: the same protocol (docs/protocol.md) and enrollment contract
 * (docs/enrollment.md) as the C firmware, speaking serial frames over a {@link Transport}. Used by `meshkit demo`
 * when socat / the C emulator are not available, and by fast unit tests; the C emulator is the reference device.
 *
 * Order of checks for a request (as firmware-bindings/include/mk_device.h):
 *   1. the same (type, seq, bytes) as the previous request → the previous reply again, byte for byte;
 *   2. a type that is not a host → device request → UNKNOWN_MESSAGE;
 *   3. CBOR subset (CBOR_INVALID / CBOR_NONCANONICAL), a map (WRONG_TYPE), the fields in map order of the right
 *      type (WRONG_TYPE), then every required field present (MISSING_FIELD);
 *   4. no HELLO in this session → BAD_STATE; a request not allowed in the persistent state (the table of
 *      docs/enrollment.md, `RequestRules`) → BAD_STATE; a request that needs BENCH_AUTH without it → NOT_AUTHENTICATED;
 *   5. the handler.
 * Frames the decoder drops (bad CRC, malformed…) get no reply, as on the C device.
 *
 * Keys are raw scalars (1 ≤ s < L, never clamped) made from `node:crypto` randomness; signing, public keys and key
 * agreement go through src/core/cogen.ts. Every transition is "written to flash" before the reply is sent: the
 * `persist` hook gets the new {@link SoftDeviceState} (it holds the device's secret scalars, like a flash image —
 * store it only where a device's flash would be).
 */
import { randomBytes } from 'node:crypto';
import { abytes, b64u, bigIntToBytesLE, bytesToBigIntLE, concatBytes, equalBytes, fromHex, toHex, utf8, wipe } from '../core/bytes.js';
import { GROUP_ORDER, publicKeyFromScalar, signWithScalar } from '../core/cogen.js';
import { DeviceError } from '../core/errors.js';
import { keyId, publicKeyFromRaw } from '../core/keys.js';
import { openBox } from './box.js';
import { sha512, context, verifyEd25519 } from './enroll-crypto.js';
import { decodeCbor, encodeCbor, type CborInput, type CborMap, type CborValue } from './cbor.js';
import { encodeFrames, FrameDecoder } from './framing.js';
import {
  DeviceState, DeviceStatus, Limits, MessageFields, MessageType, MessageTypeNames, RequestRules, Capability,
  type DeviceStatusName, type FieldSpec, type MessageTypeName,
} from './protocol.generated.js';
import type { Transport } from './transport/types.js';

const L = GROUP_ORDER.Ed25519;
const REQUESTS = ['HELLO', 'BENCH_AUTH', 'KEYGEN', 'COGEN', 'INSTALL', 'COMMIT', 'RESET'] as const;
type RequestName = (typeof REQUESTS)[number];

/** The three scalars of one key set, 64 hex digits each (little-endian). */
export interface SoftKeySet {
  readonly signature: string;
  readonly encryption: string;
  readonly authentication: string;
}

/**
 * The soft device's persistent state (its "flash"), JSON-serialisable. Holds secret scalars (hex) once keys exist.
 * `state` is a persistent DeviceState value (never AUTHENTICATED).
 */
export interface SoftDeviceState {
  readonly format: 1;
  readonly state: number;
  readonly base?: SoftKeySet;
  readonly composite?: SoftKeySet;
  /** SHA-512(contribution box)[0..32], hex. */
  readonly cogenDigest?: string;
  /** SHA-512(connection ‖ config)[0..32], hex. */
  readonly installDigest?: string;
  readonly account?: string;
  /** The admin key of the connection, hex. */
  readonly adminKey?: string;
  /** The configuration plaintext, hex. */
  readonly config?: string;
  /** The committed record digest (64 bytes), hex. */
  readonly recordDigest?: string;
}

/** Options of {@link startSoftDevice}. */
export interface SoftDeviceOptions {
  /** INFO.model. */
  readonly model: string;
  /** INFO.serial. */
  readonly serial: string;
  /** INFO.firmware (default "soft-0.1.0"). */
  readonly firmware?: string;
  /** The Ed25519 provisioner public key (32 bytes) the device pins for BENCH_AUTH. */
  readonly provisionerKey: Uint8Array;
  /** The stored state to start from (default: factory-fresh). */
  readonly state?: SoftDeviceState;
  /**
   * Called with the new state after every transition, before the reply is sent (the flash write). `request` names
   * the request that caused it. An exception here fails the request with ERROR{FLASH}.
   */
  readonly persist?: (state: SoftDeviceState, request: MessageTypeName) => void;
}

/** A running soft device. */
export interface SoftDevice {
  /** A copy of the persistent state (export it to "flash" it into another soft device). */
  readonly state: SoftDeviceState;
  /** The requests seen, in order (type names; unknown types as numbers). */
  readonly seen: readonly (MessageTypeName | number)[];
  /** Stops answering and closes the device's end of the transport (the host sees the device go away). */
  close(): Promise<void>;
}

class Refusal extends Error {
  constructor(readonly status: DeviceStatusName, readonly detail: string) {
    super(detail);
  }
}

const refuse = (status: DeviceStatusName, detail: string): never => {
  throw new Refusal(status, detail);
};

interface Keys {
  sig: bigint;
  enc: bigint;
  auth: bigint;
}

interface Publics {
  sig: Uint8Array;
  enc: Uint8Array;
  auth: Uint8Array;
}

function parseKeySet(set: SoftKeySet | undefined, field: string): Keys | undefined {
  if (set === undefined) return undefined;
  const one = (hex: unknown, name: string): bigint => {
    if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) throw new TypeError(`"state.${field}.${name}" expected 64 lower-case hex digits`);
    const s = bytesToBigIntLE(fromHex(hex));
    if (s === 0n || s >= L) throw new RangeError(`"state.${field}.${name}" is not a scalar 1 ≤ s < L`);
    return s;
  };
  return { sig: one(set.signature, 'signature'), enc: one(set.encryption, 'encryption'), auth: one(set.authentication, 'authentication') };
}

function hexOf(s: bigint): string {
  return toHex(bigIntToBytesLE(s, 32));
}

function keySetOf(k: Keys): SoftKeySet {
  return { signature: hexOf(k.sig), encryption: hexOf(k.enc), authentication: hexOf(k.auth) };
}

function publicsOf(k: Keys): Publics {
  return {
    sig: publicKeyFromScalar('Ed25519', k.sig),
    enc: publicKeyFromScalar('X25519', k.enc, { extended: true }),
    auth: publicKeyFromScalar('X25519', k.auth, { extended: true }),
  };
}

function randomScalar(): bigint {
  for (;;) {
    const bytes = randomBytes(64);
    const s = bytesToBigIntLE(bytes) % L;
    bytes.fill(0);
    if (s !== 0n) return s;
  }
}

function isUint(v: CborValue | undefined): v is number | bigint {
  return (typeof v === 'number' && Number.isInteger(v) && v >= 0) || (typeof v === 'bigint' && v >= 0n);
}

function typeOk(v: CborValue, type: FieldSpec['type']): boolean {
  switch (type) {
    case 'uint': return isUint(v);
    case 'bstr': return v instanceof Uint8Array;
    case 'tstr': return typeof v === 'string';
    case 'bool': return typeof v === 'boolean';
    case 'array': return Array.isArray(v);
    case 'map': return v instanceof Map;
  }
}

/** Checks a decoded CBOR value against a field list: map entries in order (WRONG_TYPE), then presence (MISSING_FIELD). */
function checkFields(name: string, value: CborValue, spec: readonly FieldSpec[]): CborMap {
  if (!(value instanceof Map)) refuse('WRONG_TYPE', `${name}: message is not a map`);
  const map = value as CborMap;
  for (const [key, v] of map) {
    const field = spec.find((f) => f.key === key);
    if (field !== undefined && !typeOk(v, field.type)) refuse('WRONG_TYPE', `${name}.${field.name}: expected ${field.type}`);
  }
  for (const field of spec) {
    if (field.required && !map.has(field.key)) refuse('MISSING_FIELD', `${name}.${field.name}: missing`);
  }
  return map;
}

function decodeOrRefuse(name: string, bytes: Uint8Array): CborValue {
  try {
    return decodeCbor(bytes);
  } catch (e) {
    const status = e instanceof DeviceError && e.status === DeviceStatus.CBOR_NONCANONICAL ? 'CBOR_NONCANONICAL' : 'CBOR_INVALID';
    return refuse(status, `${name}: ${status === 'CBOR_NONCANONICAL' ? 'CBOR not in canonical form' : 'not valid subset CBOR'}`);
  }
}

const bstr = (m: CborMap, k: number): Uint8Array => m.get(k) as Uint8Array;
const uint = (m: CborMap, k: number): number => Number(m.get(k));

/** `YYYY-MM-DDTHH:MM:SS.000Z` of Unix seconds. */
function isoSeconds(time: number): string {
  const d = new Date(time * 1000);
  if (!Number.isFinite(d.getTime())) refuse('WRONG_TYPE', 'time: out of range');
  return d.toISOString();
}

/** The Device Profile JWS, exactly as docs/enrollment.md builds it. */
function deviceProfile(keys: Keys, pub: Publics, description: string, time: number): Uint8Array {
  const sigId = keyId(publicKeyFromRaw('Ed25519', pub.sig));
  const encU = pub.enc.subarray(0, 32);
  const authU = pub.auth.subarray(0, 32);
  const entry = (udf: string, crv: string, x: Uint8Array): string =>
    `{"UDF":"${udf}","PublicParameters":{"kty":"OKP","crv":"${crv}","x":"${b64u(x)}"}}`;
  const header = `{"alg":"EdDSA","kid":"${sigId}","cty":"DeviceProfile"}`;
  const payload = `{"DeviceProfile":{"Identifier":"${sigId}","Names":[],"Updated":"${isoSeconds(time)}","Sequence":1,` +
    `"Description":${JSON.stringify(description)},` +
    `"DeviceSignatureKey":${entry(sigId, 'Ed25519', pub.sig)},` +
    `"DeviceAuthenticationKey":${entry(keyId(publicKeyFromRaw('X25519', authU)), 'X25519', authU)},` +
    `"DeviceEncryptionKey":${entry(keyId(publicKeyFromRaw('X25519', encU)), 'X25519', encU)}}}`;
  const h = b64u(utf8(header));
  const p = b64u(utf8(payload));
  const signature = signWithScalar('Ed25519', keys.sig, utf8(`${h}.${p}`));
  return utf8(`{"payload":"${p}","signatures":[{"protected":"${h}","signature":"${b64u(signature)}"}]}`);
}

/**
 * Starts an in-process device on `transport` (its device end, e.g. the second element of `createLinkPair()`).
 * @param transport the device's end of the link; the device owns it (closes it in `close()`)
 * @param options identity, pinned provisioner key, stored state and the flash hook
 * @returns the running device
 * @throws TypeError / RangeError for a wrong option (a provisioner key that is not 32 bytes, an identity string that
 *   is empty or longer than 64 bytes, a malformed stored state)
 */
export function startSoftDevice(transport: Transport, options: SoftDeviceOptions): SoftDevice {
  if (typeof transport !== 'object' || transport === null || typeof transport.onData !== 'function') {
    throw new TypeError('"transport" expected a Transport');
  }
  if (typeof options !== 'object' || options === null) throw new TypeError('"options" expected an object');
  const identity = (value: unknown, field: string): string => {
    if (typeof value !== 'string') throw new TypeError(`"${field}" expected a string`);
    const n = utf8(value).length;
    if (n === 0 || n > 64) throw new RangeError(`"${field}" expected 1 to 64 bytes of UTF-8, got ${n}`);
    return value;
  };
  const model = identity(options.model, 'model');
  const serial = identity(options.serial, 'serial');
  const firmware = identity(options.firmware ?? 'soft-0.1.0', 'firmware');
  const provisionerKey = abytes(options.provisionerKey, 'provisionerKey', 32).slice();
  if (options.persist !== undefined && typeof options.persist !== 'function') throw new TypeError('"persist" expected a function');

  // ---- persistent state
  const initial = options.state;
  let state: number = DeviceState.FACTORY;
  let base: Keys | undefined;
  let composite: Keys | undefined;
  let cogenDigest: Uint8Array | undefined;
  let installDigest: Uint8Array | undefined;
  let account: string | undefined;
  let adminKey: Uint8Array | undefined;
  let config: Uint8Array | undefined;
  let recordDigest: Uint8Array | undefined;
  if (initial !== undefined) {
    if (typeof initial !== 'object' || initial === null || initial.format !== 1) throw new TypeError('"state" expected a SoftDeviceState (format 1)');
    const persistent: number[] = [DeviceState.FACTORY, DeviceState.KEYS_GENERATED, DeviceState.COGENERATED, DeviceState.INSTALLED, DeviceState.COMMITTED];
    if (!persistent.includes(initial.state)) throw new RangeError(`"state.state" expected a persistent device state, got ${String(initial.state)}`);
    state = initial.state;
    base = parseKeySet(initial.base, 'base');
    composite = parseKeySet(initial.composite, 'composite');
    const hex = (v: string | undefined, field: string, len: number): Uint8Array | undefined => {
      if (v === undefined) return undefined;
      const b = fromHex(v, `state.${field}`);
      if (b.length !== len && len > 0) throw new RangeError(`"state.${field}" expected ${len} bytes`);
      return b;
    };
    cogenDigest = hex(initial.cogenDigest, 'cogenDigest', 32);
    installDigest = hex(initial.installDigest, 'installDigest', 32);
    adminKey = hex(initial.adminKey, 'adminKey', 32);
    config = hex(initial.config, 'config', 0);
    recordDigest = hex(initial.recordDigest, 'recordDigest', 64);
    account = initial.account;
    const need = (ok: boolean, what: string): void => {
      if (!ok) throw new RangeError(`"state": ${what} missing for state ${state}`);
    };
    if (state >= DeviceState.KEYS_GENERATED) need(base !== undefined, 'base keys');
    if (state >= DeviceState.COGENERATED) need(composite !== undefined && cogenDigest !== undefined, 'composite keys');
    if (state >= DeviceState.INSTALLED) need(installDigest !== undefined && adminKey !== undefined && account !== undefined && config !== undefined, 'installation');
    if (state >= DeviceState.COMMITTED) need(recordDigest !== undefined, 'record digest');
  }

  const snapshot = (): SoftDeviceState => ({
    format: 1,
    state,
    ...(base === undefined ? {} : { base: keySetOf(base) }),
    ...(composite === undefined ? {} : { composite: keySetOf(composite) }),
    ...(cogenDigest === undefined ? {} : { cogenDigest: toHex(cogenDigest) }),
    ...(installDigest === undefined ? {} : { installDigest: toHex(installDigest) }),
    ...(account === undefined ? {} : { account }),
    ...(adminKey === undefined ? {} : { adminKey: toHex(adminKey) }),
    ...(config === undefined ? {} : { config: toHex(config) }),
    ...(recordDigest === undefined ? {} : { recordDigest: toHex(recordDigest) }),
  });

  /** The flash write: before the reply. */
  const commit = (request: MessageTypeName): void => {
    if (options.persist === undefined) return;
    try {
      options.persist(snapshot(), request);
    } catch (e) {
      refuse('FLASH', `flash write failed: ${(e as Error).message}`);
    }
  };

  // ---- session
  let session = false;
  let authenticated = false;
  let challenge = new Uint8Array(32);
  let last: { type: number; seq: number; request: Uint8Array; replyType: number; reply: Uint8Array } | undefined;
  const seen: (MessageTypeName | number)[] = [];
  const reportedState = (): number => (state === DeviceState.FACTORY && authenticated ? DeviceState.AUTHENTICATED : state);
  const description = `${model} ${serial}`;

  const pubkeys = (time: number): CborInput => {
    const k = base as Keys;
    const pub = publicsOf(k);
    return new Map<number, CborInput>([[1, pub.sig], [2, pub.enc], [3, pub.auth], [4, deviceProfile(k, pub, description, time)]]);
  };

  const proof = (time: number, boxDigest: Uint8Array): CborInput => {
    const k = composite as Keys;
    const pub = publicsOf(k);
    const signature = signWithScalar('Ed25519', k.sig, context('meshkit-cogen-proof-v1', boxDigest, pub.sig, pub.enc, pub.auth));
    return new Map<number, CborInput>([
      [1, pub.sig], [2, pub.enc], [3, pub.auth], [4, signature], [5, deviceProfile(k, pub, description, time)],
    ]);
  };

  const wipeAll = (): void => {
    base = undefined;
    composite = undefined;
    wipe(cogenDigest, installDigest, adminKey, config, recordDigest);
    cogenDigest = installDigest = adminKey = config = recordDigest = undefined;
    account = undefined;
  };

  const handlers: Record<RequestName, (m: CborMap) => { type: MessageTypeName; payload: CborInput }> = {
    HELLO(m) {
      const version = m.get(1) as number | bigint;
      if (BigInt(version) !== BigInt(Limits.PROTOCOL_VERSION)) {
        refuse('BAD_VERSION', `HELLO.version ${String(version)} not supported; this device speaks ${Limits.PROTOCOL_VERSION}`);
      }
      challenge = new Uint8Array(randomBytes(32));
      session = true;
      authenticated = false;
      return {
        type: 'INFO',
        payload: new Map<number, CborInput>([
          [1, model], [2, serial], [3, firmware],
          [4, Capability.ED25519 | Capability.X25519 | Capability.COGEN | Capability.SERIAL],
          [5, reportedState()], [6, challenge],
        ]),
      };
    },
    BENCH_AUTH(m) {
      if (!equalBytes(bstr(m, 1), challenge) || bstr(m, 1).length !== 32) refuse('BAD_SIGNATURE', "BENCH_AUTH.challenge: not this session's challenge");
      const key = bstr(m, 2);
      if (key.length !== 32 || !equalBytes(key, provisionerKey) || !verifyEd25519(bstr(m, 3), challenge, provisionerKey)) {
        authenticated = false;
        refuse('BAD_SIGNATURE', 'BENCH_AUTH: bench key not trusted or signature invalid');
      }
      authenticated = true;
      return { type: 'BENCH_AUTH_OK', payload: new Map([[1, reportedState()]]) };
    },
    KEYGEN(m) {
      const time = uint(m, 2);
      if (state === DeviceState.FACTORY) {
        base = { sig: randomScalar(), enc: randomScalar(), auth: randomScalar() };
        state = DeviceState.KEYS_GENERATED;
        commit('KEYGEN');
      }
      return { type: 'PUBKEYS', payload: pubkeys(time) };
    },
    COGEN(m) {
      const box = bstr(m, 1);
      const time = uint(m, 2);
      const digest = sha512(box);
      const short = digest.slice(0, 32);
      if (state >= DeviceState.COGENERATED) {
        if (cogenDigest === undefined || !equalBytes(short, cogenDigest)) refuse('BAD_STATE', 'COGEN: a different contribution was already applied');
        return { type: 'PROOF', payload: proof(time, digest) };
      }
      const k = base as Keys;
      const plain = openBox(k.enc, publicKeyFromScalar('X25519', k.enc), 'contribution', box);
      let c: Keys | undefined;
      let next: Keys | undefined;
      try {
        const map = checkFields('COGEN.contribution', decodeOrRefuse('COGEN.contribution', plain), [
          { key: 1, name: 'signature', type: 'bstr', required: true },
          { key: 2, name: 'encryption', type: 'bstr', required: true },
          { key: 3, name: 'authentication', type: 'bstr', required: true },
          { key: 4, name: 'signature_key', type: 'bstr', required: true },
          { key: 5, name: 'encryption_key', type: 'bstr', required: true },
          { key: 6, name: 'authentication_key', type: 'bstr', required: true },
        ]);
        const lengths = [32, 32, 32, 32, 33, 33];
        lengths.forEach((len, i) => {
          if (bstr(map, i + 1).length !== len) refuse('WRONG_TYPE', `COGEN.contribution key ${i + 1}: expected ${len} bytes`);
        });
        const scalar = (i: number): bigint => {
          const s = bytesToBigIntLE(bstr(map, i));
          if (s === 0n || s >= L) refuse('COGEN_MISMATCH', `COGEN.contribution key ${i}: not a scalar 1 ≤ c < L`);
          return s;
        };
        c = { sig: scalar(1), enc: scalar(2), auth: scalar(3) };
        next = { sig: (k.sig + c.sig) % L, enc: (k.enc + c.enc) % L, auth: (k.auth + c.auth) % L };
        if (next.sig === 0n || next.enc === 0n || next.auth === 0n) refuse('COGEN_MISMATCH', 'COGEN: a composite scalar is zero');
        const pub = publicsOf(next);
        if (!equalBytes(pub.sig, bstr(map, 4)) || !equalBytes(pub.enc, bstr(map, 5)) || !equalBytes(pub.auth, bstr(map, 6))) {
          refuse('COGEN_MISMATCH', 'COGEN: composite keys differ from the expected ones');
        }
      } finally {
        wipe(plain);
        c = undefined;
      }
      composite = next;
      cogenDigest = short;
      state = DeviceState.COGENERATED;
      commit('COGEN');
      return { type: 'PROOF', payload: proof(time, digest) };
    },
    INSTALL(m) {
      const connection = bstr(m, 1);
      const box = bstr(m, 2);
      const digest = sha512(connection, box).slice(0, 32);
      if (state >= DeviceState.INSTALLED) {
        if (installDigest === undefined || !equalBytes(digest, installDigest)) refuse('BAD_STATE', 'INSTALL: different connection or configuration already installed');
        return { type: 'ACK', payload: new Map([[1, reportedState()]]) };
      }
      const k = composite as Keys;
      const conn = checkFields('INSTALL.connection', decodeOrRefuse('INSTALL.connection', connection), [
        { key: 1, name: 'account', type: 'tstr', required: true },
        { key: 2, name: 'device', type: 'tstr', required: true },
        { key: 3, name: 'admin_key', type: 'bstr', required: true },
        { key: 4, name: 'issued', type: 'uint', required: true },
        { key: 5, name: 'signature', type: 'bstr', required: true },
      ]);
      if (bstr(conn, 3).length !== 32) refuse('WRONG_TYPE', 'INSTALL.connection.admin_key: expected 32 bytes');
      if (bstr(conn, 5).length !== 64) refuse('WRONG_TYPE', 'INSTALL.connection.signature: expected 64 bytes');
      const myId = keyId(publicKeyFromRaw('Ed25519', publicKeyFromScalar('Ed25519', k.sig)));
      if (conn.get(2) !== myId) refuse('WRONG_DEVICE', 'INSTALL.connection names another device');
      const signed = encodeCbor(new Map<number, CborInput>([[1, conn.get(1) as string], [2, conn.get(2) as string], [3, bstr(conn, 3)], [4, conn.get(4) as number | bigint]]));
      if (!verifyEd25519(bstr(conn, 5), context('meshkit-connection-v1', signed), bstr(conn, 3))) {
        refuse('BAD_SIGNATURE', 'INSTALL.connection: admin signature does not verify');
      }
      const plain = openBox(k.enc, publicKeyFromScalar('X25519', k.enc), 'config', box);
      if (plain.length > Limits.MAX_CONFIG) {
        wipe(plain);
        refuse('TOO_LARGE', `INSTALL.config: more than ${Limits.MAX_CONFIG} bytes`);
      }
      account = conn.get(1) as string;
      adminKey = bstr(conn, 3).slice();
      config = plain;
      installDigest = digest;
      state = DeviceState.INSTALLED;
      commit('INSTALL');
      return { type: 'ACK', payload: new Map([[1, reportedState()]]) };
    },
    COMMIT(m) {
      const digest = bstr(m, 1);
      if (digest.length !== 64) refuse('WRONG_TYPE', 'COMMIT.record_digest: expected 64 bytes');
      if (state === DeviceState.COMMITTED) {
        if (recordDigest === undefined || !equalBytes(digest, recordDigest)) refuse('BAD_STATE', 'COMMIT: another record is already committed');
      } else {
        recordDigest = digest.slice();
        state = DeviceState.COMMITTED;
        commit('COMMIT');
      }
      const signature = signWithScalar('Ed25519', (composite as Keys).sig, context('meshkit-receipt-v1', digest));
      return { type: 'RECEIPT', payload: new Map([[1, signature]]) };
    },
    RESET(m) {
      if (m.get(1) !== serial) refuse('WRONG_DEVICE', 'RESET.serial is not this device');
      wipeAll();
      state = DeviceState.FACTORY;
      commit('RESET');
      return { type: 'ACK', payload: new Map([[1, reportedState()]]) };
    },
  };

  const dispatch = (type: number, payload: Uint8Array): { type: number; payload: Uint8Array } => {
    const name = (MessageTypeNames as Readonly<Record<number, string>>)[type];
    try {
      if (name === undefined || !(REQUESTS as readonly string[]).includes(name)) {
        return refuse('UNKNOWN_MESSAGE', `message type ${type} is not a request this device handles`);
      }
      const request = name as RequestName;
      const map = checkFields(request, decodeOrRefuse(request, payload), MessageFields[request]);
      if (request !== 'HELLO') {
        if (!session) refuse('BAD_STATE', `${request}: no session; send HELLO first`);
        const stateName = (Object.keys(DeviceState) as (keyof typeof DeviceState)[]).find((k) => DeviceState[k] === state);
        const rule = RequestRules[request];
        if (stateName === undefined || !(rule.states as readonly string[]).includes(stateName)) {
          refuse('BAD_STATE', `${request}: not allowed in state ${state}`);
        }
        if (rule.auth && !authenticated) refuse('NOT_AUTHENTICATED', `${request}: BENCH_AUTH required first`);
      }
      const reply = handlers[request](map);
      return { type: MessageType[reply.type], payload: encodeCbor(reply.payload) };
    } catch (e) {
      let status: number;
      let detail: string;
      if (e instanceof Refusal) {
        status = DeviceStatus[e.status];
        detail = e.detail;
      } else if (e instanceof DeviceError && e.status !== undefined) {
        status = e.status;
        detail = e.message;
      } else {
        throw e;
      }
      return { type: MessageType.ERROR, payload: encodeCbor(new Map<number, CborInput>([[1, status], [2, detail.slice(0, 95)]])) };
    }
  };

  const decoder = new FrameDecoder();
  let closed = false;
  const unsubscribe = transport.onData((bytes) => {
    if (closed) return;
    for (const event of decoder.push(bytes)) {
      if (event.kind !== 'message' || closed) continue;
      const { type, seq, payload } = event.message;
      seen.push(((MessageTypeNames as Readonly<Record<number, MessageTypeName>>)[type]) ?? type);
      let reply: { type: number; payload: Uint8Array };
      if (last !== undefined && last.type === type && last.seq === seq && equalBytes(last.request, payload)) {
        reply = { type: last.replyType, payload: last.reply };
      } else {
        reply = dispatch(type, payload);
        last = { type, seq, request: payload, replyType: reply.type, reply: reply.payload };
      }
      const frames = encodeFrames(reply.type, seq, reply.payload);
      transport.send(concatBytes(...frames)).catch(() => undefined);
    }
  });
  const unsubscribeClose = transport.onClose(() => {
    // Unplugged: the session ends (the persistent state stays).
    session = false;
    authenticated = false;
    last = undefined;
  });

  return {
    get state() {
      return snapshot();
    },
    get seen() {
      return [...seen];
    },
    async close() {
      if (closed) return;
      closed = true;
      unsubscribe();
      unsubscribeClose();
      await transport.close();
    },
  };
}
