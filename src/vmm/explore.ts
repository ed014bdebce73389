// Seeded exploration of interleavings: one small sandbox, reused for every schedule, whose VMM
// and vCPU workers run in the controlled mode of the sync layer. Each schedule is a seed (plus,
// for replay, the forced choices); a schedule that breaks an invariant is saved, replayed, and
// shrunk to fewer context switches.

import { BUGS, type BugName, bugMask, setBugs } from '../gmem/bugs.js';
import type { PolicyName } from '../gmem/policy.js';
import type { KernelVersionName } from '../gmem/version.js';
import type { VmTypeName } from '../kvm/vm.js';
import type { Mem } from '../shm/layout.js';
import { SchedControl, SchedOutcome, type StrategyName } from '../shm/sched.js';
import { Prng, subSeed } from '../shm/prng.js';
import type { Violation } from '../vcpu-workers/violations.js';
import type { WorkloadResult } from '../vcpu-workers/workload.js';
import { auditQuiescent, auditTeardown } from './audit.js';
import { describeDeadlock } from './deadlock.js';
import { ddminSwitches } from './shrink.js';
import { takeOnlineReports } from '../vcpu-workers/online-audit.js';
import { resetSandboxMemory } from './build.js';
import { SandboxClosedError } from './errors.js';
import { type Actor, Runtime, type VcpuActor } from './runtime.js';
import type { VmmWorkerApi } from './vmm-worker.js';
import { type VmmOp, type VmmOpsResult, parseMix } from './stress-ops.js';

export interface ExploreWorkload {
  vmType: VmTypeName;
  vms: number;
  /** Guest pages every VM maps: few, so actors collide. */
  pages: number;
  vcpus: number;
  accesses: number;
  writeRatio: number;
  ops: string;
  vmmOps: number;
  populateFirstVm: boolean;
  /** Share of a vCPU's steps that are KVM_PRE_FAULT_MEMORY on its own vCPU (racing the VMM's ioctls). */
  prefaultRatio: number;
  /**
   * 'random': each schedule draws its layout (one VM only): the range at a random gfn, split in
   * two memslots, at offsets into one file or two; 'identity': one slot, gfn i at index i.
   */
  layout: 'random' | 'identity';
  /** VMM threads issuing the ops (their share of vmmOps each), so that two ioctls overlap. */
  vmmThreads: number;
  /**
   * Share of schedules (of a one-VM workload) run with two VMs instead (see scheduleShape): two
   * running VMs bound to one inode by link, or the VM with an SNP VM launching beside it.
   */
  multiVmShare: number;
}

export const DEFAULT_WORKLOAD: ExploreWorkload = {
  vmType: 'snp',
  vms: 1,
  pages: 4,
  vcpus: 2,
  accesses: 8,
  writeRatio: 0.5,
  ops: 'punch=3,convert=1,fallocate=1,prefault=1,populate=1,memslot=1,memflags=1,plainslot=1,badbind=1,close=1,hwpoison=1,fwfail=1,oom=1,signal=1',
  vmmOps: 4,
  populateFirstVm: false,
  prefaultRatio: 0.15,
  layout: 'random',
  vmmThreads: 2,
  multiVmShare: 0.25,
};

/** The most VMM threads a controlled workload runs. */
export const MAX_VMM_THREADS = 4;

export interface ScheduleShape {
  /** Running VMs (with populateFirstVm, VM 0 of them launches instead), bound to one inode by link when several. */
  vms: number;
  populateFirstVm: boolean;
  /** An SNP VM launching beside them on a guest_memfd of its own, for 'populate'. */
  launchingBeside: boolean;
}

/**
 * The VMs a schedule runs: the workload's or, for multiVmShare of one-VM schedules, half the time
 * two running VMs on one inode (link, the vCPUs split between them) and half the time the one
 * VM with an SNP VM launching beside it (populate). The vCPU actors are the same in every shape.
 */
export function scheduleShape(w: ExploreWorkload, seed: number): ScheduleShape {
  const plain = { vms: w.vms, populateFirstVm: w.populateFirstVm, launchingBeside: false };
  if (w.vms !== 1 || w.populateFirstVm || w.multiVmShare === 0) return plain;
  const r = new Prng(subSeed(seed, 98)).next();
  if (r >= w.multiVmShare) return plain;
  return r < w.multiVmShare / 2 && w.vcpus > 1 ? { ...plain, vms: 2 } : { ...plain, launchingBeside: true };
}

