import { describe, expect, it } from 'vitest';
import {
  decodeEvent,
  decodeKeyValue,
  decodeLeaseTimeToLive,
  decodeRange,
  decodeTxn,
  decodeWatchResponse,
  encodeCompare,
  encodeDelete,
  encodePut,
  encodeRange,
  encodeTxn,
  int64,
  prefixRangeEnd,
} from '../../../src/etcd/codec.js';
import { FrameError, GrpcFrames, frame } from '../../../src/etcd/frames.js';
import { ProtoError, ProtoWriter, readFields } from '../../../src/etcd/proto.js';
import { encodeWatchCreate, grpcCodeIn } from '../../../src/etcd/watch.js';
import { fieldsOf, header, kv, watchResponse } from './fake-etcd.js';

const hex = (w: ProtoWriter | Buffer) => (w instanceof ProtoWriter ? w.finish() : w).toString('hex');

describe('prefixRangeEnd', () => {
  it('increments the last byte, dropping trailing 0xff', () => {
    expect(prefixRangeEnd('/a/').toString()).toBe('/a0');
    expect([...prefixRangeEnd(Buffer.from([0x61, 0xff, 0xff]))]).toEqual([0x62]);
  });
  it('gives "\\0" (to the end of the keyspace) for an empty or all-0xff prefix', () => {
    expect([...prefixRangeEnd('')]).toEqual([0]);
    expect([...prefixRangeEnd(Buffer.from([0xff]))]).toEqual([0]);
  });
  it('does not modify the caller\'s buffer', () => {
    const p = Buffer.from('/x');
    prefixRangeEnd(p);
    expect(p.toString()).toBe('/x');
  });
});

describe('int64', () => {
  it('keeps decimal strings exact (a lease id beyond 2^53)', () => {
    expect(int64('7587899075938530831', 'id')).toBe('7587899075938530831');
    expect(int64(12n, 'id')).toBe('12');
    expect(int64(-1, 'version')).toBe('-1');
  });
  it('rejects what is not an exact integer', () => {
    expect(() => int64(2 ** 60, 'id')).toThrow(RangeError);
    expect(() => int64('12abc', 'id')).toThrow(RangeError);
    expect(() => int64(1.5, 'ttl')).toThrow(RangeError);
  });
});

describe('protobuf wire', () => {
  it('varints as protobuf writes them (checked against protobufjs): 300, a 63-bit lease id, and -1 as ten bytes', () => {
    expect(hex(new ProtoWriter().int(1, 300))).toBe('08ac02');
    expect(hex(new ProtoWriter().int(2, 7587899075938530831n))).toBe('108fecd2a69dc0e8a669');
    expect(hex(new ProtoWriter().int(3, -1n))).toBe('18ffffffffffffffffff01');
    const [f] = [...readFields(Buffer.from('18ffffffffffffffffff01', 'hex'))];
    expect(BigInt.asIntN(64, f!.varint!)).toBe(-1n);
  });
  it('proto3 defaults are left out; `always` writes a set oneof member anyway', () => {
    expect(hex(new ProtoWriter().int(1, 0).int(2, false).bytes(3, '').bytes(4, undefined))).toBe('');
    expect(hex(new ProtoWriter().int(4, 0, true).bytes(7, '', true))).toBe('20003a00');
  });
  it('a truncated or unsupported message is a ProtoError', () => {
    expect(() => [...readFields(Buffer.from('0a05ab', 'hex'))]).toThrow(ProtoError);
    expect(() => [...readFields(Buffer.from('08ff', 'hex'))]).toThrow(ProtoError);
    expect(() => [...readFields(Buffer.from('0b', 'hex'))]).toThrow(ProtoError);
  });
});

