/**
 * The in-process TypeScript device (src/device/soft-device.ts) against docs/protocol.md and docs/enrollment.md:
 * session and authentication rules, encoding errors, retries, the allowed-state table (expected outcomes written
 * from the document's table), and the device-side enrollment checks (composite mismatch, forged admin signature,
 * a connection for another device, a config box it cannot open).
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bytesToBigIntLE, bigIntToBytesLE, concatBytes, fromB64u } from '../../src/core/bytes.js';
import { combinePublicKeys, GROUP_ORDER, publicKeyFromScalar, signWithScalar } from '../../src/core/cogen.js';
import { composeMasterProfile } from '../../src/core/profiles.js';
import { sealBox } from '../../src/device/box.js';
import { decodeCbor, encodeCbor, type CborMap } from '../../src/device/cbor.js';
import { enrollDevice, type EnrollJournal, type EnrollStep, type JournalEntry } from '../../src/device/enroll.js';
import { encodeFrames, FrameDecoder } from '../../src/device/framing.js';
import { DeviceState, DeviceStatus, MessageType, type MessageTypeName } from '../../src/device/protocol.generated.js';
import { DeviceReplyError, DeviceSession } from '../../src/device/session.js';
import { startSoftDevice, type SoftDeviceState } from '../../src/device/soft-device.js';
import { createLinkPair, type LinkTransport } from '../../src/device/transport/link.js';
import { testKey, testSigner } from '../helpers/software-signer.js';

const L = GROUP_ORDER.Ed25519;
const bench = testKey('Ed25519');
const benchRaw = fromB64u(bench.publicJwk.x);
const admin = testKey('Ed25519');
const masterKey = testKey('Ed25519');
const master = composeMasterProfile({ signatureKey: masterKey.publicJwk, adminKeys: [admin.publicJwk] });
const SERIAL = 'SOFT-1';
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function memoryJournal(): EnrollJournal & { entries: Map<string, JournalEntry> } {
  const entries = new Map<string, JournalEntry>();
  return {
    entries,
    load: async (serial) => entries.get(serial),
    save: async (serial, e) => void entries.set(serial, structuredClone(e)),
    remove: async (serial) => void entries.delete(serial),
  };
}

function open(state?: SoftDeviceState, provisionerKey = benchRaw) {
  const [host, device] = createLinkPair();
  const soft = startSoftDevice(device, { model: 'soft-mcu', serial: SERIAL, provisionerKey, ...(state === undefined ? {} : { state }) });
  const session = new DeviceSession(host, { timeoutMs: 1000, retries: 0 });
  return { host, soft, session };
}

async function helloAuth(session: DeviceSession): Promise<CborMap> {
  const info = (await session.exchange('HELLO', { 1: 1 })).payload as CborMap;
  const challenge = info.get(6) as Uint8Array;
  const signature = await testSigner(bench).sign(challenge);
  const ok = (await session.exchange('BENCH_AUTH', { 1: challenge, 2: benchRaw, 3: signature })).payload as CborMap;
  return ok;
}

async function status(p: Promise<unknown>): Promise<number | string> {
  try {
    const reply = await p as { name?: string };
    return reply.name ?? 'ok';
  } catch (e) {
    if (e instanceof DeviceReplyError) return e.status as number;
    throw e;
  }
}

/** Sends raw CBOR bytes (possibly invalid) and returns the reply's type and payload. */
async function raw(host: LinkTransport, type: number, seq: number, bytes: Uint8Array): Promise<{ type: number; payload: CborMap }> {
  const decoder = new FrameDecoder();
  return new Promise((resolve) => {
    const off = host.onData((chunk) => {
      for (const event of decoder.push(chunk)) {
        if (event.kind === 'message' && event.message.seq === seq) {
          off();
          resolve({ type: event.message.type, payload: decodeCbor(event.message.payload) as CborMap });
        }
      }
    });
    void host.send(concatBytes(...encodeFrames(type, seq, bytes)));
  });
}

