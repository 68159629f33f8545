/**
 * `recoverCeremony` (src/ceremony/recover.ts) and `meshkit ceremony recover`: a ceremony run on one
 * scratch SoftHSM token is recovered onto a fresh (third) token from k share files in any order;
 * the recovered keys sign and agree under the Master Profile keys. Too few, corrupted, duplicated,
 * foreign and wrong shares are named; a tampered blob does not decrypt; a token that already holds
 * the labels is refused; generate-on-token has no escrow.
 */
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { verify as nodeVerify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { utf8 } from '../../src/core/bytes.js';
import { escrowBlobId } from '../../src/core/escrow.js';
import { splitSecret } from '../../src/core/shamir.js';
import { ErrorCode } from '../../src/core/errors.js';
import { verifyLogHead } from '../../src/core/hashlog.js';
import { publicKeyFromJwk, publicKeyObject } from '../../src/core/keys.js';
import { readProfile, type MasterProfile } from '../../src/core/profiles.js';
import { parsePlan, type CeremonyPlan } from '../../src/ceremony/plan.js';
import { runCeremony } from '../../src/ceremony/run.js';
import { formatShareFile, parseShareFile } from '../../src/ceremony/files.js';
import { judgeShares, recombine, recoverCeremony, type RecoverySummary } from '../../src/ceremony/recover.js';
import { escrowApplicationKey, recoverApplicationKey } from '../../src/ceremony/online-escrow.js';
import { transcriptLines } from '../../src/ceremony/verify.js';
import { Pkcs11KeyStore } from '../../src/keystore/pkcs11/index.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { makeCeremonyFixture, type CeremonyFixture } from '../helpers/ceremony.js';
import { testKey } from '../helpers/software-signer.js';
import { runMeshkit } from '../helpers/cli.js';

const err = async (p: Promise<unknown>): Promise<Error & { code?: string }> => {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
};

const cli = runMeshkit;

describe.skipIf(softhsmMissing !== undefined)('ceremony recover (SoftHSM)', () => {
  let a: CeremonyFixture; // the ceremony to recover
  let b: CeremonyFixture; // another ceremony: foreign and wrong shares
  let master: MasterProfile;
  let n = 0;

  beforeAll(async () => {
    a = await makeCeremonyFixture({ origin: 'import-with-escrow' });
    b = await makeCeremonyFixture({ origin: 'import-with-escrow' });
    await runCeremony(parsePlan(readFileSync(a.planPath)), { out: a.out, secrets: a.secrets, operator: 'Olivia' });
    await runCeremony(parsePlan(readFileSync(b.planPath)), { out: b.out, secrets: b.secrets, operator: 'Olivia' });
    master = readProfile(readFileSync(join(a.out, 'master.json'), 'utf8'), 'MasterProfile').profile;
  });
  afterAll(() => {
    a?.cleanup();
    b?.cleanup();
  });

  const share = (f: CeremonyFixture, i: number): string => join(f.out, 'shares', `${i}.txt`);
  const shareText = (f: CeremonyFixture, i: number): string => readFileSync(share(f, i), 'utf8');

  /** A fresh token and the plan of ceremony `a` pointed at it. */
  function freshTarget(): { plan: CeremonyPlan; label: string; pin: string; planPath: string } {
    const label = `Fresh-${process.pid % 100000}-${++n}`;
    const pin = `fpin-${n}-3306`;
    a.hsm.addToken(label, pin);
    const planObj = structuredClone(a.plan);
    planObj.Ceremony.Token = a.hsm.uri(label);
    const planPath = join(a.dir, `recover-plan-${n}.json`);
    writeFileSync(planPath, JSON.stringify(planObj, null, 2) + '\n');
    return { plan: parsePlan(readFileSync(planPath)), label, pin, planPath };
  }
  const outDir = (): string => join(a.dir, `recovery-${++n}`);

  it('recovers onto a fresh (third) token from shares in any order; the keys sign and agree under the Master Profile keys', async () => {
    const t = freshTarget();
    const steps: string[] = [];
    const summary: RecoverySummary = await recoverCeremony({
      plan: t.plan,
      shares: [share(a, 5), share(a, 2), share(a, 4)],
      escrowDir: join(a.out, 'escrow'),
      out: outDir(),
      secrets: { token: utf8(t.pin) },
      onStep: (s) => steps.push(s.step),
    });
    expect(summary.master).toBe(master.Identifier);
    expect(summary.used).toEqual([2, 4, 5]);
    expect(summary.keys.map((k) => k.keyId)).toEqual([master.MasterSignatureKey.UDF, master.MasterEscrowKeys[0]?.UDF]);
    expect(steps).toEqual(['master', 'share', 'share', 'share', 'recombine', 'decrypt', 'import', 'transcript']);

    const store = await Pkcs11KeyStore.open(a.hsm.uri(t.label), utf8(t.pin));
    try {
      const sig = await store.get('mesh-master-signature');
      expect(sig.info.extractable).toBe(false);
      expect(sig.info.keyId).toBe(master.MasterSignatureKey.UDF);
      const msg = utf8('signed by the recovered master key');
      const signature = await sig.signer().sign(msg);
      expect(nodeVerify(null, msg, publicKeyObject(publicKeyFromJwk(master.MasterSignatureKey.PublicParameters)), signature)).toBe(true);
      // The recovered escrow key opens data escrowed to the Master Profile's escrow key.
      const esc = await store.get('mesh-master-escrow');
      expect(esc.info.keyId).toBe(master.MasterEscrowKeys[0]?.UDF);
      const app = testKey('X25519');
      const jwe = await escrowApplicationKey(app.privateJwk, [], master.MasterEscrowKeys[0]?.PublicParameters as never);
      expect((await recoverApplicationKey(jwe, esc.decrypter())).privateJwk?.d).toBe(app.privateJwk.d);
    } finally {
      await store.close();
    }
    // The recovery transcript's head is signed by the master key.
    const lines = transcriptLines(readFileSync(join(summary.out, 'recovery-transcript.jsonl'), 'utf8'));
    expect(lines.map((l) => (JSON.parse(l) as { Type: string }).Type)).toEqual(['recovery', 'shares', 'blob', 'keys-intent', 'import', 'complete']);
    expect(lines.join('\n')).not.toMatch(/S-UDF|SA[A-Z0-9]{3}-|"d":/);
    const head = JSON.parse(readFileSync(join(summary.out, 'recovery-transcript.head.json'), 'utf8')) as unknown;
    const key = publicKeyFromJwk(master.MasterSignatureKey.PublicParameters);
    const verified = await verifyLogHead(head, lines, (kid) => (kid === master.MasterSignatureKey.UDF ? key : undefined));
    expect(verified.Count).toBe(6);
  });

  it('a P-256 import-with-escrow ceremony recovers too (ES256 signature and P-256 agreement tested on the token)', async () => {
    const p = await makeCeremonyFixture({ origin: 'import-with-escrow', algorithms: { Signature: 'P-256', Escrow: 'P-256' }, threshold: 2, custodians: ['Carol', 'Dave', 'Erin'] });
    try {
      await runCeremony(parsePlan(readFileSync(p.planPath)), { out: p.out, secrets: p.secrets, operator: 'Olivia' });
      const label = `FreshP-${process.pid % 100000}-${++n}`;
      p.hsm.addToken(label, '7788');
      const planObj = structuredClone(p.plan);
      planObj.Ceremony.Token = p.hsm.uri(label);
      const s = await recoverCeremony({
        plan: parsePlan(utf8(JSON.stringify(planObj))),
        shares: [join(p.out, 'shares', '3.txt'), join(p.out, 'shares', '1.txt')],
        blob: join(p.out, 'escrow', readdirSync(join(p.out, 'escrow'))[0] as string),
        out: join(p.dir, 'recovery'),
        secrets: { token: utf8('7788') },
      });
      const m = readProfile(readFileSync(join(p.out, 'master.json'), 'utf8'), 'MasterProfile').profile;
      expect(s.keys.map((k) => k.keyId)).toEqual([m.MasterSignatureKey.UDF, m.MasterEscrowKeys[0]?.UDF]);
      expect(s.used).toEqual([1, 3]);
    } finally {
      p.cleanup();
    }
  });

  it('recovers onto a software key store (file:) as well — the rehearsal / demo path', async () => {
    const planObj = structuredClone(a.plan);
    planObj.Ceremony.Token = `file:${join(a.dir, `recovered-${++n}.keys`)}`;
    const s = await recoverCeremony({
      plan: parsePlan(utf8(JSON.stringify(planObj))),
      shares: [share(a, 4), share(a, 3), share(a, 1)],
      master: join(a.out, 'master.json'),
      out: outDir(),
      secrets: { token: utf8('recovery passphrase') },
    });
    expect(s.keys.map((k) => k.keyId)).toEqual([master.MasterSignatureKey.UDF, master.MasterEscrowKeys[0]?.UDF]);
    expect(s.keys[0]?.location).toMatch(/^file:.*#mesh-master-signature$/);
  });

  it('k−1 shares fail with "need 1 more share"', async () => {
    const t = freshTarget();
    const e = await err(recoverCeremony({ plan: t.plan, shares: [share(a, 3), share(a, 1)], escrowDir: join(a.out, 'escrow'), out: outDir(), secrets: { token: utf8(t.pin) } }));
    expect(e.code).toBe(ErrorCode.SHARES_INSUFFICIENT);
    expect(e.message).toMatch(/^need 1 more share: 2 usable of the 3 needed$/);
  });

  it('a corrupted share (one character changed, Check fails) is named corrupted', async () => {
    const parsed = parseShareFile(shareText(a, 4));
    const i = 20;
    const corrupted = formatShareFile({ ...parsed, share: parsed.share.slice(0, i) + (parsed.share[i] === 'Q' ? 'R' : 'Q') + parsed.share.slice(i + 1) });
    const t = freshTarget();
    const e = await err(recoverCeremony({ plan: t.plan, shares: [share(a, 1), corrupted, share(a, 2)], escrowDir: join(a.out, 'escrow'), out: outDir(), secrets: { token: utf8(t.pin) } }));
    expect(e.code).toBe(ErrorCode.SHARES_INSUFFICIENT);
    expect(e.message).toBe('need 1 more share: 2 usable of the 3 needed (share 2: corrupted — its Check line does not match its S-UDF (mistyped or damaged))');
  });

  it('a duplicated share is named', async () => {
    const t = freshTarget();
    const e = await err(recoverCeremony({ plan: t.plan, shares: [share(a, 1), share(a, 2), share(a, 1)], escrowDir: join(a.out, 'escrow'), out: outDir(), secrets: { token: utf8(t.pin) } }));
    expect(e.message).toBe(`need 1 more share: 2 usable of the 3 needed (${share(a, 1)}: duplicate — the same share as ${share(a, 1)})`);
  });

  it('a share of another ceremony is named foreign', async () => {
    const t = freshTarget();
    const e = await err(recoverCeremony({ plan: t.plan, shares: [share(a, 1), share(b, 2), share(a, 3)], escrowDir: join(a.out, 'escrow'), out: outDir(), secrets: { token: utf8(t.pin) } }));
    expect(e.code).toBe(ErrorCode.SHARES_INSUFFICIENT);
    expect(e.message).toMatch(new RegExp(`\\(${share(b, 2).replace(/[.]/g, '\\.')}: foreign — its Master line M[A-Z0-9-]+ is not this master ${master.Identifier}\\)$`));
  });

  /** Ceremony b's share 3 with ceremony a's Master and Blob lines: valid format, another polynomial. */
  function wrongShare(): string {
    const mine = parseShareFile(shareText(a, 3));
    const theirs = parseShareFile(shareText(b, 3));
    return formatShareFile({ ...theirs, master: mine.master, blob: mine.blob, ceremony: mine.ceremony, custodian: mine.custodian });
  }

  it('a wrong share (same Master line, another polynomial) is detected after recombination', async () => {
    const t = freshTarget();
    const e = await err(recoverCeremony({ plan: t.plan, shares: [share(a, 1), share(a, 2), wrongShare()], escrowDir: join(a.out, 'escrow'), out: outDir(), secrets: { token: utf8(t.pin) } }));
    expect(e.code).toBe(ErrorCode.SHARES_INCONSISTENT);
    expect(e.message).toMatch(/^wrong share: shares 1 \(.*\), 2 \(.*\), 3 \(share 3\) do not recombine to the key of blob /);
    // With one more good share the wrong one is singled out.
    const { verdicts, usable } = await judgeShares([share(a, 1), wrongShare(), share(a, 2), share(a, 4)], master.Identifier);
    const blob = parseShareFile(shareText(a, 1)).blob;
    const { key, used } = recombine(usable, verdicts, blob);
    expect(key).toHaveLength(32);
    expect(used).toEqual([1, 2, 4]);
    expect(verdicts.map((v) => v.problem)).toEqual([undefined, 'wrong', undefined, undefined]);
  });

  it('a tampered blob does not decrypt', async () => {
    const copy = join(a.dir, `tampered-${++n}`);
    cpSync(a.out, copy, { recursive: true });
    const [name] = readdirSync(join(copy, 'escrow'));
    const path = join(copy, 'escrow', name as string);
    const blob = JSON.parse(readFileSync(path, 'utf8')) as { OfflineEscrowEntry: { EncryptedData: { ciphertext: string } } };
    const ct = blob.OfflineEscrowEntry.EncryptedData.ciphertext;
    blob.OfflineEscrowEntry.EncryptedData.ciphertext = ct.slice(0, 10) + (ct[10] === 'A' ? 'B' : 'A') + ct.slice(11);
    writeFileSync(path, JSON.stringify(blob));
    const t = freshTarget();
    const e = await err(recoverCeremony({ plan: t.plan, shares: [share(a, 1), share(a, 2), share(a, 3)], escrowDir: join(copy, 'escrow'), out: outDir(), secrets: { token: utf8(t.pin) } }));
    expect(e.code).toBe(ErrorCode.ESCROW_INVALID);
    expect(e.message).toMatch(/does not decrypt under this session key \(tampered or damaged\)$/);
    expect(await tokenLabels(a, t.label, t.pin)).toEqual([]);
  });

  it('a target token that already holds the labels is refused (nothing imported)', async () => {
    const plan = parsePlan(readFileSync(a.planPath)); // the original token
    const e = await err(recoverCeremony({ plan, shares: [share(a, 1), share(a, 2), share(a, 3)], master: join(a.out, 'master.json'), out: outDir(), secrets: { token: a.secrets.token } }));
    expect(e.code).toBe(ErrorCode.CEREMONY_STATE);
    expect(e.message).toMatch(/already holds keys labelled "mesh-master-signature", "mesh-master-escrow": recover onto a fresh token/);
  });

  it('generate-on-token ceremonies have no escrow: recover says so', async () => {
    const planObj = structuredClone(a.plan);
    planObj.Ceremony.KeyOrigin = 'generate-on-token';
    const e = await err(recoverCeremony({ plan: parsePlan(utf8(JSON.stringify(planObj))), shares: [share(a, 1)], escrowDir: join(a.out, 'escrow'), out: outDir(), secrets: { token: utf8('x') } }));
    expect(e.code).toBe(ErrorCode.CEREMONY_STATE);
    expect(e.message).toMatch(/generate-on-token: its master keys were made on the token and never left it, so there is no offline escrow/);
  });

  it('a wrapped-origin plan given an import-with-escrow blob is refused before the token is touched', async () => {
    const planObj = structuredClone(a.plan);
    Object.assign(planObj.Ceremony, { KeyOrigin: 'generate-on-token-wrapped', Algorithms: { Signature: 'P-256', Escrow: 'P-256' } });
    const e = await err(recoverCeremony({
      plan: parsePlan(utf8(JSON.stringify(planObj))),
      shares: [share(a, 1), share(a, 2), share(a, 3)],
      escrowDir: join(a.out, 'escrow'),
      out: outDir(),
      secrets: { token: utf8('x') },
    }));
    expect(e.code).toBe(ErrorCode.CEREMONY_VERIFY);
    expect(e.message).toMatch(/generate-on-token-wrapped|wrapped/u);
  });

  it('meshkit ceremony recover --yes onto a fresh token, then ceremony verify of the original', async () => {
    const t = freshTarget();
    const out = outDir();
    const r = await cli(
      ['ceremony', 'recover', '--plan', t.planPath, '--share', share(a, 3), '--share', share(a, 1), '--share', share(a, 5), '--share', share(b, 1),
        '--escrow-dir', join(a.out, 'escrow'), '--out', out, '--yes', '--pin-env', 'FRESH_PIN', '--json'],
      { FRESH_PIN: t.pin },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as RecoverySummary;
    expect(s.used).toEqual([1, 3, 5]);
    expect(s.shares.find((v) => v.name === share(b, 1))?.problem).toBe('foreign');
    const bad = await cli(['ceremony', 'recover', '--plan', t.planPath, '--share', share(a, 3), '--escrow-dir', join(a.out, 'escrow'), '--out', outDir(), '--yes', '--pin-env', 'FRESH_PIN'], { FRESH_PIN: t.pin });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/\nmeshkit: need 2 more shares: 1 usable of the 3 needed \[ERR_SHARES_INSUFFICIENT\]\n$/);

    const ok = await cli(['ceremony', 'verify', a.out]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/transcript +10 entries linked/);
    const copy = join(a.dir, `verify-${++n}`);
    cpSync(a.out, copy, { recursive: true });
    writeFileSync(join(copy, 'plan.json'), readFileSync(join(copy, 'plan.json'), 'utf8') + ' ');
    const failed = await cli(['ceremony', 'verify', copy]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^meshkit: ceremony verify: plan\.json: edited \(fingerprint /);
  });
});

/** The key labels on a token. */
async function tokenLabels(f: CeremonyFixture, label: string, pin: string): Promise<string[]> {
  const store = await Pkcs11KeyStore.open(f.hsm.uri(label), utf8(pin));
  try {
    return (await store.list()).map((k) => k.label);
  } finally {
    await store.close();
  }
}

describe('share judgement on hand-made share files (no token)', () => {
  const masterA = 'MA7U-MVLY-PUUB-YL3V-FRUM-N4NP-F74M';
  const masterB = 'MBXX-MVLY-PUUB-YL3V-FRUM-N4NP-F74M';
  const secret = new Uint8Array(32).fill(7);
  const other = new Uint8Array(32).fill(9);
  const blob = escrowBlobId(secret);
  const card = (s: string, i: number, over: Partial<Parameters<typeof formatShareFile>[0]> = {}): string =>
    formatShareFile({ ceremony: 'Hand-made', custodian: `C${i}`, index: i, count: 5, threshold: 3, master: masterA, blob, date: '2026-11-28T04:00:00.000Z', share: s, ...over });
  const good = splitSecret(secret, 3, 5);
  const bad = splitSecret(other, 3, 5);

  it('names invalid, corrupted, foreign and duplicate shares and keeps the usable ones', async () => {
    const typo = (good[1] as string).replace(/-(.)/, (_m, c: string) => `-${c === 'A' ? 'B' : 'A'}`);
    const { verdicts, usable } = await judgeShares(
      [
        'not a share file\n',
        card(good[0] as string, 1),
        card(good[1] as string, 2, { check: parseShareFile(card(typo, 2)).check }),
        card(good[2] as string, 3, { master: masterB }),
        card(good[0] as string, 1, { custodian: 'Copy' }),
        card(good[3] as string, 4, { blob: 'MOTHER-BLOB' }),
        card(good[4] as string, 5),
      ],
      masterA,
    );
    expect(verdicts.map((v) => v.problem)).toEqual(['invalid', undefined, 'corrupted', 'foreign', 'duplicate', 'foreign', undefined]);
    expect(verdicts[0]?.detail).toMatch(/^share file: line 1 is not "Key: value"$/);
    expect(verdicts[5]?.detail).toBe(`it is a share of blob MOTHER-BLOB, not of ${blob}`);
    expect(usable.map((c) => c.file.index)).toEqual([1, 5]);
    expect(() => recombine(usable, verdicts, blob)).toThrow(/^need 1 more share: 2 usable of the 3 needed \(share 1: invalid/);
  });

  it('a share whose S-UDF index disagrees with its Share line is corrupted', async () => {
    const { verdicts } = await judgeShares([card(good[1] as string, 1)], masterA);
    expect(verdicts[0]?.problem).toBe('corrupted');
    expect(verdicts[0]?.detail).toMatch(/disagrees with its Share\/Threshold lines/);
  });

  it('recombines from any k of more, naming a share of another polynomial as wrong', async () => {
    const shares = [card(bad[1] as string, 2), card(good[4] as string, 5), card(good[0] as string, 1), card(good[2] as string, 3)];
    const { verdicts, usable } = await judgeShares(shares, masterA);
    const { key, used } = recombine(usable, verdicts, blob);
    expect(Buffer.from(key).equals(Buffer.from(secret))).toBe(true);
    expect(used).toEqual([1, 3, 5]);
    expect(verdicts.map((v) => v.problem)).toEqual(['wrong', undefined, undefined, undefined]);
  });

  it('no usable share at all still says how many are needed', async () => {
    const { verdicts, usable } = await judgeShares([card(good[0] as string, 1, { master: masterB })], masterA);
    expect(() => recombine(usable, verdicts, blob)).toThrow(/^need 3 more shares: 0 usable of the 3 needed \(share 1: foreign/);
  });
});
