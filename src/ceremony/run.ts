/**
 * The offline master-key ceremony engine (docs/ceremony.md): preflight → keys → profiles → offline
 * escrow → verify → acknowledgements → signed transcript → publish.
 *
 * Crash safety: every file is written into `DIR/.staging/` with atomic writes; the transcript
 * (`transcript.jsonl`, a src/core/hashlog.ts HashLog) is rewritten atomically after every step;
 * `keys-intent` is recorded before any object is created on the token; the staged files are moved
 * into DIR only after verification (publish) and `.staging` is removed last. An interrupted
 * ceremony leaves `.staging` (and perhaps labelled objects on the token), which `runCeremony`
 * refuses with instructions to run `meshkit ceremony abort` (src/ceremony/abort.ts).
 *
 * generate-on-token-wrapped: the keys are made on the token (sensitive, extractable only so they
 * can be wrapped); a fresh 256-bit session key K is imported as a session AES key, each private key
 * is wrapped under it (CKM_AES_KEY_WRAP_PAD), the AES object is destroyed; the blob (the wrapped
 * form of src/core/escrow.ts) is encrypted under K and K is split as for import-with-escrow. The
 * verify step recombines K from a random k-subset, unwraps every key into a session object, tests
 * it against its public key and destroys it; then the token keys are made non-extractable.
 *
 * The transcript never holds a secret: no share value, no private key, no PIN.
 */
import { createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, randomInt } from 'node:crypto';
import { userInfo } from 'node:os';
import { mkdir, readdir, readFile, rename, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { b64u, equalBytes, fromB64u, fromUtf8, toHex, utf8, wipe } from '../core/bytes.js';
import { ErrorCode, MeshkitError, UnsupportedError } from '../core/errors.js';
import {
  createOfflineEscrow,
  createOfflineEscrowWrapped,
  openOfflineEscrowAny,
  type EscrowedKeySet,
  type OfflineEscrowBlob,
  type WrappedKeySet,
} from '../core/escrow.js';
import { HashLog, signLogHead } from '../core/hashlog.js';
import { keyId as computeKeyId } from '../core/keys.js';
import {
  composeMasterProfile,
  composePersonalProfile,
  ProfileType,
  signProfile,
  verifyProfile,
  type SignedProfile,
} from '../core/profiles.js';
import { combineShares, splitSecret } from '../core/shamir.js';
import type { Curve, PrivateJwk, PublicJwk } from '../core/signer.js';
import { udfNonce, udfParse } from '../core/udf.js';
import { openKeyReference, openKeyStore, type KeyHandle, type KeyStore, type SecretSource } from '../keystore/index.js';
import type { Pkcs11KeyStore, TokenCapabilities } from '../keystore/pkcs11/index.js';
import type { AesKeyHandle } from '../keystore/pkcs11/store.js';
import { ceremonyFileFingerprint, exists, formatShareFile, fsyncDir, parseShareFile, secureRemoveTree, writeFileAtomic } from './files.js';
import { CeremonyError, redactTokenUri, type CeremonyPlan, type PlanAdministrator } from './plan.js';

/** Named points after which the fault-injection switch can stop the process (test only). */
export const CEREMONY_FAULT_POINTS = [
  'plan',
  'preflight',
  'keys-intent',
  'keys-first-object',
  'keys',
  'escrow',
  'import',
  'profiles',
  'verify',
  'acknowledgement',
  'complete',
  'publish-partial',
] as const;
export type CeremonyFaultPoint = (typeof CEREMONY_FAULT_POINTS)[number];

/** The staging directory name inside DIR. */
export const STAGING_DIR = '.staging';
/** Files of a finished ceremony in DIR (escrow/ and shares/ hold more). */
export const OUTPUT_FILES = ['plan.json', 'master.json', 'personal.json', 'account.json', 'transcript.jsonl', 'transcript.head.json'] as const;
export const OUTPUT_DIRS = ['escrow', 'shares'] as const;

/** Where the ceremony's secrets come from. */
export interface CeremonySecrets {
  /** The token's user PIN (or the software store's passphrase). */
  token: SecretSource;
  /** An administrator key's PIN / passphrase source; undefined to rely on the reference's pin-source. */
  admin?: (admin: PlanAdministrator) => SecretSource | undefined;
}

/** What one step did (for progress output). */
export interface CeremonyStepReport {
  step: string;
  detail: string;
  ms: number;
}

/** What {@link CeremonyPrompts.presentShare} shows of one custodian's share. */
export interface ShareInfo {
  custodian: string;
  index: number;
  count: number;
  /** Where the share file is now: `DIR/.staging/shares/<i>.txt` (until the ceremony finishes). */
  path: string;
  /** Where the share file ends up when the ceremony finishes: `DIR/shares/<i>.txt`. */
  finalPath: string;
  text: string;
}

/** Attempts each person has to type their name at the acknowledgement step. */
export const ACKNOWLEDGE_ATTEMPTS = 3;

/**
 * Interactive hooks (used only when `interactive`). A hook that throws an Error named
 * `ExitPromptError` (what @inquirer/prompts throws when the operator presses Ctrl+C at a prompt),
 * or a PIN source that does, stops the ceremony with ERR_CEREMONY_STATE "the operator interrupted
 * the ceremony (Ctrl+C) at step …" (see {@link isOperatorInterrupt}).
 */
export interface CeremonyPrompts {
  /** Shown before each step; false stops the ceremony. */
  confirmStep(step: string, detail: string): Promise<boolean>;
  /** Called once per custodian after their share file is written; show it, wait, clear. */
  presentShare(info: ShareInfo): Promise<void>;
  /**
   * Asks `who` to type their name; returns what was typed. `retry`, on the second and later
   * attempts, says why the previous entry was refused and how many attempts are left; show it.
   */
  acknowledge(who: string, role: 'operator' | 'witness', retry?: string): Promise<string>;
}

/**
 * Whether `e` (or an error in its `cause` chain) is the operator interrupting a prompt: an Error
 * named `ExitPromptError` (@inquirer/prompts' "User force closed the prompt with SIGINT" on Ctrl+C).
 * @throws nothing: any value is accepted (a non-Error is not an interrupt).
 */
export function isOperatorInterrupt(e: unknown): boolean {
  for (let c: unknown = e, depth = 0; c instanceof Error && depth < 8; c = c.cause, depth++) {
    if (c.name === 'ExitPromptError') return true;
  }
  return false;
}

export interface RunCeremonyOptions {
  out: string;
  secrets: CeremonySecrets;
  /** Default false (as `--yes`). */
  interactive?: boolean;
  confirm?: CeremonyPrompts;
  onStep?: (step: CeremonyStepReport) => void;
  /** Stop the process (SIGKILL) right after this point: the test-only fault-injection switch. */
  fault?: CeremonyFaultPoint;
  /** What the fault does (default: SIGKILL this process). */
  faultAction?: (point: CeremonyFaultPoint) => void;
  /** Operator name recorded in the transcript (default: the OS user). */
  operator?: string;
  /** PKCS#11 module when the URIs have no module-path. */
  modulePath?: string;
}

export interface CeremonySummary {
  out: string;
  ceremonyId: string;
  origin: CeremonyPlan['keyOrigin'];
  token: { uri: string; label?: string; serial?: string; kind: 'pkcs11' | 'software' };
  master: { identifier: string; signatureKey: string; escrowKey: string };
  personal: { identifier: string; signedBy: string; administrator: string };
  escrow?: { blobId: string; threshold: number; shares: number; verifiedWith: number[]; form: 'EscrowedKeySet' | 'WrappedKeySet' };
  transcript: { entries: number; head: string | null };
  files: string[];
  steps: CeremonyStepReport[];
}

interface ResolvedAdmin {
  admin: PlanAdministrator;
  publicJwk: PublicJwk;
  keyId: string;
  handle?: KeyHandle;
  store?: KeyStore;
}

/** The CKA_ID meshkit gives a key on a token (first 16 bytes of the binary key UDF), as hex. */
export function keyObjectIdHex(keyId: string): string {
  return toHex(udfParse(keyId).bytes.slice(0, 16));
}

function isPkcs11(store: KeyStore): store is Pkcs11KeyStore {
  return store.uri.startsWith('pkcs11:');
}

function hostKeyPair(curve: Curve): PrivateJwk {
  const kp =
    curve === 'P-256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync(curve.toLowerCase() as 'ed25519', {});
  const jwk = kp.privateKey.export({ format: 'jwk' });
  const out: Record<string, string> = { kty: String(jwk.kty), crv: String(jwk.crv), x: String(jwk.x), d: String(jwk.d) };
  if (jwk.y !== undefined) out['y'] = jwk.y;
  return out as unknown as PrivateJwk;
}

function publicOf(jwk: PrivateJwk): PublicJwk {
  const { d: _d, ...pub } = jwk as unknown as Record<string, string>;
  return pub as unknown as PublicJwk;
}

/** Checks DIR: absent or empty; refuses `.staging` (interrupted) or any file. */
export async function checkOutDir(out: string): Promise<{ created: boolean }> {
  let entries: string[];
  try {
    entries = await readdir(out);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { created: true };
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') throw new CeremonyError(ErrorCode.CEREMONY_STATE, `--out ${out} is a file, not a directory`);
    throw e;
  }
  if (entries.includes(STAGING_DIR)) {
    throw new CeremonyError(
      ErrorCode.CEREMONY_STATE,
      `${out} holds an interrupted ceremony (${STAGING_DIR}): nothing in it was published. ` +
        `Run "meshkit ceremony abort --plan PLAN --out ${out}" to remove what it created (token objects and staged files), then run the ceremony again`,
    );
  }
  if (entries.length > 0) {
    throw new CeremonyError(ErrorCode.CEREMONY_STATE, `--out ${out} is not empty (${entries.slice(0, 5).join(', ')}${entries.length > 5 ? ', …' : ''}): give a new or empty directory`);
  }
  return { created: false };
}

/**
 * Runs a ceremony and returns what it did.
 * @throws CeremonyError ERR_CEREMONY_STATE (DIR not empty or interrupted, labels already on the
 *   token, stopped by the operator), ERR_CEREMONY_VERIFY_FAILED (verification before finishing failed).
 * @throws UnsupportedError naming the token and mechanism when the token cannot do what the plan asks.
 * @throws Pkcs11Error / KeyStoreError from the stores (PIN, token), and the secret sources' errors.
 */
export async function runCeremony(plan: CeremonyPlan, opts: RunCeremonyOptions): Promise<CeremonySummary> {
  if (typeof plan !== 'object' || plan === null || !(plan.bytes instanceof Uint8Array)) throw new TypeError('"plan" expected a CeremonyPlan from parsePlan');
  if (typeof opts?.out !== 'string' || opts.out === '') throw new TypeError('"opts.out" expected a directory path');
  const out = resolve(opts.out);
  const staging = join(out, STAGING_DIR);
  const interactive = opts.interactive === true;
  if (interactive && opts.confirm === undefined) throw new TypeError('"opts.confirm" is needed when interactive');
  const prompts = opts.confirm;
  const steps: CeremonyStepReport[] = [];
  const log = new HashLog();
  const operator = opts.operator ?? safeUser();
  const escrowed = plan.keyOrigin !== 'generate-on-token';

  const { created } = await checkOutDir(out);
  await mkdir(out, { recursive: true, mode: 0o700 });
  await mkdir(staging, { mode: 0o700 });
  await mkdir(join(staging, 'escrow'), { mode: 0o700 });
  await mkdir(join(staging, 'shares'), { mode: 0o700 });
  await fsyncDir(out);

  const fault = (point: CeremonyFaultPoint): void => {
    if (opts.fault !== point) return;
    if (opts.faultAction !== undefined) opts.faultAction(point);
    else process.kill(process.pid, 'SIGKILL');
  };
  let t0 = performance.now();
  /** The step in progress, named in the message when the operator interrupts a prompt. */
  let current = 'plan';
  const confirmStep = async (step: string, detail: string): Promise<void> => {
    t0 = performance.now();
    current = step;
    if (!interactive || prompts === undefined) return;
    if (!(await prompts.confirmStep(step, detail))) {
      throw new CeremonyError(ErrorCode.CEREMONY_STATE, `the ceremony was stopped by the operator before step "${step}"`);
    }
  };
  const record = async (type: string, detail: string, body: Record<string, unknown>): Promise<void> => {
    log.append(type, body);
    await writeFileAtomic(join(staging, 'transcript.jsonl'), log.lines().join('\n') + '\n', { mode: 0o644 });
    const s = { step: type, detail, ms: Math.round(performance.now() - t0) };
    steps.push(s);
    opts.onStep?.(s);
    fault(type as CeremonyFaultPoint);
  };

  let store: KeyStore | undefined;
  const admins: ResolvedAdmin[] = [];
  let intentRecorded = false;
  try {
    // ---- plan
    const ceremonyId = udfNonce(128);
    await confirmStep('plan', `ceremony ${JSON.stringify(plan.name)}, origin ${plan.keyOrigin}, token ${redactTokenUri(plan.token)}`);
    await writeFileAtomic(join(staging, 'plan.json'), plan.bytes, { mode: 0o644 });
    await record('plan', `plan ${plan.fingerprint}, ceremony ${ceremonyId}`, {
      Plan: plan.fingerprint,
      Ceremony: ceremonyId,
      Name: plan.name,
      Operator: operator,
      Witnesses: plan.witnesses,
      Origin: plan.keyOrigin,
      Token: redactTokenUri(plan.token),
    });

    // ---- preflight
    await confirmStep('preflight', `open and log in to ${redactTokenUri(plan.token)}, check labels, mechanisms and administrators`);
    store = await openKeyStore(plan.token, opts.secrets.token, {
      ...(plan.token.startsWith('file:') ? { create: true } : {}),
      ...(opts.modulePath === undefined ? {} : { modulePath: opts.modulePath }),
    });
    const tokenInfo = isPkcs11(store)
      ? { uri: store.uri, label: store.token.label, serial: store.token.serial, kind: 'pkcs11' as const }
      : { uri: store.uri, kind: 'software' as const };
    const present = (await store.list()).map((k) => k.label);
    const taken = [plan.labels.signature, plan.labels.escrow].filter((l) => present.includes(l));
    if (taken.length > 0) {
      throw new CeremonyError(
        ErrorCode.CEREMONY_STATE,
        `token ${tokenInfo.label ?? store.uri} already holds keys labelled ${taken.map((l) => JSON.stringify(l)).join(', ')}: ` +
          `if an interrupted ceremony made them, run "meshkit ceremony abort --plan PLAN --out DIR" with its DIR; otherwise use a fresh token or other Labels`,
      );
    }
    const facts = isPkcs11(store) ? await checkCapabilities(plan, store) : ['software key store: every curve, import as non-extractable'];
    for (const admin of plan.administrators) admins.push(await resolveAdmin(admin, opts));
    const usable = admins.find((a) => a.handle !== undefined);
    if (usable === undefined) {
      throw new CeremonyError(ErrorCode.CEREMONY_STATE, `no administrator key is usable at the ceremony: at least one Administrators entry needs a Key reference (pkcs11: or file:) to sign the first Personal Profile`);
    }
    await record('preflight', `token ${tokenInfo.label ?? store.uri} logged in; labels free; ${admins.length} administrator(s), signing with ${usable.admin.name}`, {
      Token: { Uri: redactTokenUri(store.uri), Kind: tokenInfo.kind, ...(tokenInfo.label === undefined ? {} : { Label: tokenInfo.label, Serial: tokenInfo.serial }) },
      Capabilities: facts,
      Administrators: admins.map((a) => ({ Name: a.admin.name, UDF: a.keyId, Usable: a.handle !== undefined })),
      Checks: ['token logged in', 'labels free', 'mechanisms and curves present', 'output directory empty', 'administrators resolved'],
    });

    // ---- keys-intent
    const kekLabel = `${plan.labels.signature}-escrow-kek`;
    await confirmStep('keys', `create the master signature key (${plan.algorithms.signature}) and master escrow key (${plan.algorithms.escrow}), origin ${plan.keyOrigin}`);
    await record('keys-intent', `about to create ${plan.labels.signature} and ${plan.labels.escrow} on the token`, {
      Origin: plan.keyOrigin,
      Keys: [
        { Label: plan.labels.signature, Curve: plan.algorithms.signature, Role: 'MasterSignatureKey' },
        { Label: plan.labels.escrow, Curve: plan.algorithms.escrow, Role: 'MasterEscrowKey' },
      ],
      ...(plan.keyOrigin === 'generate-on-token-wrapped' ? { KeyEncryptionKey: kekLabel, KeyEncryptionKeyToken: false } : {}),
    });
    intentRecorded = true;

    // ---- keys
    let sigHandle: KeyHandle | undefined;
    let escHandle: KeyHandle | undefined;
    let hostKeys: EscrowedKeySet | undefined;
    let sigPub: PublicJwk;
    let escPub: PublicJwk;
    if (plan.keyOrigin === 'import-with-escrow') {
      const sig = hostKeyPair(plan.algorithms.signature);
      const esc = hostKeyPair(plan.algorithms.escrow);
      hostKeys = { MasterSignatureKey: sig, MasterEscrowKeys: [esc] };
      sigPub = publicOf(sig);
      escPub = publicOf(esc);
    } else {
      const extractable = plan.keyOrigin === 'generate-on-token-wrapped';
      sigHandle = await store.generate(plan.labels.signature, plan.algorithms.signature, { usage: 'sign', extractable });
      fault('keys-first-object');
      escHandle = await store.generate(plan.labels.escrow, plan.algorithms.escrow, { usage: 'derive', extractable });
      sigPub = sigHandle.info.publicJwk;
      escPub = escHandle.info.publicJwk;
    }
    const sigId = computeKeyId(sigPub);
    const escId = computeKeyId(escPub);
    const where = plan.keyOrigin === 'import-with-escrow' ? 'host (node:crypto, OS CSPRNG)' : `token ${tokenInfo.label ?? store.uri}`;
    await record('keys', `master signature key ${sigId}, master escrow key ${escId}, made on ${where}`, {
      Origin: plan.keyOrigin,
      Where: where,
      ...(plan.keyOrigin === 'generate-on-token-wrapped' ? { Sensitive: true, Extractable: 'only wrapped (for the escrow)' } : {}),
      Keys: [
        { Label: plan.labels.signature, Curve: plan.algorithms.signature, UDF: sigId, ...(tokenInfo.kind === 'pkcs11' ? { CkaId: keyObjectIdHex(sigId) } : {}) },
        { Label: plan.labels.escrow, Curve: plan.algorithms.escrow, UDF: escId, ...(tokenInfo.kind === 'pkcs11' ? { CkaId: keyObjectIdHex(escId) } : {}) },
      ],
    });

    // ---- escrow
    const files: string[] = ['plan.json'];
    let blobId: string | undefined;
    const wrappedOrigin = plan.keyOrigin === 'generate-on-token-wrapped';
    if (escrowed) {
      await confirmStep(
        'escrow',
        wrappedOrigin
          ? `wrap both keys on the token under a fresh session key (CKM_AES_KEY_WRAP_PAD), escrow blob, ${plan.threshold} of ${plan.custodians.length} shares, one file per custodian`
          : `escrow blob, ${plan.threshold} of ${plan.custodians.length} shares, one file per custodian`,
      );
      let blob: OfflineEscrowBlob;
      let shares: string[];
      let escrowFacts: Record<string, unknown> = {};
      if (wrappedOrigin) {
        if (!isPkcs11(store) || sigHandle === undefined || escHandle === undefined) throw new Error('internal: generate-on-token-wrapped without token keys');
        const made = await wrapAndEscrow(store, kekLabel, [
          { role: 'MasterSignatureKey', label: plan.labels.signature, handle: sigHandle },
          { role: 'MasterEscrowKey', label: plan.labels.escrow, handle: escHandle },
        ], plan, [sigId, escId]);
        blob = made.blob;
        blobId = made.blobId;
        shares = made.shares;
        escrowFacts = {
          Form: 'WrappedKeySet',
          Wrapping: 'CKM_AES_KEY_WRAP_PAD',
          KeyEncryptionKey: { Label: kekLabel, Token: false, Destroyed: true },
          SessionKey: 'imported as a session CKK_AES key, split, wiped',
        };
      } else {
        if (hostKeys === undefined) throw new Error('internal: import-with-escrow without host keys');
        const created = createOfflineEscrow(hostKeys);
        const sessionKey = created.sessionKey;
        blobId = created.blobId;
        blob = created.blob;
        try {
          const reopened = openOfflineEscrowAny(created.blob, sessionKey);
          if (reopened.Form !== 'EscrowedKeySet' || reopened.KeySet.MasterSignatureKey.kid !== sigId || reopened.KeySet.MasterEscrowKeys[0]?.kid !== escId) {
            throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, 'the escrow blob does not round-trip to the master keys');
          }
          shares = splitSecret(sessionKey, plan.threshold, plan.custodians.length);
        } finally {
          sessionKey.fill(0);
        }
      }
      const blobBytes = utf8(JSON.stringify(blob, null, 2) + '\n');
      const blobRel = `escrow/${blobId}.json`;
      await writeFileAtomic(join(staging, blobRel), blobBytes, { mode: 0o644 });
      files.push(blobRel);
      const date = new Date().toISOString();
      const shareFacts: Array<{ Index: number; Custodian: string; File: string; Fingerprint: string }> = [];
      for (const [i, custodian] of plan.custodians.entries()) {
        const rel = `shares/${i + 1}.txt`;
        const text = formatShareFile({
          ceremony: plan.name,
          custodian,
          index: i + 1,
          count: plan.custodians.length,
          threshold: plan.threshold,
          master: sigId,
          blob: blobId,
          date,
          share: shares[i] as string,
        });
        await writeFileAtomic(join(staging, rel), text, { mode: 0o600 });
        files.push(rel);
        shareFacts.push({ Index: i + 1, Custodian: custodian, File: rel, Fingerprint: ceremonyFileFingerprint(utf8(text)) });
        if (interactive && prompts !== undefined) {
          await prompts.presentShare({ custodian, index: i + 1, count: plan.custodians.length, path: join(staging, rel), finalPath: join(out, rel), text });
        }
      }
      shares.length = 0;
      await record('escrow', `blob ${blobId}, ${plan.threshold} of ${plan.custodians.length} shares written`, {
        Blob: blobId,
        BlobFile: blobRel,
        BlobFingerprint: ceremonyFileFingerprint(blobBytes),
        Threshold: plan.threshold,
        Shares: plan.custodians.length,
        ShareFiles: shareFacts,
        RoundTrip: 'blob opened with the session key; key UDFs match',
        ...escrowFacts,
      });
    }
    if (escrowed && !wrappedOrigin) {
      if (hostKeys === undefined) throw new Error('internal: import-with-escrow without host keys');
      // ---- import
      await confirmStep('import', `import both keys into the token as non-extractable and sensitive, wipe the host copy`);
      sigHandle = await store.importPrivate(plan.labels.signature, hostKeys.MasterSignatureKey, { usage: 'sign', extractable: false });
      fault('keys-first-object');
      escHandle = await store.importPrivate(plan.labels.escrow, hostKeys.MasterEscrowKeys[0] as PrivateJwk, { usage: 'derive', extractable: false });
      wipeJwk(hostKeys.MasterSignatureKey);
      for (const k of hostKeys.MasterEscrowKeys) wipeJwk(k);
      hostKeys = undefined;
      if (sigHandle.info.keyId !== sigId || escHandle.info.keyId !== escId) {
        throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, 'the imported keys do not have the UDFs of the generated keys');
      }
      await record('import', `keys imported into ${tokenInfo.label ?? store.uri} (non-extractable, sensitive); host copy wiped`, {
        Keys: [sigId, escId],
        Extractable: false,
        Sensitive: true,
        HostCopy: 'wiped',
      });
    }
    if (sigHandle === undefined || escHandle === undefined) throw new Error('internal: keys missing');

    // ---- profiles
    await confirmStep('profiles', `sign the Master Profile with the master key on the token and the Personal Profile with ${usable.admin.name}`);
    const masterProfile = composeMasterProfile({
      signatureKey: sigPub,
      escrowKeys: [escPub],
      adminKeys: admins.map((a) => a.publicJwk),
      names: plan.names,
    });
    const signedMaster = await signProfile(ProfileType.Master, masterProfile, sigHandle.signer());
    const personalProfile = composePersonalProfile({ master: signedMaster, names: plan.names });
    const signedPersonal = await signProfile(ProfileType.Personal, personalProfile, (usable.handle as KeyHandle).signer());
    const vm = await verifyProfile(signedMaster);
    const vp = await verifyProfile(signedPersonal, { master: signedMaster });
    const masterBytes = utf8(JSON.stringify(signedMaster, null, 2) + '\n');
    const personalBytes = utf8(JSON.stringify(signedPersonal, null, 2) + '\n');
    await writeFileAtomic(join(staging, 'master.json'), masterBytes, { mode: 0o644 });
    await writeFileAtomic(join(staging, 'personal.json'), personalBytes, { mode: 0o644 });
    files.push('master.json', 'personal.json');
    await record('profiles', `Master Profile ${vm.identifier}; Personal Profile signed by ${usable.admin.name}`, {
      Master: vm.identifier,
      MasterFile: { File: 'master.json', Fingerprint: ceremonyFileFingerprint(masterBytes) },
      Personal: vp.identifier,
      PersonalFile: { File: 'personal.json', Fingerprint: ceremonyFileFingerprint(personalBytes) },
      PersonalSignedBy: { Administrator: usable.admin.name, UDF: vp.signerKeyId },
    });

    // ---- verify
    await confirmStep('verify', escrowed ? `recombine a random ${plan.threshold}-subset of the share files, open the blob, compare key UDFs` : 'compare the token keys with the Master Profile');
    let subset: number[] = [];
    if (escrowed && blobId !== undefined) {
      const checked = await verifyEscrow(staging, plan, blobId, signedMaster, wrappedOrigin && isPkcs11(store) ? store : undefined, kekLabel);
      subset = checked.subset;
      let locked: boolean | undefined;
      if (wrappedOrigin && isPkcs11(store)) {
        // The escrow is made and proven: the token keys need never leave the token again.
        locked = (await store.lockExtractable(sigHandle)) && (await store.lockExtractable(escHandle));
      }
      await record('verify', `shares ${subset.join(', ')} recombine the session key; recovered key UDFs = Master Profile UDFs${checked.unwrapTests === undefined ? '' : '; the wrapped keys unwrap and work'}`, {
        Subset: subset,
        Recovered: checked.recovered,
        Profile: [masterProfile.MasterSignatureKey.UDF, ...masterProfile.MasterEscrowKeys.map((k) => k.UDF)],
        Match: true,
        ...(checked.unwrapTests === undefined ? {} : { Method: 'shares + unwrap', UnwrapTests: checked.unwrapTests }),
        ...(locked === undefined ? {} : { TokenKeysExtractable: !locked }),
      });
    } else {
      const onToken = [(await store.get(plan.labels.signature)).info.keyId, (await store.get(plan.labels.escrow)).info.keyId];
      const inProfile = [masterProfile.MasterSignatureKey.UDF, masterProfile.MasterEscrowKeys[0]?.UDF];
      if (onToken[0] !== inProfile[0] || onToken[1] !== inProfile[1]) throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, 'the keys on the token are not those of the Master Profile');
      await record('verify', 'token keys = Master Profile keys (no offline escrow for generate-on-token)', { Method: 'token-keys', Recovered: onToken, Profile: inProfile, Match: true });
    }

    // ---- acknowledgements
    current = 'acknowledgement';
    const acks: Array<{ Name: string; Role: string; Confirmed: string }> = [];
    for (const [who, role] of [[operator, 'operator'], ...plan.witnesses.map((w) => [w, 'witness'])] as Array<[string, 'operator' | 'witness']>) {
      if (interactive && prompts !== undefined) {
        // Exact match (leading/trailing white space ignored); ACKNOWLEDGE_ATTEMPTS tries per person.
        const whose = role === 'operator' ? 'the operator name' : "the plan's name";
        let retry: string | undefined;
        for (let attempt = 1; ; attempt++) {
          const typed = (await prompts.acknowledge(who, role, retry)).trim();
          if (typed === who) break;
          const left = ACKNOWLEDGE_ATTEMPTS - attempt;
          if (left === 0) {
            throw new CeremonyError(
              ErrorCode.CEREMONY_STATE,
              `${role} ${JSON.stringify(who)} did not confirm: ${ACKNOWLEDGE_ATTEMPTS} attempts did not match ${whose} exactly (last typed ${JSON.stringify(typed)})`,
            );
          }
          retry = `${JSON.stringify(typed)} does not match ${whose} ${JSON.stringify(who)} (exact match), try again (${left} left)`;
        }
        acks.push({ Name: who, Role: role, Confirmed: 'typed name' });
      } else {
        acks.push({ Name: who, Role: role, Confirmed: 'non-interactive' });
      }
    }
    t0 = performance.now();
    await record('acknowledgement', `${acks.length} acknowledgement(s)`, { Acknowledgements: acks });

    // ---- account, complete, signed head
    const account = {
      Account: {
        Identifier: vm.identifier,
        Names: plan.names,
        Master: 'master.json',
        Personal: 'personal.json',
        MasterKeys: { Signature: sigHandle.info.location, Escrow: escHandle.info.location },
        Administrators: admins.map((a) => ({ Name: a.admin.name, UDF: a.keyId, ...(a.admin.key === undefined ? {} : { Key: a.admin.key }) })),
        ...(blobId === undefined ? {} : { Escrow: `escrow/${blobId}.json` }),
        Transcript: 'transcript.jsonl',
      },
    };
    const accountBytes = utf8(JSON.stringify(account, null, 2) + '\n');
    await writeFileAtomic(join(staging, 'account.json'), accountBytes, { mode: 0o644 });
    files.push('account.json');
    const listed: Array<{ File: string; Fingerprint: string }> = [];
    for (const f of files) listed.push({ File: f, Fingerprint: ceremonyFileFingerprint(new Uint8Array(await readFile(join(staging, f)))) });
    await record('complete', `${files.length} files`, { Files: listed });
    const head = await signLogHead(log.head, sigHandle.signer());
    await writeFileAtomic(join(staging, 'transcript.head.json'), JSON.stringify(head, null, 2) + '\n', { mode: 0o644 });

    // ---- publish
    await publish(out, staging, files, fault);

    return {
      out,
      ceremonyId,
      origin: plan.keyOrigin,
      token: tokenInfo,
      master: { identifier: vm.identifier, signatureKey: sigId, escrowKey: escId },
      personal: { identifier: vp.identifier, signedBy: vp.signerKeyId, administrator: usable.admin.name },
      ...(blobId === undefined ? {} : { escrow: { blobId, threshold: plan.threshold, shares: plan.custodians.length, verifiedWith: subset, form: wrappedOrigin ? ('WrappedKeySet' as const) : ('EscrowedKeySet' as const) } }),
      transcript: { entries: log.count, head: log.head.id },
      files: [...files, 'transcript.jsonl', 'transcript.head.json'],
      steps,
    };
  } catch (caught) {
    const e = isOperatorInterrupt(caught)
      ? new CeremonyError(ErrorCode.CEREMONY_STATE, `the operator interrupted the ceremony (Ctrl+C) at step "${current}"`, { cause: caught })
      : caught;
    if (!intentRecorded) {
      // Nothing was created on the token: leave no trace.
      await secureRemoveTree(staging).catch(() => undefined);
      if (created) await rmdir(out).catch(() => undefined);
      throw e;
    }
    if (e instanceof MeshkitError) {
      // Same class, code and fields; the message says what to do next.
      e.message = `${e.message} — the ceremony was interrupted after keys-intent; run "meshkit ceremony abort --plan PLAN --out ${out}" to remove what it created`;
    }
    throw e;
  } finally {
    for (const a of admins) await a.store?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
  }
}

