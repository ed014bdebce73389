// The controlled scheduler's strategies (src/shm/sched/decide.ts and its strategies: random,
// PCT, replay) on a toy program, without worker threads. ControlledSync cannot be driven from
// one thread (an actor that hands the token on sleeps in Atomics.wait until it comes back), so
// the toy drives decide() the way ControlledSync does, through the same layout words: each toy
// thread is a generator that registers, yields at every step (decide with itself as the running
// actor), blocks on a taken mutex word (ST_BLOCKED and the word and value it waits to change),
// and exits; the driver resumes whichever thread holds the token. The memory is a Mem with the
// real 'sched' region (LayoutBuilder, declareSched, mapBuffers) and a toy region for mutexes.
// With points 'shared', a toy step can be a write to an object of the toy region: the driver
// stores what the actor will run (A_PEND_REGION, A_PEND) before its scheduling point, as
// ControlledSync.sharedWrite does, and decide()'s sleep sets (Godefroid, "Partial-Order Methods
// for the Verification of Concurrent Systems", LNCS 1032, 1996) see it.
// PCT's guarantee is the one of Burckhardt et al., "A Randomized Scheduler with Probabilistic
// Guarantees of Finding Bugs" (ASPLOS 2010): a bug of depth d (d ordering constraints between
// events of different threads) is found with probability at least 1/(n * k^(d-1)), for n threads
// and k steps.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LayoutBuilder, type Mem, allocateBuffers, mapBuffers } from '../../src/shm/layout.js';
import { SchedControl, type SchedConfig } from '../../src/shm/sched/control.js';
import { decide } from '../../src/shm/sched/decide.js';
import {
  A_BLOCK_VALUE,
  A_BLOCK_WORD,
  A_BLOCK_WORD2,
  A_PEND,
  A_PEND_REGION,
  A_STATE,
  H_REGISTERED,
  ST_BLOCKED,
  ST_DONE,
  ST_RUNNABLE,
  SchedLayout,
  SchedOutcome,
  declareSched,
} from '../../src/shm/sched/layout.js';

const MAX_THREADS = 4;
const MUTEXES = 4;

interface Toy {
  readonly mem: Mem;
  readonly w: Int32Array;
  readonly L: SchedLayout;
  readonly ctl: SchedControl;
  /** First word of the toy's mutexes. */
  readonly mutex: number;
}

/** A Mem holding only the scheduler's region and a few mutex words. */
function makeToy(): Toy {
  const lb = new LayoutBuilder();
  declareSched(lb, MAX_THREADS);
  lb.add('toy', MUTEXES, 'test/unit/sched-strategies.test.ts');
  const limits = { nrPfns: 1, gfnsPerVm: 1, userPages: 1, filemapPages: 1, maxVms: 1, maxThreads: MAX_THREADS };
  const mem = mapBuffers(allocateBuffers(lb.build(), limits));
  return { mem, w: mem.w, L: new SchedLayout(mem), ctl: new SchedControl(mem), mutex: mem.layout.regions.toy.base };
}

/**
 * One step of a toy thread: an event (recorded in the run's order when it runs), a mutex
 * operation, or a write to toy object `write` (recorded as "thread.w<object>").
 */
type Step = string | { lock: number } | { unlock: number } | { write: number };

interface Run {
  /** The events in the order they ran, as "thread.event". */
  order: string[];
  log: number[];
  cands: number[][];
  outcome: number;
  steps: number;
  switches: number;
}

