/**
 * `meshkit token …` commands: see and prepare PKCS#11 tokens (HSMs, smartcards, SoftHSM).
 *
 *   meshkit token list [--module LIB] [--json]          slots, tokens and each token's capability table
 *   meshkit token init [--module LIB] --label L [--so-pin-file P | --so-pin-env V] [--pin-file P | --pin-env V]
 *
 * The module is `--module`, else `MESHKIT_PKCS11_MODULE`, else SoftHSM's default library when it is
 * installed. PINs never come from argv: the SO PIN from --so-pin-file / --so-pin-env / MESHKIT_SO_PIN or
 * a prompt; the user PIN from --pin-file / --pin-env / MESHKIT_PIN or a prompt.
 * Exit codes: 0 ok, 1 failed (module, token, Cryptoki error), 2 usage.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { ErrorCode, KeyStoreError, MeshkitError, Pkcs11Error } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import { CURVES } from '../../core/signer.js';
import type { Pkcs11Module, SlotInfo, TokenCapabilities } from '../../keystore/pkcs11/module.js';
import { emit } from '../output.js';
import { UsageError } from '../main.js';
import { readSecretFile, secretSource } from '../secrets.js';

/** SoftHSM2's library on Debian/Ubuntu, the default when nothing else names a module. */
export const SOFTHSM_DEFAULT_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
/** The environment variable naming the default PKCS#11 module. */
export const MODULE_ENV = 'MESHKIT_PKCS11_MODULE';

/**
 * The PKCS#11 module to load: `explicit` (from --module or a URI's module-path), else
 * `MESHKIT_PKCS11_MODULE`, else SoftHSM's default library if it exists.
 * @throws UsageError when none of them gives a module.
 */
export function resolveModulePath(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit !== undefined && explicit !== '') return explicit;
  const fromEnv = env[MODULE_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (existsSync(SOFTHSM_DEFAULT_MODULE)) return SOFTHSM_DEFAULT_MODULE;
  throw new UsageError(`no PKCS#11 module: use --module LIB, module-path= in the URI, or set ${MODULE_ENV}`);
}

/**
 * Prepares an adapter failure for the CLI's one-line report: a usage error raised by the PIN source
 * (no PIN source and no terminal) that the adapter wrapped is unwrapped so it exits 2, and a PKCS#11
 * failure always names its CKR code.
 * @returns `e` itself, the wrapped UsageError, or a Pkcs11Error with the CKR name appended.
 */
export function withCkrName(e: unknown): unknown {
  for (let c: unknown = e, depth = 0; c instanceof Error && depth < 4; c = c.cause, depth++) {
    if (c instanceof UsageError) return c;
  }
  if (e instanceof Pkcs11Error && e.ckrName !== undefined && !e.message.includes(e.ckrName)) {
    return new Pkcs11Error(e.code, `${e.message} (${e.ckrName})`, {
      ...(e.ckr === undefined ? {} : { ckr: e.ckr }),
      ckrName: e.ckrName,
      ...(e.operation === undefined ? {} : { operation: e.operation }),
      ...(e.pinStatus === undefined ? {} : { pinStatus: e.pinStatus }),
      cause: e,
    });
  }
  return e;
}

interface ListOptions {
  module?: string;
  json?: boolean;
}
interface InitOptions {
  module?: string;
  label: string;
  soPinFile?: string;
  soPinEnv?: string;
  pinFile?: string;
  pinEnv?: string;
  json?: boolean;
}

/** A slot as JSON: everything but the native handle. */
function slotJson(slot: SlotInfo): Record<string, unknown> {
  const { handle: _handle, ...rest } = slot;
  return rest;
}

const yesNo = (v: boolean | undefined | 'unknown'): string => (v === undefined ? '-' : v === 'unknown' ? '?' : v ? 'yes' : 'no');

