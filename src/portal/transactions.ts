/**
 * The Mesh portal's transaction handlers (docs/portal.md "Wire format"), pure of HTTP:
 * `handle(name, request, ctx) → {status, body}`.
 *
 * The portal trusts nothing it is sent. Every signature and every §5.4 rule is checked on the way in
 * against what the account holds: a Personal Profile against the account's stored Master, an Application
 * Profile against the account's current Personal, a new Master only under the same master key; device
 * connection requests must be signed by the device key they name; pending lists and decisions must be
 * signed by an administration key of the account's current Master. Updates must supersede (Sequence
 * greater than stored; the storage compare-and-swap makes exactly one of concurrent equal updates win).
 *
 * Every state change runs in one storage transaction with its notary log entry, its quota event and its
 * RequestId record, so a retry with the same RequestId returns the stored response without a second
 * effect, and a crash leaves either all of it or none.
 *
 * Status mapping: success → HTTP 200 with `{"<Name>Response": {"Status": 201, "StatusDescription": "OK", …}}`;
 * refusals → `{"Error": {Status, StatusDescription, Code}}` with 400 malformed, 401 signature does not
 * verify, 403 signer not authorised, 404 not found, 409 conflict, 429 quota, 500 internal.
 */
import { randomBytes } from 'node:crypto';
import { b64u, fromB64u, fromUtf8, utf8 } from '../core/bytes.js';
import { ErrorCode, JoseError, MeshkitError, ProfileError } from '../core/errors.js';
import { parseJsonStrict, verifyJwsSync, type JwsGeneral } from '../core/jose.js';
import { publicKeyFromJwk, publicKeyToSpki } from '../core/keys.js';
import {
  ProfileType,
  readProfile,
  verifyProfile,
  type DeviceProfile,
  type MasterProfile,
  type ProfileTypeName,
  type PublicKeyEntry,
} from '../core/profiles.js';
import type { Signer } from '../core/signer.js';
import { ContentType, UdfType, connectionWitness, udfDigest, udfDigestBinary, udfParse } from '../core/udf.js';
import { LogAppendConflict, MAX_LOG_ENTRIES, type Notary, type NotaryBody } from './notary.js';
import { StorageConflict, type PortalStorage, type PortalTx, type ProfileRow } from './storage.js';

/** Protocol version reported by Hello. */
export const PORTAL_PROTOCOL_VERSION = 'meshkit-portal/1';

/** The transactions the portal answers. */
export const TRANSACTIONS = [
  'Hello', 'CreateAccount', 'Publish', 'Get', 'ConnectStart', 'ConnectPending', 'ConnectComplete', 'ConnectStatus',
  'EscrowPut', 'EscrowGet', 'LogHead', 'LogProof', 'LogEntries', 'FederationHeads',
] as const;
export type TransactionName = (typeof TRANSACTIONS)[number];

/** The wire error codes (`Error.Code`), one per HTTP status the portal answers with. */
export const PortalErrorCode = {
  BAD_REQUEST: 'ERR_PORTAL_BAD_REQUEST',
  SIGNATURE: 'ERR_PORTAL_SIGNATURE',
  UNAUTHORISED: 'ERR_PORTAL_UNAUTHORISED',
  NOT_FOUND: 'ERR_PORTAL_NOT_FOUND',
  METHOD: 'ERR_PORTAL_METHOD',
  CONFLICT: 'ERR_PORTAL_CONFLICT',
  TOO_LARGE: 'ERR_PORTAL_TOO_LARGE',
  MEDIA_TYPE: 'ERR_PORTAL_MEDIA_TYPE',
  QUOTA: 'ERR_PORTAL_QUOTA',
  TIMEOUT: 'ERR_PORTAL_TIMEOUT',
  INTERNAL: 'ERR_PORTAL_INTERNAL',
  UNAVAILABLE: 'ERR_PORTAL_UNAVAILABLE',
} as const;
export type PortalErrorCodeValue = (typeof PortalErrorCode)[keyof typeof PortalErrorCode];

const CODE_BY_STATUS: Record<number, PortalErrorCodeValue> = {
  400: PortalErrorCode.BAD_REQUEST, 401: PortalErrorCode.SIGNATURE, 403: PortalErrorCode.UNAUTHORISED,
  404: PortalErrorCode.NOT_FOUND, 405: PortalErrorCode.METHOD, 408: PortalErrorCode.TIMEOUT,
  409: PortalErrorCode.CONFLICT, 413: PortalErrorCode.TOO_LARGE, 415: PortalErrorCode.MEDIA_TYPE,
  429: PortalErrorCode.QUOTA, 500: PortalErrorCode.INTERNAL, 503: PortalErrorCode.UNAVAILABLE,
};

/** A refusal with its HTTP status; the message is one line and goes to the client. */
export class TransactionError extends Error {
  readonly status: number;
  readonly code: PortalErrorCodeValue;
  constructor(status: number, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TransactionError';
    this.status = status;
    this.code = CODE_BY_STATUS[status] ?? PortalErrorCode.INTERNAL;
  }
}

