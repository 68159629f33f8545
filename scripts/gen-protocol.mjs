#!/usr/bin/env node
/**
 * Generates the device protocol's derived files from its one definition,
 * firmware-bindings/protocol/protocol.json:
 *   - firmware-bindings/include/meshkit_protocol.h  (C99 / C++ header: #defines and enums)
 *   - src/device/protocol.generated.ts              (const objects and union types)
 *   - docs/protocol.md                              (the page a firmware engineer implements from)
 *
 * Usage: node scripts/gen-protocol.mjs           write the files
 *        node scripts/gen-protocol.mjs --check   exit 1 naming each stale file, write nothing
 * Plain Node ESM, no dependencies.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import process from 'node:process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = 'firmware-bindings/protocol/protocol.json';
const OUT_H = 'firmware-bindings/include/meshkit_protocol.h';
const OUT_TS = 'src/device/protocol.generated.ts';
const OUT_MD = 'docs/protocol.md';
const BANNER = `generated — do not edit; source ${SOURCE}, regenerate with npm run protocol:gen`;

const hex2 = (n) => '0x' + n.toString(16).toUpperCase().padStart(2, '0');
const pascal = (s) => s.toLowerCase().replace(/(^|_)([a-z])/g, (_m, _u, c) => c.toUpperCase());
const camel = (s) => s.replace(/_([a-z])/g, (_m, c) => c.toUpperCase());
const TS_TYPE = { uint: 'number | bigint', bstr: 'Uint8Array', tstr: 'string', bool: 'boolean', array: 'unknown[]', map: 'Map<number, unknown>' };

/** Fails loudly on a definition that would generate nonsense. */
function validate(p) {
  const fail = (m) => { throw new Error(`${SOURCE}: ${m}`); };
  if (p.version !== 1) fail('version must be 1');
  const uniq = (list, what, key) => {
    const seen = new Set();
    for (const x of list) {
      if (!/^[A-Z][A-Z0-9_]*$/.test(x.name)) fail(`${what} name ${x.name} must be UPPER_SNAKE`);
      if (seen.has(x[key])) fail(`duplicate ${what} ${key} ${x[key]}`);
      seen.add(x[key]);
    }
  };
  uniq(p.constants, 'constant', 'name');
  uniq(p.states, 'state', 'value');
  uniq(p.errors, 'error', 'value');
  uniq(p.capabilities, 'capability', 'bit');
  uniq(p.keys, 'key', 'bit');
  uniq(p.messages, 'message', 'code');
  for (const e of p.errors) {
    const band = p.bands.find((b) => b.name === e.band);
    if (e.band === 'ok' ? e.value !== 0 : !band || e.value < band.min || e.value > band.max) fail(`error ${e.name} outside band ${e.band}`);
  }
  for (const m of p.messages) {
    if (m.code < 1 || m.code > 0x7f) fail(`message ${m.name} code must be 1..127`);
    if (m.reply !== undefined && !p.messages.some((r) => r.name === m.reply)) fail(`message ${m.name} reply ${m.reply} unknown`);
    if (m.direction === 'host') {
      if (typeof m.auth !== 'boolean') fail(`host message ${m.name} needs "auth": true|false`);
      if (!Array.isArray(m.states) || m.states.length === 0) fail(`host message ${m.name} needs "states"`);
      for (const st of m.states) {
        if (!p.states.some((x) => x.name === st) || st === 'AUTHENTICATED') fail(`message ${m.name} state ${st} is not a persistent state`);
      }
      if (typeof m.effect !== 'string') fail(`host message ${m.name} needs "effect"`);
    } else if (m.auth !== undefined || m.states !== undefined) fail(`device message ${m.name} takes no "auth"/"states"`);
    const keys = new Set();
    for (const f of m.fields) {
      if (!Number.isInteger(f.key) || f.key < 0 || f.key > 23 || keys.has(f.key)) fail(`message ${m.name} field key ${f.key}`);
      keys.add(f.key);
      if (!/^[a-z][a-z0-9_]*$/.test(f.name)) fail(`message ${m.name} field name ${f.name}`);
      if (!(f.type in TS_TYPE)) fail(`message ${m.name} field ${f.name} type ${f.type}`);
      if (typeof f.required !== 'boolean') fail(`message ${m.name} field ${f.name} required must be boolean`);
    }
  }
}

