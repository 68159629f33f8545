/** The software key store beyond the contract: encryption at rest, tampering, file handling, secrets. */
import { createHash, generateKeyPairSync, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode, KeyStoreError } from '../../src/core/errors.js';
import { keyId, publicKeyFromJwk, publicKeyObject } from '../../src/core/keys.js';
import type { Curve, PublicJwk } from '../../src/core/signer.js';
import { SoftwareKeyStore } from '../../src/keystore/software.js';
import type { PrivateJwk } from '../../src/keystore/types.js';

const dir = mkdtempSync(join(tmpdir(), 'meshkit-sw-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const newPath = (): string => join(dir, `store-${++n}.json`);
const PASS = 'correct horse battery staple';
const pass = (): Uint8Array => new TextEncoder().encode(PASS);
const FAST = { create: true, kdfCost: 14 } as const;
const CURVES: Curve[] = ['Ed25519', 'Ed448', 'X25519', 'X448', 'P-256'];

function nodeKey(curve: Curve): KeyObject {
  switch (curve) {
    case 'Ed25519':
      return generateKeyPairSync('ed25519').privateKey;
    case 'Ed448':
      return generateKeyPairSync('ed448').privateKey;
    case 'X25519':
      return generateKeyPairSync('x25519').privateKey;
    case 'X448':
      return generateKeyPairSync('x448').privateKey;
    case 'P-256':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  }
}
function privateJwk(key: KeyObject): PrivateJwk {
  const j = key.export({ format: 'jwk' });
  return { kty: j.kty as 'OKP' | 'EC', crv: j.crv as Curve, x: String(j.x), ...(j.y === undefined ? {} : { y: String(j.y) }), d: String(j.d) };
}
function publicOnly(jwk: PrivateJwk): PublicJwk {
  const { d: _d, ...pub } = jwk;
  return pub;
}
const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');
const caught = async (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );
const data = new TextEncoder().encode('message');
const verifies = (jwk: PublicJwk, sig: Uint8Array): boolean => {
  const key = publicKeyObject(publicKeyFromJwk(jwk));
  return jwk.crv === 'P-256' ? nodeVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig) : nodeVerify(null, data, key, sig);
};

/** Rewrites the store file through a JSON edit. */
function editFile(path: string, edit: (f: { keys: Array<Record<string, unknown>>; [k: string]: unknown }) => void): void {
  const f = JSON.parse(readFileSync(path, 'utf8'));
  edit(f);
  writeFileSync(path, JSON.stringify(f));
}

describe('software key store: file format and encryption at rest', () => {
  it('a new store uses scrypt N=2^17, r=8, p=1 and a 16-byte salt by default', async () => {
    const p = newPath();
    const store = await SoftwareKeyStore.open(p, pass(), { create: true });
    await store.close();
    const f = JSON.parse(readFileSync(p, 'utf8'));
    expect(f.kdf).toMatchObject({ alg: 'scrypt', N: 2 ** 17, r: 8, p: 1 });
    expect(Buffer.from(f.kdf.salt, 'base64url').length).toBe(16);
    expect(f.format).toBe('meshkit-keystore');
    expect(f.version).toBe(1);
  });

  it('kdfCost below 14 or above 22 is refused', async () => {
    await expect(SoftwareKeyStore.open(newPath(), pass(), { create: true, kdfCost: 13 })).rejects.toBeInstanceOf(RangeError);
    await expect(SoftwareKeyStore.open(newPath(), pass(), { create: true, kdfCost: 23 })).rejects.toBeInstanceOf(RangeError);
  });

  it('the file has mode 0600 and no temporary files are left behind', async () => {
    const sub = mkdtempSync(join(dir, 'mode-'));
    const p = join(sub, 'keys.json');
    const store = await SoftwareKeyStore.open(p, pass(), FAST);
    await store.generate('a', 'Ed25519');
    await store.generate('b', 'X25519');
    await store.delete('a');
    await store.close();
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(readdirSync(sub)).toEqual(['keys.json']);
  });

  it('no private key bytes and no passphrase appear in the file in clear', async () => {
    const p = newPath();
    const store = await SoftwareKeyStore.open(p, pass(), FAST);
    const ds: Buffer[] = [];
    for (const curve of CURVES) {
      const jwk = privateJwk(nodeKey(curve));
      ds.push(Buffer.from(jwk.d, 'base64url'));
      await store.importPrivate(`k-${curve}`, jwk);
    }
    await store.close();
    const bytes = readFileSync(p);
    const text = bytes.toString('utf8');
    expect(text).not.toContain(PASS);
    for (const d of ds) {
      expect(bytes.indexOf(d)).toBe(-1);
      expect(text.toLowerCase()).not.toContain(d.toString('hex'));
      expect(text).not.toContain(d.toString('base64url'));
      expect(text).not.toContain(d.toString('base64'));
      // a 12-byte window of the key in base64url, in case of other framing
      expect(text).not.toContain(d.subarray(0, 12).toString('base64url'));
    }
  });

  it('reopening with the passphrase gives the same keys, which still sign', async () => {
    const p = newPath();
    const a = await SoftwareKeyStore.open(p, pass(), FAST);
    const h = await a.generate('sig', 'Ed448');
    await a.close();
    const b = await SoftwareKeyStore.open(p, pass());
    const listed = await b.list();
    expect(listed.map((i) => i.label)).toEqual(['sig']);
    expect(listed[0]?.keyId).toBe(h.info.keyId);
    const g = await b.get('sig');
    expect(verifies(h.info.publicJwk, await g.signer().sign(data))).toBe(true);
    await b.close();
  });

  it('info.location is a file: reference with the absolute path and label', async () => {
    const p = newPath();
    const store = await SoftwareKeyStore.open(p, pass(), FAST);
    const h = await store.generate('with #hash', 'Ed25519');
    expect(h.info.location).toBe(`file:${resolve(p)}#with%20%23hash`);
    expect(store.uri).toBe(`file:${resolve(p)}`);
    await store.close();
  });

  it('creating over an existing store opens it instead of replacing it', async () => {
    const p = newPath();
    const a = await SoftwareKeyStore.open(p, pass(), FAST);
    await a.generate('keep', 'Ed25519');
    await a.close();
    const before = sha(p);
    await expect(SoftwareKeyStore.open(p, new TextEncoder().encode('other'), FAST)).rejects.toMatchObject({
      code: ErrorCode.KEYSTORE_PASSPHRASE,
    });
    expect(sha(p)).toBe(before);
    const b = await SoftwareKeyStore.open(p, pass(), FAST);
    expect((await b.list()).map((i) => i.label)).toEqual(['keep']);
    await b.close();
  });

  it('a missing file without create is ERR_KEYSTORE_NOT_FOUND', async () => {
    const p = newPath();
    await expect(SoftwareKeyStore.open(p, pass())).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_NOT_FOUND });
    expect(existsSync(p)).toBe(false);
  });
});

