import { expect } from 'vitest';
import { EtcdError } from '../../src/etcd/index.js';

/** Awaits a call that must fail with an EtcdError, and returns the error for closer checks. */
export async function failure(p: Promise<unknown>): Promise<EtcdError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EtcdError);
  return err as EtcdError;
}
