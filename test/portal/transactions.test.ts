/**
 * The portal's transactions over real HTTP on loopback against a real SQLite file: every happy path, and
 * the refusals issue 6 asks for — forged signatures, unauthorised signers, replays (stale Sequence, same
 * RequestId), 20 concurrent updates of one profile, connection requests and decisions, escrow, quotas.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64u, fromB64u, utf8 } from '../../src/core/bytes.js';
import { verifyInclusion, verifyLogHead } from '../../src/core/hashlog.js';
import { signJws, type JwsGeneral } from '../../src/core/jose.js';
import { createOfflineEscrow } from '../../src/core/escrow.js';
import {
  ProfileType,
  composeApplicationProfile,
  composeMasterProfile,
  readProfile,
  signProfile,
  supersede,
  verifyProfile,
  type PersonalProfile,
} from '../../src/core/profiles.js';
import { connectionWitness, udfDigest, udfDigestBinary, udfNonce } from '../../src/core/udf.js';
import { publicKeyFromJwk, publicKeyToSpki } from '../../src/core/keys.js';
import { signedHeadPayload } from '../../src/portal/notary.js';
import { PortalErrorCode } from '../../src/portal/transactions.js';
import { testKey, testSigner } from '../helpers/software-signer.js';
import {
  connectionRequest,
  connectionResult,
  makeAccount,
  makeDevice,
  pendingQuery,
  personalWithDevice,
  post,
  rid,
  startTestPortal,
  type TestAccount,
  type TestPortal,
} from '../helpers/portal.js';

let portal: TestPortal;
let alice: TestAccount;

beforeAll(async () => {
  portal = await startTestPortal({ quotas: { updatesPerHour: 0, accountsPerHour: 0 } });
  alice = await makeAccount();
  const r = await post(portal.endpoint, 'CreateAccount', alice.createRequest());
  expect(r.status, JSON.stringify(r.body)).toBe(200);
});
afterAll(async () => {
  await portal.close();
});

function keyUdf512(jwk: unknown): Uint8Array {
  return udfDigestBinary(publicKeyToSpki(publicKeyFromJwk(jwk)), { contentType: 'application/pkix-keyinfo' });
}

describe('Hello, CreateAccount, Get', () => {
  it('Hello names the portal key and protocol version', async () => {
    const r = await post(portal.endpoint, 'Hello', {});
    expect(r.status).toBe(200);
    expect(r.response).toMatchObject({ Status: 201, StatusDescription: 'OK', Version: 'meshkit-portal/1', Portal: portal.portalKey.keyId });
    expect('LogHead' in r.response).toBe(true);
  });

  it('CreateAccount stores the Master and Personal Profiles; Get returns them by account, identifier and type', async () => {
    const bob = await makeAccount();
    const c = await post(portal.endpoint, 'CreateAccount', bob.createRequest());
    expect(c.status).toBe(200);
    expect(c.response).toMatchObject({ Status: 201, Account: bob.name, Identifier: bob.master.Identifier });
    expect(typeof c.response.LogIndex).toBe('number');
    const all = await post(portal.endpoint, 'Get', { Account: bob.name });
    expect(all.status).toBe(200);
    const entries = all.response.Entries as JwsGeneral[];
    expect(entries.map((e) => readProfile(e).type).sort()).toEqual([ProfileType.Master, ProfileType.Personal]);
    const personal = await post(portal.endpoint, 'Get', { Identifier: bob.master.Identifier, Type: ProfileType.Personal });
    const got = (personal.response.Entries as JwsGeneral[])[0];
    expect(got).toEqual(bob.signedPersonal);
    expect((await verifyProfile(got as JwsGeneral)).type).toBe(ProfileType.Personal);
  });

  it('refuses a second account of the same name and of the same master (409)', async () => {
    const again = await post(portal.endpoint, 'CreateAccount', alice.createRequest());
    expect(again.status).toBe(409);
    expect(again.response).toMatchObject({ Status: 409, Code: PortalErrorCode.CONFLICT });
    const other = await post(portal.endpoint, 'CreateAccount', { ...alice.createRequest(), Account: 'another@example.com' });
    expect(other.status).toBe(409);
    expect(String(other.response.StatusDescription)).toContain('already belongs');
  });

  it('refuses a forged Personal Profile (401), a non-Personal profile and a bad account name (400)', async () => {
    const carol = await makeAccount();
    const forged = structuredClone(carol.signedPersonal);
    const sig = forged.signatures[0]!;
    const bytes = fromB64u(sig.signature);
    const flipped = new Uint8Array(bytes);
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    sig.signature = b64u(flipped);
    const r = await post(portal.endpoint, 'CreateAccount', { ...carol.createRequest(), Profile: forged });
    expect(r.status).toBe(401);
    expect(r.response.Code).toBe(PortalErrorCode.SIGNATURE);
    const master = await post(portal.endpoint, 'CreateAccount', { ...carol.createRequest(), Profile: carol.signedMaster });
    expect(master.status).toBe(400);
    const badName = await post(portal.endpoint, 'CreateAccount', { ...carol.createRequest(), Account: 'no-at-sign' });
    expect(badName.status).toBe(400);
    expect(String(badName.response.StatusDescription)).toContain('"Account"');
  });

  it('refuses a Personal Profile signed by a key that is not an administration key (403)', async () => {
    const dave = await makeAccount();
    const rogue = testSigner(testKey('Ed25519'));
    const signed = await signProfile(ProfileType.Personal, dave.personal, rogue);
    const r = await post(portal.endpoint, 'CreateAccount', { ...dave.createRequest(), Profile: signed });
    expect(r.status).toBe(403);
    expect(r.response.Code).toBe(PortalErrorCode.UNAUTHORISED);
  });

  it('Get: unknown account or identifier → 404; no selector → 400', async () => {
    expect((await post(portal.endpoint, 'Get', { Account: 'nobody@example.com' })).status).toBe(404);
    expect((await post(portal.endpoint, 'Get', { Identifier: udfDigest(utf8('nothing')) })).status).toBe(404);
    expect((await post(portal.endpoint, 'Get', {})).status).toBe(400);
  });
});

describe('Publish', () => {
  it('accepts a superseding Personal Profile and answers Identifier, Type, Sequence, LogIndex', async () => {
    const next = await alice.nextPersonal();
    const r = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: next });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.response).toMatchObject({ Identifier: alice.master.Identifier, Type: ProfileType.Personal, Sequence: alice.personal.Sequence });
    expect(typeof r.response.LogIndex).toBe('number');
  });

  it('refuses a stale or replayed Sequence with 409 naming both Sequences', async () => {
    const stored = alice.personal.Sequence;
    const replay = await alice.personalWithSequence(stored);
    const r = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: replay });
    expect(r.status).toBe(409);
    expect(String(r.response.StatusDescription)).toContain(`Sequence ${stored}`);
    const stale = await alice.personalWithSequence(1);
    const s = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: stale });
    expect(s.status).toBe(409);
    expect(String(s.response.StatusDescription)).toMatch(new RegExp(`Sequence 1 .*stored Sequence ${stored}`));
  });

  it('the same RequestId again returns the same response with no second effect; with another body → 409', async () => {
    const next = await alice.nextPersonal();
    const request = { RequestId: rid(), Account: alice.name, Entry: next };
    const first = await post(portal.endpoint, 'Publish', request);
    expect(first.status).toBe(200);
    const countBefore = (await post(portal.endpoint, 'LogHead', {})).response.Count;
    const second = await post(portal.endpoint, 'Publish', request);
    expect(second.status).toBe(200);
    expect(second.body).toEqual(first.body);
    expect((await post(portal.endpoint, 'LogHead', {})).response.Count).toBe(countBefore);
    const other = await post(portal.endpoint, 'Publish', { ...request, Entry: await alice.nextPersonal() });
    expect(other.status).toBe(409);
    expect(String(other.response.StatusDescription)).toContain('different request body');
  });

  it('refuses an update signed by an unauthorised key (403) and a forged one (401)', async () => {
    const rogue = testSigner(testKey('Ed25519'));
    const unauthorised = await signProfile(ProfileType.Personal, supersede(alice.personal), rogue);
    const r = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: unauthorised });
    expect(r.status).toBe(403);
    const good = await signProfile(ProfileType.Personal, supersede(alice.personal), alice.adminSigner);
    const forged: JwsGeneral = { ...good, payload: b64u(utf8(JSON.stringify({ PersonalProfile: { ...supersede(alice.personal), Names: ['evil'] } }))) };
    const f = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: forged });
    expect(f.status).toBe(401);
  });

  it('refuses a Personal Profile of another master published under this account (403)', async () => {
    const eve = await makeAccount();
    const r = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: await eve.nextPersonal() });
    expect(r.status).toBe(403);
  });

  it('Publish to an unknown account → 404', async () => {
    const r = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: 'ghost@example.com', Entry: alice.signedPersonal });
    expect(r.status).toBe(404);
  });

  it('a new Master Profile is accepted only when signed by the same master key; a removed admin key is then refused', async () => {
    const acct = await makeAccount();
    expect((await post(portal.endpoint, 'CreateAccount', acct.createRequest())).status).toBe(200);
    const newAdmin = testKey('Ed25519');
    const master2 = supersede(acct.master, { OnlineSignatureKeys: composeMasterProfile({ signatureKey: acct.masterKey.publicJwk, adminKeys: [newAdmin.publicJwk] }).OnlineSignatureKeys });
    // Another master key signing a "Master" with the same Identifier cannot be built (signProfile refuses), so
    // forge the attempt: a different master's profile published under this account.
    const other = await makeAccount();
    const wrong = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: other.signedMaster });
    expect(wrong.status).toBe(403);
    const signed2 = await signProfile(ProfileType.Master, master2, acct.masterSigner);
    const ok = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: signed2 });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.response).toMatchObject({ Type: ProfileType.Master, Sequence: 2 });
    // The old admin key is no longer authorised for the account's Personal Profile.
    const byOld = await acct.nextPersonal(acct.adminSigner);
    const refused = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: byOld });
    expect(refused.status).toBe(403);
    // The new one is (with the new Master embedded).
    const p: PersonalProfile = { ...acct.personal, SignedMasterProfile: signed2 };
    const byNew = await signProfile(ProfileType.Personal, p, testSigner(newAdmin));
    const accepted = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: byNew });
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(200);
  });

  it('Device Profiles: self-signed accepted; superseded refused', async () => {
    const device = await makeDevice();
    const r = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: device.signed });
    expect(r.status).toBe(200);
    expect(r.response).toMatchObject({ Type: ProfileType.Device, Identifier: device.identifier, Sequence: 1 });
    const again = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: device.signed });
    expect(again.status).toBe(409);
  });

  it('Application Profiles: signed by an administrator listed in the current Personal Profile; others 403', async () => {
    const acct = await makeAccount();
    expect((await post(portal.endpoint, 'CreateAccount', acct.createRequest())).status).toBe(200);
    const appId = udfNonce();
    const listing = await acct.nextPersonal(acct.adminSigner, {
      Applications: [{ Identifier: appId, Type: 'mail', AdminDeviceUDF: [acct.adminKey.keyId], DecryptDeviceUDF: [] }],
    });
    expect((await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: listing })).status).toBe(200);
    const app = composeApplicationProfile({ identifier: appId, type: 'mail' });
    const signed = await signProfile(ProfileType.Application, app, acct.adminSigner);
    const ok = await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: signed });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    const rogue = await signProfile(ProfileType.Application, supersede(app), testSigner(testKey('Ed25519')));
    expect((await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: rogue })).status).toBe(403);
  });

  it('20 concurrent updates with the same Sequence: exactly one wins, the others get 409, the stored profile verifies', async () => {
    const acct = await makeAccount();
    expect((await post(portal.endpoint, 'CreateAccount', acct.createRequest())).status).toBe(200);
    const candidates = await Promise.all(
      Array.from({ length: 20 }, (_, i) => signProfile(ProfileType.Personal, { ...supersede(acct.personal), Names: [`v${i}`] }, acct.adminSigner)),
    );
    const results = await Promise.all(candidates.map((c) => post(portal.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: c })));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
    const winner = candidates[statuses.indexOf(200)];
    const got = await post(portal.endpoint, 'Get', { Identifier: acct.master.Identifier, Type: ProfileType.Personal });
    const stored = (got.response.Entries as JwsGeneral[])[0]!;
    expect(stored).toEqual(winner);
    const v = await verifyProfile(stored, { master: acct.signedMaster });
    expect(v.sequence).toBe(2);
  });
});

describe('device connection: ConnectStart / ConnectPending / ConnectComplete / ConnectStatus', () => {
  it('runs the whole exchange with the digest §4.5 K1 witness', async () => {
    const device = await makeDevice('thermostat');
    const { signedRequest, clientNonce } = await connectionRequest(alice, device);
    const start = await post(portal.endpoint, 'ConnectStart', { RequestId: rid(), Account: alice.name, SignedRequest: signedRequest });
    expect(start.status, JSON.stringify(start.body)).toBe(200);
    const { RequestUDF, ServerNonce, Witness } = start.response as { RequestUDF: string; ServerNonce: string; Witness: string };
    const expected = connectionWitness(keyUdf512(alice.masterKey.publicJwk), fromB64u(ServerNonce), keyUdf512(device.key.publicJwk), clientNonce);
    expect(Witness).toBe(expected);

    const status1 = await post(portal.endpoint, 'ConnectStatus', { Account: alice.name, RequestUDF });
    expect(status1.response).toMatchObject({ Result: 'Pending', State: 'Pending' });

    const pending = await post(portal.endpoint, 'ConnectPending', { Account: alice.name, AdminRequest: await pendingQuery(alice) });
    expect(pending.status, JSON.stringify(pending.body)).toBe(200);
    const list = pending.response.Pending as Array<Record<string, unknown>>;
    const mine = list.find((p) => p.RequestUDF === RequestUDF);
    expect(mine).toMatchObject({ ServerNonce, Witness, SignedRequest: signedRequest });

    const wrongWitness = await connectionResult(RequestUDF, 'Accepted', 'AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA', alice.adminSigner);
    const bad = await post(portal.endpoint, 'ConnectComplete', { RequestId: rid(), Account: alice.name, Result: wrongWitness });
    expect(bad.status).toBe(409);
    expect(String(bad.response.StatusDescription)).toContain('witness');

    const result = await connectionResult(RequestUDF, 'Accepted', Witness, alice.adminSigner);
    const done = await post(portal.endpoint, 'ConnectComplete', { RequestId: rid(), Account: alice.name, Result: result });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.response).toMatchObject({ RequestUDF, Result: 'Accepted' });

    const status2 = await post(portal.endpoint, 'ConnectStatus', { Account: alice.name, RequestUDF });
    expect(status2.response).toMatchObject({ State: 'Accepted', Result: result });
    const twice = await post(portal.endpoint, 'ConnectComplete', { RequestId: rid(), Account: alice.name, Result: result });
    expect(twice.status).toBe(409);

    // The admin then publishes the Personal Profile listing the device.
    const withDevice = await personalWithDevice(alice, device);
    expect((await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: withDevice })).status).toBe(200);
    const after = await post(portal.endpoint, 'ConnectPending', { Account: alice.name, AdminRequest: await pendingQuery(alice) });
    expect((after.response.Pending as unknown[]).some((p) => (p as { RequestUDF: string }).RequestUDF === RequestUDF)).toBe(false);
  });

  it('refuses a request not signed by the device key it names (403), forged (401), for another master (400)', async () => {
    const device = await makeDevice();
    const other = await makeDevice();
    const bySomeoneElse = await connectionRequest(alice, device, { signer: other.signer });
    expect((await post(portal.endpoint, 'ConnectStart', { RequestId: rid(), Account: alice.name, SignedRequest: bySomeoneElse.signedRequest })).status).toBe(403);
    const good = await connectionRequest(alice, device);
    const forged: JwsGeneral = structuredClone(good.signedRequest);
    const s = fromB64u(forged.signatures[0]!.signature);
    const t = new Uint8Array(s);
    t[5] = (t[5] ?? 0) ^ 0x80;
    forged.signatures[0]!.signature = b64u(t);
    expect((await post(portal.endpoint, 'ConnectStart', { RequestId: rid(), Account: alice.name, SignedRequest: forged })).status).toBe(401);
    const wrongParent = await connectionRequest(alice, device, { parent: udfDigest(utf8('other master')) });
    expect((await post(portal.endpoint, 'ConnectStart', { RequestId: rid(), Account: alice.name, SignedRequest: wrongParent.signedRequest })).status).toBe(400);
    const again = await post(portal.endpoint, 'ConnectStart', { RequestId: rid(), Account: alice.name, SignedRequest: good.signedRequest });
    expect(again.status).toBe(200);
    const dup = await post(portal.endpoint, 'ConnectStart', { RequestId: rid(), Account: alice.name, SignedRequest: good.signedRequest });
    expect(dup.status).toBe(409);
  });

  it('ConnectPending / ConnectComplete by a device key, an unknown key or a stale time are refused', async () => {
    const device = await makeDevice();
    const { signedRequest } = await connectionRequest(alice, device);
    const start = await post(portal.endpoint, 'ConnectStart', { RequestId: rid(), Account: alice.name, SignedRequest: signedRequest });
    const { RequestUDF, Witness } = start.response as { RequestUDF: string; Witness: string };
    const byDevice = await post(portal.endpoint, 'ConnectPending', { Account: alice.name, AdminRequest: await pendingQuery(alice, device.signer) });
    expect(byDevice.status).toBe(403);
    const byMasterKey = await post(portal.endpoint, 'ConnectPending', { Account: alice.name, AdminRequest: await pendingQuery(alice, alice.masterSigner) });
    expect(byMasterKey.status).toBe(403);
    const stale = await post(portal.endpoint, 'ConnectPending', { Account: alice.name, AdminRequest: await pendingQuery(alice, alice.adminSigner, new Date(Date.now() - 10 * 60_000)) });
    expect(stale.status).toBe(401);
    const forgedQuery = await pendingQuery(alice);
    forgedQuery.payload = b64u(utf8(JSON.stringify({ PendingQuery: { Account: alice.name, Time: new Date(Date.now() + 1000).toISOString() } })));
    expect((await post(portal.endpoint, 'ConnectPending', { Account: alice.name, AdminRequest: forgedQuery })).status).toBe(401);
    const completeByDevice = await connectionResult(RequestUDF, 'Accepted', Witness, device.signer);
    expect((await post(portal.endpoint, 'ConnectComplete', { RequestId: rid(), Account: alice.name, Result: completeByDevice })).status).toBe(403);
    const unknown = await connectionResult(RequestUDF, 'Accepted', Witness, testSigner(testKey('Ed25519')));
    expect((await post(portal.endpoint, 'ConnectComplete', { RequestId: rid(), Account: alice.name, Result: unknown })).status).toBe(403);
    const refused = await connectionResult(RequestUDF, 'Refused', Witness, alice.adminSigner);
    const r = await post(portal.endpoint, 'ConnectComplete', { RequestId: rid(), Account: alice.name, Result: refused });
    expect(r.response).toMatchObject({ Result: 'Refused' });
    expect((await post(portal.endpoint, 'ConnectStatus', { Account: alice.name, RequestUDF: udfNonce() })).status).toBe(404);
  });
});

describe('escrow', () => {
  it('EscrowPut / EscrowGet anonymously; same id twice: identical → 200 without a new log entry, different → 409', async () => {
    const master = testKey('Ed25519');
    const escrowKey = testKey('X25519');
    const { blob, blobId } = createOfflineEscrow({ MasterSignatureKey: master.privateJwk as never, MasterEscrowKeys: [escrowKey.privateJwk as never] });
    const put = await post(portal.endpoint, 'EscrowPut', { RequestId: rid(), Entry: blob });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(put.response.Identifier).toBe(blobId);
    const count = (await post(portal.endpoint, 'LogHead', {})).response.Count;
    const again = await post(portal.endpoint, 'EscrowPut', { RequestId: rid(), Entry: blob });
    expect(again.status).toBe(200);
    expect((await post(portal.endpoint, 'LogHead', {})).response.Count).toBe(count);
    const other = createOfflineEscrow({ MasterSignatureKey: testKey('Ed25519').privateJwk as never, MasterEscrowKeys: [] });
    const different = { OfflineEscrowEntry: { ...other.blob.OfflineEscrowEntry, Identifier: blobId } };
    const mismatch = await post(portal.endpoint, 'EscrowPut', { RequestId: rid(), Entry: different });
    expect(mismatch.status).toBe(400); // the Identifier is not the kid of the entry's JWE
    const get = await post(portal.endpoint, 'EscrowGet', { Identifier: blobId });
    expect(get.status).toBe(200);
    expect(get.response.Entry).toEqual(blob);
    expect((await post(portal.endpoint, 'EscrowGet', { Identifier: other.blobId })).status).toBe(404);
  });
});

describe('log transactions', () => {
  it('LogProof by Index and by RequestId gives an inclusion proof the client checks against the signed head', async () => {
    const requestId = rid();
    const pub = await post(portal.endpoint, 'Publish', { RequestId: requestId, Account: alice.name, Entry: await alice.nextPersonal() });
    expect(pub.status).toBe(200);
    const index = pub.response.LogIndex as number;
    for (const selector of [{ Index: index }, { RequestId: requestId }]) {
      const p = await post(portal.endpoint, 'LogProof', selector);
      expect(p.status, JSON.stringify(p.body)).toBe(200);
      const head = signedHeadPayload(p.response.Head as JwsGeneral);
      const entry = verifyInclusion(p.response.Entry as string, p.response.Proof as string[], head);
      expect(entry.Index).toBe(index);
      expect(entry.Type).toBe('Publish');
      expect(entry.Body).toMatchObject({ RequestId: requestId, Account: alice.name, Identifier: alice.master.Identifier });
    }
    expect((await post(portal.endpoint, 'LogProof', { Index: 1_000_000 })).status).toBe(404);
  });

  it('LogHead is signed by the portal key over the whole log; LogEntries pages through it (Count ≤ 1000)', async () => {
    const h = await post(portal.endpoint, 'LogHead', {});
    const count = h.response.Count as number;
    const lines: string[] = [];
    for (let from = 0; from < count; from += 7) {
      const page = await post(portal.endpoint, 'LogEntries', { From: from, Count: 7 });
      lines.push(...(page.response.Lines as string[]));
    }
    expect(lines).toHaveLength(count);
    const v = await verifyLogHead(h.response.Head, lines, (kid) => (kid === portal.portalKey.keyId ? portal.portalKey.publicJwk : undefined));
    expect(v.Count).toBe(count);
    expect((await post(portal.endpoint, 'LogEntries', { From: 0, Count: 1001 })).status).toBe(400);
  });

  it('FederationHeads without a federation handler reports the own head', async () => {
    const r = await post(portal.endpoint, 'FederationHeads', {});
    expect(r.status).toBe(200);
    expect(r.response).toMatchObject({ Known: {} });
  });
});

describe('quotas', () => {
  it('updates per account per hour → 429 (nothing stored); accounts per client address per hour → 429', async () => {
    const p = await startTestPortal({ quotas: { updatesPerHour: 3, accountsPerHour: 2 } });
    try {
      const a = await makeAccount();
      expect((await post(p.endpoint, 'CreateAccount', a.createRequest())).status).toBe(200);
      for (let i = 0; i < 3; i++) {
        expect((await post(p.endpoint, 'Publish', { RequestId: rid(), Account: a.name, Entry: await a.nextPersonal() })).status).toBe(200);
      }
      const over = await post(p.endpoint, 'Publish', { RequestId: rid(), Account: a.name, Entry: await a.nextPersonal() });
      expect(over.status).toBe(429);
      expect(over.response.Code).toBe(PortalErrorCode.QUOTA);
      const got = await post(p.endpoint, 'Get', { Identifier: a.master.Identifier, Type: ProfileType.Personal });
      expect(readProfile((got.response.Entries as JwsGeneral[])[0]).profile.Sequence).toBe(4);
      // another account is not affected
      const b = await makeAccount();
      expect((await post(p.endpoint, 'CreateAccount', b.createRequest())).status).toBe(200);
      expect((await post(p.endpoint, 'Publish', { RequestId: rid(), Account: b.name, Entry: await b.nextPersonal() })).status).toBe(200);
      // third account from the same address within the hour
      const c = await makeAccount();
      const third = await post(p.endpoint, 'CreateAccount', c.createRequest());
      expect(third.status).toBe(429);
      expect(String(third.response.StatusDescription)).toContain('127.0.0.1');
    } finally {
      await p.close();
    }
  });
});

describe('bad requests', () => {
  it('unknown transaction, missing RequestId, a RequestId that is not a nonce UDF, a non-JWS Entry → 400', async () => {
    expect((await post(portal.endpoint, 'Frobnicate', {})).status).toBe(400);
    expect((await post(portal.endpoint, 'Publish', { Account: alice.name, Entry: alice.signedPersonal })).status).toBe(400);
    expect((await post(portal.endpoint, 'Publish', { RequestId: 'hello', Account: alice.name, Entry: alice.signedPersonal })).status).toBe(400);
    expect((await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: { payload: 1 } })).status).toBe(400);
    const unsignedJunk = await signJws(utf8('{"Nope":{}}'), [alice.adminSigner]);
    expect((await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: alice.name, Entry: unsignedJunk })).status).toBe(400);
  });
});

describe('handle() without HTTP', () => {
  it('runs a state change again when another writer took its log index (LogAppendConflict), with one effect', async () => {
    const { openStorage, StorageConflict } = await import('../../src/portal/storage.js');
    const { Notary } = await import('../../src/portal/notary.js');
    const { handle } = await import('../../src/portal/transactions.js');
    const base = await openStorage('sqlite::memory:');
    let failures = 1;
    const storage = {
      kind: base.kind,
      init: () => base.init(),
      close: () => base.close(),
      transaction: <T>(fn: (tx: import('../../src/portal/storage.js').PortalTx) => Promise<T>) => base.transaction((tx) => fn(new Proxy(tx, {
        get(target, prop, receiver) {
          if (prop === 'appendLog' && failures > 0) {
            return async () => {
              failures -= 1;
              throw new StorageConflict('log index 0 is not the next one (count is 1)');
            };
          }
          const v = Reflect.get(target, prop, receiver) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }))),
    };
    const signer = testSigner(testKey('Ed25519'));
    const ctx = {
      storage, portalKey: signer, notary: new Notary({ storage, signer, headSeconds: 0 }), now: () => new Date(),
      clientAddress: '127.0.0.1', quotas: { updatesPerHour: 0, accountsPerHour: 0 },
    };
    const acct = await makeAccount();
    const r = await handle('CreateAccount', acct.createRequest(), ctx);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(failures).toBe(0);
    expect(await base.transaction((tx) => tx.logCount())).toBe(1);
    const unknown = await handle('Nope', {}, ctx);
    expect(unknown).toMatchObject({ status: 400, body: { Error: { Code: 'ERR_PORTAL_BAD_REQUEST' } } });
    await base.close();
  });
});
