// One search of `gmem-sandbox explore`: the seeds of a planted bug's, a catalogued bug's or the
// default workload, run in batches until a schedule ends the search. A failure that matches a
// known bug of the kernel run (the catalogue's signature: invariant, detail, a version that has
// it) is counted and set aside, so the search goes on to find something new; `--stop-on-known`
// stops at it instead. Accepted races (findings) are counted by signature on every schedule.

import { join } from 'node:path';
import { type BugName, plantedBugPoints } from '../gmem/bugs.js';
import type { ModuleParams } from '../gmem/params.js';
import type { PolicyName } from '../gmem/policy.js';
import {
  DEFAULT_KERNEL,
  type KernelChoice,
  type KernelVersionName,
  POLICY_VERSION,
  type PatchName,
  patchNames,
  resolveKernelChoice,
  UPSTREAM,
} from '../gmem/version.js';
import type { StrategyName } from '../shm/sched/layout.js';
import { DEFAULT_POINTS, type PointsMode } from '../shm/points.js';
import { type HistoricalBug, hasBug, historicalBug, knownBug, knownFindings } from '../vmm/explore/catalogue.js';
import {
  BUG_KERNELS,
  type ExploreConfig,
  Explorer,
  type ScheduleFile,
  type ScheduleResult,
  fails,
  switchesIn,
  workloadFor,
} from '../vmm/explore/explorer.js';
import { ExplorePool } from '../vmm/explore/pool.js';
import type { RuntimeOptions } from '../vmm/sandbox/runtime.js';
import { writeOutput } from '../vmm/io/outputs.js';
import { chromeTraceFromSchedule } from '../vmm/report/chrome-trace.js';
import type { Progress } from './progress.js';
import { type CoverageReport, CoverageTally } from '../vmm/explore/coverage.js';

/** The options of `explore` (workload search), as the command line gives them. */
export interface ExploreCliOptions {
  schedules: number;
  strategy: 'random' | 'pct';
  depth: number;
  /** Which writes are scheduling points too (default 'locks'). */
  points?: PointsMode;
  seed: number;
  kernel?: KernelChoice;
  policy?: PolicyName;
  /** Posted patches on top of the kernel (--patch). */
  patch?: string[];
  /** kvm.ko's module parameters (--module-param NAME=VALUE, modprobe syntax), already parsed. */
  moduleParams?: ModuleParams;
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
  /** Workload over the bug's or catalogue's: VMM op weights, VMM threads, shares of two-VM and GMEM_ONLY schedules. */
  ops?: string;
  vmmThreads?: number;
  multiVmShare?: number;
  gmemOnlyShare?: number;
  /** Explorers searching at once, each on its own sandbox (default 1). */
  jobs?: number;
  /** Stop at a known bug of the kernel run too, instead of setting it aside. */
  stopOnKnown?: boolean;
  /** A batch is hung when no schedule of it finishes within this (the library's; default 20 s). */
  scheduleTimeoutMs?: number;
  /** Tally what the schedules reached (BugSearch.coverage). */
  coverage?: boolean;
}

/** A known bug a search met and set aside: how often, and where first. */
export interface KnownSeen {
  id: string;
  fixedBy: string | null;
  schedules: number;
  firstSeed: number;
}

export interface BugSearch {
  bug: BugName | null;
  /** The scheduling points the search ran with. */
  points: PointsMode;
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
  /** Known bugs of the kernel run met and set aside (unless --stop-on-known), by catalogue id. */
  known: KnownSeen[];
  /** Schedules that showed each accepted race of the catalogue (a counted finding, no violation). */
  findings: Record<string, number>;
  /** With --coverage: what the schedules reached, and what none did. */
  coverage?: CoverageReport;
}

/** The kernel a search runs: --kernel, else --policy's, else a planted bug's own (upstream for most), else a catalogued bug's buggy version. */
export function kernelFor(o: ExploreCliOptions, bug: BugName | null, hist: HistoricalBug | undefined): KernelVersionName | undefined {
  if (o.kernel !== undefined || o.policy !== undefined) return o.kernel === undefined ? undefined : resolveKernelChoice(o.kernel);
  if (hist !== undefined) return hist.buggy[hist.buggy.length - 1];
  return bug !== null ? (BUG_KERNELS[bug]?.kernel ?? UPSTREAM) : undefined;
}

/** The module parameters a search runs with (saved only when some are given): --module-param, else a planted bug's own. */
function moduleParamsFor(o: ExploreCliOptions, bug: BugName | null): { moduleParams?: ModuleParams } {
  const p = o.moduleParams ?? (bug !== null ? BUG_KERNELS[bug]?.moduleParams : undefined);
  return p !== undefined && Object.keys(p).length > 0 ? { moduleParams: p } : {};
}