/** Runs `programs` (one per thread) under `cfg`, driving decide() as ControlledSync's actors do. */
function run(toy: Toy, cfg: Omit<SchedConfig, 'actors'>, programs: Step[][]): Run {
  const { w, L, ctl } = toy;
  for (let m = 0; m < MUTEXES; m++) w[toy.mutex + m] = 0;
  ctl.configure({ ...cfg, actors: programs.length });
  const order: string[] = [];
  let token = -1;
  let ended = false;
  /** The scheduler's answer at a scheduling point of `self` (-1: an exit or the first choice). */
  const choose = (self: number): number => {
    const next = decide(w, L, self);
    if (next < 0) ended = true;
    else token = next;
    return next;
  };
  function* thread(t: number, steps: Step[]): Generator<void, void, void> {
    const a = L.actor(t);
    Atomics.store(w, a + A_STATE, ST_RUNNABLE);
    if (Atomics.add(w, L.h(H_REGISTERED), 1) + 1 === programs.length) choose(-1);
    while (token !== t) yield;
    for (const s of steps) {
      // ControlledSync.sharedWrite and yieldNow: what the step is, then a scheduling point before it.
      const write = typeof s === 'object' && 'write' in s;
      Atomics.store(w, a + A_PEND_REGION, write ? toy.mutex + 1 : 0);
      Atomics.store(w, a + A_PEND, write ? toy.mutex + s.write + 1 : 0);
      if (choose(t) < 0) return;
      while (token !== t) yield;
      if (typeof s === 'string') order.push(`${t}.${s}`);
      else if ('write' in s) order.push(`${t}.w${s.write}`);
      else if ('unlock' in s) Atomics.store(w, toy.mutex + s.unlock, 0);
      else {
        // ControlledSync.mutexLock: try, else block until the word changes, yield, try again.
        const word = toy.mutex + s.lock;
        for (;;) {
          const c = Atomics.compareExchange(w, word, 0, t + 1);
          if (c === 0) break;
          Atomics.store(w, a + A_BLOCK_WORD, word);
          Atomics.store(w, a + A_BLOCK_VALUE, c);
          Atomics.store(w, a + A_BLOCK_WORD2, 0);
          Atomics.store(w, a + A_STATE, ST_BLOCKED);
          if (choose(t) < 0) return;
          while (token !== t) yield;
          if (choose(t) < 0) return;
          while (token !== t) yield;
        }
      }
    }
    Atomics.store(w, a + A_STATE, ST_DONE);
    if (choose(-1) < 0) token = -1;
  }
  const threads = programs.map((p, t) => thread(t, p));
  for (const g of threads) g.next();
  while (!ended && token >= 0) threads[token].next();
  return { order, log: ctl.log(), cands: ctl.candidates(), outcome: ctl.outcome(), steps: ctl.steps(), switches: ctl.switches() };
}

/** n threads of m events each: "e0".."e(m-1)". */
function events(n: number, m: number): Step[][] {
  return Array.from({ length: n }, () => Array.from({ length: m }, (_, i) => `e${i}`));
}

const hash = (xs: readonly number[]): string => createHash('sha256').update(xs.join(',')).digest('hex').slice(0, 16);
const seeds = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => from + i);

/** Whether the events of `chain` ran in that order (a bug of depth chain.length - 1). */
function ranInOrder(order: readonly string[], chain: readonly string[]): boolean {
  let last = -1;
  for (const e of chain) {
    const at = order.indexOf(e);
    if (at <= last) return false;
    last = at;
  }
  return true;
}

const PCT_SEEDS = 20_000;

