// What a scheduling strategy is: a configure step that stores, before a run, whatever its picks
// read (header words, actor blocks of the 'sched' region), and a pick among the actors that can
// run. decide.ts keeps what every strategy shares: the candidates, deadlock and step-limit
// detection, the forced prefix, the log and the candidate sets. Both steps reach the region
// only through a SchedLayout (layout.ts owns its offsets).

import type { SchedLayout } from '../layout.js';

/** The part of a run's configuration a strategy reads. */
export interface StrategyConfig {
  seed: number;
  /** PCT bug depth d (d - 1 priority change points). */
  depth?: number;
  /** PCT's estimate of the steps in a run, for placing change points. */
  estimatedSteps?: number;
}

export interface SchedStrategy {
  /** The H_STRATEGY word that selects it (a Strategy constant). */
  readonly id: number;
  /** Stores its state before a run; the header and actor blocks are zero when it is called. */
  configure(w: Int32Array, L: SchedLayout, c: StrategyConfig): void;
  /**
   * The actor to run next at `step`, among `cands` (ascending thread ids, never empty). `self`
   * is the actor asking at a scheduling point of its own, -1 for the first choice, an exit or
   * the controller's kick. Runs on the token holder only, so its words change in one order.
   */
  pick(w: Int32Array, L: SchedLayout, cands: readonly number[], step: number, self: number): number;
}
