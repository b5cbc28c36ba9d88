import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import { isIPv4 } from '../core/ip.js';
import { run } from '../exec/run.js';
import { table } from './format.js';
import { labStatus } from './status.js';

/**
 * The checks behind scripts/verify-ping and scripts/verify-curl. They work on
 * a topology - pods (name, ip, where to run from) and hosts (underlay IP) -
 * taken from a lab (`--lab`), from `lab status --json` output (`--status`),
 * or from addresses on the command line (real hosts).
 */

export interface TopoPod {
  name: string;
  ip: string;
  /** Namespace name (ip netns exec), a namespace path (nsenter), or undefined (target only). */
  netns?: string;
}

export interface TopoHost {
  name: string;
  underlayIp: string;
}

export interface Topology {
  pods: TopoPod[];
  hosts: TopoHost[];
  /** Where NodePort checks run from: the lab's switch namespace (an outside client), or here. */
  clientNetns?: string;
}

/** Topology from the JSON printed by `weftctl lab status --json` (only the documented fields are used). */
export function topologyFromStatus(json: unknown, source = 'status'): Topology {
  const s = json as { id?: string; hosts?: Array<{ name?: string; underlayIp?: string; pods?: Array<{ name?: string; ip?: string | null; netns?: string }> }> };
  if (!s || !Array.isArray(s.hosts)) throw new InvalidArgumentError(source, 'has no "hosts" list (expected lab status --json output)');
  const topo: Topology = { pods: [], hosts: [] };
  for (const h of s.hosts) {
    if (typeof h.name !== 'string' || typeof h.underlayIp !== 'string') throw new InvalidArgumentError(source, 'a host lacks name or underlayIp');
    topo.hosts.push({ name: h.name, underlayIp: h.underlayIp });
    for (const p of h.pods ?? []) {
      if (typeof p.name !== 'string' || typeof p.ip !== 'string') throw new InvalidArgumentError(source, `pod on ${h.name} lacks name or ip`);
      topo.pods.push({ name: p.name, ip: p.ip, netns: p.netns });
    }
  }
  if (typeof s.id === 'string') topo.clientNetns = `${s.id}-sw`;
  return topo;
}

/** Topology of a running lab. */
export function topologyFromLab(id: string): Topology {
  return topologyFromStatus(labStatus(id), `lab ${id}`);
}

export function topologyFromFile(path: string): Topology {
  const text = path === '-' ? readFileSync(0, 'utf8') : readFileSync(path, 'utf8');
  return topologyFromStatus(JSON.parse(text), path);
}

/** `name=ip` or `name=ip@netns` (netns: name or path); a bare IP names itself. */
export function parsePodSpec(spec: string): TopoPod {
  const m = /^(?:([^=]+)=)?([\d.]+)(?:@(.+))?$/.exec(spec);
  if (!m || !isIPv4(m[2]!)) throw new InvalidArgumentError('pod', `"${spec}" is not name=IP[@netns]`);
  return { name: m[1] ?? m[2]!, ip: m[2]!, netns: m[3] };
}

/** `name=ip` or a bare IP. */
export function parseHostSpec(spec: string): TopoHost {
  const m = /^(?:([^=]+)=)?([\d.]+)$/.exec(spec);
  if (!m || !isIPv4(m[2]!)) throw new InvalidArgumentError('host', `"${spec}" is not name=IP`);
  return { name: m[1] ?? m[2]!, underlayIp: m[2]! };
}

/** argv that runs `argv` in a namespace: a name via `ip netns exec`, a path via nsenter, none as is. */
export function inNetns(netns: string | undefined, argv: string[]): string[] {
  if (!netns) return argv;
  if (netns.startsWith('/')) return ['nsenter', `--net=${netns}`, '--', ...argv];
  return ['ip', 'netns', 'exec', netns, ...argv];
}

export interface Check {
  kind: 'ping' | 'clusterip' | 'nodeport';
  from: string;
  to: string;
  target: string;
  ok: boolean;
  /** Short result text: '0% loss', 'HTTP 200', 'timeout'... */
  detail: string;
  /** Average latency in ms, when measured. */
  ms?: number;
  /** Response body's first line (curl), to show which backend answered. */
  answer?: string;
}

export interface PingStats {
  sent: number;
  received: number;
  avgMs?: number;
}

/** Reads iputils ping's summary lines. */
export function parsePing(out: string): PingStats | undefined {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(out);
  if (!m) return undefined;
  const rtt = /= [\d.]+\/([\d.]+)\/[\d.]+/.exec(out);
  return { sent: Number(m[1]), received: Number(m[2]), avgMs: rtt ? Number(rtt[1]) : undefined };
}

/** Separator curl prints after the body (`-w`), then status and total time. */
export const CURL_MARK = '\n@@weft-verify@@';

export function parseCurl(out: string): { status: number; ms: number; body: string } | undefined {
  const i = out.lastIndexOf(CURL_MARK);
  if (i < 0) return undefined;
  const [status, secs] = out.slice(i + CURL_MARK.length).trim().split(/\s+/);
  return { status: Number(status), ms: Number(secs) * 1000, body: out.slice(0, i) };
}

/** Runs `fn` over items with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

export interface PingOptions {
  /** Echo requests per pair. Default 2. */
  count?: number;
  /** Seconds to wait for each reply. Default 2. */
  timeoutSec?: number;
  /** Pairs in flight. Default 4. */
  parallel?: number;
}