describe('scheduler strategies on a toy program', () => {
  const toy = makeToy();
  const prog = events(3, 4);
  // Two threads taking two mutexes in opposite orders (some schedules deadlock), and a third.
  const abba: Step[][] = [
    ['a', { lock: 0 }, { lock: 1 }, 'b', { unlock: 1 }, { unlock: 0 }],
    ['a', { lock: 1 }, { lock: 0 }, 'b', { unlock: 0 }, { unlock: 1 }],
    ['a', 'b'],
  ];

  it('the toy takes one step per scheduling point: the first choice, every yield, every exit but the last', () => {
    const r = run(toy, { strategy: 'random', seed: 1 }, prog);
    expect(r.outcome).toBe(SchedOutcome.RUNNING);
    expect(r.steps).toBe(3 * (4 + 1));
    expect(r.order.slice().sort()).toEqual(['0', '1', '2'].flatMap((t) => [0, 1, 2, 3].map((e) => `${t}.e${e}`)));
    expect(r.cands[0]).toEqual([0, 1, 2]);
    expect(r.cands[r.steps - 1]).toHaveLength(1);
  });

  it('each strategy is deterministic per seed, and random and PCT vary with it', () => {
    const cfgs: Array<Omit<SchedConfig, 'actors' | 'seed'>> = [
      { strategy: 'random' },
      { strategy: 'pct', depth: 1, estimatedSteps: 15 },
      { strategy: 'pct', depth: 3, estimatedSteps: 15 },
      { strategy: 'replay', forced: [2, 2, 1] },
    ];
    for (const cfg of cfgs) {
      const logs = new Set<string>();
      for (const seed of seeds(1, 20)) {
        for (const p of [prog, abba]) {
          const a = run(toy, { ...cfg, seed }, p);
          const b = run(toy, { ...cfg, seed }, p);
          expect(b).toEqual(a);
        }
        logs.add(hash(run(toy, { ...cfg, seed }, prog).log));
      }
      // Replay draws nothing: one schedule whatever the seed. PCT without change points runs the
      // threads one after another, in one of the 3! orders of their priorities.
      const distinct = { random: 20, pct: cfg.depth === 1 ? 6 : 19, replay: 1 }[cfg.strategy];
      expect(logs.size, `${cfg.strategy} depth ${cfg.depth}`).toBe(distinct);
    }
  });

  it('random, PCT and replay choose as they did before they became modules (same seed, same choices)', () => {
    const all: number[] = [];
    for (const seed of seeds(1, 50)) {
      all.push(...run(toy, { strategy: 'random', seed }, prog).log, -1);
      const ab = run(toy, { strategy: 'random', seed }, abba).log;
      all.push(...ab, -1);
      all.push(...run(toy, { strategy: 'replay', seed, forced: ab.slice(0, seed % ab.length) }, abba).log, -1);
      for (const depth of [1, 2, 3]) {
        all.push(...run(toy, { strategy: 'pct', seed, depth, estimatedSteps: 15 }, prog).log, -1);
        all.push(...run(toy, { strategy: 'pct', seed, depth, estimatedSteps: 15 }, abba).log, -1);
      }
    }
    // Recorded with decide() and SchedControl.configure() of commit d8c9c0d (one switch in decide).
    expect([hash(all), all.length]).toEqual(['edeb6d860d50ec64', 7672]);
  });

  it("random's choices cover every runnable actor, uniformly at the first step", () => {
    const n = 4;
    const first = new Array<number>(n).fill(0);
    // Per candidate-set size, how often each position in the set was chosen.
    const byPos = new Map<number, number[]>();
    const N = 400;
    for (const seed of seeds(1, N)) {
      const r = run(toy, { strategy: 'random', seed }, events(n, 3));
      expect(r.cands[0]).toEqual([0, 1, 2, 3]);
      first[r.log[0]]++;
      r.log.forEach((c, s) => {
        const set = r.cands[s];
        expect(set).toContain(c);
        const counts = byPos.get(set.length) ?? new Array<number>(set.length).fill(0);
        counts[set.indexOf(c)]++;
        byPos.set(set.length, counts);
      });
    }
    for (const c of first) expect(Math.abs(c - N / n)).toBeLessThan(0.2 * (N / n));
    expect([...byPos.keys()].sort()).toEqual([1, 2, 3, 4]);
    for (const counts of byPos.values()) for (const c of counts) expect(c).toBeGreaterThan(0);
  });

  it('replay follows the forced choices, then runs without preemption', () => {
    for (const seed of seeds(1, 40)) {
      for (const p of [prog, abba]) {
        const orig = run(toy, { strategy: 'random', seed }, p);
        // The whole log replays the whole run, a deadlock included.
        const full = run(toy, { strategy: 'replay', seed: 0, forced: orig.log }, p);
        expect(full).toEqual(orig);
        const cut = seed % orig.log.length;
        const r = run(toy, { strategy: 'replay', seed: 0, forced: orig.log.slice(0, cut) }, p);
        expect(r.log.slice(0, cut)).toEqual(orig.log.slice(0, cut));
        for (let s = Math.max(cut, 1); s < r.steps; s++) {
          const prev = r.log[s - 1];
          // The running actor goes on while it can; else the lowest thread id that can run.
          expect(r.log[s]).toBe(r.cands[s].includes(prev) ? prev : r.cands[s][0]);
        }
      }
    }
    // A forced choice that cannot run (thread 3 never registered) leaves the step to the strategy.
    expect(run(toy, { strategy: 'replay', seed: 0, forced: [3, 3] }, prog).log.slice(0, 2)).toEqual([0, 0]);
  });

  it('a cycle of mutex waits ends the run as a deadlock, with who waits on what; a step limit ends it too', () => {
    let deadlocks = 0;
    for (const seed of seeds(1, 100)) {
      const r = run(toy, { strategy: 'random', seed }, abba);
      if (r.outcome !== SchedOutcome.DEADLOCK) {
        expect(r.outcome).toBe(SchedOutcome.RUNNING);
        expect(r.order.filter((e) => e.endsWith('.b'))).toHaveLength(3);
        continue;
      }
      deadlocks++;
      // Thread 0 holds mutex 0 (value 1 = tid + 1) and waits on mutex 1, held by thread 1 (value 2).
      expect(toy.ctl.deadlock()).toEqual([
        { tid: 0, word: toy.mutex + 1, orWord: -1, value: 2 },
        { tid: 1, word: toy.mutex, orWord: -1, value: 1 },
      ]);
      expect(r.order).not.toContain('0.b');
      expect(r.order).not.toContain('1.b');
    }
    expect(deadlocks).toBe(31);
    const r = run(toy, { strategy: 'random', seed: 1, maxSteps: 5 }, prog);
    expect([r.outcome, r.steps, r.log.length]).toEqual([SchedOutcome.STEP_LIMIT, 5, 5]);
  });

  // PCT's guarantee on 3 threads of 4 events each: k = 15 steps (the first choice, 12 yields, 2
  // exits), and estimatedSteps = 15 places the change points over exactly those steps. A bug of
  // depth d is the order of d + 1 events alternating between threads 0 and 1 (d constraints);
  // thread 2 is noise. Over seeds 1..20000 (measured; random on the same toy, for comparison):
  //   d = 1 (1.e1 before 0.e2):                  PCT 0.50090 >= 1/3     = 0.33333 (random 0.65505)
  //   d = 2 (0.e1 < 1.e1 < 0.e2, atomicity):    PCT 0.03325 >= 1/45    = 0.02222 (random 0.16000)
  //   d = 3 (0.e1 < 1.e1 < 0.e2 < 1.e2):        PCT 0.00440 >= 1/675   = 0.00148 (random 0.07875)
  // The toy's threads are short, so random does well here too; what is tested is PCT's bound.
  const pctCases = [
    { d: 1, chain: ['1.e1', '0.e2'], found: 10018 },
    { d: 2, chain: ['0.e1', '1.e1', '0.e2'], found: 665 },
    { d: 3, chain: ['0.e1', '1.e1', '0.e2', '1.e2'], found: 88 },
  ];
  for (const { d, chain, found } of pctCases) {
    const bound = 1 / (3 * 15 ** (d - 1));
    it(`PCT finds a depth-${d} bug in ${(found / PCT_SEEDS).toFixed(5)} of seeds, at least its guarantee 1/(n k^(d-1)) = ${bound.toFixed(5)}`, () => {
      let hits = 0;
      for (const seed of seeds(1, PCT_SEEDS)) {
        const r = run(toy, { strategy: 'pct', seed, depth: d, estimatedSteps: 15 }, prog);
        expect(r.steps).toBe(15);
        if (ranInOrder(r.order, chain)) hits++;
      }
      expect(hits / PCT_SEEDS).toBeGreaterThanOrEqual(bound);
      expect(hits).toBe(found);
    });
  }
});

