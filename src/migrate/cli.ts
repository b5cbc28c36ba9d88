import type { Command } from 'commander';
import { InvalidArgumentError } from '../core/errors.js';
import { run } from '../exec/run.js';
import { ExecIptables, type IptablesBackend } from '../netfilter/iptables.js';
import { removeFlannelRules } from './flannel-rules.js';

/** Is this backend's iptables-save on the host (a host may have only one of the two)? */
async function hasBackend(b: IptablesBackend): Promise<boolean> {
  const r = await run(`iptables-${b}-save`, ['-t', 'filter'], { allowFail: true }).catch(() => undefined);
  return r !== undefined && r.code === 0;
}

/** Adds the migration subcommands to weftctl. */
export function registerMigrateCommands(program: Command): void {
  program
    .command('cleanup-flannel')
    .description('remove flanneld\'s iptables rules (FLANNEL-POSTRTG, FLANNEL-FWD and the jumps to them) from iptables-legacy and iptables-nft; idempotent')
    .option('--backend <b>', 'legacy, nft or both', 'both')
    .action(async (o: { backend: string }) => {
      if (!['legacy', 'nft', 'both'].includes(o.backend)) throw new InvalidArgumentError('--backend', `"${o.backend}" must be legacy, nft or both`);
      const backends: IptablesBackend[] = o.backend === 'both' ? ['legacy', 'nft'] : [o.backend as IptablesBackend];
      let found = 0;
      for (const b of backends) {
        if (!(await hasBackend(b))) {
          if (o.backend !== 'both') throw new InvalidArgumentError('--backend', `iptables-${b}-save is not usable here`);
          process.stdout.write(`${b}: iptables-${b}-save not usable, skipped\n`);
          continue;
        }
        // A failure (the restore's error names the tool) stops here: the other backend is not half done.
        const r = await removeFlannelRules(new ExecIptables(b));
        found += r.jumps + r.chains.length;
        process.stdout.write(r.jumps + r.chains.length === 0
          ? `${b}: no flannel rules\n`
          : `${b}: removed ${r.jumps} jump(s) and chain(s) ${r.chains.join(', ') || '(none)'}\n`);
      }
      if (found === 0) process.stdout.write('nothing to remove\n');
    });
}
