/**
 * weftctl subcommands of the store area: `config set`, `config get`, `leases`.
 * Each action is a plain function over a Registry and an output writer, so
 * unit tests run it against MemoryRegistry; commander only wires flags.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidArgumentError, WeftError } from '../core/errors.js';
import { formatCidr } from '../core/ip.js';
import { EtcdRegistry } from './etcd-registry.js';
import { addEtcdFlags, etcdSecurityOf } from '../cli/etcd-flags.js';
import {
  buildNetworkConfig,
  describeNetworkConfig,
  parseNetworkConfig,
  serializeNetworkConfig,
} from './netconfig.js';
import { DEFAULT_ETCD_PREFIX, isReservation, type Registry } from './registry.js';
import type { Lease, NetworkConfig } from './types.js';

/** No config stored at `<prefix>/config`. */
export class ConfigMissingError extends WeftError {
  override readonly code = 'ERR_CONFIG_MISSING';
}

/** etcd connection flags, as commander hands them over (camelCase). */
export interface EtcdCliOptions {
  /** Comma-separated endpoints. Default "http://127.0.0.1:2379". */
  etcdEndpoints?: string;
  /** Default "/coreos.com/network". */
  etcdPrefix?: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  etcdUsername?: string;
  etcdPassword?: string;
}

/** An EtcdRegistry from flag values (weftd, weftctl and the lab share this). */
export function registryFromOptions(opts: EtcdCliOptions): EtcdRegistry {
  const endpoints = (opts.etcdEndpoints ?? 'http://127.0.0.1:2379')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const e of endpoints) {
    if (!/^https?:\/\/[^/]+\/?$/.test(e)) {
      throw new InvalidArgumentError('--etcd-endpoints', `"${e}" is not an http(s)://host:port URL`);
    }
  }
  return new EtcdRegistry({
    endpoints,
    prefix: opts.etcdPrefix ?? DEFAULT_ETCD_PREFIX,
    ...etcdSecurityOf(opts),
  });
}

export type Out = (text: string) => void;

/** Flags of `weftctl config set`. */
export interface ConfigSetOptions {
  /** Read the whole config JSON from this file ("-" = stdin) instead of flags. */
  file?: string;
  network?: string;
  backend?: string;
  subnetLen?: string;
  subnetMin?: string;
  subnetMax?: string;
  vni?: string;
  port?: string;
  mtu?: string;
  directRouting?: boolean;
}

function intFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError(name, `"${v}" is not a whole number`);
  return Number(v);
}

/** The config that `config set` would write (validated), from a file or flags. */
export function configFromSetOptions(opts: ConfigSetOptions, readFile: (path: string) => string = readText): NetworkConfig {
  if (opts.file !== undefined) {
    const flags = (['network', 'backend', 'subnetLen', 'subnetMin', 'subnetMax', 'vni', 'port', 'mtu'] as const).filter(
      (k) => opts[k] !== undefined,
    );
    if (flags.length > 0 || opts.directRouting) {
      throw new InvalidArgumentError('--file', 'give either -f FILE or the flags (--network ...), not both');
    }
    return parseNetworkConfig(readFile(opts.file));
  }
  if (!opts.network) throw new InvalidArgumentError('--network', 'is required (or give -f net-conf.json)');
  const backendFields: Record<string, unknown> = {};
  const vni = intFlag('--vni', opts.vni);
  const port = intFlag('--port', opts.port);
  const mtu = intFlag('--mtu', opts.mtu);
  if (vni !== undefined) backendFields.VNI = vni;
  if (port !== undefined) backendFields.Port = port;
  if (mtu !== undefined) backendFields.MTU = mtu;
  if (opts.directRouting) backendFields.DirectRouting = true;
  const subnetLen = intFlag('--subnet-len', opts.subnetLen);
  return buildNetworkConfig({
    network: opts.network,
    ...(opts.backend !== undefined ? { backend: opts.backend } : {}),
    ...(subnetLen !== undefined ? { subnetLen } : {}),
    ...(opts.subnetMin !== undefined ? { subnetMin: opts.subnetMin } : {}),
    ...(opts.subnetMax !== undefined ? { subnetMax: opts.subnetMax } : {}),
    backendFields,
  });
}

function readText(path: string): string {
  return readFileSync(path === '-' ? 0 : path, 'utf8');
}

/** `weftctl config set`: validates, writes, prints what was written. */
export async function configSet(registry: Registry, opts: ConfigSetOptions, out: Out, configKey = 'config'): Promise<NetworkConfig> {
  const config = configFromSetOptions(opts);
  const json = serializeNetworkConfig(config);
  await registry.putConfig(json);
  out(`wrote ${configKey}: ${json}\n${describeNetworkConfig(config)}\n`);
  return config;
}

/** `weftctl config get`: prints the stored JSON as stored. */
export async function configGet(registry: Registry, out: Out, configKey = 'config'): Promise<void> {
  const json = await registry.getConfig();
  if (json === undefined) {
    throw new ConfigMissingError(`no network config at ${configKey} (write one with: weftctl config set --network 10.244.0.0/16 --backend vxlan)`);
  }
  out(json.endsWith('\n') ? json : `${json}\n`);
}

