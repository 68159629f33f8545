/**
 * CLI tests for `meshkit udf …` and `meshkit shamir …`: they run the built CLI (`node bin/meshkit.js`),
 * so `npm run build` must have run first (`npm test` does).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { udfDigest, udfFromDigest } from '../../src/core/udf.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'bin', 'meshkit.js');

interface Result { code: number | null; stdout: string; stderr: string }

function run(args: string[], input?: string | Buffer, nodeArgs: string[] = []): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, bin, ...args], { cwd: root, env: { ...process.env, MESHKIT_DEBUG: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

function expectFailure(r: Result, code: 1 | 2, message?: RegExp): void {
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe('');
  if (code === 1) {
    expect(r.stderr.trim().split('\n')).toHaveLength(1); // one line, no stack trace
  }
  if (message) expect(r.stderr).toMatch(message);
}

interface E1 { secret: string; shares: Array<{ udf: string }> }
const e1 = (JSON.parse(readFileSync(join(root, 'test/vectors/mesh-udf-13.json'), 'utf8')) as { shamir: E1 }).shamir;
const e1Secret = e1.secret.replace(/\s/g, '').toLowerCase();

let dir = '';
beforeAll(() => {
  if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  dir = mkdtempSync(join(tmpdir(), 'meshkit-cli-udf-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('meshkit udf digest', () => {
  it('prints the mesh-udf-13 A1 vector for a file', async () => {
    const file = join(dir, 'a1.txt');
    writeFileSync(file, 'UDF Data Value');
    const r = await run(['udf', 'digest', '--content-type', 'text/plain', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF\n');
  });
  it('reads stdin with -, honours --bits, --json gives {udf, contentType, bits, algorithm, bytes}', async () => {
    const r = await run(['udf', 'digest', '--content-type', 'text/plain', '--bits', '200', '--json', '-'], 'UDF Data Value');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      udf: 'MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF-XI6O-ZSLU-2VOA',
      contentType: 'text/plain',
      bits: 200,
      algorithm: 'SHA-512',
      bytes: 14,
    });
  });
  it('--sha3 gives the mesh-udf-13 A2 vector; default content type matches the library default', async () => {
    const r = await run(['udf', 'digest', '--sha3', '--content-type', 'text/plain', '-'], 'UDF Data Value');
    expect(r.stdout).toBe('KCFI-NCQG-DRKG-47R7-OVPT-TCHZ-7UXY\n');
    const d = await run(['udf', 'digest', '--json', '-'], 'UDF Data Value');
    const j = JSON.parse(d.stdout) as { udf: string; contentType: string };
    expect(j.contentType).toBe('application/octet-stream');
    expect(j.udf).toBe(udfDigest(new TextEncoder().encode('UDF Data Value')));
  });
  it('streams a large file: 512 MiB (sparse) hashed with a peak RSS far below the file size', async () => {
    const file = join(dir, 'big.bin');
    writeFileSync(file, '');
    const size = 512 * 1024 * 1024;
    truncateSync(file, size);
    // The child reports its peak resident set size (KiB) on stderr when it exits.
    const reportRss = "data:text/javascript,process.on('exit',()=>process.stderr.write('maxRSS='+process.resourceUsage().maxRSS))";
    const pending = run(['udf', 'digest', '--json', file], undefined, ['--import', reportRss]);
    // The expected inner digest is computed here while the child process runs.
    const zeros = Buffer.alloc(1024 * 1024);
    const h = createHash('sha512');
    for (let i = 0; i < size / zeros.length; i++) h.update(zeros);
    const r = await pending;
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { udf: string; bytes: number };
    expect(j.bytes).toBe(size);
    expect(j.udf).toBe(udfFromDigest(new Uint8Array(h.digest())));
    const rssKiB = Number(/maxRSS=(\d+)/.exec(r.stderr)?.[1]);
    expect(rssKiB).toBeGreaterThan(0);
    expect(rssKiB * 1024).toBeLessThan(size / 3);
  }, 60_000);
  it('exit 2 for usage errors: bad --bits, no file, unknown option', async () => {
    expectFailure(await run(['udf', 'digest', '--bits', '133', '-'], 'x'), 2, /--bits/);
    expectFailure(await run(['udf', 'digest', '--bits', 'many', '-'], 'x'), 2);
    expectFailure(await run(['udf', 'digest']), 2, /missing required argument/);
    expectFailure(await run(['udf', 'digest', '--frobnicate', '-'], 'x'), 2);
  });
  it('exit 1 with one line on stderr for a missing file', async () => {
    expectFailure(await run(['udf', 'digest', join(dir, 'nope.bin')]), 1, /cannot read .*nope\.bin.*ERR_IO/);
    expectFailure(await run(['udf', 'digest', dir]), 1, /ERR_IO/);
  });
});

describe('meshkit udf key', () => {
  const { publicKey } = generateKeyPairSync('ed25519');
  const der = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
  const expected = udfDigest(der, { contentType: 'application/pkix-keyinfo' });
  it('PEM SPKI → key UDF (application/pkix-keyinfo over the RFC 8410 DER) and curve', async () => {
    const file = join(dir, 'k.pem');
    writeFileSync(file, publicKey.export({ type: 'spki', format: 'pem' }));
    const r = await run(['udf', 'key', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${expected}  Ed25519\n`);
  });
  it('DER SPKI and JWK give the same identifier; --json', async () => {
    const derFile = join(dir, 'k.der');
    writeFileSync(derFile, der);
    const jwkFile = join(dir, 'k.jwk');
    writeFileSync(jwkFile, JSON.stringify(publicKey.export({ format: 'jwk' })));
    for (const f of [derFile, jwkFile]) {
      const r = await run(['udf', 'key', '--json', f]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ keyId: expected, curve: 'Ed25519' });
    }
  });
  it('exit 1 for a file that is not a key or does not exist; exit 2 without a file', async () => {
    const junk = join(dir, 'junk.txt');
    writeFileSync(junk, 'not a key');
    expectFailure(await run(['udf', 'key', junk]), 1, /ERR_KEY_INVALID/);
    expectFailure(await run(['udf', 'key', join(dir, 'missing.pem')]), 1, /ERR_IO/);
    expectFailure(await run(['udf', 'key']), 2);
  });
});

describe('meshkit shamir', () => {
  it('split → one S-UDF a line; any 3 of 5 combine to the secret', async () => {
    const s = await run(['shamir', 'split', '--threshold', '3', '--shares', '5'], `${e1Secret}\n`);
    expect(s.code, s.stderr).toBe(0);
    const lines = s.stdout.trim().split('\n');
    expect(lines).toHaveLength(5);
    for (const l of lines) expect(l).toMatch(/^S[A-Z2-7]{3}(-[A-Z2-7]{1,4})+$/);
    const c = await run(['shamir', 'combine'], [lines[4], lines[0], lines[2]].join('\n'));
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toBe(`${e1Secret}\n`);
  });
  it('--json on split and combine', async () => {
    const s = await run(['shamir', 'split', '--threshold', '2', '--shares', '3', '--json'], '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff');
    expect(s.code, s.stderr).toBe(0);
    const j = JSON.parse(s.stdout) as { threshold: number; secretLength: number; shares: string[] };
    expect(j.threshold).toBe(2);
    expect(j.secretLength).toBe(32);
    expect(j.shares).toHaveLength(3);
    const c = await run(['shamir', 'combine', '--json'], j.shares.slice(1).join('\n'));
    expect(JSON.parse(c.stdout)).toEqual({ secret: '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', threshold: 2, shares: 2 });
  });
  it('combine ignores blank lines and # comments (mesh-udf-13 E1 shares)', async () => {
    const input = ['# share cards, threshold 3', '', e1.shares[1]?.udf, '   ', `${e1.shares[3]?.udf}  # custodian 4`, '#', e1.shares[4]?.udf, ''].join('\n');
    const r = await run(['shamir', 'combine'], input);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${e1Secret}\n`);
  });
  it('exit 1: too few, duplicate, or malformed shares; bad hex', async () => {
    expectFailure(await run(['shamir', 'combine'], `${e1.shares[0]?.udf}\n${e1.shares[1]?.udf}\n`), 1, /need 3 shares, got 2 \[ERR_SHARES_INSUFFICIENT\]/);
    expectFailure(await run(['shamir', 'combine'], `${e1.shares[0]?.udf}\n${e1.shares[1]?.udf}\n${e1.shares[0]?.udf}\n`), 1, /ERR_SHARE_DUPLICATE/);
    expectFailure(await run(['shamir', 'combine'], 'MDDK-7N6A-727A-JZNO-STRX-XKS7-DJAF\n'), 1, /ERR_SHARE_INVALID/);
    expectFailure(await run(['shamir', 'split', '--threshold', '2', '--shares', '3'], 'xyz'), 1, /hex/);
    expectFailure(await run(['shamir', 'split', '--threshold', '2', '--shares', '3'], '00'.repeat(65)), 1, /1…64/);
  });
  it('exit 2: usage errors', async () => {
    expectFailure(await run(['shamir', 'split', '--threshold', '1', '--shares', '3'], '00'), 2, /at least 2/);
    expectFailure(await run(['shamir', 'split', '--threshold', '4', '--shares', '3'], '00'), 2, /must not exceed/);
    expectFailure(await run(['shamir', 'split', '--threshold', '2', '--shares', '16'], '00'), 2);
    expectFailure(await run(['shamir', 'split', '--shares', '3'], '00'), 2, /threshold/);
    expectFailure(await run(['shamir', 'split', '--threshold', '2', '--shares', '3'], ''), 2, /no secret/);
    expectFailure(await run(['shamir', 'combine'], '# nothing\n\n'), 2, /no shares/);
  });
});
