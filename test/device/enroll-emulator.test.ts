/**
 * Enrollment against the REAL C firmware: firmware-bindings/build/mk-emulator on one end of a socat pty pair,
 * `serialport` (SerialTransport) on the other, src/device/enroll.ts on top. A full enrollment verified
 * independently; the emulator killed (SIGKILL) mid-enrollment, restarted on the same state file, and resumed
 * from the journal — provisioned once; and a table of requests (good and bad) answered by the C device and the
 * TypeScript soft device, whose status codes must agree with each other and with docs/enrollment.md.
 * Skipped, with the reason printed, only where socat, make, gcc or libsodium is missing.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bigIntToBytesLE, bytesToBigIntLE, concatBytes, fromB64u } from '../../src/core/bytes.js';
import { combinePublicKeys, GROUP_ORDER, publicKeyFromScalar } from '../../src/core/cogen.js';
import { composeMasterProfile, verifyProfile, type SignedProfile } from '../../src/core/profiles.js';
import { sealBox } from '../../src/device/box.js';
import { decodeCbor, encodeCbor, type CborMap } from '../../src/device/cbor.js';
import { countingTransport, enrollDevice, fileJournal, verifyRecord, type EnrollmentPlan } from '../../src/device/enroll.js';
import { emulatorUnavailable, ensureEmulator, startEmulatedDevice, type EmulatedDevice } from '../../src/device/emulator.js';
import { encodeFrames, FrameDecoder } from '../../src/device/framing.js';
import { DeviceState, DeviceStatusNames, MessageType } from '../../src/device/protocol.generated.js';
import { DeviceSession } from '../../src/device/session.js';
import { startSoftDevice } from '../../src/device/soft-device.js';
import { createLinkPair } from '../../src/device/transport/link.js';
import { SerialTransport } from '../../src/device/transport/serial.js';
import type { Transport } from '../../src/device/transport/types.js';
import { testKey, testSigner } from '../helpers/software-signer.js';

const L = GROUP_ORDER.Ed25519;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

const reason = emulatorUnavailable();
if (reason !== undefined) console.log(`enroll-emulator.test.ts: skipped: ${reason}`);

const bench = testKey('Ed25519');
const benchRaw = fromB64u(bench.publicJwk.x);
const admin = testKey('Ed25519');
const master = composeMasterProfile({ signatureKey: testKey('Ed25519').publicJwk, adminKeys: [admin.publicJwk] });
const CONFIG = text('{"wifi":{"ssid":"line-3"},"mqtt":"mqtts://broker:8883"}');
const MODEL = 'esp32s3-devkit';

const root = mkdtempSync(join(tmpdir(), 'meshkit-enroll-emu-'));
const running = new Set<EmulatedDevice>();

interface Emulator {
  readonly transport: SerialTransport;
  readonly device: EmulatedDevice;
  log(): string;
  kill(): Promise<void>;
}

/** socat pty pair + mk-emulator on its device end (state FILE) + SerialTransport on the host end. */
async function startEmulator(name: string, stateFile: string, serial: string): Promise<Emulator> {
  const device = await startEmulatedDevice({ link: join(root, `${name}-host`), state: stateFile, model: MODEL, serial, provisionerKey: benchRaw });
  running.add(device);
  const transport = await SerialTransport.open(device.port, { openTimeoutMs: 3000 });
  return {
    transport, device, log: () => device.log(),
    async kill() {
      device.kill('SIGKILL');
      await device.exited;
      await transport.close();
      await device.stop();
      running.delete(device);
    },
  };
}

function plan(connected: SignedProfile[]): EnrollmentPlan {
  return {
    bench: testSigner(bench), admin: testSigner(admin), master, config: CONFIG, models: [MODEL],
    connect: async (d) => void connected.push(d),
    isConnected: async (id) => connected.some((d) => JSON.parse(Buffer.from(d.payload, 'base64url').toString('utf8')).DeviceProfile.Identifier === id),
  };
}

let built = false;
beforeAll(() => {
  if (reason !== undefined) return;
  ensureEmulator();
  built = true;
});

afterAll(async () => {
  for (const device of running) await device.stop();
  rmSync(root, { recursive: true, force: true });
});

