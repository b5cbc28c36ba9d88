import { randomBytes } from 'node:crypto';
import { run } from '../../src/exec/run.js';
import { labExec, labTarget } from '../../src/lab/index.js';

/** A lab id unique to this test run (ids are at most 8 chars). */
export function uniqueLabId(prefix: string): string {
  return `${prefix.slice(0, 4)}${randomBytes(2).toString('hex')}`;
}

export interface PlainRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  flags?: string[];
}

/** IPv4 main-table routes inside a lab namespace. */
export async function routesOf(id: string, target: string): Promise<PlainRoute[]> {
  const r = await run('ip', ['-n', labTarget(id, target), '-j', 'route', 'show']);
  return JSON.parse(r.stdout || '[]') as PlainRoute[];
}

/** Routes whose destination lies in 10.244.0.0/16 and go via a gateway. */
export async function podRoutesOf(id: string, target: string): Promise<PlainRoute[]> {
  return (await routesOf(id, target)).filter((r) => r.dst.startsWith('10.244.') && r.gateway);
}

/** One ping (or `count`) from a lab namespace; true when all replies came back. */
export async function pings(id: string, from: string, to: string, count = 1): Promise<boolean> {
  const r = await labExec(id, from, ['ping', '-c', String(count), '-i', '0.2', '-W', '2', to], { allowFail: true });
  return r.code === 0;
}

export interface PingRun {
  /** Resolves with transmitted/received once the ping ends. */
  done: Promise<{ transmitted: number; received: number; output: string }>;
}

/**
 * A continuous ping (`count` packets every `intervalS`) running in the
 * background while the test disturbs the cluster; `done` gives the loss.
 */
export function continuousPing(id: string, from: string, to: string, count: number, intervalS = 0.1): PingRun {
  const done = labExec(id, from, ['ping', '-c', String(count), '-i', String(intervalS), '-W', '1', to], {
    allowFail: true,
    timeoutMs: (count * intervalS + 30) * 1000,
  }).then((r) => {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
    return { transmitted: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), output: r.stdout.split('\n').slice(-4).join('\n') };
  });
  return { done };
}
