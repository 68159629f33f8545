/**
 * Host-side enrollment (src/device/enroll.ts) against the in-process soft device over createLinkPair(): a full
 * enrollment verified independently, every host-side check (a tampering relay between host and device alters
 * replies), resume from each state with a journal, restart (RESET) without one, a COMMITTED device without a
 * journal reported and not re-provisioned, and an unplug mid-step.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, verify } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { b64u, bigIntToBytesLE, bytesToBigIntLE, concatBytes, fromB64u, fromHex } from '../../src/core/bytes.js';
import { combinePublicKeys, publicKeyFromScalar } from '../../src/core/cogen.js';
import { sealBox } from '../../src/device/box.js';
import { keyId, publicKeyFromRaw, publicKeyObject } from '../../src/core/keys.js';
import { composeMasterProfile, verifyProfile, type DeviceProfile, type SignedProfile } from '../../src/core/profiles.js';
import { decodeCbor, encodeCbor, type CborMap } from '../../src/device/cbor.js';
import {
  countingTransport, enrollDevice, EnrollmentError, fileJournal, recordDigest, verifyRecord,
  type EnrollJournal, type EnrollmentPlan, type EnrollStep, type JournalEntry, type StepEvent,
} from '../../src/device/enroll.js';
import { encodeFrames, FrameDecoder } from '../../src/device/framing.js';
import { DeviceState, DeviceStatus, MessageType, type MessageTypeName } from '../../src/device/protocol.generated.js';
import { DeviceReplyError, DeviceSession, DeviceTimeoutError } from '../../src/device/session.js';
import { startSoftDevice, type SoftDevice, type SoftDeviceState } from '../../src/device/soft-device.js';
import { createLinkPair } from '../../src/device/transport/link.js';
import { DeviceDisconnectedError } from '../../src/device/transport/types.js';
import { testKey, testSigner } from '../helpers/software-signer.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const bench = testKey('Ed25519');
const benchRaw = fromB64u(bench.publicJwk.x);
const admin = testKey('Ed25519');
const masterKey = testKey('Ed25519');
const master = composeMasterProfile({ signatureKey: masterKey.publicJwk, adminKeys: [admin.publicJwk] });
const CONFIG = text('{"wifi":{"ssid":"factory","psk":"hunter22"},"mqtt":"mqtts://broker.example:8883"}');
const SERIAL = 'SN-0001';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'meshkit-enroll-'));
  dirs.push(d);
  return d;
}

function plan(connected: SignedProfile[], overrides: Partial<EnrollmentPlan> = {}): EnrollmentPlan {
  return {
    bench: testSigner(bench), admin: testSigner(admin), master, config: CONFIG, models: ['soft-mcu'],
    connect: async (device) => void connected.push(device),
    isConnected: async (id) => connected.some((d) => JSON.parse(Buffer.from(d.payload, 'base64url').toString('utf8')).DeviceProfile.Identifier === id),
    ...overrides,
  };
}

type Tamper = (type: MessageTypeName, payload: CborMap) => CborMap | undefined;

/**
 * host ⇄ relay ⇄ soft device. The relay decodes the device's replies and lets `tamper` rewrite them.
 */
