// Input errors (exit status 2 on the command line), and a list of input problems as a message:
// the first few in full and a count of the rest, so that a file with thousands of bad entries (a
// schedule of 100,000 choices) gives a readable error. No schema library is imported here, so the
// CLI can recognise these errors without loading one.

/** Problems listed in full; the rest are counted. */
export const MAX_PROBLEMS_SHOWN = 20;

export function problemList(what: string, problems: readonly string[]): string {
  const shown = problems.slice(0, MAX_PROBLEMS_SHOWN);
  const more = problems.length - shown.length;
  return `${what}:\n  ${shown.join('\n  ')}${more > 0 ? `\n  ... and ${more} more problem(s) (${problems.length} in all)` : ''}`;
}

/** A scenario file that breaks the schema: every problem as "path: rule". */
export class ScenarioError extends Error {
  constructor(readonly problems: string[]) {
    super(problemList('invalid scenario', problems));
    this.name = 'ScenarioError';
  }
}

/** A schedule file that breaks the schema: every problem as "path: rule". */
export class ScheduleError extends Error {
  constructor(readonly problems: string[]) {
    super(problemList('not a valid schedule file', problems));
    this.name = 'ScheduleError';
  }
}

/** A bad sweep parameter, seed range or line. */
export class SweepError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SweepError';
  }
}
