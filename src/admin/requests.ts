/**
 * Connection requests waiting at the portal, from the administrator's side (docs/admin.md
 * `admin pending|accept|reject`; architecture §5.1; digest §4.5).
 *
 * The portal is untrusted. Every request it lists is checked here: the request is signed by the
 * signature key of the Device Profile it carries, that profile is self-signed, and it names this
 * account and its master. The witness is computed locally — from the account's own Master Profile, the
 * portal's server nonce, the device key and the device's client nonce — and that local value is the
 * one shown and compared. Accepting needs the witness a person read off the device's screen (the full
 * value or its first four groups): when it does not match, nothing is signed and nothing is written.
 * An accepted device is connected exactly as `admin connect` does it (src/admin/updates.ts
 * `connectDevice`: verified, a new Personal Profile, written, published), then the admin-signed decision
 * goes to the portal (`ConnectComplete`), where the device learns it.
 */
import { aobject, astring, fromB64u, fromUtf8 } from '../core/bytes.js';
import { ErrorCode, JoseError, MeshkitError, ProfileError } from '../core/errors.js';
import { parseJsonStrict, verifyJwsSync, type JwsGeneral } from '../core/jose.js';
import { publicKeyFromJwk } from '../core/keys.js';
import { ProfileType, readProfile, verifyProfile, type SignedProfile, type VerifiedProfile } from '../core/profiles.js';
import type { Signer } from '../core/signer.js';
import { WitnessMismatch, computeWitness, shortWitness, witnessMatches } from '../device/connect.js';
import { PortalError, type PendingConnection, type PortalClient } from '../portal/client.js';
import type { Account } from './account.js';
import { connectDevice } from './updates.js';

/** One connection request as the administrator sees it. */
export interface PendingRequest {
  requestUdf: string;
  /** The requesting device's fingerprint: its Device Profile identifier (the UDF of its signature key). */
  deviceUdf: string;
  description: string;
  /** The witness computed here (7 groups); what the device's screen shows too. */
  witness: string;
  /** Its first four groups, what a small screen shows. */
  shortWitness: string;
  /** When the portal received it (ISO 8601). */
  received: string;
  /** Why this request cannot be accepted (a forged or foreign request, a witness the portal got wrong); absent when it checks out. */
  problem?: string;
  /** The device's signed profile (to connect it). */
  device: SignedProfile;
}

/** The outcome of {@link acceptRequest} / {@link rejectRequest}. */
export interface RequestDecision {
  requestUdf: string;
  deviceUdf: string;
  result: 'Accepted' | 'Refused';
  /** The Sequence of the Personal Profile that lists the device (Accepted only). */
  personalSequence?: number;
  /** The administration key that signed the decision. */
  decidedBy: string;
}

/** A request that is not pending at the portal (unknown, or already decided). Code `ERR_PORTAL_NOT_FOUND`. */
export class RequestNotPending extends MeshkitError {
  constructor(message: string) {
    super(ErrorCode.PORTAL_NOT_FOUND, message);
  }
}

/** The account's name at its portal. */
function portalAccount(account: Account): string {
  const name = account.index.Portal?.Account;
  if (name === undefined) {
    throw new MeshkitError(ErrorCode.IO, `account ${account.dir} has no portal (account.json Portal); give one with "admin init --portal URL --portal-account NAME"`);
  }
  return name;
}

function checkArgs(account: Account, adminSigner: Signer, client: PortalClient): void {
  aobject(account, 'account');
  aobject(adminSigner, 'adminSigner');
  aobject(client, 'client');
  if (typeof adminSigner.sign !== 'function') throw new TypeError('"adminSigner" expected a Signer');
}