function rig(state?: SoftDeviceState, options: { tamper?: Tamper; provisionerKey?: Uint8Array; persist?: (s: SoftDeviceState, r: MessageTypeName) => void; delayMs?: Partial<Record<MessageTypeName, number>> } = {}) {
  const [host, relayHost] = createLinkPair(['host', 'relay-host']);
  const [relayDevice, device] = createLinkPair(['relay-device', 'device']);
  const soft = startSoftDevice(device, {
    model: 'soft-mcu', serial: SERIAL, firmware: '1.2.3', provisionerKey: options.provisionerKey ?? benchRaw,
    ...(state === undefined ? {} : { state }), ...(options.persist === undefined ? {} : { persist: options.persist }),
  });
  relayHost.onData((bytes) => void relayDevice.send(bytes).catch(() => undefined));
  const decoder = new FrameDecoder();
  relayDevice.onData((bytes) => {
    if (options.tamper === undefined && options.delayMs === undefined) return void relayHost.send(bytes).catch(() => undefined);
    for (const event of decoder.push(bytes)) {
      if (event.kind !== 'message') continue;
      const { type, seq, payload } = event.message;
      const name = Object.entries(MessageType).find(([, v]) => v === type)?.[0] as MessageTypeName;
      const map = decodeCbor(payload) as CborMap;
      const out = options.tamper?.(name, map) ?? map;
      const forward = (): void => void relayHost.send(concatBytes(...encodeFrames(type, seq, encodeCbor(out)))).catch(() => undefined);
      const delay = options.delayMs?.[name];
      if (delay === undefined) forward();
      else setTimeout(forward, delay);
    }
  });
  relayDevice.onClose(() => void relayHost.close());
  relayHost.onClose(() => void relayDevice.close());
  const counted = countingTransport(host);
  const session = new DeviceSession(counted, { timeoutMs: 1000, retries: 1 });
  return { host, session, soft, counted, unplug: () => relayDevice.disconnect() };
}

function memoryJournal(): EnrollJournal & { entries: Map<string, JournalEntry> } {
  const entries = new Map<string, JournalEntry>();
  return {
    entries,
    load: async (s) => structuredClone(entries.get(s)),
    save: async (s, e) => void entries.set(s, structuredClone(e)),
    remove: async (s) => void entries.delete(s),
  };
}

function stopAt(step: EnrollStep): (e: StepEvent) => void {
  return (e) => {
    if (e.step === step && e.phase === 'start') throw new Error(`stopped before ${step}`);
  };
}

function profileOf(signed: SignedProfile): DeviceProfile {
  return (JSON.parse(Buffer.from(signed.payload, 'base64url').toString('utf8')) as { DeviceProfile: DeviceProfile }).DeviceProfile;
}

async function checkResult(result: Awaited<ReturnType<typeof enrollDevice>>, soft: SoftDevice): Promise<void> {
  const composite = await verifyProfile(result.deviceProfile);
  const base = await verifyProfile(result.baseProfile);
  expect(composite.type).toBe('DeviceProfile');
  expect(base.type).toBe('DeviceProfile');
  expect(composite.identifier).toBe(result.deviceId);
  expect(base.identifier).toBe(result.baseDeviceId);
  expect(result.deviceId).not.toBe(result.baseDeviceId);
  await verifyRecord(result.record, result.deviceProfile);
  // independent receipt check: SHA-512 of the JSON without Receipt/RecordDigest, Ed25519 by the composite key
  const { Receipt, RecordDigest, ...draft } = result.record;
  const digest = createHash('sha512').update(JSON.stringify(draft)).digest();
  expect(b64u(digest)).toBe(RecordDigest);
  const pub = fromB64u(profileOf(result.deviceProfile).DeviceSignatureKey.PublicParameters.x);
  expect(verify(null, concatBytes(text('meshkit-receipt-v1'), Uint8Array.of(0), digest), publicKeyObject(publicKeyFromRaw('Ed25519', pub)), fromB64u(Receipt))).toBe(true);
  // the device holds the composite scalars of the composite profile and the configuration we sent
  const flash = soft.state;
  expect(flash.state).toBe(DeviceState.COMMITTED);
  const sig = bytesToBigIntLE(fromHex(flash.composite?.signature ?? ''));
  expect(keyId(publicKeyFromRaw('Ed25519', publicKeyFromScalar('Ed25519', sig)))).toBe(result.deviceId);
  expect(fromHex(flash.config ?? '')).toEqual(CONFIG);
  expect(flash.account).toBe(master.Identifier);
  expect(flash.recordDigest).toBe(Buffer.from(digest).toString('hex'));
}

