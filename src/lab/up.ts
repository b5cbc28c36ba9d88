import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AbortedError, errorMessage, InvalidArgumentError } from '../core/errors.js';
import { formatCidr, parseCidr } from '../core/ip.js';
import { silentLogger, type Logger } from '../core/log.js';
import { ip, ipBatch, run } from '../exec/run.js';
import { readSubnetEnv, writeSubnetEnv } from '../store/subnet-env.js';
import { ManualAttacher, type PodAttacher } from './attacher.js';
import { CniAttacher } from './cni-attacher.js';
import { LAB_PROXY_MODES, proxyLogPath, waitProxyHealthy, type LabProxyMode } from './proxy.js';
import { labNetworkConfig, launchProxy, launchWeftd, listNetns, recordProc } from './common.js';
import { labDown } from './down.js';
import { checkControlPlane, createLabNode, setNodePodCidr, startLabKubeApiserver, type LabControlPlane, type LabSubnetManager } from './kube.js';
import { etcdArgv, etcdDataDir, labEtcdClient, waitEtcdHealthy, type LabEtcd } from './etcd.js';
import { LabExistsError, LabUpError } from './errors.js';
import { ETCD_ENDPOINT, ETCD_IP, HOST_IFACE, UNDERLAY_PREFIX } from './names.js';
import { fallbackSubnet, planLab, planNamespaces, type LabPlanInput } from './plan.js';
import { statusOf, type LabStatus } from './status.js';
import { STATE_VERSION, hostDir, labDir, labRunRoot, readState, writeState, type HostRecord, type LabState, type ProcRecord } from './state.js';
import { repoRoot, waitSubnetEnv, waitWeftdReady, weftdPaths, weftdScript } from './weftd.js';

/** Options of `labUp`. */
export interface LabUpOptions extends LabPlanInput {
  /** weftd `--subnet-lease-ttl` in seconds (tests use short TTLs). Default: weftd's own (24 h). */
  subnetLeaseTtl?: number;
  /** Extra weftd arguments, appended. Default none. */
  weftdArgs?: string[];
  /**
   * Start weftd in every host. Default true. When false the lab assigns
   * 10.244.N.0/24 to host N itself, writes subnet.env, and adds static
   * host-gw routes between hosts (a development fallback, no etcd leases).
   */
  startWeftd?: boolean;
  /** Wait for weftd's /readyz on every host (127.0.0.1:9808 in the host). Default true. */
  waitReady?: boolean;
  /** How pods are attached. Default: the weft CNI plugin through each host's weftd. */
  attacher?: PodAttacher;
  /** weft-proxy on every host (needs weftd). Default 'iptables', as kube-proxy's default. */
  proxyMode?: LabProxyMode;
  /**
   * Where Services and Nodes live. 'etcd' (default): weft's registry in the
   * lab's etcd. 'kubernetes': a kube-apiserver beside etcd, a Node and a
   * kubeconfig per host, weft-proxy reading the API as kube-proxy does.
   */
  controlPlane?: LabControlPlane;
  /**
   * Where weftd takes subnets from: 'etcd' (default, flannel's leases) or
   * 'kubernetes' (flanneld's --kube-subnet-mgr: the Node's spec.podCIDR,
   * allocated by the lab). Only with controlPlane 'kubernetes'.
   */
  subnetManager?: LabSubnetManager;
  /** Default silentLogger. */
  log?: Logger;
  /**
   * Called before each step with its name ('switch', 'host h1', 'etcd',
   * 'config', 'weftd h1', 'leases', 'routes', 'pod h1-p1'). Progress lines come from
   * here; a test may throw to inject a failure.
   */
  onStep?: (step: string) => void | Promise<void>;
  /** Bound on each wait (etcd health, subnet.env, readyz). Default 30 s. */
  timeoutMs?: number;
  /** Aborting stops `up` at the next step and cleans up. */
  signal?: AbortSignal;
}

