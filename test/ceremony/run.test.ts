/**
 * `ceremony run` end to end on scratch SoftHSM tokens (in process, and through the built CLI):
 * each key origin, outputs verified with verifyProfile / verifyLog / verifyLogHead, the token's
 * master keys sensitive and non-extractable, k−1 shares fail, no secret in the transcript.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fromUtf8 } from '../../src/core/bytes.js';
import { ErrorCode } from '../../src/core/errors.js';
import { openOfflineEscrow } from '../../src/core/escrow.js';
import { verifyLog, verifyLogHead } from '../../src/core/hashlog.js';
import { publicKeyFromJwk } from '../../src/core/keys.js';
import { verifyProfile } from '../../src/core/profiles.js';
import { combineShares } from '../../src/core/shamir.js';
import { abortCeremony, formatShareFile, parsePlan, runCeremony, parseShareFile, shareCheck, type CeremonySummary } from '../../src/ceremony/index.js';
import { splitSecret } from '../../src/core/shamir.js';
import { udfDigest } from '../../src/core/udf.js';
import { openKeyStore } from '../../src/keystore/index.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { fixture, meshkitCeremony, type CeremonyFixture } from '../helpers/ceremony.js';


function planOf(f: CeremonyFixture) {
  return parsePlan(new Uint8Array(readFileSync(f.planPath)));
}

/** Checks every output of a finished ceremony. */
async function checkOutputs(f: CeremonyFixture, summary: CeremonySummary, escrowed: boolean): Promise<void> {
  const out = f.out;
  expect(existsSync(join(out, '.staging'))).toBe(false);
  expect(readFileSync(join(out, 'plan.json'))).toEqual(readFileSync(f.planPath));
  const master = JSON.parse(readFileSync(join(out, 'master.json'), 'utf8'));
  const personal = JSON.parse(readFileSync(join(out, 'personal.json'), 'utf8'));
  const vm = await verifyProfile(master);
  expect(vm.signerRole).toBe('master-signature-key');
  expect(vm.identifier).toBe(summary.master.identifier);
  const vp = await verifyProfile(personal, { master });
  expect(vp.signerRole).toBe('administration-key');
  const lines = readFileSync(join(out, 'transcript.jsonl'), 'utf8').split('\n').filter((l) => l !== '');
  expect(verifyLog(lines).count).toBe(lines.length);
  const types = lines.map((l) => JSON.parse(l).Type as string);
  expect(types).toEqual(
    escrowed
      ? ['plan', 'preflight', 'keys-intent', 'keys', 'escrow', 'import', 'profiles', 'verify', 'acknowledgement', 'complete']
      : ['plan', 'preflight', 'keys-intent', 'keys', 'profiles', 'verify', 'acknowledgement', 'complete'],
  );
  const head = JSON.parse(readFileSync(join(out, 'transcript.head.json'), 'utf8'));
  const mk = vm.profile as { MasterSignatureKey: { UDF: string; PublicParameters: unknown } };
  const verifiedHead = await verifyLogHead(head, lines, (kid) => (kid === mk.MasterSignatureKey.UDF ? publicKeyFromJwk(mk.MasterSignatureKey.PublicParameters) : undefined));
  expect(verifiedHead.keyId).toBe(mk.MasterSignatureKey.UDF);
  // the token's master keys: present, non-extractable (sensitive is set by the adapter on every private key)
  const store = await openKeyStore(f.tokenUri, f.secrets.token);
  try {
    const keys = await store.list();
    const sig = keys.find((k) => k.label === 'mesh-master-signature');
    const esc = keys.find((k) => k.label === 'mesh-master-escrow');
    expect(sig?.keyId).toBe(summary.master.signatureKey);
    expect(esc?.keyId).toBe(summary.master.escrowKey);
    expect(sig?.extractable).toBe(false);
    expect(esc?.extractable).toBe(false);
    const h = await store.get('mesh-master-signature');
    await expect(h.exportPrivateJwk()).rejects.toMatchObject({ code: ErrorCode.NOT_SUPPORTED });
  } finally {
    await store.close();
  }
  if (f.tokenUri.startsWith('pkcs11:')) {
    // CKA_SENSITIVE and not extractable, read by pkcs11-tool (a second opinion on the adapter)
    const text = execFileSync(
      'pkcs11-tool',
      ['--module', f.hsm.modulePath, '--token-label', f.tokenLabel, '--login', '--pin', f.pinEnv['MASTER_PIN']!, '--list-objects', '--type', 'privkey'],
      { env: f.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const access = [...text.matchAll(/^\s*Access:\s*(.*)$/gm)].map((m) => m[1]!.split(',').map((a) => a.trim()));
    expect(access).toHaveLength(2);
    for (const a of access) {
      expect(a).toContain('sensitive');
      expect(a).not.toContain('extractable');
    }
  }
  const account = JSON.parse(readFileSync(join(out, 'account.json'), 'utf8'));
  expect(account.Account.Identifier).toBe(vm.identifier);
  if (!escrowed) {
    expect(existsSync(join(out, 'escrow'))).toBe(false);
    expect(existsSync(join(out, 'shares'))).toBe(false);
    return;
  }
  // shares: k recombine; k−1 do not; Check holds; the blob opens to the profile's keys
  const shareFiles = readdirSync(join(out, 'shares')).sort();
  const plan = planOf(f);
  expect(shareFiles).toHaveLength(plan.custodians.length);
  const parsed = shareFiles.map((s) => parseShareFile(readFileSync(join(out, 'shares', s), 'utf8')));
  parsed.forEach((p, i) => {
    expect(p.checkValid).toBe(true);
    expect(p.master).toBe(vm.identifier);
    expect(p.custodian).toBe(plan.custodians[p.index - 1]);
    expect(p.threshold).toBe(plan.threshold);
    expect(i).toBeGreaterThanOrEqual(0);
  });
  const blobs = readdirSync(join(out, 'escrow'));
  expect(blobs).toEqual([`${summary.escrow?.blobId}.json`]);
  const blob = readFileSync(join(out, 'escrow', blobs[0]!), 'utf8');
  const k = plan.threshold;
  const key = combineShares(parsed.slice(parsed.length - k).map((p) => p.share));
  const set = openOfflineEscrow(blob, key);
  expect(set.MasterSignatureKey.kid).toBe(summary.master.signatureKey);
  expect(set.MasterEscrowKeys[0]?.kid).toBe(summary.master.escrowKey);
  expect(() => combineShares(parsed.slice(0, k - 1).map((p) => p.share))).toThrow(expect.objectContaining({ code: ErrorCode.SHARES_INSUFFICIENT }));
  // no secret in the transcript: no share, no private key, no PIN
  const transcript = readFileSync(join(out, 'transcript.jsonl'), 'utf8') + readFileSync(join(out, 'transcript.head.json'), 'utf8');
  for (const p of parsed) {
    expect(transcript).not.toContain(p.share);
    expect(transcript).not.toContain(p.share.replace(/-/g, ''));
  }
  for (const jwk of [set.MasterSignatureKey, ...set.MasterEscrowKeys]) {
    expect(transcript).not.toContain(jwk.d);
    expect(transcript).not.toContain(Buffer.from(jwk.d, 'base64url').toString('hex'));
  }
  expect(transcript).not.toContain(Buffer.from(key).toString('hex'));
  expect(transcript).not.toContain(Buffer.from(key).toString('base64url'));
  for (const pin of Object.values(f.pinEnv)) expect(transcript).not.toContain(pin);
}

describe.skipIf(softhsmMissing)('ceremony run (SoftHSM, in process)', () => {
  it('import-with-escrow, Ed448 + X448: outputs verify, keys non-extractable, k−1 shares fail, no secret in the transcript', async () => {
    const f = await fixture({ origin: 'import-with-escrow' });
    const steps: string[] = [];
    const summary = await runCeremony(planOf(f), { out: f.out, secrets: f.secrets, onStep: (s) => steps.push(s.step), operator: 'Olivia' });
    expect(summary.escrow?.verifiedWith).toHaveLength(3);
    expect(steps.at(-1)).toBe('complete');
    await checkOutputs(f, summary, true);
  });

  it('generate-on-token, Ed448 + X448: no blob, no shares', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const summary = await runCeremony(planOf(f), { out: f.out, secrets: f.secrets });
    expect(summary.escrow).toBeUndefined();
    await checkOutputs(f, summary, false);
  });

  it('import-with-escrow with P-256 algorithms, 2 of 2', async () => {
    const f = await fixture({ origin: 'import-with-escrow', algorithms: { Signature: 'P-256', Escrow: 'P-256' }, threshold: 2, custodians: ['Carol', 'Dave'] });
    const summary = await runCeremony(planOf(f), { out: f.out, secrets: f.secrets });
    await checkOutputs(f, summary, true);
  });

  it('generate-on-token-wrapped with Ed448 is refused naming the token and CKM_AES_KEY_WRAP_PAD; nothing is left', async () => {
    const f = await fixture({ origin: 'generate-on-token-wrapped' });
    await expect(runCeremony(planOf(f), { out: f.out, secrets: f.secrets })).rejects.toThrow(
      new RegExp(`token "${f.tokenLabel}" cannot wrap Ed448 private keys with CKM_AES_KEY_WRAP_PAD`),
    );
    expect(existsSync(f.out)).toBe(false);
  });

  it('a non-empty DIR is refused and left as it was', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    mkdirSync(f.out);
    writeFileSync(join(f.out, 'notes.txt'), 'x');
    await expect(runCeremony(planOf(f), { out: f.out, secrets: f.secrets })).rejects.toMatchObject({ code: ErrorCode.CEREMONY_STATE, message: expect.stringContaining('not empty') });
    expect(readdirSync(f.out)).toEqual(['notes.txt']);
  });

  it('a token already holding the labels is refused with abort instructions', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const store = await openKeyStore(f.tokenUri, f.secrets.token);
    await store.generate('mesh-master-signature', 'Ed448');
    await store.close();
    await expect(runCeremony(planOf(f), { out: f.out, secrets: f.secrets })).rejects.toMatchObject({
      code: ErrorCode.CEREMONY_STATE,
      message: expect.stringContaining('meshkit ceremony abort'),
    });
    expect(existsSync(f.out)).toBe(false);
  });

  it('interactive: steps confirmed, shares presented one at a time, witnesses type their names', async () => {
    const f = await fixture({ origin: 'import-with-escrow' });
    const seen: string[] = [];
    const summary = await runCeremony(planOf(f), {
      out: f.out,
      secrets: f.secrets,
      interactive: true,
      operator: 'Olivia',
      confirm: {
        confirmStep: async (step) => (seen.push(`step:${step}`), true),
        presentShare: async (info) => {
          // one file at a time: this custodian's file exists, the next one not yet
          expect(existsSync(join(f.out, '.staging', 'shares', `${info.index}.txt`))).toBe(true);
          expect(existsSync(join(f.out, '.staging', 'shares', `${info.index + 1}.txt`))).toBe(false);
          seen.push(`share:${info.custodian}`);
        },
        acknowledge: async (who) => (seen.push(`ack:${who}`), who),
      },
    });
    expect(seen.filter((s) => s.startsWith('share:'))).toEqual(['share:Carol', 'share:Dave', 'share:Erin', 'share:Frank', 'share:Grace']);
    expect(seen.filter((s) => s.startsWith('ack:'))).toEqual(['ack:Olivia', 'ack:Heidi', 'ack:Ivan']);
    const lines = readFileSync(join(f.out, 'transcript.jsonl'), 'utf8').split('\n').filter((l) => l !== '');
    const ack = lines.map((l) => JSON.parse(l)).find((e) => e.Type === 'acknowledgement');
    expect(ack.Body.Acknowledgements).toEqual([
      { Name: 'Olivia', Role: 'operator', Confirmed: 'typed name' },
      { Name: 'Heidi', Role: 'witness', Confirmed: 'typed name' },
      { Name: 'Ivan', Role: 'witness', Confirmed: 'typed name' },
    ]);
    await checkOutputs(f, summary, true);
  });

  it('a software store (file:) as the Token: import-with-escrow imports non-extractable', async () => {
    const f = await fixture({ origin: 'import-with-escrow', softwareToken: true });
    const summary = await runCeremony(planOf(f), { out: f.out, secrets: f.secrets });
    expect(summary.token.kind).toBe('software');
    await checkOutputs(f, summary, true);
  });
});