function genHeader(p) {
  const L = [];
  L.push(`/* ${BANNER} */`);
  L.push('/* The meshkit device protocol: constants, message types, field keys, states, status codes.');
  L.push(' * C99 and C++ compatible; no functions. Status codes are positive on the wire; C functions may');
  L.push(' * return them negated. Framing and encoding rules: docs/protocol.md. */');
  L.push('#ifndef MESHKIT_PROTOCOL_H', '#define MESHKIT_PROTOCOL_H', '');
  L.push(`#define MK_PROTOCOL_DEFINITION_VERSION ${p.version}`);
  for (const c of p.constants) L.push(`#define MK_${c.name} ${c.value} /* ${c.doc} */`);
  L.push('', '/* message types (frame type byte; HID CMD = 0x80 | type) */', 'typedef enum mk_msg_type {');
  p.messages.forEach((m, i) => L.push(`  MK_MSG_${m.name} = ${hex2(m.code)}${i < p.messages.length - 1 ? ',' : ''} /* ${m.doc} */`));
  L.push('} mk_msg_type;', '', '/* device states */', 'typedef enum mk_state {');
  p.states.forEach((s, i) => L.push(`  MK_STATE_${s.name} = ${s.value}${i < p.states.length - 1 ? ',' : ''} /* ${s.doc} */`));
  L.push('} mk_state;', '', '/* status codes (ERROR.code), in bands */', 'typedef enum mk_status {');
  p.errors.forEach((e, i) => L.push(`  MK_${e.name === 'OK' ? 'OK' : 'ERR_' + e.name} = ${e.value}${i < p.errors.length - 1 ? ',' : ''} /* ${e.band}: ${e.doc} */`));
  L.push('} mk_status;', '');
  for (const b of p.bands) L.push(`#define MK_BAND_${b.name.toUpperCase()}_MIN ${b.min}`, `#define MK_BAND_${b.name.toUpperCase()}_MAX ${b.max}`);
  L.push('', '/* INFO.capabilities bits */');
  for (const c of p.capabilities) L.push(`#define MK_CAP_${c.name} (1u << ${c.bit}) /* ${c.doc} */`);
  L.push('', '/* KEYGEN.keys bits */');
  for (const k of p.keys) L.push(`#define MK_KEY_${k.name} (1u << ${k.bit}) /* ${k.doc} */`);
  L.push('', '/* requests: the persistent states that accept them (bitmask of 1u << state; any other state -> BAD_STATE)',
    ' * and whether BENCH_AUTH must have succeeded in the session first (else NOT_AUTHENTICATED) */');
  for (const m of p.messages.filter((x) => x.direction === 'host')) {
    const mask = m.states.map((st) => `(1u << MK_STATE_${st})`).join(' | ');
    L.push(`#define MK_ALLOWED_${m.name} (${mask}) /* ${m.effect} */`, `#define MK_AUTH_${m.name} ${m.auth ? 1 : 0}`);
  }
  L.push('', '/* CBOR map keys of each message: MK_F_<MESSAGE>_<FIELD> */');
  for (const m of p.messages) {
    for (const f of m.fields) L.push(`#define MK_F_${m.name}_${f.name.toUpperCase()} ${f.key} /* ${f.type}${f.required ? '' : ', optional'} */`);
  }
  L.push('', '#endif /* MESHKIT_PROTOCOL_H */', '');
  return L.join('\n');
}

