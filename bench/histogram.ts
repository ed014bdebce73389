// A small log-bucket histogram of latencies in nanoseconds: 16 buckets per power of two
// (each bucket about 4.4% wide), from 1 ns to about 2^40 ns (18 minutes). Recording is O(1)
// and memory is fixed, so a loop can record every call it times without keeping samples.

const SUB = 16;
const OCTAVES = 40;

export class Histogram {
  private readonly counts = new Float64Array(SUB * OCTAVES + 1);
  count = 0;
  sum = 0;
  min = Infinity;
  max = 0;

  record(ns: number): void {
    const i = ns <= 1 ? 0 : Math.min(this.counts.length - 1, Math.floor(Math.log2(ns) * SUB));
    this.counts[i]++;
    this.count++;
    this.sum += ns;
    if (ns < this.min) this.min = ns;
    if (ns > this.max) this.max = ns;
  }

  mean(): number {
    return this.count === 0 ? NaN : this.sum / this.count;
  }

  /** The q-quantile (0..1): the geometric middle of the bucket holding it, clamped to [min, max]. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= rank) {
        const mid = i === 0 ? 1 : 2 ** ((i + 0.5) / SUB);
        return Math.min(this.max, Math.max(this.min, mid));
      }
    }
    return this.max;
  }
}
