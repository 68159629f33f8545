/**
 * `meshkit key …` through the built command (`node bin/meshkit.js`, after `npm run build`), and the
 * secret sources behind it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/core/errors.js';
import { verifyJws } from '../../src/core/jose.js';
import { keyId } from '../../src/core/keys.js';
import type { PublicJwk } from '../../src/core/signer.js';
import { readSecretFile, secretSource } from '../../src/cli/secrets.js';
import { UsageError } from '../../src/cli/main.js';

const BIN = resolve('bin/meshkit.js');
const PASS = 'pass-phrase-Q7x!secret';
const dir = mkdtempSync(join(tmpdir(), 'meshkit-cli-key-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
const outputs: string[] = [];

/** Runs meshkit with a clean environment (no MESHKIT_* unless given); stdin is a pipe, never a TTY. */
function meshkit(args: string[], opts: { env?: Record<string, string>; input?: string | Buffer } = {}): Run {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MESHKIT_')) env[k] = v;
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: dir, env: { ...env, ...opts.env }, input: opts.input ?? '', encoding: 'utf8' });
  outputs.push(r.stdout, r.stderr);
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
const withPass = { env: { MESHKIT_PASSPHRASE: PASS } };

beforeAll(() => {
  if (!existsSync(resolve('dist/cli/commands/key.js'))) throw new Error('dist/ missing: run "npm run build" before these tests');
});

