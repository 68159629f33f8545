/**
 * Replayed frames against the REAL C firmware (mk-emulator on a socat pty, SerialTransport on the host): the exact
 * bytes a bench sent to one device, captured on the wire and sent again — to the same device in a later session,
 * and to another device. Nothing replayed may authenticate a bench, move a device's state, or be accepted by a
 * device it was not made for; a same-seq repeat inside a session is answered from the reply cache, not re-executed.
 * Skipped, with the reason printed, only where socat, make, gcc or libsodium-dev is missing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { concatBytes, equalBytes, fromB64u } from '../../src/core/bytes.js';
import { composeMasterProfile, type SignedProfile } from '../../src/core/profiles.js';
import { decodeCbor, type CborMap } from '../../src/device/cbor.js';
import { enrollDevice, fileJournal, verifyRecord, type EnrollmentPlan } from '../../src/device/enroll.js';
import { emulatorUnavailable, ensureEmulator, startEmulatedDevice, type EmulatedDevice } from '../../src/device/emulator.js';
import { encodeFrames, FrameDecoder, type FramedMessage } from '../../src/device/framing.js';
import { DeviceState, DeviceStatus, MessageType } from '../../src/device/protocol.generated.js';
import { DeviceSession } from '../../src/device/session.js';
import { SerialTransport } from '../../src/device/transport/serial.js';
import type { Transport } from '../../src/device/transport/types.js';
import { testKey, testSigner } from '../helpers/software-signer.js';

const reason = emulatorUnavailable();
if (reason !== undefined) console.log(`replay.test.ts: skipped: ${reason}`);

const bench = testKey('Ed25519');
const benchRaw = fromB64u(bench.publicJwk.x);
const admin = testKey('Ed25519');
const master = composeMasterProfile({ signatureKey: testKey('Ed25519').publicJwk, adminKeys: [admin.publicJwk] });
const MODEL = 'esp32s3-devkit';
const root = mkdtempSync(join(tmpdir(), 'meshkit-replay-'));
const devices: EmulatedDevice[] = [];
const transports: Transport[] = [];

function plan(connected: SignedProfile[]): EnrollmentPlan {
  return {
    bench: testSigner(bench), admin: testSigner(admin), master, models: [MODEL],
    config: new TextEncoder().encode('{"wifi":{"ssid":"line-7"}}'),
    connect: async (d) => void connected.push(d),
  };
}

async function start(name: string): Promise<{ device: EmulatedDevice; transport: SerialTransport }> {
  const device = await startEmulatedDevice({ state: join(root, `${name}.state`), serial: `EMU-${name.toUpperCase()}`, model: MODEL, provisionerKey: benchRaw });
  devices.push(device);
  const transport = await SerialTransport.open(device.port, { openTimeoutMs: 3000 });
  transports.push(transport);
  return { device, transport };
}

/** A transport that also records every request the host writes, as frames decoded from the wire bytes. */
function recording(t: Transport): { transport: Transport; wire: Map<string, Uint8Array> } {
  const wire = new Map<string, Uint8Array>();
  const decoder = new FrameDecoder();
  let pending: Uint8Array[] = [];
  const transport: Transport = {
    get isOpen() {
      return t.isOpen;
    },
    async send(bytes) {
      pending.push(bytes.slice());
      for (const e of decoder.push(bytes)) {
        if (e.kind !== 'message') continue;
        const name = Object.entries(MessageType).find(([, v]) => v === e.message.type)?.[0] ?? String(e.message.type);
        wire.set(name, concatBytes(...pending)); // the exact bytes of the last message of this type
        pending = [];
      }
      await t.send(bytes);
    },
    onData: (l) => t.onData(l),
    onClose: (l) => t.onClose(l),
    close: () => t.close(),
    [Symbol.asyncDispose]: () => t.close(),
  };
  return { transport, wire };
}

/** Writes raw wire bytes and returns the next complete reply frame the device sends. */
async function raw(t: Transport, bytes: Uint8Array, timeoutMs = 3000): Promise<FramedMessage> {
  const decoder = new FrameDecoder();
  return new Promise<FramedMessage>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('no reply to the replayed frame'));
    }, timeoutMs);
    const off = t.onData((chunk) => {
      for (const e of decoder.push(chunk)) {
        if (e.kind === 'message') {
          clearTimeout(timer);
          off();
          resolve(e.message);
        }
      }
    });
    t.send(bytes).catch(reject);
  });
}

function status(reply: FramedMessage): number | string {
  if (reply.type !== MessageType.ERROR) return `reply type ${reply.type}`;
  return (decodeCbor(reply.payload) as CborMap).get(1) as number;
}

/** HELLO and an honest BENCH_AUTH over a fresh session; returns the session (on the same transport). */
async function authenticate(t: Transport): Promise<{ session: DeviceSession; state: number }> {
  const session = new DeviceSession(t, { timeoutMs: 3000, retries: 1, firstSeq: 200 });
  const info = (await session.exchange('HELLO', { 1: 1 })).payload as CborMap;
  const challenge = info.get(6) as Uint8Array;
  const signature = await testSigner(bench).sign(challenge);
  const ok = (await session.exchange('BENCH_AUTH', new Map<number, unknown>([[1, challenge], [2, benchRaw], [3, signature]]) as never)).payload as CborMap;
  return { session, state: ok.get(1) as number };
}

async function stateOf(t: Transport): Promise<number> {
  const session = new DeviceSession(t, { timeoutMs: 3000, retries: 1, firstSeq: 100 });
  return ((await session.exchange('HELLO', { 1: 1 })).payload as CborMap).get(5) as number;
}

