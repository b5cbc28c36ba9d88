import { join } from 'node:path';
import { errorMessage } from '../core/errors.js';
import { contains, formatCidr, formatIPv4, parseCidr, type IPv4Net } from '../core/ip.js';
import { silentLogger, type Logger } from '../core/log.js';
import { UndoStack } from '../core/undo.js';
import { readSubnetEnv, type SubnetEnv } from '../store/subnet-env.js';
import { confVersion, decodeConf, parseNetConf, type WeftNetConf } from './config.js';
import { parseCniEnv, type CniEnv } from './env.js';
import {
  CNI_CODES,
  CniError,
  IncompatibleVersionError,
  InvalidNetworkConfigError,
  NotAvailableError,
  RequestedIpUnavailableError,
  toCniError,
} from './errors.js';
import { allocate } from './ipam/allocator.js';
import { ipamRange, ipamRoutes } from './ipam/conf.js';
import { DiskIpamStore } from './ipam/disk-store.js';
import { staleReservations, type IpamStore } from './ipam/store.js';
import type { BridgeState, CniKernel, NetnsRef } from './kernel.js';
import { ExecCniKernel } from './kernel-exec.js';
import { masqChainName, masqComment, renderMasqAdd, renderMasqDelete, staleMasqChains } from './masq.js';
import {
  attachmentAlias,
  hostVethName,
  nameToken,
  parseAttachmentAlias,
  tokenMatches,
  randomMac,
  renderBridgeLines,
  renderContainerLines,
  renderVethLines,
  type AttachPlan,
} from './plan.js';
import { LATEST_VERSION, atLeast, formatError, formatResult, formatVersionResult, parsePrevResult, type CniResult } from './spec.js';

/** One plugin invocation: what a runtime passes to an executable. */
export interface CniRequest {
  env: Record<string, string | undefined>;
  stdin: string;
}

/** What the executable prints and how it exits. */
export interface CniResponse {
  stdout: string;
  stderr?: string;
  exitCode: number;
}

export interface CniHandlerOptions {
  /** Kernel access. Default: iproute2 through src/exec (ExecCniKernel with `hostNetns`). */
  kernel?: CniKernel;
  /** Named netns that plays the host (tests, the lab). Default: this process's netns. */
  hostNetns?: string;
  /** IPAM store per network directory. Default: host-local's on-disk format (DiskIpamStore). */
  storeFor?: (dir: string) => IpamStore;
  /** Default silentLogger. */
  log?: Logger;
  /**
   * Bridge state is re-read at most this often (a long-lived server skips the
   * read on most ADDs; a failed batch drops the cache and retries once). Default 0 (always read).
   */
  bridgeCacheMs?: number;
  /** Test hook: awaited at named points of ADD ("reserved", "veth", "container", "masq"). */
  fault?: (step: string) => Promise<void>;
}

export type CniHandler = (req: CniRequest) => Promise<CniResponse>;

interface Ctx {
  kernel: CniKernel;
  storeFor: (dir: string) => IpamStore;
  log: Logger;
  fault: (step: string) => Promise<void>;
  bridgeCacheMs: number;
  bridges: Map<string, { state: BridgeState; at: number }>;
}

type Verb = (ctx: Ctx, env: CniEnv, conf: WeftNetConf) => Promise<Record<string, unknown> | undefined>;

/** The verb table (like the reference plugins' skel): one function per command. */
const VERBS: Record<Exclude<CniEnv['command'], 'VERSION'>, { minVersion: string; fn: Verb }> = {
  ADD: { minVersion: '0.3.0', fn: cmdAdd },
  DEL: { minVersion: '0.3.0', fn: cmdDel },
  CHECK: { minVersion: '0.4.0', fn: cmdCheck },
  GC: { minVersion: '1.1.0', fn: cmdGc },
  STATUS: { minVersion: '1.1.0', fn: cmdStatus },
};

/**
 * Builds a handler that keeps its caches (bridge state, iptables backend)
 * between calls: one per process, or one per server.
 */
export function createCniHandler(opts: CniHandlerOptions = {}): CniHandler {
  const ctx: Ctx = {
    kernel: opts.kernel ?? new ExecCniKernel({ hostNetns: opts.hostNetns }),
    storeFor: opts.storeFor ?? ((dir) => new DiskIpamStore(dir)),
    log: opts.log ?? silentLogger,
    fault: opts.fault ?? (async () => {}),
    bridgeCacheMs: opts.bridgeCacheMs ?? 0,
    bridges: new Map(),
  };
  return (req) => dispatch(ctx, req);
}

