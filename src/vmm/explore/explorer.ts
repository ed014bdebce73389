// Seeded exploration of interleavings: one small sandbox, reused for every schedule, whose VMM
// and vCPU workers run in the controlled mode of the sync layer. Each schedule is a seed (plus,
// for replay, the forced choices); schedules run in batches as rounds on the workers
// (round.ts). A schedule that breaks an invariant is saved, replayed, and shrunk to
// fewer context switches.

import { BUGS, type BugName, bugMask } from '../../gmem/bugs.js';
import type { ModuleParams } from '../../gmem/params.js';
import type { PolicyName } from '../../gmem/policy.js';
import { type KernelChoice, type PatchName, patchNames } from '../../gmem/version.js';
import { Bell } from '../../shm/bell.js';
import { AbortReason } from '../../shm/sync/sync.js';
import type { Mem } from '../../shm/layout.js';
import { SchedControl } from '../../shm/sched/control.js';
import { SchedOutcome, type StrategyName } from '../../shm/sched/layout.js';
import { DEFAULT_POINTS, POINTS_MODES, type PointsMode } from '../../shm/points.js';
import type { Violation } from '../../checker/violations.js';
import { describeDeadlock } from '../../checker/deadlock.js';
import { SandboxClosedError } from '../sandbox/errors.js';
import type { RoundPlan, RoundRecord, ScheduleFindings } from './round.js';
import { type ExploreWorkload, MAX_VMM_THREADS, type ScheduleShape, scheduleShape, vcpuActors } from '../workload/explore.js';
import { ddminSwitches } from './shrink.js';
import { type Actor, type CrashReport, Runtime, type RuntimeOptions, type VcpuActor, WorkerCrashError } from '../sandbox/runtime.js';
import type { VmmRound, VmmWorkerApi } from '../sandbox/vmm-worker.js';
import { type VmmOp, parseMix, zeroOps } from '../workload/mix.js';
import { NO_COVERAGE, type ScheduleCoverage } from './coverage.js';

export {
  BUG_KERNELS,
  BUG_WORKLOADS,
  DEFAULT_WORKLOAD,
  type ExploreWorkload,
  MAX_VMM_THREADS,
  type ScheduleShape,
  opsForThread,
  scheduleShape,
  workloadFor,
} from '../workload/explore.js';

/** Longest one schedule of a batch may take before the run is declared hung. */
const SCHEDULE_TIMEOUT_MS = 20_000;
const WATCHDOG_TICK_MS = 250;

export interface ExploreConfig {
  /** The modelled kernel; `policy` is the older name of the same choice (one of them, or neither for the default). */
  kernel?: KernelChoice;
  policy?: PolicyName;
  /** Posted patches applied on top of the kernel (gmem/version.ts KERNEL_PATCHES). */
  patches?: PatchName[];
  /** kvm.ko's module parameters (`modprobe kvm NAME=...`; absent: every one at its default). */
  moduleParams?: ModuleParams;
  bug: BugName | null;
  strategy: StrategyName;
  depth: number;
  maxSteps: number;
  /** Which writes are scheduling points too (default 'locks': only lock operations and named points). */
  points?: PointsMode;
  workload: ExploreWorkload;
  /** A batch is hung when no schedule of it finishes within this (default 20 s). */
  scheduleTimeoutMs?: number;
}

export interface ScheduleResult {
  seed: number;
  steps: number;
  switches: number;
  /** 'hang': the round watchdog ended it (its choices are those made up to the hang). */
  outcome: 'ok' | 'violation' | 'deadlock' | 'step-limit' | 'hang';
  violations: Violation[];
  choices: number[];
  /** VMM ops each kind ran (errors included), over every VMM thread, and the VMs it ran. */
  ops: Record<VmmOp, number>;
  shape: ScheduleShape;
  /** Outcomes the kernel allows that the catalogue lists as findings (punch-hole leftovers, cross-VM prepares). */
  findings: ScheduleFindings;
  /** What it reached: named points, op pairs in flight at once, rare kernel events (explore --coverage). */
  coverage: ScheduleCoverage;
}

/** A saved schedule: everything needed to rerun it exactly. */
export interface ScheduleFile {
  version: 1;
  config: ExploreConfig;
  seed: number;
  choices: number[];
  outcome: ScheduleResult['outcome'];
  violations: Violation[];
}

export class Explorer {
  private rt: Runtime | null = null;
  private sched: SchedControl | null = null;
  /** The doorbell the schedules' rounds ring (round.ts). */
  private bell: SharedArrayBuffer | null = null;
  private runners: VcpuActor[] = [];
  /** The VMM threads: the runtime's VMM worker, then the others. */
  private vmms: Array<Actor<VmmWorkerApi>> = [];
  schedulesRun = 0;
  private closed = false;

