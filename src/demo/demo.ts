/**
 * `meshkit demo`: the whole story on embedded defaults, no hardware needed.
 *
 * 1. Tokens: scratch SoftHSM2 tokens under the output directory when SoftHSM is installed — an
 *    "HSM" for the master keys, a "smartcard" for the administration key, and a fresh token for the
 *    recovery — else encrypted software key stores, and it says which.
 * 2. The offline master-key ceremony from a written plan (import-with-escrow, Ed448 + X448, 3 of 5
 *    custodians): Master and first Personal Profile, escrow blob, share files, signed transcript;
 *    then `ceremony verify`.
 * 3. Recovery of the master keys onto the fresh token from three shares given out of order.
 * 4. A Mesh portal on loopback with SQLite; the account directory made from the ceremony's outputs
 *    and the account created at the portal.
 * 5. Two devices with their own keys and self-signed Device Profiles: one connected at the bench,
 *    one through a connection request at the portal (witness compared, accepted on the smartcard).
 * 5b. The provisioning bench (docs/bench.md): three emulated devices enrolled at once by `runBench` — the C
 *    firmware emulator on socat pty pairs when it can run here, else the in-process TypeScript soft device over
 *    in-process links (and it says why) — with a bench key the devices pin, the smartcard administration key and a
 *    small Wi-Fi/MQTT configuration; the signed record log under `bench/` re-verified with `verifyBenchOutput`.
 * 6. Verification of the chain (the provisioned devices included), current at the portal, and refusal of a
 *    forged, a superseded and an unauthorised profile.
 * 7. One device revoked (stolen) and the chain verified again.
 * 8. The last publish proven against the portal's signed notary-log head.
 * 9. A linked-hash log of the demo itself, head signed by the administration key.
 *
 * Everything it makes is kept under the output directory and listed in the summary.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { b64u, fromB64u, fromUtf8, utf8 } from '../core/bytes.js';
import { ErrorCode, MeshkitError } from '../core/errors.js';
import { keyId } from '../core/keys.js';
import type { Signer } from '../core/signer.js';
import { HashLog, signLogHead, verifyLog, verifyLogHead } from '../core/hashlog.js';
import {
  composeDeviceProfile,
  ProfileType,
  readProfile,
  signProfile,
  verifyProfile,
  type SignedProfile,
  type VerifiedProfile,
} from '../core/profiles.js';
import { parsePlan } from '../ceremony/plan.js';
import { recoverCeremony } from '../ceremony/recover.js';
import { runCeremony } from '../ceremony/run.js';
import { verifyCeremony } from '../ceremony/verify.js';
import { openKeyReference, openKeyStore } from '../keystore/index.js';
import { acceptRequest, listPending } from '../admin/requests.js';
import { initAccount, loadAccount } from '../admin/account.js';
import { connectDevice, revokeDevice } from '../admin/updates.js';
import { connectionStatus, requestConnection } from '../device/connect.js';
import { rawEd25519, runBench, verifyBenchOutput, type BenchSummary } from '../device/bench-runner.js';
import { findDescriptor, loadDescriptors } from '../device/descriptors.js';
import { emulatorUnavailable, ensureEmulator, startEmulatedDevice, type EmulatedDevice } from '../device/emulator.js';
import { startSoftDevice, type SoftDevice, type SoftDeviceState } from '../device/soft-device.js';
import { createLinkPair } from '../device/transport/link.js';
import type { Transport } from '../device/transport/types.js';
import { PortalClient, verifyLogProof } from '../portal/client.js';
import { startPortalServer } from '../portal/server.js';
import { openStorage } from '../portal/storage.js';
import { SoftwareKeyStore } from '../keystore/software.js';
import type { SecretSource } from '../keystore/software.js';
import type { KeyHandle, KeyStore } from '../keystore/types.js';

export interface DemoOptions {
  /** Output directory; created; must be empty if it exists. */
  out: string;
  /** Force the software key store even when SoftHSM is installed. */
  software?: boolean;
  /**
   * The emulated devices of the provisioning bench: `emulator` (the C firmware emulator on socat ptys; fails when
   * it cannot run here), `inprocess` (the TypeScript soft device over in-process links), `auto` (default: the
   * emulator when socat, gcc and libsodium-dev are there, else in process).
   */
  devices?: DemoDevicesMode;
  /** Called with each step as it completes. */
  onStep?: (step: DemoStep) => void;
}

/** Which emulated devices the demo's bench provisions (see {@link DemoOptions.devices}). */
export type DemoDevicesMode = 'auto' | 'emulator' | 'inprocess';
/** The accepted {@link DemoDevicesMode} values. */
export const DEMO_DEVICES_MODES: readonly DemoDevicesMode[] = ['auto', 'emulator', 'inprocess'];
/** How many emulated devices the demo's bench provisions. */
export const DEMO_BENCH_DEVICES = 3;

