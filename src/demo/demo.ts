/**
 * `meshkit demo`: the whole story on embedded defaults, no hardware needed.
 *
 * Step 1 of the story: a software master key set (Ed448 master signature key, X448 master escrow
 * key) and an administration key in encrypted software key stores; a Master Profile and a
 * Personal Profile; two devices with their own keys and self-signed Device Profiles; the devices
 * connected by a superseding Personal Profile signed by the administration key; everything
 * verified (and a forged and a superseded profile refused); every step recorded in a linked-hash
 * log whose head is signed. Everything it makes is kept under the output directory.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { b64u, fromB64u, fromUtf8, utf8 } from '../core/bytes.js';
import { MeshkitError } from '../core/errors.js';
import { HashLog, signLogHead, verifyLog, verifyLogHead } from '../core/hashlog.js';
import {
  composeDeviceProfile,
  composeMasterProfile,
  composePersonalProfile,
  connectDevices,
  ProfileType,
  signProfile,
  verifyProfile,
  type SignedProfile,
  type VerifiedProfile,
} from '../core/profiles.js';
import { SoftwareKeyStore } from '../keystore/software.js';
import type { KeyHandle, KeyStore } from '../keystore/types.js';

export interface DemoOptions {
  /** Output directory; created; must be empty if it exists. */
  out: string;
  /** Passphrase for the demo key stores; a random one is made (and kept under `out`) when absent. */
  passphrase?: Uint8Array;
  /** scrypt cost (log2 N) of the demo key stores; default the key store's default. */
  kdfCost?: number;
  /** Called with each step as it completes. */
  onStep?: (step: DemoStep) => void;
}

export interface DemoStep {
  step: string;
  detail: string;
  ms: number;
}

export interface DemoSummary {
  out: string;
  keyStore: 'software';
  passphraseFile?: string;
  master: { identifier: string; signatureKey: string; escrowKey: string; adminKey: string };
  devices: Array<{ name: string; identifier: string; file: string }>;
  personal: { identifier: string; sequence: number; devices: number };
  checks: Array<{ check: string; result: string }>;
  log: { entries: number; head: string | null };
  steps: DemoStep[];
  files: string[];
}

const DEVICES = [
  { name: 'thermostat', description: 'Hallway thermostat (ESP32-C3 class)' },
  { name: 'door-lock', description: 'Front door lock (nRF52 class)' },
] as const;

/**
 * Runs the demo and returns what it did.
 * @throws MeshkitError when a step fails (nothing is reported as done that was not).
 */
