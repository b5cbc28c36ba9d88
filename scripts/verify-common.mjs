// Shared option handling for scripts/verify-ping and scripts/verify-curl.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const collect = (v, acc) => [...acc, v];

/**
 * Parses the common flags, builds the topology, runs `check`, prints the
 * table (or JSON) and sets the exit code: 0 all passed, 1 a check failed,
 * 2 bad usage or setup.
 */
export async function verifyMain(name, addOptions, check) {
  const cmd = new Command(`verify-${name}`)
    .option('--lab <id>', 'a lab on this machine (weftctl lab up --id <id>)')
    .option('--status <file>', 'JSON of `weftctl lab status --json` ("-" = stdin)')
    .option('--pod <name=IP[@netns]>', 'a pod; netns is a name (ip netns exec) or a path (nsenter); repeatable', collect, [])
    .option('--host <name=IP>', 'a host underlay address (NodePort checks); repeatable', collect, [])
    .option('--client-netns <netns>', 'namespace to run NodePort checks from (default: the lab switch, else here)')
    .option('--parallel <n>', 'checks in flight', (v) => Number(v), 4)
    .option('--json', 'print the checks as JSON');
  addOptions(cmd);
  cmd.exitOverride();
  let o;
  try {
    cmd.parse(process.argv);
    o = cmd.opts();
  } catch (err) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
    return;
  }
  const lib = join(repo, 'dist', 'lab', 'verify.js');
  if (!existsSync(lib)) {
    process.stderr.write(`verify-${name}: ${lib} missing; run npm run build first\n`);
    process.exitCode = 2;
    return;
  }
  const verify = await import(lib);
  try {
    let topo;
    if (o.lab) topo = verify.topologyFromLab(o.lab);
    else if (o.status) topo = verify.topologyFromFile(o.status);
    else topo = { pods: [], hosts: [] };
    topo.pods.push(...o.pod.map(verify.parsePodSpec));
    topo.hosts.push(...o.host.map(verify.parseHostSpec));
    if (o.clientNetns) topo.clientNetns = o.clientNetns;
    const checks = await check(verify, topo, o);
    process.stdout.write(o.json ? JSON.stringify(checks, null, 2) + '\n' : verify.renderChecks(checks));
    process.exitCode = checks.every((c) => c.ok) ? 0 : 1;
  } catch (err) {
    process.stderr.write(`verify-${name}: ${err.code ? `[${err.code}] ` : ''}${err.message}\n`);
    process.exitCode = 2;
  }
}
