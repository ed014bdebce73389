// The scheduling strategies, by the name a configuration gives and by the header word that
// selects one during a run.

import { Strategy, type StrategyName } from '../layout.js';
import { pct } from './pct.js';
import { random } from './random.js';
import { replay } from './replay.js';
import type { SchedStrategy } from './strategy.js';

export type { SchedStrategy, StrategyConfig } from './strategy.js';

const BY_NAME: Readonly<Record<StrategyName, SchedStrategy>> = { random, pct, replay };

const BY_ID: readonly SchedStrategy[] = (() => {
  const out: SchedStrategy[] = [];
  for (const s of Object.values(BY_NAME)) out[s.id] = s;
  return out;
})();

export function strategyNamed(name: StrategyName): SchedStrategy {
  const s = BY_NAME[name];
  if (s === undefined) throw new Error(`sched: no strategy '${String(name)}' (${Object.keys(BY_NAME).join(', ')})`);
  return s;
}

/** The strategy whose Strategy constant is `id` (the H_STRATEGY word). */
export function strategyById(id: number): SchedStrategy {
  const s = BY_ID[id];
  if (s === undefined) throw new Error(`sched: no strategy with id ${id} (${Object.values(Strategy).join(', ')})`);
  return s;
}
