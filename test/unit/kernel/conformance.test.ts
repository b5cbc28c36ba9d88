import { describe } from 'vitest';
import { FakeKernel } from '../../../src/kernel/fake.js';
import { kernelConformance } from '../../helpers/kernel-conformance.js';

describe('FakeKernel passes the kernel conformance cases', () => {
  kernelConformance(async () => {
    const k = new FakeKernel();
    k.addHostLink('eth0', '192.0.2.1/24');
    return k;
  });
});
