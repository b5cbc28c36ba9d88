/**
 * The guest agent of the VM tier: PID 1 (/sbin/weft-init in the image) runs
 * it from the weft disk. It finds the virtio-serial port named weft.ctl,
 * reads requests (src/vm/protocol.ts), runs each command and writes the reply.
 * Runs only inside a guest; never imported by the host side.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, read, readdirSync, readFileSync, writeSync } from 'node:fs';
import { MAX_OUTPUT, isAgentRequest, type AgentReply, type AgentRequest } from './protocol.js';

const PORT_NAME = 'weft.ctl';

function findPort(): string | undefined {
  try {
    for (const p of readdirSync('/sys/class/virtio-ports')) {
      const name = readFileSync(`/sys/class/virtio-ports/${p}/name`, 'utf8').trim();
      if (name === PORT_NAME) return `/dev/${p}`;
    }
  } catch {
    /* not there yet */
  }
  return undefined;
}

function runRequest(req: AgentRequest): Promise<AgentReply> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const child = spawn(req.argv[0]!, req.argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, req.timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += d.toString('utf8');
    });
    child.stdin.on('error', () => {});
    child.stdin.end(req.input ?? '');
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ id: req.id, code: 127, stdout, stderr: stderr + String(err.message) });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ id: req.id, code, stdout, stderr, ...(timedOut ? { timedOut } : {}) });
    });
  });
}

// Reads run on the thread pool (fs.read), so the event loop keeps running commands.
function readChunk(fd: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const buf = Buffer.alloc(65536);
    read(fd, buf, 0, buf.length, null, (err, n) => resolve(err || n <= 0 ? null : buf.subarray(0, n)));
  });
}

async function serve(path: string): Promise<void> {
  const fd = openSync(path, 'r+');
  const write = (reply: AgentReply): void => {
    const line = Buffer.from(JSON.stringify(reply) + '\n');
    let off = 0;
    try {
      while (off < line.length) off += writeSync(fd, line, off);
    } catch {
      /* host went away; it drops replies it no longer waits for */
    }
  };
  let pending = '';
  try {
    for (;;) {
      const chunk = await readChunk(fd);
      // EOF: no host connected. The caller reopens after a pause.
      if (!chunk) return;
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.trim()) continue;
        let req: unknown;
        try {
          req = JSON.parse(line);
        } catch {
          continue;
        }
        if (!isAgentRequest(req)) continue;
        void runRequest(req).then(write);
      }
    }
  } finally {
    closeSync(fd);
  }
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

for (;;) {
  const port = findPort();
  if (port) {
    try {
      await serve(port);
    } catch (err) {
      process.stderr.write(`agent: ${String(err)}\n`);
    }
  }
  // While no host is connected a read returns EOF at once: reopen at a gentle pace.
  await pause(200);
}
