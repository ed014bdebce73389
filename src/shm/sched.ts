// The controlled mode of the sync layer: the same kernel code on the same worker threads, but
// one actor runs at a time. At every synchronisation point the running actor asks the scheduler
// (seeded random walk, PCT, or a forced replay) which actor runs next and hands it the token.
// A lock that is taken marks the caller blocked on that word until its value changes, so a
// deadlock is seen at once (no actor can run) and reported with who waits on what. The same seed
// and configuration give the same interleaving: every choice is logged, and a log replays exactly.

import { LayoutBuilder, type Mem, regionBase } from './layout.js';
import { P } from './points.js';
import type { LockClass } from './stats.js';
import {
  FreeSync,
  OWNER_MASK,
  RW_OWNER,
  RW_STATE,
  RW_WRITERS_WAITING,
  type Sync,
  SyncAbortError,
  SyncControl,
  WAITERS,
  WRITER,
  type WordDescriber,
  srcuBefore,
  srcuEnter,
  srcuExit,
  srcuReaderWord,
  srcuStartGp,
} from './sync.js';

const P_SYNCHRONIZE = P['srcu.synchronize'];

export const Strategy = { RANDOM: 0, PCT: 1, REPLAY: 2 } as const;
export type StrategyName = 'random' | 'pct' | 'replay';

/** Why a controlled run ended. */
export const SchedOutcome = { RUNNING: 0, DEADLOCK: 2, STEP_LIMIT: 3 } as const;

/** Event kinds in the trace. */
export const Ev = {
  POINT: 0,
  LOCK: 1,
  READ_LOCK: 2,
  WRITE_LOCK: 3,
  WAIT: 4,
  BLOCK: 5,
  EXIT: 6,
  SLEEP: 7,
  SRCU_READ_LOCK: 8,
  SYNCHRONIZE_SRCU: 9,
} as const;
export const EV_NAMES = [
  'point',
  'lock',
  'read_lock',
  'write_lock',
  'wait',
  'block',
  'exit',
  'sleep',
  'srcu_read_lock',
  'synchronize_srcu',
] as const;

export const MAX_STEPS = 1 << 15;
export const MAX_TRACE = 1 << 16;
const MAX_PCT_CHANGES = 16;

const H_ENABLED = 0;
const H_TOKEN = 1;
const H_STEP = 2;
const H_PRNG = 3;
const H_STRATEGY = 4;
const H_EXPECTED = 5;
const H_REGISTERED = 6;
const H_MAX_STEPS = 7;
const H_FORCED_LEN = 8;
const H_OUTCOME = 9;
const H_PCT_LOW = 10;
const H_TRACE_LEN = 11;
const H_SWITCHES = 12;
const H_PCT_CHANGES = 16; // MAX_PCT_CHANGES step numbers
const HEADER = 32;

const A_WORDS = 8;
const A_STATE = 0;
const A_BLOCK_WORD = 1;
const A_BLOCK_VALUE = 2;
const A_PRIO = 3;
const A_SERVER = 4;
const A_WAKE = 5;
/** A second word whose change also unblocks (word + 1; 0 = none): a signal for an interruptible spin. */
const A_BLOCK_WORD2 = 6;
const A_BLOCK_VALUE2 = 7;

/** The deadlock snapshot, per thread: blocked (1/0), the word, the second word + 1 (0 none), the value it waited to change from. */
const DL_WORDS = 4;

const ST_RUNNABLE = 1;
const ST_BLOCKED = 2;
const ST_DONE = 3;

const REGION = 'sched';

export function declareSched(lb: LayoutBuilder, maxThreads: number): void {
  if (maxThreads > 32 * CAND_WORDS) throw new Error(`sched: candidate masks hold ${32 * CAND_WORDS} threads, not ${maxThreads}`);
  // A reset clears the header (H_ENABLED: set-up code before configure() runs free) and the
  // actors; the log, forced choices, trace, deadlock snapshot and candidate sets are written
  // before they are read (up to the step and trace counts the header holds).
  lb.add(
    REGION,
    HEADER + maxThreads * A_WORDS + 2 * MAX_STEPS + 4 * MAX_TRACE + DL_WORDS * maxThreads + CAND_WORDS * MAX_STEPS,
    'shm/sched.ts',
    HEADER + maxThreads * A_WORDS,
  );
}

