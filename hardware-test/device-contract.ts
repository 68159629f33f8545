/**
 * The device transport contract: what every meshkit device must do on its link, whatever the transport — run by
 * hardware-test/device-serial.test.ts (a real port), hardware-test/device-hid.test.ts (a real HID device) and, so
 * that the contract itself is checked in CI, test/bench/contract.test.ts (the C emulator on a pty).
 *
 * Read-only: nothing here changes the device's persistent state (HELLO, refused requests only). The optional
 * enrollment part ({@link runEnrollmentContract}) provisions the device for good — a COMMITTED device cannot be
 * RESET — so it runs only when asked for.
 */
import { randomBytes } from 'node:crypto';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DeviceReplyError, type DeviceSession } from '../src/device/session.js';
import { capabilityMask, findDescriptor, loadDescriptors } from '../src/device/descriptors.js';
import { Capability, DeviceStatus, Limits } from '../src/device/protocol.generated.js';
import type { Transport } from '../src/device/transport/types.js';

/** How the contract reaches the device. */
export interface DeviceUnderTest {
  /** 'serial' or 'hid': which capability bit INFO must set. */
  readonly transport: 'serial' | 'hid';
  /** Opens the link and a session on it (the contract closes the session). */
  open(): Promise<{ session: DeviceSession; transport: Transport }>;
  /** Serial only: the wire bytes of a message (to corrupt one by hand). */
  readonly frame?: (type: number, seq: number, message: Uint8Array) => Uint8Array;
}

function map(value: unknown): Map<number, unknown> {
  if (!(value instanceof Map)) throw new TypeError('reply is not a CBOR map');
  return value as Map<number, unknown>;
}

async function refused(promise: Promise<unknown>): Promise<number | undefined> {
  try {
    await promise;
    return undefined;
  } catch (e) {
    if (e instanceof DeviceReplyError) return e.status;
    throw e;
  }
}

/**
 * Registers the transport contract suite.
 * @param name the suite name (names the device)
 * @param device how to reach it
 */
