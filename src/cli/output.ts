/** How commands print: one JSON document with --json, readable text otherwise. */

export interface OutputOptions {
  json: boolean;
}

/** Prints `data` as one JSON document (with --json) or the human text. */
export function emit(opts: OutputOptions, data: unknown, human: string | (() => string)): void {
  if (opts.json) {
    process.stdout.write(JSON.stringify(data, jsonReplacer, 2) + '\n');
  } else {
    const text = typeof human === 'function' ? human() : human;
    process.stdout.write(text.endsWith('\n') ? text : text + '\n');
  }
}

/** Progress and notes go to stderr so stdout stays machine-readable. */
export function note(opts: OutputOptions, text: string): void {
  if (!opts.json) process.stderr.write(text + '\n');
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (typeof value === 'bigint') return value.toString();
  return value;
}
