// Runs a scenario on a threaded sandbox: ioctl steps on the VMM worker, guest steps on their
// vCPU's worker, pause/resume through the sync layer's pause points. A step that an armed pause
// holds is left in flight and the run goes on, so a script can interleave actors exactly; its
// outcome is recorded when it completes.

import { isDeepStrictEqual } from 'node:util';
import { LOCK_STAT_NAMES, sumLatency } from '../../shm/stats.js';
import { pointId } from '../../shm/points.js';
import type { GuestOp } from '../../vcpu-workers/ops.js';
import type { Outcome } from '../../vcpu-workers/outcome.js';
import { INVARIANTS, type Invariant, type Violation } from '../../checker/violations.js';
import { auditQuiescent, auditTeardown, mergeAudit } from '../../checker/audit.js';
import { takeLockOrderReports } from '../../checker/online.js';
import { type Actor, type CrashReport, Runtime } from '../sandbox/runtime.js';
import { AbortReason } from '../../shm/sync/sync.js';
import type { IoctlStep, LeafStep, Scenario, Step } from './schema.js';

export interface StepReport extends Outcome {
  index: string;
  op: string;
  expect?: string;
  pass: boolean;
  /** Why the step failed its expectation. */
  mismatch?: string;
}

export interface ScenarioReport {
  steps: StepReport[];
  audit: { ok: boolean; counts: Record<Invariant, number>; violations: Violation[] };
  findings: { punchHoleLeftovers: number; crossVmPrepare: number };
  crashes: CrashReport[];
  faultLatency: Array<{ lowNs: number; highNs: number; count: number }>;
  lockWaits: Array<{ lock: string; waitMs: number; contended: number }>;
  /** Stopped early (SIGINT, SIGTERM): `steps` are the ones that ran. */
  interrupted: boolean;
  ok: boolean;
}

/** Results that are the harness's own failure, not an answer of the modelled kernel: never a pass unless expected. */
const HARNESS_FAILURES = new Set(['ETIMEDOUT', 'error']);

const GUEST = new Set(['guest_read', 'guest_write', 'pvalidate', 'pre_fault_memory']);

/** True when every field of `want` is in `got` with an equal value (recursively). */
export function matchesPartial(got: unknown, want: unknown): boolean {
  if (want !== null && typeof want === 'object' && !Array.isArray(want)) {
    if (got === null || typeof got !== 'object') return false;
    return Object.entries(want as Record<string, unknown>).every(([k, v]) => matchesPartial((got as Record<string, unknown>)[k], v));
  }
  return isDeepStrictEqual(got, want);
}

interface InFlight {
  report: StepReport;
  step: LeafStep;
  promise: Promise<Outcome>;
}

export interface ScenarioRunOptions {
  trace?: string;
  /** Stops the run: every worker is shut down at once, the report covers the steps that ran. */
  signal?: AbortSignal;
  onSetupProgress?: (fraction: number, what: string) => void;
  /** Planted bugs (gmem/bugs.ts mask). */
  bugs?: number;
}

export async function runScenario(s: Scenario, onStep?: (r: StepReport) => void, opts: ScenarioRunOptions = {}): Promise<ScenarioReport> {
  const rt = await Runtime.start({
    sandbox: {
      ...(s.kernel !== undefined ? { kernel: s.kernel } : {}),
      ...(s.policy !== undefined ? { policy: s.policy } : {}),
      ...(s.module_params !== undefined ? { moduleParams: s.module_params } : {}),
      ...(s.patches !== undefined ? { patches: s.patches } : {}),
      memory: s.memory ?? '64MiB',
      watchdogMs: s.watchdog_ms ?? 5000,
    },
    callTimeoutMs: 30_000,
    trace: opts.trace !== undefined,
    ...(opts.onSetupProgress ? { onSetupProgress: opts.onSetupProgress } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.bugs ? { bugs: opts.bugs } : {}),
  });
  const run = new ScenarioRun(rt, onStep);
  const stop = (): void => run.interrupt();
  opts.signal?.addEventListener('abort', stop, { once: true });
  // An abort while the workers were starting has already fired.
  if (opts.signal?.aborted) stop();
  try {
    await run.runSteps(s);
    await run.judge();
  } catch (e) {
    if (rt.crashes.length === 0 && !run.interrupted) rt.crashes.push({ actor: 'controller', kind: 'error', message: (e as Error).message });
  } finally {
    opts.signal?.removeEventListener('abort', stop);
    // Workers first: nothing after this point may keep them running. The trace is in shared
    // memory, which outlives them.
    await rt.shutdown();
    if (opts.trace !== undefined) rt.writeTrace(opts.trace, 'gmem-sandbox run');
  }
  return run.report();
}

