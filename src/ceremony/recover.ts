/**
 * `meshkit ceremony recover` (docs/ceremony.md "Recovery"): rebuilds the master keys of an
 * import-with-escrow ceremony onto a fresh token from k custodian share files.
 *
 * 1. Each share file is checked and, when it cannot be used, named: `invalid` (not a share file),
 *    `corrupted` (its Check line does not match its S-UDF: a typo), `foreign` (its Master line is
 *    not this master, or its Blob line names another blob), `duplicate` (an index already given).
 *    Fewer than k usable shares: an error saying how many more are needed.
 * 2. The usable shares recombine the session key K; the blob is the one whose id is the UDF of K
 *    (`escrow/<id>.json` under --escrow-dir, or --blob). Shares that do not recombine to the blob's
 *    key are `wrong` (valid format, same Master line, another polynomial); with more than k shares
 *    the odd ones out are found and named.
 * 3. The blob is decrypted (a tampered blob does not decrypt) and every recovered public key's UDF
 *    must equal the Master Profile's (master.json of the original ceremony: --master, else next to
 *    the escrow directory).
 * 4. The keys are imported onto the plan's token — refused when it already holds the plan's labels —
 *    as non-extractable and sensitive; the host copies are dropped and K wiped. Each key is tested on
 *    the token (a signature verified under the Master Profile's key; an ECDH agreement).
 * 5. `recovery-transcript.jsonl` (linked-hash log, no secrets) and `recovery-transcript.head.json`
 *    (signed by the recovered master signature key on the token) are written into the out DIR.
 *
 * Crash safety (as `ceremony run`): the transcript is written into `DIR/.staging/` with atomic
 * writes after every step; its `keys-intent` entry names every object about to be made (label,
 * key UDF and CKA_ID) and is written BEFORE anything is created on the token; nothing is published
 * in DIR until the head is signed (then the transcript and the head are moved into DIR and
 * `.staging` removed). A recovery killed in between leaves `.staging` (and perhaps objects on the
 * token): a re-run is refused with the instruction to run `meshkit ceremony abort --plan PLAN --out
 * DIR` (src/ceremony/abort.ts), which deletes exactly the objects whose label AND CKA_ID match the
 * intent. The test-only fault-injection switch stops the process after {@link RECOVERY_FAULT_POINTS}.
 *
 * generate-on-token ceremonies have no offline escrow (nothing to recover from shares).
 * generate-on-token-wrapped blobs hold the keys wrapped under K (src/core/escrow.ts WrappedKeySet):
 * step 4 imports K into the (PKCS#11) target token as a session AES key (CKA_TOKEN=false,
 * CKA_UNWRAP), C_UnwrapKey's each key (CKM_AES_KEY_WRAP_PAD) as a token object with the plan's
 * label, CKA_ID from its UDF and a public key object made from the blob's public JWK — sensitive
 * and NOT extractable (a later escrow is made from the shares and the blob, never from the
 * recovered copy) — checks each pair (Pkcs11KeyStore.unwrapKey test-signs; agreement keys are
 * tested here), destroys the AES object and wipes K. No private key is ever on the host.
 */
import { createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, verify as nodeVerify } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rmdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fromB64u, fromHex, fromUtf8, utf8, wipe } from '../core/bytes.js';
import { escrowBlobId, openOfflineEscrowAny, type EscrowedKeySet, type OpenedOfflineEscrow } from '../core/escrow.js';
import { ErrorCode, EscrowError, MeshkitError, ShamirError } from '../core/errors.js';
import { HashLog, signLogHead } from '../core/hashlog.js';
import { parseJsonStrict } from '../core/jose.js';
import { publicKeyFromJwk, publicKeyObject } from '../core/keys.js';
import { verifyProfile, type MasterProfile } from '../core/profiles.js';
import { combineShares, parseShare } from '../core/shamir.js';
import type { PrivateJwk, PublicJwk } from '../core/signer.js';
import { udfDigest } from '../core/udf.js';
import { openKeyStore, type KeyHandle, type KeyStore, type SecretSource } from '../keystore/index.js';
import type { Pkcs11KeyStore } from '../keystore/pkcs11/index.js';
import type { AesKeyHandle } from '../keystore/pkcs11/store.js';
import { exists, fsyncDir, parseShareFile, secureRemoveTree, writeFileAtomic, type ParsedShareFile } from './files.js';
import { CeremonyError, redactTokenUri, type CeremonyPlan } from './plan.js';
import { keyObjectIdHex, STAGING_DIR } from './run.js';

/**
 * Named points after which the fault-injection switch (`MESHKIT_CEREMONY_FAULT_AFTER`, test only)
 * stops a recovery: after the `keys-intent` entry, after the signature key and after the escrow
 * key are on the token, after the `import` entry, and after the head is signed (before publishing).
 */
