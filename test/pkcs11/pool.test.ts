/**
 * The PKCS#11 session pool (`Pkcs11KeyStore.open(uri, pin, { sessions })`) against a real SoftHSM2
 * token: concurrent signatures and key agreements that verify with node:crypto, FIFO hand-over,
 * close() while operations run, a pool closed underneath (C_CloseAllSessions), and the
 * context-specific login of CKA_ALWAYS_AUTHENTICATE keys on the session that signs.
 */
import { diffieHellman, generateKeyPairSync, verify as nodeVerify } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode, Pkcs11Error } from '../../src/core/errors.js';
import { publicKeyFromJwk, publicKeyObject } from '../../src/core/keys.js';
import type { PublicJwk } from '../../src/core/signer.js';
import { Pkcs11KeyStore, Pkcs11Module } from '../../src/keystore/pkcs11/index.js';
import { Pkcs11SessionPool } from '../../src/keystore/pkcs11/session.js';
import { createSoftHsm, softhsmMissing, type SoftHsmFixture } from '../helpers/softhsm.js';

const hsm: SoftHsmFixture | undefined =
  softhsmMissing === undefined
    ? createSoftHsm([
        { label: 'pool', userPin: '1234' },
        { label: 'gone', userPin: '1234' },
      ])
    : undefined;
afterAll(() => hsm?.cleanup());

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function verifies(jwk: PublicJwk, data: Uint8Array, sig: Uint8Array): boolean {
  const key = publicKeyObject(publicKeyFromJwk(jwk));
  return jwk.crv === 'P-256' ? nodeVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig) : nodeVerify(null, data, key, sig);
}

