/**
 * `ceremony abort`: cleans up an interrupted ceremony (docs/ceremony.md, crash safety).
 *
 * It reads the interrupted ceremony's transcript (`DIR/.staging/transcript.jsonl`, or
 * `DIR/transcript.jsonl` when the crash came in the middle of publishing), checks that it belongs
 * to this plan, deletes exactly the token objects the transcript says were (or were about to be)
 * created — the labels of `keys-intent`, and, when the `keys` entry exists, only keys whose UDF is
 * the recorded one — then securely overwrites and removes `.staging` and any file the ceremony
 * had already moved into DIR. Nothing is recorded as done.
 *
 * It also aborts an interrupted `ceremony recover` (one command cleans up whatever was interrupted in
 * DIR; the DIR says which): `DIR/.staging/recovery-transcript.jsonl` marks a recovery. Then exactly
 * the token objects whose label AND CKA_ID match the recovery's `keys-intent` are deleted; an object
 * under an announced label with another CKA_ID (not the recovery's) is left and reported in
 * `foreignKeys`; `.staging` is removed; a re-run of `ceremony recover` then succeeds.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fromHex, fromUtf8 } from '../core/bytes.js';
import { ErrorCode, KeyStoreError } from '../core/errors.js';
import { HashLog, type LogEntry } from '../core/hashlog.js';
import { parseJsonStrict } from '../core/jose.js';
import { openKeyStore, type KeyStore, type SecretSource } from '../keystore/index.js';
import { exists, secureRemoveFile, secureRemoveTree } from './files.js';
import { CeremonyError, type CeremonyPlan } from './plan.js';
import { OUTPUT_DIRS, OUTPUT_FILES, STAGING_DIR } from './run.js';
import { deleteRecoveryKeys, RECOVERY_HEAD, RECOVERY_TRANSCRIPT, type RecoveryIntentKey } from './recover.js';

export interface AbortCeremonyOptions {
  out: string;
  /** The token PIN / software store passphrase (needed only when the transcript reached keys-intent). */
  secrets: { token: SecretSource };
  modulePath?: string;
}

export interface AbortSummary {
  out: string;
  /** What was interrupted: a `ceremony run` or a `ceremony recover`. */
  kind: 'ceremony' | 'recovery';
  /** Steps the interrupted transcript recorded. */
  interruptedAfter: string | null;
  deletedKeys: Array<{ label: string; keyId: string }>;
  /**
   * Recovery only: keys on the token under an announced label that are not the announced object
   * (another CKA_ID / UDF). They were left alone.
   */
  foreignKeys?: Array<{ label: string; keyId: string }>;
  removedFiles: string[];
}

