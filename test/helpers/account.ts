/**
 * TEST helper: an admin account directory made from a REAL ceremony on scratch SoftHSM tokens
 * (master keys on an HSM token, the administration key on a second token standing in for a
 * smartcard), plus devices made with software key stores.
 *
 *   const a = await makeAccountFixture();                  // or { portal: { Url, Account } }
 *   const admin = await a.openAdmin();                      // { signer, close }
 *   const d = await a.makeDevice('laptop');                 // Device Profile (Ed25519 + X25519)
 *   await connectDevice({ dir: a.dir, admin: admin.signer }, d.signed);
 *
 * Guard suites with `describe.skipIf(softhsmMissing)` (test/helpers/softhsm.ts).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { composeDeviceProfile, ProfileType, signProfile, type SignedProfile } from '../../src/core/profiles.js';
import type { Decrypter, Signer } from '../../src/core/signer.js';
import { parsePlan, runCeremony } from '../../src/ceremony/index.js';
import { initAccount, type Account, type AccountPortal } from '../../src/admin/account.js';
import { openKeyReference, openKeyStore, SoftwareKeyStore } from '../../src/keystore/index.js';
import { makeCeremonyFixture, type CeremonyFixture } from './ceremony.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** An open signer (or decrypter) with its store; close it when done. */
export interface OpenKey<T> {
  key: T;
  uri: string;
  close(): Promise<void>;
}

/** A device made with a software key store: Ed25519 signature key, X25519 encryption key. */
export interface FixtureDevice {
  identifier: string;
  description: string;
  signed: SignedProfile;
  /** `file:PATH` of its key store (passphrase {@link DEVICE_PASSPHRASE}). */
  store: string;
  signKeyUri: string;
  encKeyUri: string;
  signer: Signer;
  decrypter: Decrypter;
  close(): Promise<void>;
}

/** Passphrase of every fixture device's software key store. */
export const DEVICE_PASSPHRASE = 'device-pass-7731';

export interface AccountFixture {
  /** The account directory (made by initAccount). */
  dir: string;
  account: Account;
  ceremony: CeremonyFixture;
  /** The ceremony's output directory. */
  ceremonyDir: string;
  adminKeyUri: string;
  adminPin: string;
  masterKeyUri: string;
  masterPin: string;
  /** Opens the administration key on its token. */
  openAdmin(pin?: string): Promise<OpenKey<Signer>>;
  /** Opens the master signature key on the HSM token. */
  openMaster(): Promise<OpenKey<Signer>>;
  /** Another card: a token (made before any key was opened) with an Ed25519 key `admin`; its URI and PIN. */
  newCard(): Promise<{ uri: string; pin: string; open(): Promise<OpenKey<Signer>> }>;
  /** A device with its own software key store. */
  makeDevice(description?: string): Promise<FixtureDevice>;
  cleanup(): Promise<void>;
}

let cards = 0;

async function openSigner(uri: string, pin: string): Promise<OpenKey<Signer>> {
  const { store, handle } = await openKeyReference(uri, enc(pin));
  return { key: handle.signer(), uri, close: () => store.close() };
}

/**
 * Runs a ceremony (generate-on-token, Ed448 + X448 on a SoftHSM token; Ed25519 admin key on a
 * second token) and initialises an account directory from it.
 */
export async function makeAccountFixture(opts: { portal?: AccountPortal; spareCards?: number } = {}): Promise<AccountFixture> {
  const ceremony = await makeCeremonyFixture({ origin: 'generate-on-token' });
  // SoftHSM sees only the tokens present when the module is loaded: make the spare cards now.
  const spare: Array<{ uri: string; pin: string }> = [];
  for (let i = 0; i < (opts.spareCards ?? 3); i++) {
    const l = `Spare-${process.pid % 100000}-${++cards}`;
    const pin = `cpin-${cards}-5521`;
    ceremony.hsm.addToken(l, pin);
    const store = await openKeyStore(ceremony.hsm.uri(l), enc(pin));
    try {
      await store.generate('admin', 'Ed25519');
    } finally {
      await store.close();
    }
    spare.push({ uri: `pkcs11:token=${encodeURIComponent(l)};object=admin?module-path=${ceremony.hsm.modulePath}`, pin });
  }
  await runCeremony(parsePlan(new Uint8Array(readFileSync(ceremony.planPath))), { out: ceremony.out, secrets: ceremony.secrets, operator: 'Olivia' });
  const dir = join(ceremony.dir, 'account');
  const account = await initAccount(dir, ceremony.out, opts.portal);
  const admins = (ceremony.plan.Ceremony['Administrators'] as Array<{ Key?: string }>);
  const adminKeyUri = admins[0]?.Key as string;
  const masterKeyUri = account.index.MasterKeys.Signature as string;
  const adminPin = ceremony.pinEnv['ADMIN_PIN'] as string;
  const masterPin = ceremony.pinEnv['MASTER_PIN'] as string;
  const devDir = mkdtempSync(join(tmpdir(), 'meshkit-devices-'));
  const open: Array<{ close(): Promise<void> }> = [];
  let devices = 0;
  return {
    dir, account, ceremony, ceremonyDir: ceremony.out, adminKeyUri, adminPin, masterKeyUri, masterPin,
    openAdmin: async (pin = adminPin) => {
      const k = await openSigner(adminKeyUri, pin);
      open.push(k);
      return k;
    },
    openMaster: async () => {
      const k = await openSigner(masterKeyUri, masterPin);
      open.push(k);
      return k;
    },
    newCard: async () => {
      const c = spare.shift();
      if (c === undefined) throw new Error('no spare card left: pass a larger spareCards to makeAccountFixture');
      return {
        ...c,
        open: async () => {
          const k = await openSigner(c.uri, c.pin);
          open.push(k);
          return k;
        },
      };
    },
    makeDevice: async (description = `device ${++devices}`) => {
      const path = join(devDir, `device-${devices}-${Math.random().toString(16).slice(2)}.keys`);
      const store = await SoftwareKeyStore.open(path, enc(DEVICE_PASSPHRASE), { create: true, kdfCost: 14 });
      const sign = await store.generate('sign', 'Ed25519');
      const encKey = await store.generate('enc', 'X25519');
      const signer = sign.signer();
      const profile = composeDeviceProfile({ description, signatureKey: signer.publicJwk, encryptionKey: encKey.info.publicJwk });
      const signed = await signProfile(ProfileType.Device, profile, signer);
      const d: FixtureDevice = {
        identifier: profile.Identifier, description, signed, store: `file:${path}`,
        signKeyUri: `file:${path}#sign`, encKeyUri: `file:${path}#enc`,
        signer, decrypter: encKey.decrypter(), close: () => store.close(),
      };
      open.push(d);
      return d;
    },
    cleanup: async () => {
      for (const k of open.splice(0)) await k.close().catch(() => undefined);
      rmSync(devDir, { recursive: true, force: true });
      ceremony.cleanup();
    },
  };
}
