// The explorer's points modes (src/shm/points.ts) on real worker threads. A race whose window
// holds no lock operation is out of reach of points 'locks': the planted uptodate-after-folio-unlock
// stores the folio's uptodate flag (kvm_gmem_mark_prepared, folio_mark_uptodate) after folio_unlock
// in kvm_gmem_get_pfn, so a second fault can lock the folio in between, take it for a new one and
// clear it again, a host write to a page the first fault's sev_gmem_prepare already made
// guest-owned (an RMP fault: hostIsolation). With 'shared' every write to shared state is a
// scheduling point, the store included, and the explorer finds it; the same seeds with 'locks'
// never can. A 'shared' schedule replays exactly from its saved file, and upstream runs clean.

import { afterAll, describe, expect, it } from 'vitest';
import { UPSTREAM } from '../../src/gmem/version.js';
import type { PointsMode } from '../../src/shm/points.js';
import { type ExploreConfig, Explorer, type ScheduleFile, type ScheduleResult, workloadFor } from '../../src/vmm/explore/explorer.js';
import { parseSchedule } from '../../src/vmm/explore/schedule-file.js';
import { knownBug } from '../../src/vmm/explore/catalogue.js';

const BUG = 'uptodate-after-folio-unlock';
const SEEDS = 200;

const explorers: Explorer[] = [];
afterAll(async () => {
  await Promise.all(explorers.map((e) => e.close()));
});

/** One explorer for every run (the same sandbox shape); each run sets its configuration. */
let shared: Explorer | null = null;
function explorer(cfg: ExploreConfig): Explorer {
  if (shared === null) {
    shared = new Explorer(cfg);
    explorers.push(shared);
  }
  shared.cfg = { ...cfg, workload: { ...cfg.workload } };
  return shared;
}

function config(bug: typeof BUG | null, points?: PointsMode): ExploreConfig {
  return {
    kernel: UPSTREAM,
    bug,
    strategy: 'random',
    depth: 3,
    maxSteps: 20_000,
    ...(points ? { points } : {}),
    workload: workloadFor(bug),
  };
}

/** Runs seeds 1..n in batches, going on past failing ones; every result. */
async function runAll(e: Explorer, n: number): Promise<ScheduleResult[]> {
  const out: ScheduleResult[] = [];
  for (let s = 1; s <= n;) {
    const rs = await e.runSchedules(Array.from({ length: Math.min(16, n - s + 1) }, (_, i) => s + i));
    out.push(...rs);
    s = rs[rs.length - 1].seed + 1;
  }
  return out;
}

describe("a race with no lock operation in its window: found with points 'shared' only", () => {
  let found: ScheduleResult | undefined;

  it(`'shared' finds ${BUG} within ${SEEDS} schedules, as a host write to a guest-owned page`, async () => {
    const rs = await runAll(explorer(config(BUG, 'shared')), SEEDS);
    const failing = rs.filter((r) => r.outcome === 'violation');
    expect(failing.length).toBeGreaterThan(0);
    found = failing[0];
    expect(found.violations[0]).toMatchObject({
      invariant: 'hostIsolation',
      by: 'auditor',
      detail:
        'the host wrote 1 guest-assigned page(s) (RMP faults); the first: clear_highpage in kvm_gmem_get_pfn on pfn 32 (thread 5), assigned to ASID 1 at gfn 2',
    });
    // Every failure of this bug is that one: nothing else breaks.
    for (const r of failing) expect(r.violations.map((v) => v.invariant)).toEqual(['hostIsolation']);
  });

  it(`'locks' runs the same ${SEEDS} seeds without it: the window holds none of its points`, async () => {
    const rs = await runAll(explorer(config(BUG, 'locks')), SEEDS);
    expect(rs).toHaveLength(SEEDS);
    // Upstream's own known bugs (a second LAUNCH_FINISH's RMP faults) are not this one.
    const planted = rs.filter(
      (r) => r.violations.some((v) => v.invariant === 'hostIsolation') && knownBug(UPSTREAM, r.violations) === null,
    );
    expect(planted.map((r) => r.seed)).toEqual([]);
  });

  it("the 'shared' schedule replays exactly from its saved file, which names the mode", async () => {
    expect(found).toBeDefined();
    const file: ScheduleFile = {
      version: 1,
      config: config(BUG, 'shared'),
      seed: found!.seed,
      choices: found!.choices,
      outcome: found!.outcome,
      violations: found!.violations,
    };
    const saved = parseSchedule(JSON.parse(JSON.stringify(file)));
    expect(saved.config.points).toBe('shared');
    const e = explorer(saved.config);
    const again = await e.runSchedule(saved.seed, saved.choices);
    expect(again.choices.slice(0, again.steps)).toEqual(found!.choices);
    expect(again.violations).toEqual(found!.violations);
    // Without the mode the same choices are another interleaving: fewer points, and no failure.
    const asLocks = await explorer({ ...saved.config, points: 'locks' }).runSchedule(saved.seed, saved.choices);
    expect(asLocks.steps).toBeLessThan(again.steps);
    expect(asLocks.violations.filter((v) => v.invariant === 'hostIsolation')).toEqual([]);
  });
});

describe("points 'shared' on upstream without a planted bug", () => {
  it('runs 100 schedules clean, with more steps than the same seeds under locks', async () => {
    const sharedRuns = await runAll(explorer(config(null, 'shared')), 100);
    const locksRuns = await runAll(explorer(config(null)), 100);
    // No false alarm: the kernel allows every interleaving of its writes, and what fails is one of
    // upstream's catalogued bugs (the memory-failure deadlock, the LAUNCH_FINISH ones).
    for (const r of sharedRuns)
      expect(r.outcome === 'ok' || knownBug(UPSTREAM, r.violations) !== null, `seed ${r.seed}: ${JSON.stringify(r.violations[0])}`).toBe(
        true,
      );
    const steps = (rs: ScheduleResult[]) => rs.reduce((n, r) => n + r.steps, 0);
    expect(steps(sharedRuns)).toBeGreaterThan(steps(locksRuns));
  });

  it("'locks' named explicitly is the default: the same choices seed for seed", async () => {
    const a = await runAll(explorer(config(null)), 16);
    const b = await runAll(explorer(config(null, 'locks')), 16);
    expect(b.map((r) => r.choices)).toEqual(a.map((r) => r.choices));
  });
});