async function readLines(path: string): Promise<string[] | undefined> {
  let text: string;
  try {
    text = fromUtf8(new Uint8Array(await readFile(path)));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return text.split('\n').filter((l) => l !== '');
}

/**
 * Cleans up the interrupted ceremony in `opts.out` made with `plan`.
 * Cleans up an interrupted recovery in `opts.out` just as well (see the module comment): exactly
 * the objects whose label AND CKA_ID match its `keys-intent` are deleted, others under those labels
 * are left and listed in `foreignKeys`.
 * @throws TypeError for a malformed plan or options.
 * @throws CeremonyError ERR_CEREMONY_STATE when there is nothing interrupted to abort (no `.staging`:
 *   a finished ceremony or recovery is never undone), the transcript is of another plan, or (a
 *   ceremony) a key on the token under a recorded label is not the recorded key (it is left alone).
 * @throws LogError when the transcript does not verify; the store's errors (PIN, token).
 */
export async function abortCeremony(plan: CeremonyPlan, opts: AbortCeremonyOptions): Promise<AbortSummary> {
  if (typeof plan !== 'object' || plan === null || !(plan.bytes instanceof Uint8Array)) throw new TypeError('"plan" expected a CeremonyPlan from parsePlan');
  if (typeof opts?.out !== 'string' || opts.out === '') throw new TypeError('"opts.out" expected a directory path');
  const out = resolve(opts.out);
  const staging = join(out, STAGING_DIR);
  if (await exists(join(out, RECOVERY_HEAD))) {
    throw new CeremonyError(ErrorCode.CEREMONY_STATE, `${out} holds a finished recovery (${RECOVERY_HEAD}), which abort never undoes: nothing to abort`);
  }
  if ((await exists(join(staging, RECOVERY_TRANSCRIPT))) || ((await exists(staging)) && (await exists(join(out, RECOVERY_TRANSCRIPT))))) {
    return abortRecovery(plan, out, opts);
  }
  if (!(await exists(staging))) {
    throw new CeremonyError(
      ErrorCode.CEREMONY_STATE,
      `${out} holds no interrupted ceremony (no ${STAGING_DIR}): nothing to abort` +
        ((await exists(join(out, 'transcript.head.json'))) ? ' (it holds a finished ceremony, which abort never undoes)' : ''),
    );
  }
  const lines = (await readLines(join(staging, 'transcript.jsonl'))) ?? (await readLines(join(out, 'transcript.jsonl'))) ?? [];
  const entries: LogEntry[] = [];
  if (lines.length > 0) {
    HashLog.fromLines(lines);
    for (const l of lines) entries.push(parseJsonStrict(l) as LogEntry);
  }
  const planEntry = entries.find((e) => e.Type === 'plan');
  if (planEntry !== undefined && planEntry.Body['Plan'] !== plan.fingerprint) {
    throw new CeremonyError(
      ErrorCode.CEREMONY_STATE,
      `the interrupted ceremony in ${out} ran plan ${String(planEntry.Body['Plan'])}, not this plan (${plan.fingerprint}): give the plan it ran`,
    );
  }
  const intent = entries.find((e) => e.Type === 'keys-intent');
  const keys = entries.find((e) => e.Type === 'keys');
  const deletedKeys: AbortSummary['deletedKeys'] = [];
  if (intent !== undefined) {
    const labels = ((intent.Body['Keys'] as Array<{ Label: string }> | undefined) ?? []).map((k) => k.Label);
    const recorded = new Map<string, string>();
    for (const k of (keys?.Body['Keys'] as Array<{ Label: string; UDF: string }> | undefined) ?? []) recorded.set(k.Label, k.UDF);
    const store: KeyStore = await openKeyStore(plan.token, opts.secrets.token, opts.modulePath === undefined ? {} : { modulePath: opts.modulePath });
    try {
      const present = new Map((await store.list()).map((k) => [k.label, k.keyId]));
      // Check every key first, delete after: a foreign key stops the abort before anything is removed.
      for (const label of labels) {
        const found = present.get(label);
        const expected = recorded.get(label);
        if (found !== undefined && expected !== undefined && found !== expected) {
          throw new CeremonyError(
            ErrorCode.CEREMONY_STATE,
            `the key labelled ${JSON.stringify(label)} on the token is ${found}, not the interrupted ceremony's ${expected}: it was left alone; nothing was removed`,
          );
        }
      }
      for (const label of labels) {
        const found = present.get(label);
        if (found === undefined) continue;
        try {
          await store.delete(label);
        } catch (e) {
          if (!(e instanceof KeyStoreError && e.code === ErrorCode.KEYSTORE_NOT_FOUND)) throw e;
          continue;
        }
        deletedKeys.push({ label, keyId: found });
      }
      // A process killed inside an import or generation can leave a private object without its public
      // one, which list() cannot show; the transcript's CKA_IDs find exactly those.
      const destroyer = store as Partial<{ destroyObjects(m: { label: string; id: Uint8Array }): Promise<number> }>;
      if (typeof destroyer.destroyObjects === 'function') {
        for (const k of (keys?.Body['Keys'] as Array<{ Label: string; UDF: string; CkaId?: string }> | undefined) ?? []) {
          if (k.CkaId === undefined || !labels.includes(k.Label)) continue;
          const n = await destroyer.destroyObjects({ label: k.Label, id: fromHex(k.CkaId, 'CkaId') });
          if (n > 0 && !deletedKeys.some((d) => d.label === k.Label)) deletedKeys.push({ label: k.Label, keyId: k.UDF });
        }
      }
    } finally {
      await store.close();
    }
  }
  const removedFiles: string[] = [];
  for (const f of OUTPUT_FILES) {
    if (await exists(join(out, f))) {
      await secureRemoveFile(join(out, f));
      removedFiles.push(f);
    }
  }
  for (const d of OUTPUT_DIRS) {
    const dir = join(out, d);
    if (await exists(dir)) {
      for (const f of await readdir(dir)) removedFiles.push(`${d}/${f}`);
      await secureRemoveTree(dir);
    }
  }
  removedFiles.push(STAGING_DIR);
  await secureRemoveTree(staging);
  return { out, kind: 'ceremony', interruptedAfter: entries.at(-1)?.Type ?? null, deletedKeys, removedFiles };
}

/** Reads and checks the `keys-intent` keys of a recovery transcript. */
function intentKeys(entry: LogEntry): RecoveryIntentKey[] {
  const keys = entry.Body['Keys'];
  if (!Array.isArray(keys)) throw new CeremonyError(ErrorCode.CEREMONY_STATE, 'the recovery transcript\'s keys-intent entry has no Keys');
  return keys.map((k: unknown, i) => {
    const o = k as Partial<Record<keyof RecoveryIntentKey, unknown>>;
    for (const f of ['Label', 'UDF', 'CkaId'] as const) {
      if (typeof o?.[f] !== 'string' || o[f] === '') throw new CeremonyError(ErrorCode.CEREMONY_STATE, `the recovery transcript's keys-intent Keys[${i}] has no ${f}`);
    }
    return o as RecoveryIntentKey;
  });
}

/**
 * Aborts an interrupted recovery in `out` (its transcript is `.staging/recovery-transcript.jsonl`).
 * @throws CeremonyError ERR_CEREMONY_STATE (another plan's recovery, a malformed intent), LogError,
 *   the store's errors.
 */
async function abortRecovery(plan: CeremonyPlan, out: string, opts: AbortCeremonyOptions): Promise<AbortSummary> {
  const staging = join(out, STAGING_DIR);
  const lines = (await readLines(join(staging, RECOVERY_TRANSCRIPT))) ?? (await readLines(join(out, RECOVERY_TRANSCRIPT))) ?? [];
  const entries: LogEntry[] = [];
  if (lines.length > 0) {
    HashLog.fromLines(lines);
    for (const l of lines) entries.push(parseJsonStrict(l) as LogEntry);
  }
  const first = entries.find((e) => e.Type === 'recovery');
  if (first !== undefined && first.Body['Plan'] !== plan.fingerprint) {
    throw new CeremonyError(
      ErrorCode.CEREMONY_STATE,
      `the interrupted recovery in ${out} ran plan ${String(first.Body['Plan'])}, not this plan (${plan.fingerprint}): give the plan it ran`,
    );
  }
  const intent = entries.find((e) => e.Type === 'keys-intent');
  const deletedKeys: AbortSummary['deletedKeys'] = [];
  const foreignKeys: NonNullable<AbortSummary['foreignKeys']> = [];
  if (intent !== undefined) {
    const keys = intentKeys(intent);
    const store: KeyStore = await openKeyStore(plan.token, opts.secrets.token, opts.modulePath === undefined ? {} : { modulePath: opts.modulePath });
    try {
      deletedKeys.push(...(await deleteRecoveryKeys(store, keys)));
      for (const k of await store.list()) {
        if (keys.some((x) => x.Label === k.label)) foreignKeys.push({ label: k.label, keyId: k.keyId });
      }
    } finally {
      await store.close();
    }
  }
  const removedFiles: string[] = [];
  for (const f of [RECOVERY_TRANSCRIPT]) {
    // moved into DIR while publishing (the head, the mark of a finished recovery, was not)
    if (await exists(join(out, f))) {
      await secureRemoveFile(join(out, f));
      removedFiles.push(f);
    }
  }
  removedFiles.push(STAGING_DIR);
  await secureRemoveTree(staging);
  return { out, kind: 'recovery', interruptedAfter: entries.at(-1)?.Type ?? null, deletedKeys, foreignKeys, removedFiles };
}
