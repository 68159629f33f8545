// The transport contract run inside the test:usb VM (scripts/usb-vm/guest.sh starts it): the C emulator
// (firmware-bindings/build/mk-emulator) on the gadget side of a real USB link — /dev/ttyGS0 (CDC-ACM) and
// /dev/hidg0 (HID) — and the TypeScript host (compiled to $MKUSB_JS) on the host side — /dev/ttyACM0 through
// serialport and /dev/hidraw* through node-hid — so every byte crosses the kernel's USB stack (dummy_hcd,
// cdc-acm, usbhid/hidraw, u_serial, usb_f_hid).
//
// Prints one line per check, `MKUSB-RESULT {"transport","name","ok","ms","detail"}`, then
// `MKUSB-SUMMARY {"passed","failed","ms"}`; exits 0 only when every check passed. Plain node, no vitest: the
// guest's root file system is read-only. Serial I/O goes only through SerialTransport, which never touches the
// modem lines: on this CDC-ACM function (no break support) serialport's set({dtr, rts}) fails with "Operation not
// supported" (serialport/node-serialport#2777), so a transport that called it would fail on real CDC-ACM boards.
/* global process, console, Buffer, TextEncoder */
import { existsSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { assert, sleep, startEmulator, stopEmulator } from './emulator.mjs';

const JS = process.env.MKUSB_JS;
const REPO = process.env.MKUSB_REPO;
const GADGET = process.env.MKUSB_GADGET;
if (!JS || !REPO) {
  console.log('contract: MKUSB_JS and MKUSB_REPO must be set');
  process.exit(2);
}
const EMULATOR = `${REPO}/firmware-bindings/build/mk-emulator`;
const VID = 0x1209;
const PID = 0x0001;

const { DeviceSession, DeviceReplyError, hidCodec, serialCodec } = await import(`${JS}/src/device/session.js`);
const { SerialTransport } = await import(`${JS}/src/device/transport/serial.js`);
const { HidTransport, listHidDevices } = await import(`${JS}/src/device/transport/hid.js`);
const { DeviceDisconnectedError } = await import(`${JS}/src/device/transport/types.js`);
const { statusName } = await import(`${JS}/src/device/framing.js`);
const { Capability } = await import(`${JS}/src/device/protocol.generated.js`);
const { countingTransport } = existsSync(`${JS}/src/device/enroll.js`) ? await import(`${JS}/src/device/enroll.js`) : {};
const enrollPath = `${JS}/src/device/enroll.js`;

const started = Date.now();
let passed = 0;
let failed = 0;

async function check(transport, name, fn) {
  const t0 = Date.now();
  let ok = false;
  let detail;
  try {
    detail = (await fn()) ?? '';
    ok = true;
    passed++;
  } catch (error) {
    failed++;
    detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  }
  console.log(`MKUSB-RESULT ${JSON.stringify({ transport, name, ok, ms: Date.now() - t0, detail })}`);
  return ok;
}

/** A transport wrapper whose next send(s) can be corrupted by a function; counts the sends. */
function corruptible(inner) {
  let corrupt;
  let sends = 0;
  return {
    transport: {
      get isOpen() {
        return inner.isOpen;
      },
      send(bytes) {
        sends++;
        if (corrupt !== undefined) {
          const fn = corrupt;
          corrupt = undefined;
          return inner.send(fn(bytes.slice()));
        }
        return inner.send(bytes);
      },
      onData: (listener) => inner.onData(listener),
      onClose: (listener) => inner.onClose(listener),
      close: () => inner.close(),
      [Symbol.asyncDispose]: () => inner.close(),
    },
    corruptNext(fn) {
      corrupt = fn;
    },
    get sends() {
      return sends;
    },
  };
}

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const field = (map, key) => (map instanceof Map ? map.get(key) : undefined);

// One bench key pinned by both emulators, and one they do not trust.
const { keyId: keyIdOf } = await import(`${JS}/src/core/keys.js`);
const benchSigner = softSigner(keyIdOf);
const benchPublic = benchSigner.raw;
const stranger = softSigner(keyIdOf);

/** The contract for one transport. */
async function contract(kind, open, capabilityBit, corruptions, serial) {
  const opened = await open();
  const counter = countingTransport === undefined ? undefined : countingTransport(opened);
  const link = corruptible(counter ?? opened);
  const frameErrors = [];
  const session = new DeviceSession(link.transport, {
    codec: kind === 'serial' ? serialCodec() : hidCodec(),
    timeoutMs: 8000, // TCG: COGEN takes ~1.5 s of emulated CPU; a slow reply must not look like a lost one
    retries: 2,
    firstSeq: 1,
    onFrameError: (error) => frameErrors.push(statusName(error.status) ?? error.message),
  });
  let info;
  await check(kind, 'HELLO -> INFO', async () => {
    const reply = await session.exchange('HELLO', { 1: 1 });
    assert(reply.name === 'INFO', `reply ${reply.name}`);
    info = reply.payload;
    assert(field(info, 2) === serial, `serial ${field(info, 2)}`);
    assert((field(info, 4) & capabilityBit) !== 0, `capabilities 0x${field(info, 4).toString(16)} lack the transport bit`);
    assert(field(info, 5) === 0, `state ${field(info, 5)}`);
    const challenge = field(info, 6);
    assert(challenge instanceof Uint8Array && challenge.length === 32, 'challenge is not 32 bytes');
    return `model ${field(info, 1)}, serial ${field(info, 2)}, capabilities 0x${field(info, 4).toString(16)}`;
  });

  let t0 = Date.now();
  const rounds = 20;
  await check(kind, `${rounds} HELLO round trips`, async () => {
    t0 = Date.now();
    for (let i = 0; i < rounds; i++) info = (await session.exchange('HELLO', { 1: 1 })).payload;
    return `${((Date.now() - t0) / rounds).toFixed(1)} ms per exchange`;
  });

  for (const [name, corrupt, expectHostError] of corruptions) {
    await check(kind, `corrupted ${name} recovered by retry`, async () => {
      const before = link.sends;
      const errorsBefore = frameErrors.length;
      link.corruptNext(corrupt);
      const reply = await session.exchange('HELLO', { 1: 1 }, { timeoutMs: 1500, retries: 2 });
      assert(reply.name === 'INFO', `reply ${reply.name}`);
      info = reply.payload;
      const attempts = link.sends - before;
      assert(attempts === 2, `${attempts} sends, expected the corrupted one and one retry`);
      const hostErrors = frameErrors.slice(errorsBefore);
      if (expectHostError !== undefined) {
        assert(hostErrors.includes(expectHostError), `host frame errors ${JSON.stringify(hostErrors)}, expected ${expectHostError}`);
      }
      return `2 attempts${hostErrors.length > 0 ? `, host dropped ${hostErrors.join(',')}` : ''}`;
    });
  }

  await check(kind, 'BENCH_AUTH with an untrusted bench key -> BAD_SIGNATURE', async () => {
    const challenge = field(info, 6);
    const error = await session
      .exchange('BENCH_AUTH', { 1: challenge, 2: stranger.raw, 3: await stranger.sign(challenge) })
      .then(() => undefined, (e) => e);
    assert(error instanceof DeviceReplyError, `expected DeviceReplyError, got ${error}`);
    assert(statusName(error.status) === 'BAD_SIGNATURE', `status ${statusName(error.status)}`);
    return error.message;
  });

  await check(kind, 'BENCH_AUTH with the pinned key -> BENCH_AUTH_OK', async () => {
    const challenge = field(info, 6);
    const reply = await session.exchange('BENCH_AUTH', { 1: challenge, 2: benchPublic, 3: await benchSigner.sign(challenge) });
    assert(reply.name === 'BENCH_AUTH_OK', `reply ${reply.name}`);
    assert(field(reply.payload, 1) === 1, `state ${field(reply.payload, 1)} (expected AUTHENTICATED)`);
    return 'state AUTHENTICATED';
  });

  return { session, link, frameErrors, counter };
}

/** An Ed25519 Signer (src/core/signer.ts) over a node:crypto key. */
function softSigner(keyId) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  const publicJwk = { kty: 'OKP', crv: 'Ed25519', x: String(jwk.x) };
  return {
    keyId: keyId(publicJwk),
    algorithm: 'EdDSA',
    publicJwk,
    raw: new Uint8Array(Buffer.from(String(jwk.x), 'base64url')),
    sign: async (data) => new Uint8Array(cryptoSign(null, data, privateKey)),
  };
}

