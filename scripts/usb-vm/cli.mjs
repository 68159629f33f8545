// The real CLI end to end inside the test:usb VM (scripts/usb-vm/guest.sh runs it after contract.mjs): the
// `meshkit` binary (bin/meshkit.js over the host code compiled by run.sh) provisions a C emulator on the CDC-ACM
// gadget (host side /dev/ttyACM0, serial frames) and one on the HID gadget (host side /dev/hidrawN, 64-byte
// reports) in ONE `bench run --port … --hid …`, `bench verify` re-checks the output, and then the gadget is unplugged
// (unbound from its UDC, the emulators killed as a power loss would) in the middle of a `bench run` over ttyACM0 and
// the hidraw node, and plugged back ~1 s later (emulators restarted on the same state files, UDC bound again): each
// device must be failed-and-retryable, then resumed and provisioned once.
//
// Inputs (made on the host by run.sh before boot, read-only here): $MKUSB_CLI/account (`meshkit admin init` from the
// ceremony of `meshkit demo --software`), $MKUSB_CLI/demo/keys (its software admin key store and passphrase), $MKUSB_CLI/bench.keys (the bench key, software key store),
// bench.pass / bench.hex / config.json. Secrets reach the CLI through environment variables (--pin-env,
// --bench-pin-env), never argv. Everything written goes to /tmp (a tmpfs in the guest).
//
// Prints `MKUSB-RESULT {"transport","name","ok","ms","detail","data"}` per check (transport "cli") and
// `MKUSB-CLI-SUMMARY {"passed","failed","ms"}`; exits 0 only when every check passed.
/* global process, console */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assert, sleep, startEmulator, stopEmulator } from './emulator.mjs';

const JS = process.env.MKUSB_JS;
const REPO = process.env.MKUSB_REPO;
const GADGET = process.env.MKUSB_GADGET;
const INPUT = process.env.MKUSB_CLI;
if (!JS || !REPO || !GADGET || !INPUT) {
  console.log('cli: MKUSB_JS, MKUSB_REPO, MKUSB_GADGET and MKUSB_CLI must be set');
  process.exit(2);
}
const EMULATOR = `${REPO}/firmware-bindings/build/mk-emulator`;
const BIN = `${JS}/bin/meshkit.js`;
const WORK = '/tmp/mkusb-cli';
const UDC = 'dummy_udc.0';
const started = Date.now();
let passed = 0;
let failed = 0;

async function check(name, fn) {
  const t0 = Date.now();
  let ok = false;
  let detail = '';
  let data;
  try {
    const r = (await fn()) ?? {};
    detail = r.detail ?? '';
    data = r.data;
    ok = true;
    passed++;
  } catch (error) {
    failed++;
    detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  }
  console.log(`MKUSB-RESULT ${JSON.stringify({ transport: 'cli', name, ok, ms: Date.now() - t0, detail, ...(data === undefined ? {} : { data }) })}`);
  return ok;
}

// ---- inputs: copied to the tmpfs (the account is written by connectDevice; the key stores are opened read-write)
mkdirSync(WORK, { recursive: true });
cpSync(join(INPUT, 'account'), join(WORK, 'account'), { recursive: true });
cpSync(join(INPUT, 'demo', 'keys', 'owner-card.keys'), join(WORK, 'owner-card.keys'));
cpSync(join(INPUT, 'bench.keys'), join(WORK, 'bench.keys'));
const benchHex = readFileSync(join(INPUT, 'bench.hex'), 'utf8').trim();
const env = {
  ...process.env,
  HOME: '/tmp',
  MKUSB_ADMIN_PASS: readFileSync(join(INPUT, 'demo', 'keys', 'passphrase.txt'), 'utf8').trim(),
  MKUSB_BENCH_PASS: readFileSync(join(INPUT, 'bench.pass'), 'utf8').trim(),
};
const keyArgs = [
  '--account', join(WORK, 'account'),
  '--admin-key', `file:${join(WORK, 'owner-card.keys')}#owner-admin`, '--pin-env', 'MKUSB_ADMIN_PASS',
  '--bench-key', `file:${join(WORK, 'bench.keys')}#bench`, '--bench-pin-env', 'MKUSB_BENCH_PASS',
  '--config', join(INPUT, 'config.json'),
];

