// One real sweep through the piscina pool (vmm/sweep/run.ts): a job per seed, streamed as it
// ends, each an ok stress run that faulted; the merge of its lines. Workers run the built code
// (`npm run build` first). The tool's own logic: no kernel function is modelled here.

import { describe, expect, it } from 'vitest';
import type { SweepLine } from '../../src/vmm/sweep/line.js';
import { mergeLines } from '../../src/vmm/sweep/merge.js';
import { planSweep } from '../../src/vmm/sweep/plan.js';
import { runSweep } from '../../src/vmm/sweep/run.js';

describe('runSweep', () => {
  it('runs a tiny sweep through the piscina pool and streams one ok line per job', async () => {
    const plan = planSweep({ params: ['durationMs=300', 'memory=16MiB', 'vcpus=1'], seeds: '0..1' });
    const streamed: SweepLine[] = [];
    const lines = await runSweep(plan, { concurrency: 2, onLine: (l) => streamed.push(l) });
    expect(streamed).toEqual(lines);
    expect(lines.map((l) => l.index).sort()).toEqual([0, 1]);
    for (const l of lines) {
      expect(l.error).toBeUndefined();
      expect(l).toMatchObject({ plan: plan.id, total: 2, ok: true, crashes: 0, params: { memory: '16MiB', durationMs: 300, vcpus: 1 } });
      expect(l.seed).toBe(l.index);
      expect(l.counters.faults).toBeGreaterThan(0);
      expect(l.faultsPerSecond).toBeGreaterThan(0);
    }
    const s = mergeLines(lines.map((l) => JSON.stringify(l)));
    expect(s).toMatchObject({ runs: 2, ok: 2, missing: [], failures: [] });
  }, 20_000);

  it("one job at a time runs the jobs in index order (the pool's own queue does not keep it)", async () => {
    const plan = planSweep({ params: ['durationMs=100', 'memory=8MiB', 'vcpus=1'], seeds: '0..3' });
    const order: number[] = [];
    await runSweep(plan, { concurrency: 1, onLine: (l) => order.push(l.index) });
    expect(order).toEqual([0, 1, 2, 3]);
  }, 20_000);
});