/** Records a namespace in the state, then creates it with lo up. */
async function addNetns(state: LabState, ns: string): Promise<void> {
  state.namespaces.push(ns);
  writeState(state);
  await run('ip', ['netns', 'add', ns]);
  await ip(['link', 'set', 'lo', 'up'], { netns: ns });
}

async function createSwitch(state: LabState): Promise<void> {
  await addNetns(state, state.switchNetns);
  await ipBatch(
    [
      `link add ${state.switchBridge} type bridge`,
      `addr add ${ETCD_IP}/${UNDERLAY_PREFIX} dev ${state.switchBridge}`,
      `link set ${state.switchBridge} up`,
    ],
    { netns: state.switchNetns },
  );
}

async function createHost(state: LabState, host: HostRecord): Promise<void> {
  await addNetns(state, host.netns);
  // Created directly in both namespaces: the pair never exists in the root namespace.
  await ip(['link', 'add', HOST_IFACE, 'netns', host.netns, 'type', 'veth', 'peer', 'name', host.switchPort, 'netns', state.switchNetns]);
  await ipBatch([`link set ${host.switchPort} master ${state.switchBridge} up`], { netns: state.switchNetns });
  await ipBatch([`addr add ${host.underlayIp}/${UNDERLAY_PREFIX} dev ${HOST_IFACE}`, `link set ${HOST_IFACE} up`], {
    netns: host.netns,
  });
  await run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], { netns: host.netns });
  mkdirSync(hostDir(state.id, host.name), { recursive: true });
}

async function startEtcd(state: LabState, timeoutMs: number, signal?: AbortSignal): Promise<LabEtcd> {
  const dir = labDir(state.id);
  const log = join(dir, 'etcd.log');
  const rec = recordProc(state, 'etcd', state.switchNetns, etcdArgv(state.id, state.etcd.dataDir), log);
  const etcd = labEtcdClient(state.switchNetns);
  await waitEtcdHealthy(etcd, rec, log, timeoutMs, signal);
  return etcd;
}

export { labNetworkConfig };

/** Fallback without weftd: our own subnet.env and static host-gw routes. */
async function assignFallbackSubnets(state: LabState): Promise<void> {
  const network = parseCidr(state.network, 'network');
  for (const h of state.hosts) {
    const subnet = fallbackSubnet(state.network, h.index);
    writeSubnetEnv(h.subnetFile, { network, subnet, mtu: 1500, ipMasq: false });
    h.subnet = formatCidr(subnet);
    h.mtu = 1500;
  }
  writeState(state);
  for (const h of state.hosts) {
    const lines = state.hosts
      .filter((o) => o !== h)
      .map((o) => `route replace ${o.subnet} via ${o.underlayIp} dev ${HOST_IFACE}`);
    await ipBatch(lines, { netns: h.netns });
  }
}

/**
 * Claims /run/weft-lab/<id> with a non-recursive mkdir, which only one
 * process can win: a second `up` of the same id must not proceed, or its
 * cleanup would tear down the first one's lab.
 */
function claimLabDir(id: string, dir: string): void {
  mkdirSync(labRunRoot(), { recursive: true, mode: 0o700 });
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    throw new LabExistsError(`lab "${id}" exists or is being created (${dir}); run: weftctl lab down --id ${id}`, { id });
  }
}

/**
 * Pods are real CNI attachments: the weft shim (dist/cni/weft) hands each
 * ADD to its host's weftd over the host's socket, as a runtime's call would.
 * Plain ip commands only when the plugin has not been built.
 */
export function defaultAttacher(): PodAttacher {
  const shim = join(repoRoot, 'dist', 'cni', 'weft');
  return existsSync(shim) ? new CniAttacher({ plugin: shim }) : new ManualAttacher();
}

/**
 * Builds a lab: switch + etcd, hosts with weftd, pods. Everything is
 * recorded in /run/weft-lab/<id>/state.json before it is made; on failure
 * `up` removes what it made and throws LabUpError.
 */