/** Runs `node bin/meshkit.js ARGS`; `onLine` sees each stdout line as it comes. */
let running; // the meshkit process of the call in progress

/** Whether process `pid` still holds `path` open (its /proc fd links). */
function holds(pid, path) {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === path;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

function meshkit(args, onLine) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: WORK, env, stdio: ['ignore', 'pipe', 'pipe'] });
    running = child;
    let stdout = '';
    let stderr = '';
    let buffered = '';
    child.stdout.on('data', (c) => {
      const text = c.toString('utf8');
      stdout += text;
      buffered += text;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (onLine !== undefined) onLine(line);
      }
    });
    child.stderr.on('data', (c) => {
      stderr += c.toString('utf8');
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const jsonLines = (text) => text.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));

const hidraws = () => (existsSync('/dev') ? readdirSync('/dev').filter((n) => n.startsWith('hidraw')).map((n) => `/dev/${n}`) : []);

/** Binds the gadget to the UDC and waits for both sides' nodes. */
async function plugIn() {
  const bound = readFileSync(join(GADGET, 'UDC'), 'utf8').trim();
  if (bound === '') writeFileSync(join(GADGET, 'UDC'), `${UDC}\n`);
  const deadline = Date.now() + 15_000;
  while (!(existsSync('/dev/ttyACM0') && existsSync('/dev/ttyGS0') && existsSync('/dev/hidg0') && hidraws().length > 0)) {
    if (Date.now() > deadline) throw new Error(`USB nodes did not appear: ${readdirSync('/dev').join(' ')}`);
    await sleep(50);
  }
}

let serialEmu;
let hidEmu;
let hidPath;

// ---- 1. bench ports: the real kernel's hidraw device is listed, and its VID/PID match the hid-token descriptor
await check('bench ports lists the HID gadget as hid-token', async () => {
  await plugIn();
  const run = await meshkit(['bench', 'ports', '--json']);
  assert(run.code === 0, `exit ${run.code}: ${run.stderr}`);
  const ports = JSON.parse(run.stdout);
  const hid = ports.filter((p) => p.transport === 'hid' && p.vendorId === '1209' && p.productId === '0001');
  assert(hid.length === 1, `HID entries for 1209:0001: ${JSON.stringify(ports)}`);
  assert(hid[0].descriptor === 'hid-token', `descriptor ${hid[0].descriptor}`);
  hidPath = hid[0].path;
  assert(ports.some((p) => p.transport === 'serial' && p.path === '/dev/ttyACM0'), `no /dev/ttyACM0 in ${JSON.stringify(ports)}`);
  return { detail: `${hidPath} ${hid[0].usagePage === undefined ? '' : `page ${hid[0].usagePage} `}→ hid-token; /dev/ttyACM0 listed` };
});

// ---- 2. one bench run over both transports, fresh devices
let benchRun;
const ran = await check('bench run --port /dev/ttyACM0 --hid HIDRAW: both provisioned', async () => {
  hidPath ??= hidraws()[0];
  assert(hidPath !== undefined, 'no /dev/hidraw*');
  serialEmu = await startEmulator(EMULATOR, ['--tty', '/dev/ttyGS0', '--state', join(WORK, 'serial.state'), '--serial', 'MK-CLI-S1',
    '--provisioner-key', benchHex], 'serial');
  hidEmu = await startEmulator(EMULATOR, ['--hidg', '/dev/hidg0', '--state', join(WORK, 'hid.state'), '--serial', 'MK-CLI-H1',
    '--model', 'meshkit-hid-token', '--provisioner-key', benchHex], 'hid');
  const t0 = Date.now();
  const run = await meshkit(['bench', 'run', '--port', '/dev/ttyACM0', '--hid', hidPath, ...keyArgs, '--out', join(WORK, 'out'),
    '--timeout-ms', '8000', '--json']);
  const lines = jsonLines(run.stdout);
  const summary = lines.at(-1)?.summary;
  assert(summary !== undefined, `no summary (exit ${run.code}): ${run.stderr.slice(-2000)}`);
  benchRun = summary;
  const records = readFileSync(join(WORK, 'out', 'records.jsonl'), 'utf8').trim().split('\n').filter((l) => l !== '').length;
  const events = lines.slice(0, -1);
  const byTransport = {};
  for (const d of summary.devices) byTransport[d.transport] = { port: d.port, status: d.status, serial: d.serial, ms: d.ms, reason: d.reason };
  const data = {
    exit: run.code, provisioned: summary.provisioned, failed: summary.failed, records, transports: summary.transports, devices: byTransport,
    events: events.length, eventTransports: [...new Set(events.map((e) => `${e.transport}:${e.port}`))].sort(), wallMs: Date.now() - t0,
  };
  console.log(`MKUSB-NOTE cli bench run ${JSON.stringify(data)}`);
  assert(run.code === 0, `exit ${run.code}; ${JSON.stringify(summary.devices)}; ${run.stderr.slice(-1500)}`);
  return { detail: `serial ${byTransport.serial?.serial} ${byTransport.serial?.ms} ms, hid ${byTransport.hid?.serial} ${byTransport.hid?.ms} ms; ${records} records`, data };
});