describe('request shapes (field numbers of etcd\'s rpc.proto)', () => {
  it('range: key 1, range_end 2, limit 3, revision 4, keys_only 8, count_only 9; defaults omitted', () => {
    expect(fieldsOf(encodeRange('/a').finish())).toEqual({ 1: '/a' });
    expect(fieldsOf(encodeRange('/a/', { prefix: true, limit: 1000, revision: '42', keysOnly: true }).finish())).toEqual({ 1: '/a/', 2: '/a0', 3: '1000', 4: '42', 8: '1' });
    expect(fieldsOf(encodeRange('/a', { revision: 0 }).finish())).toEqual({ 1: '/a' });
  });

  it('put: key 1, value 2, lease 3 ("0" means none), prev_kv 4', () => {
    expect(fieldsOf(encodePut('/k', 'v', { lease: '7587899075938530831', prevKv: true }).finish())).toEqual({ 1: '/k', 2: 'v', 3: '7587899075938530831', 4: '1' });
    expect(fieldsOf(encodePut('/k', 'v', { lease: '0' }).finish())).toEqual({ 1: '/k', 2: 'v' });
    expect(() => encodePut('/k', 'v', { lease: 'x' })).toThrow(RangeError);
  });

  it('delete: key 1, range_end 2, prev_kv 3', () => {
    expect(fieldsOf(encodeDelete('/k').finish())).toEqual({ 1: '/k' });
    expect(fieldsOf(encodeDelete('/p/', { prefix: true, prevKv: true }).finish())).toEqual({ 1: '/p/', 2: '/p0', 3: '1' });
  });

  it('compare: result / target enums and each target\'s own union field', () => {
    expect(fieldsOf(encodeCompare({ key: '/k', target: 'version', op: '==', value: 0 }).finish())).toEqual({ 3: '/k', 4: '0' });
    expect(fieldsOf(encodeCompare({ key: '/k', target: 'mod', op: '>', value: '17' }).finish())).toEqual({ 1: '1', 2: '2', 3: '/k', 6: '17' });
    expect(fieldsOf(encodeCompare({ key: '/k', target: 'value', op: '!=', value: 'x' }).finish())).toEqual({ 1: '3', 2: '3', 3: '/k', 7: 'x' });
    expect(fieldsOf(encodeCompare({ key: '/k', target: 'create', op: '<', value: 5 }).finish())).toEqual({ 1: '2', 2: '1', 3: '/k', 5: '5' });
    expect(fieldsOf(encodeCompare({ key: '/k', target: 'lease', op: '==', value: '9' }).finish())).toEqual({ 2: '4', 3: '/k', 8: '9' });
    expect(() => encodeCompare({ key: '/k', target: 'version', op: '=>' as never, value: 0 })).toThrow(RangeError);
    expect(() => encodeCompare({ key: '/k', target: 'mod', op: '==', value: Buffer.from('1') })).toThrow(RangeError);
  });

  it('txn: compare 1, success 2, failure 3; ops request_range 1 / request_put 2 / request_delete_range 3', () => {
    const t = encodeTxn({
      compare: [{ key: '/k', target: 'version', op: '==', value: 0 }],
      success: [{ put: { key: '/k', value: 'v', lease: '5' } }, { range: { key: '/k' } }],
      failure: [{ deleteRange: { key: '/k' } }],
    }).finish();
    const fields = [...readFields(t)];
    expect(fields.map((f) => f.field)).toEqual([1, 2, 2, 3]);
    const op = (i: number) => [...readFields(fields[i]!.bytes!)].map((f) => [f.field, fieldsOf(f.bytes!)]);
    expect(op(1)).toEqual([[2, { 1: '/k', 2: 'v', 3: '5' }]]);
    expect(op(2)).toEqual([[1, { 1: '/k' }]]);
    expect(op(3)).toEqual([[3, { 1: '/k' }]]);
  });

  it('watch: WatchRequest.create_request 1 {key 1, range_end 2, start_revision 3, prev_kv 6}', () => {
    const [f] = [...readFields(encodeWatchCreate('/a/', { prefix: true, startRevision: '12', prevKv: true }))];
    expect(f!.field).toBe(1);
    expect(fieldsOf(f!.bytes!)).toEqual({ 1: '/a/', 2: '/a0', 3: '12', 6: '1' });
    expect(() => encodeWatchCreate('/a', { startRevision: 'x' })).toThrow(RangeError);
  });
});

