// Running a sweep plan on a piscina pool: one sandbox per job, lines streamed as jobs finish.

import { Piscina } from 'piscina';
import { workerFile } from '../sandbox/runtime.js';
import { type SweepLine, type SweepTask, failedLine } from './line.js';
import { SweepError } from '../io/problems.js';
import type { SweepPlan } from './plan.js';

export interface RunSweepOptions {
  /** Jobs running at once (pool threads); default 1, since each job runs several threads itself. */
  concurrency?: number;
  /** Called with each job's line as soon as it finishes (completion order). */
  onLine?: (line: SweepLine) => void;
  /** Write each job's Chrome trace to this file name with the job index inserted (t.json -> t.7.json). */
  trace?: string;
  /** Stops the sweep: no job starts, running jobs' threads are terminated, and they get no line. */
  signal?: AbortSignal;
}

/** The trace file of job `index` for a sweep's --trace FILE. */
export function jobTraceFile(file: string, index: number): string {
  return file.replace(/(\.[^./]+)?$/, `.${index}$1`);
}

/** Runs the plan's jobs on a piscina pool, one sandbox per job; resolves with the lines in completion order. */
export async function runSweep(plan: SweepPlan, opts: RunSweepOptions = {}): Promise<SweepLine[]> {
  const concurrency = opts.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new SweepError(`--jobs: must be a positive integer, got ${concurrency}`);
  const threads = Math.max(1, Math.min(concurrency, plan.jobs.length));
  const pool = new Piscina<SweepTask, SweepLine>({
    filename: workerFile('vmm/sweep/worker.js'),
    minThreads: threads,
    maxThreads: threads,
    // Between tasks the pool's workers wait with Atomics.waitAsync, keeping their event loop free.
    atomics: 'async',
    idleTimeout: 1000,
  });
  const lines: SweepLine[] = [];
  const signal = opts.signal;
  const runJob = async (j: SweepPlan['jobs'][number]): Promise<void> => {
    const task: SweepTask = {
      plan: plan.id,
      total: plan.total,
      index: j.index,
      seed: j.seed,
      params: j.params,
      ...(opts.trace ? { trace: jobTraceFile(opts.trace, j.index) } : {}),
    };
    const t0 = performance.now();
    let line: SweepLine;
    try {
      // Aborting a running task terminates its pool thread, and with it the job's own workers.
      line = await pool.run(task, signal ? { signal } : {});
    } catch (e) {
      // An interrupted job has no line: it did not finish, and `--resume` runs it again.
      if (signal?.aborted) return;
      line = failedLine(task, e, performance.now() - t0);
    }
    lines.push(line);
    opts.onLine?.(line);
  };
  // Jobs start in index order, `threads` at a time: the pool's own queue does not keep order.
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < plan.jobs.length && !signal?.aborted) await runJob(plan.jobs[next++]);
  };
  try {
    await Promise.all(Array.from({ length: threads }, lane));
  } finally {
    await pool.destroy();
  }
  return lines;
}
