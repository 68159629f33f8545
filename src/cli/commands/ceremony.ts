/**
 * `meshkit ceremony …`: the offline master-key ceremony (docs/ceremony.md). A thin CLI over
 * src/ceremony.
 *
 *   meshkit ceremony run --plan PLAN.json --out DIR [--yes] [--pin-env V | --pin-file F]
 *                        [--admin-pin-env NAME=VAR …] [--operator NAME] [--module LIB] [--json]
 *   meshkit ceremony abort --plan PLAN.json --out DIR [--pin-env V | --pin-file F] [--module LIB] [--json]
 *       cleans up an interrupted `ceremony run` OR an interrupted `ceremony recover` in DIR (the
 *       DIR's staged transcript says which): one command for "DIR was interrupted", the one both
 *       refusals name, with the same options (plan, DIR, the token's PIN).
 *
 * Interactive by default: each step is shown and confirmed, each custodian's share is shown alone
 * (the screen and the terminal's scrollback are cleared before and after it) and the operator and
 * each witness type their name (exactly; 3 attempts each). PIN prompts show what the token reports
 * about the PIN (a failed attempt, the final try). Ctrl+C at a prompt stops the ceremony with
 * ERR_CEREMONY_STATE naming the step (and, once keys may exist, the `ceremony abort` instruction).
 * `--yes` runs without any prompt: PINs and passphrases come from --pin-env / --pin-file (or
 * MESHKIT_PIN / MESHKIT_PASSPHRASE, a URI's pin-source, --admin-pin-env); a missing one exits 2
 * naming the option.
 *
 * Test-only: MESHKIT_CEREMONY_FAULT_AFTER=<point> kills the process after that point (refused
 * unless MESHKIT_TEST=1).
 *
 * Exit codes: 0 done; 1 failed or refused (invalid plan, non-empty DIR, interrupted ceremony,
 * token cannot do it); 2 usage (missing secret with --yes, bad option).
 */
import { collect, readInput } from '../io.js';
import type { Command } from 'commander';
import {
  abortCeremony,
  CEREMONY_FAULT_POINTS,
  parsePlan,
  runCeremony,
  type CeremonyFaultPoint,
  type CeremonyPlan,
  type CeremonyPrompts,
  type PlanAdministrator,
} from '../../ceremony/index.js';
import type { SecretSource } from '../../keystore/index.js';
import { emit, note } from '../output.js';
import { UsageError } from '../main.js';
import { secretSource } from '../secrets.js';
import { secretRequestFor } from '../pin-status.js';
import { withCkrName } from './token.js';
import { faultFromEnv, registerCeremonyRecoveryCommands } from './ceremony-recovery.js';

interface CommonOptions {
  plan: string;
  out: string;
  pinEnv?: string;
  pinFile?: string;
  module?: string;
  json?: boolean;
}
interface RunOptions extends CommonOptions {
  yes?: boolean;
  adminPinEnv?: string[];
  operator?: string;
}

async function loadPlan(path: string): Promise<CeremonyPlan> {
  return parsePlan(await readInput(path, `the plan ${path}`));
}

/**
 * Clears the screen AND the scrollback (`\x1b[3J`, xterm and most terminal emulators), then homes
 * the cursor: the next custodian cannot scroll back to a share. A terminal multiplexer (tmux,
 * screen) keeps its own history, which no escape sequence clears (docs/ceremony.md).
 */
export const CLEAR_SCREEN_AND_SCROLLBACK = '\x1b[2J\x1b[3J\x1b[H';

function tokenSecret(plan: CeremonyPlan, opts: CommonOptions, interactive: boolean): SecretSource {
  const software = plan.token.startsWith('file:');
  // PKCS#11: a PIN prompt with the token's PIN state above it (src/cli/pin-status.ts).
  const request = secretRequestFor(plan.token, software ? `key store ${plan.token}` : `token ${plan.token.split('?')[0] ?? plan.token}`, opts.module);
  return secretSource(
    { ...(opts.pinEnv === undefined ? {} : { pinEnv: opts.pinEnv }), ...(opts.pinFile === undefined ? {} : { pinFile: opts.pinFile }) },
    { ...request, purpose: software ? 'passphrase' : 'PIN', ...(interactive ? {} : { isTTY: false }) },
  );
}