describe.skipIf(softhsmMissing)('meshkit ceremony run (built CLI)', () => {
  beforeAll(() => {
    if (!existsSync('dist/cli/commands/ceremony.js')) throw new Error('dist/ missing or stale: run "npm run build" before these tests');
  });

  it('--yes --json runs import-with-escrow with the admin key on a second token', async () => {
    const f = await fixture({ origin: 'import-with-escrow' });
    const r = meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', '--json', ...f.pinArgs], f);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as CeremonySummary;
    await checkOutputs(f, summary, true);
    const ack = readFileSync(join(f.out, 'transcript.jsonl'), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)).find((e) => e.Type === 'acknowledgement');
    expect(ack.Body.Acknowledgements.every((a: { Confirmed: string }) => a.Confirmed === 'non-interactive')).toBe(true);
  });

  it('--yes without the token PIN exits 2 naming the option; nothing is left', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const r = meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', '--admin-pin-env', 'alice-card=ADMIN_PIN'], f);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--pin-file PATH, --pin-env VAR or set MESHKIT_PIN/);
    expect(existsSync(f.out)).toBe(false);
  });

  it('--yes without the administrator PIN exits 2 naming --admin-pin-env', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const r = meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', '--pin-env', 'MASTER_PIN'], f);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--admin-pin-env alice-card=VAR/);
    expect(existsSync(f.out)).toBe(false);
  });

  it('wrapped origin with Ed448 exits 1 naming the token and CKM_AES_KEY_WRAP_PAD', async () => {
    const f = await fixture({ origin: 'generate-on-token-wrapped' });
    const r = meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', ...f.pinArgs], f);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`token "${f.tokenLabel}" cannot wrap Ed448 private keys with CKM_AES_KEY_WRAP_PAD`);
  });

  it('a wrong administrator PIN exits 1 naming the administrator; a wrong token PIN exits 1; nothing is left', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const badAdmin = meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', '--pin-env', 'MASTER_PIN', '--admin-pin-env', 'alice-card=BAD'], f, { BAD: '0000' });
    expect(badAdmin.code).toBe(1);
    expect(badAdmin.stderr).toMatch(/administrator "alice-card".*ERR_PKCS11_PIN_INCORRECT/);
    expect(existsSync(f.out)).toBe(false);
    const badToken = meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', '--pin-env', 'BAD', '--admin-pin-env', 'alice-card=ADMIN_PIN'], f, { BAD: '0000' });
    expect(badToken.code).toBe(1);
    expect(badToken.stderr).toContain('ERR_PKCS11_PIN_INCORRECT');
    expect(existsSync(f.out)).toBe(false);
  });

  it('generate-on-token-wrapped with P-256 runs through the CLI (wrapping details: wrapped.test.ts)', async () => {
    const f = await fixture({ origin: 'generate-on-token-wrapped', algorithms: { Signature: 'P-256', Escrow: 'P-256' } });
    const r = meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', ...f.pinArgs], f);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(f.out, 'transcript.head.json'))).toBe(true);
    expect(existsSync(join(f.out, '.staging'))).toBe(false);
  });

  it('the fault switch is refused without MESHKIT_TEST=1', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const r = meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', ...f.pinArgs], f, { MESHKIT_CEREMONY_FAULT_AFTER: 'keys' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/test-only/);
    expect(existsSync(f.out)).toBe(false);
  });

  it('a shares file a custodian reads back holds exactly one share', async () => {
    const f = await fixture({ origin: 'import-with-escrow', threshold: 2, custodians: ['Carol', 'Dave', 'Erin'] });
    const r = meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', ...f.pinArgs], f);
    expect(r.code).toBe(0);
    for (const s of readdirSync(join(f.out, 'shares'))) {
      const text = fromUtf8(new Uint8Array(readFileSync(join(f.out, 'shares', s))));
      expect(text.match(/^S-UDF: /gm)).toHaveLength(1);
      expect(text).toMatch(/^# Mesh master key escrow share — keep offline\. 2 of 3 shares recover the master keys\.$/m);
    }
  });
});

