/**
 * Federation (docs/portal.md "Federation") between real portals on loopback (SQLite): heads are
 * exchanged and stored by portal key; a portal whose log contradicts its earlier head — simulated by
 * a second portal instance with the same portal key on a different database — is detected and
 * reported (shorter log; same Count, different Head; an entry that does not chain), while a genuine
 * restart on the same database is not reported. Plus the `portal federate` command.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64u, utf8 } from '../../src/core/bytes.js';
import { ErrorCode } from '../../src/core/errors.js';
import { signLogHead } from '../../src/core/hashlog.js';
import { keyId } from '../../src/core/keys.js';
import { udfNonce } from '../../src/core/udf.js';
import { main } from '../../src/cli/main.js';
import { PortalClient } from '../../src/portal/client.js';
import {
  checkPeerHead,
  federate,
  federationHeadsHandler,
  FilePeerHeadStore,
  headPayload,
  MemoryPeerHeadStore,
  type StoredPeerHead,
} from '../../src/portal/federation.js';
import { startPortalServer, type PortalServer } from '../../src/portal/server.js';
import { openStorage } from '../../src/portal/storage.js';
import { testKey, testSigner, type TestKey } from '../helpers/software-signer.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshkit-federation-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function startPortal(key: TestKey, dbName: string): Promise<PortalServer> {
  return startPortalServer({
    storage: await openStorage(`sqlite:${join(dir, dbName)}`),
    portalKey: testSigner(key),
    plainHttp: true,
    headSeconds: 0,
    onError: () => undefined,
  });
}

/** Appends `n` log entries to a portal (anonymous escrow puts). */
async function addEntries(url: string, n: number): Promise<void> {
  const client = new PortalClient(url);
  try {
    for (let i = 0; i < n; i++) {
      const id = udfNonce(256);
      await client.escrowPut({ OfflineEscrowEntry: { Identifier: id, EncryptedData: { protected: b64u(utf8(JSON.stringify({ alg: 'dir', enc: 'A256GCM', kid: id }))), iv: 'AA', ciphertext: 'AA', tag: 'AA' } } });
    }
  } finally {
    client.close();
  }
}

async function count(url: string): Promise<number> {
  const client = new PortalClient(url);
  try {
    return (await client.logHead()).Count;
  } finally {
    client.close();
  }
}

