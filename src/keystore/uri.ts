/**
 * Key references: the strings users and account directories use to name a private key.
 *
 * - `file:PATH#LABEL` — a key in a software key store (an encrypted JSON file). PATH is relative
 *   (to the working directory) or absolute, percent-encoded where needed (`%23` for `#`, `%25` for
 *   `%`); `file:///abs/path#label` and `file://localhost/abs/path#label` (RFC 8089) are accepted too.
 * - `pkcs11:…` — an RFC 7512 PKCS#11 URI; recognised here and returned raw (parsed by the PKCS#11 store).
 *
 * Anything else is a KeyStoreError ERR_KEY_URI_INVALID whose message shows the right form.
 */
import { ErrorCode, KeyStoreError } from '../core/errors.js';
import { astring } from '../core/bytes.js';
import { alabel } from './types.js';

/** A parsed reference to one key. */
export type KeyReference = { kind: 'file'; path: string; label: string } | { kind: 'pkcs11'; raw: string };
/** A parsed reference to a whole store (no label). */
export type StoreReference = { kind: 'file'; path: string } | { kind: 'pkcs11'; raw: string };

const KEY_EXAMPLE =
  'expected file:PATH#LABEL (e.g. file:keys.json#master-sign) or a pkcs11: URI ' +
  '(e.g. pkcs11:token=Master;object=master-sign?module-path=/usr/lib/softhsm/libsofthsm2.so)';
const STORE_EXAMPLE = 'expected file:PATH (e.g. file:keys.json) or a pkcs11: URI (e.g. pkcs11:token=Master)';

function invalid(uri: string, why: string, example: string): KeyStoreError {
  // Show the reference (it names a file and a label, never a secret), truncated for safety.
  const shown = uri.length > 200 ? `${uri.slice(0, 200)}…` : uri;
  return new KeyStoreError(ErrorCode.KEY_URI_INVALID, `invalid key reference ${JSON.stringify(shown)}: ${why}; ${example}`);
}

function decode(part: string, uri: string, what: string, example: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalid(uri, `bad percent-encoding in the ${what}`, example);
  }
}

/** Splits `file:` URIs into path and (undecoded) fragment. */
function splitFile(uri: string, example: string): { path: string; fragment: string | undefined } {
  let rest = uri.slice('file:'.length);
  const hash = rest.indexOf('#');
  const fragment = hash >= 0 ? rest.slice(hash + 1) : undefined;
  if (hash >= 0) rest = rest.slice(0, hash);
  if (rest.startsWith('//')) {
    // RFC 8089: file://[host]/path — only the local host.
    const slash = rest.indexOf('/', 2);
    const host = slash >= 0 ? rest.slice(2, slash) : rest.slice(2);
    if (host !== '' && host.toLowerCase() !== 'localhost') throw invalid(uri, `remote host ${JSON.stringify(host)} is not supported`, example);
    rest = slash >= 0 ? rest.slice(slash) : '';
  }
  const path = decode(rest, uri, 'path', example);
  if (path === '') throw invalid(uri, 'the path is empty', example);
  if (path.includes('\u0000')) throw invalid(uri, 'the path contains a NUL character', example);
  return { path, fragment };
}

function scheme(uri: string): string {
  const colon = uri.indexOf(':');
  return colon > 0 ? uri.slice(0, colon).toLowerCase() : '';
}

/**
 * Parses a key reference.
 * @param uri `file:PATH#LABEL` or `pkcs11:…`
 * @returns `{kind:'file', path, label}` (both percent-decoded) or `{kind:'pkcs11', raw}`.
 * @throws TypeError if `uri` is not a string.
 * @throws KeyStoreError ERR_KEY_URI_INVALID for any other form, a missing or bad label, or bad percent-encoding.
 */
export function parseKeyReference(uri: string): KeyReference {
  astring(uri, 'uri');
  const s = scheme(uri);
  if (s === 'pkcs11') return { kind: 'pkcs11', raw: uri };
  if (s !== 'file') throw invalid(uri, s === '' ? 'no scheme' : `unknown scheme ${JSON.stringify(s)}`, KEY_EXAMPLE);
  const { path, fragment } = splitFile('file:' + uri.slice(s.length + 1), KEY_EXAMPLE);
  if (fragment === undefined || fragment === '') throw invalid(uri, 'the #LABEL is missing', KEY_EXAMPLE);
  const label = decode(fragment, uri, 'label', KEY_EXAMPLE);
  try {
    alabel(label);
  } catch (e) {
    throw invalid(uri, e instanceof Error ? e.message : 'bad label', KEY_EXAMPLE);
  }
  return { kind: 'file', path, label };
}

/**
 * Parses a store reference (a key reference without a label).
 * @param uri `file:PATH` or `pkcs11:…`
 * @throws TypeError if `uri` is not a string.
 * @throws KeyStoreError ERR_KEY_URI_INVALID for any other form, or a `file:` URI with a #LABEL.
 */
export function parseStoreReference(uri: string): StoreReference {
  astring(uri, 'uri');
  const s = scheme(uri);
  if (s === 'pkcs11') return { kind: 'pkcs11', raw: uri };
  if (s !== 'file') throw invalid(uri, s === '' ? 'no scheme' : `unknown scheme ${JSON.stringify(s)}`, STORE_EXAMPLE);
  const { path, fragment } = splitFile('file:' + uri.slice(s.length + 1), STORE_EXAMPLE);
  if (fragment !== undefined) throw invalid(uri, 'a store reference has no #LABEL', STORE_EXAMPLE);
  return { kind: 'file', path };
}

/** Percent-encodes what would change the meaning of a `file:` URI (`%`, `#`, `?`, controls, spaces, non-ASCII). */
function encodePart(text: string): string {
  return text.replace(/[^A-Za-z0-9\-._~/:@!$&'()*+,;=]/gu, (c) => encodeURIComponent(c));
}

/**
 * Formats a `file:PATH[#LABEL]` reference that {@link parseKeyReference} / {@link parseStoreReference} read back.
 * @throws TypeError if `path` or `label` is not a string.
 */
export function formatFileReference(path: string, label?: string): string {
  astring(path, 'path');
  // A path starting with "//" would read as an authority: keep it a path.
  const p = path.startsWith('//') ? `//${path}` : path;
  const base = `file:${encodePart(p)}`;
  if (label === undefined) return base;
  astring(label, 'label');
  return `${base}#${encodePart(label)}`;
}
