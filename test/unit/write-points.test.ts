// Where a controlled run may switch actors with points 'shared' (src/shm/points.ts): before every
// write to shared model state, made through the accessor of the region that owns it
// (Sync.sharedWrite), as loom makes every atomic operation a point; with points 'locks' (the
// default) and in the free mode, a write is no scheduling point. One actor on the calling thread:
// each point is one scheduler step and one 'write' event of the trace, naming the region and the
// record written (the whole region for an allocation or a scan), which the sleep sets compare.

import { describe, expect, it } from 'vitest';
import { wordDescriber } from '../../src/firmware/describe.js';
import { Rmp } from '../../src/firmware/rmp.js';
import { PfnAllocator } from '../../src/gmem/allocator.js';
import { Files } from '../../src/gmem/file.js';
import { Folios, PG_UPTODATE } from '../../src/gmem/folio.js';
import { GmemAttributes } from '../../src/gmem/attributes_table.js';
import { GupPins } from '../../src/gmem/pin_table.js';
import { Inodes } from '../../src/gmem/inode.js';
import { LruBatches } from '../../src/gmem/lru.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, MemAttributes } from '../../src/kvm/attributes.js';
import { FdKind, FdTable } from '../../src/kvm/fdtable.js';
import { Memslots } from '../../src/kvm/memslots.js';
import { Sptes, makeSpte } from '../../src/kvm/spte.js';
import { VcpuTable } from '../../src/kvm/vcpu.js';
import { Vms } from '../../src/kvm/vm.js';
import { type Mem, mapBuffers, regionAt } from '../../src/shm/layout.js';
import type { PointsMode } from '../../src/shm/points.js';
import { SchedControl } from '../../src/shm/sched/control.js';
import { ControlledSync } from '../../src/shm/sched/controlled.js';
import { FreeSync } from '../../src/shm/sync/free.js';
import type { Sync } from '../../src/shm/sync/sync.js';
import { buildSandboxMemory } from '../../src/vmm/sandbox/build.js';

const mem: Mem = mapBuffers(
  buildSandboxMemory({ memory: '1MiB', gpaSpace: '1MiB', userMemory: '1MiB', gmemSpace: '1MiB', maxVms: 2 }).buffers,
);
const TID = 1;
/** Threads whose pcp lists no run has touched yet. */
let nextThread = 2;
const tidFor = (w: { ownThread?: boolean }): number => (w.ownThread ? nextThread++ : TID);

/** Runs `fn` as the one actor of a controlled run; its scheduler steps and the writes it was stopped before ("region+offset"). */
function controlled(points: PointsMode, fn: (s: Sync) => void, tid = TID): { steps: number; writes: string[] } {
  const sched = new SchedControl(mem);
  sched.configure({ strategy: 'random', seed: 1, actors: 1, points });
  const s = new ControlledSync(mem, tid, wordDescriber(mem));
  s.register();
  try {
    fn(s);
  } finally {
    s.exit();
  }
  const writes = sched
    .trace()
    .filter((e) => e.kind === 'write')
    .map((e) => {
      const at = regionAt(mem, e.arg)!;
      return `${at.name}+${at.offset}`;
    });
  sched.disable();
  return { steps: sched.steps(), writes };
}