await check('bench verify --account: the log, its signed head and both receipts hold', async () => {
  assert(ran, 'bench run failed');
  const run = await meshkit(['bench', 'verify', '--out', join(WORK, 'out'), '--account', join(WORK, 'account'), '--json']);
  const report = JSON.parse(run.stdout);
  const data = { exit: run.code, ok: report.ok, count: report.count, problems: report.problems, serials: report.records.map((r) => r.serial).sort() };
  assert(run.code === 0 && report.ok === true, `verify: ${JSON.stringify(data)}`);
  return { detail: `${report.count} record(s) verified`, data };
});
await stopEmulator(serialEmu);
await stopEmulator(hidEmu);
void benchRun;

// ---- 3. hot-plug: the gadget unbound mid-enrollment (both devices go: ttyACM0 and the hidraw node), the device
// side powered off, then both back ~1 s later
await check('unplug mid bench run (UDC unbound ~1 s): each device failed-and-retryable, then resumed, one record each', async () => {
  await plugIn();
  const hid = hidraws()[0];
  assert(hid !== undefined, 'no /dev/hidraw*');
  const serialArgs = ['--tty', '/dev/ttyGS0', '--state', join(WORK, 'hotplug-serial.state'), '--serial', 'MK-CLI-HP-S', '--provisioner-key', benchHex];
  const hidArgs = ['--hidg', '/dev/hidg0', '--state', join(WORK, 'hotplug-hid.state'), '--serial', 'MK-CLI-HP-H', '--model', 'meshkit-hid-token',
    '--provisioner-key', benchHex];
  serialEmu = await startEmulator(EMULATOR, serialArgs, 'serial');
  hidEmu = await startEmulator(EMULATOR, hidArgs, 'hid');
  let unpluggedAt;
  let unplugEvent;
  let replugged;
  const keyed = new Set();
  const events = [];
  const run = await meshkit(['bench', 'run', '--port', '/dev/ttyACM0', '--hid', hid, ...keyArgs, '--out', join(WORK, 'out-hotplug'),
    '--timeout-ms', '8000', '--retries', '2', '--replug-timeout', '60', '--json'], (line) => {
    if (!line.startsWith('{')) return;
    const e = JSON.parse(line);
    events.push(e);
    if (e.step === 'keygen' && e.phase === 'done') keyed.add(e.transport);
    // both devices past KEYGEN (so both resume), or one of them about to commit (the last step before its record)
    if (unpluggedAt === undefined && (keyed.size === 2 || (e.step === 'commit' && e.phase === 'start'))) {
      unpluggedAt = Date.now();
      unplugEvent = `${e.transport} ${e.step} ${e.phase}`;
      // pull the plug: the host loses both devices, the device side loses power
      writeFileSync(join(GADGET, 'UDC'), '\n');
      serialEmu.child.kill('SIGKILL');
      hidEmu.child.kill('SIGKILL');
      replugged = (async () => {
        await sleep(1000);
        // cdc-acm gives a re-plugged device the next free minor: while the bench still holds the old /dev/ttyACM0
        // open the device would come back as ttyACM1 (on a real bench /dev/serial/by-id/… follows it; this guest has
        // no udev). Plug back once the bench has let go of the dead tty, as it does when it sees the unplug.
        const freed = Date.now() + 15_000;
        while (running?.pid !== undefined && holds(running.pid, '/dev/ttyACM0') && Date.now() < freed) await sleep(20);
        // power back: the serial device boots (ttyGS0 outlives the unbind), the gadget is bound again, then the HID
        // device opens /dev/hidg0 (f_hid creates it on bind)
        serialEmu = await startEmulator(EMULATOR, serialArgs, 'serial');
        writeFileSync(join(GADGET, 'UDC'), `${UDC}\n`);
        const back = Date.now();
        const deadline = back + 15_000;
        while (!existsSync('/dev/hidg0')) {
          if (Date.now() > deadline) throw new Error('/dev/hidg0 did not come back');
          await sleep(20);
        }
        hidEmu = await startEmulator(EMULATOR, hidArgs, 'hid');
        return back;
      })().catch((error) => error);
    }
  });
  const backAt = await replugged;
  assert(!(backAt instanceof Error), `re-plug: ${backAt?.message}`);
  const summary = events.at(-1)?.summary;
  assert(unpluggedAt !== undefined, `the run never got past keygen (exit ${run.code}): ${run.stderr.slice(-1500)}`);
  assert(summary !== undefined, `no summary (exit ${run.code}): ${run.stderr.slice(-1500)}`);
  const records = readFileSync(join(WORK, 'out-hotplug', 'records.jsonl'), 'utf8').trim().split('\n').filter((l) => l !== '');
  const perTransport = {};
  for (const t of ['serial', 'hid']) {
    const mine = events.filter((e) => e.transport === t);
    const failure = mine.find((e) => e.phase === 'failed');
    const failedAt = mine.indexOf(failure);
    const device = summary.devices.find((d) => d.transport === t);
    perTransport[t] = {
      failure: failure === undefined ? null : { step: failure.step, status: failure.status, retryable: failure.retryable, detail: failure.detail },
      recordBeforeFailure: failedAt >= 0 && mine.slice(0, failedAt).some((e) => e.step === 'record'),
      replug: mine.find((e) => e.step === 'replug' && e.phase === 'done')?.detail ?? null,
      device: { port: device?.port, path: device?.path, status: device?.status, resumed: device?.resumed, attempts: device?.attempts, serial: device?.serial },
      records: records.filter((l) => JSON.parse(l).Body.Serial === device?.serial).length,
    };
  }
  const data = { exit: run.code, records: records.length, unpluggedAfter: unplugEvent, offMs: backAt - unpluggedAt, transports: perTransport };
  console.log(`MKUSB-NOTE cli hot-plug ${JSON.stringify(data)}`);
  for (const [t, r] of Object.entries(perTransport)) {
    assert(r.failure?.retryable === true && r.failure.status === 'waiting' && /^unplugged during/.test(String(r.failure.detail)), `${t}: failure event ${JSON.stringify(r.failure)}`);
    assert(!r.recordBeforeFailure, `${t}: a record was written before the unplug`);
    assert(r.device.status === 'provisioned' && r.device.attempts === 2, `${t}: outcome ${JSON.stringify(r.device)}`);
    assert(r.records === 1, `${t}: ${r.records} records`);
  }
  assert(run.code === 0 && records.length === 2, `exit ${run.code}, ${records.length} records; ${run.stderr.slice(-1500)}`);
  const verify = await meshkit(['bench', 'verify', '--out', join(WORK, 'out-hotplug'), '--account', join(WORK, 'account'), '--json']);
  assert(verify.code === 0, `verify: ${verify.stdout}`);
  const s = perTransport.serial;
  const h = perTransport.hid;
  return {
    detail: `serial: ${s.failure.detail.slice(0, 90)} → ${s.device.resumed}; hid: ${h.failure.detail.slice(0, 90)} → ${h.device.resumed}` +
      `${h.device.path === undefined ? '' : ` (now ${h.device.path})`}; ${records.length} records, verified`,
    data,
  };
});
await stopEmulator(serialEmu);
await stopEmulator(hidEmu);

if (failed > 0) {
  for (const [label, s] of [['serial', serialEmu], ['hid', hidEmu]]) if (s !== undefined) console.log(`MKUSB-LOG cli ${label} emulator:\n${s.log}`);
}
console.log(`MKUSB-CLI-SUMMARY ${JSON.stringify({ passed, failed, ms: Date.now() - started })}`);
process.exit(failed === 0 ? 0 : 1);
