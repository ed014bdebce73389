// Seeded exploration of interleavings: one small sandbox, reused for every schedule, whose VMM
// and vCPU workers run in the controlled mode of the sync layer. Each schedule is a seed (plus,
// for replay, the forced choices); a schedule that breaks an invariant is saved, replayed, and
// shrunk to fewer context switches.

import { BUGS, type BugName, bugMask, setBugs } from '../gmem/bugs.js';
import type { PolicyName } from '../gmem/policy.js';
import type { VmTypeName } from '../kvm/vm.js';
import type { Mem } from '../shm/layout.js';
import { SchedControl, SchedOutcome, type StrategyName } from '../shm/sched.js';
import { subSeed } from '../shm/prng.js';
import type { Violation } from '../vcpu-workers/violations.js';
import type { WorkloadResult } from '../vcpu-workers/workload.js';
import { auditQuiescent } from './audit.js';
import { resetSandboxMemory } from './build.js';
import { SandboxClosedError } from './errors.js';
import { Runtime, type VcpuActor } from './runtime.js';
import { parseMix } from './stress-ops.js';

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
}

export const DEFAULT_WORKLOAD: ExploreWorkload = {
  vmType: 'snp',
  vms: 1,
  pages: 4,
  vcpus: 2,
  accesses: 8,
  writeRatio: 0.5,
  ops: 'punch=3,convert=1,fallocate=1,prefault=1',
  vmmOps: 3,
  populateFirstVm: false,
};

/** Workloads that give a bug a way to show: populate needs a launching SNP VM beside a running one. */
export const BUG_WORKLOADS: Partial<Record<BugName, Partial<ExploreWorkload>>> = {
  'populate-no-uptodate-check': { vmType: 'sw-protected', vms: 2, populateFirstVm: true, ops: 'populate=1', vmmOps: 4, vcpus: 1, accesses: 10 },
  'get-pfn-unlocked-prepare': { ops: 'fallocate=1', vmmOps: 1, pages: 2 },
};

const PCT_STEPS = 100;

export interface ExploreConfig {
  policy: PolicyName;
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
  schedulesRun = 0;
  private closed = false;

  constructor(readonly cfg: ExploreConfig) {
    parseMix(cfg.workload.ops);
    if (cfg.bug !== null && !(cfg.bug in BUGS)) throw new Error(`bug: unknown planted bug '${cfg.bug}'`);
  }