function safeUser(): string {
  try {
    return userInfo().username || 'operator';
  } catch {
    return 'operator';
  }
}

function wipeJwk(jwk: PrivateJwk): void {
  // Strings cannot be wiped in JavaScript; drop the private member so no reference remains.
  delete (jwk as unknown as Record<string, unknown>)['d'];
}

async function resolveAdmin(admin: PlanAdministrator, opts: RunCeremonyOptions): Promise<ResolvedAdmin> {
  if (admin.publicKey !== undefined) return { admin, publicJwk: admin.publicKey, keyId: computeKeyId(admin.publicKey) };
  const secret = opts.secrets.admin?.(admin) ?? (() => {
    throw new CeremonyError(ErrorCode.CEREMONY_STATE, `administrator ${JSON.stringify(admin.name)} needs a PIN or passphrase: use --admin-pin-env ${admin.name}=VAR or pin-source in its URI`);
  });
  try {
    const { store, handle } = await openKeyReference(admin.key as string, secret, {
      deferUnlock: true,
      ...(opts.modulePath === undefined ? {} : { modulePath: opts.modulePath }),
    });
    if (handle.info.usage !== 'sign') {
      await store.close();
      throw new CeremonyError(ErrorCode.CEREMONY_PLAN, `administrator ${JSON.stringify(admin.name)}: ${admin.key} is a ${handle.info.curve} ${handle.info.usage} key, not a signing key`);
    }
    return { admin, publicJwk: handle.info.publicJwk, keyId: handle.info.keyId, handle, store };
  } catch (e) {
    if (e instanceof MeshkitError && !(e instanceof CeremonyError)) e.message = `administrator ${JSON.stringify(admin.name)}: ${e.message}`;
    throw e;
  }
}

