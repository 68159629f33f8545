/**
 * PKCS#11 URIs (RFC 7512): name a module, a token and an object on it.
 *
 *   pkcs11:token=Master;object=master-sign;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin
 *
 * Pure (no I/O): {@link parsePkcs11Uri} turns the text into a {@link Pkcs11Uri} (values percent-decoded,
 * `id` as bytes, `slot-id` as a number) plus warnings; {@link formatPkcs11Uri} writes it back (never the
 * PIN). The rules enforced, from RFC 7512 §2.3 / §2.5:
 * - scheme `pkcs11:` (case-insensitive); path attributes separated by `;`, query attributes by `&`;
 * - attribute names are case-sensitive; each attribute at most once; a path attribute in the query (or
 *   the reverse) is refused;
 * - vendor-specific attributes (`vendor-aaa=…`: a name with a `-` made of ALPHA / DIGIT / `-` / `_`) are
 *   kept in `vendor` — in the path with a warning, since meshkit cannot match on them; any other unknown
 *   name (a typo such as `tokn=` or `Token=`) is an error;
 * - `%XX` escapes must be complete and hex; text values must be UTF-8; raw spaces, controls, `#`, `"`,
 *   `<`, `>`, `\`, `^`, `` ` ``, `{`, `|` (path), `}` are refused;
 * - `type` is one of public, private, cert, secret-key, data; `slot-id` is decimal digits;
 *   `library-version` is `M` or `M.m`;
 * - `pin-source` is `file:/abs/path`, `file:///abs/path`, a plain absolute path, or (meshkit extension)
 *   `env:VAR`; `pin-value` is accepted with a warning and cannot be combined with `pin-source`.
 * Every failure is a Pkcs11Error ERR_PKCS11_URI_INVALID; messages never show a `pin-value`.
 */
import { ErrorCode, Pkcs11Error } from '../../core/errors.js';
import { describe as describeValue } from '../../core/bytes.js';

/** The object classes a URI can select (`type=`). */
export const PKCS11_OBJECT_TYPES = ['private', 'public', 'secret-key', 'cert', 'data'] as const;
export type Pkcs11ObjectType = (typeof PKCS11_OBJECT_TYPES)[number];

/** A parsed PKCS#11 URI (RFC 7512). Every field is optional; text is percent-decoded. */
export interface Pkcs11Uri {
  // path attributes
  token?: string;
  manufacturer?: string;
  model?: string;
  serial?: string;
  libraryManufacturer?: string;
  libraryDescription?: string;
  libraryVersion?: string;
  slotId?: number;
  slotDescription?: string;
  slotManufacturer?: string;
  /** CKA_LABEL. */
  object?: string;
  /** CKA_ID (bytes). */
  id?: Uint8Array;
  type?: Pkcs11ObjectType;
  // query attributes
  modulePath?: string;
  moduleName?: string;
  /** `file:/path`, a plain absolute path (RFC 7512 §2.3), or `env:VAR` (meshkit extension). */
  pinSource?: string;
  /** Accepted, but {@link parsePkcs11Uri} warns that it is unsafe; {@link formatPkcs11Uri} never writes it. */
  pinValue?: string;
  /** Vendor-specific attributes, kept as decoded text (meshkit does not act on them). */
  vendor?: { path?: Record<string, string>; query?: Record<string, string> };
}

type TextField = Exclude<keyof Pkcs11Uri, 'slotId' | 'id' | 'type' | 'vendor'>;

/** Path attribute names (RFC 7512 §2.3) → fields. */
const PATH_ATTRS = {
  token: 'token',
  manufacturer: 'manufacturer',
  model: 'model',
  serial: 'serial',
  'library-manufacturer': 'libraryManufacturer',
  'library-description': 'libraryDescription',
  'library-version': 'libraryVersion',
  'slot-id': 'slotId',
  'slot-description': 'slotDescription',
  'slot-manufacturer': 'slotManufacturer',
  object: 'object',
  id: 'id',
  type: 'type',
} as const satisfies Record<string, keyof Pkcs11Uri>;

/** Query attribute names → fields. */
const QUERY_ATTRS = {
  'module-name': 'moduleName',
  'module-path': 'modulePath',
  'pin-source': 'pinSource',
  'pin-value': 'pinValue',
} as const satisfies Record<string, keyof Pkcs11Uri>;