/** One scenario's run on a started runtime: its steps, the pauses armed, the steps left in flight. */
class ScenarioRun {
  readonly steps: StepReport[] = [];
  /** Stopped early (an interrupt). */
  interrupted = false;
  private readonly pauses = new Map<string, { slot: number; tid: number }>();
  private readonly held: InFlight[] = [];
  /** Watchdog reports: a wait that never ended. The run stops at the first. */
  private readonly hangs: Violation[] = [];
  private audit: ScenarioReport['audit'] = {
    ok: true,
    counts: Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>,
    violations: [],
  };
  private findings = { punchHoleLeftovers: 0, crossVmPrepare: 0 };
  /** Waits that are not calls to a worker (await_held) end with an interrupt too. */
  private endWaits: (e: Error) => void = () => undefined;
  private readonly stopped = new Promise<never>((_, reject) => (this.endWaits = reject));

  constructor(
    readonly rt: Runtime,
    private readonly onStep?: (r: StepReport) => void,
  ) {
    this.stopped.catch(() => undefined);
  }

  /**
   * A step may be held at a pause or wait seconds for one: an interrupt cannot wait for it, so
   * the workers go at once and every call in flight rejects.
   */
  interrupt(): void {
    this.interrupted = true;
    this.endWaits(new Error('interrupted'));
    void this.rt.shutdown();
  }

  /** The scenario's steps in order until a crash, a hang or an interrupt; then whatever a pause still holds. */
  async runSteps(s: Scenario): Promise<void> {
    const rt = this.rt;
    await rt.createVms(s.vms);
    for (let i = 0; i < s.steps.length && rt.crashes.length === 0 && this.hangs.length === 0 && !this.interrupted; i++) {
      const st: Step = s.steps[i];
      if (st.op === 'parallel') {
        const r: StepReport = { index: String(i), op: 'parallel', result: 'ok', pass: true };
        this.steps.push(r);
        await Promise.all(st.steps.map((c, j) => this.settle(c, `${i}.${j}`)));
        this.onStep?.(r);
        continue;
      }
      await this.settle(st, String(i));
    }
    // Let anything a pause still holds finish: release every pause, then wait.
    if (!this.interrupted) await this.drainHeld();
  }

  /** The audit: the hangs if any; else, unless the run crashed or was stopped, quiescent then after teardown. */
  async judge(): Promise<void> {
    const rt = this.rt;
    if (this.hangs.length > 0) {
      const counts = Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>;
      counts.liveness = this.hangs.length;
      this.audit = { ok: false, counts, violations: this.hangs };
    } else if (rt.crashes.length === 0 && !this.interrupted) {
      const q = auditQuiescent(rt.mem);
      await rt.call(rt.vmm, () => rt.vmm.api.closeAll());
      const t = mergeAudit(q, auditTeardown(rt.mem));
      this.audit = { ok: INVARIANTS.every((i) => t.counts[i] === 0), counts: t.counts, violations: t.violations };
      this.findings = t.findings;
    }
  }

  report(): ScenarioReport {
    const rt = this.rt;
    const stats = rt.stats();
    // Lockdep's inversions of the run, however it ended: the graph is in shared memory.
    const audit = withLockOrder(this.audit, takeLockOrderReports(rt.mem));
    const ok = rt.crashes.length === 0 && audit.ok && this.steps.every((r) => r.pass) && !this.interrupted;
    return {
      steps: this.steps,
      audit,
      findings: this.findings,
      crashes: rt.crashes,
      faultLatency: sumLatency(rt.mem),
      lockWaits: LOCK_STAT_NAMES.map((l) => ({ lock: l, waitMs: stats[`lockWaitNs.${l}`] / 1e6, contended: stats[`lockContended.${l}`] })),
      interrupted: this.interrupted,
      ok,
    };
  }

  private actorOf(st: LeafStep): Actor<unknown> {
    return GUEST.has(st.op) ? this.rt.vcpu((st as { vm: string }).vm, (st as { vcpu: number }).vcpu) : this.rt.vmm;
  }