function adminSecrets(plan: CeremonyPlan, specs: string[], interactive: boolean, modulePath: string | undefined): (admin: PlanAdministrator) => SecretSource | undefined {
  const byName = new Map<string, string>();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1) throw new UsageError(`--admin-pin-env expects NAME=VAR, got ${JSON.stringify(spec)}`);
    const name = spec.slice(0, eq);
    if (!plan.administrators.some((a) => a.name === name)) {
      throw new UsageError(`--admin-pin-env ${name}=…: the plan has no administrator named ${JSON.stringify(name)} (${plan.administrators.map((a) => a.name).join(', ')})`);
    }
    byName.set(name, spec.slice(eq + 1));
  }
  return (admin) => {
    const variable = byName.get(admin.name);
    if (variable !== undefined) return secretSource({ pinEnv: variable }, { purpose: 'PIN' });
    if (admin.key?.includes('pin-source=') === true) return undefined;
    if (!interactive) {
      return () => {
        throw new UsageError(`administrator ${JSON.stringify(admin.name)} needs a PIN or passphrase and --yes allows no prompt: use --admin-pin-env ${admin.name}=VAR or pin-source in its key URI`);
      };
    }
    // A PKCS#11 key: the prompt shows its token's PIN state; a software key: "PIN" as before.
    return secretSource({}, { ...secretRequestFor(admin.key ?? '', `administrator ${admin.name}`, modulePath), purpose: 'PIN', env: {} });
  };
}

function faultFromEnvRun(): CeremonyFaultPoint | undefined {
  return faultFromEnv<CeremonyFaultPoint>(CEREMONY_FAULT_POINTS);
}

async function interactivePrompts(): Promise<CeremonyPrompts> {
  const { confirm, input } = await import('@inquirer/prompts');
  const ctx = { output: process.stderr };
  return {
    async confirmStep(step, detail) {
      return confirm({ message: `Step "${step}": ${detail}. Proceed?`, default: true }, ctx);
    },
    async presentShare(info) {
      process.stderr.write(CLEAR_SCREEN_AND_SCROLLBACK);
      process.stderr.write(
        `Share ${info.index} of ${info.count} for ${info.custodian} (written to ${info.path}; moved to ${info.finalPath} when the ceremony finishes):\n\n${info.text}\n`,
      );
      try {
        await confirm({ message: `${info.custodian}: have you taken your share card? (the screen is cleared next)`, default: true }, ctx);
      } finally {
        // Also on Ctrl+C: the share does not stay on the screen.
        process.stderr.write(CLEAR_SCREEN_AND_SCROLLBACK);
      }
    },
    async acknowledge(who, role, retry) {
      if (retry !== undefined) process.stderr.write(`${retry}\n`);
      return input({ message: `${role === 'operator' ? 'Operator' : 'Witness'} ${who}: type your name to confirm the ceremony` }, ctx);
    },
  };
}

