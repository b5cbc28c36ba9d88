import { WeftError } from '../core/errors.js';

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
/**
 * Env + stdin larger than this is refused as soon as the header declares it
 * (a CNI request is a few KiB: CNI_* variables and a network config).
 */
export const MAX_REQUEST = 1024 * 1024;

/** The bytes on the socket are not a request the server will read. */
export class WireError extends WeftError {
  override readonly code = 'ERR_CNI_WIRE';
  constructor(
    /** `magic`: not the shim's protocol; `oversized`: declared lengths above MAX_REQUEST. */
    readonly reason: 'magic' | 'oversized',
    message: string,
    details: Record<string, unknown> = {},
  ) {
    super(message, { reason, ...details });
  }
}

/**
 * How long the request starting in `buf` is. `known: false` means `length`
 * bytes are needed to learn more (the header, then the stdin length). Throws
 * a WireError for a foreign protocol or a request larger than MAX_REQUEST,
 * before its body has been read.
 */
export function requestFrameLength(buf: Buffer): { known: boolean; length: number } {
  if (buf.length < 8) return { known: false, length: 8 };
  if (!buf.subarray(0, 4).equals(MAGIC)) throw new WireError('magic', 'bad magic');
  const envLen = buf.readUInt32BE(4);
  if (envLen > MAX_REQUEST) throw new WireError('oversized', `env of ${envLen} bytes is over the ${MAX_REQUEST}-byte limit`, { envLen });
  if (buf.length < 12 + envLen) return { known: false, length: 12 + envLen };
  const stdinLen = buf.readUInt32BE(8 + envLen);
  if (envLen + stdinLen > MAX_REQUEST) {
    throw new WireError('oversized', `request of ${envLen + stdinLen} bytes is over the ${MAX_REQUEST}-byte limit`, { envLen, stdinLen });
  }
  return { known: true, length: 12 + envLen + stdinLen };
}

export interface WireRequest {
  env: Record<string, string>;
  stdin: string;
}

/** Parses a complete request; undefined when more bytes are needed; throws on garbage. */
export function decodeRequest(buf: Buffer): WireRequest | undefined {
  const frame = requestFrameLength(buf);
  if (!frame.known || buf.length < frame.length) return undefined;
  const envLen = buf.readUInt32BE(4);
  const end = frame.length;
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

/** A CNI error result as the shim relays it (stdout, exit 1): for answers the server gives without the handler. */
export function encodeCniError(cniCode: number, msg: string): Buffer {
  return encodeResponse(1, JSON.stringify({ cniVersion: '1.0.0', code: cniCode, msg }) + '\n', '');
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
