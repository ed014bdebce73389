// The 'sync' region: the sandbox-wide abort word, the watchdog and spin settings, each thread's
// waiting-on and pending-signal words, and the pause slots that hold an actor at a named point.
// SyncControl is the only reader of its layout; every thread, the controller included, uses it.

import { LayoutBuilder, type Mem, regionBase } from '../layout.js';
import { assert } from '../limits.js';
import { POINTS } from '../points.js';
import { AbortReason, DEFAULT_SPIN, DEFAULT_WATCHDOG_MS } from './sync.js';

/** Control words (region 'sync'). */
const CTL_ABORT = 0;
const CTL_WATCHDOG_MS = 1;
const CTL_SPIN = 3;
const CTL_WAITING_ON = 16;
export const MAX_PAUSES = 8;
const PAUSE_WORDS = 4; // point+1, tid filter (-1: any), state, holder tid
const PAUSE_FREE = 0;
const PAUSE_ARMED = 1;
export const PAUSE_HELD = 2;
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

const REGION = 'sync';

function syncWords(maxThreads: number): number {
  return CTL_WAITING_ON + 2 * maxThreads + MAX_PAUSES * PAUSE_WORDS + POINTS.length;
}

export function declareSync(lb: LayoutBuilder, maxThreads: number): void {
  lb.add(REGION, syncWords(maxThreads), 'shm/sync/control.ts');
}

/** Shared control operations, usable from any thread including the controller. */
export class SyncControl {
  readonly base: number;
  /** Nonzero once the sandbox asked every actor to stop (an AbortReason). */
  readonly abortWord: number;
  readonly watchdogWord: number;
  readonly spinWord: number;
  private readonly waitingBase: number;
  private readonly signalBase: number;
  private readonly pauseSlots: number;
  private readonly armedBase: number;
  constructor(readonly mem: Mem) {
    const maxThreads = mem.limits.maxThreads;
    this.base = regionBase(mem, REGION);
    this.abortWord = this.base + CTL_ABORT;
    this.watchdogWord = this.base + CTL_WATCHDOG_MS;
    this.spinWord = this.base + CTL_SPIN;
    this.waitingBase = this.base + CTL_WAITING_ON;
    this.signalBase = this.waitingBase + maxThreads;
    this.pauseSlots = this.signalBase + maxThreads;
    this.armedBase = this.pauseSlots + MAX_PAUSES * PAUSE_WORDS;
    assert(this.armedBase + POINTS.length <= this.base + syncWords(maxThreads), 'sync region holds every pause counter');
  }
  /** The word thread `tid` stores (word index + 1) in while it sleeps on a lock or word. */
  waitingOnWord(tid: number): number {
    return this.waitingBase + tid;
  }
  init(watchdogMs = DEFAULT_WATCHDOG_MS, spin = DEFAULT_SPIN): void {
    Atomics.store(this.mem.w, this.watchdogWord, watchdogMs);
    Atomics.store(this.mem.w, this.spinWord, spin);
  }
  /** Asks every actor to stop: each wait of the sandbox throws SyncAbortError(reason). */
  abort(reason: Exclude<AbortReason, typeof AbortReason.NONE>): void {
    Atomics.store(this.mem.w, this.abortWord, reason);
  }
  abortReason(): AbortReason {
    return Atomics.load(this.mem.w, this.abortWord) as AbortReason;
  }
  /** Ends an abort whose cause is dealt with (the explorer, before reusing its sandbox). */
  clearAbort(): void {
    Atomics.store(this.mem.w, this.abortWord, AbortReason.NONE);
  }
  setWatchdogMs(ms: number): void {
    Atomics.store(this.mem.w, this.watchdogWord, ms);
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
    return this.signalBase + tid;
  }
  /** Word index a thread is blocked on (+1), or 0. */
  waitingOn(tid: number): number {
    return Atomics.load(this.mem.w, this.waitingOnWord(tid));
  }
  private pauseBase(slot: number): number {
    return this.pauseSlots + slot * PAUSE_WORDS;
  }
  /** Per point: how many armed pauses wait for it. point() reads only this word. */
  armedWord(point: number): number {
    return this.armedBase + point;
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
