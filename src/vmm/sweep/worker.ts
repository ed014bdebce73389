// The piscina task file of a sweep: one job is one stress campaign on its own sandbox (which
// starts its own firmware, VMM and vCPU worker threads from this pool thread). Runs as built
// JavaScript from dist/.

import { type SweepLine, type SweepTask, lineFromReport } from './line.js';
import { jobOptions } from './plan.js';
import { runStress } from '../stress/stress.js';

export default async function runSweepJob(task: SweepTask): Promise<SweepLine> {
  const report = await runStress({ ...jobOptions(task.params, task.seed), ...(task.trace ? { trace: task.trace } : {}) });
  return lineFromReport(task, report);
}
