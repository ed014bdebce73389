// The 'sched' region of the controlled mode: a header (the token, the step, the shared PRNG
// state, the strategy's words), one block per actor, then the choice log, the forced choices,
// the event trace, the deadlock snapshot and each step's candidate set. This module owns the
// layout: the other sched modules reach the words through a SchedLayout, computed once.

import { LayoutBuilder, type Mem, regionBase } from '../layout.js';
import { assert } from '../limits.js';

export const Strategy = { RANDOM: 0, PCT: 1, REPLAY: 2 } as const;
export type StrategyName = 'random' | 'pct' | 'replay';

/** Why a controlled run ended. */
export const SchedOutcome = { RUNNING: 0, DEADLOCK: 2, STEP_LIMIT: 3, ACTOR_FAILED: 4 } as const;

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
  /** A write to shared model state (points 'shared'); arg: the object written. */
  WRITE: 10,
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
  'write',
] as const;

export const MAX_STEPS = 1 << 15;
export const MAX_TRACE = 1 << 16;
export const MAX_PCT_CHANGES = 16;

export const H_ENABLED = 0;
export const H_TOKEN = 1;
export const H_STEP = 2;
export const H_PRNG = 3;
export const H_STRATEGY = 4;
export const H_EXPECTED = 5;
export const H_REGISTERED = 6;
export const H_MAX_STEPS = 7;
export const H_FORCED_LEN = 8;
export const H_OUTCOME = 9;
export const H_PCT_LOW = 10;
export const H_TRACE_LEN = 11;
export const H_SWITCHES = 12;
/** The points mode: 0 'locks', 1 'shared' (writes to shared state are points too, with sleep sets). */
export const H_POINTS = 13;
export const POINTS_SHARED = 1;
export const H_PCT_CHANGES = 16; // MAX_PCT_CHANGES step numbers
export const HEADER = 32;

export const A_WORDS = 13;
export const A_STATE = 0;
export const A_BLOCK_WORD = 1;
export const A_BLOCK_VALUE = 2;
export const A_PRIO = 3;
export const A_SERVER = 4;
export const A_WAKE = 5;
/** A second word whose change also unblocks (word + 1; 0 = none): a signal for an interruptible spin. */
export const A_BLOCK_WORD2 = 6;
export const A_BLOCK_VALUE2 = 7;
/**
 * Points 'shared' only, for the sleep sets (decide.ts): what the actor runs when it is next
 * chosen, if that is a write to shared state: its region's base + 1 (0: any other operation) and
 * the record written + 1 (0: any record of the region); and whether it is in the sleep set.
 */
export const A_PEND_REGION = 8;
export const A_PEND = 9;
export const A_SLEEP = 10;
/**
 * Set when the actor left the run holding locks (lockdep_sys_exit's "lock held when returning to
 * user space"): how many, and the word of the first + 1. A deadlock report names it as a holder.
 */
export const A_EXIT_HELD = 11;
export const A_EXIT_HELD_WORD = 12;

/** The deadlock snapshot, per thread: blocked (1/0), the word, the second word + 1 (0 none), the value it waited to change from. */
export const DL_WORDS = 4;

export const ST_RUNNABLE = 1;
export const ST_BLOCKED = 2;
export const ST_DONE = 3;

/**
 * The candidate set of each step (a bitmask over thread ids, two words: tids 0-31, 32-63), after
 * the deadlock snapshot. A model checker reads it to know where a schedule had alternatives.
 */
export const CAND_WORDS = 2;

const REGION = 'sched';

function schedWords(maxThreads: number): number {
  return HEADER + maxThreads * A_WORDS + 2 * MAX_STEPS + 4 * MAX_TRACE + DL_WORDS * maxThreads + CAND_WORDS * MAX_STEPS;
}

export function declareSched(lb: LayoutBuilder, maxThreads: number): void {
  if (maxThreads > 32 * CAND_WORDS) throw new Error(`sched: candidate masks hold ${32 * CAND_WORDS} threads, not ${maxThreads}`);
  // A reset clears the header (H_ENABLED: set-up code before configure() runs free) and the
  // actors; the log, forced choices, trace, deadlock snapshot and candidate sets are written
  // before they are read (up to the step and trace counts the header holds).
  lb.add(REGION, schedWords(maxThreads), 'shm/sched/layout.ts', HEADER + maxThreads * A_WORDS);
}

/** Where each part of the region starts, for one sandbox. */
export class SchedLayout {
  readonly base: number;
  readonly maxThreads: number;
  /** Actor blocks: A_WORDS each, by thread id. */
  readonly actors: number;
  /** The choice made at each step. */
  readonly log: number;
  /** The choices to force, step by step. */
  readonly forced: number;
  /** Four words an event: step, tid, kind, arg. */
  readonly trace: number;
  /** DL_WORDS per thread. */
  readonly deadlock: number;
  /** CAND_WORDS per step. */
  readonly cand: number;
  constructor(mem: Mem) {
    this.base = regionBase(mem, REGION);
    this.maxThreads = mem.limits.maxThreads;
    this.actors = this.base + HEADER;
    this.log = this.actors + this.maxThreads * A_WORDS;
    this.forced = this.log + MAX_STEPS;
    this.trace = this.forced + MAX_STEPS;
    this.deadlock = this.trace + 4 * MAX_TRACE;
    this.cand = this.deadlock + DL_WORDS * this.maxThreads;
    assert(this.cand + CAND_WORDS * MAX_STEPS === this.base + schedWords(this.maxThreads), 'sched region parts add up to its size');
  }
  /** Header word `h` (an H_ constant). */
  h(h: number): number {
    return this.base + h;
  }
  /** First word of thread `t`'s actor block. */
  actor(t: number): number {
    return this.actors + t * A_WORDS;
  }
}