/**
 * The capability facts used, or an UnsupportedError naming token and mechanism. For
 * generate-on-token-wrapped, whether each curve's private keys can be wrapped comes from the
 * capability table (EdDSA/Montgomery keys: `wrap.edPrivateKeys`) or, where it says nothing
 * ('unknown', P-256), from wrapping a temporary session key of that curve ({@link Pkcs11KeyStore.probeWrap}).
 */
async function checkCapabilities(plan: CeremonyPlan, store: Pkcs11KeyStore): Promise<string[]> {
  const caps: TokenCapabilities = await store.capabilities();
  const tokenLabel = store.token.label;
  const facts: string[] = [];
  const sig = caps.curves[plan.algorithms.signature];
  const esc = caps.curves[plan.algorithms.escrow];
  const generating = plan.keyOrigin !== 'import-with-escrow';
  const need = (ok: boolean | undefined, what: string, mechanism: string): void => {
    if (ok !== true) {
      throw new UnsupportedError(ErrorCode.NOT_SUPPORTED, `token ${JSON.stringify(tokenLabel)} cannot ${what} (${mechanism}); choose other Algorithms or another token`);
    }
    facts.push(`${what}: ${mechanism}`);
  };
  const sigMech = plan.algorithms.signature === 'P-256' ? 'CKM_ECDSA' : 'CKM_EDDSA';
  const sigGen = plan.algorithms.signature === 'P-256' ? 'CKM_EC_KEY_PAIR_GEN' : 'CKM_EC_EDWARDS_KEY_PAIR_GEN';
  if (generating) need(sig.generate, `generate ${plan.algorithms.signature} keys`, sigGen);
  need(sig.sign, `sign with ${plan.algorithms.signature}`, sigMech);
  if (generating) need(esc.generate, `generate ${plan.algorithms.escrow} keys`, plan.algorithms.escrow === 'P-256' ? 'CKM_EC_KEY_PAIR_GEN' : 'CKM_EC_MONTGOMERY_KEY_PAIR_GEN or CKM_EC_EDWARDS_KEY_PAIR_GEN');
  need(esc.derive, `do ${plan.algorithms.escrow} key agreement`, 'CKM_ECDH1_DERIVE');
  if (plan.keyOrigin === 'generate-on-token-wrapped') {
    need(caps.wrap.aesKeyWrapPad, 'wrap private keys', 'CKM_AES_KEY_WRAP_PAD');
    const refuse = (c: Curve, reason: string): never => {
      throw new UnsupportedError(
        ErrorCode.NOT_SUPPORTED,
        `token ${JSON.stringify(tokenLabel)} cannot wrap ${c} private keys with CKM_AES_KEY_WRAP_PAD (${reason}): ` +
          `generate-on-token-wrapped is not possible here; use import-with-escrow, or P-256 Algorithms`,
      );
    };
    for (const c of new Set([plan.algorithms.signature, plan.algorithms.escrow])) {
      const table = c === 'P-256' ? 'unknown' : caps.wrap.edPrivateKeys;
      if (table === false) refuse(c, 'CKR_KEY_NOT_WRAPPABLE');
      if (table === 'unknown') {
        const probe = await store.probeWrap(c, 'CKM_AES_KEY_WRAP_PAD');
        if (!probe.wrappable) refuse(c, probe.reason ?? 'CKR_KEY_NOT_WRAPPABLE');
        facts.push(`wrap ${c} private keys: CKM_AES_KEY_WRAP_PAD (probed with a session key)`);
      } else {
        facts.push(`wrap ${c} private keys: CKM_AES_KEY_WRAP_PAD (capability table)`);
      }
    }
  }
  return facts;
}

