/**
 * Wire format between the C shim (native/cni-shim/shim.c) and the server.
 * Request:  "WCN1" | u32 envLen | env ("K=V" entries, NUL-separated) | u32 stdinLen | stdin
 * Response: "WCN1" | i32 exitCode | u32 stdoutLen | stdout | u32 stderrLen | stderr
 * All integers big-endian. One request per connection.
 */
export const MAGIC = Buffer.from('WCN1', 'latin1');
/** Response exit code meaning "I serve another network namespace": the shim runs the standalone plugin. */
export const WRONG_NETNS = -2;
/** Request "env" entry the shim adds: `<st_dev>:<st_ino>` of its /proc/self/ns/net. */
export const NETNS_ID_KEY = 'WEFT_NETNS_ID';
/** A request larger than this is refused (CNI configs are a few KiB). */
export const MAX_REQUEST = 4 * 1024 * 1024;

export interface WireRequest {
  env: Record<string, string>;
  stdin: string;
}

/** Parses a complete request; undefined when more bytes are needed; throws on garbage. */
export function decodeRequest(buf: Buffer): WireRequest | undefined {
  if (buf.length < 8) return undefined;
  if (!buf.subarray(0, 4).equals(MAGIC)) throw new Error('bad magic');
  const envLen = buf.readUInt32BE(4);
  if (envLen > MAX_REQUEST) throw new Error('env too large');
  if (buf.length < 8 + envLen + 4) return undefined;
  const stdinLen = buf.readUInt32BE(8 + envLen);
  if (stdinLen > MAX_REQUEST) throw new Error('stdin too large');
  const end = 12 + envLen + stdinLen;
  if (buf.length < end) return undefined;
  const env: Record<string, string> = {};
  for (const entry of buf.subarray(8, 8 + envLen).toString('utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return { env, stdin: buf.subarray(12 + envLen, end).toString('utf8') };
}

export function encodeRequest(req: WireRequest): Buffer {
  const env = Buffer.from(Object.entries(req.env).map(([k, v]) => `${k}=${v}`).join('\0'), 'utf8');
  const stdin = Buffer.from(req.stdin, 'utf8');
  const head = Buffer.alloc(8);
  MAGIC.copy(head);
  head.writeUInt32BE(env.length, 4);
  const mid = Buffer.alloc(4);
  mid.writeUInt32BE(stdin.length);
  return Buffer.concat([head, env, mid, stdin]);
}

export function encodeResponse(exitCode: number, stdout: string, stderr: string): Buffer {
  const out = Buffer.from(stdout, 'utf8');
  const err = Buffer.from(stderr, 'utf8');
  const b = Buffer.alloc(16 + out.length + err.length);
  MAGIC.copy(b);
  b.writeInt32BE(exitCode, 4);
  b.writeUInt32BE(out.length, 8);
  out.copy(b, 12);
  b.writeUInt32BE(err.length, 12 + out.length);
  err.copy(b, 16 + out.length);
  return b;
}

export function decodeResponse(buf: Buffer): { exitCode: number; stdout: string; stderr: string } | undefined {
  if (buf.length < 12) return undefined;
  if (!buf.subarray(0, 4).equals(MAGIC)) throw new Error('bad magic');
  const outLen = buf.readUInt32BE(8);
  if (buf.length < 16 + outLen) return undefined;
  const errLen = buf.readUInt32BE(12 + outLen);
  if (buf.length < 16 + outLen + errLen) return undefined;
  return {
    exitCode: buf.readInt32BE(4),
    stdout: buf.subarray(12, 12 + outLen).toString('utf8'),
    stderr: buf.subarray(16 + outLen, 16 + outLen + errLen).toString('utf8'),
  };
}
