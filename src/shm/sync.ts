// The synchronisation primitives: every lock, wait and wake in the sandbox goes through a Sync.
// Futex style: a compareExchange fast path, a short bounded spin, then Atomics.wait in slices so
// that an abort or the watchdog can end any wait. `point()` marks where another actor may run:
// the free mode only checks pause points there; a controlled mode can schedule there instead.

import { LayoutBuilder, type Mem, regionBase } from './layout.js';
import { P, POINTS } from './points.js';
import { LOCK_CONTENDED_BASE, LOCK_WAIT_NS_BASE, LockClass, threadStats } from './stats.js';
import { TraceKind, Tracer } from './trace.js';

/** Mutex word: 0 = free, else holder tid + 1, with WAITERS set while sleepers may exist. */
export const WAITERS = 1 << 30;
export const OWNER_MASK = WAITERS - 1;

/** Read/write semaphore: RWSEM_WORDS words. STATE is reader count or WRITER. */
export const RWSEM_WORDS = 8;
export const RW_STATE = 0;
const RW_SLEEPERS = 1;
export const RW_WRITERS_WAITING = 2;
export const RW_OWNER = 3;
const RW_SEQ = 4;
export const WRITER = 1 << 30;

/**
 * SRCU (struct srcu_struct): a grace-period counter, a count of sleeping updaters, then one
 * cache line per thread holding that thread's read section: 0 outside, else
 * ((grace period seen at entry + 1) << SRCU_DEPTH_BITS) | nesting depth. A reader writes only
 * its own line; synchronize_srcu waits for every line whose section began before it did.
 */
const SRCU_GP = 0;
const SRCU_SLEEPERS = 1;
const SRCU_HEADER = 16;
const SRCU_LINE = 16;
const SRCU_DEPTH_BITS = 4;
const SRCU_DEPTH_MASK = (1 << SRCU_DEPTH_BITS) - 1;
/** Words of one srcu_struct for a sandbox of `maxThreads` threads. */
export function srcuWords(maxThreads: number): number {
  return SRCU_HEADER + maxThreads * SRCU_LINE;
}
/** The word holding thread `tid`'s read section of the srcu_struct at `srcu`. */
export function srcuReaderWord(srcu: number, tid: number): number {
  return srcu + SRCU_HEADER + tid * SRCU_LINE;
}
/** Which thread's reader word `i` is, relative to an srcu_struct base, or -1. */
export function srcuReaderOf(srcu: number, maxThreads: number, i: number): number {
  const rel = i - srcu - SRCU_HEADER;
  if (rel < 0 || rel >= maxThreads * SRCU_LINE || rel % SRCU_LINE !== 0) return -1;
  return rel / SRCU_LINE;
}
/** The grace period a reader word's section began in (its value), for reports. */
export function srcuReaderSince(value: number): number {
  return (value >>> SRCU_DEPTH_BITS) - 1;
}

/** Control words (region 'sync'). */
const CTL_ABORT = 0;
const CTL_WATCHDOG_MS = 1;
const CTL_SPIN = 3;
const CTL_WAITING_ON = 16;
export const MAX_PAUSES = 8;
const PAUSE_WORDS = 4; // point+1, tid filter (-1: any), state, holder tid
const PAUSE_FREE = 0;
const PAUSE_ARMED = 1;
const PAUSE_HELD = 2;
const PAUSE_RELEASED = 3;
/** Claimed by armPause while it fills the slot in; nobody can take it yet. */
const PAUSE_ARMING = 4;
/**
 * An armed slot's state word also names its point, so a thread can only claim the slot for the
 * point it reached, even if the controller re-arms the slot for another point meanwhile.
 */
const armedFor = (point: number): number => PAUSE_ARMED | ((point + 1) << 4);
const STATE_MASK = 15;
/** A thread won the slot and is recording itself as the holder; then the state becomes HELD. */
const PAUSE_CLAIMING = 5;