/**
 * The wrapped escrow (generate-on-token-wrapped): a fresh 256-bit K from the OS CSPRNG is imported
 * as a session AES key (CKA_TOKEN=false, CKA_WRAP), each key is wrapped under it with
 * CKM_AES_KEY_WRAP_PAD, the AES object is destroyed, the blob is made (and opened again) under K,
 * K is split into the shares and wiped.
 */
async function wrapAndEscrow(
  store: Pkcs11KeyStore,
  kekLabel: string,
  keys: Array<{ role: 'MasterSignatureKey' | 'MasterEscrowKey'; label: string; handle: KeyHandle }>,
  plan: CeremonyPlan,
  expectedIds: string[],
): Promise<{ blob: OfflineEscrowBlob; blobId: string; shares: string[] }> {
  const sessionKey = new Uint8Array(randomBytes(32));
  try {
    let kek: AesKeyHandle | undefined;
    const set: WrappedKeySet = { Wrapping: 'CKM_AES_KEY_WRAP_PAD', Keys: [] };
    try {
      kek = await store.importAesKey(kekLabel, sessionKey, { token: false, wrap: true, unwrap: false });
      for (const k of keys) {
        const wrapped = await store.wrapKey(k.handle, kek, 'CKM_AES_KEY_WRAP_PAD');
        set.Keys.push({ Role: k.role, Label: k.label, Curve: k.handle.info.curve, PublicKey: k.handle.info.publicJwk, Wrapped: b64u(wrapped) });
      }
    } finally {
      if (kek !== undefined) await store.destroyAesKey(kek);
    }
    const { blob, blobId } = createOfflineEscrowWrapped(set, sessionKey);
    const reopened = openOfflineEscrowAny(blob, sessionKey);
    if (reopened.Form !== 'WrappedKeySet' || reopened.KeySet.Keys.map((k) => k.kid).join(' ') !== expectedIds.join(' ')) {
      throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, 'the escrow blob does not round-trip to the master keys');
    }
    const shares = splitSecret(sessionKey, plan.threshold, plan.custodians.length);
    return { blob, blobId, shares };
  } finally {
    wipe(sessionKey);
  }
}