/** The order {@link formatPkcs11Uri} writes path attributes in. */
const PATH_ORDER = [
  'token',
  'manufacturer',
  'model',
  'serial',
  'slot-description',
  'slot-manufacturer',
  'slot-id',
  'library-manufacturer',
  'library-description',
  'library-version',
  'object',
  'type',
  'id',
] as const satisfies readonly (keyof typeof PATH_ATTRS)[];

/** The warning returned for a URI carrying `pin-value`. */
export const PIN_VALUE_WARNING = 'pin-value puts the PIN in the URI (shell history, process list, logs); use pin-source';

const VENDOR_NAME = /^[A-Za-z0-9_]+(?:-[A-Za-z0-9_-]*)+$/u;
// Characters that may never appear raw: controls, space, and those RFC 3986 excludes from URIs.
// eslint-disable-next-line no-control-regex
const FORBIDDEN_RAW = /[\u0000-\u0020\u007f"#<>\\^`{}]/u;

/** Replaces any pin-value in `uri` before it is shown in a message. */
function redact(uri: string): string {
  const shown = uri.replace(/([?&]pin-value=)[^&]*/gu, '$1***');
  return shown.length > 300 ? `${shown.slice(0, 300)}…` : shown;
}

function invalid(uri: string, why: string): Pkcs11Error {
  return new Pkcs11Error(ErrorCode.PKCS11_URI_INVALID, `invalid PKCS#11 URI ${JSON.stringify(redact(uri))}: ${why}`);
}

/** Percent-decodes to bytes; `%` must be followed by two hex digits. */
function pctDecodeBytes(text: string, uri: string, name: string): Uint8Array {
  const out: number[] = [];
  const raw = Buffer.from(text, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as number;
    if (c !== 0x25) {
      out.push(c);
      continue;
    }
    const hex = raw.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9A-Fa-f]{2}$/u.test(hex)) throw invalid(uri, `bad percent-escape "%${hex}" in ${name}`);
    out.push(parseInt(hex, 16));
    i += 2;
  }
  return Uint8Array.from(out);
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

function pctDecodeText(text: string, uri: string, name: string): string {
  const bytes = pctDecodeBytes(text, uri, name);
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    throw invalid(uri, `${name} is not valid UTF-8 after percent-decoding`);
  }
}

/**
 * Checks a `pin-source` value: `file:/abs`, `file:///abs`, `file://localhost/abs`, `/abs` or `env:VAR`.
 * @returns the kind and the decoded target (path or variable name).
 */
export function classifyPinSource(value: string): { kind: 'file'; path: string } | { kind: 'env'; name: string } | undefined {
  if (value.startsWith('env:')) {
    const name = value.slice(4);
    return /^[A-Za-z_][A-Za-z0-9_]*$/u.test(name) ? { kind: 'env', name } : undefined;
  }
  let path = value;
  if (/^file:/iu.test(path)) {
    path = path.slice(5);
    if (path.startsWith('//')) {
      const slash = path.indexOf('/', 2);
      const host = slash < 0 ? path.slice(2) : path.slice(2, slash);
      if (host !== '' && host.toLowerCase() !== 'localhost') return undefined;
      path = slash < 0 ? '' : path.slice(slash);
    }
  }
  if (!path.startsWith('/') || path.includes('\u0000')) return undefined;
  return { kind: 'file', path };
}

function setField(result: Pkcs11Uri, field: keyof Pkcs11Uri, rawValue: string, name: string, uri: string): void {
  switch (field) {
    case 'id':
      result.id = pctDecodeBytes(rawValue, uri, name);
      return;
    case 'slotId': {
      const v = pctDecodeText(rawValue, uri, name);
      if (!/^\d{1,15}$/u.test(v)) throw invalid(uri, `slot-id must be a decimal number, got ${JSON.stringify(v)}`);
      result.slotId = Number(v);
      return;
    }
    case 'type': {
      const v = pctDecodeText(rawValue, uri, name);
      if (!(PKCS11_OBJECT_TYPES as readonly string[]).includes(v)) {
        throw invalid(uri, `type must be one of ${PKCS11_OBJECT_TYPES.join(', ')}, got ${JSON.stringify(v)}`);
      }
      result.type = v as Pkcs11ObjectType;
      return;
    }
    case 'vendor':
      return;
    default: {
      const v = pctDecodeText(rawValue, uri, name);
      if (field === 'libraryVersion' && !/^\d+(?:\.\d+)?$/u.test(v)) {
        throw invalid(uri, `library-version must be M or M.m (digits), got ${JSON.stringify(v)}`);
      }
      if (field === 'pinSource' && classifyPinSource(v) === undefined) {
        throw invalid(uri, `pin-source must be file:/absolute/path, an absolute path or env:VAR, got ${JSON.stringify(v)}`);
      }
      if (field === 'pinValue' && v === '') throw invalid(uri, 'pin-value is empty');
      if ((field === 'modulePath' || field === 'moduleName') && v === '') throw invalid(uri, `${name} is empty`);
      (result as Record<TextField, string>)[field] = v;
    }
  }
}