describe.skipIf(reason !== undefined)('enrollment against the C emulator on a socat pty', () => {
  it('a full enrollment: profiles, record and receipt verify; the device is COMMITTED and not re-provisioned', async () => {
    expect(built).toBe(true);
    const stateFile = join(root, 'full.state');
    const emu = await startEmulator('full', stateFile, 'EMU-FULL');
    const connected: SignedProfile[] = [];
    try {
      const counted = countingTransport(emu.transport);
      const session = new DeviceSession(counted, { timeoutMs: 3000, retries: 1 });
      const result = await enrollDevice(session, plan(connected), { port: 'pty-full', counter: counted });
      expect(result.resumed).toBe('fresh');
      expect(result.serial).toBe('EMU-FULL');
      expect(result.model).toBe(MODEL);
      expect((await verifyProfile(result.deviceProfile)).identifier).toBe(result.deviceId);
      expect((await verifyProfile(result.baseProfile)).identifier).toBe(result.baseDeviceId);
      await verifyRecord(result.record, result.deviceProfile);
      expect(connected).toEqual([result.deviceProfile]);
      expect(result.bytesSent).toBeGreaterThan(0);
      expect(result.bytesReceived).toBeGreaterThan(0);
      // a second bench without a journal sees a COMMITTED device and does not touch it
      const again = await enrollDevice(session, plan([]), { port: 'pty-full' }).catch((e: unknown) => e);
      expect(again).toMatchObject({ check: 'committed' });
      const info = (await session.exchange('HELLO', { 1: 1 })).payload as CborMap;
      expect(info.get(5)).toBe(DeviceState.COMMITTED);
      await session.close();
    } finally {
      await emu.kill();
    }
  });

  for (const step of ['cogen', 'install', 'commit'] as const) it(`killed (SIGKILL) as ${step.toUpperCase()} is sent, restarted on the same state file, resumed from the journal: provisioned once`, async () => {
    const serial = `EMU-KILL-${step}`;
    const stateFile = join(root, `kill-${step}.state`);
    const journal = fileJournal(join(root, 'journal'));
    const connected: SignedProfile[] = [];
    const first = await startEmulator(`kill-${step}`, stateFile, serial);
    // SIGKILL the emulator right after the COGEN request is written to the pty: it dies before or while handling it
    let armed = false;
    const t = first.transport;
    const killer: Transport = {
      get isOpen() {
        return t.isOpen;
      },
      async send(bytes) {
        await t.send(bytes);
        if (armed) {
          armed = false;
          first.device.kill('SIGKILL');
        }
      },
      onData: (listener) => t.onData(listener),
      onClose: (listener) => t.onClose(listener),
      close: () => t.close(),
      [Symbol.asyncDispose]: () => t.close(),
    };
    const session = new DeviceSession(killer, { timeoutMs: 1000, retries: 1 });
    const failure = await enrollDevice(session, plan(connected), {
      port: 'pty-kill', journal,
      onStep: (e) => {
        if (e.step === step && e.phase === 'start') armed = true;
      },
    }).then(() => undefined, (e: unknown) => e);
    await session.close();
    await first.kill();
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).name).toMatch(/^(DeviceTimeoutError|DeviceDisconnectedError)$/);
    expect(connected).toEqual([]);
    const name = step.toUpperCase();
    console.log(`enroll-emulator.test.ts: SIGKILL landed ${first.log().includes(`${name} seq`) ? 'after' : 'before'} the emulator replied to ${name}`);
    const entry = await journal.load(serial);
    expect(entry?.baseDevice).toBeDefined();

    const second = await startEmulator(`kill2-${step}`, stateFile, serial);
    try {
      const s2 = new DeviceSession(second.transport, { timeoutMs: 3000, retries: 1 });
      const result = await enrollDevice(s2, plan(connected), { port: 'pty-kill', journal });
      expect(result.resumed).toBe('resumed');
      expect(second.log()).not.toContain('RESET');
      expect(result.baseDeviceId).toBe(entry?.baseDevice);
      await verifyRecord(result.record, result.deviceProfile);
      expect(connected.length).toBe(1);
      expect(result.record.Attempts).toBe(step === 'commit' ? 1 : 2); // the record draft is fixed before COMMIT is sent
      await s2.close();
    } finally {
      await second.kill();
    }
  });

  it('the C device and the soft device answer the same requests with the same status codes (and as the docs say)', async () => {
    const emu = await startEmulator('table', join(root, 'table.state'), 'EMU-TABLE');
    const [host, device] = createLinkPair();
    const soft = startSoftDevice(device, { model: MODEL, serial: 'EMU-TABLE', provisionerKey: benchRaw });
    try {
      const c = await script(emu.transport);
      const ts = await script(host);
      const names = (rows: Array<[string, number | string]>): Array<[string, string]> =>
        rows.map(([n, code]) => [n, typeof code === 'number' ? DeviceStatusNames[code as keyof typeof DeviceStatusNames] ?? String(code) : code]);
      expect(names(c)).toEqual(names(ts));
      expect(names(c)).toEqual(EXPECTED);
    } finally {
      await soft.close();
      await emu.kill();
    }
  });
});

