/**
 * File handling of the master-key ceremony: atomic writes (temporary file, fsync, rename, fsync of
 * the directory), secure removal (overwrite with random bytes, fsync, unlink) and the custodian share
 * file format (`shares/<i>.txt`, docs/ceremony.md), both writer and parser.
 *
 * Share file: plain text for printing on a card; lines `Key: value`, `#` comments and blank lines
 * ignored. Keys: Ceremony, Custodian, Share (`i of n`), Threshold, Master, Blob, Date, S-UDF, Check.
 * `Check` = udfDigest(UTF-8 of the S-UDF string, content type "application/meshkit-share-check",
 * 100 bits): a share whose Check fails is corrupted (a typo), one whose Master differs is foreign.
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, rm, rmdir, stat, unlink, lstat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { astring, aint, aobject, utf8 } from '../core/bytes.js';
import { ErrorCode, ShamirError } from '../core/errors.js';
import { udfDigest } from '../core/udf.js';
import { fsyncDir } from '../util/fs.js';

/** Content type of the share `Check` digest. */
export const SHARE_CHECK_CONTENT_TYPE = 'application/meshkit-share-check';
/** Precision of the share `Check` digest. */
export const SHARE_CHECK_BITS = 100;

/** The contents of one custodian share file. */
export interface ShareFile {
  /** The ceremony name (plan `Name`). */
  ceremony: string;
  custodian: string;
  /** 1-based share number (also the Shamir index). */
  index: number;
  /** n, the number of shares. */
  count: number;
  /** k, the number of shares that recover the key. */
  threshold: number;
  /** The master profile identifier (UDF of the master signature key). */
  master: string;
  /** The escrow blob identifier. */
  blob: string;
  /** ISO 8601 time of the ceremony. */
  date: string;
  /** The S-UDF share string. */
  share: string;
  /** The Check line as written (see {@link shareCheck}). */
  check: string;
}

/** A parsed share file plus whether its Check holds. */
export interface ParsedShareFile extends ShareFile {
  /** True when `check` equals {@link shareCheck}(`share`); false means the share is corrupted. */
  checkValid: boolean;
}

/**
 * The Check value of an S-UDF share string.
 * @throws TypeError if `share` is not a string.
 */
export function shareCheck(share: string): string {
  astring(share, 'share');
  return udfDigest(utf8(share), { contentType: SHARE_CHECK_CONTENT_TYPE, bits: SHARE_CHECK_BITS });
}

/**
 * True when the share file's `Check` matches its S-UDF (the share was not mistyped).
 * @throws TypeError if `file` lacks the `share` / `check` strings.
 */
export function verifyShareCheck(file: Pick<ShareFile, 'share' | 'check'>): boolean {
  aobject(file, 'file');
  astring(file.share, 'file.share');
  astring(file.check, 'file.check');
  return normaliseUdf(file.check) === normaliseUdf(shareCheck(file.share));
}

function normaliseUdf(s: string): string {
  return s.trim().toUpperCase();
}

function oneLine(value: string, field: string): string {
  astring(value, field);
  if (/[\r\n]/.test(value)) throw new RangeError(`"${field}" must be a single line`);
  return value;
}

/**
 * Formats a share file (text with a trailing newline). `check` is computed when not given.
 * @throws TypeError / RangeError for missing or multi-line fields, or indices out of range.
 */
export function formatShareFile(file: Omit<ShareFile, 'check'> & { check?: string }): string {
  aobject(file, 'file');
  const count = aint(file.count, 'file.count', 1, 15);
  const threshold = aint(file.threshold, 'file.threshold', 1, count);
  const index = aint(file.index, 'file.index', 1, count);
  const share = oneLine(file.share, 'file.share');
  const check = file.check === undefined ? shareCheck(share) : oneLine(file.check, 'file.check');
  return [
    `# Mesh master key escrow share — keep offline. ${threshold} of ${count} shares recover the master keys.`,
    `Ceremony: ${oneLine(file.ceremony, 'file.ceremony')}`,
    `Custodian: ${oneLine(file.custodian, 'file.custodian')}`,
    `Share: ${index} of ${count}`,
    `Threshold: ${threshold}`,
    `Master: ${oneLine(file.master, 'file.master')}`,
    `Blob: ${oneLine(file.blob, 'file.blob')}`,
    `Date: ${oneLine(file.date, 'file.date')}`,
    `S-UDF: ${share}`,
    `Check: ${check}`,
    '',
  ].join('\n');
}

