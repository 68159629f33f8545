/** `meshkit udf …` commands. */
import type { Command } from 'commander';

export function registerUdfCommands(_program: Command): void {
  // filled in by the udf work
}
