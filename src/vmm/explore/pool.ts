// Several explorers searching one seed list at once, each on its own sandbox and workers. One
// explorer keeps about 1.2 CPUs busy (its actors run one at a time; the rest is wake-ups), so
// a machine with CPUs to spare runs more schedules (on 2 CPUs, measured: no gain). The answer is
// the one a single explorer gives: the failing schedule with the lowest seed index, after every
// seed before it ran clean.

import type { RuntimeOptions } from '../sandbox/runtime.js';
import { MAX_EXPLORE_JOBS } from '../workload/explore.js';
import { type ExploreConfig, Explorer, ScheduleHangError, type ScheduleResult, fails } from './explorer.js';

export interface PoolSearch {
  /** The first schedule in seed order that ended the search, and the explorer that ran it (for shrinking and replay). */
  failing: { result: ScheduleResult; explorer: Explorer } | null;
  /** Schedules a single explorer would have run: up to and including the failing one, or all. */
  schedules: number;
  /** Schedules the pool really ran (some past the failing one, on the other explorers). */
  ran: number;
}

export class ExplorePool {
  readonly explorers: Explorer[];

  constructor(
    cfg: ExploreConfig,
    jobs: number,
    /** How each explorer's runtime starts (tests name their vCPU worker). */
    runtimeOptions: Pick<RuntimeOptions, 'vcpuWorker'> = {},
  ) {
    if (!Number.isInteger(jobs) || jobs < 1 || jobs > MAX_EXPLORE_JOBS)
      throw new Error(`jobs: must be an integer from 1 to ${MAX_EXPLORE_JOBS}, got ${jobs}`);
    this.explorers = Array.from({ length: jobs }, () => new Explorer(cfg, runtimeOptions));
  }

  /** Schedules run so far over every explorer. */
  get schedulesRun(): number {
    return this.explorers.reduce((n, e) => n + e.schedulesRun, 0);
  }

  /**
   * Runs the seeds in batches of `batch`, each explorer taking the next batch when it is free,
   * until a schedule `ends` the search (by default, one that fails) and every seed before it has
   * run. `onBatch` hears of each batch done, with its results. A failing schedule that does not
   * end the search (a known bug set aside) is counted by the caller, and the search goes on.
   */
  async search(
    seeds: readonly number[],
    batch: number,
    onBatch: (ran: number, last: ScheduleResult, batch: readonly ScheduleResult[]) => void = () => undefined,
    ends: (r: ScheduleResult) => boolean = fails,
  ): Promise<PoolSearch> {
    let next = 0;
    let ran = 0;
    // The lowest ending seed index so far, and the lowest batch that threw: batches starting
    // after either are not taken. A batch that threw counts from its first seed, since which of
    // its seeds failed is unknown: one explorer might have met it first.
    let best: { index: number; result: ScheduleResult; explorer: Explorer } | null = null;
    let broken: { index: number; error: unknown } | null = null;
    const limit = (): number => Math.min(best?.index ?? Infinity, broken?.index ?? Infinity);
    // One batch of seeds [start, end): the explorer stops a batch at a failing schedule, so a
    // batch that stopped at one that does not end the search runs on from the seed after it.
    const runBatch = async (ex: Explorer, start: number, end: number): Promise<boolean> => {
      for (let from = start; from < end && from < limit();) {
        let rs: ScheduleResult[];
        try {
          rs = await ex.runSchedules(seeds.slice(from, Math.min(end, limit())));
        } catch (error) {
          // A hang is a schedule's outcome too (its seed and its choices so far), though it
          // leaves this explorer unusable: it takes no more batches.
          if (error instanceof ScheduleHangError && ends(error.result)) {
            const index = from + error.index;
            ran += error.index + 1;
            onBatch(ran, error.result, [error.result]);
            if (best === null || index < best.index) best = { index, result: error.result, explorer: ex };
          } else if (broken === null || from < broken.index) broken = { index: from, error };
          return false;
        }
        ran += rs.length;
        const last = rs[rs.length - 1];
        onBatch(ran, last, rs);
        const hit = rs.findIndex(ends);
        if (hit >= 0) {
          const index = from + hit;
          if (best === null || index < best.index) best = { index, result: rs[hit], explorer: ex };
          return true;
        }
        if (!fails(last)) return true;
        from += rs.length;
      }
      return true;
    };
    const worker = async (ex: Explorer): Promise<void> => {
      while (next < seeds.length && next < limit()) {
        const start = next;
        const end = Math.min(seeds.length, start + batch, limit());
        next = end;
        if (!(await runBatch(ex, start, end))) return;
      }
    };
    await Promise.all(this.explorers.map(worker));
    const found = best as { index: number; result: ScheduleResult; explorer: Explorer } | null;
    const threw = broken as { index: number; error: unknown } | null;
    if (threw !== null && (found === null || threw.index < found.index)) throw threw.error;
    return found
      ? { failing: { result: found.result, explorer: found.explorer }, schedules: found.index + 1, ran }
      : { failing: null, schedules: seeds.length, ran };
  }

  async close(): Promise<void> {
    await Promise.all(this.explorers.map((e) => e.close()));
  }
}
