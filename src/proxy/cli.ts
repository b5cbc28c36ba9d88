import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { InvalidArgumentError, errorMessage } from '../core/errors.js';
import { parseManifests } from './model/manifest.js';
import { namespaceOf, type EndpointSlice, type Endpoints, type ProxyKind, type ProxyObject, type Service } from './model/k8s.js';
import { endpointsToSlices } from './model/endpoints.js';
import { EtcdKV, registryEtcdOptions } from './registry/kv.js';
import { EtcdClient } from '../etcd/index.js';
import { addEtcdFlags, etcdSecurityOf, type EtcdFlagValues } from '../cli/etcd-flags.js';
import { ProxyRegistry } from './registry/registry.js';
import { KubeApiRegistry } from './kube-registry.js';

type Registry = Pick<ProxyRegistry, 'apply' | 'get' | 'list' | 'delete'>;
const KUBECONFIG_HELP = 'read and write the objects through this cluster\'s Kubernetes API server instead of etcd';

const KIND_ALIASES: Record<string, ProxyKind> = {
  service: 'Service', services: 'Service', svc: 'Service',
  endpoints: 'Endpoints', ep: 'Endpoints',
  endpointslice: 'EndpointSlice', endpointslices: 'EndpointSlice',
};

function kindOf(text: string): ProxyKind {
  const k = KIND_ALIASES[text.toLowerCase()];
  if (!k) throw new InvalidArgumentError('KIND', `unknown kind "${text}" (service, endpoints, endpointslice)`);
  return k;
}

async function readSource(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  return readFile(file, 'utf8');
}

function nodePortRange(text: string): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(text);
  if (!m || Number(m[1]) > Number(m[2]) || Number(m[2]) > 65535) throw new InvalidArgumentError('--service-node-port-range', `"${text}" is not a range like 30000-32767`);
  return [Number(m[1]), Number(m[2])];
}

async function withRegistry<T>(cmd: Command, fn: (r: Registry) => Promise<T>): Promise<T> {
  const o = cmd.optsWithGlobals() as { etcdEndpoints: string; serviceCidr?: string; serviceNodePortRange?: string; kubeconfig?: string } & EtcdFlagValues;
  if (o.kubeconfig) {
    const api = KubeApiRegistry.fromKubeconfig(o.kubeconfig, nodePortRange(o.serviceNodePortRange ?? '30000-32767'));
    try {
      return await fn(api);
    } finally {
      api.close();
    }
  }
  const endpoints = o.etcdEndpoints.split(',').map((s) => s.trim()).filter(Boolean);
  const kv = new EtcdKV(new EtcdClient({ ...registryEtcdOptions(endpoints), ...etcdSecurityOf(o) }));
  try {
    return await fn(
      new ProxyRegistry(kv, {
        serviceCIDR: o.serviceCidr ?? '10.96.0.0/12',
        nodePortRange: nodePortRange(o.serviceNodePortRange ?? '30000-32767'),
      }),
    );
  } finally {
    kv.close();
  }
}

function describe(o: ProxyObject): string {
  const base = `${o.kind.toLowerCase()}/${namespaceOf(o)}/${o.metadata.name}`;
  if (o.kind !== 'Service') return base;
  const ports = (o.spec.ports ?? []).filter((p) => p.nodePort).map((p) => p.nodePort);
  return `${base} (clusterIP ${o.spec.clusterIP}${ports.length ? `, nodePort ${ports.join(',')}` : ''})`;
}

