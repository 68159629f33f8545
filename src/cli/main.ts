/**
 * The `meshkit` command: parses flags, calls one service, prints (human or --json).
 *
 * Exit codes: 0 success; 1 the operation failed or the input is invalid (one line on stderr,
 * no stack trace unless MESHKIT_DEBUG=1); 2 usage error.
 */
import { Command, CommanderError } from 'commander';
import { MeshkitError } from '../core/errors.js';
import { registerCommands } from './commands/index.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A usage error raised by a command after parsing (missing input, conflicting flags). */
export class UsageError extends Error {}

/** The operation failed and the command has already printed why (e.g. a --json report): exit 1, print nothing more. */
export class ReportedFailure extends Error {}

export function buildProgram(): Command {
  const program = new Command('meshkit')
    .description('The Mathematical Mesh for HSMs, smartcards and embedded devices.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) });
  registerCommands(program);
  for (const cmd of allCommands(program)) cmd.exitOverride();
  return program;
}

function* allCommands(cmd: Command): Generator<Command> {
  for (const sub of cmd.commands) {
    yield sub;
    yield* allCommands(sub);
  }
}

const VERSION = '0.1.0';

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT_OK;
  } catch (e) {
    return reportError(e);
  }
}

export function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    // help and version exit with 0 through commander; everything else is a usage error.
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT_OK;
    return EXIT_USAGE;
  }
  if (process.env['MESHKIT_DEBUG'] === '1' && e instanceof Error) process.stderr.write(`${e.stack ?? e.message}\n`);
  if (e instanceof ReportedFailure) return EXIT_FAILED;
  if (e instanceof UsageError) {
    process.stderr.write(`meshkit: ${e.message}\n`);
    return EXIT_USAGE;
  }
  if (e instanceof MeshkitError) {
    process.stderr.write(`meshkit: ${e.message} [${e.code}]\n`);
    return EXIT_FAILED;
  }
  if (e instanceof TypeError || e instanceof RangeError) {
    process.stderr.write(`meshkit: invalid input: ${e.message}\n`);
    return EXIT_FAILED;
  }
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`meshkit: ${message.split('\n')[0]}\n`);
  return EXIT_FAILED;
}
