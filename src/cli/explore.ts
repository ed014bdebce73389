// `gmem-sandbox explore` and `gmem-sandbox replay`: find interleavings that break an invariant,
// save them, shrink them, and rerun them exactly with a trace.

import { BUG_NAMES, type BugName } from '../gmem/bugs.js';
import type { CoverageReport } from '../vmm/explore/coverage.js';
import { Explorer, ScheduleHangError } from '../vmm/explore/explorer.js';
import type { RuntimeOptions } from '../vmm/sandbox/runtime.js';
import { checkOutputs } from '../vmm/io/outputs.js';
import { EXIT } from './exit.js';
import { type BugSearch, type ExploreCliOptions, searchBug, traceFile, writeScheduleTrace } from './explore-search.js';
import { readScheduleFile } from './inputs.js';
import { Progress } from './progress.js';

export async function exploreCommand(
  o: ExploreCliOptions,
  signal?: AbortSignal,
  /** How the explorers' runtimes start: tests name their vCPU worker. */
  runtime: Pick<RuntimeOptions, 'vcpuWorker'> = {},
): Promise<number> {
  const bugs: Array<BugName | null> = o.bug === 'all' ? BUG_NAMES : [o.bug ? (o.bug as BugName) : null];
  checkOutputs([
    { flag: '--out', path: o.out, kind: 'dir' },
    ...bugs.map((b) => (o.trace ? { flag: '--trace', path: traceFile(o, b) as string, kind: 'file' as const } : undefined)),
  ]);
  const progress = new Progress(false);
  const results: BugSearch[] = [];
  for (const b of bugs) {
    if (signal?.aborted) break;
    results.push(await searchBug(b, o, progress, signal, runtime));
  }
  progress.done();
  const interrupted = signal?.aborted === true;
  if (o.json) {
    const kernel = o.kernel ?? o.policy ?? null;
    process.stdout.write(
      `${JSON.stringify({ explore: 1, kernel, patches: o.patch ?? [], moduleParams: o.moduleParams ?? {}, strategy: o.strategy, depth: o.depth, points: o.points ?? null, seed: o.seed, schedules: o.schedules, catalogue: o.catalogue ?? null, shard: o.shard ?? { k: 0, n: 1 }, interrupted, results }, null, 2)}\n`,
    );
  } else {
    for (const r of results) {
      const name = r.bug ?? o.catalogue ?? '(no planted bug)';
      if (r.found) {
        process.stdout.write(
          `${name}: FOUND after ${r.schedules} schedule(s), seed ${r.seed}, ${r.steps} steps\n  ${r.violation}\n  saved ${r.saved ?? '(not written)'}\n`,
        );
        if (r.shrunk)
          process.stdout.write(
            `  shrunk to ${r.shrunk.forcedChoices} forced choices, ${r.shrunk.switches} context switches: ${r.shrunk.saved}\n`,
          );
        if (r.trace) process.stdout.write(`  trace: ${r.trace}\n`);
      } else {
        process.stdout.write(`${name}: ${r.interrupted ? 'INTERRUPTED, not found' : 'not found'} in ${r.schedules} schedule(s)\n`);
      }
      process.stdout.write(knownLines(r));
      if (r.coverage) process.stdout.write(coverageLines(r.coverage));
      process.stdout.write(`  ${r.schedulesPerSecond.toFixed(0)} schedules/s${r.points === 'locks' ? '' : ` (points ${r.points})`}\n`);
    }
    if (interrupted) process.stdout.write(`INTERRUPTED after ${results.length} of ${bugs.length} search(es)\n`);
  }
  if (interrupted) return EXIT.INTERRUPTED;
  return exploreStatus(!!o.bug, results);
}

/** What a search set aside: the known bugs it met (with their fix) and the findings it counted. */
function knownLines(r: BugSearch): string {
  const lines = r.known.map(
    (k) =>
      `  known: ${k.id} (${k.fixedBy ? `fixed by ${k.fixedBy}` : 'no fix merged'}), ${k.schedules} schedule(s), first at seed ${k.firstSeed}\n`,
  );
  for (const [id, n] of Object.entries(r.findings)) lines.push(`  finding: ${id} in ${n} schedule(s) (allowed by the kernel, counted)\n`);
  return lines.join('');
}

