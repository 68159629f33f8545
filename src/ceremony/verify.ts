/**
 * `meshkit ceremony verify DIR`: checks a finished ceremony's outputs offline (docs/ceremony.md)
 * and names the FIRST thing that does not hold, in one line a person can act on, e.g.
 * `transcript.jsonl line 7 (escrow): Previous does not match line 6`.
 *
 * Order of the checks (each relies on the ones before it):
 * 1. the directory: no `.staging` (an interrupted ceremony), the published files present;
 * 2. `transcript.jsonl`: every line's Id and link (src/core/hashlog.ts), the entry types in the
 *    order the key origin gives;
 * 3. `master.json`: a self-signed Master Profile (verifyProfile), the identifier and file
 *    fingerprint the `profiles` entry records;
 * 4. `transcript.head.json`: signed by the master signature key of master.json, Count and Head
 *    those of the transcript;
 * 5. `plan.json`: parses, its fingerprint is the `plan` entry's, the origin matches;
 * 6. `personal.json`: signed by an administration key of the Master Profile (Master → Personal),
 *    identifier, signer and fingerprint as recorded;
 * 7. the `keys` / `import` / `verify` entries name the Master Profile's key UDFs;
 * 8. the escrow blob: file name = its Identifier = the transcript's blob id, fingerprint;
 * 9. every share file present: parses, Check holds, Master / Blob / Share / Threshold lines agree
 *    with the ceremony, fingerprint as recorded (share files handed to custodians may be absent);
 * 10. every file fingerprint in the `complete` entry; account.json names the master.
 *
 * File fingerprints are `udfDigest(bytes)` (SHA-512, 140 bits, no content type), as
 * src/ceremony/run.ts records them; the plan fingerprint is plan.ts `planFingerprint`.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fromB64u, fromUtf8 } from '../core/bytes.js';
import { ESCROW_CTY } from '../core/escrow.js';
import { ErrorCode, LogError, MeshkitError, type ErrorCodeValue } from '../core/errors.js';
import { verifyLog, verifyLogHead, type LogEntry } from '../core/hashlog.js';
import { parseJsonStrict } from '../core/jose.js';
import { publicKeyFromJwk } from '../core/keys.js';
import { verifyProfile, type MasterProfile, type PersonalProfile, type VerifiedProfile } from '../core/profiles.js';
import { parseShare } from '../core/shamir.js';
import { ceremonyFileFingerprint, parseShareFile } from './files.js';
import { parsePlan, planFingerprint, type CeremonyPlan, type KeyOrigin } from './plan.js';

/** What {@link verifyCeremony} found. */
export interface CeremonyVerifyReport {
  ok: boolean;
  dir: string;
  /** The first thing that does not hold (one line), when `ok` is false. */
  failure?: string;
  /** The error code that fits the failure. */
  code?: ErrorCodeValue;
  origin?: KeyOrigin;
  master?: string;
  personal?: string;
  blob?: string;
  /** What was checked before the first failure (or in all). */
  checked: {
    transcriptEntries: number;
    headSignature: boolean;
    profiles: number;
    fileFingerprints: number;
    blobs: number;
    shares: number;
    /** Share files the transcript lists that are not in DIR (handed to their custodians). */
    sharesAbsent: number;
  };
}

/** One failed check: the sentence to print and its code. */
class Failure extends Error {
  constructor(
    message: string,
    readonly code: ErrorCodeValue,
  ) {
    super(message);
  }
}

function fail(message: string, code: ErrorCodeValue = ErrorCode.CEREMONY_VERIFY): never {
  throw new Failure(message, code);
}


/** The entry types of a finished ceremony, in order, for a key origin. */
export function expectedEntryTypes(origin: KeyOrigin): string[] {
  return origin === 'generate-on-token'
    ? ['plan', 'preflight', 'keys-intent', 'keys', 'profiles', 'verify', 'acknowledgement', 'complete']
    : origin === 'import-with-escrow'
      ? ['plan', 'preflight', 'keys-intent', 'keys', 'escrow', 'import', 'profiles', 'verify', 'acknowledgement', 'complete']
      : ['plan', 'preflight', 'keys-intent', 'keys', 'escrow', 'profiles', 'verify', 'acknowledgement', 'complete'];
}