/** Per-hour quotas (0 = unlimited). */
export interface PortalQuotas {
  /** State changes (Publish, ConnectStart, ConnectComplete) per account per hour. */
  updatesPerHour: number;
  /** Accounts created per client address per hour. */
  accountsPerHour: number;
}

/** Default quotas. */
export const DEFAULT_QUOTAS: Readonly<PortalQuotas> = { updatesPerHour: 1000, accountsPerHour: 100 };

/** How long a PendingQuery's Time may differ from the portal's clock. */
export const PENDING_QUERY_SKEW_MS = 5 * 60 * 1000;

/** What a handler needs; side effects come in only through here. */
export interface TransactionContext {
  storage: PortalStorage;
  /** The portal key (signs log heads; its UDF is the portal's identity). */
  portalKey: Signer;
  notary: Notary;
  now: () => Date;
  /** The client's address (for the account-creation quota). */
  clientAddress: string;
  quotas: PortalQuotas;
  /** FederationHeads handler (src/portal/federation.ts); without it the portal only reports its own head. */
  federation?: (request: Record<string, unknown>, ctx: TransactionContext) => Promise<Record<string, unknown>>;
}

/** A handler's answer: the HTTP status and the JSON body. */
export interface TransactionResult {
  status: number;
  body: Record<string, unknown>;
}

type Json = Record<string, unknown>;

/** The error body of docs/portal.md. */
export function errorBody(status: number, message: string, code: string = CODE_BY_STATUS[status] ?? PortalErrorCode.INTERNAL): Json {
  const line = message.split('\n')[0] ?? '';
  return { Error: { Status: status, StatusDescription: line.length > 500 ? `${line.slice(0, 497)}...` : line, Code: code } };
}

function success(name: string, members: Json): Json {
  return { [`${name}Response`]: { Status: 201, StatusDescription: 'OK', ...members } };
}

function fail(status: number, message: string, cause?: unknown): never {
  throw new TransactionError(status, message, cause === undefined ? undefined : { cause });
}

/**
 * Maps any error to a portal refusal: TransactionError as is, profile / JOSE / key / UDF errors by their
 * meaning, StorageConflict → 409; anything else → 500 (message not disclosed).
 */
export function toTransactionError(e: unknown): TransactionError {
  if (e instanceof TransactionError) return e;
  if (e instanceof StorageConflict) return new TransactionError(409, e.message, { cause: e });
  if (e instanceof ProfileError) {
    const status = {
      [ErrorCode.PROFILE_MALFORMED]: 400, [ErrorCode.PROFILE_SIGNATURE]: 401, [ErrorCode.PROFILE_UNAUTHORISED]: 403,
      [ErrorCode.PROFILE_SUPERSEDED]: 409, [ErrorCode.PROFILE_NOT_CONNECTED]: 403, [ErrorCode.PROFILE_MISMATCH]: 403,
    }[e.code as string] ?? 400;
    return new TransactionError(status, e.message, { cause: e });
  }
  if (e instanceof JoseError) return new TransactionError(e.code === ErrorCode.JWS_SIGNATURE ? 401 : 400, e.message, { cause: e });
  if (e instanceof MeshkitError) return new TransactionError(400, e.message, { cause: e });
  return new TransactionError(500, 'internal error', { cause: e });
}

// ---------------------------------------------------------------------------------------------
// Input checks (all 400, naming the member)
// ---------------------------------------------------------------------------------------------

function member(req: Json, name: string): unknown {
  return Object.prototype.hasOwnProperty.call(req, name) ? req[name] : undefined;
}

function reqString(req: Json, name: string, max = 4096): string {
  const v = member(req, name);
  if (typeof v !== 'string' || v.length === 0) fail(400, `"${name}" expected a non-empty string`);
  if (v.length > max) fail(400, `"${name}" is longer than ${max} characters`);
  return v;
}

function optString(req: Json, name: string): string | undefined {
  return member(req, name) === undefined ? undefined : reqString(req, name);
}

function reqObject(req: Json, name: string): Json {
  const v = member(req, name);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(400, `"${name}" expected an object`);
  return v as Json;
}

function reqInt(req: Json, name: string, min: number, max: number): number {
  const v = member(req, name);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) fail(400, `"${name}" expected an integer in [${min}, ${max}]`);
  return v;
}

const ACCOUNT = /^[a-z0-9][a-z0-9._+-]{0,63}@[a-z0-9](?:[a-z0-9.-]{0,189}[a-z0-9])?$/;

/** Checks and normalizes (lower case) an account name `user@portal`. */
function accountName(req: Json, name = 'Account'): string {
  const raw = reqString(req, name, 256).toLowerCase();
  if (!ACCOUNT.test(raw)) fail(400, `"${name}" expected user@portal (letters, digits, . _ + -), got ${JSON.stringify(raw.slice(0, 80))}`);
  return raw;
}

