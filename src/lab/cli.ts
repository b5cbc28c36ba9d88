import type { Command } from 'commander';

/** Adds this area's weftctl subcommands. */
export function registerLabCommands(program: Command): void {
  void program;
}