/** Rejects with a clear message when `p` does not settle in `ms` (a hang is the failure asked about). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

describe.skipIf(hsm === undefined)('PKCS#11 session pool on SoftHSM2', () => {
  const h = hsm as SoftHsmFixture;
  let n = 0;
  const label = (hint: string): string => `p${++n}-${hint}`;

  it('opts.sessions is checked: an integer from 1 to 64', async () => {
    for (const bad of [0, 65, 1.5, -1, Number.NaN]) {
      await expect(Pkcs11KeyStore.open(h.uri('pool'), enc('1234'), { sessions: bad })).rejects.toThrow(RangeError);
    }
    await expect(Pkcs11KeyStore.open(h.uri('pool'), enc('1234'), { sessions: '4' as unknown as number })).rejects.toThrow(TypeError);
    const one = await Pkcs11KeyStore.open(h.uri('pool'), enc('1234'));
    expect(one.sessions).toBe(1);
    await one.close();
  });

  it('4 sessions: 64 concurrent signatures (Ed25519 and P-256) all verify with node:crypto', async () => {
    const store = await Pkcs11KeyStore.open(h.uri('pool'), enc('1234'), { sessions: 4 });
    try {
      expect(store.sessions).toBe(4);
      // SoftHSM 2.6.1 crashes on overlapping C_SignInit / C_Sign from several threads: the pool signs synchronously there
      expect(store.parallelSigning).toBe(store.token.manufacturer !== 'SoftHSM project');
      const ed = (await store.generate(label('ed'), 'Ed25519')).signer();
      const p256 = (await store.generate(label('p256'), 'P-256')).signer();
      const jobs = Array.from({ length: 64 }, (_, i) => {
        const signer = i % 2 === 0 ? ed : p256;
        const data = enc(`message ${i} ${'x'.repeat(i)}`);
        return { signer, data, sig: signer.sign(data) };
      });
      const sigs = await Promise.all(jobs.map((j) => j.sig));
      sigs.forEach((sig, i) => {
        const j = jobs[i]!;
        expect(sig.length, `signature ${i}`).toBe(64);
        expect(verifies(j.signer.publicJwk, j.data, sig), `signature ${i} (${j.signer.publicJwk.crv})`).toBe(true);
      });
      // a signature over one message does not verify over another (the check above can fail)
      expect(verifies(jobs[0]!.signer.publicJwk, jobs[2]!.data, sigs[0]!)).toBe(false);
      // the empty message on the asynchronous path
      const empty = await ed.sign(new Uint8Array(0));
      expect(verifies(ed.publicJwk, new Uint8Array(0), empty)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('the pooled path signs the bytes given at the call, even if the caller changes them afterwards', async () => {
    const store = await Pkcs11KeyStore.open(h.uri('pool'), enc('1234'), { sessions: 2 });
    try {
      const signer = (await store.generate(label('snapshot'), 'Ed25519')).signer();
      const data = enc('original message');
      const pending = signer.sign(data);
      data.fill(0x41);
      expect(verifies(signer.publicJwk, enc('original message'), await pending)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('4 sessions: 32 concurrent X25519 / P-256 agreements, mixed with 32 signatures, equal node:crypto diffieHellman', async () => {
    const store = await Pkcs11KeyStore.open(h.uri('pool'), enc('1234'), { sessions: 4 });
    try {
      const x = (await store.generate(label('x25519'), 'X25519')).decrypter();
      const p = (await store.generate(label('p256-dh'), 'P-256', { usage: 'derive' })).decrypter();
      const jobs = Array.from({ length: 32 }, (_, i) => {
        const d = i % 2 === 0 ? x : p;
        const peer = d.publicJwk.crv === 'X25519' ? generateKeyPairSync('x25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const jwk = peer.publicKey.export({ format: 'jwk' });
        const peerJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, ...(jwk.y === undefined ? {} : { y: jwk.y }) } as PublicJwk;
        const expected = diffieHellman({ privateKey: peer.privateKey, publicKey: publicKeyObject(publicKeyFromJwk(d.publicJwk)) });
        return { expected, z: d.deriveSharedSecret(peerJwk) };
      });
      const signer = (await store.generate(label('mixed-ed'), 'Ed25519')).signer();
      const data = enc('signed between agreements');
      const sigs = Array.from({ length: 32 }, () => signer.sign(data));
      const zs = await Promise.all(jobs.map((j) => j.z));
      zs.forEach((z, i) => expect(Buffer.from(z).toString('hex'), `agreement ${i}`).toBe(jobs[i]!.expected.toString('hex')));
      for (const sig of await Promise.all(sigs)) expect(verifies(signer.publicJwk, data, sig)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('waiting callers get a session first in, first out; one operation per session at a time', async () => {
    const module = await Pkcs11Module.open(h.modulePath);
    try {
      const slot = await module.findToken({ token: 'pool' });
      const pool = await Pkcs11SessionPool.open(module, slot, 2);
      const order: number[] = [];
      const release: Array<() => void> = [];
      const inUse = new Set<unknown>();
      let maxBusy = 0;
      const runs = Array.from({ length: 6 }, (_, i) =>
        pool.use(async (s) => {
          expect(inUse.has(s), `session handed out twice (caller ${i})`).toBe(false);
          inUse.add(s);
          maxBusy = Math.max(maxBusy, pool.busy);
          order.push(i);
          await new Promise<void>((resolve) => release.push(resolve));
          inUse.delete(s);
          return i;
        }),
      );
      const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
      await tick();
      expect(order).toEqual([0, 1]);
      expect(pool.waiting).toBe(4);
      for (let k = 0; k < 4; k++) {
        release.shift()!();
        await tick();
      }
      expect(order).toEqual([0, 1, 2, 3, 4, 5]);
      for (const r of release.splice(0)) r();
      expect(await Promise.all(runs)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(maxBusy).toBe(2);
      await pool.close();
      expect(pool.sessions.every((s) => s.closed)).toBe(true);
      // closed at the Cryptoki level too
      for (const s of pool.sessions) expect(() => module.lib.C_GetSessionInfo(s.handle)).toThrow(/CKR_SESSION_HANDLE_INVALID/);
      await expect(pool.use(() => 1)).rejects.toThrow(/closed/);
    } finally {
      await module.close();
    }
  });

  it('pool close() waits for the operations running and queued, then closes every session', async () => {
    const module = await Pkcs11Module.open(h.modulePath);
    try {
      const slot = await module.findToken({ token: 'pool' });
      const pool = await Pkcs11SessionPool.open(module, slot, 2);
      const events: string[] = [];
      let open = 0;
      const runs = Array.from({ length: 5 }, (_, i) =>
        pool.use(async (s) => {
          open += 1;
          await new Promise((resolve) => setTimeout(resolve, 20));
          // the session is still open while the operation runs
          expect(module.lib.C_GetSessionInfo(s.handle)).toBeDefined();
          open -= 1;
          events.push(`op${i}`);
        }),
      );
      const closing = pool.close().then(() => events.push('closed'));
      await expect(pool.use(() => 1)).rejects.toThrow(/closed/);
      await Promise.all([...runs, closing]);
      expect(open).toBe(0);
      expect(events).toEqual(['op0', 'op1', 'op2', 'op3', 'op4', 'closed']);
      for (const s of pool.sessions) expect(() => module.lib.C_GetSessionInfo(s.handle)).toThrow(/CKR_SESSION_HANDLE_INVALID/);
    } finally {
      await module.close();
    }
  });

  it('store close() during signing waits for the signatures in flight, which all verify', async () => {
    const store = await Pkcs11KeyStore.open(h.uri('pool'), enc('1234'), { sessions: 4 });
    const signer = (await store.generate(label('closing'), 'P-256')).signer();
    const events: string[] = [];
    const data = enc('signed while closing');
    const sigs = Array.from({ length: 32 }, (_, i) =>
      signer.sign(data).then((sig) => {
        events.push(`sig${i}`);
        return sig;
      }),
    );
    const closing = store.close().then(() => events.push('closed'));
    expect(store.close()).toBe(store.close()); // a second close() is the same wait
    const done = await within(Promise.all(sigs), 20_000, 'signatures during close');
    await within(closing, 20_000, 'close()');
    for (const sig of done) expect(verifies(signer.publicJwk, data, sig)).toBe(true);
    expect(events.at(-1)).toBe('closed');
    expect(events.filter((e) => e.startsWith('sig'))).toHaveLength(32);
    // after close: a programming error, not a hang
    await expect(signer.sign(data)).rejects.toThrow(/closed/);
  });

  it('pool sessions closed underneath (C_CloseAllSessions) → ERR_PKCS11_TOKEN_REMOVED, not a hang', async () => {
    const store = await Pkcs11KeyStore.open(h.uri('gone'), enc('1234'), { sessions: 4 });
    try {
      const signer = (await store.generate(label('gone-ed'), 'Ed25519')).signer();
      const x = (await store.generate(label('gone-x'), 'X25519')).decrypter();
      expect(verifies(signer.publicJwk, enc('before'), await signer.sign(enc('before')))).toBe(true);
      await store.module.closeAllSessions(store.slot);
      const results = await within(
        Promise.allSettled(Array.from({ length: 12 }, (_, i) => signer.sign(enc(`after ${i}`)))),
        10_000,
        'signatures after C_CloseAllSessions',
      );
      for (const r of results) {
        expect(r.status).toBe('rejected');
        const err = (r as PromiseRejectedResult).reason as Pkcs11Error;
        expect(err).toBeInstanceOf(Pkcs11Error);
        expect(err.code).toBe(ErrorCode.PKCS11_TOKEN_REMOVED);
        expect(err.ckrName).toBe('CKR_SESSION_HANDLE_INVALID');
      }
      const peer = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
      await expect(within(x.deriveSharedSecret({ kty: 'OKP', crv: 'X25519', x: String(peer.x) }), 10_000, 'agreement')).rejects.toMatchObject({
        code: ErrorCode.PKCS11_TOKEN_REMOVED,
      });
    } finally {
      await within(store.close(), 10_000, 'close() after removal');
    }
  });

  it('CKA_ALWAYS_AUTHENTICATE: each pooled signature logs in (context-specific) on the session that signs', async () => {
    let asked = 0;
    let pin = '1234';
    const store = await Pkcs11KeyStore.open(h.uri('pool'), () => {
      asked += 1;
      return enc(pin);
    }, { sessions: 4 });
    try {
      const before = asked;
      const ed = (await store.generate(label('always-ed'), 'Ed25519', { alwaysAuthenticate: true })).signer();
      const p256 = (await store.generate(label('always-p256'), 'P-256', { alwaysAuthenticate: true })).signer();
      const data = enc('always authenticate, pooled');
      const sigs = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? ed : p256).sign(data)));
      sigs.forEach((sig, i) => expect(verifies((i % 2 === 0 ? ed : p256).publicJwk, data, sig), `signature ${i}`).toBe(true));
      expect(asked - before).toBe(16);
      // a wrong context PIN: typed error, and every pool session stays usable afterwards
      pin = '0000';
      await expect(ed.sign(data)).rejects.toMatchObject({ code: ErrorCode.PKCS11_PIN_INCORRECT });
      pin = '1234';
      const again = await Promise.all(Array.from({ length: 8 }, () => p256.sign(data)));
      for (const sig of again) expect(verifies(p256.publicJwk, data, sig)).toBe(true);
    } finally {
      await store.close();
    }
  });
});
