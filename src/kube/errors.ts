import { WeftError } from '../core/errors.js';

/** A kubeconfig / in-cluster configuration is missing or wrong; `field` names what. */
export class KubeConfigError extends WeftError {
  override readonly code: string = 'ERR_KUBE_CONFIG';
  constructor(
    readonly field: string,
    reason: string,
    details: Record<string, unknown> = {},
  ) {
    super(`${field}: ${reason}`, { field, ...details });
  }
}

/** A kubeconfig user authenticates in a way this client does not do (exec plugins, auth providers). */
export class KubeAuthUnsupportedError extends KubeConfigError {
  override readonly code = 'ERR_KUBE_AUTH_UNSUPPORTED';
  constructor(
    readonly user: string,
    readonly mechanism: 'exec' | 'auth-provider',
  ) {
    super(
      `users[${user}].user.${mechanism}`,
      `${mechanism === 'exec' ? 'exec credential plugins are' : 'auth providers are'} not supported; give the user a client certificate, a token or a tokenFile`,
      { user, mechanism },
    );
  }
}

/** The API server could not be reached, or the connection broke. */
export class KubeConnectionError extends WeftError {
  override readonly code = 'ERR_KUBE_CONNECTION';
}

/** The API server answered with an error status (a Status object when it sent one). */
export class KubeApiError extends WeftError {
  override readonly code: string = 'ERR_KUBE_API';
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly path: string,
  ) {
    super(`${path}: HTTP ${status} ${reason}: ${message}`, { status, reason, path });
  }
}

/** 410 Gone: the resourceVersion asked for is compacted away; the caller must relist. */
export class KubeGoneError extends KubeApiError {
  override readonly code = 'ERR_KUBE_GONE';
}

/** The answer was not what the API sends (not JSON, no items, a broken watch line). */
export class KubeProtocolError extends WeftError {
  override readonly code = 'ERR_KUBE_PROTOCOL';
}

/** A watch sent no byte (not even a bookmark) for too long. */
export class KubeWatchTimeoutError extends WeftError {
  override readonly code = 'ERR_KUBE_WATCH_TIMEOUT';
}
