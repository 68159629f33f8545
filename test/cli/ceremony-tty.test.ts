/**
 * `meshkit ceremony run` without --yes, driven on a REAL terminal (a pseudo-terminal made by
 * util-linux `script`, test/helpers/pty.ts) by keystrokes, as a person would: the built CLI
 * (`npm run build` first), SoftHSM tokens in scratch directories (test/helpers/ceremony.ts).
 *
 * 1. happy path: each step confirmed (Enter or "y"), the token and administrator PINs typed at masked
 *    prompts (only the token's PIN state line, the question and mask characters on screen, never the
 *    PIN), each share shown alone with the screen AND the scrollback cleared before and after it
 *    (`\x1b[2J\x1b[3J\x1b[H`), its header naming where the file is now (the staging directory — it is
 *    there, not yet in DIR/shares) and where it ends up, the operator and witnesses type their names
 *    (a witness's first entry not matching exactly is refused with "try again (2 left)" and the second
 *    accepted); then `ceremony verify` passes and the transcript records the typed names;
 * 1b. a name that does not match three times: the ceremony stops (exit 1, ERR_CEREMONY_STATE) with the
 *    abort instruction after "(2 left)" and "(1 left)"; `ceremony abort` cleans;
 * 2. a declined step ("n"): exit 1 naming the step; before keys-intent nothing is left (no DIR, no
 *    token objects); after it, the message says to run `ceremony abort`, which (typed PIN) removes
 *    exactly the labelled token objects and the staging directory (docs/ceremony.md "Crash safety");
 * 3. a wrong PIN typed: exit 1 naming the token and what it reports about the PIN
 *    (CKF_USER_PIN_COUNT_LOW), `token list` shows the retry state, nothing created; the next run's
 *    token PIN prompt shows the failed attempt above the question, the right PIN works; likewise for
 *    the administrator key's PIN prompt (its own token's state);
 * 4. Ctrl+C at a prompt (a step confirmation, the token PIN prompt, a share on screen): exit 1 with
 *    ERR_CEREMONY_STATE "the operator interrupted the ceremony (Ctrl+C) at step …", never the prompt
 *    library's own text; before keys-intent nothing is left and no abort instruction; after it, the
 *    message says to run `ceremony abort`, `run` refuses the DIR with abort instructions and `abort`
 *    cleans; a share on screen is cleared (screen and scrollback) on Ctrl+C too;
 * 5. stdin not a terminal and no --yes: the usage error (exit 2).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseShareFile } from '../../src/ceremony/files.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { BIN, fixture, type CeremonyFixture } from '../helpers/ceremony.js';
import { KEYS, ptyMissing, spawnPty, stripAnsi, type Pty } from '../helpers/pty.js';

const LABELS = ['mesh-master-signature', 'mesh-master-escrow'];
/** Screen, scrollback, cursor home (docs/ceremony.md "Interactive ceremony"). */
const CLEAR = '\x1b[2J\x1b[3J\x1b[H';
/** What @inquirer/prompts itself says on Ctrl+C: must never reach the operator unexplained. */
const INQUIRER_SIGINT = 'User force closed the prompt';
const skipReason = softhsmMissing ?? ptyMissing;
if (skipReason !== undefined) console.warn(`skipping the ceremony terminal tests: ${skipReason}`);

/** The child's environment: the fixture's, without the PIN variables (so only the prompts can supply them). */
function ttyEnv(f: CeremonyFixture): Record<string, string> {
  const env: Record<string, string> = { ...f.env, TERM: 'xterm' };
  delete env['MASTER_PIN'];
  delete env['ADMIN_PIN'];
  return env;
}

function startRun(f: CeremonyFixture, extra: string[] = []): Pty {
  return spawnPty(process.execPath, [BIN, 'ceremony', 'run', '--plan', f.planPath, '--out', f.out, ...extra], { env: ttyEnv(f), cwd: f.dir });
}

