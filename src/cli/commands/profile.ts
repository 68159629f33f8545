/** `meshkit profile show|verify`: read and check signed profiles on disk. */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { MeshkitError } from '../../core/errors.js';
import {
  readProfile,
  verifyProfile,
  type AnyProfile,
  type DecodedProfile,
  type VerifiedProfile,
  type VerifyContext,
} from '../../core/profiles.js';
import { ReportedFailure } from '../main.js';
import { emit, type OutputOptions } from '../output.js';

/** Signed profiles larger than this are refused before parsing (a Personal Profile with 10,000 devices is ~10 MiB). */
export const MAX_PROFILE_BYTES = 64 * 1024 * 1024;

/** Reads a signed profile file as text, bounded. */
export async function readProfileFile(path: string): Promise<string> {
  const data = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    throw new MeshkitError('ERR_IO', `cannot read ${path}: ${e.code ?? e.message}`);
  });
  if (data.length > MAX_PROFILE_BYTES) throw new MeshkitError('ERR_IO', `${path} is larger than ${MAX_PROFILE_BYTES} bytes`);
  return data.toString('utf8');
}

export function registerProfileCommands(program: Command): void {
  const profile = program.command('profile').description('show and verify signed Mesh profiles (JWS General JSON files)');

  profile
    .command('show')
    .description('decode a signed profile and print its contents (does NOT verify it; use "profile verify")')
    .argument('<file>', 'signed profile (.json)')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: OutputOptions) => {
      const decoded = readProfile(await readProfileFile(file));
      emit(opts, { file, verified: false, type: decoded.type, signer: decoded.kid, profile: decoded.profile }, () => showText(file, decoded));
    });

  profile
    .command('verify')
    .description('verify signed profiles: signature, §5.4 signer rules, supersession, and (for devices/applications) connection')
    .argument('<files...>', 'signed profiles; a Master or Personal Profile given earlier is the context for the ones after it')
    .option('--master <file>', 'Master Profile to check Personal Profiles against')
    .option('--personal <file>', 'Personal Profile that Device / Application Profiles must be connected to')
    .option('--json', 'print JSON')
    .action(async (files: string[], opts: OutputOptions & { master?: string; personal?: string }) => {
      const context: VerifyContext = {};
      if (opts.master !== undefined) context.master = await verifyProfile(await readProfileFile(opts.master)) as VerifiedProfile<'MasterProfile'>;
      if (opts.personal !== undefined) {
        context.personal = await verifyProfile(await readProfileFile(opts.personal), context) as VerifiedProfile<'PersonalProfile'>;
      }
      const results: VerifyResult[] = [];
      for (const file of files) {
        try {
          const v = await verifyProfile(await readProfileFile(file), context);
          if (v.type === 'MasterProfile' && opts.master === undefined) context.master = v as VerifiedProfile<'MasterProfile'>;
          if (v.type === 'PersonalProfile' && opts.personal === undefined) context.personal = v as VerifiedProfile<'PersonalProfile'>;
          results.push(okResult(file, v));
        } catch (e) {
          if (!(e instanceof MeshkitError)) throw e;
          results.push({ file, valid: false, error: { code: e.code, message: e.message } });
        }
      }
      emit(opts, { valid: results.every((r) => r.valid), results }, () => results.map(resultText).join('\n'));
      const failed = results.find((r) => !r.valid);
      if (failed?.error !== undefined) {
        if (opts.json) throw new ReportedFailure(failed.error.message);
        throw new MeshkitError(failed.error.code as MeshkitError['code'], `${failed.file}: ${failed.error.message}`);
      }
    });
}

interface VerifyResult {
  file: string;
  valid: boolean;
  type?: string;
  identifier?: string;
  sequence?: number;
  signer?: string;
  signerRole?: string;
  connected?: boolean;
  devices?: number;
  error?: { code: string; message: string };
}

function okResult(file: string, v: VerifiedProfile): VerifyResult {
  const r: VerifyResult = { file, valid: true, type: v.type, identifier: v.identifier, sequence: v.sequence, signer: v.signerKeyId, signerRole: v.signerRole };
  if (v.connected !== undefined) r.connected = v.connected;
  if (v.devices !== undefined) r.devices = v.devices.length;
  return r;
}

function resultText(r: VerifyResult): string {
  if (!r.valid) return `${r.file}: INVALID — ${r.error?.message ?? 'unknown error'} [${r.error?.code ?? ''}]`;
  const role = (r.signerRole ?? '').replace(/-/g, ' ');
  const extra = [
    r.devices !== undefined ? `${r.devices} device${r.devices === 1 ? '' : 's'} verified` : '',
    r.connected === true ? 'connected' : '',
  ].filter(Boolean).join(', ');
  return `${r.file}: valid ${r.type} ${r.identifier} (Sequence ${r.sequence}), signed by ${role} ${r.signer}${extra ? `; ${extra}` : ''}`;
}

function showText(file: string, d: DecodedProfile): string {
  const p: AnyProfile = d.profile;
  const lines = [
    `${file}: ${d.type} (NOT verified — run "meshkit profile verify")`,
    `  Identifier  ${p.Identifier}`,
    `  Sequence    ${p.Sequence}`,
    `  Updated     ${p.Updated}`,
    `  Signed by   ${d.kid}`,
  ];
  if (p.Names.length > 0) lines.push(`  Names       ${p.Names.join(', ')}`);
  const key = (label: string, k: { UDF: string; PublicParameters: { crv: string } } | undefined): void => {
    if (k !== undefined) lines.push(`  ${label.padEnd(11)} ${k.UDF} (${k.PublicParameters.crv})`);
  };
  if ('MasterSignatureKey' in p) {
    key('Master key', p.MasterSignatureKey);
    p.MasterEscrowKeys.forEach((k) => key('Escrow key', k));
    p.OnlineSignatureKeys.forEach((k) => key('Admin key', k));
  } else if ('SignedMasterProfile' in p) {
    lines.push(`  Devices     ${p.Devices.length}`);
    for (const dev of p.Devices) {
      try {
        const dp = readProfile(dev, 'DeviceProfile').profile;
        lines.push(`    ${dp.Identifier}  ${dp.Description}`);
      } catch {
        lines.push('    (malformed device entry)');
      }
    }
    lines.push(`  Applications ${p.Applications.length}`);
    for (const a of p.Applications) lines.push(`    ${a.Identifier}  ${a.Type}${a.Friendly ? ` (${a.Friendly})` : ''}`);
  } else if ('DeviceSignatureKey' in p) {
    lines.push(`  Description ${p.Description}`);
    key('Signature', p.DeviceSignatureKey);
    key('Encryption', p.DeviceEncryptionKey);
    key('Auth', p.DeviceAuthenticationKey);
  } else {
    lines.push(`  Type        ${p.Type}`, `  Devices     ${p.Devices.length}`);
  }
  return lines.join('\n');
}
