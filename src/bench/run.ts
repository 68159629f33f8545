/**
 * `npm run bench`: performance figures as ratios against a baseline measured in the same run.
 *
 * Timing lives here, never in a pass/fail test. Each figure is the median of several rounds after
 * a warm-up; ratios are baseline time / meshkit time (1.0 = as fast as the baseline).
 */
import { createHash, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fromB64u } from '../core/bytes.js';
import { _clearKeyCaches, keyId, publicKeyFromJwk, publicKeyObject } from '../core/keys.js';
import {
  composeDeviceProfile,
  composeMasterProfile,
  composePersonalProfile,
  ProfileType,
  signProfile,
  verifyProfile,
  type SignedProfile,
} from '../core/profiles.js';
import { combineShares, splitSecret } from '../core/shamir.js';
import type { Curve, PublicJwk, Signer } from '../core/signer.js';
import { udfDigest } from '../core/udf.js';
import { benchPkcs11 } from './pkcs11.js';
import { benchPortal } from './portal.js';
import { benchProvisioning } from './provisioning.js';
import { type BenchFigure, median } from './stats.js';

type Figure = BenchFigure;

/** Runs `fn` `rounds` times after `warmup` runs; returns the median wall time in ms. */
async function time(fn: () => unknown, rounds: number, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return median(samples);
}

/** Interleaves baseline and candidate rounds so drift in machine load hits both alike. */
async function compare(baseline: () => unknown, candidate: () => unknown, rounds: number): Promise<{ baselineMs: number; meshkitMs: number }> {
  await baseline();
  await candidate();
  const b: number[] = [];
  const c: number[] = [];
  for (let i = 0; i < rounds; i++) {
    b.push(await time(baseline, 1, 0));
    c.push(await time(candidate, 1, 0));
  }
  return { baselineMs: median(b), meshkitMs: median(c) };
}

function ephemeralSigner(curve: Curve): { signer: Signer; publicJwk: PublicJwk } {
  const type = curve === 'Ed25519' ? 'ed25519' : curve === 'Ed448' ? 'ed448' : undefined;
  if (type === undefined) throw new RangeError(`bench signer supports Ed25519 and Ed448, not ${curve}`);
  const { privateKey, publicKey } = type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ed448');
  const jwk = publicKey.export({ format: 'jwk' });
  const publicJwk: PublicJwk = { kty: 'OKP', crv: curve, x: String(jwk.x) };
  return {
    publicJwk,
    signer: { keyId: keyId(publicJwk), algorithm: 'EdDSA', publicJwk, sign: async (data) => new Uint8Array(sign(null, data, privateKey)) },
  };
}

async function benchUdf(): Promise<Figure> {
  const data = randomBytes(64 * 1024 * 1024);
  const r = await compare(
    () => createHash('sha512').update(data).digest(),
    () => udfDigest(data, { contentType: 'application/octet-stream' }),
    5,
  );
  return {
    name: 'UDF of 64 MiB (SHA-512, 140 bits)',
    baseline: 'node:crypto SHA-512 of the same bytes',
    ...r,
    ratio: r.baselineMs / r.meshkitMs,
    aim: 0.9,
  };
}

async function benchProfileVerification(devices: number): Promise<Figure[]> {
  const master = ephemeralSigner('Ed448');
  const admin = ephemeralSigner('Ed25519');
  const masterProfile = composeMasterProfile({ signatureKey: master.publicJwk, adminKeys: [admin.publicJwk] });
  const signedMaster = await signProfile(ProfileType.Master, masterProfile, master.signer);
  const signedDevices: SignedProfile[] = [];
  for (let i = 0; i < devices; i++) {
    const d = ephemeralSigner('Ed25519');
    const enc = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
    const profile = composeDeviceProfile({
      description: `bench device ${i}`,
      signatureKey: d.publicJwk,
      encryptionKey: { kty: 'OKP', crv: 'X25519', x: String(enc.x) },
    });
    signedDevices.push(await signProfile(ProfileType.Device, profile, d.signer));
  }
  const personal = composePersonalProfile({ master: signedMaster, devices: signedDevices });
  const signedPersonal = await signProfile(ProfileType.Personal, personal, admin.signer);
  const text = JSON.stringify(signedPersonal);

  // Baseline: exactly the signature checks verifyProfile has to make (personal, master, every device),
  // each with a KeyObject made beforehand — OpenSSL through node:crypto, nothing else.
  const checks: Array<{ input: Buffer; sig: Buffer; key: KeyObject }> = [];
  const addCheck = (jws: SignedProfile, jwk: PublicJwk): void => {
    const s = jws.signatures[0]!;
    checks.push({ input: Buffer.from(`${s.protected}.${jws.payload}`), sig: Buffer.from(fromB64u(s.signature)), key: publicKeyObject(publicKeyFromJwk(jwk)) });
  };
  addCheck(signedPersonal, admin.publicJwk);
  addCheck(signedMaster, master.publicJwk);
  for (const d of signedDevices) {
    const payload = JSON.parse(Buffer.from(d.payload, 'base64url').toString('utf8')) as { DeviceProfile: { DeviceSignatureKey: { PublicParameters: PublicJwk } } };
    addCheck(d, payload.DeviceProfile.DeviceSignatureKey.PublicParameters);
  }
  const baseline = (): void => {
    for (const c of checks) if (!verify(null, c.input, c.key, c.sig)) throw new Error('baseline verification failed');
  };
  const candidate = async (): Promise<void> => {
    const v = await verifyProfile(text);
    if (v.devices?.length !== devices) throw new Error('verification lost devices');
  };
  const warm = await compare(baseline, candidate, 7);
  // Cold: every key seen for the first time (decoded, identified and imported into OpenSSL).
  const cold = await compare(baseline, async () => { _clearKeyCaches(); await candidate(); }, 7);
  const name = `verify a Personal Profile listing ${devices} devices (${(text.length / 1048576).toFixed(1)} MiB JSON, end to end)`;
  const base = `${checks.length} node:crypto verify() calls with pre-built KeyObjects`;
  return [
    { name: `${name}, keys seen before`, baseline: base, ...warm, ratio: warm.baselineMs / warm.meshkitMs, aim: 0.8 },
    {
      name: `${name}, every key seen for the first time`,
      baseline: base,
      ...cold,
      ratio: cold.baselineMs / cold.meshkitMs,
      aim: 0.8,
      note: 'includes decoding, identifying and importing 2,003 public keys that the baseline gets for free',
    },
  ];
}