function genTs(p) {
  const L = [];
  L.push(`/* ${BANNER} */`);
  L.push('/**', ' * The meshkit device protocol as constants: limits, message types, field keys, device states,', ' * capability and key bits, status codes. Framing and encoding: docs/protocol.md.', ' */', '');
  L.push(`/** Version of protocol.json (also the frame version byte). */`);
  L.push(`export const PROTOCOL_DEFINITION_VERSION = ${p.version};`, '');
  L.push('/** Protocol limits and sizes. */', 'export const Limits = {');
  for (const c of p.constants) L.push(`  /** ${c.doc} */`, `  ${c.name}: ${c.value},`);
  L.push('} as const;', '');
  L.push('/** Message type codes (frame type byte; HID CMD = 0x80 | type). */', 'export const MessageType = {');
  for (const m of p.messages) L.push(`  /** ${m.doc} */`, `  ${m.name}: ${hex2(m.code)},`);
  L.push('} as const;', 'export type MessageTypeName = keyof typeof MessageType;', 'export type MessageTypeCode = (typeof MessageType)[MessageTypeName];', '');
  L.push('/** Message name by type code. */', 'export const MessageTypeNames: Readonly<Record<MessageTypeCode, MessageTypeName>> = {');
  for (const m of p.messages) L.push(`  ${hex2(m.code)}: '${m.name}',`);
  L.push('};', '');
  L.push('/** The reply each request expects (ERROR may answer any of them). */', 'export const Replies = {');
  for (const m of p.messages.filter((x) => x.reply)) L.push(`  ${m.name}: '${m.reply}',`);
  L.push('} as const satisfies Partial<Record<MessageTypeName, MessageTypeName>>;', '');
  L.push('/** Device states (INFO.state). */', 'export const DeviceState = {');
  for (const s of p.states) L.push(`  /** ${s.doc} */`, `  ${s.name}: ${s.value},`);
  L.push('} as const;', 'export type DeviceStateName = keyof typeof DeviceState;', 'export type DeviceStateValue = (typeof DeviceState)[DeviceStateName];', '');
  L.push('/** For each request: the persistent states that accept it (any other → BAD_STATE), whether BENCH_AUTH must come first', ' * (else NOT_AUTHENTICATED), and what it does (docs/enrollment.md). */', 'export const RequestRules = {');
  for (const m of p.messages.filter((x) => x.direction === 'host')) {
    L.push(`  ${m.name}: { auth: ${m.auth}, states: [${m.states.map((st) => `'${st}'`).join(', ')}], effect: ${JSON.stringify(m.effect)} },`);
  }
  L.push('} as const satisfies Partial<Record<MessageTypeName, { auth: boolean; states: readonly DeviceStateName[]; effect: string }>>;', '');
  L.push('/** Status codes shared with the C firmware (ERROR.code, DeviceError.status), in numeric bands. */', 'export const DeviceStatus = {');
  for (const e of p.errors) L.push(`  /** ${e.band}: ${e.doc} */`, `  ${e.name}: ${e.value},`);
  L.push('} as const;', 'export type DeviceStatusName = keyof typeof DeviceStatus;', 'export type DeviceStatusValue = (typeof DeviceStatus)[DeviceStatusName];', '');
  L.push('/** Status name by value. */', 'export const DeviceStatusNames: Readonly<Record<DeviceStatusValue, DeviceStatusName>> = {');
  for (const e of p.errors) L.push(`  ${e.value}: '${e.name}',`);
  L.push('};', '');
  L.push('/** Status code bands (inclusive). */', 'export const StatusBands = {');
  for (const b of p.bands) L.push(`  ${b.name}: { min: ${b.min}, max: ${b.max} },`);
  L.push('} as const;', '');
  L.push('/** INFO.capabilities bit values. */', 'export const Capability = {');
  for (const c of p.capabilities) L.push(`  /** ${c.doc} */`, `  ${c.name}: ${1 << c.bit},`);
  L.push('} as const;', '');
  L.push('/** KEYGEN.keys bit values. */', 'export const KeySelect = {');
  for (const k of p.keys) L.push(`  /** ${k.doc} */`, `  ${k.name}: ${1 << k.bit},`);
  L.push('} as const;', '');
  L.push("/** CBOR types a message field may have. */", `export type FieldType = ${Object.keys(TS_TYPE).map((t) => `'${t}'`).join(' | ')};`, '');
  L.push('/** One field of a message: its CBOR map key, name, type and whether it is required. */');
  L.push('export interface FieldSpec {', '  readonly key: number;', '  readonly name: string;', '  readonly type: FieldType;', '  readonly required: boolean;', '}', '');
  L.push('/** The CBOR map fields of every message. */', 'export const MessageFields = {');
  for (const m of p.messages) {
    L.push(`  ${m.name}: [`);
    for (const f of m.fields) L.push(`    { key: ${f.key}, name: '${f.name}', type: '${f.type}', required: ${f.required} },`);
    L.push('  ],');
  }
  L.push('} as const satisfies Record<MessageTypeName, readonly FieldSpec[]>;', '');
  for (const m of p.messages) {
    L.push(`/** ${m.name} (${hex2(m.code)}) fields: ${m.doc}. */`, `export interface ${pascal(m.name)}Fields {`);
    for (const f of m.fields) L.push(`  /** key ${f.key}: ${f.doc} */`, `  ${camel(f.name)}${f.required ? '' : '?'}: ${TS_TYPE[f.type]};`);
    L.push('}', '');
  }
  L.push('/** Fields by message name. */', 'export interface MessageFieldsByName {');
  for (const m of p.messages) L.push(`  ${m.name}: ${pascal(m.name)}Fields;`);
  L.push('}', '');
  return L.join('\n');
}

