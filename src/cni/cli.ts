import type { Command } from 'commander';
import { installCni, resolveInstall, type AdoptFlannelMode } from './install.js';

interface InstallCniFlags {
  binDir: string;
  confDir: string;
  name?: string;
  withPortmap: boolean;
  bridge?: string;
  subnetFile: string;
  cniVersion: string;
  adoptFlannel?: boolean;
  flannelConfDir?: string;
}

/** Adds this area's weftctl subcommands. */
export function registerCniCommands(program: Command): void {
  program
    .command('install-cni')
    .description('install the weft CNI plugin (shim + bundled plugin) and a conflist')
    .option('--bin-dir <dir>', 'CNI plugin directory', '/opt/cni/bin')
    .option('--conf-dir <dir>', 'CNI config directory', '/etc/cni/net.d')
    .option('--name <name>', 'network (conflist) name (default: "weft", or flannel\'s when adopting)')
    .option('--with-portmap', 'chain Debian\'s portmap plugin after weft (linked from /usr/lib/cni when missing)', false)
    .option('--bridge <name>', 'host bridge (default: "weft0", or flannel\'s when adopting)')
    .option('--subnet-file <path>', 'subnet.env written by weftd', '/run/flannel/subnet.env')
    .option('--cni-version <v>', 'conflist cniVersion', '1.0.0')
    .option('--adopt-flannel', 'take over the flannel CNI plugin\'s network name, bridge and IPAM directory (default: when its conflist is in the conf dir; kube-flannel\'s cbr0/cni0 without one)')
    .option('--no-adopt-flannel', 'never adopt flannel\'s network (a host without flannel pods)')
    .option('--flannel-conf-dir <dir>', 'where to look for flannel\'s conflist (default: --conf-dir)')
    .action((o: InstallCniFlags) => {
      const mode: AdoptFlannelMode = o.adoptFlannel === undefined ? 'auto' : o.adoptFlannel ? 'yes' : 'no';
      const weftConf: Record<string, unknown> = o.bridge !== undefined ? { bridge: o.bridge, subnetFile: o.subnetFile } : { subnetFile: o.subnetFile };
      const { options, adoption } = resolveInstall({
        binDir: o.binDir,
        confDir: o.confDir,
        name: o.name,
        withPortmap: o.withPortmap,
        cniVersion: o.cniVersion,
        weftConf,
        adoptFlannel: mode,
        flannelConfDir: o.flannelConfDir,
      });
      if (adoption) {
        const dir = adoption.dataDir ?? '/var/lib/cni/networks';
        const from = adoption.previous ? `the earlier install's ${adoption.file}` : (adoption.file ?? "kube-flannel's defaults");
        process.stdout.write(`adopted flannel's network from ${from}: name ${adoption.name}, bridge ${adoption.bridge}, reservations in ${dir}/${adoption.name}\n`);
        if (adoption.portmap) process.stdout.write('adopted flannel\'s portmap after weft in the chain\n');
      }
      // Written out as before, so a conflist says which bridge it uses.
      if (!adoption && options.weftConf?.bridge === undefined) options.weftConf = { bridge: 'weft0', ...options.weftConf };
      const files = installCni(options);
      for (const f of files) process.stdout.write(`installed ${f}\n`);
    });
}
