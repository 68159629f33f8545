/**
 * Real USB without hardware (issue 5 item 8; ENVIRONMENT.md §4): boots a nested QEMU VM with Debian's kernel
 * (scripts/usb-vm/run.sh), where a configfs gadget on dummy_hcd gives a CDC-ACM and a HID function. The C emulator
 * runs on the gadget side (/dev/ttyGS0, /dev/hidg0); the TypeScript host (SerialTransport on /dev/ttyACM0,
 * HidTransport on /dev/hidraw*, DeviceSession, enrollDevice) runs on the host side of the same kernel — real
 * cdc-acm, usbhid and hidraw drivers on both transports. The guest prints one MKUSB-RESULT line per check
 * (scripts/usb-vm/contract.mjs); each expected check is one test here. Then the REAL CLI runs in the guest
 * (scripts/usb-vm/cli.mjs): `meshkit bench ports`, one `meshkit bench run --port /dev/ttyACM0 --hid /dev/hidrawN`
 * against two fresh emulators, `meshkit bench verify`, and a `bench run` during which the gadget is unplugged (UDC
 * unbound, emulators powered off) and plugged back ~1 s later; its results (per transport, with the record counts)
 * are checked here too.
 *
 * Skipped, with the reason printed, only where QEMU cannot start: qemu-system-x86_64 (or busybox-static, kmod,
 * cpio) missing, or the kernel package cannot be downloaded (run.sh exit 3).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const runScript = join(repoRoot, 'scripts', 'usb-vm', 'run.sh');

interface CheckResult {
  readonly transport: string;
  readonly name: string;
  readonly ok: boolean;
  readonly ms: number;
  readonly detail: string;
  readonly data?: Record<string, unknown>;
}

function qemuMissing(): string | undefined {
  const probe = spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined) return 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)';
  return undefined;
}

const missing = qemuMissing();
if (missing !== undefined) console.log(`usb-vm.test.ts: skipped: ${missing}`);

/** The checks contract.mjs must report (transport, name prefix). */
const expected: Array<[string, string]> = [
  ['serial', 'HELLO -> INFO'],
  ['serial', '20 HELLO round trips'],
  ['serial', 'corrupted frame'],
  ['serial', 'BENCH_AUTH with an untrusted bench key'],
  ['serial', 'BENCH_AUTH with the pinned key'],
  ['hid', 'enumerate'],
  ['hid', 'HELLO -> INFO'],
  ['hid', '20 HELLO round trips'],
  ['hid', 'corrupted report'],
  ['hid', 'corrupted channel id'],
  ['hid', 'BENCH_AUTH with an untrusted bench key'],
  ['hid', 'BENCH_AUTH with the pinned key'],
  ['both', 'unplug'],
  ['serial', 'emulator stops cleanly'],
  ['hid', 'emulator stops cleanly'],
];
expected.push(
  ['cli', 'bench ports lists the HID gadget as hid-token'],
  ['cli', 'bench run --port /dev/ttyACM0 --hid HIDRAW'],
  ['cli', 'bench verify --account'],
  ['cli', 'unplug mid bench run'],
);
const enrollPresent = existsSync(join(repoRoot, 'src', 'device', 'enroll.ts'));
if (enrollPresent) expected.push(['serial', 'full enrollment'], ['hid', 'full enrollment']);
else console.log('usb-vm.test.ts: src/device/enroll.ts is absent; the full-enrollment checks are not expected');

