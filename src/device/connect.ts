/**
 * The device side of a connection request through a portal (architecture §5.1, digest §4.5,
 * docs/portal.md ConnectStart / ConnectStatus): a library function a device — or the bench acting for
 * one — calls to ask an account to connect it, and to learn the administrator's decision.
 *
 * Trust: the portal is untrusted. The device does not show the portal's witness as such: it fetches the
 * account's Master Profile, checks that it is self-signed under the master identifier it asked for, and
 * computes the witness itself from the master signature key, the portal's server nonce, its own
 * signature key and its own client nonce (digest §4.5). The administrator computes the same value from
 * the signed request on its side; both screens show it, and a person compares them. A portal that
 * substituted a device, a master or a nonce makes the two values differ.
 *
 * A decision is believed only when it is signed by an administration key of the account's Master
 * Profile and names this request and this witness; "Accepted" is reported only when the account's
 * current Personal Profile at the portal verifies and lists the device.
 *
 * Also here: the witness helpers the administrator's side shares ({@link computeWitness},
 * {@link shortWitness}, {@link witnessMatches}).
 */
import { randomBytes } from 'node:crypto';
import { aobject, astring, b64u, describe, fromB64u, fromUtf8 } from '../core/bytes.js';
import { ErrorCode, MeshkitError, ProfileError } from '../core/errors.js';
import { parseJsonStrict, verifyJwsSync, type JwsGeneral } from '../core/jose.js';
import { publicKeyFromJwk, publicKeyToSpki } from '../core/keys.js';
import {
  ProfileType,
  readProfile,
  verifyProfile,
  type MasterProfile,
  type PublicKeyEntry,
  type SignedProfile,
  type VerifiedProfile,
} from '../core/profiles.js';
import type { Signer } from '../core/signer.js';
import { ContentType, connectionWitness, udfDigestBinary } from '../core/udf.js';
import { PortalError, signConnectionRequest, type PortalClient } from '../portal/client.js';

/** Characters of the short witness form (four groups of four Base32 characters, 80 bits). */
export const SHORT_WITNESS_CHARS = 16;

/**
 * A witness did not match: the value typed (or shown) is not the one computed from the request, or the
 * portal's value is not the one the device / administrator computes. Code `ERR_PROFILE_MISMATCH`.
 */
export class WitnessMismatch extends MeshkitError {
  constructor(message: string) {
    super(ErrorCode.PROFILE_MISMATCH, message);
  }
}

// ---------------------------------------------------------------------------------------------
// Witness helpers
// ---------------------------------------------------------------------------------------------

/** The 64-byte binary UDF of a profile key (the input form of {@link connectionWitness}). */
function keyUdf512(entry: PublicKeyEntry): Uint8Array {
  return udfDigestBinary(publicKeyToSpki(publicKeyFromJwk(entry.PublicParameters, { check: 'encoding' })), { contentType: ContentType.PkixKeyInfo });
}

/**
 * The connection witness (digest §4.5) of a request, computed locally: from the Master Profile's
 * signature key, the portal's server nonce, the device's signature key and the device's client nonce.
 *
 * @param serverNonce base64url (as the portal sends it) or bytes.
 * @param clientNonce base64url or bytes (16 bytes).
 * @returns the witness in the grouped form (`XXXX-XXXX-…`, 28 characters in 7 groups).
 * @throws TypeError for wrong argument types; KeyError for an invalid key; MeshkitError for bad base64url.
 */
export function computeWitness(
  master: MasterProfile,
  serverNonce: string | Uint8Array,
  deviceKey: PublicKeyEntry,
  clientNonce: string | Uint8Array,
): string {
  aobject(master, 'master');
  aobject(deviceKey, 'deviceKey');
  const sn = typeof serverNonce === 'string' ? fromB64u(serverNonce, 'serverNonce') : serverNonce;
  const cn = typeof clientNonce === 'string' ? fromB64u(clientNonce, 'clientNonce') : clientNonce;
  return connectionWitness(keyUdf512(master.MasterSignatureKey), sn, keyUdf512(deviceKey), cn);
}

/** Upper case, without dashes, spaces and any other separators. */
function normalizeWitness(w: string): string {
  return w.toUpperCase().replace(/[^A-Z2-7]/g, '');
}

