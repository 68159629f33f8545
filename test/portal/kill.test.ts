/**
 * Crash safety: a child portal (`node bin/meshkit.js portal serve`, SQLite) is killed with SIGKILL while
 * clients publish in a loop; restarted on the same database file it opens, every profile a client got 200
 * for is there, the log head count equals the number of accepted transactions, and `meshkit portal log
 * verify` passes on the exported log and signed head. Needs `npm run build`.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JwsGeneral } from '../../src/core/jose.js';
import { ProfileType, readProfile, verifyProfile } from '../../src/core/profiles.js';
import {
  PORTAL_PASSPHRASE,
  makeAccount,
  post,
  requireBuild,
  rid,
  runMeshkit,
  startChildPortal,
  type ChildPortal,
  type TestAccount,
} from '../helpers/portal.js';

const children: ChildPortal[] = [];
let dir: string | undefined;
afterAll(async () => {
  for (const c of children) await c.kill9();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

interface Client {
  account: TestAccount;
  /** Highest Sequence the portal answered 200 for. */
  lastOk: number;
  okRequestIds: string[];
}

describe('kill -9 during writes', () => {
  it('the database and the log verify after restart, and nothing acknowledged is lost', async () => {
    requireBuild();
    const first = await startChildPortal({ args: ['--head-interval', '5'] });
    children.push(first);
    dir = first.dir;
    const clients: Client[] = [];
    for (let i = 0; i < 3; i++) {
      const account = await makeAccount();
      const c = account.createRequest();
      const r = await post(first.endpoint, 'CreateAccount', c);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      clients.push({ account, lastOk: 1, okRequestIds: [c.RequestId as string] });
    }

    // Each client publishes successive versions as fast as it can until the portal dies.
    let killed = false;
    const loops = clients.map(async (client) => {
      for (;;) {
        const entry = await client.account.nextPersonal();
        const requestId = rid();
        try {
          const r = await post(first.endpoint, 'Publish', { RequestId: requestId, Account: client.account.name, Entry: entry });
          if (r.status !== 200) throw new Error(`unexpected ${r.status}: ${JSON.stringify(r.body)}`);
          client.lastOk = client.account.personal.Sequence;
          client.okRequestIds.push(requestId);
        } catch (e) {
          if (killed) return;
          throw e;
        }
      }
    });
    const totalOk = (): number => clients.reduce((n, c) => n + c.okRequestIds.length, 0);
    while (totalOk() < 60) await new Promise((r) => setTimeout(r, 5));
    killed = true;
    await first.kill9();
    expect(first.child.signalCode).toBe('SIGKILL');
    await Promise.all(loops);

    // Restart on the same database and key store.
    const second = await startChildPortal({ dir: first.dir });
    children.push(second);
    let accepted = 0;
    for (const client of clients) {
      const got = await post(second.endpoint, 'Get', { Identifier: client.account.master.Identifier, Type: ProfileType.Personal });
      expect(got.status).toBe(200);
      const stored = (got.response.Entries as JwsGeneral[])[0]!;
      const seq = readProfile(stored).profile.Sequence;
      // Everything acknowledged is there; at most the one request in flight at the kill was committed unacknowledged.
      expect(seq).toBeGreaterThanOrEqual(client.lastOk);
      expect(seq).toBeLessThanOrEqual(client.lastOk + 1);
      await verifyProfile(stored, { master: client.account.signedMaster });
      accepted += seq; // CreateAccount (Sequence 1) + one Publish per later Sequence
    }
    const head = await post(second.endpoint, 'LogHead', {});
    expect(head.status).toBe(200);
    expect(head.response.Count).toBe(accepted);
    expect(await second.stop()).toBe(0);

    // Offline: export the log and its signed head, verify both against the portal key.
    const dbFile = join(first.dir, 'portal.db');
    const headFile = join(first.dir, 'head.json');
    const exp = await runMeshkit(['portal', 'log', 'export', '--db', `sqlite:${dbFile}`, '--head', headFile]);
    expect(exp.code, exp.stderr).toBe(0);
    const logFile = join(first.dir, 'log.jsonl');
    writeFileSync(logFile, exp.stdout);
    const shown = await runMeshkit(['key', 'show', '--key', first.portalKeyUri, '--json']);
    expect(shown.code, shown.stderr).toBe(0);
    const keyFile = join(first.dir, 'portal-key.show.json');
    writeFileSync(keyFile, shown.stdout);
    const verified = await runMeshkit(['portal', 'log', 'verify', logFile, '--head', headFile, '--portal-key-jwk', keyFile, '--json'],
      { env: { MESHKIT_PASSPHRASE: PORTAL_PASSPHRASE } });
    expect(verified.code, verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, count: accepted, signedHead: { count: accepted, signatureChecked: true } });

    // Every acknowledged RequestId has its log entry.
    const logged = new Set(exp.stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as { Body: { RequestId: string } }).Body.RequestId));
    for (const client of clients) for (const id of client.okRequestIds) expect(logged.has(id)).toBe(true);
  });
});
