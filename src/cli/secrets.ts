/**
 * Where the CLI gets passphrases and PINs from — never from argv, never logged.
 *
 * In order of precedence:
 * 1. `--passphrase-file PATH` / `--pin-file PATH`: the first line of the file (a trailing `\n` or
 *    `\r\n` is stripped);
 * 2. `--passphrase-env VAR` / `--pin-env VAR`: the named environment variable;
 * 3. the default environment variable (`MESHKIT_PASSPHRASE` for passphrases, `MESHKIT_PIN` for PINs);
 * 4. an interactive, masked prompt on stderr — only when stdin is a TTY.
 * Otherwise a UsageError (exit 2) names the options to use.
 *
 * Secrets are returned as Uint8Array (UTF-8) that the caller wipes; the source is a function so it
 * is consulted only when a secret is actually needed. Strings from the environment or the prompt
 * cannot be wiped (a limit of JavaScript).
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ErrorCode, KeyStoreError } from '../core/errors.js';
import { equalBytes, wipe } from '../core/bytes.js';
import { UsageError } from './main.js';

/** The parsed secret options of a command (commander's camel-cased names). */
export interface SecretCliOptions {
  passphraseFile?: string;
  passphraseEnv?: string;
  pinFile?: string;
  pinEnv?: string;
}

/** Default environment variables by purpose. */
export const DEFAULT_SECRET_ENV = { passphrase: 'MESHKIT_PASSPHRASE', PIN: 'MESHKIT_PIN' } as const;

/** What a secret is for and how to get it; the test seams (`env`, `isTTY`, `prompt`) default to the process. */
export interface SecretRequest {
  /** Used in prompts and messages. Default 'passphrase'. */
  purpose?: 'passphrase' | 'PIN';
  /** Ask twice at an interactive prompt (a new store). Default false. */
  confirm?: boolean;
  /** Extra context for the prompt, e.g. the store path. */
  subject?: string;
  /**
   * A status line shown above an interactive prompt, e.g. what a token reports about the PIN tries
   * left (`pinStatusText` of src/keystore/pkcs11). A function is called at each prompt, so the line
   * is current (a failed attempt changes it); when it throws or returns nothing, no line is shown.
   */
  status?: string | (() => string | undefined | Promise<string | undefined>);
  env?: NodeJS.ProcessEnv;
  isTTY?: boolean;
  prompt?: (message: string) => Promise<string>;
}

/**
 * Adds `--passphrase-file`, `--pin-file`, `--passphrase-env` and `--pin-env` to a command.
 * There is deliberately no option that takes the secret itself.
 * @throws TypeError if `cmd` is not a commander Command.
 */
export function addSecretOptions(cmd: Command): Command {
  if (typeof cmd?.option !== 'function') throw new TypeError(`"cmd" expected a commander Command`);
  return cmd
    .option('--passphrase-file <path>', 'read the passphrase (or PIN) from the first line of a file')
    .option('--pin-file <path>', 'read the PIN (or passphrase) from the first line of a file')
    .option('--passphrase-env <var>', 'read the passphrase (or PIN) from an environment variable (default MESHKIT_PASSPHRASE)')
    .option('--pin-env <var>', 'read the PIN (or passphrase) from an environment variable');
}

/**
 * Reads a secret from the first line of a file (trailing `\n` / `\r\n` stripped). The caller wipes the result.
 * @throws TypeError if `path` is not a string.
 * @throws KeyStoreError ERR_SECRET_SOURCE when the file cannot be read or its first line is empty.
 */