/** Checks one pending entry against the account; never throws for a bad request (it sets `problem`). */
async function examine(entry: PendingConnection, account: Account): Promise<PendingRequest> {
  const base = { requestUdf: String(entry.RequestUDF), received: String(entry.Received) };
  const broken = (problem: string, extra: Partial<PendingRequest> = {}): PendingRequest => ({
    deviceUdf: '', description: '', witness: '', shortWitness: '', device: {} as SignedProfile, ...base, ...extra, problem,
  });
  let payload: Record<string, unknown>;
  try {
    const value = parseJsonStrict(fromUtf8(fromB64u(String(entry.SignedRequest?.payload), 'SignedRequest.payload')));
    const inner = (value as { ConnectionRequest?: unknown } | null)?.ConnectionRequest;
    if (typeof inner !== 'object' || inner === null) return broken('the request is not {"ConnectionRequest": …}');
    payload = inner as Record<string, unknown>;
  } catch (e) {
    return broken(`the request is not readable: ${(e as Error).message}`);
  }
  let device: VerifiedProfile<'DeviceProfile'>;
  try {
    const v = await verifyProfile(payload.Device as object);
    if (v.type !== ProfileType.Device) return broken(`the request carries a ${v.type}, not a Device Profile`);
    device = v as VerifiedProfile<'DeviceProfile'>;
  } catch (e) {
    return broken(`the request's Device Profile does not verify: ${(e as Error).message}`);
  }
  const known = {
    deviceUdf: device.identifier, description: device.profile.Description, device: device.signed,
  };
  const key = device.profile.DeviceSignatureKey;
  const signed = entry.SignedRequest as JwsGeneral;
  if (!Array.isArray(signed.signatures) || signed.signatures.length !== 1) return broken('the request must carry exactly one signature', known);
  try {
    const pk = publicKeyFromJwk(key.PublicParameters, { check: 'encoding' });
    verifyJwsSync(signed, (kid) => (kid === key.UDF ? pk : undefined));
  } catch (e) {
    const why = e instanceof JoseError && e.code === ErrorCode.JWS_SIGNATURE ? 'does not verify (forged or altered)' : `is not signed by the device key ${key.UDF}`;
    return broken(`the request ${why}`, known);
  }
  if (payload.ParentUDF !== account.index.Identifier) return broken(`the request is for master ${String(payload.ParentUDF)}, not this account's ${account.index.Identifier}`, known);
  const name = account.index.Portal?.Account;
  if (typeof payload.Account !== 'string' || (name !== undefined && payload.Account.toLowerCase() !== name.toLowerCase())) {
    return broken(`the request is for account ${String(payload.Account)}, not ${name ?? '(none)'}`, known);
  }
  let witness: string;
  try {
    witness = computeWitness(account.masterProfile, String(entry.ServerNonce), key, String(payload.ClientNonce));
  } catch (e) {
    return broken(`the request's nonces are not valid: ${(e as Error).message}`, known);
  }
  const out: PendingRequest = { ...base, ...known, witness, shortWitness: shortWitness(witness) };
  if (String(entry.Witness) !== witness) out.problem = `the portal's witness ${String(entry.Witness)} is not the one computed here: the portal or the request was tampered with`;
  return out;
}

/**
 * Lists the connection requests waiting at the account's portal (`ConnectPending`, signed by the
 * administration key), each checked and with its locally computed witness.
 *
 * @throws TypeError for bad arguments; MeshkitError `ERR_IO` when the account has no portal; PortalError
 *   (403 when the key is not an administration key of the account's Master at the portal); whatever the
 *   signer throws (a card removed, a wrong PIN).
 */
export async function listPending(account: Account, adminSigner: Signer, client: PortalClient): Promise<PendingRequest[]> {
  checkArgs(account, adminSigner, client);
  const res = await client.connectPending(portalAccount(account), adminSigner);
  const out: PendingRequest[] = [];
  for (const entry of res.Pending) out.push(await examine(entry, account));
  return out;
}

async function findPending(account: Account, requestUdf: string, adminSigner: Signer, client: PortalClient): Promise<PendingRequest> {
  const pending = await listPending(account, adminSigner, client);
  const found = pending.find((p) => p.requestUdf === requestUdf);
  if (found === undefined) {
    throw new RequestNotPending(`connection request ${requestUdf} is not pending at the portal (unknown, or already decided); "admin pending" lists the open ones`);
  }
  return found;
}

/** True when the account's current Personal Profile already lists exactly this Device Profile version. */
function alreadyConnected(account: Account, device: SignedProfile): boolean {
  const d = readProfile(device, ProfileType.Device).profile;
  return account.personalProfile.Devices.some((listed) => {
    const p = readProfile(listed, ProfileType.Device).profile;
    return p.Identifier === d.Identifier && p.Sequence === d.Sequence;
  });
}

/** Options of {@link acceptRequest}. */
export interface AcceptOptions {
  /** Replaces the connect step (tests); default src/admin/updates.ts `connectDevice`. */
  connect?: (account: Account, device: SignedProfile, adminSigner: Signer) => Promise<{ personalSequence: number }>;
}

