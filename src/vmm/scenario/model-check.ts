// Model checking of user scenarios: the steps of a scenario run in order, and each `parallel`
// group's leaf steps run as actors of a controlled run (one at a time, token passing at every
// sync point, src/shm/sched.ts). The exhaustive mode enumerates every schedule of the groups
// with at most k preemptions (CHESS's bound: a preemption is choosing another actor while the
// running one could go on; a choice where it blocks or exits is free), by depth-first search
// over the scheduler's choice points, replaying each schedule from its forced choices on one
// reused sandbox. The random mode runs seeded random walks. After each schedule the steps'
// expectations and the auditor (quiescent, then teardown) decide pass or fail; the first
// failing schedule is returned, and can be shrunk and saved for `replay`.

import type { PointsMode } from '../../shm/points.js';
import { BUGS, type BugName, bugMask, setBugs } from '../../gmem/bugs.js';
import { SchedControl, type SchedTraceEvent } from '../../shm/sched/control.js';
import type { Mem } from '../../shm/layout.js';
import { SchedOutcome } from '../../shm/sched/layout.js';
import { subSeed } from '../../shm/prng.js';
import type { Outcome } from '../../vcpu-workers/outcome.js';
import type { Violation } from '../../checker/violations.js';
import { auditQuiescent, auditTeardown } from '../../checker/audit.js';
import { describeDeadlock } from '../../checker/deadlock.js';
import { ddminSwitches } from '../explore/shrink.js';
import { takeLockOrderReports, takeOnlineReports } from '../../checker/online.js';
import { resetSandboxMemory } from '../sandbox/build.js';
import { Runtime, type VcpuActor } from '../sandbox/runtime.js';
import { matchesPartial, toGuestOp } from './runner.js';
import { type IoctlStep, type LeafStep, type Scenario, type Step } from './schema.js';
import { ScenarioError } from '../io/problems.js';

const GUEST = new Set(['guest_read', 'guest_write', 'pvalidate', 'pre_fault_memory']);
/** Steps the scripted runner uses to force one interleaving; a model checker explores them all instead. */
const SCRIPTING = new Set(['pause', 'resume', 'await_held', 'settle']);
/** Steps the controller runs itself: they are no actor, so they cannot be part of a parallel group. */
const CONTROLLER = new Set(['signal', 'stats']);

export type McMode = 'exhaustive' | 'random';

export interface ModelCheckOptions {
  mode: McMode;
  /** Exhaustive mode: the preemption bound k. */
  preemptions: number;
  /** The most schedules to run; an exhaustive search stopped by it is not complete. */
  maxSchedules: number;
  /** Random mode: the first seed (schedule i uses seed + i). */
  seed?: number;
  /** A planted bug to enable (src/gmem/bugs.ts). */
  bug?: BugName | null;
  /** Scheduler steps per parallel group before the schedule is cut (step-limit). */
  maxSteps?: number;
  /**
   * Which writes are scheduling points too (default 'locks'). With 'shared' every write to shared
   * state is a choice point of the exhaustive search as well (no sleep sets there: it forces every
   * choice it tries).
   */
  points?: PointsMode;
}

export interface McStepResult {
  index: string;
  op: string;
  result: string;
  pass: boolean;
  value?: unknown;
  mismatch?: string;
}

export interface McSchedule {
  seed: number;
  /** The actor chosen at each scheduler step, every parallel group's steps one after another. */
  choices: number[];
  /** The actors that could have been chosen at each step. */
  candidates: number[][];
  /** Indices into `choices` where a parallel group's first choice is (no actor ran before it). */
  groupStarts: number[];
  preemptions: number;
  outcome: 'ok' | 'violation' | 'deadlock' | 'step-limit';
  /** Step expectations that did not hold ("step 5.1 guest_read: expected ok, got vc"). */
  failures: string[];
  violations: Violation[];
  steps: McStepResult[];
}

export interface ModelCheckResult {
  mode: McMode;
  preemptions: number;
  schedules: number;
  /** Every schedule within the bound was run (exhaustive mode, no cap hit, none cut by the step limit). */
  complete: boolean;
  capHit: boolean;
  /** Schedules cut by the step limit (they passed as far as they went). */
  stepLimited: number;
  failing?: McSchedule;
}