export const RECOVERY_FAULT_POINTS = ['keys-intent', 'key-signature', 'key-escrow', 'import', 'complete'] as const;
export type RecoveryFaultPoint = (typeof RECOVERY_FAULT_POINTS)[number];

/** The recovery transcript and its signed head (in `DIR/.staging/` until published in DIR). */
export const RECOVERY_TRANSCRIPT = 'recovery-transcript.jsonl';
export const RECOVERY_HEAD = 'recovery-transcript.head.json';

/** One object the recovery announces in its `keys-intent` entry (what `ceremony abort` may delete). */
export interface RecoveryIntentKey {
  Role: 'MasterSignatureKey' | 'MasterEscrowKey';
  Label: string;
  Curve: string;
  /** The key UDF (the Master Profile's). */
  UDF: string;
  /** CKA_ID (hex) the object gets on a PKCS#11 token: the first 16 bytes of the binary UDF. */
  CkaId: string;
}

/**
 * Deletes exactly the recovery's objects: on a PKCS#11 token every object whose label AND CKA_ID
 * match (also a private key whose public object was never made); in a software store the key under
 * the label only when its UDF is the recorded one. Returns the keys deleted.
 * @throws the store's errors.
 */
export async function deleteRecoveryKeys(store: KeyStore, keys: RecoveryIntentKey[]): Promise<Array<{ label: string; keyId: string }>> {
  const deleted: Array<{ label: string; keyId: string }> = [];
  const destroyer = store as Partial<{ destroyObjects(m: { label: string; id: Uint8Array }): Promise<number> }>;
  for (const k of keys) {
    if (typeof destroyer.destroyObjects === 'function') {
      const n = await destroyer.destroyObjects({ label: k.Label, id: fromHex(k.CkaId, 'CkaId') });
      if (n > 0) deleted.push({ label: k.Label, keyId: k.UDF });
    } else {
      const found = (await store.list()).find((x) => x.label === k.Label);
      if (found !== undefined && found.keyId === k.UDF) {
        await store.delete(k.Label);
        deleted.push({ label: k.Label, keyId: k.UDF });
      }
    }
  }
  return deleted;
}

/** Why a share was not used. */
export type ShareProblem = 'invalid' | 'corrupted' | 'foreign' | 'duplicate' | 'wrong';

/** One share as recovery judged it. */
export interface ShareVerdict {
  /** The file path, or `share N` for a share given as text. */
  name: string;
  index?: number;
  custodian?: string;
  /** k as the share file says. */
  threshold?: number;
  /** undefined when the share was used. */
  problem?: ShareProblem;
  detail?: string;
}

/** A step of the recovery (progress output). */
export interface RecoveryStep {
  step: string;
  detail: string;
}

export interface RecoverCeremonyOptions {
  /** The plan: its Token is where the keys go (a fresh token), its Labels and Algorithms apply. */
  plan: CeremonyPlan;
  /** Share files: paths, or their text (anything containing a newline). Any order. */
  shares: string[];
  /** The directory holding `<blob-id>.json` (default: `escrow/` next to --master). */
  escrowDir?: string;
  /** The blob file itself (instead of escrowDir). */
  blob?: string;
  /** The original ceremony's master.json (default: `../master.json` of escrowDir or of the blob's directory). */
  master?: string;
  /** Output directory for the recovery transcript (must not exist or be empty). */
  out: string;
  /** The target token's PIN (or software store passphrase). */
  secrets: { token: SecretSource };
  onStep?: (step: RecoveryStep) => void;
  /** Called with what is about to happen before anything is imported; false stops. */
  confirm?: (what: string) => Promise<boolean>;
  modulePath?: string;
  /** Operator recorded in the transcript. */
  operator?: string;
  /** Stop the process (SIGKILL) right after this point: the test-only fault-injection switch. */
  fault?: RecoveryFaultPoint;
  /** What the fault does (default: SIGKILL this process). */
  faultAction?: (point: RecoveryFaultPoint) => void;
}

export interface RecoverySummary {
  out: string;
  master: string;
  blob: string;
  token: string;
  shares: ShareVerdict[];
  /** Share indices K was recombined from. */
  used: number[];
  keys: Array<{ role: 'MasterSignatureKey' | 'MasterEscrowKey'; label: string; keyId: string; location: string }>;
  transcript: { entries: number; head: string | null; files: string[] };
}

const TRANSCRIPT = RECOVERY_TRANSCRIPT;
const HEAD = RECOVERY_HEAD;

