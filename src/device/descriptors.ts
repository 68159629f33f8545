/**
 * Device descriptors (`devices/<id>/descriptor.json`): what the bench knows about a device model, as data — the
 * transport (serial with its baud rate, or HID with its report size), the USB VID/PID pairs that identify it, the
 * key algorithms and co-generation it supports, the admin signature algorithms it verifies, transport quirks, and a
 * capability table that must agree with the capability bits the device reports in INFO (docs/protocol.md).
 *
 * Code asks the descriptor, never the model name: `meshkit bench run --discover` matches VID/PID here,
 * `meshkit device emulate --model ID` takes its defaults from here, and the bench checks INFO.model against
 * `models`. {@link validateDescriptor} is the schema (docs/bench.md "Descriptors" describes every member).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aobject, astring, describe } from '../core/bytes.js';
import { ErrorCode, MeshkitError } from '../core/errors.js';
import { parseJsonStrict } from '../core/jose.js';
import { Capability, Limits } from './protocol.generated.js';
import { ENROLL_REQUESTS, type EnrollRequest } from './enroll.js';

/** The devices/ folder shipped with the package (next to dist/ and src/). */
export const DEVICES_DIR = fileURLToPath(new URL('../../devices/', import.meta.url));

/** The descriptor format version this code reads. */
export const DESCRIPTOR_VERSION = 1;

/** Capability names, as in protocol.json `capabilities[]`. */
export type CapabilityName = keyof typeof Capability;

/** One USB vendor/product pair, 4 lowercase hex digits each. */
export interface UsbId {
  readonly vid: string;
  readonly pid: string;
  /** HID: the vendor usage page of the meshkit interface (4 lowercase hex digits, e.g. ff00). */
  readonly usagePage?: string;
  readonly note?: string;
}

/** Transport quirks the host must work around. */
export interface DescriptorQuirks {
  /** Setting DTR/RTS (or sending a break) fails — ptys, some CDC-ACM devices: never touch the modem lines. */
  readonly noBreak: boolean;
  /** Opening the port with DTR asserted resets the MCU (ESP32 auto-reset circuit): keep DTR/RTS low. */
  readonly resetOnDtr: boolean;
  /** The baud rate is ignored (USB CDC-ACM, pty): the link runs at USB speed. */
  readonly ignoresBaud: boolean;
  /** Free-text notes for the operator. */
  readonly notes: readonly string[];
}

/** A validated device descriptor. */
export interface DeviceDescriptor {
  readonly version: 1;
  /** The folder name under devices/ (also what `--model` takes). */
  readonly id: string;
  /** Human name. */
  readonly name: string;
  /** INFO.model strings this descriptor covers (the bench refuses other models). */
  readonly models: readonly string[];
  readonly transport: 'serial' | 'hid';
  /** Serial: the line rate (8N1). */
  readonly baud?: number;
  /** Serial: the largest COBS-encoded frame (MAX_ENCODED_FRAME). */
  readonly maxFrame?: number;
  /** HID: the report size in bytes (HID_REPORT_SIZE). */
  readonly reportSize?: number;
  /** USB identities for discovery (may be empty: a pty has none). */
  readonly usb: readonly UsbId[];
  /** Key algorithms generated on the device. */
  readonly keys: { readonly signature: readonly string[]; readonly encryption: readonly string[]; readonly authentication: readonly string[] };
  /** Whether the device does key co-generation (COGEN). */
  readonly cogen: boolean;
  /** Algorithms of the admin signature on the connection the device verifies (INSTALL). */
  readonly adminSignatures: readonly string[];
  /** Algorithms of the bench key the device pins (BENCH_AUTH). */
  readonly benchSignatures: readonly string[];
  /** Largest configuration plaintext it stores. */
  readonly maxConfig: number;
  readonly quirks: DescriptorQuirks;
  /** The capability table: one entry per protocol capability bit. */
  readonly capabilities: Readonly<Record<CapabilityName, boolean>>;
  /** Reply timeouts per request in ms where the device needs longer than the session default (slow key generation). */
  readonly timeouts: Readonly<Partial<Record<EnrollRequest, number>>>;
}

