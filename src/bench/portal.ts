/**
 * `npm run bench`, portal section (issue 6 "Performance"): publishes per second and fetches per
 * second against a portal on loopback (plain HTTP, in this process) with SQLite and with
 * PostgreSQL, p50/p99 latency at a fixed concurrency (32 requests in flight), and the ratio of
 * verified-publish throughput to raw signature-verification throughput: node:crypto verify() of the
 * same Device Profile signatures with pre-built KeyObjects, measured in the same run. The portal
 * verifies every publish, so that ratio says how much of a publish is the signature check.
 *
 * The load generator is PortalClient (keep-alive, retries on) in the same process as the portal, so
 * both share one CPU core's event loop: the figures are conservative for a portal on its own
 * machine. PostgreSQL runs from a scratch server (src/bench/postgres-server.ts, fsync on); its
 * figures are skipped, with the reason, when initdb is not installed.
 */
import { generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fromB64u } from '../core/bytes.js';
import { keyId, publicKeyFromJwk, publicKeyObject } from '../core/keys.js';
import { composeDeviceProfile, composeMasterProfile, composePersonalProfile, ProfileType, signProfile, type SignedProfile } from '../core/profiles.js';
import type { Curve, PublicJwk, Signer } from '../core/signer.js';
import { PortalClient } from '../portal/client.js';
import { startPortalServer } from '../portal/server.js';
import { openStorage } from '../portal/storage.js';
import { scratchPostgresMissing, startScratchPostgres } from './postgres-server.js';
import { type BenchFigure, percentile } from './stats.js';

/** A bench figure (the shape src/bench/run.ts prints). */
export type PortalFigure = BenchFigure;

/** Options of {@link benchPortal}. */
export interface PortalBenchOptions {
  /** Accounts, each publishing one Device Profile (default 1000). */
  publishes?: number;
  /** Fetches (default 5000). */
  fetches?: number;
  /** Requests in flight (default 32). */
  concurrency?: number;
  /** Backends to run (default both). */
  backends?: Array<'sqlite' | 'postgres'>;
}

function ephemeralSigner(curve: Curve): { signer: Signer; publicJwk: PublicJwk } {
  const { privateKey, publicKey } = curve === 'Ed448' ? generateKeyPairSync('ed448') : generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  const publicJwk: PublicJwk = { kty: 'OKP', crv: curve, x: String(jwk.x) };
  return { publicJwk, signer: { keyId: keyId(publicJwk), algorithm: 'EdDSA', publicJwk, sign: async (data) => new Uint8Array(sign(null, data, privateKey)) } };
}

/** Runs `tasks` with `concurrency` in flight; returns wall time and each task's latency (ms). */
async function drive(tasks: Array<() => Promise<unknown>>, concurrency: number): Promise<{ wallMs: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, tasks.length) }, async () => {
    for (;;) {
      const i = next++;
      const task = tasks[i];
      if (task === undefined) return;
      const s = performance.now();
      await task();
      latencies.push(performance.now() - s);
    }
  }));
  return { wallMs: performance.now() - t0, latencies: latencies.sort((a, b) => a - b) };
}

interface Workload {
  accounts: Array<{ account: string; personal: SignedProfile; device: SignedProfile; deviceId: string }>;
  /** Baseline checks: the Device Profile signatures with pre-built KeyObjects. */
  checks: Array<{ input: Buffer; sig: Buffer; key: KeyObject }>;
}

async function buildWorkload(n: number): Promise<Workload> {
  const accounts: Workload['accounts'] = [];
  const checks: Workload['checks'] = [];
  for (let i = 0; i < n; i++) {
    const master = ephemeralSigner('Ed448');
    const admin = ephemeralSigner('Ed25519');
    const device = ephemeralSigner('Ed25519');
    const signedMaster = await signProfile(ProfileType.Master, composeMasterProfile({ signatureKey: master.publicJwk, adminKeys: [admin.publicJwk] }), master.signer);
    const personal = await signProfile(ProfileType.Personal, composePersonalProfile({ master: signedMaster }), admin.signer);
    const deviceProfile = composeDeviceProfile({ description: `bench device ${i}`, signatureKey: device.publicJwk });
    const signedDevice = await signProfile(ProfileType.Device, deviceProfile, device.signer);
    accounts.push({ account: `bench${i}@portal.bench`, personal, device: signedDevice, deviceId: deviceProfile.Identifier });
    const s = signedDevice.signatures[0];
    if (s === undefined) throw new Error('unsigned device profile');
    checks.push({ input: Buffer.from(`${s.protected}.${signedDevice.payload}`), sig: Buffer.from(fromB64u(s.signature)), key: publicKeyObject(publicKeyFromJwk(device.publicJwk)) });
  }
  return { accounts, checks };
}

