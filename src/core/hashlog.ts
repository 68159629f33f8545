/**
 * Append-only linked-hash log: the ceremony transcript, the bench records and the portal notary log.
 *
 * One entry is one JSON line, members in this order:
 *
 *     {"Index":n,"Previous":<Id of entry n−1, or null for n = 0>,"Time":"<ISO 8601>","Type":"…","Body":{…},"Id":"<UDF>"}
 *
 * `Id` = `udfDigest(bytes, { contentType: 'application/meshkit-log-entry', bits: 200 })` where
 * `bytes` is the UTF-8 of the line with its final `,"Id":"<Id>"}` replaced by `}` — that is, the
 * entry without its Id, exactly as received (the writer produces it with `JSON.stringify` in the
 * member order above). Verification never re-serializes: a line must end in exactly that suffix,
 * be strict JSON (no duplicate members), have exactly these six members, `Index` equal to its
 * position and `Previous` equal to the preceding entry's Id.
 *
 * The head of a log (count and Id of the last entry) is signed as a JWS over
 * `{"LogHead":{"Count":n,"Head":<Id or null>,"Time":"…"}}` with `cty` "LogHead".
 *
 * Inclusion proofs are the plain linked chain from an entry to the head: O(n) in the distance to
 * the head, with no tree. That is enough for transcripts and bench records; the notary log can move
 * to a Merkle tree later without changing the entry format.
 */
import { aint, aobject, astring, describe, fromUtf8, utf8 } from './bytes.js';
import { ErrorCode, LogError, MeshkitError } from './errors.js';
import { parseJsonStrict, signJws, verifyJws, type JwsGeneral, type KeyResolver } from './jose.js';
import { udfDigest } from './udf.js';
import type { Signer } from './signer.js';

/** Content type of the entry hash. */
export const LOG_ENTRY_CONTENT_TYPE = 'application/meshkit-log-entry';
/** Precision of entry identifiers. */
export const LOG_ENTRY_BITS = 200;
/** `cty` of a signed log head. */
export const LOG_HEAD_CTY = 'LogHead';

/** One entry of the log, as parsed. */
export interface LogEntry {
  Index: number;
  Previous: string | null;
  Time: string;
  Type: string;
  Body: Record<string, unknown>;
  Id: string;
}

/** The head of a log: zero-based index and Id of its last entry (index −1, id null when empty). */
export interface LogHead {
  index: number;
  id: string | null;
}

/** The payload of a signed head, `{"LogHead": …}`. */
export interface LogHeadPayload {
  Count: number;
  Head: string | null;
  Time: string;
}

const ENTRY_MEMBERS = ['Index', 'Previous', 'Time', 'Type', 'Body', 'Id'];
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

function isIsoTime(value: unknown): value is string {
  return typeof value === 'string' && ISO_TIME.test(value) && !Number.isNaN(Date.parse(value));
}

function entryId(bytesWithoutId: Uint8Array): string {
  return udfDigest(bytesWithoutId, { contentType: LOG_ENTRY_CONTENT_TYPE, bits: LOG_ENTRY_BITS });
}

function broken(index: number, what: string, cause?: unknown): never {
  throw new LogError(ErrorCode.LOG_BROKEN, `log entry ${index}: ${what}`, index, cause === undefined ? undefined : { cause });
}

function isoTime(time: Date | string | undefined, field: string): string {
  if (time === undefined) return new Date().toISOString();
  if (time instanceof Date) {
    if (Number.isNaN(time.getTime())) throw new RangeError(`"${field}" is an invalid Date`);
    return time.toISOString();
  }
  astring(time, field);
  if (!isIsoTime(time)) throw new RangeError(`"${field}" is not an ISO 8601 time`);
  return time;
}

/**
 * Parses and checks one line on its own (Id over the received bytes, member set and types);
 * the caller checks Index and Previous against the chain.
 */
function checkLine(line: unknown, position: number): LogEntry {
  if (typeof line !== 'string') broken(position, `expected a string line, got ${describe(line)}`);
  let value: unknown;
  try {
    value = parseJsonStrict(line);
  } catch (e) {
    return broken(position, `bad JSON (${(e as Error).message})`, e);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) broken(position, 'bad JSON (not an object)');
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length !== ENTRY_MEMBERS.length || keys.some((k, i) => k !== ENTRY_MEMBERS[i])) {
    broken(position, `bad JSON (members must be exactly ${ENTRY_MEMBERS.join(', ')} in that order)`);
  }
  const { Index, Previous, Time, Type, Body, Id } = obj;
  if (typeof Index !== 'number' || !Number.isSafeInteger(Index) || Index < 0) broken(position, 'bad JSON (Index is not an integer)');
  if (Previous !== null && typeof Previous !== 'string') broken(position, 'bad JSON (Previous is not a string or null)');
  if (!isIsoTime(Time)) broken(position, 'bad JSON (Time is not an ISO 8601 string)');
  if (typeof Type !== 'string') broken(position, 'bad JSON (Type is not a string)');
  if (typeof Body !== 'object' || Body === null || Array.isArray(Body)) broken(position, 'bad JSON (Body is not an object)');
  if (typeof Id !== 'string' || !/^[A-Z2-7-]+$/.test(Id)) broken(position, 'bad JSON (Id is not a UDF string)');
  const suffix = `,"Id":"${Id}"}`;
  if (!line.endsWith(suffix)) broken(position, 'wrong Id (the line does not end in its Id member)');
  const hashed = utf8(`${line.slice(0, line.length - suffix.length)}}`);
  if (entryId(hashed) !== Id) broken(position, 'wrong Id (it is not the digest of the entry)');
  return obj as unknown as LogEntry;
}