describe('enrollDevice against the soft device', () => {
  it('a full enrollment: both profiles verify, the record and receipt verify, the composite profile is connected', async () => {
    const connected: SignedProfile[] = [];
    const { session, soft, counted } = rig();
    const journal = memoryJournal();
    const events: StepEvent[] = [];
    const t0 = new Date();
    const result = await enrollDevice(session, plan(connected), { port: 'link0', journal, onStep: (e) => events.push(e), counter: counted });
    await checkResult(result, soft);
    expect(result.resumed).toBe('fresh');
    expect(result.serial).toBe(SERIAL);
    expect(result.model).toBe('soft-mcu');
    expect(result.firmware).toBe('1.2.3');
    expect(result.steps.map((s) => s.step)).toEqual(['hello', 'auth', 'keygen', 'cogen', 'install', 'commit', 'connect']);
    expect(events.filter((e) => e.phase === 'done').length).toBe(7);
    expect(events.slice(2).every((e) => e.serial === SERIAL)).toBe(true);
    expect(connected).toEqual([result.deviceProfile]);
    const r = result.record;
    expect(Object.keys(r)).toEqual(['Serial', 'Model', 'Firmware', 'Port', 'Device', 'BaseDevice', 'Account', 'AdminKey', 'BenchKey',
      'ConfigDigest', 'Started', 'Finished', 'Attempts', 'Receipt', 'RecordDigest']);
    expect(r).toMatchObject({
      Serial: SERIAL, Model: 'soft-mcu', Firmware: '1.2.3', Port: 'link0', Device: result.deviceId, BaseDevice: result.baseDeviceId,
      Account: master.Identifier, AdminKey: admin.keyId, BenchKey: bench.keyId, Attempts: 1,
      ConfigDigest: b64u(createHash('sha512').update(CONFIG).digest()),
    });
    expect(Date.parse(r.Started)).toBeGreaterThanOrEqual(t0.getTime() - 1000);
    expect(Date.parse(r.Finished)).toBeGreaterThanOrEqual(Date.parse(r.Started));
    expect(result.bytesSent).toBeGreaterThan(500);
    expect(result.bytesReceived).toBeGreaterThan(1000);
    expect(result.bytesSent).toBe(counted.bytesSent);
    // the journal holds public data only: no scalar of the device, no config plaintext
    const stored = JSON.stringify([...journal.entries.values()]);
    for (const secret of [soft.state.base?.signature, soft.state.composite?.encryption, soft.state.composite?.signature]) {
      expect(stored).not.toContain(secret as string);
      expect(stored).not.toContain(b64u(fromHex(secret as string)));
    }
    expect(stored).not.toContain('hunter22');
    expect(stored).not.toContain(b64u(CONFIG));
    // a recomputed digest over an altered record no longer matches
    await expect(verifyRecord({ ...r, Port: 'other' }, result.deviceProfile)).rejects.toMatchObject({ check: 'receipt' });
    await expect(verifyRecord({ ...r, Receipt: b64u(new Uint8Array(64)) }, result.deviceProfile)).rejects.toMatchObject({ check: 'receipt' });
    await expect(verifyRecord(r, result.baseProfile)).rejects.toMatchObject({ check: 'receipt' });
    expect(recordDigest(r)).toEqual(new Uint8Array(createHash('sha512').update(JSON.stringify(draftOf(r))).digest()));
    await session.close();
  });

  it('a re-run with the kept journal replays and returns the same record (provisioned once, connected once)', async () => {
    const connected: SignedProfile[] = [];
    const journal = memoryJournal();
    const first = rig();
    const a = await enrollDevice(first.session, plan(connected), { port: 'p', journal });
    const flash = first.soft.state;
    await first.session.close();
    const second = rig(flash);
    const b = await enrollDevice(second.session, plan(connected), { port: 'p', journal });
    expect(b.resumed).toBe('resumed');
    expect(b.record.RecordDigest).toBe(a.record.RecordDigest);
    expect(b.deviceId).toBe(a.deviceId);
    expect(connected.length).toBe(1);
    await verifyRecord(b.record, b.deviceProfile);
    await second.session.close();
  });
});

function draftOf(r: object): Record<string, unknown> {
  const { Receipt: _r, RecordDigest: _d, ...rest } = r as Record<string, unknown>;
  return rest;
}