/**
 * The short form a screen shows: the first four groups (`KB3G-NC35-X6IU-BEKJ`).
 * @throws TypeError if `witness` is not a string; RangeError if it is shorter than the short form.
 */
export function shortWitness(witness: string): string {
  astring(witness, 'witness');
  const n = normalizeWitness(witness);
  if (n.length < SHORT_WITNESS_CHARS) throw new RangeError(`"witness" expected at least ${SHORT_WITNESS_CHARS} Base32 characters, got ${n.length}`);
  return (n.slice(0, SHORT_WITNESS_CHARS).match(/.{4}/g) ?? []).join('-');
}

/**
 * True when `typed` (what a person read off the other screen: the full witness or its short form; case,
 * dashes and spaces do not matter) names `witness`: it must have at least the short form's 16 characters
 * and be a prefix of the full value.
 * @throws TypeError for non-string arguments.
 */
export function witnessMatches(typed: string, witness: string): boolean {
  astring(typed, 'typed');
  astring(witness, 'witness');
  const t = normalizeWitness(typed);
  const w = normalizeWitness(witness);
  if (t.length < SHORT_WITNESS_CHARS || t.length > w.length) return false;
  // Constant-time-ish comparison over the typed length (the witness is not a secret, but be tidy).
  let diff = 0;
  for (let i = 0; i < t.length; i++) diff |= t.charCodeAt(i) ^ w.charCodeAt(i);
  return diff === 0;
}

// ---------------------------------------------------------------------------------------------
// Fetching and checking the account at the portal
// ---------------------------------------------------------------------------------------------

/**
 * The account's Master Profile from the portal, verified (self-signed) and checked to be `masterId`
 * (when given; else the one the portal holds for the account — trust on first use).
 * @throws ProfileError if it does not verify or is another master; PortalError.
 */
export async function fetchMaster(client: PortalClient, account: string, masterId?: string): Promise<VerifiedProfile<'MasterProfile'>> {
  const res = await client.get(masterId === undefined ? { account, type: ProfileType.Master } : { identifier: masterId, type: ProfileType.Master });
  const verified: VerifiedProfile<'MasterProfile'>[] = [];
  for (const entry of res.Entries) verified.push((await verifyProfile(entry)) as VerifiedProfile<'MasterProfile'>);
  const master = masterId === undefined ? verified[0] : verified.find((m) => m.identifier === masterId);
  if (master === undefined || master.type !== ProfileType.Master) {
    throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `the portal holds no Master Profile ${masterId ?? `for ${account}`}`);
  }
  if (masterId === undefined && verified.length !== 1) {
    throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `the portal answered ${verified.length} Master Profiles for ${account}; give the master identifier`);
  }
  return master;
}

/**
 * The account's current Personal Profile from the portal, verified against `master`.
 * @throws ProfileError if it does not verify; PortalError (404 when none).
 */
export async function fetchPersonal(client: PortalClient, master: VerifiedProfile<'MasterProfile'>): Promise<VerifiedProfile<'PersonalProfile'>> {
  const res = await client.get({ identifier: master.identifier, type: ProfileType.Personal });
  const entry = res.Entries[0];
  if (entry === undefined) throw new ProfileError(ErrorCode.PROFILE_NOT_CONNECTED, `the portal holds no Personal Profile for ${master.identifier}`);
  const v = await verifyProfile(entry, { master });
  if (v.type !== ProfileType.Personal) throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `the portal answered a ${v.type} for the Personal Profile of ${master.identifier}`);
  return v as VerifiedProfile<'PersonalProfile'>;
}

// ---------------------------------------------------------------------------------------------
// Requesting a connection
// ---------------------------------------------------------------------------------------------

/** What a device keeps after posting its request (to show the witness and to poll). */
export interface ConnectionTicket {
  /** The portal's identifier of the request (poll with it). */
  requestUdf: string;
  /** The witness, grouped (7 groups); computed by the device and equal to the portal's. */
  witness: string;
  /** Its first four groups, for a small screen. */
  shortWitness: string;
  account: string;
  masterId: string;
  deviceUdf: string;
  /** base64url, 16 bytes. */
  clientNonce: string;
  /** base64url, from the portal. */
  serverNonce: string;
}