const STOP_AFTER: Record<number, EnrollStep | undefined> = {
  [DeviceState.FACTORY]: undefined,
  [DeviceState.KEYS_GENERATED]: 'cogen',
  [DeviceState.COGENERATED]: 'install',
  [DeviceState.INSTALLED]: 'commit',
  [DeviceState.COMMITTED]: 'connect',
};

/** Enrolls a fresh soft device up to `state` (stopping before the next step); its flash and the journal entry. */
async function deviceAt(state: number): Promise<{ flash: SoftDeviceState; entry: JournalEntry | undefined }> {
  const { soft, session } = open();
  const journal = memoryJournal();
  const stop = STOP_AFTER[state];
  if (stop !== undefined) {
    await expect(enrollDevice(session, {
      bench: testSigner(bench), admin: testSigner(admin), master, config: text('wifi=on'), connect: async () => undefined,
    }, {
      port: 'link', journal, onStep: (e) => {
        if (e.step === stop && e.phase === 'start') throw new Error('stop');
      },
    })).rejects.toThrow('stop');
  }
  const flash = soft.state;
  expect(flash.state).toBe(state);
  await soft.close();
  return { flash, entry: journal.entries.get(SERIAL) };
}

describe('soft device: sessions, authentication and encoding', () => {
  it('HELLO → INFO; BENCH_AUTH with the pinned key → BENCH_AUTH_OK{AUTHENTICATED}; retries get the same reply', async () => {
    const { session, host, soft } = open();
    const info = (await session.exchange('HELLO', { 1: 1 })).payload as CborMap;
    expect(info.get(1)).toBe('soft-mcu');
    expect(info.get(2)).toBe(SERIAL);
    expect(info.get(5)).toBe(DeviceState.FACTORY);
    expect((info.get(6) as Uint8Array).length).toBe(32);
    const challenge = info.get(6) as Uint8Array;
    const ok = await helloAuth(session);
    expect(ok.get(1)).toBe(DeviceState.AUTHENTICATED);
    // a retry (same seq, same bytes) gets the same reply byte for byte; a new HELLO a new challenge
    const hello = encodeCbor({ 1: 1 });
    const a = await raw(host, MessageType.HELLO, 200, hello);
    const b = await raw(host, MessageType.HELLO, 200, hello);
    expect(b).toEqual(a);
    const c = await raw(host, MessageType.HELLO, 201, hello);
    expect(c.payload.get(6)).not.toEqual(a.payload.get(6));
    expect(a.payload.get(6)).not.toEqual(challenge);
    await soft.close();
  });

  it('before HELLO everything but HELLO is BAD_STATE; after HELLO, KEYGEN needs BENCH_AUTH (NOT_AUTHENTICATED)', async () => {
    const { session, soft } = open();
    expect(await status(session.exchange('BENCH_AUTH', { 1: new Uint8Array(32), 2: benchRaw, 3: new Uint8Array(64) }))).toBe(DeviceStatus.BAD_STATE);
    expect(await status(session.exchange('KEYGEN', { 1: 7, 2: 1 }))).toBe(DeviceStatus.BAD_STATE);
    await session.exchange('HELLO', { 1: 1 });
    expect(await status(session.exchange('KEYGEN', { 1: 7, 2: 1 }))).toBe(DeviceStatus.NOT_AUTHENTICATED);
    expect(await status(session.exchange('RESET', { 1: SERIAL }))).toBe(DeviceStatus.NOT_AUTHENTICATED);
    // the state check comes before the authentication check (COGEN is not allowed in FACTORY at all)
    expect(await status(session.exchange('COGEN', { 1: new Uint8Array(80), 2: 1 }))).toBe(DeviceStatus.BAD_STATE);
    await soft.close();
  });

  it('an untrusted bench key, a forged signature or another challenge is BAD_SIGNATURE', async () => {
    const { session, soft } = open();
    const info = (await session.exchange('HELLO', { 1: 1 })).payload as CborMap;
    const challenge = info.get(6) as Uint8Array;
    const stranger = testKey('Ed25519');
    expect(await status(session.exchange('BENCH_AUTH', { 1: challenge, 2: fromB64u(stranger.publicJwk.x), 3: await testSigner(stranger).sign(challenge) })))
      .toBe(DeviceStatus.BAD_SIGNATURE);
    const forged = await testSigner(bench).sign(challenge);
    forged[5] = (forged[5] ?? 0) ^ 1;
    expect(await status(session.exchange('BENCH_AUTH', { 1: challenge, 2: benchRaw, 3: forged }))).toBe(DeviceStatus.BAD_SIGNATURE);
    const other = new Uint8Array(randomBytes(32));
    expect(await status(session.exchange('BENCH_AUTH', { 1: other, 2: benchRaw, 3: await testSigner(bench).sign(other) }))).toBe(DeviceStatus.BAD_SIGNATURE);
    expect(await status(session.exchange('KEYGEN', { 1: 7, 2: 1 }))).toBe(DeviceStatus.NOT_AUTHENTICATED);
    await soft.close();
  });

  it('encoding errors: unknown type, not CBOR, non-canonical, not a map, wrong type, missing field, HELLO version', async () => {
    const { host, soft } = open();
    const code = (r: { type: number; payload: CborMap }): unknown => (r.type === MessageType.ERROR ? r.payload.get(1) : 'not an error');
    expect(code(await raw(host, 0x55, 1, encodeCbor({})))).toBe(DeviceStatus.UNKNOWN_MESSAGE);
    expect(code(await raw(host, MessageType.INFO, 2, encodeCbor({})))).toBe(DeviceStatus.UNKNOWN_MESSAGE);
    expect(code(await raw(host, MessageType.HELLO, 3, Uint8Array.of(0xff)))).toBe(DeviceStatus.CBOR_INVALID);
    expect(code(await raw(host, MessageType.HELLO, 4, Uint8Array.of(0xa2, 0x02, 0x00, 0x01, 0x01)))).toBe(DeviceStatus.CBOR_NONCANONICAL);
    expect(code(await raw(host, MessageType.HELLO, 5, Uint8Array.of(0x18, 0x01)))).toBe(DeviceStatus.CBOR_NONCANONICAL);
    expect(code(await raw(host, MessageType.HELLO, 6, encodeCbor([1])))).toBe(DeviceStatus.WRONG_TYPE);
    const wrong = await raw(host, MessageType.HELLO, 7, encodeCbor({ 1: 'one' }));
    expect(code(wrong)).toBe(DeviceStatus.WRONG_TYPE);
    expect(wrong.payload.get(2)).toContain('HELLO.version');
    expect(code(await raw(host, MessageType.HELLO, 8, encodeCbor({ 2: 1 })))).toBe(DeviceStatus.MISSING_FIELD);
    expect(code(await raw(host, MessageType.HELLO, 9, encodeCbor({ 1: 2 })))).toBe(DeviceStatus.BAD_VERSION);
    expect(code(await raw(host, MessageType.KEYGEN, 10, encodeCbor({ 1: 7 })))).toBe(DeviceStatus.MISSING_FIELD);
    await soft.close();
  });

  it('a corrupted frame gets no reply (dropped), the next good one does', async () => {
    const { host, soft, session } = open();
    const frame = concatBytes(...encodeFrames(MessageType.HELLO, 9, encodeCbor({ 1: 1 })));
    frame[3] = (frame[3] ?? 0) ^ 0x40;
    await host.send(frame);
    await new Promise((r) => setTimeout(r, 50));
    expect(soft.seen).toEqual([]);
    expect((await session.exchange('HELLO', { 1: 1 })).name).toBe('INFO');
    await soft.close();
  });
});