function udfString(value: string, name: string, type?: number): string {
  let parsed: { type: number };
  try {
    parsed = udfParse(value);
  } catch (e) {
    return fail(400, `"${name}" is not a valid UDF: ${(e as Error).message}`, e);
  }
  if (type !== undefined && parsed.type !== type) fail(400, `"${name}" expected a UDF of type ${type}, got type ${parsed.type}`);
  return value;
}

function requestId(req: Json): string {
  return udfString(reqString(req, 'RequestId', 256), 'RequestId', UdfType.Nonce);
}

function jwsObject(req: Json, name: string): JwsGeneral {
  const v = reqObject(req, name);
  if (typeof v.payload !== 'string' || !Array.isArray(v.signatures) || v.signatures.length === 0) {
    fail(400, `"${name}" expected a JWS in General JSON serialization`);
  }
  return v as unknown as JwsGeneral;
}

/** The JWS payload as a `{"<Type>": {…}}` object (NOT verified). */
function jwsPayload(jws: JwsGeneral, name: string, type: string): Json {
  let value: unknown;
  try {
    value = parseJsonStrict(fromUtf8(fromB64u(jws.payload, `${name}.payload`)));
  } catch (e) {
    return fail(400, `"${name}" payload is not base64url strict JSON: ${(e as Error).message}`, e);
  }
  const inner = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json)[type] : undefined;
  if (Object.keys(value as object).length !== 1 || typeof inner !== 'object' || inner === null || Array.isArray(inner)) {
    fail(400, `"${name}" payload must be {"${type}": {…}}`);
  }
  return inner as Json;
}

/** The `kid` of the single signature of a JWS (NOT verified). */
function singleKid(jws: JwsGeneral, name: string): string {
  if (jws.signatures.length !== 1) fail(400, `"${name}" must carry exactly one signature, has ${jws.signatures.length}`);
  const sig = jws.signatures[0] as { protected?: unknown };
  let header: unknown;
  try {
    header = parseJsonStrict(fromUtf8(fromB64u(String(sig.protected), `${name}.protected`)));
  } catch (e) {
    return fail(400, `"${name}" protected header is not base64url strict JSON`, e);
  }
  const kid = typeof header === 'object' && header !== null ? (header as Json).kid : undefined;
  if (typeof kid !== 'string') fail(400, `"${name}" has no protected "kid"`);
  return kid;
}

