/**
 * The portal's HTTP layer on loopback: routing, bounded bodies (413 before the body is buffered), the
 * content-type check, strict JSON (malformed, duplicate members, not UTF-8), timeouts, plain HTTP only on
 * loopback, and graceful shutdown (requests in flight finish, the head is signed, storage closed).
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyLogHead } from '../../src/core/hashlog.js';
import { isLoopback, startPortalServer } from '../../src/portal/server.js';
import { openStorage } from '../../src/portal/storage.js';
import { testKey, testSigner } from '../helpers/software-signer.js';
import { makeAccount, post, rid, startTestPortal, type TestPortal } from '../helpers/portal.js';

let portal: TestPortal;
beforeAll(async () => {
  portal = await startTestPortal({ maxBody: 4096, requestTimeoutMs: 1500, headersTimeoutMs: 1000 });
});
afterAll(async () => {
  await portal.close();
});

/** Sends raw bytes on a TCP connection and returns everything the server answers until it closes. */
function raw(port: number, data: string | Buffer, opts: { endAfterWrite?: boolean; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(out);
    }, opts.timeoutMs ?? 5000);
    socket.on('data', (d) => (out += d.toString('utf8')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      // the server may reset the connection after answering 413; what it sent still counts
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') return;
      clearTimeout(timer);
      reject(e);
    });
    socket.write(data);
    if (opts.endAfterWrite === true) socket.end();
  });
}

function statusOf(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
}

describe('routing', () => {
  it('GET /.well-known/mmm/health → {"ok":true}', async () => {
    const res = await fetch(`${portal.url}/.well-known/mmm/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });

  it('unknown path → 404, GET on the transaction path → 405, both with an Error body', async () => {
    const a = await fetch(`${portal.url}/other`);
    expect(a.status).toBe(404);
    expect(((await a.json()) as { Error: { Code: string } }).Error.Code).toBe('ERR_PORTAL_NOT_FOUND');
    const b = await fetch(portal.endpoint);
    expect(b.status).toBe(405);
  });
});

describe('bodies', () => {
  it('Content-Type other than application/json → 415', async () => {
    const r = await post(portal.endpoint, 'Hello', {}, { contentType: 'text/plain' });
    expect(r.status).toBe(415);
    expect((r.body.Error as { Code: string }).Code).toBe('ERR_PORTAL_MEDIA_TYPE');
    const ok = await post(portal.endpoint, 'Hello', {}, { contentType: 'application/json; charset=utf-8' });
    expect(ok.status).toBe(200);
  });

  it('malformed JSON, duplicate members, not UTF-8, not one <Name>Request member → 400', async () => {
    for (const body of ['{', '{"HelloRequest":{}, "HelloRequest":{}}', '{"HelloRequest":{"a":1,"a":2}}', '[]', '{"Hello":{}}', '{"HelloRequest":{},"GetRequest":{}}']) {
      const r = await post(portal.endpoint, '', null, { raw: body });
      expect(r.status, body).toBe(400);
      expect((r.body.Error as { Code: string }).Code).toBe('ERR_PORTAL_BAD_REQUEST');
    }
    const notUtf8 = new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]);
    expect((await post(portal.endpoint, '', null, { raw: notUtf8 })).status).toBe(400);
  });

  it('a declared Content-Length over the limit → 413 without reading the body', async () => {
    const head = `POST /.well-known/mmm/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n`;
    // Only the headers are sent: the answer must come without the 10 MB body.
    const res = await raw(portal.server.port, head);
    expect(statusOf(res)).toBe(413);
    expect(res).toContain('ERR_PORTAL_TOO_LARGE');
  });

  it('a chunked body is refused with 413 as soon as it passes the limit (the rest is never sent)', async () => {
    const chunk = 'x'.repeat(3000);
    const piece = `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
    const head = `POST /.well-known/mmm/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
    // two chunks (6000 bytes > 4096) and no terminating chunk: the server must answer anyway
    const res = await raw(portal.server.port, head + piece + piece);
    expect(statusOf(res)).toBe(413);
  });

  it('a body just under the limit is read and parsed', async () => {
    const pad = 'p'.repeat(3900);
    const r = await post(portal.endpoint, 'Hello', { Pad: pad });
    expect(r.status).toBe(200);
  });

  it('fetch with an oversized body gets 413', async () => {
    const body = JSON.stringify({ HelloRequest: { Pad: 'z'.repeat(100_000) } });
    const res = await fetch(portal.endpoint, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body }).catch((e: unknown) => e);
    // The server answers before reading the body and closes; the client sees 413 (or, at worst, a reset after it).
    if (res instanceof Response) expect(res.status).toBe(413);
    else expect(String((res as Error).message)).toMatch(/fetch failed|socket|closed/i);
  });
});

describe('timeouts', () => {
  it('a client that never finishes its request is answered 408 and disconnected', async () => {
    const head = `POST /.well-known/mmm/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"Hel`;
    const started = Date.now();
    const res = await raw(portal.server.port, head, { timeoutMs: 10_000 });
    expect(Date.now() - started).toBeLessThan(9_000);
    expect(statusOf(res)).toBe(408);
  });

  it('a client that never finishes its headers is answered 408 and disconnected', async () => {
    const started = Date.now();
    const res = await raw(portal.server.port, 'POST /.well-known/mmm/ HTTP/1.1\r\nHost: x\r\nContent-Ty', { timeoutMs: 10_000 });
    expect(Date.now() - started).toBeLessThan(9_000);
    expect(statusOf(res)).toBe(408);
  });
});

describe('startPortalServer options', () => {
  it('refuses plain HTTP on a non-loopback address and a missing TLS key', async () => {
    const storage = await openStorage('sqlite::memory:');
    const portalKey = testSigner(testKey('Ed25519'));
    try {
      await expect(startPortalServer({ storage, portalKey, host: '0.0.0.0', plainHttp: true })).rejects.toThrow(/loopback/);
      await expect(startPortalServer({ storage, portalKey, host: '127.0.0.1' })).rejects.toThrow(/tls/);
    } finally {
      await storage.close();
    }
  });

  it('isLoopback', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1'].every(isLoopback)).toBe(true);
    expect(['0.0.0.0', '10.0.0.1', '::', 'example.com', '128.0.0.1'].some(isLoopback)).toBe(false);
  });
});