  /** The configuration schedules run with; shrinking may reduce its workload. */
  cfg: ExploreConfig;

  constructor(
    cfg: ExploreConfig,
    /** How its runtime starts beyond the configuration (not saved with a schedule): tests name their vCPU worker. */
    private readonly runtimeOptions: Pick<RuntimeOptions, 'vcpuWorker'> = {},
  ) {
    this.cfg = { ...cfg, workload: { ...cfg.workload } };
    parseMix(cfg.workload.ops);
    if (cfg.patches !== undefined) patchNames(cfg.patches);
    if (cfg.bug !== null && !(cfg.bug in BUGS)) throw new Error(`bug: unknown planted bug '${cfg.bug}'`);
    const t = cfg.workload.vmmThreads;
    if (!Number.isInteger(t) || t < 1 || t > MAX_VMM_THREADS)
      throw new Error(`vmmThreads: must be an integer from 1 to ${MAX_VMM_THREADS}, got ${t}`);
    const m = cfg.workload.multiVmShare;
    if (!(m >= 0 && m <= 1)) throw new Error(`multiVmShare: must be between 0 and 1, got ${m}`);
    const h = cfg.workload.gmemOnlyShare ?? 0;
    if (!(h >= 0 && h <= 1)) throw new Error(`gmemOnlyShare: must be between 0 and 1, got ${h}`);
    if (cfg.points !== undefined && !POINTS_MODES.includes(cfg.points))
      throw new Error(`points: must be one of ${POINTS_MODES.join(', ')}, got ${String(cfg.points)}`);
    const to = cfg.scheduleTimeoutMs;
    if (to !== undefined && !(Number.isInteger(to) && to > 0)) throw new Error(`scheduleTimeoutMs: must be a positive integer, got ${to}`);
  }

  private async runtime(): Promise<Runtime> {
    if (this.closed) throw new SandboxClosedError('Explorer.runSchedule', 'shutdown');
    if (this.rt !== null) return this.rt;
    const w = this.cfg.workload;
    const rt = await Runtime.start({
      // Room for one more VM than the workload's (scheduleShape's launching VM), and its user memory.
      sandbox: {
        ...(this.cfg.kernel !== undefined ? { kernel: this.cfg.kernel } : {}),
        ...(this.cfg.policy !== undefined ? { policy: this.cfg.policy } : {}),
        ...(this.cfg.patches !== undefined ? { patches: this.cfg.patches } : {}),
        ...(this.cfg.moduleParams !== undefined ? { moduleParams: this.cfg.moduleParams } : {}),
        memory: '1MiB',
        gpaSpace: '256KiB',
        userMemory: Math.max(256 << 10, (w.vms + 1) * w.pages * 4096),
        gmemSpace: '1MiB',
        maxVms: Math.max(2, w.vms + 1),
        watchdogMs: 0,
      },
      callTimeoutMs: 20_000,
      ...this.runtimeOptions,
    });
    // close() while the workers were starting: they would be nobody's to stop.
    if (this.closed) {
      await rt.shutdown();
      throw new SandboxClosedError('Explorer.runSchedule', 'shutdown');
    }
    // From here a close() shuts this runtime down, and the calls below reject.
    this.rt = rt;
    try {
      await rt.call(rt.vmm, () => rt.vmm.api.init(rt.descriptor, rt.vmm.tid, { mode: 'controlled', platform: 'direct' }));
      for (const a of vcpuActors(w)) await rt.addVcpu(a.vmName, -1, a.index);
    } catch (e) {
      throw this.closed ? new SandboxClosedError('Explorer.runSchedule', 'shutdown') : e;
    }
    if (this.closed) throw new SandboxClosedError('Explorer.runSchedule', 'shutdown');
    this.vmms = [rt.vmm];
    this.runners = [...rt.vcpus];
    this.sched = new SchedControl(rt.mem);
    this.bell = Bell.allocate();
    for (const a of [rt.vmm, rt.firmware, ...this.runners]) this.watch(a);
    return rt;
  }

  /** Runs one schedule; `forced` replays choices (strategy 'replay' then applies past them). */
  async runSchedule(seed: number, forced?: readonly number[]): Promise<ScheduleResult> {
    const rs = await this.runSchedules([seed], forced);
    return rs[0];
  }

