/**
 * Crash safety of `ceremony recover` (docs/ceremony.md "Crash safety", "Recovery"): the built CLI is
 * killed (SIGKILL, MESHKIT_CEREMONY_FAULT_AFTER with MESHKIT_TEST=1) after each recovery fault point;
 * then nothing is published in DIR, the token holds only objects the `keys-intent` entry announced
 * (label AND CKA_ID), a re-run is refused with the `ceremony abort` instruction, `ceremony abort`
 * deletes exactly those objects and the staging, and a re-run of recover succeeds with keys that
 * sign / agree under the Master Profile keys and a head signed by the recovered key. A foreign
 * object under an announced label (another CKA_ID) survives abort and is reported. Token objects
 * are read with pkcs11-tool (another process, another reader than the code under test).
 * Runs the built CLI (`npm run build` first).
 */
import { execFileSync } from 'node:child_process';
import { verify as nodeVerify } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { toHex, utf8 } from '../../src/core/bytes.js';
import { ErrorCode } from '../../src/core/errors.js';
import { verifyLog, verifyLogHead } from '../../src/core/hashlog.js';
import { publicKeyFromJwk, publicKeyObject } from '../../src/core/keys.js';
import { readProfile, type MasterProfile } from '../../src/core/profiles.js';
import { udfParse } from '../../src/core/udf.js';
import { abortCeremony, parsePlan, recoverCeremony, RECOVERY_FAULT_POINTS, runCeremony } from '../../src/ceremony/index.js';
import { escrowApplicationKey, recoverApplicationKey } from '../../src/ceremony/online-escrow.js';
import { openKeyStore } from '../../src/keystore/index.js';
import { Pkcs11KeyStore } from '../../src/keystore/pkcs11/index.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { fixture, meshkitCeremony, type CeremonyFixture } from '../helpers/ceremony.js';
import { testKey } from '../helpers/software-signer.js';

const SIG = 'mesh-master-signature';
const ESC = 'mesh-master-escrow';

interface Target {
  planPath: string;
  label: string;
  pin: string;
  /** file: targets: the store path. */
  file?: string;
}

