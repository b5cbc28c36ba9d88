#!/usr/bin/env node
import { Command } from 'commander';
import { runCli } from './run.js';
import { registerConfigCommands } from '../store/cli.js';
import { registerLabCommands } from '../lab/cli.js';
import { registerCniCommands } from '../cni/cli.js';
import { registerProxyCommands } from '../proxy/cli.js';
import { registerMigrateCommands } from '../migrate/cli.js';

const program = new Command('weftctl')
  .description('weft control: network config, leases, services, CNI install and the namespace lab')
  .option('--etcd-endpoints <urls>', 'etcd endpoints, comma separated', process.env.WEFTCTL_ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379')
  .option('--etcd-prefix <prefix>', 'flannel key prefix', process.env.WEFTCTL_ETCD_PREFIX ?? '/coreos.com/network');

registerConfigCommands(program);
registerLabCommands(program);
registerCniCommands(program);
registerProxyCommands(program);
registerMigrateCommands(program);

await runCli(program);