/** Ops for VMM thread `t` of `threads`: an even split of `total`, the first threads taking the rest. */
export function opsForThread(total: number, threads: number, t: number): number {
  return Math.floor(total / threads) + (t < total % threads ? 1 : 0);
}

/** Workloads that give a bug a way to show: populate needs a launching SNP VM beside a running one. */
export const BUG_WORKLOADS: Partial<Record<BugName, Partial<ExploreWorkload>>> = {
  'populate-no-uptodate-check': { vmType: 'sw-protected', vms: 2, populateFirstVm: true, ops: 'populate=1', vmmOps: 4, vcpus: 1, accesses: 10 },
  'get-pfn-unlocked-prepare': { ops: 'fallocate=1', vmmOps: 1, pages: 2 },
  'memslot-update-skips-synchronize-srcu': { vmType: 'sw-protected', ops: 'memslot=1', vmmOps: 1 },
};

const PCT_STEPS = 100;

export interface ExploreConfig {
  /** The modelled kernel; `policy` is the older name of the same choice (one of them, or neither for the default). */
  kernel?: KernelVersionName;
  policy?: PolicyName;
  bug: BugName | null;
  strategy: StrategyName;
  depth: number;
  maxSteps: number;
  workload: ExploreWorkload;
}

export interface ScheduleResult {
  seed: number;
  steps: number;
  switches: number;
  outcome: 'ok' | 'violation' | 'deadlock' | 'step-limit';
  violations: Violation[];
  choices: number[];
  /** VMM ops each kind ran (errors included), over every VMM thread, and the VMs it ran. */
  ops: Record<VmmOp, number>;
  shape: ScheduleShape;
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

export function workloadFor(bug: BugName | null, over: Partial<ExploreWorkload> = {}): ExploreWorkload {
  return { ...DEFAULT_WORKLOAD, ...(bug ? BUG_WORKLOADS[bug] : {}), ...over };
}

export class Explorer {
  private rt: Runtime | null = null;
  private sched: SchedControl | null = null;
  private runners: VcpuActor[] = [];
  /** The VMM threads: the runtime's VMM worker, then the others. */
  private vmms: Array<Actor<VmmWorkerApi>> = [];
  schedulesRun = 0;
  private closed = false;

  /** The configuration schedules run with; shrinking may reduce its workload. */
  cfg: ExploreConfig;

  constructor(cfg: ExploreConfig) {
    this.cfg = { ...cfg, workload: { ...cfg.workload } };
    parseMix(cfg.workload.ops);
    if (cfg.bug !== null && !(cfg.bug in BUGS)) throw new Error(`bug: unknown planted bug '${cfg.bug}'`);
    const t = cfg.workload.vmmThreads;
    if (!Number.isInteger(t) || t < 1 || t > MAX_VMM_THREADS) throw new Error(`vmmThreads: must be an integer from 1 to ${MAX_VMM_THREADS}, got ${t}`);
    const m = cfg.workload.multiVmShare;
    if (!(m >= 0 && m <= 1)) throw new Error(`multiVmShare: must be between 0 and 1, got ${m}`);
  }

  private async runtime(): Promise<Runtime> {
    if (this.closed) throw new SandboxClosedError('Explorer.runSchedule', 'shutdown');
    if (this.rt !== null) return this.rt;
    const w = this.cfg.workload;
    const rt = await Runtime.start({
      // Room for one more VM than the workload's (scheduleShape's launching VM), and its user memory.
      sandbox: { ...(this.cfg.kernel !== undefined ? { kernel: this.cfg.kernel } : {}), ...(this.cfg.policy !== undefined ? { policy: this.cfg.policy } : {}), memory: '1MiB', gpaSpace: '256KiB', userMemory: Math.max(256 << 10, (w.vms + 1) * w.pages * 4096), gmemSpace: '1MiB', maxVms: Math.max(2, w.vms + 1), watchdogMs: 0 },
      callTimeoutMs: 20_000,
    });
    // close() while the workers were starting: they would be nobody's to stop.
    if (this.closed) {
      await rt.shutdown();
      throw new SandboxClosedError('Explorer.runSchedule', 'shutdown');
    }
    await rt.call(rt.vmm, () => rt.vmm.api.init(rt.descriptor, rt.vmm.tid, { mode: 'controlled', platform: 'direct' }));
    this.vmms = [rt.vmm];
    const running = w.vms - (w.populateFirstVm ? 1 : 0);
    for (let v = 0; v < running; v++) for (let c = 0; c < w.vcpus; c++) await rt.addVcpu(`vm${v}`, -1, c);
    this.runners = [...rt.vcpus];
    this.rt = rt;
    this.sched = new SchedControl(rt.mem);
    return rt;
  }

