import { WeftError } from '../core/errors.js';

/** A lease key holds a value weft refuses (lease-check.ts); the key stays occupied. */
export class LeaseInvalidError extends WeftError {
  override readonly code = 'ERR_LEASE_INVALID';
}
