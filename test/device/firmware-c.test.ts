/**
 * Runs the C side of the device protocol (firmware-bindings/: framing, CBOR subset) as part of the project's
 * test run: `make -C firmware-bindings test` builds the C unit tests and fuzzers under AddressSanitizer and
 * UBSan, runs them against the shared vectors (firmware-bindings/vectors/*.hex) and compiles every header as C++.
 * Skipped, with the reason printed, only where `make`, `gcc` or libsodium-dev is not installed.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { missingCTool } from '../helpers/c-toolchain.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

// the device tests link the host platform against libsodium (checked too)
const missing = missingCTool(['make', 'gcc', 'g++']);
if (missing !== undefined) {
  console.log(`firmware-c.test.ts: skipped: '${missing}' is not installed (apt-get install build-essential libsodium-dev)`);
}

describe('firmware-bindings C tests', () => {
  it.skipIf(missing !== undefined)(
    'make -C firmware-bindings test passes (ASan + UBSan unit tests, shared vectors, fuzz runs, C++ headers)',
    () => {
      const result = spawnSync('make', ['-C', 'firmware-bindings', 'test'], {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 600_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      const output = `exit=${String(result.status)} signal=${String(result.signal)} error=${String(result.error)}\n` +
        `--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`;
      expect(result.error, output).toBeUndefined();
      expect(result.status, output).toBe(0);
      expect(result.stdout, output).toContain('firmware-bindings: all C tests passed');
      expect(result.stdout, output).toMatch(/test_frame: \d+ vector cases, \d+ checks, 0 failures/);
      expect(result.stdout, output).toMatch(/test_cbor: \d+ vector cases, \d+ checks, 0 failures/);
    },
    620_000,
  );
});
