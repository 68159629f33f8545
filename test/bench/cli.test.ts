/**
 * `meshkit bench run|verify` and `meshkit device emulate` end to end through bin/meshkit.js (run `npm run build`
 * first; built here when dist/ lacks the bench command): three emulators started by `device emulate --pty`, a
 * `bench run --json` whose every stdout line is parsed, `bench verify` passing and then failing after one byte of
 * records.jsonl is changed, the exit codes (0 all provisioned, 1 some failed, 2 usage) and the forwarded SIGTERM.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeAccountFixture, type AccountFixture } from '../helpers/account.js';
import { BENCH_PASSPHRASE, benchSkipReason, buildEmulator, EmulatorLab, makeBenchKey, repoRoot } from './emulators.js';

const BIN = join(repoRoot, 'bin', 'meshkit.js');
const reason = benchSkipReason();
if (reason !== undefined) console.log(`test/bench/cli.test.ts: skipped: ${reason}`);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe.skipIf(reason !== undefined)('meshkit bench / device emulate through bin/meshkit.js', () => {
  let lab: EmulatorLab;
  let account: AccountFixture;
  let bench: Awaited<ReturnType<typeof makeBenchKey>>;
  let env: Record<string, string>;
  const emulators: ChildProcess[] = [];

  beforeAll(async () => {
    if (!existsSync(join(repoRoot, 'dist', 'cli', 'commands', 'bench.js'))) {
      const build = spawnSync('npm', ['run', 'build'], { cwd: repoRoot, encoding: 'utf8' });
      if (!existsSync(join(repoRoot, 'dist', 'cli', 'commands', 'bench.js'))) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`);
    }
    buildEmulator();
    lab = new EmulatorLab();
    account = await makeAccountFixture({ spareCards: 0 });
    bench = await makeBenchKey(lab.dir);
    env = { ...account.ceremony.env, BENCH_PASS: BENCH_PASSPHRASE };
    writeFileSync(join(lab.dir, 'bench.pub.json'), JSON.stringify(bench.signer.publicJwk));
    writeFileSync(join(lab.dir, 'config.json'), JSON.stringify({ wifi: { ssid: 'line-3' }, mqtt: 'mqtts://broker.example:8883' }));
  }, 120_000);

  afterAll(async () => {
    // SIGTERM, which `device emulate` forwards (a SIGKILL would orphan its emulator and socat), then SIGKILL.
    await Promise.all(emulators.filter((e) => e.exitCode === null && e.signalCode === null).map((e) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => e.kill('SIGKILL'), 5000);
      e.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      e.kill('SIGTERM');
    })));
    await bench?.close();
    await account?.cleanup();
    await lab?.cleanup();
  });

  function meshkit(args: string[]): Promise<Run> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], { cwd: lab.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
  }

  /** `meshkit device emulate --pty …` in the background; resolves with the host-side path it prints. */
  function emulate(name: string): Promise<{ port: string; child: ChildProcess; log: () => string }> {
    const child = spawn(process.execPath, [BIN, 'device', 'emulate', '--pty', '--model', 'emulator', '--state', join(lab.dir, `${name}.state`),
      '--serial', `CLI-${name}`, '--provisioner-key-file', join(lab.dir, 'bench.pub.json')], { cwd: lab.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    emulators.push(child);
    let out = '';
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`device emulate ${name} did not start: ${err}`)), 15_000);
      const ready = (): void => {
        const port = out.split('\n')[0] ?? '';
        if (out.includes('\n') && err.includes('mk-emulator: ready')) {
          clearTimeout(timer);
          resolve({ port, child, log: () => err });
        }
      };
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString('utf8');
        ready();
      });
      child.stderr.on('data', ready);
      child.on('exit', (code) => reject(new Error(`device emulate ${name} exited ${code}: ${err}`)));
    });
  }

  const runArgs = (ports: string[], out: string): string[] => [
    'bench', 'run', ...ports.flatMap((p) => ['--port', p]), '--account', account.dir,
    '--admin-key', account.adminKeyUri, '--pin-env', 'ADMIN_PIN', '--bench-key', bench.uri, '--bench-pin-env', 'BENCH_PASS',
    '--config', join(lab.dir, 'config.json'), '--out', join(lab.dir, out),
  ];

  it('provisions three `device emulate --pty` devices with --json events; verify passes, then fails after one changed byte', async () => {
    const devices = await Promise.all(['c1', 'c2', 'c3'].map((n) => emulate(n)));
    const run = await meshkit([...runArgs(devices.map((d) => d.port), 'out'), '--model', 'emulator', '--parallel', '2', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = (lines.at(-1) as { summary: { provisioned: number; failed: number; devices: Array<{ serial: string; status: string }> } }).summary;
    expect(summary).toMatchObject({ provisioned: 3, failed: 0 });
    expect(summary.devices.map((d) => d.serial).sort()).toEqual(['CLI-c1', 'CLI-c2', 'CLI-c3']);
    const events = lines.slice(0, -1);
    for (const e of events) {
      expect(typeof e['port']).toBe('string');
      expect(['start', 'done', 'failed']).toContain(e['phase']);
      expect(['running', 'waiting', 'provisioned', 'failed']).toContain(e['status']);
    }
    for (const d of devices) {
      const mine = events.filter((e) => e['port'] === d.port);
      expect(mine.filter((e) => e['phase'] === 'done' && typeof e['ms'] === 'number').map((e) => e['step'])).toEqual(
        expect.arrayContaining(['hello', 'auth', 'keygen', 'cogen', 'install', 'commit', 'connect', 'record']));
      expect(mine.at(-1)).toMatchObject({ step: 'result', status: 'provisioned' });
    }
    expect(JSON.parse(readFileSync(join(lab.dir, 'out', 'summary.json'), 'utf8'))).toMatchObject({ provisioned: 3 });

    const ok = await meshkit(['bench', 'verify', '--out', join(lab.dir, 'out'), '--account', account.dir]);
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
    expect(ok.stdout).toContain('3 record(s)');

    const path = join(lab.dir, 'out', 'records.jsonl');
    const bytes = readFileSync(path);
    const at = bytes.indexOf('"Serial":"CLI-') + 14;
    bytes[at] = bytes[at] === 0x63 ? 0x64 : 0x63; // one letter of a serial
    writeFileSync(path, bytes);
    const bad = await meshkit(['bench', 'verify', '--out', join(lab.dir, 'out'), '--json']);
    expect(bad.code).toBe(1);
    const report = JSON.parse(bad.stdout) as { ok: boolean; problems: Array<{ message: string }> };
    expect(report.ok).toBe(false);
    expect(report.problems.length).toBeGreaterThan(0);

    // SIGTERM to `device emulate` reaches the emulator; both exit 0
    const first = devices[0]!;
    const exited = new Promise<number | null>((r) => first.child.once('exit', (code) => r(code)));
    first.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(first.log()).toContain('mk-emulator: stopped');
  }, 120_000);

  it('exit 1 when a device fails (a port that never answers), the reason in the summary; plain progress lines on a non-TTY', async () => {
    const mute = await lab.device({ name: 'cli-mute', silent: true });
    const run = await meshkit([...runArgs([mute.port], 'out-mute'), '--retries', '0', '--timeout-ms', '200']);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('0 provisioned, 1 failed');
    expect(run.stdout).toMatch(/FAILED .*stopped answering during hello/);
    expect(run.stderr).toMatch(/FAILED/); // the per-port progress line
    await mute.stop();
  }, 60_000);

  it('hot-plug by hand: `device emulate` stopped mid-enrollment (its pty goes away) and started again on the same --link and --state → resumed, one record', async () => {
    const link = join(lab.dir, 'hp-host');
    const start = (): ChildProcess => {
      const child = spawn(process.execPath, [BIN, 'device', 'emulate', '--pty', '--link', link, '--state', join(lab.dir, 'hp.state'),
        '--serial', 'CLI-HP', '--provisioner-key', bench.hex], { cwd: lab.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      emulators.push(child);
      return child;
    };
    let emulator = start();
    await new Promise<void>((resolve, reject) => {
      let err = '';
      emulator.stderr?.on('data', (c: Buffer) => {
        err += c.toString('utf8');
        if (err.includes('mk-emulator: ready')) resolve();
      });
      emulator.on('exit', () => reject(new Error(`device emulate exited: ${err}`)));
    });
    const benchRun = spawn(process.execPath, [BIN, ...runArgs([link], 'out-hp'), '--retries', '2', '--replug-timeout', '20', '--json'],
      { cwd: lab.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let buffered = '';
    const events: Array<Record<string, unknown>> = [];
    let stopped = false;
    let restarted = false;
    benchRun.stdout.on('data', (c: Buffer) => {
      buffered += c.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const e = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        events.push(e);
        if (e['step'] === 'install' && e['phase'] === 'start' && !stopped) {
          stopped = true;
          emulator.kill('SIGTERM'); // the emulator stops, socat goes, the pty disappears
        }
        if (e['step'] === 'replug' && e['phase'] === 'start' && !restarted) {
          restarted = true;
          emulator.once('exit', () => (emulator = start()));
          if (emulator.exitCode !== null || emulator.signalCode !== null) emulator = start();
        }
      }
    });
    const code = await new Promise<number | null>((r) => benchRun.on('exit', (c) => r(c)));
    expect(stopped && restarted).toBe(true);
    expect(code).toBe(0);
    const failure = events.find((e) => e['phase'] === 'failed');
    expect(failure).toMatchObject({ step: 'install', status: 'waiting', retryable: true });
    expect(String(failure?.['detail'])).toMatch(/^unplugged during install/);
    const summary = (events.at(-1) as { summary: { devices: Array<Record<string, unknown>> } }).summary;
    expect(summary.devices[0]).toMatchObject({ status: 'provisioned', resumed: 'resumed', serial: 'CLI-HP', attempts: 2 });
    expect(readFileSync(join(lab.dir, 'out-hp', 'records.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
    emulator.kill('SIGTERM');
  }, 90_000);

  it.skipIf(spawnSync('script', ['--version'], { stdio: 'ignore' }).error !== undefined)('on a terminal (util-linux script): one progress bar per port, then the summary', async () => {
    const devices = await Promise.all(['t1', 't2'].map((name) => lab.device({ name, provisionerKey: bench.hex })));
    const command = [process.execPath, BIN, ...runArgs(devices.map((d) => d.port), 'out-tty')].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const run = spawnSync('script', ['-qec', command, '/dev/null'], { cwd: lab.dir, env: { ...env, COLUMNS: '160' }, encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stdout).toBe(0);
    // the bars: each port drawn with its final state, then the summary
    for (const name of ['t1-host', 't2-host']) expect(run.stdout).toMatch(new RegExp(`${name} .*PROVISIONED SN-T`));
    expect(run.stdout).toContain('2 provisioned, 0 failed');
    await Promise.all(devices.map((d) => d.stop()));
  }, 60_000);

  it('usage errors exit 2: no port, a bad --retries, both --tty and --pty', async () => {
    const noPort = await meshkit(['bench', 'run', '--account', account.dir, '--admin-key', account.adminKeyUri, '--bench-key', bench.uri,
      '--config', join(lab.dir, 'config.json'), '--out', join(lab.dir, 'out-x')]);
    expect(noPort.code).toBe(2);
    expect(noPort.stderr).toContain('--port');
    const badRetries = await meshkit([...runArgs(['/dev/null'], 'out-y'), '--retries', 'many']);
    expect(badRetries.code).toBe(2);
    const both = await meshkit(['device', 'emulate', '--tty', '/dev/null', '--pty', '--state', join(lab.dir, 'x.state')]);
    expect(both.code).toBe(2);
  }, 60_000);

  it('--hid: a HID path that is not there fails that device (exit 1), the summary naming the transport; the same path under --port and --hid is a usage error', async () => {
    const run = await meshkit([...runArgs([], 'out-hid'), '--hid', '/dev/hidraw-meshkit-absent', '--retries', '0', '--json']);
    expect(run.code, run.stderr).toBe(1);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = (lines.at(-1) as { summary: { transports: unknown; devices: Array<Record<string, unknown>> } }).summary;
    expect(summary.transports).toEqual({ hid: { ports: 1, provisioned: 0, failed: 1 } });
    expect(summary.devices[0]).toMatchObject({ port: '/dev/hidraw-meshkit-absent', transport: 'hid', status: 'failed', step: 'open' });
    // node-hid cannot open it (or cannot load at all where libusb-1.0 is missing): either way the reason says so
    expect(String(summary.devices[0]?.['reason'])).toMatch(/hidraw-meshkit-absent|node-hid/);
    for (const e of lines.slice(0, -1)) expect(e).toMatchObject({ port: '/dev/hidraw-meshkit-absent', transport: 'hid' });

    const twice = await meshkit([...runArgs(['/dev/ttyX9'], 'out-hid2'), '--hid', '/dev/ttyX9']);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('/dev/ttyX9 is named twice');
  }, 60_000);

  it('`bench ports --json` lists serial ports and HID devices, each with its transport', async () => {
    const run = await meshkit(['bench', 'ports', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const ports = JSON.parse(run.stdout) as Array<{ transport: string; path: string; descriptor: string | null }>;
    expect(Array.isArray(ports)).toBe(true);
    for (const p of ports) {
      expect(['serial', 'hid']).toContain(p.transport);
      expect(typeof p.path).toBe('string');
    }
    const text = await meshkit(['bench', 'ports']);
    expect(text.code).toBe(0);
    // the HID half always says something: devices, none, or why they cannot be listed
    expect(text.stdout).toMatch(/^hid {5}|no HID devices|HID devices cannot be listed/m);
  }, 60_000);
});