const P_SYNCHRONIZE = P['srcu.synchronize'];

/** How long one Atomics.wait lasts before an abort or the watchdog is checked. */
const WAIT_SLICE_MS = 10;
export const DEFAULT_WATCHDOG_MS = 5000;
export const DEFAULT_SPIN = 200;
/**
 * rwlock_t spins where an rwsem would sleep: its holders never sleep, so the wait is as short as
 * the critical section. Past this many rounds (some 20-40 us, what a futex sleep and wake-up
 * costs here) the holder was descheduled (the kernel disables preemption under a spinlock, a
 * worker cannot) and the waiter sleeps instead, leaving the core to the thread it waits for.
 */
export const RWLOCK_SPIN = 4000;

const REGION = 'sync';

export function declareSync(lb: LayoutBuilder, maxThreads: number): void {
  lb.add(REGION, CTL_WAITING_ON + 2 * maxThreads + MAX_PAUSES * PAUSE_WORDS + POINTS.length, 'shm/sync.ts');
}

/** The sandbox was torn down while this thread waited. */
export class SyncAbortError extends Error {
  constructor(reason: number) {
    super(`sandbox aborted (reason ${reason}) while waiting`);
    this.name = 'SyncAbortError';
  }
}

/** A wait outlived the watchdog: the message names the lock and who holds it. */
export class LockTimeoutError extends Error {
  constructor(
    readonly lock: string,
    readonly holder: string,
    readonly waiter: number,
    readonly waitedMs: number,
  ) {
    super(`watchdog: thread ${waiter} waited ${waitedMs.toFixed(0)} ms on ${lock}, held by ${holder}`);
    this.name = 'LockTimeoutError';
  }
}

/** Names a shared word for reports: installed by the layer that knows every region. */
export interface WordInfo {
  readonly name: string;
  /** 'srcu': a reader word of an srcu_struct (synchronize_srcu waits on it); `reader` names its thread. */
  readonly kind: 'mutex' | 'rwsem' | 'word' | 'srcu';
  readonly reader?: number;
}
export type WordDescriber = (wordIndex: number) => WordInfo;

export interface Sync {
  readonly tid: number;
  mutexLock(i: number, cls: LockClass): void;
  mutexTryLock(i: number): boolean;
  mutexUnlock(i: number): void;
  downRead(i: number, cls: LockClass): void;
  upRead(i: number): void;
  downWrite(i: number, cls: LockClass): void;
  upWrite(i: number): void;
  /** srcu_read_lock on the srcu_struct at `srcu`; sections nest. */
  srcuReadLock(srcu: number): void;
  /** srcu_read_unlock */
  srcuReadUnlock(srcu: number): void;
  /** synchronize_srcu: returns once every read section that began before the call has ended. */
  synchronizeSrcu(srcu: number): void;
  /**
   * A busy retry loop that only another actor can end (a fault spinning on an INVALID memslot):
   * waits while w[i] === value, but returns true at once, without consuming it, if a signal is
   * pending for this thread. No watchdog: a spinning CPU holds no lock (what it blocks is
   * reported by the waiters on what it holds).
   */
  spinWhileEqualsInterruptible(i: number, value: number): boolean;
  /** rwlock_t (read_lock, write_lock, ...): the same words as an rwsem, but waiters spin. */
  readLock(i: number, cls: LockClass): void;
  readUnlock(i: number): void;
  writeLock(i: number, cls: LockClass): void;
  writeUnlock(i: number): void;
  /** Blocks while w[i] === value (spinning up to `spin` loads first). */
  waitWhileEquals(i: number, value: number, spin: number): void;
  /** Like waitWhileEquals for a server with nothing to do: no watchdog, still ends on abort. */
  idleWhileEquals(i: number, value: number, spin: number): void;
  /** Wakes up to `count` threads blocked on w[i]. */
  wake(i: number, count: number): void;
  /** Sleeps about `ms` milliseconds (rate limiting); ends early, throwing, on abort. */
  sleepMs(ms: number): void;
  /** A named point where this actor may be held or descheduled. */
  point(p: number): void;
  /** Whether point(p) may stop here: lets a caller leave a state it must not stop in first. */
  pointArmed(p: number): boolean;
  /** True once the sandbox asked every actor to stop. */
  aborted(): boolean;
  /** A check to run at each scheduling point of a controlled run (null: none); the free mode has none. */
  setStepHook(hook: (() => void) | null): void;
  /** signal_pending(current), consuming the signal as its delivery would. */
  signalPending(): boolean;
}

