/** `meshkit shamir …` commands. */
import type { Command } from 'commander';

export function registerShamirCommands(_program: Command): void {
  // filled in by the shamir work
}