  /**
   * Runs the seeds in order until one fails (its result is the last) or all ran: a batch of
   * rounds on the workers (round.ts), one control-plane call per worker for the batch.
   */
  async runSchedules(seeds: readonly number[], forced?: readonly number[]): Promise<ScheduleResult[]> {
    if (seeds.length === 0) return [];
    const rt = await this.runtime();
    const w = this.cfg.workload;
    // The workload's VMM threads (shrinking may drop to one; the others then sit this batch out).
    while (this.vmms.length < w.vmmThreads) this.vmms.push(this.watch(rt.addVmmThread()));
    // A worker already gone would never arrive: say so now rather than at the batch's timeout.
    if (rt.crashes.length > 0) throw new WorkerCrashError(rt.crashes[0]);
    // An abort a follower's own error raised in an earlier batch is dealt with (that batch threw):
    // left set, the followers would take it for this batch's before the leader's reset clears it.
    rt.control.clearAbort();
    const vmms = this.vmms.slice(0, w.vmmThreads);
    const bell = this.bell!;
    const fromGen = new Bell(bell, rt.control).generation();
    // Until the leader starts one, a hang is in the batch's first schedule, with no choice made yet.
    new Bell(bell, rt.control).leading(0);
    const plan: RoundPlan = {
      bell,
      fromGen,
      descriptor: rt.descriptor,
      seeds: [...seeds],
      forced: forced ? [...forced] : null,
      bugMask: this.cfg.bug ? bugMask([this.cfg.bug]) : 0,
      ...scheduling(this.cfg),
      workload: w,
      vmmTids: vmms.map((v) => v.tid),
      runnerTids: this.runners.map((r) => r.tid),
    };
    // Every call is posted before any round starts; the followers wait on the doorbell.
    const lead = rt.call(rt.vmm, () => rt.vmm.api.exploreLead(plan), 0);
    const vmmFollowers = vmms.slice(1).map((v, i) => rt.call(v, () => v.api.exploreFollow(bell, fromGen, rt.descriptor, v.tid, i + 1), 0));
    const init = {
      buffers: rt.descriptor.buffers,
      kernel: rt.descriptor.kernel,
      tid: 0,
      mode: 'controlled' as const,
      platform: 'direct' as const,
    };
    const vcpuFollowers = this.runners.map((a, i) => rt.call(a, () => a.api.exploreFollow(bell, fromGen, { ...init, tid: a.tid }, i), 0));
    const watchdog = roundWatchdog(rt, new Bell(bell, rt.control), this.cfg.scheduleTimeoutMs ?? SCHEDULE_TIMEOUT_MS, (report) =>
      this.hangOf(report, seeds, new Bell(bell, rt.control)),
    );
    const [led, ...followed] = await Promise.race([Promise.allSettled([lead, ...vmmFollowers, ...vcpuFollowers]), watchdog.hung]).finally(
      watchdog.stop,
    );
    if (led.status === 'rejected') throw rt.crashes.length > 0 ? new WorkerCrashError(rt.crashes[0]) : led.reason;
    const records = led.value;
    this.schedulesRun += records.length;
    const last = records[records.length - 1];
    if (last.failed !== undefined || rt.crashes.length > 0 || followed.some((r) => r.status === 'rejected'))
      throw failureOf(rt, last, followed);
    this.runners.forEach((a, i) => (a.vm = last.vcpuVms[i]));
    return this.results(rt, records, followed, vmmFollowers.length);
  }

  /** The batch's records as results, with the followers' ops and the last one's findings added. */
  private results(
    rt: Runtime,
    records: readonly RoundRecord[],
    followed: ReadonlyArray<PromiseSettledResult<unknown>>,
    nVmm: number,
  ): ScheduleResult[] {
    const last = records[records.length - 1];
    const vmmRounds = followed.slice(0, nVmm).map((r) => (r as PromiseFulfilledResult<Array<VmmRound | null>>).value);
    const vmmOps = vmmRounds.map((rounds) => rounds.map((x) => x?.ops ?? null));
    // A model assertion a follower's code fired (only the last round can have one: it ends the batch).
    const followerViolations = [
      ...vmmRounds.flatMap((rounds) => rounds[rounds.length - 1]?.violations ?? []),
      ...followed.slice(nVmm).flatMap((r) => (r as PromiseFulfilledResult<Violation[]>).value),
    ];
    const sched = this.sched!;
    return records.map((rec, k) => {
      const ops = { ...rec.ops };
      for (const perRound of vmmOps) for (const [op, n] of Object.entries(perRound[k] ?? {})) ops[op as VmmOp] += n;
      const violations = rec === last ? [...followerViolations, ...rec.violations] : rec.violations;
      // A deadlock leads, before what the audits saw of the state it left (a lock still held).
      if (rec.sched === SchedOutcome.DEADLOCK)
        violations.unshift({
          invariant: 'liveness',
          by: 'scheduler',
          detail: `deadlock: no actor can run: ${describeDeadlock(rt.mem, sched, this.actorNames())}`,
        });
      return {
        seed: rec.seed,
        steps: rec.steps,
        switches: rec.switches,
        outcome:
          violations.length > 0
            ? rec.sched === SchedOutcome.DEADLOCK
              ? 'deadlock'
              : 'violation'
            : rec.sched === SchedOutcome.STEP_LIMIT
              ? 'step-limit'
              : 'ok',
        violations,
        choices: rec.choices,
        ops,
        findings: rec.findings,
        shape: rec.shape,
        coverage: rec.coverage,
      };
    });
  }