describe('federate between two portals', () => {
  const keyA = testKey('Ed25519');
  const keyB = testKey('Ed25519');
  let a: PortalServer;
  let b: PortalServer;
  const store = new MemoryPeerHeadStore();
  const peerKeys = (): Record<string, typeof keyA.publicJwk> => ({ [new URL(a.url).origin]: keyA.publicJwk, [new URL(b.url).origin]: keyB.publicJwk });

  beforeAll(async () => {
    a = await startPortal(keyA, 'a.db');
    b = await startPortal(keyB, 'b.db');
    await addEntries(a.url, 5);
    await addEntries(b.url, 2);
  });
  afterAll(async () => {
    await a.close().catch(() => undefined);
    await b.close().catch(() => undefined);
  });

  it('first contact stores each peer head by portal key', async () => {
    const out = await federate([a.url, b.url], store, { peerKeys: peerKeys() });
    expect(out.map((o) => [o.status, o.portal, o.count])).toEqual([
      ['first-contact', keyA.keyId, 5],
      ['first-contact', keyB.keyId, 2],
    ]);
    expect((await store.get(keyA.keyId))?.count).toBe(5);
    expect((await store.get(keyB.keyId))?.count).toBe(2);
  });

  it('a head that extends the stored one is accepted; an unchanged one too', async () => {
    await addEntries(a.url, 3);
    const out = await federate([a.url, b.url], store, { peerKeys: peerKeys() });
    expect(out.map((o) => [o.status, o.count])).toEqual([['advanced', 8], ['unchanged', 2]]);
    expect(await store.reports()).toEqual([]);
  });

  it('a genuine restart on the same database is not a contradiction', async () => {
    const url = a.url;
    await a.close();
    a = await startPortal(keyA, 'a.db');
    await addEntries(a.url, 1);
    const keys = { [new URL(a.url).origin]: keyA.publicJwk };
    const out = await federate([a.url], store, { peerKeys: keys });
    expect(out[0]).toMatchObject({ status: 'advanced', count: 9 });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:/);
  });

  describe('a second instance with the same portal key on another database', () => {
    let impostor: PortalServer;
    let stored: StoredPeerHead;
    beforeAll(async () => {
      stored = (await store.get(keyA.keyId))!;
      expect(stored.count).toBe(9);
      impostor = await startPortal(keyA, 'a-rewritten.db');
    });
    afterAll(async () => {
      await impostor.close().catch(() => undefined);
    });

    const federateImpostor = async () => federate([impostor.url], store, { peerKeys: { [new URL(impostor.url).origin]: keyA.publicJwk } });

    it('a shorter log is reported, and the stored head is kept', async () => {
      await addEntries(impostor.url, 4);
      const [o] = await federateImpostor();
      expect(o?.status).toBe('contradiction');
      expect(o?.report).toMatchObject({ peer: new URL(impostor.url).origin, portal: keyA.keyId, oldHead: stored.head });
      expect(o?.report?.problem).toMatch(/shorter: the new head has Count 4, the stored one 9/);
      expect(headPayload(o!.report!.newHead).Count).toBe(4);
      expect((await store.get(keyA.keyId))?.head).toEqual(stored.head);
    });

    it('the same Count with a different Head is reported', async () => {
      await addEntries(impostor.url, 5);
      expect(await count(impostor.url)).toBe(9);
      const [o] = await federateImpostor();
      expect(o?.status).toBe('contradiction');
      expect(o?.report?.problem).toMatch(/same Count 9, different Head/);
    });

    it('a longer log whose entry at the old Count−1 is not the old Head is reported', async () => {
      await addEntries(impostor.url, 3);
      const [o] = await federateImpostor();
      expect(o?.status).toBe('contradiction');
      expect(o?.report?.problem).toMatch(/entry 8 has Id .* not the stored Head .*contradicts its earlier head/);
      const reports = await store.reports();
      expect(reports).toHaveLength(3);
      expect(reports.every((r) => r.portal === keyA.keyId && r.oldHead !== null)).toBe(true);
      expect((await store.get(keyA.keyId))?.count).toBe(9);
    });
  });

  it('a head not signed by the peer portal key is reported', async () => {
    const client = new PortalClient(b.url);
    try {
      const stored = (await store.get(keyB.keyId))!;
      const other = testKey('Ed25519');
      const forged = await signLogHead({ index: stored.count, id: 'AAAA-BBBB' }, testSigner(other));
      const r = await checkPeerHead(client, stored, forged);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.report.problem).toMatch(/signature does not hold under portal key/);
      // A head signed by the right key over a Count the log does not reach.
      const overclaim = await signLogHead({ index: stored.count + 10, id: stored.headId ?? 'X' }, testSigner(keyB));
      const r2 = await checkPeerHead(client, stored, overclaim);
      expect(r2.ok).toBe(false);
      if (!r2.ok) expect(r2.report.problem).toMatch(/log ends at \d+ entries but its head claims 13/);
    } finally {
      client.close();
    }
  });

  it('an unreachable peer is an outcome, not an exception; no key known is "failed"', async () => {
    const out = await federate(['http://127.0.0.1:9'], new MemoryPeerHeadStore(), { client: { retries: 0, timeoutMs: 500 } });
    expect(out[0]).toMatchObject({ status: 'unreachable' });
    expect(out[0]?.error).toContain(ErrorCode.PORTAL_UNAVAILABLE);
    // Without --peer-key the key must come from Hello's PortalKey; a portal that gives none cannot be checked.
    const client = new PortalClient(b.url);
    const helloKey = (await client.hello())['PortalKey'];
    client.close();
    const fresh = await federate([b.url], new MemoryPeerHeadStore());
    expect(fresh[0]?.status).toBe(helloKey === undefined ? 'failed' : 'first-contact');
    if (helloKey === undefined) expect(fresh[0]?.error).toContain(ErrorCode.PORTAL_FEDERATION);
  });

  it('the file store keeps heads and reports across instances', async () => {
    const file = join(dir, 'federation.json');
    const s1 = new FilePeerHeadStore(file);
    await federate([b.url], s1, { peerKeys: peerKeys() });
    const s2 = new FilePeerHeadStore(file);
    expect((await s2.get(keyB.keyId))?.count).toBe(await count(b.url));
    expect(keyId((await s2.get(keyB.keyId))!.key)).toBe(keyB.keyId);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toHaveProperty('Reports');
  });
});

async function captureStdout(fn: () => Promise<number>): Promise<{ code: number; stdout: string }> {
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  let stdout = '';
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return { code: await fn(), stdout };
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
}