/** One full enrollment over the session (src/device/enroll.ts enrollDevice), when enroll.ts exists. */
async function enrollment(kind, session, serial, counter) {
  if (!existsSync(enrollPath)) {
    console.log(`MKUSB-NOTE ${kind}: src/device/enroll.ts not present; full enrollment not run`);
    return;
  }
  await check(kind, 'full enrollment (HELLO..COMMIT, record verified against the device profile)', async () => {
    const { enrollDevice, verifyRecord } = await import(enrollPath);
    const { keyId } = await import(`${JS}/src/core/keys.js`);
    const { composeMasterProfile } = await import(`${JS}/src/core/profiles.js`);
    const master = softSigner(keyId);
    const admin = softSigner(keyId);
    const connected = [];
    const plan = {
      bench: benchSigner,
      admin,
      master: composeMasterProfile({ signatureKey: master.publicJwk, adminKeys: [admin.publicJwk] }),
      config: new TextEncoder().encode(JSON.stringify({ wifi: { ssid: 'bench', psk: 'not-a-secret' }, mqtt: 'mqtts://broker' })),
      connect: async (device) => void connected.push(device),
    };
    const result = await enrollDevice(session, plan, { port: kind === 'serial' ? '/dev/ttyACM0' : 'hid', counter });
    assert(result.serial === serial, `serial ${result.serial}`);
    assert(connected.length === 1, `${connected.length} connect calls`);
    await verifyRecord(result.record, result.deviceProfile);
    const info = (await session.exchange('HELLO', { 1: 1 })).payload;
    assert(field(info, 5) === 5, `device state after enrollment ${field(info, 5)} (expected COMMITTED)`);
    return `${result.resumed}, device ${result.deviceId.slice(0, 20)}…, ${result.bytesSent}/${result.bytesReceived} bytes sent/received, `
      + `steps ${result.steps.map((st) => `${st.step} ${Math.round(st.ms)}ms`).join(' ')}`;
  });
}