/** Registers `meshkit ceremony run` and `meshkit ceremony abort`; returns the `ceremony` command for more subcommands. */
export function registerCeremonyCommands(program: Command): Command {
  const ceremony = program.command('ceremony').description('the offline master-key ceremony: run, abort (and verify, recover)');

  // ---- ceremony run
  ceremony
    .command('run')
    .description('run a ceremony plan: master keys on the token, profiles, offline escrow, signed transcript')
    .requiredOption('--plan <file>', 'the ceremony plan (JSON)')
    .requiredOption('--out <dir>', 'output directory (must not exist or be empty)')
    .option('--yes', 'non-interactive: no prompts; secrets from --pin-env / --pin-file / --admin-pin-env')
    .option('--pin-env <var>', "the token's PIN (or the software store's passphrase) from an environment variable")
    .option('--pin-file <path>', "the token's PIN (or passphrase) from the first line of a file")
    .option('--admin-pin-env <name=var>', "an administrator key's PIN from an environment variable (repeatable)", collect, [])
    .option('--operator <name>', 'the operator name recorded in the transcript (default: the OS user)')
    .option('--module <lib>', 'PKCS#11 module when the URIs have no module-path')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: RunOptions) => {
      if (opts.pinEnv !== undefined && opts.pinFile !== undefined) throw new UsageError('give only one of --pin-env, --pin-file');
      const fault = faultFromEnvRun();
      const plan = await loadPlan(opts.plan);
      const interactive = opts.yes !== true;
      if (interactive && process.stdin.isTTY !== true) {
        throw new UsageError('ceremony run is interactive and stdin is not a terminal: use --yes (with --pin-env / --pin-file) for scripts');
      }
      const out = { json: opts.json === true };
      try {
        const summary = await runCeremony(plan, {
          out: opts.out,
          secrets: { token: tokenSecret(plan, opts, interactive), admin: adminSecrets(plan, opts.adminPinEnv ?? [], interactive, opts.module) },
          interactive,
          ...(interactive ? { confirm: await interactivePrompts() } : {}),
          onStep: (s) => note(out, `✓ ${s.step}: ${s.detail} (${s.ms} ms)`),
          ...(fault === undefined ? {} : { fault }),
          ...(opts.operator === undefined ? {} : { operator: opts.operator }),
          ...(opts.module === undefined ? {} : { modulePath: opts.module }),
        });
        emit(out, summary, () =>
          [
            `ceremony ${summary.ceremonyId} done (${summary.origin}) in ${summary.out}`,
            `master       ${summary.master.identifier}`,
            `escrow key   ${summary.master.escrowKey}`,
            `personal     signed by ${summary.personal.administrator} (${summary.personal.signedBy})`,
            ...(summary.escrow === undefined ? ['escrow       none (generate-on-token: keys never leave the token)'] : [
              `escrow blob  ${summary.escrow.blobId}`,
              `shares       ${summary.escrow.threshold} of ${summary.escrow.shares}, verified with shares ${summary.escrow.verifiedWith.join(', ')}`,
            ]),
            `transcript   ${summary.transcript.entries} entries, head ${summary.transcript.head ?? '-'}`,
            `files        ${summary.files.join(', ')}`,
          ].join('\n'),
        );
      } catch (e) {
        throw withCkrName(e);
      }
    });

  // ---- ceremony abort
  ceremony
    .command('abort')
    .description("clean up an interrupted ceremony or recovery: delete the token objects its transcript says it created, remove the staged files")
    .requiredOption('--plan <file>', 'the plan the interrupted ceremony (or recovery) ran')
    .requiredOption('--out <dir>', 'the interrupted ceremony (or recovery) output directory')
    .option('--pin-env <var>', "the token's PIN (or the software store's passphrase) from an environment variable")
    .option('--pin-file <path>', "the token's PIN (or passphrase) from the first line of a file")
    .option('--module <lib>', 'PKCS#11 module when the URIs have no module-path')
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: CommonOptions) => {
      if (opts.pinEnv !== undefined && opts.pinFile !== undefined) throw new UsageError('give only one of --pin-env, --pin-file');
      const plan = await loadPlan(opts.plan);
      try {
        const summary = await abortCeremony(plan, {
          out: opts.out,
          secrets: { token: tokenSecret(plan, opts, process.stdin.isTTY === true) },
          ...(opts.module === undefined ? {} : { modulePath: opts.module }),
        });
        emit({ json: opts.json === true }, summary, () =>
          [
            `aborted the ${summary.kind} in ${summary.out} (interrupted after ${summary.interruptedAfter ?? 'nothing'})`,
            `deleted keys   ${summary.deletedKeys.map((k) => `${k.label} (${k.keyId})`).join(', ') || 'none (nothing of it was on the token)'}`,
            ...(summary.foreignKeys === undefined || summary.foreignKeys.length === 0
              ? []
              : [`left alone     ${summary.foreignKeys.map((k) => `${k.label} (${k.keyId})`).join(', ')} — not the recovery's key (another CKA_ID): remove it yourself or recover onto another token`]),
            `removed files  ${summary.removedFiles.join(', ')}`,
          ].join('\n'),
        );
      } catch (e) {
        throw withCkrName(e);
      }
    });

  // ---- ceremony verify / recover (src/cli/commands/ceremony-recovery.ts)
  registerCeremonyRecoveryCommands(ceremony);

  return ceremony;
}