/** Verifies `jws` under `key` (which the kid must name); 401 when the signature does not hold. */
function verifyUnder(jws: JwsGeneral, key: PublicKeyEntry, name: string): void {
  const pk = publicKeyFromJwk(key.PublicParameters, { check: 'encoding' });
  try {
    verifyJwsSync(jws, (kid) => (kid === key.UDF ? pk : undefined));
  } catch (e) {
    if (e instanceof JoseError && e.code === ErrorCode.JWS_SIGNATURE) fail(401, `"${name}": the signature by ${key.UDF} does not verify (forged or altered)`, e);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Storage helpers
// ---------------------------------------------------------------------------------------------

async function requireAccount(tx: PortalTx, name: string): Promise<{ name: string; masterIdentifier: string }> {
  const account = await tx.getAccount(name);
  if (account === undefined) fail(404, `account ${name} does not exist`);
  return account;
}

async function requireProfile(tx: PortalTx, identifier: string, type: ProfileTypeName, what: string): Promise<ProfileRow> {
  const row = await tx.getProfile(identifier, type);
  if (row === undefined) fail(404, `${what} ${identifier} is not stored`);
  return row;
}

async function storedMaster(tx: PortalTx, account: { name: string; masterIdentifier: string }): Promise<{ row: ProfileRow; profile: MasterProfile }> {
  const row = await requireProfile(tx, account.masterIdentifier, ProfileType.Master, `the Master Profile of ${account.name}`);
  return { row, profile: readProfile(row.signed, ProfileType.Master).profile };
}

async function checkQuota(tx: PortalTx, kind: 'update' | 'account', key: string, limit: number, now: Date): Promise<void> {
  if (limit === 0) return;
  const since = new Date(now.getTime() - 3600_000);
  const used = await tx.countEvents(kind, key, since);
  if (used >= limit) {
    fail(429, kind === 'update'
      ? `quota exceeded: account ${key} made ${used} updates in the last hour (limit ${limit})`
      : `quota exceeded: ${used} accounts created from ${key} in the last hour (limit ${limit})`);
  }
  await tx.addEvent(kind, key, now);
}

function staleMessage(type: string, identifier: string, stored: number, given: number): string {
  return given === stored
    ? `${type} ${identifier}: Sequence ${given} is already stored (stored Sequence ${stored}): a replay, or a concurrent update won`
    : `${type} ${identifier}: Sequence ${given} is stale (stored Sequence ${stored}); an update must carry a greater Sequence`;
}

/** Writes a profile that must supersede the stored one (CAS on the stored Sequence). */
async function putSuperseding(tx: PortalTx, row: ProfileRow): Promise<void> {
  const stored = await tx.getProfile(row.identifier, row.type);
  if (stored !== undefined && row.sequence <= stored.sequence) fail(409, staleMessage(row.type, row.identifier, stored.sequence, row.sequence));
  try {
    await tx.putProfile(row, stored?.sequence ?? null);
  } catch (e) {
    if (e instanceof StorageConflict) fail(409, `${row.type} ${row.identifier}: Sequence ${row.sequence} lost to a concurrent update (${e.message})`, e);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// State changes: idempotency + notary + one transaction
// ---------------------------------------------------------------------------------------------

const LOG_APPEND_ATTEMPTS = 10;

interface Effect {
  response: Json;
  /** The log body members (besides RequestId and Fingerprint); undefined = no log entry (an idempotent no-op). */
  log?: { Account?: string; Identifier?: string };
}

async function stateChange(
  name: TransactionName,
  req: Json,
  ctx: TransactionContext,
  fingerprint: string,
  work: (tx: PortalTx, now: Date) => Promise<Effect>,
): Promise<TransactionResult> {
  const rid = requestId(req);
  const run = async (): Promise<{ result: TransactionResult; logIndex?: number }> => ctx.storage.transaction(async (tx) => {
    const prior = await tx.getRequest(rid);
    if (prior !== undefined) {
      if (prior.bodyFingerprint !== fingerprint) fail(409, `RequestId ${rid} was already used with a different request body`);
      return { result: { status: prior.status, body: parseJsonStrict(prior.response) as Json } };
    }
    const now = ctx.now();
    const effect = await work(tx, now);
    let logIndex: number | undefined;
    if (effect.log !== undefined) {
      const body: NotaryBody = { RequestId: rid, ...effect.log, Fingerprint: fingerprint };
      const appended = await ctx.notary.append(tx, name, body);
      logIndex = appended.index;
      effect.response.LogIndex = logIndex;
    }
    const body = success(name, effect.response);
    await tx.putRequest(rid, fingerprint, 200, JSON.stringify(body));
    return logIndex === undefined ? { result: { status: 200, body } } : { result: { status: 200, body }, logIndex };
  });
  let out: { result: TransactionResult; logIndex?: number };
  try {
    // A log index taken by a concurrent writer (several processes on one database) rolls back the whole
    // transaction; running it again is safe.
    for (let attempt = 1; ; attempt++) {
      try {
        out = await run();
        break;
      } catch (e) {
        if (!(e instanceof LogAppendConflict) || attempt >= LOG_APPEND_ATTEMPTS) throw e;
      }
    }
  } catch (e) {
    // Two concurrent requests with the same RequestId: the loser's putRequest conflicts; answer as a retry.
    if (e instanceof StorageConflict) {
      const prior = await ctx.storage.transaction((tx) => tx.getRequest(rid));
      if (prior !== undefined && prior.bodyFingerprint === fingerprint) return { status: prior.status, body: parseJsonStrict(prior.response) as Json };
    }
    throw e;
  }
  if (out.logIndex !== undefined) ctx.notary.committed(out.logIndex);
  return out.result;
}

// ---------------------------------------------------------------------------------------------
// The transactions
// ---------------------------------------------------------------------------------------------

async function latestHead(ctx: TransactionContext): Promise<JwsGeneral | null> {
  const head = await ctx.storage.transaction((tx) => tx.latestSignedHead());
  return head === undefined ? null : (parseJsonStrict(head.jws) as JwsGeneral);
}

async function hello(_req: Json, ctx: TransactionContext): Promise<TransactionResult> {
  return { status: 200, body: success('Hello', { Version: PORTAL_PROTOCOL_VERSION, Portal: ctx.portalKey.keyId, LogHead: await latestHead(ctx) }) };
}

async function createAccount(req: Json, ctx: TransactionContext, fingerprint: string): Promise<TransactionResult> {
  const name = accountName(req);
  const signed = jwsObject(req, 'Profile');
  return stateChange('CreateAccount', req, ctx, fingerprint, async (tx, now) => {
    const verified = await verifyProfile(signed, { now });
    if (verified.type !== ProfileType.Personal) fail(400, `"Profile" must be a signed PersonalProfile, got a ${verified.type}`);
    const master = verified.master;
    if (master === undefined) fail(400, '"Profile" carries no verified Master Profile');
    if ((await tx.getAccount(name)) !== undefined) fail(409, `account ${name} already exists`);
    if ((await tx.getProfile(master.identifier, ProfileType.Master)) !== undefined) {
      fail(409, `Master Profile ${master.identifier} already belongs to an account of this portal`);
    }
    await checkQuota(tx, 'account', ctx.clientAddress, ctx.quotas.accountsPerHour, now);
    const updated = now.toISOString();
    try {
      await tx.createAccount({ name, masterIdentifier: master.identifier, created: updated });
    } catch (e) {
      if (e instanceof StorageConflict) fail(409, `account ${name} already exists`, e);
      throw e;
    }
    await tx.putProfile({ identifier: master.identifier, type: ProfileType.Master, sequence: master.sequence, account: name, signed: JSON.stringify(master.signed), updated }, null);
    await tx.putProfile({ identifier: verified.identifier, type: ProfileType.Personal, sequence: verified.sequence, account: name, signed: JSON.stringify(signed), updated }, null);
    return { response: { Account: name, Identifier: master.identifier }, log: { Account: name, Identifier: master.identifier } };
  });
}

async function publish(req: Json, ctx: TransactionContext, fingerprint: string): Promise<TransactionResult> {
  const name = accountName(req);
  const entry = jwsObject(req, 'Entry');
  return stateChange('Publish', req, ctx, fingerprint, async (tx, now) => {
    const account = await requireAccount(tx, name);
    const type = readProfile(entry).type;
    const master = await storedMaster(tx, account);
    let identifier: string;
    let sequence: number;
    switch (type) {
      case ProfileType.Master: {
        const v = await verifyProfile(entry, { now });
        if (v.identifier !== account.masterIdentifier || v.signerKeyId !== master.profile.MasterSignatureKey.UDF) {
          fail(403, `Master Profile ${v.identifier} is not signed by the master key ${master.profile.MasterSignatureKey.UDF} of account ${name}`);
        }
        ({ identifier, sequence } = v);
        break;
      }
      case ProfileType.Personal: {
        const v = await verifyProfile(entry, { master: master.row.signed, now });
        if (v.identifier !== account.masterIdentifier) fail(403, `Personal Profile ${v.identifier} does not belong to account ${name}`);
        if (v.master !== undefined && v.master.sequence > master.row.sequence) {
          fail(409, `Personal Profile embeds Master Profile Sequence ${v.master.sequence}, newer than the stored Sequence ${master.row.sequence}: publish the Master Profile first`);
        }
        ({ identifier, sequence } = v);
        break;
      }
      case ProfileType.Device: {
        const v = await verifyProfile(entry, { now });
        const stored = await tx.getProfile(v.identifier, ProfileType.Device);
        if (stored !== undefined && stored.account !== null && stored.account !== name) {
          fail(403, `Device Profile ${v.identifier} is published under another account`);
        }
        ({ identifier, sequence } = v);
        break;
      }
      case ProfileType.Application: {
        const personal = await requireProfile(tx, account.masterIdentifier, ProfileType.Personal, `the Personal Profile of ${name}`);
        const v = await verifyProfile(entry, { personal: personal.signed, master: master.row.signed, now });
        ({ identifier, sequence } = v);
        break;
      }
    }
    await checkQuota(tx, 'update', name, ctx.quotas.updatesPerHour, now);
    await putSuperseding(tx, { identifier, type, sequence, account: name, signed: JSON.stringify(entry), updated: now.toISOString() });
    return { response: { Identifier: identifier, Type: type, Sequence: sequence }, log: { Account: name, Identifier: identifier } };
  });
}

const TYPES: readonly string[] = Object.values(ProfileType);

async function get(req: Json, ctx: TransactionContext): Promise<TransactionResult> {
  const identifier = optString(req, 'Identifier');
  const account = member(req, 'Account') === undefined ? undefined : accountName(req);
  const type = optString(req, 'Type');
  if (identifier === undefined && account === undefined) fail(400, 'Get needs "Identifier" and/or "Account"');
  if (identifier !== undefined) udfString(identifier, 'Identifier');
  if (type !== undefined && !TYPES.includes(type)) fail(400, `"Type" expected one of ${TYPES.join(', ')}`);
  const rows = await ctx.storage.transaction(async (tx) => {
    if (account !== undefined) await requireAccount(tx, account);
    const filter: { account?: string; identifier?: string; type?: string } = {};
    if (account !== undefined) filter.account = account;
    if (identifier !== undefined) filter.identifier = identifier;
    if (type !== undefined) filter.type = type;
    return tx.listProfiles(filter);
  });
  if (rows.length === 0) fail(404, `no profile matches ${JSON.stringify({ Identifier: identifier, Account: account, Type: type })}`);
  return { status: 200, body: success('Get', { Entries: rows.map((r) => parseJsonStrict(r.signed)) }) };
}

function keyUdf512(entry: PublicKeyEntry): Uint8Array {
  return udfDigestBinary(publicKeyToSpki(publicKeyFromJwk(entry.PublicParameters, { check: 'encoding' })), { contentType: ContentType.PkixKeyInfo });
}

async function connectStart(req: Json, ctx: TransactionContext, fingerprint: string): Promise<TransactionResult> {
  const name = accountName(req);
  const signedRequest = jwsObject(req, 'SignedRequest');
  const payload = jwsPayload(signedRequest, 'SignedRequest', 'ConnectionRequest');
  const payloadAccount = typeof payload.Account === 'string' ? payload.Account.toLowerCase() : undefined;
  if (payloadAccount !== name) fail(400, `ConnectionRequest.Account ${JSON.stringify(payload.Account)} is not the request's Account ${name}`);
  const parent = reqString(payload, 'ParentUDF', 256);
  let clientNonce: Uint8Array;
  try {
    clientNonce = fromB64u(reqString(payload, 'ClientNonce', 64), 'ClientNonce');
  } catch (e) {
    if (e instanceof TransactionError) throw e;
    return fail(400, '"ClientNonce" is not base64url', e);
  }
  if (clientNonce.length !== 16) fail(400, `"ClientNonce" expected 16 bytes, got ${clientNonce.length}`);
  const device = reqObject(payload, 'Device');
  const kid = singleKid(signedRequest, 'SignedRequest');
  return stateChange('ConnectStart', req, ctx, fingerprint, async (tx, now) => {
    const account = await requireAccount(tx, name);
    if (parent !== account.masterIdentifier) fail(400, `ConnectionRequest.ParentUDF ${parent} is not the master ${account.masterIdentifier} of ${name}`);
    const v = await verifyProfile(device, { now });
    if (v.type !== ProfileType.Device) fail(400, `ConnectionRequest.Device must be a signed DeviceProfile, got a ${v.type}`);
    const deviceKey = (v.profile as DeviceProfile).DeviceSignatureKey;
    if (kid !== deviceKey.UDF) fail(403, `SignedRequest is signed by ${kid}, not by the signature key ${deviceKey.UDF} of the device it names`);
    verifyUnder(signedRequest, deviceKey, 'SignedRequest');
    const master = await storedMaster(tx, account);
    const requestUdf = udfDigest(utf8(JSON.stringify(signedRequest)));
    if ((await tx.getConnection(requestUdf)) !== undefined) fail(409, `connection request ${requestUdf} was already received`);
    await checkQuota(tx, 'update', name, ctx.quotas.updatesPerHour, now);
    const serverNonce = new Uint8Array(randomBytes(16));
    const witness = connectionWitness(keyUdf512(master.profile.MasterSignatureKey), serverNonce, keyUdf512(deviceKey), clientNonce);
    await tx.putConnection({
      requestUdf, account: name, deviceUdf: v.identifier, signedRequest: JSON.stringify(signedRequest),
      serverNonce: b64u(serverNonce), witness, state: 'Pending', result: null, received: now.toISOString(),
    });
    return { response: { RequestUDF: requestUdf, ServerNonce: b64u(serverNonce), Witness: witness }, log: { Account: name, Identifier: requestUdf } };
  });
}

/** Verifies an administration request: signed by an administration key of the account's current Master. */
function verifyAdmin(jws: JwsGeneral, name: string, master: MasterProfile, type: string): Json {
  const payload = jwsPayload(jws, name, type);
  const kid = singleKid(jws, name);
  const key = master.OnlineSignatureKeys.find((k) => k.UDF === kid);
  if (key === undefined) {
    fail(403, `"${name}" is signed by ${kid}, which is not an administration key of Master Profile ${master.Identifier} (Sequence ${master.Sequence})`);
  }
  verifyUnder(jws, key, name);
  return payload;
}

async function connectPending(req: Json, ctx: TransactionContext): Promise<TransactionResult> {
  const name = accountName(req);
  const adminRequest = jwsObject(req, 'AdminRequest');
  const rows = await ctx.storage.transaction(async (tx) => {
    const account = await requireAccount(tx, name);
    const master = await storedMaster(tx, account);
    const query = verifyAdmin(adminRequest, 'AdminRequest', master.profile, 'PendingQuery');
    if (typeof query.Account !== 'string' || query.Account.toLowerCase() !== name) fail(400, `PendingQuery.Account is not ${name}`);
    const time = typeof query.Time === 'string' ? Date.parse(query.Time) : NaN;
    if (Number.isNaN(time)) fail(400, 'PendingQuery.Time expected an ISO 8601 time');
    if (Math.abs(time - ctx.now().getTime()) > PENDING_QUERY_SKEW_MS) {
      fail(401, `PendingQuery.Time ${String(query.Time)} is more than 5 minutes from the portal's time ${ctx.now().toISOString()}`);
    }
    return tx.listConnections(name, 'Pending');
  });
  const pending = rows.map((r) => ({
    RequestUDF: r.requestUdf, SignedRequest: parseJsonStrict(r.signedRequest), ServerNonce: r.serverNonce, Witness: r.witness, Received: r.received,
  }));
  return { status: 200, body: success('ConnectPending', { Pending: pending }) };
}

async function connectComplete(req: Json, ctx: TransactionContext, fingerprint: string): Promise<TransactionResult> {
  const name = accountName(req);
  const resultJws = jwsObject(req, 'Result');
  return stateChange('ConnectComplete', req, ctx, fingerprint, async (tx, now) => {
    const account = await requireAccount(tx, name);
    const master = await storedMaster(tx, account);
    const result = verifyAdmin(resultJws, 'Result', master.profile, 'ConnectionResult');
    const requestUdf = reqString(result, 'RequestUDF', 256);
    const decision = result.Result;
    if (decision !== 'Accepted' && decision !== 'Refused') fail(400, 'ConnectionResult.Result expected "Accepted" or "Refused"');
    const witness = reqString(result, 'Witness', 64);
    const row = await tx.getConnection(requestUdf);
    if (row === undefined || row.account !== name) fail(404, `connection request ${requestUdf} is not pending for ${name}`);
    if (row.state !== 'Pending') fail(409, `connection request ${requestUdf} is already ${row.state}`);
    if (witness !== row.witness) fail(409, `the witness ${witness} does not match the witness of connection request ${requestUdf}`);
    await checkQuota(tx, 'update', name, ctx.quotas.updatesPerHour, now);
    await tx.putConnection({ ...row, state: decision, result: JSON.stringify(resultJws) });
    return { response: { RequestUDF: requestUdf, Result: decision }, log: { Account: name, Identifier: requestUdf } };
  });
}

async function connectStatus(req: Json, ctx: TransactionContext): Promise<TransactionResult> {
  const name = accountName(req);
  const requestUdf = reqString(req, 'RequestUDF', 256);
  const row = await ctx.storage.transaction((tx) => tx.getConnection(requestUdf));
  if (row === undefined || row.account !== name) fail(404, `connection request ${requestUdf} is not known for ${name}`);
  const result = row.state === 'Pending' || row.result === null ? 'Pending' : parseJsonStrict(row.result);
  return { status: 200, body: success('ConnectStatus', { RequestUDF: requestUdf, State: row.state, Result: result }) };
}

async function escrowPut(req: Json, ctx: TransactionContext, fingerprint: string): Promise<TransactionResult> {
  const entry = reqObject(req, 'Entry');
  const keys = Object.keys(entry);
  const inner = entry.OfflineEscrowEntry;
  if (keys.length !== 1 || typeof inner !== 'object' || inner === null || Array.isArray(inner)) fail(400, '"Entry" expected {"OfflineEscrowEntry": {Identifier, EncryptedData}}');
  const e = inner as Json;
  const id = udfString(reqString(e, 'Identifier', 256), 'Entry.OfflineEscrowEntry.Identifier');
  const data = reqObject(e, 'EncryptedData');
  if (Object.keys(e).length !== 2) fail(400, '"Entry.OfflineEscrowEntry" expected exactly Identifier and EncryptedData');
  let header: unknown;
  try {
    header = parseJsonStrict(fromUtf8(fromB64u(String(data.protected), 'EncryptedData.protected')));
  } catch (err) {
    return fail(400, '"EncryptedData" has no base64url strict-JSON protected header', err);
  }
  if (typeof header !== 'object' || header === null || (header as Json).kid !== id) {
    fail(400, `the escrow entry's Identifier ${id} is not the kid of its EncryptedData`);
  }
  const given = optString(req, 'Identifier');
  if (given !== undefined && given !== id) fail(400, `"Identifier" ${given} does not match the entry's Identifier ${id}`);
  return stateChange('EscrowPut', req, ctx, fingerprint, async (tx) => {
    const stored = await tx.putEscrow(id, JSON.stringify(entry)).catch((err: unknown) => {
      if (err instanceof StorageConflict) fail(409, `escrow id ${id} already holds a different entry`, err);
      throw err;
    });
    // Storing the same entry again is an idempotent success with no new effect (and no log entry).
    return stored === 'created' ? { response: { Identifier: id }, log: { Identifier: id } } : { response: { Identifier: id } };
  });
}

async function escrowGet(req: Json, ctx: TransactionContext): Promise<TransactionResult> {
  const id = udfString(reqString(req, 'Identifier', 256), 'Identifier');
  const entry = await ctx.storage.transaction((tx) => tx.getEscrow(id));
  if (entry === undefined) fail(404, `no escrow entry ${id}`);
  return { status: 200, body: success('EscrowGet', { Identifier: id, Entry: parseJsonStrict(entry) }) };
}

async function logHead(_req: Json, ctx: TransactionContext): Promise<TransactionResult> {
  // Brings the signed head up to date first (a signature only when the log grew since the last head).
  const head = await ctx.notary.signHead();
  return { status: 200, body: success('LogHead', { Head: head === undefined ? null : parseJsonStrict(head.jws), Count: head?.count ?? 0 }) };
}

async function logProof(req: Json, ctx: TransactionContext): Promise<TransactionResult> {
  let index: number;
  if (member(req, 'Index') !== undefined) {
    index = reqInt(req, 'Index', 0, Number.MAX_SAFE_INTEGER);
  } else {
    const rid = udfString(reqString(req, 'RequestId', 256), 'RequestId', UdfType.Nonce);
    const prior = await ctx.storage.transaction((tx) => tx.getRequest(rid));
    if (prior === undefined) fail(404, `no processed request ${rid}`);
    const body = parseJsonStrict(prior.response) as Json;
    const inner = Object.values(body)[0] as Json | undefined;
    const logIndex = inner?.LogIndex;
    if (typeof logIndex !== 'number') fail(404, `request ${rid} made no log entry`);
    index = logIndex;
  }
  const count = await ctx.storage.transaction((tx) => tx.logCount());
  if (index >= count) fail(404, `log entry ${index} does not exist (the log has ${count} entries)`);
  const p = await ctx.notary.proof(index);
  return { status: 200, body: success('LogProof', { Index: index, Entry: p.entry, Proof: p.proof, Head: parseJsonStrict(p.head) }) };
}

async function logEntries(req: Json, ctx: TransactionContext): Promise<TransactionResult> {
  const from = reqInt(req, 'From', 0, Number.MAX_SAFE_INTEGER);
  const count = reqInt(req, 'Count', 1, MAX_LOG_ENTRIES);
  const lines = await ctx.storage.transaction((tx) => tx.logLines(from, count));
  return { status: 200, body: success('LogEntries', { From: from, Lines: lines }) };
}

async function federationHeads(req: Json, ctx: TransactionContext): Promise<TransactionResult> {
  if (ctx.federation !== undefined) return { status: 200, body: success('FederationHeads', await ctx.federation(req, ctx)) };
  return { status: 200, body: success('FederationHeads', { Head: await latestHead(ctx), Known: {} }) };
}

/**
 * Runs one transaction.
 *
 * @param name the transaction name (e.g. `Publish`).
 * @param request the members of `{"<Name>Request": {…}}`.
 * @param rawBody the request body bytes as received (its UDF is the log Fingerprint and the idempotency
 *   key of the RequestId); default: the JSON of `{"<Name>Request": request}`.
 * @returns the HTTP status and body; never throws for bad input (refusals are error bodies).
 */
export async function handle(name: string, request: unknown, ctx: TransactionContext, rawBody?: Uint8Array): Promise<TransactionResult> {
  try {
    if (!(TRANSACTIONS as readonly string[]).includes(name)) fail(400, `unknown transaction ${JSON.stringify(name.slice(0, 64))}`);
    if (typeof request !== 'object' || request === null || Array.isArray(request)) fail(400, `${name}Request expected an object`);
    const req = request as Json;
    const fingerprint = udfDigest(rawBody ?? utf8(JSON.stringify({ [`${name}Request`]: req })));
    switch (name as TransactionName) {
      case 'Hello': return await hello(req, ctx);
      case 'CreateAccount': return await createAccount(req, ctx, fingerprint);
      case 'Publish': return await publish(req, ctx, fingerprint);
      case 'Get': return await get(req, ctx);
      case 'ConnectStart': return await connectStart(req, ctx, fingerprint);
      case 'ConnectPending': return await connectPending(req, ctx);
      case 'ConnectComplete': return await connectComplete(req, ctx, fingerprint);
      case 'ConnectStatus': return await connectStatus(req, ctx);
      case 'EscrowPut': return await escrowPut(req, ctx, fingerprint);
      case 'EscrowGet': return await escrowGet(req, ctx);
      case 'LogHead': return await logHead(req, ctx);
      case 'LogProof': return await logProof(req, ctx);
      case 'LogEntries': return await logEntries(req, ctx);
      case 'FederationHeads': return await federationHeads(req, ctx);
    }
  } catch (e) {
    const err = toTransactionError(e);
    return { status: err.status, body: errorBody(err.status, err.message, err.code) };
  }
}

/**
 * Parses a request body (strict UTF-8, strict JSON, exactly one member `<Name>Request`) and runs it.
 *
 * @returns the HTTP status and body; never throws for bad input.
 */
export async function handleBody(body: Uint8Array, ctx: TransactionContext): Promise<TransactionResult> {
  let value: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(body);
    value = parseJsonStrict(text);
  } catch (e) {
    const msg = e instanceof MeshkitError ? e.message : 'the body is not UTF-8';
    return { status: 400, body: errorBody(400, `malformed request: ${msg}`) };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { status: 400, body: errorBody(400, 'malformed request: expected {"<Name>Request": {…}}') };
  }
  const keys = Object.keys(value);
  const key = keys[0];
  if (keys.length !== 1 || key === undefined || !key.endsWith('Request')) {
    return { status: 400, body: errorBody(400, 'malformed request: expected exactly one member "<Name>Request"') };
  }
  return handle(key.slice(0, -'Request'.length), (value as Json)[key], ctx, body);
}