describe('meshkit portal federate', () => {
  it('stores the peer head, then reports a second instance that contradicts it (exit 1)', async () => {
    const key = testKey('Ed25519');
    const keyFile = join(dir, 'cli-peer.jwk');
    writeFileSync(keyFile, JSON.stringify(key.publicJwk));
    const state = join(dir, 'cli-federation.json');
    let p = await startPortal(key, 'cli-a.db');
    try {
      await addEntries(p.url, 3);
      const first = await captureStdout(() => main(['portal', 'federate', '--peer', p.url, '--peer-key', `${p.url}=${keyFile}`, '--state', state, '--json']));
      expect(first.code, first.stdout).toBe(0);
      const doc = JSON.parse(first.stdout) as { ok: boolean; rounds: Array<Array<{ status: string; count: number }>> };
      expect(doc.ok).toBe(true);
      expect(doc.rounds[0]?.[0]).toMatchObject({ status: 'first-contact', count: 3 });
      await p.close();
      p = await startPortal(key, 'cli-a-rewritten.db');
      await addEntries(p.url, 1);
      const second = await captureStdout(() => main(['portal', 'federate', '--peer', p.url, '--peer-key', `${p.url}=${keyFile}`, '--state', state, '--json']));
      expect(second.code).toBe(1);
      const doc2 = JSON.parse(second.stdout) as { ok: boolean; reports: Array<{ problem: string; portal: string }> };
      expect(doc2.ok).toBe(false);
      expect(doc2.reports).toHaveLength(1);
      expect(doc2.reports[0]).toMatchObject({ portal: key.keyId });
      expect(doc2.reports[0]?.problem).toMatch(/shorter/);
      // The report is kept in the state file.
      expect((JSON.parse(readFileSync(state, 'utf8')) as { Reports: unknown[] }).Reports).toHaveLength(1);
    } finally {
      await p.close();
    }
  });

  it('is a usage error without --peer (exit 2)', async () => {
    const r = await captureStdout(() => main(['portal', 'federate', '--state', join(dir, 'x.json')]));
    expect(r.code).toBe(2);
  });
});

describe('FederationHeads on a portal that federates', () => {
  it('checks pushed heads of followed portals, reports a contradicting one, ignores unknown ones', async () => {
    const keyA = testKey('Ed25519');
    const keyB = testKey('Ed25519');
    const storeB = new MemoryPeerHeadStore();
    let a = await startPortal(keyA, 'fh-a.db');
    const b = await startPortalServer({
      storage: await openStorage(`sqlite:${join(dir, 'fh-b.db')}`), portalKey: testSigner(keyB), plainHttp: true, headSeconds: 0,
      onError: () => undefined, federation: federationHeadsHandler(storeB),
    });
    const toB = new PortalClient(b.url);
    try {
      await addEntries(a.url, 2);
      await addEntries(b.url, 1);
      await federate([a.url], storeB, { peerKeys: { [new URL(a.url).origin]: keyA.publicJwk } });
      await addEntries(a.url, 2);
      const headA = (await new PortalClient(a.url).logHead()).Head!;
      const r = await toB.federationHeads([headA]);
      expect(r['Checked']).toEqual([{ Portal: keyA.keyId, Status: 'advanced' }]);
      expect(r.Known[keyA.keyId]).toEqual(headA);
      expect(headPayload(r.Head!).Count).toBe(1);

      // A second instance of A's key on another database takes over A's address (as a DNS switch
      // would; here the stored URL is pointed at it, since the old port cannot be reclaimed portably).
      await a.close();
      a = await startPortal(keyA, 'fh-a-rewritten.db');
      await addEntries(a.url, 6);
      const stored = (await storeB.get(keyA.keyId))!;
      await storeB.put({ ...stored, url: new URL(a.url).origin });
      const forgedHistory = (await new PortalClient(a.url).logHead()).Head!;
      const r2 = await toB.federationHeads([forgedHistory]);
      expect(r2['Checked']).toEqual([expect.objectContaining({ Portal: keyA.keyId, Status: 'contradiction' })]);
      expect((await storeB.reports())[0]?.problem).toMatch(/entry 3 has Id .* not the stored Head/);
      expect(r2.Known[keyA.keyId]).toEqual(headA); // the stored head is kept

      const stranger = await signLogHead({ index: 0, id: 'AAAA' }, testSigner(testKey('Ed25519')));
      expect((await toB.federationHeads([stranger]))['Checked']).toEqual([expect.objectContaining({ Status: 'ignored' })]);
      await expect(toB.request('FederationHeads', { Heads: 'nope' })).rejects.toMatchObject({ status: 400 });
    } finally {
      toB.close();
      await a.close();
      await b.close();
    }
  });
});