/**
 * Accepts a pending request: the witness a person read off the device's screen (`witness`, full or the
 * first four groups) must match the one computed here from the request; then the device is connected
 * (verified, a new Personal Profile, written, published — as `admin connect`) and an admin-signed
 * `Accepted` decision is sent to the portal. When the device is already listed (a retry after a failed
 * ConnectComplete), the connect step is skipped.
 *
 * @throws TypeError for bad arguments; WitnessMismatch (`ERR_PROFILE_MISMATCH`) when the witness does not
 *   match — nothing signed, nothing written; RequestNotPending; ProfileError when the request does not
 *   check out (its reason); whatever connectDevice and the portal throw.
 */
export async function acceptRequest(
  account: Account,
  requestUdf: string,
  witness: string,
  adminSigner: Signer,
  client: PortalClient,
  opts: AcceptOptions = {},
): Promise<RequestDecision> {
  checkArgs(account, adminSigner, client);
  astring(requestUdf, 'requestUdf');
  astring(witness, 'witness');
  const request = await findPending(account, requestUdf, adminSigner, client);
  if (request.problem !== undefined) {
    throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `connection request ${requestUdf} cannot be accepted: ${request.problem}; reject it`);
  }
  if (!witnessMatches(witness, request.witness)) {
    throw new WitnessMismatch(
      `the witness ${witness} does not match request ${requestUdf} (its witness begins ${request.shortWitness}): compare the device's screen again; nothing was signed`,
    );
  }
  let personalSequence: number;
  if (alreadyConnected(account, request.device)) {
    // A retry after a failed ConnectComplete or publish: make sure the portal holds this Personal Profile.
    personalSequence = account.personalProfile.Sequence;
    await client.publish(portalAccount(account), account.personal).catch((e: unknown) => {
      if (!(e instanceof PortalError && e.status === 409)) throw e;
    });
  } else if (opts.connect !== undefined) {
    ({ personalSequence } = await opts.connect(account, request.device, adminSigner));
  } else {
    personalSequence = await connectWithUpdates(account, request.device, adminSigner, client);
  }
  await client.connectComplete(portalAccount(account), requestUdf, 'Accepted', request.witness, adminSigner);
  return { requestUdf, deviceUdf: request.deviceUdf, result: 'Accepted', personalSequence, decidedBy: adminSigner.keyId };
}

/**
 * The default connect step: src/admin/updates.ts `connectDevice` (verified, written, published to the
 * same portal). A Personal Profile that could not be published is an error here: the device must not
 * learn "Accepted" before the portal holds the Personal Profile that lists it.
 */
async function connectWithUpdates(account: Account, device: SignedProfile, adminSigner: Signer, client: PortalClient): Promise<number> {
  const summary = await connectDevice({ dir: account.dir, admin: adminSigner, portal: { client, account: portalAccount(account) } }, device);
  const failed = summary.publishFailed.find((f) => f.type === ProfileType.Personal);
  if (failed !== undefined) {
    throw new MeshkitError(ErrorCode.PORTAL_UNAVAILABLE,
      `device ${summary.device?.identifier ?? ''} is connected in the account (Personal Profile Sequence ${summary.personal.sequence}) but publishing it failed (${failed.error}); run "admin accept" again to publish and complete`);
  }
  return summary.personal.sequence;
}

/**
 * Refuses a pending request: an admin-signed `Refused` decision (with the request's witness, as the
 * portal requires). Nothing is written to the account.
 *
 * @throws TypeError for bad arguments; RequestNotPending; PortalError; whatever the signer throws.
 */
export async function rejectRequest(account: Account, requestUdf: string, adminSigner: Signer, client: PortalClient): Promise<RequestDecision> {
  checkArgs(account, adminSigner, client);
  astring(requestUdf, 'requestUdf');
  const pending = await client.connectPending(portalAccount(account), adminSigner);
  const entry = pending.Pending.find((p) => p.RequestUDF === requestUdf);
  if (entry === undefined) {
    throw new RequestNotPending(`connection request ${requestUdf} is not pending at the portal (unknown, or already decided); "admin pending" lists the open ones`);
  }
  const request = await examine(entry, account);
  // The portal checks the decision against its own witness; refusing needs no agreement on it.
  await client.connectComplete(portalAccount(account), requestUdf, 'Refused', String(entry.Witness), adminSigner);
  return { requestUdf, deviceUdf: request.deviceUdf, result: 'Refused', decidedBy: adminSigner.keyId };
}
