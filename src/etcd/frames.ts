/**
 * gRPC's message framing over HTTP/2 DATA: each message is a 1-byte
 * compressed flag (always 0 here: no compression is negotiated), a 4-byte
 * big-endian length, then the protobuf bytes. Chunks may cut a frame
 * anywhere; `push` returns the complete messages in order. Pure.
 */

export function frame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** A frame that cannot be read (compressed, or larger than allowed). */
export class FrameError extends Error {}

export class GrpcFrames {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** @param maxMessageBytes larger messages are refused before they are buffered whole */
  constructor(private readonly maxMessageBytes: number) {}

  /** @throws FrameError */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Buffer[] = [];
    while (this.buffered >= 5) {
      const head = this.peek(5);
      if (head[0] !== 0) throw new FrameError('compressed message (no compression was negotiated)');
      const len = head.readUInt32BE(1);
      if (len > this.maxMessageBytes) throw new FrameError(`message of ${len} bytes is larger than the limit of ${this.maxMessageBytes}`);
      if (this.buffered < 5 + len) break;
      out.push(this.take(5 + len).subarray(5));
    }
    return out;
  }

  /** Bytes left over at the end of the stream (a torn frame). */
  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    const first = this.chunks[0]!;
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return out;
  }
}
