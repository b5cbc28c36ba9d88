/**
 * The gateway's JSON shapes (etcdserverpb through grpc-gateway's jsonpb), both
 * ways. Pure functions: no I/O.
 *
 * Rules of that JSON: bytes are base64; int64 / uint64 are decimal strings;
 * fields holding their default (0, false, "", enum 0 such as event type PUT
 * or compare result EQUAL) are omitted from answers. Revisions and lease ids
 * stay decimal strings here (int64 does not fit a JS number).
 */

/** Bytes as the API takes them: a string is UTF-8. */
export type Bytes = string | Uint8Array;

export function b64(x: Bytes): string {
  return (typeof x === 'string' ? Buffer.from(x, 'utf8') : Buffer.from(x)).toString('base64');
}

export function fromB64(s: string | undefined): Buffer {
  return s ? Buffer.from(s, 'base64') : Buffer.alloc(0);
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

/** A decimal int64 as the gateway wants it; rejects anything else (a lease id must never pass through Number). */
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

type Json = Record<string, unknown>;

const COMPARE_RESULT: Record<CompareOp, string> = { '==': 'EQUAL', '>': 'GREATER', '<': 'LESS', '!=': 'NOT_EQUAL' };
const COMPARE_TARGET: Record<CompareTarget, { target: string; field: string }> = {
  version: { target: 'VERSION', field: 'version' },
  create: { target: 'CREATE', field: 'create_revision' },
  mod: { target: 'MOD', field: 'mod_revision' },
  value: { target: 'VALUE', field: 'value' },
  lease: { target: 'LEASE', field: 'lease' },
};

function rangeEndOf(key: Bytes, o: { prefix?: boolean; rangeEnd?: Bytes }): string | undefined {
  if (o.rangeEnd !== undefined) return b64(o.rangeEnd);
  return o.prefix ? b64(prefixRangeEnd(key)) : undefined;
}

export function encodeRange(key: Bytes, o: RangeOptions = {}): Json {
  const req: Json = { key: b64(key) };
  const end = rangeEndOf(key, o);
  if (end !== undefined) req.range_end = end;
  if (o.limit) req.limit = int64(o.limit, 'limit');
  if (o.revision !== undefined && String(o.revision) !== '0') req.revision = int64(o.revision, 'revision');
  if (o.keysOnly) req.keys_only = true;
  if (o.countOnly) req.count_only = true;
  return req;
}

export function encodePut(key: Bytes, value: Bytes, o: PutOptions = {}): Json {
  const req: Json = { key: b64(key), value: b64(value) };
  if (o.lease !== undefined && o.lease !== '0') req.lease = int64(o.lease, 'lease');
  if (o.prevKv) req.prev_kv = true;
  return req;
}

export function encodeDelete(key: Bytes, o: DeleteOptions = {}): Json {
  const req: Json = { key: b64(key) };
  const end = rangeEndOf(key, o);
  if (end !== undefined) req.range_end = end;
  if (o.prevKv) req.prev_kv = true;
  return req;
}

export function encodeCompare(c: Compare): Json {
  const t = COMPARE_TARGET[c.target];
  if (!t) throw new RangeError(`compare target "${String(c.target)}" is not one of ${Object.keys(COMPARE_TARGET).join(', ')}`);
  const result = COMPARE_RESULT[c.op];
  if (!result) throw new RangeError(`compare op "${String(c.op)}" is not one of ${Object.keys(COMPARE_RESULT).join(' ')}`);
  let value: string;
  if (c.target === 'value') {
    value = b64(typeof c.value === 'string' || c.value instanceof Uint8Array ? c.value : String(c.value));
  } else {
    if (c.value instanceof Uint8Array) throw new RangeError(`compare ${c.target}: a number is required`);
    value = int64(c.value, `compare ${c.target}`);
  }
  return { key: b64(c.key), target: t.target, result, [t.field]: value };
}

export function encodeOp(op: TxnOp): Json {
  if ('put' in op) return { request_put: encodePut(op.put.key, op.put.value, op.put) };
  if ('range' in op) return { request_range: encodeRange(op.range.key, op.range) };
  if ('deleteRange' in op) return { request_delete_range: encodeDelete(op.deleteRange.key, op.deleteRange) };
  throw new RangeError('a transaction op is one of put, range, deleteRange');
}

export function encodeTxn(t: TxnRequest): Json {
  return {
    compare: t.compare.map(encodeCompare),
    success: t.success.map(encodeOp),
    failure: (t.failure ?? []).map(encodeOp),
  };
}

// ---- answers ----

function obj(v: unknown): Json {
  return v && typeof v === 'object' ? (v as Json) : {};
}

function str(v: unknown, dflt = '0'): string {
  return typeof v === 'string' || typeof v === 'number' ? String(v) : dflt;
}

export function headerRevision(res: unknown): string {
  return str(obj(obj(res).header).revision);
}

export function decodeKeyValue(raw: unknown): KeyValue {
  const kv = obj(raw);
  return {
    key: fromB64(kv.key as string | undefined).toString('utf8'),
    value: fromB64(kv.value as string | undefined).toString('utf8'),
    createRevision: str(kv.create_revision),
    modRevision: str(kv.mod_revision),
    version: str(kv.version),
    lease: str(kv.lease),
  };
}

function kvList(v: unknown): KeyValue[] {
  return Array.isArray(v) ? v.map(decodeKeyValue) : [];
}

export function decodeRange(raw: unknown): RangeResult {
  const r = obj(raw);
  return { kvs: kvList(r.kvs), revision: headerRevision(r), more: r.more === true, count: Number(str(r.count)) };
}

export function decodePut(raw: unknown): PutResult {
  const r = obj(raw);
  return { revision: headerRevision(r), ...(r.prev_kv ? { prevKv: decodeKeyValue(r.prev_kv) } : {}) };
}

export function decodeDelete(raw: unknown): DeleteResult {
  const r = obj(raw);
  return { revision: headerRevision(r), deleted: Number(str(r.deleted)), prevKvs: kvList(r.prev_kvs) };
}

export function decodeTxn(raw: unknown): TxnResult {
  const r = obj(raw);
  const responses = (Array.isArray(r.responses) ? r.responses : []).map((x): TxnOpResult => {
    const o = obj(x);
    if (o.response_range) return { range: decodeRange(o.response_range) };
    if (o.response_put) return { put: decodePut(o.response_put) };
    if (o.response_delete_range) return { deleteRange: decodeDelete(o.response_delete_range) };
    return {};
  });
  return { succeeded: r.succeeded === true, revision: headerRevision(r), responses };
}

export function decodeEvents(raw: unknown): WatchEvent[] {
  if (!Array.isArray(raw)) return [];
  return raw.map((e) => {
    const ev = obj(e);
    return {
      // PUT is enum 0, so the gateway omits it: anything but DELETE is a put.
      type: ev.type === 'DELETE' ? 'delete' : 'put',
      kv: decodeKeyValue(ev.kv),
      ...(ev.prev_kv ? { prevKv: decodeKeyValue(ev.prev_kv) } : {}),
    };
  });
}

/** The base64 key of the last kv in a raw range answer (to continue a paged list with its raw bytes). */
export function lastRawKey(raw: unknown): Buffer | undefined {
  const kvs = obj(raw).kvs;
  if (!Array.isArray(kvs) || kvs.length === 0) return undefined;
  return fromB64(obj(kvs[kvs.length - 1]).key as string | undefined);
}

/** The gateway's error body: `{"error","code","message"}` (unary) or `{"error":{"grpc_code","message"}}` (stream). */
export function decodeGatewayError(raw: unknown): { grpcCode?: number; message?: string } | undefined {
  const r = obj(raw);
  if (r.error === undefined && r.code === undefined) return undefined;
  if (r.error && typeof r.error === 'object') {
    const e = obj(r.error);
    const code = typeof e.grpc_code === 'number' ? e.grpc_code : typeof e.code === 'number' ? e.code : undefined;
    return { ...(code !== undefined ? { grpcCode: code } : {}), message: str(e.message, '') || str(e.error, '') };
  }
  return {
    ...(typeof r.code === 'number' ? { grpcCode: r.code } : {}),
    message: str(r.message, '') || str(r.error, ''),
  };
}