  /** Runs one schedule; `forced` replays choices (strategy 'replay' then applies past them). */
  async runSchedule(seed: number, forced?: readonly number[]): Promise<ScheduleResult> {
    const rt = await this.runtime();
    const sched = this.sched!;
    const w = this.cfg.workload;
    resetSandboxMemory(rt.descriptor);
    setBugs(rt.mem, this.cfg.bug ? bugMask([this.cfg.bug]) : 0);
    // Each round trip to a worker costs a wake-up of that thread and one of ours (0.1-0.7 ms on
    // this machine): calls are posted back to back wherever a worker may take them in order.
    // The VMM inits, then sets up, and creates every running vCPU itself, so that their ids and
    // slots do not depend on which vCPU worker comes first.
    // The workload's VMM threads (shrinking may drop to one; the others then sit this one out).
    while (this.vmms.length < w.vmmThreads) this.vmms.push(rt.addVmmThread());
    const vmms = this.vmms.slice(0, w.vmmThreads);
    const shape = scheduleShape(w, seed);
    const [, layout] = await Promise.all([
      rt.call(rt.vmm, () => rt.vmm.api.init(rt.descriptor, rt.vmm.tid, { mode: 'controlled', platform: 'direct' })),
      rt.call(rt.vmm, () =>
        rt.vmm.api.setupStress({ vmType: w.vmType, vms: shape.vms, pages: w.pages, privateShare: 1, populateFirstVm: shape.populateFirstVm,
          launchingBeside: shape.launchingBeside,
          // Every shape runs the same vCPU actors, split over its running VMs.
          vcpusTotal: w.vcpus * (w.vms - (w.populateFirstVm ? 1 : 0)),
          vmmThreads: vmms.length,
          ...(w.layout === 'random' ? { layoutSeed: subSeed(seed, 99) } : {}),
        }),
      ),
    ]);
    sched.configure({
      strategy: forced ? 'replay' : this.cfg.strategy,
      seed,
      actors: vmms.length + this.runners.length,
      maxSteps: this.cfg.maxSteps,
      depth: this.cfg.depth,
      // PCT places its change points within this many steps: about the length of a schedule of
      // the default workload (a fixed number, so that a seed alone decides the interleaving).
      estimatedSteps: PCT_STEPS,
      ...(forced ? { forced } : {}),
    });
    const opsCfg = (t: number) => {
      const share = opsForThread(w.vmmOps, vmms.length, t);
      // maxOps 0 is "no limit" to runVmmOps: a thread with no share gets no ops to draw from.
      return { mix: parseMix(share > 0 ? w.ops : ''), rate: 0, maxPages: 2, seed: subSeed(seed, t === 0 ? 0 : 100 + t), durationMs: 0, maxOps: share, signalTids: [...vmms, ...this.runners].map((r) => r.tid) };
    };
    // The other VMM threads take the layout the first built (its fds are the process's), then run
    // their share of the ops: posted back to back, as for the vCPUs below.
    const vmmJobs = vmms.map((v, t) => {
      if (t === 0) return rt.call(v, () => v.api.runOps(opsCfg(0)));
      const init = rt.call(v, () => v.api.init(rt.descriptor, v.tid, { mode: 'controlled', platform: 'direct' }));
      const attach = rt.call(v, () => v.api.attachStress(layout.shared, t));
      const run = rt.call(v, () => v.api.runOps(opsCfg(t)));
      return Promise.all([init, attach, run]).then(([, , r]) => r);
    });
    // A vCPU worker takes its init, then its run: one wake-up.
    const jobs = this.runners.map((a, i) => {
      const created = layout.vcpus[i];
      a.vm = created.vm;
      const init = rt.call(a, () =>
        a.api.init({ buffers: rt.descriptor.buffers, kernel: rt.descriptor.kernel, tid: a.tid, vm: a.vm, mode: 'controlled', platform: 'direct', created }),
      );
      const run = rt.call(a, () =>
        a.api.run({
          gfnStart: layout.gfnStart,
          gfnCount: w.pages,
          pattern: 'random',
          writeRatio: w.writeRatio,
          hotRatio: 0.8,
          seed: subSeed(seed, i + 1),
          // One writer per page over every VM: linked VMs share the folios, so a page another
          // VM's vCPU owned could be overwritten under this one's feet.
          writerIndex: i,
          writers: this.runners.length,
          durationMs: 0,
          maxAccesses: w.accesses,
          multiVm: shape.vms > 1,
          prefaultRatio: w.prefaultRatio,
        }),
      );
      return Promise.all([init, run]).then(([, r]) => r);
    });
    const settled = await Promise.allSettled([...vmmJobs, ...jobs]);
    this.schedulesRun++;
    const violations: Violation[] = [];
    for (const r of settled.slice(vmmJobs.length)) if (r.status === 'fulfilled') violations.push(...(r.value as WorkloadResult).violations);
    const ops = parseMix('');
    for (const r of settled.slice(0, vmmJobs.length)) if (r.status === 'fulfilled') for (const [op, n] of Object.entries((r.value as VmmOpsResult).ops)) ops[op as VmmOp] += n;
    const crashed = settled.find((r) => r.status === 'rejected' && !/aborted/.test(String((r as PromiseRejectedResult).reason)));
    if (crashed) throw new Error(`schedule ${seed}: a worker failed: ${(crashed as PromiseRejectedResult).reason}`);
    const outcome = sched.outcome();
    violations.push(...takeOnlineReports(rt.mem));
    if (outcome === SchedOutcome.STEP_LIMIT) {
      // A default schedule takes a few hundred steps: one that runs out of them has an actor
      // spinning without end (a livelock), which no kernel may do.
      violations.push({ invariant: 'liveness', by: 'scheduler', detail: `step limit: ${sched.steps()} steps without finishing; an actor spins (a livelock) or the workload has no end (accesses 0)` });
    }
    if (outcome === SchedOutcome.DEADLOCK) {
      violations.push({ invariant: 'liveness', by: 'scheduler', detail: `deadlock: no actor can run: ${describeDeadlock(rt.mem, sched, this.actorNames())}` });
    } else if (outcome === SchedOutcome.RUNNING) {
      violations.push(...auditQuiescent(rt.mem).violations);
      // Every fd closed and every VM destroyed: a release or a free that touches freed memory
      // shows here, and so does anything left behind.
      await rt.call(rt.vmm, () => rt.vmm.api.closeAll());
      violations.push(...auditTeardown(rt.mem).violations);
    }
    return {
      seed,
      steps: sched.steps(),
      switches: sched.switches(),
      outcome: violations.length > 0 ? (outcome === SchedOutcome.DEADLOCK ? 'deadlock' : 'violation') : outcome === SchedOutcome.STEP_LIMIT ? 'step-limit' : 'ok',
      violations,
      choices: sched.log(),
      ops,
      shape,
    };
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
      for (const a of this.runners) m.set(a.tid, `vcpu ${a.index} (vm ${a.vm})`);
    }
    return m;
  }

  /**
   * Shrinks a failing schedule: first fewer workload operations, then few context switches
   * (ddmin over its switch points, shrink.ts). The result carries the workload it ran with and
   * the choices the last failing run really made, so it replays exactly.
   */
  async shrink(failing: ScheduleResult, budget = 200): Promise<ScheduleResult & { workload: ExploreWorkload }> {
    const fails = (r: ScheduleResult): boolean => r.outcome === 'violation' || r.outcome === 'deadlock';
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

/** Context switches in a list of choices. */
export function switchesIn(choices: readonly number[]): number {
  let n = 0;
  for (let i = 1; i < choices.length; i++) if (choices[i] !== choices[i - 1]) n++;
  return n;
}