/** A descriptor file that does not hold. Code `ERR_JSON_INVALID`. */
export class DescriptorError extends MeshkitError {
  /** The file (or source name) that was checked. */
  readonly source: string;
  constructor(source: string, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.JSON_INVALID, `device descriptor ${source}: ${message}`, options);
    this.source = source;
  }
}

const ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const HEX4 = /^[0-9a-f]{4}$/;
const SIGNATURE_ALGS = ['Ed25519', 'Ed448'];
const AGREEMENT_ALGS = ['X25519', 'X448'];
const TOP = ['version', 'id', 'name', 'models', 'transport', 'baud', 'maxFrame', 'reportSize', 'usb', 'keys', 'cogen',
  'adminSignatures', 'benchSignatures', 'maxConfig', 'quirks', 'capabilities', '$comment', 'timeouts'];

function fail(source: string, message: string): never {
  throw new DescriptorError(source, message);
}

function str(source: string, v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0) fail(source, `"${field}" expected a non-empty string, got ${describe(v)}`);
  return v;
}

function strList(source: string, v: unknown, field: string, allowed?: readonly string[], min = 1): string[] {
  if (!Array.isArray(v) || v.length < min) fail(source, `"${field}" expected an array of at least ${min} string(s)`);
  return v.map((x, i) => {
    const s = str(source, x, `${field}[${i}]`);
    if (allowed !== undefined && !allowed.includes(s)) fail(source, `"${field}[${i}]" is ${JSON.stringify(s)}, expected one of ${allowed.join(', ')}`);
    return s;
  });
}

function int(source: string, v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    fail(source, `"${field}" expected an integer ${min}–${max}, got ${describe(v)}`);
  }
  return v;
}

function bool(source: string, v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') fail(source, `"${field}" expected true or false, got ${describe(v)}`);
  return v;
}

function obj(source: string, v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(source, `"${field}" expected an object, got ${describe(v)}`);
  return v as Record<string, unknown>;
}

/**
 * Checks a parsed descriptor against the schema and its own consistency: the capability table must name every
 * protocol capability exactly once and agree with `keys`, `cogen` and `transport`; serial descriptors need a baud
 * rate, HID descriptors the 64-byte report size.
 * @param value the parsed JSON
 * @param source the file name, for messages
 * @returns the descriptor, typed
 * @throws TypeError when source is not a string
 * @throws DescriptorError (`ERR_JSON_INVALID`) naming the member that does not hold
 */
