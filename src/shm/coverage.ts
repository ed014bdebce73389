// What a run reached, for `explore --coverage`: how often each named point was passed by a
// controlled actor, and which pairs of VMM ops were in flight at once on two threads. Each op
// marks itself in flight on its thread; an op that starts while another is in flight records the
// pair, so every overlap is seen by the op that started second. Plain words: reading them adds no
// scheduling point, so a seed means the same interleaving with or without a coverage report.

import { LayoutBuilder, type Mem, regionBase } from './layout.js';
import { POINTS } from './points.js';

const REGION = 'coverage';

/** Op kinds a pair can name (the workload's VMM ops, by index). */
export const MAX_COVERED_OPS = 32;
const PAIR_WORDS = (MAX_COVERED_OPS * MAX_COVERED_OPS) / 32;
const NPOINTS = POINTS.length;

export function declareCoverage(lb: LayoutBuilder, maxThreads: number): void {
  lb.add(REGION, NPOINTS + maxThreads + PAIR_WORDS, 'shm/coverage.ts');
}

/** A run's coverage: hits per named point (POINTS order), and the op pairs seen, each [a, b] with a <= b. */
export interface CoverageSnapshot {
  pointHits: number[];
  pairs: Array<[number, number]>;
}

export class Coverage {
  private readonly w: Int32Array;
  private readonly base: number;
  private readonly inflight: number;
  private readonly pairs: number;
  private readonly threads: number;

  constructor(mem: Mem) {
    this.w = mem.w;
    this.base = regionBase(mem, REGION);
    this.threads = mem.limits.maxThreads;
    this.inflight = this.base + NPOINTS;
    this.pairs = this.inflight + this.threads;
  }

  /** Named point `p` was passed (the controlled scheduler's point). */
  pointHit(p: number): void {
    Atomics.add(this.w, this.base + p, 1);
  }

  /** Thread `tid` starts VMM op `op`: the ops other threads have in flight make pairs with it. */
  opBegin(tid: number, op: number): void {
    if (op < 0 || op >= MAX_COVERED_OPS) throw new Error(`coverage: op ${op} is outside 0..${MAX_COVERED_OPS - 1}`);
    for (let t = 0; t < this.threads; t++) {
      const other = t === tid ? 0 : Atomics.load(this.w, this.inflight + t);
      if (other !== 0) this.setPair(Math.min(op, other - 1), Math.max(op, other - 1));
    }
    Atomics.store(this.w, this.inflight + tid, op + 1);
  }

  opEnd(tid: number): void {
    Atomics.store(this.w, this.inflight + tid, 0);
  }

  private setPair(a: number, b: number): void {
    const bit = a * MAX_COVERED_OPS + b;
    Atomics.or(this.w, this.pairs + (bit >>> 5), 1 << (bit & 31));
  }

  snapshot(): CoverageSnapshot {
    const pointHits = Array.from({ length: NPOINTS }, (_, p) => Atomics.load(this.w, this.base + p));
    const pairs: Array<[number, number]> = [];
    for (let i = 0; i < PAIR_WORDS; i++) {
      const word = Atomics.load(this.w, this.pairs + i);
      for (let j = 0; word !== 0 && j < 32; j++) {
        if ((word & (1 << j)) === 0) continue;
        const bit = i * 32 + j;
        pairs.push([Math.floor(bit / MAX_COVERED_OPS), bit % MAX_COVERED_OPS]);
      }
    }
    return { pointHits, pairs };
  }
}
