/**
 * `verifyCeremony` (src/ceremony/verify.ts) and `meshkit ceremony verify`: an untouched ceremony
 * (run on scratch SoftHSM tokens) passes; every tampering is named in one line — which file, which
 * transcript line and what does not hold.
 */
import { cpSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromUtf8 } from '../../src/core/bytes.js';
import { ErrorCode } from '../../src/core/errors.js';
import { HashLog, signLogHead } from '../../src/core/hashlog.js';
import { composePersonalProfile, signProfile, type SignedProfile } from '../../src/core/profiles.js';
import { parsePlan } from '../../src/ceremony/plan.js';
import { runCeremony } from '../../src/ceremony/run.js';
import { formatShareFile, parseShareFile } from '../../src/ceremony/files.js';
import { transcriptLines, verifyCeremony } from '../../src/ceremony/verify.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { makeCeremonyFixture, type CeremonyFixture } from '../helpers/ceremony.js';
import { testKey, testSigner } from '../helpers/software-signer.js';

/** Transcript line numbers (1-based) of a finished import-with-escrow ceremony. */
const LINE = { plan: 1, preflight: 2, 'keys-intent': 3, keys: 4, escrow: 5, import: 6, profiles: 7, verify: 8, acknowledgement: 9, complete: 10 };

