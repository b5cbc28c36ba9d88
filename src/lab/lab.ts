import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AbortedError, errorMessage, InvalidArgumentError } from '../core/errors.js';
import { formatCidr, parseCidr } from '../core/ip.js';
import { silentLogger, type Logger } from '../core/log.js';
import { ip, ipBatch, run, type RunResult } from '../exec/run.js';
import { readSubnetEnv, writeSubnetEnv } from '../store/subnet-env.js';
import { ManualAttacher, type PodAttacher } from './attacher.js';
import { etcdArgv, etcdDataDir, labEtcdClient, waitEtcdHealthy, type LabEtcd } from './etcd.js';
import { LabExistsError, LabNotFoundError, LabProcessError, LabUpError } from './errors.js';
import { ETCD_ENDPOINT, ETCD_IP, HOST_IFACE, UNDERLAY_PREFIX, resolveTarget, validateLabId } from './names.js';
import { fallbackSubnet, planLab, planNamespaces, type LabPlanInput } from './plan.js';
import { isRunning, pidsInNetns, spawnInNetns, stopProcs } from './procs.js';
import { STATE_VERSION, hostDir, labDir, readState, writeState, type HostRecord, type LabState, type ProcRecord } from './state.js';
import { waitSubnetEnv, waitWeftdReady, weftdArgv, weftdPaths, weftdScript } from './weftd.js';

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
  /** How pods are attached. Default ManualAttacher. */
  attacher?: PodAttacher;
  /** Default silentLogger. */
  log?: Logger;
  /**
   * Called before each step with its name ('switch', 'host h1', 'etcd',
   * 'config', 'weftd h1', 'routes', 'pod h1-p1'). Progress lines come from
   * here; a test may throw to inject a failure.
   */
  onStep?: (step: string) => void | Promise<void>;
  /** Bound on each wait (etcd health, subnet.env, readyz). Default 30 s. */
  timeoutMs?: number;
  /** Aborting stops `up` at the next step and cleans up. */
  signal?: AbortSignal;
}

// One read-modify-write of a lab's state at a time within this process.
const locks = new Map<string, Promise<unknown>>();
async function withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(id) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  locks.set(
    id,
    next.catch(() => {}),
  );
  return next;
}

function mustState(id: string): LabState {
  const s = readState(validateLabId(id));
  if (!s) throw new LabNotFoundError(`no lab "${id}" (no state under ${labDir(id)}); run: weftctl lab up --id ${id}`, { id });
  return s;
}

/** Namespaces that currently exist (`ip netns list`). */
export async function listNetns(): Promise<string[]> {
  const r = await run('ip', ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/** Records a namespace in the state, then creates it with lo up. */
async function addNetns(state: LabState, ns: string): Promise<void> {
  state.namespaces.push(ns);
  writeState(state);
  await run('ip', ['netns', 'add', ns]);
  await ip(['link', 'set', 'lo', 'up'], { netns: ns });
}

/**
 * The caller's environment without variables that etcd (ETCD_*) and weftd
 * (WEFTD_*) read as flags: a lab must not change with the shell it runs in.
 */
export function labEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('ETCD_') && !k.startsWith('WEFTD_')));
}