describe('share files', () => {
  const [share] = splitSecret(new Uint8Array(32).fill(7), 2, 3);
  const file = { ceremony: 'C', custodian: 'Carol', index: 1, count: 3, threshold: 2, master: 'MB2G-AAAA', blob: 'MDQK-BBBB', date: '2026-11-28T04:00:00.000Z', share: share! };

  it('format and parse round-trip; Check is the 100-bit share-check digest', () => {
    const text = formatShareFile(file);
    const parsed = parseShareFile(text);
    expect(parsed).toMatchObject({ ...file, checkValid: true });
    expect(parsed.check).toBe(udfDigest(new TextEncoder().encode(share!), { contentType: 'application/meshkit-share-check', bits: 100 }));
    expect(shareCheck(share!)).toBe(parsed.check);
    expect(text).toContain('# Mesh master key escrow share — keep offline. 2 of 3 shares recover the master keys.');
  });

  it('a mistyped share fails its Check (corrupted), comments and blank lines are ignored', () => {
    const text = formatShareFile(file);
    const s = share!;
    const typo = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
    const parsed = parseShareFile(`# note\n\n${text.replace(s, typo)}`);
    expect(parsed.checkValid).toBe(false);
  });

  it.each([
    ['a missing key', (t: string) => t.replace(/^Blob: .*$/m, ''), /missing Blob/],
    ['a repeated key', (t: string) => t + 'Blob: X\n', /Blob given twice/],
    ['an unknown key', (t: string) => t + 'Colour: red\n', /unknown key "Colour"/],
    ['a bad Share line', (t: string) => t.replace('Share: 1 of 3', 'Share: one'), /Share must be "i of n"/],
    ['an index beyond n', (t: string) => t.replace('Share: 1 of 3', 'Share: 4 of 3'), /out of range/],
    ['a line without a colon', (t: string) => t + 'hello\n', /is not "Key: value"/],
  ])('%s is refused', (_n, edit, message) => {
    expect(() => parseShareFile(edit(formatShareFile(file)))).toThrow(expect.objectContaining({ code: ErrorCode.SHARE_INVALID, message: expect.stringMatching(message) }));
  });
});

