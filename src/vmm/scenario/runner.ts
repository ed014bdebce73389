// Runs a scenario on a threaded sandbox: ioctl steps on the VMM worker, guest steps on their
// vCPU's worker, pause/resume through the sync layer's pause points. A step that an armed pause
// holds is left in flight and the run goes on, so a script can interleave actors exactly; its
// outcome is recorded when it completes.

import { isDeepStrictEqual } from 'node:util';
import { LOCK_CLASS_NAMES, sumLatency } from '../../shm/stats.js';
import { pointId } from '../../shm/points.js';
import type { GuestOp } from '../../vcpu-workers/ops.js';
import type { Outcome } from '../../vcpu-workers/outcome.js';
import { INVARIANTS, type Invariant, type Violation } from '../../checker/violations.js';
import { auditQuiescent, auditTeardown, mergeAudit } from '../../checker/audit.js';
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
      memory: s.memory ?? '64MiB',
      watchdogMs: s.watchdog_ms ?? 5000,
    },
    callTimeoutMs: 30_000,
    trace: opts.trace !== undefined,
    ...(opts.onSetupProgress ? { onSetupProgress: opts.onSetupProgress } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.bugs ? { bugs: opts.bugs } : {}),
  });
  // A step may be held at a pause or wait seconds for one: an interrupt cannot wait for it, so
  // the workers go at once and every call in flight rejects.
  let interrupted = false;
  // Waits that are not calls to a worker (await_held) end with it too.
  let endWaits: (e: Error) => void = () => undefined;
  const stopped = new Promise<never>((_, reject) => (endWaits = reject));
  stopped.catch(() => undefined);
  const stop = (): void => {
    interrupted = true;
    endWaits(new Error('interrupted'));
    void rt.shutdown();
  };
  opts.signal?.addEventListener('abort', stop, { once: true });
  // An abort while the workers were starting has already fired.
  if (opts.signal?.aborted) stop();
  const steps: StepReport[] = [];
  const pauses = new Map<string, { slot: number; tid: number }>();
  const held: InFlight[] = [];
  let audit = {
    ok: true,
    counts: Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>,
    violations: [] as Violation[],
  };
  let findings = { punchHoleLeftovers: 0, crossVmPrepare: 0 };
  /** Watchdog reports: a wait that never ended. The run stops at the first. */
  const hangs: Violation[] = [];

  const actorOf = (st: LeafStep): Actor<unknown> =>
    GUEST.has(st.op) ? rt.vcpu((st as { vm: string }).vm, (st as { vcpu: number }).vcpu) : rt.vmm;
  const tidOf = (a: 'vmm' | { vm: string; vcpu: number } | undefined): number =>
    a === undefined ? -1 : a === 'vmm' ? rt.vmm.tid : rt.vcpu(a.vm, a.vcpu).tid;

  /** A step's promise, with a watchdog report turned into its outcome (and the run stopped). */
  const outcomeOf = async (index: string, p: Promise<Outcome>): Promise<Outcome> => {
    try {
      return await p;
    } catch (e) {
      if (!(e instanceof Error) || e.name !== 'LockTimeoutError') throw e;
      hangs.push({ invariant: 'liveness', by: `step ${index}`, detail: e.message });
      // The kernel state behind a hang is not unwound: stop every actor (a spinning one too).
      rt.control.abort(AbortReason.WATCHDOG);
      return { result: 'hang', detail: e.message };
    }
  };

  const finish = (r: StepReport, st: LeafStep, o: Outcome): void => {
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
    onStep?.(r);
  };

  const start = (st: LeafStep): Promise<Outcome> => {
    if (GUEST.has(st.op)) {
      const a = rt.vcpu((st as { vm: string }).vm, (st as { vcpu: number }).vcpu);
      return rt.call(a, () => a.api.exec(toGuestOp(st)));
    }
    return rt.call(rt.vmm, () => rt.vmm.api.exec(st as IoctlStep));
  };

  /** Waits for a step unless a pause holds its actor; then it is left in flight. */
  const settle = async (st: LeafStep, index: string): Promise<StepReport> => {
    const r: StepReport = { index, op: st.op, result: 'pending', pass: false, ...(st.expect ? { expect: st.expect } : {}) };
    steps.push(r);
    if (st.op === 'settle') {
      finish(r, st, await settleInFlight(st.timeout_ms ?? 5000));
      return r;
    }
    if (st.op === 'await_held') {
      const p = pauses.get(st.point);
      if (p === undefined) finish(r, st, { result: 'ENOENT', detail: `no pause armed at ${st.point}` });
      else {
        try {
          finish(r, st, {
            result: 'ok',
            value: { holder: await Promise.race([rt.control.whenHeld(p.slot, st.timeout_ms ?? 5000), stopped]) },
          });
        } catch (e) {
          finish(r, st, { result: 'ETIMEDOUT', detail: (e as Error).message });
        }
      }
      return r;
    }
    const local = runLocal(st);
    if (local !== null) {
      finish(r, st, local);
      return r;
    }
    const tid = actorOf(st).tid;
    const promise = outcomeOf(index, start(st));
    let done = false;
    promise.then(
      () => (done = true),
      () => (done = true),
    );
    // Polls in a row that found the actor asleep on a lock, an SRCU grace period or a retry.
    let blocked = 0;
    for (;;) {
      if (done) {
        finish(r, st, await promise);
        return r;
      }
      const heldHere = [...pauses.values()].some((p) => rt.control.pauseState(p.slot) === 'held' && rt.control.pauseHolder(p.slot) === tid);
      blocked = rt.control.waitingOn(tid) !== 0 ? blocked + 1 : 0;
      // A step held at a pause, or blocked on what a later step will let go, stays in flight.
      if (heldHere || blocked >= BLOCKED_POLLS) {
        r.result = heldHere ? 'held' : 'blocked';
        held.push({ report: r, step: st, promise });
        return r;
      }
      await new Promise((res) => setTimeout(res, 1));
    }
  };

  /** Records the outcome of a step that was in flight, once it settled. */
  const land = async (h: InFlight): Promise<void> => {
    try {
      finish(h.report, h.step, await h.promise);
    } catch (e) {
      h.report.result = 'error';
      h.report.pass = false;
      h.report.mismatch = (e as Error).message;
    }
  };

  /** Waits for every step in flight whose actor no pause holds; their outcomes are checked then. */
  const settleInFlight = async (timeoutMs: number): Promise<Outcome> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const heldTids = new Set(
        [...pauses.values()].filter((p) => rt.control.pauseState(p.slot) === 'held').map((p) => rt.control.pauseHolder(p.slot)),
      );
      const waiting = held.filter((h) => !heldTids.has(actorOf(h.step).tid));
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
      held.splice(held.indexOf(first), 1);
      await land(first);
    }
  };

  /** Steps the controller runs itself. */
  const runLocal = (st: LeafStep): Outcome | null => {
    switch (st.op) {
      case 'pause': {
        if (pauses.has(st.point)) return { result: 'EBUSY', detail: `a pause at ${st.point} is already armed` };
        const tid = tidOf(st.actor);
        pauses.set(st.point, { slot: rt.control.armPause(pointId(st.point), tid), tid });
        return { result: 'ok' };
      }
      case 'resume': {
        const p = pauses.get(st.point);
        if (p === undefined) return { result: 'ENOENT', detail: `no pause armed at ${st.point}` };
        const wasHeld = rt.control.pauseState(p.slot) === 'held';
        rt.control.release(p.slot);
        pauses.delete(st.point);
        return { result: 'ok', value: { was_held: wasHeld } };
      }
      case 'signal':
        rt.control.raiseSignal(tidOf(st.actor));
        return { result: 'ok' };
      case 'stats':
        return { result: 'ok', value: rt.stats() };
      default:
        return null;
    }
  };

  const drainHeld = async (): Promise<void> => {
    for (const p of pauses.values()) rt.control.release(p.slot);
    pauses.clear();
    for (const h of held.splice(0)) await land(h);
  };

  try {
    await rt.createVms(s.vms);
    for (let i = 0; i < s.steps.length && rt.crashes.length === 0 && hangs.length === 0 && !interrupted; i++) {
      const st: Step = s.steps[i];
      if (st.op === 'parallel') {
        const r: StepReport = { index: String(i), op: 'parallel', result: 'ok', pass: true };
        steps.push(r);
        await Promise.all(st.steps.map((c, j) => settle(c, `${i}.${j}`)));
        onStep?.(r);
        continue;
      }
      await settle(st, String(i));
    }
    // Let anything a pause still holds finish: release every pause, then wait.
    if (!interrupted) await drainHeld();
    if (hangs.length > 0) {
      const counts = Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>;
      counts.liveness = hangs.length;
      audit = { ok: false, counts, violations: hangs };
    } else if (rt.crashes.length === 0 && !interrupted) {
      const q = auditQuiescent(rt.mem);
      await rt.call(rt.vmm, () => rt.vmm.api.closeAll());
      const t = mergeAudit(q, auditTeardown(rt.mem));
      audit = { ok: INVARIANTS.every((i) => t.counts[i] === 0), counts: t.counts, violations: t.violations };
      findings = t.findings;
    }
  } catch (e) {
    if (rt.crashes.length === 0 && !interrupted) rt.crashes.push({ actor: 'controller', kind: 'error', message: (e as Error).message });
  } finally {
    opts.signal?.removeEventListener('abort', stop);
    // Workers first: nothing after this point may keep them running. The trace is in shared
    // memory, which outlives them.
    await rt.shutdown();
    if (opts.trace !== undefined) rt.writeTrace(opts.trace, 'gmem-sandbox run');
  }
  const stats = rt.stats();
  const ok = rt.crashes.length === 0 && audit.ok && steps.every((r) => r.pass) && !interrupted;
  return {
    steps,
    audit,
    findings,
    crashes: rt.crashes,
    faultLatency: sumLatency(rt.mem),
    lockWaits: LOCK_CLASS_NAMES.map((l) => ({ lock: l, waitMs: stats[`lockWaitNs.${l}`] / 1e6, contended: stats[`lockContended.${l}`] })),
    interrupted,
    ok,
  };
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
