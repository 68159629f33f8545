/** Small I/O helpers shared by the commands: reading inputs with one-line errors, repeatable options. */
import { readFile } from 'node:fs/promises';
import { ErrorCode, MeshkitError } from '../core/errors.js';

/**
 * The bytes of `file`, or of stdin when `file` is `-`.
 * @throws MeshkitError ERR_IO naming the file and the system error code.
 */
export async function readInput(file: string, what = file): Promise<Uint8Array> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return new Uint8Array(Buffer.concat(chunks));
  }
  try {
    return new Uint8Array(await readFile(file));
  } catch (e) {
    throw new MeshkitError(ErrorCode.IO, `cannot read ${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** commander option parser for a repeatable option (`--share A --share B`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