  /**
   * The schedule the round watchdog found hung, as far as it went: its seed, the choices made so
   * far (the log of its run, if the leader had configured it), which replay up to the hang.
   */
  private hangOf(report: CrashReport, seeds: readonly number[], bell: Bell): ScheduleHangError {
    const p = bell.progress();
    const index = Math.min(p.index, seeds.length - 1);
    const seed = seeds[index];
    const choices = p.configured ? this.sched!.log() : [];
    // The actor holding the token when no schedule moved: it never reached its next scheduling point.
    const tok = p.configured ? this.sched!.running() : -1;
    const running =
      tok >= 0 ? `; ${this.actorNames().get(tok) ?? `thread ${tok}`} was running and never reached its next scheduling point` : '';
    const result: ScheduleResult = {
      seed,
      steps: choices.length,
      switches: switchesIn(choices),
      outcome: 'hang',
      violations: [{ invariant: 'liveness', by: 'watchdog', detail: `hang: ${report.message}${running}` }],
      choices,
      ops: zeroOps(),
      shape: scheduleShape(this.cfg.workload, seed, this.rt!.descriptor.kernel),
      findings: { punchHoleLeftovers: 0, crossVmPrepare: 0 },
      // What a hung schedule reached is not read: its threads were still in it.
      coverage: NO_COVERAGE,
    };
    return new ScheduleHangError(
      { ...report, message: `${report.message}${running}; hung in the schedule of seed ${seed}, ${choices.length} steps in` },
      result,
      index,
    );
  }

  /** A worker of the rounds that dies ends every wait of the rounds (the leader's, the followers'). */
  private watch<A extends Actor<unknown>>(a: A): A {
    const bell = new Bell(this.bell!, this.rt!.control);
    a.dead.catch(() => bell.abort(AbortReason.WORKER_DIED));
    return a;
  }

  /** The shared memory of the explored sandbox (valid until close). */
  mem(): Mem {
    if (this.rt === null) throw new Error('explorer not started');
    return this.rt.mem;
  }

  /** The scheduler's event trace of the last schedule. */
  trace() {
    return this.sched?.trace() ?? [];
  }

  /** Events of the last schedule that did not fit in its trace. */
  traceDropped(): number {
    return this.sched?.traceDropped() ?? 0;
  }

  /** Actor names by thread id, for traces. */
  actorNames(): Map<number, string> {
    const m = new Map<number, string>();
    if (this.rt) {
      m.set(this.rt.vmm.tid, 'vmm');
      for (const v of this.vmms.slice(1)) m.set(v.tid, v.name);
      // A runner's VM is known once a batch of it ended (a hang in the first batch has none yet).
      for (const a of this.runners) m.set(a.tid, a.vm >= 0 ? `vcpu ${a.index} (vm ${a.vm})` : `vcpu ${a.index}`);
    }
    return m;
  }

  /**
   * Shrinks a failing schedule: first fewer workload operations, then few context switches
   * (ddmin over its switch points, shrink.ts). The result carries the workload it ran with and
   * the choices the last failing run really made, so it replays exactly.
   */
  async shrink(failing: ScheduleResult, budget = 200): Promise<ScheduleResult & { workload: ExploreWorkload }> {
    const invariant = failing.violations[0]?.invariant;
    // First fewer workload operations: the same seed with half the VMM ops or guest accesses,
    // kept while the run still breaks the same invariant (the choices are then that run's).
    let tries = 0;
    const keeps = async (w: ExploreWorkload): Promise<boolean> => {
      const prev = this.cfg.workload;
      this.cfg.workload = w;
      tries++;
      const r = await this.runSchedule(failing.seed);
      if (fails(r) && r.violations[0]?.invariant === invariant) {
        failing = r;
        return true;
      }
      this.cfg.workload = prev;
      return false;
    };
    // Half the ops or accesses, else one fewer (a seed's schedule changes with them, so a smaller
    // count that still fails is found by trying a few), then one VMM thread instead of several.
    for (const key of ['vmmOps', 'accesses'] as const) {
      while (this.cfg.workload[key] > 1 && tries < budget / 4) {
        const w = this.cfg.workload;
        if (!(await keeps({ ...w, [key]: Math.floor(w[key] / 2) })) && !(await keeps({ ...w, [key]: w[key] - 1 }))) break;
      }
    }
    if (this.cfg.workload.vmmThreads > 1 && tries < budget / 4) await keeps({ ...this.cfg.workload, vmmThreads: 1 });
    const shrunk = await ddminSwitches(
      failing,
      async (seed, forced) => {
        const r = await this.runSchedule(seed, forced);
        return fails(r) ? { ...r, choices: r.choices.slice(0, r.steps) } : null;
      },
      Math.max(1, budget - tries),
    );
    return { ...shrunk, workload: this.cfg.workload };
  }