/** Shared control operations, usable from any thread including the controller. */
export class SyncControl {
  readonly base: number;
  constructor(readonly mem: Mem) {
    this.base = regionBase(mem, REGION);
  }
  init(watchdogMs = DEFAULT_WATCHDOG_MS, spin = DEFAULT_SPIN): void {
    Atomics.store(this.mem.w, this.base + CTL_WATCHDOG_MS, watchdogMs);
    Atomics.store(this.mem.w, this.base + CTL_SPIN, spin);
  }
  abort(reason = 1): void {
    Atomics.store(this.mem.w, this.base + CTL_ABORT, reason);
  }
  abortReason(): number {
    return Atomics.load(this.mem.w, this.base + CTL_ABORT);
  }
  /** Ends an abort whose cause is dealt with (the explorer, before reusing its sandbox). */
  clearAbort(): void {
    Atomics.store(this.mem.w, this.base + CTL_ABORT, 0);
  }
  setWatchdogMs(ms: number): void {
    Atomics.store(this.mem.w, this.base + CTL_WATCHDOG_MS, ms);
  }
  /** Makes a signal pending for thread `tid` (its next interruptible loop returns EINTR). */
  raiseSignal(tid: number): void {
    const i = this.signalWord(tid);
    Atomics.store(this.mem.w, i, 1);
    // A thread in an interruptible spin sleeps on this word.
    Atomics.notify(this.mem.w, i);
  }
  /** The word that holds a pending signal for thread `tid`. */
  signalWord(tid: number): number {
    return this.base + CTL_WAITING_ON + this.mem.limits.maxThreads + tid;
  }
  /** Word index a thread is blocked on (+1), or 0. */
  waitingOn(tid: number): number {
    return Atomics.load(this.mem.w, this.base + CTL_WAITING_ON + tid);
  }
  private pauseBase(slot: number): number {
    return this.base + CTL_WAITING_ON + 2 * this.mem.limits.maxThreads + slot * PAUSE_WORDS;
  }
  /** Per point: how many armed pauses wait for it. point() reads only this word. */
  armedWord(point: number): number {
    return this.base + CTL_WAITING_ON + 2 * this.mem.limits.maxThreads + MAX_PAUSES * PAUSE_WORDS + point;
  }
  /** Arms a one-shot pause: the first thread (matching `tid`, -1 for any) to reach `point` is held. */
  armPause(point: number, tid = -1): number {
    const w = this.mem.w;
    for (let s = 0; s < MAX_PAUSES; s++) {
      const b = this.pauseBase(s);
      if (Atomics.compareExchange(w, b + 2, PAUSE_FREE, PAUSE_ARMING) === PAUSE_FREE) {
        Atomics.store(w, b + 1, tid);
        Atomics.store(w, b, point + 1);
        // Counted before it is published, so that a claim can never take the count below zero.
        Atomics.add(w, this.armedWord(point), 1);
        Atomics.store(w, b + 2, armedFor(point));
        return s;
      }
    }
    throw new Error(`pause: at most ${MAX_PAUSES} pauses may be armed at once`);
  }
  pauseState(slot: number): 'armed' | 'held' | 'released' | 'free' {
    const st = Atomics.load(this.mem.w, this.pauseBase(slot) + 2) & STATE_MASK;
    return (['free', 'armed', 'held', 'released', 'armed', 'armed'] as const)[st];
  }
  pauseHolder(slot: number): number {
    return Atomics.load(this.mem.w, this.pauseBase(slot) + 3);
  }
  /** Resolves once a thread is held at the pause (without blocking the caller's thread). */
  async whenHeld(slot: number, timeoutMs: number): Promise<number> {
    const w = this.mem.w;
    const b = this.pauseBase(slot);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = Atomics.load(w, b + 2);
      if (st === PAUSE_HELD) return Atomics.load(w, b + 3);
      if ((st & STATE_MASK) !== PAUSE_ARMED && st !== PAUSE_CLAIMING)
        throw new Error(`pause ${slot} is ${this.pauseState(slot)}, not armed`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`pause at '${POINTS[Atomics.load(w, b) - 1]}' was not reached within ${timeoutMs} ms`);
      const r = Atomics.waitAsync(w, b + 2, st, Math.min(left, 50));
      if (r.async) await r.value;
    }
  }
  /** Lets the held thread go on (it frees the slot as it leaves), or disarms an unreached pause. */
  release(slot: number): void {
    const w = this.mem.w;
    const b = this.pauseBase(slot);
    const point = Atomics.load(w, b) - 1;
    if (Atomics.compareExchange(w, b + 2, armedFor(point), PAUSE_FREE) === armedFor(point)) {
      Atomics.sub(w, this.armedWord(point), 1);
      Atomics.store(w, b, 0);
      return;
    }
    // A thread is claiming it this instant: it becomes HELD within a few instructions.
    while (Atomics.load(w, b + 2) === PAUSE_CLAIMING);
    if (Atomics.load(w, b + 2) !== PAUSE_HELD) return;
    Atomics.store(w, b + 2, PAUSE_RELEASED);
    Atomics.notify(w, b + 2);
  }
  /** Called by the held thread when it leaves a released pause. */
  freeSlot(slot: number): void {
    const b = this.pauseBase(slot);
    Atomics.store(this.mem.w, b, 0);
    Atomics.store(this.mem.w, b + 2, PAUSE_FREE);
  }
  /** Slot armed for `point` that `tid` may take, or -1. */
  claimPause(point: number, tid: number): number {
    const w = this.mem.w;
    for (let s = 0; s < MAX_PAUSES; s++) {
      const b = this.pauseBase(s);
      if (Atomics.load(w, b) !== point + 1) continue;
      const f = Atomics.load(w, b + 1);
      if (f !== -1 && f !== tid) continue;
      if (Atomics.compareExchange(w, b + 2, armedFor(point), PAUSE_CLAIMING) === armedFor(point)) {
        Atomics.store(w, b + 3, tid);
        Atomics.store(w, b + 2, PAUSE_HELD);
        Atomics.sub(w, this.armedWord(point), 1);
        Atomics.notify(w, b + 2);
        return s;
      }
    }
    return -1;
  }
  pauseStateWord(slot: number): number {
    return this.pauseBase(slot) + 2;
  }
}

