/**
 * Splits a watch stream into lines: the API sends one JSON event per line,
 * but chunks cut lines anywhere. `push` returns the complete lines; a
 * partial line stays buffered and is dropped with the stream (a connection
 * cut mid-event: the event comes again after a reconnect from our
 * resourceVersion).
 */
export class LineSplitter {
  private rest = '';

  push(chunk: string): string[] {
    const text = this.rest + chunk;
    const parts = text.split('\n');
    this.rest = parts.pop()!;
    return parts.filter((l) => l.trim() !== '');
  }

  /** Bytes of a line not yet complete. */
  get pending(): number {
    return this.rest.length;
  }
}