const serialState = await startEmulator(
  EMULATOR,
  ['--tty', '/dev/ttyGS0', '--state', '/tmp/acm.state', '--model', 'meshkit-usb-acm', '--serial', 'USB-ACM-1', '--provisioner-key', hex(benchPublic)],
  'serial',
);
const hidState = await startEmulator(
  EMULATOR,
  ['--hidg', '/dev/hidg0', '--state', '/tmp/hid.state', '--model', 'meshkit-usb-hid', '--serial', 'USB-HID-1', '--provisioner-key', hex(benchPublic)],
  'HID',
);

// ---- serial (CDC-ACM)
const serialPath = '/dev/ttyACM0';
const flipMiddle = (bytes) => {
  // Flip one payload bit in the middle of the first frame, never making a 0x00 (the frame delimiter).
  const i = Math.floor((bytes.indexOf(0) > 0 ? bytes.indexOf(0) : bytes.length) / 2);
  bytes[i] = bytes[i] ^ 0x40 || 0x40;
  return bytes;
};
const serialRun = await contract(
  'serial',
  () => SerialTransport.open(serialPath),
  Capability.SERIAL,
  [['frame (one bit flipped: BAD_CRC at the device)', flipMiddle, undefined]],
  'USB-ACM-1',
);
await enrollment('serial', serialRun.session, 'USB-ACM-1', serialRun.counter);