  /** Shuts the workers down; a schedule still running rejects, and no other one starts. */
  async close(): Promise<void> {
    this.closed = true;
    await this.rt?.shutdown();
    this.rt = null;
  }
}

/**
 * Why a batch ended early, by its first cause rather than its echoes: a dead worker, then a
 * follower's own error, then the leader's (an abort the others met is what the cause did to them).
 */
function failureOf(rt: Runtime, last: RoundRecord, followed: ReadonlyArray<PromiseSettledResult<unknown>>): Error {
  const crash = rt.crashes[0];
  if (crash !== undefined) return new WorkerCrashError({ ...crash, message: `${crash.message} (in schedule ${last.seed})` });
  const own = followed.find(
    (r): r is PromiseRejectedResult => r.status === 'rejected' && (r.reason as Error | undefined)?.name !== 'SyncAbortError',
  );
  if (own !== undefined) return new Error(`schedule ${last.seed}: a worker failed: ${own.reason}`);
  return new Error(`schedule ${last.seed}: the leading VMM thread failed: ${last.failed ?? 'aborted'}`);
}

/** A batch the round watchdog declared hung: the schedule it hung in, as far as it went, and its index in the batch. */
export class ScheduleHangError extends WorkerCrashError {
  constructor(
    report: CrashReport,
    readonly result: ScheduleResult,
    readonly index: number,
  ) {
    super(report);
    this.name = 'ScheduleHangError';
  }
}

/**
 * Declares a batch hung when no new round of it starts within `timeoutMs` (a schedule takes
 * milliseconds): the report names who waits on what and the schedule (read before the abort,
 * whose unwinding would move the scheduler on), and every wait of the sandbox and of the rounds
 * is aborted so that the threads unwind.
 */
function roundWatchdog(
  rt: Runtime,
  bell: Bell,
  timeoutMs: number,
  hangOf: (report: CrashReport) => ScheduleHangError,
): { hung: Promise<never>; stop: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    let gen = bell.generation();
    let since = performance.now();
    timer = setInterval(() => {
      const now = performance.now();
      if (bell.generation() !== gen) {
        gen = bell.generation();
        since = now;
        return;
      }
      if (now - since < timeoutMs) return;
      clearInterval(timer);
      const err = hangOf({
        actor: 'explorer',
        kind: 'timeout',
        message: `no schedule of the batch finished within ${timeoutMs} ms; ${rt.whoWaits()}`,
      });
      rt.crashes.push(err.report);
      rt.control.abort(AbortReason.TIMEOUT);
      bell.abort(AbortReason.TIMEOUT);
      reject(err);
    }, WATCHDOG_TICK_MS);
    timer.unref();
  });
  hung.catch(() => undefined);
  return { hung, stop: () => clearInterval(timer) };
}

/** What the rounds' scheduler runs with: the strategy, PCT's depth, the step limit, the points mode. */
function scheduling(cfg: ExploreConfig): Pick<RoundPlan, 'strategy' | 'depth' | 'maxSteps' | 'points'> {
  return { strategy: cfg.strategy, depth: cfg.depth, maxSteps: cfg.maxSteps, points: cfg.points ?? DEFAULT_POINTS };
}

/** Whether a schedule broke an invariant, deadlocked or hung (a step limit is reported as a violation). */
export function fails(r: ScheduleResult): boolean {
  return r.outcome === 'violation' || r.outcome === 'deadlock' || r.outcome === 'hang';
}

/** Context switches in a list of choices. */
export function switchesIn(choices: readonly number[]): number {
  let n = 0;
  for (let i = 1; i < choices.length; i++) if (choices[i] !== choices[i - 1]) n++;
  return n;
}
