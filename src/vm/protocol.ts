/**
 * The control channel between the host and a guest's agent: one JSON object
 * per line over a virtio-serial port (host side: a QEMU unix socket).
 * Every reply carries the request's id, so a reply left over from an earlier,
 * abandoned connection is recognised and dropped.
 */
export interface AgentRequest {
  id: string;
  /** Program and arguments (no shell), or ['bash', '-c', script]. */
  argv: string[];
  /** Written to the command's stdin. */
  input?: string;
  /** The agent kills the command after this long. */
  timeoutMs: number;
}

export interface AgentReply {
  id: string;
  /** Exit code; null when killed by a signal (timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut?: boolean;
}

/** Output beyond this many characters per stream is cut (the channel is a serial line). */
export const MAX_OUTPUT = 4 * 1024 * 1024;

export function isAgentRequest(v: unknown): v is AgentRequest {
  if (!v || typeof v !== 'object') return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.id === 'string' &&
    Array.isArray(r.argv) &&
    r.argv.length > 0 &&
    r.argv.every((a) => typeof a === 'string') &&
    typeof r.timeoutMs === 'number' &&
    (r.input === undefined || typeof r.input === 'string')
  );
}