describe.skipIf(softhsmMissing !== undefined)('ceremony verify', () => {
  let f: CeremonyFixture;
  let copies = 0;

  beforeAll(async () => {
    f = await makeCeremonyFixture({ origin: 'import-with-escrow' });
    await runCeremony(parsePlan(readFileSync(f.planPath)), { out: f.out, secrets: f.secrets, operator: 'Olivia' });
  });
  afterAll(() => f?.cleanup());

  /** A copy of the finished ceremony to tamper with. */
  function copy(): string {
    const dir = join(f.dir, `copy-${++copies}`);
    cpSync(f.out, dir, { recursive: true });
    return dir;
  }
  const read = (dir: string, rel: string): string => readFileSync(join(dir, rel), 'utf8');
  const write = (dir: string, rel: string, text: string): void => writeFileSync(join(dir, rel), text);
  const lines = (dir: string): string[] => transcriptLines(read(dir, 'transcript.jsonl'));
  const writeLines = (dir: string, l: string[]): void => write(dir, 'transcript.jsonl', l.join('\n') + '\n');
  async function failure(dir: string): Promise<string> {
    const r = await verifyCeremony(dir);
    expect(r.ok).toBe(false);
    return r.failure ?? '';
  }

  it('an untouched ceremony passes, with counts of what was checked', async () => {
    const r = await verifyCeremony(f.out);
    expect(r.failure).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.origin).toBe('import-with-escrow');
    expect(r.checked).toEqual({ transcriptEntries: 10, headSignature: true, profiles: 2, fileFingerprints: 10, blobs: 1, shares: 5, sharesAbsent: 0 });
    expect(r.master).toMatch(/^M/);
    expect(lines(f.out).map((l) => (JSON.parse(l) as { Type: string }).Type)).toEqual(Object.keys(LINE));
  });

  it('share files handed to their custodians (absent) are not a failure', async () => {
    const dir = copy();
    for (const name of readdirSync(join(dir, 'shares')).slice(0, 3)) renameSync(join(dir, 'shares', name), join(f.dir, `${copies}-${name}`));
    const r = await verifyCeremony(dir);
    expect(r.failure).toBeUndefined();
    expect(r.checked.shares).toBe(2);
    expect(r.checked.sharesAbsent).toBe(3);
  });

  it('one byte of a transcript line changed: that line is named', async () => {
    const dir = copy();
    const l = lines(dir);
    l[LINE.escrow - 1] = (l[LINE.escrow - 1] as string).replace('"Threshold":3', '"Threshold":2');
    writeLines(dir, l);
    expect(await failure(dir)).toBe('transcript.jsonl line 5 (escrow): the line was altered (its Id is not the digest of its content)');
  });

  it('a transcript line rewritten with a fresh Id: the next line no longer links to it', async () => {
    const dir = copy();
    const l = lines(dir);
    // Rebuild lines 1…5 with an altered escrow body, keeping lines 6… as they were.
    const log = new HashLog();
    for (const line of l.slice(0, LINE.escrow)) {
      const e = JSON.parse(line) as { Type: string; Body: Record<string, unknown>; Time: string };
      if (e.Type === 'escrow') e.Body.Threshold = 2;
      log.append(e.Type, e.Body, e.Time);
    }
    writeLines(dir, [...log.lines(), ...l.slice(LINE.escrow)]);
    expect(await failure(dir)).toBe('transcript.jsonl line 6 (import): Previous does not match line 5 (a line before it was altered, deleted or moved)');
  });

  it('a deleted transcript line is named', async () => {
    const dir = copy();
    const l = lines(dir);
    l.splice(LINE.import - 1, 1);
    writeLines(dir, l);
    expect(await failure(dir)).toMatch(/^transcript\.jsonl line 6 \(profiles\): Index out of sequence .*expected 5: a line was deleted, added or moved$/);
  });

  it('reordered transcript lines are named', async () => {
    const dir = copy();
    const l = lines(dir);
    [l[LINE.verify - 1], l[LINE.acknowledgement - 1]] = [l[LINE.acknowledgement - 1] as string, l[LINE.verify - 1] as string];
    writeLines(dir, l);
    expect(await failure(dir)).toMatch(/^transcript\.jsonl line 8 \(acknowledgement\): Index out of sequence/);
  });

  it('the last transcript line removed: the signed head names it', async () => {
    const dir = copy();
    writeLines(dir, lines(dir).slice(0, -1));
    const r = await verifyCeremony(dir);
    expect(r.failure).toMatch(/^transcript\.jsonl: ends after line 9 \(acknowledgement\)/);
  });

  it('a head signature replaced by another key is named', async () => {
    const dir = copy();
    const log = HashLog.fromLines(lines(dir));
    const other = testKey('Ed448');
    write(dir, 'transcript.head.json', JSON.stringify(await signLogHead(log.head, testSigner(other))));
    const r = await verifyCeremony(dir);
    expect(r.failure).toMatch(new RegExp(`^transcript\\.head\\.json: signed by ${other.keyId}, not by the master signature key ${r.master}`));
    expect(r.code).toBe(ErrorCode.LOG_SIGNATURE);
  });

  it('a forged head signature (right kid, wrong bytes) is named', async () => {
    const dir = copy();
    const head = JSON.parse(read(dir, 'transcript.head.json')) as { signatures: Array<{ signature: string }> };
    const sig = head.signatures[0] as { signature: string };
    sig.signature = (sig.signature.startsWith('A') ? 'B' : 'A') + sig.signature.slice(1);
    write(dir, 'transcript.head.json', JSON.stringify(head));
    expect(await failure(dir)).toMatch(/^transcript\.head\.json: the signature by the master signature key M[A-Z0-9-]+ does not verify \(the head was altered or forged\)$/);
  });

  it('master.json altered is named', async () => {
    const dir = copy();
    const signed = JSON.parse(read(dir, 'master.json')) as SignedProfile;
    const payload = JSON.parse(fromUtf8(Buffer.from(signed.payload, 'base64url'))) as { MasterProfile: { Names: string[] } };
    payload.MasterProfile.Names = ['mallory@example.com'];
    signed.payload = Buffer.from(JSON.stringify(payload)).toString('base64url');
    write(dir, 'master.json', JSON.stringify(signed));
    expect(await failure(dir)).toMatch(/^master\.json: Master Profile M[A-Z0-9-]+: the signature by M[A-Z0-9-]+ does not verify/);
  });

  it('master.json replaced by another self-signed Master Profile is named', async () => {
    const dir = copy();
    const { composeMasterProfile } = await import('../../src/core/profiles.js');
    const k = testKey('Ed448');
    const m = composeMasterProfile({ signatureKey: k.publicJwk, escrowKeys: [testKey('X448').publicJwk], adminKeys: [testKey('Ed25519').publicJwk] });
    write(dir, 'master.json', JSON.stringify(await signProfile('MasterProfile', m, testSigner(k))));
    expect(await failure(dir)).toMatch(new RegExp(`^master\\.json: its identifier ${k.keyId} is not the Master M[A-Z0-9-]+ recorded in transcript\\.jsonl line 7 \\(profiles\\)$`));
  });

  it('personal.json signed by a key that is not an administrator is named', async () => {
    const dir = copy();
    const master = JSON.parse(read(dir, 'master.json')) as SignedProfile;
    const rogue = testKey('Ed25519');
    const personal = composePersonalProfile({ master, names: ['alice@example.com'] });
    write(dir, 'personal.json', JSON.stringify(await signProfile('PersonalProfile', personal, testSigner(rogue))));
    const r = await verifyCeremony(dir);
    expect(r.failure).toMatch(new RegExp(`^personal\\.json: Personal Profile M[A-Z0-9-]+ is signed by ${rogue.keyId}, which`));
    expect(r.code).toBe(ErrorCode.PROFILE_UNAUTHORISED);
  });

  it('a renamed blob is named', async () => {
    const dir = copy();
    const [name] = readdirSync(join(dir, 'escrow'));
    renameSync(join(dir, 'escrow', name as string), join(dir, 'escrow', 'MBLOB-RENAMED.json'));
    expect(await failure(dir)).toMatch(/^escrow\/MBLOB-RENAMED\.json: the file name does not match its Identifier M[A-Z0-9-]+ \(renamed\?\)$/);
  });

  it('an altered blob is named', async () => {
    const dir = copy();
    const [name] = readdirSync(join(dir, 'escrow'));
    const rel = `escrow/${name as string}`;
    const blob = JSON.parse(read(dir, rel)) as { OfflineEscrowEntry: { EncryptedData: { ciphertext: string } } };
    const ct = blob.OfflineEscrowEntry.EncryptedData.ciphertext;
    blob.OfflineEscrowEntry.EncryptedData.ciphertext = (ct.startsWith('A') ? 'B' : 'A') + ct.slice(1);
    write(dir, rel, JSON.stringify(blob, null, 2) + '\n');
    expect(await failure(dir)).toMatch(new RegExp(`^${rel.replace(/[.]/g, '\\.')}: altered \\(fingerprint .*transcript\\.jsonl line 5 \\(escrow\\) records`));
  });

  it("a share file's Master line edited is named", async () => {
    const dir = copy();
    const text = read(dir, 'shares/2.txt');
    const parsed = parseShareFile(text);
    const foreign = testKey('Ed448').keyId;
    write(dir, 'shares/2.txt', text.replace(`Master: ${parsed.master}`, `Master: ${foreign}`));
    expect(await failure(dir)).toBe(`shares/2.txt: the Master line ${foreign} is not this ceremony's master ${parsed.master} (master.json)`);
  });

  it('a share file with one character of its S-UDF changed is named corrupted', async () => {
    const dir = copy();
    const text = read(dir, 'shares/4.txt');
    const parsed = parseShareFile(text);
    const i = 12;
    const c = parsed.share[i] === 'A' ? 'B' : 'A';
    write(dir, 'shares/4.txt', formatShareFile({ ...parsed, share: parsed.share.slice(0, i) + c + parsed.share.slice(i + 1) }));
    expect(await failure(dir)).toBe('shares/4.txt: corrupted: the Check line does not match the S-UDF line');
  });

  it('a share file whose fingerprint changed (comment added) is named', async () => {
    const dir = copy();
    write(dir, 'shares/1.txt', read(dir, 'shares/1.txt') + '# note\n');
    expect(await failure(dir)).toMatch(/^shares\/1\.txt: altered \(fingerprint /);
  });

  it('plan.json edited is named', async () => {
    const dir = copy();
    write(dir, 'plan.json', read(dir, 'plan.json').replace('Test ceremony', 'Tost ceremony'));
    expect(await failure(dir)).toMatch(/^plan\.json: edited \(fingerprint [A-Z0-9-]+, transcript\.jsonl line 1 \(plan\) records [A-Z0-9-]+\)$/);
  });

  it('account.json altered is named', async () => {
    const dir = copy();
    write(dir, 'account.json', read(dir, 'account.json').replace('"Transcript":', '"Transcript" :'));
    expect(await failure(dir)).toMatch(/^account\.json: altered \(fingerprint .*line 10 \(complete\)/);
  });

  it('an interrupted ceremony (.staging) and a missing directory are named', async () => {
    const dir = copy();
    cpSync(join(dir, 'shares'), join(dir, '.staging'), { recursive: true });
    expect(await failure(dir)).toMatch(/holds \.staging: the ceremony was interrupted/);
    expect(await failure(join(f.dir, 'nope'))).toMatch(/no such directory/);
    await expect(verifyCeremony('' as string)).rejects.toThrow(TypeError);
  });
});

describe.skipIf(softhsmMissing !== undefined)('ceremony verify: generate-on-token (no escrow)', () => {
  let g: CeremonyFixture;
  beforeAll(async () => {
    g = await makeCeremonyFixture({ origin: 'generate-on-token' });
    await runCeremony(parsePlan(readFileSync(g.planPath)), { out: g.out, secrets: g.secrets, operator: 'Olivia' });
  });
  afterAll(() => g?.cleanup());

  it('passes with no blob and no shares', async () => {
    const r = await verifyCeremony(g.out);
    expect(r.failure).toBeUndefined();
    expect(r.origin).toBe('generate-on-token');
    expect(r.blob).toBeUndefined();
    expect(r.checked).toMatchObject({ transcriptEntries: 8, headSignature: true, profiles: 2, blobs: 0, shares: 0 });
  });

  it('an escrow directory slipped into it is named', async () => {
    const dir = join(g.dir, 'copy');
    cpSync(g.out, dir, { recursive: true });
    mkdirSync(join(dir, 'escrow'));
    writeFileSync(join(dir, 'escrow', 'MX.json'), '{}');
    const r = await verifyCeremony(dir);
    expect(r.failure).toBe('escrow/: present, but a generate-on-token ceremony has no offline escrow');
  });
});
