import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DeviceState,
  DeviceStatus,
  DeviceStatusNames,
  Limits,
  MessageFields,
  MessageType,
  MessageTypeNames,
  Replies,
  StatusBands,
} from '../../src/device/protocol.generated.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const script = 'scripts/gen-protocol.mjs';

describe('protocol definition and generated files', () => {
  it('generated files are up to date (npm run protocol:gen)', () => {
    const r = spawnSync(process.execPath, [script, '--check'], { cwd: root, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('--check names a stale file and exits 1', () => {
    // a temp root holding the script and a protocol.json but no generated files
    const tmp = mkdtempSync(join(tmpdir(), 'meshkit-gen-'));
    mkdirSync(join(tmp, 'scripts'));
    mkdirSync(join(tmp, 'firmware-bindings/protocol'), { recursive: true });
    copyFileSync(join(root, script), join(tmp, script));
    const p = JSON.parse(readFileSync(join(root, 'firmware-bindings/protocol/protocol.json'), 'utf8')) as { constants: { value: number }[] };
    (p.constants[0] as { value: number }).value = 2;
    writeFileSync(join(tmp, 'firmware-bindings/protocol/protocol.json'), JSON.stringify(p));
    const stale = spawnSync(process.execPath, [`${tmp}/${script}`, '--check'], { encoding: 'utf8' });
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain('firmware-bindings/include/meshkit_protocol.h');
    expect(stale.stderr).toContain('src/device/protocol.generated.ts');
    const gen = spawnSync(process.execPath, [`${tmp}/${script}`], { encoding: 'utf8' });
    expect(gen.status).toBe(0);
    expect(spawnSync(process.execPath, [`${tmp}/${script}`, '--check']).status).toBe(0);
    rmSync(tmp, { recursive: true, force: true });
  });

  it('constants, codes and fields match the brief', () => {
    expect(Limits).toMatchObject({ MAX_FRAME_PAYLOAD: 512, MAX_MESSAGE: 4096, MAX_FRAGMENTS: 8, HID_REPORT_SIZE: 64, CBOR_MAX_DEPTH: 8 });
    expect(MessageType.HELLO).toBe(0x01);
    expect(MessageType.ACK).toBe(0x0a);
    expect(MessageType.ERROR).toBe(0x7f);
    expect(MessageTypeNames[0x0c]).toBe('RECEIPT');
    expect(Replies.COMMIT).toBe('RECEIPT');
    expect(DeviceState.COMMITTED).toBe(5);
    expect(DeviceStatus.BAD_CRC).toBe(1);
    expect(DeviceStatus.CBOR_NONCANONICAL).toBe(33);
    expect(DeviceStatus.NOT_AUTHENTICATED).toBe(66);
    expect(DeviceStatus.RNG).toBe(129);
    expect(DeviceStatusNames[97]).toBe('COGEN_MISMATCH');
    expect(MessageFields.ERROR).toEqual([
      { key: 1, name: 'code', type: 'uint', required: true },
      { key: 2, name: 'detail', type: 'tstr', required: false },
    ]);
    for (const [name, value] of Object.entries(DeviceStatus)) {
      if (name === 'OK') continue;
      const band = Object.values(StatusBands).find((b) => value >= b.min && value <= b.max);
      expect(band, name).toBeDefined();
    }
  });

  it('the C header defines the same values', () => {
    const h = readFileSync(`${root}firmware-bindings/include/meshkit_protocol.h`, 'utf8');
    expect(h).toContain('generated — do not edit');
    expect(h).toMatch(/#ifndef MESHKIT_PROTOCOL_H/);
    expect(h).toContain('MK_MSG_ERROR = 0x7F');
    expect(h).toContain('MK_ERR_CBOR_INVALID = 32,');
    expect(h).toContain('#define MK_MAX_MESSAGE 4096');
    expect(h).toContain('#define MK_F_INFO_CAPABILITIES 4');
  });
});
