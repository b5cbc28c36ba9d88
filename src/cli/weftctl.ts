#!/usr/bin/env node
import { Command } from 'commander';
import { runCli } from './run.js';
import { addTypedOption, useEnv } from './env.js';
import { weftVersion } from './version.js';
import { registerConfigCommands } from '../store/cli.js';
import { registerLabCommands } from '../lab/cli.js';
import { registerCniCommands } from '../cni/cli.js';
import { registerProxyCommands } from '../proxy/cli.js';
import { registerMigrateCommands } from '../migrate/cli.js';

const program = new Command('weftctl')
  .description('weft control: network config, leases, services, CNI install and the namespace lab.\n--etcd-* flags can also be set as WEFTCTL_<FLAG> (e.g. WEFTCTL_ETCD_ENDPOINTS).')
  .version(weftVersion(), '--version', 'print the version and exit');
addTypedOption(program, { flags: '--etcd-endpoints <urls>', description: 'etcd endpoints, comma separated', default: 'http://127.0.0.1:2379' });
addTypedOption(program, { flags: '--etcd-prefix <prefix>', description: 'flannel key prefix', default: '/coreos.com/network' });

registerConfigCommands(program);
registerLabCommands(program);
registerCniCommands(program);
registerProxyCommands(program);
registerMigrateCommands(program);
useEnv(program, 'WEFTCTL');

await runCli(program);
