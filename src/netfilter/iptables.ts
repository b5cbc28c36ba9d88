import { run, runStreaming } from '../exec/run.js';

export type IptablesBackend = 'legacy' | 'nft';

/** Applies and reads iptables rules; the real one shells out, fakes keep state. */
export interface IptablesClient {
  readonly backend: IptablesBackend;
  /** `iptables-restore --noflush -w` of a full restore text (tables with COMMIT). */
  restore(text: string): Promise<void>;
  /** `iptables-save -t <table>` text; every table when `table` is omitted. */
  save(table?: string): Promise<string>;
}

/**
 * One `iptables-restore --noflush -w` fed while the caller is still rendering:
 * the tool parses (and commits the COMMIT blocks it has) while we produce the rest.
 */
export interface RestoreSession {
  /** Queues text; await it between pieces so the bytes reach the tool. */
  write(text: string): Promise<void>;
  /** Ends the input and waits for the tool; throws if it refused anything. */
  end(): Promise<void>;
  /** Kills the tool: an open COMMIT block is then not applied. */
  abort(): void;
}

/** An IptablesClient that can also probe for a chain (weft-proxy's canary) and stream a restore. */
export interface IptablesChainClient extends IptablesClient {
  chainExists(table: string, chain: string): Promise<boolean>;
  openRestore(): RestoreSession;
}

export interface IptablesOptions {
  /** Run inside this netns (tests). */
  netns?: string;
  /** Force a backend instead of detecting. */
  backend?: IptablesBackend;
}

function bin(backend: IptablesBackend, tool: 'iptables' | 'iptables-restore' | 'iptables-save'): string {
  return `${tool.replace('iptables', `iptables-${backend}`)}`;
}

/**
 * Chooses legacy or nft the way kube-proxy does: whichever already holds more
 * rules wins (so weft joins the backend the host's other tools use); nft when
 * both are empty.
 */
export async function detectIptablesBackend(netns?: string): Promise<IptablesBackend> {
  const count = async (b: IptablesBackend) => {
    const r = await run(bin(b, 'iptables-save'), [], { netns, allowFail: true });
    if (r.code !== 0) return -1;
    return r.stdout.split('\n').filter((l) => l.startsWith('-A ')).length;
  };
  const [legacy, nft] = await Promise.all([count('legacy'), count('nft')]);
  if (legacy < 0 && nft < 0) return 'nft';
  return legacy > nft ? 'legacy' : 'nft';
}

export class ExecIptables implements IptablesChainClient {
  constructor(
    readonly backend: IptablesBackend,
    private readonly netns?: string,
  ) {}

  static async create(opts: IptablesOptions = {}): Promise<ExecIptables> {
    return new ExecIptables(opts.backend ?? (await detectIptablesBackend(opts.netns)), opts.netns);
  }

  async restore(text: string): Promise<void> {
    await run(bin(this.backend, 'iptables-restore'), ['--noflush', '-w', '5'], { input: text, netns: this.netns });
  }

  openRestore(): RestoreSession {
    const child = runStreaming(bin(this.backend, 'iptables-restore'), ['--noflush', '-w', '5'], { netns: this.netns, timeoutMs: 120_000 });
    return {
      write: (text) => child.write(text),
      end: async () => void (await child.end()),
      abort: () => child.abort(),
    };
  }

  async save(table?: string): Promise<string> {
    return (await run(bin(this.backend, 'iptables-save'), table ? ['-t', table] : [], { netns: this.netns })).stdout;
  }

  /** `iptables -t <table> -S <chain>` succeeds only when the chain exists. */
  async chainExists(table: string, chain: string): Promise<boolean> {
    const r = await run(bin(this.backend, 'iptables'), ['-w', '5', '-t', table, '-S', chain], { netns: this.netns, allowFail: true });
    return r.code === 0;
  }
}
