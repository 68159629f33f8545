/**
 * Card faults on an administration "card" (a SoftHSM token standing in for a smartcard, and the
 * TPM-backed token of test/helpers/tpm.ts):
 *
 * 1. a CKA_ALWAYS_AUTHENTICATE key asks the PIN source once per signature, and the CLI prompt shows
 *    what the token reports about the PIN tries (src/cli/secrets.ts `status`);
 * 2. a card removed mid-signature — all sessions of the slot closed while the PIN is being asked
 *    (before C_SignInit), or between C_SignInit and C_Sign (at the context-specific login) — is a
 *    typed ERR_PKCS11_TOKEN_REMOVED, nothing is signed, and a caller that writes only after signing
 *    writes nothing;
 * 3. a wrong PIN is a typed error naming CKR_PIN_INCORRECT and what the token reports about tries left;
 * 4. the same on the TPM token, whose dictionary-attack lockout is a typed ERR_PKCS11_PIN_LOCKED.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { verify as nodeVerify, createPublicKey } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode, Pkcs11Error, type PinStatus } from '../../src/core/errors.js';
import { composeMasterProfile, composePersonalProfile, signProfile, verifyProfile } from '../../src/core/profiles.js';
import type { PublicJwk, Signer } from '../../src/core/signer.js';
import { secretSource } from '../../src/cli/secrets.js';
import { createSoftHsm, softhsmMissing, type SoftHsmFixture } from '../helpers/softhsm.js';
import { startTpm, tpmMissing, type TpmFixture } from '../helpers/tpm.js';
import { testKey, testSigner } from '../helpers/software-signer.js';
import type { Pkcs11KeyStore as Store } from '../../src/keystore/pkcs11/store.js';

const hsm: SoftHsmFixture | undefined =
  softhsmMissing === undefined
    ? createSoftHsm([
        { label: 'card-aa', userPin: '1234' },
        { label: 'card-prompt', userPin: '1234' },
        { label: 'card-removed', userPin: '1234' },
        { label: 'card-wrongpin', userPin: '1234' },
      ])
    : undefined;
const tpm: TpmFixture | undefined = tpmMissing === undefined ? await startTpm({ label: 'tpm-card', userPin: '1357' }) : undefined;
afterAll(() => {
  hsm?.cleanup();
  tpm?.stop();
});

// Loaded after the fixtures: SoftHSM and tpm2-pkcs11 read their environment in C_Initialize.
const { Pkcs11KeyStore } = await import('../../src/keystore/pkcs11/store.js');
const { pinStatusText } = await import('../../src/keystore/pkcs11/session.js');

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const P256_SIG = 'sha256';

function verifies(jwk: PublicJwk, data: Uint8Array, sig: Uint8Array): boolean {
  const key = createPublicKey({ key: { ...jwk }, format: 'jwk' });
  return jwk.crv === 'P-256' ? nodeVerify(P256_SIG, data, { key, dsaEncoding: 'ieee-p1363' }, sig) : nodeVerify(null, data, key, sig);
}

/** A PIN source that counts its calls and can run a hook (e.g. pull the card) before answering. */
function countingPin(pin: string): { source: () => Promise<Uint8Array>; calls: () => number; before: { hook?: (() => void | Promise<void>) | undefined } } {
  let n = 0;
  const before: { hook?: (() => void | Promise<void>) | undefined } = {};
  return {
    source: async () => {
      n += 1;
      await before.hook?.();
      return utf8(pin);
    },
    calls: () => n,
    before,
  };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
}