/** A usable share: its verdict and parsed file. */
export interface ShareCandidate {
  verdict: ShareVerdict;
  file: ParsedShareFile;
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return fromUtf8(new Uint8Array(await readFile(path)));
  } catch (e) {
    throw new MeshkitError(ErrorCode.IO, `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function describeRejected(verdicts: ShareVerdict[]): string {
  const bad = verdicts.filter((v) => v.problem !== undefined);
  return bad.length === 0 ? '' : ` (${bad.map((v) => `${v.name}: ${v.problem}${v.detail === undefined ? '' : ` — ${v.detail}`}`).join('; ')})`;
}

/** k-subsets of [0, n) in lexicographic order. */
function* subsets(n: number, k: number): Generator<number[]> {
  const idx = Array.from({ length: k }, (_, i) => i);
  for (;;) {
    yield [...idx];
    let i = k - 1;
    while (i >= 0 && idx[i] === n - k + i) i--;
    if (i < 0) return;
    idx[i] = (idx[i] as number) + 1;
    for (let j = i + 1; j < k; j++) idx[j] = (idx[j - 1] as number) + 1;
  }
}

function tryCombine(shares: string[]): Uint8Array | undefined {
  try {
    return combineShares(shares);
  } catch (e) {
    if (e instanceof ShamirError) return undefined;
    throw e;
  }
}

/**
 * Checks each share file against the master identifier; returns every verdict and the usable
 * candidates (one per index). Exposed for tests.
 * @throws TypeError for non-string items.
 */
export async function judgeShares(shares: string[], master: string, expectedBlob?: string): Promise<{ verdicts: ShareVerdict[]; usable: ShareCandidate[] }> {
  if (!Array.isArray(shares)) throw new TypeError('"shares" expected an array of paths or share file texts');
  const parsed: Array<{ verdict: ShareVerdict; file?: ParsedShareFile }> = [];
  for (const [i, s] of shares.entries()) {
    if (typeof s !== 'string' || s === '') throw new TypeError(`"shares[${i}]" expected a path or a share file text`);
    const isText = s.includes('\n');
    const name = isText ? `share ${i + 1}` : s;
    const text = isText ? s : await readText(s, 'share file');
    const verdict: ShareVerdict = { name };
    try {
      const file = parseShareFile(text);
      verdict.index = file.index;
      verdict.custodian = file.custodian;
      verdict.threshold = file.threshold;
      parsed.push({ verdict, file });
    } catch (e) {
      if (!(e instanceof MeshkitError)) throw e;
      verdict.problem = 'invalid';
      verdict.detail = e.message;
      parsed.push({ verdict });
    }
  }
  // Which blob: the one given, else the one most shares of this master name.
  let blob = expectedBlob;
  if (blob === undefined) {
    const votes = new Map<string, number>();
    for (const p of parsed) if (p.file !== undefined && p.file.checkValid && p.file.master === master) votes.set(p.file.blob, (votes.get(p.file.blob) ?? 0) + 1);
    blob = [...votes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  }
  const usable: ShareCandidate[] = [];
  for (const p of parsed) {
    const { verdict, file } = p;
    if (file === undefined) continue;
    if (!file.checkValid) {
      verdict.problem = 'corrupted';
      verdict.detail = 'its Check line does not match its S-UDF (mistyped or damaged)';
      continue;
    }
    let share;
    try {
      share = parseShare(file.share);
    } catch (e) {
      verdict.problem = 'corrupted';
      verdict.detail = `its S-UDF is not a share (${(e as Error).message})`;
      continue;
    }
    if (share.index !== file.index || share.threshold !== file.threshold || share.secretLength !== 32) {
      verdict.problem = 'corrupted';
      verdict.detail = `its S-UDF (share ${share.index}, threshold ${share.threshold}) disagrees with its Share/Threshold lines (${file.index} of ${file.count}, threshold ${file.threshold})`;
      continue;
    }
    if (file.master !== master) {
      verdict.problem = 'foreign';
      verdict.detail = `its Master line ${file.master} is not this master ${master}`;
      continue;
    }
    if (blob !== undefined && file.blob !== blob) {
      verdict.problem = 'foreign';
      verdict.detail = `it is a share of blob ${file.blob}, not of ${blob}`;
      continue;
    }
    const earlier = usable.find((c) => c.file.index === file.index);
    if (earlier !== undefined) {
      verdict.problem = 'duplicate';
      verdict.detail = earlier.file.share === file.share ? `the same share as ${earlier.verdict.name}` : `share index ${file.index} was already given by ${earlier.verdict.name}`;
      continue;
    }
    usable.push({ verdict, file });
  }
  return { verdicts: parsed.map((p) => p.verdict), usable };
}

/**
 * Recombines the session key from the usable shares: the key must be the one whose blob id is
 * `blobId`. With more than k shares the k-subset that gives it is searched and shares off its
 * polynomial are marked `wrong`.
 * @throws ShamirError ERR_SHARES_INSUFFICIENT (too few usable shares: how many more are needed),
 *   ERR_SHARES_INCONSISTENT (no k-subset recombines to the blob's key: wrong shares).
 */
export function recombine(usable: ShareCandidate[], verdicts: ShareVerdict[], blobId: string): { key: Uint8Array; used: number[] } {
  const known = verdicts.map((v) => v.threshold).filter((t): t is number => t !== undefined);
  const threshold = usable[0]?.file.threshold ?? (known.length === 0 ? undefined : Math.max(...known));
  if (threshold === undefined || usable.length < threshold) {
    const need = threshold === undefined ? undefined : threshold - usable.length;
    throw new ShamirError(
      ErrorCode.SHARES_INSUFFICIENT,
      need === undefined
        ? `no usable share${describeRejected(verdicts)}`
        : `need ${plural(need, 'more share')}: ${usable.length} usable of the ${threshold} needed${describeRejected(verdicts)}`,
    );
  }
  const k = threshold;
  if (usable.some((c) => c.file.threshold !== k)) {
    for (const c of usable) if (c.file.threshold !== k) Object.assign(c.verdict, { problem: 'wrong', detail: `threshold ${c.file.threshold}, the others ${k}` });
    return recombine(usable.filter((c) => c.file.threshold === k), verdicts, blobId);
  }
  for (const subset of subsets(usable.length, k)) {
    const chosen = subset.map((i) => usable[i] as ShareCandidate);
    const key = tryCombine(chosen.map((c) => c.file.share));
    if (key === undefined) continue;
    if (escrowBlobId(key) !== blobId) {
      wipe(key);
      continue;
    }
    // Every other usable share must lie on the same polynomial.
    const used = chosen.map((c) => c.file.index);
    for (const c of usable) {
      if (chosen.includes(c)) continue;
      const check = tryCombine([...chosen.map((x) => x.file.share), c.file.share]);
      if (check === undefined) {
        c.verdict.problem = 'wrong';
        c.verdict.detail = 'it does not recombine with the other shares to the key of the blob (a share of another key)';
      } else {
        wipe(check);
        used.push(c.file.index);
      }
    }
    return { key, used: used.sort((a, b) => a - b) };
  }
  if (usable.length === k) {
    for (const c of usable) Object.assign(c.verdict, { problem: 'wrong', detail: 'one of these shares is wrong' });
    throw new ShamirError(
      ErrorCode.SHARES_INCONSISTENT,
      `wrong share: shares ${usable.map((c) => `${c.file.index} (${c.verdict.name})`).join(', ')} do not recombine to the key of blob ${blobId}: ` +
        `at least one of them is a share of another key (valid format and Master line); bring another share to find which`,
    );
  }
  throw new ShamirError(
    ErrorCode.SHARES_INCONSISTENT,
    `wrong shares: no ${k} of the ${usable.length} usable shares recombine to the key of blob ${blobId}; more than ${usable.length - k} of them are shares of another key`,
  );
}

/** Finds the master.json to check against. */
async function findMaster(opts: RecoverCeremonyOptions): Promise<string> {
  const candidates: string[] = [];
  if (opts.master !== undefined) return resolve(opts.master);
  if (opts.escrowDir !== undefined) candidates.push(join(dirname(resolve(opts.escrowDir)), 'master.json'));
  if (opts.blob !== undefined) candidates.push(join(dirname(dirname(resolve(opts.blob))), 'master.json'));
  for (const c of candidates) if (await exists(c)) return c;
  throw new CeremonyError(
    ErrorCode.CEREMONY_STATE,
    `the original ceremony's master.json is needed to check the recovered keys: give --master FILE` +
      (candidates.length > 0 ? ` (not found at ${candidates.join(', ')})` : ''),
  );
}

