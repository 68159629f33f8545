/** `meshkit key …` commands. */
import type { Command } from 'commander';

export function registerKeyCommands(_program: Command): void {
  // filled in by the key work
}
