/**
 * A scratch SoftHSM2 for CLI and interop tests: a temporary token directory and SOFTHSM2_CONF that
 * are passed to child processes (meshkit, pkcs11-tool, softhsm2-util) — the system token store is
 * never touched. Also runs the built CLI (`node bin/meshkit.js`) with a clean environment.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { makeSoftHsmDir } from './softhsm.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
export const BIN = resolve('bin/meshkit.js');

export interface ScratchHsm {
  dir: string;
  conf: string;
  /** The environment for children: the parent's minus MESHKIT_* and SOFTHSM2_CONF, plus the scratch SOFTHSM2_CONF. */
  env: Record<string, string>;
  cleanup(): void;
}

/** Creates a scratch SoftHSM token directory and its configuration file. */
export function scratchSoftHsm(prefix = 'meshkit-softhsm-'): ScratchHsm {
  const { dir, conf } = makeSoftHsmDir(prefix);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MESHKIT_') && k !== 'SOFTHSM2_CONF') env[k] = v;
  env['SOFTHSM2_CONF'] = conf;
  return { dir, conf, env, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program with the scratch environment (plus `extraEnv`); stdin is a pipe, never a TTY. */
export function run(cmd: string, args: string[], hsm: ScratchHsm, opts: { env?: Record<string, string>; input?: string | Buffer; cwd?: string } = {}): Run {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd ?? hsm.dir,
    env: { ...hsm.env, ...opts.env },
    input: opts.input ?? '',
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the built meshkit CLI. */
export function meshkit(args: string[], hsm: ScratchHsm, opts: { env?: Record<string, string>; input?: string | Buffer } = {}): Run {
  return run(process.execPath, [BIN, ...args], hsm, opts);
}

/** Throws unless the built CLI and the tools the tests need are there. */
export function requireTools(): void {
  if (!existsSync(resolve('dist/cli/commands/token.js'))) throw new Error('dist/ missing or stale: run "npm run build" before these tests');
  if (!existsSync(SOFTHSM_MODULE)) throw new Error(`${SOFTHSM_MODULE} missing: apt-get install softhsm2`);
}