/**
 * The candidate set of each step (a bitmask over thread ids, two words: tids 0-31, 32-63), after
 * the deadlock snapshot. A model checker reads it to know where a schedule had alternatives.
 */
const CAND_WORDS = 2;

function candBase(base: number, maxThreads: number): number {
  return base + HEADER + maxThreads * A_WORDS + 2 * MAX_STEPS + 4 * MAX_TRACE + DL_WORDS * maxThreads;
}

export interface SchedConfig {
  strategy: StrategyName;
  seed: number;
  /** Actors that will register before the first step. */
  actors: number;
  maxSteps?: number;
  /** PCT bug depth d (d - 1 priority change points). */
  depth?: number;
  /** PCT's estimate of the steps in a run, for placing change points. */
  estimatedSteps?: number;
  /** Choices to force, step by step (replay and shrinking); past them: non-preemptive. */
  forced?: readonly number[];
}

export interface SchedTraceEvent {
  step: number;
  tid: number;
  kind: (typeof EV_NAMES)[number];
  arg: number;
}

/** The controller's view of the scheduler: configure before a run, read the log after it. */
export class SchedControl {
  readonly base: number;
  private readonly w: Int32Array;
  private readonly maxThreads: number;
  constructor(readonly mem: Mem) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
    this.maxThreads = mem.limits.maxThreads;
  }
  private get actors(): number {
    return this.base + HEADER;
  }
  get logBase(): number {
    return this.actors + this.maxThreads * A_WORDS;
  }
  get forcedBase(): number {
    return this.logBase + MAX_STEPS;
  }
  get traceBase(): number {
    return this.forcedBase + MAX_STEPS;
  }
  private get deadlockBase(): number {
    return this.traceBase + 4 * MAX_TRACE;
  }

  configure(c: SchedConfig): void {
    const w = this.w;
    const b = this.base;
    for (let k = 0; k < HEADER + this.maxThreads * A_WORDS; k++) Atomics.store(w, b + k, 0);
    Atomics.store(w, b + H_TOKEN, -1);
    Atomics.store(w, b + H_PRNG, c.seed >>> 0 || 1);
    Atomics.store(w, b + H_STRATEGY, c.strategy === 'random' ? Strategy.RANDOM : c.strategy === 'pct' ? Strategy.PCT : Strategy.REPLAY);
    Atomics.store(w, b + H_EXPECTED, c.actors);
    Atomics.store(w, b + H_MAX_STEPS, Math.min(c.maxSteps ?? MAX_STEPS, MAX_STEPS));
    const forced = c.forced ?? [];
    if (forced.length > MAX_STEPS) throw new Error(`replay: at most ${MAX_STEPS} forced choices`);
    for (let i = 0; i < forced.length; i++) Atomics.store(w, this.forcedBase + i, forced[i]);
    Atomics.store(w, b + H_FORCED_LEN, forced.length);
    if (c.strategy === 'pct') {
      const depth = Math.max(1, Math.min(c.depth ?? 3, MAX_PCT_CHANGES + 1));
      const k = Math.max(1, c.estimatedSteps ?? 2000);
      let s = c.seed >>> 0 || 1;
      const next = (): number => {
        s = (s + 0x6d2b79f5) | 0;
        let t = Math.imul(s ^ (s >>> 15), s | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      for (let i = 0; i < depth - 1; i++) Atomics.store(w, b + H_PCT_CHANGES + i, 1 + Math.floor(next() * k));
      Atomics.store(w, b + H_PCT_LOW, depth - 1);
      // Distinct random initial priorities above the change-point range, by a seeded shuffle.
      const prios = Array.from({ length: this.maxThreads }, (_, i) => depth + i);
      for (let i = prios.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [prios[i], prios[j]] = [prios[j], prios[i]];
      }
      for (let t = 0; t < this.maxThreads; t++) Atomics.store(w, this.actors + t * A_WORDS + A_PRIO, prios[t]);
    }
    Atomics.store(w, b + H_ENABLED, 1);
  }

  steps(): number {
    return Atomics.load(this.w, this.base + H_STEP);
  }
  switches(): number {
    return Atomics.load(this.w, this.base + H_SWITCHES);
  }
  outcome(): number {
    return Atomics.load(this.w, this.base + H_OUTCOME);
  }
  registered(): number {
    return Atomics.load(this.w, this.base + H_REGISTERED);
  }
  /** The choice made at each step. */
  log(): number[] {
    return Array.from(this.w.subarray(this.logBase, this.logBase + this.steps()));
  }
  /** The actors that could have been chosen at each step (ascending thread ids), beside log(). */
  candidates(): number[][] {
    const cb = candBase(this.base, this.maxThreads);
    const out: number[][] = [];
    for (let s = 0; s < this.steps(); s++) {
      const set: number[] = [];
      for (let h = 0; h < CAND_WORDS; h++) {
        const m = this.w[cb + s * CAND_WORDS + h];
        for (let b = 0; b < 32; b++) if (m & (1 << b)) set.push(h * 32 + b);
      }
      out.push(set);
    }
    return out;
  }
  /** Events the trace had no room for (its length keeps counting past MAX_TRACE). */
  traceDropped(): number {
    return Math.max(0, Atomics.load(this.w, this.base + H_TRACE_LEN) - MAX_TRACE);
  }
  trace(): SchedTraceEvent[] {
    const n = Math.min(Atomics.load(this.w, this.base + H_TRACE_LEN), MAX_TRACE);
    const out: SchedTraceEvent[] = [];
    for (let i = 0; i < n; i++) {
      const e = this.traceBase + i * 4;
      out.push({ step: this.w[e], tid: this.w[e + 1], kind: EV_NAMES[this.w[e + 2]], arg: this.w[e + 3] });
    }
    return out;
  }
  /**
   * Who was blocked on what when the scheduler found that no actor could run (the actors have
   * been aborted since, so their live state no longer says it). Empty unless a deadlock ended
   * the run.
   */
  deadlock(): Array<{ tid: number; word: number; orWord: number; value: number }> {
    const out: Array<{ tid: number; word: number; orWord: number; value: number }> = [];
    if (this.outcome() !== SchedOutcome.DEADLOCK) return out;
    for (let t = 0; t < this.maxThreads; t++) {
      const d = this.deadlockBase + t * DL_WORDS;
      if (this.w[d] === 1) out.push({ tid: t, word: this.w[d + 1], orWord: this.w[d + 2] - 1, value: this.w[d + 3] });
    }
    return out;
  }
  /** Who is blocked on what, for a deadlock report. */
  blocked(): Array<{ tid: number; word: number; server: boolean }> {
    const out: Array<{ tid: number; word: number; server: boolean }> = [];
    for (let t = 0; t < this.maxThreads; t++) {
      const a = this.actors + t * A_WORDS;
      if (Atomics.load(this.w, a + A_STATE) === ST_BLOCKED)
        out.push({ tid: t, word: Atomics.load(this.w, a + A_BLOCK_WORD), server: Atomics.load(this.w, a + A_SERVER) !== 0 });
    }
    return out;
  }
  /**
   * When no actor holds the token (every actor is done or waits), lets the scheduler pick one:
   * the controller calls this after it changed something an actor waits for (stopping a server).
   */
  kick(sync: Sync): void {
    if (Atomics.load(this.w, this.base + H_TOKEN) !== -1) return;
    const next = decide(this.w, this.base, this.maxThreads, -1);
    if (next >= 0) handOff(this.w, this.base, next, sync);
  }
  disable(): void {
    Atomics.store(this.w, this.base + H_ENABLED, 0);
  }
}

function actorAt(base: number, t: number): number {
  return base + HEADER + t * A_WORDS;
}

/** The PRNG step on the shared state word (mulberry32), so every thread draws the same stream. */
function draw(w: Int32Array, base: number): number {
  const s = (Atomics.load(w, base + H_PRNG) + 0x6d2b79f5) | 0;
  Atomics.store(w, base + H_PRNG, s);
  let t = Math.imul(s ^ (s >>> 15), s | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/**
 * Picks the next actor. Runs only on the token holder (or on the controller while nobody holds
 * it), so the shared PRNG and log advance in one order. Returns -1 when no actor can run.
 */
function decide(w: Int32Array, base: number, maxThreads: number, self: number): number {
  const cands: number[] = [];
  let waiting = false;
  for (let t = 0; t < maxThreads; t++) {
    const a = actorAt(base, t);
    const st = Atomics.load(w, a + A_STATE);
    if (st === ST_RUNNABLE) cands.push(t);
    else if (st === ST_BLOCKED) {
      const w2 = Atomics.load(w, a + A_BLOCK_WORD2);
      if (
        Atomics.load(w, Atomics.load(w, a + A_BLOCK_WORD)) !== Atomics.load(w, a + A_BLOCK_VALUE) ||
        (w2 !== 0 && Atomics.load(w, w2 - 1) !== Atomics.load(w, a + A_BLOCK_VALUE2))
      )
        cands.push(t);
      else if (Atomics.load(w, a + A_SERVER) === 0) waiting = true;
    }
  }
  if (cands.length === 0) {
    // The first detection is the deadlock; actors leaving after the abort find smaller ones.
    if (waiting && Atomics.compareExchange(w, base + H_OUTCOME, SchedOutcome.RUNNING, SchedOutcome.DEADLOCK) === SchedOutcome.RUNNING) {
      snapshotDeadlock(w, base, maxThreads);
    }
    return -1;
  }
  const step = Atomics.load(w, base + H_STEP);
  if (step >= Atomics.load(w, base + H_MAX_STEPS)) {
    Atomics.store(w, base + H_OUTCOME, SchedOutcome.STEP_LIMIT);
    return -1;
  }
  let next = -1;
  const logBase = base + HEADER + maxThreads * A_WORDS;
  if (step < Atomics.load(w, base + H_FORCED_LEN)) {
    const f = Atomics.load(w, logBase + MAX_STEPS + step);
    if (cands.includes(f)) next = f;
  }
  if (next < 0) {
    switch (Atomics.load(w, base + H_STRATEGY)) {
      case Strategy.RANDOM:
        next = cands[Math.floor(draw(w, base) * cands.length)];
        break;
      case Strategy.PCT: {
        if (self >= 0) {
          for (let i = 0; i < MAX_PCT_CHANGES; i++) {
            if (Atomics.load(w, base + H_PCT_CHANGES + i) === step) {
              Atomics.store(w, actorAt(base, self) + A_PRIO, Atomics.sub(w, base + H_PCT_LOW, 1));
            }
          }
        }
        let best = -Infinity;
        for (const t of cands) {
          const p = Atomics.load(w, actorAt(base, t) + A_PRIO);
          if (p > best) {
            best = p;
            next = t;
          }
        }
        break;
      }
      default:
        // Past the forced prefix: no preemption, so a replay or a shrunk schedule stays short.
        next = cands.includes(self) ? self : cands[0];
    }
  }
  Atomics.store(w, logBase + step, next);
  // Where alternatives existed, for a model checker (written only with a choice, as the log is).
  const cb = candBase(base, maxThreads) + step * CAND_WORDS;
  let lo = 0;
  let hi = 0;
  for (const t of cands) {
    if (t < 32) lo |= 1 << t;
    else hi |= 1 << (t - 32);
  }
  Atomics.store(w, cb, lo);
  Atomics.store(w, cb + 1, hi);
  Atomics.store(w, base + H_STEP, step + 1);
  if (next !== self) Atomics.add(w, base + H_SWITCHES, 1);
  const a = actorAt(base, next);
  if (Atomics.load(w, a + A_STATE) === ST_BLOCKED) Atomics.store(w, a + A_STATE, ST_RUNNABLE);
  return next;
}

/** Records every blocked non-server actor and what it waits on, before aborts change it. */
function snapshotDeadlock(w: Int32Array, base: number, maxThreads: number): void {
  const dl = base + HEADER + maxThreads * A_WORDS + 2 * MAX_STEPS + 4 * MAX_TRACE;
  for (let t = 0; t < maxThreads; t++) {
    const a = actorAt(base, t);
    const blocked = Atomics.load(w, a + A_STATE) === ST_BLOCKED && Atomics.load(w, a + A_SERVER) === 0;
    w[dl + t * DL_WORDS] = blocked ? 1 : 0;
    w[dl + t * DL_WORDS + 1] = Atomics.load(w, a + A_BLOCK_WORD);
    w[dl + t * DL_WORDS + 2] = Atomics.load(w, a + A_BLOCK_WORD2);
    w[dl + t * DL_WORDS + 3] = Atomics.load(w, a + A_BLOCK_VALUE);
  }
}

function handOff(w: Int32Array, base: number, next: number, sync: Sync): void {
  Atomics.store(w, base + H_TOKEN, next);
  const wake = actorAt(base, next) + A_WAKE;
  Atomics.add(w, wake, 1);
  sync.wake(wake, 1);
}

/**
 * One actor's Sync in controlled mode. Before the actor registers (and after it exits) it acts
 * as the free mode does, so set-up code outside a controlled run needs no special case.
 */
export class ControlledSync implements Sync {
  private readonly w: Int32Array;
  private readonly free: FreeSync;
  private readonly base: number;
  private readonly me: number;
  private readonly ctl: SyncControl;
  private readonly maxThreads: number;
  private active = false;
  private hook: (() => void) | null = null;

  constructor(
    mem: Mem,
    readonly tid: number,
    describe?: WordDescriber,
  ) {
    this.w = mem.w;
    this.free = new FreeSync(mem, tid, describe);
    this.base = regionBase(mem, REGION);
    this.me = tid + 1;
    this.ctl = new SyncControl(mem);
    this.maxThreads = mem.limits.maxThreads;
  }

  private get a(): number {
    return actorAt(this.base, this.tid);
  }

  /** Joins the controlled run as an actor and waits for its first turn. */
  register(server = false): void {
    const w = this.w;
    if (Atomics.load(w, this.base + H_ENABLED) === 0) return;
    Atomics.store(w, this.a + A_SERVER, server ? 1 : 0);
    Atomics.store(w, this.a + A_STATE, ST_RUNNABLE);
    this.active = true;
    // Not traced: actors arrive in any order; the run proper starts with the first choice.
    // The last actor to arrive makes the first choice; who arrives last does not matter.
    if (Atomics.add(w, this.base + H_REGISTERED, 1) + 1 === Atomics.load(w, this.base + H_EXPECTED)) {
      const next = decide(w, this.base, this.maxThreads, -1);
      if (next >= 0) handOff(w, this.base, next, this.free);
    }
    this.waitTurn();
  }

  /** Leaves the run: the actor is done; another one runs. */
  exit(): void {
    if (!this.active) return;
    const w = this.w;
    this.trace(Ev.EXIT, 0);
    Atomics.store(w, this.a + A_STATE, ST_DONE);
    this.active = false;
    const next = decide(w, this.base, this.maxThreads, -1);
    if (next >= 0) handOff(w, this.base, next, this.free);
    else {
      Atomics.store(w, this.base + H_TOKEN, -1);
      // The last runnable actor left while others wait for what it will never do: end them.
      if (Atomics.load(w, this.base + H_OUTCOME) === SchedOutcome.DEADLOCK) this.ctl.abort(4);
    }
  }

  /** A scheduling point: the scheduler may let another actor run before this one goes on. */
  private yieldNow(kind: number, arg: number): void {
    if (!this.active) return;
    this.trace(kind, arg);
    if (this.hook !== null) this.hook();
    const w = this.w;
    const next = decide(w, this.base, this.maxThreads, this.tid);
    if (next === this.tid) return;
    if (next < 0) {
      Atomics.store(w, this.base + H_TOKEN, -1);
      const reason = Atomics.load(w, this.base + H_OUTCOME);
      this.ctl.abort(reason === SchedOutcome.DEADLOCK ? 4 : 5);
      throw new SyncAbortError(reason === SchedOutcome.DEADLOCK ? 4 : 5);
    }
    handOff(w, this.base, next, this.free);
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
    Atomics.store(w, this.a + A_STATE, ST_BLOCKED);
    const next = decide(w, this.base, this.maxThreads, this.tid);
    if (next < 0) {
      Atomics.store(w, this.base + H_TOKEN, -1);
      if (Atomics.load(w, this.base + H_OUTCOME) !== SchedOutcome.RUNNING) {
        this.ctl.abort(4);
        throw new SyncAbortError(4);
      }
      // Nobody can run, yet nobody is stuck: only servers wait. The controller will kick us.
      this.waitTurn();
      return;
    }
    if (next !== this.tid) {
      handOff(w, this.base, next, this.free);
      this.waitTurn();
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
      if (abort !== 0) throw new SyncAbortError(abort);
      if (Atomics.load(w, this.base + H_TOKEN) === this.tid) return;
      Atomics.wait(w, wake, seq, 50);
    }
  }

  private trace(kind: number, arg: number): void {
    const w = this.w;
    const n = Atomics.add(w, this.base + H_TRACE_LEN, 1);
    if (n >= MAX_TRACE) return;
    const e = this.base + HEADER + this.maxThreads * A_WORDS + 2 * MAX_STEPS + n * 4;
    w[e] = Atomics.load(w, this.base + H_STEP);
    w[e + 1] = this.tid;
    w[e + 2] = kind;
    w[e + 3] = arg;
  }

  mutexLock(i: number, cls: LockClass): void {
    if (!this.active) return this.free.mutexLock(i, cls);
    for (;;) {
      this.yieldNow(Ev.LOCK, i);
      const c = Atomics.compareExchange(this.w, i, 0, this.me);
      if (c === 0) return;
      this.blockOn(i, c);
    }
  }
  mutexTryLock(i: number): boolean {
    return this.free.mutexTryLock(i);
  }
  mutexUnlock(i: number): void {
    if (!this.active) return this.free.mutexUnlock(i);
    const old = Atomics.exchange(this.w, i, 0);
    if ((old & OWNER_MASK) !== this.me)
      throw new Error(`mutex word ${i} unlocked by thread ${this.tid} but held by ${(old & OWNER_MASK) - 1}`);
    // Taken in free mode before this actor registered, with free-mode sleepers to wake.
    if (old & WAITERS) this.free.wake(i, 1);
  }
  // Writer-fair as the kernel's rwsem and qrwlock are: a reader waits behind a waiting writer.
  downRead(i: number, cls: LockClass): void {
    if (!this.active) return this.free.downRead(i, cls);
    for (;;) {
      this.yieldNow(Ev.READ_LOCK, i);
      const s = Atomics.load(this.w, i + RW_STATE);
      const writers = Atomics.load(this.w, i + RW_WRITERS_WAITING);
      if (s < WRITER && writers === 0 && Atomics.compareExchange(this.w, i + RW_STATE, s, s + 1) === s) return;
      if (s >= WRITER) this.blockOn(i + RW_STATE, s);
      else if (writers !== 0) this.blockOn(i + RW_WRITERS_WAITING, writers);
    }
  }
  upRead(i: number): void {
    if (!this.active) return this.free.upRead(i);
    Atomics.sub(this.w, i + RW_STATE, 1);
  }
  downWrite(i: number, cls: LockClass): void {
    if (!this.active) return this.free.downWrite(i, cls);
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
    if (!this.active) return this.free.upWrite(i);
    Atomics.store(this.w, i + RW_OWNER, 0);
    Atomics.store(this.w, i + RW_STATE, 0);
  }
  srcuReadLock(srcu: number): void {
    if (this.active) this.yieldNow(Ev.SRCU_READ_LOCK, srcu);
    srcuEnter(this.w, srcu, this.tid);
  }
  srcuReadUnlock(srcu: number): void {
    srcuExit(this.w, srcu, this.tid);
  }
  synchronizeSrcu(srcu: number): void {
    if (!this.active) return this.free.synchronizeSrcu(srcu);
    this.yieldNow(Ev.SYNCHRONIZE_SRCU, srcu);
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
    if (!this.active) return this.free.readUnlock(i);
    this.upRead(i);
  }
  writeLock(i: number, cls: LockClass): void {
    if (!this.active) return this.free.writeLock(i, cls);
    this.downWrite(i, cls);
  }
  writeUnlock(i: number): void {
    if (!this.active) return this.free.writeUnlock(i);
    this.upWrite(i);
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
    this.yieldNow(Ev.POINT, p);
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