/** Real threads, real contention. Pause points cost one Atomics.load when none is armed. */
export class FreeSync implements Sync {
  private readonly w: Int32Array;
  private readonly me: number;
  private readonly ctl: SyncControl;
  private readonly stats: Float64Array;
  private readonly spin: number;
  private readonly tracer: Tracer;
  private readonly armedBase: number;
  /** Wake-ups seen, so the watchdog also looks at the clock of a waiter that keeps being woken. */
  private wakes = 0;

  constructor(
    mem: Mem,
    readonly tid: number,
    private readonly describe: WordDescriber = (i) => ({ name: `word ${i}`, kind: 'word' }),
  ) {
    this.w = mem.w;
    this.me = tid + 1;
    this.ctl = new SyncControl(mem);
    this.stats = threadStats(mem, tid);
    this.spin = Atomics.load(mem.w, this.ctl.base + CTL_SPIN) || DEFAULT_SPIN;
    this.tracer = new Tracer(mem, tid);
    this.armedBase = this.ctl.armedWord(0);
  }

  // mutex_lock
  mutexLock(i: number, cls: LockClass): void {
    if (Atomics.compareExchange(this.w, i, 0, this.me) !== 0) this.mutexLockSlow(i, cls);
  }

  mutexTryLock(i: number): boolean {
    return Atomics.compareExchange(this.w, i, 0, this.me) === 0;
  }

