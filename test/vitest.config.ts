import { defineConfig } from 'vitest/config';

export default defineConfig({
  // graphql ships CommonJS and ESM builds; one instance must serve Pothos, Yoga and the tests.
  resolve: { alias: { graphql: 'graphql/index.js' } },
  test: {
    root: new URL('..', import.meta.url).pathname,
    include: ['test/**/*.test.ts', 'dashboard/test/**/*.test.ts'],
    // Process tests start servers and CLIs; a loaded machine can take 20 s over one start.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // expect.poll waits 1 s by default: less than a dashboard's throttled reload (1 s) plus its
    // fetch on a loaded machine. Conditions that hold stop the poll at once; only failures wait.
    expect: { poll: { timeout: 15_000 } },
  },
});