export async function labUp(opts: LabUpOptions = {}): Promise<LabStatus> {
  const plan = planLab(opts);
  const log = (opts.log ?? silentLogger).child({ lab: plan.id });
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const startWeftd = opts.startWeftd ?? true;
  const proxyMode: LabProxyMode = startWeftd ? (opts.proxyMode ?? 'iptables') : 'none';
  if (!LAB_PROXY_MODES.includes(proxyMode)) {
    throw new InvalidArgumentError('proxyMode', `"${proxyMode}" is not one of ${LAB_PROXY_MODES.join(', ')}`);
  }
  const attacher = opts.attacher ?? defaultAttacher();
  if (opts.subnetLeaseTtl !== undefined && !(Number.isInteger(opts.subnetLeaseTtl) && opts.subnetLeaseTtl > 0)) {
    throw new InvalidArgumentError('subnetLeaseTtl', `${opts.subnetLeaseTtl} is not a positive number of seconds`);
  }
  if (startWeftd && !existsSync(weftdScript())) {
    throw new InvalidArgumentError('startWeftd', `${weftdScript()} does not exist: run npm run build (or use startWeftd: false)`);
  }
  const controlPlane = opts.controlPlane ?? 'etcd';
  const subnetManager = opts.subnetManager ?? 'etcd';
  checkControlPlane(controlPlane, subnetManager);
  if (subnetManager === 'kubernetes' && !startWeftd) throw new InvalidArgumentError('subnetManager', 'kubernetes needs weftd (not --no-weftd)');
  if (readState(plan.id)) {
    throw new LabExistsError(`lab "${plan.id}" already exists (${labDir(plan.id)}); run: weftctl lab down --id ${plan.id}`, { id: plan.id });
  }
  const clash = (await listNetns()).filter((n) => planNamespaces(plan).includes(n));
  if (clash.length > 0) {
    throw new LabExistsError(`namespaces of lab "${plan.id}" exist but are not recorded: ${clash.join(', ')}`, { clash });
  }

  const dir = labDir(plan.id);
  claimLabDir(plan.id, dir);
  const state: LabState = {
    version: STATE_VERSION,
    id: plan.id,
    createdAt: new Date().toISOString(),
    phase: 'creating',
    backend: plan.backend,
    network: plan.network,
    subnetLeaseTtl: opts.subnetLeaseTtl,
    weftdArgs: opts.weftdArgs ?? [],
    startWeftd,
    proxyMode,
    attacher: attacher.name,
    etcd: { endpoint: ETCD_ENDPOINT, dataDir: etcdDataDir(dir) },
    controlPlane,
    subnetManager,
    switchNetns: plan.switchNetns,
    switchBridge: plan.switchBridge,
    namespaces: [],
    processes: [],
    hosts: plan.hosts.map((h) => ({
      name: h.name,
      index: h.index,
      netns: h.netns,
      underlayIp: h.underlayIp,
      switchPort: h.switchPort,
      subnetFile: weftdPaths(hostDir(plan.id, h.name)).subnetFile,
      pods: h.pods.map((p) => ({ name: p.name, netns: p.netns, index: p.index, hostVeth: p.hostVeth })),
    })),
    spawned: 0,
  };
  writeState(state);

  let current = 'start';
  const step = async (name: string) => {
    current = name;
    if (opts.signal?.aborted) throw new AbortedError();
    log.debug({ step: name }, 'lab step');
    await opts.onStep?.(name);
  };

  try {
    await step('switch');
    await createSwitch(state);
    for (const h of state.hosts) {
      await step(`host ${h.name}`);
      await createHost(state, h);
    }
    await step('etcd');
    const etcd = await startEtcd(state, timeoutMs, opts.signal);
    log.info({ endpoint: ETCD_ENDPOINT, netns: state.switchNetns }, 'etcd healthy');
    await step('config');
    await etcd.put('/coreos.com/network/config', labNetworkConfig(state.network, state.backend));
    if (controlPlane === 'kubernetes') {
      await step('kube-apiserver');
      await startLabKubeApiserver(state, timeoutMs, opts.signal);
      log.info({ url: state.kube!.url, netns: state.switchNetns }, 'kube-apiserver ready');
      for (const h of state.hosts) {
        await step(`node ${h.name}`);
        // The Kubernetes subnet manager reads spec.podCIDR: the lab allocates it as
        // kube-controller-manager --allocate-node-cidrs would; else it follows weftd's lease.
        await createLabNode(state, h, subnetManager === 'kubernetes' ? formatCidr(fallbackSubnet(state.network, h.index)) : undefined);
      }
    }

    if (startWeftd) {
      const procs: ProcRecord[] = [];
      for (const h of state.hosts) {
        await step(`weftd ${h.name}`);
        procs.push(await launchWeftd(state, h));
      }
      // Hosts acquire leases in parallel; each wait is bounded.
      await step('leases');
      await Promise.all(
        state.hosts.map(async (h, i) => {
          const paths = weftdPaths(hostDir(state.id, h.name));
          const env = await waitSubnetEnv(paths, procs[i]!, h.name, timeoutMs, opts.signal);
          h.subnet = formatCidr(env.subnet);
          h.mtu = env.mtu;
          if (opts.waitReady ?? true) await waitWeftdReady(h.netns, h.name, paths.log, procs[i]!, timeoutMs, opts.signal);
          log.info({ host: h.name, subnet: h.subnet, mtu: h.mtu, pid: procs[i]!.pid }, 'weftd holds a lease');
        }),
      );
      writeState(state);
      if (controlPlane === 'kubernetes' && subnetManager === 'etcd') {
        await step('node podCIDRs');
        for (const h of state.hosts) await setNodePodCidr(state, h, h.subnet!);
      }
      if (proxyMode !== 'none') {
        const proxies: ProcRecord[] = [];
        for (const h of state.hosts) {
          await step(`weft-proxy ${h.name}`);
          proxies.push(launchProxy(state, h));
        }
        await Promise.all(state.hosts.map((h, i) => waitProxyHealthy(h, proxies[i]!, proxyLogPath(state.id, h.name), timeoutMs, opts.signal)));
        log.info({ mode: proxyMode }, 'weft-proxy healthy on every host');
      }
    } else {
      await step('routes');
      await assignFallbackSubnets(state);
      if (controlPlane === 'kubernetes') for (const h of state.hosts) await setNodePodCidr(state, h, h.subnet!);
    }

    for (const h of state.hosts) {
      for (const p of h.pods) {
        await step(`pod ${p.name}`);
        await addNetns(state, p.netns);
        const env = readSubnetEnv(h.subnetFile);
        const res = await attacher.attach({
          labId: state.id,
          hostNetns: h.netns,
          podNetns: p.netns,
          podName: p.name,
          index: p.index,
          hostVeth: p.hostVeth,
          subnet: env.subnet,
          mtu: env.mtu,
          subnetFile: h.subnetFile,
          workDir: hostDir(state.id, h.name),
        });
        p.ip = res.ip;
        writeState(state);
        log.info({ pod: p.name, ip: p.ip, attacher: attacher.name }, 'pod attached');
      }
    }
    state.phase = 'ready';
    writeState(state);
    log.info({ hosts: state.hosts.length, backend: state.backend }, 'lab up');
    return statusOf(state);
  } catch (err) {
    log.error({ step: current, err }, 'lab up failed; removing what it made');
    state.phase = 'failed';
    writeState(state);
    let cleanup = 'everything it created was removed';
    try {
      await labDown(plan.id, { log });
    } catch (downErr) {
      cleanup = `cleanup also failed (${errorMessage(downErr)}); run: weftctl lab down --id ${plan.id}`;
    }
    throw new LabUpError(`lab up "${plan.id}" failed at step "${current}": ${errorMessage(err)}\n(${cleanup})`, {
      step: current,
      cleanup,
    }, { cause: err });
  }
}