describe.skipIf(missing !== undefined)('USB transports through real kernel drivers in a nested VM', () => {
  let output = '';
  let exitCode: number | null = null;
  let skipReason: string | undefined;
  const results: CheckResult[] = [];

  beforeAll(async () => {
    await new Promise<void>((resolve) => {
      const child = spawn('sh', [runScript], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
      });
      child.stderr.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
      });
      child.on('close', (code) => {
        exitCode = code;
        resolve();
      });
    });
    for (const line of output.split('\n')) {
      const result = /^MKUSB-RESULT (.*)$/.exec(line.trim());
      if (result?.[1] !== undefined) results.push(JSON.parse(result[1]) as CheckResult);
      const skip = /^MKUSB-SKIP (.*)$/.exec(line.trim());
      if (skip?.[1] !== undefined) skipReason = skip[1];
    }
    if (exitCode === 3 && skipReason !== undefined) {
      console.log(`usb-vm.test.ts: skipped: ${skipReason}\n${output}`);
      return;
    }
    const timing = [
      ...output.split('\n').filter((l) => /MKUSB-(TIME|BOOT|SUMMARY|NOTE)/.test(l)),
      ...results.map((r) => `  ${r.ok ? 'ok  ' : 'FAIL'} ${r.transport}: ${r.name} (${r.ms} ms) ${r.detail.slice(0, 160)}`),
    ].join('\n');
    console.log(`usb-vm: run.sh exited ${exitCode}\n${timing}`);
    if (exitCode !== 0 || results.some((r) => !r.ok)) console.log(output);
  }, 420_000);

  it('the VM booted, ran the contract and exited with the guest status 0', (ctx) => {
    if (skipReason !== undefined) ctx.skip(skipReason);
    expect(output, 'no MKUSB-SUMMARY from the guest').toMatch(/MKUSB-SUMMARY \{/);
    expect(exitCode).toBe(0);
  });

  it.for(expected)('%s: %s', ([transport, prefix], ctx) => {
    if (skipReason !== undefined) ctx.skip(skipReason);
    const result = results.find((r) => r.transport === transport && r.name.startsWith(prefix));
    expect(result, `no result for ${transport}: ${prefix}`).toBeDefined();
    expect(result?.detail).toBeTypeOf('string');
    expect(result?.ok, result?.detail).toBe(true);
  });

  const cli = (prefix: string): CheckResult | undefined => results.find((r) => r.transport === 'cli' && r.name.startsWith(prefix));

  it('the real CLI: one bench run over /dev/ttyACM0 and /dev/hidrawN provisioned one device per transport, 2 records', (ctx) => {
    if (skipReason !== undefined) ctx.skip(skipReason);
    const data = cli('bench run --port')?.data as {
      exit: number; provisioned: number; failed: number; records: number;
      transports: Record<string, { ports: number; provisioned: number; failed: number }>;
      devices: Record<string, { port: string; status: string; serial: string }>;
    } | undefined;
    expect(data, 'no data from the CLI bench run').toBeDefined();
    expect(data?.exit).toBe(0);
    expect(data?.transports).toEqual({ serial: { ports: 1, provisioned: 1, failed: 0 }, hid: { ports: 1, provisioned: 1, failed: 0 } });
    expect(data?.devices['serial']).toMatchObject({ port: '/dev/ttyACM0', status: 'provisioned', serial: 'MK-CLI-S1' });
    expect(data?.devices['hid']).toMatchObject({ status: 'provisioned', serial: 'MK-CLI-H1' });
    expect(data?.devices['hid']?.port).toMatch(/^\/dev\/hidraw\d+$/);
    expect(data?.records).toBe(2);
    const verify = cli('bench verify')?.data as { ok: boolean; count: number; serials: string[] } | undefined;
    expect(verify).toMatchObject({ ok: true, count: 2, serials: ['MK-CLI-H1', 'MK-CLI-S1'] });
  });

  it('the real CLI: unplugged mid-run, each device failed-and-retryable (never recorded before), then provisioned once', (ctx) => {
    if (skipReason !== undefined) ctx.skip(skipReason);
    const data = cli('unplug mid bench run')?.data as {
      exit: number; records: number;
      transports: Record<string, { failure: { retryable: boolean; status: string; detail: string } | null; recordBeforeFailure: boolean;
        device: { status: string; attempts: number }; records: number }>;
    } | undefined;
    expect(data, 'no data from the CLI hot-plug run').toBeDefined();
    expect(data?.exit).toBe(0);
    expect(data?.records).toBe(2);
    for (const t of ['serial', 'hid']) {
      const r = data?.transports[t];
      expect(r?.failure, t).toMatchObject({ retryable: true, status: 'waiting' });
      expect(r?.failure?.detail, t).toMatch(/^unplugged during/);
      expect(r?.recordBeforeFailure, t).toBe(false);
      expect(r?.device, t).toMatchObject({ status: 'provisioned', attempts: 2 });
      expect(r?.records, t).toBe(1);
    }
  });

  it('reports no check beyond the expected ones that failed', (ctx) => {
    if (skipReason !== undefined) ctx.skip(skipReason);
    expect(results.filter((r) => !r.ok)).toEqual([]);
  });
});
