/**
 * Plan validation (src/ceremony/plan.ts): every field is checked with a message naming it, the
 * defaults, and through the built CLI an invalid plan exits 1 naming the field.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/core/errors.js';
import { DEFAULT_ALGORITHMS, DEFAULT_LABELS, parsePlan, planFingerprint } from '../../src/ceremony/plan.js';

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));

const ADMIN_JWK = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' };
function base(): Record<string, unknown> {
  return {
    Name: 'Alice Example — lifetime Mesh identity',
    Token: 'pkcs11:token=Master?module-path=/usr/lib/softhsm/libsofthsm2.so',
    KeyOrigin: 'import-with-escrow',
    Administrators: [
      { Name: 'alice-smartcard', Key: 'pkcs11:token=AliceCard;object=admin?module-path=/usr/lib/softhsm/libsofthsm2.so' },
      { Name: 'alice-backup-card', PublicKey: ADMIN_JWK },
    ],
    Custodians: ['Carol', 'Dave', 'Erin', 'Frank', 'Grace'],
    Threshold: 3,
    Witnesses: ['Heidi', 'Ivan'],
    Names: ['alice@example.com'],
  };
}
const plan = (changes: Record<string, unknown>): Uint8Array => {
  const c = { ...base(), ...changes };
  for (const [k, v] of Object.entries(changes)) if (v === undefined) delete c[k];
  return enc({ Ceremony: c });
};

describe('parsePlan', () => {
  it('accepts the docs/ceremony.md example and fills the defaults', () => {
    const p = parsePlan(plan({}));
    expect(p.algorithms).toEqual(DEFAULT_ALGORITHMS);
    expect(p.labels).toEqual(DEFAULT_LABELS);
    expect(p.keyOrigin).toBe('import-with-escrow');
    expect(p.threshold).toBe(3);
    expect(p.custodians).toHaveLength(5);
    expect(p.administrators[1]?.publicKey).toEqual(ADMIN_JWK);
    expect(p.fingerprint).toBe(planFingerprint(plan({})));
  });

  it('generate-on-token needs no custodians; witnesses and names default to empty', () => {
    const p = parsePlan(plan({ KeyOrigin: 'generate-on-token', Custodians: undefined, Threshold: undefined, Witnesses: undefined, Names: undefined }));
    expect(p.custodians).toEqual([]);
    expect(p.threshold).toBe(0);
    expect(p.witnesses).toEqual([]);
    expect(p.names).toEqual([]);
  });

  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['not JSON', enc('{"Ceremony": '), /not strict JSON/],
    ['duplicate member', enc('{"Ceremony":{"Name":"a","Name":"b"}}'), /not strict JSON/],
    ['no Ceremony', enc({ Plan: {} }), /"\(plan\)\.Plan" is not a plan field/],
    ['unknown field', plan({ Colour: 'blue' }), /"Ceremony\.Colour" is not a plan field/],
    ['Name missing', plan({ Name: undefined }), /"Ceremony\.Name" must be a string/],
    ['Name empty', plan({ Name: '  ' }), /"Ceremony\.Name" must not be empty/],
    ['Name with a line break', plan({ Name: 'a\nb' }), /"Ceremony\.Name" must not contain control characters/],
    ['Token missing', plan({ Token: undefined }), /"Ceremony\.Token" must be a string/],
    ['Token scheme', plan({ Token: 'https://hsm' }), /"Ceremony\.Token" must be a pkcs11: token URI or a file:PATH/],
    ['Token with pin-value', plan({ Token: 'pkcs11:token=M?pin-value=1234' }), /"Ceremony\.Token" must not contain pin-value/],
    ['Token naming an object', plan({ Token: 'pkcs11:token=M;object=x' }), /"Ceremony\.Token" must name a token, not an object/],
    ['KeyOrigin missing', plan({ KeyOrigin: undefined }), /"Ceremony\.KeyOrigin" is required/],
    ['KeyOrigin unknown', plan({ KeyOrigin: 'generate' }), /"Ceremony\.KeyOrigin" must be one of generate-on-token, import-with-escrow, generate-on-token-wrapped/],
    ['wrapped on a software store', plan({ KeyOrigin: 'generate-on-token-wrapped', Token: 'file:/tmp/k.json' }), /"Ceremony\.KeyOrigin" generate-on-token-wrapped needs a PKCS#11 token/],
    ['Algorithms not an object', plan({ Algorithms: 'Ed448' }), /"Ceremony\.Algorithms" must be an object/],
    ['Algorithms.Signature X448', plan({ Algorithms: { Signature: 'X448' } }), /"Ceremony\.Algorithms\.Signature" must be one of Ed25519, Ed448, P-256/],
    ['Algorithms.Escrow Ed448', plan({ Algorithms: { Escrow: 'Ed448' } }), /"Ceremony\.Algorithms\.Escrow" must be one of X25519, X448, P-256/],
    ['Algorithms unknown member', plan({ Algorithms: { Hash: 'SHA-512' } }), /"Ceremony\.Algorithms\.Hash" is not a plan field/],
    ['Labels equal', plan({ Labels: { Signature: 'k', Escrow: 'k' } }), /"Ceremony\.Labels\.Escrow" must differ/],
    ['Labels.Signature empty', plan({ Labels: { Signature: '' } }), /"Ceremony\.Labels\.Signature" must not be empty/],
    ['Administrators missing', plan({ Administrators: undefined }), /"Ceremony\.Administrators" is required/],
    ['Administrators empty', plan({ Administrators: [] }), /"Ceremony\.Administrators" must list at least one/],
    ['Administrator without Name', plan({ Administrators: [{ Key: 'file:/k#a' }] }), /"Ceremony\.Administrators\[0\]\.Name" must be a string/],
    ['Administrator with both', plan({ Administrators: [{ Name: 'a', Key: 'file:/k#a', PublicKey: ADMIN_JWK }] }), /"Ceremony\.Administrators\[0\]" must have exactly one of Key/],
    ['Administrator Key scheme', plan({ Administrators: [{ Name: 'a', Key: 'smartcard' }] }), /"Ceremony\.Administrators\[0\]\.Key" must be a pkcs11: URI or a file:PATH#LABEL/],
    ['Administrator file: without label', plan({ Administrators: [{ Name: 'a', Key: 'file:/k.json' }] }), /"Ceremony\.Administrators\[0\]\.Key" must name a key/],
    ['Administrator private JWK', plan({ Administrators: [{ Name: 'a', PublicKey: { ...ADMIN_JWK, d: 'AAAA' } }] }), /"Ceremony\.Administrators\[0\]\.PublicKey" must be a public key/],
    ['Administrator bad JWK', plan({ Administrators: [{ Name: 'a', PublicKey: { kty: 'OKP', crv: 'Ed25519', x: 'AA' } }] }), /"Ceremony\.Administrators\[0\]\.PublicKey" is not a valid public key JWK/],
    ['Administrator X25519 key', plan({ Administrators: [{ Name: 'a', PublicKey: { kty: 'OKP', crv: 'X25519', x: 'hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo' } }] }), /"Ceremony\.Administrators\[0\]\.PublicKey" must be a signature key/],
    ['Administrator names repeated', plan({ Administrators: [{ Name: 'a', PublicKey: ADMIN_JWK }, { Name: 'a', PublicKey: ADMIN_JWK }] }), /"Ceremony\.Administrators\[1\]\.Name" repeats/],
    ['Custodians missing', plan({ Custodians: undefined }), /"Ceremony\.Custodians" is required for import-with-escrow/],
    ['Custodians not names', plan({ Custodians: ['Carol', 7] }), /"Ceremony\.Custodians\[1\]" must be a string/],
    ['one custodian', plan({ Custodians: ['Carol'], Threshold: 1 }), /"Ceremony\.Custodians" must list at least 2/],
    ['16 custodians', plan({ Custodians: Array.from({ length: 16 }, (_, i) => `c${i}`) }), /"Ceremony\.Custodians" must list at most 15/],
    ['custodian repeated', plan({ Custodians: ['Carol', 'Carol', 'Dave'] }), /"Ceremony\.Custodians\[1\]" repeats/],
    ['Threshold missing', plan({ Threshold: undefined }), /"Ceremony\.Threshold" is required/],
    ['Threshold 1', plan({ Threshold: 1 }), /"Ceremony\.Threshold" must be from 2 to the number of custodians \(5\), got 1/],
    ['Threshold > n', plan({ Threshold: 6 }), /"Ceremony\.Threshold" must be from 2 to the number of custodians \(5\), got 6/],
    ['Threshold not an integer', plan({ Threshold: 2.5 }), /"Ceremony\.Threshold" must be an integer/],
    ['Threshold a string', plan({ Threshold: '3' }), /"Ceremony\.Threshold" must be an integer/],
    ['Witnesses not an array', plan({ Witnesses: 'Heidi' }), /"Ceremony\.Witnesses" must be an array/],
    ['Names with an empty name', plan({ Names: [''] }), /"Ceremony\.Names\[0\]" must not be empty/],
  ];
  it.each(cases)('%s is refused naming the field', (_name, bytes, message) => {
    expect(() => parsePlan(bytes)).toThrow(expect.objectContaining({ code: ErrorCode.CEREMONY_PLAN, message: expect.stringMatching(message) }));
  });

  it('refuses a non-Uint8Array', () => {
    expect(() => parsePlan('{}' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('meshkit ceremony run with an invalid plan (built CLI)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshkit-plan-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const cli = (args: string[]) => spawnSync(process.execPath, [resolve('bin/meshkit.js'), 'ceremony', ...args], { cwd: dir, input: '', encoding: 'utf8' });

  it.each([
    ['Threshold', { Threshold: 9 }, 'Ceremony.Threshold'],
    ['Algorithms.Signature', { Algorithms: { Signature: 'RSA' } }, 'Ceremony.Algorithms.Signature'],
    ['KeyOrigin', { KeyOrigin: 'later' }, 'Ceremony.KeyOrigin'],
  ])('%s: exit 1, one line naming the field, DIR not created', (_n, change, field) => {
    const path = join(dir, `${field}.json`);
    writeFileSync(path, plan(change));
    const out = join(dir, `out-${field}`);
    const r = cli(['run', '--plan', path, '--out', out, '--yes', '--pin-env', 'X']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`"${field}"`);
    expect(r.stderr).toContain('ERR_CEREMONY_PLAN_INVALID');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
  });

  it('a missing plan file exits 1', () => {
    const r = cli(['run', '--plan', join(dir, 'nope.json'), '--out', join(dir, 'o'), '--yes']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('cannot read the plan');
  });

  it('--out missing is a usage error (exit 2)', () => {
    const r = cli(['run', '--plan', join(dir, 'x.json')]);
    expect(r.status).toBe(2);
  });
});
