// PCT, probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte, "A
// Randomized Scheduler with Probabilistic Guarantees of Finding Bugs", ASPLOS 2010): every actor
// gets a distinct random priority, the highest-priority runnable actor runs, and at d - 1 random
// steps (the change points) the running actor drops below every initial priority. A bug of depth
// d among n threads and k steps is then found with probability at least 1/(n * k^(d-1)).

import { Prng } from '../../prng.js';
import { A_PRIO, H_PCT_CHANGES, H_PCT_LOW, MAX_PCT_CHANGES, type SchedLayout, Strategy } from '../layout.js';
import type { SchedStrategy, StrategyConfig } from './strategy.js';

/** The depth when the configuration names none. */
const DEFAULT_DEPTH = 3;
/** The steps a run is assumed to take when the configuration gives no estimate. */
const DEFAULT_ESTIMATED_STEPS = 2000;

export const pct: SchedStrategy = {
  id: Strategy.PCT,
  configure(w: Int32Array, L: SchedLayout, c: StrategyConfig): void {
    const depth = Math.max(1, Math.min(c.depth ?? DEFAULT_DEPTH, MAX_PCT_CHANGES + 1));
    const k = Math.max(1, c.estimatedSteps ?? DEFAULT_ESTIMATED_STEPS);
    const rng = new Prng(c.seed >>> 0 || 1);
    for (let i = 0; i < depth - 1; i++) Atomics.store(w, L.h(H_PCT_CHANGES) + i, 1 + rng.below(k));
    // Change points take the priorities depth-1 .. 1 in the order they are reached.
    Atomics.store(w, L.h(H_PCT_LOW), depth - 1);
    // Distinct random initial priorities above the change-point range, by a seeded shuffle.
    const prios = Array.from({ length: L.maxThreads }, (_, i) => depth + i);
    for (let i = prios.length - 1; i > 0; i--) {
      const j = rng.below(i + 1);
      [prios[i], prios[j]] = [prios[j], prios[i]];
    }
    for (let t = 0; t < L.maxThreads; t++) Atomics.store(w, L.actor(t) + A_PRIO, prios[t]);
  },
  pick(w: Int32Array, L: SchedLayout, cands: readonly number[], step: number, self: number): number {
    // A change point lowers the actor that reached it at one of its own scheduling points.
    if (self >= 0) {
      for (let i = 0; i < MAX_PCT_CHANGES; i++) {
        if (Atomics.load(w, L.h(H_PCT_CHANGES) + i) === step) {
          Atomics.store(w, L.actor(self) + A_PRIO, Atomics.sub(w, L.h(H_PCT_LOW), 1));
        }
      }
    }
    let next = -1;
    let best = -Infinity;
    for (const t of cands) {
      const p = Atomics.load(w, L.actor(t) + A_PRIO);
      if (p > best) {
        best = p;
        next = t;
      }
    }
    return next;
  },
};
