// The controller's view of the scheduler: configure a controlled run before it starts, read
// its log, trace and deadlock snapshot after it ends.

import type { Mem } from '../layout.js';
import type { Sync } from '../sync/sync.js';
import { decide, handOff } from './decide.js';
import {
  A_BLOCK_WORD,
  A_PRIO,
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
  H_PCT_CHANGES,
  H_PCT_LOW,
  H_PRNG,
  H_REGISTERED,
  H_STEP,
  H_STRATEGY,
  H_SWITCHES,
  H_TOKEN,
  H_TRACE_LEN,
  MAX_PCT_CHANGES,
  MAX_STEPS,
  MAX_TRACE,
  ST_BLOCKED,
  SchedLayout,
  SchedOutcome,
  Strategy,
  type StrategyName,
} from './layout.js';

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
    for (let k = 0; k < HEADER + this.maxThreads * A_WORDS; k++) Atomics.store(w, b + k, 0);
    Atomics.store(w, b + H_TOKEN, -1);
    Atomics.store(w, b + H_PRNG, c.seed >>> 0 || 1);
    Atomics.store(w, b + H_STRATEGY, c.strategy === 'random' ? Strategy.RANDOM : c.strategy === 'pct' ? Strategy.PCT : Strategy.REPLAY);
    Atomics.store(w, b + H_EXPECTED, c.actors);
    Atomics.store(w, b + H_MAX_STEPS, Math.min(c.maxSteps ?? MAX_STEPS, MAX_STEPS));
    const forced = c.forced ?? [];
    if (forced.length > MAX_STEPS) throw new Error(`replay: at most ${MAX_STEPS} forced choices`);
    for (let i = 0; i < forced.length; i++) Atomics.store(w, this.L.forced + i, forced[i]);
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
      for (let t = 0; t < this.maxThreads; t++) Atomics.store(w, this.L.actor(t) + A_PRIO, prios[t]);
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
