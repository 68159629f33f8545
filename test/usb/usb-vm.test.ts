/**
 * Real USB without hardware (issue 5 item 8; ENVIRONMENT.md §4): boots a nested QEMU VM with Debian's kernel
 * (scripts/usb-vm/run.sh), where a configfs gadget on dummy_hcd gives a CDC-ACM and a HID function. The C emulator
 * runs on the gadget side (/dev/ttyGS0, /dev/hidg0); the TypeScript host (SerialTransport on /dev/ttyACM0,
 * HidTransport on /dev/hidraw*, DeviceSession, enrollDevice) runs on the host side of the same kernel — real
 * cdc-acm, usbhid and hidraw drivers on both transports. The guest prints one MKUSB-RESULT line per check
 * (scripts/usb-vm/contract.mjs); each expected check is one test here.
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

  it('reports no check beyond the expected ones that failed', (ctx) => {
    if (skipReason !== undefined) ctx.skip(skipReason);
    expect(results.filter((r) => !r.ok)).toEqual([]);
  });
});
