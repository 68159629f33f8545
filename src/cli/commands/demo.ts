/** `meshkit demo`: the whole story on embedded defaults. */
import type { Command } from 'commander';

export function registerDemoCommand(_program: Command): void {
  // filled in with the demo
}