describe('software key store: passphrases', () => {
  it('a wrong passphrase is ERR_KEYSTORE_BAD_PASSPHRASE and leaves the file unchanged', async () => {
    const p = newPath();
    const a = await SoftwareKeyStore.open(p, pass(), FAST);
    await a.generate('k', 'Ed25519');
    await a.close();
    const before = sha(p);
    const wrong = 'not-the-passphrase-xyzzy';
    const err = await caught(SoftwareKeyStore.open(p, new TextEncoder().encode(wrong)));
    expect(err).toBeInstanceOf(KeyStoreError);
    expect((err as KeyStoreError).code).toBe(ErrorCode.KEYSTORE_PASSPHRASE);
    expect((err as Error).message).not.toContain(wrong);
    // deferred: public info works, the first private operation fails, nothing is written
    const b = await SoftwareKeyStore.open(p, new TextEncoder().encode(wrong), { deferUnlock: true });
    expect((await b.list()).length).toBe(1);
    const h = await b.get('k');
    await expect(h.signer().sign(data)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_PASSPHRASE });
    await expect(b.generate('k2', 'Ed25519')).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_PASSPHRASE });
    await b.close();
    expect(sha(p)).toBe(before);
  });

  it('a function source is called only when needed and its bytes are wiped', async () => {
    const p = newPath();
    const setup = await SoftwareKeyStore.open(p, pass(), FAST);
    await setup.generate('k', 'Ed25519');
    await setup.close();
    const given: Uint8Array[] = [];
    const source = (): Uint8Array => {
      const b = pass();
      given.push(b);
      return b;
    };
    const store = await SoftwareKeyStore.open(p, source, { deferUnlock: true });
    await store.list();
    expect(given.length).toBe(0);
    const h = await store.get('k');
    expect(verifies(h.info.publicJwk, await h.signer().sign(data))).toBe(true);
    await h.signer().sign(data); // the KEK is held while open: no second call
    expect(given.length).toBe(1);
    expect(given[0]?.every((b) => b === 0)).toBe(true);
    await store.close();
  });

  it('a Uint8Array passphrase stays the caller’s (not wiped)', async () => {
    const p = newPath();
    const mine = pass();
    await (await SoftwareKeyStore.open(p, mine, FAST)).close();
    expect(new TextDecoder().decode(mine)).toBe(PASS);
  });

  it('an empty passphrase is refused', async () => {
    await expect(SoftwareKeyStore.open(newPath(), new Uint8Array(0), FAST)).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
  });

  it('after close, handles stop working', async () => {
    const store = await SoftwareKeyStore.open(newPath(), pass(), FAST);
    const h = await store.generate('k', 'Ed25519');
    await store.close();
    await expect(h.signer().sign(data)).rejects.toThrow(/closed/);
    await expect(store.list()).rejects.toThrow(/closed/);
  });
});

