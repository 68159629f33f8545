/**
 * `meshkit token init|list` through the built CLI against a scratch SoftHSM2 (SOFTHSM2_CONF in a temp
 * directory; the system token store is not touched). Needs `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/core/errors.js';
import { SOFTHSM_MODULE, meshkit, requireTools, scratchSoftHsm, type Run } from '../helpers/softhsm-cli.js';

const SO_PIN = 'so-7720194';
const USER_PIN = 'user-5581932';
const hsm = scratchSoftHsm('meshkit-cli-token-');
const outputs: Run[] = [];
afterAll(() => hsm.cleanup());

function cli(args: string[], env: Record<string, string> = {}): Run {
  const r = meshkit(args, hsm, { env });
  outputs.push(r);
  return r;
}
const pins = { SO_P: SO_PIN, USER_P: USER_PIN };

interface ListedSlot {
  slotId: string | number;
  tokenPresent: boolean;
  token?: { label: string; initialized: boolean; loginRequired: boolean };
  capabilities?: {
    mechanisms: Array<{ name: string }>;
    curves: Record<string, { generate: boolean; sign?: boolean; derive?: boolean; keyType: string | null }>;
    wrap: { aesKeyWrap: boolean; aesKeyWrapPad: boolean };
    quirks: string[];
  };
}

beforeAll(() => requireTools());

describe('meshkit token init / list (SoftHSM2)', () => {
  it('init --label T --so-pin-env --pin-env initialises the free slot', () => {
    const r = cli(['token', 'init', '--module', SOFTHSM_MODULE, '--label', 'CliToken', '--so-pin-env', 'SO_P', '--pin-env', 'USER_P', '--json'], pins);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { module: string; slot: ListedSlot };
    expect(out.module).toBe(SOFTHSM_MODULE);
    expect(out.slot.token).toMatchObject({ label: 'CliToken', initialized: true, loginRequired: true });
  });

  it('list --json shows the token by label with a capability table (and the new free slot)', () => {
    const r = cli(['token', 'list', '--module', SOFTHSM_MODULE, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { module: { path: string; cryptokiVersion: string }; slots: ListedSlot[] };
    expect(out.module.path).toBe(SOFTHSM_MODULE);
    const mine = out.slots.filter((s) => s.token?.label === 'CliToken');
    expect(mine).toHaveLength(1);
    const caps = mine[0]!.capabilities!;
    expect(caps.curves['Ed25519']).toMatchObject({ generate: true, sign: true, keyType: 'CKK_EC_EDWARDS' });
    expect(caps.curves['Ed448']).toMatchObject({ generate: true, sign: true });
    expect(caps.curves['P-256']).toMatchObject({ generate: true, sign: true, derive: true, keyType: 'CKK_EC' });
    expect(caps.curves['X25519']).toMatchObject({ generate: true, derive: true });
    expect(caps.wrap).toMatchObject({ aesKeyWrap: true, aesKeyWrapPad: true });
    expect(caps.mechanisms.map((m) => m.name)).toEqual(expect.arrayContaining(['CKM_EDDSA', 'CKM_ECDSA', 'CKM_ECDH1_DERIVE']));
    // SoftHSM always offers one more uninitialised token after an init.
    expect(out.slots.some((s) => s.token !== undefined && !s.token.initialized)).toBe(true);
  });

  it('list (human) prints the label, the PIN state and the curve table', () => {
    const r = cli(['token', 'list'], { MESHKIT_PKCS11_MODULE: SOFTHSM_MODULE });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"CliToken"');
    expect(r.stdout).toMatch(/curve\s+generate\s+sign\s+derive\s+key type/);
    expect(r.stdout).toMatch(/Ed25519\s+yes\s+yes/);
    expect(r.stdout).toContain('(free, not initialised)');
    expect(r.stdout).toContain('login required');
  });

  it('the module defaults to SoftHSM when neither --module nor MESHKIT_PKCS11_MODULE is given', () => {
    const r = cli(['token', 'list', '--json']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { module: { path: string } }).module.path).toBe(SOFTHSM_MODULE);
  });

  it('init with a label that exists fails (exit 1) and leaves the token alone', () => {
    const r = cli(['token', 'init', '--label', 'CliToken', '--so-pin-env', 'SO_P', '--pin-env', 'USER_P'], pins);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already exists/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('init with no SO PIN source and no TTY is a usage error (exit 2)', () => {
    const r = cli(['token', 'init', '--label', 'Other', '--pin-env', 'USER_P'], { USER_P: USER_PIN });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--so-pin-env');
  });

  it('init with an unset PIN variable fails with ERR_SECRET_SOURCE (exit 1)', () => {
    const r = cli(['token', 'init', '--label', 'Other', '--so-pin-env', 'SO_P', '--pin-env', 'NOT_SET_ANYWHERE'], { SO_P: SO_PIN });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(ErrorCode.SECRET_SOURCE);
  });

  it('a wrong module path fails with ERR_PKCS11_MODULE (exit 1), from --module or MESHKIT_PKCS11_MODULE', () => {
    const a = cli(['token', 'list', '--module', '/nonexistent/libnope.so']);
    expect(a.code).toBe(1);
    expect(a.stderr).toContain(ErrorCode.PKCS11_MODULE);
    expect(a.stderr).toContain('/nonexistent/libnope.so');
    expect(a.stderr.trim().split('\n')).toHaveLength(1);
    const b = cli(['token', 'list'], { MESHKIT_PKCS11_MODULE: '/etc/hostname' });
    expect(b.code).toBe(1);
    expect(b.stderr).toContain(ErrorCode.PKCS11_MODULE);
  });

  it('token without a subcommand or init without --label are usage errors (exit 2)', () => {
    expect(cli(['token', 'init', '--so-pin-env', 'SO_P']).code).toBe(2);
    expect(cli(['token', 'frobnicate']).code).toBe(2);
  });

  it('no PIN ever appears in stdout or stderr', () => {
    expect(outputs.length).toBeGreaterThan(8);
    for (const r of outputs) {
      for (const text of [r.stdout, r.stderr]) {
        expect(text).not.toContain(SO_PIN);
        expect(text).not.toContain(USER_PIN);
      }
    }
  });
});