/** A saved failing schedule of a scenario: what `replay` needs to rerun it exactly. */
export interface ScenarioScheduleFile {
  version: 1;
  kind: 'scenario';
  scenarioPath: string | null;
  /** The scenario as written (not the parsed form), so the file replays on its own. */
  scenario: unknown;
  mode: McMode;
  preemptions: number;
  bug: BugName | null;
  maxSteps: number;
  /** Absent: 'locks' (and in files saved before the mode existed). */
  points?: PointsMode;
  seed: number;
  choices: number[];
  outcome: McSchedule['outcome'];
  failures: string[];
  violations: Violation[];
}

export function fails(r: McSchedule): boolean {
  return r.outcome === 'violation' || r.outcome === 'deadlock';
}

/**
 * The rules a scenario must keep to be model checked, beyond the scenario schema: scripted
 * interleavings have no place (every interleaving is explored), and every leaf of a parallel
 * group is its own actor.
 */
export function checkModelCheckable(s: Scenario): void {
  const problems: string[] = [];
  let groups = 0;
  s.steps.forEach((st: Step, i) => {
    if (SCRIPTING.has(st.op))
      problems.push(
        `steps.${i}: '${st.op}' scripts one interleaving; a model checker explores all of them (remove pause/resume/await_held/settle)`,
      );
    if (st.op !== 'parallel') return;
    groups++;
    const owners = new Map<string, number>();
    st.steps.forEach((c, j) => {
      const path = `steps.${i}.steps.${j}`;
      if (SCRIPTING.has(c.op)) problems.push(`${path}: '${c.op}' scripts one interleaving; a model checker explores all of them`);
      else if (CONTROLLER.has(c.op))
        problems.push(`${path}: '${c.op}' runs on the controller, which is no actor; move it out of the parallel group`);
      else {
        // One VMM worker, one worker per vCPU: two steps on one of them would run one after
        // the other, not in parallel, so the group would not mean what it says.
        const owner = GUEST.has(c.op) ? `vCPU ${(c as { vcpu: number }).vcpu} of VM '${(c as { vm: string }).vm}'` : 'the VMM';
        const other = owners.get(owner);
        if (other !== undefined) {
          problems.push(
            `${path}: steps.${i}.steps.${other} already runs on ${owner}; each step of a parallel group needs its own actor (one VMM thread for ioctl steps, one thread per vCPU for guest steps), so at most one ioctl step and one step per vCPU per group`,
          );
        } else owners.set(owner, j);
      }
    });
  });
  if (groups === 0) problems.push('steps: no parallel group; there is nothing to interleave');
  if (problems.length) throw new ScenarioError(problems);
}

/** Preemptions in a schedule: choices of another actor at steps where the running one was a candidate. */
export function countPreemptions(
  choices: readonly number[],
  candidates: readonly number[][],
  groupStarts: readonly number[],
  upTo = choices.length,
): number {
  const starts = new Set(groupStarts);
  let n = 0;
  for (let i = 1; i < upTo; i++) {
    if (starts.has(i)) continue;
    const prev = choices[i - 1];
    if (choices[i] !== prev && candidates[i].includes(prev)) n++;
  }
  return n;
}

export class ModelChecker {
  private rt: Runtime | null = null;
  private sched: SchedControl | null = null;
  private readonly maxSteps: number;
  private readonly bugMask: number;
  schedulesRun = 0;

  constructor(
    readonly scenario: Scenario,
    readonly opts: ModelCheckOptions,
  ) {
    checkModelCheckable(scenario);
    if (opts.bug && !(opts.bug in BUGS)) throw new Error(`bug: unknown planted bug '${opts.bug}'`);
    this.bugMask = opts.bug ? bugMask([opts.bug]) : 0;
    this.maxSteps = opts.maxSteps ?? 20_000;
  }

