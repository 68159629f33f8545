/**
 * 200 concurrent clients against one portal (SQLite), each with its own PortalClient: every client
 * creates an account and publishes. Every call either succeeds or gets a typed 429 (the per-address
 * account quota) or 409 (two clients racing for one account name) — nothing else. Afterwards every
 * accepted profile is fetchable and verifies, the counts agree with the log, and `meshkit portal log
 * export` + `portal log verify` (run in-process through the CLI) pass with the portal's signed head
 * and key. No timing assertions.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/core/errors.js';
import {
  composeDeviceProfile,
  composeMasterProfile,
  composePersonalProfile,
  connectDevice,
  ProfileType,
  readProfile,
  signProfile,
  verifyProfile,
  type SignedProfile,
  type VerifiedProfile,
} from '../../src/core/profiles.js';
import { main } from '../../src/cli/main.js';
import { PortalClient, PortalError, verifyLogProof } from '../../src/portal/client.js';
import { startPortalServer, type PortalServer } from '../../src/portal/server.js';
import { openStorage } from '../../src/portal/storage.js';
import { testKey, testSigner, type TestKey } from '../helpers/software-signer.js';

const CLIENTS = 200;
const SHARED = 20; // the last 20 clients race in pairs for 10 account names
const ACCOUNT_QUOTA = 150; // accounts per client address per hour (all clients are 127.0.0.1)

interface Outcome {
  account: string;
  created: boolean;
  refusal?: { status: number | undefined; code: string };
  published?: number;
}

async function captureStdout(fn: () => Promise<number>): Promise<{ code: number; stdout: string }> {
  const write = process.stdout.write.bind(process.stdout);
  let stdout = '';
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await fn(), stdout };
  } finally {
    process.stdout.write = write;
  }
}

describe(`${CLIENTS} concurrent clients against one portal`, () => {
  let dir: string;
  let db: string;
  let portal: PortalServer;
  let portalKey: TestKey;
  const outcomes: Outcome[] = [];
  const keep = new Map<string, { master: SignedProfile; personal: SignedProfile; device: SignedProfile }>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshkit-portal-load-'));
    db = `sqlite:${join(dir, 'portal.db')}`;
    portalKey = testKey('Ed25519');
    portal = await startPortalServer({
      storage: await openStorage(db),
      portalKey: testSigner(portalKey),
      plainHttp: true,
      quotas: { accountsPerHour: ACCOUNT_QUOTA, updatesPerHour: 0 },
      headSeconds: 0,
      onError: () => undefined,
    });
  });
  afterAll(async () => {
    await portal?.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('every client succeeds or gets a typed 429/409', async () => {
    // Build everything first, so the requests really arrive together.
    const plans = await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
      const master = testKey('Ed448');
      const admin = testKey('Ed25519');
      const device = testKey('Ed25519');
      const signedMaster = await signProfile(ProfileType.Master, composeMasterProfile({ signatureKey: master.publicJwk, adminKeys: [admin.publicJwk] }), testSigner(master));
      const personal = composePersonalProfile({ master: signedMaster });
      const signedPersonal = await signProfile(ProfileType.Personal, personal, testSigner(admin));
      const signedDevice = await signProfile(ProfileType.Device, composeDeviceProfile({ description: `load device ${i}`, signatureKey: device.publicJwk }), testSigner(device));
      const connected = await signProfile(ProfileType.Personal, connectDevice(personal, signedDevice), testSigner(admin));
      const account = i < CLIENTS - SHARED ? `user${i}@portal.test` : `shared${i % (SHARED / 2)}@portal.test`;
      return { account, signedMaster, signedPersonal, signedDevice, connected };
    }));

    const results = await Promise.all(plans.map(async (p): Promise<Outcome> => {
      const client = new PortalClient(portalUrl(), { retries: 2, backoffMs: 20, timeoutMs: 60_000, maxRetryAfterMs: 0 });
      try {
        try {
          await client.createAccount(p.account, p.signedPersonal);
        } catch (e) {
          if (!(e instanceof PortalError)) throw e;
          return { account: p.account, created: false, refusal: { status: e.status, code: e.code } };
        }
        await client.publish(p.account, p.signedDevice);
        await client.publish(p.account, p.connected);
        keep.set(p.account, { master: p.signedMaster, personal: p.connected, device: p.signedDevice });
        return { account: p.account, created: true, published: 2 };
      } finally {
        client.close();
      }
    }));
    outcomes.push(...results);

    const refused = outcomes.filter((o) => !o.created);
    for (const o of refused) {
      expect([[429, ErrorCode.PORTAL_QUOTA], [409, ErrorCode.PORTAL_CONFLICT]], `${o.account}: ${JSON.stringify(o.refusal)}`)
        .toContainEqual([o.refusal?.status, o.refusal?.code]);
      if (o.refusal?.status === 409) expect(o.account).toMatch(/^shared/);
    }
    const created = outcomes.filter((o) => o.created);
    // 190 distinct names were asked for, more than the quota: exactly the quota is granted.
    expect(created).toHaveLength(ACCOUNT_QUOTA);
    expect(new Set(created.map((o) => o.account)).size).toBe(created.length);
    // Of each raced name at most one creation won.
    for (let k = 0; k < SHARED / 2; k++) {
      expect(created.filter((o) => o.account === `shared${k}@portal.test`).length).toBeLessThanOrEqual(1);
    }
    expect(refused.length + created.length).toBe(CLIENTS);
  });

  it('every accepted profile is fetchable and verifies', async () => {
    const client = new PortalClient(portalUrl());
    try {
      await Promise.all([...keep.entries()].map(async ([account, k]) => {
        const got = await client.get({ account });
        const types = got.Entries.map((e) => readProfile(e).type).sort();
        expect(types, account).toContain(ProfileType.Personal);
        expect(types, account).toContain(ProfileType.Device);
        const personal = got.Entries.find((e) => readProfile(e).type === ProfileType.Personal)!;
        const vp = (await verifyProfile(personal, { master: k.master })) as VerifiedProfile<'PersonalProfile'>;
        expect(vp.sequence).toBe(2);
        expect(vp.devices?.map((d) => d.identifier)).toEqual([readProfile(k.device).profile.Identifier]);
        const device = got.Entries.find((e) => readProfile(e).type === ProfileType.Device)!;
        expect((await verifyProfile(device, { personal: vp })).connected).toBe(true);
        // and by identifier
        const byId = await client.get({ identifier: readProfile(k.device).profile.Identifier, type: ProfileType.Device });
        expect(byId.Entries).toHaveLength(1);
      }));
    } finally {
      client.close();
    }
  });

  it('the log counts match the accepted transactions and a publish is proven against the signed head', async () => {
    const client = new PortalClient(portalUrl());
    try {
      const head = await client.logHead();
      const created = outcomes.filter((o) => o.created).length;
      expect(head.Count).toBe(created * 3);
      const lines: string[] = [];
      while (lines.length < head.Count) lines.push(...(await client.logEntries(lines.length, Math.min(1000, head.Count - lines.length))).Lines);
      const types = lines.map((l) => (JSON.parse(l) as { Type: string }).Type);
      expect(types.filter((t) => t === 'CreateAccount')).toHaveLength(created);
      expect(types.filter((t) => t === 'Publish')).toHaveLength(created * 2);
      const { entry } = await verifyLogProof(await client.logProof(head.Count - 1), portalKey.publicJwk);
      expect(entry.Index).toBe(head.Count - 1);
    } finally {
      client.close();
    }
  });

  it('`portal log export` + `portal log verify` pass on the log, with the signed head and portal key', async () => {
    await portal.close();
    const headFile = join(dir, 'head.json');
    const exported = await captureStdout(() => main(['portal', 'log', 'export', '--db', db, '--head', headFile]));
    expect(exported.code).toBe(0);
    const logFile = join(dir, 'log.jsonl');
    writeFileSync(logFile, exported.stdout);
    const keyFile = join(dir, 'portal-key.jwk');
    writeFileSync(keyFile, JSON.stringify(portalKey.publicJwk));
    const verified = await captureStdout(() => main(['portal', 'log', 'verify', logFile, '--head', headFile, '--portal-key-jwk', keyFile, '--json']));
    expect(verified.code, verified.stdout).toBe(0);
    const report = JSON.parse(verified.stdout) as { ok: boolean; count: number; signedHead?: { count: number; signatureChecked: boolean } };
    expect(report.ok).toBe(true);
    expect(report.count).toBe(outcomes.filter((o) => o.created).length * 3);
    expect(report.signedHead).toMatchObject({ count: report.count, signatureChecked: true });
  });

  function portalUrl(): string {
    return portal.url;
  }
});