type Probe = 'KEYGEN' | 'COGEN new' | 'COGEN same' | 'INSTALL new' | 'INSTALL same' | 'COMMIT new' | 'COMMIT same' | 'RESET' | 'RESET other serial';
const OK: Record<string, MessageTypeName> = { KEYGEN: 'PUBKEYS', COGEN: 'PROOF', INSTALL: 'ACK', COMMIT: 'RECEIPT', RESET: 'ACK' };
const B = DeviceStatus.BAD_STATE;
/** docs/enrollment.md "Allowed states", per state FACTORY, KEYS_GENERATED, COGENERATED, INSTALLED, COMMITTED. */
const TABLE: Record<Probe, readonly (string | number | null)[]> = {
  KEYGEN: ['PUBKEYS', 'PUBKEYS', 'PUBKEYS', 'PUBKEYS', 'PUBKEYS'],
  'COGEN new': [B, 'PROOF', B, B, B],
  'COGEN same': [null, null, 'PROOF', 'PROOF', 'PROOF'],
  'INSTALL new': [B, B, 'ACK', B, B],
  'INSTALL same': [null, null, null, 'ACK', 'ACK'],
  'COMMIT new': [B, B, B, 'RECEIPT', B],
  'COMMIT same': [null, null, null, null, 'RECEIPT'],
  RESET: ['ACK', 'ACK', 'ACK', 'ACK', B],
  'RESET other serial': [DeviceStatus.WRONG_DEVICE, DeviceStatus.WRONG_DEVICE, DeviceStatus.WRONG_DEVICE, DeviceStatus.WRONG_DEVICE, B],
};
const STATES = [DeviceState.FACTORY, DeviceState.KEYS_GENERATED, DeviceState.COGENERATED, DeviceState.INSTALLED, DeviceState.COMMITTED];

