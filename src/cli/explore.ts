// `gmem-sandbox explore` and `gmem-sandbox replay`: find interleavings that break an invariant,
// save them, shrink them, and rerun them exactly with a trace.

import { join } from 'node:path';
import { BUG_NAMES, type BugName } from '../gmem/bugs.js';
import type { PolicyName } from '../gmem/policy.js';
import type { KernelVersionName } from '../gmem/version.js';
import { type HistoricalBug, historicalBug } from '../vmm/explore/catalogue.js';
import type { StrategyName } from '../shm/sched/layout.js';
import { chromeTraceFromSchedule } from '../vmm/report/chrome-trace.js';
import { type ExploreConfig, Explorer, type ScheduleFile, type ScheduleResult, switchesIn, workloadFor } from '../vmm/explore/explorer.js';
import { ExplorePool } from '../vmm/explore/pool.js';
import { checkOutputs, writeOutput } from '../vmm/io/outputs.js';
import { EXIT } from './exit.js';
import { readScheduleFile } from './inputs.js';
import { Progress } from './progress.js';

export interface ExploreCliOptions {
  schedules: number;
  strategy: 'random' | 'pct';
  depth: number;
  seed: number;
  kernel?: KernelVersionName;
  policy?: PolicyName;
  bug?: string;
  /** A historical bug of the catalogue: its workload, on its (last) buggy version unless --kernel says. */
  catalogue?: string;
  /** Run only schedule i where i % n === k (0-based), as one of n machines. */
  shard?: { k: number; n: number };
  out: string;
  json?: boolean;
  shrink: boolean;
  /** Chrome trace of the (shrunk) failing schedule; with --bug all, one file per bug. */
  trace?: string;
  /** Workload over the bug's or catalogue's: VMM op weights, VMM threads, share of two-VM schedules. */
  ops?: string;
  vmmThreads?: number;
  multiVmShare?: number;
  /** Explorers searching at once, each on its own sandbox (default 1). */
  jobs?: number;
}

export interface BugSearch {
  bug: BugName | null;
  found: boolean;
  schedules: number;
  seed?: number;
  steps?: number;
  violation?: string;
  saved?: string;
  shrunk?: { saved: string; steps: number; switches: number; forcedChoices: number };
  trace?: string;
  schedulesPerSecond: number;
  /** The search was stopped before it ended (SIGINT, SIGTERM). */
  interrupted?: boolean;
  /** With --catalogue: whether the kernel run has the bug, so finding it is what should happen. */
  expected?: 'found' | 'not found';
}

/** The kernel a search runs: --kernel, else --policy's, else upstream for a planted bug, else a catalogued bug's buggy version. */
function kernelFor(o: ExploreCliOptions, bug: BugName | null, hist: HistoricalBug | undefined): KernelVersionName | undefined {
  if (o.kernel !== undefined || o.policy !== undefined) return o.kernel;
  if (hist !== undefined) return hist.buggy[hist.buggy.length - 1];
  return bug !== null ? 'upstream' : undefined;
}

/** Saves a schedule; the path, or undefined when it could not be written (said on stderr). */
function save(dir: string, name: string, cfg: ExploreConfig, r: ScheduleResult): string | undefined {
  const file = join(dir, name);
  const body: ScheduleFile = { version: 1, config: cfg, seed: r.seed, choices: r.choices, outcome: r.outcome, violations: r.violations };
  return writeOutput(file, `${JSON.stringify(body)}\n`) ? file : undefined;
}

function traceFile(o: ExploreCliOptions, bug: BugName | null): string | undefined {
  return o.trace === undefined ? undefined : o.bug === 'all' ? o.trace.replace(/(\.[^./]+)?$/, `.${bug}$1`) : o.trace;
}

/** Writes the last schedule's trace; events it had no room for are counted in its metadata and on stderr. */
function writeScheduleTrace(file: string, ex: Explorer): boolean {
  const droppedEvents = ex.traceDropped();
  if (droppedEvents > 0)
    process.stderr.write(`gmem-sandbox: trace ${file}: ${droppedEvents} event(s) dropped, the schedule's trace was full\n`);
  return writeOutput(
    file,
    JSON.stringify({ ...chromeTraceFromSchedule(ex.mem(), ex.trace(), ex.actorNames()), metadata: { droppedEvents } }),
  );
}

/** Schedules per batch: few enough that progress moves and an interrupt loses little. */
const EXPLORE_BATCH = 16;