function recordProc(state: LabState, key: string, netns: string, argv: string[], log: string): ProcRecord {
  const p = spawnInNetns(netns, argv, log, labEnv());
  const rec: ProcRecord = { key, netns, pid: p.pid, startTime: p.startTime, argv, log };
  state.processes.push(rec);
  writeState(state);
  return rec;
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

async function startEtcd(state: LabState, timeoutMs: number): Promise<LabEtcd> {
  const dir = labDir(state.id);
  const log = join(dir, 'etcd.log');
  const rec = recordProc(state, 'etcd', state.switchNetns, etcdArgv(state.id, state.etcd.dataDir), log);
  const etcd = labEtcdClient(state.switchNetns);
  await waitEtcdHealthy(etcd, rec, log, timeoutMs);
  return etcd;
}

/** flannel's network config for the lab. */
export function labNetworkConfig(network: string, backend: string): string {
  return JSON.stringify({ Network: network, Backend: { Type: backend } });
}

async function launchWeftd(state: LabState, host: HostRecord): Promise<ProcRecord> {
  const paths = weftdPaths(hostDir(state.id, host.name));
  mkdirSync(paths.stateDir, { recursive: true });
  const argv = weftdArgv(paths, { subnetLeaseTtl: state.subnetLeaseTtl, extra: state.weftdArgs });
  return recordProc(state, `weftd:${host.name}`, host.netns, argv, paths.log);
}

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
 * Builds a lab: switch + etcd, hosts with weftd, pods. Everything is
 * recorded in /run/weft-lab/<id>/state.json before it is made; on failure
 * `up` removes what it made and throws LabUpError.
 */
export async function labUp(opts: LabUpOptions = {}): Promise<LabStatus> {
  const plan = planLab(opts);
  const log = (opts.log ?? silentLogger).child({ lab: plan.id });
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const startWeftd = opts.startWeftd ?? true;
  const attacher = opts.attacher ?? new ManualAttacher();
  if (opts.subnetLeaseTtl !== undefined && !(Number.isInteger(opts.subnetLeaseTtl) && opts.subnetLeaseTtl > 0)) {
    throw new InvalidArgumentError('subnetLeaseTtl', `${opts.subnetLeaseTtl} is not a positive number of seconds`);
  }
  if (startWeftd && !existsSync(weftdScript())) {
    throw new InvalidArgumentError('startWeftd', `${weftdScript()} does not exist: run npm run build (or use startWeftd: false)`);
  }
  if (readState(plan.id)) {
    throw new LabExistsError(`lab "${plan.id}" already exists (${labDir(plan.id)}); run: weftctl lab down --id ${plan.id}`, { id: plan.id });
  }
  const clash = (await listNetns()).filter((n) => planNamespaces(plan).includes(n));
  if (clash.length > 0) {
    throw new LabExistsError(`namespaces of lab "${plan.id}" exist but are not recorded: ${clash.join(', ')}`, { clash });
  }

  const dir = labDir(plan.id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
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
    attacher: attacher.name,
    etcd: { endpoint: ETCD_ENDPOINT, dataDir: etcdDataDir(dir) },
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
    const etcd = await startEtcd(state, timeoutMs);
    await step('config');
    await etcd.put('/coreos.com/network/config', labNetworkConfig(state.network, state.backend));

    if (startWeftd) {
      const procs: ProcRecord[] = [];
      for (const h of state.hosts) {
        await step(`weftd ${h.name}`);
        procs.push(await launchWeftd(state, h));
      }
      // Hosts acquire leases in parallel; each wait is bounded.
      await Promise.all(
        state.hosts.map(async (h, i) => {
          const paths = weftdPaths(hostDir(state.id, h.name));
          const env = await waitSubnetEnv(paths, procs[i]!, h.name, timeoutMs);
          h.subnet = formatCidr(env.subnet);
          h.mtu = env.mtu;
          if (opts.waitReady ?? true) await waitWeftdReady(h.netns, h.name, paths.log, procs[i]!, timeoutMs);
        }),
      );
      writeState(state);
    } else {
      await step('routes');
      await assignFallbackSubnets(state);
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

export interface LabDownResult {
  /** False when there was no state for this id (down is idempotent). */
  existed: boolean;
  stoppedPids: number[];
  /** PIDs found inside the lab's namespaces that were not recorded (killed too). */
  strayPids: number[];
  removedNamespaces: string[];
}

/**
 * Removes exactly what the state file records: stops recorded processes
 * (start time checked, SIGTERM, bounded wait, SIGKILL), kills what still
 * runs inside the lab's own namespaces, deletes the namespaces (their links
 * go with them) and the state directory. Safe to repeat.
 */
export async function labDown(id: string, opts: { log?: Logger; graceMs?: number } = {}): Promise<LabDownResult> {
  validateLabId(id);
  return withLock(id, async () => {
    const log = (opts.log ?? silentLogger).child({ lab: id });
    const state = readState(id);
    const result: LabDownResult = { existed: !!state, stoppedPids: [], strayPids: [], removedNamespaces: [] };
    if (!state) {
      rmSync(labDir(id), { recursive: true, force: true });
      return result;
    }
    state.phase = 'deleting';
    writeState(state);
    // Clients first (spawned tools, weftd), etcd last, so daemons can exit cleanly.
    const order = (p: ProcRecord) => (p.key === 'etcd' ? 2 : p.key.startsWith('weftd:') ? 1 : 0);
    for (const rank of [0, 1, 2]) {
      const procs = state.processes.filter((p) => order(p) === rank);
      result.stoppedPids.push(...(await stopProcs(procs, { graceMs: opts.graceMs })));
    }
    const existing = new Set(await listNetns());
    for (const ns of [...state.namespaces].reverse()) {
      if (!existing.has(ns)) continue;
      // Only our namespaces are swept: whatever runs in them was started for the lab.
      const stray = await pidsInNetns(ns);
      for (const pid of stray) {
        try {
          process.kill(pid, 'SIGKILL');
          result.strayPids.push(pid);
        } catch {
          /* gone */
        }
      }
      await run('ip', ['netns', 'del', ns]);
      result.removedNamespaces.push(ns);
    }
    rmSync(labDir(id), { recursive: true, force: true });
    log.info(
      { namespaces: result.removedNamespaces.length, stopped: result.stoppedPids.length, stray: result.strayPids.length },
      'lab removed',
    );
    return result;
  });
}

export interface LabPodStatus {
  name: string;
  ip: string | null;
  netns: string;
}

export interface LabHostStatus {
  name: string;
  netns: string;
  underlayIp: string;
  subnet: string | null;
  mtu: number | null;
  weftd: { pid: number; running: boolean } | null;
  pods: LabPodStatus[];
}

export interface LabStatus {
  id: string;
  etcd: string;
  backend: string;
  network: string;
  phase: LabState['phase'];
  etcdRunning: boolean;
  hosts: LabHostStatus[];
}

function statusOf(state: LabState): LabStatus {
  const etcdProc = state.processes.find((p) => p.key === 'etcd');
  return {
    id: state.id,
    etcd: state.etcd.endpoint,
    backend: state.backend,
    network: state.network,
    phase: state.phase,
    etcdRunning: etcdProc ? isRunning(etcdProc) : false,
    hosts: state.hosts.map((h) => {
      // subnet.env is the live truth (weftd may have been restarted); the record is the fallback.
      let subnet = h.subnet ?? null;
      let mtu = h.mtu ?? null;
      try {
        const env = readSubnetEnv(h.subnetFile);
        subnet = formatCidr(env.subnet);
        mtu = env.mtu;
      } catch {
        /* not written yet */
      }
      const w = [...state.processes].reverse().find((p) => p.key === `weftd:${h.name}`);
      return {
        name: h.name,
        netns: h.netns,
        underlayIp: h.underlayIp,
        subnet,
        mtu,
        weftd: w ? { pid: w.pid, running: isRunning(w) } : null,
        pods: h.pods.map((p) => ({ name: p.name, ip: p.ip ?? null, netns: p.netns })),
      };
    }),
  };
}

/** The lab as recorded, with live subnet.env and process liveness. */
export function labStatus(id: string): LabStatus {
  return statusOf(mustState(id));
}

/** Namespace of `h1`, `h1-p1`, `sw` or a full namespace name of this lab. */
export function labTarget(id: string, target: string): string {
  const state = mustState(id);
  return resolveTarget(id, target, state.namespaces);
}

export const hostNetnsOf = (id: string, host: string): string => labTarget(id, host);
export const podNetnsOf = (id: string, pod: string): string => labTarget(id, pod);

/** Runs a command inside a lab namespace and waits for it. */
export async function labExec(
  id: string,
  target: string,
  argv: string[],
  opts: { allowFail?: boolean; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  if (argv.length === 0) throw new InvalidArgumentError('argv', 'no command given');
  const netns = labTarget(id, target);
  return run(argv[0]!, argv.slice(1), { netns, allowFail: opts.allowFail, input: opts.input, timeoutMs: opts.timeoutMs });
}

export interface LabSpawned {
  key: string;
  pid: number;
  log: string;
}

/** Starts a long-running process in a lab namespace; its PID is recorded so `down` stops it. */
export async function labSpawn(id: string, target: string, argv: string[]): Promise<LabSpawned> {
  if (argv.length === 0) throw new InvalidArgumentError('argv', 'no command given');
  return withLock(id, async () => {
    const state = mustState(id);
    const netns = resolveTarget(id, target, state.namespaces);
    state.spawned += 1;
    const key = `spawn:${state.spawned}`;
    const rec = recordProc(state, key, netns, argv, join(labDir(id), `spawn-${state.spawned}.log`));
    return { key, pid: rec.pid, log: rec.log };
  });
}

/** Stops a process started by labSpawn (or a weftd / etcd by key) and drops its record. */
export async function labStop(id: string, key: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  return withLock(id, async () => {
    const state = mustState(id);
    const recs = state.processes.filter((p) => p.key === key);
    const stopped = await stopProcs(recs, { signal });
    state.processes = state.processes.filter((p) => p.key !== key);
    writeState(state);
    return stopped.length > 0;
  });
}

function hostRecord(state: LabState, host: string): HostRecord {
  const h = state.hosts.find((x) => x.name === host || x.netns === host);
  if (!h) throw new InvalidArgumentError('host', `"${host}" is not a host of lab "${state.id}"`);
  return h;
}

/** Stops weftd on a host (SIGKILL simulates a crash; the data path stays). */
export async function stopWeftd(id: string, host: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  const h = hostRecord(mustState(id), host);
  return labStop(id, `weftd:${h.name}`, signal);
}

/**
 * (Re)starts weftd on a host with the lab's flags, keeping its subnet.env so
 * the daemon can ask for the same subnet; waits for subnet.env and /readyz.
 */
export async function startWeftd(
  id: string,
  host: string,
  opts: { waitReady?: boolean; timeoutMs?: number } = {},
): Promise<{ pid: number }> {
  const rec = await withLock(id, async () => {
    const state = mustState(id);
    const h = hostRecord(state, host);
    const running = state.processes.find((p) => p.key === `weftd:${h.name}` && isRunning(p));
    if (running) throw new LabProcessError(`weftd already runs on ${h.name} (pid ${running.pid})`, { host: h.name });
    state.processes = state.processes.filter((p) => p.key !== `weftd:${h.name}`);
    return { rec: await launchWeftd(state, h), h };
  });
  const paths = weftdPaths(hostDir(id, rec.h.name));
  await waitSubnetEnv(paths, rec.rec, rec.h.name, opts.timeoutMs);
  if (opts.waitReady ?? true) await waitWeftdReady(rec.h.netns, rec.h.name, paths.log, rec.rec, opts.timeoutMs);
  return { pid: rec.rec.pid };
}

/** Client for the lab's etcd (from the root namespace, via the switch). */
export function labEtcd(id: string): LabEtcd {
  return labEtcdClient(mustState(id).switchNetns);
}
