/**
 * Whether the C toolchain the firmware-bindings tests need is installed — so a test can skip with a printed reason.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * The first of `tools` that does not run (`TOOL --version` fails), else 'libsodium-dev' when its header is missing
 * (the host platform links libsodium), else undefined.
 * @param tools the commands to probe, in order (e.g. ['make', 'gcc'])
 */
export function missingCTool(tools: readonly string[]): string | undefined {
  for (const tool of tools) {
    const probe = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (probe.error !== undefined || probe.status !== 0) return tool;
  }
  if (!existsSync('/usr/include/sodium.h')) return 'libsodium-dev';
  return undefined;
}
