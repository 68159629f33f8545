/**
 * `npm run bench`, provisioning section: real C device emulators (src/device/emulator.ts) on socat pty pairs,
 * paced like a 115200-baud UART in both directions (the emulator throttles its replies with `--baud`; the host's
 * writes go through a pacing wrapper here, since a pty has no line rate), provisioned 1, 4 and 16 at a time
 * through the bench runner (src/device/bench-runner.ts runBench) into a scratch account (a fresh one per batch) made by
 * a real ceremony on software key stores. Reported, each against a baseline measured in the same run:
 *
 * - bytes on the wire per enrollment (host→device, device→host) and the link-time floor they imply at 115200 baud
 *   (bytes × 10 / 115200 s: 8N1), against the wall time of one enrollment;
 * - host CPU time per provisioned device (process.cpuUsage() of this process only; the emulators are separate
 *   processes) as a share of that link time (aim ≤ 5 %);
 * - devices per hour for 1, 4 and 16 devices and the parallel scaling (rate_N / N) / rate_1 (aim ≥ 0.9).
 *
 * Not timed: making the account, unlocking the admin key store (its scrypt KEK: once per bench session), starting the
 * emulators, and a warm-up batch of each size.
 *
 * Everything lives in one temporary directory, removed afterwards; every emulator and socat is stopped. Skipped,
 * with the reason, where the emulator cannot run (no socat; no make/gcc/libsodium-dev to build it).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { initAccount } from '../admin/account.js';
import { parsePlan, runCeremony } from '../ceremony/index.js';
import { aint } from '../core/bytes.js';
import type { Signer } from '../core/signer.js';
import { rawEd25519, runBench, type BenchEvent, type BenchSummary } from '../device/bench-runner.js';
import { emulatorUnavailable, startEmulatedDevice, type EmulatedDevice } from '../device/emulator.js';
import { SerialTransport } from '../device/transport/serial.js';
import type { Transport } from '../device/transport/types.js';
import { openKeyReference, SoftwareKeyStore } from '../keystore/index.js';
import { type BenchFigure, median } from './stats.js';

/** A bench figure (the shape src/bench/run.ts prints). */
export type ProvisioningFigure = BenchFigure;

