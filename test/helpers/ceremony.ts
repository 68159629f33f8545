/**
 * Ceremony test fixtures: scratch SoftHSM tokens (a master token and an administrator "smartcard"
 * token holding an Ed25519 admin key) plus a plan file and an output directory path.
 *
 *   const f = await makeCeremonyFixture({ origin: 'import-with-escrow' });
 *   // in process:   runCeremony(parsePlan(readFileSync(f.planPath)), { out: f.out, secrets: f.secrets })
 *   // through CLI:  meshkitCeremony(['run', '--plan', f.planPath, '--out', f.out, '--yes', ...f.pinArgs], f)
 *
 * One SoftHSM directory per test process (SOFTHSM2_CONF is set on first use); every fixture adds
 * its own uniquely labelled tokens. Child processes get the same SOFTHSM2_CONF through `f.env`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll } from 'vitest';
import type { Curve } from '../../src/core/signer.js';
import type { KeyOrigin } from '../../src/ceremony/plan.js';
import { openKeyStore } from '../../src/keystore/index.js';
import { createSoftHsm, type SoftHsmFixture } from './softhsm.js';

export const BIN = resolve('bin/meshkit.js');

let hsm: SoftHsmFixture | undefined;
let counter = 0;

/** The per-process scratch SoftHSM (created on first use). */
export function ceremonyHsm(): SoftHsmFixture {
  hsm ??= createSoftHsm([]);
  return hsm;
}

// One scratch token directory per test file (vitest isolates modules per file), removed after the file's
// tests. Registered when the test file imports this helper, so it belongs to the file's root suite.
afterAll(() => {
  for (const f of tracked.splice(0)) f.cleanup();
  hsm?.cleanup();
  hsm = undefined;
});

const tracked: CeremonyFixture[] = [];

/** {@link makeCeremonyFixture}, cleaned up after the test file. */
export async function fixture(opts: CeremonyFixtureOptions): Promise<CeremonyFixture> {
  const f = await makeCeremonyFixture(opts);
  tracked.push(f);
  return f;
}

export interface CeremonyFixtureOptions {
  origin: KeyOrigin;
  algorithms?: { Signature?: Curve; Escrow?: Curve };
  threshold?: number;
  custodians?: string[];
  witnesses?: string[];
  /** Extra plan members (override). */
  extra?: Record<string, unknown>;
  /** Use a software store (file:) as the Token instead of a SoftHSM token. */
  softwareToken?: boolean;
}

export interface CeremonyFixture {
  /** The plan object written to planPath. */
  plan: { Ceremony: Record<string, unknown> };
  planPath: string;
  /** Output directory (does not exist yet). */
  out: string;
  /** Environment variables holding the PINs: MASTER_PIN (token PIN or store passphrase) and ADMIN_PIN. */
  pinEnv: Record<string, string>;
  /** CLI arguments naming those variables. */
  pinArgs: string[];
  /** Environment for child processes (SOFTHSM2_CONF + the PIN variables, no other MESHKIT_*). */
  env: Record<string, string>;
  /** For in-process runCeremony / abortCeremony. */
  secrets: { token: Uint8Array; admin: () => Uint8Array };
  tokenUri: string;
  tokenLabel: string;
  adminTokenUri: string;
  dir: string;
  hsm: SoftHsmFixture;
  /** Writes a (modified) plan to planPath. */
  writePlan(plan: unknown): void;
  cleanup(): void;
}

/** Makes fresh tokens, the admin key, a plan file and an output path. */
export async function makeCeremonyFixture(opts: CeremonyFixtureOptions): Promise<CeremonyFixture> {
  const h = ceremonyHsm();
  const n = ++counter;
  const tag = `${process.pid % 100000}-${n}`;
  const tokenLabel = `Master-${tag}`;
  const adminLabel = `Card-${tag}`;
  const masterPin = `mpin-${n}-4471`;
  const adminPin = `apin-${n}-9902`;
  const dir = mkdtempSync(join(tmpdir(), 'meshkit-ceremony-'));
  let tokenUri: string;
  if (opts.softwareToken === true) {
    tokenUri = `file:${join(dir, 'master.keys')}`;
  } else {
    h.addToken(tokenLabel, masterPin);
    tokenUri = h.uri(tokenLabel);
  }
  h.addToken(adminLabel, adminPin);
  const adminTokenUri = h.uri(adminLabel);
  const adminStore = await openKeyStore(adminTokenUri, new TextEncoder().encode(adminPin));
  try {
    await adminStore.generate('admin', 'Ed25519');
  } finally {
    await adminStore.close();
  }
  const custodians = opts.custodians ?? ['Carol', 'Dave', 'Erin', 'Frank', 'Grace'];
  const plan = {
    Ceremony: {
      Name: `Test ceremony ${tag}`,
      Token: tokenUri,
      KeyOrigin: opts.origin,
      Algorithms: { Signature: opts.algorithms?.Signature ?? 'Ed448', Escrow: opts.algorithms?.Escrow ?? 'X448' },
      Labels: { Signature: 'mesh-master-signature', Escrow: 'mesh-master-escrow' },
      Administrators: [
        { Name: 'alice-card', Key: `pkcs11:token=${adminLabel};object=admin?module-path=${h.modulePath}` },
        { Name: 'alice-backup', PublicKey: generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }) },
      ],
      Custodians: custodians,
      Threshold: opts.threshold ?? 3,
      Witnesses: opts.witnesses ?? ['Heidi', 'Ivan'],
      Names: ['alice@example.com'],
      ...opts.extra,
    },
  };
  const planPath = join(dir, 'plan.json');
  const writePlan = (p: unknown): void => writeFileSync(planPath, JSON.stringify(p, null, 2) + '\n');
  writePlan(plan);
  const pinEnv = { MASTER_PIN: masterPin, ADMIN_PIN: adminPin };
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MESHKIT_') && k !== 'SOFTHSM2_CONF') env[k] = v;
  Object.assign(env, { SOFTHSM2_CONF: h.conf }, pinEnv);
  return {
    plan,
    planPath,
    out: join(dir, 'out'),
    pinEnv,
    pinArgs: ['--pin-env', 'MASTER_PIN', '--admin-pin-env', 'alice-card=ADMIN_PIN'],
    env,
    secrets: { token: new TextEncoder().encode(masterPin), admin: () => new TextEncoder().encode(adminPin) },
    tokenUri,
    tokenLabel,
    adminTokenUri,
    dir,
    hsm: h,
    writePlan,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface CliRun {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/meshkit.js ceremony ARGS` with the fixture's environment (plus `extraEnv`). Needs `npm run build`. */
export function meshkitCeremony(args: string[], f: Pick<CeremonyFixture, 'env' | 'dir'>, extraEnv: Record<string, string> = {}): CliRun {
  const r = spawnSync(process.execPath, [BIN, 'ceremony', ...args], {
    cwd: f.dir,
    env: { ...f.env, ...extraEnv },
    input: '',
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status ?? -1, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `meshkit ceremony ARGS` without waiting (for kill -9 tests). */
export function spawnCeremony(args: string[], f: Pick<CeremonyFixture, 'env' | 'dir'>, extraEnv: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [BIN, 'ceremony', ...args], { cwd: f.dir, env: { ...f.env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
}