/** Objects (label, CKA_ID hex, class) on a token, read with pkcs11-tool. */
function tokenObjects(f: CeremonyFixture, t: Target): Array<{ label: string; id: string; kind: string }> {
  const text = execFileSync('pkcs11-tool', ['--module', f.hsm.modulePath, '--token-label', t.label, '--login', '--pin', t.pin, '--list-objects'], {
    env: f.env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Array<{ label: string; id: string; kind: string }> = [];
  for (const block of text.split(/\n(?=\S)/)) {
    const kind = /^(\w+ \w+ Object)/.exec(block)?.[1];
    const label = /^\s*label:\s*(.*)$/m.exec(block)?.[1]?.trim();
    const id = /^\s*ID:\s*([0-9a-f]*)\s*$/m.exec(block)?.[1];
    if (kind !== undefined && label !== undefined) out.push({ label, id: id ?? '', kind });
  }
  return out;
}

/** The CKA_ID a key's objects must carry: the first 16 bytes of the binary UDF (docs/ceremony.md). */
const ckaId = (udf: string): string => toHex(udfParse(udf).bytes.slice(0, 16));

function stagedTypes(out: string): string[] {
  const lines = readFileSync(join(out, '.staging', 'recovery-transcript.jsonl'), 'utf8').split('\n').filter((l) => l !== '');
  verifyLog(lines); // an interrupted transcript is still a valid chain
  return lines.map((l) => (JSON.parse(l) as { Type: string }).Type);
}

interface Ceremony {
  f: CeremonyFixture;
  master: MasterProfile;
  n: number;
}

function freshTarget(c: Ceremony, software = false): Target {
  const n = ++c.n;
  const label = `RC-${process.pid % 100000}-${n}-${Math.random().toString(36).slice(2, 6)}`;
  const pin = `rcpin-${n}-5521`;
  const planObj = structuredClone(c.f.plan);
  let file: string | undefined;
  if (software) {
    file = join(c.f.dir, `${label}.keys`);
    planObj.Ceremony.Token = `file:${file}`;
  } else {
    c.f.hsm.addToken(label, pin);
    planObj.Ceremony.Token = c.f.hsm.uri(label);
  }
  const planPath = join(c.f.dir, `recover-plan-${label}.json`);
  writeFileSync(planPath, JSON.stringify(planObj, null, 2) + '\n');
  return { planPath, label, pin, ...(file === undefined ? {} : { file }) };
}

const shareArgs = (c: Ceremony): string[] => ['--share', join(c.f.out, 'shares', '4.txt'), '--share', join(c.f.out, 'shares', '1.txt'), '--share', join(c.f.out, 'shares', '3.txt')];

function recoverCli(c: Ceremony, t: Target, out: string, env: Record<string, string> = {}) {
  return meshkitCeremony(
    ['recover', '--plan', t.planPath, ...shareArgs(c), '--escrow-dir', join(c.f.out, 'escrow'), '--out', out, '--yes', '--pin-env', 'FRESH_PIN', '--json'],
    c.f,
    { FRESH_PIN: t.pin, ...env },
  );
}

const abortCli = (c: Ceremony, t: Target, out: string, json = true) =>
  meshkitCeremony(['abort', '--plan', t.planPath, '--out', out, '--pin-env', 'FRESH_PIN', ...(json ? ['--json'] : [])], c.f, { FRESH_PIN: t.pin });

/** The checks `ceremony verify` makes of a recovery, done independently: head, key UDFs, a signature, an agreement. */
async function checkRecovered(c: Ceremony, t: Target, out: string): Promise<void> {
  expect(readdirSync(out).sort()).toEqual(['recovery-transcript.head.json', 'recovery-transcript.jsonl']);
  const lines = readFileSync(join(out, 'recovery-transcript.jsonl'), 'utf8').split('\n').filter((l) => l !== '');
  const types = lines.map((l) => (JSON.parse(l) as { Type: string }).Type);
  expect(types).toEqual(['recovery', 'shares', 'blob', 'keys-intent', 'import', 'complete']);
  const sigUdf = c.master.MasterSignatureKey.UDF;
  const escUdf = c.master.MasterEscrowKeys[0]?.UDF as string;
  const intent = JSON.parse(lines[3] as string) as { Body: { Keys: Array<{ Label: string; UDF: string; CkaId: string }> } };
  expect(intent.Body.Keys.map((k) => [k.Label, k.UDF, k.CkaId])).toEqual([
    [SIG, sigUdf, ckaId(sigUdf)],
    [ESC, escUdf, ckaId(escUdf)],
  ]);
  const sigKey = publicKeyFromJwk(c.master.MasterSignatureKey.PublicParameters);
  const head = JSON.parse(readFileSync(join(out, 'recovery-transcript.head.json'), 'utf8')) as unknown;
  expect((await verifyLogHead(head, lines, (kid) => (kid === sigUdf ? sigKey : undefined))).Count).toBe(6);
  if (t.file === undefined) {
    const objs = tokenObjects(c.f, t);
    expect(new Set(objs.map((o) => `${o.label} ${o.id}`))).toEqual(new Set([`${SIG} ${ckaId(sigUdf)}`, `${ESC} ${ckaId(escUdf)}`]));
  }
  const store = await openKeyStore(t.file === undefined ? c.f.hsm.uri(t.label) : `file:${t.file}`, utf8(t.pin));
  try {
    const sig = await store.get(SIG);
    expect(sig.info.keyId).toBe(sigUdf);
    const msg = utf8('signed by the key recovered after abort');
    const signature = await sig.signer().sign(msg);
    const key = publicKeyObject(sigKey);
    const ok = c.master.MasterSignatureKey.PublicParameters.crv === 'P-256' ? nodeVerify('sha256', msg, { key, dsaEncoding: 'ieee-p1363' }, signature) : nodeVerify(null, msg, key, signature);
    expect(ok).toBe(true);
    const esc = await store.get(ESC);
    expect(esc.info.keyId).toBe(escUdf);
    const app = testKey('X25519');
    const jwe = await escrowApplicationKey(app.privateJwk, [], c.master.MasterEscrowKeys[0]?.PublicParameters as never);
    expect((await recoverApplicationKey(jwe, esc.decrypter())).privateJwk?.d).toBe(app.privateJwk.d);
  } finally {
    await store.close();
  }
}

/** The whole cycle for one fault point: crash → refused → abort → re-run succeeds. */
async function crashAbortRerun(c: Ceremony, point: string, software = false): Promise<void> {
  const t = freshTarget(c, software);
  const out = join(c.f.dir, `rec-${point}-${t.label}`);
  const r = recoverCli(c, t, out, { MESHKIT_TEST: '1', MESHKIT_CEREMONY_FAULT_AFTER: point });
  expect(r.signal, r.stderr).toBe('SIGKILL');
  // Nothing published: DIR holds only the staging.
  expect(readdirSync(out)).toEqual(['.staging']);
  const types = stagedTypes(out);
  const last = { 'key-signature': 'keys-intent', 'key-escrow': 'keys-intent' }[point] ?? point;
  expect(types.at(-1)).toBe(last);
  const sigUdf = c.master.MasterSignatureKey.UDF;
  const escUdf = c.master.MasterEscrowKeys[0]?.UDF as string;
  const expectedOnToken = point === 'keys-intent' ? [] : point === 'key-signature' ? [SIG] : [SIG, ESC];
  let labels: string[];
  if (software) {
    const s = await openKeyStore(`file:${t.file as string}`, utf8(t.pin));
    labels = (await s.list()).map((k) => k.label);
    await s.close();
  } else {
    const objs = tokenObjects(c.f, t);
    labels = [...new Set(objs.map((o) => o.label))];
    // Every object on the token was announced: label AND CKA_ID as in keys-intent (no AES session key left).
    for (const o of objs) expect([`${SIG} ${ckaId(sigUdf)}`, `${ESC} ${ckaId(escUdf)}`]).toContain(`${o.label} ${o.id}`);
  }
  expect(labels.sort()).toEqual([...expectedOnToken].sort());

  // A re-run into the same DIR is refused with the abort instruction; into another DIR too, while keys exist.
  const again = recoverCli(c, t, out);
  expect(again.code).toBe(1);
  expect(again.stderr).toContain('interrupted recovery');
  expect(again.stderr).toContain(`meshkit ceremony abort --plan PLAN --out ${out}`);
  if (expectedOnToken.length > 0) {
    const elsewhere = recoverCli(c, t, `${out}-elsewhere`);
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.stderr).toMatch(/already holds keys labelled .*meshkit ceremony abort --plan PLAN --out DIR/);
    expect(existsSync(`${out}-elsewhere`)).toBe(false);
  }

  const abort = abortCli(c, t, out);
  expect(abort.code, abort.stderr).toBe(0);
  const summary = JSON.parse(abort.stdout) as { kind: string; deletedKeys: Array<{ label: string; keyId: string }>; foreignKeys: unknown[]; interruptedAfter: string };
  expect(summary.kind).toBe('recovery');
  expect(summary.interruptedAfter).toBe(last);
  expect(summary.deletedKeys.map((k) => k.label).sort()).toEqual([...expectedOnToken].sort());
  expect(summary.foreignKeys).toEqual([]);
  expect(readdirSync(out)).toEqual([]);
  if (software) {
    const s = await openKeyStore(`file:${t.file as string}`, utf8(t.pin));
    expect(await s.list()).toEqual([]);
    await s.close();
  } else {
    expect(tokenObjects(c.f, t)).toEqual([]);
  }

  const fresh = recoverCli(c, t, out);
  expect(fresh.code, fresh.stderr).toBe(0);
  await checkRecovered(c, t, out);
}

async function ceremony(origin: 'import-with-escrow' | 'generate-on-token-wrapped', algorithms?: { Signature: 'P-256'; Escrow: 'P-256' }): Promise<Ceremony> {
  const f = await fixture({ origin, ...(algorithms === undefined ? {} : { algorithms }) });
  await runCeremony(parsePlan(readFileSync(f.planPath)), { out: f.out, secrets: f.secrets, operator: 'Olivia' });
  return { f, master: readProfile(readFileSync(join(f.out, 'master.json'), 'utf8'), 'MasterProfile').profile, n: 0 };
}

describe.skipIf(softhsmMissing !== undefined)('ceremony recover crash safety (built CLI, SoftHSM)', () => {
  let c: Ceremony;
  beforeAll(async () => {
    if (!existsSync('dist/cli/commands/ceremony-recovery.js')) throw new Error('dist/ missing or stale: run "npm run build" before these tests');
    c = await ceremony('import-with-escrow');
  }, 60_000);

  it.each([...RECOVERY_FAULT_POINTS])('import-with-escrow (Ed448 + X448) killed after %s: refused, abort, re-run succeeds', async (point) => {
    await crashAbortRerun(c, point);
  }, 90_000);

  it('a software key store target (file:) killed after key-escrow: abort deletes its keys too', async () => {
    await crashAbortRerun(c, 'key-escrow', true);
  }, 90_000);

  it('a foreign object under an announced label (another CKA_ID) survives abort and is reported', async () => {
    const t = freshTarget(c);
    const out = join(c.f.dir, `rec-foreign-${t.label}`);
    const r = recoverCli(c, t, out, { MESHKIT_TEST: '1', MESHKIT_CEREMONY_FAULT_AFTER: 'key-signature' });
    expect(r.signal, r.stderr).toBe('SIGKILL');
    // Someone puts another key under the escrow label the recovery announced.
    const store = await Pkcs11KeyStore.open(c.f.hsm.uri(t.label), utf8(t.pin));
    const foreign = await store.generate(ESC, 'X448');
    await store.close();
    const foreignId = ckaId(foreign.info.keyId);
    expect(foreignId).not.toBe(ckaId(c.master.MasterEscrowKeys[0]?.UDF as string));

    const text = abortCli(c, t, out, false);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`aborted the recovery in ${out}`);
    expect(text.stdout).toMatch(new RegExp(`deleted keys +${SIG} \\(${c.master.MasterSignatureKey.UDF}\\)\\n`));
    expect(text.stdout).toContain(`left alone     ${ESC} (${foreign.info.keyId}) — not the recovery's key (another CKA_ID)`);
    // Exactly the foreign object's objects are left, with their own CKA_ID; the staging is gone.
    const objs = tokenObjects(c.f, t);
    expect(objs.length).toBeGreaterThan(0);
    expect(objs.every((o) => o.label === ESC && o.id === foreignId)).toBe(true);
    expect(readdirSync(out)).toEqual([]);
    // A re-run is refused because of the foreign key (not ours to delete).
    const again = recoverCli(c, t, out);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`already holds keys labelled "${ESC}"`);
  }, 90_000);

  it('abort with nothing to do: no token object after keys-intent is a clear no-op on the token; an empty or finished DIR is refused unchanged', async () => {
    const t = freshTarget(c);
    const out = join(c.f.dir, `rec-noop-${t.label}`);
    expect(recoverCli(c, t, out, { MESHKIT_TEST: '1', MESHKIT_CEREMONY_FAULT_AFTER: 'keys-intent' }).signal).toBe('SIGKILL');
    const first = abortCli(c, t, out, false);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('deleted keys   none (nothing of it was on the token)');
    expect(tokenObjects(c.f, t)).toEqual([]);
    // Again: nothing left to abort.
    const second = abortCli(c, t, out, false);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/holds no interrupted ceremony \(no \.staging\): nothing to abort/);
    // A finished recovery is never undone: its keys stay.
    expect(recoverCli(c, t, out).code).toBe(0);
    const finished = abortCli(c, t, out, false);
    expect(finished.code).toBe(1);
    expect(finished.stderr).toContain('holds a finished recovery (recovery-transcript.head.json), which abort never undoes');
    await checkRecovered(c, t, out);
  }, 90_000);

  it('the fault switch is refused without MESHKIT_TEST=1, and an unknown point names the recovery points', async () => {
    const t = freshTarget(c);
    const out = join(c.f.dir, `rec-switch-${t.label}`);
    const noTest = recoverCli(c, t, out, { MESHKIT_CEREMONY_FAULT_AFTER: 'import' });
    expect(noTest.code).toBe(2);
    expect(noTest.stderr).toContain('refused unless MESHKIT_TEST=1');
    const unknown = recoverCli(c, t, out, { MESHKIT_TEST: '1', MESHKIT_CEREMONY_FAULT_AFTER: 'publish-partial' });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(`must be one of ${RECOVERY_FAULT_POINTS.join(', ')}`);
    expect(existsSync(out)).toBe(false);
    expect(tokenObjects(c.f, t)).toEqual([]);
  }, 60_000);

  it('abort refuses the interrupted recovery of another plan, changing nothing', async () => {
    const t = freshTarget(c);
    const out = join(c.f.dir, `rec-plan-${t.label}`);
    expect(recoverCli(c, t, out, { MESHKIT_TEST: '1', MESHKIT_CEREMONY_FAULT_AFTER: 'key-escrow' }).signal).toBe('SIGKILL');
    const other = structuredClone(JSON.parse(readFileSync(t.planPath, 'utf8')) as { Ceremony: Record<string, unknown> });
    other.Ceremony.Name = 'Another plan';
    const e = await abortCeremony(parsePlan(utf8(JSON.stringify(other))), { out, secrets: { token: utf8(t.pin) } }).catch((x: unknown) => x as Error & { code: string });
    expect(e).toMatchObject({ code: ErrorCode.CEREMONY_STATE });
    expect((e as Error).message).toMatch(/interrupted recovery .* not this plan/);
    expect(readdirSync(out)).toEqual(['.staging']);
    expect([...new Set(tokenObjects(c.f, t).map((o) => o.label))].sort()).toEqual([ESC, SIG]);
    expect(abortCli(c, t, out).code).toBe(0);
  }, 90_000);

  it('in process: an error after keys-intent (not a crash) leaves nothing — no objects, no DIR', async () => {
    const t = freshTarget(c);
    const out = join(c.f.dir, `rec-error-${t.label}`);
    await expect(
      recoverCeremony({
        plan: parsePlan(readFileSync(t.planPath)),
        shares: [join(c.f.out, 'shares', '2.txt'), join(c.f.out, 'shares', '5.txt'), join(c.f.out, 'shares', '3.txt')],
        escrowDir: join(c.f.out, 'escrow'),
        out,
        secrets: { token: utf8(t.pin) },
        fault: 'key-escrow',
        faultAction: () => {
          throw new Error('injected failure');
        },
      }),
    ).rejects.toThrow('injected failure');
    expect(existsSync(out)).toBe(false);
    expect(tokenObjects(c.f, t)).toEqual([]);
  }, 60_000);
});

describe.skipIf(softhsmMissing !== undefined)('ceremony recover crash safety, generate-on-token-wrapped (P-256, built CLI, SoftHSM)', () => {
  let c: Ceremony;
  beforeAll(async () => {
    if (!existsSync('dist/cli/commands/ceremony-recovery.js')) throw new Error('dist/ missing or stale: run "npm run build" before these tests');
    c = await ceremony('generate-on-token-wrapped', { Signature: 'P-256', Escrow: 'P-256' });
  }, 60_000);

  it.each([...RECOVERY_FAULT_POINTS])('killed after %s: only announced objects (no AES key), refused, abort, re-run succeeds', async (point) => {
    await crashAbortRerun(c, point);
  }, 90_000);
});
