/**
 * The device cryptography in C (firmware-bindings/include/mk_crypto.h: src/mk_x25519.c + platform/crypto_sodium.c)
 * against the TypeScript core (src/core/cogen.ts) and node:crypto:
 * (a) firmware-bindings/vectors/crypto.hex, which the C unit tests (`make -C firmware-bindings test-crypto`) read,
 *     is exactly what firmware-bindings/tools/crypto-vectors.mjs generates from the current src/core, and its
 *     boxes and signatures check out in TypeScript too;
 * (b) the C driver build/crypto-cli (tests/crypto_cli.c) makes public keys, sums, signatures, boxes and shared
 *     secrets for fresh random inputs, and each is checked with node:crypto and cogen.ts.
 * Skipped, with the reason printed, only where `make`, `gcc` or libsodium-dev is not installed.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { bigIntToBytesLE, bytesToBigIntLE, concatBytes, fromHex, toHex, utf8 } from '../../src/core/bytes.js';
import * as cogen from '../../src/core/cogen.js';
import { LOW_ORDER_U } from '../../src/core/keys.js';
import { missingCTool } from '../helpers/c-toolchain.js';
import { readVectors } from './hex-vectors.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const fwDir = fileURLToPath(new URL('../../firmware-bindings/', import.meta.url));
const cli = `${fwDir}build/crypto-cli`;
const L = cogen.GROUP_ORDER.Ed25519;
const ED_SPKI = fromHex('302a300506032b6570032100');
const X_SPKI = fromHex('302a300506032b656e032100');
const X_PKCS8 = fromHex('302e020100300506032b656e04220420');

const missing = missingCTool(['make', 'gcc']);
if (missing !== undefined) {
  console.log(`firmware-crypto.test.ts: C driver tests skipped: '${missing}' is not installed (apt-get install build-essential libsodium-dev)`);
}

// ------------------------------------------------------------------------------------------------ helpers

const edKey = (pub: Uint8Array): KeyObject => createPublicKey({ key: Buffer.from(concatBytes(ED_SPKI, pub)), format: 'der', type: 'spki' });
const xKey = (u: Uint8Array): KeyObject => createPublicKey({ key: Buffer.from(concatBytes(X_SPKI, u)), format: 'der', type: 'spki' });
const xU = (key: KeyObject): Uint8Array => new Uint8Array(key.export({ format: 'der', type: 'spki' }).subarray(12));
const sha512 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const randomScalar = (): bigint => bytesToBigIntLE(randomBytes(64)) % (L - 1n) + 1n;
const le = (s: bigint): Uint8Array => bigIntToBytesLE(s, 32);
const hex = (b: Uint8Array): string => (b.length === 0 ? '-' : toHex(b));

/** MKBOX1 key and nonce (docs/enrollment.md). */
function boxKey(label: string, shared: Uint8Array, epk: Uint8Array, recipientU: Uint8Array): { key: Buffer; nonce: Buffer } {
  const okm = sha512(utf8('meshkit-box-v1'), Uint8Array.of(0), utf8(label), Uint8Array.of(0), shared, epk, recipientU);
  return { key: Buffer.from(okm.subarray(0, 32)), nonce: Buffer.from(okm.subarray(32, 44)) };
}

/** Seals with node:crypto (fresh X25519 ephemeral), as the bench does. */
function sealNode(recipientU: Uint8Array, label: string, plaintext: Uint8Array): Uint8Array {
  const eph = generateKeyPairSync('x25519');
  const epk = xU(eph.publicKey);
  const shared = new Uint8Array(diffieHellman({ privateKey: eph.privateKey, publicKey: xKey(recipientU) }));
  const { key, nonce } = boxKey(label, shared, epk, recipientU);
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  cipher.setAAD(Buffer.from(label, 'ascii'), { plaintextLength: plaintext.length });
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return concatBytes(epk, ct, cipher.getAuthTag());
}

/** Opens a box given the shared-secret function of the recipient; undefined if it does not open. */
function openWith(agree: (epk: Uint8Array) => Uint8Array, recipientU: Uint8Array, label: string, box: Uint8Array): Uint8Array | undefined {
  if (box.length < 48) return undefined;
  try {
    const epk = box.subarray(0, 32);
    const { key, nonce } = boxKey(label, agree(epk), epk, recipientU);
    const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    decipher.setAAD(Buffer.from(label, 'ascii'), { plaintextLength: box.length - 48 });
    decipher.setAuthTag(box.subarray(box.length - 16));
    return new Uint8Array(Buffer.concat([decipher.update(box.subarray(32, box.length - 16)), decipher.final()]));
  } catch {
    return undefined;
  }
}

