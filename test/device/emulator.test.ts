/**
 * Integration test of the C device emulator (firmware-bindings/emulator/mk_emulator.c) over a real serial device:
 * src/device/emulator.ts builds it (`make -C firmware-bindings emulator`) and runs it on one end of a socat pty
 * pair; the test talks to it on the other end with plain node:fs, framing with src/device/framing.ts and
 * encoding with src/device/cbor.ts. Skipped, with the reason printed, only where socat, make, gcc or libsodium
 * (libsodium-dev) is missing.
 */
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CborMap, type CborValue, decodeCbor, encodeCbor } from '../../src/device/cbor.js';
import { emulatorUnavailable, startEmulatedDevice, type EmulatedDevice, type EmulatorExit } from '../../src/device/emulator.js';
import { encodeFrames, FrameDecoder, type FramedMessage } from '../../src/device/framing.js';
import { DeviceStatus, MessageType } from '../../src/device/protocol.generated.js';

const reason = emulatorUnavailable();
if (reason !== undefined) console.log(`emulator.test.ts: skipped: ${reason}`);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(reason !== undefined)('C device emulator on a socat pty pair', () => {
  let dir = '';
  let device: EmulatedDevice | undefined;
  let emulatorExit: EmulatorExit | undefined;
  let fd = -1;
  const decoder = new FrameDecoder();
  const emulatorLog = (): string => device?.log() ?? '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshkit-emu-'));
    device = await startEmulatedDevice({ state: join(dir, 'state.bin'), model: 'esp32s3-devkit', serial: 'EMU-42', baud: 115200 });
    void device.exited.then((e) => void (emulatorExit = e));
    fd = openSync(device.port, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
  });

  afterAll(async () => {
    if (fd >= 0) closeSync(fd);
    await device?.stop();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  /** Sends one request and reads until one full reply frame sequence is decoded. */
  async function exchange(type: number, seq: number, message: Uint8Array): Promise<FramedMessage> {
    for (const frame of encodeFrames(type, seq, message)) writeSync(fd, frame);
    const chunk = Buffer.alloc(4096);
    const deadline = Date.now() + 5000;
    for (;;) {
      let n = 0;
      try {
        n = readSync(fd, chunk, 0, chunk.length, null);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      }
      if (n > 0) {
        for (const event of decoder.push(new Uint8Array(chunk.subarray(0, n)))) {
          if (event.kind === 'error') throw event.error;
          return event.message;
        }
      } else {
        if (Date.now() > deadline) throw new Error(`no reply from the emulator; its log:\n${emulatorLog()}`);
        await sleep(5);
      }
    }
  }

  function asMap(value: CborValue): CborMap {
    if (!(value instanceof Map)) throw new TypeError('reply is not a CBOR map');
    return value;
  }

  let firstInfo: FramedMessage | undefined;

  it('HELLO gets INFO with the model, serial, firmware, state and a 32-byte challenge', async () => {
    const reply = await exchange(MessageType.HELLO, 1, encodeCbor(new Map([[1, 1]])));
    expect(reply.type).toBe(MessageType.INFO);
    expect(reply.seq).toBe(1);
    const info = asMap(decodeCbor(reply.payload));
    expect(info.get(1)).toBe('esp32s3-devkit');
    expect(info.get(2)).toBe('EMU-42');
    expect(info.get(3)).toBe('0.1.0');
    expect(info.get(5)).toBe(0); // FACTORY
    const challenge = info.get(6);
    expect(challenge).toBeInstanceOf(Uint8Array);
    expect((challenge as Uint8Array).length).toBe(32);
    firstInfo = reply;
  });

  it('a retried HELLO (same seq) gets the same INFO, byte for byte; a new seq gets a new challenge', async () => {
    expect(firstInfo).toBeDefined();
    const retry = await exchange(MessageType.HELLO, 1, encodeCbor(new Map([[1, 1]])));
    expect(retry.payload).toEqual(firstInfo?.payload);
    const fresh = await exchange(MessageType.HELLO, 2, encodeCbor(new Map([[1, 1]])));
    expect(fresh.seq).toBe(2);
    expect(asMap(decodeCbor(fresh.payload)).get(6)).not.toEqual(asMap(decodeCbor(firstInfo?.payload ?? new Uint8Array())).get(6));
  });

  it('an unknown message gets ERROR{UNKNOWN_MESSAGE}, a malformed HELLO ERROR{WRONG_TYPE} naming the field', async () => {
    const unknown = await exchange(0x55, 3, encodeCbor(new Map()));
    expect(unknown.type).toBe(MessageType.ERROR);
    expect(asMap(decodeCbor(unknown.payload)).get(1)).toBe(DeviceStatus.UNKNOWN_MESSAGE);
    const wrong = await exchange(MessageType.HELLO, 4, encodeCbor(new Map([[1, 'one']])));
    expect(wrong.type).toBe(MessageType.ERROR);
    const error = asMap(decodeCbor(wrong.payload));
    expect(error.get(1)).toBe(DeviceStatus.WRONG_TYPE);
    expect(error.get(2)).toContain('HELLO.version');
  });

  it('KEYGEN without BENCH_AUTH gets ERROR{NOT_AUTHENTICATED}', async () => {
    const reply = await exchange(MessageType.KEYGEN, 5, encodeCbor(new Map([[1, 7], [2, Math.floor(Date.now() / 1000)]])));
    expect(reply.type).toBe(MessageType.ERROR);
    expect(asMap(decodeCbor(reply.payload)).get(1)).toBe(DeviceStatus.NOT_AUTHENTICATED);
  });

  it('exits with status 0 on SIGTERM', async () => {
    device?.kill('SIGTERM');
    expect(await device?.exited).toEqual({ code: 0, signal: null });
    expect(emulatorExit).toEqual({ code: 0, signal: null });
    expect(emulatorLog()).toContain('mk-emulator: stopped');
  });
});
