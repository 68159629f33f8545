/**
 * The ceremony plan (docs/ceremony.md): one JSON file an auditor can read, `{"Ceremony":{…}}`.
 * Parsing is strict (duplicate members and unknown members refused) and every field is checked
 * with a message naming it (`Ceremony.Threshold` …). Defaults: Algorithms Ed448 + X448, Labels
 * `mesh-master-signature` / `mesh-master-escrow`, Witnesses and Names empty.
 *
 * Secrets are never in the plan: PINs and passphrases come from the command line's sources.
 */
import { fromUtf8 } from '../core/bytes.js';
import { ErrorCode, MeshkitError } from '../core/errors.js';
import { parseJsonStrict } from '../core/jose.js';
import { publicKeyFromJwk } from '../core/keys.js';
import { CURVES, type Curve, type PublicJwk } from '../core/signer.js';
import { udfDigest } from '../core/udf.js';
import { MAX_LABEL_LENGTH } from '../keystore/types.js';

/** A ceremony failure: an invalid plan, a refused state (interrupted ceremony), a failed check. */
export class CeremonyError extends MeshkitError {}

/** The three key origins. */
export const KEY_ORIGINS = ['generate-on-token', 'import-with-escrow', 'generate-on-token-wrapped'] as const;
export type KeyOrigin = (typeof KEY_ORIGINS)[number];

/** An administrator of the plan: a key reference usable at the ceremony, or a public key. */
export interface PlanAdministrator {
  name: string;
  /** `pkcs11:` or `file:PATH#LABEL` reference. */
  key?: string;
  publicKey?: PublicJwk;
}

/** A checked plan. */
export interface CeremonyPlan {
  name: string;
  token: string;
  keyOrigin: KeyOrigin;
  algorithms: { signature: Curve; escrow: Curve };
  labels: { signature: string; escrow: string };
  administrators: PlanAdministrator[];
  /** Empty for generate-on-token when the plan gives none. */
  custodians: string[];
  /** 0 for generate-on-token when the plan gives none. */
  threshold: number;
  witnesses: string[];
  names: string[];
  /** The plan file's bytes as read (copied to DIR/plan.json). */
  bytes: Uint8Array;
  /** udfDigest of the plan bytes (content type application/json). */
  fingerprint: string;
}

/** Default algorithms: the highest strength on offer. */
export const DEFAULT_ALGORITHMS = { signature: 'Ed448', escrow: 'X448' } as const;
/** Default labels of the master keys on the token. */
export const DEFAULT_LABELS = { signature: 'mesh-master-signature', escrow: 'mesh-master-escrow' } as const;

const SIGNATURE_CURVES: readonly Curve[] = ['Ed25519', 'Ed448', 'P-256'];
const ESCROW_CURVES: readonly Curve[] = ['X25519', 'X448', 'P-256'];
const TOP_MEMBERS = ['Name', 'Token', 'KeyOrigin', 'Algorithms', 'Labels', 'Administrators', 'Custodians', 'Threshold', 'Witnesses', 'Names'];

function invalid(field: string, msg: string): never {
  throw new CeremonyError(ErrorCode.CEREMONY_PLAN, `plan: "${field}" ${msg}`);
}

function obj(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalid(field, `must be an object`);
  return value as Record<string, unknown>;
}

function onlyMembers(o: Record<string, unknown>, allowed: readonly string[], field: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) invalid(`${field}.${k}`, `is not a plan field (allowed: ${allowed.join(', ')})`);
  }
}