/**
 * Parses an RFC 7512 PKCS#11 URI.
 * @param uri e.g. `pkcs11:token=Master;object=master-sign?module-path=/usr/lib/softhsm/libsofthsm2.so`
 * @returns the attributes (percent-decoded; `id` as bytes) and warnings to show the user
 *   (`pin-value` present, vendor attributes meshkit ignores).
 * @throws TypeError if `uri` is not a string.
 * @throws Pkcs11Error ERR_PKCS11_URI_INVALID for a wrong scheme, a bad percent-escape, a duplicate,
 *   unknown or misplaced attribute, a bad `type` / `slot-id` / `library-version` / `pin-source`, or
 *   `pin-value` together with `pin-source`.
 */
export function parsePkcs11Uri(uri: string): { uri: Pkcs11Uri; warnings: string[] } {
  if (typeof uri !== 'string') throw new TypeError(`"uri" expected string, got ${describeValue(uri)}`);
  if (!/^pkcs11:/iu.test(uri)) {
    throw invalid(uri, 'the scheme must be "pkcs11:" (e.g. pkcs11:token=Master;object=master-sign)');
  }
  const bad = FORBIDDEN_RAW.exec(uri);
  if (bad !== null) throw invalid(uri, `character ${JSON.stringify(bad[0])} must be percent-encoded`);
  const body = uri.slice('pkcs11:'.length);
  const q = body.indexOf('?');
  const path = q < 0 ? body : body.slice(0, q);
  const query = q < 0 ? undefined : body.slice(q + 1);

  const result: Pkcs11Uri = {};
  const warnings: string[] = [];
  const seen = new Set<string>();

  const parts: Array<{ part: 'path' | 'query'; items: string[] }> = [{ part: 'path', items: path === '' ? [] : path.split(';') }];
  if (query !== undefined) parts.push({ part: 'query', items: query === '' ? [] : query.split('&') });

  for (const { part, items } of parts) {
    for (const item of items) {
      if (item === '') throw invalid(uri, `empty attribute in the ${part} part (a doubled or trailing "${part === 'path' ? ';' : '&'}")`);
      const eq = item.indexOf('=');
      if (eq <= 0) throw invalid(uri, `attribute ${JSON.stringify(item.slice(0, 40))} in the ${part} part has no name=value form`);
      const name = item.slice(0, eq);
      const value = item.slice(eq + 1);
      if (seen.has(name)) throw invalid(uri, `attribute ${name} appears more than once`);
      seen.add(name);
      const own = part === 'path' ? PATH_ATTRS : QUERY_ATTRS;
      const other = part === 'path' ? QUERY_ATTRS : PATH_ATTRS;
      if (Object.hasOwn(own, name)) {
        if (part === 'path' && /[/|]/u.test(value)) throw invalid(uri, `"/" and "|" must be percent-encoded (%2F, %7C) in the path part (${name})`);
        setField(result, own[name as keyof typeof own], value, name, uri);
      } else if (Object.hasOwn(other, name)) {
        throw invalid(uri, `${name} belongs in the ${part === 'path' ? 'query (after "?")' : 'path (before "?")'} part`);
      } else if (VENDOR_NAME.test(name)) {
        if (part === 'path' && /[/|]/u.test(value)) throw invalid(uri, `"/" and "|" must be percent-encoded (%2F, %7C) in the path part (${name})`);
        const decoded = pctDecodeText(value, uri, name);
        result.vendor ??= {};
        (result.vendor[part] ??= {})[name] = decoded;
        warnings.push(
          part === 'path'
            ? `vendor attribute ${name} in the path is not understood by meshkit and is not used to select the object`
            : `vendor attribute ${name} in the query is ignored`,
        );
      } else {
        throw invalid(
          uri,
          `unknown attribute ${JSON.stringify(name)} (path: ${Object.keys(PATH_ATTRS).join(', ')}; query: ${Object.keys(QUERY_ATTRS).join(', ')}; names are case-sensitive)`,
        );
      }
    }
  }
  if (result.pinValue !== undefined && result.pinSource !== undefined) throw invalid(uri, 'give pin-source or pin-value, not both');
  if (result.pinValue !== undefined) warnings.unshift(PIN_VALUE_WARNING);
  return { uri: result, warnings };
}

