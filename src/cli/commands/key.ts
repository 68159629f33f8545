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
 *
 * `generate`, `show` and `sign` also take PKCS#11 URIs (RFC 7512), e.g.
 *   pkcs11:token=Master;object=master-sign?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin
 * The module is the URI's module-path, else --module, else MESHKIT_PKCS11_MODULE, else SoftHSM's default.
 * The PIN comes from --pin-file / --pin-env (or the --passphrase-* spellings), else the URI's pin-source
 * (or pin-value, with a warning), else MESHKIT_PIN, else a masked prompt; never from argv.
 * Exit codes: 0 ok, 1 failed (wrong passphrase, missing key, corrupt store, unreadable file), 2 usage.
 */
import { existsSync } from 'node:fs';
import { readInput } from '../io.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CURVES, type Curve } from '../../core/signer.js';
import { signJws } from '../../core/jose.js';
import { formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Uri } from '../../keystore/pkcs11/uri.js';
import { pinSourceFromUri } from '../../keystore/pkcs11/pin.js';
import { resolveModulePath, withCkrName } from './token.js';
import {
  DEFAULT_KDF_COST,
  MAX_KDF_COST,
  MIN_KDF_COST,
  SoftwareKeyStore,
  allowedUsages,
  openKeyReference,
  parseKeyReference,
  parseStoreReference,
  type KeyHandle,
  type KeyInfo,
  type KeyStore,
  type KeyUsage,
} from '../../keystore/index.js';
import { secretRequestFor } from '../pin-status.js';
import { emit, note } from '../output.js';
import { UsageError } from '../main.js';
import { addSecretOptions, secretSource, type SecretCliOptions } from '../secrets.js';