/** Lease rows as `weftctl leases --json` prints them. */
export function leasesAsJson(leases: readonly Lease[]): unknown[] {
  return leases.map((l) => ({
    subnet: formatCidr(l.subnet),
    publicIp: l.attrs.PublicIP,
    backendType: l.attrs.BackendType,
    backendData: l.attrs.BackendData ?? null,
    reservation: isReservation(l),
    expiration: l.expiration ? l.expiration.toISOString() : null,
  }));
}

function formatRemaining(ms: number): string {
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** The EXPIRES column: "never" for a reservation. */
export function formatExpiry(l: Lease, now: number): string {
  if (isReservation(l)) return 'never';
  if (!l.expiration) return 'unknown';
  return `${l.expiration.toISOString().replace(/\.\d+Z$/, 'Z')} (in ${formatRemaining(l.expiration.getTime() - now)})`;
}

/** A text table with columns padded to their widest cell. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** `weftctl leases [--json]`. */
export async function listLeasesCommand(registry: Registry, opts: { json?: boolean }, out: Out, now = Date.now()): Promise<void> {
  const { leases, invalid } = await registry.listLeases();
  if (opts.json) {
    out(JSON.stringify(leasesAsJson(leases), null, 2) + '\n');
    return;
  }
  out(
    renderTable(
      ['SUBNET', 'PUBLIC-IP', 'BACKEND', 'EXPIRES'],
      // flanneld's udp backend writes no BackendType
      leases.map((l) => [formatCidr(l.subnet), l.attrs.PublicIP, l.attrs.BackendType || '(none)', formatExpiry(l, now)]),
    ),
  );
  if (invalid.length > 0) {
    out(`\nrefused keys (not used as leases; their subnets count as taken):\n`);
    out(renderTable(['KEY', 'REASON', 'DETAIL'], invalid.map((i) => [JSON.stringify(i.key).slice(1, -1), i.reason, i.detail])));
  }
}

/** Adds the etcd TLS/auth flags (the root program has --etcd-endpoints and --etcd-prefix). */
function withEtcdFlags(cmd: Command): Command {
  return addEtcdFlags(cmd);
}

export interface StoreCliDeps {
  /** Default: registryFromOptions (etcd). Tests pass a MemoryRegistry. */
  makeRegistry?: (opts: EtcdCliOptions) => Registry;
  /** Default: process.stdout. */
  out?: Out;
}

async function withRegistry<T>(deps: StoreCliDeps, opts: EtcdCliOptions, fn: (r: Registry, key: string) => Promise<T>): Promise<T> {
  const registry = (deps.makeRegistry ?? registryFromOptions)(opts);
  const prefix = (opts.etcdPrefix ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, '');
  try {
    return await fn(registry, `${prefix}/config`);
  } finally {
    await registry.close();
  }
}

/** Adds this area's weftctl subcommands: `config set|get` and `leases`. */
export function registerConfigCommands(program: Command, deps: StoreCliDeps = {}): void {
  const out: Out = deps.out ?? ((t) => void process.stdout.write(t));
  const config = program.command('config').description('the network config at <prefix>/config (flannel format)');

  withEtcdFlags(
    config
      .command('set')
      .description('validate and write the network config, from flags or -f net-conf.json')
      .option('-f, --file <path>', 'read the config JSON from a file ("-" for stdin)')
      .option('--network <cidr>', 'pod network, e.g. 10.244.0.0/16')
      .option('--backend <type>', 'host-gw, vxlan or udp (default udp, as flannel)')
      .option('--subnet-len <n>', 'per-host subnet prefix length (default 24, or prefix+2 for small networks)')
      .option('--subnet-min <cidr>', 'first subnet to hand out (default: the 2nd subnet)')
      .option('--subnet-max <cidr>', 'last subnet to hand out (default: the last subnet)')
      .option('--vni <n>', 'vxlan VNI (default 1)')
      .option('--port <n>', 'vxlan/udp UDP port (default 8472 / 8285)')
      .option('--mtu <n>', 'vxlan MTU (default: interface MTU - 50)')
      .option('--direct-routing', 'vxlan: route directly to hosts on the same L2 segment'),
  ).action(async (_opts: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<ConfigSetOptions & EtcdCliOptions>();
    await withRegistry(deps, opts, (r, key) => configSet(r, opts, out, key));
  });

  withEtcdFlags(config.command('get').description('print the stored network config JSON')).action(
    async (_opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<EtcdCliOptions>();
      await withRegistry(deps, opts, (r, key) => configGet(r, out, key));
    },
  );

  withEtcdFlags(
    program
      .command('leases')
      .description('list subnet leases: SUBNET PUBLIC-IP BACKEND EXPIRES')
      .option('--json', 'print JSON instead of a table'),
  ).action(async (_opts: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<{ json?: boolean } & EtcdCliOptions>();
    await withRegistry(deps, opts, (r) => listLeasesCommand(r, opts, out));
  });
}
