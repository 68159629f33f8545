/**
 * `meshkit key …` commands: create, show, use and list keys named by key references.
 *
 *   meshkit key generate --key file:PATH#LABEL --alg Ed25519|Ed448|X25519|X448|P-256 [--usage sign|derive]
 *                        [--extractable] [--kdf-cost N]
 *   meshkit key show --key URI
 *   meshkit key sign --key URI FILE|-          a General JSON JWS over the bytes, kid = key UDF (protected)
 *   meshkit key list --store file:PATH
 *
 * Passphrases come from --passphrase-file / --pin-file / --passphrase-env / --pin-env, MESHKIT_PASSPHRASE
 * or a prompt (see ../secrets.ts); `show` and `list` need none. Every command takes --json.
 * Exit codes: 0 ok, 1 failed (wrong passphrase, missing key, corrupt store, unreadable file), 2 usage.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import { CURVES, type Curve } from '../../core/signer.js';
import { signJws } from '../../core/jose.js';
import {
  DEFAULT_KDF_COST,
  MAX_KDF_COST,
  MIN_KDF_COST,
  SoftwareKeyStore,
  allowedUsages,
  openKeyReference,
  parseKeyReference,
  parseStoreReference,
  type KeyInfo,
  type KeyUsage,
} from '../../keystore/index.js';
import { emit, note } from '../output.js';
import { UsageError } from '../main.js';
import { addSecretOptions, secretSource, type SecretCliOptions } from '../secrets.js';

interface JsonOption {
  json?: boolean;
}
interface GenerateOptions extends SecretCliOptions, JsonOption {
  key: string;
  alg: Curve;
  usage?: KeyUsage;
  extractable?: boolean;
  kdfCost?: number;
}
interface ShowOptions extends SecretCliOptions, JsonOption {
  key: string;
}
interface SignOptions extends ShowOptions {
  cty?: string;
}
interface ListOptions extends SecretCliOptions, JsonOption {
  store: string;
}

function parseKdfCost(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < MIN_KDF_COST || n > MAX_KDF_COST) {
    throw new InvalidArgumentError(`expected an integer from ${MIN_KDF_COST} to ${MAX_KDF_COST} (log2 of the scrypt N)`);
  }
  return n;
}

function describeInfo(info: KeyInfo): string {
  return [
    `key          ${info.location}`,
    `key id       ${info.keyId}`,
    `algorithm    ${info.curve} (${info.usage === 'sign' ? (info.curve === 'P-256' ? 'ES256' : 'EdDSA') + ' signing' : 'ECDH key agreement'})`,
    `extractable  ${info.extractable ? 'yes' : 'no'}`,
    ...(info.created === undefined ? [] : [`created      ${info.created}`]),
    `public JWK   ${JSON.stringify(info.publicJwk)}`,
  ].join('\n');
}

function pkcs11NotYet(): MeshkitError {
  return new MeshkitError(ErrorCode.NOT_SUPPORTED, 'PKCS#11 key references are not supported by this command yet');
}

async function readInput(file: string): Promise<Uint8Array> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return new Uint8Array(Buffer.concat(chunks));
  }
  try {
    return new Uint8Array(await readFile(file));
  } catch (e) {
    throw new MeshkitError(ErrorCode.IO, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** Registers `meshkit key generate|show|sign|list`. */
