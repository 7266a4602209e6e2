import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'data/**', 'web/dist/**'],
    // Integration tests start real servers (PostgreSQL, gRPC, uWS, mediasoup); two cores
    // do not gain from more parallel files, and fewer forks keep ports and CPU sane.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 120_000,
    globalSetup: ['common/testing/global-setup.ts'],
  },
});