function genMd(p) {
  const L = [];
  L.push(`<!-- ${BANNER} -->`, '', '# meshkit device protocol, version ' + p.version, '');
  L.push('Everything a firmware engineer needs to talk to the meshkit bench. The machine-readable definition is',
    `\`${SOURCE}\`; it generates \`${OUT_H}\`, \`${OUT_TS}\` and this page. The framing and`,
    'encoding rules are also in [protocol-framing.md](protocol-framing.md); shared test vectors are in',
    '`firmware-bindings/vectors/*.hex`.', '');
  L.push('## Flow', '', 'One exchange in flight per device: the host sends a request, the device answers with its reply or with',
    '`ERROR{code, detail}`. Every request is idempotent: a retry (same seq) gets the same answer, and a step already done',
    'returns the same result rather than doing it again. A session starts with HELLO; BENCH_AUTH must succeed in the',
    'session before KEYGEN, COGEN, INSTALL, COMMIT or RESET (else NOT_AUTHENTICATED).', '');
  L.push('```', 'host                              device', 'HELLO{version}          ───────▶',
    '                        ◀─────── INFO{model, serial, firmware, capabilities, state, challenge}',
    'BENCH_AUTH{challenge, bench_key, signature} ─▶   (device checks the pinned provisioner key)',
    '                        ◀─────── BENCH_AUTH_OK{state}',
    'KEYGEN{keys, time}      ───────▶   keys made on the device, never leave it',
    '                        ◀─────── PUBKEYS{signature_key, encryption_key, authentication_key, device_profile}',
    'COGEN{contribution, time} ─────▶   contribution sealed to the device',
    '                        ◀─────── PROOF{composite keys, proof, device_profile}',
    'INSTALL{connection, config} ───▶   admin-signed connection, encrypted configuration',
    '                        ◀─────── ACK{state}',
    'COMMIT{record_digest}   ───────▶',
    '                        ◀─────── RECEIPT{signature}',
    'RESET{serial}           ───────▶   (restart an interrupted enrollment; never once COMMITTED)',
    '                        ◀─────── ACK{state}', '```', '');
  L.push('## Serial frames', '',
    'A frame is COBS-encoded (Wikipedia reference encoder: no extra 0x01 block after a final full 254-byte block; a',
    'decoder accepts it anyway) and followed by one 0x00. Decoded:', '',
    '| bytes | field |', '|---|---|', '| 1 | version = 1 |', '| 1 | message type |', '| 1 | seq (0–255, echoed by the reply; a retry reuses it) |',
    '| 1 | flags: bit 0 = more fragments follow; bits 1–7 = fragment index (0–7) |',
    `| 2 | payload length L, big-endian, 0 ≤ L ≤ ${p.constants.find((c) => c.name === 'MAX_FRAME_PAYLOAD').value} |`,
    '| L | payload (a fragment of the CBOR message) |',
    '| 4 | CRC-32C (Castagnoli: reflected, polynomial 0x82F63B78, init and final xor 0xFFFFFFFF) of all bytes before it, big-endian |', '',
    'A message of n bytes is sent as max(1, ⌈n/512⌉) frames (at most 8) with the same type and seq, indices 0…k−1, full',
    '512-byte fragments first; the last has flag bit 0 clear. An empty message is one frame with L = 0.', '',
    'The receiver, for each run of bytes up to a 0x00 (empty runs are skipped silently), reports the first failing check',
    'in this order and drops the frame:', '',
    '1. more than 525 (MAX_ENCODED_FRAME) encoded bytes → TOO_LARGE (the rest up to the next 0x00 is discarded, never buffered);',
    '2. malformed COBS (a code byte pointing past the end) → BAD_LENGTH;',
    '3. fewer than 10 decoded bytes → BAD_LENGTH;',
    '4. CRC mismatch → BAD_CRC;',
    '5. version ≠ 1 → BAD_VERSION;',
    '6. L > 512 → TOO_LARGE; 10 + L ≠ decoded size → BAD_LENGTH;',
    '7. reassembly: an index other than the expected one (0 when idle; previous + 1 otherwise), or a different type or seq',
    '   mid-message → FRAGMENT_ORDER, and the partial message is dropped (a frame with index 0 then starts a new message);',
    '   a frame with index 7 and the more bit set, or a total over 4096 bytes → TOO_LARGE.', '',
    '## HID reports (64 bytes, CTAPHID style)', '',
    'Init: CID (4, big-endian) | CMD (1) = 0x80 | type | BCNT (2, big-endian, ≤ 4096) | DATA (57).',
    'Continuation: CID (4) | SEQ (1, 0, 1, 2, … ≤ 127, high bit clear) | DATA (59). Unused bytes are zero.', '',
    'The receiver for a channel reports: a report that is not 64 bytes → BAD_LENGTH; another CID → BAD_CHANNEL;',
    'BCNT > 4096 → TOO_LARGE; a continuation when no message is in progress, a SEQ other than the next one, or an init',
    'packet while a message is in progress → FRAGMENT_ORDER (the partial message is dropped; such an init packet starts',
    'a new message). A message is complete when BCNT bytes have arrived.', '',
    '## CBOR subset (RFC 8949)', '',
    'Major types 0 (unsigned, up to 2^64−1), 1 (negative, down to −2^64), 2 (byte string), 3 (UTF-8 text string), 4 (array),',
    '5 (map; keys are unsigned integers in strictly increasing order), 7 (false 0xF4, true 0xF5, null 0xF6 only).',
    'Definite lengths only; nesting of arrays and maps at most 8 (a top-level array is depth 1); every integer and length',
    'in its shortest form. A decoder rejects, with CBOR_NONCANONICAL, non-shortest integers/lengths and unordered or',
    'duplicate map keys; with CBOR_INVALID everything else outside the subset: tags, floats, undefined and other simple',
    'values, indefinite lengths, reserved additional information 28–30, non-unsigned map keys, invalid UTF-8 (overlong,',
    'surrogates, above U+10FFFF, truncated), truncated input, trailing bytes, depth 9.', '',
    'Every message is a CBOR map of the fields below. A missing required field is MISSING_FIELD; a field of the wrong',
    'type, or a message that is not a map, is WRONG_TYPE; unknown keys are ignored.', '');
  L.push('## Messages', '');
  for (const m of p.messages) {
    L.push(`### ${m.name} (${hex2(m.code)}, ${m.direction === 'host' ? 'host → device' : 'device → host'})`, '', m.doc.charAt(0).toUpperCase() + m.doc.slice(1) + '.' + (m.reply ? ` Reply: ${m.reply}.` : ''), '');
    L.push('| key | name | type | required | meaning |', '|---|---|---|---|---|');
    for (const f of m.fields) L.push(`| ${f.key} | ${f.name} | ${f.type} | ${f.required ? 'yes' : 'no'} | ${f.doc} |`);
    L.push('');
  }
  L.push('## Allowed states', '',
    'The device keeps one persistent state (flash) and, per session, whether the bench authenticated. A request in a state',
    'not listed gets BAD_STATE; a request that needs authentication before BENCH_AUTH succeeded in the session gets',
    'NOT_AUTHENTICATED (INFO reports AUTHENTICATED for a FACTORY device whose bench authenticated). Every transition is',
    'written to flash before the reply is sent. Payload formats, the sealed box, the proofs and the record: [enrollment.md](enrollment.md).', '');
  const persistent = p.states.filter((st) => st.name !== 'AUTHENTICATED');
  L.push(`| request | auth | ${persistent.map((st) => st.name).join(' | ')} | effect |`, `|---|---|${persistent.map(() => '---|').join('')}---|`);
  for (const m of p.messages.filter((x) => x.direction === 'host')) {
    L.push(`| ${m.name} | ${m.auth ? 'yes' : 'no'} | ${persistent.map((st) => (m.states.includes(st.name) ? '✓' : 'BAD_STATE')).join(' | ')} | ${m.effect} |`);
  }
  L.push('');
  L.push('## Device states', '', '| value | name | meaning |', '|---|---|---|');
  for (const s of p.states) L.push(`| ${s.value} | ${s.name} | ${s.doc} |`);
  L.push('', '## Status codes', '', 'Bands: ' + p.bands.map((b) => `${b.name} ${b.min}–${b.max}`).join(', ') + '.', '', '| code | name | band | meaning |', '|---|---|---|---|');
  for (const e of p.errors) L.push(`| ${e.value} | ${e.name} | ${e.band} | ${e.doc} |`);
  L.push('', '## Capability bits (INFO.capabilities)', '', '| bit | name | meaning |', '|---|---|---|');
  for (const c of p.capabilities) L.push(`| ${c.bit} | ${c.name} | ${c.doc} |`);
  L.push('', '## Key bits (KEYGEN.keys)', '', '| bit | name | meaning |', '|---|---|---|');
  for (const k of p.keys) L.push(`| ${k.bit} | ${k.name} | ${k.doc} |`);
  L.push('', '## Constants', '', '| name | value | meaning |', '|---|---|---|');
  for (const c of p.constants) L.push(`| ${c.name} | ${c.value} | ${c.doc} |`);
  L.push('');
  return L.join('\n');
}

function main(argv) {
  const check = argv.includes('--check');
  const p = JSON.parse(readFileSync(join(root, SOURCE), 'utf8'));
  validate(p);
  const outputs = [[OUT_H, genHeader(p)], [OUT_TS, genTs(p)], [OUT_MD, genMd(p)]];
  const stale = [];
  for (const [rel, text] of outputs) {
    const file = join(root, rel);
    let current;
    try { current = readFileSync(file, 'utf8'); } catch { current = undefined; }
    if (current === text) continue;
    if (check) { stale.push(rel); continue; }
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
    process.stdout.write(`wrote ${relative(process.cwd(), file)}\n`);
  }
  if (stale.length > 0) {
    process.stderr.write(`stale generated file(s): ${stale.join(', ')} — run npm run protocol:gen\n`);
    process.exitCode = 1;
  }
}

main(process.argv.slice(2));
