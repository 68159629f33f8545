/**
 * Test fixture: a scratch SoftHSM2 token directory.
 *
 * `createSoftHsm([{ label: 'master' }])` writes a softhsm2.conf and a token directory under
 * os.tmpdir(), initialises each token with softhsm2-util (by label: SoftHSM gives initialised tokens
 * random slot ids), and sets `process.env.SOFTHSM2_CONF` — call it at the top of a test file, before
 * the module is first loaded in that process (SoftHSM reads the variable in C_Initialize). The system
 * token store is never touched. vitest runs each test file in its own process (`pool: 'forks'`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
];

/** The SoftHSM2 module path, when installed. */
export const SOFTHSM_MODULE: string | undefined = process.env['MESHKIT_SOFTHSM_MODULE'] ?? CANDIDATES.find((p) => existsSync(p));

function hasUtil(): boolean {
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** Why SoftHSM tests cannot run here, or undefined when they can. */
export const softhsmMissing: string | undefined =
  SOFTHSM_MODULE === undefined
    ? 'SoftHSM2 is not installed (no libsofthsm2.so; apt-get install softhsm2)'
    : !hasUtil()
      ? 'softhsm2-util is not on PATH (apt-get install softhsm2)'
      : undefined;

if (softhsmMissing !== undefined) console.warn(`skipping SoftHSM tests: ${softhsmMissing}`);

export interface SoftHsmToken {
  label: string;
  userPin: string;
  soPin: string;
}

export interface SoftHsmFixture {
  modulePath: string;
  conf: string;
  dir: string;
  tokens: Record<string, SoftHsmToken>;
  /** Initialises another token in the same directory (works before or after the module is loaded). */
  addToken(label: string, userPin?: string, soPin?: string): SoftHsmToken;
  /** `pkcs11:token=LABEL?module-path=…` */
  uri(label: string, extra?: string): string;
  cleanup(): void;
}

/**
 * A fresh scratch directory under os.tmpdir() with an empty token directory and a softhsm2.conf
 * pointing at it (never the system token store). The caller removes `dir`.
 */
export function makeSoftHsmDir(prefix = 'meshkit-softhsm-'): { dir: string; tokens: string; conf: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    [
      `directories.tokendir = ${tokens}`,
      'objectstore.backend = file',
      'log.level = ERROR',
      'slots.removable = false',
      'slots.mechanisms = ALL',
      'library.reset_on_fork = false',
      '',
    ].join('\n'),
  );
  return { dir, tokens, conf };
}

/**
 * Creates the scratch directory, conf and tokens, and sets SOFTHSM2_CONF.
 * @throws Error when SoftHSM is missing (guard with `describe.skipIf(softhsmMissing)`).
 */
export function createSoftHsm(tokens: Array<{ label: string; userPin?: string; soPin?: string }>): SoftHsmFixture {
  if (softhsmMissing !== undefined || SOFTHSM_MODULE === undefined) throw new Error(softhsmMissing);
  const { dir, conf } = makeSoftHsmDir();
  process.env['SOFTHSM2_CONF'] = conf;
  const modulePath = SOFTHSM_MODULE;
  const made: Record<string, SoftHsmToken> = {};
  const addToken = (label: string, userPin = '1234', soPin = '12345678'): SoftHsmToken => {
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--so-pin', soPin, '--pin', userPin], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
      stdio: 'pipe',
    });
    const t = { label, userPin, soPin };
    made[label] = t;
    return t;
  };
  for (const t of tokens) addToken(t.label, t.userPin, t.soPin);
  return {
    modulePath,
    conf,
    dir,
    tokens: made,
    addToken,
    uri: (label, extra = '') => `pkcs11:token=${encodeURIComponent(label)}${extra}?module-path=${modulePath}`,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