function capabilityTable(caps: TokenCapabilities): string[] {
  const rows = [['curve', 'generate', 'sign', 'derive', 'key type']];
  for (const curve of CURVES) {
    const c = caps.curves[curve];
    rows.push([curve, yesNo(c?.generate), yesNo(c?.sign), yesNo(c?.derive), c?.keyType ?? '-']);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const lines = rows.map((r) => '    ' + r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
  lines.push(
    `    wrap: AES key wrap ${yesNo(caps.wrap.aesKeyWrap)}, AES key wrap with padding ${yesNo(caps.wrap.aesKeyWrapPad)}, ` +
      `EdDSA private keys ${yesNo(caps.wrap.edPrivateKeys)}`,
  );
  lines.push(`    quirks: ${caps.quirks.length === 0 ? 'none' : caps.quirks.join('; ')}`);
  lines.push(`    mechanisms: ${caps.mechanisms.length}`);
  return lines;
}

function pinFlags(slot: SlotInfo): string {
  const t = slot.token;
  if (t === undefined) return '';
  const s = t.pinStatus;
  const pin = s.locked ? 'PIN LOCKED' : s.finalTry ? 'PIN: final try' : s.countLow ? 'PIN: wrong PIN entered before' : 'PIN ok';
  return [t.initialized ? 'initialised' : 'not initialised', t.loginRequired ? 'login required' : 'no login', pin].join(', ');
}

async function readSoPin(opts: InitOptions): Promise<Uint8Array> {
  if (opts.soPinFile !== undefined && opts.soPinEnv !== undefined) throw new UsageError('give only one of --so-pin-file, --so-pin-env');
  if (opts.soPinFile !== undefined) return readSecretFile(opts.soPinFile);
  const name = opts.soPinEnv ?? (process.env['MESHKIT_SO_PIN'] === undefined ? undefined : 'MESHKIT_SO_PIN');
  if (name !== undefined) {
    const v = process.env[name];
    if (v === undefined || v === '') throw new KeyStoreError(ErrorCode.SECRET_SOURCE, `environment variable ${name} is ${v === undefined ? 'not set' : 'empty'}`);
    return new Uint8Array(Buffer.from(v, 'utf8'));
  }
  if (process.stdin.isTTY !== true) {
    throw new UsageError('an SO PIN is needed and stdin is not a terminal: use --so-pin-file PATH, --so-pin-env VAR or set MESHKIT_SO_PIN');
  }
  return secretSource({}, { purpose: 'PIN', confirm: true, subject: 'the security officer of the new token', env: {} })();
}

/** Loads the PKCS#11 adapter on demand, so only PKCS#11 commands load the native pkcs11js binding. */
async function openModule(path: string): Promise<Pkcs11Module> {
  const { Pkcs11Module: Module } = await import('../../keystore/pkcs11/module.js');
  return Module.open(path);
}

/** Registers `meshkit token list|init`. */
export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('PKCS#11 tokens: list slots, tokens and capabilities; initialise a token');

  token
    .command('list')
    .description('list the slots and tokens of a PKCS#11 module, with a capability table per token')
    .option('--module <lib>', `the PKCS#11 library (default $${MODULE_ENV}, else ${SOFTHSM_DEFAULT_MODULE})`)
    .option('--json', 'print JSON')
    .action(async (opts: ListOptions) => {
      const module = await openModule(resolveModulePath(opts.module));
      try {
        const slots = await module.slots();
        const entries: Array<{ slot: SlotInfo; capabilities?: TokenCapabilities; capabilitiesError?: string }> = [];
        for (const slot of slots) {
          if (slot.token === undefined || !slot.token.initialized) {
            entries.push({ slot });
            continue;
          }
          try {
            entries.push({ slot, capabilities: await module.capabilities(slot) });
          } catch (e) {
            const err = withCkrName(e);
            entries.push({ slot, capabilitiesError: err instanceof Error ? err.message : String(err) });
          }
        }
        const data = {
          module: { path: module.path, ...module.info },
          slots: entries.map((e) => ({
            ...slotJson(e.slot),
            ...(e.capabilities === undefined ? {} : { capabilities: e.capabilities }),
            ...(e.capabilitiesError === undefined ? {} : { capabilitiesError: e.capabilitiesError }),
          })),
        };
        emit({ json: opts.json === true }, data, () => {
          const i = module.info;
          const lines = [`module  ${module.path}`, `        ${i.manufacturer} — ${i.description}, library ${i.libraryVersion}, Cryptoki ${i.cryptokiVersion}`];
          if (entries.length === 0) lines.push('no slots');
          for (const e of entries) {
            const s = e.slot;
            lines.push('');
            lines.push(`slot ${String(s.slotId)}  ${s.description}${s.manufacturer === '' ? '' : ` (${s.manufacturer})`}`);
            if (s.token === undefined) {
              lines.push('  no token');
              continue;
            }
            const t = s.token;
            lines.push(`  token  ${t.initialized ? JSON.stringify(t.label) : '(free, not initialised)'}  ${t.manufacturer} ${t.model}  serial ${t.serial}`);
            lines.push(`         ${pinFlags(s)}`);
            if (e.capabilities !== undefined) lines.push(...capabilityTable(e.capabilities));
            if (e.capabilitiesError !== undefined) lines.push(`    capabilities: probe failed: ${e.capabilitiesError}`);
          }
          return lines.join('\n');
        });
      } catch (e) {
        throw withCkrName(e);
      } finally {
        await module.close();
      }
    });

  token
    .command('init')
    .description('initialise a token (SoftHSM: the free slot) and set its user PIN')
    .option('--module <lib>', `the PKCS#11 library (default $${MODULE_ENV}, else ${SOFTHSM_DEFAULT_MODULE})`)
    .requiredOption('--label <label>', 'the new token label (1-32 bytes)')
    .option('--so-pin-file <path>', 'read the security officer PIN from the first line of a file')
    .option('--so-pin-env <var>', 'read the security officer PIN from an environment variable (default MESHKIT_SO_PIN)')
    .option('--pin-file <path>', 'read the new user PIN from the first line of a file')
    .option('--pin-env <var>', 'read the new user PIN from an environment variable (default MESHKIT_PIN)')
    .option('--json', 'print JSON')
    .action(async (opts: InitOptions) => {
      const userSource = secretSource({ ...(opts.pinFile === undefined ? {} : { pinFile: opts.pinFile }), ...(opts.pinEnv === undefined ? {} : { pinEnv: opts.pinEnv }) }, {
        purpose: 'PIN',
        confirm: true,
        subject: `token ${opts.label}`,
      });
      const modulePath = resolveModulePath(opts.module);
      // The PINs are read first, so a missing source is a usage error before the module is touched.
      const soPin = await readSoPin(opts);
      let userPin: Uint8Array | undefined;
      let module: Pkcs11Module | undefined;
      try {
        userPin = await userSource();
        module = await openModule(modulePath);
        const existing = (await module.slots()).find((s) => s.token?.initialized === true && s.token.label === opts.label);
        if (existing !== undefined) {
          throw new MeshkitError(ErrorCode.KEYSTORE_EXISTS, `a token labelled ${JSON.stringify(opts.label)} already exists in slot ${String(existing.slotId)} of ${module.path}`);
        }
        const slot = await module.initToken({ free: true }, { label: opts.label, soPin, userPin });
        const path = module.path;
        emit({ json: opts.json === true }, { module: path, slot: slotJson(slot) }, () =>
          `initialised token ${JSON.stringify(slot.token?.label ?? opts.label)} in slot ${String(slot.slotId)} of ${path}`,
        );
      } catch (e) {
        throw withCkrName(e);
      } finally {
        wipe(soPin, userPin);
        await module?.close();
      }
    });
}