  private async runtime(): Promise<Runtime> {
    if (this.rt !== null) return this.rt;
    const s = this.scenario;
    // A small sandbox: it is wiped before every schedule, and the wipe costs its size.
    const rt = await Runtime.start({
      sandbox: {
        ...(s.kernel !== undefined ? { kernel: s.kernel } : {}),
        ...(s.policy !== undefined ? { policy: s.policy } : {}),
        ...(s.module_params !== undefined ? { moduleParams: s.module_params } : {}),
        ...(s.patches !== undefined ? { patches: s.patches } : {}),
        memory: s.memory ?? '4MiB',
        gpaSpace: '16MiB',
        userMemory: '4MiB',
        gmemSpace: '32MiB',
        maxVms: Math.max(2, s.vms.length),
        // Controlled runs see a deadlock at once; no wall-clock watchdog.
        watchdogMs: 0,
      },
      callTimeoutMs: 20_000,
    });
    // The workers are started once; each schedule initialises them again on the wiped memory.
    for (const v of s.vms) for (let c = 0; c < v.vcpus; c++) await rt.addVcpu(v.name, -1, c);
    this.rt = rt;
    this.sched = new SchedControl(rt.mem);
    return rt;
  }

  /**
   * Runs the scenario once. With `forced`, every parallel group replays those choices (the
   * groups' logs concatenated) and then runs without preemption; without it, each group is a
   * seeded random walk.
   */
  async runSchedule(seed: number, forced?: readonly number[]): Promise<McSchedule> {
    const rt = await this.runtime();
    const s = this.scenario;
    await this.reset(rt);
    const out: McSchedule = {
      seed,
      choices: [],
      candidates: [],
      groupStarts: [],
      preemptions: 0,
      outcome: 'ok',
      failures: [],
      violations: [],
      steps: [],
    };
    let stopped = false;
    for (let i = 0; i < s.steps.length && !stopped; i++) {
      const st = s.steps[i];
      if (st.op !== 'parallel') this.check(out, st, String(i), await this.runAlone(rt, st));
      else stopped = await this.runGroup(rt, out, st.steps, i, forced);
    }
    this.schedulesRun++;
    out.violations.push(...takeOnlineReports(rt.mem));
    // A deadlock or a cut schedule leaves locks held and work half done: nothing to audit.
    if (!stopped) {
      out.violations.push(...auditQuiescent(rt.mem).violations);
      await rt.call(rt.vmm, () => rt.vmm.api.closeAll());
      // The teardown takes locks too: its lock order counts before the next reset empties the graph.
      out.violations.push(...auditTeardown(rt.mem).violations, ...takeLockOrderReports(rt.mem));
    }
    if (out.outcome === 'ok' && (out.failures.length > 0 || out.violations.length > 0)) out.outcome = 'violation';
    if (out.outcome === 'step-limit' && out.failures.length > 0) out.outcome = 'violation';
    out.preemptions = countPreemptions(out.choices, out.candidates, out.groupStarts);
    return out;
  }

  /** The wiped sandbox with the bug planted, the scenario's VMs created again and every worker attached to them. */
  private async reset(rt: Runtime): Promise<void> {
    const s = this.scenario;
    resetSandboxMemory(rt.descriptor);
    setBugs(rt.mem, this.bugMask);
    await rt.call(rt.vmm, () => rt.vmm.api.init(rt.descriptor, rt.vmm.tid, { mode: 'controlled', platform: 'direct' }));
    const ids = await rt.call(rt.vmm, () => rt.vmm.api.createVms(s.vms.map((v) => ({ name: v.name, type: v.type }))));
    const init = { buffers: rt.descriptor.buffers, kernel: rt.descriptor.kernel, mode: 'controlled', platform: 'direct' } as const;
    for (const a of rt.vcpus) {
      a.vm = ids[s.vms.findIndex((v) => v.name === a.vmName)];
      await rt.call(a, () => a.api.init({ ...init, tid: a.tid, vm: a.vm }));
    }
  }

