/**
 * `meshkit demo`'s provisioning bench when the C emulator cannot run: the built CLI in a child process with a PATH
 * that has no socat (so the emulator's pty pair cannot be made), as on a machine without socat. `auto` falls back to
 * the in-process TypeScript devices and says why; `--devices emulator` refuses before making anything; a wrong mode
 * is a usage error. (npm test builds dist/ first.)
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyProfile } from '../../src/core/profiles.js';
import { verifyBenchOutput } from '../../src/device/bench-runner.js';
import { provisionDemoBench, runDemo } from '../../src/demo/demo.js';
import { emulatorUnavailable } from '../../src/device/emulator.js';
import { meshkitProcess } from '../helpers/cli-process.js';
import { SoftwareKeyStore } from '../../src/keystore/software.js';

const run = promisify(execFile);

const meshkit = meshkitProcess;

interface Summary {
  account: string;
  personal: { file: string; devices: number };
  bench: { mode: string; reason?: string; dir: string; provisioned: number; failed: number; verified: string; devices: Array<{ serial: string; port: string; deviceId: string }> };
  steps: Array<{ step: string; detail: string }>;
  files: string[];
}

/** The processes whose command line mentions `text` (mk-emulator is started with --state <its file>). */
async function processesMentioning(text: string): Promise<string[]> {
  const { stdout } = await run('ps', ['-eo', 'pid,args'], { env: process.env });
  return stdout.split('\n').filter((l) => l.includes(text) && !l.includes('ps -eo'));
}

let root: string;
let autoOut: string | undefined;
let autoSummary: Summary | undefined;
/** A PATH with nothing on it: no socat, no make, no gcc. */
let noTools: NodeJS.ProcessEnv;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'meshkit-demo-fallback-'));
  await mkdir(join(root, 'empty-bin'));
  noTools = { PATH: join(root, 'empty-bin'), MESHKIT_DEMO_DEVICES: '' };
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('meshkit demo without socat', () => {
  it('auto: provisions the three bench devices in process, says why, and the records verify', async () => {
    const out = join(root, 'auto');
    const r = await meshkit(['demo', '--software', '--out', out, '--json'], noTools);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Summary;
    autoOut = out;
    autoSummary = s;
    expect(s.bench).toMatchObject({ mode: 'inprocess', provisioned: 3, failed: 0, verified: 'ok' });
    expect(s.bench.reason).toMatch(/^socat\/gcc\/libsodium-dev not found: socat is not installed/u);
    const line = s.steps.find((x) => x.step === 'provision')!.detail;
    expect(line).toMatch(/^3 devices provisioned in process \(socat\/gcc\/libsodium-dev not found: socat/u);
    for (const d of s.bench.devices) expect(d.port).toMatch(/^link:device-\d$/u);
    const report = await verifyBenchOutput(join(out, s.bench.dir), { account: join(out, s.account) });
    expect(report.problems).toEqual([]);
    expect(report.count).toBe(3);
    const personal = await readFile(join(out, s.personal.file), 'utf8');
    for (const d of s.bench.devices) {
      const composite = await readFile(join(out, s.bench.dir, 'devices', `${d.deviceId}.json`), 'utf8');
      await expect(verifyProfile(composite, { personal })).resolves.toMatchObject({ identifier: d.deviceId, connected: true });
    }
    // door-lock and the three bench devices (the thermostat was revoked)
    expect(s.personal.devices).toBe(4);
  }, 120_000);

  it('--devices emulator refuses at once, naming what is missing, and makes nothing', async () => {
    const out = join(root, 'forced');
    const r = await meshkit(['demo', '--software', '--devices', 'emulator', '--out', out], noTools);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/emulator was asked for but cannot run here: socat is not installed/u);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it('a wrong --devices or MESHKIT_DEMO_DEVICES is a usage error (exit 2); runDemo names the field', async () => {
    const out = join(root, 'bad');
    const flag = await meshkit(['demo', '--devices', 'qemu', '--out', out]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/--devices expects one of auto, emulator, inprocess, got "qemu"/u);
    const env = await meshkit(['demo', '--out', out], { MESHKIT_DEMO_DEVICES: 'pty' });
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/MESHKIT_DEMO_DEVICES expects one of/u);
    await expect(runDemo({ out, devices: 'pty' as never })).rejects.toThrow(/"devices" expected one of/u);
    await expect(runDemo({ out, devices: 'pty' as never })).rejects.toBeInstanceOf(RangeError);
    expect(existsSync(out)).toBe(false);
    const help = await meshkit(['demo', '--help']);
    expect(help.stdout).toMatch(/MESHKIT_DEMO_DEVICES=auto\|emulator\|inprocess/u);
  }, 60_000);

  it('a bench whose devices all fail (an admin key that is not the account\'s) throws naming each failure and stops every device', async () => {
    expect(autoOut, 'the first test made the account').toBeDefined();
    const store = await SoftwareKeyStore.open(join(root, 'rogue.keys'), () => new TextEncoder().encode('rogue-pass-1'), { create: true });
    try {
      const rogue = (await store.generate('rogue-admin', 'Ed25519')).signer();
      const bench = (await store.generate('bench', 'Ed25519')).signer();
      const why = emulatorUnavailable();
      if (why !== undefined) console.log(`test/demo/bench-fallback.test.ts: the emulator half of this case is skipped: ${why}`);
      const kinds = why === undefined ? (['emulator', 'inprocess'] as const) : (['inprocess'] as const);
      for (const kind of kinds) {
        const out = join(root, `failing-${kind}`);
        await mkdir(out);
        const attempt = provisionDemoBench({
          out, account: join(autoOut!, autoSummary!.account), admin: rogue, bench, benchKeyStore: join(root, 'rogue.keys'),
          devices: kind === 'emulator' ? { kind } : { kind, why: 'test' },
        });
        await expect(attempt, kind).rejects.toMatchObject({ code: 'ERR_DEVICE' });
        const message = await attempt.then(() => '', (e: Error) => e.message);
        expect(message).toMatch(/provisioned 0 of 3 devices/u);
        for (const serial of ['DEMO-0001', 'DEMO-0002', 'DEMO-0003']) expect(message).toMatch(new RegExp(`${serial} on \\S+: enrollment: the admin key \\S+ is not an administration key`, 'u'));
        // nothing recorded, and no emulator (nor its socat) left running
        const report = await verifyBenchOutput(join(out, 'bench'));
        expect(report.count).toBe(0);
        expect(await processesMentioning(join(out, 'emulated'))).toEqual([]);
        if (kind === 'emulator') {
          // the three emulators' ptys were real (named in the failures) and are gone: each device was stopped
          const ports = [...message.matchAll(/DEMO-000\d on (\S+):/gu)].map((m) => m[1]!);
          expect(ports).toHaveLength(3);
          for (const port of ports) {
            expect(port).not.toMatch(/^link:/u);
            expect(existsSync(port), port).toBe(false);
          }
        }
      }
    } finally {
      await store.close();
    }
  }, 120_000);
});
