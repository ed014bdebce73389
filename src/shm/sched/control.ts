// The controller's view of the scheduler: configure a controlled run before it starts, read
// its log, trace and deadlock snapshot after it ends.

import type { Mem } from '../layout.js';
import type { PointsMode } from '../points.js';
import type { Sync } from '../sync/sync.js';
import { decide, handOff } from './decide.js';
import {
  A_BLOCK_WORD,
  A_EXIT_HELD,
  A_EXIT_HELD_WORD,
  A_SERVER,
  A_STATE,
  A_WORDS,
  CAND_WORDS,
  DL_WORDS,
  EV_NAMES,
  HEADER,
  H_ENABLED,
  H_EXPECTED,
  H_FORCED_LEN,
  H_MAX_STEPS,
  H_OUTCOME,
  H_POINTS,
  H_REGISTERED,
  H_STEP,
  H_STRATEGY,
  H_SWITCHES,
  H_TOKEN,
  H_TRACE_LEN,
  MAX_STEPS,
  MAX_TRACE,
  POINTS_SHARED,
  ST_BLOCKED,
  ST_DONE,
  SchedLayout,
  SchedOutcome,
  type StrategyName,
} from './layout.js';
import { type StrategyConfig, strategyNamed } from './strategies/index.js';

export interface SchedConfig extends StrategyConfig {
  strategy: StrategyName;
  /** Actors that will register before the first step. */
  actors: number;
  maxSteps?: number;
  /** Choices to force, step by step (replay and shrinking); past them: non-preemptive. */
  forced?: readonly number[];
  /** Which writes are scheduling points too (default 'locks': none). */
  points?: PointsMode;
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
  private readonly L: SchedLayout;
  constructor(readonly mem: Mem) {
    this.L = new SchedLayout(mem);
    this.base = this.L.base;
    this.w = mem.w;
    this.maxThreads = mem.limits.maxThreads;
  }

  configure(c: SchedConfig): void {
    const w = this.w;
    const b = this.base;
    const strategy = strategyNamed(c.strategy);
    for (let k = 0; k < HEADER + this.maxThreads * A_WORDS; k++) Atomics.store(w, b + k, 0);
    Atomics.store(w, b + H_TOKEN, -1);
    Atomics.store(w, b + H_STRATEGY, strategy.id);
    Atomics.store(w, b + H_EXPECTED, c.actors);
    Atomics.store(w, b + H_MAX_STEPS, Math.min(c.maxSteps ?? MAX_STEPS, MAX_STEPS));
    const forced = c.forced ?? [];
    if (forced.length > MAX_STEPS) throw new Error(`replay: at most ${MAX_STEPS} forced choices`);
    for (let i = 0; i < forced.length; i++) Atomics.store(w, this.L.forced + i, forced[i]);
    Atomics.store(w, b + H_FORCED_LEN, forced.length);
    Atomics.store(w, b + H_POINTS, c.points === 'shared' ? POINTS_SHARED : 0);
    strategy.configure(w, this.L, c);
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
    return Array.from(this.w.subarray(this.L.log, this.L.log + this.steps()));
  }
  /** The actors that could have been chosen at each step (ascending thread ids), beside log(). */
  candidates(): number[][] {
    const cb = this.L.cand;
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
      const e = this.L.trace + i * 4;
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
      const d = this.L.deadlock + t * DL_WORDS;
      if (this.w[d] === 1) out.push({ tid: t, word: this.w[d + 1], orWord: this.w[d + 2] - 1, value: this.w[d + 3] });
    }
    return out;
  }
  /**
   * Actors that left the run holding locks, as lockdep_sys_exit would warn ("lock held when
   * returning to user space"): each one's thread id, how many it held, and the first one's word.
   */
  exitHeld(): Array<{ tid: number; count: number; word: number }> {
    const out: Array<{ tid: number; count: number; word: number }> = [];
    for (let t = 0; t < this.maxThreads; t++) {
      const a = this.L.actor(t);
      const count = Atomics.load(this.w, a + A_EXIT_HELD);
      if (count > 0 && Atomics.load(this.w, a + A_STATE) === ST_DONE)
        out.push({ tid: t, count, word: Atomics.load(this.w, a + A_EXIT_HELD_WORD) - 1 });
    }
    return out;
  }
  /** The actor holding the token (the one running), or -1. */
  running(): number {
    return Atomics.load(this.w, this.base + H_TOKEN);
  }
  /**
   * Lets one more actor join a run whose actors have all left (the explorer's teardown after a
   * schedule). It runs alone, so a wait it cannot end is a deadlock at once, reported with who
   * waits on what, where a free-running wait would hang. The log, the trace and the counts go
   * on, and the step limit becomes MAX_STEPS: the teardown's steps are not the schedule's.
   */
  admitOneMore(): void {
    const b = this.base;
    Atomics.store(this.w, b + H_EXPECTED, Atomics.load(this.w, b + H_REGISTERED) + 1);
    Atomics.store(this.w, b + H_MAX_STEPS, MAX_STEPS);
  }
  /** Who is blocked on what, for a deadlock report. */
  blocked(): Array<{ tid: number; word: number; server: boolean }> {
    const out: Array<{ tid: number; word: number; server: boolean }> = [];
    for (let t = 0; t < this.maxThreads; t++) {
      const a = this.L.actor(t);
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
    const next = decide(this.w, this.L, -1);
    if (next >= 0) handOff(this.w, this.L, next, sync);
  }
  disable(): void {
    Atomics.store(this.w, this.base + H_ENABLED, 0);
  }
}