/** Labels of the objects on the fixture's master token, read by pkcs11-tool (a fresh process). */
function tokenLabels(f: CeremonyFixture): string[] {
  const text = execFileSync(
    'pkcs11-tool',
    ['--module', f.hsm.modulePath, '--token-label', f.tokenLabel, '--login', '--pin', f.pinEnv['MASTER_PIN']!, '--list-objects'],
    { env: f.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return [...new Set([...text.matchAll(/^\s*label:\s*(.*)$/gm)].map((m) => m[1]!.trim()))];
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Answers the confirmation of step `step` and waits for the answered line. */
async function confirmStep(t: Pty, step: string, answer: 'enter' | 'y' | 'n' = 'enter'): Promise<void> {
  await t.expect(new RegExp(`\\? Step "${escapeRe(step)}": [^\\n]*Proceed\\? \\(Y/n\\)`));
  t.write(answer === 'enter' ? KEYS.enter : `${answer}${KEYS.enter}`);
  await t.expect(new RegExp(`✔ Step "${escapeRe(step)}": [^\\n]*Proceed\\? ${answer === 'n' ? 'No' : 'Yes'}\\n`));
}

/** The label in a `pkcs11:token=LABEL…` URI. */
function labelOf(uri: string): string {
  const m = /token=([^;?]+)/.exec(uri);
  if (m === null) throw new Error(`no token= in ${uri}`);
  return decodeURIComponent(m[1]!);
}

/**
 * Waits for a PIN prompt: the token's PIN state line (`LABEL: …`, src/cli/pin-status.ts) above the
 * question `message:`; returns the state line.
 */
async function pinPrompt(t: Pty, message: string, label: string): Promise<string> {
  const m = await t.expect(new RegExp(`\\? (${escapeRe(label)}: [^\\n]*)\\n${escapeRe(message)}:`));
  return m[1]!;
}

/**
 * Types a secret one key at a time at a masked prompt whose question is `message`, with the token's
 * PIN state line for `label` above it, checking the mask grows by one `*` per key; returns the state
 * line and the terminal text of the whole prompt (first render to the final ✔ line).
 */
async function typeSecret(t: Pty, message: string, label: string, secret: string): Promise<{ status: string; text: string }> {
  const from = t.text().length;
  const status = await pinPrompt(t, message, label);
  for (let i = 1; i <= secret.length; i++) {
    t.write(secret[i - 1]!);
    await t.expect(new RegExp(`${escapeRe(message)}: \\*{${i}}(?!\\*)`));
  }
  t.write(KEYS.enter);
  await t.expect(new RegExp(`✔ [^\\n]*\\n${escapeRe(message)}: \\*{${secret.length}}\\n`));
  return { status, text: t.text().slice(from) };
}

/**
 * Types a name at the acknowledgement prompt for `who`: `who` itself, or `opts.as` (what a person
 * mistypes); with `opts.typo` a typo is made and corrected by Backspace first.
 */
async function typeName(t: Pty, role: 'Operator' | 'Witness', who: string, opts: { typo?: boolean; as?: string } = {}): Promise<void> {
  const message = `${role} ${who}: type your name to confirm the ceremony`;
  const typed = opts.as ?? who;
  await t.expect(new RegExp(`\\? ${escapeRe(message)}`));
  if (opts.typo === true) {
    t.write(`${typed.slice(0, -1)}x`);
    await t.expect(new RegExp(`${escapeRe(message)} ${escapeRe(typed.slice(0, -1))}x`));
    t.write(KEYS.backspace);
    t.write(typed.slice(-1));
  } else {
    t.write(typed);
  }
  // white space around the name is on screen but not at the line's end (the terminal shows no trailing blank)
  const shown = `${escapeRe(message)} \\s*${escapeRe(typed.trim())}`;
  await t.expect(new RegExp(shown));
  t.write(KEYS.enter);
  await t.expect(new RegExp(`✔ ${shown}\\s*\\n`));
}

/** The token PIN prompt of the fixture's master token (its state line above it); types `pin`. */
function tokenPin(t: Pty, f: CeremonyFixture, pin = f.pinEnv['MASTER_PIN']!): Promise<{ status: string; text: string }> {
  return typeSecret(t, `PIN for token pkcs11:token=${f.tokenLabel}`, f.tokenLabel, pin);
}

/** The administrator alice-card's PIN prompt (its card token's state line above it); types `pin`. */
function adminPin(t: Pty, f: CeremonyFixture, pin = f.pinEnv['ADMIN_PIN']!): Promise<{ status: string; text: string }> {
  return typeSecret(t, 'PIN for administrator alice-card', labelOf(f.adminTokenUri), pin);
}

/** The opening every run shares: confirms "plan" and "preflight", then types the master token's and the admin's PINs. */
async function throughPins(t: Pty, f: CeremonyFixture): Promise<void> {
  await confirmStep(t, 'plan');
  await confirmStep(t, 'preflight');
  await tokenPin(t, f);
  await adminPin(t, f);
}

/** Waits for the CLI to exit and checks its exit code (the terminal text is the failure message). */
async function expectExit(t: Pty, expected: number): Promise<void> {
  const { code } = await t.exit();
  expect(code, t.text()).toBe(expected);
}

/** Runs `steps` on the terminal, then kills the child whatever happened (a failed expectation leaves no process). */
async function drive<T>(t: Pty, steps: () => Promise<T>): Promise<T> {
  try {
    return await steps();
  } finally {
    t.kill();
  }
}

/** Presses Ctrl+C and expects the CLI to exit with 1. */
async function interrupt(t: Pty): Promise<void> {
  t.write(KEYS.ctrlC);
  await expectExit(t, 1);
}

/** What the last lines of the terminal say once the process has exited (the error line). */
function lastError(t: Pty): string {
  return t.text().split('\n').filter((l) => l.startsWith('meshkit: ')).join('\n');
}

describe.skipIf(skipReason !== undefined)('meshkit ceremony run on a real terminal (pty, built CLI, SoftHSM)', () => {
  beforeAll(() => {
    if (!existsSync('dist/cli/commands/ceremony.js')) throw new Error('dist/ missing or stale: run "npm run build" before these tests');
  });

  it('a person runs the whole ceremony: masked PINs, every step confirmed, one share per screen, names typed; verify passes', async () => {
    const custodians = ['Carol', 'Dave', 'Erin'];
    const f = await fixture({ origin: 'import-with-escrow', threshold: 2, custodians, witnesses: ['Heidi', 'Ivan'] });
    const masterPin = f.pinEnv['MASTER_PIN']!;
    const adminPinValue = f.pinEnv['ADMIN_PIN']!;
    const t = startRun(f, ['--operator', 'Olivia']);
    const seenWhileShown: Array<{ staged: boolean; published: boolean }> = [];
    await drive(t, async () => {
      await confirmStep(t, 'plan');
      await confirmStep(t, 'preflight', 'y');
      const tokenPrompt = await tokenPin(t, f, masterPin);
      const adminPrompt = await adminPin(t, f, adminPinValue);
      // the PIN state each token reports is shown above its prompt (fresh tokens: nothing failed)
      expect(tokenPrompt.status).toMatch(new RegExp(`^${escapeRe(f.tokenLabel)}: `));
      expect(adminPrompt.status).toMatch(new RegExp(`^${escapeRe(labelOf(f.adminTokenUri))}: `));
      for (const p of [tokenPrompt, adminPrompt]) expect(p.status).not.toMatch(/CKF_USER_PIN_(COUNT_LOW|FINAL_TRY|LOCKED)/);
      // on screen during each PIN prompt: only the state line, the question and mask characters
      for (const [p, message] of [[tokenPrompt, `PIN for token pkcs11:token=${f.tokenLabel}:`], [adminPrompt, 'PIN for administrator alice-card:']] as const) {
        expect(p.text.split(message).join('').split(p.status).join('').replace(/[?✔\s*]/g, ''), p.text).toBe('');
      }
      await confirmStep(t, 'keys');
      await confirmStep(t, 'escrow');
      for (const [i, custodian] of custodians.entries()) {
        const staged = join(f.out, '.staging', 'shares', `${i + 1}.txt`);
        const final = join(f.out, 'shares', `${i + 1}.txt`);
        await t.expect(
          new RegExp(`Share ${i + 1} of ${custodians.length} for ${custodian} \\(written to ${escapeRe(staged)}; moved to ${escapeRe(final)} when the ceremony finishes\\):`),
        );
        await t.expect(new RegExp(`\\? ${custodian}: have you taken your share card\\? \\(the screen is cleared next\\) \\(Y/n\\)`));
        // the header tells the truth: the file is where it says now, not yet where it ends up
        seenWhileShown.push({ staged: existsSync(staged), published: existsSync(final) });
        t.write(KEYS.enter);
        await t.expect(new RegExp(`✔ ${custodian}: have you taken your share card\\?[^\\n]*Yes\\n`));
      }
      await confirmStep(t, 'import', 'y');
      await confirmStep(t, 'profiles');
      await confirmStep(t, 'verify');
      await typeName(t, 'Operator', 'Olivia');
      // a witness's entry that is not exactly the plan's name (case differs): refused, a second try offered
      await typeName(t, 'Witness', 'Heidi', { as: 'heidi' });
      await t.expect(/"heidi" does not match the plan's name "Heidi" \(exact match\), try again \(2 left\)\n/);
      await typeName(t, 'Witness', 'Heidi');
      await typeName(t, 'Witness', 'Ivan', { typo: true });
      await t.expect(/ceremony \S+ done \(import-with-escrow\)/);
      await expectExit(t, 0);
    });
    expect(seenWhileShown).toEqual(custodians.map(() => ({ staged: true, published: false })));
    expect(t.text()).not.toContain('(1 left)');

    const raw = t.raw();
    // the PINs never reached the terminal (not typed back, not echoed by the line discipline, not in a message)
    expect(raw).not.toContain(masterPin);
    expect(raw).not.toContain(adminPinValue);

    // each share on a screen of its own: the screen and the scrollback are cleared before and after it,
    // and what is on the screen between two clears holds exactly one share
    const shares = custodians.map((_, i) => parseShareFile(readFileSync(join(f.out, 'shares', `${i + 1}.txt`), 'utf8')));
    const screens = raw.split(CLEAR);
    for (const [i, share] of shares.entries()) {
      const holding = screens.map((s, n) => [n, stripAnsi(s)] as const).filter(([, s]) => s.includes(share.share));
      expect(holding.map(([n]) => n), `share ${i + 1} is shown on exactly one screen`).toHaveLength(1);
      const [n, screen] = holding[0]!;
      expect(n, 'a clear of screen and scrollback precedes the share').toBeGreaterThan(0);
      expect(n, 'a clear of screen and scrollback follows the share').toBeLessThan(screens.length - 1);
      expect(screen).toContain(`Share ${i + 1} of ${custodians.length} for ${custodians[i]}`);
      for (const [j, other] of shares.entries()) if (j !== i) expect(screen, `share ${j + 1} on the screen of share ${i + 1}`).not.toContain(other.share);
      // the screen right after the share's clear does not show it any more
      expect(stripAnsi(screens[n + 1]!)).not.toContain(share.share);
    }

    // the ceremony verifies offline, and the transcript records the typed acknowledgements
    const verify = spawnSync(process.execPath, [BIN, 'ceremony', 'verify', f.out], { cwd: f.dir, env: f.env, input: '', encoding: 'utf8' });
    expect(verify.status, verify.stderr).toBe(0);
    const entries = readFileSync(join(f.out, 'transcript.jsonl'), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
    expect(entries.find((e) => e.Type === 'plan').Body.Operator).toBe('Olivia');
    expect(entries.find((e) => e.Type === 'acknowledgement').Body.Acknowledgements).toEqual([
      { Name: 'Olivia', Role: 'operator', Confirmed: 'typed name' },
      { Name: 'Heidi', Role: 'witness', Confirmed: 'typed name' },
      { Name: 'Ivan', Role: 'witness', Confirmed: 'typed name' },
    ]);
    expect(readFileSync(join(f.out, 'transcript.jsonl'), 'utf8')).not.toContain(masterPin);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l)).sort()).toEqual([...LABELS].sort());
  }, 180_000);

  it('a name that does not match three times: exit 1 after "(2 left)" and "(1 left)", with the abort instruction; `ceremony abort` cleans', async () => {
    const f = await fixture({ origin: 'generate-on-token', witnesses: ['Heidi'] });
    const t = startRun(f, ['--operator', 'Olivia']);
    await drive(t, async () => {
      await throughPins(t, f);
      await confirmStep(t, 'keys');
      await confirmStep(t, 'profiles');
      await confirmStep(t, 'verify');
      // leading/trailing white space is ignored
      await typeName(t, 'Operator', 'Olivia', { as: ' Olivia ' });
      // otherwise exact: case and accents count
      await typeName(t, 'Witness', 'Heidi', { as: 'heidi' });
      await t.expect(/"heidi" does not match the plan's name "Heidi" \(exact match\), try again \(2 left\)\n/);
      await typeName(t, 'Witness', 'Heidi', { as: 'Heídi' });
      await t.expect(/"Heídi" does not match the plan's name "Heidi" \(exact match\), try again \(1 left\)\n/);
      await typeName(t, 'Witness', 'Heidi', { as: 'Heidi H.' });
      await expectExit(t, 1);
    });
    const after = t.text();
    expect(after).not.toContain('(0 left)');
    expect(lastError(t)).toBe(
      `meshkit: witness "Heidi" did not confirm: 3 attempts did not match the plan's name exactly (last typed "Heidi H.") — ` +
        `the ceremony was interrupted after keys-intent; run "meshkit ceremony abort --plan PLAN --out ${f.out}" to remove what it created [ERR_CEREMONY_STATE]`,
    );
    expect(after).not.toMatch(/ceremony \S+ done/);
    // nothing published; the keys are on the token until `ceremony abort` removes them
    expect(readdirSync(f.out)).toEqual(['.staging']);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l)).sort()).toEqual([...LABELS].sort());
    const abort = spawnSync(process.execPath, [BIN, 'ceremony', 'abort', '--plan', f.planPath, '--out', f.out, '--pin-env', 'MASTER_PIN'], { cwd: f.dir, env: f.env, input: '', encoding: 'utf8' });
    expect(abort.status, abort.stderr).toBe(0);
    expect(existsSync(f.out) ? readdirSync(f.out) : []).toEqual([]);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l))).toEqual([]);
  }, 180_000);

  it('declining a step before any key is made ("n" at "keys"): exit 1 naming the step; no DIR, nothing on the token', async () => {
    const f = await fixture({ origin: 'import-with-escrow', threshold: 2, custodians: ['Carol', 'Dave'] });
    const t = startRun(f, ['--operator', 'Olivia']);
    await drive(t, async () => {
      await throughPins(t, f);
      await confirmStep(t, 'keys', 'n');
      await expectExit(t, 1);
    });
    const after = t.text();
    expect(after).toContain('the ceremony was stopped by the operator before step "keys"');
    expect(after).toContain('[ERR_CEREMONY_STATE]');
    expect(after).not.toContain('ceremony abort'); // nothing to abort
    expect(after).not.toMatch(/✓ keys/);
    expect(existsSync(f.out)).toBe(false);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l))).toEqual([]);
  }, 180_000);

  it('declining a step after the keys are on the token ("n" at "profiles"): exit 1 with abort instructions; `ceremony abort` (PIN typed) leaves nothing', async () => {
    const f = await fixture({ origin: 'import-with-escrow', threshold: 2, custodians: ['Carol', 'Dave'] });
    const t = startRun(f, ['--operator', 'Olivia']);
    await drive(t, async () => {
      await throughPins(t, f);
      await confirmStep(t, 'keys');
      await confirmStep(t, 'escrow');
      for (const c of ['Carol', 'Dave']) {
        await t.expect(new RegExp(`\\? ${c}: have you taken your share card\\?[^\\n]*\\(Y/n\\)`));
        t.write(KEYS.enter);
        await t.expect(new RegExp(`✔ ${c}: have you taken your share card\\?[^\\n]*Yes\\n`));
      }
      await confirmStep(t, 'import');
      await confirmStep(t, 'profiles', 'n');
      await expectExit(t, 1);
    });
    const after = t.text();
    expect(after).toContain('the ceremony was stopped by the operator before step "profiles"');
    expect(after).toContain(`run "meshkit ceremony abort --plan PLAN --out ${f.out}"`);
    // what an interrupted ceremony leaves (docs/ceremony.md "Crash safety"): the staging directory, the keys on the token
    expect(readdirSync(f.out)).toEqual(['.staging']);
    const staged = readFileSync(join(f.out, '.staging', 'transcript.jsonl'), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l).Type);
    expect(staged).toEqual(['plan', 'preflight', 'keys-intent', 'keys', 'escrow', 'import']);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l)).sort()).toEqual([...LABELS].sort());

    // `ceremony abort` on the terminal, PIN typed (its state line above): deletes exactly the labelled keys and the staging directory
    const a = spawnPty(process.execPath, [BIN, 'ceremony', 'abort', '--plan', f.planPath, '--out', f.out], { env: ttyEnv(f), cwd: f.dir });
    try {
      await tokenPin(a, f);
      await a.expect(/aborted the ceremony in \S+ \(interrupted after import\)/);
      const { code } = await a.exit();
      expect(code, a.text()).toBe(0);
    } finally {
      a.kill();
    }
    const deleted = /deleted keys\s+(.*)\n/.exec(a.text())?.[1] ?? '';
    for (const l of LABELS) expect(deleted).toContain(l);
    expect(a.raw()).not.toContain(f.pinEnv['MASTER_PIN']!);
    expect(existsSync(f.out) ? readdirSync(f.out) : []).toEqual([]);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l))).toEqual([]);
  }, 180_000);

  it('a wrong PIN typed: exit 1 naming the token and its PIN state; the next prompts show the failed attempt (token, then administrator card)', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const wrong = `${f.pinEnv['MASTER_PIN']!}x`;
    const t = startRun(f, ['--operator', 'Olivia']);
    const first = await drive(t, async () => {
      await confirmStep(t, 'plan');
      await confirmStep(t, 'preflight');
      const prompt = await tokenPin(t, f, wrong);
      await expectExit(t, 1);
      return prompt;
    });
    expect(first.status).not.toMatch(/CKF_USER_PIN_(COUNT_LOW|FINAL_TRY|LOCKED)/);
    const after = t.text();
    expect(t.raw()).not.toContain(wrong);
    expect(after).toMatch(new RegExp(`user PIN incorrect for token "${escapeRe(f.tokenLabel)}"; the token reports a failed attempt since the last success \\(CKF_USER_PIN_COUNT_LOW\\)`));
    expect(after).toContain('[ERR_PKCS11_PIN_INCORRECT]');
    expect(after).not.toContain('PIN for administrator'); // stopped at the token's login
    expect(existsSync(f.out)).toBe(false);
    // the token's retry state, as `meshkit token list` shows it
    const list = spawnSync(process.execPath, [BIN, 'token', 'list', '--module', f.hsm.modulePath], { cwd: f.dir, env: f.env, input: '', encoding: 'utf8' });
    expect(list.status, list.stderr).toBe(0);
    const block = list.stdout.split('\n\n').find((b) => b.includes(`"${f.tokenLabel}"`));
    expect(block, list.stdout).toMatch(/PIN: wrong PIN entered before/);

    // the next run: the token PIN prompt warns of the failed attempt; the right PIN works; a wrong
    // administrator PIN fails naming the card
    const wrongAdmin = `${f.pinEnv['ADMIN_PIN']!}x`;
    const t2 = startRun(f, ['--operator', 'Olivia']);
    let second: { status: string; text: string };
    let adminFirst: { status: string; text: string };
    try {
      await confirmStep(t2, 'plan');
      await confirmStep(t2, 'preflight');
      second = await tokenPin(t2, f);
      adminFirst = await adminPin(t2, f, wrongAdmin);
      const { code } = await t2.exit();
      expect(code, t2.text()).toBe(1);
    } finally {
      t2.kill();
    }
    expect(second.status).toMatch(new RegExp(`^${escapeRe(f.tokenLabel)}: [^\\n]*CKF_USER_PIN_COUNT_LOW`));
    expect(adminFirst.status).not.toMatch(/CKF_USER_PIN_(COUNT_LOW|FINAL_TRY|LOCKED)/);
    expect(lastError(t2)).toContain(`PIN incorrect for token "${labelOf(f.adminTokenUri)}"`);
    expect(t2.raw()).not.toContain(wrongAdmin);
    expect(existsSync(f.out)).toBe(false);

    // the run after that: the master token's count was reset by the right PIN, the card warns now
    const t3 = startRun(f, ['--operator', 'Olivia']);
    let third: { status: string; text: string };
    let adminSecond: { status: string; text: string };
    try {
      await confirmStep(t3, 'plan');
      await confirmStep(t3, 'preflight');
      third = await tokenPin(t3, f);
      adminSecond = await adminPin(t3, f);
      await t3.expect(/\? Step "keys": [^\n]*\(Y\/n\)/);
      t3.write(KEYS.ctrlC);
      const { code } = await t3.exit();
      expect(code, t3.text()).toBe(1);
    } finally {
      t3.kill();
    }
    expect(third.status).not.toMatch(/CKF_USER_PIN_(COUNT_LOW|FINAL_TRY|LOCKED)/);
    expect(adminSecond.status).toMatch(new RegExp(`^${escapeRe(labelOf(f.adminTokenUri))}: [^\\n]*CKF_USER_PIN_COUNT_LOW`));
    // not locked: the right PIN still logs in, and the token holds no ceremony key
    expect(existsSync(f.out)).toBe(false);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l))).toEqual([]);
  }, 180_000);

  it('Ctrl+C at a step prompt before any key is made: exit 1, ERR_CEREMONY_STATE naming the step, no abort instruction; no DIR, nothing on the token', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const t = startRun(f, ['--operator', 'Olivia']);
    await drive(t, async () => {
      await confirmStep(t, 'plan');
      await t.expect(/\? Step "preflight": [^\n]*\(Y\/n\)/);
      await interrupt(t);
    });
    expect(lastError(t)).toBe('meshkit: the operator interrupted the ceremony (Ctrl+C) at step "preflight" [ERR_CEREMONY_STATE]');
    expect(t.text()).not.toContain(INQUIRER_SIGINT);
    expect(t.text()).not.toMatch(/✓ preflight/);
    expect(existsSync(f.out)).toBe(false);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l))).toEqual([]);
  }, 180_000);

  it('Ctrl+C at the token PIN prompt: exit 1 naming step "preflight"; the PIN prompt is left, nothing is created', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const t = startRun(f, ['--operator', 'Olivia']);
    await drive(t, async () => {
      await confirmStep(t, 'plan');
      await confirmStep(t, 'preflight');
      await pinPrompt(t, `PIN for token pkcs11:token=${f.tokenLabel}`, f.tokenLabel);
      t.write('12');
      await t.expect(/: \*\*(?!\*)/);
      await interrupt(t);
    });
    expect(lastError(t)).toBe('meshkit: the operator interrupted the ceremony (Ctrl+C) at step "preflight" [ERR_CEREMONY_STATE]');
    expect(t.text()).not.toContain(INQUIRER_SIGINT);
    expect(t.text()).not.toContain('PIN for administrator');
    expect(existsSync(f.out)).toBe(false);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l))).toEqual([]);
  }, 180_000);

  it('Ctrl+C at a step prompt after the keys are made: exit 1 with the abort instruction; `run` refuses the DIR with abort instructions and `abort` cleans', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const t = startRun(f, ['--operator', 'Olivia']);
    await drive(t, async () => {
      await throughPins(t, f);
      await confirmStep(t, 'keys');
      await t.expect(/\? Step "profiles": [^\n]*\(Y\/n\)/);
      await interrupt(t);
    });
    expect(lastError(t)).toBe(
      `meshkit: the operator interrupted the ceremony (Ctrl+C) at step "profiles" — the ceremony was interrupted after keys-intent; ` +
        `run "meshkit ceremony abort --plan PLAN --out ${f.out}" to remove what it created [ERR_CEREMONY_STATE]`,
    );
    expect(t.text()).not.toContain(INQUIRER_SIGINT);
    expect(readdirSync(f.out)).toEqual(['.staging']);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l)).sort()).toEqual([...LABELS].sort());
    const cli = (args: string[]) => spawnSync(process.execPath, [BIN, 'ceremony', ...args], { cwd: f.dir, env: f.env, input: '', encoding: 'utf8' });
    const again = cli(['run', '--plan', f.planPath, '--out', f.out, '--yes', ...f.pinArgs]);
    expect(again.status, again.stderr).toBe(1);
    expect(again.stderr).toContain(`meshkit ceremony abort --plan PLAN --out ${f.out}`);
    const abort = cli(['abort', '--plan', f.planPath, '--out', f.out, '--pin-env', 'MASTER_PIN', '--json']);
    expect(abort.status, abort.stderr).toBe(0);
    expect((JSON.parse(abort.stdout) as { deletedKeys: Array<{ label: string }> }).deletedKeys.map((k) => k.label).sort()).toEqual([...LABELS].sort());
    expect(existsSync(f.out) ? readdirSync(f.out) : []).toEqual([]);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l))).toEqual([]);
  }, 180_000);

  it('Ctrl+C while a share is on screen: the screen and scrollback are cleared, exit 1 naming step "escrow" with the abort instruction', async () => {
    const f = await fixture({ origin: 'generate-on-token-wrapped', algorithms: { Signature: 'P-256', Escrow: 'P-256' }, threshold: 2, custodians: ['Carol', 'Dave'] });
    const t = startRun(f, ['--operator', 'Olivia']);
    await drive(t, async () => {
      await throughPins(t, f);
      await confirmStep(t, 'keys');
      await confirmStep(t, 'escrow');
      await t.expect(/\? Carol: have you taken your share card\?[^\n]*\(Y\/n\)/);
      await interrupt(t);
    });
    expect(lastError(t)).toBe(
      `meshkit: the operator interrupted the ceremony (Ctrl+C) at step "escrow" — the ceremony was interrupted after keys-intent; ` +
        `run "meshkit ceremony abort --plan PLAN --out ${f.out}" to remove what it created [ERR_CEREMONY_STATE]`,
    );
    expect(t.text()).not.toContain(INQUIRER_SIGINT);
    expect(t.text()).not.toContain('Share 2 of 2');
    // the share (from the staged file) was on screen, and a clear of screen and scrollback followed it
    const share = parseShareFile(readFileSync(join(f.out, '.staging', 'shares', '1.txt'), 'utf8')).share;
    const screens = t.raw().split(CLEAR);
    const holding = screens.map((s, n) => [n, stripAnsi(s)] as const).filter(([, s]) => s.includes(share)).map(([n]) => n);
    expect(holding).toHaveLength(1);
    expect(holding[0]!, 'a clear follows the share').toBeLessThan(screens.length - 1);
    const abort = spawnSync(process.execPath, [BIN, 'ceremony', 'abort', '--plan', f.planPath, '--out', f.out, '--pin-env', 'MASTER_PIN'], { cwd: f.dir, env: f.env, input: '', encoding: 'utf8' });
    expect(abort.status, abort.stderr).toBe(0);
    expect(existsSync(f.out) ? readdirSync(f.out) : []).toEqual([]);
    expect(tokenLabels(f).filter((l) => LABELS.includes(l))).toEqual([]);
  }, 180_000);

  it('stdin not a terminal and no --yes: usage error (exit 2) pointing to --yes; nothing created', async () => {
    const f = await fixture({ origin: 'generate-on-token' });
    const r = spawnSync(process.execPath, [BIN, 'ceremony', 'run', '--plan', f.planPath, '--out', f.out], { cwd: f.dir, env: ttyEnv(f), input: '', encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain('ceremony run is interactive and stdin is not a terminal: use --yes (with --pin-env / --pin-file) for scripts');
    expect(r.stdout).toBe('');
    expect(existsSync(f.out)).toBe(false);
  }, 60_000);
});