const SHARE_KEYS = ['Ceremony', 'Custodian', 'Share', 'Threshold', 'Master', 'Blob', 'Date', 'S-UDF', 'Check'] as const;

/**
 * Parses a share file. Does not throw for a failing Check: `checkValid` says whether it holds, so
 * recovery can name the share "corrupted".
 * @throws TypeError if `text` is not a string.
 * @throws ShamirError ERR_SHARE_INVALID naming the line or the missing / repeated / malformed key.
 */
export function parseShareFile(text: string): ParsedShareFile {
  astring(text, 'text');
  const bad = (msg: string): never => {
    throw new ShamirError(ErrorCode.SHARE_INVALID, `share file: ${msg}`);
  };
  const values = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) bad(`line ${i + 1} is not "Key: value"`);
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (!(SHARE_KEYS as readonly string[]).includes(key)) bad(`line ${i + 1}: unknown key ${JSON.stringify(key)}`);
    if (values.has(key)) bad(`line ${i + 1}: ${key} given twice`);
    values.set(key, value);
  });
  const get = (key: (typeof SHARE_KEYS)[number]): string => {
    const v = values.get(key);
    if (v === undefined || v === '') return bad(`missing ${key}`);
    return v;
  };
  const shareLine = /^(\d+)\s+of\s+(\d+)$/.exec(get('Share'));
  if (shareLine === null) return bad(`Share must be "i of n", got ${JSON.stringify(get('Share'))}`);
  const index = Number(shareLine[1]);
  const count = Number(shareLine[2]);
  if (count < 1 || count > 15 || index < 1 || index > count) bad(`Share ${index} of ${count} is out of range (1 ≤ i ≤ n ≤ 15)`);
  const thresholdText = get('Threshold');
  if (!/^\d+$/.test(thresholdText)) bad(`Threshold must be a number, got ${JSON.stringify(thresholdText)}`);
  const threshold = Number(thresholdText);
  if (threshold < 1 || threshold > count) bad(`Threshold ${threshold} is out of range (1…${count})`);
  const file: ShareFile = {
    ceremony: get('Ceremony'),
    custodian: get('Custodian'),
    index,
    count,
    threshold,
    master: get('Master'),
    blob: get('Blob'),
    date: get('Date'),
    share: get('S-UDF'),
    check: get('Check'),
  };
  return { ...file, checkValid: verifyShareCheck(file) };
}

// ---------------------------------------------------------------------------------------------
// Atomic writes and secure removal
// ---------------------------------------------------------------------------------------------

// fsyncDir and writeFileAtomic live in src/util/fs.ts (shared with the key store, the device bench and admin);
// re-exported here, where the ceremony API has always offered them.
export { fsyncDir, writeFileAtomic } from '../util/fs.js';

/**
 * Overwrites a regular file with random bytes (fsync), then unlinks it. Missing files are ignored.
 * (On copy-on-write or journalling file systems and SSDs the old blocks may survive; the overwrite
 * is a best effort.)
 * @throws the file system error other than ENOENT.
 */
export async function secureRemoveFile(path: string): Promise<void> {
  astring(path, 'path');
  let size: number;
  try {
    const st = await lstat(path);
    if (!st.isFile()) {
      await rm(path, { recursive: true, force: true });
      return;
    }
    size = st.size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const fh = await open(path, 'r+');
  try {
    const chunk = 64 * 1024;
    for (let off = 0; off < size; off += chunk) {
      const n = Math.min(chunk, size - off);
      await fh.write(randomBytes(n), 0, n, off);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  await unlink(path);
}

/**
 * Securely removes a directory tree: every regular file overwritten then unlinked, then the
 * directories removed. A missing directory is ignored.
 * @throws the file system error other than ENOENT.
 */
export async function secureRemoveTree(dir: string): Promise<void> {
  astring(dir, 'dir');
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  for (const ent of entries) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) await secureRemoveTree(p);
    else await secureRemoveFile(p);
  }
  await rmdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  await fsyncDir(dirname(dir)).catch(() => undefined);
}

/** True when `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The fingerprint the ceremony records for each file it writes (and `ceremony verify` recomputes). */
export function ceremonyFileFingerprint(bytes: Uint8Array): string {
  return udfDigest(bytes);
}
