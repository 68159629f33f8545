/**
 * The offline master-key ceremony (Step 3, docs/ceremony.md): plan parsing, the run engine, abort
 * of an interrupted ceremony, and the ceremony's file formats (share files, atomic writes).
 */
export { CeremonyError, parsePlan, planFingerprint, redactTokenUri, KEY_ORIGINS, DEFAULT_ALGORITHMS, DEFAULT_LABELS } from './plan.js';
export type { CeremonyPlan, KeyOrigin, PlanAdministrator } from './plan.js';
export { runCeremony, checkOutDir, keyObjectIdHex, isOperatorInterrupt, ACKNOWLEDGE_ATTEMPTS, CEREMONY_FAULT_POINTS, STAGING_DIR, OUTPUT_FILES, OUTPUT_DIRS } from './run.js';
export type { CeremonyFaultPoint, CeremonyPrompts, CeremonySecrets, CeremonyStepReport, CeremonySummary, RunCeremonyOptions, ShareInfo } from './run.js';
export { abortCeremony } from './abort.js';
export type { AbortCeremonyOptions, AbortSummary } from './abort.js';
export {
  formatShareFile,
  parseShareFile,
  shareCheck,
  verifyShareCheck,
  writeFileAtomic,
  secureRemoveFile,
  secureRemoveTree,
  fsyncDir,
  SHARE_CHECK_CONTENT_TYPE,
  SHARE_CHECK_BITS,
} from './files.js';
export type { ShareFile, ParsedShareFile } from './files.js';
export { verifyCeremony } from './verify.js';
export { ceremonyFileFingerprint } from './files.js';
export type { CeremonyVerifyReport } from './verify.js';
export { recoverCeremony, RECOVERY_FAULT_POINTS, RECOVERY_TRANSCRIPT, RECOVERY_HEAD } from './recover.js';
export type { RecoverCeremonyOptions, RecoverySummary, ShareVerdict, RecoveryFaultPoint, RecoveryIntentKey } from './recover.js';
export { escrowApplicationKey, recoverApplicationKey, masterEscrowKeyOf } from './online-escrow.js';