const UNRESERVED = 'A-Za-z0-9\\-._~';
const PATH_SAFE = new RegExp(`[^${UNRESERVED}:\\[\\]@!$'()*+,=&]`, 'gu');
const QUERY_SAFE = new RegExp(`[^${UNRESERVED}:\\[\\]@!$'()*+,=/?|]`, 'gu');

function pctEncode(text: string, unsafe: RegExp): string {
  return text.replace(unsafe, (c) =>
    Array.from(Buffer.from(c, 'utf8'), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

function checkText(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new TypeError(`"${field}" expected string, got ${describeValue(value)}`);
  return value;
}

/**
 * Formats a PKCS#11 URI that {@link parsePkcs11Uri} reads back to the same attributes. Path attributes
 * come in a fixed order (token first); `id` is written as `%XX` for every byte; `pin-value` is never
 * written (the PIN does not belong in a URI).
 * @param opts `includePin` may only be `false` (the default) — there is no way to write the PIN.
 * @throws TypeError for a field of the wrong type.
 * @throws RangeError for a `type`, `slotId`, `libraryVersion`, `pinSource` or vendor attribute name that
 *   {@link parsePkcs11Uri} would refuse.
 */
export function formatPkcs11Uri(uri: Pkcs11Uri, opts: { includePin?: false } = {}): string {
  if (typeof uri !== 'object' || uri === null) throw new TypeError(`"uri" expected object, got ${describeValue(uri)}`);
  if (opts.includePin !== undefined && opts.includePin !== false) throw new RangeError('"includePin" must be false: the PIN is never written');
  const path: string[] = [];
  for (const name of PATH_ORDER) {
    const field = PATH_ATTRS[name];
    const value = uri[field];
    if (value === undefined) continue;
    if (field === 'id') {
      if (!(value instanceof Uint8Array)) throw new TypeError(`"id" expected Uint8Array, got ${describeValue(value)}`);
      path.push(`id=${Array.from(value, (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('')}`);
    } else if (field === 'slotId') {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw new RangeError(`"slotId" expected a non-negative integer, got ${describeValue(value)}`);
      }
      path.push(`slot-id=${value}`);
    } else if (field === 'type') {
      if (!(PKCS11_OBJECT_TYPES as readonly unknown[]).includes(value)) {
        throw new RangeError(`"type" expected one of ${PKCS11_OBJECT_TYPES.join(', ')}, got ${describeValue(value)}`);
      }
      path.push(`type=${value as string}`);
    } else {
      const text = checkText(value, field);
      if (field === 'libraryVersion' && !/^\d+(?:\.\d+)?$/u.test(text)) {
        throw new RangeError(`"libraryVersion" expected M or M.m, got ${JSON.stringify(text)}`);
      }
      path.push(`${name}=${pctEncode(text, PATH_SAFE)}`);
    }
  }
  for (const [name, value] of Object.entries(uri.vendor?.path ?? {})) {
    if (!VENDOR_NAME.test(name)) throw new RangeError(`vendor attribute name ${JSON.stringify(name)} must contain "-" and only A-Z a-z 0-9 - _`);
    path.push(`${name}=${pctEncode(checkText(value, name), PATH_SAFE)}`);
  }
  const query: string[] = [];
  for (const [name, field] of [
    ['module-name', 'moduleName'],
    ['module-path', 'modulePath'],
    ['pin-source', 'pinSource'],
  ] as const) {
    const value = uri[field];
    if (value === undefined) continue;
    const text = checkText(value, field);
    if (field === 'pinSource' && classifyPinSource(text) === undefined) {
      throw new RangeError(`"pinSource" expected file:/absolute/path, an absolute path or env:VAR, got ${JSON.stringify(text)}`);
    }
    query.push(`${name}=${pctEncode(text, QUERY_SAFE)}`);
  }
  for (const [name, value] of Object.entries(uri.vendor?.query ?? {})) {
    if (!VENDOR_NAME.test(name)) throw new RangeError(`vendor attribute name ${JSON.stringify(name)} must contain "-" and only A-Z a-z 0-9 - _`);
    query.push(`${name}=${pctEncode(checkText(value, name), QUERY_SAFE)}`);
  }
  return `pkcs11:${path.join(';')}${query.length === 0 ? '' : `?${query.join('&')}`}`;
}
