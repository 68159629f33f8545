/**
 * Integration test of the C device emulator (firmware-bindings/emulator/mk_emulator.c) over a real serial device:
 * builds it with `make -C firmware-bindings emulator`, opens a socat pty pair in a temporary directory, runs the
 * emulator on one end and talks to it on the other with plain node:fs, framing with src/device/framing.ts and
 * encoding with src/device/cbor.ts. Skipped, with the reason printed, only where socat, make, gcc or libsodium
 * (libsodium-dev) is missing.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CborMap, type CborValue, decodeCbor, encodeCbor } from '../../src/device/cbor.js';
import { encodeFrames, FrameDecoder, type FramedMessage } from '../../src/device/framing.js';
import { DeviceStatus, MessageType } from '../../src/device/protocol.generated.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const emulatorPath = join(repoRoot, 'firmware-bindings', 'build', 'mk-emulator');

function skipReason(): string | undefined {
  for (const tool of ['socat', 'make', 'gcc']) {
    const probe = spawnSync(tool, ['-V'], { encoding: 'utf8' });
    if (probe.error !== undefined) return `'${tool}' is not installed`;
  }
  if (!existsSync('/usr/include/sodium.h')) return 'libsodium is not installed (apt-get install libsodium-dev)';
  return undefined;
}

const reason = skipReason();
if (reason !== undefined) console.log(`emulator.test.ts: skipped: ${reason}`);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe.skipIf(reason !== undefined)('C device emulator on a socat pty pair', () => {
  let dir = '';
  let socat: ChildProcess | undefined;
  let emulator: ChildProcess | undefined;
  let emulatorLog = '';
  let emulatorExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let fd = -1;
  const decoder = new FrameDecoder();

  beforeAll(async () => {
    const build = spawnSync('make', ['-C', 'firmware-bindings', 'emulator'], { cwd: repoRoot, encoding: 'utf8' });
    expect(build.status, `${build.stdout}\n${build.stderr}`).toBe(0);
    dir = mkdtempSync(join(tmpdir(), 'meshkit-emu-'));
    const devLink = join(dir, 'device');
    const hostLink = join(dir, 'host');
    socat = spawn('socat', [`pty,raw,echo=0,link=${devLink}`, `pty,raw,echo=0,link=${hostLink}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await waitFor('the socat pty pair', () => existsSync(devLink) && existsSync(hostLink), 5000);
    emulator = spawn(
      emulatorPath,
      ['--tty', devLink, '--state', join(dir, 'state.bin'), '--model', 'esp32s3-devkit', '--serial', 'EMU-42', '--baud', '115200'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    emulator.stderr?.on('data', (chunk: Buffer) => {
      emulatorLog += chunk.toString('utf8');
    });
    emulator.on('exit', (code, signal) => {
      emulatorExit = { code, signal };
    });
    await waitFor('the emulator to be ready', () => emulatorLog.includes('mk-emulator: ready'), 5000);
    fd = openSync(hostLink, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
  });

  afterAll(async () => {
    if (fd >= 0) closeSync(fd);
    if (emulator !== undefined && emulatorExit === undefined) {
      emulator.kill('SIGKILL');
      await waitFor('the emulator to exit', () => emulatorExit !== undefined, 5000).catch(() => undefined);
    }
    socat?.kill('SIGTERM');
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
        if (Date.now() > deadline) throw new Error(`no reply from the emulator; its log:\n${emulatorLog}`);
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
    emulator?.kill('SIGTERM');
    await waitFor('the emulator to exit', () => emulatorExit !== undefined, 5000);
    expect(emulatorExit).toEqual({ code: 0, signal: null });
    expect(emulatorLog).toContain('mk-emulator: stopped');
  });
});
