// What explore --coverage counts (src/shm/coverage.ts, src/vmm/explore/coverage.ts): the named
// points a controlled actor passes (ControlledSync.point), the pairs of VMM ops in flight at once
// on two threads (seen by the op that starts second), and how a search tallies its schedules,
// listing what none of them reached.

import { describe, expect, it } from 'vitest';
import { wordDescriber } from '../../src/firmware/describe.js';
import { Coverage, MAX_COVERED_OPS } from '../../src/shm/coverage.js';
import { type Mem, mapBuffers } from '../../src/shm/layout.js';
import { P, POINTS } from '../../src/shm/points.js';
import { SchedControl } from '../../src/shm/sched/control.js';
import { ControlledSync } from '../../src/shm/sched/controlled.js';
import { FreeSync } from '../../src/shm/sync/free.js';
import { COVERAGE_EVENTS, CoverageTally, NO_COVERAGE } from '../../src/vmm/explore/coverage.js';
import { buildSandboxMemory } from '../../src/vmm/sandbox/build.js';
import { VMM_OPS, zeroOps } from '../../src/vmm/workload/mix.js';

const fresh = (): Mem =>
  mapBuffers(buildSandboxMemory({ memory: '1MiB', gpaSpace: '1MiB', userMemory: '1MiB', gmemSpace: '1MiB', maxVms: 2 }).buffers);
const op = (name: string): number => (VMM_OPS as readonly string[]).indexOf(name);

describe('shm/coverage: points and op pairs', () => {
  it('a controlled actor counts each named point it passes; the free mode counts none', () => {
    const mem = fresh();
    const sched = new SchedControl(mem);
    sched.configure({ strategy: 'random', seed: 1, actors: 1 });
    const s = new ControlledSync(mem, 1, wordDescriber(mem));
    s.register();
    s.point(P['fault.begin']);
    s.point(P['fault.begin']);
    s.point(P['rmp.rmpupdate']);
    s.exit();
    sched.disable();
    new FreeSync(mem, 2).point(P['punch_hole.after_truncate']);
    const hits = new Coverage(mem).snapshot().pointHits;
    expect(hits).toHaveLength(POINTS.length);
    expect(hits[P['fault.begin']]).toBe(2);
    expect(hits[P['rmp.rmpupdate']]).toBe(1);
    expect(hits.reduce((a, b) => a + b, 0)).toBe(3);
  });

  it('an op starting while another thread has one in flight records the pair, once, smaller index first', () => {
    const mem = fresh();
    const c = new Coverage(mem);
    const [punch, fault, close] = [op('punch'), op('prefault'), op('close')];
    c.opBegin(1, punch);
    c.opBegin(2, fault);
    c.opEnd(2);
    c.opBegin(2, fault);
    c.opEnd(2);
    c.opEnd(1);
    // Not in flight together: a close after the punch ended.
    c.opBegin(2, close);
    c.opBegin(1, close);
    expect(c.snapshot().pairs).toEqual([
      [Math.min(punch, fault), Math.max(punch, fault)],
      [close, close],
    ]);
    expect(() => c.opBegin(1, MAX_COVERED_OPS)).toThrow(/op 32 is outside 0\.\.31/);
  });
});

describe('explore/coverage: a search tallies its schedules', () => {
  it('counts schedules per point, event and pair, and names what none reached among the ops that ran', () => {
    const t = new CoverageTally();
    const ops = { ...zeroOps(), punch: 2, prefault: 1 };
    const [punch, prefault] = [op('punch'), op('prefault')];
    const pair: [number, number] = [Math.min(punch, prefault), Math.max(punch, prefault)];
    t.add({ points: [P['fault.begin']], pairs: [pair], events: [0] }, ops);
    t.add({ points: [P['fault.begin'], P['srcu.synchronize']], pairs: [], events: [] }, ops);
    t.add(NO_COVERAGE, zeroOps());
    const r = t.report();
    expect(r.schedules).toBe(3);
    expect(r.points['fault.begin']).toBe(2);
    expect(r.points['srcu.synchronize']).toBe(1);
    expect(r.never.points).toHaveLength(POINTS.length - 2);
    expect(r.events[COVERAGE_EVENTS[0]]).toBe(1);
    expect(r.never.events).toEqual(COVERAGE_EVENTS.slice(1));
    const name = `${VMM_OPS[pair[0]]}+${VMM_OPS[pair[1]]}`;
    expect(r.pairs).toEqual({ [name]: 1 });
    // Pairs of the two ops that ran: each with itself, and the one seen.
    expect(r.never.pairs.sort()).toEqual(['prefault+prefault', 'punch+punch']);
  });
});
