/**
 * `meshkit escrow …`: online escrow of application private data to the Master Escrow Key
 * (docs/ceremony.md "Online escrow"; the service is src/ceremony/online-escrow.ts).
 *
 *   meshkit escrow seal --master master.json --to JWKFILE… [--in FILE|-] [--out FILE]
 *       a JWE (General JSON) to each --to key and to the Master Profile's escrow key. A private JWK
 *       as input (a JSON object with "d") is sealed as cty jwk+json; anything else as bytes.
 *   meshkit escrow open --key URI [--out FILE] FILE|-
 *       decrypts with a key reference — the master escrow key on the HSM
 *       (pkcs11:token=Master;object=mesh-master-escrow) or a recipient's own key (file:PATH#LABEL).
 *
 * PINs / passphrases: --pin-file / --pin-env (or the --passphrase-* spellings), the URI's
 * pin-source, MESHKIT_PIN / MESHKIT_PASSPHRASE, or a prompt; never argv. Exit codes: 0 ok,
 * 1 failed (not a recipient, decryption failed, unreadable file), 2 usage.
 */
import { writeFile } from 'node:fs/promises';
import { collect, readInput } from '../io.js';
import type { Command } from 'commander';
import { b64u, fromUtf8, wipe } from '../../core/bytes.js';
import { ErrorCode, MeshkitError } from '../../core/errors.js';
import { parseJsonStrict } from '../../core/jose.js';
import { decodePublicKey, keyId, type PublicKey } from '../../core/keys.js';
import type { PrivateJwk } from '../../core/signer.js';
import { openKeyReference, parseKeyReference } from '../../keystore/index.js';
import { escrowApplicationKey, masterEscrowKeyOf, recoverApplicationKey } from '../../ceremony/online-escrow.js';
import { emit, note } from '../output.js';
import { addSecretOptions, secretSource, type SecretCliOptions } from '../secrets.js';
import { resolveModulePath, withCkrName } from './token.js';

interface SealOptions {
  master: string;
  to?: string[];
  in?: string;
  out?: string;
  json?: boolean;
}

interface OpenOptions extends SecretCliOptions {
  key: string;
  module?: string;
  out?: string;
  json?: boolean;
}

