// Group 'explore' (issue 12 item 5): the explorer's throughput on its default workload (the
// `gmem-sandbox explore` defaults: random walk, no bug, prepare-on-fault-own-vm): controlled
// steps per second and schedules per second, after an untimed warm-up.

import { DEFAULT_WORKLOAD, Explorer } from '../src/vmm/explore.js';
import type { Ctx } from './measure.js';
import type { Row } from './table.js';

export async function runExplore(ctx: Ctx): Promise<Row[]> {
  const ex = new Explorer({ kernel: 'upstream', bug: null, strategy: 'random', depth: 3, maxSteps: 20_000, workload: DEFAULT_WORKLOAD });
  try {
    const warm = ctx.quick ? 5 : 50;
    ctx.log(`explore: warm-up, ${warm} schedules`);
    let seed = 1;
    for (let i = 0; i < warm; i++) await ex.runSchedule(seed++);
    const budgetMs = ctx.quick ? 500 : 5000;
    ctx.log(`explore: ${budgetMs} ms of schedules`);
    let steps = 0;
    let switches = 0;
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < budgetMs) {
      const r = await ex.runSchedule(seed++);
      if (r.outcome !== 'ok') throw new Error(`explore bench: schedule ${r.seed} ended ${r.outcome}: ${JSON.stringify(r.violations[0])}`);
      steps += r.steps;
      switches += r.switches;
      n++;
    }
    const s = (performance.now() - t0) / 1000;
    const per = `${n} schedules, ${(steps / n).toFixed(0)} steps and ${(switches / n).toFixed(0)} switches each`;
    return [
      { group: 'explore', name: 'explore.steps', kind: 'rate', median: steps / s, note: `controlled steps per second, default workload; ${per}` },
      { group: 'explore', name: 'explore.schedules', kind: 'rate', median: n / s, note: `schedules per second, the same run (${(switches / s / 1000).toFixed(1)}k switches/s)` },
    ];
  } finally {
    await ex.close();
  }
}