interface JsonOption {
  json?: boolean;
}
interface GenerateOptions extends SecretCliOptions, JsonOption {
  key: string;
  module?: string;
  alg: Curve;
  usage?: KeyUsage;
  extractable?: boolean;
  kdfCost?: number;
}
interface ShowOptions extends SecretCliOptions, JsonOption {
  key: string;
  module?: string;
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

/** A parsed `pkcs11:` key reference with the module resolved and the PIN source chosen. */
interface Pkcs11Target {
  uri: Pkcs11Uri;
  modulePath: string;
  pin: () => Promise<Uint8Array>;
}

/**
 * Parses a `pkcs11:` key reference for a command: prints the URI's warnings (pin-value) on stderr,
 * resolves the module and picks the PIN source (--pin-* / --passphrase-* options, then the URI's
 * pin-source or pin-value, then MESHKIT_PIN, then the prompt).
 */
function pkcs11Target(raw: string, opts: SecretCliOptions & { module?: string }): Pkcs11Target {
  const { uri, warnings } = parsePkcs11Uri(raw);
  for (const w of warnings) process.stderr.write(`meshkit: warning: ${w}\n`);
  if (uri.token === undefined && uri.serial === undefined && uri.slotId === undefined) {
    throw new UsageError('the pkcs11: URI must name the token (token=LABEL, serial= or slot-id=)');
  }
  const modulePath = resolveModulePath(uri.modulePath ?? opts.module);
  const optionGiven = [opts.passphraseFile, opts.pinFile, opts.passphraseEnv, opts.pinEnv].some((v) => v !== undefined);
  const subject = `token ${uri.token ?? uri.serial ?? String(uri.slotId)}`;
  const fromUri = optionGiven ? undefined : pinSourceFromUri(uri);
  const pin = fromUri ?? secretSource(opts, { ...secretRequestFor(raw, subject, modulePath), purpose: 'PIN' });
  return { uri, modulePath, pin };
}

/** The KeyInfo of a token key as printed by `key show` / `key generate` (adds where it is and that it is sensitive). */
function tokenKeyJson(info: KeyInfo, uri: Pkcs11Uri): Record<string, unknown> {
  return { ...info, token: uri.token ?? null, sensitive: true };
}

function describeTokenKey(info: KeyInfo): string {
  return [
    describeInfo(info),
    `sensitive    yes (the private key never leaves the token${info.extractable ? '' : '; CKA_EXTRACTABLE=false'})`,
  ].join('\n');
}

/** Opens the token key a `pkcs11:` URI names (object= / id= / type=). */
async function openTokenKey(t: Pkcs11Target): Promise<{ store: KeyStore; handle: KeyHandle }> {
  if (t.uri.object === undefined && t.uri.id === undefined) throw new UsageError('the pkcs11: URI must name the key (object=LABEL or id=%XX…)');
  // The PIN source was chosen in pkcs11Target (options before the URI's own), so the adapter gets none.
  const { pinValue: _pinValue, pinSource: _pinSource, ...rest } = t.uri;
  // Loaded on demand: only PKCS#11 commands load the native pkcs11js binding.
  const { openPkcs11KeyReference } = await import('../../keystore/pkcs11/store.js');
  return openPkcs11KeyReference(formatPkcs11Uri({ ...rest, modulePath: t.modulePath }), t.pin);
}

/** Registers `meshkit key generate|show|sign|list`. */
export function registerKeyCommands(program: Command): void {
  const key = program.command('key').description('generate, show, use and list keys (software key store file:PATH#LABEL)');

  addSecretOptions(
    key
      .command('generate')
      .description('generate a key in a software key store (created if missing) or on a PKCS#11 token')
      .requiredOption('--key <uri>', 'where to put the key: file:PATH#LABEL or pkcs11:token=T;object=LABEL[?module-path=LIB]')
      .option('--module <lib>', 'PKCS#11 library when the pkcs11: URI has no module-path (default $MESHKIT_PKCS11_MODULE, else SoftHSM)')
      .addOption(new Option('--alg <alg>', 'key algorithm').choices(CURVES).makeOptionMandatory())
      .addOption(new Option('--usage <usage>', 'sign or derive (default: sign for Ed*/P-256, derive for X*)').choices(['sign', 'derive']))
      .option('--extractable', 'allow the private key to be exported later (escrow)')
      .option('--kdf-cost <n>', `scrypt cost of a new store, log2 N (${MIN_KDF_COST}-${MAX_KDF_COST}, default ${DEFAULT_KDF_COST})`, parseKdfCost),
  )
    .option('--json', 'print JSON')
    .action(async (opts: GenerateOptions) => {
      const ref = parseKeyReference(opts.key);
      if (opts.usage !== undefined && !allowedUsages(opts.alg).includes(opts.usage)) {
        throw new UsageError(`--usage ${opts.usage} is not possible for ${opts.alg} (allowed: ${allowedUsages(opts.alg).join(', ')})`);
      }
      if (ref.kind === 'pkcs11') {
        const t = pkcs11Target(ref.raw, opts);
        if (t.uri.object === undefined) throw new UsageError('the pkcs11: URI must give the new key\'s label (object=LABEL)');
        if (t.uri.id !== undefined) throw new UsageError('do not give id= for a new key: meshkit sets CKA_ID from the key UDF');
        if (opts.kdfCost !== undefined) throw new UsageError('--kdf-cost is for software key stores only');
        const { object, type: _type, pinValue: _pinValue, pinSource: _pinSource, ...tokenUri } = t.uri;
        try {
          const { Pkcs11KeyStore } = await import('../../keystore/pkcs11/store.js');
          const store = await Pkcs11KeyStore.open(tokenUri, t.pin, { modulePath: t.modulePath });
          try {
            const handle = await store.generate(object, opts.alg, {
              ...(opts.usage === undefined ? {} : { usage: opts.usage }),
              extractable: opts.extractable === true,
            });
            emit({ json: opts.json === true }, tokenKeyJson(handle.info, t.uri), () => describeTokenKey(handle.info));
          } finally {
            await store.close();
          }
        } catch (e) {
          throw withCkrName(e);
        }
        return;
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
      .description('show a key: key UDF, algorithm, public JWK, where it lives (no passphrase needed for file: keys)')
      .requiredOption('--key <uri>', 'the key: file:PATH#LABEL or pkcs11:token=T;object=LABEL')
      .option('--module <lib>', 'PKCS#11 library when the pkcs11: URI has no module-path'),
  )
    .option('--json', 'print JSON')
    .action(async (opts: ShowOptions) => {
      const ref = parseKeyReference(opts.key);
      if (ref.kind === 'pkcs11') {
        const t = pkcs11Target(ref.raw, opts);
        try {
          const { store, handle } = await openTokenKey(t);
          try {
            emit({ json: opts.json === true }, tokenKeyJson(handle.info, t.uri), () => describeTokenKey(handle.info));
          } finally {
            await store.close();
          }
        } catch (e) {
          throw withCkrName(e);
        }
        return;
      }
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
      .requiredOption('--key <uri>', 'the signing key: file:PATH#LABEL or pkcs11:token=T;object=LABEL')
      .option('--module <lib>', 'PKCS#11 library when the pkcs11: URI has no module-path')
      .option('--cty <type>', 'content type for the protected header')
      .argument('<file>', 'the file to sign, or - for stdin'),
  )
    .option('--json', 'print JSON')
    .action(async (file: string, opts: SignOptions) => {
      const ref = parseKeyReference(opts.key);
      if (ref.kind === 'pkcs11') {
        const t = pkcs11Target(ref.raw, opts);
        const data = await readInput(file);
        try {
          const { store, handle } = await openTokenKey(t);
          try {
            const jws = await signJws(data, [handle.signer()], opts.cty === undefined ? {} : { cty: opts.cty });
            emit({ json: opts.json === true }, jws, () => JSON.stringify(jws, null, 2));
          } finally {
            await store.close();
          }
        } catch (e) {
          throw withCkrName(e);
        }
        return;
      }
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
      .description('list the keys in a store: a software key store (no passphrase needed) or a PKCS#11 token (PIN needed)')
      .requiredOption('--store <uri>', 'the store: file:PATH or pkcs11:token=LABEL[?module-path=LIB]'),
  )
    .option('--json', 'print JSON')
    .action(async (opts: ListOptions) => {
      const ref = parseStoreReference(opts.store);
      let store: KeyStore;
      if (ref.kind === 'pkcs11') {
        const t = pkcs11Target(ref.raw, opts);
        const { object: _object, id: _id, type: _type, pinValue: _pinValue, pinSource: _pinSource, ...tokenUri } = t.uri;
        const { Pkcs11KeyStore } = await import('../../keystore/pkcs11/store.js');
        try {
          store = await Pkcs11KeyStore.open(tokenUri, t.pin, { modulePath: t.modulePath });
        } catch (e) {
          throw withCkrName(e);
        }
      } else {
        store = await SoftwareKeyStore.open(ref.path, secretSource(opts), { deferUnlock: true });
      }
      try {
        const keys = await store.list();
        emit({ json: opts.json === true }, { store: store.uri, keys }, () =>
          keys.length === 0
            ? `${store.uri}: no keys`
            : keys.map((k) => `${k.label}\t${k.curve}\t${k.usage}\t${k.keyId}\t${k.extractable ? 'extractable' : 'non-extractable'}\t${k.location}`).join('\n'),
        );
      } finally {
        await store.close();
      }
    });
}
