import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { VmGuestError } from './errors.js';
import type { AgentReply, AgentRequest } from './protocol.js';

export interface GuestCallOptions {
  input?: string;
  /** The agent kills the command after this long. Default 120 s. */
  timeoutMs?: number;
}

// QEMU's socket chardev serves one client at a time: calls to one guest are
// queued here so a process never races itself for the port.
const queues = new Map<string, Promise<unknown>>();

/** Runs argv in the guest behind the agent socket `sock`; rejects (ERR_VM_GUEST) when no reply comes in time. */
export function guestCall(sock: string, argv: string[], opts: GuestCallOptions = {}): Promise<AgentReply> {
  const prev = queues.get(sock) ?? Promise.resolve();
  const next = prev.catch(() => undefined).then(() => callOnce(sock, argv, opts));
  const tail = next.catch(() => undefined);
  queues.set(sock, tail);
  void tail.then(() => {
    if (queues.get(sock) === tail) queues.delete(sock);
  });
  return next;
}

function callOnce(sock: string, argv: string[], opts: GuestCallOptions): Promise<AgentReply> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const req: AgentRequest = { id: randomBytes(8).toString('hex'), argv, timeoutMs, ...(opts.input !== undefined ? { input: opts.input } : {}) };
  return new Promise((resolve, reject) => {
    const conn = createConnection(sock);
    let buf = '';
    let done = false;
    const finish = (err: Error | undefined, reply?: AgentReply): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    // The agent's own timeout fires first; this margin covers a slow serial line.
    const timer = setTimeout(
      () => finish(new VmGuestError(`no reply from the guest agent at ${sock} within ${timeoutMs + 15_000} ms for: ${argv.join(' ').slice(0, 200)}`, { sock })),
      timeoutMs + 15_000,
    );
    conn.on('connect', () => conn.write(JSON.stringify(req) + '\n'));
    conn.on('error', (err) => finish(new VmGuestError(`guest agent socket ${sock}: ${err.message}`, { sock })));
    conn.on('close', () => finish(new VmGuestError(`guest agent socket ${sock} closed before the reply`, { sock })));
    conn.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const r = JSON.parse(line) as AgentReply;
          // A reply to an earlier, abandoned request: not ours.
          if (r.id === req.id) return finish(undefined, r);
        } catch {
          /* noise on the line */
        }
      }
    });
  });
}
