/**
 * The Device Profile the C firmware builds (firmware-bindings/src/mk_profile.c, driven by
 * firmware-bindings/tests/profile_cli.c) against the TypeScript core: it passes verifyProfile() (self-signed
 * Device Profile rule), its bytes are exactly the template of docs/enrollment.md filled in here from the core's
 * keys, it carries the keys of the given scalars (cogen.ts publicKeyFromScalar) and their key UDFs equal keyId().
 * Also: vectors/profile.hex is exactly what tools/profile-vectors.mjs generates from the current src/core.
 * Skipped, with the reason printed, only where make, gcc or libsodium-dev is missing.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { b64u, bigIntToBytesLE, bytesToBigIntLE, fromB64u, toHex, utf8 } from '../../src/core/bytes.js';
import * as cogen from '../../src/core/cogen.js';
import { ProfileError } from '../../src/core/errors.js';
import * as keys from '../../src/core/keys.js';
import { verifyProfile } from '../../src/core/profiles.js';
import * as udf from '../../src/core/udf.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const fwDir = fileURLToPath(new URL('../../firmware-bindings/', import.meta.url));
const cli = `${fwDir}build/profile_cli`;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function skipReason(): string | undefined {
  for (const tool of ['make', 'gcc']) {
    const probe = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (probe.error !== undefined || probe.status !== 0) return `'${tool}' is not installed`;
  }
  if (!existsSync('/usr/include/sodium.h')) return 'libsodium-dev is not installed';
  return undefined;
}
const reason = skipReason();
if (reason !== undefined) console.log(`firmware-profile.test.ts: skipped: ${reason}`);

const randomScalar = (): bigint => (bytesToBigIntLE(new Uint8Array(randomBytes(64))) % (L - 1n)) + 1n;

interface CProfile {
  jws: string;
  sig: string;
  enc: string;
  auth: string;
  udfs: string[];
}

/** Run the C driver; the scalars go through stdin, never argv. */
function cProfile(scalars: bigint[], time: number, model: string, serial: string): CProfile {
  const input = [
    ...scalars.map((s) => toHex(bigIntToBytesLE(s, 32))),
    String(time),
    Buffer.from(model, 'utf8').toString('hex'),
    Buffer.from(serial, 'utf8').toString('hex'),
    '',
  ].join('\n');
  const run = spawnSync(cli, [], { input, encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  const lines = run.stdout.split('\n');
  return { jws: lines[0] ?? '', sig: lines[1] ?? '', enc: lines[2] ?? '', auth: lines[3] ?? '', udfs: lines.slice(4, 7) };
}

/** docs/enrollment.md's payload template, filled in from the core's keys (member order as the doc). */
function expectedPayload(scalars: bigint[], time: number, description: string): string {
  const [s0, s1, s2] = scalars as [bigint, bigint, bigint];
  const sig = cogen.publicKeyFromScalar('Ed25519', s0);
  const enc = cogen.publicKeyFromScalar('X25519', s1);
  const auth = cogen.publicKeyFromScalar('X25519', s2);
  const id = keys.keyId(keys.publicKeyFromRaw('Ed25519', sig));
  const entry = (crv: string, raw: Uint8Array): object => ({
    UDF: keys.keyId(keys.publicKeyFromRaw(crv === 'Ed25519' ? 'Ed25519' : 'X25519', raw)),
    PublicParameters: { kty: 'OKP', crv, x: b64u(raw) },
  });
  return JSON.stringify({
    DeviceProfile: {
      Identifier: id,
      Names: [],
      Updated: new Date(time * 1000).toISOString(),
      Sequence: 1,
      Description: description,
      DeviceSignatureKey: entry('Ed25519', sig),
      DeviceAuthenticationKey: entry('X25519', auth),
      DeviceEncryptionKey: entry('X25519', enc),
    },
  });
}

describe.skipIf(reason !== undefined)('the C-built Device Profile', () => {
  beforeAll(() => {
    const build = spawnSync('make', ['-C', 'firmware-bindings', 'build/profile_cli'], { cwd: repoRoot, encoding: 'utf8' });
    expect(build.status, `${build.stdout}\n${build.stderr}`).toBe(0);
  }, 120_000);

  it('passes verifyProfile, is byte for byte the documented template, and has the keys of the scalars', async () => {
    const scalars = [randomScalar(), randomScalar(), randomScalar()];
    const time = Math.floor(Date.now() / 1000) - 60;
    const c = cProfile(scalars, time, 'esp32s3-devkit', 'SN-000123');
    const verified = await verifyProfile(c.jws);
    expect(verified.type).toBe('DeviceProfile');
    expect(verified.signerRole).toBe('device-signature-key');

    const jws = JSON.parse(c.jws) as { payload: string; signatures: { protected: string; signature: string }[] };
    expect(Object.keys(jws)).toEqual(['payload', 'signatures']);
    expect(new TextDecoder().decode(fromB64u(jws.payload))).toBe(expectedPayload(scalars, time, 'esp32s3-devkit SN-000123'));
    const sigPub = cogen.publicKeyFromScalar('Ed25519', scalars[0] ?? 0n);
    const sigId = keys.keyId(keys.publicKeyFromRaw('Ed25519', sigPub));
    expect(new TextDecoder().decode(fromB64u(jws.signatures[0]?.protected ?? ''))).toBe(
      `{"alg":"EdDSA","kid":"${sigId}","cty":"DeviceProfile"}`);
    expect(verified.identifier).toBe(sigId);

    // the printed public keys are the core's keys of the same scalars, extended for X25519
    expect(c.sig).toBe(toHex(sigPub));
    expect(c.enc).toBe(toHex(cogen.publicKeyFromScalar('X25519', scalars[1] ?? 0n, { extended: true })));
    expect(c.auth).toBe(toHex(cogen.publicKeyFromScalar('X25519', scalars[2] ?? 0n, { extended: true })));
    // and the C key UDFs are keyId()
    expect(c.udfs).toEqual([
      sigId,
      keys.keyId(keys.publicKeyFromRaw('X25519', cogen.publicKeyFromScalar('X25519', scalars[1] ?? 0n))),
      keys.keyId(keys.publicKeyFromRaw('X25519', cogen.publicKeyFromScalar('X25519', scalars[2] ?? 0n))),
    ]);
  });

  it('escapes the Description as JSON (quotes, backslashes, control characters, non-ASCII)', async () => {
    const scalars = [randomScalar(), randomScalar(), randomScalar()];
    const time = 1_700_000_000;
    const model = 'model "X" \\ \u0001\t\n\u007f';
    const serial = 'caf\u00e9-\u{1f600}\r\b\f';
    const c = cProfile(scalars, time, model, serial);
    const verified = await verifyProfile(c.jws);
    expect((verified.profile as { Description: string }).Description).toBe(`${model} ${serial}`);
    const jws = JSON.parse(c.jws) as { payload: string };
    expect(new TextDecoder().decode(fromB64u(jws.payload))).toBe(expectedPayload(scalars, time, `${model} ${serial}`));
  });

  it('a profile altered after signing fails verifyProfile (the check can fail)', async () => {
    const scalars = [randomScalar(), randomScalar(), randomScalar()];
    const c = cProfile(scalars, 1_700_000_000, 'm', 's');
    const jws = JSON.parse(c.jws) as { payload: string; signatures: unknown[] };
    const payload = new TextDecoder().decode(fromB64u(jws.payload)).replace('"m s"', '"m t"');
    const forged = JSON.stringify({ ...jws, payload: b64u(utf8(payload)) });
    await expect(verifyProfile(forged)).rejects.toBeInstanceOf(ProfileError);
  });

  it('the committed vectors/profile.hex is exactly what tools/profile-vectors.mjs generates from src/core', async () => {
    const gen = (await import(pathToFileURL(`${fwDir}tools/profile-vectors.mjs`).href)) as {
      generateProfileVectors: (core: unknown) => string;
    };
    const text = gen.generateProfileVectors({ ...udf, ...keys, publicKeyFromScalar: cogen.publicKeyFromScalar });
    const committed = readFileSync(`${fwDir}vectors/profile.hex`, 'utf8');
    expect(text === committed, 'vectors/profile.hex is stale: npm run build && node firmware-bindings/tools/profile-vectors.mjs').toBe(true);
  });
});
