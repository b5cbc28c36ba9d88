import { WeftError } from '../core/errors.js';

/** QEMU, the image or the kernel features the tier needs are missing. */
export class VmUnavailableError extends WeftError {
  override readonly code = 'ERR_VM_UNAVAILABLE';
}

/** `vm up` for an id whose state already exists. */
export class VmExistsError extends WeftError {
  override readonly code = 'ERR_VM_EXISTS';
}

/** No state file for this tier id. */
export class VmNotFoundError extends WeftError {
  override readonly code = 'ERR_VM_NOT_FOUND';
}

/** A guest did not boot, answer its agent or finish a command in time. */
export class VmGuestError extends WeftError {
  override readonly code = 'ERR_VM_GUEST';
}

/** `vm up` failed midway; what it had made was removed. */
export class VmUpError extends WeftError {
  override readonly code = 'ERR_VM_UP';
}