  private async runtime(): Promise<Runtime> {
    if (this.closed) throw new SandboxClosedError('Explorer.runSchedule', 'shutdown');
    if (this.rt !== null) return this.rt;
    const w = this.cfg.workload;
    const rt = await Runtime.start({
      sandbox: { policy: this.cfg.policy, memory: '1MiB', gpaSpace: '256KiB', userMemory: '256KiB', gmemSpace: '1MiB', maxVms: Math.max(2, w.vms), watchdogMs: 0 },
      callTimeoutMs: 20_000,
    });
    // close() while the workers were starting: they would be nobody's to stop.
    if (this.closed) {
      await rt.shutdown();
      throw new SandboxClosedError('Explorer.runSchedule', 'shutdown');
    }
    await rt.call(rt.vmm, () => rt.vmm.api.init(rt.descriptor, rt.vmm.tid, { mode: 'controlled', platform: 'direct' }));
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
    await rt.call(rt.vmm, () => rt.vmm.api.init(rt.descriptor, rt.vmm.tid, { mode: 'controlled', platform: 'direct' }));
    const layout = await rt.call(rt.vmm, () =>
      rt.vmm.api.setupStress({ vmType: w.vmType, vms: w.vms, pages: w.pages, privateShare: 1, populateFirstVm: w.populateFirstVm }),
    );
    const runVms = w.populateFirstVm ? layout.vms.slice(1) : layout.vms;
    for (const a of this.runners) {
      const vmIndex = Math.floor(this.runners.indexOf(a) / w.vcpus);
      a.vm = runVms[vmIndex];
      await rt.call(a, () => a.api.init({ buffers: rt.descriptor.buffers, policy: this.cfg.policy, tid: a.tid, vm: a.vm, mode: 'controlled', platform: 'direct' }));
    }
    sched.configure({
      strategy: forced ? 'replay' : this.cfg.strategy,
      seed,
      actors: 1 + this.runners.length,
      maxSteps: this.cfg.maxSteps,
      depth: this.cfg.depth,
      // PCT places its change points within this many steps: about the length of a schedule of
      // the default workload (a fixed number, so that a seed alone decides the interleaving).
      estimatedSteps: PCT_STEPS,
      ...(forced ? { forced } : {}),
    });
    const vmmJob = rt.call(rt.vmm, () => rt.vmm.api.runOps({ mix: parseMix(w.ops), rate: 0, maxPages: 2, seed: subSeed(seed, 0), durationMs: 0, maxOps: w.vmmOps }));
    const jobs = this.runners.map((a, i) =>
      rt.call(a, () =>
        a.api.run({
          gfnStart: 0,
          gfnCount: w.pages,
          pattern: 'random',
          writeRatio: w.writeRatio,
          hotRatio: 0.8,
          seed: subSeed(seed, i + 1),
          writerIndex: i % w.vcpus,
          writers: w.vcpus,
          durationMs: 0,
          maxAccesses: w.accesses,
          multiVm: w.vms > 1,
        }),
      ),
    );
    const settled = await Promise.allSettled([vmmJob, ...jobs]);
    this.schedulesRun++;
    const violations: Violation[] = [];
    for (const r of settled.slice(1)) if (r.status === 'fulfilled') violations.push(...(r.value as WorkloadResult).violations);
    const crashed = settled.find((r) => r.status === 'rejected' && !/aborted/.test(String((r as PromiseRejectedResult).reason)));
    if (crashed) throw new Error(`schedule ${seed}: a worker failed: ${(crashed as PromiseRejectedResult).reason}`);
    const outcome = sched.outcome();
    if (outcome === SchedOutcome.DEADLOCK) {
      const who = sched.blocked().map((b) => `thread ${b.tid} waits on word ${b.word}`).join('; ');
      violations.push({ invariant: 'liveness', by: 'scheduler', detail: `deadlock: no actor can run (${who})` });
    } else if (outcome === SchedOutcome.RUNNING) {
      violations.push(...auditQuiescent(rt.mem).violations);
    }
    return {
      seed,
      steps: sched.steps(),
      switches: sched.switches(),
      outcome: violations.length > 0 ? (outcome === SchedOutcome.DEADLOCK ? 'deadlock' : 'violation') : outcome === SchedOutcome.STEP_LIMIT ? 'step-limit' : 'ok',
      violations,
      choices: sched.log(),
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
      for (const a of this.runners) m.set(a.tid, `vcpu ${a.index} (vm ${a.vm})`);
    }
    return m;
  }

  /**
   * Shrinks a failing schedule to few context switches (delta debugging over its switch
   * points): a candidate keeps a subset of the switches, forcing the thread chosen at each kept
   * one and running without preemption everywhere else; a subset is kept when the run still
   * breaks an invariant. The result carries the choices the last failing run really made, so it
   * replays exactly.
   */
  async shrink(failing: ScheduleResult, budget = 200): Promise<ScheduleResult> {
    const fails = (r: ScheduleResult): boolean => r.outcome === 'violation' || r.outcome === 'deadlock';
    const c = failing.choices;
    let switches: number[] = [];
    for (let i = 1; i < c.length; i++) if (c[i] !== c[i - 1]) switches.push(i);
    let best = failing;
    let tries = 0;
    const attempt = async (keep: number[]): Promise<ScheduleResult | null> => {
      tries++;
      const last = keep.length ? keep[keep.length - 1] + 1 : 1;
      // -1: no decision there (the replay runs the current thread on); the first step is kept
      // so that the run starts with the same thread.
      const forced = new Array<number>(last).fill(-1);
      forced[0] = c[0];
      for (const i of keep) forced[i] = c[i];
      const r = await this.runSchedule(failing.seed, forced);
      return fails(r) ? { ...r, choices: r.choices.slice(0, r.steps) } : null;
    };
    // ddmin over the switch points.
    let n = 2;
    while (switches.length > 0 && tries < budget) {
      const size = Math.ceil(switches.length / n);
      let reduced = false;
      for (let k = 0; k < n && tries < budget; k++) {
        const complement = [...switches.slice(0, k * size), ...switches.slice((k + 1) * size)];
        const r = await attempt(complement);
        if (r) {
          switches = complement;
          best = r;
          n = Math.max(n - 1, 2);
          reduced = true;
          break;
        }
      }
      if (!reduced) {
        if (n >= switches.length) break;
        n = Math.min(n * 2, switches.length);
      }
    }
    // The exact choices of the smallest failing run, cut after its last kept switch.
    const cut = switches.length ? switches[switches.length - 1] + 1 : 1;
    return { ...best, choices: best.choices.slice(0, Math.max(cut, 1)) };
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