/** One-shot convenience: env, stdin in; stdout, exit code out. */
export function handleCni(req: CniRequest, opts: CniHandlerOptions = {}): Promise<CniResponse> {
  return createCniHandler(opts)(req);
}

async function dispatch(ctx: Ctx, req: CniRequest): Promise<CniResponse> {
  // Errors are shaped in the caller's version when it can be read at all.
  let version: string = LATEST_VERSION;
  try {
    const env = parseCniEnv(req.env);
    if (env.command === 'VERSION') {
      let v: unknown;
      try {
        v = (JSON.parse(req.stdin) as { cniVersion?: unknown }).cniVersion;
      } catch {
        v = undefined;
      }
      return { stdout: JSON.stringify(formatVersionResult(typeof v === 'string' && v ? v : LATEST_VERSION)), exitCode: 0 };
    }
    const raw = decodeConf(req.stdin);
    if (typeof raw.cniVersion === 'string' && raw.cniVersion) version = raw.cniVersion;
    const v = confVersion(raw);
    const verb = VERBS[env.command];
    if (!atLeast(v, verb.minVersion)) {
      throw new IncompatibleVersionError(`${env.command} needs cniVersion ${verb.minVersion} or later, the config says ${v}`);
    }
    const conf = parseNetConf(raw);
    const started = Date.now();
    const out = await verb.fn(ctx, env, conf);
    ctx.log.debug({ command: env.command, containerId: env.containerId, ifname: env.ifname, ms: Date.now() - started }, 'cni command done');
    return { stdout: out ? JSON.stringify(out) : '', exitCode: 0 };
  } catch (err) {
    const e = toCniError(err);
    ctx.log.warn({ command: req.env.CNI_COMMAND, containerId: req.env.CNI_CONTAINERID, code: e.cniCode, err: e.message }, 'cni command failed');
    return { stdout: JSON.stringify(formatError(e, version)), stderr: `${e.message}\n`, exitCode: 1 };
  }
}

function storeOf(ctx: Ctx, conf: WeftNetConf): IpamStore {
  return ctx.storeFor(join(conf.dataDir, conf.name));
}

/** The network route is needed only when the Network is larger than the node's subnet. */
function networkRoute(senv: SubnetEnv): IPv4Net | undefined {
  return senv.network.prefixLen < senv.subnet.prefixLen ? senv.network : undefined;
}

async function bridgeState(ctx: Ctx, name: string, fresh: boolean): Promise<BridgeState | undefined> {
  const cached = ctx.bridges.get(name);
  if (!fresh && cached && Date.now() - cached.at < ctx.bridgeCacheMs) return cached.state;
  const state = await ctx.kernel.readBridge(name);
  if (state && !state.isBridge) throw new InvalidNetworkConfigError('bridge', `link ${name} exists and is not a bridge`);
  return state;
}

/** The bridge as it is after our lines ran (cached for the next ADD). */
function bridgeAfter(plan: AttachPlan, before: BridgeState | undefined, newMac: string): BridgeState {
  return { name: plan.bridge, isBridge: true, mac: before?.mac ?? newMac, up: true, mtu: before?.mtu ?? plan.mtu, addrs: [plan.gatewayCidr] };
}

/** How often a host batch is re-read and re-run when another ADD changed the bridge under it. */
const HOST_BATCH_ATTEMPTS = 4;

async function cmdAdd(ctx: Ctx, env: CniEnv, conf: WeftNetConf): Promise<Record<string, unknown>> {
  const senv = readSubnetEnv(conf.subnetFile);
  // Checked and held open before anything is done: commands name this very namespace.
  const ns = ctx.kernel.openNetns(env.netns);
  try {
    return await addAttachment(ctx, env, conf, senv, ns);
  } finally {
    ns.close();
  }
}