  private mutexLockSlow(i: number, cls: LockClass): void {
    const w = this.w;
    const t0 = performance.now();
    for (let n = 0; n < this.spin; n++) {
      if (Atomics.load(w, i) === 0 && Atomics.compareExchange(w, i, 0, this.me) === 0) {
        this.account(cls, t0);
        return;
      }
    }
    let c = Atomics.load(w, i);
    for (;;) {
      if (c === 0) {
        // Take it with WAITERS set: others may still sleep on it (Drepper's "state 2").
        c = Atomics.compareExchange(w, i, 0, this.me | WAITERS);
        if (c === 0) break;
        continue;
      }
      if ((c & WAITERS) === 0) {
        const prev = Atomics.compareExchange(w, i, c, c | WAITERS);
        if (prev !== c) {
          c = prev;
          continue;
        }
        c |= WAITERS;
      }
      this.sleep(i, c, i, t0);
      c = Atomics.load(w, i);
    }
    this.account(cls, t0);
  }

  // mutex_unlock
  mutexUnlock(i: number): void {
    const old = Atomics.exchange(this.w, i, 0);
    if ((old & OWNER_MASK) !== this.me) {
      throw new Error(`mutex ${this.describe(i).name} unlocked by thread ${this.tid} but held by ${holderName(old)}`);
    }
    if (old & WAITERS) Atomics.notify(this.w, i, 1);
  }

  // down_read
  downRead(i: number, cls: LockClass): void {
    const w = this.w;
    const s = Atomics.load(w, i + RW_STATE);
    if (s < WRITER && Atomics.load(w, i + RW_WRITERS_WAITING) === 0 && Atomics.compareExchange(w, i + RW_STATE, s, s + 1) === s) return;
    this.downReadSlow(i, cls, this.spin);
  }

  private downReadSlow(i: number, cls: LockClass, spin: number): void {
    const w = this.w;
    const t0 = performance.now();
    for (let n = 0; ; n++) {
      const s = Atomics.load(w, i + RW_STATE);
      if (s < WRITER && Atomics.load(w, i + RW_WRITERS_WAITING) === 0) {
        if (Atomics.compareExchange(w, i + RW_STATE, s, s + 1) === s) break;
        continue;
      }
      if (n >= spin) this.rwSleep(i, t0, (st) => st < WRITER && Atomics.load(w, i + RW_WRITERS_WAITING) === 0);
    }
    this.account(cls, t0);
  }

  // up_read
  upRead(i: number): void {
    const w = this.w;
    const left = Atomics.sub(w, i + RW_STATE, 1) - 1;
    if (left < 0 || left >= WRITER) throw new Error(`up_read of ${this.describe(i).name} not read-held (state ${left + 1})`);
    if (left === 0 && Atomics.load(w, i + RW_SLEEPERS) > 0) this.rwWake(i);
  }

  // down_write
  downWrite(i: number, cls: LockClass): void {
    const w = this.w;
    if (Atomics.compareExchange(w, i + RW_STATE, 0, WRITER) === 0) {
      Atomics.store(w, i + RW_OWNER, this.me);
      return;
    }
    this.downWriteSlow(i, cls, this.spin);
  }