export async function readSecretFile(path: string): Promise<Uint8Array> {
  if (typeof path !== 'string' || path === '') throw new TypeError(`"path" expected a non-empty string`);
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `cannot read secret file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, { cause: e });
  }
  try {
    let end = buf.indexOf(0x0a);
    if (end < 0) end = buf.length;
    if (end > 0 && buf[end - 1] === 0x0d) end -= 1;
    if (end === 0) throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `secret file ${path} is empty (the secret is its first line)`);
    return new Uint8Array(buf.subarray(0, end)); // a copy
  } finally {
    wipe(buf);
  }
}

function fromEnv(env: NodeJS.ProcessEnv, name: string): Uint8Array {
  const value = env[name];
  if (value === undefined) throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `environment variable ${name} is not set`);
  if (value === '') throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `environment variable ${name} is empty`);
  return new Uint8Array(Buffer.from(value, 'utf8'));
}

/** The status line for a prompt; a failing status function shows none (it must not block the prompt). */
async function statusLine(status: SecretRequest['status']): Promise<string | undefined> {
  if (status === undefined) return undefined;
  try {
    const line = typeof status === 'function' ? await status() : status;
    return typeof line === 'string' && line.trim() !== '' ? line.trim() : undefined;
  } catch {
    return undefined;
  }
}

async function defaultPrompt(message: string): Promise<string> {
  const { password } = await import('@inquirer/prompts');
  // The prompt goes to stderr so stdout stays clean for --json.
  return password({ message, mask: '*' }, { output: process.stderr });
}

/**
 * Builds the secret source for a command from its parsed options. Conflicts are reported now; the
 * secret itself is read only when the returned function is called (each call reads it again and
 * returns a fresh Uint8Array the caller wipes).
 * @throws UsageError when more than one of the file / environment options is given, or (from the
 *   returned function) when no source is given and stdin is not a TTY.
 * @throws KeyStoreError ERR_SECRET_SOURCE (from the returned function) for an unreadable file, an
 *   unset or empty variable, an empty or mismatched interactive entry.
 */
export function secretSource(opts: SecretCliOptions, request: SecretRequest = {}): () => Promise<Uint8Array> {
  const purpose = request.purpose ?? 'passphrase';
  const env = request.env ?? process.env;
  const given = (
    [
      ['--passphrase-file', opts.passphraseFile],
      ['--pin-file', opts.pinFile],
      ['--passphrase-env', opts.passphraseEnv],
      ['--pin-env', opts.pinEnv],
    ] as const
  ).filter(([, v]) => v !== undefined);
  if (given.length > 1) throw new UsageError(`give only one of ${given.map(([n]) => n).join(', ')}`);
  const file = opts.passphraseFile ?? opts.pinFile;
  const envName = opts.passphraseEnv ?? opts.pinEnv;
  return async () => {
    if (file !== undefined) return readSecretFile(file);
    if (envName !== undefined) return fromEnv(env, envName);
    const defaultEnv = DEFAULT_SECRET_ENV[purpose];
    if (env[defaultEnv] !== undefined) return fromEnv(env, defaultEnv);
    const tty = request.isTTY ?? process.stdin.isTTY === true;
    if (!tty) {
      throw new UsageError(
        `a ${purpose} is needed and stdin is not a terminal: use --${purpose === 'PIN' ? 'pin' : 'passphrase'}-file PATH, ` +
          `--${purpose === 'PIN' ? 'pin' : 'passphrase'}-env VAR or set ${defaultEnv}`,
      );
    }
    const ask = request.prompt ?? defaultPrompt;
    const subject = request.subject === undefined ? '' : ` for ${request.subject}`;
    const status = await statusLine(request.status);
    const question = `${request.confirm === true ? 'New ' : ''}${purpose}${subject}:`;
    const first = new Uint8Array(Buffer.from(await ask(status === undefined ? question : `${status}\n${question}`), 'utf8'));
    if (first.length === 0) throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `the ${purpose} is empty`);
    if (request.confirm === true) {
      const second = new Uint8Array(Buffer.from(await ask(`Repeat the ${purpose}:`), 'utf8'));
      const same = equalBytes(first, second);
      wipe(second);
      if (!same) {
        wipe(first);
        throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `the two ${purpose} entries differ`);
      }
    }
    return first;
  };
}
