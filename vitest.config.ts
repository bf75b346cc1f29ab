import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Every wait in a test has its own bound; this only stops a hang from eating the CI budget.
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
