/**
 * `meshkit ceremony verify` and `meshkit ceremony recover` (docs/ceremony.md): thin commands over
 * src/ceremony/verify.ts and src/ceremony/recover.ts, added to the `ceremony` command group made
 * by ./ceremony.ts.
 *
 *   meshkit ceremony verify DIR [--json]
 *       exit 0 with a summary of what was checked (counts); exit 1 naming the first thing that
 *       does not hold, e.g. "transcript.jsonl line 7 (escrow): Previous does not match line 6".
 *   meshkit ceremony recover --plan PLAN --share FILE… --out DIR [--escrow-dir DIR | --blob FILE]
 *                            [--master FILE] [--yes] [--pin-env V | --pin-file F] [--module LIB] [--json]
 *       rebuilds the master keys onto the plan's Token (a fresh token) from k share files, in any
 *       order; each unusable share is named (invalid, corrupted, foreign, duplicate, wrong).
 *       An interrupted recovery (crash, kill) leaves DIR/.staging: a re-run is refused with the
 *       instruction to run `meshkit ceremony abort --plan PLAN --out DIR` (the same command that
 *       cleans up an interrupted `ceremony run`; the DIR's transcript says which it was).
 *
 * Test-only: MESHKIT_CEREMONY_FAULT_AFTER=<point> (refused unless MESHKIT_TEST=1) kills `recover`
 * after one of RECOVERY_FAULT_POINTS (and `run` after one of CEREMONY_FAULT_POINTS).
 *
 * Exit codes: 0 done; 1 failed (verification failure, too few or bad shares, tampered blob, labels
 * already on the token); 2 usage.
 */
import { collect, readInput } from '../io.js';
import type { Command } from 'commander';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import { parsePlan, type CeremonyPlan } from '../../ceremony/plan.js';
import { RECOVERY_FAULT_POINTS, recoverCeremony } from '../../ceremony/recover.js';
import { verifyCeremony } from '../../ceremony/verify.js';
import { emit, note } from '../output.js';
import { UsageError } from '../main.js';
import { secretSource } from '../secrets.js';
import { withCkrName } from './token.js';

interface RecoverOptions {
  plan: string;
  share: string[];
  out: string;
  escrowDir?: string;
  blob?: string;
  master?: string;
  yes?: boolean;
  pinEnv?: string;
  pinFile?: string;
  module?: string;
  operator?: string;
  json?: boolean;
}

/**
 * The test-only fault-injection switch `MESHKIT_CEREMONY_FAULT_AFTER=<point>` for a command whose
 * fault points are `points`; undefined when it is not set.
 * @throws UsageError when set without MESHKIT_TEST=1, or to a point not in `points`.
 */