/** Checks a chain of lines whose first entry has index `firstIndex` and Previous `firstPrevious`. */
function checkChain(lines: readonly unknown[], firstIndex: number, firstPrevious: string | null): LogEntry[] {
  const entries: LogEntry[] = [];
  let previous = firstPrevious;
  for (const [i, line] of lines.entries()) {
    const position = firstIndex + i;
    const entry = checkLine(line, position);
    if (entry.Index !== position) broken(position, `index gap (entry says Index ${entry.Index})`);
    if (entry.Previous !== previous) broken(position, 'wrong Previous (it is not the Id of the entry before)');
    previous = entry.Id;
    entries.push(entry);
  }
  return entries;
}

/**
 * Verifies a whole log from its first line.
 *
 * @returns the number of entries and the Id of the last one (null for an empty log).
 * @throws TypeError if `lines` is not an array.
 * @throws LogError `ERR_LOG_BROKEN` with `index` = the first entry that does not hold, saying
 *   what: bad JSON, index gap, wrong Previous or wrong Id.
 */
export function verifyLog(lines: readonly string[]): { count: number; head: string | null } {
  if (!Array.isArray(lines)) throw new TypeError(`"lines" expected an array of strings, got ${describe(lines)}`);
  const entries = checkChain(lines, 0, null);
  return { count: entries.length, head: entries.at(-1)?.Id ?? null };
}

/** An append-only linked-hash log held in memory as its JSON lines. */
export class HashLog {
  readonly #lines: string[] = [];
  #head: LogHead = { index: -1, id: null };

  /**
   * Builds a log from existing lines, verifying every link.
   *
   * @throws LogError `ERR_LOG_BROKEN` as {@link verifyLog}.
   */
  static fromLines(lines: readonly string[]): HashLog {
    const { count, head } = verifyLog(lines);
    const log = new HashLog();
    log.#lines.push(...lines);
    log.#head = { index: count - 1, id: head };
    return log;
  }