async function refused(p: Promise<unknown>): Promise<EnrollmentError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(EnrollmentError);
  return e as EnrollmentError;
}

describe('host-side checks', () => {
  it('a wrong model: EnrollmentError "model", nothing sent after HELLO', async () => {
    const { session, soft } = rig();
    const e = await refused(enrollDevice(session, plan([], { models: ['esp32s3-devkit'] }), { port: 'p' }));
    expect(e.check).toBe('model');
    expect(e.code).toBe('ERR_DEVICE');
    expect(e.message).toContain('"soft-mcu"');
    await new Promise((r) => setTimeout(r, 20));
    expect(soft.seen).toEqual(['HELLO']);
    await session.close();
  });

  it('INFO nonsense (a state that is not a state, a short challenge, an empty serial) is EnrollmentError "info"', async () => {
    for (const [key, value] of [[5, 9], [6, new Uint8Array(16)], [2, ''], [1, 7]] as const) {
      const { session, soft } = rig(undefined, { tamper: (t, m) => (t === 'INFO' ? new Map([...m, [key, value]]) : undefined) });
      const e = await refused(enrollDevice(session, plan([]), { port: 'p' }));
      expect(e.check).toBe('info');
      expect(soft.seen).toEqual(['HELLO']);
      await session.close();
    }
  });

  it('an untrusted bench key: the device BAD_SIGNATURE surfaces as a DeviceReplyError naming the status', async () => {
    const other = testKey('Ed25519');
    const { session, soft } = rig(undefined, { provisionerKey: fromB64u(other.publicJwk.x) });
    const e = await enrollDevice(session, plan([]), { port: 'p' }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(DeviceReplyError);
    expect((e as DeviceReplyError).status).toBe(DeviceStatus.BAD_SIGNATURE);
    expect((e as DeviceReplyError).message).toContain('BAD_SIGNATURE');
    expect(soft.state.state).toBe(DeviceState.FACTORY);
    await session.close();
  });

  it('the admin key not in OnlineSignatureKeys, or not Ed25519, or a bench key that is not Ed25519: refused before anything is sent', async () => {
    const cases: Array<[Partial<EnrollmentPlan>, string]> = [
      [{ admin: testSigner(testKey('Ed25519')) }, 'admin-key'],
      [{ admin: testSigner(testKey('Ed448')) }, 'admin-key'],
      [{ bench: testSigner(testKey('P-256')) }, 'bench-key'],
    ];
    for (const [override, check] of cases) {
      const { session, soft } = rig();
      const e = await refused(enrollDevice(session, plan([], override), { port: 'p' }));
      expect(e.check).toBe(check);
      await new Promise((r) => setTimeout(r, 20));
      expect(soft.seen).toEqual([]);
      await session.close();
    }
    const { session } = rig();
    await expect(enrollDevice(session, plan([], { config: new Uint8Array(1025) }), { port: 'p' })).rejects.toThrow(RangeError);
    await expect(enrollDevice(session, plan([]), {} as never)).rejects.toThrow(TypeError);
    await session.close();
  });

  const flip = (b: Uint8Array, i = 10): Uint8Array => {
    const c = b.slice();
    c[i] = (c[i] ?? 0) ^ 1;
    return c;
  };
  const flipProfile = (bytes: Uint8Array): Uint8Array => {
    const jws = JSON.parse(Buffer.from(bytes).toString('utf8')) as SignedProfile;
    const sig = fromB64u((jws.signatures[0] as { signature: string }).signature);
    (jws.signatures[0] as { signature: string }).signature = b64u(flip(sig));
    return text(JSON.stringify(jws));
  };
  let baseProfileBytes: Uint8Array | undefined;
  const otherKey = publicKeyFromScalar('Ed25519', 4242n);
  const hostChecks: Array<[string, Tamper, string, string?]> = [
    ['the base profile does not verify', (t, m) => (t === 'PUBKEYS' ? new Map([...m, [4, flipProfile(m.get(4) as Uint8Array)]]) : undefined), 'base-profile'],
    ['the base profile keys differ from PUBKEYS', (t, m) => (t === 'PUBKEYS' ? new Map([...m, [1, otherKey]]) : undefined), 'base-profile'],
    ['PUBKEYS keys of the wrong size', (t, m) => (t === 'PUBKEYS' ? new Map([...m, [2, new Uint8Array(32)]]) : undefined), 'base-keys'],
    ['composite keys differ from the expected ones', (t, m) => (t === 'PROOF' ? new Map([...m, [3, publicKeyFromScalar('X25519', 99n, { extended: true })]]) : undefined), 'composite-keys', 'composite key mismatch'],
    ['the proof signature is invalid', (t, m) => (t === 'PROOF' ? new Map([...m, [4, flip(m.get(4) as Uint8Array)]]) : undefined), 'proof'],
    ['the composite profile does not verify', (t, m) => (t === 'PROOF' ? new Map([...m, [5, flipProfile(m.get(5) as Uint8Array)]]) : undefined), 'composite-profile'],
    ['the composite profile has other keys (the base profile)', (t, m) => {
      if (t === 'PUBKEYS') baseProfileBytes = m.get(4) as Uint8Array;
      return t === 'PROOF' ? new Map([...m, [5, baseProfileBytes as Uint8Array]]) : undefined;
    }, 'composite-profile'],
    ['the receipt is invalid', (t, m) => (t === 'RECEIPT' ? new Map([...m, [1, flip(m.get(1) as Uint8Array, 40)]]) : undefined), 'receipt'],
    ['ACK with a wrong state', (t, m) => (t === 'ACK' ? new Map([...m, [1, DeviceState.COGENERATED]]) : undefined), 'ack'],
  ];
  for (const [name, tamper, check, message] of hostChecks) {
    it(`${name}: EnrollmentError "${check}", not connected`, async () => {
      const connected: SignedProfile[] = [];
      const { session } = rig(undefined, { tamper });
      const e = await refused(enrollDevice(session, plan(connected), { port: 'p' }));
      expect(e.check).toBe(check);
      expect(e.serial).toBe(SERIAL);
      if (message !== undefined) expect(e.message).toContain(message);
      expect(connected).toEqual([]);
      await session.close();
    });
  }
});

describe('resume, restart and unplug', () => {
  const states: Array<[number, EnrollStep]> = [
    [DeviceState.KEYS_GENERATED, 'cogen'],
    [DeviceState.COGENERATED, 'install'],
    [DeviceState.INSTALLED, 'commit'],
    [DeviceState.COMMITTED, 'connect'],
  ];
  for (const [state, step] of states) {
    it(`a device left in state ${state} resumes from a file journal and is provisioned once`, async () => {
      const connected: SignedProfile[] = [];
      const journal = fileJournal(join(tempDir(), 'journal'));
      const first = rig();
      await expect(enrollDevice(first.session, plan(connected), { port: 'p', journal, onStep: stopAt(step) })).rejects.toThrow(`stopped before ${step}`);
      const flash = first.soft.state;
      expect(flash.state).toBe(state);
      const before = await journal.load(SERIAL);
      await first.session.close();
      // re-plugged: a new link to the same device (its flash)
      const second = rig(flash);
      const result = await enrollDevice(second.session, plan(connected), { port: 'p', journal });
      expect(result.resumed).toBe('resumed');
      expect(result.baseDeviceId).toBe(before?.baseDevice);
      expect(result.record.Attempts).toBe(state === DeviceState.COMMITTED ? 1 : 2);
      expect(second.soft.seen).not.toContain('RESET');
      await checkResult(result, second.soft);
      expect(connected).toEqual([result.deviceProfile]);
      await second.session.close();
    });
  }

  for (const [state, step] of states.slice(1, 3)) {
    it(`a device left in state ${state} without a journal is RESET and restarted with new keys`, async () => {
      const connected: SignedProfile[] = [];
      const first = rig();
      const firstJournal = memoryJournal();
      await expect(enrollDevice(first.session, plan(connected), { port: 'p', journal: firstJournal, onStep: stopAt(step) })).rejects.toThrow();
      const flash = first.soft.state;
      await first.session.close();
      const second = rig(flash);
      const result = await enrollDevice(second.session, plan(connected), { port: 'p', journal: memoryJournal() });
      expect(result.resumed).toBe('restarted');
      expect(second.soft.seen).toContain('RESET');
      expect(result.baseDeviceId).not.toBe(firstJournal.entries.get(SERIAL)?.baseDevice);
      await checkResult(result, second.soft);
      await second.session.close();
    });
  }

  it('per-request timeouts: a KEYGEN reply after 2.2 s times out at the session default (2 × 1 s), succeeds with plan.timeouts.KEYGEN', async () => {
    const slow = rig(undefined, { delayMs: { PUBKEYS: 2200 } });
    const err = await enrollDevice(slow.session, plan([]), { port: 'link:slow' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceTimeoutError);
    expect((err as Error).message).toContain('KEYGEN');
    await slow.session.close();
    const patient = rig(slow.soft.state, { delayMs: { PUBKEYS: 2200 } });
    const connected: SignedProfile[] = [];
    const result = await enrollDevice(patient.session, plan(connected, { timeouts: { KEYGEN: 3000 } }), { port: 'link:slow' });
    expect(result.record.Serial).toBe(SERIAL);
    expect(connected).toHaveLength(1);
    await patient.session.close();
    const bad = rig();
    await expect(enrollDevice(bad.session, plan([], { timeouts: { FLASH: 10 } as never }), { port: 'link:bad' })).rejects.toThrow(RangeError);
    await expect(enrollDevice(bad.session, plan([], { timeouts: { KEYGEN: 0 } }), { port: 'link:bad' })).rejects.toThrow(RangeError);
    expect(bad.soft.seen).toEqual([]);
    await bad.session.close();
  });

  it('a device left in KEYS_GENERATED without a journal continues with the same base keys', async () => {
    const first = rig();
    const j = memoryJournal();
    await expect(enrollDevice(first.session, plan([]), { port: 'p', journal: j, onStep: stopAt('cogen') })).rejects.toThrow();
    const flash = first.soft.state;
    await first.session.close();
    const second = rig(flash);
    const result = await enrollDevice(second.session, plan([]), { port: 'p' });
    expect(result.resumed).toBe('resumed');
    expect(result.baseDeviceId).toBe(j.entries.get(SERIAL)?.baseDevice);
    await checkResult(result, second.soft);
    await second.session.close();
  });

  it('a stale journal (another contribution than the device applied) leads to a RESET and a restart', async () => {
    const journal = memoryJournal();
    const first = rig();
    await expect(enrollDevice(first.session, plan([]), { port: 'p', journal, onStep: stopAt('install') })).rejects.toThrow();
    const flash = first.soft.state;
    await first.session.close();
    // the journal now names contribution B for the same base device; the device applied contribution A
    const stale = journal.entries.get(SERIAL) as JournalEntry;
    const baseKeys = stale.baseKeys as NonNullable<JournalEntry['baseKeys']>;
    const c = [11n, 22n, 33n];
    const expected = {
      signature: combinePublicKeys('Ed25519', fromB64u(baseKeys.signature), publicKeyFromScalar('Ed25519', c[0] as bigint)),
      encryption: combinePublicKeys('X25519', fromB64u(baseKeys.encryption), publicKeyFromScalar('X25519', c[1] as bigint, { extended: true })),
      authentication: combinePublicKeys('X25519', fromB64u(baseKeys.authentication), publicKeyFromScalar('X25519', c[2] as bigint, { extended: true })),
    };
    const plaintext = encodeCbor(new Map<number, Uint8Array>([
      [1, bigIntToBytesLE(c[0] as bigint, 32)], [2, bigIntToBytesLE(c[1] as bigint, 32)], [3, bigIntToBytesLE(c[2] as bigint, 32)],
      [4, expected.signature], [5, expected.encryption], [6, expected.authentication],
    ]));
    const fork = memoryJournal();
    fork.entries.set(SERIAL, {
      ...stale,
      cogen: {
        box: b64u(sealBox(fromB64u(baseKeys.encryption), 'contribution', plaintext)), time: stale.cogen?.time ?? 0,
        expected: { signature: b64u(expected.signature), encryption: b64u(expected.encryption), authentication: b64u(expected.authentication) },
      },
    });
    const second = rig(flash);
    const result = await enrollDevice(second.session, plan([]), { port: 'p', journal: fork });
    expect(result.resumed).toBe('restarted');
    expect(second.soft.seen).toContain('RESET');
    await checkResult(result, second.soft);
    await second.session.close();
  });

  it('a COMMITTED device without a journal is reported and not re-provisioned', async () => {
    const first = rig();
    await enrollDevice(first.session, plan([]), { port: 'p' });
    const flash = first.soft.state;
    await first.session.close();
    const connected: SignedProfile[] = [];
    const second = rig(flash);
    const e = await refused(enrollDevice(second.session, plan(connected), { port: 'p', journal: memoryJournal() }));
    expect(e.check).toBe('committed');
    expect(e.message).toContain('not re-provisioned');
    expect(second.soft.seen).not.toContain('RESET');
    expect(second.soft.seen).not.toContain('COMMIT');
    expect(second.soft.state).toEqual(flash);
    expect(connected).toEqual([]);
    await second.session.close();
  });

  it('unplugged mid-step: DeviceDisconnectedError and no result; re-plugged with the journal it resumes, provisioned once', async () => {
    const journal = memoryJournal();
    let unplug: () => void = () => undefined;
    const first = rig(undefined, {
      persist: (_s, request) => {
        if (request === 'COGEN') unplug(); // the flash write happened, the reply never arrives
      },
    });
    unplug = first.unplug;
    const e = await enrollDevice(first.session, plan([]), { port: 'p', journal }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(DeviceDisconnectedError);
    const flash = first.soft.state;
    expect(flash.state).toBe(DeviceState.COGENERATED);
    await first.session.close();
    const connected: SignedProfile[] = [];
    const second = rig(flash);
    const result = await enrollDevice(second.session, plan(connected), { port: 'p', journal });
    expect(result.resumed).toBe('resumed');
    await checkResult(result, second.soft);
    expect(connected.length).toBe(1);
    await second.session.close();
  });
});

describe('fileJournal', () => {
  it('saves atomically, loads, removes; a corrupt entry is EnrollmentError "journal"; odd serials stay in the directory', async () => {
    const dir = join(tempDir(), 'j');
    const journal = fileJournal(dir);
    expect(await journal.load('A/../B')).toBeUndefined();
    const entry: JournalEntry = { version: 1, serial: 'A/../B', model: 'm', firmware: 'f', port: 'p', started: new Date().toISOString(), attempts: 1 };
    await journal.save('A/../B', entry);
    expect(readdirSync(dir)).toEqual(['A%2F%2E%2E%2FB.json']);
    expect(await journal.load('A/../B')).toEqual(entry);
    await journal.save('A/../B', { ...entry, attempts: 2 });
    expect((await journal.load('A/../B'))?.attempts).toBe(2);
    expect(readdirSync(dir).length).toBe(1);
    writeFileSync(join(dir, 'X.json'), '{"version":1');
    await expect(journal.load('X')).rejects.toMatchObject({ check: 'journal' });
    writeFileSync(join(dir, 'Y.json'), JSON.stringify({ ...entry, serial: 'Z' }));
    await expect(journal.load('Y')).rejects.toMatchObject({ check: 'journal' });
    await journal.remove('A/../B');
    expect(await journal.load('A/../B')).toBeUndefined();
    await expect(journal.save('', entry)).rejects.toThrow(RangeError);
    expect(readFileSync(join(dir, 'X.json'), 'utf8')).toBe('{"version":1');
    expect(() => fileJournal('')).toThrow(TypeError);
  });
});