/** Splits a transcript file into its lines (one trailing newline allowed). */
export function transcriptLines(text: string): string[] {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  return body === '' ? [] : body.split('\n');
}

function typeOfLine(line: string | undefined): string {
  if (line === undefined) return '?';
  const m = /"Type":"([^"\\]{1,64})"/.exec(line);
  return m?.[1] ?? '?';
}

/** Rewords a hashlog LogError as `transcript.jsonl line N (type): what`. */
function transcriptFailure(e: LogError, lines: readonly string[]): never {
  const index = e.index ?? 0;
  const lineNo = index + 1;
  const what = e.message.replace(/^log entry \d+: /, '');
  let sentence: string;
  if (what.startsWith('wrong Previous')) sentence = index === 0 ? 'Previous must be null on the first line' : `Previous does not match line ${lineNo - 1} (a line before it was altered, deleted or moved)`;
  else if (what.startsWith('index gap')) sentence = `${what.replace('index gap', 'Index out of sequence')}, expected ${index}: a line was deleted, added or moved`;
  else if (what.startsWith('wrong Id')) sentence = 'the line was altered (its Id is not the digest of its content)';
  else sentence = what;
  return fail(`transcript.jsonl line ${lineNo} (${typeOfLine(lines[index])}): ${sentence}`, ErrorCode.LOG_BROKEN);
}