describe('meshkit key generate / show / list', () => {
  let info: { keyId: string; publicJwk: PublicJwk; label: string; curve: string; usage: string; location: string };

  it('generate --json with MESHKIT_PASSPHRASE creates the store and prints the key info', () => {
    const r = meshkit(['key', 'generate', '--key', 'file:store.json#signer', '--alg', 'Ed25519', '--kdf-cost', '14', '--json'], withPass);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    info = JSON.parse(r.stdout);
    expect(info).toMatchObject({ label: 'signer', curve: 'Ed25519', usage: 'sign', location: `file:${join(dir, 'store.json')}#signer` });
    expect(info.keyId).toBe(keyId(info.publicJwk));
    expect(readFileSync(join(dir, 'store.json'), 'utf8')).not.toContain(PASS);
  });

  it('show needs no passphrase and prints the same key (human and --json)', () => {
    const j = meshkit(['key', 'show', '--key', 'file:store.json#signer', '--json']);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toEqual(info);
    const h = meshkit(['key', 'show', '--key', 'file:store.json#signer']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain(info.keyId);
    expect(h.stdout).toContain('Ed25519');
  });

  it('generate with --passphrase-file (first line only, CRLF stripped) into the same store', () => {
    writeFileSync(join(dir, 'pass.txt'), `${PASS}\r\nsecond line is ignored\n`);
    const r = meshkit(['key', 'generate', '--key', 'file:store.json#p256', '--alg', 'P-256', '--passphrase-file', 'pass.txt', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ label: 'p256', curve: 'P-256', usage: 'sign' });
  });

  it('generate on an existing label fails with ERR_KEYSTORE_EXISTS (exit 1)', () => {
    const r = meshkit(['key', 'generate', '--key', 'file:store.json#signer', '--alg', 'Ed448'], withPass);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(ErrorCode.KEYSTORE_EXISTS);
  });

  it('list --json and human', () => {
    const j = meshkit(['key', 'list', '--store', 'file:store.json', '--json']);
    expect(j.code).toBe(0);
    const doc = JSON.parse(j.stdout);
    expect(doc.store).toBe(`file:${join(dir, 'store.json')}`);
    expect(doc.keys.map((k: { label: string }) => k.label)).toEqual(['p256', 'signer']);
    const h = meshkit(['key', 'list', '--store', 'file:store.json']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain(info.keyId);
  });

  it('sign prints a General JSON JWS, kid = key UDF in the protected header, that verifyJws accepts', async () => {
    const bytes = Buffer.from('the bytes of a file\n\u0000\u00ff');
    writeFileSync(join(dir, 'doc.bin'), bytes);
    for (const [label, alg, args] of [
      ['signer', 'EdDSA', ['--passphrase-file', 'pass.txt']],
      ['p256', 'ES256', ['--pin-env', 'MY_PIN']],
    ] as const) {
      const r = meshkit(['key', 'sign', '--key', `file:store.json#${label}`, ...args, 'doc.bin'], { env: { MY_PIN: PASS } });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const jws = JSON.parse(r.stdout);
      expect(Object.keys(jws).sort()).toEqual(['payload', 'signatures']);
      const shown = JSON.parse(meshkit(['key', 'show', '--key', `file:store.json#${label}`, '--json']).stdout);
      const header = JSON.parse(Buffer.from(jws.signatures[0].protected, 'base64url').toString('utf8'));
      expect(header).toMatchObject({ alg, kid: shown.keyId });
      const v = await verifyJws(jws, (kid) => (kid === shown.keyId ? shown.publicJwk : undefined));
      expect(Buffer.from(v.payload).equals(bytes)).toBe(true);
    }
  });

  it('sign - reads stdin; --json and --cty', async () => {
    const r = meshkit(['key', 'sign', '--key', 'file:store.json#signer', '--cty', 'Note', '--json', '-'], { ...withPass, input: 'from stdin' });
    expect(r.code).toBe(0);
    const jws = JSON.parse(r.stdout);
    const v = await verifyJws(jws, (kid) => (kid === info.keyId ? info.publicJwk : undefined));
    expect(Buffer.from(v.payload).toString()).toBe('from stdin');
    expect(v.protectedHeader['cty']).toBe('Note');
  });

  it('generate X25519 (derive) then sign with it fails with exit 1', () => {
    expect(meshkit(['key', 'generate', '--key', 'file:store.json#kx', '--alg', 'X25519'], withPass).code).toBe(0);
    writeFileSync(join(dir, 'a.txt'), 'a');
    const r = meshkit(['key', 'sign', '--key', 'file:store.json#kx', 'a.txt'], withPass);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(ErrorCode.NOT_SUPPORTED);
  });
});

describe('meshkit key: failures and exit codes', () => {
  beforeAll(() => {
    const r = meshkit(['key', 'generate', '--key', 'file:err.json#k', '--alg', 'Ed25519', '--kdf-cost', '14'], withPass);
    expect(r.code).toBe(0);
    writeFileSync(join(dir, 'm.txt'), 'message');
  });

  it('a wrong passphrase is exit 1 with ERR_KEYSTORE_BAD_PASSPHRASE, one line, no stack, file unchanged', () => {
    const before = readFileSync(join(dir, 'err.json'));
    const r = meshkit(['key', 'sign', '--key', 'file:err.json#k', 'm.txt'], { env: { MESHKIT_PASSPHRASE: 'wrong-guess-123' } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(ErrorCode.KEYSTORE_PASSPHRASE);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toContain('wrong-guess-123');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(readFileSync(join(dir, 'err.json')).equals(before)).toBe(true);
  });

  it('there is no option that takes a passphrase or PIN itself (exit 2, value not echoed)', () => {
    for (const opt of ['--passphrase', '--pin', '--password', '--pin-value']) {
      const r = meshkit(['key', 'sign', '--key', 'file:err.json#k', opt, 'argv-secret-987', 'm.txt']);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).not.toContain('argv-secret-987');
    }
  });

  it('no passphrase source and stdin not a terminal → exit 2 naming the options', () => {
    const r = meshkit(['key', 'sign', '--key', 'file:err.json#k', 'm.txt']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--passphrase-file');
    expect(r.stderr).toContain('MESHKIT_PASSPHRASE');
  });

  it.each([
    ['unknown algorithm', ['key', 'generate', '--key', 'file:x.json#k', '--alg', 'RSA'], 2],
    ['missing --key', ['key', 'generate', '--alg', 'Ed25519'], 2],
    ['missing --alg', ['key', 'generate', '--key', 'file:x.json#k'], 2],
    ['kdf cost too low', ['key', 'generate', '--key', 'file:x.json#k', '--alg', 'Ed25519', '--kdf-cost', '10'], 2],
    ['usage impossible for the curve', ['key', 'generate', '--key', 'file:x.json#k', '--alg', 'X25519', '--usage', 'sign'], 2],
    ['two secret sources', ['key', 'sign', '--key', 'file:err.json#k', '--passphrase-file', 'p', '--pin-env', 'V', 'm.txt'], 2],
    ['sign without a file', ['key', 'sign', '--key', 'file:err.json#k'], 2],
    ['bad key reference', ['key', 'show', '--key', 'err.json#k'], 1],
    ['reference without label', ['key', 'show', '--key', 'file:err.json'], 1],
    ['missing label', ['key', 'show', '--key', 'file:err.json#nope'], 1],
    ['missing store', ['key', 'list', '--store', 'file:nothing-here.json'], 1],
    ['missing file to sign', ['key', 'sign', '--key', 'file:err.json#k', 'no-such-file'], 1],
    ['unset --pin-env variable', ['key', 'sign', '--key', 'file:err.json#k', '--pin-env', 'NOT_SET_ANYWHERE', 'm.txt'], 1],
    ['missing --passphrase-file', ['key', 'sign', '--key', 'file:err.json#k', '--passphrase-file', 'nope.txt', 'm.txt'], 1],
  ])('%s → exit %i', (_name, args, code) => {
    const r = meshkit(args as string[], withPass);
    expect(r.code).toBe(code);
    expect(r.stdout).toBe('');
    expect(r.stderr.length).toBeGreaterThan(0);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(dir, 'x.json'))).toBe(false);
  });

  it('the missing-label error lists the labels present', () => {
    const r = meshkit(['key', 'show', '--key', 'file:err.json#nope']);
    expect(r.stderr).toContain(ErrorCode.KEYSTORE_NOT_FOUND);
    expect(r.stderr).toContain('"k"');
  });

  it('the passphrase never appeared in any stdout or stderr of this file', () => {
    expect(outputs.length).toBeGreaterThan(20);
    for (const o of outputs) {
      expect(o).not.toContain(PASS);
      expect(o).not.toContain(Buffer.from(PASS).toString('base64'));
      expect(o).not.toContain(Buffer.from(PASS).toString('hex'));
    }
  });
});

describe('secret sources', () => {
  it('readSecretFile takes the first line without its newline', async () => {
    const p = join(dir, 'secret-lf.txt');
    writeFileSync(p, 'abc\ndef\n');
    expect(Buffer.from(await readSecretFile(p)).toString()).toBe('abc');
    writeFileSync(p, 'no newline');
    expect(Buffer.from(await readSecretFile(p)).toString()).toBe('no newline');
    writeFileSync(p, '\nsecond');
    await expect(readSecretFile(p)).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
  });

  it('precedence: file, named variable, MESHKIT_PASSPHRASE, prompt', async () => {
    const p = join(dir, 'secret-prec.txt');
    writeFileSync(p, 'from-file\n');
    const env = { MESHKIT_PASSPHRASE: 'from-default', V: 'from-var' };
    const text = async (f: () => Promise<Uint8Array>): Promise<string> => Buffer.from(await f()).toString();
    expect(await text(secretSource({ passphraseFile: p }, { env }))).toBe('from-file');
    expect(await text(secretSource({ pinEnv: 'V' }, { env }))).toBe('from-var');
    expect(await text(secretSource({}, { env }))).toBe('from-default');
    expect(await text(secretSource({}, { env: {}, isTTY: true, prompt: async () => 'typed' }))).toBe('typed');
    expect(await text(secretSource({}, { purpose: 'PIN', env: { MESHKIT_PIN: '1234' } }))).toBe('1234');
  });

  it('a new passphrase at the prompt is asked twice and must match', async () => {
    const answers = ['one', 'two'];
    const messages: string[] = [];
    const src = secretSource({}, {
      env: {},
      isTTY: true,
      confirm: true,
      prompt: async (m) => {
        messages.push(m);
        return answers.shift() ?? '';
      },
    });
    await expect(src()).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
    expect(messages).toHaveLength(2);
  });

  it('no source and no TTY is a UsageError; two sources are a UsageError at once', async () => {
    await expect(secretSource({}, { env: {}, isTTY: false })()).rejects.toBeInstanceOf(UsageError);
    expect(() => secretSource({ passphraseFile: 'a', passphraseEnv: 'B' })).toThrow(UsageError);
  });

  it('an empty variable or an empty prompt answer is refused', async () => {
    await expect(secretSource({ pinEnv: 'E' }, { env: { E: '' } })()).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
    await expect(secretSource({}, { env: {}, isTTY: true, prompt: async () => '' })()).rejects.toMatchObject({ code: ErrorCode.SECRET_SOURCE });
  });
});