/** `NAME  TYPE ...` columns, padded. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('')).join('\n') + '\n';
}

function serviceRows(list: Service[]): string[][] {
  return [
    ['NAMESPACE', 'NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)'],
    ...list.map((s) => [
      namespaceOf(s),
      s.metadata.name,
      s.spec.type ?? 'ClusterIP',
      s.spec.clusterIP ?? '<none>',
      [...(s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? i.hostname ?? ''), ...(s.spec.externalIPs ?? [])].join(',') || '<none>',
      (s.spec.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',') || '<none>',
    ]),
  ];
}

function endpointRows(slices: EndpointSlice[]): string[][] {
  const bySvc = new Map<string, string[]>();
  for (const s of slices) {
    const svc = `${namespaceOf(s)}/${s.metadata.labels?.['kubernetes.io/service-name'] ?? s.metadata.name}`;
    const list = bySvc.get(svc) ?? [];
    for (const e of s.endpoints) {
      if (e.conditions?.ready === false) continue;
      for (const p of s.ports ?? []) list.push(`${e.addresses[0]}:${p.port}`);
    }
    bySvc.set(svc, list);
  }
  return [['NAMESPACE', 'NAME', 'ENDPOINTS'], ...[...bySvc].sort().map(([k, eps]) => [...k.split('/'), eps.join(',') || '<none>'])];
}

/** Adds `weftctl apply`, `weftctl get` and `weftctl delete`. */
export function registerProxyCommands(program: Command): void {
  addEtcdFlags(program.command('apply'))
    .option('--kubeconfig <file>', KUBECONFIG_HELP)
    .description('create or update Services, Endpoints and EndpointSlices from YAML or JSON (allocates ClusterIPs and node ports)')
    .requiredOption('-f, --filename <file>', 'manifest file, or - for stdin')
    .option('--service-cidr <cidr>', 'ClusterIP range', '10.96.0.0/12')
    .option('--service-node-port-range <range>', 'node port range', '30000-32767')
    .action(async (opts: { filename: string }, cmd: Command) => {
      const docs = parseManifests(await readSource(opts.filename), opts.filename);
      let failed = 0;
      await withRegistry(cmd, async (reg) => {
        for (const doc of docs) {
          try {
            const r = await reg.apply(doc);
            process.stdout.write(`${describe(r.object)} ${r.action}\n`);
          } catch (err) {
            failed++;
            process.stderr.write(`error: ${errorMessage(err)}\n`);
          }
        }
      });
      if (failed > 0) throw new InvalidArgumentError(opts.filename, `${failed} of ${docs.length} objects were refused`);
    });

  addEtcdFlags(program.command('get'))
    .option('--kubeconfig <file>', KUBECONFIG_HELP)
    .description('list services, endpoints or endpointslices')
    .argument('<kind>', 'services | endpoints | endpointslices')
    .argument('[name]', 'one object')
    .option('-n, --namespace <ns>', 'namespace (default: all)')
    .option('-o, --output <format>', 'table | json | yaml', 'table')
    .action(async (kindText: string, name: string | undefined, opts: { namespace?: string; output: string }, cmd: Command) => {
      const kind = kindOf(kindText);
      await withRegistry(cmd, async (reg) => {
        let list: ProxyObject[];
        if (name) {
          const o = await reg.get(kind, opts.namespace ?? 'default', name);
          if (!o) throw new InvalidArgumentError('name', `${kind} ${opts.namespace ?? 'default'}/${name} not found`);
          list = [o];
        } else list = await reg.list(kind, opts.namespace);
        if (opts.output === 'json') return void process.stdout.write(JSON.stringify(name ? list[0] : { apiVersion: 'v1', kind: 'List', items: list }, null, 2) + '\n');
        if (opts.output === 'yaml') return void process.stdout.write(stringify(name ? list[0] : { apiVersion: 'v1', kind: 'List', items: list }));
        if (kind === 'Service') return void process.stdout.write(table(serviceRows(list as Service[])));
        // "endpoints" shows every service's endpoints, whichever kind they were written as.
        const slices = kind === 'Endpoints' ? [...(await reg.list('EndpointSlice', opts.namespace)), ...list.flatMap((e) => endpointsToSlices(e as Endpoints))] : (list as EndpointSlice[]);
        process.stdout.write(table(endpointRows(slices as EndpointSlice[])));
      });
    });

  addEtcdFlags(program.command('delete'))
    .option('--kubeconfig <file>', KUBECONFIG_HELP)
    .description('delete objects named in a manifest, or KIND NAME')
    .argument('[kind]', 'service | endpoints | endpointslice')
    .argument('[name]', 'object name')
    .option('-f, --filename <file>', 'manifest file, or - for stdin')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .action(async (kindText: string | undefined, name: string | undefined, opts: { filename?: string; namespace: string }, cmd: Command) => {
      let targets: Array<{ kind: ProxyKind; namespace: string; name: string }>;
      if (opts.filename) {
        targets = parseManifests(await readSource(opts.filename), opts.filename).map((d) => {
          const o = d as ProxyObject;
          return { kind: kindOf(String(o.kind)), namespace: o.metadata?.namespace || 'default', name: String(o.metadata?.name) };
        });
      } else if (kindText && name) targets = [{ kind: kindOf(kindText), namespace: opts.namespace, name }];
      else throw new InvalidArgumentError('delete', 'give -f FILE or KIND NAME');
      let missing = 0;
      await withRegistry(cmd, async (reg) => {
        for (const t of targets) {
          const ok = await reg.delete(t.kind, t.namespace, t.name);
          if (!ok) missing++;
          process.stdout.write(`${t.kind.toLowerCase()}/${t.namespace}/${t.name} ${ok ? 'deleted' : 'not found'}\n`);
        }
      });
      if (missing > 0 && !opts.filename) throw new InvalidArgumentError('name', `${missing} object(s) not found`);
    });
}