  private tidOf(a: 'vmm' | { vm: string; vcpu: number } | undefined): number {
    return a === undefined ? -1 : a === 'vmm' ? this.rt.vmm.tid : this.rt.vcpu(a.vm, a.vcpu).tid;
  }

  /** A step's promise, with a watchdog report turned into its outcome (and the run stopped). */
  private async outcomeOf(index: string, p: Promise<Outcome>): Promise<Outcome> {
    try {
      return await p;
    } catch (e) {
      if (!(e instanceof Error) || e.name !== 'LockTimeoutError') throw e;
      this.hangs.push({ invariant: 'liveness', by: `step ${index}`, detail: e.message });
      // The kernel state behind a hang is not unwound: stop every actor (a spinning one too).
      this.rt.control.abort(AbortReason.WATCHDOG);
      return { result: 'hang', detail: e.message };
    }
  }

  private finish(r: StepReport, st: LeafStep, o: Outcome): void {
    Object.assign(r, o);
    r.pass = true;
    if (st.expect === undefined && HARNESS_FAILURES.has(o.result)) {
      r.pass = false;
      r.mismatch = `${o.result}${o.detail ? ` (${o.detail})` : ''}, and the step has no expect that allows it`;
    } else if (st.expect !== undefined && o.result !== st.expect) {
      r.pass = false;
      r.mismatch = `expected ${st.expect}, got ${o.result}${o.detail ? ` (${o.detail})` : ''}`;
    } else if (st.expect_value !== undefined && !matchesPartial(o.value, st.expect_value)) {
      r.pass = false;
      r.mismatch = `expected value ${JSON.stringify(st.expect_value)}, got ${JSON.stringify(o.value)}`;
    }
    this.onStep?.(r);
  }

  private start(st: LeafStep): Promise<Outcome> {
    const rt = this.rt;
    if (GUEST.has(st.op)) {
      const a = rt.vcpu((st as { vm: string }).vm, (st as { vcpu: number }).vcpu);
      return rt.call(a, () => a.api.exec(toGuestOp(st)));
    }
    return rt.call(rt.vmm, () => rt.vmm.api.exec(st as IoctlStep));
  }

  /** Runs a step to its outcome, unless a pause holds its actor; then it is left in flight. */
  private async settle(st: LeafStep, index: string): Promise<StepReport> {
    const r: StepReport = { index, op: st.op, result: 'pending', pass: false, ...(st.expect ? { expect: st.expect } : {}) };
    this.steps.push(r);
    if (st.op === 'settle') this.finish(r, st, await this.settleInFlight(st.timeout_ms ?? 5000));
    else if (st.op === 'await_held') this.finish(r, st, await this.awaitHeld(st.point, st.timeout_ms ?? 5000));
    else {
      const local = this.runLocal(st);
      if (local !== null) this.finish(r, st, local);
      else await this.startAndWatch(st, r);
    }
    return r;
  }

  /** The thread a pause holds, once one does. */
  private async awaitHeld(point: string, timeoutMs: number): Promise<Outcome> {
    const p = this.pauses.get(point);
    if (p === undefined) return { result: 'ENOENT', detail: `no pause armed at ${point}` };
    try {
      return { result: 'ok', value: { holder: await Promise.race([this.rt.control.whenHeld(p.slot, timeoutMs), this.stopped]) } };
    } catch (e) {
      return { result: 'ETIMEDOUT', detail: (e as Error).message };
    }
  }

  /** Starts a step on its actor and waits for it, unless the actor is held at a pause or stays blocked. */
  private async startAndWatch(st: LeafStep, r: StepReport): Promise<void> {
    const rt = this.rt;
    const tid = this.actorOf(st).tid;
    const promise = this.outcomeOf(r.index, this.start(st));
    let done = false;
    promise.then(
      () => (done = true),
      () => (done = true),
    );
    // Polls in a row that found the actor asleep on a lock, an SRCU grace period or a retry.
    let blocked = 0;
    for (;;) {
      if (done) {
        this.finish(r, st, await promise);
        return;
      }
      const heldHere = [...this.pauses.values()].some(
        (p) => rt.control.pauseState(p.slot) === 'held' && rt.control.pauseHolder(p.slot) === tid,
      );
      blocked = rt.control.waitingOn(tid) !== 0 ? blocked + 1 : 0;
      // A step held at a pause, or blocked on what a later step will let go, stays in flight.
      if (heldHere || blocked >= BLOCKED_POLLS) {
        r.result = heldHere ? 'held' : 'blocked';
        this.held.push({ report: r, step: st, promise });
        return;
      }
      await new Promise((res) => setTimeout(res, 1));
    }
  }

