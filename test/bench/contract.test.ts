/**
 * The device transport contract of hardware-test/ (device-contract.ts) run against the C emulator on a socat pty
 * pair, so that the contract the hardware suites apply is itself checked here. Skipped, with the reason printed,
 * where socat, make, gcc, libsodium or SoftHSM is missing.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { encodeFrames } from '../../src/device/framing.js';
import { DeviceSession } from '../../src/device/session.js';
import { SerialTransport } from '../../src/device/transport/serial.js';
import { runDeviceContract } from '../../hardware-test/device-contract.js';
import { benchSkipReason, buildEmulator, EmulatorLab, type EmulatedDevice } from './emulators.js';

const reason = benchSkipReason();
if (reason !== undefined) {
  console.log(`test/bench/contract.test.ts: skipped: ${reason}`);
  describe.skipIf(true)(`device contract on the emulator (${reason})`, () => {
    it('needs socat, gcc, libsodium', () => undefined);
  });
} else {
  let lab: EmulatorLab | undefined;
  let device: EmulatedDevice | undefined;
  beforeAll(async () => {
    buildEmulator();
    lab = new EmulatorLab();
    device = await lab.device({ name: 'contract', provisionerKey: '11'.repeat(32) });
  });
  afterAll(async () => {
    await lab?.cleanup();
  });
  runDeviceContract('C emulator on a pty', {
    transport: 'serial',
    open: async () => {
      const transport = await SerialTransport.open((device as EmulatedDevice).port);
      return { transport, session: new DeviceSession(transport, { timeoutMs: 2000 }) };
    },
    frame: (type, seq, message) => Uint8Array.from(encodeFrames(type, seq, message).flatMap((f) => [...f])),
  });
}
