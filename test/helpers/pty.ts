/**
 * Drives a command under a real pseudo-terminal (util-linux `script`), expect-style:
 *
 *   const t = spawnPty(process.execPath, [BIN, 'ceremony', 'run', …], { env, cwd });
 *   await t.expect(/PIN for token .*:/);   // waits on the ANSI-stripped output, with a timeout
 *   t.write('1234\r');                      // keystrokes: answers, Enter (\r), arrows (KEYS.down)
 *   const { code } = await t.exit();
 *
 * `script -q -e -c CMD /dev/null` gives the child a pty as stdin/stdout/stderr (so `isTTY` is true and
 * prompts put it in raw mode); what the child writes to the terminal — including anything the pty
 * line discipline echoes — comes back on script's stdout, raw in `raw()`, ANSI-stripped in `text()`.
 * `-e` makes script exit with the child's exit code. The terminal size is set with `stty` first
 * (a pty made from a pipe has 0×0). `ptyMissing` says why this cannot run here, if it cannot.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

/** Why a pty cannot be made here (util-linux `script` missing or not the util-linux one), else undefined. */
export const ptyMissing: string | undefined = (() => {
  const r = spawnSync('script', ['--version'], { encoding: 'utf8' });
  if (r.error !== undefined) return `util-linux "script" is not installed (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}): apt-get install util-linux`;
  if (!/util-linux/.test(`${r.stdout}${r.stderr}`)) return `"script" is not util-linux script (${(r.stdout || r.stderr).trim()})`;
  return undefined;
})();

/** Keystrokes a terminal sends. */
export const KEYS = {
  enter: '\r',
  up: '\x1b[A',
  down: '\x1b[B',
  right: '\x1b[C',
  left: '\x1b[D',
  backspace: '\x7f',
  ctrlC: '\x03',
} as const;

// CSI (incl. private modes like ?25l), OSC (BEL or ST terminated), and two-byte ESC sequences.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/** The text with ANSI escape sequences removed (and `\r\n` folded to `\n`). */
export function stripAnsi(s: string): string {
  if (typeof s !== 'string') throw new TypeError('"s" expected a string');
  return s.replace(ANSI, '').replace(/\r+\n/g, '\n');
}

/** POSIX-shell single-quoting. */
export function shellQuote(arg: string): string {
  if (typeof arg !== 'string') throw new TypeError('"arg" expected a string');
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export interface PtyOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Terminal size (default 200 columns × 60 rows: long prompt lines are not wrapped). */
  cols?: number;
  rows?: number;
}

export interface PtyExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Pty {
  child: ChildProcess;
  /** Everything the terminal showed so far, with escape sequences. */
  raw(): string;
  /** Everything the terminal showed so far, ANSI-stripped. */
  text(): string;
  /**
   * Waits until the ANSI-stripped output after the cursor matches `re`; the cursor then moves past
   * the match, so the next `expect` looks only at newer output. Resolves with the match.
   * @throws Error after `timeoutMs` (default 60 s) or when the process exits first, with the output so far.
   */
  expect(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Sends keystrokes to the terminal. */
  write(keys: string): void;
  /** Waits for the process to exit (default timeout 120 s, then it is killed and this throws). */
  exit(timeoutMs?: number): Promise<PtyExit>;
  /** Kills the process (script and, through the pty hangup, the child). */
  kill(): void;
}

/**
 * Starts `cmd args` under a pseudo-terminal.
 * @throws TypeError for a non-string command or arguments.
 * @throws Error when `script` is missing ({@link ptyMissing}).
 */
export function spawnPty(cmd: string, args: string[], opts: PtyOptions = {}): Pty {
  if (typeof cmd !== 'string' || cmd === '') throw new TypeError('"cmd" expected a non-empty string');
  if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) throw new TypeError('"args" expected an array of strings');
  if (ptyMissing !== undefined) throw new Error(ptyMissing);
  const cols = opts.cols ?? 200;
  const rows = opts.rows ?? 60;
  const line = `stty cols ${cols} rows ${rows}; exec ${[cmd, ...args].map(shellQuote).join(' ')}`;
  const child = spawn('script', ['-q', '-e', '-c', line, '/dev/null'], {
    cwd: opts.cwd,
    env: { ...(opts.env ?? (process.env as Record<string, string>)), SHELL: '/bin/sh' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let raw = '';
  let errText = '';
  let cursor = 0;
  let exited: PtyExit | undefined;
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    raw += d;
    wake();
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    errText += d;
  });
  const exitPromise = new Promise<PtyExit>((resolve) => {
    child.on('close', (code, signal) => {
      exited = { code, signal };
      wake();
      resolve(exited);
    });
  });
  child.stdin?.on('error', () => undefined); // EPIPE after exit
  const text = (): string => stripAnsi(raw);
  const tail = (): string => {
    const t = text();
    return `--- output so far (after the cursor at ${cursor}) ---\n${t.slice(cursor)}\n--- end${errText === '' ? '' : `; script stderr: ${errText}`} ---`;
  };

  return {
    child,
    raw: () => raw,
    text,
    expect(re: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
      if (!(re instanceof RegExp)) throw new TypeError('"re" expected a RegExp');
      const flags = re.flags.replace('g', '').replace('y', '');
      const pattern = new RegExp(re.source, flags);
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const t = text();
          const m = pattern.exec(t.slice(cursor));
          if (m !== null) {
            cursor += m.index + m[0].length;
            done();
            resolve(m);
            return;
          }
          if (exited !== undefined) {
            done();
            reject(new Error(`the process exited (code ${String(exited.code)}, signal ${String(exited.signal)}) before ${String(re)} appeared\n${tail()}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${String(re)}\n${tail()}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    write(keys: string): void {
      if (typeof keys !== 'string') throw new TypeError('"keys" expected a string');
      if (exited !== undefined) throw new Error(`cannot write ${JSON.stringify(keys)}: the process has exited\n${tail()}`);
      child.stdin?.write(keys);
    },
    async exit(timeoutMs = 120_000): Promise<PtyExit> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`the process did not exit within ${timeoutMs} ms\n${tail()}`));
        }, timeoutMs);
      });
      try {
        return await Promise.race([exitPromise, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    kill(): void {
      if (exited === undefined) child.kill('SIGKILL');
    },
  };
}
