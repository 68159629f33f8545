/**
 * `meshkit shamir …` commands (mesh-udf §4.5 share UDFs).
 *
 * - `shamir split --threshold K --shares N`: the secret as hex on stdin; one S-UDF share a line.
 * - `shamir combine`: shares on stdin, one a line (blank lines and `#` comments ignored); prints
 *   the secret as hex.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { fromHex, toHex, wipe } from '../../core/bytes.js';
import { SHAMIR_MAX_SHARES, combineShares, parseShare, splitSecret } from '../../core/shamir.js';
import { UsageError } from '../main.js';
import { emit } from '../output.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > SHAMIR_MAX_SHARES) {
    throw new InvalidArgumentError(`expected an integer from 1 to ${SHAMIR_MAX_SHARES}`);
  }
  return n;
}

interface SplitFlags {
  threshold: number;
  shares: number;
  json?: boolean;
}

export function registerShamirCommands(program: Command): void {
  const shamir = program.command('shamir').description('Shamir secret sharing with share UDFs (S-UDF)');

  shamir
    .command('split')
    .description('split a secret (hex on stdin, 1…64 bytes) into share UDFs, one a line')
    .requiredOption('--threshold <k>', `shares needed to recover (2…${SHAMIR_MAX_SHARES})`, parseCount)
    .requiredOption('--shares <n>', `shares to make (threshold…${SHAMIR_MAX_SHARES})`, parseCount)
    .option('--json', 'print JSON')
    .action(async (_opts: SplitFlags, cmd: Command) => {
      const opts = cmd.optsWithGlobals<SplitFlags>();
      if (opts.threshold < 2) throw new UsageError('--threshold must be at least 2 (threshold 1 would put the secret in every share)');
      if (opts.threshold > opts.shares) throw new UsageError(`--threshold (${opts.threshold}) must not exceed --shares (${opts.shares})`);
      const text = (await readStdin()).trim();
      if (text.length === 0) throw new UsageError('no secret on stdin (expected hex)');
      const secret = fromHex(text, 'secret');
      try {
        const shares = splitSecret(secret, opts.threshold, opts.shares);
        emit(
          { json: opts.json === true },
          { threshold: opts.threshold, secretLength: secret.length, shares },
          shares.join('\n'),
        );
      } finally {
        wipe(secret);
      }
    });

  shamir
    .command('combine')
    .description('recover a secret from share UDFs on stdin (one a line; blank lines and # comments ignored)')
    .option('--json', 'print JSON')
    .action(async (_opts: { json?: boolean }, cmd: Command) => {
      const opts = cmd.optsWithGlobals<{ json?: boolean }>();
      const lines = (await readStdin())
        .split(/\r?\n/)
        .map((line) => line.replace(/#.*$/, '').trim())
        .filter((line) => line.length > 0);
      if (lines.length === 0) throw new UsageError('no shares on stdin');
      const secret = combineShares(lines);
      const { threshold } = parseShare(lines[0] ?? '');
      const hex = toHex(secret);
      wipe(secret);
      emit({ json: opts.json === true }, { secret: hex, threshold, shares: lines.length }, hex);
    });
}