/** What docs/protocol.md and docs/enrollment.md say each step of {@link script} gets. */
const EXPECTED: Array<[string, string]> = [
  ['BENCH_AUTH before HELLO', 'BAD_STATE'],
  ['unknown type 0x55', 'UNKNOWN_MESSAGE'],
  ['HELLO not CBOR', 'CBOR_INVALID'],
  ['HELLO non-canonical', 'CBOR_NONCANONICAL'],
  ['HELLO not a map', 'WRONG_TYPE'],
  ['HELLO version "one"', 'WRONG_TYPE'],
  ['HELLO without version', 'MISSING_FIELD'],
  ['HELLO version 2', 'BAD_VERSION'],
  ['HELLO', 'INFO'],
  ['KEYGEN without BENCH_AUTH', 'NOT_AUTHENTICATED'],
  ['COGEN in FACTORY without BENCH_AUTH', 'BAD_STATE'],
  ['BENCH_AUTH untrusted key', 'BAD_SIGNATURE'],
  ['BENCH_AUTH other challenge', 'BAD_SIGNATURE'],
  ['BENCH_AUTH', 'BENCH_AUTH_OK'],
  ['INSTALL in FACTORY', 'BAD_STATE'],
  ['COMMIT in FACTORY', 'BAD_STATE'],
  ['RESET other serial', 'WRONG_DEVICE'],
  ['KEYGEN without time', 'MISSING_FIELD'],
  ['KEYGEN', 'PUBKEYS'],
  ['KEYGEN again (same base keys)', 'PUBKEYS'],
  ['COGEN box to another key', 'DECRYPT_FAILED'],
  ['COGEN wrong expected keys', 'COGEN_MISMATCH'],
  ['INSTALL in KEYS_GENERATED', 'BAD_STATE'],
  ['COGEN', 'PROOF'],
  ['COGEN same box again', 'PROOF'],
  ['COGEN another box', 'BAD_STATE'],
  ['INSTALL forged admin signature', 'BAD_SIGNATURE'],
  ['INSTALL for another device', 'WRONG_DEVICE'],
  ['INSTALL config box to another key', 'DECRYPT_FAILED'],
  ['COMMIT in COGENERATED', 'BAD_STATE'],
  ['INSTALL', 'ACK'],
  ['INSTALL same again', 'ACK'],
  ['COMMIT', 'RECEIPT'],
  ['COMMIT same again', 'RECEIPT'],
  ['COMMIT another digest', 'BAD_STATE'],
  ['RESET in COMMITTED', 'BAD_STATE'],
];

