// The controlled mode of the sync layer: the same kernel code on the same worker threads, but
// one actor runs at a time. At every synchronisation point the running actor asks the scheduler
// (decide.ts) which actor runs next and hands it the token. A lock that is taken marks the
// caller blocked on that word until its value changes, so a deadlock is seen at once (no actor
// can run) and reported with who waits on what. The same seed and configuration give the same
// interleaving: every choice is logged, and a log replays exactly.

import { Coverage } from '../coverage.js';
import type { Mem } from '../layout.js';
import { P } from '../points.js';
import type { LockClass } from '../sync/classes.js';
import { SyncControl } from '../sync/control.js';
import { FreeSync } from '../sync/free.js';
import { Held, type Lockdep } from '../sync/lockdep.js';
import { AbortReason, type Sync, SyncAbortError, type WordDescriber } from '../sync/sync.js';
import { RW_OWNER, RW_STATE, RW_WRITERS_WAITING, WRITER, srcuBefore, srcuReaderWord, srcuStartGp } from '../sync/words.js';
import { decide, handOff } from './decide.js';
import {
  A_BLOCK_VALUE,
  A_BLOCK_VALUE2,
  A_BLOCK_WORD,
  A_BLOCK_WORD2,
  A_EXIT_HELD,
  A_EXIT_HELD_WORD,
  A_PEND,
  A_PEND_REGION,
  A_SERVER,
  A_STATE,
  A_WAKE,
  Ev,
  H_ENABLED,
  H_EXPECTED,
  H_OUTCOME,
  H_POINTS,
  H_REGISTERED,
  H_STEP,
  H_TOKEN,
  H_TRACE_LEN,
  MAX_TRACE,
  POINTS_SHARED,
  ST_BLOCKED,
  ST_DONE,
  ST_RUNNABLE,
  SchedLayout,
  SchedOutcome,
} from './layout.js';

const P_SYNCHRONIZE = P['srcu.synchronize'];

/**
 * One actor's Sync in controlled mode. Before the actor registers (and after it exits) it acts
 * as the free mode does, so set-up code outside a controlled run needs no special case.
 */
export class ControlledSync implements Sync {
  private readonly w: Int32Array;
  private readonly free: FreeSync;
  /** The free mode's: one held-lock stack per thread, whichever mode took the lock. */
  private readonly ld: Lockdep;
  private readonly base: number;
  private readonly L: SchedLayout;
  private readonly me: number;
  private readonly ctl: SyncControl;
  private readonly maxThreads: number;
  /** Which named points this run passed (explore --coverage). */
  private readonly cov: Coverage;
  private active = false;
  /** This run's points are 'shared': every sharedWrite is a scheduling point. */
  private writePoints = false;
  private hook: (() => void) | null = null;

  constructor(
    mem: Mem,
    readonly tid: number,
    describe?: WordDescriber,
  ) {
    this.w = mem.w;
    this.free = new FreeSync(mem, tid, describe);
    this.ld = this.free.lockdep;
    this.L = new SchedLayout(mem);
    this.base = this.L.base;
    this.me = tid + 1;
    this.ctl = new SyncControl(mem);
    this.maxThreads = mem.limits.maxThreads;
    this.cov = new Coverage(mem);
  }

  private get a(): number {
    return this.L.actor(this.tid);
  }

  /** Joins the controlled run as an actor and waits for its first turn. */
  register(server = false): void {
    const w = this.w;
    if (Atomics.load(w, this.base + H_ENABLED) === 0) return;
    Atomics.store(w, this.a + A_SERVER, server ? 1 : 0);
    Atomics.store(w, this.a + A_STATE, ST_RUNNABLE);
    this.active = true;
    this.writePoints = Atomics.load(w, this.base + H_POINTS) === POINTS_SHARED;
    // Not traced: actors arrive in any order; the run proper starts with the first choice.
    // The last actor to arrive makes the first choice; who arrives last does not matter.
    if (Atomics.add(w, this.base + H_REGISTERED, 1) + 1 === Atomics.load(w, this.base + H_EXPECTED)) {
      const next = decide(w, this.L, -1);
      if (next >= 0) handOff(w, this.L, next, this.free);
    }
    this.waitTurn();
  }

