// The free mode of the sync layer: real threads, real contention, for stress runs and benchmarks.

import type { Mem } from '../layout.js';
import { P } from '../points.js';
import { LOCK_CONTENDED_BASE, LOCK_WAIT_NS_BASE, threadStats } from '../stats.js';
import { TraceKind, Tracer } from '../trace.js';
import { CLASS_STAT, type LockClass } from './classes.js';
import { PAUSE_HELD, SyncControl } from './control.js';
import { Held, type HeldMode, Lockdep, LockdepError } from './lockdep.js';
import {
  AbortReason,
  DEFAULT_SPIN,
  LockTimeoutError,
  RWLOCK_SPIN,
  type Sync,
  SyncAbortError,
  WAIT_SLICE_MS,
  type WordDescriber,
} from './sync.js';
import {
  OWNER_MASK,
  RW_OWNER,
  RW_SEQ,
  RW_SLEEPERS,
  RW_STATE,
  RW_WRITERS_WAITING,
  SRCU_SLEEPERS,
  WAITERS,
  WRITER,
  holderName,
  srcuBefore,
  srcuEnter,
  srcuExit,
  srcuReaderSince,
  srcuReaderWord,
  srcuStartGp,
} from './words.js';

const P_SYNCHRONIZE = P['srcu.synchronize'];

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
  /** This thread's lockdep: its held locks; the controlled mode shares it. */
  readonly lockdep: Lockdep;

  constructor(
    mem: Mem,
    readonly tid: number,
    private readonly describe: WordDescriber = (i) => ({ name: `word ${i}`, kind: 'word' }),
  ) {
    this.w = mem.w;
    this.me = tid + 1;
    this.ctl = new SyncControl(mem);
    this.stats = threadStats(mem, tid);
    this.spin = Atomics.load(mem.w, this.ctl.spinWord) || DEFAULT_SPIN;
    this.tracer = new Tracer(mem, tid);
    this.armedBase = this.ctl.armedWord(0);
    this.lockdep = new Lockdep(mem, tid, describe);
  }

  // mutex_lock
  mutexLock(i: number, cls: LockClass): void {
    this.lockdep.acquire(i, cls, Held.MUTEX);
    if (Atomics.compareExchange(this.w, i, 0, this.me) !== 0) this.contended(i, () => this.mutexLockSlow(i, cls));
  }

  // mutex_trylock
  mutexTryLock(i: number, cls: LockClass): boolean {
    if (Atomics.compareExchange(this.w, i, 0, this.me) !== 0) return false;
    this.lockdep.acquireTry(i, cls);
    return true;
  }

  /** A wait for a lock lockdep already counts as held: a wait that ends without it (abort, watchdog) drops it. */
  private contended(i: number, wait: () => void): void {
    try {
      wait();
    } catch (e) {
      this.lockdep.release(i);
      throw e;
    }
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
    this.lockdep.release(i);
    if (old & WAITERS) Atomics.notify(this.w, i, 1);
  }

  // down_read
  downRead(i: number, cls: LockClass): void {
    const w = this.w;
    this.lockdep.acquire(i, cls, Held.READ);
    const s = Atomics.load(w, i + RW_STATE);
    if (s < WRITER && Atomics.load(w, i + RW_WRITERS_WAITING) === 0 && Atomics.compareExchange(w, i + RW_STATE, s, s + 1) === s) return;
    this.contended(i, () => this.downReadSlow(i, cls, this.spin));
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
    this.lockdep.release(i);
    if (left === 0 && Atomics.load(w, i + RW_SLEEPERS) > 0) this.rwWake(i);
  }

  // down_write
  downWrite(i: number, cls: LockClass): void {
    const w = this.w;
    this.lockdep.acquire(i, cls, Held.WRITE);
    if (Atomics.compareExchange(w, i + RW_STATE, 0, WRITER) === 0) {
      Atomics.store(w, i + RW_OWNER, this.me);
      return;
    }
    this.contended(i, () => this.downWriteSlow(i, cls, this.spin));
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
    this.lockdep.release(i);
    Atomics.store(w, i + RW_OWNER, 0);
    Atomics.store(w, i + RW_STATE, 0);
    if (Atomics.load(w, i + RW_SLEEPERS) > 0) this.rwWake(i);
  }

  // read_lock (qrwlock): the rwsem's fast path; a waiter spins instead of queueing to sleep.
  readLock(i: number, cls: LockClass): void {
    const w = this.w;
    this.lockdep.acquire(i, cls, Held.READ);
    const s = Atomics.load(w, i + RW_STATE);
    if (s < WRITER && Atomics.load(w, i + RW_WRITERS_WAITING) === 0 && Atomics.compareExchange(w, i + RW_STATE, s, s + 1) === s) return;
    this.contended(i, () => this.downReadSlow(i, cls, RWLOCK_SPIN));
  }

  // read_unlock: a sleeper exists only when a holder was descheduled past RWLOCK_SPIN.
  readUnlock(i: number): void {
    this.upRead(i);
  }

  // write_lock
  writeLock(i: number, cls: LockClass): void {
    const w = this.w;
    this.lockdep.acquire(i, cls, Held.WRITE);
    if (Atomics.compareExchange(w, i + RW_STATE, 0, WRITER) === 0) {
      Atomics.store(w, i + RW_OWNER, this.me);
      return;
    }
    this.contended(i, () => this.downWriteSlow(i, cls, RWLOCK_SPIN));
  }

  // write_unlock
  writeUnlock(i: number): void {
    this.upWrite(i);
  }

  // lockdep_assert_held: held in any mode (for an SRCU read section, srcu_read_lock_held).
  assertHeld(i: number): void {
    const m = this.lockdep.heldMode(i);
    if (m < 0 || !this.wordSays(i, m as HeldMode)) this.assertFailed(i, 'lockdep_assert_held', m);
  }

  // lockdep_assert_held_write: a mutex, or an rwsem or rwlock_t held for write.
  assertHeldWrite(i: number): void {
    const m = this.lockdep.heldMode(i);
    if ((m !== Held.MUTEX && m !== Held.WRITE) || !this.wordSays(i, m)) this.assertFailed(i, 'lockdep_assert_held_write', m);
  }

  // lockdep_assert_held_read
  assertHeldRead(i: number): void {
    const m = this.lockdep.heldMode(i);
    if (m !== Held.READ || !this.wordSays(i, m)) this.assertFailed(i, 'lockdep_assert_held_read', m);
  }

  /** Whether the lock word agrees that this thread holds it as lockdep says. */
  private wordSays(i: number, m: HeldMode): boolean {
    const w = this.w;
    switch (m) {
      case Held.MUTEX:
        return (Atomics.load(w, i) & OWNER_MASK) === this.me;
      case Held.WRITE:
        return Atomics.load(w, i + RW_STATE) === WRITER && Atomics.load(w, i + RW_OWNER) === this.me;
      case Held.READ: {
        const st = Atomics.load(w, i + RW_STATE);
        return st > 0 && st < WRITER;
      }
      default:
        return true;
    }
  }

  private assertFailed(i: number, what: string, mode: number): never {
    const held =
      mode < 0 ? 'does not hold it' : `holds it (${['a mutex', 'for write', 'for read', 'a read section'][mode]}) by its lockdep stack`;
    throw new LockdepError(`${what}(${this.describe(i).name}) failed: thread ${this.tid} ${held}; held by ${this.holderOf(i)}`);
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
  srcuReadLock(srcu: number, cls: LockClass): void {
    srcuEnter(this.w, srcu, this.tid);
    this.lockdep.acquire(srcu, cls, Held.SRCU_READ);
  }

  // srcu_read_unlock
  srcuReadUnlock(srcu: number): void {
    srcuExit(this.w, srcu, this.tid);
    this.lockdep.release(srcu);
  }

  // synchronize_srcu
  synchronizeSrcu(srcu: number, cls: LockClass): void {
    const w = this.w;
    this.lockdep.sync(srcu, cls);
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
    if (waited) this.account(cls, t0);
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
    const i = this.ctl.waitingOnWord(this.tid);
    const end = performance.now() + ms;
    for (let left = ms; left > 0; left = end - performance.now()) {
      const abort = Atomics.load(this.w, this.ctl.abortWord) as AbortReason;
      if (abort !== AbortReason.NONE) throw new SyncAbortError(abort);
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

  sharedWrite(_region: number, _obj: number): void {
    // Real threads interleave their writes by themselves: nothing to schedule.
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
    return Atomics.load(this.w, this.ctl.abortWord) !== AbortReason.NONE;
  }

  setStepHook(_hook: (() => void) | null): void {
    // Real threads run at once: no point in the free mode sees a still state.
  }

  signalPending(): boolean {
    const i = this.ctl.signalWord(this.tid);
    return Atomics.load(this.w, i) !== 0 && Atomics.exchange(this.w, i, 0) !== 0;
  }

  /** One bounded sleep on w[i] === expected, or until abort / watchdog. `what` names the lock. */
  private sleep(i: number, expected: number, what: number, t0: number, noWatchdog = false): void {
    const w = this.w;
    const ctl = this.ctl;
    Atomics.store(w, ctl.waitingOnWord(this.tid), what + 1);
    try {
      const abort = Atomics.load(w, ctl.abortWord) as AbortReason;
      if (abort !== AbortReason.NONE) throw new SyncAbortError(abort);
      // The clock is read only when a slice ran out: right after a wake-up it costs this VM
      // 7-20 us, a third of the wake-up itself.
      if ((Atomics.wait(w, i, expected, WAIT_SLICE_MS) === 'timed-out' || (++this.wakes & 63) === 0) && !noWatchdog) {
        const waited = performance.now() - t0;
        const limit = Atomics.load(w, ctl.watchdogWord);
        if (limit > 0 && waited > limit) throw new LockTimeoutError(this.describe(what).name, this.holderOf(what), this.tid, waited);
      }
    } finally {
      Atomics.store(w, ctl.waitingOnWord(this.tid), 0);
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
    const stat = CLASS_STAT[cls];
    this.stats[LOCK_CONTENDED_BASE + stat]++;
    this.stats[LOCK_WAIT_NS_BASE + stat] += ms * 1e6;
    if (this.tracer.on) this.tracer.record(TraceKind.LOCK_WAIT, stat, this.tracer.now() - ms);
  }
}