/** Drives one device through good and bad requests with raw frames; returns [step, ERROR code or reply name]. */
async function script(t: Transport): Promise<Array<[string, number | string]>> {
  const decoder = new FrameDecoder();
  const waiting = new Map<number, (m: { type: number; payload: Uint8Array }) => void>();
  const off = t.onData((bytes) => {
    for (const e of decoder.push(bytes)) {
      if (e.kind === 'message') waiting.get(e.message.seq)?.(e.message);
    }
  });
  let seq = 0;
  const rows: Array<[string, number | string]> = [];
  const send = async (name: string, type: number, bytes: Uint8Array): Promise<CborMap> => {
    const s = (seq = (seq + 1) & 0xff);
    const reply = new Promise<{ type: number; payload: Uint8Array }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${name}`)), 5000);
      waiting.set(s, (m) => {
        clearTimeout(timer);
        waiting.delete(s);
        resolve(m);
      });
    });
    await t.send(concatBytes(...encodeFrames(type, s, bytes)));
    const m = await reply;
    const map = decodeCbor(m.payload) as CborMap;
    const typeName = Object.entries(MessageType).find(([, v]) => v === m.type)?.[0] ?? String(m.type);
    rows.push([name, m.type === MessageType.ERROR ? map.get(1) as number : typeName]);
    return map;
  };
  const req = (name: string, type: keyof typeof MessageType, message: Map<number, unknown>): Promise<CborMap> =>
    send(name, MessageType[type], encodeCbor(message as never));
  const time = Math.floor(Date.now() / 1000);
  try {
    await req('BENCH_AUTH before HELLO', 'BENCH_AUTH', new Map<number, unknown>([[1, new Uint8Array(32)], [2, benchRaw], [3, new Uint8Array(64)]]));
    await send('unknown type 0x55', 0x55, encodeCbor({}));
    await send('HELLO not CBOR', MessageType.HELLO, Uint8Array.of(0xff));
    await send('HELLO non-canonical', MessageType.HELLO, Uint8Array.of(0xa1, 0x18, 0x01, 0x01));
    await send('HELLO not a map', MessageType.HELLO, encodeCbor([1]));
    await req('HELLO version "one"', 'HELLO', new Map([[1, 'one']]));
    await req('HELLO without version', 'HELLO', new Map([[2, 1]]));
    await req('HELLO version 2', 'HELLO', new Map([[1, 2]]));
    const info = await req('HELLO', 'HELLO', new Map([[1, 1]]));
    const challenge = info.get(6) as Uint8Array;
    await req('KEYGEN without BENCH_AUTH', 'KEYGEN', new Map([[1, 7], [2, time]]));
    await req('COGEN in FACTORY without BENCH_AUTH', 'COGEN', new Map<number, unknown>([[1, new Uint8Array(80)], [2, time]]));
    const stranger = testKey('Ed25519');
    await req('BENCH_AUTH untrusted key', 'BENCH_AUTH', new Map<number, unknown>([[1, challenge], [2, fromB64u(stranger.publicJwk.x)], [3, await testSigner(stranger).sign(challenge)]]));
    const other = new Uint8Array(randomBytes(32));
    await req('BENCH_AUTH other challenge', 'BENCH_AUTH', new Map<number, unknown>([[1, other], [2, benchRaw], [3, await testSigner(bench).sign(other)]]));
    await req('BENCH_AUTH', 'BENCH_AUTH', new Map<number, unknown>([[1, challenge], [2, benchRaw], [3, await testSigner(bench).sign(challenge)]]));
    await req('INSTALL in FACTORY', 'INSTALL', new Map<number, unknown>([[1, new Uint8Array(10)], [2, new Uint8Array(60)]]));
    await req('COMMIT in FACTORY', 'COMMIT', new Map<number, unknown>([[1, new Uint8Array(64)]]));
    await req('RESET other serial', 'RESET', new Map([[1, 'NOT-THIS-ONE']]));
    await req('KEYGEN without time', 'KEYGEN', new Map([[1, 7]]));
    const pub = await req('KEYGEN', 'KEYGEN', new Map([[1, 7], [2, time]]));
    await req('KEYGEN again (same base keys)', 'KEYGEN', new Map([[1, 7], [2, time]]));
    const base = { sig: pub.get(1) as Uint8Array, enc: pub.get(2) as Uint8Array, auth: pub.get(3) as Uint8Array };
    const contribution = (wrong: boolean): Uint8Array => {
      const c = [0, 1, 2].map(() => bytesToBigIntLE(randomBytes(64)) % L) as [bigint, bigint, bigint];
      return encodeCbor(new Map<number, Uint8Array>([
        [1, bigIntToBytesLE(c[0], 32)], [2, bigIntToBytesLE(c[1], 32)], [3, bigIntToBytesLE(c[2], 32)],
        [4, wrong ? publicKeyFromScalar('Ed25519', 5n) : combinePublicKeys('Ed25519', base.sig, publicKeyFromScalar('Ed25519', c[0]))],
        [5, combinePublicKeys('X25519', base.enc, publicKeyFromScalar('X25519', c[1], { extended: true }))],
        [6, combinePublicKeys('X25519', base.auth, publicKeyFromScalar('X25519', c[2], { extended: true }))],
      ]));
    };
    await req('COGEN box to another key', 'COGEN', new Map<number, unknown>([[1, sealBox(publicKeyFromScalar('X25519', 7n), 'contribution', contribution(false))], [2, time]]));
    await req('COGEN wrong expected keys', 'COGEN', new Map<number, unknown>([[1, sealBox(base.enc, 'contribution', contribution(true))], [2, time]]));
    await req('INSTALL in KEYS_GENERATED', 'INSTALL', new Map<number, unknown>([[1, new Uint8Array(10)], [2, new Uint8Array(60)]]));
    const box = sealBox(base.enc, 'contribution', contribution(false));
    const proof = await req('COGEN', 'COGEN', new Map<number, unknown>([[1, box], [2, time]]));
    await req('COGEN same box again', 'COGEN', new Map<number, unknown>([[1, box], [2, time]]));
    await req('COGEN another box', 'COGEN', new Map<number, unknown>([[1, sealBox(base.enc, 'contribution', contribution(false))], [2, time]]));
    const compositeEnc = proof.get(2) as Uint8Array;
    const deviceJws = JSON.parse(Buffer.from(proof.get(5) as Uint8Array).toString('utf8')) as SignedProfile;
    const deviceId = (JSON.parse(Buffer.from(deviceJws.payload, 'base64url').toString('utf8')) as { DeviceProfile: { Identifier: string } }).DeviceProfile.Identifier;
    const connection = async (device: string, forge: boolean): Promise<Uint8Array> => {
      const unsigned = new Map<number, string | Uint8Array | number>([[1, master.Identifier], [2, device], [3, fromB64u(admin.publicJwk.x)], [4, time]]);
      const signature = await testSigner(admin).sign(concatBytes(text('meshkit-connection-v1'), Uint8Array.of(0), encodeCbor(unsigned)));
      if (forge) signature[3] = (signature[3] ?? 0) ^ 1;
      return encodeCbor(new Map([...unsigned, [5, signature]]));
    };
    const config = sealBox(compositeEnc, 'config', CONFIG);
    await req('INSTALL forged admin signature', 'INSTALL', new Map<number, unknown>([[1, await connection(deviceId, true)], [2, config]]));
    await req('INSTALL for another device', 'INSTALL', new Map<number, unknown>([[1, await connection('MBOGUS-DEVICE-ID', false)], [2, config]]));
    await req('INSTALL config box to another key', 'INSTALL', new Map<number, unknown>([[1, await connection(deviceId, false)], [2, sealBox(base.enc, 'config', CONFIG)]]));
    await req('COMMIT in COGENERATED', 'COMMIT', new Map<number, unknown>([[1, new Uint8Array(64)]]));
    const good = await connection(deviceId, false);
    await req('INSTALL', 'INSTALL', new Map<number, unknown>([[1, good], [2, config]]));
    await req('INSTALL same again', 'INSTALL', new Map<number, unknown>([[1, good], [2, config]]));
    const digest = new Uint8Array(randomBytes(64));
    await req('COMMIT', 'COMMIT', new Map<number, unknown>([[1, digest]]));
    await req('COMMIT same again', 'COMMIT', new Map<number, unknown>([[1, digest]]));
    await req('COMMIT another digest', 'COMMIT', new Map<number, unknown>([[1, new Uint8Array(randomBytes(64))]]));
    await req('RESET in COMMITTED', 'RESET', new Map([[1, 'EMU-TABLE']]));
  } finally {
    off();
  }
  return rows;
}
