/**
 * `meshkit udf …` commands.
 *
 * - `udf digest [--content-type T] [--bits N] [--sha3] FILE|-` streams the file (or stdin) through
 *   the inner hash (never the whole file in memory) and prints the content-digest UDF.
 * - `udf key FILE` prints the key identifier (UDF of the SPKI, application/pkix-keyinfo) of a PEM
 *   or DER SubjectPublicKeyInfo or a JWK.
 */
import { open, readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { InvalidArgumentError, type Command } from 'commander';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import { ContentType, UDF_DEFAULT_BITS, UDF_MAX_BITS, UDF_MIN_BITS, udfFromDigest, udfNodeHashName, type UdfAlgorithm } from '../../core/udf.js';
import { emit } from '../output.js';

function parseBits(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < UDF_MIN_BITS || n > UDF_MAX_BITS || n % 20 !== 0) {
    throw new InvalidArgumentError(`expected a multiple of 20 from ${UDF_MIN_BITS} to ${UDF_MAX_BITS}`);
  }
  return n;
}

function ioError(path: string, e: unknown): MeshkitError {
  const code = (e as { code?: string }).code;
  const reason = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
  return new MeshkitError(ErrorCode.IO, `cannot read ${path}: ${reason}`, { cause: e });
}

/** Hashes a file through one reused 1 MiB buffer (never the whole file in memory). */
async function hashFile(path: string, algorithm: UdfAlgorithm): Promise<{ digest: Uint8Array; bytes: number }> {
  const handle = await open(path, 'r');
  try {
    const hash = createHash(udfNodeHashName(algorithm));
    const buffer = Buffer.allocUnsafe(1 << 20);
    let bytes = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      bytes += bytesRead;
    }
    return { digest: new Uint8Array(hash.digest()), bytes };
  } finally {
    await handle.close();
  }
}

/** Hashes a stream with the UDF inner digest; returns the digest and the byte count. */
async function hashStream(stream: Readable, algorithm: UdfAlgorithm): Promise<{ digest: Uint8Array; bytes: number }> {
  const hash = createHash(udfNodeHashName(algorithm));
  let bytes = 0;
  for await (const chunk of stream) {
    const buf = chunk as Buffer;
    bytes += buf.length;
    hash.update(buf);
  }
  return { digest: new Uint8Array(hash.digest()), bytes };
}

interface DigestFlags {
  contentType?: string;
  bits?: number;
  sha3?: boolean;
  json?: boolean;
}

export function registerUdfCommands(program: Command): void {
  const udf = program.command('udf').description('Uniform Data Fingerprints (mesh-udf)');

  udf
    .command('digest')
    .description('print the content-digest UDF of a file (- for stdin)')
    .argument('<file>', 'file to fingerprint, or - for stdin')
    .option('--content-type <type>', 'content type mixed into the fingerprint', ContentType.OctetStream)
    .option('--bits <n>', `precision in bits, a multiple of 20 (${UDF_MIN_BITS}…${UDF_MAX_BITS})`, parseBits, UDF_DEFAULT_BITS)
    .option('--sha3', 'use SHA3-512 (a K… UDF) instead of SHA-512')
    .option('--json', 'print JSON')
    .action(async (file: string, _opts: DigestFlags, cmd: Command) => {
      const opts = cmd.optsWithGlobals<DigestFlags>();
      const algorithm: UdfAlgorithm = opts.sha3 === true ? 'SHA3-512' : 'SHA-512';
      const contentType = opts.contentType ?? ContentType.OctetStream;
      const bits = opts.bits ?? UDF_DEFAULT_BITS;
      let result: { digest: Uint8Array; bytes: number };
      if (file === '-') {
        result = await hashStream(process.stdin, algorithm);
      } else {
        try {
          result = await hashFile(file, algorithm);
        } catch (e) {
          throw ioError(file, e);
        }
      }
      const value = udfFromDigest(result.digest, { contentType, bits, algorithm });
      emit({ json: opts.json === true }, { udf: value, contentType, bits, algorithm, bytes: result.bytes }, value);
    });

  udf
    .command('key')
    .description('print the key identifier (UDF of the SubjectPublicKeyInfo) of a PEM/DER SPKI or a JWK')
    .argument('<file>', 'public key file: PEM, DER SubjectPublicKeyInfo or JWK JSON')
    .option('--json', 'print JSON')
    .action(async (file: string, _opts: { json?: boolean }, cmd: Command) => {
      const opts = cmd.optsWithGlobals<{ json?: boolean }>();
      let data: Uint8Array;
      try {
        data = new Uint8Array(await readFile(file));
      } catch (e) {
        throw ioError(file, e);
      }
      // Loaded lazily so that the rest of the CLI does not depend on the key module.
      const { decodePublicKey, keyId } = await import('../../core/keys.js');
      const key = decodePublicKey(data);
      const id = keyId(key);
      emit({ json: opts.json === true }, { keyId: id, curve: key.curve }, `${id}  ${key.curve}`);
    });
}