async function writeOutput(file: string, data: Uint8Array | string): Promise<void> {
  try {
    await writeFile(file, data, { mode: 0o600 });
  } catch (e) {
    throw new MeshkitError(ErrorCode.IO, `cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** A private JWK when the bytes are one (a JSON object with "d"), else undefined. */
function asPrivateJwk(data: Uint8Array): PrivateJwk | undefined {
  if (data.length === 0 || data.length > 65536) return undefined;
  try {
    const value = parseJsonStrict(fromUtf8(data).trim());
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && typeof (value as { d?: unknown }).d === 'string') return value as PrivateJwk;
  } catch {
    // not JSON: sealed as bytes
  }
  return undefined;
}

/** Registers `meshkit escrow seal|open`. */
export function registerEscrowCommands(program: Command): void {
  const escrow = program.command('escrow').description('online escrow: encrypt application private data to the Master Escrow Key, and open it');

  escrow
    .command('seal')
    .description('encrypt a private JWK (or any file) to recipients and to the Master Profile\'s escrow key (prints a JWE)')
    .requiredOption('--master <file>', 'the signed Master Profile (master.json); its escrow key is an extra recipient')
    .option('--to <jwkfile>', 'a recipient public key (JWK, PEM or DER SPKI file); repeat for more', collect)
    .option('--in <file>', 'the data to seal, or - for stdin (default -)')
    .option('--out <file>', 'write the JWE to this file (mode 0600) instead of stdout')
    .option('--json', 'print JSON')
    .action(async (opts: SealOptions) => {
      const json = opts.json === true;
      const master = fromUtf8(await readInput(opts.master));
      const escrowKey = await masterEscrowKeyOf(master);
      const recipients: PublicKey[] = [];
      for (const f of opts.to ?? []) {
        const bytes = await readInput(f);
        try {
          recipients.push(decodePublicKey(bytes));
        } catch (e) {
          if (e instanceof MeshkitError) throw new MeshkitError(e.code, `--to ${f}: ${e.message}`, { cause: e });
          throw e;
        }
      }
      const data = await readInput(opts.in ?? '-');
      const jwk = asPrivateJwk(data);
      let jwe;
      try {
        jwe = await escrowApplicationKey(jwk ?? data, recipients, escrowKey.publicJwk);
      } finally {
        wipe(data);
      }
      const text = JSON.stringify(jwe, null, 2) + '\n';
      const summary = {
        master: escrowKey.master,
        masterEscrowKey: escrowKey.keyId,
        recipients: recipients.map((r) => keyId(r)),
        content: jwk === undefined ? 'bytes' : 'private JWK',
        ...(opts.out === undefined ? { jwe } : { out: opts.out }),
      };
      if (opts.out !== undefined) {
        await writeOutput(opts.out, text);
        emit({ json }, summary, `sealed ${summary.content} to ${recipients.length} recipient(s) and master escrow key ${escrowKey.keyId}: ${opts.out}`);
        return;
      }
      if (json) emit({ json }, summary, '');
      else process.stdout.write(text);
      note({ json }, `meshkit: sealed ${summary.content} to ${recipients.length} recipient(s) and master escrow key ${escrowKey.keyId}`);
    });

  addSecretOptions(
    escrow
      .command('open')
      .description('decrypt an escrowed JWE with a key reference (the master escrow key on the HSM, or a recipient key)')
      .requiredOption('--key <uri>', 'the decryption key: pkcs11:token=T;object=LABEL or file:PATH#LABEL')
      .option('--module <lib>', 'PKCS#11 library when the pkcs11: URI has no module-path')
      .option('--out <file>', 'write the plaintext to this file (mode 0600) instead of stdout')
      .argument('<file>', 'the JWE, or - for stdin'),
  )
    .option('--json', 'print JSON (the plaintext base64url-encoded, or the private JWK)')
    .action(async (file: string, opts: OpenOptions) => {
      const json = opts.json === true;
      const jwe = fromUtf8(await readInput(file));
      const ref = parseKeyReference(opts.key);
      const pkcs11 = ref.kind === 'pkcs11';
      const source = secretSource(opts, pkcs11 ? { purpose: 'PIN', subject: 'the token' } : { subject: `key store ${ref.kind === 'file' ? ref.path : ''}` });
      let recovered;
      try {
        const { store, handle } = await openKeyReference(opts.key, source, {
          deferUnlock: true,
          ...(pkcs11 ? { modulePath: resolveModulePath(opts.module) } : {}),
        });
        try {
          recovered = await recoverApplicationKey(jwe, handle.decrypter());
        } finally {
          await store.close();
        }
      } catch (e) {
        throw withCkrName(e);
      }
      try {
        const body = recovered.privateJwk === undefined ? recovered.plaintext : new TextEncoder().encode(JSON.stringify(recovered.privateJwk) + '\n');
        if (opts.out !== undefined) {
          await writeOutput(opts.out, body);
          emit({ json }, { decryptedBy: recovered.decryptedBy, out: opts.out }, `decrypted with ${recovered.decryptedBy}: ${opts.out}`);
        } else if (json) {
          emit(
            { json },
            {
              decryptedBy: recovered.decryptedBy,
              ...(recovered.privateJwk === undefined ? { plaintext: b64u(recovered.plaintext) } : { privateJwk: recovered.privateJwk }),
            },
            '',
          );
        } else {
          process.stdout.write(body);
          note({ json }, `meshkit: decrypted with ${recovered.decryptedBy}`);
        }
        if (body !== recovered.plaintext) wipe(body);
      } finally {
        wipe(recovered.plaintext);
      }
    });
}
