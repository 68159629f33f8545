/**
 * PortalClient: timeouts, safe retries (one RequestId per call, reused across its retries), typed
 * errors, Retry-After, TLS with a given CA, and the signed request bodies.
 *
 * Most tests run against a scripted node:http server that records every request it gets, so the
 * attempt count and the RequestId of each attempt are observed on the wire. The "lost response"
 * test uses a scripted portal that keeps RequestIds as docs/portal.md says (stores the response,
 * replays it) and drops the connection after committing the first attempt; the real portal gets the
 * same test through a TCP proxy that swallows the portal's first answer (the last describe).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fromUtf8 } from '../../src/core/bytes.js';
import { ErrorCode, MeshkitError } from '../../src/core/errors.js';
import { parseJsonStrict, verifyJws } from '../../src/core/jose.js';
import { composeDeviceProfile, composeMasterProfile, composePersonalProfile, ProfileType, signProfile } from '../../src/core/profiles.js';
import {
  PortalClient,
  PortalError,
  portalErrorCode,
  signConnectionRequest,
  signConnectionResult,
  signPendingQuery,
} from '../../src/portal/client.js';
import { startPortalServer } from '../../src/portal/server.js';
import { openStorage } from '../../src/portal/storage.js';
import { testKey, testSigner } from '../helpers/software-signer.js';

interface Seen { name: string; requestId: string; body: Record<string, unknown> }
type Handler = (seen: Seen, n: number, req: http.IncomingMessage, res: http.ServerResponse) => void;

/** A scripted portal: `handler` decides each response; every request is recorded. */
async function fakePortal(handler: Handler): Promise<{ url: string; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const outer = parseJsonStrict(Buffer.concat(chunks).toString('utf8')) as Record<string, Record<string, unknown>>;
      const key = Object.keys(outer)[0] ?? '';
      const body = outer[key] ?? {};
      const s: Seen = { name: key.replace(/Request$/, ''), requestId: String(body['RequestId']), body };
      seen.push(s);
      handler(s, seen.length, req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function reply(res: http.ServerResponse, name: string, members: Record<string, unknown>): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ [`${name}Response`]: { Status: 201, StatusDescription: 'OK', ...members } }));
}

function replyError(res: http.ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ Error: { Status: status, StatusDescription: `failed with ${status}`, Code: code } }));
}

const fast = { backoffMs: 1, maxBackoffMs: 5 };
let portal: Awaited<ReturnType<typeof fakePortal>> | undefined;
afterEach(async () => {
  await portal?.close();
  portal = undefined;
});

describe('PortalClient requests', () => {
  it('sends {"<Name>Request": {RequestId, …}} and returns the inner response; a fresh RequestId per call', async () => {
    portal = await fakePortal((s, _n, _req, res) => reply(res, s.name, { Version: '1', Portal: 'MXXX', LogHead: null }));
    const client = new PortalClient(portal.url, { retries: 0 });
    const a = await client.hello();
    const b = await client.hello();
    expect(a.Version).toBe('1');
    expect(portal.seen.map((s) => s.name)).toEqual(['Hello', 'Hello']);
    expect(portal.seen[0]!.requestId).toMatch(/^N[A-Z2-7-]+$/);
    expect(portal.seen[0]!.requestId).not.toBe(portal.seen[1]!.requestId);
    expect(b.Status).toBe(201);
    client.close();
  });

  it('puts the transaction members on the wire with the contract names', async () => {
    portal = await fakePortal((s, _n, _req, res) => reply(res, s.name, {}));
    const client = new PortalClient(portal.url, { retries: 0 });
    await client.get({ account: 'alice@example', type: ProfileType.Device });
    await client.logEntries(5, 10);
    await client.logProof(3);
    await client.connectStatus('alice@example', 'RUDF');
    await client.escrowGet('EBLOB');
    expect(portal.seen.map((s) => [s.name, Object.keys(s.body).filter((k) => k !== 'RequestId')])).toEqual([
      ['Get', ['Account', 'Type']],
      ['LogEntries', ['From', 'Count']],
      ['LogProof', ['Index']],
      ['ConnectStatus', ['Account', 'RequestUDF']],
      ['EscrowGet', ['Identifier']],
    ]);
    expect(portal.seen[1]!.body).toMatchObject({ From: 5, Count: 10 });
    client.close();
  });

  it('refuses bad arguments before sending anything', async () => {
    portal = await fakePortal((s, _n, _req, res) => reply(res, s.name, {}));
    const client = new PortalClient(portal.url);
    expect(() => client.get({})).toThrow(RangeError);
    expect(() => client.logEntries(0, 1001)).toThrow(RangeError);
    expect(() => client.publish(42 as unknown as string, {} as never)).toThrow(TypeError);
    expect(() => new PortalClient('ftp://x')).toThrow(RangeError);
    expect(() => new PortalClient('not a url')).toThrow(RangeError);
    expect(() => new PortalClient('http://x', { timeoutMs: 0 })).toThrow(RangeError);
    expect(portal.seen).toHaveLength(0);
    client.close();
  });
});

