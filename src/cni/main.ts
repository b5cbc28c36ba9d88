/**
 * The standalone plugin (bundled into dist/cni/weft-cni.cjs): env and stdin
 * in, result on stdout, exit code out. The C shim execs this when no weft
 * server socket answers. Also `serve --socket <path>` runs the server alone
 * (benchmarks, hosts without weftd).
 */
import { writeFileSync } from 'node:fs';
import { createLogger, type LogLevel } from '../core/log.js';
import { createCniHandler } from './handler.js';
import { startCniServer } from './server.js';

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    process.stdin.on('data', (c: Buffer) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

/**
 * Test seams at the named ADD steps (handler's `fault`):
 * WEFT_CNI_TEST_HANG=<step>:<marker file>: write the marker and stop (SIGKILL tests);
 * WEFT_CNI_TEST_FAIL=<step>: fail there (rollback tests).
 */
function faultFromEnv(): ((step: string) => Promise<void>) | undefined {
  const hang = process.env.WEFT_CNI_TEST_HANG;
  const fail = process.env.WEFT_CNI_TEST_FAIL;
  if (!hang && !fail) return undefined;
  const [hangStep, marker] = (hang ?? '').split(':');
  return async (s: string) => {
    if (fail && s === fail) throw new Error(`injected failure at ADD step ${s} (WEFT_CNI_TEST_FAIL)`);
    if (!hang || s !== hangStep) return;
    if (marker) writeFileSync(marker, `${process.pid}\n`);
    // A pending promise alone does not keep Node alive; a timer does.
    await new Promise(() => setInterval(() => {}, 60_000));
  };
}

async function main(): Promise<void> {
  const level = (process.env.WEFT_CNI_LOG_LEVEL ?? 'warn') as LogLevel;
  const log = createLogger({ level, base: { component: 'weft-cni' } });
  const argv = process.argv.slice(2);
  if (argv[0] === 'serve') {
    const i = argv.indexOf('--socket');
    const socketPath = i >= 0 ? argv[i + 1]! : '/run/weft/cni.sock';
    const ac = new AbortController();
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => ac.abort());
    const server = await startCniServer({ socketPath, log: createLogger({ level: (process.env.WEFT_CNI_LOG_LEVEL ?? 'info') as LogLevel }), signal: ac.signal });
    await server.closed;
    return;
  }
  const handler = createCniHandler({ log, fault: faultFromEnv() });
  const res = await handler({ env: process.env, stdin: await readStdin() });
  if (res.stdout) process.stdout.write(res.stdout.endsWith('\n') ? res.stdout : res.stdout + '\n');
  process.exitCode = res.exitCode;
}

main().catch((err) => {
  process.stderr.write(`weft-cni: ${String(err)}\n`);
  process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', code: 199, msg: String(err) }) + '\n');
  process.exitCode = 1;
});
