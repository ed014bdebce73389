// The explorer's schedules as rounds on its worker threads, led by the first VMM thread: it resets
// the sandbox, builds the seed's layout, configures the scheduler and rings the doorbell with what
// each actor runs (the workload's description of a schedule, workload/explore.ts); every
// other VMM thread and vCPU thread runs its part and arrives; the leader then audits and tears
// down, and goes on to the next seed until one fails. The controller makes one call per worker
// per batch of seeds: between two schedules no message crosses a port.

import { setBugs } from '../../gmem/bugs.js';
import { Bell } from '../../shm/bell.js';
import type { Mem } from '../../shm/layout.js';
import { SchedControl } from '../../shm/sched/control.js';
import { SchedOutcome, type StrategyName } from '../../shm/sched/layout.js';
import type { PointsMode } from '../../shm/points.js';
import { SyncAbortError } from '../../shm/sync/sync.js';
import { SyncControl } from '../../shm/sync/control.js';
import { takeLockOrderReports, takeOnlineReports } from '../../checker/online.js';
import { type Violation, assertionViolation } from '../../checker/violations.js';
import type { WorkloadConfig } from '../../vcpu-workers/guest-workload.js';
import { auditQuiescent, auditTeardown } from '../../checker/audit.js';
import { type SandboxDescriptor, resetSandboxMemory } from '../sandbox/build.js';
import {
  type ExploreWorkload,
  type ScheduleShape,
  scheduleGuestRuns,
  scheduleSetup,
  scheduleShape,
  scheduleVmmOps,
} from '../workload/explore.js';
import { type VmmOp, parseMix } from '../workload/mix.js';
import type { VmmOpsConfig, VmmOpsResult } from '../workload/vmm-ops.js';
import type { CreatedVcpu, SharedStressTarget, StressSetup } from '../workload/layout.js';
import { NO_COVERAGE, type ScheduleCoverage, scheduleCoverage } from './coverage.js';

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
  /** Which writes are scheduling points too (shm/points.ts). */
  points: PointsMode;
  workload: ExploreWorkload;
  /** Thread ids of the VMM threads taking part (the leader first) and of the vCPU actors. */
  vmmTids: number[];
  runnerTids: number[];
}

/** Counted outcomes the kernel allows (a punch-hole leftover, a cross-VM prepare), per schedule. */
export interface ScheduleFindings {
  punchHoleLeftovers: number;
  crossVmPrepare: number;
}
const NO_FINDINGS: ScheduleFindings = { punchHoleLeftovers: 0, crossVmPrepare: 0 };

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
  /** What the kernel allows but the catalogue lists as findings, as this schedule's audit counted them. */
  findings: ScheduleFindings;
  /** The VM of each vCPU actor in this schedule. */
  vcpuVms: number[];
  /** What it reached (explore --coverage). */
  coverage: ScheduleCoverage;
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
    for (const [index, seed] of plan.seeds.entries()) {
      let rec: RoundRecord;
      bell.leading(index);
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
          shape: scheduleShape(plan.workload, seed, plan.descriptor.kernel),
          findings: NO_FINDINGS,
          vcpuVms: [],
          coverage: NO_COVERAGE,
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
  const w = plan.workload;
  resetSandbox(plan, h);
  const shape = scheduleShape(w, seed, plan.descriptor.kernel);
  const layout = h.setup(scheduleSetup(w, shape, seed, plan));
  configureScheduler(plan, sched, seed);
  bell.configured();
  const vmmOps = scheduleVmmOps(w, shape, seed, plan);
  const runs = scheduleGuestRuns(w, shape, seed, layout.gfnStart, plan.runnerTids.length, h.mem.limits.gfnsPerVm);
  const vcpus = layout.vcpus.map((created, i) => ({ created, run: runs[i] }));
  bell.ring({ seed, shared: layout.shared, vmmOps, vcpus } satisfies RoundPayload, plan.vmmTids.length - 1 + plan.runnerTids.length);
  const own = runOwnOps(h, sched, vmmOps[0]);
  const arrived = bell.arrivals();
  // Everyone arrived, but a worker outside the round (or this one's own ops) met a fatal abort:
  // the schedule did not run to its end, and its audits would judge a torn state.
  bell.throwIfAborted();
  const failed = own.failed ?? (arrived.crashed > 0 ? 'a follower failed' : undefined);
  // The schedule's own steps and coverage: the teardown that follows runs as an actor too, but alone.
  const steps = sched.steps();
  const switches = sched.switches();
  const choices = sched.log();
  const coverage = scheduleCoverage(h.mem);
  const judged = judgeSchedule(h, sched, sched.outcome(), failed);
  const violations = own.assertion !== undefined ? [own.assertion, ...judged.violations] : judged.violations;
  const findings = judged.findings;
  return {
    seed,
    steps,
    switches,
    choices,
    // A teardown that deadlocked ends the schedule as one.
    sched: sched.outcome(),
    violations,
    ops: own.ops,
    shape,
    findings,
    vcpuVms: layout.vcpus.map((c) => c.vm),
    coverage,
    flagged: arrived.flagged,
    ...(failed !== undefined ? { failed } : {}),
  };
}

