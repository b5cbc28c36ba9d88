import { defineConfig } from 'vitest/config';

// Two projects: `unit` needs no root and no kernel; `lab` runs against real
// etcd, the real kernel and network namespaces, so it needs root.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          // Unit tests run first, then the lab suites.
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'lab',
          include: ['test/lab/**/*.test.ts'],
          environment: 'node',
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // Logs signals sent and received, refuses signals aimed at vitest
          // itself (a lost worker in full runs), see the file.
          setupFiles: ['test/helpers/lab-worker-guard.ts'],
          // Lab suites each build their own namespaces with a unique lab id,
          // so files run in parallel; tests inside a file run in order.
          fileParallelism: true,
          maxWorkers: 3,
          sequence: { groupOrder: 1 },
        },
      },
      {
        // Real VMs (QEMU, Vagrant); each file skips with a message when it cannot run.
        test: { name: 'vm', include: ['test/vm/**/*.test.ts'], environment: 'node', testTimeout: 3_600_000, hookTimeout: 600_000, sequence: { groupOrder: 2 } },
      },
    ],
  },
});