export interface DemoStep {
  step: string;
  detail: string;
  ms: number;
}

export interface DemoSummary {
  out: string;
  keyStore: 'softhsm' | 'software';
  keyStoreNote: string;
  ceremony: { dir: string; origin: string; blobId: string; shares: number; threshold: number; verified: string };
  recovery: { dir: string; sharesUsed: number[]; token: string; keys: string[] };
  master: { identifier: string; signatureKey: string; escrowKey: string; adminKey: string };
  devices: Array<{ name: string; identifier: string; file: string }>;
  /** The provisioning bench step. */
  bench: DemoBench;
  account: string;
  personal: { identifier: string; sequence: number; devices: number; file: string };
  revoked: { name: string; identifier: string; sequence: number };
  checks: Array<{ check: string; result: string }>;
  portal: { url: string; db: string; account: string; logCount: number; proven: boolean };
  log: { entries: number; head: string | null };
  steps: DemoStep[];
  files: string[];
}

/** What the provisioning bench step did. */
export interface DemoBench {
  /** `emulator`: the C firmware emulator on socat ptys; `inprocess`: the TypeScript soft device over in-process links. */
  mode: 'emulator' | 'inprocess';
  /** Why the devices run in process (absent for the emulator). */
  reason?: string;
  /** The bench output directory, relative to --out (records.jsonl, records.head.json, devices/, summary.json). */
  dir: string;
  /** The bench key the devices pin (Ed25519, in the devices' software key store) and its store, relative to --out. */
  benchKey: string;
  benchKeyStore: string;
  model: string;
  config: string;
  provisioned: number;
  failed: number;
  elapsedMs: number;
  timing: BenchSummary['timing'];
  devices: Array<{ serial: string; port: string; deviceId: string; ms: number; bytesSent?: number; bytesReceived?: number; record: number }>;
  log: { count: number; head: string | null; file: string; headFile: string };
  /** verifyBenchOutput (with the account): ok. */
  verified: 'ok';
}

const DEVICES = [
  { name: 'thermostat', description: 'Hallway thermostat (ESP32-C3 class)' },
  { name: 'door-lock', description: 'Front door lock (nRF52 class)' },
] as const;

const SOFTHSM_CANDIDATES = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'];

/** The SoftHSM2 module if it is installed (MESHKIT_SOFTHSM_MODULE overrides), else undefined. */
export function findSoftHsm(): string | undefined {
  const forced = process.env['MESHKIT_SOFTHSM_MODULE'];
  if (forced !== undefined && forced !== '') return existsSync(forced) ? forced : undefined;
  return SOFTHSM_CANDIDATES.find((p) => existsSync(p));
}

interface Backend {
  kind: 'softhsm' | 'software';
  note: string;
  /** Where the master keys go (plan Token). */
  masterToken: string;
  /** Where the recovered keys go. */
  recoveryToken: string;
  masterSecret: SecretSource;
  recoverySecret: SecretSource;
  /** Key reference of the administration key (with its own pin-source where that applies). */
  adminKey: string;
  adminSecret: SecretSource;
}

/**
 * Runs the demo and returns what it did.
 * @throws MeshkitError when a step fails (nothing is reported as done that was not).
 */
