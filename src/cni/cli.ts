import type { Command } from 'commander';
import { installCni } from './install.js';

/** Adds this area's weftctl subcommands. */
export function registerCniCommands(program: Command): void {
  program
    .command('install-cni')
    .description('install the weft CNI plugin (shim + bundled plugin) and a conflist')
    .option('--bin-dir <dir>', 'CNI plugin directory', '/opt/cni/bin')
    .option('--conf-dir <dir>', 'CNI config directory', '/etc/cni/net.d')
    .option('--name <name>', 'network name (conflist name)', 'weft')
    .option('--with-portmap', 'chain Debian\'s portmap plugin after weft (linked from /usr/lib/cni when missing)', false)
    .option('--bridge <name>', 'host bridge', 'weft0')
    .option('--subnet-file <path>', 'subnet.env written by weftd', '/run/flannel/subnet.env')
    .option('--cni-version <v>', 'conflist cniVersion', '1.0.0')
    .action((o: { binDir: string; confDir: string; name: string; withPortmap: boolean; bridge: string; subnetFile: string; cniVersion: string }) => {
      const files = installCni({
        binDir: o.binDir,
        confDir: o.confDir,
        name: o.name,
        withPortmap: o.withPortmap,
        cniVersion: o.cniVersion,
        weftConf: { bridge: o.bridge, subnetFile: o.subnetFile },
      });
      for (const f of files) process.stdout.write(`installed ${f}\n`);
    });
}
