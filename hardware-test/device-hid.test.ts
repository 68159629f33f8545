/**
 * The device transport contract (hardware-test/device-contract.ts) against a REAL USB HID device (64-byte reports,
 * src/device/transport/hid.ts through node-hid; needs libusb-1.0-0 at run time). Enabled by environment variables:
 *
 *   MESHKIT_HW_HID             the hidraw path (/dev/hidraw0; `meshkit bench ports` lists HID devices and the
 *                              descriptor each matches)
 *   MESHKIT_HW_ENROLL=1        optional, DESTRUCTIVE: also provision it for good (see device-serial.test.ts for
 *                              MESHKIT_HW_BENCH_KEY / MESHKIT_HW_BENCH_PIN_ENV)
 *
 * Without MESHKIT_HW_HID the suite is skipped with the reason printed (docs/bench.md "Hardware tests").
 */
import { existsSync } from 'node:fs';
import { describe, it } from 'vitest';
import { DeviceSession, hidCodec } from '../src/device/session.js';
import { HidTransport } from '../src/device/transport/hid.js';
import { openKeyReference } from '../src/keystore/index.js';
import { runDeviceContract, runEnrollmentContract } from './device-contract.js';

const env = process.env;
const path = env['MESHKIT_HW_HID'];

function missingReason(): string | undefined {
  if (path === undefined || path === '') return 'MESHKIT_HW_HID is not set';
  if (!existsSync(path)) return `MESHKIT_HW_HID=${path} does not exist`;
  return undefined;
}

const reason = missingReason();
if (reason !== undefined) {
  console.warn(`hardware-test/device-hid.test.ts skipped: ${reason} (see docs/bench.md "Hardware tests")`);
  describe.skipIf(true)(`device contract: HID device (${reason})`, () => {
    it('needs MESHKIT_HW_HID', () => undefined);
  });
} else {
  const hidPath = path as string;
  runDeviceContract(`HID ${hidPath}`, {
    transport: 'hid',
    open: async () => {
      const transport = await HidTransport.open(hidPath);
      return { transport, session: new DeviceSession(transport, { timeoutMs: 3000, codec: hidCodec() }) };
    },
  });
  const pinEnv = env['MESHKIT_HW_BENCH_PIN_ENV'] ?? '';
  if (env['MESHKIT_HW_ENROLL'] !== '1' || (env['MESHKIT_HW_BENCH_KEY'] ?? '') === '' || pinEnv === '' || (env[pinEnv] ?? '') === '') {
    console.warn('hardware-test/device-hid.test.ts: enrollment contract skipped: set MESHKIT_HW_ENROLL=1, MESHKIT_HW_BENCH_KEY and MESHKIT_HW_BENCH_PIN_ENV');
  } else {
    runEnrollmentContract(`HID ${hidPath}`, {
      port: hidPath,
      bench: async () => {
        const { handle } = await openKeyReference(env['MESHKIT_HW_BENCH_KEY'] as string, new TextEncoder().encode(env[pinEnv] as string));
        return handle.signer();
      },
      benchOptions: { openTransport: (p) => HidTransport.open(p), codec: () => hidCodec() },
    });
  }
}