describe('answer shapes', () => {
  it('fills the fields proto3 omits with etcd\'s defaults', () => {
    expect(decodeKeyValue(kv('/k', '', { mod: 8 }).finish())).toEqual({ key: '/k', value: '', createRevision: '0', modRevision: '8', version: '0', lease: '0' });
    const r = decodeRange(new ProtoWriter().message(1, header(9)).finish());
    expect(r).toEqual({ kvs: [], revision: '9', more: false, count: 0, lastKey: undefined });
  });

  it('range keeps the raw bytes of the last key (binary keys page exactly)', () => {
    const raw = Buffer.from([0x2f, 0xff, 0x00, 0x61]);
    const r = decodeRange(new ProtoWriter().message(1, header(3)).message(2, new ProtoWriter().bytes(1, raw)).int(3, true).int(4, 7).finish());
    expect([...r.lastKey!]).toEqual([...raw]);
    expect([r.more, r.count]).toEqual([true, 7]);
  });

  it('events: type 0 is PUT, 1 DELETE; prev_kv; a lease id beyond 2^53 exact', () => {
    const put = decodeEvent(new ProtoWriter().message(2, kv('/a', '1', { lease: 7587899075938530831n })).finish());
    const del = decodeEvent(new ProtoWriter().int(1, 1).message(2, kv('/a', '', { mod: 9 })).message(3, kv('/a', '1')).finish());
    expect([put.type, put.kv.lease]).toEqual(['put', '7587899075938530831']);
    expect([del.type, del.prevKv?.value]).toEqual(['delete', '1']);
  });

  it('txn responses by kind; a missing succeeded is false', () => {
    const t = decodeTxn(
      new ProtoWriter()
        .message(1, header(6))
        .int(2, true)
        .message(3, new ProtoWriter().message(1, new ProtoWriter().message(1, header(5)).message(2, kv('/k', 'x', { lease: 3n })).int(4, 1)))
        .message(3, new ProtoWriter().message(2, new ProtoWriter().message(1, header(6))))
        .finish(),
    );
    expect(t.succeeded).toBe(true);
    expect(t.responses[0]!.range!.kvs[0]!.lease).toBe('3');
    expect(t.responses[1]!.put!.revision).toBe('6');
    expect(decodeTxn(new ProtoWriter().message(1, header(6)).finish()).succeeded).toBe(false);
  });

  it('time-to-live of a gone lease: TTL -1 (a negative int64 on the wire)', () => {
    expect(decodeLeaseTimeToLive(new ProtoWriter().message(1, header(2)).int(2, 5).int(3, -1n).finish())).toEqual({ id: '5', ttl: -1, grantedTtl: 0 });
  });

  it('watch responses: created, canceled with compact_revision / cancel_reason, events', () => {
    const m = decodeWatchResponse(watchResponse({ revision: 9, canceled: true, compactRevision: 5, cancelReason: 'x', events: [{ kv: kv('/a', '1') }] }).finish());
    expect(m).toMatchObject({ revision: '9', canceled: true, created: false, compactRevision: '5', cancelReason: 'x' });
    expect(m.events.map((e) => e.kv.key)).toEqual(['/a']);
  });

  it('grpc code names in a cancel reason', () => {
    expect(grpcCodeIn('rpc error: code = Unauthenticated desc = etcdserver: invalid auth token')).toBe(16);
    expect(grpcCodeIn('etcdserver: permission denied')).toBe(7);
    expect(grpcCodeIn('something else')).toBeUndefined();
  });
});

describe('gRPC framing', () => {
  it('joins messages cut anywhere and splits several in one chunk', () => {
    const f = new GrpcFrames(1024);
    const a = frame(Buffer.from('first'));
    const b = frame(Buffer.from('second'));
    const c = frame(Buffer.alloc(0));
    expect(f.push(a.subarray(0, 2))).toEqual([]);
    expect(f.push(Buffer.concat([a.subarray(2), b.subarray(0, 7)])).map(String)).toEqual(['first']);
    expect(f.push(Buffer.concat([b.subarray(7), c])).map(String)).toEqual(['second', '']);
    expect(f.pending).toBe(0);
  });
  it('refuses a compressed frame, and a frame larger than the limit before buffering it', () => {
    expect(() => new GrpcFrames(10).push(Buffer.from([1, 0, 0, 0, 1, 0]))).toThrow(FrameError);
    expect(() => new GrpcFrames(10).push(Buffer.from([0, 0, 0, 1, 0]))).toThrow(/larger than the limit/);
  });
});
