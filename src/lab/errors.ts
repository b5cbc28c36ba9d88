import { WeftError } from '../core/errors.js';

/** `lab up` for an id whose state (or namespaces) already exist. */
export class LabExistsError extends WeftError {
  override readonly code = 'ERR_LAB_EXISTS';
}

/** No state file for this lab id. */
export class LabNotFoundError extends WeftError {
  override readonly code = 'ERR_LAB_NOT_FOUND';
}

/** `lab up` failed midway; what it had made was removed (see `details.cleanup`). */
export class LabUpError extends WeftError {
  override readonly code = 'ERR_LAB_UP';
}

/** A lab process (etcd, weftd) did not become ready in time. */
export class LabProcessError extends WeftError {
  override readonly code = 'ERR_LAB_PROCESS';
}

/** The state file exists but cannot be read. */
export class LabStateError extends WeftError {
  override readonly code = 'ERR_LAB_STATE';
}