describe.skipIf(hsm === undefined)(`SoftHSM card faults${softhsmMissing === undefined ? '' : ` — skipped: ${softhsmMissing}`}`, () => {
  const h = hsm as SoftHsmFixture;

  describe('(1) CKA_ALWAYS_AUTHENTICATE', () => {
    it.each([1, 2])('asks the PIN source once per signature (sessions: %i); a normal key never asks', async (sessions) => {
      const pin = countingPin('1234');
      const store = await Pkcs11KeyStore.open(h.uri('card-aa'), pin.source, { sessions });
      try {
        expect(pin.calls()).toBe(1); // the user login at open
        const aa = await store.generate(`aa-${sessions}`, 'Ed25519', { alwaysAuthenticate: true });
        const plain = await store.generate(`plain-${sessions}`, 'P-256');
        // the flag is on the token: a handle found again knows it too
        const again = await store.get(`aa-${sessions}`);
        for (const [i, handle] of [aa, aa, again].entries()) {
          const data = utf8(`admin update ${i}`);
          const sig = await handle.signer().sign(data);
          expect(verifies(aa.info.publicJwk, data, sig)).toBe(true);
          expect(pin.calls()).toBe(2 + i);
        }
        const before = pin.calls();
        for (let i = 0; i < 3; i++) await plain.signer().sign(utf8(`plain ${i}`));
        expect(pin.calls()).toBe(before);
      } finally {
        await store.delete(`aa-${sessions}`).catch(() => undefined);
        await store.delete(`plain-${sessions}`).catch(() => undefined);
        await store.close();
      }
    });

    it('the CLI PIN prompt shows what the token reports about the tries left, current at each prompt', async () => {
      const prompts: string[] = [];
      const answers = ['1234', '1234', '0000', '1234'];
      const current: { store?: Store } = {};
      const source = secretSource(
        {},
        {
          purpose: 'PIN',
          subject: 'administration card "card-prompt"',
          env: {},
          isTTY: true,
          prompt: async (message) => {
            prompts.push(message);
            return answers.shift() ?? '';
          },
          status: () => (current.store === undefined ? undefined : pinStatusText(current.store.tokenInfo().pinStatus)),
        },
      );
      const store = await Pkcs11KeyStore.open(h.uri('card-prompt'), source);
      current.store = store;
      try {
        const aa = await store.generate('aa', 'Ed25519', { alwaysAuthenticate: true });
        expect(prompts).toEqual(['PIN for administration card "card-prompt":']); // no store yet: no status line
        await aa.signer().sign(utf8('one'));
        expect(prompts[1]).toBe(`${pinStatusText({ countLow: false, finalTry: false, locked: false })}\nPIN for administration card "card-prompt":`);
        const err = await rejection(aa.signer().sign(utf8('two: wrong PIN')));
        expect(err).toBeInstanceOf(Pkcs11Error);
        expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_PIN_INCORRECT);
        expect((err as Pkcs11Error).ckrName).toBe('CKR_PIN_INCORRECT');
        // the next prompt carries the token's new PIN state (SoftHSM: CKF_USER_PIN_COUNT_LOW)
        const sig = await aa.signer().sign(utf8('three'));
        expect(verifies(aa.info.publicJwk, utf8('three'), sig)).toBe(true);
        expect(prompts).toHaveLength(4);
        expect(prompts[3]).toContain('CKF_USER_PIN_COUNT_LOW');
        expect(prompts[3]).toContain((err as Pkcs11Error).pinStatus === undefined ? 'CKF_USER_PIN_COUNT_LOW' : pinStatusText((err as Pkcs11Error).pinStatus));
        expect(prompts[3]?.endsWith('\nPIN for administration card "card-prompt":')).toBe(true);
      } finally {
        await store.delete('aa').catch(() => undefined);
        await store.close();
      }
    });
  });

  it('a failing status source does not block the PIN prompt (no status line)', async () => {
    const prompts: string[] = [];
    const source = secretSource({}, {
      purpose: 'PIN',
      subject: 'card',
      env: {},
      isTTY: true,
      prompt: async (m) => {
        prompts.push(m);
        return '1234';
      },
      status: () => {
        throw new Error('card gone');
      },
    });
    expect(Buffer.from(await source()).toString('utf8')).toBe('1234');
    expect(prompts).toEqual(['PIN for card:']);
  });

  describe('(2) card removed mid-signature', () => {
    const master = testKey('Ed25519');

    async function cardWithAdminKey(): Promise<{ store: Store; signer: Signer; pin: ReturnType<typeof countingPin> }> {
      const pin = countingPin('1234');
      const store = await Pkcs11KeyStore.open(h.uri('card-removed'), pin.source);
      const existing = await store.get('admin').catch(() => undefined);
      const handle = existing ?? (await store.generate('admin', 'Ed25519', { alwaysAuthenticate: true }));
      return { store, signer: handle.signer(), pin };
    }

    function expectRemoved(err: unknown): void {
      expect(err).toBeInstanceOf(Pkcs11Error);
      expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_TOKEN_REMOVED);
      expect((err as Pkcs11Error).ckrName).toBe('CKR_SESSION_HANDLE_INVALID');
      expect((err as Error).message).toContain('token "card-removed"');
    }

    it('removed while the PIN is asked (before C_SignInit): ERR_PKCS11_TOKEN_REMOVED, no signature', async () => {
      const { store, signer, pin } = await cardWithAdminKey();
      try {
        pin.before.hook = () => store.module.closeAllSessions(store.slot);
        let result: Uint8Array | undefined;
        const err = await rejection(
          signer.sign(utf8('connect device X')).then((s) => {
            result = s;
            return s;
          }),
        );
        expectRemoved(err);
        expect((err as Error).message).toContain('signing with key "admin" on token "card-removed"');
        expect(result).toBeUndefined();
        // the store stays typed afterwards: no crash, no hang
        expectRemoved(await rejection(signer.sign(utf8('again'))));
        await expect(store.list()).rejects.toMatchObject({ code: ErrorCode.PKCS11_TOKEN_REMOVED });
      } finally {
        await store.close();
      }
    });

    it('removed between C_SignInit and C_Sign (at the context-specific login): typed, nothing signed, the card works after re-insertion', async () => {
      const { store, signer, pin } = await cardWithAdminKey();
      const lib = store.module.lib;
      const calls: string[] = [];
      const original = { C_SignInit: lib.C_SignInit, C_Login: lib.C_Login, C_Sign: lib.C_Sign };
      try {
        // Spy on the Cryptoki calls of this signature; pull the card when the context-specific login starts.
        lib.C_SignInit = (...args: Parameters<typeof lib.C_SignInit>) => {
          calls.push('C_SignInit');
          return original.C_SignInit.apply(lib, args);
        };
        lib.C_Login = (...args: Parameters<typeof lib.C_Login>) => {
          calls.push(`C_Login(${args[1]})`);
          if (args[1] === 2 /* CKU_CONTEXT_SPECIFIC */) lib.C_CloseAllSessions(store.slot.handle);
          return original.C_Login.apply(lib, args);
        };
        lib.C_Sign = ((...args: Parameters<typeof lib.C_Sign>) => {
          calls.push('C_Sign');
          return original.C_Sign.apply(lib, args);
        }) as typeof lib.C_Sign;
        const err = await rejection(signer.sign(utf8('revoke device Y')));
        expectRemoved(err);
        expect((err as Pkcs11Error).operation).toBe('C_Login');
        expect(calls.slice(0, 2)).toEqual(['C_SignInit', 'C_Login(2)']);
        // no signature was produced: any C_Sign after the removal (the operation's cleanup) failed
        expect(pin.calls()).toBe(2);
      } finally {
        Object.assign(lib, original);
        await store.close();
      }
      // "re-inserted": a new store signs again
      const fresh = await cardWithAdminKey();
      try {
        const data = utf8('after re-insertion');
        expect(verifies(fresh.signer.publicJwk, data, await fresh.signer.sign(data))).toBe(true);
      } finally {
        await fresh.store.close();
      }
    });

    it('signProfile with a removed card rejects, so a caller that writes only after signing writes nothing', async () => {
      const { store, signer, pin } = await cardWithAdminKey();
      const dir = mkdtempSync(join(tmpdir(), 'meshkit-card-faults-'));
      try {
        const masterProfile = composeMasterProfile({ signatureKey: master.publicJwk, adminKeys: [signer.publicJwk] });
        const signedMaster = await signProfile('MasterProfile', masterProfile, testSigner(master));
        const personalPath = join(dir, 'personal.json');
        const v1 = await signProfile('PersonalProfile', composePersonalProfile({ master: signedMaster }), signer);
        writeFileSync(personalPath, JSON.stringify(v1));
        const before = { text: readFileSync(personalPath, 'utf8'), mtimeMs: statSync(personalPath).mtimeMs };
        await verifyProfile(v1, { master: signedMaster });

        // the update: sign, then (only then) write and publish
        const published: unknown[] = [];
        const update = async (): Promise<void> => {
          const v2 = await signProfile('PersonalProfile', composePersonalProfile({ master: signedMaster, sequence: 2 }), signer);
          writeFileSync(personalPath, JSON.stringify(v2));
          published.push(v2);
        };
        pin.before.hook = () => store.module.closeAllSessions(store.slot);
        const err = await rejection(update());
        expect(err).toBeInstanceOf(Pkcs11Error);
        expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_TOKEN_REMOVED);
        expect(published).toEqual([]);
        expect(readFileSync(personalPath, 'utf8')).toBe(before.text);
        expect(statSync(personalPath).mtimeMs).toBe(before.mtimeMs);
        expect((await verifyProfile(JSON.parse(before.text) as object, { master: signedMaster })).sequence).toBe(1);
      } finally {
        rmSync(dir, { recursive: true, force: true });
        await store.close();
      }
    });
  });

  describe('(3) wrong PIN', () => {
    it('at login: ERR_PKCS11_PIN_INCORRECT naming CKR_PIN_INCORRECT and the tries-left text; the right PIN still works', async () => {
      const err = await rejection(Pkcs11KeyStore.open(h.uri('card-wrongpin'), utf8('9999')));
      expect(err).toBeInstanceOf(Pkcs11Error);
      const e = err as Pkcs11Error;
      expect(e.code).toBe(ErrorCode.PKCS11_PIN_INCORRECT);
      expect(e.ckrName).toBe('CKR_PIN_INCORRECT');
      expect(e.operation).toBe('C_Login');
      expect(e.pinStatus).toEqual<PinStatus>({ countLow: true, finalTry: false, locked: false });
      expect(e.message).toContain('"card-wrongpin"');
      expect(e.message).toContain(pinStatusText(e.pinStatus));
      expect(e.message).toContain('CKF_USER_PIN_COUNT_LOW');
      const store = await Pkcs11KeyStore.open(h.uri('card-wrongpin'), utf8('1234'));
      expect(store.tokenInfo().pinStatus.countLow).toBe(false);
      await store.close();
    });

    it('at the context-specific login of an always-authenticate key: typed, nothing signed, the key still works', async () => {
      const answers = ['1234', '0000', '1234'];
      const store = await Pkcs11KeyStore.open(h.uri('card-wrongpin'), async () => utf8(answers.shift() ?? ''));
      try {
        const aa = await store.generate('aa', 'P-256', { alwaysAuthenticate: true });
        const err = await rejection(aa.signer().sign(utf8('x')));
        expect(err).toBeInstanceOf(Pkcs11Error);
        expect((err as Pkcs11Error).code).toBe(ErrorCode.PKCS11_PIN_INCORRECT);
        expect((err as Pkcs11Error).ckrName).toBe('CKR_PIN_INCORRECT');
        expect((err as Error).message).toMatch(/^context-specific PIN incorrect for token "card-wrongpin"; the token/);
        expect((err as Error).message).toContain(pinStatusText((err as Pkcs11Error).pinStatus));
        const sig = await aa.signer().sign(utf8('y'));
        expect(verifies(aa.info.publicJwk, utf8('y'), sig)).toBe(true);
      } finally {
        await store.delete('aa').catch(() => undefined);
        await store.close();
      }
    });
  });
});

