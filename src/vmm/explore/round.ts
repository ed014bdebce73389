// The explorer's schedules as rounds on its worker threads, led by the first VMM thread: it resets
// the sandbox, builds the seed's layout, configures the scheduler and rings the doorbell; every
// other VMM thread and vCPU thread runs its part and arrives; the leader then audits and tears
// down, and goes on to the next seed until one fails. The controller makes one call per worker
// per batch of seeds: between two schedules no message crosses a port.

import { setBugs } from '../../gmem/bugs.js';
import { Bell } from '../../shm/bell.js';
import type { Mem } from '../../shm/layout.js';
import { subSeed } from '../../shm/prng.js';
import { SchedControl } from '../../shm/sched/control.js';
import { SchedOutcome, type StrategyName } from '../../shm/sched/layout.js';
import { SyncAbortError } from '../../shm/sync/sync.js';
import { SyncControl } from '../../shm/sync/control.js';
import { takeOnlineReports } from '../../checker/online.js';
import type { Violation } from '../../checker/violations.js';
import type { WorkloadConfig } from '../../vcpu-workers/guest-workload.js';
import { auditQuiescent, auditTeardown } from '../../checker/audit.js';
import { type SandboxDescriptor, resetSandboxMemory } from '../sandbox/build.js';
import { type ExploreWorkload, type ScheduleShape, opsForThread, scheduleShape } from '../workload/explore.js';
import { type VmmOp, parseMix } from '../workload/mix.js';
import type { VmmOpsConfig, VmmOpsResult } from '../workload/vmm-ops.js';
import type { CreatedVcpu, SharedStressTarget, StressSetup } from '../workload/layout.js';

/** PCT places its change points within this many steps: about the length of a default schedule. */
const PCT_STEPS = 100;

/** What the leader runs: the seeds of a batch, in order, until one fails. */
export interface RoundPlan {
  bell: SharedArrayBuffer;
  /** The doorbell's generation before the batch: the first round is the one after it. */
  fromGen: number;
  descriptor: SandboxDescriptor;
  seeds: number[];
  /** Choices to force (replay and shrinking), for every seed of the batch. */
  forced: number[] | null;
  bugMask: number;
  strategy: StrategyName;
  depth: number;
  maxSteps: number;
  workload: ExploreWorkload;
  /** Thread ids of the VMM threads taking part (the leader first) and of the vCPU actors. */
  vmmTids: number[];
  runnerTids: number[];
}

/** One round, as every follower reads it. */
export interface RoundPayload {
  seed: number;
  shared: SharedStressTarget;
  /** Per VMM thread (index 0 is the leader's own). */
  vmmOps: VmmOpsConfig[];
  /** Per vCPU actor: the vCPU the leader created for it, and its workload. */
  vcpus: Array<{ created: CreatedVcpu; run: WorkloadConfig }>;
}

/** One schedule as the leader saw it. */
export interface RoundRecord {
  seed: number;
  steps: number;
  switches: number;
  /** The scheduler's choice at each step. */
  choices: number[];
  /** SchedOutcome. */
  sched: number;
  /** Online reports, a step limit, the audits; not the followers' own (they return those). */
  violations: Violation[];
  /** The leader's own ops; the other VMM threads return theirs. */
  ops: Record<VmmOp, number>;
  shape: ScheduleShape;
  /** The VM of each vCPU actor in this schedule. */
  vcpuVms: number[];
  /** Followers that arrived with a finding of their own (a vCPU's violations): the batch ends here. */
  flagged: number;
  /**
   * Why the schedule did not run to its end, if it did not: 'aborted' (a dead worker or a
   * follower's error aborted the sandbox: the controller finds which), 'a follower failed', or
   * the leader's own error. The batch ends with it.
   */
  failed?: string;
}

/** The leader's handle on its VMM worker. */
export interface LeaderHooks {
  mem: Mem;
  init(): void;
  setup(cfg: StressSetup): { gfnStart: number; vcpus: CreatedVcpu[]; shared: SharedStressTarget };
  runOps(cfg: VmmOpsConfig): VmmOpsResult;
  closeAll(): void;
}

/** Runs the plan's seeds as rounds until one fails (or all ran); one record per schedule run. */
export function leadRounds(plan: RoundPlan, h: LeaderHooks): RoundRecord[] {
  const sched = new SchedControl(h.mem);
  const bell = new Bell(plan.bell, new SyncControl(h.mem));
  const out: RoundRecord[] = [];
  try {
    for (const seed of plan.seeds) {
      let rec: RoundRecord;
      try {
        rec = leadOne(plan, h, sched, bell, seed);
      } catch (e) {
        const failed = e instanceof SyncAbortError ? 'aborted' : describeError(e);
        out.push({
          seed,
          steps: sched.steps(),
          switches: sched.switches(),
          choices: [],
          sched: sched.outcome(),
          violations: [],
          ops: parseMix(''),
          shape: scheduleShape(plan.workload, seed),
          vcpuVms: [],
          flagged: 0,
          failed,
        });
        break;
      }
      out.push(rec);
      if (rec.failed !== undefined || rec.flagged > 0 || rec.violations.length > 0 || rec.sched === SchedOutcome.DEADLOCK) break;
    }
  } finally {
    bell.stop();
  }
  return out;
}

