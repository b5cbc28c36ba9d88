/**
 * One error base class; every subclass carries a stable `code` string.
 * Tests and callers branch on `code`, never on message text.
 */
export class WeftError extends Error {
  readonly code: string = 'ERR_WEFT';
  /** Structured context for logs (what failed, on what). */
  readonly details: Record<string, unknown>;
  constructor(message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.details = details;
  }
}

/** A user-supplied value is wrong; `field` names it. */
export class InvalidArgumentError extends WeftError {
  override readonly code: string = 'ERR_INVALID_ARGUMENT';
  constructor(readonly field: string, reason: string, details: Record<string, unknown> = {}) {
    super(`${field}: ${reason}`, { field, ...details });
  }
}

/** The network config in etcd (or a file) is invalid. */
export class ConfigError extends InvalidArgumentError {
  override readonly code = 'ERR_CONFIG';
}

/** A spawned command failed. */
export class ExecError extends WeftError {
  override readonly code = 'ERR_EXEC';
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${exitCode}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`, {
      command,
      exitCode,
    });
  }
}

/** Something the kernel lacks (module, link type). */
export class KernelFeatureError extends WeftError {
  override readonly code = 'ERR_KERNEL_FEATURE';
  constructor(readonly feature: string, hint: string) {
    super(`kernel feature missing: ${feature}. ${hint}`, { feature });
  }
}

/** Every subnet in the network is leased. */
export class SubnetExhaustedError extends WeftError {
  override readonly code = 'ERR_SUBNET_EXHAUSTED';
}

/** A create-if-absent transaction lost a race. */
export class LeaseConflictError extends WeftError {
  override readonly code = 'ERR_LEASE_CONFLICT';
}

/** No interface matched the --iface / --iface-regex choice. */
export class InterfaceNotFoundError extends WeftError {
  override readonly code = 'ERR_INTERFACE_NOT_FOUND';
}

/** etcd (or another store) could not be reached or answered with an error. */
export class StoreError extends WeftError {
  override readonly code = 'ERR_STORE';
}

/** An operation was stopped by an AbortSignal. */
export class AbortedError extends WeftError {
  override readonly code = 'ERR_ABORTED';
  constructor() {
    super('aborted');
  }
}

export function isWeftError(err: unknown, code?: string): err is WeftError {
  return err instanceof WeftError && (code === undefined || err.code === code);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