/** A well-formed request for each probe, built from the device's journal (public data), or junk where the state check must win. */
async function probeRequest(probe: Probe, entry: JournalEntry | undefined): Promise<{ type: MessageTypeName; message: Map<number, unknown> } | undefined> {
  const time = Math.floor(Date.now() / 1000);
  const base = entry?.baseKeys;
  switch (probe) {
    case 'KEYGEN': return { type: 'KEYGEN', message: new Map([[1, 7], [2, time]]) };
    case 'COGEN new': {
      if (base === undefined) return { type: 'COGEN', message: new Map<number, unknown>([[1, new Uint8Array(100)], [2, time]]) };
      const c = [1, 2, 3].map(() => bytesToBigIntLE(randomBytes(64)) % L);
      const b = { sig: fromB64u(base.signature), enc: fromB64u(base.encryption), auth: fromB64u(base.authentication) };
      const plaintext = encodeCbor(new Map<number, Uint8Array>([
        [1, bigIntToBytesLE(c[0] as bigint, 32)], [2, bigIntToBytesLE(c[1] as bigint, 32)], [3, bigIntToBytesLE(c[2] as bigint, 32)],
        [4, combinePublicKeys('Ed25519', b.sig, publicKeyFromScalar('Ed25519', c[0] as bigint))],
        [5, combinePublicKeys('X25519', b.enc, publicKeyFromScalar('X25519', c[1] as bigint, { extended: true }))],
        [6, combinePublicKeys('X25519', b.auth, publicKeyFromScalar('X25519', c[2] as bigint, { extended: true }))],
      ]));
      return { type: 'COGEN', message: new Map<number, unknown>([[1, sealBox(b.enc, 'contribution', plaintext)], [2, time]]) };
    }
    case 'COGEN same':
      return entry?.cogen === undefined ? undefined : { type: 'COGEN', message: new Map<number, unknown>([[1, fromB64u(entry.cogen.box)], [2, entry.cogen.time]]) };
    case 'INSTALL new': {
      if (entry?.device === undefined) return { type: 'INSTALL', message: new Map<number, unknown>([[1, new Uint8Array(10)], [2, new Uint8Array(60)]]) };
      const enc = fromB64u((entry.cogen as NonNullable<JournalEntry['cogen']>).expected.encryption);
      const unsigned = new Map<number, string | Uint8Array | number>([[1, master.Identifier], [2, entry.device], [3, fromB64u(admin.publicJwk.x)], [4, time]]);
      const signature = await testSigner(admin).sign(concatBytes(text('meshkit-connection-v1'), Uint8Array.of(0), encodeCbor(unsigned)));
      return { type: 'INSTALL', message: new Map<number, unknown>([[1, encodeCbor(new Map([...unsigned, [5, signature]]))], [2, sealBox(enc, 'config', text('other config'))]]) };
    }
    case 'INSTALL same':
      return entry?.install === undefined ? undefined : { type: 'INSTALL', message: new Map<number, unknown>([[1, fromB64u(entry.install.connection)], [2, fromB64u(entry.install.config)]]) };
    case 'COMMIT new': return { type: 'COMMIT', message: new Map([[1, new Uint8Array(randomBytes(64))]]) };
    case 'COMMIT same': return entry?.receipt === undefined ? undefined : { type: 'COMMIT', message: new Map([[1, recordDigestOf(entry)]]) };
    case 'RESET': return { type: 'RESET', message: new Map([[1, SERIAL]]) };
    case 'RESET other serial': return { type: 'RESET', message: new Map([[1, 'SOMEONE-ELSE']]) };
  }
}