export async function searchBug(bug: BugName | null, o: ExploreCliOptions, progress: Progress, signal?: AbortSignal): Promise<BugSearch> {
  const hist = o.catalogue !== undefined ? historicalBug(o.catalogue) : undefined;
  const kernel = kernelFor(o, bug, hist);
  const cfg: ExploreConfig = {
    ...(kernel !== undefined ? { kernel } : {}),
    ...(o.policy !== undefined ? { policy: o.policy } : {}),
    bug,
    strategy: o.strategy as StrategyName,
    depth: o.depth,
    maxSteps: 20_000,
    workload: workloadFor(bug, {
      ...(hist?.workload ?? {}),
      ...(o.ops !== undefined ? { ops: o.ops } : {}),
      ...(o.vmmThreads !== undefined ? { vmmThreads: o.vmmThreads } : {}),
      ...(o.multiVmShare !== undefined ? { multiVmShare: o.multiVmShare } : {}),
    }),
  };
  const expected =
    hist === undefined || kernel === undefined ? undefined : hist.buggy.includes(kernel) ? ('found' as const) : ('not found' as const);
  const shard = o.shard ?? { k: 0, n: 1 };
  const pool = new ExplorePool(cfg, o.jobs ?? 1);
  const t0 = performance.now();
  const sps = () => pool.schedulesRun / Math.max(1e-3, (performance.now() - t0) / 1000);
  // A schedule or a shrink in progress cannot be waited for: its workers go at once.
  const stop = () => void pool.close();
  signal?.addEventListener('abort', stop, { once: true });
  let res: BugSearch = { bug, found: false, schedules: 0, schedulesPerSecond: 0, ...(expected ? { expected } : {}) };
  const seeds: number[] = [];
  for (let i = shard.k; i < o.schedules; i += shard.n) seeds.push((o.seed + i) >>> 0);
  try {
    // Batches of seeds run on the workers without a control-plane call between schedules; each
    // stops at its first failing schedule. With --jobs, explorers take batches in turn.
    const found = await pool.search(seeds, EXPLORE_BATCH, (ran, last) => {
      res.schedules = ran;
      progress.update(
        Math.min(1, (ran * shard.n) / o.schedules),
        `${bug ?? hist?.id ?? 'no bug'}: ${ran}/${seeds.length} schedules (seed ${last.seed})`,
      );
    });
    res.schedules = found.schedules;
    if (found.failing !== null) {
      const { result: r, explorer: ex } = found.failing;
      const seed = r.seed;
      const tag = `${bug ?? hist?.id ?? 'none'}-${kernel ?? o.policy ?? 'default'}-${o.strategy}-seed${seed}`;
      const saved = save(o.out, `schedule-${tag}.json`, cfg, r);
      res = {
        ...res,
        found: true,
        seed,
        steps: r.steps,
        violation: `${r.violations[0].invariant}: ${r.violations[0].detail}`,
        ...(saved ? { saved } : {}),
        schedulesPerSecond: sps(),
      };
      let last = r;
      if (o.shrink) {
        const s = await ex.shrink(r);
        const file = save(o.out, `schedule-${tag}-shrunk.json`, { ...cfg, strategy: 'replay', workload: s.workload }, s);
        if (file) res.shrunk = { saved: file, steps: s.steps, switches: switchesIn(s.choices), forcedChoices: s.choices.length };
        last = s;
      }
      const trace = traceFile(o, bug);
      if (trace) {
        // Rerun the schedule being reported so the trace is of exactly that interleaving.
        await ex.runSchedule(last.seed, last.choices);
        if (writeScheduleTrace(trace, ex)) res.trace = trace;
      }
      return res;
    }
    return { ...res, schedulesPerSecond: sps() };
  } catch (e) {
    if (!signal?.aborted) throw e;
    return { ...res, schedulesPerSecond: sps(), interrupted: true };
  } finally {
    signal?.removeEventListener('abort', stop);
    await pool.close();
  }
}

export async function exploreCommand(o: ExploreCliOptions, signal?: AbortSignal): Promise<number> {
  const bugs: Array<BugName | null> = o.bug === 'all' ? BUG_NAMES : [o.bug ? (o.bug as BugName) : null];
  checkOutputs([
    { flag: '--out', path: o.out, kind: 'dir' },
    ...bugs.map((b) => (o.trace ? { flag: '--trace', path: traceFile(o, b) as string, kind: 'file' as const } : undefined)),
  ]);
  const progress = new Progress(false);
  const results: BugSearch[] = [];
  for (const b of bugs) {
    if (signal?.aborted) break;
    results.push(await searchBug(b, o, progress, signal));
  }
  progress.done();
  const interrupted = signal?.aborted === true;
  if (o.json) {
    const kernel = o.kernel ?? o.policy ?? null;
    process.stdout.write(
      `${JSON.stringify({ explore: 1, kernel, strategy: o.strategy, depth: o.depth, seed: o.seed, schedules: o.schedules, catalogue: o.catalogue ?? null, shard: o.shard ?? { k: 0, n: 1 }, interrupted, results }, null, 2)}\n`,
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
      process.stdout.write(`  ${r.schedulesPerSecond.toFixed(0)} schedules/s\n`);
    }
    if (interrupted) process.stdout.write(`INTERRUPTED after ${results.length} of ${bugs.length} search(es)\n`);
  }
  if (interrupted) return EXIT.INTERRUPTED;
  return exploreStatus(!!o.bug, results);
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

export async function replayCommand(file: string, o: { trace?: string; json?: boolean }, signal?: AbortSignal): Promise<number> {
  const saved = readScheduleFile(file);
  checkOutputs([o.trace ? { flag: '--trace', path: o.trace, kind: 'file' } : undefined]);
  const ex = new Explorer(saved.config);
  const stop = () => void ex.close();
  signal?.addEventListener('abort', stop, { once: true });
  try {
    const r = await ex.runSchedule(saved.seed, saved.choices);
    const samePrefix = saved.choices.every((c, i) => r.choices[i] === c);
    const same = samePrefix && r.outcome === saved.outcome && (saved.violations[0]?.detail ?? '') === (r.violations[0]?.detail ?? '');
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
