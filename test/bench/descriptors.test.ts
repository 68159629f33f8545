/**
 * devices/ descriptors: the shipped ones validate, the validator refuses each kind of bad descriptor, discovery
 * matches VID/PID. (That INFO agrees with the descriptor is checked against the C emulator by test/bench/contract.test.ts.)
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listSerialPorts } from '../../src/device/transport/serial.js';
import {
  descriptorTimeouts,
  capabilityMask, DescriptorError, DEVICES_DIR, findDescriptor, loadDescriptors, matchUsb, validateDescriptor,
} from '../../src/device/descriptors.js';

const shipped = JSON.parse(readFileSync(join(DEVICES_DIR, 'esp32-s3-usb-serial', 'descriptor.json'), 'utf8')) as Record<string, unknown>;
const hid = JSON.parse(readFileSync(join(DEVICES_DIR, 'hid-token', 'descriptor.json'), 'utf8')) as Record<string, unknown>;
const scratch = mkdtempSync(join(tmpdir(), 'meshkit-desc-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('device descriptors', () => {
  it('the shipped descriptors validate: emulator, ESP32-S3 USB-serial, HID token', async () => {
    const all = await loadDescriptors();
    expect(all.map((d) => d.id)).toEqual(['emulator', 'esp32-s3-usb-serial', 'hid-token']);
    const esp = findDescriptor(all, 'esp32-s3-usb-serial');
    expect(esp).toMatchObject({ transport: 'serial', baud: 115200, cogen: true, timeouts: { KEYGEN: 5000, COGEN: 5000 } });
    expect(findDescriptor(all, 'emulator')?.timeouts).toEqual({});
    // what bench run passes to enrollment: the longest per request among the descriptors in play
    expect(descriptorTimeouts(all)).toEqual({ KEYGEN: 5000, COGEN: 5000 });
    expect(descriptorTimeouts(all.filter((d) => d.id === 'emulator'))).toEqual({});
    expect(descriptorTimeouts([{ ...esp!, timeouts: { KEYGEN: 9000 } }, esp!])).toEqual({ KEYGEN: 9000, COGEN: 5000 });
    expect(findDescriptor(all, 'hid-token')).toMatchObject({ transport: 'hid', reportSize: 64, usb: [{ vid: '1209', pid: '0001', usagePage: 'ff00' }] });
    expect(findDescriptor(all, 'esp32s3-devkit')?.id).toBe('esp32-s3-usb-serial'); // by INFO model
    expect(findDescriptor(all, 'no-such-model')).toBeUndefined();
  });

  it('discovery matches VID/PID case-insensitively, with or without 0x', async () => {
    const all = await loadDescriptors();
    expect(matchUsb(all, '0x303A', '1001').map((d) => d.id)).toEqual(['esp32-s3-usb-serial']);
    expect(matchUsb(all, '10c4', 'EA60').map((d) => d.id)).toEqual(['esp32-s3-usb-serial']);
    expect(matchUsb(all, '1209', '0001').map((d) => d.id)).toEqual(['emulator', 'hid-token']); // one composite gadget: the transport picks
    expect(matchUsb(all, 'dead', 'beef')).toEqual([]);
  });

  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a serial descriptor without a baud rate', { ...shipped, baud: undefined }, /"baud"/],
    ['a HID descriptor with a 32-byte report', { ...hid, reportSize: 32 }, /"reportSize"/],
    ['a capability table that contradicts cogen', { ...shipped, capabilities: { ...(shipped['capabilities'] as object), COGEN: false } }, /COGEN/],
    ['a capability table that contradicts the transport', { ...shipped, capabilities: { ...(shipped['capabilities'] as object), SERIAL: false } }, /SERIAL/],
    ['a capability missing from the table', { ...shipped, capabilities: { ED25519: true } }, /capabilities\.ED448/],
    ['an unknown capability', { ...shipped, capabilities: { ...(shipped['capabilities'] as object), RSA: true } }, /unknown capability "RSA"/],
    ['an unknown member', { ...shipped, colour: 'blue' }, /unknown member "colour"/],
    ['a VID that is not 4 hex digits', { ...shipped, usb: [{ vid: '303a0', pid: '1001' }] }, /vid\/pid/],
    ['an unknown key algorithm', { ...shipped, keys: { signature: ['RSA'], encryption: ['X25519'], authentication: ['X25519'] } }, /keys\.signature\[0\]/],
    ['no models', { ...shipped, models: [] }, /"models"/],
    ['a config limit above MAX_CONFIG', { ...shipped, maxConfig: 4096 }, /"maxConfig"/],
    ['another version', { ...shipped, version: 2 }, /"version"/],
    ['a timeout for a message that is not a request', { ...shipped, timeouts: { PUBKEYS: 100 } }, /"timeouts\.PUBKEYS": not a request/],
    ['a zero timeout', { ...shipped, timeouts: { KEYGEN: 0 } }, /timeouts\.KEYGEN/],
    ['a usage page on a serial descriptor', { ...shipped, usb: [{ vid: '303a', pid: '1001', usagePage: 'ff00' }] }, /usagePage" is for HID/],
    ['a usage page that is not 4 hex digits', { ...hid, usb: [{ vid: '1209', pid: '0001', usagePage: 'FF00' }] }, /usagePage" expected 4 lowercase/],
    ['an unknown member of a USB entry', { ...hid, usb: [{ vid: '1209', pid: '0001', serial: 'x' }] }, /unknown member "usb\[0\]\.serial"/],
  ];
  for (const [what, value, message] of bad) {
    it(`refuses ${what}`, () => {
      const json = JSON.parse(JSON.stringify(value)) as unknown; // drops undefined members
      expect(() => validateDescriptor(json, 'test.json')).toThrow(DescriptorError);
      expect(() => validateDescriptor(json, 'test.json')).toThrow(message);
    });
  }

  it('loadDescriptors refuses a folder whose name is not the id, and a file that is not strict JSON', async () => {
    const dir = join(scratch, 'devices-a');
    mkdirSync(join(dir, 'renamed'), { recursive: true });
    writeFileSync(join(dir, 'renamed', 'descriptor.json'), JSON.stringify(shipped));
    await expect(loadDescriptors(dir)).rejects.toThrow(/folder is "renamed"/);
    const dir2 = join(scratch, 'devices-b');
    mkdirSync(join(dir2, 'esp32-s3-usb-serial'), { recursive: true });
    writeFileSync(join(dir2, 'esp32-s3-usb-serial', 'descriptor.json'), '{"version":1,"version":1}');
    await expect(loadDescriptors(dir2)).rejects.toThrow(DescriptorError);
  });

  it('capability masks follow the protocol bits', async () => {
    const all = await loadDescriptors();
    // ED25519 1 | X25519 4 | COGEN 16 | SERIAL 32 ; HID 64
    expect(capabilityMask(findDescriptor(all, 'emulator')!)).toBe(1 | 4 | 16 | 32);
    expect(capabilityMask(findDescriptor(all, 'hid-token')!)).toBe(1 | 4 | 16 | 64);
  });

  it('listSerialPorts (discovery) lists the system\'s ports: a path each, VID/PID as 4 lowercase hex digits when present', async () => {
    const ports = await listSerialPorts();
    expect(Array.isArray(ports)).toBe(true);
    for (const p of ports) {
      expect(p.path.startsWith('/')).toBe(true);
      if (p.vendorId !== undefined) expect(p.vendorId).toMatch(/^[0-9a-f]{4}$/);
      if (p.productId !== undefined) expect(p.productId).toMatch(/^[0-9a-f]{4}$/);
    }
    expect([...ports].map((p) => p.path)).toEqual([...ports].map((p) => p.path).sort((a, b) => a.localeCompare(b)));
  });
});
