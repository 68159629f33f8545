/**
 * Runs the BUILT CLI (bin/meshkit.js → dist/) in a child process, as a user would — for CLI tests that need the real
 * process (exit codes, environment, PATH). npm test builds dist/ first. (test/helpers/cli.ts runs it in process.)
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

/** The CLI entry point. */
export const BIN = resolve('bin/meshkit.js');

/**
 * Runs `node bin/meshkit.js ARGS` with `env` over the current environment; never rejects for a non-zero exit.
 * @returns the exit code (-1 when the process did not exit with one, e.g. killed by a signal), stdout and stderr
 */
export async function meshkitProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}
