import { ipBatch, ipJson, run } from '../../exec/run.js';
import { parseIpvsadmSave } from './render.js';
import type { VirtualServer } from './plan.js';

/** The ipvs table: read it, send `ipvsadm-restore` commands. */
export interface IpvsClient {
  list(): Promise<VirtualServer[]>;
  restore(commands: string): Promise<void>;
}

/** ipsets: `ipset restore` text, and destroying ours. */
export interface IpsetClient {
  restore(text: string): Promise<void>;
  /** Names of existing sets. */
  list(): Promise<string[]>;
  destroy(name: string): Promise<void>;
}

/** Holds the service IPs as local addresses (kube-proxy's kube-ipvs0 dummy device). */
export interface ServiceIPHolder {
  /** Makes the device hold exactly `addresses` (/32 each); creates the device when needed. */
  sync(addresses: readonly string[]): Promise<void>;
  /** Addresses held now (the virtual servers weft owns are on them). */
  held(): Promise<string[]>;
  remove(): Promise<void>;
}

export class ExecIpvsadm implements IpvsClient {
  constructor(private readonly netns?: string) {}
  async list(): Promise<VirtualServer[]> {
    return parseIpvsadmSave((await run('ipvsadm', ['-S', '-n'], { netns: this.netns })).stdout);
  }
  async restore(commands: string): Promise<void> {
    if (commands) await run('ipvsadm-restore', [], { input: commands, netns: this.netns });
  }
}

export class ExecIpset implements IpsetClient {
  constructor(private readonly netns?: string) {}
  async restore(text: string): Promise<void> {
    await run('ipset', ['restore'], { input: text, netns: this.netns });
  }
  async list(): Promise<string[]> {
    const r = await run('ipset', ['list', '-n'], { netns: this.netns, allowFail: true });
    return r.code === 0 ? r.stdout.split('\n').filter(Boolean) : [];
  }
  async destroy(name: string): Promise<void> {
    await run('ipset', ['destroy', name], { netns: this.netns, allowFail: true });
  }
}

/** Dummy device `weft-ipvs0` holding the service IPs. */
export class DummyHolder implements ServiceIPHolder {
  constructor(
    private readonly netns?: string,
    readonly device = 'weft-ipvs0',
  ) {}
  async held(): Promise<string[]> {
    const links = await ipJson<{ addr_info?: Array<{ local: string }> }>(['addr', 'show', 'dev', this.device], this.netns).catch(() => []);
    return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local));
  }
  async sync(addresses: readonly string[]): Promise<void> {
    await run('ip', [...(this.netns ? ['-n', this.netns] : []), 'link', 'add', this.device, 'type', 'dummy'], { allowFail: true });
    const have = new Set(await this.held());
    const want = new Set(addresses);
    const lines = [
      ...[...want].filter((a) => !have.has(a)).map((a) => `addr replace ${a}/32 dev ${this.device}`),
      ...[...have].filter((a) => !want.has(a)).map((a) => `addr del ${a}/32 dev ${this.device}`),
    ];
    await ipBatch(lines, { netns: this.netns });
  }
  async remove(): Promise<void> {
    await run('ip', [...(this.netns ? ['-n', this.netns] : []), 'link', 'del', this.device], { allowFail: true });
  }
}

/** In-memory stand-ins (unit tests): they keep what was sent. */
export class FakeIpvs implements IpvsClient {
  servers: VirtualServer[] = [];
  readonly sent: string[] = [];
  async list(): Promise<VirtualServer[]> {
    return structuredClone(this.servers);
  }
  async restore(commands: string): Promise<void> {
    if (!commands) return;
    this.sent.push(commands);
    // Apply through the same text format ipvsadm -S prints, so parse and diff are exercised together.
    const byKey = new Map(this.servers.map((v) => [`${v.protocol}/${v.address}:${v.port}`, v]));
    for (const line of commands.split('\n').filter(Boolean)) {
      const m = /^-([AEDaed]) (-t|-u|--sctp-service) (\S+):(\d+)(.*)$/.exec(line)!;
      const protocol = m[2] === '-t' ? 'tcp' : m[2] === '-u' ? 'udp' : 'sctp';
      const key = `${protocol}/${m[3]}:${m[4]}`;
      const [vs] = parseIpvsadmSave(`-A ${m[2]} ${m[3]}:${m[4]}${m[5]}`);
      const rs = /-r (\S+):(\d+)(?:.*-w (\d+))?/.exec(m[5]!);
      const v = byKey.get(key);
      switch (m[1]) {
        case 'A':
          if (v) throw new Error(`ipvsadm: virtual service ${key} exists`);
          byKey.set(key, { ...vs!, realServers: [] });
          break;
        case 'E':
        case 'D':
          if (!v) throw new Error(`ipvsadm: no virtual service ${key}`);
          if (m[1] === 'D') byKey.delete(key);
          else Object.assign(v, { scheduler: vs!.scheduler, persistenceS: vs!.persistenceS });
          break;
        default: {
          if (!v || !rs) throw new Error(`ipvsadm: no virtual service ${key}`);
          const i = v.realServers.findIndex((r) => r.address === rs[1] && r.port === Number(rs[2]));
          if (m[1] === 'a') v.realServers.push({ address: rs[1]!, port: Number(rs[2]), weight: Number(rs[3] ?? 1) });
          else if (i < 0) throw new Error(`ipvsadm: no real server ${rs[1]}:${rs[2]}`);
          else if (m[1] === 'e') v.realServers[i]!.weight = Number(rs[3] ?? 1);
          else v.realServers.splice(i, 1);
        }
      }
    }
    this.servers = [...byKey.values()];
  }
}

export class FakeIpset implements IpsetClient {
  readonly sets = new Map<string, Set<string>>();
  async restore(text: string): Promise<void> {
    for (const line of text.split('\n').filter(Boolean)) {
      const [cmd, name, ...rest] = line.split(' ');
      if (cmd === 'create') this.sets.set(name!, this.sets.get(name!) ?? new Set());
      else if (cmd === 'flush') this.sets.get(name!)!.clear();
      else if (cmd === 'add') this.sets.get(name!)!.add(rest.join(' '));
      else if (cmd === 'swap') {
        const a = this.sets.get(name!)!;
        this.sets.set(name!, this.sets.get(rest[0]!)!);
        this.sets.set(rest[0]!, a);
      } else if (cmd === 'destroy') this.sets.delete(name!);
    }
  }
  async list(): Promise<string[]> {
    return [...this.sets.keys()];
  }
  async destroy(name: string): Promise<void> {
    this.sets.delete(name);
  }
}

export class FakeHolder implements ServiceIPHolder {
  addresses = new Set<string>();
  exists = false;
  async sync(addresses: readonly string[]): Promise<void> {
    this.exists = true;
    this.addresses = new Set(addresses);
  }
  async held(): Promise<string[]> {
    return [...this.addresses];
  }
  async remove(): Promise<void> {
    this.exists = false;
    this.addresses.clear();
  }
}