/** Tests a key-agreement key on a token: ECDH with a host ephemeral key must give the host's Z. */
export async function testAgreement(handle: KeyHandle, expected: PublicJwk): Promise<boolean> {
  const eph = expected.crv === 'P-256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync(expected.crv.toLowerCase() as 'x25519');
  const epub = eph.publicKey.export({ format: 'jwk' });
  const z1 = await handle.decrypter().deriveSharedSecret({ kty: epub.kty as 'OKP', crv: expected.crv, x: String(epub.x), ...(epub.y === undefined ? {} : { y: epub.y }) });
  const z2 = new Uint8Array(diffieHellman({ privateKey: eph.privateKey, publicKey: createPublicKey({ key: { ...expected }, format: 'jwk' }) }));
  const same = equalBytes(z1, z2);
  wipe(z1, z2);
  return same;
}

async function verifyEscrow(
  staging: string,
  plan: CeremonyPlan,
  blobId: string,
  signedMaster: SignedProfile,
  store: Pkcs11KeyStore | undefined,
  kekLabel: string,
): Promise<{ subset: number[]; recovered: string[]; unwrapTests?: Array<{ Label: string; UDF: string; Test: string }> }> {
  const n = plan.custodians.length;
  const indices = Array.from({ length: n }, (_, i) => i + 1);
  for (let i = indices.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [indices[i], indices[j]] = [indices[j] as number, indices[i] as number];
  }
  const subset = indices.slice(0, plan.threshold).sort((a, b) => a - b);
  const shares: string[] = [];
  for (const i of subset) {
    const parsed = parseShareFile(fromUtf8(new Uint8Array(await readFile(join(staging, 'shares', `${i}.txt`)))));
    if (!parsed.checkValid) throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, `share file ${i}: Check does not match the share`);
    if (parsed.blob !== blobId) throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, `share file ${i} names blob ${parsed.blob}, expected ${blobId}`);
    shares.push(parsed.share);
  }
  const key = combineShares(shares);
  try {
    const blob = fromUtf8(new Uint8Array(await readFile(join(staging, 'escrow', `${blobId}.json`))));
    const opened = openOfflineEscrowAny(blob, key);
    const master = (await verifyProfile(signedMaster)).profile as { MasterSignatureKey: { UDF: string }; MasterEscrowKeys: Array<{ UDF: string }> };
    const recovered =
      opened.Form === 'EscrowedKeySet'
        ? [opened.KeySet.MasterSignatureKey.kid as string, ...opened.KeySet.MasterEscrowKeys.map((k) => k.kid as string)]
        : opened.KeySet.Keys.map((k) => k.kid);
    const expected = [master.MasterSignatureKey.UDF, ...master.MasterEscrowKeys.map((k) => k.UDF)];
    if (recovered.length !== expected.length || recovered.some((u, i) => u !== expected[i])) {
      throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, `the keys recovered from the escrow (${recovered.join(', ')}) are not those of the Master Profile (${expected.join(', ')})`);
    }
    if (opened.Form === 'EscrowedKeySet') {
      wipeJwk(opened.KeySet.MasterSignatureKey);
      for (const k of opened.KeySet.MasterEscrowKeys) wipeJwk(k);
      return { subset, recovered };
    }
    if (store === undefined) throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, 'a wrapped escrow blob needs the token to verify');
    // Prove the escrow: unwrap each key under the recombined K into session objects, test, destroy.
    const unwrapTests: Array<{ Label: string; UDF: string; Test: string }> = [];
    const kek = await store.importAesKey(kekLabel, key, { token: false, wrap: false, unwrap: true });
    try {
      for (const k of opened.KeySet.Keys) {
        const usage = k.Role === 'MasterSignatureKey' ? 'sign' : 'derive';
        const copy = await store.unwrapKey(fromB64u(k.Wrapped, 'Wrapped'), kek, 'CKM_AES_KEY_WRAP_PAD', {
          label: `${k.Label}-escrow-check`,
          publicJwk: k.PublicKey,
          usage,
          token: false,
          extractable: false,
        });
        try {
          // unwrapKey checked a signing key with a test signature under PublicKey; test agreement keys here.
          if (usage === 'derive' && !(await testAgreement(copy, k.PublicKey))) {
            throw new CeremonyError(ErrorCode.CEREMONY_VERIFY, `the escrowed ${k.Label} unwraps to a key that does not agree with its public key ${k.kid}`);
          }
        } finally {
          await store.destroyKey(copy);
        }
        unwrapTests.push({ Label: k.Label, UDF: k.kid, Test: usage === 'sign' ? 'unwrapped as a session key; signature verified under the public key' : 'unwrapped as a session key; key agreement matches the public key' });
      }
    } finally {
      await store.destroyAesKey(kek);
    }
    return { subset, recovered, unwrapTests };
  } finally {
    key.fill(0);
  }
}

/** Moves the staged files into DIR (transcript last) and removes `.staging`. */
async function publish(out: string, staging: string, files: string[], fault: (p: CeremonyFaultPoint) => void): Promise<void> {
  const topFiles = files.filter((f) => !f.includes('/'));
  let moved = 0;
  for (const f of topFiles) {
    await rename(join(staging, f), join(out, f));
    if (++moved === 2) fault('publish-partial');
  }
  for (const d of OUTPUT_DIRS) {
    const entries = await readdir(join(staging, d));
    if (entries.length > 0) await rename(join(staging, d), join(out, d));
    else await rmdir(join(staging, d));
  }
  await rename(join(staging, 'transcript.jsonl'), join(out, 'transcript.jsonl'));
  await rename(join(staging, 'transcript.head.json'), join(out, 'transcript.head.json'));
  await fsyncDir(out);
  const left = (await readdir(staging)).filter((f) => !f.startsWith('.tmp-'));
  if (left.length > 0) throw new Error(`internal: ${left.join(', ')} left in ${staging}`);
  await secureRemoveTree(staging);
  await fsyncDir(out);
  if (!(await exists(join(out, 'transcript.head.json')))) throw new Error('internal: publish failed');
}