async function readBytes(dir: string, rel: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(join(dir, rel)));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(code === 'ENOENT' ? `${rel}: missing` : `${rel}: cannot read (${code ?? (e as Error).message})`, ErrorCode.IO);
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function listDir(path: string): Promise<string[] | undefined> {
  try {
    return (await readdir(path)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function body(entry: LogEntry): Record<string, unknown> {
  return entry.Body;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function where(entry: LogEntry): string {
  return `transcript.jsonl line ${entry.Index + 1} (${entry.Type})`;
}

function fileRecord(value: unknown): { File: string; Fingerprint: string } | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  return typeof v.File === 'string' && typeof v.Fingerprint === 'string' ? { File: v.File, Fingerprint: v.Fingerprint } : undefined;
}

function profileMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Verifies a finished ceremony directory. Never throws for what it finds: the report's `failure`
 * names the first thing that does not hold.
 *
 * @param dir the ceremony's `--out` directory.
 * @returns the report; `ok` true when every check holds.
 * @throws TypeError if `dir` is not a non-empty string.
 */
export async function verifyCeremony(dir: string): Promise<CeremonyVerifyReport> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('"dir" expected a directory path');
  const report: CeremonyVerifyReport = {
    ok: false,
    dir: resolve(dir),
    checked: { transcriptEntries: 0, headSignature: false, profiles: 0, fileFingerprints: 0, blobs: 0, shares: 0, sharesAbsent: 0 },
  };
  try {
    await check(report.dir, report);
    report.ok = true;
  } catch (e) {
    if (e instanceof Failure) {
      report.failure = e.message;
      report.code = e.code;
    } else if (e instanceof MeshkitError) {
      report.failure = e.message;
      report.code = e.code;
    } else {
      throw e;
    }
  }
  return report;
}

async function check(dir: string, report: CeremonyVerifyReport): Promise<void> {
  const checked = report.checked;
  // ---- 1. the directory
  const top = await listDir(dir);
  if (top === undefined) fail(`${dir}: no such directory`, ErrorCode.IO);
  if (top.includes('.staging')) {
    fail(`${dir} holds .staging: the ceremony was interrupted and never published; run "meshkit ceremony abort --plan PLAN --out ${dir}"`, ErrorCode.CEREMONY_STATE);
  }
  for (const f of ['transcript.jsonl', 'transcript.head.json', 'master.json', 'personal.json', 'plan.json']) {
    if (!(await isFile(join(dir, f)))) fail(`${f}: missing from ${dir}`, ErrorCode.IO);
  }

  // ---- 2. the transcript chain
  const lines = transcriptLines(fromUtf8(await readBytes(dir, 'transcript.jsonl')));
  if (lines.length === 0) fail('transcript.jsonl: empty', ErrorCode.LOG_BROKEN);
  try {
    verifyLog(lines);
  } catch (e) {
    if (e instanceof LogError) transcriptFailure(e, lines);
    throw e;
  }
  const entries = lines.map((l) => parseJsonStrict(l) as LogEntry);
  checked.transcriptEntries = entries.length;
  const first = entries[0] as LogEntry;
  if (first.Type !== 'plan') fail(`transcript.jsonl line 1 (${first.Type}): the first entry must be "plan"`, ErrorCode.LOG_BROKEN);
  const originText = str(body(first).Origin);
  const origins: readonly string[] = ['generate-on-token', 'import-with-escrow', 'generate-on-token-wrapped'];
  if (originText === undefined || !origins.includes(originText)) fail(`transcript.jsonl line 1 (plan): Origin ${JSON.stringify(originText)} is not a key origin`, ErrorCode.LOG_BROKEN);
  const origin = originText as KeyOrigin;
  report.origin = origin;
  const expected = expectedEntryTypes(origin);
  for (let i = 0; i < Math.max(expected.length, entries.length); i++) {
    const got = entries[i]?.Type;
    if (got !== expected[i]) {
      if (got === undefined) fail(`transcript.jsonl: ends after line ${entries.length} (${entries.at(-1)?.Type}); a finished ${origin} ceremony has a "${expected[i]}" entry next`, ErrorCode.LOG_BROKEN);
      fail(`transcript.jsonl line ${i + 1} (${got}): expected a "${expected[i] ?? '(end)'}" entry for a ${origin} ceremony`, ErrorCode.LOG_BROKEN);
    }
  }
  const entry = (type: string): LogEntry => entries.find((e) => e.Type === type) as LogEntry;
  const profilesEntry = entry('profiles');

  // ---- 3. master.json
  const masterBytes = await readBytes(dir, 'master.json');
  let master: VerifiedProfile;
  try {
    master = await verifyProfile(fromUtf8(masterBytes));
  } catch (e) {
    return fail(`master.json: ${profileMessage(e)}`, e instanceof MeshkitError ? e.code : ErrorCode.PROFILE_MALFORMED);
  }
  if (master.type !== 'MasterProfile') fail(`master.json: is a ${master.type}, not a Master Profile`, ErrorCode.PROFILE_MALFORMED);
  checked.profiles++;
  const mp = master.profile as MasterProfile;
  report.master = master.identifier;
  const pb = body(profilesEntry);
  if (pb.Master !== master.identifier) {
    fail(`master.json: its identifier ${master.identifier} is not the Master ${String(pb.Master)} recorded in ${where(profilesEntry)}`, ErrorCode.PROFILE_MISMATCH);
  }
  const masterFile = fileRecord(pb.MasterFile);
  if (masterFile !== undefined && masterFile.Fingerprint !== ceremonyFileFingerprint(masterBytes)) {
    fail(`master.json: altered (fingerprint ${ceremonyFileFingerprint(masterBytes)}, ${where(profilesEntry)} records ${masterFile.Fingerprint})`);
  }

  // ---- 4. the signed head
  const headText = fromUtf8(await readBytes(dir, 'transcript.head.json'));
  let headJws: unknown;
  try {
    headJws = parseJsonStrict(headText);
  } catch (e) {
    return fail(`transcript.head.json: not strict JSON (${profileMessage(e)})`, ErrorCode.LOG_SIGNATURE);
  }
  const headKid = protectedKid(headJws);
  if (headKid !== undefined && headKid !== mp.MasterSignatureKey.UDF) {
    fail(`transcript.head.json: signed by ${headKid}, not by the master signature key ${mp.MasterSignatureKey.UDF} of master.json`, ErrorCode.LOG_SIGNATURE);
  }
  const masterKey = publicKeyFromJwk(mp.MasterSignatureKey.PublicParameters);
  try {
    await verifyLogHead(headJws, lines, (kid) => (kid === mp.MasterSignatureKey.UDF ? masterKey : undefined));
  } catch (e) {
    if (e instanceof LogError && e.code === ErrorCode.LOG_BROKEN) transcriptFailure(e, lines);
    const msg = profileMessage(e);
    const counted = /does not match the log/.test(msg)
      ? `it signs a transcript head that is not this transcript's (${entries.length} lines ending in line ${entries.length} (${entries.at(-1)?.Type})): lines were added or removed at the end`
      : /does not verify/.test(msg)
        ? `the signature by the master signature key ${mp.MasterSignatureKey.UDF} does not verify (the head was altered or forged)`
        : msg;
    return fail(`transcript.head.json: ${counted}`, ErrorCode.LOG_SIGNATURE);
  }
  checked.headSignature = true;

  // ---- 5. plan.json
  const planBytes = await readBytes(dir, 'plan.json');
  const planEntry = first;
  const recordedPlan = str(body(planEntry).Plan);
  if (planFingerprint(planBytes) !== recordedPlan) {
    fail(`plan.json: edited (fingerprint ${planFingerprint(planBytes)}, ${where(planEntry)} records ${String(recordedPlan)})`);
  }
  let plan: CeremonyPlan;
  try {
    plan = parsePlan(planBytes);
  } catch (e) {
    return fail(`plan.json: ${profileMessage(e)}`, ErrorCode.CEREMONY_PLAN);
  }
  if (plan.keyOrigin !== origin) fail(`${where(planEntry)}: Origin ${origin} is not the plan's KeyOrigin ${plan.keyOrigin}`);
  if (str(body(planEntry).Name) !== undefined && body(planEntry).Name !== plan.name) fail(`${where(planEntry)}: Name is not the plan's Name`);

  // ---- 6. personal.json
  const personalBytes = await readBytes(dir, 'personal.json');
  let personal: VerifiedProfile;
  try {
    personal = await verifyProfile(fromUtf8(personalBytes), { master: master as VerifiedProfile<'MasterProfile'> });
  } catch (e) {
    return fail(`personal.json: ${profileMessage(e)}`, e instanceof MeshkitError ? e.code : ErrorCode.PROFILE_MALFORMED);
  }
  if (personal.type !== 'PersonalProfile') fail(`personal.json: is a ${personal.type}, not a Personal Profile`, ErrorCode.PROFILE_MALFORMED);
  checked.profiles++;
  report.personal = personal.identifier;
  if (pb.Personal !== personal.identifier) fail(`personal.json: its identifier ${personal.identifier} is not the Personal ${String(pb.Personal)} recorded in ${where(profilesEntry)}`, ErrorCode.PROFILE_MISMATCH);
  const signedBy = (pb.PersonalSignedBy as { UDF?: unknown } | undefined)?.UDF;
  if (signedBy !== undefined && signedBy !== personal.signerKeyId) {
    fail(`personal.json: signed by ${personal.signerKeyId}, but ${where(profilesEntry)} records ${String(signedBy)}`, ErrorCode.PROFILE_MISMATCH);
  }
  const personalFile = fileRecord(pb.PersonalFile);
  if (personalFile !== undefined && personalFile.Fingerprint !== ceremonyFileFingerprint(personalBytes)) {
    fail(`personal.json: altered (fingerprint ${ceremonyFileFingerprint(personalBytes)}, ${where(profilesEntry)} records ${personalFile.Fingerprint})`);
  }
  const embedded = (personal.profile as PersonalProfile).SignedMasterProfile;
  if (JSON.stringify(embedded) !== JSON.stringify(master.signed)) fail('personal.json: its SignedMasterProfile is not master.json', ErrorCode.PROFILE_MISMATCH);

  // ---- 7. key UDFs in keys / import / verify
  const profileUdfs = [mp.MasterSignatureKey.UDF, ...mp.MasterEscrowKeys.map((k) => k.UDF)];
  const keysEntry = entry('keys');
  const keys = body(keysEntry).Keys;
  const keyUdfs = Array.isArray(keys) ? keys.map((k) => (k as { UDF?: unknown }).UDF) : [];
  if (JSON.stringify(keyUdfs) !== JSON.stringify(profileUdfs)) {
    fail(`${where(keysEntry)}: key UDFs ${keyUdfs.join(', ')} are not the Master Profile's ${profileUdfs.join(', ')}`, ErrorCode.PROFILE_MISMATCH);
  }
  const labels = Array.isArray(keys) ? keys.map((k) => (k as { Label?: unknown }).Label) : [];
  if (labels[0] !== plan.labels.signature || labels[1] !== plan.labels.escrow) {
    fail(`${where(keysEntry)}: labels ${labels.join(', ')} are not the plan's ${plan.labels.signature}, ${plan.labels.escrow}`);
  }
  if (origin === 'import-with-escrow') {
    const importEntry = entry('import');
    if (JSON.stringify(body(importEntry).Keys) !== JSON.stringify(profileUdfs)) fail(`${where(importEntry)}: imported keys are not the Master Profile's ${profileUdfs.join(', ')}`, ErrorCode.PROFILE_MISMATCH);
  }
  const verifyEntry = entry('verify');
  const vb = body(verifyEntry);
  if (vb.Match !== true || JSON.stringify(vb.Recovered) !== JSON.stringify(profileUdfs) || JSON.stringify(vb.Profile) !== JSON.stringify(profileUdfs)) {
    fail(`${where(verifyEntry)}: does not record recovered key UDFs equal to the Master Profile's ${profileUdfs.join(', ')}`, ErrorCode.CEREMONY_VERIFY);
  }

  // ---- 8 / 9. escrow blob and shares
  const escrowDir = await listDir(join(dir, 'escrow'));
  const sharesDir = await listDir(join(dir, 'shares'));
  if (origin === 'generate-on-token') {
    if (escrowDir !== undefined && escrowDir.length > 0) fail(`escrow/: present, but a generate-on-token ceremony has no offline escrow`);
    if (sharesDir !== undefined && sharesDir.length > 0) fail(`shares/: present, but a generate-on-token ceremony has no offline escrow`);
  } else {
    const escrowEntry = entry('escrow');
    const eb = body(escrowEntry);
    const blobId = str(eb.Blob);
    if (blobId === undefined) return fail(`${where(escrowEntry)}: no Blob`, ErrorCode.LOG_BROKEN);
    report.blob = blobId;
    await checkBlobs(dir, escrowDir ?? [], blobId, escrowEntry);
    checked.blobs = 1;
    const threshold = eb.Threshold;
    const count = eb.Shares;
    if (threshold !== plan.threshold || count !== plan.custodians.length) {
      fail(`${where(escrowEntry)}: ${String(threshold)} of ${String(count)} shares is not the plan's ${plan.threshold} of ${plan.custodians.length}`);
    }
    if (!Array.isArray(vb.Subset) || vb.Subset.length !== plan.threshold) fail(`${where(verifyEntry)}: the verified subset is not ${plan.threshold} shares`, ErrorCode.CEREMONY_VERIFY);
    const facts = Array.isArray(eb.ShareFiles) ? (eb.ShareFiles as Array<Record<string, unknown>>) : [];
    if (facts.length !== plan.custodians.length) fail(`${where(escrowEntry)}: lists ${facts.length} share files, the plan has ${plan.custodians.length} custodians`);
    const listed = new Set(facts.map((f) => f.File));
    for (const name of sharesDir ?? []) {
      if (name.startsWith('.tmp-')) continue;
      if (!listed.has(`shares/${name}`)) fail(`shares/${name}: not a share file of this ceremony (${where(escrowEntry)} does not list it)`, ErrorCode.SHARE_INVALID);
    }
    for (const [i, fact] of facts.entries()) {
      const rel = `shares/${i + 1}.txt`;
      if (fact.File !== rel || fact.Index !== i + 1 || fact.Custodian !== plan.custodians[i]) {
        fail(`${where(escrowEntry)}: share file ${i + 1} is recorded as ${String(fact.File)} for ${String(fact.Custodian)}, expected ${rel} for ${String(plan.custodians[i])}`);
      }
      if (!(await isFile(join(dir, rel)))) {
        checked.sharesAbsent++;
        continue;
      }
      const bytes = await readBytes(dir, rel);
      checkShareFile(rel, fromUtf8(bytes), { index: i + 1, count: plan.custodians.length, threshold: plan.threshold, master: master.identifier, blob: blobId, ceremony: plan.name, custodian: plan.custodians[i] as string });
      if (fact.Fingerprint !== ceremonyFileFingerprint(bytes)) {
        fail(`${rel}: altered (fingerprint ${ceremonyFileFingerprint(bytes)}, ${where(escrowEntry)} records ${String(fact.Fingerprint)})`);
      }
      checked.shares++;
    }
  }

  // ---- 10. the complete entry's fingerprints, account.json
  const completeEntry = entry('complete');
  const files = body(completeEntry).Files;
  if (!Array.isArray(files)) return fail(`${where(completeEntry)}: no Files list`, ErrorCode.LOG_BROKEN);
  const listedFiles = new Set<string>();
  for (const f of files) {
    const rec = fileRecord(f);
    if (rec === undefined) return fail(`${where(completeEntry)}: a Files item is not {File, Fingerprint}`, ErrorCode.LOG_BROKEN);
    listedFiles.add(rec.File);
    if (rec.File.includes('..') || rec.File.startsWith('/')) fail(`${where(completeEntry)}: file name ${JSON.stringify(rec.File)} leaves the directory`);
    if (rec.File.startsWith('shares/') && !(await isFile(join(dir, rec.File)))) continue; // handed to its custodian
    const bytes = await readBytes(dir, rec.File);
    const fp = ceremonyFileFingerprint(bytes);
    if (fp !== rec.Fingerprint) fail(`${rec.File}: altered (fingerprint ${fp}, ${where(completeEntry)} records ${rec.Fingerprint})`);
    checked.fileFingerprints++;
  }
  for (const f of ['plan.json', 'master.json', 'personal.json']) {
    if (!listedFiles.has(f)) fail(`${where(completeEntry)}: does not list ${f}`, ErrorCode.LOG_BROKEN);
  }
  if (report.blob !== undefined && !listedFiles.has(`escrow/${report.blob}.json`)) fail(`${where(completeEntry)}: does not list escrow/${report.blob}.json`, ErrorCode.LOG_BROKEN);
  if (await isFile(join(dir, 'account.json'))) {
    let account: unknown;
    try {
      account = parseJsonStrict(fromUtf8(await readBytes(dir, 'account.json')));
    } catch (e) {
      return fail(`account.json: not strict JSON (${profileMessage(e)})`, ErrorCode.JSON_INVALID);
    }
    const id = (account as { Account?: { Identifier?: unknown } } | null)?.Account?.Identifier;
    if (id !== master.identifier) fail(`account.json: Identifier ${String(id)} is not the master ${master.identifier}`, ErrorCode.PROFILE_MISMATCH);
  }
}

function protectedKid(jws: unknown): string | undefined {
  try {
    const sig = (jws as { signatures?: Array<{ protected?: unknown }> }).signatures?.[0];
    if (typeof sig?.protected !== 'string') return undefined;
    const header = parseJsonStrict(fromUtf8(fromB64u(sig.protected, 'protected'))) as { kid?: unknown };
    return typeof header.kid === 'string' ? header.kid : undefined;
  } catch {
    return undefined;
  }
}

async function checkBlobs(dir: string, names: string[], blobId: string, escrowEntry: LogEntry): Promise<void> {
  const blobs = names.filter((n) => !n.startsWith('.tmp-'));
  for (const name of blobs) {
    const rel = `escrow/${name}`;
    const text = fromUtf8(await readBytes(dir, rel));
    let doc: unknown;
    try {
      doc = parseJsonStrict(text);
    } catch (e) {
      fail(`${rel}: not strict JSON (${profileMessage(e)})`, ErrorCode.ESCROW_INVALID);
    }
    const inner = (doc as { OfflineEscrowEntry?: { Identifier?: unknown; EncryptedData?: { protected?: unknown } } } | null)?.OfflineEscrowEntry;
    const id = inner?.Identifier;
    if (typeof id !== 'string') fail(`${rel}: not an offline escrow blob (no OfflineEscrowEntry.Identifier)`, ErrorCode.ESCROW_INVALID);
    if (name !== `${id}.json`) fail(`${rel}: the file name does not match its Identifier ${id} (renamed?)`, ErrorCode.ESCROW_INVALID);
    if (id !== blobId) fail(`${rel}: blob ${id} is not the blob ${blobId} recorded in ${where(escrowEntry)}`, ErrorCode.ESCROW_INVALID);
    let header: { kid?: unknown; cty?: unknown } = {};
    try {
      header = parseJsonStrict(fromUtf8(fromB64u(String(inner?.EncryptedData?.protected), 'protected'))) as typeof header;
    } catch {
      fail(`${rel}: EncryptedData has no readable protected header`, ErrorCode.ESCROW_INVALID);
    }
    if (header.kid !== id || header.cty !== ESCROW_CTY) fail(`${rel}: EncryptedData is bound to ${String(header.kid)} (${String(header.cty)}), not to ${id} (${ESCROW_CTY})`, ErrorCode.ESCROW_INVALID);
    const bb = escrowEntry.Body;
    if (typeof bb.BlobFingerprint === 'string') {
      const fp = ceremonyFileFingerprint(new Uint8Array(Buffer.from(text, 'utf8')));
      if (fp !== bb.BlobFingerprint) fail(`${rel}: altered (fingerprint ${fp}, ${where(escrowEntry)} records ${bb.BlobFingerprint})`, ErrorCode.ESCROW_INVALID);
    }
  }
  if (!blobs.includes(`${blobId}.json`)) fail(`escrow/${blobId}.json: missing (the blob ${where(escrowEntry)} records)`, ErrorCode.ESCROW_INVALID);
}

/** What a share file of this ceremony must say. */
interface ShareExpectation {
  index: number;
  count: number;
  threshold: number;
  master: string;
  blob: string;
  ceremony: string;
  custodian: string;
}

function checkShareFile(rel: string, text: string, want: ShareExpectation): void {
  let parsed;
  try {
    parsed = parseShareFile(text);
  } catch (e) {
    return fail(`${rel}: ${profileMessage(e)}`, ErrorCode.SHARE_INVALID);
  }
  if (!parsed.checkValid) fail(`${rel}: corrupted: the Check line does not match the S-UDF line`, ErrorCode.SHARE_INVALID);
  if (parsed.master !== want.master) fail(`${rel}: the Master line ${parsed.master} is not this ceremony's master ${want.master} (master.json)`, ErrorCode.SHARE_INVALID);
  if (parsed.blob !== want.blob) fail(`${rel}: the Blob line ${parsed.blob} is not this ceremony's blob ${want.blob}`, ErrorCode.SHARE_INVALID);
  if (parsed.index !== want.index || parsed.count !== want.count) fail(`${rel}: the Share line says ${parsed.index} of ${parsed.count}, expected ${want.index} of ${want.count}`, ErrorCode.SHARE_INVALID);
  if (parsed.threshold !== want.threshold) fail(`${rel}: the Threshold line says ${parsed.threshold}, expected ${want.threshold}`, ErrorCode.SHARE_INVALID);
  if (parsed.ceremony !== want.ceremony) fail(`${rel}: the Ceremony line is not the plan's Name`, ErrorCode.SHARE_INVALID);
  if (parsed.custodian !== want.custodian) fail(`${rel}: the Custodian line ${JSON.stringify(parsed.custodian)} is not ${JSON.stringify(want.custodian)}`, ErrorCode.SHARE_INVALID);
  let share;
  try {
    share = parseShare(parsed.share);
  } catch (e) {
    return fail(`${rel}: the S-UDF line is not a share (${profileMessage(e)})`, ErrorCode.SHARE_INVALID);
  }
  if (share.index !== want.index || share.threshold !== want.threshold || share.secretLength !== 32) {
    fail(`${rel}: the S-UDF is share ${share.index} of threshold ${share.threshold} (${share.secretLength}-byte secret), expected share ${want.index}, threshold ${want.threshold}, 32 bytes`, ErrorCode.SHARE_INVALID);
  }
}
