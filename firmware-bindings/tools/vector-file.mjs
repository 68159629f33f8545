/**
 * The command-line tail shared by the vector generators (crypto-vectors.mjs, profile-vectors.mjs): write the
 * generated text to its vector file, or with `--check` exit 1 when the committed file differs.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import process from 'node:process';

/**
 * @param {string} file the vector file
 * @param {string} text the freshly generated contents
 * @param {string} script the generator, for the "stale" message
 */
export function writeOrCheck(file, text, script) {
  if (process.argv.includes('--check')) {
    if (readFileSync(file, 'utf8') !== text) {
      process.stderr.write(`${file} is stale: run npm run build && node firmware-bindings/tools/${script}\n`);
      process.exit(1);
    }
    process.stdout.write(`${file} is up to date\n`);
    return;
  }
  writeFileSync(file, text);
  process.stdout.write(`wrote ${file} (${text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length} vectors)\n`);
}