async function addAttachment(ctx: Ctx, env: CniEnv, conf: WeftNetConf, senv: SubnetEnv, ns: NetnsRef): Promise<Record<string, unknown>> {
  const range = ipamRange(senv.subnet, conf.ipam);
  const net = networkRoute(senv);
  const gateway = formatIPv4(range.gateway);
  // Checked before anything is reserved or built: a bad route gateway is a config error, not a half-made attachment.
  const baseRoutes = [...(net ? [{ dst: formatCidr(net), gw: gateway }] : []), ...(conf.isDefaultGateway ? [{ dst: '0.0.0.0/0', gw: gateway }] : [])];
  const extraRoutes = ipamRoutes(senv.subnet, conf.ipam, gateway, baseRoutes.map((r) => r.dst));
  const mtu = conf.mtu ?? senv.mtu;
  const ipMasq = conf.ipMasq ?? !senv.ipMasq;
  const rcIp = conf.runtimeConfig.ips?.[0];
  if (env.args.ip && rcIp && env.args.ip !== rcIp) throw new InvalidNetworkConfigError('runtimeConfig.ips', `${rcIp} differs from CNI_ARGS IP=${env.args.ip}; ask for one address`);
  const requested = env.args.ip ?? rcIp;
  const store = storeOf(ctx, conf);
  const log = ctx.log.child({ containerId: env.containerId, ifname: env.ifname, network: conf.name });
  await refuseOtherAddress(store, env, requested, senv.subnet);
  const undo = new UndoStack();
  try {
    const alloc = await allocate(store, range, env.containerId, env.ifname, requested);
    if (alloc.fresh) undo.push('release address', () => store.withLock(() => store.release(alloc.ip)));
    // fsync runs in the thread pool while the kernel work goes on; awaited before replying.
    const durable = store.flush();
    durable.catch(() => {});
    await ctx.fault('reserved');

    const plan: AttachPlan = {
      bridge: conf.bridge,
      gatewayCidr: `${gateway}/${senv.subnet.prefixLen}`,
      gateway,
      mtu,
      hostVeth: hostVethName(conf.name, env.containerId, env.ifname),
      hostMac: randomMac(),
      containerMac: conf.runtimeConfig.mac ?? randomMac(),
      ifname: env.ifname,
      netnsPath: ns.ref,
      hairpin: conf.hairpinMode,
      alias: attachmentAlias(conf.name, env.containerId, env.ifname),
      address: `${formatIPv4(alloc.ip)}/${senv.subnet.prefixLen}`,
      network: net ? formatCidr(net) : '',
      defaultRoute: conf.isDefaultGateway,
      extraRoutes,
    };
    // A repeated ADD (or a retry after a crash) rebuilds the attachment: the
    // old pair goes, the address stays the same.
    if (!alloc.fresh) await ctx.kernel.deleteHostLink(plan.hostVeth);

    const newMac = randomMac();
    let before = await bridgeState(ctx, conf.bridge, false);
    undo.push('delete veth pair', () => ctx.kernel.deleteHostLink(plan.hostVeth));
    for (let attempt = 1; ; attempt++) {
      try {
        await ctx.kernel.hostBatch([...renderBridgeLines(before, plan, newMac), ...renderVethLines(plan)]);
        break;
      } catch (err) {
        if (attempt >= HOST_BATCH_ATTEMPTS) throw err;
        // Another ADD may have created or fixed the bridge since we read it
        // (first ADDs at once on a fresh host), or the cached view is stale:
        // read it again (bridgeState refuses a link that is not a bridge) and
        // render again. Only the veth of this attachment is dropped: the
        // batch may have made it before the failing line.
        log.info({ bridge: conf.bridge, attempt, err: errorMessage(err) }, 'host batch failed; re-reading the bridge and retrying');
        ctx.bridges.delete(conf.bridge);
        await ctx.kernel.deleteHostLink(plan.hostVeth);
        before = await bridgeState(ctx, conf.bridge, true);
      }
    }
    if (before && before.addrs.some((a) => a !== plan.gatewayCidr)) {
      log.warn({ bridge: conf.bridge, old: before.addrs, now: plan.gatewayCidr }, 'replaced bridge address from another subnet');
    }
    const bridge = bridgeAfter(plan, before, newMac);
    ctx.bridges.set(conf.bridge, { state: bridge, at: Date.now() });
    await ctx.fault('veth');

    await ctx.kernel.containerBatch(ns.ref, renderContainerLines(plan));
    await ctx.fault('container');
    await ctx.kernel.ensureIpForward();

    if (ipMasq) {
      const ipt = await ctx.kernel.iptables(conf.iptablesBackend);
      const chain = masqChainName(conf.name, env.containerId, env.ifname);
      undo.push('delete masquerade chain', async () => {
        const text = renderMasqDelete(await ipt.save('nat'), new Set([chain]));
        if (text) await ipt.restore(text);
      });
      const spec = { chain, comment: masqComment(conf.name, env.containerId, env.ifname), ip: formatIPv4(alloc.ip), subnet: formatCidr(senv.subnet) };
      await ipt.restore(renderMasqAdd(await ipt.save('nat'), spec));
    }
    await ctx.fault('masq');
    await durable;

    undo.commit();
    log.info({ address: plan.address, hostVeth: plan.hostVeth, netns: env.netns, pod: env.args.k8sPodName }, 'attached container');
    const result: CniResult = {
      interfaces: [
        { name: conf.bridge, mac: bridge.mac, mtu: bridge.mtu },
        { name: plan.hostVeth, mac: plan.hostMac, mtu },
        { name: env.ifname, mac: plan.containerMac, sandbox: env.netns, mtu },
      ],
      ips: [{ address: plan.address, gateway, interface: 2 }],
      routes: [...baseRoutes, ...extraRoutes],
      dns: conf.dns,
    };
    return formatResult(result, conf.cniVersion);
  } catch (err) {
    const failures = await undo.rollback();
    for (const f of failures) log.warn({ step: f.what, err: errorMessage(f.error) }, 'rollback step failed');
    throw err;
  }
}

