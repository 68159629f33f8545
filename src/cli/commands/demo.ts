/** `meshkit demo`: the whole story on embedded defaults (no hardware, no configuration). */
import type { Command } from 'commander';
import { DEMO_DEVICES_MODES, runDemo, type DemoDevicesMode, type DemoSummary } from '../../demo/demo.js';
import { UsageError } from '../main.js';
import { emit } from '../output.js';

/** The environment variable that chooses the demo bench's devices when --devices is not given. */
const DEVICES_ENV = 'MESHKIT_DEMO_DEVICES';

function devicesMode(given: string | undefined): DemoDevicesMode {
  const env = process.env[DEVICES_ENV];
  const value = given ?? (env === undefined || env === '' ? 'auto' : env);
  const mode = DEMO_DEVICES_MODES.find((m) => m === value);
  if (mode === undefined) {
    throw new UsageError(`${given === undefined ? DEVICES_ENV : '--devices'} expects one of ${DEMO_DEVICES_MODES.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return mode;
}

function defaultOut(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `meshkit-demo-${stamp}`;
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the whole story on embedded defaults: ceremony, recovery, devices, a provisioning bench of emulated devices, admin signing, verification')
    .option('--out <dir>', 'directory for everything the demo makes (must be new or empty)', defaultOut())
    .option('--software', 'use encrypted software key stores even when SoftHSM2 is installed')
    .option('--devices <mode>', `the bench's emulated devices: emulator (the C firmware emulator on socat ptys), inprocess (the TypeScript device over in-process links) or auto (the emulator when socat, gcc and libsodium-dev are there); default: $${DEVICES_ENV}, else auto`)
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', `
Environment:
  ${DEVICES_ENV}=auto|emulator|inprocess   the default of --devices (CI runs both paths)\n`)
    .action(async (opts: { out: string; json?: boolean; software?: boolean; devices?: string }) => {
      const json = opts.json === true;
      const devices = devicesMode(opts.devices);
      const summary = await runDemo({
        out: opts.out,
        software: opts.software === true,
        devices,
        onStep: (s) => { if (!json) process.stderr.write(`  ✓ ${s.step.padEnd(10)} ${s.detail} (${s.ms} ms)\n`); },
      });
      emit({ json }, summary, () => summaryText(summary));
    });
}

function summaryText(s: DemoSummary): string {
  const lines = [
    '',
    `meshkit demo — done. Everything is under ${s.out}`,
    `  key store     ${s.keyStoreNote}`,
    `  ceremony      ${s.ceremony.dir}/ — ${s.ceremony.origin}; escrow blob ${s.ceremony.blobId}; ${s.ceremony.shares} share files, any ${s.ceremony.threshold} recover; ceremony verify: ${s.ceremony.verified}`,
    `  recovery      ${s.recovery.dir}/ — shares ${s.recovery.sharesUsed.join(', ')} → keys on ${s.recovery.token}: ${s.recovery.keys.join(', ')}`,
    `  master        ${s.master.identifier}`,
    `    signature   ${s.master.signatureKey} (Ed448)`,
    `    escrow      ${s.master.escrowKey} (X448)`,
    `    admin       ${s.master.adminKey} (Ed25519, on the smartcard)`,
    `  account       ${s.account}/ — Personal Profile Sequence ${s.personal.sequence}, ${s.personal.devices} device(s) connected`,
    ...s.devices.map((d) => `    ${d.name.padEnd(11)} ${d.identifier}  ${d.file}${d.identifier === s.revoked.identifier ? '  (revoked)' : ''}`),
    `  bench         ${s.bench.dir}/ — ${s.bench.provisioned} devices provisioned ${s.bench.mode === 'emulator' ? 'over socat ptys by the C firmware emulator' : `in process (${s.bench.reason ?? ''})`}; bench key ${s.bench.benchKey} (${s.bench.benchKeyStore}); ${s.bench.log.count} records, head ${s.bench.log.headFile} signed by the bench key; bench verify: ${s.bench.verified}`,
    ...s.bench.devices.map((d) => `    ${d.serial.padEnd(11)} ${d.deviceId}  ${d.ms} ms${d.bytesSent === undefined ? '' : `, ${d.bytesSent} B sent / ${d.bytesReceived ?? 0} B received`}  record ${d.record}`),
    `  revoked       ${s.revoked.name} ${s.revoked.identifier} in Personal Profile Sequence ${s.revoked.sequence}`,
    '  checks',
    ...s.checks.map((c) => `    ${c.check}: ${c.result}`),
    `  portal        ${s.portal.url} (SQLite ${s.portal.db}), stopped: account ${s.portal.account}, notary log ${s.portal.logCount} entries, last entry ${s.portal.proven ? 'proven against the signed head' : 'NOT proven'}`,
    `  log           ${s.log.entries} entries, head ${s.log.head ?? '(empty)'} (demo-log.jsonl, signed head demo-log.head.json)`,
    '  files',
    ...s.files.map((f) => `    ${f}`),
    '',
    'Try:',
    `  meshkit ceremony verify ${s.out}/${s.ceremony.dir}`,
    `  meshkit bench verify --out ${s.out}/${s.bench.dir} --account ${s.out}/${s.account}`,
    `  meshkit profile verify --account ${s.out}/${s.account} ${s.devices.map((d) => `${s.out}/${d.file}`).join(' ')}`,
  ];
  return lines.join('\n');
}
