import type { Command } from 'commander';

/** Adds this area's weftctl subcommands. */
export function registerConfigCommands(program: Command): void {
  void program;
}
