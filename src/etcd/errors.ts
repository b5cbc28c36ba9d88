/**
 * Errors of the etcd client. etcd answers a failed gRPC call with the
 * trailers `grpc-status` and `grpc-message`; that, a connection or TLS
 * failure, or a deadline becomes an EtcdError carrying the gRPC code, the
 * message, the endpoint and the operation, so logs say which call failed
 * where.
 */
import { WeftError } from '../core/errors.js';

/** gRPC status codes the client branches on (google.golang.org/grpc/codes). */
export const GrpcCode = {
  CANCELED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  FAILED_PRECONDITION: 9,
  OUT_OF_RANGE: 11,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/**
 * How a call failed: `unreachable` (no connection to any endpoint), `timeout`
 * (the per-call deadline passed), `grpc` (etcd answered with an error),
 * `protocol` (an answer that is not etcd's gRPC, or too large), `aborted`
 * (close()). A TLS handshake failure is `unreachable` with "TLS: " and
 * Node's reason in the message.
 */
export type EtcdFailure = 'unreachable' | 'timeout' | 'grpc' | 'protocol' | 'aborted';

export interface EtcdErrorFields {
  kind: EtcdFailure;
  /** The operation, e.g. "range", "txn", "watch". */
  operation: string;
  /** The endpoint that failed last ("" when none was tried). */
  endpoint: string;
  /** gRPC status code (grpc-status). */
  grpcCode?: number;
  /** HTTP status of an answer that was not gRPC. */
  httpStatus?: number;
}

/** A failed etcd call. Branch on `kind` and `grpcCode`, never on the message. */
export class EtcdError extends WeftError {
  override readonly code: string = 'ERR_ETCD';
  readonly kind: EtcdFailure;
  readonly operation: string;
  readonly endpoint: string;
  readonly grpcCode: number | undefined;
  readonly httpStatus: number | undefined;

  constructor(message: string, fields: EtcdErrorFields, options?: { cause?: unknown }) {
    super(`etcd ${fields.operation}${fields.endpoint ? ` at ${fields.endpoint}` : ''}: ${message}`, { ...fields }, options);
    this.kind = fields.kind;
    this.operation = fields.operation;
    this.endpoint = fields.endpoint;
    this.grpcCode = fields.grpcCode;
    this.httpStatus = fields.httpStatus;
  }
}

/** Why a watch ended (reported once, to the watch's onError). */
export type WatchEndReason =
  /** etcd cancelled it: the start revision is compacted; relist. */
  | 'compacted'
  /** etcd cancelled it for another reason (cancel_reason). */
  | 'canceled'
  /** The stream ended or broke (etcd stopped, connection lost). */
  | 'closed'
  /** The watch could not be created, or etcd sent an error on the stream. */
  | 'failed';

/** A watch that ended without the caller asking. */
export class EtcdWatchError extends EtcdError {
  override readonly code = 'ERR_ETCD_WATCH';
  readonly reason: WatchEndReason;
  /** For `compacted`: the oldest revision etcd still has. */
  readonly compactRevision: string | undefined;

  constructor(
    reason: WatchEndReason,
    message: string,
    fields: Omit<EtcdErrorFields, 'operation'> & { compactRevision?: string },
    options?: { cause?: unknown },
  ) {
    super(`${reason}: ${message}`, { ...fields, operation: 'watch' }, options);
    this.reason = reason;
    this.compactRevision = fields.compactRevision;
  }
}

/** True when etcd no longer has the requested revision (a paged list must start again). */
export function isCompactedError(err: unknown): boolean {
  return err instanceof EtcdError && err.grpcCode === GrpcCode.OUT_OF_RANGE && /compacted/.test(err.message);
}

/** True when the auth token expired or the auth store moved on: authenticate again. */
export function isInvalidTokenError(err: unknown): boolean {
  return (
    err instanceof EtcdError &&
    err.kind === 'grpc' &&
    (err.grpcCode === GrpcCode.UNAUTHENTICATED || /invalid auth token|auth store is old/.test(err.message))
  );
}

/** "etcdserver: authentication is not enabled" (an Authenticate call on an etcd without auth). */
export function isAuthNotEnabledError(err: unknown): boolean {
  return err instanceof EtcdError && err.kind === 'grpc' && /authentication is not enabled/.test(err.message);
}