export async function runDemo(opts: DemoOptions): Promise<DemoSummary> {
  const mode = opts.devices ?? 'auto';
  if (!DEMO_DEVICES_MODES.includes(mode)) throw new RangeError(`"devices" expected one of ${DEMO_DEVICES_MODES.join(', ')}, got ${JSON.stringify(mode)}`);
  // Decided before anything is made: a forced emulator that cannot run here fails at once; `auto` falls back to
  // the in-process devices and says why.
  let inProcessWhy: string | undefined = mode === 'inprocess' ? 'in-process devices were asked for' : undefined;
  if (mode !== 'inprocess') {
    const unavailable = emulatorUnavailable();
    if (unavailable !== undefined && mode === 'emulator') {
      throw new MeshkitError(ErrorCode.DEVICE, `the C firmware emulator was asked for but cannot run here: ${unavailable}`);
    }
    if (unavailable !== undefined) inProcessWhy = `socat/gcc/libsodium-dev not found: ${unavailable}`;
    else {
      try {
        ensureEmulator();
      } catch (e) {
        if (mode === 'emulator' || !(e instanceof MeshkitError)) throw e;
        inProcessWhy = `the C firmware emulator did not build: ${e.message}`;
      }
    }
  }
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

  try {
    // 1. Tokens.
    let t0 = performance.now();
    const modulePath = opts.software === true ? undefined : findSoftHsm();
    const backend = modulePath === undefined
      ? await softwareBackend(out, opts.software === true ? 'software key stores were asked for (--software)' : 'SoftHSM2 is not installed')
      : await softHsmBackend(out, modulePath);
    step('tokens', backend.note, t0, { keyStore: backend.kind });

    // 2. The ceremony, from a plan written as a custodian would.
    t0 = performance.now();
    const planPath = join(out, 'ceremony-plan.json');
    const plan = {
      Ceremony: {
        Name: 'Demo household — lifetime Mesh identity',
        Token: backend.masterToken,
        KeyOrigin: 'import-with-escrow',
        Algorithms: { Signature: 'Ed448', Escrow: 'X448' },
        Administrators: [{ Name: 'owner-smartcard', Key: backend.adminKey }],
        Custodians: ['Carol', 'Dave', 'Erin', 'Frank', 'Grace'],
        Threshold: 3,
        Witnesses: ['Heidi', 'Ivan'],
        Names: ['owner@example.net'],
      },
    };
    await writeFile(planPath, JSON.stringify(plan, null, 2) + '\n');
    const ceremonyDir = join(out, 'ceremony');
    const ceremony = await runCeremony(parsePlan(await readFile(planPath)), {
      out: ceremonyDir,
      secrets: { token: backend.masterSecret, admin: () => backend.adminSecret },
      interactive: false,
      operator: 'meshkit demo',
    });
    if (ceremony.escrow === undefined) throw new MeshkitError('ERR_CEREMONY_STATE', 'the demo ceremony produced no escrow');
    const verified = await verifyCeremony(ceremonyDir);
    if (!verified.ok) throw new MeshkitError('ERR_CEREMONY_VERIFY_FAILED', `ceremony verify: ${verified.failure ?? 'failed'}`);
    step('ceremony', `master keys on ${ceremony.token.label ?? ceremony.token.uri} (import-with-escrow, Ed448 + X448); escrow blob ${ceremony.escrow.blobId}, ${ceremony.escrow.shares} shares (any ${ceremony.escrow.threshold}); transcript of ${ceremony.transcript.entries} entries signed by the master key; ceremony verify: ok`, t0,
      { master: ceremony.master.identifier, blob: ceremony.escrow.blobId });

    // 3. Recovery onto a fresh token from three shares, out of order.
    t0 = performance.now();
    const recoveryPlan = parsePlan(utf8(JSON.stringify({ Ceremony: { ...plan.Ceremony, Token: backend.recoveryToken } })));
    const sharesUsed = [4, 1, 3];
    const recovery = await recoverCeremony({
      plan: recoveryPlan,
      shares: sharesUsed.map((i) => join(ceremonyDir, 'shares', `${i}.txt`)),
      escrowDir: join(ceremonyDir, 'escrow'),
      out: join(out, 'recovery'),
      secrets: { token: backend.recoverySecret },
      operator: 'meshkit demo',
    });
    const recoveredIds = recovery.keys.map((k) => k.keyId);
    if (!recoveredIds.includes(ceremony.master.signatureKey) || !recoveredIds.includes(ceremony.master.escrowKey)) {
      throw new MeshkitError('ERR_ESCROW_KEY_MISMATCH', 'the recovered keys are not the master keys');
    }
    step('recovery', `shares ${sharesUsed.join(', ')} → escrow blob → master keys imported onto ${recovery.token}; their UDFs match the Master Profile`, t0,
      { shares: sharesUsed, keys: recoveredIds });

    // 4. A portal on loopback with SQLite, and the account created there from the ceremony's profiles.
    t0 = performance.now();
    const portalDir = join(out, 'portal');
    await mkdir(portalDir, { recursive: true, mode: 0o700 });
    const devicePass = utf8(b64u(randomBytes(18)));
    await mkdir(join(out, 'devices'), { recursive: true, mode: 0o700 });
    await writeFile(join(out, 'devices', 'passphrase.txt'), fromUtf8(devicePass) + '\n', { mode: 0o600 });
    const portalStore = await SoftwareKeyStore.open(join(portalDir, 'portal.keys'), () => new Uint8Array(devicePass), { create: true });
    stores.push(portalStore);
    const portalKey = await portalStore.generate('portal', 'Ed25519');
    const dbFile = join(portalDir, 'portal.db');
    const server = await startPortalServer({ storage: await openStorage(`sqlite:${dbFile}`), portalKey: portalKey.signer(), plainHttp: true, host: '127.0.0.1', port: 0 });
    const portalAccount = 'owner@portal.example';
    const client = new PortalClient(server.url);
    const accountDir = join(out, 'account');
    let summary: Omit<DemoSummary, 'files'>;
    try {
      await initAccount(accountDir, ceremonyDir, { Url: server.url, Account: portalAccount });
      step('portal', `portal on ${server.url} (SQLite ${relative(out, dbFile)}); account ${portalAccount} created from the ceremony's Personal Profile; account directory ${relative(out, accountDir)}/`, t0,
        { portal: portalKey.info.keyId, account: portalAccount });

      // 5. Two devices: one connected at the bench, one through a connection request at the portal.
      t0 = performance.now();
      const devices: Array<{ name: string; handle: KeyHandle; signed: SignedProfile; file: string }> = [];
      for (const d of DEVICES) {
        const store = await SoftwareKeyStore.open(join(out, 'devices', `${d.name}.keys`), () => new Uint8Array(devicePass), { create: true });
        stores.push(store);
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
      const { store: adminStore, handle: admin } = await openKeyReference(backend.adminKey, backend.adminSecret);
      stores.push(adminStore);
      const [thermostat, lock] = devices as [typeof devices[number], typeof devices[number]];
      const atBench = await connectDevice({ dir: accountDir, admin: admin.signer() }, thermostat.signed);
      step('connect', `${thermostat.name} ${thermostat.handle.info.keyId} connected at the bench: Personal Profile Sequence ${atBench.personal.sequence}, signed on the smartcard by ${admin.info.keyId}, published`, t0,
        { device: thermostat.handle.info.keyId, sequence: atBench.personal.sequence });

      t0 = performance.now();
      const ticket = await requestConnection(client, portalAccount, ceremony.master.identifier, lock.signed, lock.handle.signer());
      const account = await loadAccount(accountDir);
      const pending = await listPending(account, admin.signer(), client);
      const seen = pending.find((p) => p.requestUdf === ticket.requestUdf);
      if (seen === undefined) throw new MeshkitError('ERR_PORTAL_NOT_FOUND', 'the connection request is not pending at the portal');
      if (seen.witness !== ticket.witness) throw new MeshkitError('ERR_PROFILE_MISMATCH', 'the device and the administrator see different witness values');
      // The owner compares the witness on both screens and types what the device shows.
      const decision = await acceptRequest(account, ticket.requestUdf, ticket.shortWitness, admin.signer(), client);
      const status = await connectionStatus(client, portalAccount, ticket.requestUdf, { masterId: ceremony.master.identifier, device: lock.signed, witness: ticket.witness });
      if (status.state !== 'Accepted') throw new MeshkitError('ERR_PROFILE_NOT_CONNECTED', `the device sees its request as ${status.state}`);
      step('request', `${lock.name} ${lock.handle.info.keyId} asked to connect at the portal; both screens showed witness ${ticket.shortWitness}; the owner accepted on the smartcard (decision ${decision.result}); the device sees Accepted and finds itself in the Personal Profile at the portal`, t0,
        { device: lock.handle.info.keyId, request: ticket.requestUdf, witness: ticket.shortWitness });

      // 5b. The provisioning bench: three emulated devices enrolled at once, records signed and re-verified.
      t0 = performance.now();
      const benchStore = await SoftwareKeyStore.open(join(out, 'devices', 'bench.keys'), () => new Uint8Array(devicePass), { create: true });
      stores.push(benchStore);
      const benchKey = await benchStore.generate('bench', 'Ed25519');
      const bench = await provisionDemoBench({
        out, account: accountDir, admin: admin.signer(), bench: benchKey.signer(),
        devices: inProcessWhy === undefined ? { kind: 'emulator' } : { kind: 'inprocess', why: inProcessWhy },
        benchKeyStore: join(out, 'devices', 'bench.keys'),
      });
      const provisioned = await Promise.all(bench.devices.map(async (d) => {
        const file = join(out, bench.dir, 'devices', `${d.deviceId}.json`);
        return { name: d.serial, id: d.deviceId, signed: readProfile(await readFile(file, 'utf8'), ProfileType.Device).signed, file };
      }));
      const ms = bench.timing === null ? '' : `${bench.timing.minMs}–${bench.timing.maxMs} ms per device (median ${bench.timing.medianMs})`;
      const sent = bench.devices.map((d) => d.bytesSent).filter((n): n is number => n !== undefined);
      const received = bench.devices.map((d) => d.bytesReceived).filter((n): n is number => n !== undefined);
      const mean = (xs: number[]): number => Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
      const wire = sent.length === 0 || received.length === 0 ? '' : `, ${mean(sent)} B sent + ${mean(received)} B received per device on the wire`;
      step('provision', `${bench.provisioned} devices provisioned ${bench.mode === 'emulator'
        ? `over socat ptys by the C firmware emulator (${bench.model})`
        : `in process (${bench.reason ?? ''})`}: ${ms}${wire}; bench key ${bench.benchKey}, admin ${admin.info.keyId}; ${bench.log.count} records in ${bench.log.file}, head ${bench.log.headFile} signed by the bench key; bench verify: ok`, t0,
      { mode: bench.mode, bench: bench.benchKey, devices: bench.devices.map((d) => ({ serial: d.serial, device: d.deviceId, ms: d.ms, record: d.record })), head: bench.log.head });

      // 6. Verify everything from the files written and the portal, as a relying party would.
      t0 = performance.now();
      const master = await readFile(join(accountDir, 'master.json'), 'utf8');
      const personal1 = readProfile(await readFile(join(ceremonyDir, 'personal.json'), 'utf8'), ProfileType.Personal);
      const latestAt = async (): Promise<(id: string, type: string) => number | undefined> => {
        const res = await client.get({ account: portalAccount });
        const seq = new Map<string, number>();
        for (const e of res.Entries) {
          const p = readProfile(e);
          seq.set(`${p.type}|${p.profile.Identifier}`, p.profile.Sequence);
        }
        return (id, type) => seq.get(`${type}|${id}`);
      };
      const chain = async (label: string): Promise<VerifiedProfile<'PersonalProfile'>> => {
        const personalNow = await readFile(join(accountDir, 'personal.json'), 'utf8');
        const latest = await latestAt();
        const vMaster = await verifyProfile(master, { latestSequence: latest });
        const vPersonal = (await verifyProfile(personalNow, { master: vMaster, latestSequence: latest })) as VerifiedProfile<'PersonalProfile'>;
        checks.push({ check: `${label}: Master → Personal`, result: `valid and current at the portal: Personal Profile Sequence ${vPersonal.sequence}, signed by ${vPersonal.signerKeyId}, ${vPersonal.devices?.length ?? 0} devices verified` });
        for (const d of [...devices, ...provisioned]) {
          checks.push({ check: `${label}: device ${d.name}`, result: await verifyProfile(d.signed, { personal: vPersonal }).then((v) => `valid and connected (${v.identifier})`, refusalText) });
        }
        return vPersonal;
      };
      const before = await chain('before revocation');
      const forged = forgeDescription(thermostat.signed, 'Hallway thermostat (attacker firmware)');
      await writeJson(join(out, 'checks', 'forged-device.json'), forged);
      checks.push({ check: 'forged Device Profile', result: await refusal(verifyProfile(forged)) });
      const latestNow = await latestAt();
      checks.push({ check: 'superseded Personal Profile (the ceremony\'s Sequence 1)', result: await refusal(verifyProfile(personal1.signed, { latestSequence: latestNow })) });
      const rogueStore = await SoftwareKeyStore.open(join(out, 'checks', 'rogue.keys'), () => new Uint8Array(devicePass), { create: true });
      stores.push(rogueStore);
      const rogue = await rogueStore.generate('not-an-admin', 'Ed25519');
      const rogueSigned = await signProfile(ProfileType.Personal, before.profile, rogue.signer());
      await writeJson(join(out, 'checks', 'personal-signed-by-rogue-key.json'), rogueSigned);
      checks.push({ check: 'Personal Profile signed by a key that is not an administration key', result: await refusal(verifyProfile(rogueSigned)) });
      step('verify', `chain Master → Personal → ${devices.length + provisioned.length} devices (${provisioned.length} of them from the bench) valid and current at the portal; forged, superseded and unauthorised profiles refused`, t0, { checks: checks.length });

      // 7. The thermostat is stolen: revoke it, then verify the chain again.
      t0 = performance.now();
      const revoked = await revokeDevice({ dir: accountDir, admin: admin.signer() }, thermostat.handle.info.keyId, { reason: 'stolen' });
      const after = await chain('after revocation');
      checks.push({ check: 'the revoked Personal Profile (before revocation)', result: await refusal(verifyProfile(before.signed, { latestSequence: await latestAt() })) });
      step('revoke', `${thermostat.name} revoked (stolen): Personal Profile Sequence ${revoked.personal.sequence} without it, published; ${thermostat.name} is no longer connected, ${lock.name} still is; Sequence ${before.sequence} is superseded at the portal`, t0,
        { device: thermostat.handle.info.keyId, sequence: revoked.personal.sequence });

      // 8. Every publish is in the portal's notary log: prove the last one against a signed head.
      t0 = performance.now();
      const head = await client.logHead();
      const proof = await client.logProof(head.Count - 1);
      const proven = await verifyLogProof(proof, portalKey.info.publicJwk);
      step('notary', `portal notary log: ${head.Count} entries; the last (${proven.entry.Type}) proven against the head signed by the portal key ${portalKey.info.keyId}`, t0, { count: head.Count });

      // 9. The log of what was done, head signed by the administration key.
      t0 = performance.now();
      step('log', 'linked-hash log of the demo steps; head signed by the administration key', t0);
      const lines = log.lines();
      await writeFile(join(out, 'demo-log.jsonl'), lines.join('\n') + '\n');
      const demoHead = await signLogHead(log.head, admin.signer());
      await writeJson(join(out, 'demo-log.head.json'), demoHead);
      const checked = verifyLog(lines);
      await verifyLogHead(demoHead, lines, (kid) => (kid === admin.info.keyId ? admin.info.publicJwk : undefined));
      summary = {
        out,
        keyStore: backend.kind,
        keyStoreNote: backend.note,
        ceremony: {
          dir: relative(out, ceremonyDir),
          origin: ceremony.origin,
          blobId: ceremony.escrow.blobId,
          shares: ceremony.escrow.shares,
          threshold: ceremony.escrow.threshold,
          verified: 'ok',
        },
        recovery: { dir: 'recovery', sharesUsed, token: recovery.token, keys: recoveredIds },
        master: { identifier: ceremony.master.identifier, signatureKey: ceremony.master.signatureKey, escrowKey: ceremony.master.escrowKey, adminKey: admin.info.keyId },
        devices: [
          ...devices.map((d) => ({ name: d.name, identifier: d.handle.info.keyId, file: relative(out, d.file) })),
          ...provisioned.map((d) => ({ name: d.name, identifier: d.id, file: relative(out, d.file) })),
        ],
        bench,
        account: relative(out, accountDir),
        personal: { identifier: after.identifier, sequence: after.sequence, devices: after.devices?.length ?? 0, file: join(relative(out, accountDir), 'personal.json') },
        revoked: { name: thermostat.name, identifier: thermostat.handle.info.keyId, sequence: revoked.personal.sequence },
        checks,
        portal: { url: server.url, db: relative(out, dbFile), account: portalAccount, logCount: head.Count, proven: true },
        log: { entries: checked.count, head: checked.head },
        steps,
      };
    } finally {
      await server.close();
      client.close();
    }
    // Listed after the portal has closed its database (no SQLite -wal/-shm files left).
    return { ...summary, files: await listFiles(out) };
  } finally {
    for (const s of stores) await s.close();
  }
}

/** The application configuration the demo's bench seals to every device (≤ 1024 bytes; no real secret). */
const BENCH_CONFIG = {
  wifi: { ssid: 'demo-household', security: 'wpa3-sae', passphraseRef: 'vault:wifi/demo-household' },
  mqtt: { broker: 'mqtts://broker.example.net:8883', topic: 'home/sensors', clientIdFromSerial: true },
} as const;

/** Options of {@link provisionDemoBench}. */
export interface DemoBenchOptions {
  /** The demo's output directory: the bench writes `bench/`, `emulated/` and `bench-config.json` in it. */
  out: string;
  /** The account directory. */
  account: string;
  /** The administration key (Ed25519). */
  admin: Signer;
  /** The bench key the devices pin (Ed25519). */
  bench: Signer;
  /** Where the bench key is stored (for the summary). */
  benchKeyStore: string;
  /** The C emulator on socat ptys, or the in-process soft device (with the reason shown). */
  devices: { kind: 'emulator' } | { kind: 'inprocess'; why: string };
}

/**
 * The demo's provisioning bench: {@link DEMO_BENCH_DEVICES} emulated devices pinning the bench key, enrolled at once
 * by runBench into `out/bench/`, then the output re-verified against the account. Every emulator and soft device is
 * stopped before it returns or throws.
 * @param o output and account directories, keys, which devices
 * @returns what was provisioned, with the figures and the verified log head
 * @throws TypeError when a directory is not a string or `devices` is not one of the two kinds
 * @throws RangeError (from runBench) when a key is not Ed25519
 * @throws MeshkitError `ERR_DEVICE` when a device was not provisioned or the bench output does not verify; the
 *   launcher's `ERR_IO` when an emulator cannot start; runBench's errors for the account and output directory
 */
export async function provisionDemoBench(o: DemoBenchOptions): Promise<DemoBench> {
  if (typeof o !== 'object' || o === null) throw new TypeError('"options" expected an object');
  for (const f of ['out', 'account', 'benchKeyStore'] as const) if (typeof o[f] !== 'string' || o[f] === '') throw new TypeError(`"${f}" expected a path`);
  if (o.devices?.kind !== 'emulator' && !(o.devices?.kind === 'inprocess' && typeof o.devices.why === 'string')) {
    throw new TypeError('"devices" expected {kind: "emulator"} or {kind: "inprocess", why}');
  }
  const benchDir = join(o.out, 'bench');
  const stateDir = join(o.out, 'emulated');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const configFile = join(o.out, 'bench-config.json');
  const configText = JSON.stringify(BENCH_CONFIG, null, 2) + '\n';
  await writeFile(configFile, configText);
  const descriptor = findDescriptor(await loadDescriptors(), 'emulator');
  const model = descriptor?.models[0];
  if (descriptor === undefined || model === undefined) throw new MeshkitError(ErrorCode.IO, 'devices/emulator/descriptor.json is missing: the demo bench needs its model');
  const provisionerKey = rawEd25519(o.bench);
  const serials = Array.from({ length: DEMO_BENCH_DEVICES }, (_, i) => `DEMO-${String(i + 1).padStart(4, '0')}`);

  const emulators: EmulatedDevice[] = [];
  const softDevices: SoftDevice[] = [];
  let ports: string[];
  let openTransport: ((port: string) => Promise<Transport>) | undefined;
  try {
    if (o.devices.kind === 'emulator') {
      for (const serial of serials) {
        emulators.push(await startEmulatedDevice({ state: join(stateDir, `${serial}.state`), serial, model, provisionerKey }));
      }
      ports = emulators.map((e) => e.port);
    } else {
      // One in-process link per (re)open; the device's "flash" (secret scalars) lives in its state file, as the
      // emulator's does, so a re-opened link finds the same device.
      ports = serials.map((_, i) => `link:device-${i + 1}`);
      const flash = new Map<string, SoftDeviceState>();
      openTransport = (port: string): Promise<Transport> => {
        const i = ports.indexOf(port);
        const serial = serials[i];
        if (serial === undefined) return Promise.reject(new MeshkitError(ErrorCode.IO, `no in-process device on ${port}`));
        const [host, device] = createLinkPair([port, `${serial} (device end)`]);
        const stored = flash.get(serial);
        softDevices.push(startSoftDevice(device, {
          model, serial, provisionerKey,
          ...(stored === undefined ? {} : { state: stored }),
          persist: (state) => {
            flash.set(serial, state);
            writeFileSync(join(stateDir, `${serial}.state.json`), JSON.stringify(state) + '\n', { mode: 0o600 });
          },
        }));
        return Promise.resolve(host);
      };
    }
    const summary = await runBench({
      ports, out: benchDir, account: o.account, admin: o.admin, bench: o.bench, config: utf8(configText),
      models: descriptor.models, retries: 0, replugTimeoutMs: 0,
      ...(openTransport === undefined ? {} : { openTransport }),
    });
    const failed = summary.devices.filter((d) => d.status !== 'provisioned');
    if (summary.provisioned !== DEMO_BENCH_DEVICES || failed.length > 0) {
      // The emulator's own last words, when it said more than that it was ready.
      const logs = emulators.map((e) => e.log().trim().split('\n').filter((l) => l !== '' && !l.includes(': ready on')).slice(-2).join(' | '))
        .map((l, i) => (l === '' ? '' : `${serials[i] ?? '?'}: ${l}`)).filter((l) => l !== '');
      throw new MeshkitError(ErrorCode.DEVICE, `the demo bench provisioned ${summary.provisioned} of ${DEMO_BENCH_DEVICES} devices: ${
        failed.map((d) => `${d.serial ?? serials[ports.indexOf(d.port)] ?? '?'} on ${d.port}: ${d.reason ?? d.status}`).join('; ')}${logs.length === 0 ? '' : ` (emulator log: ${logs.join('; ')})`}`);
    }
    const benchKey = keyId(o.bench.publicJwk);
    const report = await verifyBenchOutput(benchDir, { account: o.account, benchKey });
    if (!report.ok || report.count !== DEMO_BENCH_DEVICES) {
      throw new MeshkitError(ErrorCode.DEVICE, `bench verify of ${relative(o.out, benchDir)}/: ${report.problems.map((p) => p.message).join('; ') || `${report.count} records`}`);
    }
    return {
      mode: o.devices.kind,
      ...(o.devices.kind === 'inprocess' ? { reason: o.devices.why } : {}),
      dir: relative(o.out, benchDir),
      benchKey,
      benchKeyStore: relative(o.out, o.benchKeyStore),
      model,
      config: relative(o.out, configFile),
      provisioned: summary.provisioned,
      failed: summary.failed,
      elapsedMs: summary.elapsedMs,
      timing: summary.timing,
      devices: summary.devices.map((d) => ({
        serial: d.serial ?? '', port: d.port, deviceId: d.deviceId ?? '', ms: d.ms, record: d.recordIndex ?? -1,
        ...(d.bytesSent === undefined ? {} : { bytesSent: d.bytesSent }),
        ...(d.bytesReceived === undefined ? {} : { bytesReceived: d.bytesReceived }),
      })),
      log: { count: report.count, head: report.head, file: relative(o.out, join(benchDir, 'records.jsonl')), headFile: relative(o.out, join(benchDir, 'records.head.json')) },
      verified: 'ok',
    };
  } finally {
    await Promise.all([...emulators.map((e) => e.stop()), ...softDevices.map((d) => d.close())]);
  }
}

/** Scratch SoftHSM2 tokens under `out/softhsm`: Master (HSM), OwnerCard (smartcard), Recovered (fresh). */
async function softHsmBackend(out: string, modulePath: string): Promise<Backend> {
  const dir = join(out, 'softhsm');
  await mkdir(join(dir, 'tokens'), { recursive: true, mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  await writeFile(conf, [`directories.tokendir = ${join(dir, 'tokens')}`, 'objectstore.backend = file', 'log.level = ERROR', 'slots.removable = false', ''].join('\n'));
  // Must be set before the PKCS#11 module is first loaded in this process.
  process.env['SOFTHSM2_CONF'] = conf;
  const { Pkcs11Module } = await import('../keystore/pkcs11/module.js');
  const pins: Record<string, string> = {};
  for (const label of ['Master', 'OwnerCard', 'Recovered']) {
    pins[label] = b64u(randomBytes(9));
    await writeFile(join(dir, `${label}.pin`), pins[label] + '\n', { mode: 0o600 });
    // SoftHSM shows the next free slot only after the module is loaded again.
    const module = await Pkcs11Module.open(modulePath);
    try {
      await module.initToken({ free: true }, { label, soPin: utf8(b64u(randomBytes(9))), userPin: utf8(pins[label]!) });
    } finally {
      await module.close();
    }
  }
  const uri = (label: string, rest = ''): string => `pkcs11:token=${label}${rest}?module-path=${modulePath}&pin-source=file:${join(dir, `${label}.pin`)}`;
  const pinOf = (label: string): SecretSource => () => utf8(pins[label]!);
  const card = await openKeyStore(uri('OwnerCard'), pinOf('OwnerCard'));
  try {
    await card.generate('owner-admin', 'Ed25519');
  } finally {
    await card.close();
  }
  return {
    kind: 'softhsm',
    note: `SoftHSM2 (${modulePath}) is installed: scratch tokens Master (the HSM), OwnerCard (the administration smartcard) and Recovered (a fresh HSM) in ${relative(out, dir)}/, their PINs in ${relative(out, dir)}/*.pin`,
    masterToken: `pkcs11:token=Master?module-path=${modulePath}`,
    recoveryToken: `pkcs11:token=Recovered?module-path=${modulePath}`,
    masterSecret: pinOf('Master'),
    recoverySecret: pinOf('Recovered'),
    adminKey: uri('OwnerCard', ';object=owner-admin'),
    adminSecret: pinOf('OwnerCard'),
  };
}

/** Encrypted software key stores under `out/keys` standing in for the HSMs and the smartcard. */
async function softwareBackend(out: string, why: string): Promise<Backend> {
  const dir = join(out, 'keys');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const passphrase = b64u(randomBytes(18));
  await writeFile(join(dir, 'passphrase.txt'), passphrase + '\n', { mode: 0o600 });
  const secret: SecretSource = () => utf8(passphrase);
  const card = await SoftwareKeyStore.open(join(dir, 'owner-card.keys'), secret, { create: true });
  try {
    await card.generate('owner-admin', 'Ed25519');
  } finally {
    await card.close();
  }
  return {
    kind: 'software',
    note: `${why}: encrypted software key stores in ${relative(out, dir)}/ stand in for the HSMs and the smartcard (passphrase in ${relative(out, dir)}/passphrase.txt)${why.startsWith('SoftHSM2') ? '; install softhsm2 to run the same story on PKCS#11 tokens' : ''}`,
    masterToken: `file:${join(dir, 'master.keys')}`,
    recoveryToken: `file:${join(dir, 'recovered.keys')}`,
    masterSecret: secret,
    recoverySecret: secret,
    adminKey: `file:${join(dir, 'owner-card.keys')}#owner-admin`,
    adminSecret: secret,
  };
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

function refusalText(e: unknown): string {
  if (e instanceof MeshkitError) return `refused: ${e.code} — ${e.message}`;
  throw e;
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

/** Every file under `root`, except that a SoftHSM token directory is listed once (its object files are SoftHSM's business). */
async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    const rel = relative(root, p);
    if (e.isDirectory() && relative(root, dir) === join('softhsm', 'tokens')) out.push(`${rel}/`);
    else if (e.isDirectory()) out.push(...(await listFiles(root, p)));
    else out.push(rel);
  }
  return out.sort();
}
