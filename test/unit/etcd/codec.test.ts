import { describe, expect, it } from 'vitest';
import {
  decodeEvents,
  decodeGatewayError,
  decodeKeyValue,
  decodeRange,
  decodeTxn,
  encodeCompare,
  encodeDelete,
  encodePut,
  encodeRange,
  encodeTxn,
  int64,
  prefixRangeEnd,
} from '../../../src/etcd/codec.js';
import { JsonLines } from '../../../src/etcd/lines.js';
import { encodeWatchCreate, grpcCodeIn } from '../../../src/etcd/watch.js';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

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

describe('request shapes', () => {
  it('range: prefix, limit, revision as the gateway takes them; defaults omitted', () => {
    expect(encodeRange('/a')).toEqual({ key: b64('/a') });
    expect(encodeRange('/a/', { prefix: true, limit: 1000, revision: '42', keysOnly: true })).toEqual({
      key: b64('/a/'),
      range_end: b64('/a0'),
      limit: '1000',
      revision: '42',
      keys_only: true,
    });
    expect(encodeRange('/a', { revision: 0 })).toEqual({ key: b64('/a') });
  });

  it('put: lease id as a string, "0" means none; prev_kv', () => {
    expect(encodePut('/k', 'v', { lease: '7587899075938530831', prevKv: true })).toEqual({
      key: b64('/k'),
      value: b64('v'),
      lease: '7587899075938530831',
      prev_kv: true,
    });
    expect(encodePut('/k', 'v', { lease: '0' })).toEqual({ key: b64('/k'), value: b64('v') });
  });

  it('delete: a key or a prefix', () => {
    expect(encodeDelete('/k')).toEqual({ key: b64('/k') });
    expect(encodeDelete('/p/', { prefix: true, prevKv: true })).toEqual({ key: b64('/p/'), range_end: b64('/p0'), prev_kv: true });
  });

  it('compare: each target and op maps to the proto names and field', () => {
    expect(encodeCompare({ key: '/k', target: 'version', op: '==', value: 0 })).toEqual({ key: b64('/k'), target: 'VERSION', result: 'EQUAL', version: '0' });
    expect(encodeCompare({ key: '/k', target: 'mod', op: '>', value: '17' })).toEqual({ key: b64('/k'), target: 'MOD', result: 'GREATER', mod_revision: '17' });
    expect(encodeCompare({ key: '/k', target: 'value', op: '!=', value: 'x' })).toEqual({ key: b64('/k'), target: 'VALUE', result: 'NOT_EQUAL', value: b64('x') });
    expect(encodeCompare({ key: '/k', target: 'create', op: '<', value: 5 })).toEqual({ key: b64('/k'), target: 'CREATE', result: 'LESS', create_revision: '5' });
    expect(encodeCompare({ key: '/k', target: 'lease', op: '==', value: '9' })).toEqual({ key: b64('/k'), target: 'LEASE', result: 'EQUAL', lease: '9' });
    expect(() => encodeCompare({ key: '/k', target: 'version', op: '=>' as never, value: 0 })).toThrow(RangeError);
  });

  it('txn: success and failure ops', () => {
    expect(
      encodeTxn({
        compare: [{ key: '/k', target: 'version', op: '==', value: 0 }],
        success: [{ put: { key: '/k', value: 'v', lease: '5' } }, { range: { key: '/k' } }],
        failure: [{ deleteRange: { key: '/k' } }],
      }),
    ).toEqual({
      compare: [{ key: b64('/k'), target: 'VERSION', result: 'EQUAL', version: '0' }],
      success: [{ request_put: { key: b64('/k'), value: b64('v'), lease: '5' } }, { request_range: { key: b64('/k') } }],
      failure: [{ request_delete_range: { key: b64('/k') } }],
    });
  });

  it('watch create_request: prefix, start revision, prev_kv', () => {
    expect(encodeWatchCreate('/a/', { prefix: true, startRevision: '12', prevKv: true })).toEqual({
      create_request: { key: b64('/a/'), range_end: b64('/a0'), start_revision: '12', prev_kv: true },
    });
    expect(() => encodeWatchCreate('/a', { startRevision: 'x' })).toThrow(RangeError);
  });
});

describe('answer shapes', () => {
  it('fills the fields the gateway omits (defaults) with etcd\'s defaults', () => {
    expect(decodeKeyValue({ key: b64('/k'), mod_revision: '8' })).toEqual({
      key: '/k',
      value: '',
      createRevision: '0',
      modRevision: '8',
      version: '0',
      lease: '0',
    });
    const r = decodeRange({ header: { revision: '9' } });
    expect(r).toEqual({ kvs: [], revision: '9', more: false, count: 0 });
  });

  it('events: an omitted type is PUT (enum 0); DELETE and prev_kv decoded', () => {
    const evs = decodeEvents([
      { kv: { key: b64('/a'), value: b64('1'), lease: '77' } },
      { type: 'DELETE', kv: { key: b64('/a'), mod_revision: '9' }, prev_kv: { key: b64('/a'), value: b64('1') } },
    ]);
    expect(evs.map((e) => e.type)).toEqual(['put', 'delete']);
    expect(evs[0]!.kv.lease).toBe('77');
    expect(evs[1]!.prevKv?.value).toBe('1');
  });

  it('txn responses by kind', () => {
    const t = decodeTxn({
      header: { revision: '6' },
      succeeded: true,
      responses: [{ response_range: { header: { revision: '5' }, kvs: [{ key: b64('/k'), lease: '3' }], count: '1' } }, { response_put: { header: { revision: '6' } } }],
    });
    expect(t.succeeded).toBe(true);
    expect(t.responses[0]!.range!.kvs[0]!.lease).toBe('3');
    expect(t.responses[1]!.put!.revision).toBe('6');
    expect(decodeTxn({ header: { revision: '6' } }).succeeded).toBe(false);
  });

  it('gateway errors: unary and stream shapes', () => {
    expect(decodeGatewayError({ error: 'etcdserver: x', code: 11, message: 'etcdserver: x' })).toEqual({ grpcCode: 11, message: 'etcdserver: x' });
    expect(decodeGatewayError({ error: { grpc_code: 14, http_code: 503, message: 'no leader' } })).toEqual({ grpcCode: 14, message: 'no leader' });
    expect(decodeGatewayError({ header: {} })).toBeUndefined();
  });

  it('grpc code names in a cancel reason', () => {
    expect(grpcCodeIn('rpc error: code = Unauthenticated desc = etcdserver: invalid auth token')).toBe(16);
    expect(grpcCodeIn('something else')).toBeUndefined();
  });
});

describe('JsonLines', () => {
  it('joins messages cut anywhere and splits several in one chunk', () => {
    const l = new JsonLines();
    expect(l.push('{"a":')).toEqual([]);
    expect(l.push('1}\n{"b"')).toEqual([{ a: 1 }]);
    expect(l.push(':2}\n\n{"c":3}\n')).toEqual([{ b: 2 }, { c: 3 }]);
    expect(l.push('{"d":4}')).toEqual([]);
    expect(l.end()).toEqual([{ d: 4 }]);
  });
  it('throws on a complete line that is not JSON', () => {
    expect(() => new JsonLines().push('nope\n')).toThrow(SyntaxError);
  });
});