  /**
   * Appends an entry and returns it (with its Id).
   *
   * @param time defaults to now; a Date or an ISO 8601 string.
   * @throws TypeError / RangeError for a non-string type, a non-object or non-JSON body, a bad time.
   */
  append(type: string, body: Record<string, unknown>, time?: Date | string): LogEntry {
    astring(type, 'type');
    aobject(body, 'body');
    const Time = isoTime(time, 'time');
    const index = this.#head.index + 1;
    const withoutId = { Index: index, Previous: this.#head.id, Time, Type: type, Body: body };
    const text = JSON.stringify(withoutId);
    // Body must survive a JSON round trip unchanged in shape, or verification would disagree.
    let reparsed: unknown;
    try {
      reparsed = parseJsonStrict(text);
    } catch (e) {
      throw new TypeError(`"body" is not representable as strict JSON: ${(e as Error).message}`);
    }
    const Id = entryId(utf8(text));
    const line = `${text.slice(0, -1)},"Id":"${Id}"}`;
    this.#lines.push(line);
    this.#head = { index, id: Id };
    return { ...(reparsed as Omit<LogEntry, 'Id'>), Id };
  }

  /** Index and Id of the last entry (index −1 and id null while empty). */
  get head(): LogHead {
    return { ...this.#head };
  }

  /** Number of entries. */
  get count(): number {
    return this.#head.index + 1;
  }

  /** The lines (a copy), one JSON entry each, without newline characters. */
  lines(): string[] {
    return [...this.#lines];
  }
}

function headPayloadBytes(count: number, head: string | null, time: string): Uint8Array {
  return utf8(JSON.stringify({ LogHead: { Count: count, Head: head, Time: time } }));
}

/**
 * Signs a log head: a JWS over `{"LogHead":{"Count","Head","Time"}}` with `cty` "LogHead".
 *
 * @throws TypeError / RangeError for a malformed head or time.
 * @throws as {@link signJws} for a failing signer.
 */
export async function signLogHead(head: LogHead, signer: Signer, time?: Date | string): Promise<JwsGeneral> {
  aobject(head, 'head');
  aint(head.index, 'head.index', -1);
  if (head.index === -1 ? head.id !== null : typeof head.id !== 'string') {
    throw new RangeError('"head.id" must be null for an empty log and a string otherwise');
  }
  return signJws(headPayloadBytes(head.index + 1, head.id, isoTime(time, 'time')), [signer], { cty: LOG_HEAD_CTY });
}

function parseHeadPayload(payload: Uint8Array): LogHeadPayload {
  let value: unknown;
  try {
    value = parseJsonStrict(fromUtf8(payload));
  } catch (e) {
    throw new LogError(ErrorCode.LOG_SIGNATURE, 'signed log head payload is not strict JSON', undefined, { cause: e });
  }
  const inner = (value as { LogHead?: unknown } | null)?.LogHead;
  if (typeof value !== 'object' || value === null || Object.keys(value).length !== 1 || typeof inner !== 'object' || inner === null) {
    throw new LogError(ErrorCode.LOG_SIGNATURE, 'signed log head payload is not {"LogHead":{…}}');
  }
  const { Count, Head, Time } = inner as Record<string, unknown>;
  if (typeof Count !== 'number' || !Number.isSafeInteger(Count) || Count < 0
    || (Head !== null && typeof Head !== 'string') || (Count === 0) !== (Head === null) || !isIsoTime(Time)) {
    throw new LogError(ErrorCode.LOG_SIGNATURE, 'signed log head has malformed Count/Head/Time');
  }
  return { Count, Head, Time };
}

/**
 * Verifies a signed head against the log: the signature (key from `resolve`), then that Count and
 * Head are those of `lines`, which are verified in full.
 *
 * @returns the signed head and the signing key's identifier.
 * @throws LogError `ERR_LOG_SIGNATURE` (bad or unknown signature, malformed payload, Count/Head not
 *   those of the log), `ERR_LOG_BROKEN` (the log itself does not hold).
 */
export async function verifyLogHead(
  jws: unknown,
  lines: readonly string[],
  resolve: KeyResolver,
): Promise<LogHeadPayload & { keyId: string }> {
  let verified;
  try {
    verified = await verifyJws(jws, resolve);
  } catch (e) {
    if (e instanceof MeshkitError) {
      throw new LogError(ErrorCode.LOG_SIGNATURE, `log head signature does not hold: ${e.message}`, undefined, { cause: e });
    }
    throw e;
  }
  if (verified.protectedHeader.cty !== LOG_HEAD_CTY) throw new LogError(ErrorCode.LOG_SIGNATURE, `signed log head has cty ${String(verified.protectedHeader.cty)}, expected ${LOG_HEAD_CTY}`);
  const head = parseHeadPayload(verified.payload);
  const { count, head: id } = verifyLog(lines);
  if (head.Count !== count || head.Head !== id) {
    throw new LogError(ErrorCode.LOG_SIGNATURE, `signed head (Count ${head.Count}) does not match the log (Count ${count})`);
  }
  return { ...head, keyId: verified.keyId };
}

/**
 * The inclusion proof of entry `index`: the lines from that entry to the head (a linked chain).
 *
 * @throws TypeError / RangeError for bad arguments (index outside the log).
 */
export function inclusionProof(lines: readonly string[], index: number): string[] {
  if (!Array.isArray(lines)) throw new TypeError(`"lines" expected an array of strings, got ${describe(lines)}`);
  aint(index, 'index', 0, lines.length - 1);
  return lines.slice(index);
}

/**
 * Checks that `entryLine` is in the log whose (already verified) signed head is `head`: `proof`
 * must start with `entryLine`, each entry must link to the one before, every Id must hold, and the
 * last entry must be the head (Index = Count − 1, Id = Head). Cost O(distance to the head).
 *
 * @returns the parsed entry.
 * @throws TypeError for wrong argument types.
 * @throws LogError `ERR_LOG_BROKEN` if the chain or the head does not hold.
 */
export function verifyInclusion(entryLine: string, proof: readonly string[], head: LogHeadPayload): LogEntry {
  astring(entryLine, 'entryLine');
  if (!Array.isArray(proof)) throw new TypeError(`"proof" expected an array of strings, got ${describe(proof)}`);
  aobject(head, 'head');
  aint(head.Count, 'head.Count', 0);
  if (proof.length === 0 || proof[0] !== entryLine) {
    throw new LogError(ErrorCode.LOG_BROKEN, 'inclusion proof does not start with the entry');
  }
  let start: unknown;
  try {
    start = parseJsonStrict(entryLine);
  } catch (e) {
    throw new LogError(ErrorCode.LOG_BROKEN, 'inclusion proof entry is not strict JSON', undefined, { cause: e });
  }
  const { Index, Previous } = (typeof start === 'object' && start !== null ? start : {}) as Record<string, unknown>;
  if (typeof Index !== 'number' || !Number.isSafeInteger(Index) || Index < 0 || (Previous !== null && typeof Previous !== 'string')) {
    throw new LogError(ErrorCode.LOG_BROKEN, 'inclusion proof entry has no valid Index/Previous');
  }
  const entries = checkChain(proof, Index, Previous);
  const first = entries[0];
  if (first === undefined) throw new LogError(ErrorCode.LOG_BROKEN, 'inclusion proof is empty');
  const last = entries.at(-1);
  if (last === undefined || last.Index !== head.Count - 1 || last.Id !== head.Head) {
    throw new LogError(ErrorCode.LOG_BROKEN, 'inclusion proof does not end at the signed head', last?.Index);
  }
  return first;
}