/**
 * Posts a connection request (`ConnectStart`): signs `{"ConnectionRequest": {Account, ParentUDF, Device,
 * ClientNonce}}` with the device key, and checks the portal's witness against the one computed locally
 * from the account's Master Profile (fetched from the portal and checked to be `masterId`).
 *
 * @param masterId the account's master identifier; undefined = take the portal's (trust on first use —
 *   the witness comparison by a person is then what protects the device).
 * @throws TypeError / RangeError for bad arguments (a device signer that is not the profile's key);
 *   ProfileError for a bad Device Profile or Master Profile; WitnessMismatch when the portal's witness is
 *   not the locally computed one; PortalError for the portal's refusals.
 */
export async function requestConnection(
  client: PortalClient,
  account: string,
  masterId: string | undefined,
  signedDevice: SignedProfile,
  deviceSigner: Signer,
): Promise<ConnectionTicket> {
  aobject(client, 'client');
  astring(account, 'account');
  if (masterId !== undefined) astring(masterId, 'masterId');
  aobject(signedDevice, 'signedDevice');
  aobject(deviceSigner, 'deviceSigner');
  const device = (await verifyProfile(signedDevice)) as VerifiedProfile<'DeviceProfile'>;
  if (device.type !== ProfileType.Device) throw new RangeError(`"signedDevice" expected a signed DeviceProfile, got a ${String(device.type)}`);
  const master = await fetchMaster(client, account, masterId);
  const nonce = new Uint8Array(randomBytes(16));
  const { signedRequest, clientNonce } = await signConnectionRequest(account, master.identifier, signedDevice, deviceSigner, nonce);
  const res = await client.connectStart(account, signedRequest);
  const witness = computeWitness(master.profile, res.ServerNonce, device.profile.DeviceSignatureKey, clientNonce);
  if (normalizeWitness(witness) !== normalizeWitness(String(res.Witness))) {
    throw new WitnessMismatch(`the portal's witness ${String(res.Witness)} is not the witness ${witness} this device computes for request ${res.RequestUDF}: do not continue`);
  }
  return {
    requestUdf: res.RequestUDF, witness, shortWitness: shortWitness(witness), account, masterId: master.identifier,
    deviceUdf: device.identifier, clientNonce: b64u(clientNonce), serverNonce: res.ServerNonce,
  };
}

// ---------------------------------------------------------------------------------------------
// Learning the decision
// ---------------------------------------------------------------------------------------------

/** A decision the device has checked. */
export type ConnectionStatus =
  | { state: 'Pending'; requestUdf: string }
  | {
    state: 'Accepted';
    requestUdf: string;
    /** The administration key that signed the decision. */
    decidedBy: string;
    witness: string;
    /** The account's current Personal Profile at the portal, verified; it lists the device (when the device was given). */
    personal: VerifiedProfile<'PersonalProfile'>;
    /** True when the device was given and the Personal Profile lists it. */
    connected: boolean;
  }
  | { state: 'Refused'; requestUdf: string; decidedBy: string; witness: string };

/** Options of {@link connectionStatus}. */
export interface ConnectionStatusOptions {
  /** The master identifier (from the ticket); default: the portal's Master of the account. */
  masterId?: string;
  /** The device's signed profile: with it, "Accepted" requires the Personal Profile to list the device. */
  device?: SignedProfile;
  /** The witness the device computed (from the ticket): the decision must carry it. */
  witness?: string;
}

