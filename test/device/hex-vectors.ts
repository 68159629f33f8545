/** Reads firmware-bindings/vectors/*.hex (format: docs/protocol-framing.md "Shared vectors"). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fromHex } from '../../src/core/bytes.js';

export interface HexVector {
  /** file:name, reported when a vector fails */
  id: string;
  input: Uint8Array;
  /** the part after " = " for good cases */
  expected?: Uint8Array;
  /** the status name after " ! " for bad cases */
  error?: string;
}

export function readVectors(file: string): HexVector[] {
  const path = fileURLToPath(new URL(`../../firmware-bindings/vectors/${file}`, import.meta.url));
  const out: HexVector[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z0-9_-]+): ([0-9a-f]+)(?: = ([0-9a-f]+)| ! ([A-Z_]+))?$/.exec(line);
    if (m === null) throw new Error(`${file}: malformed line ${line.slice(0, 60)}`);
    const v: HexVector = { id: `${file}:${m[1] as string}`, input: fromHex(m[2] as string) };
    if (m[3] !== undefined) v.expected = fromHex(m[3]);
    if (m[4] !== undefined) v.error = m[4];
    out.push(v);
  }
  if (out.length === 0) throw new Error(`${file}: no vectors`);
  return out;
}