async function benchShamir(): Promise<Figure> {
  const secret = randomBytes(32);
  const rounds = 200;
  let shares: string[] = [];
  const splitMs = await time(() => {
    for (let i = 0; i < rounds; i++) shares = splitSecret(secret, 5, 9);
  }, 5);
  const combineMs = await time(() => {
    for (let i = 0; i < rounds; i++) {
      const back = combineShares(shares.slice(2, 7));
      if (!back.every((b, j) => b === secret[j])) throw new Error('shamir round trip failed');
    }
  }, 5);
  return {
    name: 'Shamir, 32-byte secret, 5 of 9 (per operation)',
    meshkitMs: (splitMs + combineMs) / rounds,
    note: `split ${((splitMs / rounds) * 1000).toFixed(0)} µs, combine of 5 shares ${((combineMs / rounds) * 1000).toFixed(0)} µs`,
  };
}

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const devicesArg = process.argv.find((a) => a.startsWith('--devices='));
  const devices = devicesArg ? Number(devicesArg.slice('--devices='.length)) : 1000;
  const figures: Figure[] = [];
  const log = (s: string): void => { if (!json) process.stderr.write(s + '\n'); };
  log('meshkit bench — ratios are baseline time / meshkit time, measured in this run (higher is better, 1.0 = baseline speed)');
  log(`node ${process.version}, ${process.arch}${(globalThis as { gc?: unknown }).gc ? ', --expose-gc' : ''}`);
  // MESHKIT_BENCH_ONLY=name[,name…] runs only those sections (udf, verify, shamir, pkcs11, portal, provisioning).
  const only = (process.env['MESHKIT_BENCH_ONLY'] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const sections = ['udf', 'verify', 'shamir', 'pkcs11', 'portal', 'provisioning'];
  for (const s of only) if (!sections.includes(s)) throw new RangeError(`MESHKIT_BENCH_ONLY: unknown section ${s} (one of ${sections.join(', ')})`);
  const runs = (section: string): boolean => only.length === 0 || only.includes(section);
  if (runs('udf')) figures.push(await benchUdf());
  if (runs('verify')) figures.push(...(await benchProfileVerification(devices)));
  if (runs('shamir')) figures.push(await benchShamir());
  if (runs('pkcs11')) {
    const pkcs11 = await benchPkcs11();
    if (pkcs11.skipped !== undefined) log(pkcs11.skipped);
    figures.push(...pkcs11.figures);
  }
  if (runs('portal')) {
    const portal = await benchPortal();
    for (const reason of portal.skipped) log(reason);
    figures.push(...portal.figures);
  }
  if (runs('provisioning')) {
    const provisioning = await benchProvisioning({ log });
    if (provisioning.skipped !== undefined) log(provisioning.skipped);
    figures.push(...provisioning.figures);
  }
  if (json) {
    process.stdout.write(JSON.stringify({ node: process.version, figures }, null, 2) + '\n');
    return;
  }
  for (const f of figures) {
    const lines = [`\n${f.name}`];
    if (f.baseline !== undefined && f.baselineMs !== undefined) lines.push(`  baseline: ${f.baseline}: ${f.baselineMs.toFixed(3)} ms`);
    lines.push(`  meshkit:  ${f.meshkitMs.toFixed(3)} ms`);
    if (f.ratio !== undefined) {
      const aim = f.aim === undefined ? '' : `  (aim ≥ ${f.aim}: ${f.ratio >= f.aim ? 'met' : 'NOT met'})`;
      lines.push(`  ratio:    ${f.ratio.toFixed(2)}${aim}`);
    }
    if (f.note !== undefined) lines.push(`  ${f.note}`);
    process.stdout.write(lines.join('\n') + '\n');
  }
}

await main();
