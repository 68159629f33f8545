/**
 * The notary log: lines in the hashlog format, appended in the storage transaction of the change (a
 * rolled-back change leaves no entry), heads signed every N entries / T seconds, inclusion proofs, and
 * `meshkit portal log export|verify` (needs `npm run build`) catching a hand-edited entry or head.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashLog, verifyInclusion, verifyLog, verifyLogHead } from '../../src/core/hashlog.js';
import { Notary, makeLogLine, signedHeadPayload } from '../../src/portal/notary.js';
import { openStorage, type PortalStorage } from '../../src/portal/storage.js';
import { testKey, testSigner } from '../helpers/software-signer.js';
import { makeAccount, post, requireBuild, rid, runMeshkit, startTestPortal } from '../helpers/portal.js';

const dir = mkdtempSync(join(tmpdir(), 'meshkit-notary-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('makeLogLine', () => {
  it('produces exactly the line HashLog.append produces', () => {
    const log = new HashLog();
    const time = new Date('2025-01-02T03:04:05.678Z');
    const a = log.append('Publish', { RequestId: 'R', Fingerprint: 'F' }, time);
    const b = log.append('EscrowPut', { RequestId: 'S', Identifier: 'I', Fingerprint: 'G' }, time);
    const l0 = makeLogLine(0, null, time, 'Publish', { RequestId: 'R', Fingerprint: 'F' });
    const l1 = makeLogLine(1, l0.id, time, 'EscrowPut', { RequestId: 'S', Identifier: 'I', Fingerprint: 'G' });
    expect([l0.line, l1.line]).toEqual(log.lines());
    expect([l0.id, l1.id]).toEqual([a.Id, b.Id]);
  });

  it('checks its arguments', () => {
    expect(() => makeLogLine(-1, null, new Date(), 'T', {})).toThrow(RangeError);
    expect(() => makeLogLine(1, null, new Date(), 'T', {})).toThrow(RangeError);
    expect(() => makeLogLine(0, null, new Date(NaN), 'T', {})).toThrow(TypeError);
  });
});

describe('Notary on SQLite', () => {
  let storage: PortalStorage;
  const key = testKey('Ed25519');
  const resolve = (kid: string) => (kid === key.keyId ? key.publicJwk : undefined);
  beforeAll(async () => {
    storage = await openStorage(`sqlite:${join(dir, 'notary.db')}`);
  });
  afterAll(async () => {
    await storage.close();
  });

  it('appends in the caller transaction: a rolled-back transaction leaves no entry', async () => {
    const notary = new Notary({ storage, signer: testSigner(key), headEvery: 3, headSeconds: 0 });
    await storage.transaction((tx) => notary.append(tx, 'Publish', { RequestId: 'a', Fingerprint: 'f' }));
    await expect(storage.transaction(async (tx) => {
      await notary.append(tx, 'Publish', { RequestId: 'b', Fingerprint: 'f' });
      throw new Error('the state change failed');
    })).rejects.toThrow('the state change failed');
    const lines = await storage.transaction((tx) => tx.logLines(0, 100));
    expect(lines).toHaveLength(1);
    expect(verifyLog(lines).count).toBe(1);
  });

  it('signs a head every headEvery committed entries, and on demand; proofs check with verifyInclusion', async () => {
    const notary = new Notary({ storage, signer: testSigner(key), headEvery: 3, headSeconds: 0 });
    await notary.signHead();
    const base = await storage.transaction((tx) => tx.logCount());
    for (let i = 0; i < 3; i++) {
      const e = await storage.transaction((tx) => notary.append(tx, 'Publish', { RequestId: `r${i}`, Fingerprint: 'f' }));
      notary.committed(e.index);
    }
    await notary.stop(); // waits for the signing the third commit started
    const head = await storage.transaction((tx) => tx.latestSignedHead());
    expect(head?.count).toBe(base + 3);
    const lines = await storage.transaction((tx) => tx.logLines(0, 100));
    const v = await verifyLogHead(JSON.parse(head!.jws), lines, resolve);
    expect(v.keyId).toBe(key.keyId);

    const e = await storage.transaction((tx) => notary.append(tx, 'EscrowPut', { RequestId: 'x', Identifier: 'I', Fingerprint: 'f' }));
    const proof = await notary.proof(e.index); // the latest head does not cover it yet: a new one is signed
    const payload = signedHeadPayload(proof.head);
    expect(payload.Count).toBe(e.index + 1);
    expect(verifyInclusion(proof.entry, proof.proof, payload).Type).toBe('EscrowPut');
    const early = await notary.proof(0);
    expect(verifyInclusion(early.entry, early.proof, signedHeadPayload(early.head)).Index).toBe(0);
    await expect(notary.proof(10_000)).rejects.toThrow(RangeError);
  });

  it('signs on its timer every headSeconds while entries are unsigned', async () => {
    const notary = new Notary({ storage, signer: testSigner(key), headEvery: 1000, headSeconds: 1 });
    const e = await storage.transaction((tx) => notary.append(tx, 'Publish', { RequestId: 't', Fingerprint: 'f' }));
    notary.committed(e.index);
    notary.start();
    await new Promise((r) => setTimeout(r, 1600));
    await notary.stop();
    const head = await storage.transaction((tx) => tx.latestSignedHead());
    expect(head?.count).toBe(e.index + 1);
  });
});

describe('meshkit portal log export / verify', () => {
  beforeAll(() => requireBuild());

  it('exports a verifiable log; a hand-edited entry or head is detected and named', async () => {
    const portal = await startTestPortal({ dir, dbFile: join(dir, 'cli.db') });
    const acct = await makeAccount();
    expect((await post(portal.endpoint, 'CreateAccount', acct.createRequest())).status).toBe(200);
    for (let i = 0; i < 5; i++) {
      expect((await post(portal.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: await acct.nextPersonal() })).status).toBe(200);
    }
    await portal.close();
    const keyFile = join(dir, 'portal-key.jwk');
    writeFileSync(keyFile, JSON.stringify(portal.portalKey.publicJwk));
    const logFile = join(dir, 'log.jsonl');
    const headFile = join(dir, 'head.json');
    const exp = await runMeshkit(['portal', 'log', 'export', '--db', `sqlite:${join(dir, 'cli.db')}`, '--head', headFile]);
    expect(exp.stderr).toBe('');
    expect(exp.code).toBe(0);
    writeFileSync(logFile, exp.stdout);
    const lines = exp.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(6);

    const ok = await runMeshkit(['portal', 'log', 'verify', logFile, '--head', headFile, '--portal-key-jwk', keyFile, '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, count: 6, signedHead: { count: 6, signatureChecked: true, keyId: portal.portalKey.keyId } });

    // Hand-edit entry 3: change the account it names.
    const edited = [...lines];
    edited[3] = edited[3]!.replace(acct.name, 'mallory@example.com');
    expect(edited[3]).not.toBe(lines[3]);
    const badLog = join(dir, 'edited.jsonl');
    writeFileSync(badLog, `${edited.join('\n')}\n`);
    const bad = await runMeshkit(['portal', 'log', 'verify', badLog]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/log entry 3: wrong Id/);
    const badJson = await runMeshkit(['portal', 'log', 'verify', badLog, '--json']);
    expect(JSON.parse(badJson.stdout)).toMatchObject({ ok: false, index: 3 });

    // Recompute entry 3's Id as a forger would: then entry 4's Previous no longer holds.
    const e3 = JSON.parse(edited[3]!) as Record<string, unknown>;
    const rebuilt = makeLogLine(3, e3.Previous as string, new Date(e3.Time as string), e3.Type as string, e3.Body as Record<string, unknown>);
    edited[3] = rebuilt.line;
    writeFileSync(badLog, `${edited.join('\n')}\n`);
    const relinked = await runMeshkit(['portal', 'log', 'verify', badLog]);
    expect(relinked.code).toBe(1);
    expect(relinked.stderr).toMatch(/log entry 4: wrong Previous/);

    // A forger who rewrites the tail consistently is caught by the signed head.
    const tail = [...lines.slice(0, 3), rebuilt.line];
    let prev = rebuilt.id;
    for (let i = 4; i < lines.length; i++) {
      const e = JSON.parse(lines[i]!) as Record<string, unknown>;
      const l = makeLogLine(i, prev, new Date(e.Time as string), e.Type as string, e.Body as Record<string, unknown>);
      tail.push(l.line);
      prev = l.id;
    }
    writeFileSync(badLog, `${tail.join('\n')}\n`);
    expect((await runMeshkit(['portal', 'log', 'verify', badLog])).code).toBe(0);
    const headCheck = await runMeshkit(['portal', 'log', 'verify', badLog, '--head', headFile, '--portal-key-jwk', keyFile]);
    expect(headCheck.code).toBe(1);
    expect(headCheck.stderr).toMatch(/does not match the log/);

    // A head signed by another key is refused.
    const otherKey = join(dir, 'other.jwk');
    writeFileSync(otherKey, JSON.stringify(testKey('Ed25519').publicJwk));
    const wrongKey = await runMeshkit(['portal', 'log', 'verify', logFile, '--head', headFile, '--portal-key-jwk', otherKey]);
    expect(wrongKey.code).toBe(1);
    expect(readFileSync(headFile, 'utf8')).toContain('payload');
  });
});