  /** Leaves the run: the actor is done; another one runs. */
  exit(): void {
    if (!this.active) return;
    const w = this.w;
    this.trace(Ev.EXIT, 0);
    // Only a return to user space counts: an actor unwinding from the run's end drops its locks in any order.
    const held = Atomics.load(w, this.base + H_OUTCOME) === SchedOutcome.RUNNING ? this.ld.held() : [];
    Atomics.store(w, this.a + A_EXIT_HELD, held.length);
    Atomics.store(w, this.a + A_EXIT_HELD_WORD, held.length > 0 ? held[0] + 1 : 0);
    Atomics.store(w, this.a + A_STATE, ST_DONE);
    this.active = false;
    this.writePoints = false;
    const next = decide(w, this.L, -1);
    if (next >= 0) handOff(w, this.L, next, this.free);
    else {
      Atomics.store(w, this.base + H_TOKEN, -1);
      // The last runnable actor left while others wait for what it will never do: end them.
      if (Atomics.load(w, this.base + H_OUTCOME) === SchedOutcome.DEADLOCK) this.endRun(AbortReason.DEADLOCK);
    }
  }

  /** A scheduling point: the scheduler may let another actor run before this one goes on. */
  private yieldNow(kind: number, arg: number): void {
    if (!this.active) return;
    this.trace(kind, arg);
    if (this.hook !== null) this.hook();
    const w = this.w;
    // Any other operation than a write depends on every other one (decide.ts's sleep sets).
    if (this.writePoints && kind !== Ev.WRITE) Atomics.store(w, this.a + A_PEND_REGION, 0);
    const next = decide(w, this.L, this.tid);
    if (next === this.tid) return;
    if (next < 0) {
      Atomics.store(w, this.base + H_TOKEN, -1);
      const reason = this.endReason();
      this.endRun(reason);
      throw new SyncAbortError(reason);
    }
    handOff(w, this.L, next, this.free);
    this.waitTurn();
  }

  /**
   * Waits until w[word] !== value, letting others run meanwhile. A server actor (registered as
   * one) waiting for work is never part of a deadlock; any other blocked actor can be.
   */
  private blockOn(word: number, value: number, word2 = -1, value2 = 0): void {
    const w = this.w;
    this.trace(Ev.BLOCK, word);
    Atomics.store(w, this.a + A_BLOCK_WORD, word);
    Atomics.store(w, this.a + A_BLOCK_VALUE, value);
    Atomics.store(w, this.a + A_BLOCK_WORD2, word2 + 1);
    Atomics.store(w, this.a + A_BLOCK_VALUE2, value2);
    if (this.writePoints) Atomics.store(w, this.a + A_PEND_REGION, 0);
    Atomics.store(w, this.a + A_STATE, ST_BLOCKED);
    const next = decide(w, this.L, this.tid);
    if (next < 0) {
      Atomics.store(w, this.base + H_TOKEN, -1);
      if (Atomics.load(w, this.base + H_OUTCOME) !== SchedOutcome.RUNNING) {
        const reason = this.endReason();
        this.endRun(reason);
        throw new SyncAbortError(reason);
      }
      // Nobody can run, yet nobody is stuck: only servers wait. The controller will kick us.
      this.waitTurn();
      return;
    }
    if (next !== this.tid) {
      handOff(w, this.L, next, this.free);
      this.waitTurn();
    }
  }

  /** Why the run ended, as the abort that unwinds its actors (the outcome is set, not RUNNING). */
  private endReason(): Exclude<AbortReason, typeof AbortReason.NONE> {
    const o = Atomics.load(this.w, this.base + H_OUTCOME);
    return o === SchedOutcome.STEP_LIMIT
      ? AbortReason.STEP_LIMIT
      : o === SchedOutcome.ACTOR_FAILED
        ? AbortReason.ACTOR_FAILED
        : AbortReason.DEADLOCK;
  }

  /**
   * This actor's code threw (a model assertion): the run ends at this step, before the actor
   * leaves and hands the token on, so that the log stops where the failure was and a replay
   * of it fails at the same point.
   */
  failRun(): void {
    if (!this.active) return;
    if (Atomics.compareExchange(this.w, this.base + H_OUTCOME, SchedOutcome.RUNNING, SchedOutcome.ACTOR_FAILED) === SchedOutcome.RUNNING)
      this.endRun(AbortReason.ACTOR_FAILED);
  }