function recordDigestOf(entry: JournalEntry): Uint8Array {
  // the digest the device committed: recompute from the draft as docs/enrollment.md says
  const draft = entry.record as NonNullable<JournalEntry['record']>;
  const ordered = ['Serial', 'Model', 'Firmware', 'Port', 'Device', 'BaseDevice', 'Account', 'AdminKey', 'BenchKey', 'ConfigDigest', 'Started', 'Finished', 'Attempts'] as const;
  const json = JSON.stringify(Object.fromEntries(ordered.map((k) => [k, draft[k]])));
  return new Uint8Array(createHash('sha512').update(text(json)).digest());
}

describe('soft device: the allowed-state table of docs/enrollment.md', () => {
  for (const state of STATES) {
    it(`state ${state}: every request answers as the table says`, async () => {
      const { flash, entry } = await deviceAt(state);
      for (const probe of Object.keys(TABLE) as Probe[]) {
        const expected = TABLE[probe][state === DeviceState.FACTORY ? 0 : state - 1];
        if (expected === null) continue;
        const request = await probeRequest(probe, entry);
        expect(request, probe).toBeDefined();
        const { session, soft } = open(flash);
        await helloAuth(session);
        const got = await status(session.exchange((request as { type: MessageTypeName }).type, (request as { message: Map<number, unknown> }).message as never));
        expect([probe, got]).toEqual([probe, expected]);
        if (expected === OK[(request as { type: string }).type] && probe.startsWith('RESET')) expect(soft.state.state).toBe(DeviceState.FACTORY);
        await soft.close();
      }
    });
  }
});

