// The random strategy: every step, a uniform choice among the actors that can run, drawn from
// the PRNG whose state is the header's shared word, so whichever thread decides draws the next
// number of the one stream the seed began.

import { drawShared } from '../../prng.js';
import { H_PRNG, type SchedLayout, Strategy } from '../layout.js';
import type { SchedStrategy, StrategyConfig } from './strategy.js';

export const random: SchedStrategy = {
  id: Strategy.RANDOM,
  configure(w: Int32Array, L: SchedLayout, c: StrategyConfig): void {
    Atomics.store(w, L.h(H_PRNG), c.seed >>> 0 || 1);
  },
  pick(w: Int32Array, L: SchedLayout, cands: readonly number[]): number {
    return cands[Math.floor(drawShared(w, L.h(H_PRNG)) * cands.length)];
  },
};
