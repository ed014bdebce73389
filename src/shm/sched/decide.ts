// The scheduler's decision, made by whichever thread holds the token (or by the controller
// while nobody does), so the shared PRNG and the log advance in one order: the actors that can
// run, then the forced choice if there is one, else the strategy's pick (strategies/). What
// every strategy shares is here: the candidates, deadlock and step-limit detection, the forced
// prefix, the log and each step's candidate set; and, with points 'shared', the sleep sets that
// keep two independent writes from being tried in both orders.

import type { Sync } from '../sync/sync.js';
import {
  A_BLOCK_VALUE,
  A_BLOCK_VALUE2,
  A_BLOCK_WORD,
  A_BLOCK_WORD2,
  A_PEND,
  A_PEND_REGION,
  A_SERVER,
  A_SLEEP,
  A_STATE,
  A_WAKE,
  CAND_WORDS,
  DL_WORDS,
  H_FORCED_LEN,
  H_MAX_STEPS,
  H_OUTCOME,
  H_POINTS,
  H_STEP,
  H_STRATEGY,
  H_SWITCHES,
  H_TOKEN,
  ST_BLOCKED,
  POINTS_SHARED,
  ST_RUNNABLE,
  SchedLayout,
  SchedOutcome,
  Strategy,
} from './layout.js';
import { strategyById } from './strategies/index.js';

/**
 * Picks the next actor. Runs only on the token holder (or on the controller while nobody holds
 * it), so the shared PRNG and log advance in one order. Returns -1 when no actor can run.
 */
export function decide(w: Int32Array, L: SchedLayout, self: number): number {
  // The run has ended (a deadlock or the step limit): the actors unwinding from the abort run at
  // once, without the token, and must not log choices the replay would not make.
  if (Atomics.load(w, L.h(H_OUTCOME)) !== SchedOutcome.RUNNING) return -1;
  const maxThreads = L.maxThreads;
  const cands: number[] = [];
  let waiting = false;
  for (let t = 0; t < maxThreads; t++) {
    const a = L.actor(t);
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
    if (waiting && Atomics.compareExchange(w, L.h(H_OUTCOME), SchedOutcome.RUNNING, SchedOutcome.DEADLOCK) === SchedOutcome.RUNNING) {
      snapshotDeadlock(w, L);
    }
    return -1;
  }
  const step = Atomics.load(w, L.h(H_STEP));
  if (step >= Atomics.load(w, L.h(H_MAX_STEPS))) {
    Atomics.store(w, L.h(H_OUTCOME), SchedOutcome.STEP_LIMIT);
    return -1;
  }
  let next = -1;
  if (step < Atomics.load(w, L.h(H_FORCED_LEN))) {
    const f = Atomics.load(w, L.forced + step);
    if (cands.includes(f)) next = f;
  }
  const strategy = Atomics.load(w, L.h(H_STRATEGY));
  const por = Atomics.load(w, L.h(H_POINTS)) === POINTS_SHARED;
  // A replay picks without preemption past its forced choices: no sleep set changes that.
  if (next < 0) next = strategyById(strategy).pick(w, L, por && strategy !== Strategy.REPLAY ? awake(w, L, cands) : cands, step, self);
  if (por) updateSleepSet(w, L, cands, next);
  Atomics.store(w, L.log + step, next);
  // Where alternatives existed, for a model checker (written only with a choice, as the log is).
  const cb = L.cand + step * CAND_WORDS;
  let lo = 0;
  let hi = 0;
  for (const t of cands) {
    if (t < 32) lo |= 1 << t;
    else hi |= 1 << (t - 32);
  }
  Atomics.store(w, cb, lo);
  Atomics.store(w, cb + 1, hi);
  Atomics.store(w, L.h(H_STEP), step + 1);
  if (next !== self) Atomics.add(w, L.h(H_SWITCHES), 1);
  const a = L.actor(next);
  if (Atomics.load(w, a + A_STATE) === ST_BLOCKED) Atomics.store(w, a + A_STATE, ST_RUNNABLE);
  return next;
}

/**
 * The candidates not in the sleep set. When every one sleeps (the path is one a sleep set would
 * not have taken), the set is emptied and all of them may run: a schedule always runs to its end.
 */
function awake(w: Int32Array, L: SchedLayout, cands: number[]): number[] {
  const out = cands.filter((t) => Atomics.load(w, L.actor(t) + A_SLEEP) === 0);
  if (out.length > 0) return out;
  for (const t of cands) Atomics.store(w, L.actor(t) + A_SLEEP, 0);
  return cands;
}

/**
 * Sleep sets (Godefroid), on the one path a random walk or PCT takes, as if a search had tried the
 * candidates in thread order: once `next` is chosen, each candidate below it whose pending
 * operation is independent of the one `next` now runs goes to sleep (the order with it first is
 * the equivalent interleaving kept), and a sleeper wakes as soon as an operation dependent on its
 * own runs. Only two writes are independent: in different regions, or to different records of
 * one region (independent()). A lock, a wait or a named point depends on everything, so an actor
 * parked at one never sleeps, and every interleaving of the 'locks' points stays reachable.
 */
function updateSleepSet(w: Int32Array, L: SchedLayout, cands: readonly number[], next: number): void {
  const runs = L.actor(next);
  Atomics.store(w, runs + A_SLEEP, 0);
  for (let t = 0; t < L.maxThreads; t++) {
    if (t === next) continue;
    const a = L.actor(t);
    const indep = independent(w, runs, a);
    if (Atomics.load(w, a + A_SLEEP) !== 0) {
      if (!indep) Atomics.store(w, a + A_SLEEP, 0);
    } else if (indep && t < next && cands.includes(t)) Atomics.store(w, a + A_SLEEP, 1);
  }
}

/**
 * Whether the pending operations of the actors at `a` and `b` commute: both are writes, to
 * different regions, or to different records of one region (neither to any record of it). The
 * reads an actor makes after its write, up to its next point, are not looked at: the write stands
 * for the whole step.
 */
function independent(w: Int32Array, a: number, b: number): boolean {
  const ra = Atomics.load(w, a + A_PEND_REGION);
  const rb = Atomics.load(w, b + A_PEND_REGION);
  if (ra === 0 || rb === 0) return false;
  if (ra !== rb) return true;
  const oa = Atomics.load(w, a + A_PEND);
  const ob = Atomics.load(w, b + A_PEND);
  return oa !== 0 && ob !== 0 && oa !== ob;
}

/** Records every blocked non-server actor and what it waits on, before aborts change it. */
function snapshotDeadlock(w: Int32Array, L: SchedLayout): void {
  const dl = L.deadlock;
  for (let t = 0; t < L.maxThreads; t++) {
    const a = L.actor(t);
    const blocked = Atomics.load(w, a + A_STATE) === ST_BLOCKED && Atomics.load(w, a + A_SERVER) === 0;
    w[dl + t * DL_WORDS] = blocked ? 1 : 0;
    w[dl + t * DL_WORDS + 1] = Atomics.load(w, a + A_BLOCK_WORD);
    w[dl + t * DL_WORDS + 2] = Atomics.load(w, a + A_BLOCK_WORD2);
    w[dl + t * DL_WORDS + 3] = Atomics.load(w, a + A_BLOCK_VALUE);
  }
}

export function handOff(w: Int32Array, L: SchedLayout, next: number, sync: Sync): void {
  Atomics.store(w, L.h(H_TOKEN), next);
  const wake = L.actor(next) + A_WAKE;
  Atomics.add(w, wake, 1);
  sync.wake(wake, 1);
}