describe.skipIf(softhsmMissing)('ceremony abort (in process)', () => {
  it('refuses a directory with no interrupted ceremony, and a finished one', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    await expect(abortCeremony(planOf(f), { out: f.out, secrets: f.secrets })).rejects.toMatchObject({ code: ErrorCode.CEREMONY_STATE });
    await runCeremony(planOf(f), { out: f.out, secrets: f.secrets });
    await expect(abortCeremony(planOf(f), { out: f.out, secrets: f.secrets })).rejects.toThrow(/finished ceremony/);
  });

  it('refuses another plan, and leaves a foreign key under a recorded label alone', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const plan = planOf(f);
    await expect(
      runCeremony(plan, { out: f.out, secrets: f.secrets, fault: 'keys', faultAction: () => { throw new Error('fault'); } }),
    ).rejects.toThrow('fault');
    // another plan
    f.writePlan({ Ceremony: { ...f.plan.Ceremony, Name: 'Another' } });
    await expect(abortCeremony(planOf(f), { out: f.out, secrets: f.secrets })).rejects.toThrow(/not this plan/);
    // replace the signature key by a foreign one with the same label
    const store = await openKeyStore(f.tokenUri, f.secrets.token);
    await store.delete('mesh-master-signature');
    const foreign = await store.generate('mesh-master-signature', 'Ed448');
    await store.close();
    await expect(abortCeremony(plan, { out: f.out, secrets: f.secrets })).rejects.toThrow(/left alone; nothing was removed/);
    const again = await openKeyStore(f.tokenUri, f.secrets.token);
    expect((await again.list()).map((k) => k.keyId)).toContain(foreign.info.keyId);
    await again.close();
    expect(existsSync(join(f.out, '.staging'))).toBe(true);
  });
});