/** The points mode a search runs: --points, else a planted bug's own, else the default. */
export function pointsFor(o: ExploreCliOptions, bug: BugName | null): PointsMode {
  return o.points ?? (bug !== null ? plantedBugPoints(bug) : DEFAULT_POINTS);
}

/** Saves a schedule; the path, or undefined when it could not be written (said on stderr). */
function save(dir: string, name: string, cfg: ExploreConfig, r: ScheduleResult): string | undefined {
  const file = join(dir, name);
  const body: ScheduleFile = { version: 1, config: cfg, seed: r.seed, choices: r.choices, outcome: r.outcome, violations: r.violations };
  return writeOutput(file, `${JSON.stringify(body)}\n`) ? file : undefined;
}

export function traceFile(o: ExploreCliOptions, bug: BugName | null): string | undefined {
  return o.trace === undefined ? undefined : o.bug === 'all' ? o.trace.replace(/(\.[^./]+)?$/, `.${bug}$1`) : o.trace;
}

/** Writes the last schedule's trace; events it had no room for are counted in its metadata and on stderr. */
export function writeScheduleTrace(file: string, ex: Explorer): boolean {
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

/** What one search runs with. */
interface SearchPlan {
  bug: BugName | null;
  hist: HistoricalBug | undefined;
  /** The kernel as asked (undefined: the default), and the version that runs. */
  kernel: KernelVersionName | undefined;
  runs: KernelVersionName;
  patches: PatchName[];
  cfg: ExploreConfig;
  expected: BugSearch['expected'];
}

function searchPlan(bug: BugName | null, o: ExploreCliOptions): SearchPlan {
  const hist = o.catalogue !== undefined ? historicalBug(o.catalogue) : undefined;
  const kernel = kernelFor(o, bug, hist);
  const runs = kernel ?? (o.policy !== undefined ? POLICY_VERSION[o.policy] : DEFAULT_KERNEL);
  const patches = patchNames(o.patch ?? []);
  const cfg: ExploreConfig = {
    ...(kernel !== undefined ? { kernel } : {}),
    ...(o.policy !== undefined ? { policy: o.policy } : {}),
    ...(patches.length > 0 ? { patches } : {}),
    ...moduleParamsFor(o, bug),
    bug,
    strategy: o.strategy as StrategyName,
    depth: o.depth,
    // Saved only when it is not the default, so a 'locks' schedule's file is what it always was.
    ...(pointsFor(o, bug) !== 'locks' ? { points: pointsFor(o, bug) } : {}),
    maxSteps: 20_000,
    ...(o.scheduleTimeoutMs !== undefined ? { scheduleTimeoutMs: o.scheduleTimeoutMs } : {}),
    workload: workloadFor(bug, {
      ...(hist?.workload ?? {}),
      ...(o.ops !== undefined ? { ops: o.ops } : {}),
      ...(o.vmmThreads !== undefined ? { vmmThreads: o.vmmThreads } : {}),
      ...(o.multiVmShare !== undefined ? { multiVmShare: o.multiVmShare } : {}),
      ...(o.gmemOnlyShare !== undefined ? { gmemOnlyShare: o.gmemOnlyShare } : {}),
    }),
  };
  const expected = hist === undefined ? undefined : hasBug(hist, runs, patches) ? ('found' as const) : ('not found' as const);
  return { bug, hist, kernel, runs, patches, cfg, expected };
}

/**
 * Whether a schedule ends the search, counting what it sets aside into `res`: a failure ends it
 * unless it is a known bug other than the one searched for (and --stop-on-known is off); a
 * catalogued finding searched for ends it when the schedule shows it.
 */
function judge(p: SearchPlan, o: ExploreCliOptions, res: BugSearch, tally: CoverageTally | null): (r: ScheduleResult) => boolean {
  return (r) => {
    tally?.add(r.coverage, r.ops);
    const shown = knownFindings(p.runs, r.findings, p.patches);
    for (const f of shown) res.findings[f.id] = (res.findings[f.id] ?? 0) + 1;
    if (p.hist?.invariant === 'finding') return shown.some((f) => f.id === p.hist?.id);
    if (!fails(r)) return false;
    // A hang is never set aside: its explorer is gone.
    if (r.outcome === 'hang') return true;
    const known = o.stopOnKnown ? null : knownBug(p.runs, r.violations, p.patches);
    if (known === null || known.id === p.hist?.id) return true;
    const seen = res.known.find((k) => k.id === known.id);
    if (seen) seen.schedules++;
    else res.known.push({ id: known.id, fixedBy: known.fixedBy, schedules: 1, firstSeed: r.seed });
    return false;
  };
}

export async function searchBug(
  bug: BugName | null,
  o: ExploreCliOptions,
  progress: Progress,
  signal?: AbortSignal,
  runtime: Pick<RuntimeOptions, 'vcpuWorker'> = {},
): Promise<BugSearch> {
  const p = searchPlan(bug, o);
  const shard = o.shard ?? { k: 0, n: 1 };
  const pool = new ExplorePool(p.cfg, o.jobs ?? 1, runtime);
  const t0 = performance.now();
  const sps = () => pool.schedulesRun / Math.max(1e-3, (performance.now() - t0) / 1000);
  // A schedule or a shrink in progress cannot be waited for: its workers go at once.
  const stop = () => void pool.close();
  signal?.addEventListener('abort', stop, { once: true });
  const res: BugSearch = {
    bug,
    points: pointsFor(o, bug),
    found: false,
    schedules: 0,
    schedulesPerSecond: 0,
    ...(p.expected ? { expected: p.expected } : {}),
    known: [],
    findings: {},
  };
  const tally = o.coverage ? new CoverageTally() : null;
  const coverage = () => (tally ? { coverage: tally.report() } : {});
  const seeds: number[] = [];
  for (let i = shard.k; i < o.schedules; i += shard.n) seeds.push((o.seed + i) >>> 0);
  try {
    // Batches of seeds run on the workers without a control-plane call between schedules; each
    // stops at its first failing schedule. With --jobs, explorers take batches in turn.
    const onBatch = (ran: number, last: ScheduleResult): void => {
      res.schedules = ran;
      const what = `${bug ?? p.hist?.id ?? 'no bug'}: ${ran}/${seeds.length} schedules (seed ${last.seed})`;
      progress.update(Math.min(1, (ran * shard.n) / o.schedules), what);
    };
    const found = await pool.search(seeds, EXPLORE_BATCH, onBatch, judge(p, o, res, tally));
    res.schedules = found.schedules;
    if (found.failing !== null) await reportFound(p, o, res, found.failing.result, found.failing.explorer);
    return { ...res, schedulesPerSecond: sps(), ...coverage() };
  } catch (e) {
    if (!signal?.aborted) throw e;
    return { ...res, schedulesPerSecond: sps(), interrupted: true, ...coverage() };
  } finally {
    signal?.removeEventListener('abort', stop);
    await pool.close();
  }
}

/** The schedule that ended the search: saved, shrunk (a failure), and traced when asked. */
async function reportFound(p: SearchPlan, o: ExploreCliOptions, res: BugSearch, r: ScheduleResult, ex: Explorer): Promise<void> {
  const points = pointsFor(o, p.bug);
  const patched = p.patches.map((x) => `+${x}`).join('');
  const tag = `${p.bug ?? p.hist?.id ?? 'none'}-${p.kernel ?? o.policy ?? 'default'}${patched}-${o.strategy}${points === 'locks' ? '' : `-${points}`}-seed${r.seed}`;
  const saved = save(o.out, `schedule-${tag}.json`, p.cfg, r);
  const v = r.violations[0];
  Object.assign(res, {
    found: true,
    seed: r.seed,
    steps: r.steps,
    violation: v !== undefined ? `${v.invariant}: ${v.detail}` : `finding: ${p.hist?.id ?? 'a finding'} (no invariant broken)`,
    ...(saved ? { saved } : {}),
  });
  let last = r;
  // A finding is no failure: there is nothing to shrink it against. A hang left its explorer
  // unusable: it is saved as far as it went, for a replay to hang at the same point.
  if (r.outcome === 'hang') return;
  if (o.shrink && fails(r)) {
    const s = await ex.shrink(r);
    const file = save(o.out, `schedule-${tag}-shrunk.json`, { ...p.cfg, strategy: 'replay', workload: s.workload }, s);
    if (file) res.shrunk = { saved: file, steps: s.steps, switches: switchesIn(s.choices), forcedChoices: s.choices.length };
    last = s;
  }
  const trace = traceFile(o, p.bug);
  if (trace) {
    // Rerun the schedule being reported so the trace is of exactly that interleaving.
    await ex.runSchedule(last.seed, last.choices);
    if (writeScheduleTrace(trace, ex)) res.trace = trace;
  }
}
