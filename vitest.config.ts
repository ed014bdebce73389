import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Worker-thread tests need the cores; run files one at a time on this 2-core machine, all in
    // one child process: a file's modules are still evaluated afresh, but the process and the
    // transformed sources are reused, which saves about a second per file.
    fileParallelism: false,
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
    // Tests marked concurrent (children that mostly wait, as in test/cli/interrupts) two at a time.
    maxConcurrency: 2,
    // TMPDIR for every test process and child: checked empty and removed at the end.
    globalSetup: ['test/helpers/global-tmp.ts'],
  },
});