  private downWriteSlow(i: number, cls: LockClass, spin: number): void {
    const w = this.w;
    const t0 = performance.now();
    // Announce the writer so new readers hold back and it is not starved.
    Atomics.add(w, i + RW_WRITERS_WAITING, 1);
    try {
      for (let n = 0; ; n++) {
        if (Atomics.compareExchange(w, i + RW_STATE, 0, WRITER) === 0) break;
        if (n >= spin) this.rwSleep(i, t0, (st) => st === 0);
      }
    } finally {
      if (Atomics.sub(w, i + RW_WRITERS_WAITING, 1) === 1 && Atomics.load(w, i + RW_SLEEPERS) > 0) this.rwWake(i);
    }
    Atomics.store(w, i + RW_OWNER, this.me);
    this.account(cls, t0);
  }

  // up_write
  upWrite(i: number): void {
    const w = this.w;
    if (Atomics.load(w, i + RW_STATE) !== WRITER || Atomics.load(w, i + RW_OWNER) !== this.me) {
      throw new Error(`up_write of ${this.describe(i).name} by thread ${this.tid}, not its writer`);
    }
    Atomics.store(w, i + RW_OWNER, 0);
    Atomics.store(w, i + RW_STATE, 0);
    if (Atomics.load(w, i + RW_SLEEPERS) > 0) this.rwWake(i);
  }

  // read_lock (qrwlock): the rwsem's fast path; a waiter spins instead of queueing to sleep.
  readLock(i: number, cls: LockClass): void {
    const w = this.w;
    const s = Atomics.load(w, i + RW_STATE);
    if (s < WRITER && Atomics.load(w, i + RW_WRITERS_WAITING) === 0 && Atomics.compareExchange(w, i + RW_STATE, s, s + 1) === s) return;
    this.downReadSlow(i, cls, RWLOCK_SPIN);
  }

  // read_unlock: a sleeper exists only when a holder was descheduled past RWLOCK_SPIN.
  readUnlock(i: number): void {
    this.upRead(i);
  }

  // write_lock
  writeLock(i: number, cls: LockClass): void {
    const w = this.w;
    if (Atomics.compareExchange(w, i + RW_STATE, 0, WRITER) === 0) {
      Atomics.store(w, i + RW_OWNER, this.me);
      return;
    }
    this.downWriteSlow(i, cls, RWLOCK_SPIN);
  }

  // write_unlock
  writeUnlock(i: number): void {
    this.upWrite(i);
  }

  /** Sleeps on the rwsem's wake sequence until `ready(state)` may hold; the caller re-checks. */
  private rwSleep(i: number, t0: number, ready: (state: number) => boolean): void {
    const w = this.w;
    Atomics.add(w, i + RW_SLEEPERS, 1);
    try {
      const seq = Atomics.load(w, i + RW_SEQ);
      if (ready(Atomics.load(w, i + RW_STATE))) return;
      this.sleep(i + RW_SEQ, seq, i, t0);
    } finally {
      Atomics.sub(w, i + RW_SLEEPERS, 1);
    }
  }

  private rwWake(i: number): void {
    Atomics.add(this.w, i + RW_SEQ, 1);
    Atomics.notify(this.w, i + RW_SEQ);
  }

  // srcu_read_lock: one store to this thread's own line, one load of the grace period.
  srcuReadLock(srcu: number): void {
    srcuEnter(this.w, srcu, this.tid);
  }

  // srcu_read_unlock
  srcuReadUnlock(srcu: number): void {
    srcuExit(this.w, srcu, this.tid);
  }

  // synchronize_srcu
  synchronizeSrcu(srcu: number): void {
    const w = this.w;
    const gp = srcuStartGp(w, srcu, this.tid);
    this.point(P_SYNCHRONIZE);
    const t0 = performance.now();
    let waited = false;
    for (let t = 0; t < this.ctl.mem.limits.maxThreads; t++) {
      const r = srcuReaderWord(srcu, t);
      if (!srcuBefore(Atomics.load(w, r), gp)) continue;
      waited = true;
      let n = 0;
      for (; n < this.spin && srcuBefore(Atomics.load(w, r), gp); n++);
      if (n < this.spin) continue;
      Atomics.add(w, srcu + SRCU_SLEEPERS, 1);
      try {
        for (let v = Atomics.load(w, r); srcuBefore(v, gp); v = Atomics.load(w, r)) this.sleep(r, v, r, t0);
      } finally {
        Atomics.sub(w, srcu + SRCU_SLEEPERS, 1);
      }
    }
    if (waited) this.account(LockClass.SRCU, t0);
  }