  /** Records the outcome of a step that was in flight, once it settled. */
  private async land(h: InFlight): Promise<void> {
    try {
      this.finish(h.report, h.step, await h.promise);
    } catch (e) {
      h.report.result = 'error';
      h.report.pass = false;
      h.report.mismatch = (e as Error).message;
    }
  }

  /** Waits for every step in flight whose actor no pause holds; their outcomes are checked then. */
  private async settleInFlight(timeoutMs: number): Promise<Outcome> {
    const rt = this.rt;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const heldTids = new Set(
        [...this.pauses.values()].filter((p) => rt.control.pauseState(p.slot) === 'held').map((p) => rt.control.pauseHolder(p.slot)),
      );
      const waiting = this.held.filter((h) => !heldTids.has(this.actorOf(h.step).tid));
      if (waiting.length === 0) return { result: 'ok' };
      const left = deadline - Date.now();
      if (left <= 0)
        return {
          result: 'ETIMEDOUT',
          detail: `steps ${waiting.map((h) => h.report.index).join(', ')} still in flight after ${timeoutMs} ms`,
        };
      const first = await Promise.race([
        ...waiting.map((h) =>
          h.promise.then(
            () => h,
            () => h,
          ),
        ),
        new Promise<null>((res) => setTimeout(() => res(null), Math.min(left, 20))),
      ]);
      if (first === null) continue;
      this.held.splice(this.held.indexOf(first), 1);
      await this.land(first);
    }
  }

  /** Steps the controller runs itself. */
  private runLocal(st: LeafStep): Outcome | null {
    const control = this.rt.control;
    switch (st.op) {
      case 'pause': {
        if (this.pauses.has(st.point)) return { result: 'EBUSY', detail: `a pause at ${st.point} is already armed` };
        const tid = this.tidOf(st.actor);
        this.pauses.set(st.point, { slot: control.armPause(pointId(st.point), tid), tid });
        return { result: 'ok' };
      }
      case 'resume': {
        const p = this.pauses.get(st.point);
        if (p === undefined) return { result: 'ENOENT', detail: `no pause armed at ${st.point}` };
        const wasHeld = control.pauseState(p.slot) === 'held';
        control.release(p.slot);
        this.pauses.delete(st.point);
        return { result: 'ok', value: { was_held: wasHeld } };
      }
      case 'signal':
        control.raiseSignal(this.tidOf(st.actor));
        return { result: 'ok' };
      case 'stats':
        return { result: 'ok', value: this.rt.stats() };
      default:
        return null;
    }
  }

  private async drainHeld(): Promise<void> {
    for (const p of this.pauses.values()) this.rt.control.release(p.slot);
    this.pauses.clear();
    for (const h of this.held.splice(0)) await this.land(h);
  }
}

/** Lockdep's inversions fail the run's audit. */
function withLockOrder(audit: ScenarioReport['audit'], lockOrder: Violation[]): ScenarioReport['audit'] {
  if (lockOrder.length === 0) return audit;
  const counts = { ...audit.counts, lockOrder: audit.counts.lockOrder + lockOrder.length };
  return { ok: false, counts, violations: [...lockOrder, ...audit.violations] };
}

/** Polls (1 ms apart) that must find an actor asleep before its step is left in flight. */
const BLOCKED_POLLS = 20;

export function toGuestOp(st: LeafStep): GuestOp {
  switch (st.op) {
    case 'guest_read':
      return { op: 'guest_read', gpa: st.gpa, len: st.len, ...(st.private !== undefined ? { private: st.private } : {}) };
    case 'guest_write':
      return { op: 'guest_write', gpa: st.gpa, data: st.data, ...(st.private !== undefined ? { private: st.private } : {}) };
    case 'pvalidate':
      return { op: 'pvalidate', gpa: st.gpa, ...(st.validate !== undefined ? { validate: st.validate } : {}) };
    case 'pre_fault_memory':
      return { op: 'pre_fault_memory', gpa: st.gpa, size: st.size, flags: st.flags ?? 0 };
    default:
      throw new Error(`${st.op} is not a guest step`);
  }
}
