// A list of input problems as a message: the first few in full and a count of the rest, so that
// a file with thousands of bad entries (a schedule of 100,000 choices) gives a readable error.

/** Problems listed in full; the rest are counted. */
export const MAX_PROBLEMS_SHOWN = 20;

export function problemList(what: string, problems: readonly string[]): string {
  const shown = problems.slice(0, MAX_PROBLEMS_SHOWN);
  const more = problems.length - shown.length;
  return `${what}:\n  ${shown.join('\n  ')}${more > 0 ? `\n  ... and ${more} more problem(s) (${problems.length} in all)` : ''}`;
}