beforeAll(() => {
  if (reason === undefined) ensureEmulator();
});

afterAll(async () => {
  for (const t of transports) await t.close();
  for (const d of devices) await d.stop();
  rmSync(root, { recursive: true, force: true });
});

describe.skipIf(reason !== undefined)('replayed frames against the C firmware on a pty', () => {
  let wireA = new Map<string, Uint8Array>();
  let a: { device: EmulatedDevice; transport: SerialTransport };

  it('device A is enrolled while every request the bench writes is captured on the wire', async () => {
    a = await start('a');
    const rec = recording(a.transport);
    const session = new DeviceSession(rec.transport, { timeoutMs: 3000, retries: 1 });
    const connected: SignedProfile[] = [];
    const result = await enrollDevice(session, plan(connected), { port: 'pty-a' });
    await verifyRecord(result.record, result.deviceProfile);
    wireA = rec.wire;
    expect([...wireA.keys()].sort()).toEqual(['BENCH_AUTH', 'COGEN', 'COMMIT', 'HELLO', 'INSTALL', 'KEYGEN']);
  });

  it('A, a later session: the captured BENCH_AUTH does not authenticate (the challenge is per session), captured COMMIT is NOT_AUTHENTICATED', async () => {
    const hello = await raw(a.transport, concatBytes(...encodeFrames(MessageType.HELLO, 17, new Uint8Array([0xa1, 0x01, 0x01]))));
    expect(hello.type).toBe(MessageType.INFO);
    expect(status(await raw(a.transport, wireA.get('BENCH_AUTH') as Uint8Array))).toBe(DeviceStatus.BAD_SIGNATURE);
    expect(status(await raw(a.transport, wireA.get('COMMIT') as Uint8Array))).toBe(DeviceStatus.NOT_AUTHENTICATED);
    expect(await stateOf(a.transport)).toBe(DeviceState.COMMITTED);
  });

  it('A, authenticated: a same-seq repeat of COMMIT is answered from the cache byte for byte; a new seq re-signs', async () => {
    await authenticate(a.transport);
    // the captured COMMIT, re-sent under a seq of this session twice: the second answer is the first, byte for byte
    const captured = wireA.get('COMMIT') as Uint8Array;
    const decoded = new FrameDecoder().push(captured).find((e) => e.kind === 'message');
    if (decoded?.kind !== 'message') throw new Error('captured COMMIT does not decode');
    const commit = concatBytes(...encodeFrames(MessageType.COMMIT, 42, decoded.message.payload));
    const first = await raw(a.transport, commit);
    const again = await raw(a.transport, commit);
    expect(first.type).toBe(MessageType.RECEIPT);
    expect(equalBytes(again.payload, first.payload)).toBe(true);
    const fresh = await raw(a.transport, concatBytes(...encodeFrames(MessageType.COMMIT, 43, decoded.message.payload)));
    expect(fresh.type).toBe(MessageType.RECEIPT);
    expect(equalBytes(fresh.payload, first.payload)).toBe(false); // re-executed: a new hedged signature over the same digest
  });

  it('device B: A\'s captured COGEN does not open (sealed to A), A\'s INSTALL is WRONG_DEVICE; B then enrols normally', async () => {
    const b = await start('b');
    const journal = fileJournal(join(root, 'journal'));
    const connected: SignedProfile[] = [];
    // B up to COGENERATED: stop the bench as it starts INSTALL
    const stop = new Error('stopped before INSTALL');
    const halted = await enrollDevice(new DeviceSession(b.transport, { timeoutMs: 3000, retries: 1 }), plan(connected), {
      port: 'pty-b', journal,
      onStep: (e) => {
        if (e.step === 'install' && e.phase === 'start') throw stop;
      },
    }).catch((e: unknown) => e);
    expect(halted).toBe(stop);
    expect(await stateOf(b.transport)).toBe(DeviceState.COGENERATED);

    await authenticate(b.transport);
    expect(status(await raw(b.transport, wireA.get('COGEN') as Uint8Array))).toBe(DeviceStatus.BAD_STATE); // another box than B applied
    expect(status(await raw(b.transport, wireA.get('INSTALL') as Uint8Array))).toBe(DeviceStatus.WRONG_DEVICE);
    expect(status(await raw(b.transport, wireA.get('COMMIT') as Uint8Array))).toBe(DeviceStatus.BAD_STATE);
    expect(await stateOf(b.transport)).toBe(DeviceState.COGENERATED);

    const result = await enrollDevice(new DeviceSession(b.transport, { timeoutMs: 3000, retries: 1 }), plan(connected), { port: 'pty-b', journal });
    expect(result.resumed).toBe('resumed');
    await verifyRecord(result.record, result.deviceProfile);
    expect(connected).toHaveLength(1);
  });

  it('device C in KEYS_GENERATED: A\'s captured COGEN is DECRYPT_FAILED and C stays in KEYS_GENERATED', async () => {
    const c = await start('c');
    const { session } = await authenticate(c.transport);
    await session.exchange('KEYGEN', new Map([[1, 7], [2, Math.floor(Date.now() / 1000)]]) as never);
    expect(status(await raw(c.transport, wireA.get('COGEN') as Uint8Array))).toBe(DeviceStatus.DECRYPT_FAILED);
    expect(await stateOf(c.transport)).toBe(DeviceState.KEYS_GENERATED);
  });
});
