/** The etcd v3 client (gRPC over node:http2, hand-written protobuf). See docs/etcd-client.md. */
export { EtcdClient, type EtcdClientOptions, type LeaseGrant, type LeaseTimeToLive } from './client.js';
export type {
  Bytes,
  Compare,
  CompareOp,
  CompareTarget,
  DeleteOptions,
  DeleteResult,
  KeyValue,
  PutOptions,
  PutResult,
  RangeOptions,
  RangeResult,
  TxnOp,
  TxnOpResult,
  TxnRequest,
  TxnResult,
  WatchEvent,
} from './codec.js';
export { EtcdError, EtcdWatchError, GrpcCode, isAuthNotEnabledError, isCompactedError, isInvalidTokenError, type EtcdFailure, type WatchEndReason } from './errors.js';
export type { EtcdWatch, WatchHandlers, WatchOptions, WatchResponse } from './watch.js';