function text(value: unknown, field: string, max = 200): string {
  if (typeof value !== 'string') invalid(field, `must be a string`);
  const s = value as string;
  if (s.trim() === '') invalid(field, `must not be empty`);
  if (s.length > max) invalid(field, `must be at most ${max} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(s)) invalid(field, `must not contain control characters or line breaks`);
  return s;
}

function names(value: unknown, field: string, opts: { min: number; max: number; unique: boolean }): string[] {
  if (!Array.isArray(value)) invalid(field, `must be an array of names`);
  const list = (value as unknown[]).map((v, i) => text(v, `${field}[${i}]`));
  if (list.length < opts.min) invalid(field, `must list at least ${opts.min} name(s), got ${list.length}`);
  if (list.length > opts.max) invalid(field, `must list at most ${opts.max} names, got ${list.length}`);
  if (opts.unique) {
    const seen = new Set<string>();
    list.forEach((n, i) => {
      if (seen.has(n)) invalid(`${field}[${i}]`, `repeats the name ${JSON.stringify(n)}`);
      seen.add(n);
    });
  }
  return list;
}

function curve(value: unknown, field: string, allowed: readonly Curve[], dflt: Curve): Curve {
  if (value === undefined) return dflt;
  if (typeof value !== 'string' || !(CURVES as readonly string[]).includes(value)) {
    invalid(field, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  }
  if (!allowed.includes(value as Curve)) invalid(field, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value as Curve;
}

function label(value: unknown, field: string, dflt: string): string {
  if (value === undefined) return dflt;
  return text(value, field, MAX_LABEL_LENGTH);
}

function keyReference(value: unknown, field: string): string {
  const s = text(value, field, 2000);
  if (!s.startsWith('pkcs11:') && !s.startsWith('file:')) invalid(field, `must be a pkcs11: URI or a file:PATH#LABEL reference`);
  if (/[?&;]pin-value=/.test(s)) invalid(field, `must not contain pin-value (secrets never go in the plan; use pin-source or --admin-pin-env)`);
  if (s.startsWith('file:') && !s.includes('#')) invalid(field, `must name a key: file:PATH#LABEL`);
  return s;
}

/**
 * Parses and checks a plan file's bytes.
 * @throws TypeError if `bytes` is not a Uint8Array.
 * @throws CeremonyError ERR_CEREMONY_PLAN_INVALID naming the field (`Ceremony.Threshold` …) for
 *   malformed JSON, a missing, unknown or invalid field.
 */
export function parsePlan(bytes: Uint8Array): CeremonyPlan {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('"bytes" expected Uint8Array');
  let doc: unknown;
  try {
    doc = parseJsonStrict(fromUtf8(bytes));
  } catch (e) {
    throw new CeremonyError(ErrorCode.CEREMONY_PLAN, `plan: not strict JSON (${(e as Error).message})`, { cause: e });
  }
  const top = obj(doc, '(plan)');
  onlyMembers(top, ['Ceremony'], '(plan)');
  const c = obj(top['Ceremony'], 'Ceremony');
  onlyMembers(c, TOP_MEMBERS, 'Ceremony');

  const name = text(c['Name'], 'Ceremony.Name');
  const token = text(c['Token'], 'Ceremony.Token', 2000);
  if (!token.startsWith('pkcs11:') && !token.startsWith('file:')) invalid('Ceremony.Token', `must be a pkcs11: token URI or a file:PATH software key store`);
  if (/[?&;]pin-value=/.test(token)) invalid('Ceremony.Token', `must not contain pin-value (secrets never go in the plan)`);
  if (token.startsWith('file:') && token.includes('#')) invalid('Ceremony.Token', `must name a key store (file:PATH), not a key`);
  if (token.startsWith('pkcs11:') && /[;:]object=/.test(token)) invalid('Ceremony.Token', `must name a token, not an object (remove object=)`);

  if (c['KeyOrigin'] === undefined) invalid('Ceremony.KeyOrigin', `is required (one of ${KEY_ORIGINS.join(', ')})`);
  if (typeof c['KeyOrigin'] !== 'string' || !(KEY_ORIGINS as readonly string[]).includes(c['KeyOrigin'])) {
    invalid('Ceremony.KeyOrigin', `must be one of ${KEY_ORIGINS.join(', ')}, got ${JSON.stringify(c['KeyOrigin'])}`);
  }
  const keyOrigin = c['KeyOrigin'] as KeyOrigin;
  if (keyOrigin !== 'generate-on-token' && token.startsWith('file:') && keyOrigin === 'generate-on-token-wrapped') {
    invalid('Ceremony.KeyOrigin', `generate-on-token-wrapped needs a PKCS#11 token (the software store cannot wrap)`);
  }

  const alg = c['Algorithms'] === undefined ? {} : obj(c['Algorithms'], 'Ceremony.Algorithms');
  onlyMembers(alg, ['Signature', 'Escrow'], 'Ceremony.Algorithms');
  const algorithms = {
    signature: curve(alg['Signature'], 'Ceremony.Algorithms.Signature', SIGNATURE_CURVES, DEFAULT_ALGORITHMS.signature),
    escrow: curve(alg['Escrow'], 'Ceremony.Algorithms.Escrow', ESCROW_CURVES, DEFAULT_ALGORITHMS.escrow),
  };

  const lab = c['Labels'] === undefined ? {} : obj(c['Labels'], 'Ceremony.Labels');
  onlyMembers(lab, ['Signature', 'Escrow'], 'Ceremony.Labels');
  const labels = {
    signature: label(lab['Signature'], 'Ceremony.Labels.Signature', DEFAULT_LABELS.signature),
    escrow: label(lab['Escrow'], 'Ceremony.Labels.Escrow', DEFAULT_LABELS.escrow),
  };
  if (labels.signature === labels.escrow) invalid('Ceremony.Labels.Escrow', `must differ from Ceremony.Labels.Signature`);

  if (!Array.isArray(c['Administrators'])) invalid('Ceremony.Administrators', `is required: an array of at least one administrator`);
  const adminList = c['Administrators'] as unknown[];
  if (adminList.length === 0) invalid('Ceremony.Administrators', `must list at least one administrator`);
  const seenAdmins = new Set<string>();
  const administrators = adminList.map((a, i): PlanAdministrator => {
    const f = `Ceremony.Administrators[${i}]`;
    const o = obj(a, f);
    onlyMembers(o, ['Name', 'Key', 'PublicKey'], f);
    const adminName = text(o['Name'], `${f}.Name`);
    if (seenAdmins.has(adminName)) invalid(`${f}.Name`, `repeats the administrator name ${JSON.stringify(adminName)}`);
    seenAdmins.add(adminName);
    if ((o['Key'] === undefined) === (o['PublicKey'] === undefined)) invalid(f, `must have exactly one of Key (a key reference) or PublicKey (a JWK)`);
    if (o['Key'] !== undefined) return { name: adminName, key: keyReference(o['Key'], `${f}.Key`) };
    const jwk = obj(o['PublicKey'], `${f}.PublicKey`);
    if ('d' in jwk) invalid(`${f}.PublicKey`, `must be a public key (it has a private member "d")`);
    let crv: Curve;
    try {
      crv = publicKeyFromJwk(jwk).curve;
    } catch (e) {
      return invalid(`${f}.PublicKey`, `is not a valid public key JWK: ${(e as Error).message}`);
    }
    if (!SIGNATURE_CURVES.includes(crv)) invalid(`${f}.PublicKey`, `must be a signature key (${SIGNATURE_CURVES.join(', ')}), got ${crv}`);
    return { name: adminName, publicKey: jwk as unknown as PublicJwk };
  });

  const escrowed = keyOrigin !== 'generate-on-token';
  let custodians: string[] = [];
  let threshold = 0;
  if (escrowed || c['Custodians'] !== undefined || c['Threshold'] !== undefined) {
    if (c['Custodians'] === undefined) invalid('Ceremony.Custodians', `is required for ${keyOrigin}: the names of the n share holders`);
    custodians = names(c['Custodians'], 'Ceremony.Custodians', { min: 2, max: 15, unique: true });
    if (c['Threshold'] === undefined) invalid('Ceremony.Threshold', `is required for ${keyOrigin}: k, the shares needed to recover`);
    const t = c['Threshold'];
    if (typeof t !== 'number' || !Number.isSafeInteger(t)) invalid('Ceremony.Threshold', `must be an integer, got ${JSON.stringify(t)}`);
    threshold = t as number;
    if (threshold < 2 || threshold > custodians.length) {
      invalid('Ceremony.Threshold', `must be from 2 to the number of custodians (${custodians.length}), got ${threshold}`);
    }
  }
  const witnesses = c['Witnesses'] === undefined ? [] : names(c['Witnesses'], 'Ceremony.Witnesses', { min: 0, max: 64, unique: true });
  const profileNames = c['Names'] === undefined ? [] : names(c['Names'], 'Ceremony.Names', { min: 0, max: 64, unique: true });

  return {
    name,
    token,
    keyOrigin,
    algorithms,
    labels,
    administrators,
    custodians,
    threshold,
    witnesses,
    names: profileNames,
    bytes: new Uint8Array(bytes),
    fingerprint: planFingerprint(bytes),
  };
}

/** The plan fingerprint recorded in the transcript: udfDigest of the plan bytes (application/json). */
export function planFingerprint(bytes: Uint8Array): string {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('"bytes" expected Uint8Array');
  return udfDigest(bytes, { contentType: 'application/json' });
}

/** The token URI as recorded: without pin-source / pin-value. */
export function redactTokenUri(uri: string): string {
  return uri.replace(/([?&])pin-(source|value)=[^&]*&?/g, '$1').replace(/[?&]$/, '');
}
