// Group 'explore' (issue 12 item 5): the explorer's throughput on its default workload (the
// `gmem-sandbox explore` defaults: random walk, no bug, upstream): controlled steps and schedules
// per second as the CLI runs them (batches of 16 seeds, src/vmm/explore/round.ts), against one schedule
// per control-plane call measured in the same run, and a pool of two explorers (--jobs 2).

import { UPSTREAM } from '../src/gmem/version.js';
import { DEFAULT_WORKLOAD, type ExploreConfig, Explorer } from '../src/vmm/explore/explorer.js';
import { ExplorePool } from '../src/vmm/explore/pool.js';
import { knownBug } from '../src/vmm/explore/catalogue.js';
import type { Ctx } from './measure.js';
import type { Row } from './table.js';

const CFG: ExploreConfig = { kernel: UPSTREAM, bug: null, strategy: 'random', depth: 3, maxSteps: 20_000, workload: DEFAULT_WORKLOAD };
/** The CLI's batch (src/cli/explore.ts). */
const BATCH = 16;

interface Tally {
  n: number;
  steps: number;
  switches: number;
  s: number;
}

/**
 * Runs batches of `batch` seeds from `seed` on `ex` for `budgetMs`; every schedule must end clean
 * or with a known bug of the kernel (upstream's LAUNCH_FINISH bugs, set aside as explore does).
 */
async function timed(ex: Explorer, seed: number, batch: number, budgetMs: number): Promise<Tally> {
  const t: Tally = { n: 0, steps: 0, switches: 0, s: 0 };
  const t0 = performance.now();
  while (performance.now() - t0 < budgetMs) {
    const rs = await ex.runSchedules(Array.from({ length: batch }, (_, i) => seed + i));
    seed += batch;
    for (const r of rs) {
      if (r.outcome !== 'ok' && knownBug(UPSTREAM, r.violations) === null)
        throw new Error(`explore bench: schedule ${r.seed} ended ${r.outcome}: ${JSON.stringify(r.violations[0])}`);
      t.n++;
      t.steps += r.steps;
      t.switches += r.switches;
    }
  }
  t.s = (performance.now() - t0) / 1000;
  return t;
}

export async function runExplore(ctx: Ctx): Promise<Row[]> {
  const budgetMs = ctx.quick ? 500 : 4000;
  const ex = new Explorer(CFG);
  let single: Tally;
  let batched: Tally;
  try {
    ctx.log(`explore: warm-up`);
    await timed(ex, 1, BATCH, ctx.quick ? 100 : 1000);
    ctx.log(`explore: ${budgetMs} ms of schedules one per call, then ${budgetMs} ms in batches of ${BATCH}`);
    single = await timed(ex, 100_000, 1, budgetMs);
    batched = await timed(ex, 200_000, BATCH, budgetMs);
  } finally {
    await ex.close();
  }
  ctx.log(`explore: ${budgetMs} ms with two explorers (--jobs 2)`);
  const pool = new ExplorePool(CFG, 2);
  let pooled: { n: number; s: number };
  try {
    // Warm-up (a quick run measures the start-up too: its figures are not for quoting).
    if (!ctx.quick)
      await pool.search(
        Array.from({ length: 64 }, (_, i) => 1 + i),
        BATCH,
      );
    // One search, as the CLI makes, of about the budget's worth of seeds at the one-explorer rate.
    const seeds = Array.from(
      { length: Math.max(2 * BATCH, Math.round(((batched.n / batched.s) * budgetMs) / 1000)) },
      (_, i) => 300_000 + i,
    );
    const t0 = performance.now();
    const r = await pool.search(seeds, BATCH);
    if (r.failing !== null)
      throw new Error(`explore bench: schedule ${r.failing.result.seed} failed: ${JSON.stringify(r.failing.result.violations[0])}`);
    pooled = { n: r.ran, s: (performance.now() - t0) / 1000 };
  } finally {
    await pool.close();
  }
  const per = (t: Tally) => `${t.n} schedules, ${(t.steps / t.n).toFixed(0)} steps and ${(t.switches / t.n).toFixed(0)} switches each`;
  return [
    {
      group: 'explore',
      name: 'explore.schedules.1perCall',
      kind: 'rate',
      median: single.n / single.s,
      note: `one schedule per control-plane call (a batch of 1, with the other savings of the batched code: not the old tree); ${per(single)}`,
    },
    {
      group: 'explore',
      name: 'explore.steps.1perCall',
      kind: 'rate',
      median: single.steps / single.s,
      note: 'controlled steps per second, the same run',
    },
    {
      group: 'explore',
      name: 'explore.schedules',
      kind: 'rate',
      median: batched.n / batched.s,
      baseline: 'explore.schedules.1perCall',
      target: { op: '>=', ratio: 3 },
      note: `batches of ${BATCH} (as the CLI runs), default workload; ${per(batched)}`,
    },
    {
      group: 'explore',
      name: 'explore.steps',
      kind: 'rate',
      median: batched.steps / batched.s,
      baseline: 'explore.steps.1perCall',
      target: { op: '>=', ratio: 3 },
      note: `controlled steps per second, the same run (${(batched.switches / batched.s / 1000).toFixed(1)}k switches/s)`,
    },
    {
      group: 'explore',
      name: 'explore.schedules.2jobs',
      kind: 'rate',
      median: pooled.n / pooled.s,
      baseline: 'explore.schedules',
      note: `two explorers at once (--jobs 2), ${pooled.n} schedules`,
    },
  ];
}
