import type { Command } from 'commander';

/** Adds this area's weftctl subcommands. */
export function registerProxyCommands(program: Command): void {
  void program;
}
