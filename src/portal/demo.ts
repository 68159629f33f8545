/**
 * The portal step of `meshkit demo` (issue 6 item 6): publish the demo's account — its Personal
 * Profile (which embeds the Master) and its devices' Device Profiles — to a portal, fetch it back,
 * verify what came back, and prove one log entry against the portal's signed head.
 *
 * The demo (src/demo/demo.ts) starts the portal on loopback with SQLite and calls
 * {@link publishDemoAccount}; everything here goes through {@link PortalClient}, as any client would.
 */
import { astring, describe } from '../core/bytes.js';
import { ErrorCode, MeshkitError } from '../core/errors.js';
import { readProfile, verifyProfile, type SignedProfile, type VerifiedProfile } from '../core/profiles.js';
import type { PublicJwk } from '../core/signer.js';
import { udfNonce } from '../core/udf.js';
import { PortalClient, verifyLogProof, type PortalClientOptions } from './client.js';

/** What {@link publishDemoAccount} did. */
export interface DemoPublishResult {
  portalUrl: string;
  /** The portal key UDF (Hello `Portal`). */
  portal: string;
  account: string;
  /** The account's Master identifier. */
  identifier: string;
  /** Each publish: profile identifier, type, Sequence, log index, and the RequestId it was sent with. */
  published: Array<{ identifier: string; type: string; sequence: number; logIndex: number; requestId: string }>;
  /** How many current profiles the portal returned for the account, each verified here. */
  fetched: number;
  /** The signed log head count after publishing. */
  logCount: number;
  /** True when the last publish's log entry was proven against the portal's signed head. */
  proven: boolean;
}

/**
 * Creates `account` on the portal with the signed Personal Profile `personal`, publishes each signed
 * Device Profile of `devices`, fetches the account back and verifies every profile returned (the
 * Personal Profile against `master`, each device connected to the Personal Profile), and — when the
 * portal key is known (`opts.portalKey`, or Hello's `PortalKey`) — checks the inclusion proof of the
 * last publish.
 *
 * @param portalUrl `http://127.0.0.1:PORT` (plain HTTP on loopback) or `https://…` (give `opts.client.ca`).
 * @param master the signed Master Profile (must be the one embedded in `personal`).
 * @throws TypeError / RangeError for bad arguments (a `personal` whose Master is not `master`);
 *   PortalError for a refusal by the portal; ProfileError if what came back does not verify;
 *   MeshkitError `ERR_PORTAL_PROTOCOL` if the portal returned less than was published.
 */
export async function publishDemoAccount(
  portalUrl: string,
  account: string,
  master: SignedProfile,
  personal: SignedProfile,
  devices: SignedProfile[],
  opts: { client?: PortalClientOptions; portalKey?: PublicJwk } = {},
): Promise<DemoPublishResult> {
  astring(portalUrl, 'portalUrl');
  astring(account, 'account');
  if (!Array.isArray(devices)) throw new TypeError(`"devices" expected an array of signed Device Profiles, got ${describe(devices)}`);
  const m = readProfile(master, 'MasterProfile');
  const p = readProfile(personal, 'PersonalProfile');
  const embedded = readProfile(p.profile.SignedMasterProfile, 'MasterProfile');
  if (embedded.profile.Identifier !== m.profile.Identifier || embedded.profile.Sequence !== m.profile.Sequence) {
    throw new RangeError(`"personal" embeds Master ${embedded.profile.Identifier} (Sequence ${embedded.profile.Sequence}), not "master" ${m.profile.Identifier} (Sequence ${m.profile.Sequence})`);
  }
  const deviceIds = new Set(devices.map((d) => readProfile(d, 'DeviceProfile').profile.Identifier));

  const client = new PortalClient(portalUrl, { timeoutMs: 10_000, retries: 3, ...opts.client });
  try {
    const hello = await client.hello();
    const created = await client.createAccount(account, personal);
    const published: DemoPublishResult['published'] = [];
    let lastRequestId: string | undefined;
    for (const d of devices) {
      const requestId = udfNonce();
      const r = await client.publish(account, d, { requestId });
      published.push({ identifier: r.Identifier, type: r.Type, sequence: r.Sequence, logIndex: r.LogIndex, requestId });
      lastRequestId = requestId;
    }

    // Fetch back and verify: the Personal Profile against the Master we hold, devices against it.
    const got = await client.get({ account });
    const verifiedPersonal = (await verifyProfile(personal, { master })) as VerifiedProfile<'PersonalProfile'>;
    let fetched = 0;
    let sawPersonal = false;
    const seenDevices = new Set<string>();
    for (const entry of got.Entries) {
      const decoded = readProfile(entry);
      if (decoded.type === 'PersonalProfile') {
        await verifyProfile(entry, { master });
        sawPersonal = true;
      } else if (decoded.type === 'DeviceProfile') {
        const v = await verifyProfile(entry, { personal: verifiedPersonal });
        seenDevices.add(v.identifier);
      } else {
        await verifyProfile(entry, decoded.type === 'MasterProfile' ? {} : { personal: verifiedPersonal });
      }
      fetched += 1;
    }
    if (!sawPersonal) throw new MeshkitError(ErrorCode.PORTAL_PROTOCOL, `the portal did not return the Personal Profile of ${account}`);
    for (const id of deviceIds) {
      if (!seenDevices.has(id)) throw new MeshkitError(ErrorCode.PORTAL_PROTOCOL, `the portal did not return Device Profile ${id} of ${account}`);
    }

    // Prove the last publish (or the account creation) against a signed head.
    const head = await client.logHead();
    const helloKey = (hello as { PortalKey?: unknown }).PortalKey;
    const portalKey = opts.portalKey ?? (typeof helloKey === 'object' && helloKey !== null ? (helloKey as PublicJwk) : undefined);
    let proven = false;
    if (portalKey !== undefined && head.Count > 0) {
      const proof = await client.logProof(lastRequestId ?? head.Count - 1);
      await verifyLogProof(proof, portalKey);
      proven = true;
    }
    return {
      portalUrl,
      portal: hello.Portal,
      account: created.Account,
      identifier: created.Identifier,
      published,
      fetched,
      logCount: head.Count,
      proven,
    };
  } finally {
    client.close();
  }
}
