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
    // isolate false: the files one process runs share its module cache instead of each loading and
    // transforming the model again (collect fell from 20 s to 5 s, the suite from 163-174 s to
    // 148-152 s). No module keeps state a test changes; the one test that sets an environment
    // variable and spies on stdout (explore-failures) restores both after each test.
    poolOptions: { forks: { maxForks: 2, minForks: 1, isolate: false } },
    // Tests marked concurrent (children that mostly wait, as in test/cli/interrupts) two at a time.
    maxConcurrency: 2,
    // TMPDIR for every test process and child: checked empty and removed at the end.
    globalSetup: ['test/helpers/global-tmp.ts'],
    // Longest files first, on a clean clone too (test/helpers/sequencer.ts).
    sequence: { sequencer: LongestFirst },
  },
});