describe('PortalClient retries and errors', () => {
  it('retries a 5xx with the same RequestId and returns the success', async () => {
    portal = await fakePortal((s, n, _req, res) => (n < 3 ? replyError(res, 500, 'ERR_PORTAL_INTERNAL') : reply(res, s.name, { Head: null, Count: 0 })));
    const attempts: number[] = [];
    const client = new PortalClient(portal.url, { ...fast, retries: 3, onAttempt: (i) => attempts.push(i.attempt) });
    const r = await client.logHead();
    expect(r.Count).toBe(0);
    expect(attempts).toEqual([0, 1, 2]);
    expect(new Set(portal.seen.map((s) => s.requestId)).size).toBe(1);
    client.close();
  });

  it('gives up after `retries` and throws the typed 5xx', async () => {
    portal = await fakePortal((_s, _n, _req, res) => replyError(res, 503, 'ERR_PORTAL_INTERNAL'));
    const client = new PortalClient(portal.url, { ...fast, retries: 2 });
    const e = await client.logHead().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PortalError);
    expect(e).toBeInstanceOf(MeshkitError);
    expect((e as PortalError).status).toBe(503);
    expect((e as PortalError).code).toBe(ErrorCode.PORTAL_INTERNAL);
    expect((e as PortalError).attempts).toBe(3);
    expect(portal.seen).toHaveLength(3);
    client.close();
  });

  it.each([
    [400, 'ERR_PORTAL_BAD_REQUEST', ErrorCode.PORTAL_BAD_REQUEST],
    [401, 'ERR_PORTAL_SIGNATURE', ErrorCode.PORTAL_SIGNATURE],
    [403, 'ERR_PORTAL_UNAUTHORISED', ErrorCode.PORTAL_UNAUTHORISED],
    [404, 'ERR_PORTAL_NOT_FOUND', ErrorCode.PORTAL_NOT_FOUND],
    [409, 'ERR_PORTAL_CONFLICT', ErrorCode.PORTAL_CONFLICT],
    [413, 'ERR_PORTAL_TOO_LARGE', ErrorCode.PORTAL_TOO_LARGE],
    [415, 'ERR_PORTAL_MEDIA_TYPE', ErrorCode.PORTAL_MEDIA_TYPE],
  ])('a %i is thrown at once (no retry) as PortalError with the portal Code', async (status, portalCode, code) => {
    portal = await fakePortal((_s, _n, _req, res) => replyError(res, status, portalCode));
    const client = new PortalClient(portal.url, { ...fast, retries: 3 });
    const e = (await client.escrowGet('EX').catch((x: unknown) => x)) as PortalError;
    expect(e).toBeInstanceOf(PortalError);
    expect([e.status, e.portalCode, e.code, e.attempts, e.transaction]).toEqual([status, portalCode, code, 1, 'EscrowGet']);
    expect(e.message).toContain(`${status} failed with ${status}`);
    expect(portal.seen).toHaveLength(1);
    client.close();
  });

  it('maps an error without a portal Code (or with a foreign one) by its status', async () => {
    expect(portalErrorCode(409, 'SOMETHING_ELSE')).toBe(ErrorCode.PORTAL_CONFLICT);
    expect(portalErrorCode(418)).toBe(ErrorCode.PORTAL_BAD_REQUEST);
    expect(portalErrorCode(502)).toBe(ErrorCode.PORTAL_INTERNAL);
    expect(portalErrorCode(undefined)).toBe(ErrorCode.PORTAL_UNAVAILABLE);
    portal = await fakePortal((_s, _n, _req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('no such thing');
    });
    const client = new PortalClient(portal.url, fast);
    const e = (await client.escrowGet('EX').catch((x: unknown) => x)) as PortalError;
    expect([e.code, e.status, e.portalCode]).toEqual([ErrorCode.PORTAL_NOT_FOUND, 404, undefined]);
    client.close();
  });

  it('honours Retry-After on 429 and retries with the same RequestId', async () => {
    portal = await fakePortal((s, n, _req, res) => (n === 1 ? replyError(res, 429, 'ERR_PORTAL_QUOTA', { 'retry-after': '1' }) : reply(res, s.name, { Head: null, Count: 7 })));
    const client = new PortalClient(portal.url, { ...fast, retries: 1 });
    const t0 = Date.now();
    const r = await client.logHead();
    expect(r.Count).toBe(7);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950); // waited the second the portal asked for
    expect(portal.seen).toHaveLength(2);
    expect(portal.seen[0]!.requestId).toBe(portal.seen[1]!.requestId);
    client.close();
  });

  it('does not wait for a Retry-After longer than maxRetryAfterMs: a typed 429 at once', async () => {
    portal = await fakePortal((_s, _n, _req, res) => replyError(res, 429, 'ERR_PORTAL_QUOTA', { 'retry-after': '3600' }));
    const client = new PortalClient(portal.url, { ...fast, retries: 5 });
    const e = (await client.logHead().catch((x: unknown) => x)) as PortalError;
    expect([e.code, e.status, e.retryAfter, e.attempts]).toEqual([ErrorCode.PORTAL_QUOTA, 429, 3600, 1]);
    client.close();
  });

  it('times out a portal that does not answer, retries with the same RequestId, then ERR_PORTAL_UNAVAILABLE', async () => {
    portal = await fakePortal(() => { /* never answers */ });
    const client = new PortalClient(portal.url, { ...fast, timeoutMs: 150, retries: 2 });
    const e = (await client.hello().catch((x: unknown) => x)) as PortalError;
    expect(e).toBeInstanceOf(PortalError);
    expect([e.code, e.status, e.attempts]).toEqual([ErrorCode.PORTAL_UNAVAILABLE, undefined, 3]);
    expect(e.message).toContain('timed out after 150 ms');
    expect(portal.seen).toHaveLength(3);
    expect(new Set(portal.seen.map((s) => s.requestId)).size).toBe(1);
    client.close();
  });

  it('times out a response body that stalls half way', async () => {
    portal = await fakePortal((_s, _n, _req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"HelloResponse":');
    });
    const client = new PortalClient(portal.url, { ...fast, timeoutMs: 150, retries: 0 });
    const e = (await client.hello().catch((x: unknown) => x)) as PortalError;
    expect([e.code, e.attempts]).toEqual([ErrorCode.PORTAL_UNAVAILABLE, 1]);
    client.close();
  });

  it('reports a refused connection as ERR_PORTAL_UNAVAILABLE after its retries', async () => {
    const dead = await fakePortal(() => undefined);
    const url = dead.url;
    await dead.close();
    const attempts: string[] = [];
    const client = new PortalClient(url, { ...fast, retries: 2, onAttempt: (i) => attempts.push(i.requestId) });
    const e = (await client.hello().catch((x: unknown) => x)) as PortalError;
    expect([e.code, e.attempts]).toEqual([ErrorCode.PORTAL_UNAVAILABLE, 3]);
    expect(e.message).toContain('ECONNREFUSED');
    expect(new Set(attempts).size).toBe(1);
    client.close();
  });

  it('refuses a 200 whose body is not the expected response (ERR_PORTAL_PROTOCOL, no retry)', async () => {
    const bodies = ['not json', '{"OtherResponse":{"Status":201}}', '{"HelloResponse":{"Status":400}}', '{"HelloResponse":{"Status":201},"HelloResponse":{"Status":201}}'];
    portal = await fakePortal((_s, n, _req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(bodies[n - 1]);
    });
    const client = new PortalClient(portal.url, { ...fast, retries: 3 });
    for (let i = 0; i < bodies.length; i++) {
      const e = (await client.hello().catch((x: unknown) => x)) as PortalError;
      expect(e.code, bodies[i]).toBe(ErrorCode.PORTAL_PROTOCOL);
    }
    expect(portal.seen).toHaveLength(bodies.length);
    client.close();
  });

  it('a request whose response is lost is retried with the same RequestId and has one effect', async () => {
    // A scripted portal that keeps RequestIds as the contract says; it commits the first attempt,
    // then drops the connection before answering.
    const responses = new Map<string, string>();
    let effects = 0;
    portal = await fakePortal((s, n, req, res) => {
      let stored = responses.get(s.requestId);
      if (stored === undefined) {
        effects += 1;
        stored = JSON.stringify({ EscrowPutResponse: { Status: 201, StatusDescription: 'OK', Identifier: `E-${effects}` } });
        responses.set(s.requestId, stored);
      }
      if (n === 1) {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(stored);
    });
    const client = new PortalClient(portal.url, { ...fast, retries: 3 });
    const r = await client.escrowPut({ OfflineEscrowEntry: { Identifier: 'EX', EncryptedData: {} } });
    expect(r.Identifier).toBe('E-1');
    expect(effects).toBe(1);
    expect(portal.seen).toHaveLength(2);
    expect(portal.seen[0]!.requestId).toBe(portal.seen[1]!.requestId);
    client.close();
  });

  it('uses a caller-chosen RequestId when given', async () => {
    portal = await fakePortal((s, _n, _req, res) => reply(res, s.name, {}));
    const client = new PortalClient(portal.url);
    await client.hello({ requestId: 'NCHOSEN' });
    expect(portal.seen[0]!.requestId).toBe('NCHOSEN');
    client.close();
  });
});