  /**
   * Parallel group `i` (the scenario's step i) as a controlled run: its choices (forced from the
   * schedule's next ones, or a random walk of the group's own seed) go into `out`, and its steps'
   * outcomes are checked. True when it ended the schedule (a deadlock or the step limit).
   */
  private async runGroup(rt: Runtime, out: McSchedule, group: LeafStep[], i: number, forced?: readonly number[]): Promise<boolean> {
    const sched = this.sched!;
    const offset = out.choices.length;
    sched.configure({
      strategy: forced ? 'replay' : 'random',
      seed: subSeed(out.seed, i),
      actors: group.length,
      maxSteps: this.maxSteps,
      ...(this.opts.points !== undefined ? { points: this.opts.points } : {}),
      ...(forced ? { forced: forced.slice(offset) } : {}),
    });
    const settled = await Promise.allSettled(group.map((c) => this.startActor(rt, c)));
    out.groupStarts.push(offset);
    out.choices.push(...sched.log());
    out.candidates.push(...sched.candidates());
    const outcome = sched.outcome();
    sched.disable();
    settled.forEach((r, j) => {
      const index = `${i}.${j}`;
      if (r.status === 'fulfilled') this.check(out, group[j], index, r.value);
      else if (/aborted/.test(String(r.reason))) out.steps.push({ index, op: group[j].op, result: 'aborted', pass: false });
      else throw new Error(`schedule ${out.seed}: step ${index} (${group[j].op}) failed: ${r.reason}`);
    });
    if (outcome === SchedOutcome.DEADLOCK) {
      out.violations.push({
        invariant: 'liveness',
        by: 'scheduler',
        detail: `deadlock in parallel group ${i}: no actor can run: ${describeDeadlock(rt.mem, sched, rt.actorNames())}`,
      });
      out.outcome = 'deadlock';
      return true;
    }
    if (outcome === SchedOutcome.STEP_LIMIT) {
      out.outcome = 'step-limit';
      return true;
    }
    return false;
  }

  /** A step outside any parallel group: no actor is registered, so it runs as in free mode. */
  private async runAlone(rt: Runtime, st: LeafStep): Promise<Outcome> {
    switch (st.op) {
      case 'signal':
        rt.control.raiseSignal(st.actor === 'vmm' ? rt.vmm.tid : rt.vcpu(st.actor.vm, st.actor.vcpu).tid);
        return { result: 'ok' };
      case 'stats':
        return { result: 'ok', value: rt.stats() };
      default:
        if (GUEST.has(st.op)) {
          const a = this.vcpuOf(rt, st);
          return rt.call(a, () => a.api.exec(toGuestOp(st)));
        }
        return rt.call(rt.vmm, () => rt.vmm.api.exec(st as IoctlStep));
    }
  }

  /** A parallel group's step as a controlled actor (the vCPU's exec registers as one). */
  private startActor(rt: Runtime, st: LeafStep): Promise<Outcome> {
    if (GUEST.has(st.op)) {
      const a = this.vcpuOf(rt, st);
      return rt.call(a, () => a.api.exec(toGuestOp(st)));
    }
    return rt.call(rt.vmm, () => rt.vmm.api.execActor(st as IoctlStep));
  }

  private vcpuOf(rt: Runtime, st: LeafStep): VcpuActor {
    return rt.vcpu((st as { vm: string }).vm, (st as { vcpu: number }).vcpu);
  }

  /** Checks a step's outcome against its expect/expect_value, as the scenario runner does. */
  private check(out: McSchedule, st: LeafStep, index: string, o: Outcome): void {
    const r: McStepResult = { index, op: st.op, result: o.result, pass: true, ...(o.value !== undefined ? { value: o.value } : {}) };
    if (st.expect !== undefined && o.result !== st.expect)
      r.mismatch = `expected ${st.expect}, got ${o.result}${o.detail ? ` (${o.detail})` : ''}`;
    else if (st.expect_value !== undefined && !matchesPartial(o.value, st.expect_value))
      r.mismatch = `expected value ${JSON.stringify(st.expect_value)}, got ${JSON.stringify(o.value)}`;
    if (r.mismatch !== undefined) {
      r.pass = false;
      out.failures.push(`step ${index} ${st.op}: ${r.mismatch}`);
    }
    out.steps.push(r);
  }

