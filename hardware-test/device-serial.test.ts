/**
 * The device transport contract (hardware-test/device-contract.ts) against a REAL serial device: a board running
 * the meshkit firmware on a USB-serial port. Enabled by environment variables:
 *
 *   MESHKIT_HW_SERIAL          the port (/dev/ttyACM0, /dev/ttyUSB0, /dev/serial/by-id/…)
 *   MESHKIT_HW_BAUD            optional line rate (default: the descriptor's, else 115200)
 *   MESHKIT_HW_ENROLL=1        optional, DESTRUCTIVE: also provision the device for good (it ends COMMITTED);
 *                              needs the bench key it pins: MESHKIT_HW_BENCH_KEY (a key URI) and its passphrase /
 *                              PIN in the variable MESHKIT_HW_BENCH_PIN_ENV names; and SoftHSM for the account
 *
 * Without MESHKIT_HW_SERIAL the suite is skipped with the reason printed (docs/bench.md "Hardware tests").
 */
import { existsSync } from 'node:fs';
import { describe, it } from 'vitest';
import { encodeFrames } from '../src/device/framing.js';
import { DeviceSession } from '../src/device/session.js';
import { SerialTransport } from '../src/device/transport/serial.js';
import { openKeyReference } from '../src/keystore/index.js';
import { runDeviceContract, runEnrollmentContract } from './device-contract.js';

const env = process.env;
const port = env['MESHKIT_HW_SERIAL'];
const baudRate = env['MESHKIT_HW_BAUD'] === undefined ? 115200 : Number(env['MESHKIT_HW_BAUD']);

function missingReason(): string | undefined {
  if (port === undefined || port === '') return 'MESHKIT_HW_SERIAL is not set';
  if (!existsSync(port)) return `MESHKIT_HW_SERIAL=${port} does not exist`;
  if (!Number.isSafeInteger(baudRate) || baudRate <= 0) return `MESHKIT_HW_BAUD=${env['MESHKIT_HW_BAUD']} is not a baud rate`;
  return undefined;
}

function enrollReason(): string | undefined {
  if (env['MESHKIT_HW_ENROLL'] !== '1') return 'MESHKIT_HW_ENROLL is not 1 (the enrollment contract provisions the device for good)';
  if ((env['MESHKIT_HW_BENCH_KEY'] ?? '') === '') return 'MESHKIT_HW_BENCH_KEY is not set';
  const pinEnv = env['MESHKIT_HW_BENCH_PIN_ENV'] ?? '';
  if (pinEnv === '' || (env[pinEnv] ?? '') === '') return 'MESHKIT_HW_BENCH_PIN_ENV does not name a set variable';
  return undefined;
}

const reason = missingReason();
if (reason !== undefined) {
  console.warn(`hardware-test/device-serial.test.ts skipped: ${reason} (see docs/bench.md "Hardware tests")`);
  describe.skipIf(true)(`device contract: serial port (${reason})`, () => {
    it('needs MESHKIT_HW_SERIAL', () => undefined);
  });
} else {
  const path = port as string;
  runDeviceContract(`serial ${path} at ${baudRate} baud`, {
    transport: 'serial',
    open: async () => {
      const transport = await SerialTransport.open(path, { baudRate });
      return { transport, session: new DeviceSession(transport, { timeoutMs: 3000 }) };
    },
    frame: (type, seq, message) => {
      const frames = encodeFrames(type, seq, message);
      return frames.length === 1 ? (frames[0] as Uint8Array) : Uint8Array.from(frames.flatMap((f) => [...f]));
    },
  });
  const enroll = enrollReason();
  if (enroll !== undefined) {
    console.warn(`hardware-test/device-serial.test.ts: enrollment contract skipped: ${enroll}`);
  } else {
    runEnrollmentContract(`serial ${path}`, {
      port: path,
      bench: async () => {
        const secret = env[env['MESHKIT_HW_BENCH_PIN_ENV'] as string] as string;
        const { handle } = await openKeyReference(env['MESHKIT_HW_BENCH_KEY'] as string, new TextEncoder().encode(secret));
        return handle.signer();
      },
      benchOptions: { baudRate },
    });
  }
}
