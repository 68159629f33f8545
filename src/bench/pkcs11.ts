/**
 * `npm run bench`, PKCS#11 section: signatures per second through meshkit's Signer against a bare
 * pkcs11js C_SignInit + C_Sign loop on the same SoftHSM key (same run), and parallel signing across
 * a session pool of 1, 2 and 4 sessions. Runs in a scratch SoftHSM token directory under
 * os.tmpdir() (SOFTHSM2_CONF is set before the module is loaded; the system token store is never
 * touched) and removes it afterwards. Skipped, with the reason, when SoftHSM is not installed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Curve } from '../core/signer.js';
import { type BenchFigure, median } from './stats.js';

/** A bench figure (the shape src/bench/run.ts prints). */
export type Pkcs11Figure = BenchFigure;

const MODULES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
];

/** Why the section cannot run here, or undefined. */
function missing(): { reason: string } | { module: string } {
  const module = process.env['MESHKIT_SOFTHSM_MODULE'] ?? MODULES.find((p) => existsSync(p));
  if (module === undefined) return { reason: 'SoftHSM2 is not installed (no libsofthsm2.so; apt-get install softhsm2)' };
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'pipe' });
  } catch {
    return { reason: 'softhsm2-util is not on PATH (apt-get install softhsm2)' };
  }
  return { module };
}

/**
 * Runs the PKCS#11 figures.
 * @returns the figures, or `skipped` saying why there are none.
 * @throws whatever a PKCS#11 call throws (the scratch directory is removed first).
 */
export async function benchPkcs11(opts: { signatures?: number; rounds?: number } = {}): Promise<{ figures: Pkcs11Figure[]; skipped?: string }> {
  const found = missing();
  if ('reason' in found) return { figures: [], skipped: `PKCS#11 figures skipped: ${found.reason}` };
  const count = opts.signatures ?? 500;
  const rounds = opts.rounds ?? 7;
  const dir = mkdtempSync(join(tmpdir(), 'meshkit-bench-softhsm-'));
  const previousConf = process.env['SOFTHSM2_CONF'];
  try {
    mkdirSync(join(dir, 'tokens'));
    const conf = join(dir, 'softhsm2.conf');
    writeFileSync(conf, [`directories.tokendir = ${join(dir, 'tokens')}`, 'objectstore.backend = file', 'log.level = ERROR', 'slots.removable = false', ''].join('\n'));
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--so-pin', '12345678', '--pin', '1234'], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
      stdio: 'pipe',
    });
    // Before the module is loaded: SoftHSM reads SOFTHSM2_CONF in C_Initialize.
    process.env['SOFTHSM2_CONF'] = conf;
    const { Pkcs11KeyStore } = await import('../keystore/pkcs11/store.js');
    const { bareSignLoop } = await import('../keystore/pkcs11/bench.js');
    const uri = `pkcs11:token=bench?module-path=${found.module}`;
    const pin = new TextEncoder().encode('1234');
    const data = new TextEncoder().encode('meshkit PKCS#11 bench: a short message as a JWS signing input would be');
    const figures: Pkcs11Figure[] = [];
    const store = await Pkcs11KeyStore.open(uri, pin);
    const curves: Curve[] = ['Ed25519', 'P-256'];
    try {
      for (const curve of curves) await store.generate(`bench-${curve}`, curve);
      for (const curve of curves) {
        const key = await store.get(`bench-${curve}`);
        const signer = key.signer();
        const baseline = async (): Promise<void> => {
          await bareSignLoop(store, key, data, count);
        };
        const candidate = async (): Promise<void> => {
          for (let i = 0; i < count; i++) await signer.sign(data);
        };
        await baseline();
        await candidate();
        const b: number[] = [];
        const c: number[] = [];
        for (let r = 0; r < rounds; r++) {
          let t0 = performance.now();
          await baseline();
          b.push(performance.now() - t0);
          t0 = performance.now();
          await candidate();
          c.push(performance.now() - t0);
        }
        const baselineMs = median(b);
        const meshkitMs = median(c);
        figures.push({
          name: `PKCS#11 ${curve} signatures, sequential (SoftHSM, ${count} per round)`,
          baseline: `bare pkcs11js C_SignInit + C_Sign loop on the same key${curve === 'P-256' ? ' (SHA-256 on the host + CKM_ECDSA, as meshkit)' : ' (CKM_EDDSA)'}`,
          baselineMs,
          meshkitMs,
          ratio: baselineMs / meshkitMs,
          aim: 0.9,
          note: `baseline ${((count * 1000) / baselineMs).toFixed(0)} signatures/s, meshkit Signer.sign ${((count * 1000) / meshkitMs).toFixed(0)} signatures/s`,
        });
      }
    } finally {
      await store.close();
    }

    // The pool: N concurrent Signer.sign calls on stores opened with 1, 2, 4 sessions.
    const concurrent = 64;
    const total = count * 4;
    const cores = availableParallelism();
    const threads = Number(process.env['UV_THREADPOOL_SIZE'] ?? 4);
    for (const curve of curves) {
      const rates = new Map<number, number>();
      for (const sessions of [1, 2, 4]) {
        const s = await Pkcs11KeyStore.open(uri, pin, { sessions });
        try {
          const signer = (await s.get(`bench-${curve}`)).signer();
          const run = async (): Promise<void> => {
            let next = 0;
            const worker = async (): Promise<void> => {
              while (next < total) {
                next += 1;
                await signer.sign(data);
              }
            };
            await Promise.all(Array.from({ length: concurrent }, worker));
          };
          await run();
          const times: number[] = [];
          for (let r = 0; r < Math.max(3, Math.ceil(rounds / 2)); r++) {
            const t0 = performance.now();
            await run();
            times.push(performance.now() - t0);
          }
          const ms = median(times);
          rates.set(sessions, (total * 1000) / ms);
          const one = rates.get(1) ?? NaN;
          figures.push({
            name: `PKCS#11 ${curve} signatures, pool of ${sessions} session${sessions === 1 ? '' : 's'}, ${concurrent} concurrent calls (${total} signatures)`,
            ...(sessions === 1 ? {} : { baseline: 'the same with 1 session (synchronous path)', baselineMs: (total * 1000) / one }),
            meshkitMs: ms,
            ...(sessions === 1 ? {} : { ratio: (total * 1000) / one / ms }),
            note:
              `${((total * 1000) / ms).toFixed(0)} signatures/s` +
              (sessions === 1
                ? ` (${cores} cores, libuv threadpool ${threads})`
                : `; scaling vs 1 session ×${((total * 1000) / one / ms).toFixed(2)}` +
                  (s.parallelSigning ? '' : '; signatures do not overlap: SoftHSM is not thread-safe, the pool signs synchronously there')),
          });
        } finally {
          await s.close();
        }
      }
    }
    return { figures };
  } finally {
    if (previousConf === undefined) delete process.env['SOFTHSM2_CONF'];
    else process.env['SOFTHSM2_CONF'] = previousConf;
    rmSync(dir, { recursive: true, force: true });
  }
}
