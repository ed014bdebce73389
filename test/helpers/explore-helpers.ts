// The explorer test files' shared set-up: a configuration on upstream unless told otherwise,
// explorers shared per sandbox shape (a sandbox's start costs more than its schedules), and a
// run of seeds in batches of 16, as the CLI runs them.

import { plantedBugPoints } from '../../src/gmem/bugs.js';
import { UPSTREAM } from '../../src/gmem/version.js';
import { BUG_KERNELS, type ExploreConfig, Explorer, type ScheduleResult, workloadFor } from '../../src/vmm/explore/explorer.js';
import type { RuntimeOptions } from '../../src/vmm/sandbox/runtime.js';

const explorers: Explorer[] = [];

/** Closes every explorer the helpers made: a test file's afterAll. */
export async function closeExplorers(): Promise<void> {
  await Promise.all(explorers.splice(0).map((e) => e.close()));
  shared.clear();
}

/**
 * The configuration on upstream (no known bug; a planted bug's own version and points mode)
 * unless told otherwise: what it finds is planted.
 */
export function config(over: Partial<ExploreConfig> = {}): ExploreConfig {
  const bug = over.bug ?? null;
  // A planted bug of 7.4's in-place conversion needs its kernel and module parameter (BUG_KERNELS).
  const own = bug !== null ? BUG_KERNELS[bug] : undefined;
  const kernel = over.policy === undefined ? { kernel: over.kernel ?? own?.kernel ?? UPSTREAM } : {};
  const params = own !== undefined && over.kernel === undefined ? { moduleParams: own.moduleParams } : {};
  const points = bug !== null && plantedBugPoints(bug) !== 'locks' ? { points: plantedBugPoints(bug) } : {};
  return { ...kernel, ...params, bug, strategy: 'random', depth: 3, maxSteps: 20_000, ...points, workload: workloadFor(bug), ...over };
}

/**
 * Explorers shared by the tests, one per sandbox they need: the kernel, and the workload's VMs,
 * vCPUs and pages, which the sandbox and its workers are built for. A sandbox's start costs more
 * than its schedules, and every schedule starts from a reset sandbox (see the batch test below),
 * so a shared explorer runs each test's configuration as one of its own would.
 */
const shared = new Map<string, Explorer>();
export function explorer(over: Partial<ExploreConfig> = {}): Explorer {
  const cfg = config(over);
  const w = cfg.workload;
  const params = JSON.stringify(cfg.moduleParams ?? {});
  const key = [cfg.kernel, cfg.policy, (cfg.patches ?? []).join('+'), params, w.vms, w.vcpus, w.pages, w.populateFirstVm].join('/');
  let e = shared.get(key);
  if (e === undefined) {
    e = ownExplorer(over);
    shared.set(key, e);
  }
  e.cfg = { ...cfg, workload: { ...w } };
  return e;
}

/** An explorer of its own: for a test that compares two, or breaks one (a hung or dead worker). */
export function ownExplorer(over: Partial<ExploreConfig> = {}, runtime: Pick<RuntimeOptions, 'vcpuWorker'> = {}): Explorer {
  const e = new Explorer(config(over), runtime);
  explorers.push(e);
  return e;
}

/**
 * Runs seeds from..to in batches of 16, as the CLI does (a batch ends at its first failing
 * schedule); `each` sees every result in seed order and returns true to stop.
 */
export async function eachSchedule(
  e: Explorer,
  from: number,
  to: number,
  each: (r: ScheduleResult) => boolean | void,
  forced?: number[],
): Promise<void> {
  for (let s = from; s <= to; s += 16) {
    const rs = await e.runSchedules(
      Array.from({ length: Math.min(16, to - s + 1) }, (_, i) => s + i),
      forced,
    );
    for (const r of rs) if (each(r) === true) return;
  }
}