function describeError(e: unknown): string {
  return e instanceof Error ? (e.stack ?? e.message) : String(e);
}

/** One schedule: reset, layout, scheduler, the round, audits and teardown. */
function leadOne(plan: RoundPlan, h: LeaderHooks, sched: SchedControl, bell: Bell, seed: number): RoundRecord {
  const mem = h.mem;
  const w = plan.workload;
  const followers = plan.vmmTids.length - 1 + plan.runnerTids.length;
  resetSandboxMemory(plan.descriptor);
  setBugs(mem, plan.bugMask);
  h.init();
  const shape = scheduleShape(w, seed);
  const layout = h.setup({
    vmType: w.vmType,
    vms: shape.vms,
    pages: w.pages,
    privateShare: 1,
    populateFirstVm: shape.populateFirstVm,
    launchingBeside: shape.launchingBeside,
    // Every shape runs the same vCPU actors, split over its running VMs.
    vcpusTotal: plan.runnerTids.length,
    vmmThreads: plan.vmmTids.length,
    ...(w.layout === 'random' ? { layoutSeed: subSeed(seed, 99) } : {}),
  });
  sched.configure({
    strategy: plan.forced ? 'replay' : plan.strategy,
    seed,
    actors: plan.vmmTids.length + plan.runnerTids.length,
    maxSteps: plan.maxSteps,
    depth: plan.depth,
    // A fixed estimate, so that a seed alone decides PCT's interleaving.
    estimatedSteps: PCT_STEPS,
    ...(plan.forced ? { forced: plan.forced } : {}),
  });
  const signalTids = [...plan.vmmTids, ...plan.runnerTids];
  const vmmOps = plan.vmmTids.map((_, t): VmmOpsConfig => {
    const share = opsForThread(w.vmmOps, plan.vmmTids.length, t);
    // maxOps 0 is "no limit" to runVmmOps: a thread with no share gets no ops to draw from.
    return {
      mix: parseMix(share > 0 ? w.ops : ''),
      rate: 0,
      maxPages: 2,
      seed: subSeed(seed, t === 0 ? 0 : 100 + t),
      durationMs: 0,
      maxOps: share,
      signalTids,
    };
  });
  const vcpus = layout.vcpus.map((created, i) => ({
    created,
    run: {
      gfnStart: layout.gfnStart,
      gfnCount: w.pages,
      pattern: 'random' as const,
      writeRatio: w.writeRatio,
      hotRatio: 0.8,
      seed: subSeed(seed, i + 1),
      // One writer per page over every VM: linked VMs share the folios, so a page another
      // VM's vCPU owned could be overwritten under this one's feet.
      writerIndex: i,
      writers: plan.runnerTids.length,
      durationMs: 0,
      maxAccesses: w.accesses,
      multiVm: shape.vms > 1,
      prefaultRatio: w.prefaultRatio,
    },
  }));
  bell.ring({ seed, shared: layout.shared, vmmOps, vcpus } satisfies RoundPayload, followers);
  let ops = parseMix('');
  let failed: string | undefined;
  try {
    ops = h.runOps(vmmOps[0]).ops;
  } catch (e) {
    if (!(e instanceof SyncAbortError)) failed = describeError(e);
  }
  const arrived = bell.arrivals();
  // Everyone arrived, but a worker outside the round (or this one's own ops) met a fatal abort:
  // the schedule did not run to its end, and its audits would judge a torn state.
  bell.throwIfAborted();
  if (failed === undefined && arrived.crashed > 0) failed = 'a follower failed';
  const outcome = sched.outcome();
  const violations = takeOnlineReports(mem);
  if (outcome === SchedOutcome.STEP_LIMIT) {
    // A default schedule takes a few hundred steps: one that runs out of them has an actor
    // spinning without end (a livelock), which no kernel may do.
    violations.push({
      invariant: 'liveness',
      by: 'scheduler',
      detail: `step limit: ${sched.steps()} steps without finishing; an actor spins (a livelock) or the workload has no end (accesses 0)`,
    });
  } else if (outcome === SchedOutcome.RUNNING && failed === undefined) {
    violations.push(...auditQuiescent(mem).violations);
    // Every fd closed and every VM destroyed: a release or a free that touches freed memory
    // shows here, and so does anything left behind.
    h.closeAll();
    violations.push(...auditTeardown(mem).violations);
  }
  return {
    seed,
    steps: sched.steps(),
    switches: sched.switches(),
    choices: sched.log(),
    sched: outcome,
    violations,
    ops,
    shape,
    vcpuVms: layout.vcpus.map((c) => c.vm),
    flagged: arrived.flagged,
    ...(failed !== undefined ? { failed } : {}),
  };
}