export function faultFromEnv<T extends string>(points: readonly T[]): T | undefined {
  const value = process.env['MESHKIT_CEREMONY_FAULT_AFTER'];
  if (value === undefined || value === '') return undefined;
  if (process.env['MESHKIT_TEST'] !== '1') throw new UsageError('MESHKIT_CEREMONY_FAULT_AFTER is a test-only switch and is refused unless MESHKIT_TEST=1');
  if (!(points as readonly string[]).includes(value)) {
    throw new UsageError(`MESHKIT_CEREMONY_FAULT_AFTER must be one of ${points.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

async function loadPlan(path: string): Promise<CeremonyPlan> {
  return parsePlan(await readInput(path, `the plan ${path}`));
}

/** Adds `verify` and `recover` to the `ceremony` command. */
export function registerCeremonyRecoveryCommands(ceremony: Command): void {
  ceremony
    .command('verify')
    .description('check a finished ceremony offline: transcript links and signed head, profiles, plan, blob, share files, fingerprints')
    .argument('<dir>', 'the ceremony output directory')
    .option('--json', 'one JSON document on stdout')
    .action(async (dir: string, opts: { json?: boolean }) => {
      const json = opts.json === true;
      const report = await verifyCeremony(dir);
      if (!report.ok) {
        if (json) emit({ json }, report, '');
        throw new MeshkitError(report.code ?? ErrorCode.CEREMONY_VERIFY, `ceremony verify: ${report.failure ?? 'failed'}`);
      }
      const c = report.checked;
      emit({ json }, report, () =>
        [
          `ceremony ${report.dir} verified (${report.origin ?? '?'})`,
          `master       ${report.master ?? '-'}`,
          `transcript   ${c.transcriptEntries} entries linked; head signed by the master signature key`,
          `profiles     ${c.profiles} verified (Master self-signed, Personal by an administrator)`,
          `fingerprints ${c.fileFingerprints} files match the transcript`,
          ...(report.blob === undefined
            ? ['escrow       none (generate-on-token)']
            : [`escrow blob  ${report.blob} (name = Identifier = transcript)`, `shares       ${c.shares} checked${c.sharesAbsent > 0 ? `, ${c.sharesAbsent} not in the directory (with their custodians)` : ''}`]),
        ].join('\n'),
      );
    });

  ceremony
    .command('recover')
    .description("rebuild the master keys onto the plan's (fresh) token from k custodian share files")
    .requiredOption('--plan <file>', "the ceremony plan; its Token is the token to recover onto")
    .requiredOption('--share <file>', 'a custodian share file (repeat; any order)', collect, [])
    .requiredOption('--out <dir>', 'where to write the recovery transcript (must not exist or be empty)')
    .option('--escrow-dir <dir>', "the directory holding the escrow blob (default: escrow/ next to --master)")
    .option('--blob <file>', 'the escrow blob file itself')
    .option('--master <file>', "the original ceremony's master.json (default: next to --escrow-dir)")
    .option('--yes', 'do not ask before importing onto the token')
    .option('--pin-env <var>', "the target token's PIN (or software store passphrase) from an environment variable")
    .option('--pin-file <path>', "the target token's PIN (or passphrase) from the first line of a file")
    .option('--module <lib>', 'PKCS#11 module when the token URI has no module-path')
    .option('--operator <name>', 'the operator recorded in the recovery transcript')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: RecoverOptions) => {
      const json = opts.json === true;
      if (opts.pinEnv !== undefined && opts.pinFile !== undefined) throw new UsageError('give only one of --pin-env, --pin-file');
      if (opts.escrowDir !== undefined && opts.blob !== undefined) throw new UsageError('give only one of --escrow-dir, --blob');
      if (opts.escrowDir === undefined && opts.blob === undefined && opts.master === undefined) {
        throw new UsageError('say where the escrow blob is: --escrow-dir DIR (the ceremony\'s escrow/), --blob FILE, or --master DIR/master.json');
      }
      if (opts.share.length === 0) throw new UsageError('give the share files with --share FILE (repeat)');
      const fault = faultFromEnv(RECOVERY_FAULT_POINTS);
      const interactive = opts.yes !== true;
      if (interactive && process.stdin.isTTY !== true) throw new UsageError('recover asks before importing and stdin is not a terminal: use --yes');
      const plan = await loadPlan(opts.plan);
      const software = plan.token.startsWith('file:');
      const token = secretSource(
        { ...(opts.pinEnv === undefined ? {} : { pinEnv: opts.pinEnv }), ...(opts.pinFile === undefined ? {} : { pinFile: opts.pinFile }) },
        { purpose: software ? 'passphrase' : 'PIN', subject: software ? `key store ${plan.token}` : `token ${plan.token.split('?')[0] ?? plan.token}`, ...(interactive ? {} : { isTTY: false }) },
      );
      const out = { json };
      let confirm: ((what: string) => Promise<boolean>) | undefined;
      if (interactive) {
        const { confirm: ask } = await import('@inquirer/prompts');
        confirm = (what) => ask({ message: `${what}. Proceed?`, default: false }, { output: process.stderr });
      }
      try {
        const summary = await recoverCeremony({
          plan,
          shares: opts.share,
          out: opts.out,
          ...(opts.escrowDir === undefined ? {} : { escrowDir: opts.escrowDir }),
          ...(opts.blob === undefined ? {} : { blob: opts.blob }),
          ...(opts.master === undefined ? {} : { master: opts.master }),
          secrets: { token },
          onStep: (s) => note(out, `✓ ${s.step}: ${s.detail}`),
          ...(confirm === undefined ? {} : { confirm }),
          ...(opts.module === undefined ? {} : { modulePath: opts.module }),
          ...(opts.operator === undefined ? {} : { operator: opts.operator }),
          ...(fault === undefined ? {} : { fault }),
        });
        emit(out, summary, () =>
          [
            `recovered master ${summary.master} onto ${summary.token}`,
            ...summary.keys.map((k) => `${k.role.padEnd(18)} ${k.keyId}  ${k.location}`),
            `shares used      ${summary.used.join(', ')}`,
            ...summary.shares.filter((s) => s.problem !== undefined).map((s) => `not used         ${s.name}: ${s.problem}${s.detail === undefined ? '' : ` — ${s.detail}`}`),
            `transcript       ${summary.transcript.files.map((f) => `${summary.out}/${f}`).join(', ')}`,
          ].join('\n'),
        );
      } catch (e) {
        throw withCkrName(e);
      }
    });
}