export function runDeviceContract(name: string, device: DeviceUnderTest): void {
  describe(`device transport contract: ${name}`, () => {
    const withSession = async (fn: (s: DeviceSession, t: Transport) => Promise<void>): Promise<void> => {
      const { session, transport } = await device.open();
      try {
        await fn(session, transport);
      } finally {
        await session.close();
      }
    };

    it('HELLO → INFO: model, serial, firmware, capabilities, state and a fresh 32-byte challenge each time', async () => {
      await withSession(async (s) => {
        const a = map((await s.exchange('HELLO', { 1: Limits.PROTOCOL_VERSION })).payload);
        const b = map((await s.exchange('HELLO', { 1: Limits.PROTOCOL_VERSION })).payload);
        for (const key of [1, 2, 3]) {
          expect(typeof a.get(key)).toBe('string');
          expect((a.get(key) as string).length).toBeGreaterThan(0);
        }
        expect(typeof a.get(4)).toBe('number');
        expect(a.get(5)).toBeGreaterThanOrEqual(0);
        expect(a.get(5)).toBeLessThanOrEqual(5);
        expect(a.get(6)).toBeInstanceOf(Uint8Array);
        expect((a.get(6) as Uint8Array).length).toBe(32);
        expect(b.get(2)).toBe(a.get(2));
        expect(b.get(6)).not.toEqual(a.get(6));
        const bit = device.transport === 'serial' ? Capability.SERIAL : Capability.HID;
        expect((a.get(4) as number) & bit).toBe(bit);
      });
    });

    it('INFO agrees with the devices/ descriptor of its model (when there is one): capability table and transport', async () => {
      await withSession(async (s) => {
        const info = map((await s.exchange('HELLO', { 1: Limits.PROTOCOL_VERSION })).payload);
        const d = findDescriptor(await loadDescriptors(), info.get(1) as string);
        if (d === undefined) {
          console.warn(`device contract: no devices/ descriptor lists model ${String(info.get(1))}; capability check skipped`);
          return;
        }
        expect(d.transport).toBe(device.transport);
        expect(info.get(4)).toBe(capabilityMask(d));
      });
    });

    it('an unknown message gets UNKNOWN_MESSAGE, KEYGEN without BENCH_AUTH NOT_AUTHENTICATED', async () => {
      await withSession(async (s) => {
        await s.exchange('HELLO', { 1: Limits.PROTOCOL_VERSION });
        expect(await refused(s.exchange(0x55, {}))).toBe(DeviceStatus.UNKNOWN_MESSAGE);
        expect(await refused(s.exchange('KEYGEN', { 1: 7, 2: Math.floor(Date.now() / 1000) }))).toBe(DeviceStatus.NOT_AUTHENTICATED);
      });
    });

    it('BENCH_AUTH by a key the device does not pin gets BAD_SIGNATURE; a wrong challenge is refused too', async () => {
      await withSession(async (s) => {
        const info = map((await s.exchange('HELLO', { 1: Limits.PROTOCOL_VERSION })).payload);
        const challenge = info.get(6) as Uint8Array;
        const { publicKey, privateKey } = generateKeyPairSync('ed25519');
        const raw = new Uint8Array(Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url'));
        const signature = new Uint8Array(sign(null, challenge, privateKey));
        expect(await refused(s.exchange('BENCH_AUTH', { 1: challenge, 2: raw, 3: signature }))).toBe(DeviceStatus.BAD_SIGNATURE);
        const other = new Uint8Array(randomBytes(32));
        expect(await refused(s.exchange('BENCH_AUTH', { 1: other, 2: raw, 3: new Uint8Array(sign(null, other, privateKey)) }))).toBeDefined();
      });
    });

    it.skipIf(device.frame === undefined)('a frame with a corrupted byte gets no reply; the next good request is answered', async () => {
      await withSession(async (s, t) => {
        const wire = (device.frame as NonNullable<DeviceUnderTest['frame']>)(0x01, 200, new Uint8Array([0xa1, 0x01, 0x01]));
        const bad = wire.slice();
        const i = bad.length - 3; // inside the CRC, before the delimiter
        bad[i] = (bad[i] as number) ^ 0x5a || 0x01;
        let replies = 0;
        const off = t.onData(() => void replies++);
        await t.send(bad);
        await new Promise((r) => setTimeout(r, 300));
        off();
        expect(replies).toBe(0);
        const info = map((await s.exchange('HELLO', { 1: Limits.PROTOCOL_VERSION })).payload);
        expect((info.get(6) as Uint8Array).length).toBe(32);
      });
    });
  });
}

/** What {@link runEnrollmentContract} needs. */
export interface EnrollmentUnderTest {
  /** The port (a path the bench can poll). */
  readonly port: string;
  /** The bench key the device pins (an open Ed25519 signer) — the device must already pin it. */
  readonly bench: () => Promise<import('../src/core/signer.js').Signer>;
  /** Bench options for the transport (openTransport / codec for HID). */
  readonly benchOptions?: Partial<import('../src/device/bench-runner.js').BenchRunOptions>;
}

/**
 * Registers the enrollment contract: one real `runBench` over the device (a ceremony account on SoftHSM, a fresh
 * output directory), then `verifyBenchOutput`. Provisions the device for good.
 */
export function runEnrollmentContract(name: string, target: EnrollmentUnderTest): void {
  describe(`device enrollment contract: ${name}`, () => {
    it('the bench provisions it; the record, the signed head and the receipt verify', async () => {
      const { makeAccountFixture } = await import('../test/helpers/account.js');
      const { runBench, verifyBenchOutput } = await import('../src/device/bench-runner.js');
      const { mkdtempSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      const account = await makeAccountFixture({ spareCards: 0 });
      try {
        const admin = await account.openAdmin();
        const out = mkdtempSync(join(tmpdir(), 'meshkit-hw-bench-'));
        const summary = await runBench({
          ports: [target.port], out, account: account.dir, admin: admin.key, bench: await target.bench(),
          config: new TextEncoder().encode('{"hardware-test":true}'), retries: 0, replugTimeoutMs: 0, ...target.benchOptions,
        });
        expect(summary.devices[0]?.reason).toBeUndefined();
        expect(summary.provisioned).toBe(1);
        const report = await verifyBenchOutput(out, { account: account.dir });
        expect(report.problems).toEqual([]);
        console.warn(`device enrollment contract: ${name} provisioned as ${summary.devices[0]?.deviceId}; records in ${out}`);
      } finally {
        await account.cleanup();
      }
    }, 120_000);
  });
}