describe('software key store: corrupt and tampered files', () => {
  async function storeWith(labels: Array<[string, Curve]>): Promise<string> {
    const p = newPath();
    const s = await SoftwareKeyStore.open(p, pass(), FAST);
    for (const [l, c] of labels) await s.generate(l, c);
    await s.close();
    return p;
  }

  it.each([
    ['garbage', (t: string) => `${t.slice(0, 10)}\u0000garbage`],
    ['truncated to half', (t: string) => t.slice(0, Math.floor(t.length / 2))],
    ['empty', () => ''],
    ['not an object', () => '[]'],
    ['unknown version', (t: string) => t.replace('"version": 1', '"version": 99')],
    ['weak kdf', (t: string) => t.replace('"N": 16384', '"N": 1024')],
  ])('%s → ERR_KEYSTORE_CORRUPT naming the path', async (_name, mutate) => {
    const p = await storeWith([['k', 'Ed25519']]);
    writeFileSync(p, mutate(readFileSync(p, 'utf8')));
    const err = await caught(SoftwareKeyStore.open(p, pass()));
    expect(err).toBeInstanceOf(KeyStoreError);
    expect((err as KeyStoreError).code).toBe(ErrorCode.KEYSTORE_CORRUPT);
    expect((err as Error).message).toContain(resolve(p));
  });

  it('an edited key id or public key → ERR_KEYSTORE_CORRUPT', async () => {
    const p = await storeWith([['a', 'Ed25519'], ['b', 'Ed25519']]);
    const other = JSON.parse(readFileSync(p, 'utf8')).keys[1].publicJwk;
    editFile(p, (f) => {
      f.keys[0]!['publicJwk'] = other;
    });
    await expect(SoftwareKeyStore.open(p, pass())).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_CORRUPT });
  });

  it('ciphertexts swapped between labels fail to open (AAD binds the label)', async () => {
    const p = await storeWith([['a', 'Ed25519'], ['b', 'Ed25519']]);
    editFile(p, (f) => {
      const [a, b] = [f.keys[0]!, f.keys[1]!];
      [a['iv'], b['iv'], a['data'], b['data']] = [b['iv'], a['iv'], b['data'], a['data']];
    });
    const s = await SoftwareKeyStore.open(p, pass());
    for (const l of ['a', 'b']) {
      await expect((await s.get(l)).signer().sign(data)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_CORRUPT });
    }
    await s.close();
  });

  it('a renamed label or a flipped extractable flag fails to open', async () => {
    const p = await storeWith([['a', 'Ed25519']]);
    editFile(p, (f) => {
      f.keys[0]!['label'] = 'renamed';
      f.keys[0]!['extractable'] = true;
    });
    const s = await SoftwareKeyStore.open(p, pass());
    const h = await s.get('renamed');
    await expect(h.exportPrivateJwk()).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_CORRUPT });
    await expect(h.signer().sign(data)).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_CORRUPT });
    await s.close();
  });

  it('a flipped bit in a ciphertext fails to open', async () => {
    const p = await storeWith([['a', 'X448']]);
    editFile(p, (f) => {
      const ct = Buffer.from(String(f.keys[0]!['data']), 'base64url');
      ct[3] = (ct[3] ?? 0) ^ 0x40;
      f.keys[0]!['data'] = ct.toString('base64url');
    });
    const s = await SoftwareKeyStore.open(p, pass());
    const peer = generateKeyPairSync('x448').publicKey.export({ format: 'jwk' });
    await expect(
      (await s.get('a')).decrypter().deriveSharedSecret({ kty: 'OKP', crv: 'X448', x: String(peer.x) }),
    ).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_CORRUPT });
    await s.close();
  });
});