  spinWhileEqualsInterruptible(i: number, value: number): boolean {
    const w = this.w;
    const sig = this.ctl.signalWord(this.tid);
    for (let n = 0; n < this.spin; n++) {
      if (Atomics.load(w, sig) !== 0) return true;
      if (Atomics.load(w, i) !== value) return false;
    }
    const t0 = performance.now();
    for (;;) {
      if (Atomics.load(w, sig) !== 0) return true;
      if (Atomics.load(w, i) !== value) return false;
      // Either word may change; a slice bounds the wait for the one not slept on.
      this.sleep(i, value, i, t0, true);
    }
  }

  waitWhileEquals(i: number, value: number, spin: number): void {
    const w = this.w;
    for (let n = 0; n < spin; n++) if (Atomics.load(w, i) !== value) return;
    const t0 = performance.now();
    while (Atomics.load(w, i) === value) this.sleep(i, value, i, t0);
  }

  idleWhileEquals(i: number, value: number, spin: number): void {
    const w = this.w;
    for (let n = 0; n < spin; n++) if (Atomics.load(w, i) !== value) return;
    const t0 = performance.now();
    while (Atomics.load(w, i) === value) this.sleep(i, value, i, t0, true);
  }

  wake(i: number, count: number): void {
    Atomics.notify(this.w, i, count);
  }

  sleepMs(ms: number): void {
    const i = this.ctl.base + CTL_WAITING_ON + this.tid;
    const end = performance.now() + ms;
    for (let left = ms; left > 0; left = end - performance.now()) {
      const abort = Atomics.load(this.w, this.ctl.base + CTL_ABORT);
      if (abort !== 0) throw new SyncAbortError(abort);
      // Our own waiting-on word is 0 while we are not blocked on a lock: nobody changes it.
      Atomics.wait(this.w, i, 0, Math.min(left, WAIT_SLICE_MS));
    }
  }

  point(p: number): void {
    if (Atomics.load(this.w, this.armedBase + p) !== 0) this.pauseHere(p);
  }

  pointArmed(p: number): boolean {
    return Atomics.load(this.w, this.armedBase + p) !== 0;
  }

  private pauseHere(p: number): void {
    const slot = this.ctl.claimPause(p, this.tid);
    if (slot < 0) return;
    const word = this.ctl.pauseStateWord(slot);
    const t0 = performance.now();
    try {
      while (Atomics.load(this.w, word) === PAUSE_HELD) this.sleep(word, PAUSE_HELD, word, t0, true);
    } finally {
      // Also when an abort ends the wait: the slot must not stay taken.
      this.ctl.freeSlot(slot);
    }
  }

  aborted(): boolean {
    return Atomics.load(this.w, this.ctl.base + CTL_ABORT) !== 0;
  }

  setStepHook(_hook: (() => void) | null): void {
    // Real threads run at once: no point in the free mode sees a still state.
  }

  signalPending(): boolean {
    const i = this.ctl.base + CTL_WAITING_ON + this.ctl.mem.limits.maxThreads + this.tid;
    return Atomics.load(this.w, i) !== 0 && Atomics.exchange(this.w, i, 0) !== 0;
  }

