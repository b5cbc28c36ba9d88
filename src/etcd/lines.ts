/**
 * Splits a streamed body into newline-delimited JSON messages (the gateway
 * writes one JSON object per line on /v3/watch). Chunks may cut a message
 * anywhere; `push` returns the complete ones in order. Pure.
 */
export class JsonLines {
  private rest = '';

  /** @throws SyntaxError on a complete line that is not JSON */
  push(chunk: string): unknown[] {
    // Only the new chunk can hold a newline: a long message split over many
    // chunks is scanned once, not once per chunk.
    let from = this.rest.length;
    this.rest += chunk;
    const out: unknown[] = [];
    let start = 0;
    let nl: number;
    while ((nl = this.rest.indexOf('\n', from)) >= 0) {
      const line = this.rest.slice(start, nl).trim();
      start = from = nl + 1;
      if (line) out.push(JSON.parse(line));
    }
    this.rest = this.rest.slice(start);
    return out;
  }

  /** Whatever is left when the stream ends (a last message without a newline). */
  end(): unknown[] {
    const line = this.rest.trim();
    this.rest = '';
    return line ? [JSON.parse(line)] : [];
  }
}