describe('PortalClient over TLS with a self-signed portal', () => {
  let dir: string;
  let server: https.Server;
  let url: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshkit-client-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'pipe' });
    server = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
      req.resume();
      req.on('end', () => reply(res, 'Hello', { Version: 'tls', Portal: 'M', LogHead: null }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('trusts the portal given its CA file', async () => {
    const client = new PortalClient(url, { caFile: join(dir, 'cert.pem'), retries: 0 });
    expect((await client.hello()).Version).toBe('tls');
    client.close();
  });

  it('refuses it without the CA, at once and with a hint', async () => {
    const attempts: number[] = [];
    const client = new PortalClient(url, { retries: 3, onAttempt: (i) => attempts.push(i.attempt) });
    const e = (await client.hello().catch((x: unknown) => x)) as MeshkitError;
    expect(e.code).toBe(ErrorCode.PORTAL_UNAVAILABLE);
    expect(e.message).toContain('CA');
    expect(attempts).toEqual([0]);
    client.close();
  });

  it('reports a CA file that cannot be read as ERR_IO', () => {
    expect(() => new PortalClient(url, { caFile: join(dir, 'missing.pem') })).toThrow(expect.objectContaining({ code: ErrorCode.IO }));
  });
});

describe('signed request bodies', () => {
  const admin = testKey('Ed25519');
  const device = testKey('Ed25519');
  const resolve = (k: { keyId: string; publicJwk: import('../../src/core/signer.js').PublicJwk }) => (kid: string) => (kid === k.keyId ? k.publicJwk : undefined);

  it('signPendingQuery: {"PendingQuery": {Account, Time}} signed by the admin key', async () => {
    const t = new Date('2026-01-02T03:04:05.000Z');
    const jws = await signPendingQuery('alice@example', testSigner(admin), t);
    const v = await verifyJws(jws, resolve(admin));
    expect(parseJsonStrict(fromUtf8(v.payload))).toEqual({ PendingQuery: { Account: 'alice@example', Time: '2026-01-02T03:04:05.000Z' } });
    expect(v.protectedHeader.cty).toBe('PendingQuery');
    await expect(signPendingQuery('a@b', testSigner(admin), new Date(NaN))).rejects.toThrow(TypeError);
  });

  it('signConnectionResult: {"ConnectionResult": {RequestUDF, Result, Witness}}', async () => {
    const jws = await signConnectionResult('RUDF', 'Refused', 'ABCD-EFGH', testSigner(admin));
    const v = await verifyJws(jws, resolve(admin));
    expect(parseJsonStrict(fromUtf8(v.payload))).toEqual({ ConnectionResult: { RequestUDF: 'RUDF', Result: 'Refused', Witness: 'ABCD-EFGH' } });
    await expect(signConnectionResult('RUDF', 'Maybe' as 'Accepted', 'W', testSigner(admin))).rejects.toThrow(RangeError);
  });

  it('signConnectionRequest: signed by the device key, carries the Device Profile and a 16-byte ClientNonce', async () => {
    const signedDevice = await signProfile(ProfileType.Device, composeDeviceProfile({ description: 'd', signatureKey: device.publicJwk }), testSigner(device));
    const nonce = new Uint8Array(16).fill(7);
    const { signedRequest, clientNonce } = await signConnectionRequest('alice@example', 'MMASTER', signedDevice, testSigner(device), nonce);
    const v = await verifyJws(signedRequest, resolve(device));
    const body = (parseJsonStrict(fromUtf8(v.payload)) as { ConnectionRequest: Record<string, unknown> }).ConnectionRequest;
    expect(Object.keys(body)).toEqual(['Account', 'ParentUDF', 'Device', 'ClientNonce']);
    expect(body['Device']).toEqual(signedDevice);
    expect(body['ClientNonce']).toBe(Buffer.from(nonce).toString('base64url'));
    expect(clientNonce).toEqual(nonce);
    const random = await signConnectionRequest('alice@example', 'MMASTER', signedDevice, testSigner(device));
    expect(random.clientNonce).toHaveLength(16);
    // not the device's own key, a short nonce, not a Device Profile
    await expect(signConnectionRequest('a@b', 'M', signedDevice, testSigner(admin))).rejects.toThrow(RangeError);
    await expect(signConnectionRequest('a@b', 'M', signedDevice, testSigner(device), new Uint8Array(8))).rejects.toThrow(RangeError);
    await expect(signConnectionRequest('a@b', 'M', { payload: 'x', signatures: [] }, testSigner(device))).rejects.toThrow(MeshkitError);
  });
});