describe.skipIf(tpm === undefined)(`(4) TPM token wrong PIN${tpmMissing === undefined ? '' : ` — skipped: ${tpmMissing}`}`, () => {
  const t = tpm as TpmFixture;

  it('a wrong PIN is ERR_PKCS11_PIN_INCORRECT naming CKR_PIN_INCORRECT and the tries-left text; the right PIN still works', async () => {
    const err = await rejection(Pkcs11KeyStore.open(t.uri(), utf8('0000')));
    expect(err).toBeInstanceOf(Pkcs11Error);
    const e = err as Pkcs11Error;
    expect(e.code).toBe(ErrorCode.PKCS11_PIN_INCORRECT);
    expect(e.ckrName).toBe('CKR_PIN_INCORRECT');
    expect(e.message).toContain('"tpm-card"');
    // tpm2-pkcs11 sets none of the CKF_USER_PIN_* flags: the message says so instead of guessing
    expect(e.message).toContain(pinStatusText(e.pinStatus));
    expect(e.message).toContain('does not report how many tries are left');
    const store = await Pkcs11KeyStore.open(t.uri(), utf8('1357'));
    try {
      const k = await store.generate('after-wrong-pin', 'P-256');
      const sig = await k.signer().sign(utf8('ok'));
      expect(verifies(k.info.publicJwk, utf8('ok'), sig)).toBe(true);
      await store.delete('after-wrong-pin');
    } finally {
      await store.close();
    }
  });

  it('repeated wrong PINs end in the TPM dictionary-attack lockout: ERR_PKCS11_PIN_LOCKED, every failure typed', async () => {
    const codes: string[] = [];
    for (let i = 0; i < 10 && codes.at(-1) !== ErrorCode.PKCS11_PIN_LOCKED; i++) {
      const e = await rejection(Pkcs11KeyStore.open(t.uri(), utf8('0000')));
      expect(e).toBeInstanceOf(Pkcs11Error);
      codes.push((e as Pkcs11Error).code);
      if ((e as Pkcs11Error).code === ErrorCode.PKCS11_PIN_LOCKED) {
        expect((e as Pkcs11Error).ckrName).toBe('CKR_PIN_LOCKED');
        expect((e as Error).message).toContain('"tpm-card"');
      }
    }
    expect(codes.at(-1)).toBe(ErrorCode.PKCS11_PIN_LOCKED);
    expect(codes.slice(0, -1).every((c) => c === ErrorCode.PKCS11_PIN_INCORRECT)).toBe(true);
    // locked out: the right PIN is refused too, typed
    await expect(Pkcs11KeyStore.open(t.uri(), utf8('1357'))).rejects.toMatchObject({ code: ErrorCode.PKCS11_PIN_LOCKED });
  });
});
