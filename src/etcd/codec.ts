/**
 * etcd's v3 messages (etcdserverpb, mvccpb) as protobuf bytes, both ways,
 * written by hand for exactly the fields weft uses (field numbers from
 * etcd's rpc.proto / kv.proto). Pure functions: no I/O.
 *
 * proto3 omits fields holding their default (0, false, empty, enum 0 such as
 * event type PUT or compare result EQUAL); decoding fills them back in.
 * Revisions and lease ids stay decimal strings here (int64 does not fit a JS
 * number).
 */
import { ProtoWriter, int64Of, readFields } from './proto.js';

/** Bytes as the API takes them: a string is UTF-8. */
export type Bytes = string | Uint8Array;

export function toBuffer(x: Bytes): Buffer {
  return typeof x === 'string' ? Buffer.from(x, 'utf8') : Buffer.from(x);
}

/**
 * The range end that covers every key starting with `prefix`: the prefix with
 * its last byte below 0xff incremented (trailing 0xff bytes dropped). A prefix
 * of only 0xff bytes (or empty) gives "\0", which etcd reads as "to the end".
 */
export function prefixRangeEnd(prefix: Bytes): Buffer {
  const end = Buffer.from(typeof prefix === 'string' ? Buffer.from(prefix, 'utf8') : prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** A decimal int64 as a string; rejects anything else (a lease id must never pass through Number). */
export function int64(v: string | number | bigint, field: string): string {
  const s = typeof v === 'string' ? v.trim() : typeof v === 'bigint' ? v.toString() : Number.isSafeInteger(v) ? String(v) : '';
  if (!/^-?\d+$/.test(s)) throw new RangeError(`${field}: "${String(v)}" is not a decimal integer`);
  return s;
}

// ---- decoded shapes (what callers see) ----

export interface KeyValue {
  key: string;
  /** UTF-8 text of the value (weft stores JSON). */
  value: string;
  createRevision: string;
  modRevision: string;
  version: string;
  /** Attached lease id, "0" for none. */
  lease: string;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** The store revision the read was served at. */
  revision: string;
  /** More keys match than `limit` returned. */
  more: boolean;
  /** Keys matching the range (ignoring limit). */
  count: number;
}

export interface PutResult {
  revision: string;
  prevKv?: KeyValue;
}

export interface DeleteResult {
  revision: string;
  deleted: number;
  prevKvs: KeyValue[];
}

export interface TxnOpResult {
  range?: RangeResult;
  put?: PutResult;
  deleteRange?: DeleteResult;
}

export interface TxnResult {
  succeeded: boolean;
  revision: string;
  responses: TxnOpResult[];
}

export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KeyValue;
  /** With `prevKv: true` on the watch, the value before this event (absent for a create). */
  prevKv?: KeyValue;
}

// ---- requests ----

export interface RangeOptions {
  /** All keys with `key` as prefix. */
  prefix?: boolean;
  /** Explicit range end (exclusive); overrides `prefix`. */
  rangeEnd?: Bytes;
  /** At most this many keys (0 = no limit). */
  limit?: number;
  /** Read at this revision (0/undefined = latest). */
  revision?: string | number;
  keysOnly?: boolean;
  countOnly?: boolean;
}

export interface PutOptions {
  /** Attach the key to this lease (decimal id). Omitted: the key holds no lease (a put detaches it). */
  lease?: string;
  /** Return the previous key/value. */
  prevKv?: boolean;
}

export interface DeleteOptions {
  prefix?: boolean;
  rangeEnd?: Bytes;
  prevKv?: boolean;
}

export type CompareTarget = 'version' | 'create' | 'mod' | 'value' | 'lease';
export type CompareOp = '==' | '!=' | '>' | '<';

/** One condition of a transaction: `target(key) op value`. */
export interface Compare {
  key: Bytes;
  target: CompareTarget;
  op: CompareOp;
  /** A number (decimal string ok) for version/create/mod/lease; text or bytes for value. */
  value: string | number | bigint | Uint8Array;
}

export type TxnOp =
  | { put: { key: Bytes; value: Bytes } & PutOptions }
  | { range: { key: Bytes } & RangeOptions }
  | { deleteRange: { key: Bytes } & DeleteOptions };

export interface TxnRequest {
  compare: Compare[];
  success: TxnOp[];
  failure?: TxnOp[];
}

const COMPARE_RESULT: Record<CompareOp, number> = { '==': 0, '>': 1, '<': 2, '!=': 3 };
/** target enum and the field number of its value in Compare's target_union. */
const COMPARE_TARGET: Record<CompareTarget, { target: number; field: number }> = {
  version: { target: 0, field: 4 },
  create: { target: 1, field: 5 },
  mod: { target: 2, field: 6 },
  value: { target: 3, field: 7 },
  lease: { target: 4, field: 8 },
};

const big = (v: string | number | bigint, field: string): bigint => BigInt(int64(v, field));

function rangeEndOf(key: Bytes, o: { prefix?: boolean; rangeEnd?: Bytes }): Buffer | undefined {
  if (o.rangeEnd !== undefined) return toBuffer(o.rangeEnd);
  return o.prefix ? prefixRangeEnd(key) : undefined;
}

/** RangeRequest {key 1, range_end 2, limit 3, revision 4, keys_only 8, count_only 9}. */
export function encodeRange(key: Bytes, o: RangeOptions = {}): ProtoWriter {
  const w = new ProtoWriter().bytes(1, toBuffer(key)).bytes(2, rangeEndOf(key, o));
  if (o.limit) w.int(3, big(o.limit, 'limit'));
  if (o.revision !== undefined && String(o.revision) !== '0') w.int(4, big(o.revision, 'revision'));
  return w.int(8, o.keysOnly === true).int(9, o.countOnly === true);
}

/** PutRequest {key 1, value 2, lease 3, prev_kv 4}. */
export function encodePut(key: Bytes, value: Bytes, o: PutOptions = {}): ProtoWriter {
  const w = new ProtoWriter().bytes(1, toBuffer(key)).bytes(2, toBuffer(value));
  if (o.lease !== undefined && o.lease !== '0') w.int(3, big(o.lease, 'lease'));
  return w.int(4, o.prevKv === true);
}

/** DeleteRangeRequest {key 1, range_end 2, prev_kv 3}. */
export function encodeDelete(key: Bytes, o: DeleteOptions = {}): ProtoWriter {
  return new ProtoWriter().bytes(1, toBuffer(key)).bytes(2, rangeEndOf(key, o)).int(3, o.prevKv === true);
}

/** Compare {result 1, target 2, key 3, version 4 | create_revision 5 | mod_revision 6 | value 7 | lease 8}. */
export function encodeCompare(c: Compare): ProtoWriter {
  const t = COMPARE_TARGET[c.target];
  if (!t) throw new RangeError(`compare target "${String(c.target)}" is not one of ${Object.keys(COMPARE_TARGET).join(', ')}`);
  const result = COMPARE_RESULT[c.op];
  if (result === undefined) throw new RangeError(`compare op "${String(c.op)}" is not one of ${Object.keys(COMPARE_RESULT).join(' ')}`);
  const w = new ProtoWriter().int(1, result).int(2, t.target).bytes(3, toBuffer(c.key));
  if (c.target === 'value') {
    const v = typeof c.value === 'string' || c.value instanceof Uint8Array ? toBuffer(c.value) : Buffer.from(String(c.value));
    // A set oneof member is on the wire even when empty.
    return w.bytes(t.field, v, true);
  }
  if (c.value instanceof Uint8Array) throw new RangeError(`compare ${c.target}: a number is required`);
  const n = big(c.value, `compare ${c.target}`);
  // A oneof int64 of 0 is still written (proto3 keeps set oneof members).
  return w.int(t.field, n, true);
}

/** RequestOp {request_range 1 | request_put 2 | request_delete_range 3}. */
export function encodeOp(op: TxnOp): ProtoWriter {
  if ('put' in op) return new ProtoWriter().message(2, encodePut(op.put.key, op.put.value, op.put));
  if ('range' in op) return new ProtoWriter().message(1, encodeRange(op.range.key, op.range));
  if ('deleteRange' in op) return new ProtoWriter().message(3, encodeDelete(op.deleteRange.key, op.deleteRange));
  throw new RangeError('a transaction op is one of put, range, deleteRange');
}

/** TxnRequest {compare 1, success 2, failure 3}. */
export function encodeTxn(t: TxnRequest): ProtoWriter {
  const w = new ProtoWriter();
  for (const c of t.compare) w.message(1, encodeCompare(c));
  for (const op of t.success) w.message(2, encodeOp(op));
  for (const op of t.failure ?? []) w.message(3, encodeOp(op));
  return w;
}

/** CompactionRequest {revision 1, physical 2}. */
export function encodeCompact(revision: string | number, physical: boolean): ProtoWriter {
  return new ProtoWriter().int(1, big(revision, 'revision')).int(2, physical);
}

/** LeaseGrantRequest {TTL 1, ID 2}. */
export function encodeLeaseGrant(ttl: number, id?: string): ProtoWriter {
  return new ProtoWriter().int(1, big(ttl, 'ttlSeconds')).int(2, id ? big(id, 'id') : undefined);
}

/** LeaseRevokeRequest / LeaseTimeToLiveRequest {ID 1}. */
export function encodeLeaseId(id: string): ProtoWriter {
  return new ProtoWriter().int(1, big(id, 'id'));
}

/** AuthenticateRequest {name 1, password 2}. */
export function encodeAuthenticate(name: string, password: string): ProtoWriter {
  return new ProtoWriter().bytes(1, name).bytes(2, password);
}

// ---- answers ----

/** ResponseHeader {cluster_id 1, member_id 2, revision 3, raft_term 4}: the revision. */
function headerRevisionOf(b: Buffer): string {
  for (const f of readFields(b)) if (f.field === 3 && f.varint !== undefined) return int64Of(f.varint);
  return '0';
}

/** mvccpb.KeyValue {key 1, create_revision 2, mod_revision 3, version 4, value 5, lease 6}. */
export function decodeKeyValue(b: Buffer): KeyValue {
  return decodeKeyValueRaw(b).kv;
}

function decodeKeyValueRaw(b: Buffer): { kv: KeyValue; rawKey: Buffer } {
  let rawKey: Buffer = Buffer.alloc(0);
  const kv: KeyValue = { key: '', value: '', createRevision: '0', modRevision: '0', version: '0', lease: '0' };
  for (const f of readFields(b)) {
    if (f.bytes) {
      if (f.field === 1) rawKey = f.bytes;
      else if (f.field === 5) kv.value = f.bytes.toString('utf8');
    } else if (f.field === 2) kv.createRevision = int64Of(f.varint);
    else if (f.field === 3) kv.modRevision = int64Of(f.varint);
    else if (f.field === 4) kv.version = int64Of(f.varint);
    else if (f.field === 6) kv.lease = int64Of(f.varint);
  }
  kv.key = rawKey.toString('utf8');
  return { kv, rawKey };
}

/** A decoded range answer plus the raw bytes of its last key (to continue a paged list). */
export interface RawRange extends RangeResult {
  lastKey: Buffer | undefined;
}

/** RangeResponse {header 1, kvs 2, more 3, count 4}. */
export function decodeRange(b: Buffer): RawRange {
  const r: RawRange = { kvs: [], revision: '0', more: false, count: 0, lastKey: undefined };
  for (const f of readFields(b)) {
    if (f.bytes) {
      if (f.field === 1) r.revision = headerRevisionOf(f.bytes);
      else if (f.field === 2) {
        const { kv, rawKey } = decodeKeyValueRaw(f.bytes);
        r.kvs.push(kv);
        r.lastKey = rawKey;
      }
    } else if (f.field === 3) r.more = f.varint !== 0n;
    else if (f.field === 4) r.count = Number(int64Of(f.varint));
  }
  return r;
}

/** RangeResult without the paging helper field. */
function rangeResult(b: Buffer): RangeResult {
  const { lastKey: _, ...r } = decodeRange(b);
  return r;
}

/** PutResponse {header 1, prev_kv 2}. */
export function decodePut(b: Buffer): PutResult {
  const r: PutResult = { revision: '0' };
  for (const f of readFields(b)) {
    if (!f.bytes) continue;
    if (f.field === 1) r.revision = headerRevisionOf(f.bytes);
    else if (f.field === 2) r.prevKv = decodeKeyValue(f.bytes);
  }
  return r;
}

/** DeleteRangeResponse {header 1, deleted 2, prev_kvs 3}. */
export function decodeDelete(b: Buffer): DeleteResult {
  const r: DeleteResult = { revision: '0', deleted: 0, prevKvs: [] };
  for (const f of readFields(b)) {
    if (f.bytes) {
      if (f.field === 1) r.revision = headerRevisionOf(f.bytes);
      else if (f.field === 3) r.prevKvs.push(decodeKeyValue(f.bytes));
    } else if (f.field === 2) r.deleted = Number(int64Of(f.varint));
  }
  return r;
}

/** TxnResponse {header 1, succeeded 2, responses 3 (ResponseOp {range 1 | put 2 | delete_range 3})}. */
export function decodeTxn(b: Buffer): TxnResult {
  const r: TxnResult = { succeeded: false, revision: '0', responses: [] };
  for (const f of readFields(b)) {
    if (f.bytes) {
      if (f.field === 1) r.revision = headerRevisionOf(f.bytes);
      else if (f.field === 3) {
        const op: TxnOpResult = {};
        for (const g of readFields(f.bytes)) {
          if (!g.bytes) continue;
          if (g.field === 1) op.range = rangeResult(g.bytes);
          else if (g.field === 2) op.put = decodePut(g.bytes);
          else if (g.field === 3) op.deleteRange = decodeDelete(g.bytes);
        }
        r.responses.push(op);
      }
    } else if (f.field === 2) r.succeeded = f.varint !== 0n;
  }
  return r;
}

/** LeaseGrantResponse {header 1, ID 2, TTL 3, error 4}. */
export function decodeLeaseGrant(b: Buffer): { id: string; ttl: number; error: string } {
  const r = { id: '0', ttl: 0, error: '' };
  for (const f of readFields(b)) {
    if (f.bytes) {
      if (f.field === 4) r.error = f.bytes.toString('utf8');
    } else if (f.field === 2) r.id = int64Of(f.varint);
    else if (f.field === 3) r.ttl = Number(int64Of(f.varint));
  }
  return r;
}

/** LeaseTimeToLiveResponse {header 1, ID 2, TTL 3, grantedTTL 4}. */
export function decodeLeaseTimeToLive(b: Buffer): { id: string; ttl: number; grantedTtl: number } {
  const r = { id: '0', ttl: 0, grantedTtl: 0 };
  for (const f of readFields(b)) {
    if (f.bytes) continue;
    if (f.field === 2) r.id = int64Of(f.varint);
    else if (f.field === 3) r.ttl = Number(int64Of(f.varint));
    else if (f.field === 4) r.grantedTtl = Number(int64Of(f.varint));
  }
  return r;
}

/** AuthenticateResponse {header 1, token 2}. */
export function decodeAuthenticate(b: Buffer): string {
  for (const f of readFields(b)) if (f.field === 2 && f.bytes) return f.bytes.toString('utf8');
  return '';
}

/** Only the header revision of an answer (Compaction, LeaseRevoke...). */
export function decodeHeaderRevision(b: Buffer): string {
  for (const f of readFields(b)) if (f.field === 1 && f.bytes) return headerRevisionOf(f.bytes);
  return '0';
}

/** mvccpb.Event {type 1 (PUT 0, DELETE 1), kv 2, prev_kv 3}. */
export function decodeEvent(b: Buffer): WatchEvent {
  let type: WatchEvent['type'] = 'put';
  let kv: KeyValue = decodeKeyValue(Buffer.alloc(0));
  let prevKv: KeyValue | undefined;
  for (const f of readFields(b)) {
    if (f.bytes) {
      if (f.field === 2) kv = decodeKeyValue(f.bytes);
      else if (f.field === 3) prevKv = decodeKeyValue(f.bytes);
    } else if (f.field === 1) type = f.varint === 1n ? 'delete' : 'put';
  }
  return { type, kv, ...(prevKv ? { prevKv } : {}) };
}

/** One WatchResponse message off the Watch stream. */
export interface WatchMessage {
  revision: string;
  watchId: string;
  created: boolean;
  canceled: boolean;
  compactRevision: string;
  cancelReason: string;
  fragment: boolean;
  events: WatchEvent[];
}

/** WatchResponse {header 1, watch_id 2, created 3, canceled 4, compact_revision 5, cancel_reason 6, fragment 7, events 11}. */
export function decodeWatchResponse(b: Buffer): WatchMessage {
  const m: WatchMessage = { revision: '0', watchId: '0', created: false, canceled: false, compactRevision: '0', cancelReason: '', fragment: false, events: [] };
  for (const f of readFields(b)) {
    if (f.bytes) {
      if (f.field === 1) m.revision = headerRevisionOf(f.bytes);
      else if (f.field === 6) m.cancelReason = f.bytes.toString('utf8');
      else if (f.field === 11) m.events.push(decodeEvent(f.bytes));
    } else if (f.field === 2) m.watchId = int64Of(f.varint);
    else if (f.field === 3) m.created = f.varint !== 0n;
    else if (f.field === 4) m.canceled = f.varint !== 0n;
    else if (f.field === 5) m.compactRevision = int64Of(f.varint);
    else if (f.field === 7) m.fragment = f.varint !== 0n;
  }
  return m;
}
