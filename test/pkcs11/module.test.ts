/**
 * Pkcs11Module against SoftHSM2 (no mocks): loading faults, the per-process registry, slots and
 * token lookup by RFC 7512 attributes, token initialisation, the capability probe, and sessions.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode, Pkcs11Error } from '../../src/core/errors.js';
import { Pkcs11KeyStore, Pkcs11Module, Pkcs11Session, moduleRefCount, withSession } from '../../src/keystore/pkcs11/index.js';
import { createSoftHsm, softhsmMissing, type SoftHsmFixture } from '../helpers/softhsm.js';

const hsm: SoftHsmFixture | undefined =
  softhsmMissing === undefined
    ? createSoftHsm([
        { label: 'alpha', userPin: '1111' },
        { label: 'beta', userPin: '2222' },
      ])
    : undefined;
const scratch = mkdtempSync(join(tmpdir(), 'meshkit-p11mod-'));
afterAll(() => {
  hsm?.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});

async function moduleError(path: string): Promise<Pkcs11Error> {
  const err = await Pkcs11Module.open(path).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(Pkcs11Error);
  expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_MODULE);
  return err as Pkcs11Error;
}

describe('module loading faults', () => {
  it('a path that does not exist', async () => {
    const e = await moduleError(join(scratch, 'nope.so'));
    expect(e.message).toContain('nope.so');
    expect(e.message).toContain('does not exist');
  });

  it('a shared library that is not a PKCS#11 module (libc)', async () => {
    const libc = ['/usr/lib/x86_64-linux-gnu/libc.so.6', '/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib/aarch64-linux-gnu/libc.so.6'].find((p) => {
      try {
        return existsSync(p);
      } catch {
        return false;
      }
    });
    const path = libc ?? '/usr/lib/x86_64-linux-gnu/libc.so.6';
    const e = await moduleError(path);
    expect(e.message).toContain('is not a PKCS#11 module');
  });

  it('a text file', async () => {
    const p = join(scratch, 'module.so');
    writeFileSync(p, 'not a shared object\n');
    const e = await moduleError(p);
    expect(e.message).toContain('is not a PKCS#11 module');
  });

  it('a directory', async () => {
    const e = await moduleError(scratch);
    expect(e.message).toContain('not a regular file');
  });

  it('bad arguments are TypeError / RangeError', async () => {
    await expect(Pkcs11Module.open(42 as unknown as string)).rejects.toBeInstanceOf(TypeError);
    await expect(Pkcs11Module.open('')).rejects.toBeInstanceOf(RangeError);
  });
});

describe.skipIf(hsm === undefined)('Pkcs11Module on SoftHSM2', () => {
  const h = hsm as SoftHsmFixture;

  it('one library per path per process, reference-counted; finalized when the last user closes', async () => {
    expect(moduleRefCount(h.modulePath)).toBe(0);
    const a = await Pkcs11Module.open(h.modulePath);
    const b = await Pkcs11Module.open(h.modulePath);
    expect(a.lib).toBe(b.lib);
    expect(moduleRefCount(h.modulePath)).toBe(2);
    await a.close();
    await a.close(); // idempotent: does not release b's reference
    expect(moduleRefCount(h.modulePath)).toBe(1);
    expect((await b.slots()).length).toBeGreaterThan(0);
    await b.close();
    expect(moduleRefCount(h.modulePath)).toBe(0);
    await expect(b.slots()).rejects.toMatchObject({ code: ErrorCode.PKCS11_MODULE });
    // and it can be loaded again after finalization
    await using c = await Pkcs11Module.open(h.modulePath);
    expect(c.info.manufacturer).toBe('SoftHSM');
    expect(c.info.cryptokiVersion).toMatch(/^\d+\.\d+$/);
  });

  it('slots list the tokens with trimmed strings; tokens are found by label, serial and slot-id', async () => {
    await using m = await Pkcs11Module.open(h.modulePath);
    const slots = await m.slots();
    const alpha = slots.find((s) => s.token?.label === 'alpha');
    expect(alpha).toBeDefined();
    const t = alpha?.token;
    expect(t?.manufacturer).toBe('SoftHSM project');
    expect(t?.model).toBe('SoftHSM v2');
    expect(t?.serial).toMatch(/^[0-9a-f]+$/);
    expect(t?.initialized).toBe(true);
    expect(t?.loginRequired).toBe(true);
    for (const s of slots) {
      expect(s.description).toBe(s.description.trim());
      if (s.token !== undefined) expect(s.token.label).toBe(s.token.label.trim());
    }
    const byLabel = await m.findToken({ token: 'alpha' });
    expect(byLabel.token?.serial).toBe(t?.serial);
    const bySerial = await m.findToken({ serial: t?.serial as string });
    expect(bySerial.token?.label).toBe('alpha');
    const bySlot = await m.findToken({ slotId: Number(alpha?.slotId) });
    expect(bySlot.token?.label).toBe('alpha');
    const byModel = m.findToken({ model: 'SoftHSM v2', manufacturer: 'SoftHSM project' });
    await expect(byModel).rejects.toMatchObject({ code: ErrorCode.PKCS11_OBJECT_AMBIGUOUS });
  });

  it('a missing token: ERR_PKCS11_TOKEN_NOT_FOUND listing the tokens present', async () => {
    await using m = await Pkcs11Module.open(h.modulePath);
    const err = await m.findToken({ token: 'gamma', serial: '0000' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Pkcs11Error);
    expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_TOKEN_NOT_FOUND);
    expect((err as Error).message).toContain('token="gamma", serial="0000"');
    expect((err as Error).message).toContain('tokens present: ');
    expect((err as Error).message).toContain('"alpha" (serial ');
    expect((err as Error).message).toContain('"beta" (serial ');
  });

  it('initToken on the free slot makes a token that a store can open', async () => {
    {
      await using m = await Pkcs11Module.open(h.modulePath);
      const slot = await m.initToken({ free: true }, { label: 'gamma', soPin: new TextEncoder().encode('87654321'), userPin: new TextEncoder().encode('3333') });
      expect(slot.token?.label).toBe('gamma');
      expect(slot.token?.initialized).toBe(true);
    }
    const s = await Pkcs11KeyStore.open(h.uri('gamma'), new TextEncoder().encode('3333'));
    expect(await s.list()).toEqual([]);
    await s.close();
  });

  it('sessions: close is idempotent, await using and withSession close them, find works', async () => {
    await using m = await Pkcs11Module.open(h.modulePath);
    const slot = await m.findToken({ token: 'beta' });
    const s = Pkcs11Session.open(m, slot);
    await s.login(new TextEncoder().encode('2222'));
    await s.login(new TextEncoder().encode('2222')); // already logged in: the same PIN passes…
    // …and another is refused, without a try at the token
    await expect(s.login(new TextEncoder().encode('wrong'))).rejects.toMatchObject({ code: ErrorCode.PKCS11_PIN_INCORRECT });
    expect(s.find([]).length).toBe(0);
    await s.close();
    await s.close();
    expect(s.closed).toBe(true);
    expect(() => s.find([])).toThrow(Pkcs11Error);
    let inner: Pkcs11Session | undefined;
    await expect(
      withSession(m, slot, (x) => {
        inner = x;
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(inner?.closed).toBe(true);
    {
      await using t = Pkcs11Session.open(m, slot, { readWrite: false });
      inner = t;
    }
    expect(inner.closed).toBe(true);
  });

  it('capabilities: SoftHSM 2.6 mechanisms, curves, wrap support and quirks as data', async () => {
    const s = await Pkcs11KeyStore.open(h.uri('alpha'), new TextEncoder().encode('1111'));
    try {
      const c = await s.capabilities();
      const names = c.mechanisms.map((m) => m.name);
      expect(names).toContain('CKM_EC_EDWARDS_KEY_PAIR_GEN');
      expect(names).toContain('CKM_EDDSA');
      expect(names).toContain('CKM_ECDH1_DERIVE');
      expect(names).toContain('CKM_EC_KEY_PAIR_GEN');
      expect(names).not.toContain('CKM_EC_MONTGOMERY_KEY_PAIR_GEN');
      const eddsa = c.mechanisms.find((m) => m.name === 'CKM_EDDSA');
      expect(eddsa?.flags).toContain('CKF_SIGN');
      expect(eddsa?.maxKeySize).toBeGreaterThanOrEqual(448);
      expect(c.curves.Ed25519).toEqual({ generate: true, sign: true, keyType: 'CKK_EC_EDWARDS' });
      expect(c.curves.X25519).toEqual({ generate: true, derive: true, keyType: 'CKK_EC_EDWARDS' });
      expect(c.curves.X448.keyType).toBe('CKK_EC_EDWARDS');
      expect(c.curves['P-256']).toEqual({ generate: true, sign: true, derive: true, keyType: 'CKK_EC' });
      expect(c.wrap).toEqual({ aesKeyWrap: true, aesKeyWrapPad: true, edPrivateKeys: false });
      expect(c.quirks).toEqual(
        expect.arrayContaining([
          'ec-point-der-wrapped',
          'edwards-curve-as-printable-string-accepted',
          'x25519-as-CKK_EC_EDWARDS',
          'no-CKM_ECDSA_SHA256 (hash on host)',
        ]),
      );
      // the probe leaves no objects behind
      expect(await s.list()).toEqual([]);
      const m = await Pkcs11Module.open(h.modulePath);
      try {
        const slot = await m.findToken({ token: 'alpha' });
        await withSession(m, slot, (x) => expect(x.find([]).length).toBe(0));
        // without a login the probe still reports the mechanisms
        expect((await m.capabilities(slot)).mechanisms.length).toBe(c.mechanisms.length);
      } finally {
        await m.close();
      }
    } finally {
      await s.close();
    }
  });
});
