import { defineConfig } from 'vitest/config';

// Two projects so that `vitest run tests/unit` never starts servers: vitest only runs a project's
// globalSetup when that project has test files selected.
export default defineConfig({
  test: {
    // Stopping the servers (SIGTERM, then SIGKILL after 15 s) must fit.
    teardownTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['tests/unit/**/*.{test,spec}.ts'],
          testTimeout: 30_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['tests/integration/**/*.{test,spec}.ts'],
          globalSetup: ['tests/setup/global.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // The files share one Temporal and one NATS server, and the machines have 2 cores: one file at a time.
          fileParallelism: false,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