/** Checks an admin-signed `ConnectionResult` against the Master's administration keys. */
function verifyDecision(result: JwsGeneral, master: VerifiedProfile<'MasterProfile'>, requestUdf: string): { decision: 'Accepted' | 'Refused'; witness: string; kid: string } {
  aobject(result, 'result');
  if (!Array.isArray(result.signatures) || result.signatures.length !== 1) {
    throw new ProfileError(ErrorCode.PROFILE_MALFORMED, `the decision on request ${requestUdf} must carry exactly one signature`);
  }
  const keys = new Map(master.profile.OnlineSignatureKeys.map((k) => [k.UDF, k]));
  let kid = '';
  let payload: unknown;
  try {
    const v = verifyJwsSync(result, (k) => {
      kid = k;
      const entry = keys.get(k);
      return entry === undefined ? undefined : publicKeyFromJwk(entry.PublicParameters, { check: 'encoding' });
    });
    payload = parseJsonStrict(fromUtf8(v.payload));
  } catch (e) {
    if (kid !== '' && !keys.has(kid)) {
      throw new ProfileError(ErrorCode.PROFILE_UNAUTHORISED, `the decision on request ${requestUdf} is signed by ${kid}, which is not an administration key of Master Profile ${master.identifier} (Sequence ${master.sequence})`, { cause: e });
    }
    throw new ProfileError(ErrorCode.PROFILE_SIGNATURE, `the decision on request ${requestUdf} does not verify: ${(e as Error).message}`, { cause: e });
  }
  const r = (payload as { ConnectionResult?: Record<string, unknown> } | null)?.ConnectionResult;
  if (typeof r !== 'object' || r === null) throw new ProfileError(ErrorCode.PROFILE_MALFORMED, `the decision on request ${requestUdf} is not {"ConnectionResult": …}`);
  if (r.RequestUDF !== requestUdf) throw new ProfileError(ErrorCode.PROFILE_MISMATCH, `the decision names request ${String(r.RequestUDF)}, not ${requestUdf}`);
  if (r.Result !== 'Accepted' && r.Result !== 'Refused') throw new ProfileError(ErrorCode.PROFILE_MALFORMED, `the decision's Result is ${describe(r.Result)}`);
  if (typeof r.Witness !== 'string') throw new ProfileError(ErrorCode.PROFILE_MALFORMED, 'the decision carries no Witness');
  return { decision: r.Result, witness: r.Witness, kid };
}

/**
 * Asks the portal for the decision on a request (`ConnectStatus`) and checks it: signed by an
 * administration key of the account's Master, naming this request and (when given) this witness; for
 * "Accepted", the account's current Personal Profile at the portal is verified and (when the device is
 * given) must list it.
 *
 * @throws TypeError for bad arguments; ProfileError when the decision or the Personal Profile does not
 *   hold (`ERR_PROFILE_NOT_CONNECTED`: accepted, but the Personal Profile does not list the device);
 *   WitnessMismatch when the decision carries another witness; PortalError (404 unknown request).
 */
export async function connectionStatus(
  client: PortalClient,
  account: string,
  requestUdf: string,
  opts: ConnectionStatusOptions = {},
): Promise<ConnectionStatus> {
  aobject(client, 'client');
  astring(account, 'account');
  astring(requestUdf, 'requestUdf');
  aobject(opts, 'opts');
  const res = await client.connectStatus(account, requestUdf);
  if (res.Result === 'Pending') return { state: 'Pending', requestUdf };
  if (typeof res.Result !== 'object' || res.Result === null) {
    throw new PortalError(ErrorCode.PORTAL_PROTOCOL, `portal ConnectStatus: Result is neither "Pending" nor a signed decision`, {
      status: 200, transaction: 'ConnectStatus', requestId: '', attempts: 1,
    });
  }
  const master = await fetchMaster(client, account, opts.masterId);
  const d = verifyDecision(res.Result, master, requestUdf);
  if (opts.witness !== undefined && normalizeWitness(opts.witness) !== normalizeWitness(d.witness)) {
    throw new WitnessMismatch(`the decision on request ${requestUdf} carries witness ${d.witness}, not this device's ${opts.witness}`);
  }
  if (d.decision === 'Refused') return { state: 'Refused', requestUdf, decidedBy: d.kid, witness: d.witness };
  const personal = await fetchPersonal(client, master);
  let connected = false;
  if (opts.device !== undefined) {
    const deviceId = readProfile(opts.device, ProfileType.Device).profile.Identifier;
    if (!(personal.devices ?? []).some((v) => v.identifier === deviceId)) {
      throw new ProfileError(ErrorCode.PROFILE_NOT_CONNECTED,
        `request ${requestUdf} was accepted by ${d.kid}, but Personal Profile Sequence ${personal.sequence} at the portal does not list device ${deviceId} (not yet published, or revoked since)`);
    }
    await verifyProfile(opts.device, { personal });
    connected = true;
  }
  return { state: 'Accepted', requestUdf, decidedBy: d.kid, witness: d.witness, personal, connected };
}