export function validateDescriptor(value: unknown, source: string): DeviceDescriptor {
  astring(source, 'source');
  const d = obj(source, value, '(descriptor)');
  for (const k of Object.keys(d)) if (!TOP.includes(k)) fail(source, `unknown member "${k}"`);
  if (d['version'] !== DESCRIPTOR_VERSION) fail(source, `"version" expected ${DESCRIPTOR_VERSION}, got ${describe(d['version'])}`);
  const id = str(source, d['id'], 'id');
  if (!ID.test(id)) fail(source, `"id" ${JSON.stringify(id)} is not a folder name (a-z, 0-9, . _ -)`);
  const name = str(source, d['name'], 'name');
  const models = strList(source, d['models'], 'models');
  const transport = d['transport'];
  if (transport !== 'serial' && transport !== 'hid') fail(source, `"transport" expected "serial" or "hid", got ${describe(transport)}`);
  let baud: number | undefined;
  let maxFrame: number | undefined;
  let reportSize: number | undefined;
  if (transport === 'serial') {
    baud = int(source, d['baud'], 'baud', 300, 16_000_000);
    maxFrame = int(source, d['maxFrame'] ?? Limits.MAX_ENCODED_FRAME, 'maxFrame', 16, Limits.MAX_ENCODED_FRAME);
    if (d['reportSize'] !== undefined) fail(source, '"reportSize" is for HID descriptors');
  } else {
    reportSize = int(source, d['reportSize'], 'reportSize', Limits.HID_REPORT_SIZE, Limits.HID_REPORT_SIZE);
    if (d['baud'] !== undefined || d['maxFrame'] !== undefined) fail(source, '"baud" and "maxFrame" are for serial descriptors');
  }
  if (!Array.isArray(d['usb'])) fail(source, '"usb" expected an array of {vid, pid}');
  const usb = (d['usb'] as unknown[]).map((u, i): UsbId => {
    const o = obj(source, u, `usb[${i}]`);
    const vid = str(source, o['vid'], `usb[${i}].vid`);
    const pid = str(source, o['pid'], `usb[${i}].pid`);
    if (!HEX4.test(vid) || !HEX4.test(pid)) fail(source, `"usb[${i}]" vid/pid expected 4 lowercase hex digits, got ${vid}:${pid}`);
    for (const key of Object.keys(o)) if (!['vid', 'pid', 'usagePage', 'note'].includes(key)) fail(source, `unknown member "usb[${i}].${key}"`);
    const note = o['note'] === undefined ? undefined : str(source, o['note'], `usb[${i}].note`);
    let usagePage: string | undefined;
    if (o['usagePage'] !== undefined) {
      if (transport !== 'hid') fail(source, `"usb[${i}].usagePage" is for HID descriptors`);
      usagePage = str(source, o['usagePage'], `usb[${i}].usagePage`);
      if (!HEX4.test(usagePage)) fail(source, `"usb[${i}].usagePage" expected 4 lowercase hex digits, got ${usagePage}`);
    }
    return { vid, pid, ...(usagePage === undefined ? {} : { usagePage }), ...(note === undefined ? {} : { note }) };
  });
  if (transport === 'hid' && usb.length === 0) fail(source, '"usb" must name at least one VID/PID for a HID device');
  const k = obj(source, d['keys'], 'keys');
  const keys = {
    signature: strList(source, k['signature'], 'keys.signature', SIGNATURE_ALGS),
    encryption: strList(source, k['encryption'], 'keys.encryption', AGREEMENT_ALGS),
    authentication: strList(source, k['authentication'], 'keys.authentication', AGREEMENT_ALGS),
  };
  const cogen = bool(source, d['cogen'], 'cogen');
  const adminSignatures = strList(source, d['adminSignatures'], 'adminSignatures', SIGNATURE_ALGS);
  const benchSignatures = strList(source, d['benchSignatures'], 'benchSignatures', SIGNATURE_ALGS);
  const maxConfig = int(source, d['maxConfig'], 'maxConfig', 0, Limits.MAX_CONFIG);
  const q = obj(source, d['quirks'], 'quirks');
  for (const key of Object.keys(q)) if (!['noBreak', 'resetOnDtr', 'ignoresBaud', 'notes'].includes(key)) fail(source, `unknown member "quirks.${key}"`);
  const quirks: DescriptorQuirks = {
    noBreak: bool(source, q['noBreak'], 'quirks.noBreak'),
    resetOnDtr: bool(source, q['resetOnDtr'], 'quirks.resetOnDtr'),
    ignoresBaud: bool(source, q['ignoresBaud'], 'quirks.ignoresBaud'),
    notes: q['notes'] === undefined ? [] : strList(source, q['notes'], 'quirks.notes', undefined, 0),
  };
  const c = obj(source, d['capabilities'], 'capabilities');
  const names = Object.keys(Capability) as CapabilityName[];
  for (const key of Object.keys(c)) if (!(names as string[]).includes(key)) fail(source, `unknown capability "${key}" (known: ${names.join(', ')})`);
  const capabilities = {} as Record<CapabilityName, boolean>;
  for (const n of names) capabilities[n] = bool(source, c[n], `capabilities.${n}`);
  const expect = (cap: CapabilityName, want: boolean, why: string): void => {
    if (capabilities[cap] !== want) fail(source, `capability table says ${cap} ${capabilities[cap]}, but ${why}`);
  };
  expect('ED25519', keys.signature.includes('Ed25519'), `keys.signature is ${keys.signature.join(', ')}`);
  expect('ED448', keys.signature.includes('Ed448'), `keys.signature is ${keys.signature.join(', ')}`);
  const agreement = [...keys.encryption, ...keys.authentication];
  expect('X25519', agreement.includes('X25519'), `keys.encryption/authentication are ${agreement.join(', ')}`);
  expect('X448', agreement.includes('X448'), `keys.encryption/authentication are ${agreement.join(', ')}`);
  expect('COGEN', cogen, `cogen is ${cogen}`);
  expect(transport === 'serial' ? 'SERIAL' : 'HID', true, `transport is ${transport}`);
  const timeouts: Partial<Record<EnrollRequest, number>> = {};
  if (d['timeouts'] !== undefined) {
    const t = obj(source, d['timeouts'], 'timeouts');
    for (const [request, ms] of Object.entries(t)) {
      if (!(ENROLL_REQUESTS as readonly string[]).includes(request)) fail(source, `"timeouts.${request}": not a request (${ENROLL_REQUESTS.join(', ')})`);
      timeouts[request as EnrollRequest] = int(source, ms, `timeouts.${request}`, 1, 600_000);
    }
  }
  return {
    version: 1, id, name, models, transport,
    ...(baud === undefined ? {} : { baud }),
    ...(maxFrame === undefined ? {} : { maxFrame }),
    ...(reportSize === undefined ? {} : { reportSize }),
    usb, keys, cogen, adminSignatures, benchSignatures, maxConfig, quirks, capabilities, timeouts,
  };
}

