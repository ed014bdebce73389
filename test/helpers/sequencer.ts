// The order test files start in: longest first, from test/durations.json, so that the two
// processes finish together instead of one running a long file alone at the end. vitest orders by
// its own cache of the last run's durations, which a clean clone (CI) lacks: there it fell back
// to file size and the suite took 196 s instead of 163. Files not in the table start first, as
// vitest's own rule has it for files it has not timed. Regenerate the table with
// scripts/test-durations.mjs.

import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

const root = fileURLToPath(new URL('../..', import.meta.url));
const seconds: Record<string, number> = JSON.parse(readFileSync(join(root, 'test/durations.json'), 'utf8'));

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const weight = (f: TestSpecification): number => seconds[relative(root, f.moduleId)] ?? Infinity;
    return [...files].sort((a, b) => weight(b) - weight(a) || a.moduleId.localeCompare(b.moduleId));
  }
}
