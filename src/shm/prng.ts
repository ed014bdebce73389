// A small seeded PRNG (mulberry32): the same seed gives the same sequence on every thread. The
// step is written once, here: Prng keeps its state in a local, the controlled scheduler keeps
// its state in a shared word (drawShared) so that whichever thread decides draws the next number.

/** mulberry32's state step: the state after `s`. */
function advance(s: number): number {
  return (s + 0x6d2b79f5) | 0;
}

/** mulberry32's output for state `s`: a uniform 32-bit unsigned integer. */
function output(s: number): number {
  let t = Math.imul(s ^ (s >>> 15), s | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return (t ^ (t >>> 14)) >>> 0;
}

export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    this.s = advance(this.s);
    return output(this.s);
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }
  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/**
 * Uniform in [0, 1) from the PRNG whose state is the shared word w[i] (seeded by storing a
 * nonzero seed there). Only one thread may draw at a time: the scheduler's token holder does.
 */
export function drawShared(w: Int32Array, i: number): number {
  const s = advance(Atomics.load(w, i));
  Atomics.store(w, i, s);
  return output(s) / 4294967296;
}

/** Derives an independent seed for stream `k` of a run seeded with `seed`. */
export function subSeed(seed: number, k: number): number {
  return (Math.imul(seed ^ 0x85ebca6b, 0xc2b2ae35) + Math.imul(k + 1, 0x27d4eb2f)) >>> 0;
}