describe('software key store: extractable keys and concurrent writers', () => {
  it('exportPrivateJwk returns the imported key for an extractable key', async () => {
    const s = await SoftwareKeyStore.open(newPath(), pass(), FAST);
    for (const curve of CURVES) {
      const jwk = privateJwk(nodeKey(curve));
      const h = await s.importPrivate(`x-${curve}`, jwk, { extractable: true });
      expect(h.info.extractable).toBe(true);
      const out = await h.exportPrivateJwk();
      expect(out.d).toBe(jwk.d);
      expect(keyId(publicOnly(out))).toBe(keyId(publicOnly(jwk)));
    }
    await s.close();
  });

  it('a generated extractable key exports a JWK that imports to the same key id elsewhere', async () => {
    const a = await SoftwareKeyStore.open(newPath(), pass(), FAST);
    const b = await SoftwareKeyStore.open(newPath(), pass(), FAST);
    for (const curve of CURVES) {
      const h = await a.generate(`g-${curve}`, curve, { extractable: true });
      const moved = await b.importPrivate(`m-${curve}`, await h.exportPrivateJwk());
      expect(moved.info.keyId).toBe(h.info.keyId);
    }
    await a.close();
    await b.close();
  });

  it('P-256 keys may be created for key agreement; an impossible usage is a RangeError', async () => {
    const s = await SoftwareKeyStore.open(newPath(), pass(), FAST);
    expect((await s.generate('p', 'P-256', { usage: 'derive' })).info.usage).toBe('derive');
    await expect(s.generate('e', 'Ed25519', { usage: 'derive' })).rejects.toBeInstanceOf(RangeError);
    await expect(s.generate('x', 'X25519', { usage: 'sign' })).rejects.toBeInstanceOf(RangeError);
    await s.close();
  });

  it('two open instances of one store do not drop each other’s keys', async () => {
    const p = newPath();
    await (await SoftwareKeyStore.open(p, pass(), FAST)).close();
    const a = await SoftwareKeyStore.open(p, pass());
    const b = await SoftwareKeyStore.open(p, pass());
    await a.generate('from-a', 'Ed25519');
    await b.generate('from-b', 'Ed25519');
    await expect(b.generate('from-a', 'Ed25519')).rejects.toMatchObject({ code: ErrorCode.KEYSTORE_EXISTS });
    const c = await SoftwareKeyStore.open(p, pass(), { deferUnlock: true });
    expect((await c.list()).map((i) => i.label)).toEqual(['from-a', 'from-b']);
    await Promise.all([a.close(), b.close(), c.close()]);
  });
});

describe('software key store: a kill mid-write loses nothing (built package)', () => {
  const built = resolve('dist/keystore/software.js');

  it('SIGKILL during a stream of writes leaves a valid store holding a prefix of the keys', async () => {
    expect(existsSync(built), `${built} missing: run "npm run build" first`).toBe(true);
    for (let round = 0; round < 4; round++) {
      const p = newPath();
      const script = `
        import { SoftwareKeyStore } from ${JSON.stringify(built)};
        const s = await SoftwareKeyStore.open(${JSON.stringify(p)}, new TextEncoder().encode(${JSON.stringify(PASS)}), { create: true, kdfCost: 14 });
        process.stdout.write('ready\\n');
        for (let i = 0; ; i++) await s.generate('k' + String(i).padStart(5, '0'), 'Ed25519');
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((ok) => child.stdout.once('data', () => ok()));
      await new Promise((ok) => setTimeout(ok, 150 + round * 70));
      child.kill('SIGKILL');
      await new Promise((ok) => child.once('exit', ok));
      const s = await SoftwareKeyStore.open(p, pass());
      const labels = (await s.list()).map((i) => i.label);
      expect(labels.length).toBeGreaterThan(0);
      labels.forEach((l, i) => expect(l).toBe('k' + String(i).padStart(5, '0')));
      const last = await s.get(labels[labels.length - 1] ?? '');
      expect(verifies(last.info.publicJwk, await last.signer().sign(data))).toBe(true);
      await s.close();
    }
  });
});