/**
 * A repeated ADD (same container and ifname) that asks for another address
 * is refused before anything is reserved or touched: the attachment keeps
 * its address, veth and routes, and no second address is reserved for it.
 * (A repeated ADD without a request, or asking for the address it has,
 * rebuilds the attachment with that address.)
 */
async function refuseOtherAddress(store: IpamStore, env: CniEnv, requested: string | undefined, subnet: IPv4Net): Promise<void> {
  if (requested === undefined) return;
  // As the allocator: only addresses of the current subnet count (after a subnet change the old ones are stale).
  const held = (await store.withLock(() => store.getByID(env.containerId, env.ifname))).filter((ip) => contains(subnet, ip)).map(formatIPv4);
  if (held.length === 0 || held.includes(requested)) return;
  throw new RequestedIpUnavailableError(
    `${env.containerId}/${env.ifname} already holds ${held.join(', ')}; requested IP ${requested} refused (DEL the attachment first to change its address)`,
    { requested, held },
  );
}

function readSubnetEnvOrUndefined(path: string): SubnetEnv | undefined {
  try {
    return readSubnetEnv(path);
  } catch {
    return undefined;
  }
}

/**
 * DEL: idempotent, needs neither the netns nor prevResult. The host end is
 * found by its derived name, the addresses by the store.
 */
async function cmdDel(ctx: Ctx, env: CniEnv, conf: WeftNetConf): Promise<undefined> {
  const senv = readSubnetEnvOrUndefined(conf.subnetFile);
  const store = storeOf(ctx, conf);
  await ctx.kernel.deleteHostLink(hostVethName(conf.name, env.containerId, env.ifname));
  // Without subnet.env we cannot know flannel's masquerade default: look for the chain anyway.
  const ipMasq = conf.ipMasq ?? (senv ? !senv.ipMasq : true);
  if (ipMasq) {
    try {
      const ipt = await ctx.kernel.iptables(conf.iptablesBackend);
      const text = renderMasqDelete(await ipt.save('nat'), new Set([masqChainName(conf.name, env.containerId, env.ifname)]));
      if (text) await ipt.restore(text);
    } catch (err) {
      // The chain only matters while the address is in use; GC retries.
      if (conf.ipMasq) throw err;
      ctx.log.warn({ containerId: env.containerId, err: errorMessage(err) }, 'could not clean masquerade chain');
    }
  }
  const freed = await store.withLock(() => store.releaseByID(env.containerId, env.ifname));
  ctx.log.info({ containerId: env.containerId, ifname: env.ifname, freed: freed.map(formatIPv4) }, 'detached container');
  return undefined;
}

class CheckFailedError extends CniError {
  override readonly code = 'ERR_CNI_CHECK_FAILED';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.kernel, message, details);
  }
}

/** CHECK: the container interface, its addresses and routes must match prevResult; the address must still be reserved. */
async function cmdCheck(ctx: Ctx, env: CniEnv, conf: WeftNetConf): Promise<undefined> {
  const prev = parsePrevResult(conf.prevResult);
  if (!prev) throw new InvalidNetworkConfigError('prevResult', 'CHECK needs the ADD result');
  readSubnetEnv(conf.subnetFile);
  const ns = ctx.kernel.openNetns(env.netns);
  try {
    await checkAttachment(ctx, env, conf, prev, ns);
  } finally {
    ns.close();
  }
  return undefined;
}

