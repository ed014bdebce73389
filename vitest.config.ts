import { defineConfig } from 'vitest/config';
import LongestFirst from './test/helpers/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two files at a time on this 2-core machine: a worker-thread test shares the cores with one
    // other file, whose CLI children and waits leave them idle much of the time (one file at a
    // time took 278 s, two take 173 s). No test times a speed; each long file is split so that
    // neither process waits for the other's tail.
    fileParallelism: true,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    // Tests marked concurrent (children that mostly wait, as in test/cli/interrupts) two at a time.
    maxConcurrency: 2,
    // TMPDIR for every test process and child: checked empty and removed at the end.
    globalSetup: ['test/helpers/global-tmp.ts'],
    // Longest files first, on a clean clone too (test/helpers/sequencer.ts).
    sequence: { sequencer: LongestFirst },
  },
});