/** Each region's writes, made through its accessor, with the write they must be stopped before. */
const WRITES: Array<{ what: string; write: (s: Sync) => void; point: (m: Mem) => string; ownThread?: boolean }> = [
  {
    what: 'an SPTE install (one object per VM)',
    write: (s) => new Sptes(mem, s).set(1, 3, makeSpte(5, true)),
    point: (m) => `sptes+${m.limits.gfnsPerVm}`,
  },
  { what: 'a zap of SPTEs', write: (s) => new Sptes(mem, s).zap(1, 0, 4), point: (m) => `sptes+${m.limits.gfnsPerVm}` },
  {
    what: 'a change of memory attributes',
    write: (s) => new MemAttributes(mem, s).set(0, 2, 4, KVM_MEMORY_ATTRIBUTE_PRIVATE),
    point: () => 'mem_attrs+0',
  },
  { what: "a folio's flags (its struct folio)", write: (s) => new Folios(mem, s).set(2, PG_UPTODATE), point: () => 'folios+32' },
  { what: 'a folio reference taken', write: (s) => void new Folios(mem, s).tryGet(3), point: () => 'folios+48' },
  {
    what: 'a page cache insertion (the filemap slot)',
    write: (s) => void new Inodes(mem, s).filemapInsert(0, 2, 7),
    point: () => 'filemap+2',
  },
  { what: 'a gmem file allocated (the whole slab)', write: (s) => void new Files(mem, s).alloc(0, 0), point: () => 'gmem_files+0' },
  { what: "a memslot set published (the VM's memslots)", write: (s) => new Memslots(mem, s).swap(0), point: () => 'memslots+0' },
  { what: 'kvm_mmu_invalidate_begin (struct kvm)', write: (s) => new Vms(mem, s).mmuInvalidateBegin(1), point: () => 'vms+32' },
  { what: 'an RMPUPDATE (the RMP entry)', write: (s) => void new Rmp(mem, s).rmpupdate(4, 0, 0, 0, s), point: () => 'rmp+16' },
  { what: 'an fd installed (the whole table)', write: (s) => void new FdTable(mem, s).install(FdKind.VM, 0), point: () => 'fdtable+0' },
  // Each run on a thread of its own: its empty pcp list takes a batch from the zone first.
  {
    what: 'a page allocated (the zone, then a pcp list)',
    write: (s) => void new PfnAllocator(mem, s).alloc(),
    point: () => 'pfn_allocator',
    ownThread: true,
  },
  {
    what: 'a change of guest_memfd attributes (7.4; one object per inode)',
    write: (s) => new GmemAttributes(mem, new Inodes(mem), s).set(0, 0, 2, KVM_MEMORY_ATTRIBUTE_PRIVATE),
    point: () => 'gmem_attributes+0',
  },
  { what: 'a folio into an LRU batch (7.4; the slot)', write: (s) => void new LruBatches(mem, s).fill(1, 0, 5), point: () => 'lru_add+32' },
  { what: 'a device pin recorded (the whole table)', write: (s) => void new GupPins(mem, s).claim(6), point: () => 'gup_pins+0' },
  { what: 'a TLB flush request (every vCPU)', write: (s) => void new VcpuTable(mem).flushRemoteTlbs(s, 0), point: () => 'vcpus+0' },
];

describe("points 'shared': a write to shared state is a scheduling point", () => {
  it.each(WRITES.map((w) => [w.what, w] as const))('%s', (_what, w) => {
    const locks = controlled('locks', w.write, tidFor(w));
    const r = controlled('shared', w.write, tidFor(w));
    // The same run with one more step per write (the lock operations and named points are steps in both).
    expect(r.writes.length).toBeGreaterThanOrEqual(1);
    expect(r.steps).toBe(locks.steps + r.writes.length);
    const want = w.point(mem);
    expect(r.writes[0].startsWith(want), `${r.writes[0]} is at ${want}`).toBe(true);
  });

  it('a page allocation refills its pcp list from the zone: the zone and the list are each a point', () => {
    // An empty pcp list: the zone's top, the list's count filled, then its count taken one down.
    const r = controlled('shared', (s) => void new PfnAllocator(mem, s).alloc(), nextThread++);
    expect(r.writes.map((x) => x.replace(/\+\d+$/, ''))).toEqual(['pfn_allocator', 'pfn_allocator', 'pfn_allocator']);
    expect(r.writes[0]).not.toBe(r.writes[1]);
    expect(r.writes[1]).toBe(r.writes[2]);
  });

  it('reads are no points', () => {
    const r = controlled('shared', (s) => {
      new Sptes(mem, s).get(1, 3);
      new Folios(mem, s).test(2, PG_UPTODATE);
      new Memslots(mem, s).lookup(0, 1);
      new Rmp(mem, s).lookup(4);
    });
    expect(r).toEqual({ steps: 1, writes: [] });
  });
});

describe("points 'locks' (the default) and the free mode: a write is no scheduling point", () => {
  it.each(WRITES.map((w) => [w.what, w] as const))('%s', (_what, w) => {
    // No write event; the steps are the first choice and the writes' own lock operations and named points.
    const r = controlled('locks', w.write, tidFor(w));
    expect(r.writes).toEqual([]);
    expect(r.steps).toBe(w.what.startsWith('an RMPUPDATE') ? 2 : w.ownThread ? 2 : 1);
  });

  it('the free mode runs every write at once, and views without a Sync never stop', () => {
    const sched = new SchedControl(mem);
    sched.configure({ strategy: 'random', seed: 1, actors: 1, points: 'shared' });
    const free = new FreeSync(mem, TID, wordDescriber(mem));
    for (const w of WRITES) w.write(free);
    new Sptes(mem).set(0, 1, makeSpte(2, false));
    new Folios(mem).set(1, PG_UPTODATE);
    expect(sched.steps()).toBe(0);
    expect(sched.trace()).toEqual([]);
    sched.disable();
  });
});
