/** `meshkit demo`: the whole story on embedded defaults (no hardware, no configuration). */
import type { Command } from 'commander';
import { runDemo, type DemoSummary } from '../../demo/demo.js';
import { emit } from '../output.js';

function defaultOut(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `meshkit-demo-${stamp}`;
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the whole story on embedded defaults: master keys, profiles, devices, verification')
    .option('--out <dir>', 'directory for everything the demo makes (must be new or empty)', defaultOut())
    .option('--json', 'print the summary as JSON')
    .action(async (opts: { out: string; json?: boolean }) => {
      const json = opts.json === true;
      const env = process.env['MESHKIT_PASSPHRASE'];
      const summary = await runDemo({
        out: opts.out,
        ...(env ? { passphrase: new TextEncoder().encode(env) } : {}),
        onStep: (s) => { if (!json) process.stderr.write(`  ✓ ${s.step.padEnd(16)} ${s.detail} (${s.ms} ms)\n`); },
      });
      emit({ json }, summary, () => summaryText(summary));
    });
}

function summaryText(s: DemoSummary): string {
  const lines = [
    '',
    `meshkit demo — done. Everything is under ${s.out}`,
    `  key store     software (encrypted files under keys/)${s.passphraseFile ? `; demo passphrase in ${s.passphraseFile}` : '; passphrase from MESHKIT_PASSPHRASE'}`,
    `  master        ${s.master.identifier}`,
    `    signature   ${s.master.signatureKey} (Ed448)`,
    `    escrow      ${s.master.escrowKey} (X448)`,
    `    admin       ${s.master.adminKey} (Ed25519)`,
    `  personal      Sequence ${s.personal.sequence}, ${s.personal.devices} devices connected`,
    ...s.devices.map((d) => `    ${d.name.padEnd(11)} ${d.identifier}  ${d.file}`),
    '  checks',
    ...s.checks.map((c) => `    ${c.check}: ${c.result}`),
    `  log           ${s.log.entries} entries, head ${s.log.head ?? '(empty)'} (demo-log.jsonl, signed head demo-log.head.json)`,
    '  files',
    ...s.files.map((f) => `    ${f}`),
    '',
    `Try: meshkit profile verify ${s.out}/master.json ${s.out}/personal.json ${s.out}/devices/*.json`,
  ];
  return lines.join('\n');
}