async function checkAttachment(ctx: Ctx, env: CniEnv, conf: WeftNetConf, prev: NonNullable<ReturnType<typeof parsePrevResult>>, ns: NetnsRef): Promise<void> {
  const link = await ctx.kernel.readContainerLink(ns.ref, env.ifname);
  if (!link) throw new CheckFailedError(`interface ${env.ifname} is missing in ${env.netns}`);
  const idx = prev.interfaces.findIndex((i) => i.name === env.ifname && i.sandbox !== undefined);
  const want = idx >= 0 ? prev.interfaces[idx]! : undefined;
  if (want?.mac && want.mac.toLowerCase() !== link.mac.toLowerCase()) {
    throw new CheckFailedError(`interface ${env.ifname} has MAC ${link.mac}, prevResult says ${want.mac}`);
  }
  if (!link.up) throw new CheckFailedError(`interface ${env.ifname} is down`);
  const store = storeOf(ctx, conf);
  const held = (await store.withLock(() => store.getByID(env.containerId, env.ifname))).map(formatIPv4);
  for (const ip of prev.ips) {
    if (ip.interface !== undefined && ip.interface !== idx) continue;
    if (!link.addrs.includes(ip.address)) throw new CheckFailedError(`address ${ip.address} is not on ${env.ifname}`);
    const bare = ip.address.split('/')[0]!;
    if (!held.includes(bare)) throw new CheckFailedError(`address ${bare} is not reserved for ${env.containerId}/${env.ifname}`);
  }
  for (const r of prev.routes) {
    const dst = formatCidr(parseCidr(r.dst, 'route.dst'));
    const ok = link.routes.some((x) => x.dst === dst && (r.gw === undefined || x.gw === r.gw));
    if (!ok) throw new CheckFailedError(`route ${dst}${r.gw ? ` via ${r.gw}` : ''} is missing in the container`);
  }
  const host = hostVethName(conf.name, env.containerId, env.ifname);
  const ports = await ctx.kernel.listBridgePorts(conf.bridge);
  if (!ports.some((p) => p.name === host)) throw new CheckFailedError(`host veth ${host} is not on bridge ${conf.bridge}`);
}

/**
 * GC: frees every reservation, masquerade chain and host veth of this network
 * whose attachment is not in cni.dev/valid-attachments (leaks after a DEL that
 * never came, a SIGKILLed ADD: reference plugins 252, 697).
 */
async function cmdGc(ctx: Ctx, _env: CniEnv, conf: WeftNetConf): Promise<undefined> {
  if (!conf.validAttachments) throw new InvalidNetworkConfigError('cni.dev/valid-attachments', 'missing (GC needs the list of attachments to keep)');
  const valid = conf.validAttachments;
  // Labels (alias, masq comment) carry a hash token for long IDs: keep those too.
  const keep = new Set(valid.flatMap((a) => [`${a.containerID}/${a.ifname}`, `${nameToken(a.containerID)}/${a.ifname}`]));
  const store = storeOf(ctx, conf);
  const freed = await store.withLock(() => {
    const gone = staleReservations(store.list(), valid);
    for (const r of gone) store.release(r.ip);
    return gone;
  });
  let veths = 0;
  for (const p of await ctx.kernel.listBridgePorts(conf.bridge)) {
    const a = parseAttachmentAlias(p.alias);
    if (a && tokenMatches(a.network, conf.name) && !keep.has(`${a.containerId}/${a.ifname}`)) {
      await ctx.kernel.deleteHostLink(p.name);
      veths++;
    }
  }
  let chains = 0;
  try {
    const ipt = await ctx.kernel.iptables(conf.iptablesBackend);
    const nat = await ipt.save('nat');
    const stale = staleMasqChains(nat, conf.name, keep);
    const text = renderMasqDelete(nat, stale);
    if (text) await ipt.restore(text);
    chains = stale.size;
  } catch (err) {
    if (conf.ipMasq) throw err;
    ctx.log.debug({ err: errorMessage(err) }, 'gc: iptables not usable, skipped masquerade chains');
  }
  ctx.log.info({ network: conf.name, addresses: freed.length, veths, chains }, 'gc done');
  return undefined;
}

/** STATUS: ready when subnet.env is readable (weftd holds a lease), else code 50. */
async function cmdStatus(_ctx: Ctx, _env: CniEnv, conf: WeftNetConf): Promise<undefined> {
  try {
    readSubnetEnv(conf.subnetFile);
  } catch (err) {
    throw new NotAvailableError(`not ready: ${errorMessage(err)}`, { subnetFile: conf.subnetFile });
  }
  return undefined;
}
