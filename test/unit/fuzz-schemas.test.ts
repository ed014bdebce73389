// Fuzzing the input schemas with fast-check: a mutated scenario or saved schedule is either
// valid or refused with "path: rule" problems (ScenarioError, ScheduleError), never another error.
// `npm run test:fuzz` runs more cases (FUZZ_RUNS, FUZZ_SEED).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { ScenarioError, ScheduleError } from '../../src/vmm/io/problems.js';
import { parseSchedule } from '../../src/vmm/explore/schedule-file.js';
import { PROBLEM, example, mutate, mutation, schedule } from '../helpers/fuzz-helpers.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

describe('fuzz: scenario and schedule schemas', () => {
  it('a mutated scenario is either valid or refused with "path: rule" problems, never another error', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
        const doc = mutate(example, ms);
        try {
          parseScenario(doc);
        } catch (e) {
          if (!(e instanceof ScenarioError)) throw e;
          expect(e.problems.length).toBeGreaterThan(0);
          for (const p of e.problems) expect(p).toMatch(PROBLEM);
        }
      }),
      { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? 11) },
    );
  });

  it('a mutated schedule is either valid or refused with "path: rule" problems, never another error', () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
        try {
          parseSchedule(mutate(schedule, ms));
        } catch (e) {
          if (!(e instanceof ScheduleError)) throw e;
          for (const p of e.problems) expect(p).toMatch(PROBLEM);
        }
      }),
      { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? 12) },
    );
  });
});
