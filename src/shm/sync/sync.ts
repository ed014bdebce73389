// The synchronisation primitives' interface: every lock, wait and wake in the sandbox goes
// through a Sync. Futex style: a compareExchange fast path, a short bounded spin, then
// Atomics.wait in slices so that an abort or the watchdog can end any wait. `point()` marks
// where another actor may run: the free mode (free.ts) only checks pause points there; the
// controlled mode (../sched/controlled.ts) schedules there instead.

import type { LockClass } from './classes.js';

/** How long one Atomics.wait lasts before an abort or the watchdog is checked. */
export const WAIT_SLICE_MS = 10;
export const DEFAULT_WATCHDOG_MS = 5000;
export const DEFAULT_SPIN = 200;
/**
 * rwlock_t spins where an rwsem would sleep: its holders never sleep, so the wait is as short as
 * the critical section. Past this many rounds (some 20-40 us, what a futex sleep and wake-up
 * costs here) the holder was descheduled (the kernel disables preemption under a spinlock, a
 * worker cannot) and the waiter sleeps instead, leaving the core to the thread it waits for.
 */
export const RWLOCK_SPIN = 4000;

/**
 * Why every actor of a sandbox must stop: the value of the sync region's abort word (0: none).
 * Here beside SyncAbortError, which names it; SyncControl stores and reads it.
 */
export const AbortReason = {
  NONE: 0,
  /** The runtime shuts down: its workers are being terminated. */
  SHUTDOWN: 1,
  /** A worker died (or a follower of the explorer's rounds failed): nothing may wait for it. */
  WORKER_DIED: 2,
  /** A call to a worker, or an explorer batch, got no answer in time: something hangs. */
  TIMEOUT: 3,
  /** The controlled scheduler found that no actor can run. */
  DEADLOCK: 4,
  /** The controlled run took its step limit. */
  STEP_LIMIT: 5,
  /** A scenario step's wait outlived the watchdog: a hang the scenario reports, with nothing unwound. */
  WATCHDOG: 6,
  /** An actor of a controlled run threw (a model assertion): the run ends at that step. */
  ACTOR_FAILED: 7,
} as const;
export type AbortReason = (typeof AbortReason)[keyof typeof AbortReason];

const ABORT_REASON_NAMES: Readonly<Record<AbortReason, string>> = {
  [AbortReason.NONE]: 'no reason',
  [AbortReason.SHUTDOWN]: 'shutdown',
  [AbortReason.WORKER_DIED]: 'a worker died',
  [AbortReason.TIMEOUT]: 'no answer in time',
  [AbortReason.DEADLOCK]: 'deadlock',
  [AbortReason.STEP_LIMIT]: 'step limit',
  [AbortReason.WATCHDOG]: 'watchdog',
  [AbortReason.ACTOR_FAILED]: 'an actor failed',
};

/** The reason's name for messages (an unknown value as its number). */
export function abortReasonName(reason: number): string {
  return ABORT_REASON_NAMES[reason as AbortReason] ?? `reason ${reason}`;
}

/** The sandbox was torn down while this thread waited. */
export class SyncAbortError extends Error {
  constructor(readonly reason: AbortReason) {
    super(`sandbox aborted (${abortReasonName(reason)}) while waiting`);
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
  /** mutex_trylock: never waits, so lockdep records no order against what the caller holds. */
  mutexTryLock(i: number, cls: LockClass): boolean;
  mutexUnlock(i: number): void;
  downRead(i: number, cls: LockClass): void;
  upRead(i: number): void;
  downWrite(i: number, cls: LockClass): void;
  upWrite(i: number): void;
  /** srcu_read_lock on the srcu_struct at `srcu`; sections nest. */
  srcuReadLock(srcu: number, cls: LockClass): void;
  /** srcu_read_unlock */
  srcuReadUnlock(srcu: number): void;
  /** synchronize_srcu: returns once every read section that began before the call has ended. */
  synchronizeSrcu(srcu: number, cls: LockClass): void;
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
  /**
   * lockdep_assert_held: throws a LockdepError naming the lock and its holder unless this thread
   * holds the lock at word `i` (a mutex, an rwsem or rwlock_t in either mode, an SRCU read section).
   */
  assertHeld(i: number): void;
  /** lockdep_assert_held_write: a mutex, or an rwsem or rwlock_t held for write. */
  assertHeldWrite(i: number): void;
  /** lockdep_assert_held_read: an rwsem or rwlock_t held for read. */
  assertHeldRead(i: number): void;
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
  /**
   * A write to shared model state is about to happen, through the accessor of the region that
   * owns it: `region` is the region's base word, `obj` the first word of the record it changes,
   * or -1 when the write may touch any record of the region (an allocation, a free, a scan). A
   * scheduling point of a controlled run whose points are 'shared' (../points.ts); nothing
   * anywhere else.
   */
  sharedWrite(region: number, obj: number): void;
  /** Whether point(p) may stop here: lets a caller leave a state it must not stop in first. */
  pointArmed(p: number): boolean;
  /** True once the sandbox asked every actor to stop. */
  aborted(): boolean;
  /** A check to run at each scheduling point of a controlled run (null: none); the free mode has none. */
  setStepHook(hook: (() => void) | null): void;
  /** signal_pending(current), consuming the signal as its delivery would. */
  signalPending(): boolean;
}

/** What a region's accessors need of a Sync: the scheduling point before each write. */
export type WritePoints = Pick<Sync, 'sharedWrite'>;

/** For views that only read (the auditor, reports, tests): their writes are never points. */
export const NO_WRITE_POINTS: WritePoints = { sharedWrite: () => undefined };

/** Sync.sharedWrite's `obj` for a write that may touch any record of its region. */
export const WHOLE_REGION = -1;
