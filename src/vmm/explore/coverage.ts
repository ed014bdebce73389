// explore --coverage: what the schedules of a search reached, and what none of them did. Per
// schedule: the named points passed, the pairs of VMM ops in flight at once on two threads
// (shm/coverage.ts), and the rarer kernel events the workload exists to provoke (a fault's retry,
// an RMPUPDATE's FAIL_OVERLAP retry, a TLB flush that waited for a vCPU...), from the counters.

import { Coverage } from '../../shm/coverage.js';
import type { Mem } from '../../shm/layout.js';
import { POINTS } from '../../shm/points.js';
import { type CounterName, sumStats } from '../../shm/stats.js';
import { VMM_OPS } from '../workload/mix.js';

/** The counters whose being nonzero is an event worth reaching, each a path the kernel rarely takes. */
export const COVERAGE_EVENTS = [
  'faultRetries',
  'memoryFaultExits',
  'rmpUpdateRetries',
  'tlbFlushWaits',
  'punchHoleLeftovers',
  'archPrepareCallsOtherVm',
  'vcExceptions',
  'populatedPages',
  'preFaultedPages',
  'conversions',
  'hostFaults',
  'hostPtesZapped',
  'hostSigbus',
  // 7.4's in-place conversion: a refusal (EAGAIN, error_offset), the one LRU drain, a GUP pin.
  'conversionsRefused',
  'lruDrains',
  'gupPins',
] as const satisfies readonly CounterName[];

/** What one schedule reached: indices into POINTS, VMM_OPS pairs, COVERAGE_EVENTS. */
export interface ScheduleCoverage {
  points: number[];
  pairs: Array<[number, number]>;
  events: number[];
}

export const NO_COVERAGE: ScheduleCoverage = { points: [], pairs: [], events: [] };

/** The coverage of the schedule that just ran on this sandbox (read before its reset). */
export function scheduleCoverage(mem: Mem): ScheduleCoverage {
  const snap = new Coverage(mem).snapshot();
  const stats = sumStats(mem);
  return {
    points: snap.pointHits.flatMap((n, p) => (n > 0 ? [p] : [])),
    pairs: snap.pairs,
    events: COVERAGE_EVENTS.flatMap((c, i) => (stats[c] > 0 ? [i] : [])),
  };
}

/** A search's coverage: how many schedules reached each point, op pair and event. */
export interface CoverageReport {
  schedules: number;
  points: Record<string, number>;
  pairs: Record<string, number>;
  events: Record<string, number>;
  /** What no schedule reached: named points, events, and pairs of ops the search drew. */
  never: { points: string[]; pairs: string[]; events: string[] };
}

const pairName = (a: number, b: number): string => `${VMM_OPS[a]}+${VMM_OPS[b]}`;

export class CoverageTally {
  private schedules = 0;
  private readonly points = new Array<number>(POINTS.length).fill(0);
  private readonly events = new Array<number>(COVERAGE_EVENTS.length).fill(0);
  private readonly pairs = new Map<string, number>();
  /** Ops that ran in any schedule: the never-reached pairs are those among them. */
  private readonly opsRan = new Set<number>();

  add(c: ScheduleCoverage, ops: Readonly<Record<string, number>>): void {
    this.schedules++;
    for (const p of c.points) this.points[p]++;
    for (const e of c.events) this.events[e]++;
    for (const [a, b] of c.pairs) {
      const k = pairName(a, b);
      this.pairs.set(k, (this.pairs.get(k) ?? 0) + 1);
    }
    VMM_OPS.forEach((op, i) => {
      if ((ops[op] ?? 0) > 0) this.opsRan.add(i);
    });
  }

  report(): CoverageReport {
    const ran = [...this.opsRan].sort((a, b) => a - b);
    const drawnPairs = ran.flatMap((a) => ran.filter((b) => b >= a).map((b) => pairName(a, b)));
    return {
      schedules: this.schedules,
      points: Object.fromEntries(POINTS.map((p, i) => [p, this.points[i]])),
      pairs: Object.fromEntries([...this.pairs].sort(([x], [y]) => x.localeCompare(y))),
      events: Object.fromEntries(COVERAGE_EVENTS.map((e, i) => [e, this.events[i]])),
      never: {
        points: POINTS.filter((_, i) => this.points[i] === 0),
        pairs: drawnPairs.filter((k) => !this.pairs.has(k)),
        events: COVERAGE_EVENTS.filter((_, i) => this.events[i] === 0),
      },
    };
  }
}