/** Options of {@link benchProvisioning}. */
export interface ProvisioningBenchOptions {
  /** Batch sizes (default 1, 4, 16). */
  readonly counts?: readonly number[];
  /** Rounds of each batch size; the median batch (by wall time) is reported (default 3). */
  readonly rounds?: number;
  /** Line rate (default 115200). */
  readonly baud?: number;
  /** Progress lines (stderr in run.ts). */
  readonly log?: (line: string) => void;
  /** Called right before and right after each timed runBench (e.g. to cut a CPU profile to the timed windows). */
  readonly onTimed?: (phase: 'start' | 'end', devices: number) => void;
  /** The bench runner's progress events of every batch (e.g. to see where a batch's time goes). */
  readonly onEvent?: (event: BenchEvent, devices: number) => void;
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Paces a transport's writes to a UART's byte rate (baud / 10, 8N1) so that host→device bytes take the time they
 * take on a real link; a pty would pass them at memory speed. Each write (one frame: the session writes a frame at a
 * time) is handed to the pty when a real UART would have sent its LAST byte — so the device never has a frame
 * earlier than on the wire — in one write, as a real host does (its UART driver, not the host, paces the bytes):
 * the pacing costs the host one timer per frame, not one per chunk.
 */
function pacedTransport(inner: Transport, baud: number): Transport {
  const bytesPerMs = baud / 10 / 1000;
  let free = 0; // when the line is free again (performance.now() ms)
  let queue: Promise<void> = Promise.resolve();
  const send = async (bytes: Uint8Array): Promise<void> => {
    const start = Math.max(performance.now(), free);
    free = start + bytes.length / bytesPerMs;
    const wait = free - performance.now();
    if (wait > 1) await sleep(wait);
    await inner.send(bytes);
  };
  return {
    get isOpen() {
      return inner.isOpen;
    },
    send(bytes) {
      const next = queue.then(() => send(bytes));
      queue = next.catch(() => undefined);
      return next;
    },
    onData: (listener) => inner.onData(listener),
    onClose: (listener) => inner.onClose(listener),
    close: () => inner.close(),
    [Symbol.asyncDispose]: () => inner.close(),
  };
}

/** The scratch account, admin key and bench key. */
interface Scratch {
  readonly account: string;
  readonly admin: Signer;
  readonly bench: Signer;
  close(): Promise<void>;
}

/** A ceremony on software key stores (master keys in one store, the admin key in another) and an account from it. */
async function makeScratchAccount(dir: string): Promise<Scratch> {
  const masterPass = enc('bench-master-passphrase-1'); // scratch stores, removed with the directory
  const adminPass = enc('bench-admin-passphrase-2');
  const benchPass = enc('bench-key-passphrase-3');
  const adminStorePath = join(dir, 'admin.keys');
  const adminStore = await SoftwareKeyStore.open(adminStorePath, adminPass, { create: true, kdfCost: 14 });
  try {
    await adminStore.generate('admin', 'Ed25519');
  } finally {
    await adminStore.close();
  }
  const plan = {
    Ceremony: {
      Name: 'npm run bench scratch account',
      Token: `file:${join(dir, 'master.keys')}`,
      KeyOrigin: 'generate-on-token',
      Algorithms: { Signature: 'Ed448', Escrow: 'X448' },
      Labels: { Signature: 'mesh-master-signature', Escrow: 'mesh-master-escrow' },
      Administrators: [{ Name: 'bench-admin', Key: `file:${adminStorePath}#admin` }],
      Custodians: ['Carol', 'Dave', 'Erin'],
      Threshold: 2,
      Witnesses: ['Heidi'],
      Names: ['bench@example.com'],
    },
  };
  const ceremonyOut = join(dir, 'ceremony');
  await runCeremony(parsePlan(enc(JSON.stringify(plan, null, 2) + '\n')), {
    out: ceremonyOut, secrets: { token: masterPass, admin: () => adminPass }, operator: 'npm-run-bench',
  });
  const account = join(dir, 'account');
  await initAccount(account, ceremonyOut);
  // Unlocked here (its scrypt KEK derivation, tens of ms of CPU on the thread pool), as an operator's bench session
  // unlocks its keys once at the start: a per-session cost, not one of the timed provisioning (openKeyReference
  // would otherwise derive it at the first signature — in the middle of the first device's INSTALL).
  const admin = await openKeyReference(`file:${adminStorePath}#admin`, adminPass, {});
  const benchStore = await SoftwareKeyStore.open(join(dir, 'bench.keys'), benchPass, { create: true, kdfCost: 14 });
  const bench = await benchStore.generate('bench', 'Ed25519');
  return {
    account, admin: admin.handle.signer(), bench: bench.signer(),
    close: async () => {
      await admin.store.close();
      await benchStore.close();
    },
  };
}

/** CPU ms (user + system) used so far by this process's children, by command name (Linux /proc; empty elsewhere). */
function childCpuMs(): Map<string, number> {
  const out = new Map<string, number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const f = stat.slice(close + 2).split(' '); // f[0] = state, f[1] = ppid, f[11] = utime, f[12] = stime
      if (Number(f[1]) !== process.pid) continue;
      out.set(name, (out.get(name) ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
/** USER_HZ of /proc/<pid>/stat (100 on Linux). */
const CLOCK_TICKS = 100;

/** One batch: N fresh emulators, one runBench over all of them. */
interface Batch {
  readonly n: number;
  readonly elapsedMs: number;
  readonly cpuMs: number;
  /** CPU of the emulators and of socat during the batch (their whole lives: they did nothing before). */
  readonly emulatorCpuMs: number;
  readonly socatCpuMs: number;
  readonly summary: BenchSummary;
}

/**
 * Runs the provisioning figures.
 * @param opts batch sizes, rounds, line rate, a progress sink
 * @returns the figures, or `skipped` saying why there are none
 * @throws RangeError for a bad option; whatever setting up the scratch account throws (the directory is removed
 *   and every emulator stopped first); an Error when a batch does not provision every device
 */
export async function benchProvisioning(opts: ProvisioningBenchOptions = {}): Promise<{ figures: ProvisioningFigure[]; skipped?: string }> {
  const counts = opts.counts ?? [1, 4, 16];
  for (const [i, c] of counts.entries()) aint(c, `counts[${i}]`, 1, 64);
  const rounds = aint(opts.rounds ?? 3, 'rounds', 1, 20);
  const baud = aint(opts.baud ?? 115200, 'baud', 1200, 4_000_000);
  const log = opts.log ?? ((): void => undefined);
  const why = emulatorUnavailable();
  if (why !== undefined) return { figures: [], skipped: `provisioning figures skipped: ${why}` };

  const dir = mkdtempSync(join(tmpdir(), 'meshkit-bench-provisioning-'));
  const live = new Set<EmulatedDevice>();
  const scratches: Scratch[] = [];
  try {
    let batchNo = 0;
    const config = enc(JSON.stringify({ wifi: { ssid: 'bench-line' }, mqtt: 'mqtts://broker.example:8883' }));

    const batch = async (n: number): Promise<Batch> => {
      const id = ++batchNo;
      // A fresh account per batch, so that no batch pays for the devices an earlier one connected.
      const t0 = performance.now();
      const accountDir = join(dir, `account-${id}`);
      mkdirSync(accountDir);
      const s = await makeScratchAccount(accountDir);
      scratches.push(s);
      if (id === 1) log(`provisioning: a scratch account from a ceremony on software key stores takes ${((performance.now() - t0) / 1000).toFixed(1)} s (not timed)`);
      const benchRaw = rawEd25519(s.bench);
      const devices = await Promise.all(Array.from({ length: n }, async (_, i) => {
        const d = await startEmulatedDevice({
          state: join(dir, `b${id}-d${i}.state`), link: join(dir, `b${id}-d${i}-host`), serial: `BENCH-${id}-${i}`,
          model: 'meshkit-emulator', baud, provisionerKey: benchRaw,
        });
        live.add(d);
        return d;
      }));
      opts.onTimed?.('start', n);
      const cpu0 = process.cpuUsage();
      const w0 = performance.now();
      const summary = await runBench({
        ports: devices.map((d) => d.port), out: join(dir, `out-${id}`), account: s.account, admin: s.admin, bench: s.bench, config,
        parallel: n, retries: 0, replugTimeoutMs: 0, baudRate: baud, session: { timeoutMs: 15_000, retries: 1 }, groupCommit: true,
        openTransport: async (port) => pacedTransport(await SerialTransport.open(port, { baudRate: baud }), baud),
        ...(opts.onEvent === undefined ? {} : { onEvent: (e: BenchEvent) => opts.onEvent?.(e, n) }),
      });
      const elapsedMs = performance.now() - w0;
      const cpu = process.cpuUsage(cpu0);
      opts.onTimed?.('end', n);
      const children = childCpuMs();
      for (const d of devices) {
        await d.stop();
        live.delete(d);
      }
      if (summary.provisioned !== n) {
        const reasons = summary.devices.filter((d) => d.status !== 'provisioned').map((d) => `${d.port}: ${d.step ?? '?'}: ${d.reason ?? '?'}`);
        throw new Error(`provisioning bench: ${summary.provisioned} of ${n} provisioned: ${reasons.join('; ')}`);
      }
      log(`provisioning: ${n} device(s) in ${(elapsedMs / 1000).toFixed(2)} s`);
      return {
        n, elapsedMs, cpuMs: (cpu.user + cpu.system) / 1000, summary,
        emulatorCpuMs: children.get('mk-emulator') ?? NaN, socatCpuMs: children.get('socat') ?? NaN,
      };
    };

    // Rounds interleaved (1, 4, 16, 1, 4, 16, …) so that drift in machine load hits every size alike.
    const sizes = [...new Set([1, ...counts])];
    // Warm-up, one batch of each size (not timed): JIT of every path (the group commits only run with company), the
    // emulator binary and the account's files in the page cache.
    for (const n of sizes) await batch(n);
    const runs = new Map<number, Batch[]>(sizes.map((n) => [n, []]));
    for (let r = 0; r < rounds; r++) for (const n of sizes) runs.get(n)?.push(await batch(n));
    const medianBatch = (bs: readonly Batch[]): Batch => [...bs].sort((a, b) => a.elapsedMs - b.elapsedMs)[Math.floor(bs.length / 2)] as Batch;
    const singles = runs.get(1) ?? [];
    const results = new Map<number, Batch>();
    for (const n of counts) if (n !== 1) results.set(n, medianBatch(runs.get(n) ?? []));

    const all = [...runs.values()].flat();
    const outcomes = all.flatMap((b) => b.summary.devices);
    const sent = median(outcomes.map((d) => d.bytesSent ?? NaN));
    const received = median(outcomes.map((d) => d.bytesReceived ?? NaN));
    const floorMs = ((sent + received) * 10 * 1000) / baud;
    const single = singles.map((b) => b.elapsedMs);
    const singleMs = median(single);
    const singleCpu = median(singles.map((b) => b.cpuMs));
    const rate1 = 3_600_000 / singleMs;
    const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
    const baudText = `${baud} baud`;

    const figures: ProvisioningFigure[] = [{
      name: `provision 1 emulated device at ${baudText} (C emulator on a pty, both directions paced), wall time`,
      baseline: `link-time floor of its ${sent + received} bytes on the wire (× 10 bits / ${baud})`,
      baselineMs: floorMs,
      meshkitMs: singleMs,
      ratio: floorMs / singleMs,
      note: `bytes on the wire per enrollment: ${sent} host→device + ${received} device→host (median of ${outcomes.length}); `
        + `${rate1.toFixed(0)} devices/hour; median of ${rounds} runs: ${single.map((x) => x.toFixed(0)).join(', ')} ms`,
    }, {
      name: 'host CPU time per provisioned device (this process: bench runner, enrollment, record log, account update)',
      baseline: `link time of one enrollment at ${baudText}`,
      baselineMs: floorMs,
      meshkitMs: singleCpu,
      ratio: floorMs / singleCpu,
      aim: 20,
      note: `one device per bench run (median of ${rounds}): host overhead ${pct(singleCpu / floorMs)} of the link time `
        + `(aim ≤ 5 %: ${singleCpu / floorMs <= 0.05 ? 'met' : 'NOT met'}); per-run costs (account, log, summary) amortise over larger batches, below`,
    }];
    // The per-run costs (account load, log head, summary) cancel out in the slope between the two largest batches.
    const sized = [...results.values()].sort((a, b) => a.n - b.n);
    const small = sized.at(-2) ?? singles.find((b) => b.elapsedMs === singleMs) ?? singles[0];
    const large = sized.at(-1);
    if (small !== undefined && large !== undefined && large.n > small.n) {
      const slope = (large.cpuMs - small.cpuMs) / (large.n - small.n);
      figures.push({
        name: `host CPU time per additional device (slope between the ${small.n}- and ${large.n}-device batches: per-run costs left out)`,
        baseline: `link time of one enrollment at ${baudText}`,
        baselineMs: floorMs,
        meshkitMs: slope,
        ratio: floorMs / slope,
        aim: 20,
        note: `host overhead ${pct(slope / floorMs)} of the link time (aim ≤ 5 %: ${slope / floorMs <= 0.05 ? 'met' : 'NOT met'}); `
          + `per bench run ≈ ${(small.cpuMs - slope * small.n).toFixed(0)} ms on top`,
      });
    }
    for (const [n, b] of results) {
      const rate = (n * 3_600_000) / b.elapsedMs;
      const scaling = rate / n / rate1;
      const perDeviceCpu = b.cpuMs / n;
      const t = b.summary.timing;
      figures.push({
        name: `provision ${n} emulated devices in parallel at ${baudText}, the whole batch (median of ${rounds}); ratio = parallel scaling (rate_${n} / ${n}) / rate_1`,
        baseline: 'one device alone, same run',
        baselineMs: singleMs,
        meshkitMs: b.elapsedMs,
        ratio: scaling,
        aim: 0.9,
        note: `${rate.toFixed(0)} devices/hour (1 alone: ${rate1.toFixed(0)}); wall per device median ${t?.medianMs.toFixed(0) ?? '?'} ms `
          + `(min ${t?.minMs.toFixed(0) ?? '?'}, max ${t?.maxMs.toFixed(0) ?? '?'}); host CPU ${perDeviceCpu.toFixed(1)} ms per device = `
          + `${pct(perDeviceCpu / floorMs)} of its link time (${b.cpuMs.toFixed(0)} ms for the batch, one event loop); `
          + `CPU of all ${n} emulators ${b.emulatorCpuMs.toFixed(0)} ms, of socat ${b.socatCpuMs.toFixed(0)} ms (/proc, 10 ms ticks); ${availableParallelism()} cores`,
      });
    }
    return { figures };
  } finally {
    for (const d of live) await d.stop();
    for (const s of scratches) await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