export async function runDemo(opts: DemoOptions): Promise<DemoSummary> {
  const out = resolve(opts.out);
  await prepareOut(out);
  const steps: DemoStep[] = [];
  const checks: DemoSummary['checks'] = [];
  const log = new HashLog();
  const stores: KeyStore[] = [];
  const step = (name: string, detail: string, t0: number, body: Record<string, unknown> = {}): void => {
    const s = { step: name, detail, ms: Math.round(performance.now() - t0) };
    steps.push(s);
    log.append(name, { detail, ...body });
    opts.onStep?.(s);
  };

  let passphrase = opts.passphrase;
  let passphraseFile: string | undefined;
  if (passphrase === undefined) {
    passphraseFile = join(out, 'keys', 'passphrase.txt');
    const generated = b64u(randomBytes(18));
    passphrase = utf8(generated);
    await mkdir(join(out, 'keys'), { recursive: true, mode: 0o700 });
    await writeFile(passphraseFile, generated + '\n', { mode: 0o600 });
  }
  const secret = passphrase;
  const storeOpts = { create: true, ...(opts.kdfCost === undefined ? {} : { kdfCost: opts.kdfCost }) };
  const openStore = async (file: string): Promise<KeyStore> => {
    await mkdir(join(out, 'keys'), { recursive: true, mode: 0o700 });
    const store = await SoftwareKeyStore.open(join(out, 'keys', file), () => new Uint8Array(secret), storeOpts);
    stores.push(store);
    return store;
  };

  try {
    // 1. The master key set and an administration key, each in an encrypted software key store.
    let t0 = performance.now();
    const masterStore = await openStore('master.keys');
    const masterSign = await masterStore.generate('master-signature', 'Ed448');
    const masterEscrow = await masterStore.generate('master-escrow', 'X448');
    const adminStore = await openStore('admin.keys');
    const admin = await adminStore.generate('admin-1', 'Ed25519');
    step('keys', `master signature key ${masterSign.info.keyId} (Ed448), master escrow key ${masterEscrow.info.keyId} (X448), administration key ${admin.info.keyId} (Ed25519), in encrypted software key stores (scrypt + AES-256-GCM)`, t0,
      { masterSignatureKey: masterSign.info.keyId, masterEscrowKey: masterEscrow.info.keyId, adminKey: admin.info.keyId });

    // 2. Master Profile, signed by the master signature key.
    t0 = performance.now();
    const masterProfile = composeMasterProfile({
      signatureKey: masterSign.info.publicJwk,
      escrowKeys: [masterEscrow.info.publicJwk],
      adminKeys: [admin.info.publicJwk],
    });
    const master = await signProfile(ProfileType.Master, masterProfile, masterSign.signer());
    await writeJson(join(out, 'master.json'), master);
    step('master-profile', `Master Profile ${masterProfile.Identifier} signed by the master signature key`, t0, { identifier: masterProfile.Identifier });

    // 3. First Personal Profile (no devices yet), signed by the administration key.
    t0 = performance.now();
    const personal1 = composePersonalProfile({ master });
    const signedPersonal1 = await signProfile(ProfileType.Personal, personal1, admin.signer());
    await writeJson(join(out, 'history', 'personal-1.json'), signedPersonal1);
    step('personal-profile', `Personal Profile ${personal1.Identifier} (Sequence 1) signed by administration key ${admin.info.keyId}`, t0, { sequence: 1 });

    // 4. Two devices, each with its own signature, encryption and authentication keys and a self-signed Device Profile.
    t0 = performance.now();
    const devices: Array<{ name: string; handle: KeyHandle; signed: SignedProfile; file: string }> = [];
    for (const d of DEVICES) {
      const store = await openStore(`device-${d.name}.keys`);
      const sig = await store.generate('device-signature', 'Ed25519');
      const enc = await store.generate('device-encryption', 'X25519');
      const auth = await store.generate('device-authentication', 'X25519');
      const profile = composeDeviceProfile({
        description: d.description,
        signatureKey: sig.info.publicJwk,
        encryptionKey: enc.info.publicJwk,
        authenticationKey: auth.info.publicJwk,
      });
      const signed = await signProfile(ProfileType.Device, profile, sig.signer());
      const file = join(out, 'devices', `${d.name}.json`);
      await writeJson(file, signed);
      devices.push({ name: d.name, handle: sig, signed, file });
    }
    step('device-profiles', devices.map((d) => `${d.name} ${d.handle.info.keyId}`).join(', ') + ' — self-signed by their device signature keys', t0,
      { devices: devices.map((d) => d.handle.info.keyId) });

    // 5. Connect both devices: a superseding Personal Profile signed by the administration key.
    t0 = performance.now();
    const personal = connectDevices(personal1, devices.map((d) => d.signed));
    const signedPersonal = await signProfile(ProfileType.Personal, personal, admin.signer());
    await writeJson(join(out, 'personal.json'), signedPersonal);
    step('connect', `${devices.length} devices connected: Personal Profile Sequence ${personal.Sequence} supersedes Sequence 1`, t0, { sequence: personal.Sequence });

    // 6. Verify everything from the files written, as a relying party would.
    t0 = performance.now();
    const vMaster = await verifyProfile(master);
    checks.push({ check: 'Master Profile', result: `valid, self-signed by master signature key ${vMaster.signerKeyId}` });
    const latest = (id: string, type: string): number | undefined =>
      (id === personal.Identifier && type === ProfileType.Personal ? personal.Sequence : undefined);
    const vPersonal = await verifyProfile(signedPersonal, { master, latestSequence: latest });
    checks.push({ check: 'Personal Profile', result: `valid, Sequence ${vPersonal.sequence}, signed by administration key ${vPersonal.signerKeyId}, ${vPersonal.devices?.length ?? 0} devices verified` });
    for (const d of devices) {
      const v = await verifyProfile(d.signed, { personal: vPersonal as VerifiedProfile<'PersonalProfile'> });
      checks.push({ check: `Device ${d.name}`, result: `valid and connected (${v.identifier})` });
    }
    const forged = forgeDescription(devices[0]!.signed, 'Front door lock (attacker firmware)');
    await writeJson(join(out, 'checks', 'forged-device.json'), forged);
    checks.push({ check: 'forged Device Profile', result: await refusal(verifyProfile(forged)) });
    checks.push({ check: 'superseded Personal Profile (Sequence 1)', result: await refusal(verifyProfile(signedPersonal1, { latestSequence: latest })) });
    const rogueStore = await openStore('rogue.keys');
    const rogue = await rogueStore.generate('not-an-admin', 'Ed25519');
    const rogueSigned = await signProfile(ProfileType.Personal, personal, rogue.signer());
    await writeJson(join(out, 'checks', 'personal-signed-by-rogue-key.json'), rogueSigned);
    checks.push({ check: 'Personal Profile signed by a key that is not an administration key', result: await refusal(verifyProfile(rogueSigned)) });
    step('verify', `${checks.length} checks: chain Master → Personal → Devices valid; forged, superseded and unauthorised profiles refused`, t0, { checks });

    // 7. The log of what was done, head signed by the administration key.
    t0 = performance.now();
    step('log', 'linked-hash log of the demo steps; head signed by the administration key', t0);
    const lines = log.lines();
    await writeFile(join(out, 'demo-log.jsonl'), lines.join('\n') + '\n');
    const head = await signLogHead(log.head, admin.signer());
    await writeJson(join(out, 'demo-log.head.json'), head);
    const checked = verifyLog(lines);
    await verifyLogHead(head, lines, (kid) => (kid === admin.info.keyId ? admin.info.publicJwk : undefined));

    await writeJson(join(out, 'account.json'), {
      Account: { Identifier: masterProfile.Identifier, Master: 'master.json', Personal: 'personal.json' },
      Keys: {
        MasterSignature: masterSign.info.location,
        MasterEscrow: masterEscrow.info.location,
        Administration: [admin.info.location],
      },
    });

    return {
      out,
      keyStore: 'software',
      ...(passphraseFile === undefined ? {} : { passphraseFile }),
      master: { identifier: masterProfile.Identifier, signatureKey: masterSign.info.keyId, escrowKey: masterEscrow.info.keyId, adminKey: admin.info.keyId },
      devices: devices.map((d) => ({ name: d.name, identifier: d.handle.info.keyId, file: relative(out, d.file) })),
      personal: { identifier: personal.Identifier, sequence: personal.Sequence, devices: personal.Devices.length },
      checks,
      log: { entries: checked.count, head: checked.head },
      steps,
      files: await listFiles(out),
    };
  } finally {
    for (const s of stores) await s.close();
    if (opts.passphrase === undefined) passphrase.fill(0);
  }
}

async function prepareOut(out: string): Promise<void> {
  await mkdir(out, { recursive: true });
  const existing = await readdir(out);
  if (existing.length > 0) {
    throw new MeshkitError('ERR_IO', `output directory ${out} is not empty; give a new --out DIR (the demo never overwrites)`);
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, JSON.stringify(value, null, 2) + '\n');
  await chmod(path, 0o644);
}

/** A copy of a signed Device Profile with its description changed and the old signature kept. */
function forgeDescription(signed: SignedProfile, description: string): SignedProfile {
  const payload = JSON.parse(fromUtf8(fromB64u(signed.payload))) as { DeviceProfile: { Description: string } };
  payload.DeviceProfile.Description = description;
  return { ...signed, payload: b64u(utf8(JSON.stringify(payload))) };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MeshkitError) return `refused: ${e.code} — ${e.message}`;
    throw e;
  }
  throw new MeshkitError('ERR_PROFILE_SIGNATURE', 'a profile that must be refused was accepted');
}

async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(root, p)));
    else out.push(relative(root, p));
  }
  return out.sort();
}