/** --coverage as text: counts per point and event, and what no schedule reached. */
function coverageLines(c: CoverageReport): string {
  const counts = (m: Record<string, number>) =>
    Object.entries(m)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
  const never = (what: string[]) => (what.length === 0 ? 'none' : what.join(', '));
  const reached = (m: Record<string, number>) => Object.values(m).filter((n) => n > 0).length;
  const drawn = Object.keys(c.pairs).length + c.never.pairs.length;
  return [
    `  coverage over ${c.schedules} schedule(s), as schedules that reached each:`,
    `    named points (${reached(c.points)} of ${Object.keys(c.points).length}): ${counts(c.points)}`,
    `      never: ${never(c.never.points)}`,
    `    kernel events (${reached(c.events)} of ${Object.keys(c.events).length}): ${counts(c.events)}`,
    `      never: ${never(c.never.events)}`,
    `    VMM op pairs in flight at once (${Object.keys(c.pairs).length} of the ${drawn} pairs of ops that ran): ${counts(c.pairs)}`,
    `      never: ${never(c.never.pairs)}`,
    '',
  ].join('\n');
}

/**
 * The exit status of a search: a planted bug (or all) must be found; a catalogued bug must be
 * found on a version that has it and not on one that has the fix; otherwise anything found fails.
 */
export function exploreStatus(planted: boolean, results: ReadonlyArray<Pick<BugSearch, 'found' | 'expected'>>): number {
  if (results.some((r) => r.expected !== undefined))
    return results.every((r) => r.found === (r.expected === 'found')) ? EXIT.PASS : EXIT.FAIL;
  if (planted) return results.every((r) => r.found) ? EXIT.PASS : EXIT.FAIL;
  return results.some((r) => r.found) ? EXIT.FAIL : EXIT.PASS;
}

export async function replayCommand(
  file: string,
  o: { trace?: string; json?: boolean },
  signal?: AbortSignal,
  /** How the explorer's runtime starts: tests name their vCPU worker. */
  runtime: Pick<RuntimeOptions, 'vcpuWorker'> = {},
): Promise<number> {
  const saved = readScheduleFile(file);
  checkOutputs([o.trace ? { flag: '--trace', path: o.trace, kind: 'file' } : undefined]);
  const ex = new Explorer(saved.config, runtime);
  const stop = () => void ex.close();
  signal?.addEventListener('abort', stop, { once: true });
  try {
    // A saved hang replays up to where it hung, and hangs there again.
    const r = await ex.runSchedule(saved.seed, saved.choices).catch((e: unknown) => {
      if (e instanceof ScheduleHangError) return e.result;
      throw e;
    });
    const samePrefix = saved.choices.every((c, i) => r.choices[i] === c);
    // Who was found waiting when a hang was declared depends on timing; where it hung does not.
    const sameReport = r.outcome === 'hang' || (saved.violations[0]?.detail ?? '') === (r.violations[0]?.detail ?? '');
    const same = samePrefix && r.outcome === saved.outcome && sameReport;
    const traced = o.trace !== undefined && writeScheduleTrace(o.trace, ex);
    if (o.json) {
      process.stdout.write(
        `${JSON.stringify({ reproduced: same, outcome: r.outcome, steps: r.steps, violations: r.violations, ...(traced ? { trace: o.trace } : {}) }, null, 2)}\n`,
      );
    } else {
      process.stdout.write(`replay of ${file}: ${same ? 'reproduced exactly' : 'DIVERGED'} (${r.steps} steps, outcome ${r.outcome})\n`);
      for (const v of r.violations.slice(0, 5)) process.stdout.write(`  ${v.invariant}: ${v.detail}\n`);
      if (traced) process.stdout.write(`  trace written to ${o.trace} (open in Perfetto or chrome://tracing)\n`);
    }
    return same ? EXIT.PASS : EXIT.FAIL;
  } catch (e) {
    if (!signal?.aborted) throw e;
    process.stdout.write(o.json ? `${JSON.stringify({ interrupted: true }, null, 2)}\n` : `replay of ${file}: INTERRUPTED\n`);
    return EXIT.INTERRUPTED;
  } finally {
    signal?.removeEventListener('abort', stop);
    await ex.close();
  }
}
