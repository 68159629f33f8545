/**
 * Crash safety of `ceremony run` (docs/ceremony.md): the process is killed after every named fault
 * point (MESHKIT_CEREMONY_FAULT_AFTER, MESHKIT_TEST=1) and at random moments (a real SIGKILL from
 * outside), then: either nothing is left, or `ceremony run` refuses with instructions; DIR never
 * holds a blob without verified shares or shares without a blob; every labelled object on the token
 * was announced by keys-intent; `ceremony abort` restores a clean state and a fresh run succeeds.
 * Runs the built CLI (`npm run build` first).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { verifyLog } from '../../src/core/hashlog.js';
import { CEREMONY_FAULT_POINTS } from '../../src/ceremony/index.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { fixture, meshkitCeremony, spawnCeremony, type CeremonyFixture } from '../helpers/ceremony.js';

const LABELS = ['mesh-master-signature', 'mesh-master-escrow'];

/** Labels of the objects on the fixture's master token, read by pkcs11-tool (a fresh process). */
function tokenLabels(f: CeremonyFixture): string[] {
  const text = execFileSync(
    'pkcs11-tool',
    ['--module', f.hsm.modulePath, '--token-label', f.tokenLabel, '--login', '--pin', f.pinEnv['MASTER_PIN']!, '--list-objects'],
    { env: f.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return [...new Set([...text.matchAll(/^\s*label:\s*(.*)$/gm)].map((m) => m[1]!.trim()))];
}

function transcriptTypes(f: CeremonyFixture): string[] {
  for (const p of [join(f.out, '.staging', 'transcript.jsonl'), join(f.out, 'transcript.jsonl')]) {
    if (existsSync(p)) {
      const lines = readFileSync(p, 'utf8').split('\n').filter((l) => l !== '');
      verifyLog(lines); // an interrupted transcript is still a valid chain
      return lines.map((l) => JSON.parse(l).Type as string);
    }
  }
  return [];
}

const run = (f: CeremonyFixture, env: Record<string, string> = {}) =>
  meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', ...f.pinArgs], f, env);

/** The assertions after an interruption, then abort and a fresh run. */
function checkInterrupted(f: CeremonyFixture, what: string): void {
  const entries = existsSync(f.out) ? readdirSync(f.out) : [];
  const labels = tokenLabels(f).filter((l) => LABELS.includes(l));
  const types = transcriptTypes(f);
  // keys on the token only after keys-intent was recorded
  if (labels.length > 0) expect(types, what).toContain('keys-intent');
  // DIR (outside .staging) never holds a blob without verified shares or shares without a blob
  const blob = existsSync(join(f.out, 'escrow'));
  const shares = existsSync(join(f.out, 'shares'));
  expect(blob, what).toBe(shares);
  if (blob) expect(types, what).toContain('verify');
  if (entries.length === 0) {
    // nothing left: then nothing on the token either
    expect(labels, what).toEqual([]);
    const again = run(f);
    expect(again.code, `${what}: ${again.stderr}`).toBe(0);
    return;
  }
  if (entries.includes('.staging')) {
    const again = run(f);
    expect(again.code, what).toBe(1);
    expect(again.stderr, what).toContain('meshkit ceremony abort --plan PLAN --out');
    const abort = meshkitCeremony(['abort', '--plan', f.planPath, '--out', f.out, '--pin-env', 'MASTER_PIN', '--json'], f);
    expect(abort.code, `${what}: ${abort.stderr}`).toBe(0);
    const summary = JSON.parse(abort.stdout) as { deletedKeys: Array<{ label: string }> };
    expect(summary.deletedKeys.map((k) => k.label).sort(), what).toEqual([...labels].sort());
    expect(existsSync(f.out) ? readdirSync(f.out) : [], what).toEqual([]);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l)), what).toEqual([]);
    const fresh = run(f);
    expect(fresh.code, `${what}: ${fresh.stderr}`).toBe(0);
    expect(existsSync(join(f.out, 'transcript.head.json')), what).toBe(true);
    return;
  }
  // no .staging and not empty: the ceremony finished (the kill came after publishing)
  expect(entries, what).toContain('transcript.head.json');
  const abort = meshkitCeremony(['abort', '--plan', f.planPath, '--out', f.out, '--pin-env', 'MASTER_PIN'], f);
  expect(abort.code, what).toBe(1);
  expect(abort.stderr, what).toContain('finished ceremony');
}

describe.skipIf(softhsmMissing)('ceremony crash safety (built CLI, SoftHSM)', () => {
  beforeAll(() => {
    if (!existsSync('dist/cli/commands/ceremony.js')) throw new Error('dist/ missing or stale: run "npm run build" before these tests');
  });

  it.each([...CEREMONY_FAULT_POINTS])('import-with-escrow killed after %s', async (point) => {
    const f = await fixture({ origin: 'import-with-escrow' });
    const r = run(f, { MESHKIT_TEST: '1', MESHKIT_CEREMONY_FAULT_AFTER: point });
    expect(r.signal, r.stderr).toBe('SIGKILL');
    const last = { 'keys-first-object': 'escrow', 'publish-partial': 'complete' }[point as string] ?? point;
    expect(transcriptTypes(f).at(-1)).toBe(last);
    checkInterrupted(f, `after ${point}`);
  }, 60_000);

  it.each(['keys-intent', 'keys-first-object', 'keys', 'profiles', 'verify', 'complete', 'publish-partial'] as const)(
    'generate-on-token killed after %s',
    async (point) => {
      const f = await fixture({ origin: 'generate-on-token' });
      const r = run(f, { MESHKIT_TEST: '1', MESHKIT_CEREMONY_FAULT_AFTER: point });
      expect(r.signal, r.stderr).toBe('SIGKILL');
      if (point === 'keys-first-object') expect(tokenLabels(f)).toContain('mesh-master-signature');
      checkInterrupted(f, `generate-on-token after ${point}`);
    },
    60_000,
  );

  it.each([1, 3, 5, 7, 9])('a real kill -9 once the transcript has %i entries', async (n) => {
    const f = await fixture({ origin: 'import-with-escrow' });
    const child = spawnCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', ...f.pinArgs], f);
    const transcript = join(f.out, '.staging', 'transcript.jsonl');
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
    let killed = false;
    const timer = setInterval(() => {
      try {
        const count = readFileSync(transcript, 'utf8').split('\n').filter((l) => l !== '').length;
        if (count >= n && !killed) {
          killed = true;
          child.kill('SIGKILL');
        }
      } catch {
        // not there yet
      }
    }, 1);
    const { code, signal } = await exit;
    clearInterval(timer);
    expect(signal === 'SIGKILL' || code === 0).toBe(true);
    checkInterrupted(f, `kill -9 at ${n} entries (${signal ?? code})`);
  }, 60_000);
});