  /** One bounded sleep on w[i] === expected, or until abort / watchdog. `what` names the lock. */
  private sleep(i: number, expected: number, what: number, t0: number, noWatchdog = false): void {
    const w = this.w;
    const ctl = this.ctl.base;
    Atomics.store(w, ctl + CTL_WAITING_ON + this.tid, what + 1);
    try {
      const abort = Atomics.load(w, ctl + CTL_ABORT);
      if (abort !== 0) throw new SyncAbortError(abort);
      // The clock is read only when a slice ran out: right after a wake-up it costs this VM
      // 7-20 us, a third of the wake-up itself.
      if ((Atomics.wait(w, i, expected, WAIT_SLICE_MS) === 'timed-out' || (++this.wakes & 63) === 0) && !noWatchdog) {
        const waited = performance.now() - t0;
        const limit = Atomics.load(w, ctl + CTL_WATCHDOG_MS);
        if (limit > 0 && waited > limit) throw new LockTimeoutError(this.describe(what).name, this.holderOf(what), this.tid, waited);
      }
    } finally {
      Atomics.store(w, ctl + CTL_WAITING_ON + this.tid, 0);
    }
  }

  private holderOf(i: number): string {
    const v = Atomics.load(this.w, i);
    switch (this.describe(i).kind) {
      case 'rwsem':
        return v === WRITER ? `writer ${holderName(Atomics.load(this.w, i + RW_OWNER))}` : `${v} reader(s)`;
      case 'mutex':
        return holderName(v);
      case 'srcu':
        return v === 0
          ? 'nobody (the read section just ended)'
          : `reader thread ${this.describe(i).reader ?? '?'} in a read section since grace period ${srcuReaderSince(v)}`;
      default:
        return `value ${v}`;
    }
  }

  private account(cls: LockClass, t0: number): void {
    const ms = performance.now() - t0;
    this.stats[LOCK_CONTENDED_BASE + cls]++;
    this.stats[LOCK_WAIT_NS_BASE + cls] += ms * 1e6;
    if (this.tracer.on) this.tracer.record(TraceKind.LOCK_WAIT, cls, this.tracer.now() - ms);
  }
}

// srcu_read_lock's bookkeeping, shared by both modes.
export function srcuEnter(w: Int32Array, srcu: number, tid: number): void {
  const r = srcuReaderWord(srcu, tid);
  const v = w[r];
  if (v !== 0) {
    if ((v & SRCU_DEPTH_MASK) === SRCU_DEPTH_MASK) throw new Error('srcu_read_lock nested too deep');
    Atomics.store(w, r, v + 1);
    return;
  }
  // A sequentially consistent store, then the caller's loads of what SRCU protects: either an
  // updater's scan sees this section, or this section sees what the updater published first.
  Atomics.store(w, r, ((Atomics.load(w, srcu + SRCU_GP) + 1) << SRCU_DEPTH_BITS) | 1);
}

// srcu_read_unlock's bookkeeping; wakes a sleeping updater when the outermost section ends.
export function srcuExit(w: Int32Array, srcu: number, tid: number): void {
  const r = srcuReaderWord(srcu, tid);
  const v = w[r];
  if ((v & SRCU_DEPTH_MASK) === 0) throw new Error(`srcu_read_unlock by thread ${tid} outside a read section`);
  if ((v & SRCU_DEPTH_MASK) > 1) {
    Atomics.store(w, r, v - 1);
    return;
  }
  Atomics.store(w, r, 0);
  if (Atomics.load(w, srcu + SRCU_SLEEPERS) > 0) Atomics.notify(w, r);
}

/** Starts a grace period: returns its number, which synchronize_srcu compares sections with. */
export function srcuStartGp(w: Int32Array, srcu: number, tid: number): number {
  if (w[srcuReaderWord(srcu, tid)] !== 0)
    throw new Error(`synchronize_srcu by thread ${tid} inside its own read section: it would wait for itself`);
  return Atomics.add(w, srcu + SRCU_GP, 1) + 1;
}

/** A reader word's section began before grace period `gp` was started. */
export function srcuBefore(v: number, gp: number): boolean {
  return v !== 0 && v >>> SRCU_DEPTH_BITS <= gp;
}

function holderName(word: number): string {
  const owner = word & OWNER_MASK;
  return owner === 0 ? 'nobody' : `thread ${owner - 1}`;
}