/** Raw verification: ms per signature, median of 9 passes over all checks after 2 warm-up passes. */
function rawVerifyMs(checks: Workload['checks']): number {
  const samples: number[] = [];
  for (let round = -2; round < 9; round++) {
    const t0 = performance.now();
    for (const c of checks) if (!verify(null, c.input, c.key, c.sig)) throw new Error('baseline verification failed');
    if (round >= 0) samples.push((performance.now() - t0) / checks.length);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] ?? NaN;
}

async function benchBackend(kind: 'sqlite' | 'postgres', spec: string, work: Workload, baselineMs: number, fetches: number, concurrency: number): Promise<PortalFigure[]> {
  const portalKey = ephemeralSigner('Ed25519');
  const server = await startPortalServer({
    storage: await openStorage(spec),
    portalKey: portalKey.signer,
    plainHttp: true,
    quotas: { accountsPerHour: 0, updatesPerHour: 0 },
    headSeconds: 0,
  });
  const client = new PortalClient(server.url, { maxSockets: concurrency, timeoutMs: 60_000, retries: 3 });
  try {
    // Accounts first (not timed): a publish needs its account.
    await drive(work.accounts.map((a) => () => client.createAccount(a.account, a.personal)), concurrency);
    const pub = await drive(work.accounts.map((a) => () => client.publish(a.account, a.device)), concurrency);
    const get = await drive(
      Array.from({ length: fetches }, (_, i) => {
        const a = work.accounts[i % work.accounts.length];
        if (a === undefined) throw new Error('no accounts');
        return async () => {
          const r = await client.get({ identifier: a.deviceId, type: ProfileType.Device });
          if (r.Entries.length !== 1) throw new Error(`fetch of ${a.deviceId} returned ${r.Entries.length} entries`);
        };
      }),
      concurrency,
    );
    const publishMs = pub.wallMs / work.accounts.length;
    const fetchMs = get.wallMs / fetches;
    const lat = (l: number[]): string => `p50 ${percentile(l, 50).toFixed(2)} ms, p99 ${percentile(l, 99).toFixed(2)} ms`;
    return [
      {
        name: `portal (${kind}): verified publishes of a Device Profile, ${concurrency} in flight`,
        baseline: 'node:crypto verify() of the same Ed25519 Device Profile signatures (pre-built KeyObjects)',
        baselineMs,
        meshkitMs: publishMs,
        ratio: baselineMs / publishMs,
        note: `${(1000 / publishMs).toFixed(0)} publishes/s vs ${(1000 / baselineMs).toFixed(0)} raw verifies/s (ratio = verified-publish throughput / raw verification throughput); latency ${lat(pub.latencies)}; ${work.accounts.length} publishes, ms per publish at full load`,
      },
      {
        name: `portal (${kind}): fetches of a Device Profile by identifier, ${concurrency} in flight`,
        meshkitMs: fetchMs,
        note: `${(1000 / fetchMs).toFixed(0)} fetches/s; latency ${lat(get.latencies)}; ${fetches} fetches, ms per fetch at full load`,
      },
    ];
  } finally {
    client.close();
    await server.close();
  }
}

/**
 * Runs the portal figures.
 * @returns the figures, and why any backend was skipped.
 * @throws what the portal or the storage throws (the scratch directories are removed first).
 */
export async function benchPortal(opts: PortalBenchOptions = {}): Promise<{ figures: PortalFigure[]; skipped: string[] }> {
  const publishes = opts.publishes ?? 1000;
  const fetches = opts.fetches ?? 5000;
  const concurrency = opts.concurrency ?? 32;
  const backends = opts.backends ?? ['sqlite', 'postgres'];
  const figures: PortalFigure[] = [];
  const skipped: string[] = [];
  const work = await buildWorkload(publishes);
  const baselineMs = rawVerifyMs(work.checks);
  if (backends.includes('sqlite')) {
    const dir = mkdtempSync(join(tmpdir(), 'meshkit-bench-portal-'));
    try {
      figures.push(...(await benchBackend('sqlite', `sqlite:${join(dir, 'portal.db')}`, work, baselineMs, fetches, concurrency)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (backends.includes('postgres')) {
    const missing = scratchPostgresMissing;
    if (missing !== undefined) {
      skipped.push(`portal PostgreSQL figures skipped: ${missing}`);
    } else {
      const pg = await startScratchPostgres({ durable: true });
      try {
        figures.push(...(await benchBackend('postgres', pg.url, work, baselineMs, fetches, concurrency)));
      } finally {
        pg.stop();
      }
    }
  }
  return { figures, skipped };
}
