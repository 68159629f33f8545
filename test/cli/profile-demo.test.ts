/**
 * `meshkit demo` and `meshkit profile show|verify`, run as a user would: the built CLI in a child
 * process (npm test builds first).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyLog, verifyLogHead } from '../../src/core/hashlog.js';
import { readProfile, verifyProfile } from '../../src/core/profiles.js';

const run = promisify(execFile);
const BIN = resolve('bin/meshkit.js');

async function meshkit(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

let root: string;
let out: string;
let summary: {
  out: string;
  files: string[];
  master: { identifier: string; adminKey: string };
  devices: Array<{ name: string; identifier: string; file: string }>;
  personal: { sequence: number; devices: number };
  checks: Array<{ check: string; result: string }>;
  log: { entries: number; head: string };
  passphraseFile?: string;
};

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'meshkit-demo-test-'));
  out = join(root, 'demo');
  const r = await meshkit(['demo', '--out', out, '--json'], { MESHKIT_PASSPHRASE: '' });
  expect(r.code, r.stderr).toBe(0);
  summary = JSON.parse(r.stdout) as typeof summary;
}, 120_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('meshkit demo', () => {
  it('lists exactly the files it made, all under --out', async () => {
    const found: string[] = [];
    const walk = async (dir: string, rel = ''): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(join(dir, e.name), p);
        else found.push(p);
      }
    };
    await walk(out);
    expect(found.sort()).toEqual(summary.files);
    expect(summary.files).toEqual(expect.arrayContaining(['master.json', 'personal.json', 'demo-log.jsonl', 'demo-log.head.json', 'account.json']));
  });

  it('its profiles verify independently: Master → Personal (2 devices) → each device connected', async () => {
    const master = await readFile(join(out, 'master.json'), 'utf8');
    const personal = await readFile(join(out, 'personal.json'), 'utf8');
    const vm = await verifyProfile(master);
    expect(vm.identifier).toBe(summary.master.identifier);
    const vp = await verifyProfile(personal, { master });
    expect(vp.sequence).toBe(2);
    expect(vp.signerKeyId).toBe(summary.master.adminKey);
    expect(vp.devices).toHaveLength(2);
    for (const d of summary.devices) {
      const v = await verifyProfile(await readFile(join(out, d.file), 'utf8'), { personal });
      expect(v).toMatchObject({ identifier: d.identifier, connected: true });
    }
  });

  it('its log verifies and its head is signed by the administration key', async () => {
    const lines = (await readFile(join(out, 'demo-log.jsonl'), 'utf8')).trimEnd().split('\n');
    expect(verifyLog(lines)).toEqual({ count: summary.log.entries, head: summary.log.head });
    const head = JSON.parse(await readFile(join(out, 'demo-log.head.json'), 'utf8')) as unknown;
    const master = readProfile(await readFile(join(out, 'master.json'), 'utf8'), 'MasterProfile').profile;
    const admin = master.OnlineSignatureKeys[0]!;
    await expect(verifyLogHead(head as never, lines, (kid) => (kid === admin.UDF ? admin.PublicParameters : undefined))).resolves.toBeDefined();
  });

  it('reports the forged, superseded and unauthorised profiles as refused', () => {
    const refused = summary.checks.filter((c) => c.result.startsWith('refused:'));
    expect(refused.map((c) => c.result.split(' ')[1])).toEqual(['ERR_PROFILE_SIGNATURE', 'ERR_PROFILE_SUPERSEDED', 'ERR_PROFILE_SIGNER_NOT_AUTHORISED']);
  });

  it('keeps its key stores private and its passphrase out of the summary', async () => {
    for (const f of summary.files.filter((f) => f.startsWith('keys/'))) {
      expect(((await stat(join(out, f))).mode & 0o077), f).toBe(0);
    }
    expect(summary.passphraseFile).toBeDefined();
    const passphrase = (await readFile(summary.passphraseFile!, 'utf8')).trim();
    expect(JSON.stringify(summary)).not.toContain(passphrase);
  });

  it('refuses a non-empty --out and changes nothing there', async () => {
    const before = await readFile(join(out, 'personal.json'), 'utf8');
    const r = await meshkit(['demo', '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not empty/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await readFile(join(out, 'personal.json'), 'utf8')).toBe(before);
  });
});

describe('meshkit profile show|verify', () => {
  it('verify checks the whole chain in one line, using earlier files as context', async () => {
    const files = ['master.json', 'personal.json', ...summary.devices.map((d) => d.file)].map((f) => join(out, f));
    const r = await meshkit(['profile', 'verify', ...files, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { valid: boolean; results: Array<{ type: string; connected?: boolean; devices?: number }> };
    expect(report.valid).toBe(true);
    expect(report.results.map((x) => x.type)).toEqual(['MasterProfile', 'PersonalProfile', 'DeviceProfile', 'DeviceProfile']);
    expect(report.results[1]!.devices).toBe(2);
    expect(report.results.slice(2).every((x) => x.connected === true)).toBe(true);
  });

  it('verify names the broken rule and exits 1: forged, unauthorised, not connected', async () => {
    const forged = await meshkit(['profile', 'verify', join(out, 'checks', 'forged-device.json')]);
    expect(forged.code).toBe(1);
    expect(forged.stderr).toMatch(/ERR_PROFILE_SIGNATURE/);
    const rogue = await meshkit(['profile', 'verify', join(out, 'checks', 'personal-signed-by-rogue-key.json')]);
    expect(rogue.code).toBe(1);
    expect(rogue.stderr).toMatch(/not an administration key/);
    const old = await meshkit(['profile', 'verify', '--personal', join(out, 'history', 'personal-1.json'), join(out, summary.devices[0]!.file), '--json']);
    expect(old.code).toBe(1);
    const report = JSON.parse(old.stdout) as { results: Array<{ error?: { code: string } }> };
    expect(report.results[0]!.error?.code).toBe('ERR_PROFILE_NOT_CONNECTED');
  });

  it('verify rejects malformed input with one line and exit 1; no file is a usage error (exit 2)', async () => {
    const bad = join(root, 'bad.json');
    await writeFile(bad, '{"payload": "x", "signatures": [}');
    const r = await meshkit(['profile', 'verify', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_PROFILE_MALFORMED/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect((await meshkit(['profile', 'verify'])).code).toBe(2);
    expect((await meshkit(['profile', 'verify', join(root, 'missing.json')])).code).toBe(1);
  });

  it('show decodes without verifying and says so', async () => {
    const r = await meshkit(['profile', 'show', join(out, 'personal.json')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/PersonalProfile \(NOT verified/);
    expect(r.stdout).toContain(summary.devices[0]!.identifier);
    const j = await meshkit(['profile', 'show', join(out, 'master.json'), '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ verified: false, type: 'MasterProfile', profile: { Identifier: summary.master.identifier } });
  });
});
