/**
 * The PIN named by a PKCS#11 URI's `pin-source` (RFC 7512 §2.3) or carried in its `pin-value`.
 *
 * `pin-source` may be `file:/abs/path`, `file:///abs/path`, a plain absolute path — the PIN is the
 * file's first line (a trailing `\n` / `\r\n` is stripped) — or meshkit's extension `env:VAR` (the
 * named environment variable). The key-store layer does not depend on the CLI, so this is its own
 * small reader. The PIN is returned as a fresh Uint8Array that the caller wipes.
 */
import { readFile } from 'node:fs/promises';
import { ErrorCode, KeyStoreError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import { classifyPinSource, type Pkcs11Uri } from './uri.js';

/** Test seams for {@link pinSourceFromUri}. */
export interface PinSourceOptions {
  /** Environment used for `env:VAR` (default `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Reads the first line of a file (trailing `\n` / `\r\n` stripped); the caller wipes the result.
 * @throws TypeError if `path` is not a non-empty string.
 * @throws KeyStoreError ERR_SECRET_SOURCE when the file cannot be read or its first line is empty.
 */
export async function readPinFile(path: string): Promise<Uint8Array> {
  if (typeof path !== 'string' || path === '') throw new TypeError(`"path" expected a non-empty string`);
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `cannot read PIN file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, { cause: e });
  }
  try {
    let end = buf.indexOf(0x0a);
    if (end < 0) end = buf.length;
    if (end > 0 && buf[end - 1] === 0x0d) end -= 1;
    if (end === 0) throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `PIN file ${path} is empty (the PIN is its first line)`);
    return new Uint8Array(buf.subarray(0, end));
  } finally {
    wipe(buf);
  }
}

/**
 * The PIN source a parsed URI names, as a function consulted only when a login is needed (each call
 * reads again and returns a fresh Uint8Array the caller wipes).
 * @returns a function for `pin-source` or `pin-value`, or `undefined` when the URI names neither.
 * @throws TypeError if `uri` is not an object.
 * @throws RangeError for a `pin-source` that is not `file:/abs`, an absolute path or `env:VAR`.
 * @throws KeyStoreError ERR_SECRET_SOURCE (from the returned function) for an unreadable or empty file
 *   or an unset or empty variable.
 */
export function pinSourceFromUri(uri: Pkcs11Uri, opts: PinSourceOptions = {}): (() => Promise<Uint8Array>) | undefined {
  if (typeof uri !== 'object' || uri === null) throw new TypeError(`"uri" expected object, got ${uri === null ? 'null' : typeof uri}`);
  if (uri.pinSource !== undefined) {
    const source = classifyPinSource(uri.pinSource);
    if (source === undefined) {
      throw new RangeError(`"pinSource" expected file:/absolute/path, an absolute path or env:VAR, got ${JSON.stringify(uri.pinSource)}`);
    }
    if (source.kind === 'file') return () => readPinFile(source.path);
    const env = opts.env ?? process.env;
    return async () => {
      const value = env[source.name];
      if (value === undefined) throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `environment variable ${source.name} (pin-source) is not set`);
      if (value === '') throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `environment variable ${source.name} (pin-source) is empty`);
      return new Uint8Array(Buffer.from(value, 'utf8'));
    };
  }
  if (uri.pinValue !== undefined) {
    const value = uri.pinValue;
    return async () => new Uint8Array(Buffer.from(value, 'utf8'));
  }
  return undefined;
}