/** The sandbox as new, with the plan's planted bugs, and this thread attached to it again. */
function resetSandbox(plan: RoundPlan, h: LeaderHooks): void {
  resetSandboxMemory(plan.descriptor);
  setBugs(h.mem, plan.bugMask);
  h.init();
}

function configureScheduler(plan: RoundPlan, sched: SchedControl, seed: number): void {
  sched.configure({
    strategy: plan.forced ? 'replay' : plan.strategy,
    seed,
    actors: plan.vmmTids.length + plan.runnerTids.length,
    maxSteps: plan.maxSteps,
    depth: plan.depth,
    points: plan.points,
    // A fixed estimate, so that a seed alone decides PCT's interleaving.
    estimatedSteps: PCT_STEPS,
    ...(plan.forced ? { forced: plan.forced } : {}),
  });
}

/**
 * The leader's own share of the ops; an abort is not its failure (the caller finds the cause).
 * A model assertion its ops fired as an actor is the schedule's finding; any other error, the
 * leader's failure.
 */
function runOwnOps(
  h: LeaderHooks,
  sched: SchedControl,
  cfg: VmmOpsConfig,
): { ops: Record<VmmOp, number>; failed?: string; assertion?: Violation } {
  try {
    return { ops: h.runOps(cfg).ops };
  } catch (e) {
    if (e instanceof SyncAbortError) return { ops: parseMix('') };
    if (sched.outcome() === SchedOutcome.ACTOR_FAILED) return { ops: parseMix(''), assertion: assertionViolation(e, 'vmm') };
    return { ops: parseMix(''), failed: describeError(e) };
  }
}

/** Online reports, then a step limit, or, for a schedule run to its end, the audits before and after teardown. */
function judgeSchedule(
  h: LeaderHooks,
  sched: SchedControl,
  outcome: number,
  failed: string | undefined,
): { violations: Violation[]; findings: ScheduleFindings } {
  const violations = takeOnlineReports(h.mem);
  let findings = NO_FINDINGS;
  if (outcome === SchedOutcome.STEP_LIMIT) {
    // A default schedule takes a few hundred steps: one that runs out of them has an actor
    // spinning without end (a livelock), which no kernel may do.
    violations.push({
      invariant: 'liveness',
      by: 'scheduler',
      detail: `step limit: ${sched.steps()} steps without finishing; an actor spins (a livelock) or the workload has no end (accesses 0)`,
    });
  } else if (outcome === SchedOutcome.RUNNING && failed === undefined) {
    const audit = auditQuiescent(h.mem);
    violations.push(...audit.violations);
    findings = audit.findings;
    const torn = teardown(h, sched);
    if (torn !== null) return { violations: [...violations, ...torn], findings };
    // The teardown takes locks too: its lock order counts before the next reset empties the graph.
    violations.push(...auditTeardown(h.mem).violations, ...takeLockOrderReports(h.mem));
  }
  return { violations, findings };
}

/**
 * Every fd closed and every VM destroyed: a release or a free that touches freed memory shows
 * afterwards, and so does anything left behind. The teardown runs as the one actor left, so a
 * wait nobody can end (a lock an actor returned to user space holding) is a deadlock the
 * scheduler reports, not a hang, and a model assertion it fires is a finding. Null when it ran
 * to its end; else what ended it (the scheduler's deadlock is added by the controller).
 */
function teardown(h: LeaderHooks, sched: SchedControl): Violation[] | null {
  sched.admitOneMore();
  try {
    h.closeAll();
    return null;
  } catch (e) {
    const outcome = sched.outcome();
    if (outcome === SchedOutcome.RUNNING) throw e;
    const own = e instanceof SyncAbortError ? [] : [assertionViolation(e, 'vmm (teardown)')];
    return [...own, ...takeOnlineReports(h.mem)];
  }
}