describe("sleep sets of points 'shared': two writes to different objects are not tried in both orders", () => {
  const toy = makeToy();
  // Threads 0 and 1 each write one object; thread 2 runs dependent steps (named points) meanwhile.
  const program = (a: number, b: number): Step[][] => [
    ['a', { write: a }],
    ['a', { write: b }],
    ['a', 'b', 'c', 'd'],
  ];
  /**
   * Schedules (of 2,000 seeds) where `second` ran right after `first` while thread 2 was between
   * its first and last step (so it could have run instead: its resumption from registering runs no
   * step, and counts as an operation dependent on every other).
   */
  const adjacent = (points: 'locks' | 'shared', p: Step[][], first: string, second: string): number => {
    let n = 0;
    for (const seed of seeds(1, 2000)) {
      const r = run(toy, { strategy: 'random', seed, points }, p);
      const i = r.order.indexOf(first);
      if (r.order[i + 1] === second && r.order.indexOf('2.a') < i && r.order.indexOf('2.d') > i) n++;
    }
    return n;
  };

  it('independent: once thread 1 wrote first, thread 0 sleeps until a dependent step, so "1.w1, 0.w0" never runs back to back', () => {
    const p = program(0, 1);
    // Without sleep sets (points 'locks' consults none) both orders run back to back.
    expect(adjacent('locks', p, '0.w0', '1.w1')).toBeGreaterThan(50);
    expect(adjacent('locks', p, '1.w1', '0.w0')).toBeGreaterThan(50);
    // With them, only the order of the lower thread first (the one a search trying threads in
    // order keeps); the other one runs only when nothing else can (the sleep set is then emptied).
    expect(adjacent('shared', p, '0.w0', '1.w1')).toBeGreaterThan(50);
    expect(adjacent('shared', p, '1.w1', '0.w0')).toBe(0);
  });

  it('dependent: two writes to one object run in both orders', () => {
    const p = program(0, 0);
    expect(adjacent('shared', p, '0.w0', '1.w0')).toBeGreaterThan(50);
    expect(adjacent('shared', p, '1.w0', '0.w0')).toBeGreaterThan(50);
  });

  it('a run of points "locks" is what it was: writes consult no sleep set, and every seed replays', () => {
    for (const seed of seeds(1, 50)) {
      const a = run(toy, { strategy: 'random', seed, points: 'shared' }, program(0, 1));
      expect(run(toy, { strategy: 'replay', seed: 0, forced: a.log, points: 'shared' }, program(0, 1))).toEqual(a);
      const locks = run(toy, { strategy: 'random', seed }, program(0, 1));
      expect(run(toy, { strategy: 'random', seed, points: 'locks' }, program(0, 1))).toEqual(locks);
    }
  });
});