  /**
   * Runs the search: exhaustive (DFS over the choice points, at most k preemptions) or random.
   * Stops at the first failing schedule, or when every schedule ran, or at the cap, or when
   * `shouldStop` says so (an interrupt: the result is then not complete).
   */
  async explore(
    onSchedule?: (n: number, r: McSchedule) => void,
    shouldStop?: () => boolean,
    /** Search settings for this search only (the sandbox and the bug stay): one checker, several bounds. */
    over: Partial<Pick<ModelCheckOptions, 'mode' | 'preemptions' | 'maxSchedules' | 'seed'>> = {},
  ): Promise<ModelCheckResult> {
    const o = { ...this.opts, ...over };
    const res: ModelCheckResult = {
      mode: o.mode,
      preemptions: o.preemptions,
      schedules: 0,
      complete: false,
      capHit: false,
      stepLimited: 0,
    };
    if (o.mode === 'random') {
      const seed0 = o.seed ?? 1;
      for (let i = 0; i < o.maxSchedules && !shouldStop?.(); i++) {
        const r = await this.runSchedule((seed0 + i) >>> 0);
        res.schedules++;
        onSchedule?.(res.schedules, r);
        if (r.outcome === 'step-limit') res.stepLimited++;
        if (fails(r)) return { ...res, failing: r };
      }
      return res;
    }
    const k = o.preemptions;
    // Each entry is a forced prefix whose last choice is an alternative not yet run; past it
    // the scheduler runs without preemption, so each run adds no preemption of its own.
    const stack: number[][] = [[]];
    while (stack.length > 0) {
      if (shouldStop?.()) return res;
      if (res.schedules >= o.maxSchedules) {
        res.capHit = true;
        return res;
      }
      const prefix = stack.pop()!;
      const r = await this.runSchedule(0, prefix);
      res.schedules++;
      onSchedule?.(res.schedules, r);
      for (let i = 0; i < prefix.length; i++) {
        if (r.choices[i] !== prefix[i])
          throw new Error(
            `model check: schedule diverged from its forced prefix at step ${i} (forced ${prefix[i]}, ran ${r.choices[i]}): the run is not deterministic`,
          );
      }
      if (r.outcome === 'step-limit') res.stepLimited++;
      if (fails(r)) return { ...res, failing: r };
      const starts = new Set(r.groupStarts);
      const alts: number[][] = [];
      let pc = 0;
      for (let i = 0; i < r.choices.length; i++) {
        const prev = i === 0 || starts.has(i) ? -1 : r.choices[i - 1];
        const running = prev >= 0 && r.candidates[i].includes(prev);
        // Alternatives at points the prefix did not fix (those were branched on by its parents).
        if (i >= prefix.length) {
          for (const a of r.candidates[i]) {
            if (a === r.choices[i]) continue;
            if (pc + (running && a !== prev ? 1 : 0) <= k) alts.push([...r.choices.slice(0, i), a]);
          }
        }
        if (running && r.choices[i] !== prev) pc++;
      }
      for (let j = alts.length - 1; j >= 0; j--) stack.push(alts[j]);
    }
    // A schedule cut by the step limit hid the choice points past its cut: not complete.
    res.complete = res.stepLimited === 0;
    return res;
  }

  /**
   * Shrinks a failing schedule to few context switches: ddmin over its switch points, as
   * Explorer.shrink does (a candidate forces the actor chosen at each kept switch and runs
   * without preemption elsewhere; it is kept when the run still fails). The result carries the
   * choices the smallest failing run made, cut after its last kept switch, so it replays exactly.
   */
  async shrink(failing: McSchedule, budget = 100): Promise<McSchedule> {
    return ddminSwitches(
      failing,
      async (seed, forced) => {
        const r = await this.runSchedule(seed, forced);
        return fails(r) ? r : null;
      },
      budget,
    );
  }

  /** Reruns a saved schedule; `reproduced` when it makes the same choices and fails the same way. */
  async replay(saved: ScenarioScheduleFile): Promise<{ reproduced: boolean; result: McSchedule }> {
    const r = await this.runSchedule(saved.seed, saved.choices);
    const samePrefix = saved.choices.every((c, i) => r.choices[i] === c);
    const first = (x: { failures: string[]; violations: Violation[] }): string => x.failures[0] ?? x.violations[0]?.detail ?? '';
    return { reproduced: samePrefix && r.outcome === saved.outcome && first(r) === first(saved), result: r };
  }

  /** The last schedule's scheduler trace, with the memory and actor names it refers to (for replay --trace). */
  lastTrace(): { mem: Mem; events: SchedTraceEvent[]; dropped: number; names: Map<number, string> } | null {
    if (this.rt === null || this.sched === null) return null;
    return { mem: this.rt.mem, events: this.sched.trace(), dropped: this.sched.traceDropped(), names: this.rt.actorNames() };
  }

  async close(): Promise<void> {
    await this.rt?.shutdown();
    this.rt = null;
  }
}