/** Every pod with a namespace pings every other pod. */
export async function verifyPing(topo: Topology, opts: PingOptions = {}): Promise<Check[]> {
  const count = opts.count ?? 2;
  const pairs = topo.pods.flatMap((from) => (from.netns ? topo.pods.filter((to) => to !== from).map((to) => ({ from, to })) : []));
  if (pairs.length === 0) throw new InvalidArgumentError('pods', 'need at least two pods, one of them with a namespace to ping from');
  return mapLimit(pairs, opts.parallel ?? 4, async ({ from, to }) => {
    const argv = inNetns(from.netns, ['ping', '-n', '-q', '-c', String(count), '-i', '0.2', '-W', String(opts.timeoutSec ?? 2), to.ip]);
    const r = await run(argv[0]!, argv.slice(1), { allowFail: true, timeoutMs: (count * (opts.timeoutSec ?? 2) + 5) * 1000 });
    const st = parsePing(r.stdout);
    const base = { kind: 'ping' as const, from: from.name, to: to.name, target: to.ip };
    if (!st) return { ...base, ok: false, detail: (r.stderr.trim().split('\n').pop() ?? 'ping failed').slice(0, 60) };
    const loss = Math.round((100 * (st.sent - st.received)) / Math.max(st.sent, 1));
    return { ...base, ok: st.received === st.sent && st.sent > 0, detail: `${loss}% loss`, ms: st.avgMs };
  });
}

export interface CurlOptions {
  /** `IP:PORT` of a ClusterIP service, tried from every pod. */
  clusterIp?: string;
  /** NodePort tried on every host's underlay address from the client namespace. */
  nodePort?: number;
  /** URL path. Default '/'. */
  path?: string;
  /** Requests per source (more show load balancing). Default 1. */
  tries?: number;
  /** Seconds per request. Default 3. */
  timeoutSec?: number;
  /** Text the body must contain. Default: any 2xx answer passes. */
  expect?: string;
  /** Requests in flight. Default 4. */
  parallel?: number;
}

async function curlOnce(netns: string | undefined, url: string, timeoutSec: number) {
  const argv = inNetns(netns, ['curl', '-sS', '--max-time', String(timeoutSec), '-w', `${CURL_MARK}%{http_code} %{time_total}`, url]);
  const r = await run(argv[0]!, argv.slice(1), { allowFail: true, timeoutMs: (timeoutSec + 5) * 1000 });
  return { parsed: parseCurl(r.stdout), stderr: r.stderr.trim(), code: r.code };
}

/** ClusterIP from every pod; NodePort on every host from the client namespace. */
export async function verifyCurl(topo: Topology, opts: CurlOptions): Promise<Check[]> {
  const path = opts.path ?? '/';
  const timeoutSec = opts.timeoutSec ?? 3;
  const tries = opts.tries ?? 1;
  const jobs: Array<{ kind: Check['kind']; from: string; netns?: string; to: string; url: string; target: string }> = [];
  if (opts.clusterIp) {
    if (!/^[\d.]+:\d+$/.test(opts.clusterIp)) throw new InvalidArgumentError('cluster-ip', `"${opts.clusterIp}" is not IP:PORT`);
    for (const p of topo.pods.filter((p) => p.netns)) {
      jobs.push({ kind: 'clusterip', from: p.name, netns: p.netns, to: 'service', target: opts.clusterIp, url: `http://${opts.clusterIp}${path}` });
    }
  }
  if (opts.nodePort !== undefined) {
    for (const h of topo.hosts) {
      const target = `${h.underlayIp}:${opts.nodePort}`;
      jobs.push({ kind: 'nodeport', from: topo.clientNetns ? 'switch' : 'here', netns: topo.clientNetns, to: h.name, target, url: `http://${target}${path}` });
    }
  }
  if (jobs.length === 0) throw new InvalidArgumentError('cluster-ip', 'give --cluster-ip IP:PORT and/or --node-port PORT (and pods/hosts to use)');
  return mapLimit(jobs, opts.parallel ?? 4, async (j): Promise<Check> => {
    const answers: string[] = [];
    let fail: string | undefined;
    let total = 0;
    for (let i = 0; i < tries && !fail; i++) {
      const r = await curlOnce(j.netns, j.url, timeoutSec);
      if (!r.parsed || r.parsed.status === 0) fail = (r.stderr.split('\n').pop() || `curl exit ${r.code}`).replace(/^curl: \(\d+\) /, '').replace(/ after \d+ ms.*$/, '').slice(0, 60);
      else if (r.parsed.status < 200 || r.parsed.status > 299) fail = `HTTP ${r.parsed.status}`;
      else if (opts.expect && !r.parsed.body.includes(opts.expect)) fail = `body lacks "${opts.expect}"`;
      else {
        total += r.parsed.ms;
        answers.push(r.parsed.body.trim().split('\n')[0]!.slice(0, 40));
      }
    }
    const distinct = [...new Set(answers)];
    const base = { kind: j.kind, from: j.from, to: j.to, target: j.target };
    if (fail) return { ...base, ok: false, detail: fail };
    return {
      ...base,
      ok: true,
      detail: tries > 1 ? `HTTP 2xx x${tries}, ${distinct.length} backend(s)` : 'HTTP 2xx',
      ms: total / tries,
      answer: distinct.join(' | '),
    };
  });
}

/** The readable result table plus a summary line. */
export function renderChecks(checks: readonly Check[]): string {
  const rows = [['CHECK', 'FROM', 'TO', 'TARGET', 'RESULT', 'DETAIL', 'AVG ms', 'ANSWER']];
  for (const c of checks) {
    rows.push([c.kind, c.from, c.to, c.target, c.ok ? 'ok' : 'FAIL', c.detail, c.ms === undefined ? '-' : c.ms.toFixed(2), c.answer ?? '']);
  }
  const failed = checks.filter((c) => !c.ok).length;
  const summary = failed === 0 ? `all ${checks.length} checks passed` : `${failed} of ${checks.length} checks FAILED`;
  return `${table(rows).replace(/ +$/gm, '')}\n${summary}\n`;
}
