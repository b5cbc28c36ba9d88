import type { Command } from 'commander';

/** Adds this area's weftctl subcommands. */
export function registerCniCommands(program: Command): void {
  void program;
}