/**
 * The reply timeouts a bench needs for devices of these descriptors: per request, the longest any of them asks for.
 * @throws TypeError when descriptors is not an array
 */
export function descriptorTimeouts(descriptors: readonly DeviceDescriptor[]): Partial<Record<EnrollRequest, number>> {
  if (!Array.isArray(descriptors)) throw new TypeError('"descriptors" expected an array');
  const out: Partial<Record<EnrollRequest, number>> = {};
  for (const d of descriptors) {
    for (const [request, ms] of Object.entries(d.timeouts) as Array<[EnrollRequest, number]>) out[request] = Math.max(out[request] ?? 0, ms);
  }
  return out;
}

/**
 * The INFO.capabilities bitmask a device matching this descriptor reports.
 * @throws TypeError when descriptor is not an object
 */
export function capabilityMask(descriptor: DeviceDescriptor): number {
  aobject(descriptor, 'descriptor');
  let mask = 0;
  for (const [name, bit] of Object.entries(Capability)) if (descriptor.capabilities[name as CapabilityName]) mask |= bit;
  return mask;
}

/**
 * Loads every `devices/<id>/descriptor.json` and validates it; the folder name must equal `id`.
 * @param dir the devices folder (default: the one shipped with the package)
 * @returns the descriptors, sorted by id
 * @throws TypeError when dir is not a string
 * @throws MeshkitError `ERR_IO` when the folder cannot be read; DescriptorError for a bad descriptor
 */
export async function loadDescriptors(dir: string = DEVICES_DIR): Promise<DeviceDescriptor[]> {
  astring(dir, 'dir');
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new MeshkitError(ErrorCode.IO, `cannot read the devices folder ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  const out: DeviceDescriptor[] = [];
  for (const entry of entries.filter((e) => e.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const file = join(dir, entry.name, 'descriptor.json');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new MeshkitError(ErrorCode.IO, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
    let json: unknown;
    try {
      json = parseJsonStrict(text);
    } catch (e) {
      throw new DescriptorError(file, `not strict JSON: ${(e as Error).message}`, { cause: e });
    }
    const d = validateDescriptor(json, file);
    if (d.id !== entry.name) throw new DescriptorError(file, `"id" is ${JSON.stringify(d.id)} but the folder is ${JSON.stringify(entry.name)}`);
    out.push(d);
  }
  return out;
}

/**
 * Finds a descriptor by its id (folder name) or by one of its INFO model names.
 * @returns the descriptor, or undefined
 * @throws TypeError for a non-string name or a non-array list
 */
export function findDescriptor(descriptors: readonly DeviceDescriptor[], name: string): DeviceDescriptor | undefined {
  if (!Array.isArray(descriptors)) throw new TypeError(`"descriptors" expected an array, got ${describe(descriptors)}`);
  astring(name, 'name');
  return descriptors.find((d) => d.id === name) ?? descriptors.find((d) => d.models.includes(name));
}

/**
 * The descriptors whose USB VID/PID list contains this pair (case-insensitive hex, with or without 0x).
 * @throws TypeError for non-string ids
 */
export function matchUsb(descriptors: readonly DeviceDescriptor[], vid: string, pid: string): DeviceDescriptor[] {
  astring(vid, 'vid');
  astring(pid, 'pid');
  const norm = (s: string): string => s.toLowerCase().replace(/^0x/, '').padStart(4, '0');
  const v = norm(vid);
  const p = norm(pid);
  return descriptors.filter((d) => d.usb.some((u) => u.vid === v && u.pid === p));
}
