/**
 * The few protobuf wire rules etcd's messages need, by hand: varints
 * (int64 as two's complement in 10 bytes when negative), length-delimited
 * bytes / strings / sub-messages. Writing and reading are field by field,
 * so no .proto file is parsed and no reflection runtime is loaded. Pure.
 */

/** Wire types used here. */
const VARINT = 0;
const LEN = 2;

const U64 = (1n << 64n) - 1n;

/** A protobuf message under construction. Fields holding their default are skipped (proto3). */
export class ProtoWriter {
  private readonly parts: Buffer[] = [];
  private size = 0;

  private push(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
  }

  private tag(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire));
  }

  private varint(v: bigint): void {
    let x = v & U64;
    const out: number[] = [];
    while (x > 0x7fn) {
      out.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    out.push(Number(x));
    this.push(Buffer.from(out));
  }

  /** int64 / uint64 / enum / bool as a varint; `always` writes a default too (a set oneof member). */
  int(field: number, v: bigint | number | boolean | undefined, always = false): this {
    if (v === undefined || (!always && (v === false || v === 0 || v === 0n))) return this;
    this.tag(field, VARINT);
    this.varint(typeof v === 'bigint' ? v : BigInt(v === true ? 1 : v));
    return this;
  }

  /** bytes / string (UTF-8); empty is skipped unless `always` (a set oneof member). */
  bytes(field: number, v: Uint8Array | string | undefined, always = false): this {
    if (v === undefined) return this;
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    if (b.length === 0 && !always) return this;
    return this.len(field, b);
  }

  /** An embedded message, even when empty (a oneof member must be present). */
  message(field: number, m: ProtoWriter): this {
    return this.len(field, m.finish());
  }

  private len(field: number, b: Buffer): this {
    this.tag(field, LEN);
    this.varint(BigInt(b.length));
    this.push(b);
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts, this.size);
  }
}

/** One field as read off the wire: a varint (as bigint) or length-delimited bytes. */
export type ProtoField = { field: number; varint: bigint; bytes?: undefined } | { field: number; bytes: Buffer; varint?: undefined };

/** Thrown on a message that is not valid protobuf. */
export class ProtoError extends Error {}

/** Every field of `buf`, in order (repeated fields repeat). Fixed 32/64-bit fields are skipped (etcd's messages here have none). */
export function* readFields(buf: Buffer): Generator<ProtoField> {
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new ProtoError('truncated varint');
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
      if (shift > 63n) throw new ProtoError('varint longer than 10 bytes');
    }
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === VARINT) yield { field, varint: varint() };
    else if (wire === LEN) {
      const n = Number(varint());
      if (pos + n > buf.length) throw new ProtoError(`field ${field}: length ${n} past the end`);
      yield { field, bytes: buf.subarray(pos, pos + n) };
      pos += n;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new ProtoError(`field ${field}: unsupported wire type ${wire}`);
    if (pos > buf.length) throw new ProtoError('truncated fixed field');
  }
}

/** A varint read as int64 (two's complement), as a decimal string. */
export function int64Of(v: bigint): string {
  return BigInt.asIntN(64, v).toString();
}