  /**
   * Ends the run for every actor: the abort, then a wake-up for each one waiting for its turn,
   * which would otherwise notice only when its wait slice ran out.
   */
  private endRun(reason: Parameters<SyncControl['abort']>[0]): void {
    this.ctl.abort(reason);
    for (let t = 0; t < this.maxThreads; t++) {
      const wake = this.L.actor(t) + A_WAKE;
      Atomics.add(this.w, wake, 1);
      this.free.wake(wake, 1);
    }
  }

  private waitTurn(): void {
    const w = this.w;
    const wake = this.a + A_WAKE;
    for (;;) {
      const seq = Atomics.load(w, wake);
      // The abort first: an actor unwinding from a deadlock releases its locks, and a waiter
      // handed one must not go on into state the unwinding left half-updated.
      const abort = this.ctl.abortReason();
      if (abort !== AbortReason.NONE) throw new SyncAbortError(abort);
      if (Atomics.load(w, this.base + H_TOKEN) === this.tid) return;
      Atomics.wait(w, wake, seq, 50);
    }
  }

  private trace(kind: number, arg: number): void {
    const w = this.w;
    const n = Atomics.add(w, this.base + H_TRACE_LEN, 1);
    if (n >= MAX_TRACE) return;
    const e = this.L.trace + n * 4;
    w[e] = Atomics.load(w, this.base + H_STEP);
    w[e + 1] = this.tid;
    w[e + 2] = kind;
    w[e + 3] = arg;
  }