describe('graceful shutdown', () => {
  it('finishes requests in flight, refuses new ones, signs the head and closes storage', async () => {
    const p = await startTestPortal({ headEvery: 1000 });
    const acct = await makeAccount();
    expect((await post(p.endpoint, 'CreateAccount', acct.createRequest())).status).toBe(200);
    // Start 10 publishes of increasing Sequence one after another over a slow-ish chain, then close mid-way.
    const signed = [];
    for (let i = 0; i < 5; i++) signed.push(await acct.nextPersonal());
    const inflight = Promise.all(signed.map((e) => post(p.endpoint, 'Publish', { RequestId: rid(), Account: acct.name, Entry: e }).catch(() => undefined)));
    await new Promise((r) => setTimeout(r, 5));
    await p.server.close();
    const results = await inflight;
    const ok = results.filter((r) => r?.status === 200).length;
    // Reopen the database: the log head is signed over everything that was accepted.
    const storage = await openStorage(`sqlite:${p.dbFile}`);
    try {
      const { head, count, lines } = await storage.transaction(async (tx) => ({
        head: await tx.latestSignedHead(), count: await tx.logCount(), lines: await tx.logLines(0, 1000),
      }));
      expect(head?.count).toBe(count);
      expect(count).toBeGreaterThanOrEqual(1 + ok);
      await verifyLogHead(JSON.parse(head!.jws), lines, (kid) => (kid === p.portalKey.keyId ? p.portalKey.publicJwk : undefined));
    } finally {
      await storage.close();
      await p.close();
    }
    await expect(fetch(`${p.url}/.well-known/mmm/health`)).rejects.toThrow();
  });
});

describe('TLS', () => {
  it('serves HTTPS with the given certificate', async () => {
    const { execFileSync } = await import('node:child_process');
    const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { request } = await import('node:https');
    const dir = mkdtempSync(join(tmpdir(), 'meshkit-portal-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
      const cert = readFileSync(join(dir, 'cert.pem'));
      const p = await startTestPortal({ plainHttp: false, tls: { cert, key: readFileSync(join(dir, 'key.pem')) } });
      try {
        expect(p.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
        const body = JSON.stringify({ HelloRequest: {} });
        const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
          const req = request(p.endpoint, { method: 'POST', ca: cert, headers: { 'Content-Type': 'application/json' } }, (res) => {
            let text = '';
            res.on('data', (d: Buffer) => (text += d.toString('utf8')));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          });
          req.on('error', reject);
          req.end(body);
        });
        expect(answer.status).toBe(200);
        expect(JSON.parse(answer.text)).toMatchObject({ HelloResponse: { Status: 201, Portal: p.portalKey.keyId } });
      } finally {
        await p.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
