import { relative } from 'node:path';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { Command, InvalidArgumentError as CommanderArgError } from 'commander';
import { createLogger } from '../core/log.js';
import { CniAttacher } from './cni-attacher.js';
import { DEMO_SERVICE, runDemo } from './demo.js';
import { ManualAttacher } from './attacher.js';
import { formatStatus } from './format.js';
import { labDown, labStatus, labTarget, labUp } from './lab.js';
import { MAX_HOSTS, MAX_PODS_PER_HOST } from './names.js';
import { labServePods } from './podserver.js';
import { labRunRoot, readState } from './state.js';

function intOpt(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new CommanderArgError(`must be an integer from ${min} to ${max}`);
    return n;
  };
}

const progress = (id: string) => (line: string): void => {
  process.stderr.write(`[lab ${id}] ${line}\n`);
};

/** Runs argv inside a namespace with the terminal attached; resolves to its exit code. */
function execInteractive(netns: string, argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15)));
  });
}

/** Adds `weftctl lab up|status|exec|serve|down|list`. */
export function registerLabCommands(program: Command): void {
  const lab = program
    .command('lab')
    .description('a multi-host cluster of network namespaces on this machine (needs root)')
    .enablePositionalOptions();

  lab
    .command('up')
    .description('build a lab: switch + etcd, hosts running weftd, pods')
    .option('--id <id>', 'lab id (letters and digits, at most 8)', 'weft')
    .option('--hosts <n>', 'number of hosts', intOpt(1, MAX_HOSTS), 3)
    .option('--pods-per-host <n>', 'pods on each host', intOpt(0, MAX_PODS_PER_HOST), 1)
    .option('--backend <type>', 'host-gw, vxlan or udp', 'host-gw')
    .option('--network <cidr>', 'pod network', '10.244.0.0/16')
    .option('--subnet-lease-ttl <seconds>', 'weftd lease TTL (short values for tests)', intOpt(1, 86400 * 7))
    .option('--weftd-arg <arg>', 'extra weftd argument (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--cni-plugin <path>', 'attach pods by running this CNI plugin (default: the built weft plugin, through each host\'s weftd)')
    .option('--proxy-mode <mode>', 'weft-proxy on every host: iptables, nftables or none', 'iptables')
    .option('--control-plane <kind>', 'where Services and Nodes live: etcd, or kubernetes (a kube-apiserver beside etcd; needs scripts/kube-apiserver.sh)', 'etcd')
    .option('--subnet-manager <kind>', 'where weftd takes subnets from: etcd, or kubernetes (--kube-subnet-mgr; only with --control-plane kubernetes)', 'etcd')
    .option('--manual-pods', 'attach pods with plain ip commands instead of the CNI plugin')
    .option('--no-weftd', 'do not start weftd: the lab assigns subnets and static routes itself')
    .option('--log-level <level>', 'debug, info, warn, error', 'warn')
    .action(async (o) => {
      const say = progress(o.id);
      const ac = new AbortController();
      // Ctrl-C during up: stop at the next step and remove what was made.
      const onInt = () => {
        say('interrupted: stopping and cleaning up');
        ac.abort();
      };
      process.once('SIGINT', onInt);
      try {
        const st = await labUp({
          id: o.id,
          hosts: o.hosts,
          podsPerHost: o.podsPerHost,
          backend: o.backend,
          network: o.network,
          subnetLeaseTtl: o.subnetLeaseTtl,
          weftdArgs: o.weftdArg,
          startWeftd: o.weftd,
          proxyMode: o.proxyMode,
          controlPlane: o.controlPlane,
          subnetManager: o.subnetManager,
          attacher: o.manualPods ? new ManualAttacher() : o.cniPlugin ? new CniAttacher({ plugin: o.cniPlugin }) : undefined,
          log: createLogger({ level: o.logLevel }),
          onStep: (s) => say(s),
          signal: ac.signal,
        });
        process.stdout.write(formatStatus(st));
        say(`ready. Look around: weftctl lab exec --id ${o.id} h1-p1 -- ping ${st.hosts.at(-1)?.pods[0]?.ip ?? '<ip>'}`);
        say(`remove with: weftctl lab down --id ${o.id}`);
      } finally {
        process.removeListener('SIGINT', onInt);
      }
    });

  lab
    .command('status')
    .description('show a lab: hosts, subnets, pods')
    .option('--id <id>', 'lab id', 'weft')
    .option('--json', 'machine-readable output')
    .action((o) => {
      const st = labStatus(o.id);
      process.stdout.write(o.json ? JSON.stringify(st, null, 2) + '\n' : formatStatus(st));
    });

  lab
    .command('exec')
    .description('run a command in a lab namespace: h1, h1-p1, sw, or a full name (exit code passed through)')
    .option('--id <id>', 'lab id', 'weft')
    .argument('<target>', 'h<N>, h<N>-p<K>, sw, or a namespace name of the lab')
    .argument('<cmd...>', 'command and arguments, after --')
    .passThroughOptions()
    .action(async (target: string, cmd: string[], o) => {
      const netns = labTarget(o.id, target);
      // passThroughOptions keeps the `--` separator among the operands.
      const argv = cmd[0] === '--' ? cmd.slice(1) : cmd;
      if (argv.length === 0) throw new CommanderArgError('no command given after --');
      process.exitCode = await execInteractive(netns, argv);
    });

  lab
    .command('serve')
    .description('start a small HTTP server in every pod answering "<pod> <ip>" (stopped by lab down)')
    .option('--id <id>', 'lab id', 'weft')
    .option('--port <port>', 'TCP port', intOpt(1, 65535), 8080)
    .action(async (o) => {
      const served = await labServePods(o.id, { port: o.port });
      for (const s of served) process.stdout.write(`${s.pod}\thttp://${s.ip}:${o.port}/\tpid ${s.pid}\n`);
    });

  lab
    .command('down')
    .description('remove everything the lab made (also after a crash); safe to repeat')
    .option('--id <id>', 'lab id', 'weft')
    .action(async (o) => {
      const say = progress(o.id);
      const r = await labDown(o.id, { log: createLogger({ level: 'warn' }) });
      if (!r.existed) say('nothing to remove');
      else {
        say(`stopped ${r.stoppedPids.length} process(es)${r.strayPids.length ? `, killed ${r.strayPids.length} stray` : ''}`);
        say(`removed ${r.removedNamespaces.length} namespace(s)`);
      }
    });

  lab
    .command('list')
    .description('lab ids with state on this machine')
    .action(() => {
      let ids: string[] = [];
      try {
        ids = readdirSync(labRunRoot());
      } catch {
        /* no labs */
      }
      for (const id of ids) {
        let phase = '?';
        try {
          phase = readState(id)?.phase ?? 'no state';
        } catch (err) {
          phase = `unreadable: ${(err as Error).message}`;
        }
        process.stdout.write(`${id}\t${phase}\n`);
      }
    });

  program
    .command('demo')
    .description('the main job: a 3-host lab with weftd, weft-proxy and CNI pods serving HTTP, a Service, then ping/curl verification')
    .option('--id <id>', 'lab id', 'demo')
    .option('--backend <type>', 'host-gw, vxlan or udp', 'vxlan')
    .option('--proxy-mode <mode>', 'iptables or nftables', 'iptables')
    .option('--hosts <n>', 'number of hosts', intOpt(2, MAX_HOSTS), 3)
    .option('--pods-per-host <n>', 'pods on each host', intOpt(1, MAX_PODS_PER_HOST), 2)
    .option('--control-plane <kind>', 'etcd, or kubernetes (the Service goes through a kube-apiserver; needs scripts/kube-apiserver.sh)', 'etcd')
    .action(async (o) => {
      const say = (line: string) => process.stderr.write(`==> ${line}\n`);
      const started = Date.now();
      const res = await runDemo({ id: o.id, backend: o.backend, proxyMode: o.proxyMode, hosts: o.hosts, podsPerHost: o.podsPerHost, controlPlane: o.controlPlane, progress: say });
      process.stdout.write(`\n${formatStatus(res.status)}\n${res.report}`);
      say(`done in ${((Date.now() - started) / 1000).toFixed(1)} s; the lab "${o.id}" is still running`);
      // How this program was started, so the hints run as printed (also inside lab namespaces).
      const w = `node ${relative(process.cwd(), process.argv[1] ?? 'dist/cli/weftctl.js') || 'dist/cli/weftctl.js'}`;
      const kc = res.status.hosts[0]?.kubeconfig;
      const source = kc ? `--kubeconfig ${kc}` : '--etcd-endpoints http://192.0.2.254:2379';
      process.stdout.write(
        [
          '',
          'Look around:',
          `  ${w} lab status --id ${o.id}`,
          `  ${w} lab exec --id ${o.id} h1 -- ip route        # routes weftd programmed`,
          `  ${w} lab exec --id ${o.id} h1-p1 -- curl -s ${DEMO_SERVICE.clusterIp}   # the Service from a pod`,
          `  ${w} lab exec --id ${o.id} h1 -- ${w} --etcd-endpoints http://192.0.2.254:2379 leases`,
          `  ${w} lab exec --id ${o.id} h1 -- ${w} ${kc ? `get services ${source}` : `${source} get services`}`,
          `  less /run/weft-lab/${o.id}/h1/weftd.log /run/weft-lab/${o.id}/h1/weft-proxy.log`,
          'Stop:',
          `  ${w} lab down --id ${o.id}`,
          '',
        ].join('\n'),
      );
      if (!res.ok) process.exitCode = 1;
    });
}
