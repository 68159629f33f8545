/** Registers every command group on the program. One file per group. */
import type { Command } from 'commander';
import { registerUdfCommands } from './udf.js';
import { registerShamirCommands } from './shamir.js';
import { registerKeyCommands } from './key.js';
import { registerProfileCommands } from './profile.js';
import { registerDemoCommand } from './demo.js';
import { registerTokenCommands } from './token.js';
import { registerCeremonyCommands } from './ceremony.js';
import { registerEscrowCommands } from './escrow.js';
import { registerPortalCommands } from './portal.js';
import { registerAdminCommands } from './admin.js';
import { registerBenchCommands } from './bench.js';
import { registerDeviceCommands } from './device.js';

export function registerCommands(program: Command): void {
  registerUdfCommands(program);
  registerShamirCommands(program);
  registerKeyCommands(program);
  registerProfileCommands(program);
  registerDemoCommand(program);
  registerTokenCommands(program);
  registerCeremonyCommands(program);
  registerEscrowCommands(program);
  registerPortalCommands(program);
  registerAdminCommands(program);
  registerBenchCommands(program);
  registerDeviceCommands(program);
}