async function checkOut(out: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(out);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (entries.includes(STAGING_DIR)) {
    throw new CeremonyError(
      ErrorCode.CEREMONY_STATE,
      `${out} holds an interrupted recovery (${STAGING_DIR}): nothing in it was published. ` +
        `Run "meshkit ceremony abort --plan PLAN --out ${out}" to remove what it created (token objects and staged files), then run the recovery again`,
    );
  }
  if (entries.length > 0) throw new CeremonyError(ErrorCode.CEREMONY_STATE, `--out ${out} is not empty (${entries.slice(0, 5).join(', ')}): give a new or empty directory`);
}

function publicOf(jwk: PrivateJwk): PublicJwk {
  const { d: _d, kid: _kid, ...pub } = jwk as unknown as Record<string, string>;
  return pub as unknown as PublicJwk;
}

function dropPrivate(set: EscrowedKeySet | undefined): void {
  if (set === undefined) return;
  // JavaScript strings cannot be wiped; drop the references.
  delete (set.MasterSignatureKey as unknown as Record<string, unknown>)['d'];
  for (const k of set.MasterEscrowKeys) delete (k as unknown as Record<string, unknown>)['d'];
}

/** Tests a recovered key on the token: a signature verified under `expected`, or an ECDH agreement. */
async function selfTest(handle: KeyHandle, expected: PublicJwk): Promise<string> {
  const pub = publicKeyObject(publicKeyFromJwk(expected));
  if (handle.info.usage === 'sign') {
    const challenge = randomBytes(32);
    const sig = await handle.signer().sign(challenge);
    const ok = expected.crv === 'P-256' ? nodeVerify('sha256', challenge, { key: pub, dsaEncoding: 'ieee-p1363' }, sig) : nodeVerify(null, challenge, pub, sig);
    if (!ok) throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, `the recovered key ${handle.info.label} signs, but the signature does not verify under the Master Profile key ${handle.info.keyId}`);
    return 'signature verified under the Master Profile key';
  }
  const eph = expected.crv === 'P-256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync(expected.crv.toLowerCase() as 'x25519');
  const epub = eph.publicKey.export({ format: 'jwk' });
  const z1 = await handle.decrypter().deriveSharedSecret({ kty: epub.kty as 'OKP', crv: expected.crv, x: String(epub.x), ...(epub.y === undefined ? {} : { y: epub.y }) });
  const z2 = new Uint8Array(diffieHellman({ privateKey: eph.privateKey, publicKey: createPublicKey({ key: { ...expected }, format: 'jwk' }) }));
  const same = z1.length === z2.length && z1.every((b, i) => b === z2[i]);
  wipe(z1, z2);
  if (!same) throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, `the recovered key ${handle.info.label} does not agree with the Master Profile escrow key ${handle.info.keyId}`);
  return 'key agreement matches the Master Profile key';
}