/** Runs build/crypto-cli with one request per line on stdin; returns the answers (hex fields, or undefined for ERR). */
function runCli(requests: string[]): (Uint8Array[] | undefined)[] {
  const result = spawnSync(cli, [], { input: `${requests.join('\n')}\n`, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  if (result.error !== undefined || result.status !== 0) {
    throw new Error(`crypto-cli failed: status=${String(result.status)} ${String(result.error)}\n${result.stderr}`);
  }
  const lines = result.stdout.trimEnd().split('\n');
  expect(lines.length, result.stderr).toBe(requests.length);
  return lines.map((line) => {
    if (line === 'ERR') return undefined;
    const [ok, ...fields] = line.split(' ');
    expect(ok).toBe('OK');
    return fields.map((f) => (f === '-' ? new Uint8Array(0) : fromHex(f)));
  });
}

function field(answer: Uint8Array[] | undefined, i: number, what: string): Uint8Array {
  const value = answer?.[i];
  if (value === undefined) throw new Error(`crypto-cli: no field ${i} for ${what}`);
  return value;
}

// ------------------------------------------------------------------------------------------------ (a) vectors

describe('crypto vectors (firmware-bindings/vectors/crypto.hex)', () => {
  it('the committed file is exactly what tools/crypto-vectors.mjs generates from the current src/core', async () => {
    const genUrl = pathToFileURL(`${fwDir}tools/crypto-vectors.mjs`).href;
    const gen = (await import(genUrl)) as { generateCryptoVectors: (core: unknown) => string };
    const text = gen.generateCryptoVectors({ ...cogen, LOW_ORDER_U });
    const committed = readFileSync(`${fwDir}vectors/crypto.hex`, 'utf8');
    expect(text === committed, 'vectors/crypto.hex is stale: npm run build && node firmware-bindings/tools/crypto-vectors.mjs').toBe(true);
  });

  it('its boxes open (and its bad boxes fail) with ecdhWithScalar + node:crypto, its signatures verify with node:crypto', () => {
    const vectors = readVectors('crypto.hex');
    let opened = 0;
    let refused = 0;
    let verified = 0;
    for (const v of vectors) {
      const op = v.id.split(':')[1]?.split('-')[0];
      if (op === 'open' || op === 'openbad') {
        const s = bytesToBigIntLE(v.input.subarray(0, 32));
        const myU = v.input.subarray(32, 64);
        const labelLen = v.input[64] ?? 0;
        const label = Buffer.from(v.input.subarray(65, 65 + labelLen)).toString('ascii');
        const box = v.input.subarray(65 + labelLen);
        const pt = openWith((epk) => cogen.ecdhWithScalar('X25519', s, epk), myU, label, box);
        if (op === 'open') {
          expect(pt, v.id).toBeDefined();
          expect(toHex(pt ?? new Uint8Array(0)), v.id).toBe(toHex(v.expected?.subarray(2) ?? new Uint8Array(1)));
          opened++;
        } else {
          expect(pt, v.id).toBeUndefined();
          refused++;
        }
      } else if (op === 'verify') {
        const ok = nodeVerify(null, v.input.subarray(96), edKey(v.input.subarray(0, 32)), v.input.subarray(32, 96));
        expect(ok, v.id).toBe(true);
        verified++;
      }
    }
    expect(opened).toBeGreaterThanOrEqual(16);
    expect(refused).toBeGreaterThanOrEqual(15);
    expect(verified).toBeGreaterThanOrEqual(10);
  });
});

// ------------------------------------------------------------------------------------------------ (b) C driver

describe.skipIf(missing !== undefined)('C crypto driver (build/crypto-cli) vs node:crypto and cogen.ts', () => {
  beforeAll(() => {
    const result = spawnSync('make', ['-C', 'firmware-bindings', 'build/crypto-cli'], { cwd: repoRoot, encoding: 'utf8', timeout: 300_000 });
    expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0);
  }, 320_000);

  it('public keys of random raw scalars equal publicKeyFromScalar / montgomeryExtendedFromScalar', () => {
    const scalars = Array.from({ length: 24 }, randomScalar);
    const answers = runCli(scalars.map((s) => `pub ${toHex(le(s))}`));
    scalars.forEach((s, i) => {
      const ed = field(answers[i], 0, 'ed');
      const x = field(answers[i], 1, 'x');
      expect(toHex(ed)).toBe(toHex(cogen.publicKeyFromScalar('Ed25519', s)));
      expect(toHex(x)).toBe(toHex(cogen.montgomeryExtendedFromScalar('X25519', s)));
      expect(toHex(x.subarray(0, 32))).toBe(toHex(cogen.edwardsToMontgomery('Ed25519', ed)));
    });
  });

  it('standard X25519 keys: the u of clamp(k) mod L equals node:crypto, and agreement with a node peer matches', () => {
    const privs = Array.from({ length: 8 }, () => new Uint8Array(randomBytes(32)));
    const peers = privs.map(() => generateKeyPairSync('x25519'));
    const scalars = privs.map((k) => cogen.secretScalarFromSeed('X25519', k) % L);
    const requests = scalars.flatMap((s, i) => [`pub ${toHex(le(s))}`, `agree ${toHex(le(s))} ${toHex(xU(peers[i]?.publicKey as KeyObject))}`]);
    const answers = runCli(requests);
    privs.forEach((k, i) => {
      const nodeU = xU(createPublicKey(createPrivateKey({ key: Buffer.from(concatBytes(X_PKCS8, k)), format: 'der', type: 'pkcs8' })));
      const x = field(answers[2 * i], 1, 'x');
      expect(toHex(x.subarray(0, 32))).toBe(toHex(nodeU));
      const peer = peers[i];
      if (peer === undefined) throw new Error('peer');
      const viaNode = new Uint8Array(diffieHellman({ privateKey: peer.privateKey, publicKey: xKey(x.subarray(0, 32)) }));
      expect(toHex(field(answers[2 * i + 1], 0, 'shared'))).toBe(toHex(viaNode));
    });
  });

  it('scalar sums follow combineScalars, and their public keys are combinePublicKeys of the parts (co-generation)', () => {
    const pairs = Array.from({ length: 8 }, () => [randomScalar(), randomScalar()] as const);
    const requests = pairs.flatMap(([a, b]) => [`add ${toHex(le(a))} ${toHex(le(b))}`, `pub ${toHex(le(a))}`, `pub ${toHex(le(b))}`]);
    const answers = runCli(requests);
    const sums: bigint[] = [];
    pairs.forEach(([a, b], i) => {
      const sum = field(answers[3 * i], 0, 'sum');
      expect(bytesToBigIntLE(sum)).toBe(cogen.combineScalars('Ed25519', a, b));
      sums.push(bytesToBigIntLE(sum));
    });
    const sumAnswers = runCli(sums.map((s) => `pub ${toHex(le(s))}`));
    pairs.forEach((_, i) => {
      const edA = field(answers[3 * i + 1], 0, 'edA');
      const edB = field(answers[3 * i + 2], 0, 'edB');
      const xA = field(answers[3 * i + 1], 1, 'xA');
      const xB = field(answers[3 * i + 2], 1, 'xB');
      expect(toHex(field(sumAnswers[i], 0, 'ed sum'))).toBe(toHex(cogen.combinePublicKeys('Ed25519', edA, edB)));
      expect(toHex(field(sumAnswers[i], 1, 'x sum'))).toBe(toHex(cogen.combinePublicKeys('X25519', xA, xB)));
    });
  });

  it('signatures by a raw scalar verify with node:crypto, fail for another message, and are hedged (fresh each time)', () => {
    const s = randomScalar();
    const pub = cogen.publicKeyFromScalar('Ed25519', s);
    const messages = [new Uint8Array(0), utf8('meshkit-receipt-v1\0'), new Uint8Array(randomBytes(64)), new Uint8Array(randomBytes(1024))];
    const requests = messages.map((m) => `sign ${toHex(le(s))} ${hex(m)}`);
    requests.push(requests[1] ?? '');
    const answers = runCli(requests);
    messages.forEach((m, i) => {
      const sig = field(answers[i], 0, 'sig');
      expect(nodeVerify(null, m, edKey(pub), sig), `message ${i}`).toBe(true);
      expect(nodeVerify(null, concatBytes(m, Uint8Array.of(0)), edKey(pub), sig), `altered message ${i}`).toBe(false);
    });
    const again = field(answers[4], 0, 'sig again');
    expect(toHex(again)).not.toBe(toHex(field(answers[1], 0, 'sig')));
    expect(nodeVerify(null, messages[1] ?? new Uint8Array(0), edKey(pub), again)).toBe(true);
  });

  it('boxes sealed in C open with node:crypto (standard key) and with ecdhWithScalar (device key); wrong labels fail', () => {
    const standard = generateKeyPairSync('x25519');
    const standardU = xU(standard.publicKey);
    const s = randomScalar();
    const deviceU = cogen.montgomeryExtendedFromScalar('X25519', s).subarray(0, 32);
    const plaintexts = [new Uint8Array(0), utf8('ssid=bench;mqtt=mqtts://broker'), new Uint8Array(randomBytes(1024))];
    const requests = plaintexts.flatMap((p) => [`seal ${toHex(standardU)} config ${hex(p)}`, `seal ${toHex(deviceU)} contribution ${hex(p)}`]);
    const answers = runCli(requests);
    plaintexts.forEach((p, i) => {
      const toStandard = field(answers[2 * i], 0, 'box');
      const toDevice = field(answers[2 * i + 1], 0, 'box');
      expect(toStandard.length).toBe(p.length + 48);
      const viaNode = (epk: Uint8Array): Uint8Array => new Uint8Array(diffieHellman({ privateKey: standard.privateKey, publicKey: xKey(epk) }));
      const viaScalar = (epk: Uint8Array): Uint8Array => cogen.ecdhWithScalar('X25519', s, epk);
      expect(toHex(openWith(viaNode, standardU, 'config', toStandard) ?? Uint8Array.of(1, 2, 3))).toBe(toHex(p));
      expect(toHex(openWith(viaScalar, deviceU, 'contribution', toDevice) ?? Uint8Array.of(1, 2, 3))).toBe(toHex(p));
      expect(openWith(viaNode, standardU, 'contribution', toStandard)).toBeUndefined();
      expect(openWith(viaScalar, deviceU, 'config', toDevice)).toBeUndefined();
    });
  });

  it('boxes sealed with node:crypto open in C; tampered, truncated, mislabelled boxes and wrong keys do not', () => {
    const s = randomScalar();
    const other = randomScalar();
    const u = cogen.montgomeryExtendedFromScalar('X25519', s).subarray(0, 32);
    const contribution = new Uint8Array(randomBytes(200));
    const box = sealNode(u, 'contribution', contribution);
    const flipped = (i: number): Uint8Array => {
      const t = box.slice();
      t[i] = (t[i] ?? 0) ^ 0x01;
      return t;
    };
    const sk = toHex(le(s));
    const requests = [
      `open ${sk} ${toHex(u)} contribution ${toHex(box)}`,
      `open ${sk} ${toHex(u)} contribution ${toHex(flipped(box.length - 1))}`,
      `open ${sk} ${toHex(u)} contribution ${toHex(flipped(40))}`,
      `open ${sk} ${toHex(u)} contribution ${toHex(flipped(3))}`,
      `open ${sk} ${toHex(u)} config ${toHex(box)}`,
      `open ${sk} ${toHex(u)} contribution ${toHex(box.subarray(0, box.length - 1))}`,
      `open ${sk} ${toHex(u)} contribution ${toHex(box.subarray(0, 47))}`,
      `open ${toHex(le(other))} ${toHex(u)} contribution ${toHex(box)}`,
      `open ${sk} ${toHex(u)} contribution ${toHex(concatBytes(new Uint8Array(32), box.subarray(32)))}`,
    ];
    const answers = runCli(requests);
    expect(toHex(field(answers[0], 0, 'plaintext'))).toBe(toHex(contribution));
    answers.slice(1).forEach((a, i) => expect(a, requests[i + 1]?.split(' ').slice(0, 4).join(' ')).toBeUndefined());
  });

  it('refuses invalid scalars, a zero sum and small-order peers', () => {
    const u9 = le(9n);
    const requests = [
      `pub ${toHex(le(0n))}`,
      `pub ${toHex(le(L))}`,
      `sign ${toHex(le(L + 1n))} 00`,
      `add ${toHex(le(L - 1n))} ${toHex(le(1n))}`,
      `add ${toHex(le(L))} ${toHex(le(1n))}`,
      `agree ${toHex(le(0n))} ${toHex(u9)}`,
      ...(LOW_ORDER_U.X25519.map((lo) => `agree ${toHex(le(randomScalar()))} ${toHex(le(lo))}`)),
    ];
    const answers = runCli(requests);
    answers.forEach((a, i) => expect(a, requests[i]).toBeUndefined());
    // and a control: the same driver accepts a valid request
    expect(runCli([`agree ${toHex(le(randomScalar()))} ${toHex(u9)}`])[0]).toBeDefined();
  });
});
