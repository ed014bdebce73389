// The replay strategy: past the forced prefix (which decide.ts applies for every strategy), no
// preemption: the running actor goes on while it can, else the lowest runnable thread id, so a
// replayed or shrunk schedule adds no switches of its own and stays short.

import { type SchedLayout, Strategy } from '../layout.js';
import type { SchedStrategy } from './strategy.js';

export const replay: SchedStrategy = {
  id: Strategy.REPLAY,
  configure(): void {
    // Nothing to store: its picks read only the candidates.
  },
  pick(_w: Int32Array, _L: SchedLayout, cands: readonly number[], _step: number, self: number): number {
    return cands.includes(self) ? self : cands[0];
  },
};