describe('soft device: enrollment checks on the device side', () => {
  it('a contribution whose expected composite keys do not match is COGEN_MISMATCH and nothing is stored', async () => {
    const { flash, entry } = await deviceAt(DeviceState.KEYS_GENERATED);
    const base = entry?.baseKeys as NonNullable<JournalEntry['baseKeys']>;
    const c = bigIntToBytesLE(12345n, 32);
    const wrong = publicKeyFromScalar('Ed25519', 999n);
    const plaintext = encodeCbor(new Map<number, Uint8Array>([
      [1, c], [2, c], [3, c], [4, wrong],
      [5, publicKeyFromScalar('X25519', 5n, { extended: true })], [6, publicKeyFromScalar('X25519', 6n, { extended: true })],
    ]));
    const { session, soft } = open(flash);
    await helloAuth(session);
    expect(await status(session.exchange('COGEN', { 1: sealBox(fromB64u(base.encryption), 'contribution', plaintext), 2: 1 }))).toBe(DeviceStatus.COGEN_MISMATCH);
    expect(soft.state.state).toBe(DeviceState.KEYS_GENERATED);
    expect(soft.state.composite).toBeUndefined();
    // a box it cannot open (sealed to another key) is DECRYPT_FAILED
    expect(await status(session.exchange('COGEN', { 1: sealBox(publicKeyFromScalar('X25519', 77n), 'contribution', plaintext), 2: 1 }))).toBe(DeviceStatus.DECRYPT_FAILED);
    await soft.close();
  });

  it('INSTALL: a forged admin signature is BAD_SIGNATURE, a connection naming another device WRONG_DEVICE, a bad config box DECRYPT_FAILED', async () => {
    const { flash, entry } = await deviceAt(DeviceState.COGENERATED);
    const e = entry as JournalEntry;
    const compositeEnc = fromB64u((e.cogen as NonNullable<JournalEntry['cogen']>).expected.encryption);
    const adminScalar = bytesToBigIntLE(randomBytes(64)) % L;
    const adminPub = publicKeyFromScalar('Ed25519', adminScalar);
    const connection = (device: string, forge: boolean): Uint8Array => {
      const unsigned = new Map<number, string | Uint8Array | number>([[1, master.Identifier], [2, device], [3, adminPub], [4, 1_700_000_000]]);
      const signature = signWithScalar('Ed25519', adminScalar, concatBytes(text('meshkit-connection-v1'), Uint8Array.of(0), encodeCbor(unsigned)));
      if (forge) signature[40] = (signature[40] ?? 0) ^ 1;
      return encodeCbor(new Map([...unsigned, [5, signature]]));
    };
    const config = sealBox(compositeEnc, 'config', text('mqtt=on'));
    const { session, soft } = open(flash);
    await helloAuth(session);
    expect(await status(session.exchange('INSTALL', { 1: connection(e.device as string, true), 2: config }))).toBe(DeviceStatus.BAD_SIGNATURE);
    expect(await status(session.exchange('INSTALL', { 1: connection(e.baseDevice as string, false), 2: config }))).toBe(DeviceStatus.WRONG_DEVICE);
    expect(await status(session.exchange('INSTALL', { 1: connection(e.device as string, false), 2: sealBox(compositeEnc, 'contribution', text('x')) }))).toBe(DeviceStatus.DECRYPT_FAILED);
    expect(soft.state.state).toBe(DeviceState.COGENERATED);
    expect(await status(session.exchange('INSTALL', { 1: connection(e.device as string, false), 2: config }))).toBe('ACK');
    expect(soft.state.state).toBe(DeviceState.INSTALLED);
    expect(soft.state.config).toBe(Buffer.from('mqtt=on').toString('hex'));
    expect(soft.state.account).toBe(master.Identifier);
    await soft.close();
  });

  it('rejects bad options', () => {
    const [, device] = createLinkPair();
    expect(() => startSoftDevice(device, { model: 'm', serial: 's', provisionerKey: new Uint8Array(31) })).toThrow(RangeError);
    expect(() => startSoftDevice(device, { model: '', serial: 's', provisionerKey: benchRaw })).toThrow(RangeError);
    expect(() => startSoftDevice(device, { model: 'm', serial: 's', provisionerKey: benchRaw, state: { format: 1, state: DeviceState.COGENERATED } })).toThrow(RangeError);
    expect(() => startSoftDevice(device, { model: 'm', serial: 's', provisionerKey: benchRaw, state: { format: 1, state: 1 } })).toThrow(RangeError);
    expect(() => startSoftDevice(undefined as never, { model: 'm', serial: 's', provisionerKey: benchRaw })).toThrow(TypeError);
  });
});