/**
 * Recovers the master keys of a ceremony onto the plan's (fresh) token. The transcript is staged in
 * `DIR/.staging` (its `keys-intent` before any object is made) and published with its signed head.
 *
 * @throws TypeError for malformed options.
 * @throws CeremonyError ERR_CEREMONY_STATE (generate-on-token: no escrow; the token already holds
 *   the labels; out DIR not empty, or holding an interrupted recovery's `.staging` — both with the
 *   `ceremony abort` instruction; master.json not found), ERR_CEREMONY_VERIFY_FAILED (recovered
 *   keys are not the Master Profile's, or fail their test on the token).
 * @throws ShamirError ERR_SHARES_INSUFFICIENT ("need N more shares", naming the unusable ones),
 *   ERR_SHARES_INCONSISTENT (wrong shares).
 * @throws EscrowError ERR_ESCROW_INVALID (the blob is missing, malformed or does not decrypt:
 *   tampered), ERR_ESCROW_KEY_MISMATCH.
 * @throws UnsupportedError when the target token cannot unwrap the keys (generate-on-token-wrapped),
 *   naming token and mechanism; ProfileError for a bad master.json; the store's errors (PIN, token).
 * @throws CeremonyError ERR_CEREMONY_VERIFY_FAILED when the blob's form is not the plan's KeyOrigin's
 *   (private keys for import-with-escrow, wrapped keys for generate-on-token-wrapped).
 */