  // Each acquisition is checked by lockdep before its first wait; a wait ended by an abort drops it.
  mutexLock(i: number, cls: LockClass): void {
    if (!this.active) return this.free.mutexLock(i, cls);
    this.ld.acquire(i, cls, Held.MUTEX);
    try {
      for (;;) {
        this.yieldNow(Ev.LOCK, i);
        const c = Atomics.compareExchange(this.w, i, 0, this.me);
        if (c === 0) return;
        this.blockOn(i, c);
      }
    } catch (e) {
      this.ld.release(i);
      throw e;
    }
  }
  mutexTryLock(i: number, cls: LockClass): boolean {
    return this.free.mutexTryLock(i, cls);
  }
  // Releases are the free mode's, with its owner and underflow checks: they never wait or yield.
  mutexUnlock(i: number): void {
    this.free.mutexUnlock(i);
  }
  // Writer-fair as the kernel's rwsem and qrwlock are: a reader waits behind a waiting writer.
  downRead(i: number, cls: LockClass): void {
    if (!this.active) return this.free.downRead(i, cls);
    this.ld.acquire(i, cls, Held.READ);
    try {
      for (;;) {
        this.yieldNow(Ev.READ_LOCK, i);
        const s = Atomics.load(this.w, i + RW_STATE);
        const writers = Atomics.load(this.w, i + RW_WRITERS_WAITING);
        if (s < WRITER && writers === 0 && Atomics.compareExchange(this.w, i + RW_STATE, s, s + 1) === s) return;
        if (s >= WRITER) this.blockOn(i + RW_STATE, s);
        else if (writers !== 0) this.blockOn(i + RW_WRITERS_WAITING, writers);
      }
    } catch (e) {
      this.ld.release(i);
      throw e;
    }
  }
  upRead(i: number): void {
    this.free.upRead(i);
  }
  downWrite(i: number, cls: LockClass): void {
    if (!this.active) return this.free.downWrite(i, cls);
    this.ld.acquire(i, cls, Held.WRITE);
    try {
      this.downWriteWait(i);
    } catch (e) {
      this.ld.release(i);
      throw e;
    }
  }
  private downWriteWait(i: number): void {
    let waiting = false;
    for (;;) {
      this.yieldNow(Ev.WRITE_LOCK, i);
      const s = Atomics.compareExchange(this.w, i + RW_STATE, 0, WRITER);
      if (s === 0) {
        if (waiting) Atomics.sub(this.w, i + RW_WRITERS_WAITING, 1);
        Atomics.store(this.w, i + RW_OWNER, this.me);
        return;
      }
      if (!waiting) {
        Atomics.add(this.w, i + RW_WRITERS_WAITING, 1);
        waiting = true;
      }
      this.blockOn(i + RW_STATE, s);
    }
  }
  upWrite(i: number): void {
    this.free.upWrite(i);
  }
  srcuReadLock(srcu: number, cls: LockClass): void {
    if (this.active) this.yieldNow(Ev.SRCU_READ_LOCK, srcu);
    this.free.srcuReadLock(srcu, cls);
  }
  srcuReadUnlock(srcu: number): void {
    this.free.srcuReadUnlock(srcu);
  }
  synchronizeSrcu(srcu: number, cls: LockClass): void {
    if (!this.active) return this.free.synchronizeSrcu(srcu, cls);
    this.yieldNow(Ev.SYNCHRONIZE_SRCU, srcu);
    this.ld.sync(srcu, cls);
    const gp = srcuStartGp(this.w, srcu, this.tid);
    this.point(P_SYNCHRONIZE);
    for (let t = 0; t < this.maxThreads; t++) {
      const r = srcuReaderWord(srcu, t);
      for (let v = Atomics.load(this.w, r); srcuBefore(v, gp); v = Atomics.load(this.w, r)) this.blockOn(r, v);
    }
  }
  spinWhileEqualsInterruptible(i: number, value: number): boolean {
    if (!this.active) return this.free.spinWhileEqualsInterruptible(i, value);
    const sig = this.ctl.signalWord(this.tid);
    this.yieldNow(Ev.WAIT, i);
    for (;;) {
      if (Atomics.load(this.w, sig) !== 0) return true;
      if (Atomics.load(this.w, i) !== value) return false;
      this.blockOn(i, value, sig, 0);
    }
  }
  // One actor runs at a time: spinning and sleeping are the same wait here, an rwlock_t is an rwsem.
  readLock(i: number, cls: LockClass): void {
    if (!this.active) return this.free.readLock(i, cls);
    this.downRead(i, cls);
  }
  readUnlock(i: number): void {
    this.free.readUnlock(i);
  }
  writeLock(i: number, cls: LockClass): void {
    if (!this.active) return this.free.writeLock(i, cls);
    this.downWrite(i, cls);
  }
  writeUnlock(i: number): void {
    this.free.writeUnlock(i);
  }
  assertHeld(i: number): void {
    this.free.assertHeld(i);
  }
  assertHeldWrite(i: number): void {
    this.free.assertHeldWrite(i);
  }
  assertHeldRead(i: number): void {
    this.free.assertHeldRead(i);
  }
  waitWhileEquals(i: number, value: number, spin: number): void {
    if (!this.active) return this.free.waitWhileEquals(i, value, spin);
    this.yieldNow(Ev.WAIT, i);
    while (Atomics.load(this.w, i) === value) this.blockOn(i, value);
  }
  idleWhileEquals(i: number, value: number, spin: number): void {
    if (!this.active) return this.free.idleWhileEquals(i, value, spin);
    while (Atomics.load(this.w, i) === value) this.blockOn(i, value);
  }
  wake(i: number, count: number): void {
    // Waiters are blocked in the scheduler, which re-checks their word; a notify is harmless.
    this.free.wake(i, count);
  }
  sleepMs(_ms: number): void {
    if (!this.active) return this.free.sleepMs(_ms);
    this.yieldNow(Ev.SLEEP, 0);
  }
  point(p: number): void {
    if (!this.active) return this.free.point(p);
    this.cov.pointHit(p);
    this.yieldNow(Ev.POINT, p);
  }
  sharedWrite(region: number, obj: number): void {
    if (!this.writePoints || !this.active) return;
    // What this actor runs when next chosen, for the sleep sets (decide.ts); yieldNow keeps it.
    Atomics.store(this.w, this.a + A_PEND_REGION, region + 1);
    Atomics.store(this.w, this.a + A_PEND, obj + 1);
    this.yieldNow(Ev.WRITE, obj >= 0 ? obj : region);
  }
  pointArmed(p: number): boolean {
    // Every point is a scheduling point of a controlled run.
    return this.active || this.free.pointArmed(p);
  }
  aborted(): boolean {
    return this.free.aborted();
  }
  setStepHook(hook: (() => void) | null): void {
    this.hook = hook;
  }
  signalPending(): boolean {
    return this.free.signalPending();
  }
}
