import { ExecError, InvalidArgumentError, WeftError, errorMessage } from '../core/errors.js';
import { SubnetEnvMissingError } from '../store/subnet-env.js';

/**
 * CNI error codes (spec "Error" section). 1-99 are the spec's, 100+ ours.
 * Each CniError subclass carries a stable weft `code` and the CNI `cniCode`
 * that goes on the wire.
 */
export const CNI_CODES = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidNetworkConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  limitedAvailability: 51,
  /** weft: a kernel command (ip, iptables) failed. */
  kernel: 100,
  /** weft: no free address left in the subnet. */
  rangeExhausted: 101,
  /** weft: the requested address (IP= / runtimeConfig.ips) cannot be given. */
  requestedIpUnavailable: 102,
  /** weft: the container already has an interface with CNI_IFNAME. */
  interfaceExists: 103,
  /** weft: anything else. */
  internal: 199,
} as const;

export class CniError extends WeftError {
  override readonly code: string = 'ERR_CNI';
  constructor(
    readonly cniCode: number,
    message: string,
    details: Record<string, unknown> = {},
  ) {
    super(message, details);
  }
}

export class IncompatibleVersionError extends CniError {
  override readonly code = 'ERR_CNI_INCOMPATIBLE_VERSION';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.incompatibleVersion, message, details);
  }
}

export class UnsupportedFieldError extends CniError {
  override readonly code = 'ERR_CNI_UNSUPPORTED_FIELD';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.unsupportedField, message, details);
  }
}

export class UnknownContainerError extends CniError {
  override readonly code = 'ERR_CNI_UNKNOWN_CONTAINER';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.unknownContainer, message, details);
  }
}

export class InvalidEnvError extends CniError {
  override readonly code = 'ERR_CNI_INVALID_ENV';
  constructor(
    readonly variable: string,
    reason: string,
  ) {
    super(CNI_CODES.invalidEnv, `${variable}: ${reason}`, { variable });
  }
}

export class IoFailureError extends CniError {
  override readonly code = 'ERR_CNI_IO';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.ioFailure, message, details);
  }
}

export class DecodeError extends CniError {
  override readonly code = 'ERR_CNI_DECODE';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.decodeFailure, message, details);
  }
}

export class InvalidNetworkConfigError extends CniError {
  override readonly code = 'ERR_CNI_INVALID_CONFIG';
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(CNI_CODES.invalidNetworkConfig, `${field}: ${reason}`, { field });
  }
}

export class TryAgainLaterError extends CniError {
  override readonly code = 'ERR_CNI_TRY_AGAIN';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.tryAgainLater, message, details);
  }
}

export class NotAvailableError extends CniError {
  override readonly code = 'ERR_CNI_NOT_AVAILABLE';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.notAvailable, message, details);
  }
}

export class RangeExhaustedError extends CniError {
  override readonly code = 'ERR_CNI_RANGE_EXHAUSTED';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.rangeExhausted, message, details);
  }
}

export class RequestedIpUnavailableError extends CniError {
  override readonly code = 'ERR_CNI_REQUESTED_IP';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.requestedIpUnavailable, message, details);
  }
}

export class InterfaceExistsError extends CniError {
  override readonly code = 'ERR_CNI_INTERFACE_EXISTS';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(CNI_CODES.interfaceExists, message, details);
  }
}

/** Maps any thrown value to a CniError (the wire code), keeping the message. */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof SubnetEnvMissingError) {
    // flannel 2232/2253: pods hang when subnet.env is missing; "try again
    // later" tells the runtime to retry instead of failing the pod for good.
    return new TryAgainLaterError(err.message, err.details);
  }
  if (err instanceof InvalidArgumentError) return new InvalidNetworkConfigError(err.field, err.message.slice(err.field.length + 2));
  if (err instanceof ExecError) return new CniError(CNI_CODES.kernel, err.message, { command: err.command });
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return new IoFailureError(errorMessage(err), { errno: code });
  return new CniError(CNI_CODES.internal, errorMessage(err));
}