export async function recoverCeremony(opts: RecoverCeremonyOptions): Promise<RecoverySummary> {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" expected an object');
  const { plan } = opts;
  if (typeof plan !== 'object' || plan === null || !(plan.bytes instanceof Uint8Array)) throw new TypeError('"opts.plan" expected a CeremonyPlan from parsePlan');
  if (typeof opts.out !== 'string' || opts.out === '') throw new TypeError('"opts.out" expected a directory path');
  if (!Array.isArray(opts.shares)) throw new TypeError('"opts.shares" expected an array of share file paths or texts');
  const step = (s: string, detail: string): void => opts.onStep?.({ step: s, detail });

  if (plan.keyOrigin === 'generate-on-token') {
    throw new CeremonyError(
      ErrorCode.CEREMONY_STATE,
      `the plan's KeyOrigin is generate-on-token: its master keys were made on the token and never left it, so there is no offline escrow (no blob, no shares) to recover from`,
    );
  }
  if (opts.escrowDir === undefined && opts.blob === undefined && opts.master === undefined) {
    throw new TypeError('"opts" needs escrowDir, blob or master (to find the escrow blob)');
  }
  if (opts.fault !== undefined && !(RECOVERY_FAULT_POINTS as readonly string[]).includes(opts.fault)) {
    throw new RangeError(`"opts.fault" must be one of ${RECOVERY_FAULT_POINTS.join(', ')}`);
  }
  const out = resolve(opts.out);
  const staging = join(out, STAGING_DIR);
  const fault = (point: RecoveryFaultPoint): void => {
    if (opts.fault !== point) return;
    if (opts.faultAction !== undefined) opts.faultAction(point);
    else process.kill(process.pid, 'SIGKILL');
  };
  await checkOut(out);

  // ---- master profile
  const masterPath = await findMaster(opts);
  const masterText = await readText(masterPath, 'Master Profile');
  const vm = await verifyProfile(masterText).catch((e: unknown) => {
    if (e instanceof MeshkitError) throw new (e.constructor as typeof MeshkitError)(e.code, `${masterPath}: ${e.message}`, { cause: e });
    throw e;
  });
  if (vm.type !== 'MasterProfile') throw new CeremonyError(ErrorCode.CEREMONY_STATE, `${masterPath} is a ${vm.type}, not a Master Profile`);
  const mp = vm.profile as MasterProfile;
  step('master', `Master Profile ${vm.identifier} (${masterPath}) verified`);

  // ---- blob given directly?
  let blobText: string | undefined;
  let givenBlobId: string | undefined;
  if (opts.blob !== undefined) {
    blobText = await readText(resolve(opts.blob), 'escrow blob');
    try {
      const id = (parseJsonStrict(blobText) as { OfflineEscrowEntry?: { Identifier?: unknown } } | null)?.OfflineEscrowEntry?.Identifier;
      if (typeof id === 'string') givenBlobId = id;
    } catch (e) {
      throw new EscrowError(ErrorCode.ESCROW_INVALID, `${opts.blob}: not strict JSON`, { cause: e });
    }
    if (givenBlobId === undefined) throw new EscrowError(ErrorCode.ESCROW_INVALID, `${opts.blob}: not an offline escrow blob (no OfflineEscrowEntry.Identifier)`);
  }

  // ---- shares
  const { verdicts, usable } = await judgeShares(opts.shares, vm.identifier, givenBlobId);
  for (const v of verdicts) step('share', `${v.name}: ${v.problem === undefined ? `share ${v.index} (${v.custodian}) usable` : `${v.problem}${v.detail === undefined ? '' : ` — ${v.detail}`}`}`);
  const expectedBlob = givenBlobId ?? usable[0]?.file.blob;
  const { key, used } = recombine(usable, verdicts, expectedBlob ?? '(none)');
  let set: EscrowedKeySet | undefined;
  let opened: OpenedOfflineEscrow | undefined;
  let store: KeyStore | undefined;
  /** The objects announced by keys-intent (set once it is on disk). */
  let intent: RecoveryIntentKey[] | undefined;
  let outCreated = false;
  let stagingCreated = false;
  try {
    const blobId = escrowBlobId(key);
    step('recombine', `shares ${used.join(', ')} recombine the session key of blob ${blobId}`);

    // ---- blob
    let blobRel: string;
    if (blobText === undefined) {
      const escrowDir = opts.escrowDir !== undefined ? resolve(opts.escrowDir) : join(dirname(masterPath), 'escrow');
      const path = join(escrowDir, `${blobId}.json`);
      if (!(await exists(path))) {
        throw new EscrowError(ErrorCode.ESCROW_INVALID, `the blob of the recombined key, ${blobId}.json, is not in ${escrowDir}: give --escrow-dir DIR or --blob FILE`);
      }
      blobText = await readText(path, 'escrow blob');
      blobRel = path;
    } else {
      blobRel = resolve(opts.blob as string);
    }
    try {
      opened = openOfflineEscrowAny(blobText, key);
    } catch (e) {
      if (e instanceof EscrowError) throw new EscrowError(e.code, `${basename(blobRel)}: ${e.message} (tampered or damaged)`, { cause: e });
      throw e;
    }
    const wrappedForm = opened.Form === 'WrappedKeySet';
    if (wrappedForm !== (plan.keyOrigin === 'generate-on-token-wrapped')) {
      throw new CeremonyError(
        ErrorCode.CEREMONY_VERIFY,
        `${basename(blobRel)} holds ${wrappedForm ? 'keys wrapped on a token (a generate-on-token-wrapped escrow)' : 'private keys (an import-with-escrow escrow)'}, ` +
          `but the plan's KeyOrigin is ${plan.keyOrigin}: give the plan the ceremony ran, with the new Token`,
      );
    }
    if (opened.Form === 'EscrowedKeySet') set = opened.KeySet;
    const recovered = opened.Form === 'EscrowedKeySet' ? [opened.KeySet.MasterSignatureKey.kid, ...opened.KeySet.MasterEscrowKeys.map((k) => k.kid)] : opened.KeySet.Keys.map((k) => k.kid);
    const curves = opened.Form === 'EscrowedKeySet' ? [opened.KeySet.MasterSignatureKey.crv, opened.KeySet.MasterEscrowKeys[0]?.crv] : opened.KeySet.Keys.map((k) => k.Curve);
    const expected = [mp.MasterSignatureKey.UDF, ...mp.MasterEscrowKeys.map((k) => k.UDF)];
    if (recovered.length !== expected.length || recovered.some((u, i) => u !== expected[i])) {
      throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, `the keys in the blob (${recovered.join(', ')}) are not those of the Master Profile (${expected.join(', ')})`);
    }
    if (curves[0] !== plan.algorithms.signature || curves[1] !== plan.algorithms.escrow) {
      throw new CeremonyError(
        ErrorCode.CEREMONY_VERIFY,
        `the recovered keys are ${String(curves[0])} + ${String(curves[1])}, the plan's Algorithms ${plan.algorithms.signature} + ${plan.algorithms.escrow}`,
      );
    }
    step('decrypt', `blob ${blobId} decrypted; recovered key UDFs = Master Profile UDFs`);

    // ---- target token
    store = await openKeyStore(plan.token, opts.secrets.token, {
      ...(plan.token.startsWith('file:') ? { create: true } : {}),
      ...(opts.modulePath === undefined ? {} : { modulePath: opts.modulePath }),
    });
    const tokenName = 'token' in store ? `token ${JSON.stringify((store as unknown as { token: { label: string } }).token.label)}` : store.uri;
    const present = (await store.list()).map((k) => k.label);
    const taken = [plan.labels.signature, plan.labels.escrow].filter((l) => present.includes(l));
    if (taken.length > 0) {
      throw new CeremonyError(
        ErrorCode.CEREMONY_STATE,
        `${tokenName} already holds keys labelled ${taken.map((l) => JSON.stringify(l)).join(', ')}: recover onto a fresh token (or change the plan's Token); ` +
          `if an interrupted recovery made them, run "meshkit ceremony abort --plan PLAN --out DIR" with its out DIR`,
      );
    }
    if (opts.confirm !== undefined && !(await opts.confirm(`import the master keys ${expected.join(', ')} onto ${tokenName} as ${plan.labels.signature}, ${plan.labels.escrow}`))) {
      throw new CeremonyError(ErrorCode.CEREMONY_STATE, 'the recovery was stopped by the operator before importing');
    }

    // ---- recovery transcript (no secrets), staged in DIR/.staging, written before anything is created
    await checkOut(out); // again: DIR may have changed while the operator was asked
    outCreated = !(await exists(out));
    await mkdir(out, { recursive: true, mode: 0o700 });
    await mkdir(staging, { mode: 0o700 });
    stagingCreated = true;
    await fsyncDir(out);
    const log = new HashLog();
    const record = async (type: string, body: Record<string, unknown>): Promise<void> => {
      log.append(type, body);
      await writeFileAtomic(join(staging, TRANSCRIPT), log.lines().join('\n') + '\n', { mode: 0o644 });
    };
    await record('recovery', {
      Plan: plan.fingerprint,
      Name: plan.name,
      Origin: plan.keyOrigin,
      Token: redactTokenUri(plan.token),
      Master: vm.identifier,
      MasterFile: { File: masterPath, Fingerprint: udfDigest(utf8(masterText)) },
      Operator: opts.operator ?? 'operator',
    });
    await record('shares', {
      Threshold: usable[0]?.file.threshold,
      Used: used,
      Shares: verdicts.map((v) => ({
        Name: v.name,
        ...(v.index === undefined ? {} : { Index: v.index }),
        ...(v.custodian === undefined ? {} : { Custodian: v.custodian }),
        Verdict: v.problem ?? 'used',
      })),
    });
    await record('blob', { Blob: blobId, Fingerprint: udfDigest(utf8(blobText)), Recovered: recovered, Profile: expected, Match: true });
    const announced: RecoveryIntentKey[] = [
      { Role: 'MasterSignatureKey', Label: plan.labels.signature, Curve: plan.algorithms.signature, UDF: expected[0] as string, CkaId: keyObjectIdHex(expected[0] as string) },
      { Role: 'MasterEscrowKey', Label: plan.labels.escrow, Curve: plan.algorithms.escrow, UDF: expected[1] as string, CkaId: keyObjectIdHex(expected[1] as string) },
    ];
    await record('keys-intent', {
      Keys: announced,
      Method: opened.Form === 'WrappedKeySet' ? 'unwrap' : 'import',
      ...(opened.Form === 'WrappedKeySet' ? { KeyEncryptionKey: `${plan.labels.signature}-escrow-kek`, KeyEncryptionKeyToken: false } : {}),
    });
    intent = announced;
    fault('keys-intent');

    // ---- import (host keys) or unwrap (wrapped keys, on the token only)
    let sigHandle: KeyHandle;
    let escHandle: KeyHandle;
    let sigPublic: PublicJwk;
    let escPublic: PublicJwk;
    if (opened.Form === 'WrappedKeySet') {
      if (!store.uri.startsWith('pkcs11:')) throw new CeremonyError(ErrorCode.CEREMONY_STATE, 'a generate-on-token-wrapped escrow can only be recovered onto a PKCS#11 token');
      const p11 = store as Pkcs11KeyStore;
      const [sigKey, escKey] = opened.KeySet.Keys;
      if (sigKey === undefined || escKey === undefined) throw new Error('internal: wrapped key set without keys');
      let kek: AesKeyHandle | undefined;
      try {
        kek = await p11.importAesKey(`${plan.labels.signature}-escrow-kek`, key, { token: false, wrap: false, unwrap: true });
        sigHandle = await p11.unwrapKey(fromB64u(sigKey.Wrapped, 'Wrapped'), kek, 'CKM_AES_KEY_WRAP_PAD', {
          label: plan.labels.signature,
          publicJwk: sigKey.PublicKey,
          usage: 'sign',
          extractable: false,
        });
        fault('key-signature');
        escHandle = await p11.unwrapKey(fromB64u(escKey.Wrapped, 'Wrapped'), kek, 'CKM_AES_KEY_WRAP_PAD', {
          label: plan.labels.escrow,
          publicJwk: escKey.PublicKey,
          usage: 'derive',
          extractable: false,
        });
        fault('key-escrow');
      } finally {
        if (kek !== undefined) await p11.destroyAesKey(kek).catch(() => undefined);
      }
      sigPublic = sigKey.PublicKey;
      escPublic = escKey.PublicKey;
      wipe(key);
    } else {
      const keySet = opened.KeySet;
      sigHandle = await store.importPrivate(plan.labels.signature, keySet.MasterSignatureKey, { usage: 'sign', extractable: false });
      fault('key-signature');
      escHandle = await store.importPrivate(plan.labels.escrow, keySet.MasterEscrowKeys[0] as PrivateJwk, { usage: 'derive', extractable: false });
      fault('key-escrow');
      sigPublic = publicOf(keySet.MasterSignatureKey);
      escPublic = publicOf(keySet.MasterEscrowKeys[0] as PrivateJwk);
      dropPrivate(set);
      set = undefined;
      wipe(key);
    }
    if (sigHandle.info.keyId !== expected[0] || escHandle.info.keyId !== expected[1]) {
      throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, 'the imported keys do not have the Master Profile UDFs');
    }
    const tests = [await selfTest(sigHandle, sigPublic), await selfTest(escHandle, escPublic)];
    step(
      'import',
      opened.Form === 'WrappedKeySet'
        ? `keys unwrapped onto ${tokenName} (CKM_AES_KEY_WRAP_PAD; non-extractable, sensitive) and tested; session AES key destroyed, K wiped`
        : `keys imported onto ${tokenName} (non-extractable, sensitive) and tested; host copy dropped`,
    );
    await record('import', {
      Keys: [
        { Label: plan.labels.signature, UDF: sigHandle.info.keyId, Location: sigHandle.info.location, Test: tests[0] },
        { Label: plan.labels.escrow, UDF: escHandle.info.keyId, Location: escHandle.info.location, Test: tests[1] },
      ],
      Extractable: false,
      Sensitive: true,
      ...(opened.Form === 'WrappedKeySet'
        ? { Method: 'unwrap', Wrapping: 'CKM_AES_KEY_WRAP_PAD', HostCopy: 'none (keys unwrapped on the token); session AES key destroyed; session key wiped' }
        : { HostCopy: 'dropped; session key wiped' }),
    });
    fault('import');
    await record('complete', { Master: vm.identifier, Keys: expected });
    const head = await signLogHead(log.head, sigHandle.signer());
    await writeFileAtomic(join(staging, HEAD), JSON.stringify(head, null, 2) + '\n', { mode: 0o644 });
    fault('complete');
    // ---- publish: the transcript, then the signed head (the mark of a finished recovery), then drop .staging
    await rename(join(staging, TRANSCRIPT), join(out, TRANSCRIPT));
    await rename(join(staging, HEAD), join(out, HEAD));
    await fsyncDir(out);
    intent = undefined; // finished: nothing is undone from here on
    await secureRemoveTree(staging);
    step('transcript', `${TRANSCRIPT} (${log.count} entries) and ${HEAD} signed by the recovered master key`);
    return {
      out,
      master: vm.identifier,
      blob: blobId,
      token: store.uri,
      shares: verdicts,
      used,
      keys: [
        { role: 'MasterSignatureKey', label: plan.labels.signature, keyId: sigHandle.info.keyId, location: sigHandle.info.location },
        { role: 'MasterEscrowKey', label: plan.labels.escrow, keyId: escHandle.info.keyId, location: escHandle.info.location },
      ],
      transcript: { entries: log.count, head: log.head.id, files: [TRANSCRIPT, HEAD] },
    };
  } catch (e) {
    if (intent === undefined) {
      // Nothing was created on the token (or the recovery is already published): leave no staging.
      if (stagingCreated && !(await exists(join(out, HEAD)))) {
        await secureRemoveTree(staging).catch(() => undefined);
        if (outCreated) await rmdir(out).catch(() => undefined);
      }
      throw e;
    }
    // Leave no half-recovered keys on the token: delete exactly the announced objects (label + CKA_ID).
    let cleaned = false;
    if (store !== undefined) {
      try {
        await deleteRecoveryKeys(store, intent);
        await secureRemoveTree(staging);
        if (outCreated) await rmdir(out).catch(() => undefined);
        cleaned = true;
      } catch {
        cleaned = false;
      }
    }
    if (!cleaned && e instanceof MeshkitError) {
      e.message = `${e.message} — the recovery was interrupted after keys-intent; run "meshkit ceremony abort --plan PLAN --out ${out}" to remove what it created`;
    }
    throw e;
  } finally {
    wipe(key);
    dropPrivate(set);
    await store?.close().catch(() => undefined);
  }
}
