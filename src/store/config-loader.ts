/**
 * Reading the network config at daemon start: flanneld waits (retrying) until
 * `<prefix>/config` exists, so a host can boot before the operator has run
 * `weftctl config set`. A config that exists but is invalid is refused at
 * once by default (a clear error beats a daemon silently waiting).
 */
import { AbortedError, ConfigError, errorMessage } from '../core/errors.js';
import { delay } from '../core/async.js';
import { silentLogger, type Logger } from '../core/log.js';
import { Backoff } from './backoff.js';
import { describeNetworkConfig, parseNetworkConfig } from './netconfig.js';
import type { Registry } from './registry.js';
import type { NetworkConfig } from './types.js';

export interface LoadNetworkConfigOptions {
  signal: AbortSignal;
  /** Default: silent. */
  log?: Logger;
  /** Keep waiting when the stored config is invalid (someone may fix it). Default false: throw ConfigError. */
  retryInvalid?: boolean;
  /** First retry delay. Default 1000 ms, doubling to maxRetryMs. */
  minRetryMs?: number;
  /** Default 5000 ms. */
  maxRetryMs?: number;
  /** Default: a real timer. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/**
 * Resolves with the parsed config once it is stored and valid.
 * @throws ConfigError when invalid (unless retryInvalid), AbortedError on abort
 */
export async function loadNetworkConfig(registry: Registry, opts: LoadNetworkConfigOptions): Promise<NetworkConfig> {
  const log = opts.log ?? silentLogger;
  const sleep = opts.sleep ?? delay;
  const backoff = new Backoff({ minMs: opts.minRetryMs ?? 1000, maxMs: opts.maxRetryMs ?? 5000 });
  let lastProblem = '';
  for (;;) {
    if (opts.signal.aborted) throw new AbortedError();
    let problem: string;
    try {
      const json = await registry.getConfig();
      if (json !== undefined) {
        const config = parseNetworkConfig(json);
        log.info({ config: describeNetworkConfig(config) }, 'loaded network config');
        return config;
      }
      problem = 'no network config stored yet (run: weftctl config set ...); waiting';
    } catch (err) {
      if (err instanceof ConfigError && !opts.retryInvalid) throw err;
      problem = `${err instanceof ConfigError ? 'invalid network config' : 'cannot read network config'}: ${errorMessage(err)}`;
    }
    // Log each new problem once, not once per retry.
    if (problem !== lastProblem) log.warn({}, problem);
    lastProblem = problem;
    await sleep(backoff.next(), opts.signal);
  }
}