// ---- HID
let hidPath;
await check('hid', 'enumerate: node-hid finds the gadget by VID/PID and usage page 0xFF00', async () => {
  const found = await listHidDevices({ vendorId: VID, productId: PID, usagePage: 0xff00 });
  assert(found.length === 1, `found ${JSON.stringify(found)}`);
  hidPath = found[0].path;
  assert(/^\/dev\/hidraw\d+$/.test(hidPath), `path ${hidPath}`);
  return `${hidPath} serial ${found[0].serialNumber} "${found[0].product}"`;
});
const badBcnt = (bytes) => {
  bytes[5] = 0xff; // BCNT 0xFFxx > 4096: TOO_LARGE at the device
  return bytes;
};
const badCid = (bytes) => {
  // The device answers on the request's channel; a corrupted CID makes the reply arrive on another channel,
  // which the host drops (BAD_CHANNEL) before the retry on the right channel succeeds.
  for (let off = 0; off < bytes.length; off += 64) bytes[off] ^= 0x10;
  return bytes;
};
const hidRun = hidPath === undefined
  ? undefined
  : await contract(
    'hid',
    () => HidTransport.open(hidPath),
    Capability.HID,
    [
      ['report (BCNT > 4096: TOO_LARGE at the device)', badBcnt, undefined],
      ['channel id (reply on another CID: BAD_CHANNEL at the host)', badCid, 'BAD_CHANNEL'],
    ],
    'USB-HID-1',
  );
if (hidRun !== undefined) await enrollment('hid', hidRun.session, 'USB-HID-1', hidRun.counter);

// ---- unplug: unbind the gadget; both host transports must close with DeviceDisconnectedError, never hang.
if (GADGET !== undefined && hidRun !== undefined) {
  await check('both', 'unplug (gadget unbound): transports close with DeviceDisconnectedError, exchanges fail fast', async () => {
    const closed = (run) => new Promise((resolve) => run.link.transport.onClose((reason) => resolve(reason)));
    const serialClosed = closed(serialRun);
    const hidClosed = closed(hidRun);
    const pendingHid = hidRun.session.exchange('HELLO', { 1: 1 }, { timeoutMs: 20_000, retries: 0 }).then(() => 'answered', (e) => e);
    writeFileSync(`${GADGET}/UDC`, '\n');
    const timeout = sleep(15_000).then(() => 'timeout');
    const [s, h] = await Promise.all([Promise.race([serialClosed, timeout]), Promise.race([hidClosed, timeout])]);
    assert(s instanceof DeviceDisconnectedError, `serial: ${s}`);
    assert(h instanceof DeviceDisconnectedError, `hid: ${h}`);
    const pending = await Promise.race([pendingHid, sleep(5000).then(() => 'still pending')]);
    assert(pending === 'answered' || pending instanceof Error, `HID exchange in flight: ${pending}`);
    const after = await serialRun.session.exchange('HELLO', { 1: 1 }).then(() => 'answered', (e) => e);
    assert(after instanceof DeviceDisconnectedError, `serial exchange after unplug: ${after}`);
    return `serial: ${s.message}; hid: ${h.message}`;
  });
}

await serialRun.session.close();
await hidRun?.session.close();
for (const [label, state] of [['serial', serialState], ['hid', hidState]]) {
  await stopEmulator(state);
  await check(label, 'emulator stops cleanly on SIGTERM', async () => {
    assert(state.exit?.code === 0, `exit ${JSON.stringify(state.exit)}; log:\n${state.log}`);
    return state.log.split('\n').filter((l) => l.includes('dropped')).join(' | ') || 'no drops logged';
  });
}
if (failed > 0) {
  for (const [label, state] of [['serial', serialState], ['hid', hidState]]) {
    console.log(`MKUSB-LOG ${label} emulator:\n${state.log}`);
  }
}
console.log(`MKUSB-SUMMARY ${JSON.stringify({ passed, failed, ms: Date.now() - started })}`);
process.exit(failed === 0 ? 0 : 1);
