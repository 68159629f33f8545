/**
 * `meshkit demo` and `meshkit profile show|verify`, run as a user would: the built CLI in a child
 * process (npm test builds first).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAccount } from '../../src/admin/account.js';
import { verifyLog, verifyLogHead } from '../../src/core/hashlog.js';
import { readProfile, verifyProfile } from '../../src/core/profiles.js';
import { verifyBenchOutput } from '../../src/device/bench-runner.js';
import { emulatorUnavailable } from '../../src/device/emulator.js';
import { meshkitProcess } from '../helpers/cli-process.js';


const meshkit = meshkitProcess;

let root: string;
let out: string;
interface Summary {
  out: string;
  keyStore: 'softhsm' | 'software';
  files: string[];
  ceremony: { dir: string; blobId: string; shares: number; threshold: number; verified: string };
  recovery: { dir: string; sharesUsed: number[]; keys: string[] };
  master: { identifier: string; signatureKey: string; escrowKey: string; adminKey: string };
  devices: Array<{ name: string; identifier: string; file: string }>;
  personal: { sequence: number; devices: number; file: string };
  checks: Array<{ check: string; result: string }>;
  log: { entries: number; head: string };
  portal: { url: string; db: string; account: string; logCount: number; proven: boolean };
  account: string;
  revoked: { name: string; identifier: string; sequence: number };
  bench: {
    mode: 'emulator' | 'inprocess';
    reason?: string;
    dir: string;
    benchKey: string;
    provisioned: number;
    failed: number;
    devices: Array<{ serial: string; port: string; deviceId: string; ms: number; bytesSent?: number; bytesReceived?: number; record: number }>;
    log: { count: number; head: string | null; file: string; headFile: string };
    verified: string;
  };
  steps: Array<{ step: string; detail: string; ms: number }>;
}
let summary: Summary;
let softwareSummary: Summary;
let softwareOut: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'meshkit-demo-test-'));
  out = join(root, 'demo');
  const r = await meshkit(['demo', '--out', out, '--json']);
  expect(r.code, r.stderr).toBe(0);
  summary = JSON.parse(r.stdout) as Summary;
  softwareOut = join(root, 'demo-software');
  // The software run also forces the in-process bench devices (the fallback path), through the environment.
  const s = await meshkit(['demo', '--software', '--out', softwareOut, '--json'], { MESHKIT_DEMO_DEVICES: 'inprocess' });
  expect(s.code, s.stderr).toBe(0);
  softwareSummary = JSON.parse(s.stdout) as Summary;
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
    // SoftHSM token directories are listed once, not file by file.
    const collapsed = [...new Set(found.map((f) => f.replace(/^(softhsm\/tokens\/[^/]+\/).*$/u, '$1')))].sort();
    expect(collapsed).toEqual(summary.files);
    expect(summary.files).toEqual(expect.arrayContaining([
      'ceremony-plan.json', 'ceremony/master.json', 'ceremony/personal.json', 'ceremony/transcript.jsonl', 'ceremony/transcript.head.json',
      'ceremony/shares/1.txt', 'ceremony/shares/5.txt', `ceremony/escrow/${summary.ceremony.blobId}.json`,
      'recovery/recovery-transcript.jsonl', 'account/personal.json', 'demo-log.jsonl', 'demo-log.head.json',
    ]));
  });

  it('ran the ceremony on SoftHSM when it is installed, and on software key stores when asked', () => {
    expect(summary.keyStore).toBe(existsSync('/usr/lib/softhsm/libsofthsm2.so') ? 'softhsm' : 'software');
    expect(softwareSummary.keyStore).toBe('software');
    for (const s of [summary, softwareSummary]) {
      expect(s.ceremony).toMatchObject({ shares: 5, threshold: 3, verified: 'ok' });
      expect(s.recovery.sharesUsed).toHaveLength(3);
      expect(s.recovery.keys.sort()).toEqual([s.master.signatureKey, s.master.escrowKey].sort());
    }
  });

  it('published the account to a portal on loopback with SQLite, and its notary log verifies offline', async () => {
    expect(summary.portal).toMatchObject({ proven: true, db: 'portal/portal.db' });
    // CreateAccount, Personal Sequence 2 (bench), ConnectStart, Personal Sequence 3 (accepted), ConnectComplete,
    // Personal Sequences 4–6 (the three devices of the provisioning bench), Personal Sequence 7 (revoked)
    expect(summary.portal.logCount).toBe(9);
    const exported = join(root, 'portal-log.jsonl');
    const ex = await meshkit(['portal', 'log', 'export', '--db', `sqlite:${join(out, summary.portal.db)}`]);
    expect(ex.code, ex.stderr).toBe(0);
    await writeFile(exported, ex.stdout);
    const v = await meshkit(['portal', 'log', 'verify', exported]);
    expect(v.code, v.stderr).toBe(0);
    const lines = ex.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(summary.portal.logCount);
    await writeFile(exported, [lines[0], lines[1]!.replace('Publish', 'Publiah'), ...lines.slice(2)].join('\n') + '\n');
    const bad = await meshkit(['portal', 'log', 'verify', exported]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/entry 1/u);
  });

  it('its ceremony directory passes meshkit ceremony verify, and a hand-edited share is caught', async () => {
    const ok = await meshkit(['ceremony', 'verify', join(out, summary.ceremony.dir)]);
    expect(ok.code, ok.stderr).toBe(0);
    const share = join(softwareOut, softwareSummary.ceremony.dir, 'shares', '2.txt');
    const text = await readFile(share, 'utf8');
    await writeFile(share, text.replace(/^Master: (\S+)/mu, 'Master: MAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA'));
    const bad = await meshkit(['ceremony', 'verify', join(softwareOut, softwareSummary.ceremony.dir)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/shares\/2\.txt/u);
  });

  it('its profiles verify independently: Master → Personal → the remaining device connected, the revoked one not', async () => {
    const master = await readFile(join(out, 'ceremony', 'master.json'), 'utf8');
    const personal = await readFile(join(out, summary.personal.file), 'utf8');
    const vm = await verifyProfile(master);
    expect(vm.identifier).toBe(summary.master.identifier);
    const vp = await verifyProfile(personal, { master });
    expect(vp.sequence).toBe(7);
    expect(summary.revoked.sequence).toBe(7);
    expect(vp.signerKeyId).toBe(summary.master.adminKey);
    expect(vp.devices).toHaveLength(4);
    expect(summary.devices).toHaveLength(5);
    for (const d of summary.devices) {
      const signed = await readFile(join(out, d.file), 'utf8');
      if (d.identifier === summary.revoked.identifier) {
        await expect(verifyProfile(signed, { personal })).rejects.toMatchObject({ code: 'ERR_PROFILE_NOT_CONNECTED' });
      } else {
        await expect(verifyProfile(signed, { personal })).resolves.toMatchObject({ identifier: d.identifier, connected: true });
      }
    }
    const history = summary.files.filter((f) => f.startsWith('account/history/PersonalProfile-'));
    expect(history).toHaveLength(7);
  });

  it('provisions three emulated devices at its bench — the C emulator on ptys where it can run, else in process — and says which', () => {
    const why = emulatorUnavailable();
    expect(summary.bench.mode).toBe(why === undefined ? 'emulator' : 'inprocess');
    if (why !== undefined) console.log(`test/cli/profile-demo.test.ts: the default demo ran its bench in process: ${why}`);
    expect(softwareSummary.bench.mode).toBe('inprocess');
    expect(softwareSummary.bench.reason).toMatch(/asked for/u);
    for (const s of [summary, softwareSummary]) {
      expect(s.bench).toMatchObject({ provisioned: 3, failed: 0, verified: 'ok', dir: 'bench' });
      expect(new Set(s.bench.devices.map((d) => d.serial)).size).toBe(3);
      expect(s.bench.devices.map((d) => d.record).sort()).toEqual([0, 1, 2]);
      for (const d of s.bench.devices) expect(d.bytesSent! > 0 && d.bytesReceived! > 0, JSON.stringify(d)).toBe(true);
      if (s.bench.mode === 'emulator') for (const d of s.bench.devices) expect(existsSync(d.port), `${d.port} is left behind`).toBe(false);
      else for (const d of s.bench.devices) expect(d.port).toMatch(/^link:device-\d$/u);
      const line = s.steps.find((x) => x.step === 'provision')!.detail;
      expect(line).toMatch(s.bench.mode === 'emulator' ? /^3 devices provisioned over socat ptys by the C firmware emulator/u : /^3 devices provisioned in process \(/u);
      expect(line).toMatch(/per device/u);
      expect(s.steps.map((x) => x.step)).toEqual(['tokens', 'ceremony', 'recovery', 'portal', 'connect', 'request', 'provision', 'verify', 'revoke', 'notary', 'log']);
      expect(s.files).toEqual(expect.arrayContaining(['bench/records.jsonl', 'bench/records.head.json', 'bench/bench.json', 'bench-config.json',
        ...s.bench.devices.map((d) => `bench/devices/${d.deviceId}.json`)]));
    }
  });

  it('its bench records verify independently against the account, and the Personal Profile lists the composite Device Profiles', async () => {
    for (const [dir, s] of [[out, summary], [softwareOut, softwareSummary]] as const) {
      const report = await verifyBenchOutput(join(dir, s.bench.dir), { account: join(dir, s.account) });
      expect(report.problems).toEqual([]);
      expect(report.ok).toBe(true);
      expect(report.count).toBe(3);
      expect(report.benchKey).toBe(s.bench.benchKey);
      expect(report.records.map((r) => r.device).sort()).toEqual(s.bench.devices.map((d) => d.deviceId).sort());
      const personal = await readFile(join(dir, s.personal.file), 'utf8');
      const vp = await verifyProfile(personal, { master: await readFile(join(dir, 'ceremony', 'master.json'), 'utf8') });
      const account = await loadAccount(join(dir, s.account));
      for (const d of s.bench.devices) {
        const composite = await readFile(join(dir, s.bench.dir, 'devices', `${d.deviceId}.json`), 'utf8');
        await expect(verifyProfile(composite, { personal })).resolves.toMatchObject({ identifier: d.deviceId, connected: true });
        expect(vp.devices?.map((x) => x.identifier)).toContain(d.deviceId);
        expect(account.index.Devices[d.deviceId]).toBeDefined();
      }
      // the CLI agrees
      const v = await meshkit(['bench', 'verify', '--out', join(dir, s.bench.dir), '--account', join(dir, s.account)]);
      expect(v.code, v.stderr).toBe(0);
    }
    // a record changed after the fact is caught
    const records = join(softwareOut, softwareSummary.bench.dir, 'records.jsonl');
    const text = await readFile(records, 'utf8');
    await writeFile(records, text.replace(/"Serial":"DEMO-0002"/u, '"Serial":"DEMO-0009"'));
    expect((await verifyBenchOutput(join(softwareOut, softwareSummary.bench.dir))).ok).toBe(false);
    await writeFile(records, text);
  });

  it('meshkit profile verify --account reports the revoked device in one line', async () => {
    const revoked = summary.devices.find((d) => d.identifier === summary.revoked.identifier)!;
    const r = await meshkit(['profile', 'verify', '--account', join(out, summary.account), join(out, revoked.file)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/revoked/u);
    const kept = summary.devices.find((d) => d.identifier !== summary.revoked.identifier)!;
    const ok = await meshkit(['profile', 'verify', '--account', join(out, summary.account), join(out, kept.file)]);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('its log verifies and its head is signed by the administration key', async () => {
    const lines = (await readFile(join(out, 'demo-log.jsonl'), 'utf8')).trimEnd().split('\n');
    expect(verifyLog(lines)).toEqual({ count: summary.log.entries, head: summary.log.head });
    const head = JSON.parse(await readFile(join(out, 'demo-log.head.json'), 'utf8')) as unknown;
    const master = readProfile(await readFile(join(out, 'ceremony', 'master.json'), 'utf8'), 'MasterProfile').profile;
    const admin = master.OnlineSignatureKeys.find((k) => k.UDF === summary.master.adminKey)!;
    await expect(verifyLogHead(head as never, lines, (kid) => (kid === admin.UDF ? admin.PublicParameters : undefined))).resolves.toBeDefined();
  });

  it('reports the forged, superseded and unauthorised profiles as refused', () => {
    const refused = summary.checks.filter((c) => c.result.startsWith('refused:'));
    expect(refused.map((c) => c.result.split(' ')[1])).toEqual([
      'ERR_PROFILE_SIGNATURE', 'ERR_PROFILE_SUPERSEDED', 'ERR_PROFILE_SIGNER_NOT_AUTHORISED', 'ERR_PROFILE_NOT_CONNECTED', 'ERR_PROFILE_SUPERSEDED',
    ]);
  });

  it('keeps its key stores and PINs private, and no secret in the summary or the logs', async () => {
    const secretFiles = [...summary.files, ...softwareSummary.files].filter((f) => /\.(keys|pin)$|passphrase\.txt$/u.test(f));
    expect(secretFiles.length).toBeGreaterThan(3);
    for (const f of summary.files.filter((f) => /\.(keys|pin)$|passphrase\.txt$/u.test(f))) {
      expect(((await stat(join(out, f))).mode & 0o077), f).toBe(0);
    }
    // the emulated devices' "flash" (their secret scalars) is private too, in both bench modes
    for (const [dir, s] of [[out, summary], [softwareOut, softwareSummary]] as const) {
      const flash = s.files.filter((f) => f.startsWith('emulated/'));
      expect(flash).toHaveLength(3);
      for (const f of flash) expect(((await stat(join(dir, f))).mode & 0o077), f).toBe(0);
    }
    const secrets = await Promise.all(summary.files.filter((f) => /\.pin$|passphrase\.txt$/u.test(f)).map(async (f) => (await readFile(join(out, f), 'utf8')).trim()));
    const visible = JSON.stringify(summary) + (await readFile(join(out, 'demo-log.jsonl'), 'utf8')) + (await readFile(join(out, 'ceremony', 'transcript.jsonl'), 'utf8'));
    for (const secret of secrets) expect(visible).not.toContain(secret);
  });

  it('refuses a non-empty --out and changes nothing there', async () => {
    const before = await readFile(join(out, summary.personal.file), 'utf8');
    const r = await meshkit(['demo', '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not empty/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await readFile(join(out, summary.personal.file), 'utf8')).toBe(before);
  });
});

describe('meshkit profile show|verify', () => {
  it('verify checks the whole chain in one line, using earlier files as context', async () => {
    const kept = summary.devices.filter((d) => d.identifier !== summary.revoked.identifier);
    const files = ['ceremony/master.json', summary.personal.file, ...kept.map((d) => d.file)].map((f) => join(out, f));
    const r = await meshkit(['profile', 'verify', ...files, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { valid: boolean; results: Array<{ type: string; connected?: boolean; devices?: number }> };
    expect(report.valid).toBe(true);
    expect(report.results.map((x) => x.type)).toEqual(['MasterProfile', 'PersonalProfile', ...kept.map(() => 'DeviceProfile')]);
    expect(kept).toHaveLength(4);
    expect(report.results[1]!.devices).toBe(4);
    for (const r of report.results.slice(2)) expect(r.connected).toBe(true);
  });

  it('verify names the broken rule and exits 1: forged, unauthorised, not connected', async () => {
    const forged = await meshkit(['profile', 'verify', join(out, 'checks', 'forged-device.json')]);
    expect(forged.code).toBe(1);
    expect(forged.stderr).toMatch(/ERR_PROFILE_SIGNATURE/);
    const rogue = await meshkit(['profile', 'verify', join(out, 'checks', 'personal-signed-by-rogue-key.json')]);
    expect(rogue.code).toBe(1);
    expect(rogue.stderr).toMatch(/not an administration key/);
    const old = await meshkit(['profile', 'verify', '--personal', join(out, 'ceremony', 'personal.json'), join(out, summary.devices[0]!.file), '--json']);
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
    const r = await meshkit(['profile', 'show', join(out, summary.personal.file)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/PersonalProfile \(NOT verified/);
    expect(r.stdout).toContain(summary.devices.find((d) => d.identifier !== summary.revoked.identifier)!.identifier);
    const j = await meshkit(['profile', 'show', join(out, 'ceremony', 'master.json'), '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ verified: false, type: 'MasterProfile', profile: { Identifier: summary.master.identifier } });
  });
});