describe('PortalClient against the real portal', () => {
  it('a CreateAccount whose response is lost is retried with the same RequestId: 201, one account, one log entry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshkit-client-real-'));
    const server = await startPortalServer({
      storage: await openStorage(`sqlite:${join(dir, 'p.db')}`), portalKey: testSigner(testKey('Ed25519')), plainHttp: true, headSeconds: 0, onError: () => undefined,
    });
    // A proxy that forwards everything but swallows the portal's answer to the first connection.
    let connections = 0;
    const proxy = net.createServer((downstream) => {
      connections += 1;
      const drop = connections === 1;
      const upstream = net.connect(server.port, server.host);
      downstream.pipe(upstream);
      upstream.on('data', (chunk: Buffer) => {
        if (drop) downstream.destroy();
        else downstream.write(chunk);
      });
      upstream.on('end', () => downstream.end());
      upstream.on('error', () => downstream.destroy());
      downstream.on('error', () => upstream.destroy());
      downstream.on('close', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const master = testKey('Ed448');
      const admin = testKey('Ed25519');
      const signedMaster = await signProfile(ProfileType.Master, composeMasterProfile({ signatureKey: master.publicJwk, adminKeys: [admin.publicJwk] }), testSigner(master));
      const signedPersonal = await signProfile(ProfileType.Personal, composePersonalProfile({ master: signedMaster }), testSigner(admin));
      const ids: string[] = [];
      const client = new PortalClient(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, { ...fast, retries: 3, onAttempt: (i) => ids.push(i.requestId) });
      const r = await client.createAccount('lost@portal.test', signedPersonal);
      expect(r.Account).toBe('lost@portal.test');
      expect(ids).toHaveLength(2);
      expect(ids[0]).toBe(ids[1]);
      // One effect: one log entry; a second, new request for the same name is a conflict.
      expect((await client.logHead()).Count).toBe(1);
      const again = (await client.createAccount('lost@portal.test', signedPersonal).catch((x: unknown) => x)) as PortalError;
      expect([again.status, again.code]).toEqual([409, ErrorCode.PORTAL_CONFLICT]);
      expect((await client.logHead()).Count).toBe(1);
      client.close();
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
