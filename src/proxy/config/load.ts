import { readFile, writeFile } from 'node:fs/promises';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { ProxyConfigError } from './errors.js';
import { parseKubeProxyConfig, type KubeProxyConfiguration } from './kubeproxy-config.js';

/** Reads and checks --config FILE; an unreadable file is a usage error naming it. */
export async function loadKubeProxyConfig(file: string): Promise<KubeProxyConfiguration> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ProxyConfigError('--config', `cannot read ${file}: ${errorMessage(err)}`);
  }
  try {
    return parseKubeProxyConfig(text, file);
  } catch (err) {
    if (err instanceof ProxyConfigError) throw new ProxyConfigError(`${file}: ${err.field}`, err.message.slice(err.field.length + 2));
    throw err;
  }
}

/** kube-proxy's --oom-score-adj: written to /proc/self/oom_score_adj; a failure is logged, not fatal (as kube-proxy). */
export async function setOomScoreAdj(value: number, log: Logger, path = '/proc/self/oom_score_adj'): Promise<void> {
  try {
    await writeFile(path, `${value}\n`);
    log.info({ oomScoreAdj: value }, 'set oom_score_adj');
  } catch (err) {
    log.warn({ oomScoreAdj: value, err: errorMessage(err) }, 'cannot set oom_score_adj');
  }
}