export function registerKeyCommands(program: Command): void {
  const key = program.command('key').description('generate, show, use and list keys (software key store file:PATH#LABEL)');

  addSecretOptions(
    key
      .command('generate')
      .description('generate a key in a software key store (created if missing)')
      .requiredOption('--key <uri>', 'where to put the key: file:PATH#LABEL')
      .addOption(new Option('--alg <alg>', 'key algorithm').choices(CURVES).makeOptionMandatory())
      .addOption(new Option('--usage <usage>', 'sign or derive (default: sign for Ed*/P-256, derive for X*)').choices(['sign', 'derive']))
      .option('--extractable', 'allow the private key to be exported later (escrow)')
      .option('--kdf-cost <n>', `scrypt cost of a new store, log2 N (${MIN_KDF_COST}-${MAX_KDF_COST}, default ${DEFAULT_KDF_COST})`, parseKdfCost),
  )
    .option('--json', 'print JSON')
    .action(async (opts: GenerateOptions) => {
      const ref = parseKeyReference(opts.key);
      if (ref.kind !== 'file') throw pkcs11NotYet();
      if (opts.usage !== undefined && !allowedUsages(opts.alg).includes(opts.usage)) {
        throw new UsageError(`--usage ${opts.usage} is not possible for ${opts.alg} (allowed: ${allowedUsages(opts.alg).join(', ')})`);
      }
      const isNew = !existsSync(ref.path);
      const source = secretSource(opts, { confirm: isNew, subject: `key store ${ref.path}` });
      const store = await SoftwareKeyStore.open(ref.path, source, {
        create: true,
        ...(opts.kdfCost === undefined ? {} : { kdfCost: opts.kdfCost }),
      });
      try {
        if (!isNew && opts.kdfCost !== undefined) note({ json: opts.json === true }, 'meshkit: --kdf-cost ignored: the key store already exists');
        const handle = await store.generate(ref.label, opts.alg, {
          ...(opts.usage === undefined ? {} : { usage: opts.usage }),
          extractable: opts.extractable === true,
        });
        emit({ json: opts.json === true }, handle.info, () => describeInfo(handle.info));
      } finally {
        await store.close();
      }
    });

  addSecretOptions(
    key
      .command('show')
      .description('show a key: key UDF, algorithm, public JWK, where it lives (no passphrase needed)')
      .requiredOption('--key <uri>', 'the key: file:PATH#LABEL'),
  )
    .option('--json', 'print JSON')
    .action(async (opts: ShowOptions) => {
      const ref = parseKeyReference(opts.key);
      if (ref.kind !== 'file') throw pkcs11NotYet();
      const { store, handle } = await openKeyReference(opts.key, secretSource(opts), { deferUnlock: true });
      try {
        emit({ json: opts.json === true }, handle.info, () => describeInfo(handle.info));
      } finally {
        await store.close();
      }
    });

  addSecretOptions(
    key
      .command('sign')
      .description("sign a file's bytes: prints a General JSON JWS, kid = key UDF in the protected header")
      .requiredOption('--key <uri>', 'the signing key: file:PATH#LABEL')
      .option('--cty <type>', 'content type for the protected header')
      .argument('<file>', 'the file to sign, or - for stdin'),
  )
    .option('--json', 'print JSON')
    .action(async (file: string, opts: SignOptions) => {
      const ref = parseKeyReference(opts.key);
      if (ref.kind !== 'file') throw pkcs11NotYet();
      const data = await readInput(file);
      const { store, handle } = await openKeyReference(opts.key, secretSource(opts, { subject: `key store ${ref.path}` }), {
        deferUnlock: true,
      });
      try {
        const signer = handle.signer();
        const jws = await signJws(data, [signer], opts.cty === undefined ? {} : { cty: opts.cty });
        emit({ json: opts.json === true }, jws, () => JSON.stringify(jws, null, 2));
      } finally {
        await store.close();
      }
    });

  addSecretOptions(
    key
      .command('list')
      .description('list the keys in a software key store (no passphrase needed)')
      .requiredOption('--store <uri>', 'the store: file:PATH'),
  )
    .option('--json', 'print JSON')
    .action(async (opts: ListOptions) => {
      const ref = parseStoreReference(opts.store);
      if (ref.kind !== 'file') throw pkcs11NotYet();
      const store = await SoftwareKeyStore.open(ref.path, secretSource(opts), { deferUnlock: true });
      try {
        const keys = await store.list();
        emit({ json: opts.json === true }, { store: store.uri, keys }, () =>
          keys.length === 0
            ? `${store.uri}: no keys`
            : keys.map((k) => `${k.label}\t${k.curve}\t${k.usage}\t${k.keyId}`).join('\n'),
        );
      } finally {
        await store.close();
      }
    });
}
