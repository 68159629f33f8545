/**
 * Small file-system and process helpers shared by the layers that do I/O (ceremony, keystore, device bench,
 * admin). Not for src/core, which is pure.
 */

import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { astring, utf8 } from '../core/bytes.js';

/**
 * fsyncs a directory so a rename or unlink in it is durable.
 * @param dir the directory
 * @throws TypeError when dir is not a string; the file system error (ENOENT …).
 */
export async function fsyncDir(dir: string): Promise<void> {
  astring(dir, 'dir');
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Options of {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /**
   * Mode of the new file (default 0600). A private mode (nothing for group/other) is set exactly (chmod after the
   * create, whatever the umask); a wider one is narrowed by the umask as usual.
   */
  mode?: number;
  /** Fail with EEXIST (leaving the existing file alone) when `path` exists: the temporary file is linked, not renamed. */
  exclusive?: boolean;
  /**
   * fsync the directory after the rename: `true` (default; its error is thrown), `'best-effort'` (its error is
   * ignored — not every platform supports it) or `false` (not done).
   */
  syncDir?: boolean | 'best-effort';
}

/**
 * Writes `data` to `path` atomically: a temporary file `.tmp-<name>-<random>` in the same directory, write, fsync,
 * rename over `path` (or link, with `exclusive`), then (by default) fsync of the directory. A crash leaves the old
 * file (or none), never a partial one (at most a stray `.tmp-…` file); on an error the temporary file is removed.
 * @param path the file to write
 * @param data the contents (a string is written as UTF-8)
 * @param opts `mode`, `exclusive`, `syncDir` (see {@link WriteFileAtomicOptions})
 * @throws TypeError for bad arguments (`path`, `data`, `opts.mode`); the file system error otherwise (EEXIST with
 *   `exclusive` when `path` exists).
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, opts: WriteFileAtomicOptions = {}): Promise<void> {
  astring(path, 'path');
  const bytes = typeof data === 'string' ? utf8(data) : data;
  if (!(bytes instanceof Uint8Array)) throw new TypeError('"data" expected Uint8Array or string');
  const mode = opts.mode ?? 0o600;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new TypeError('"opts.mode" expected a file mode (integer 0..0o7777)');
  const syncDir = opts.syncDir ?? true;
  const dir = dirname(path);
  const tmp = join(dir, `.tmp-${basename(path)}-${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, 'wx', mode);
  try {
    if ((mode & 0o077) === 0) await fh.chmod(mode);
    await fh.writeFile(bytes);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  if (opts.exclusive === true) {
    try {
      await link(tmp, path);
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  } else {
    try {
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  }
  if (syncDir === true) await fsyncDir(dir);
  else if (syncDir === 'best-effort') await fsyncDir(dir).catch(() => undefined);
}

/**
 * Reads a text file as lines (split on `\n`, without a trailing empty line). A missing file reads as undefined.
 * @param path the file
 * @returns the lines, or undefined when the file does not exist
 * @throws TypeError when path is not a string; the file system error other than ENOENT.
 */
export async function readLinesIfExists(path: string): Promise<string[] | undefined> {
  astring(path, 'path');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/**
 * Whether a process with this pid exists (signal 0; EPERM — it exists but belongs to someone else — counts as alive).
 * @param pid the process id
 * @returns true when the process exists
 * @throws RangeError when pid is not a positive integer.
 */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) throw new RangeError('"pid" expected a positive integer');
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
