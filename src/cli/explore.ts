// `gmem-sandbox explore` and `gmem-sandbox replay`: find interleavings that break an invariant,
// save them, shrink them, and rerun them exactly with a trace.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUG_NAMES, type BugName } from '../gmem/bugs.js';
import type { PolicyName } from '../gmem/policy.js';
import type { StrategyName } from '../shm/sched.js';
import { chromeTraceFromSchedule } from '../vmm/chrome-trace.js';
import { type ExploreConfig, Explorer, type ScheduleFile, type ScheduleResult, switchesIn, workloadFor } from '../vmm/explore.js';
import { Progress } from './progress.js';

export interface ExploreCliOptions {
  schedules: number;
  strategy: 'random' | 'pct';
  depth: number;
  seed: number;
  policy: PolicyName;
  bug?: string;
  out: string;
  json?: boolean;
  shrink: boolean;
  /** Chrome trace of the (shrunk) failing schedule; with --bug all, one file per bug. */
  trace?: string;
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
}

function fails(r: ScheduleResult): boolean {
  return r.outcome === 'violation' || r.outcome === 'deadlock';
}

function save(dir: string, name: string, cfg: ExploreConfig, r: ScheduleResult): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  const body: ScheduleFile = { version: 1, config: cfg, seed: r.seed, choices: r.choices, outcome: r.outcome, violations: r.violations };
  writeFileSync(file, `${JSON.stringify(body)}\n`);
  return file;
}

export async function searchBug(bug: BugName | null, o: ExploreCliOptions, progress: Progress): Promise<BugSearch> {
  const cfg: ExploreConfig = { policy: o.policy, bug, strategy: o.strategy as StrategyName, depth: o.depth, maxSteps: 20_000, workload: workloadFor(bug) };
  const ex = new Explorer(cfg);
  const t0 = performance.now();
  try {
    for (let i = 0; i < o.schedules; i++) {
      const seed = (o.seed + i) >>> 0;
      const r = await ex.runSchedule(seed);
      progress.update((i + 1) / o.schedules, `${bug ?? 'no bug'}: schedule ${i + 1}/${o.schedules} (seed ${seed})`);
      if (!fails(r)) continue;
      const sps = ex.schedulesRun / ((performance.now() - t0) / 1000);
      const tag = `${bug ?? 'none'}-${o.policy}-${o.strategy}-seed${seed}`;
      const saved = save(o.out, `schedule-${tag}.json`, cfg, r);
      const res: BugSearch = { bug, found: true, schedules: i + 1, seed, steps: r.steps, violation: `${r.violations[0].invariant}: ${r.violations[0].detail}`, saved, schedulesPerSecond: sps };
      let last = r;
      if (o.shrink) {
        const s = await ex.shrink(r);
        const file = save(o.out, `schedule-${tag}-shrunk.json`, { ...cfg, strategy: 'replay', workload: s.workload }, s);
        res.shrunk = { saved: file, steps: s.steps, switches: switchesIn(s.choices), forcedChoices: s.choices.length };
        last = s;
      }
      if (o.trace) {
        // Rerun the schedule being reported so the trace is of exactly that interleaving.
        await ex.runSchedule(last.seed, last.choices);
        const file = o.bug === 'all' ? o.trace.replace(/(\.[^./]+)?$/, `.${bug}$1`) : o.trace;
        writeFileSync(file, JSON.stringify(chromeTraceFromSchedule(ex.mem(), ex.trace(), ex.actorNames())));
        res.trace = file;
      }
      return res;
    }
    return { bug, found: false, schedules: o.schedules, schedulesPerSecond: ex.schedulesRun / ((performance.now() - t0) / 1000) };
  } finally {
    await ex.close();
  }
}

export async function exploreCommand(o: ExploreCliOptions): Promise<number> {
  const progress = new Progress(false);
  const bugs: Array<BugName | null> = o.bug === 'all' ? BUG_NAMES : [o.bug ? (o.bug as BugName) : null];
  const results: BugSearch[] = [];
  for (const b of bugs) results.push(await searchBug(b, o, progress));
  progress.done();
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ policy: o.policy, strategy: o.strategy, depth: o.depth, seed: o.seed, results }, null, 2)}\n`);
  } else {
    for (const r of results) {
      const name = r.bug ?? '(no planted bug)';
      if (r.found) {
        process.stdout.write(`${name}: FOUND after ${r.schedules} schedule(s), seed ${r.seed}, ${r.steps} steps\n  ${r.violation}\n  saved ${r.saved}\n`);
        if (r.shrunk) process.stdout.write(`  shrunk to ${r.shrunk.forcedChoices} forced choices, ${r.shrunk.switches} context switches: ${r.shrunk.saved}\n`);
        if (r.trace) process.stdout.write(`  trace: ${r.trace}\n`);
      } else {
        process.stdout.write(`${name}: not found in ${r.schedules} schedule(s)\n`);
      }
      process.stdout.write(`  ${r.schedulesPerSecond.toFixed(0)} schedules/s\n`);
    }
  }
  // A planted bug (or all of them) should be found; without one, finding anything is a failure.
  if (o.bug) return results.every((r) => r.found) ? 0 : 1;
  return results.some((r) => r.found) ? 1 : 0;
}

export async function replayCommand(file: string, o: { trace?: string; json?: boolean }): Promise<number> {
  const saved = JSON.parse(readFileSync(file, 'utf8')) as ScheduleFile;
  if (saved.version !== 1 || !Array.isArray(saved.choices) || typeof saved.seed !== 'number' || typeof saved.config !== 'object') {
    throw new Error(`${file}: not a schedule file (need version 1, config, seed, choices)`);
  }
  const ex = new Explorer(saved.config);
  try {
    const r = await ex.runSchedule(saved.seed, saved.choices);
    const samePrefix = saved.choices.every((c, i) => r.choices[i] === c);
    const same = samePrefix && r.outcome === saved.outcome && (saved.violations[0]?.detail ?? '') === (r.violations[0]?.detail ?? '');
    if (o.trace) {
      writeFileSync(o.trace, JSON.stringify(chromeTraceFromSchedule(ex.mem(), ex.trace(), ex.actorNames())));
    }
    if (o.json) {
      process.stdout.write(`${JSON.stringify({ reproduced: same, outcome: r.outcome, steps: r.steps, violations: r.violations, ...(o.trace ? { trace: o.trace } : {}) }, null, 2)}\n`);
    } else {
      process.stdout.write(`replay of ${file}: ${same ? 'reproduced exactly' : 'DIVERGED'} (${r.steps} steps, outcome ${r.outcome})\n`);
      for (const v of r.violations.slice(0, 5)) process.stdout.write(`  ${v.invariant}: ${v.detail}\n`);
      if (o.trace) process.stdout.write(`  trace written to ${o.trace} (open in Perfetto or chrome://tracing)\n`);
    }
    return same ? 0 : 1;
  } finally {
    await ex.close();
  }
}
