/** `meshkit profile …` commands. */
import type { Command } from 'commander';

export function registerProfileCommands(_program: Command): void {
  // filled in by the profile work
}
