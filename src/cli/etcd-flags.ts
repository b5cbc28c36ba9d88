/**
 * The etcd TLS and auth flags, defined once for every program that talks to
 * etcd (weftd, weft-proxy, weftctl config/leases/apply/get/delete), with
 * flanneld's names. Each is also read from `<PREFIX>_ETCD_CAFILE` etc. once
 * the program installs useEnv.
 */
import type { Command } from 'commander';
import type { EtcdClientOptions } from '../etcd/index.js';
import { UsageError, addTypedOption } from './env.js';

/** The five flags' values, as commander hands them over (camelCase). */
export interface EtcdFlagValues {
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  etcdUsername?: string;
  etcdPassword?: string;
}

export type EtcdSecurityOptions = Pick<EtcdClientOptions, 'caFile' | 'certFile' | 'keyFile' | 'username' | 'password'>;

/** Adds --etcd-cafile, --etcd-certfile, --etcd-keyfile, --etcd-username, --etcd-password to `cmd`. */
export function addEtcdFlags(cmd: Command): Command {
  addTypedOption(cmd, { flags: '--etcd-cafile <file>', description: 'CA certificate (PEM) that signed the etcd servers\' certificates' });
  addTypedOption(cmd, { flags: '--etcd-certfile <file>', description: 'client certificate (PEM) for etcd (with --etcd-keyfile)' });
  addTypedOption(cmd, { flags: '--etcd-keyfile <file>', description: 'client key (PEM) for etcd (with --etcd-certfile)' });
  addTypedOption(cmd, { flags: '--etcd-username <name>', description: 'etcd user (etcd auth)' });
  addTypedOption(cmd, { flags: '--etcd-password <password>', description: 'etcd password (prefer the environment variable: argv is visible to every local user)' });
  return cmd;
}

/** EtcdClient options from the flags (only those given); a certificate without its key is a usage error. */
export function etcdSecurityOf(o: EtcdFlagValues): EtcdSecurityOptions {
  if (Boolean(o.etcdCertfile) !== Boolean(o.etcdKeyfile)) {
    throw new UsageError(o.etcdCertfile ? '--etcd-keyfile' : '--etcd-certfile', 'a client certificate needs its key: give both --etcd-certfile and --etcd-keyfile');
  }
  return {
    ...(o.etcdCafile ? { caFile: o.etcdCafile } : {}),
    ...(o.etcdCertfile ? { certFile: o.etcdCertfile } : {}),
    ...(o.etcdKeyfile ? { keyFile: o.etcdKeyfile } : {}),
    ...(o.etcdUsername ? { username: o.etcdUsername } : {}),
    ...(o.etcdPassword ? { password: o.etcdPassword } : {}),
  };
}
