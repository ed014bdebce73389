// Lockdep on the calling thread (kernel/locking/lockdep.c: check_prevs_add, check_noncircular,
// lock_sync for synchronize_srcu as of 6.4, lockdep_assert_held*): two Sync objects with two
// thread ids over one sandbox's memory take locks in turn; the class graph reports an order taken
// both ways exactly once, with both chains, and nothing else. Then the assertions, in both sync
// modes, and the controlled mode's owner and underflow checks on release.

import { describe, expect, it } from 'vitest';
import { wordDescriber } from '../../src/firmware/describe.js';
import { Vms } from '../../src/kvm/vm.js';
import { type Mem, mapBuffers } from '../../src/shm/layout.js';
import { SchedControl } from '../../src/shm/sched/control.js';
import { ControlledSync } from '../../src/shm/sched/controlled.js';
import { LockClass } from '../../src/shm/sync/classes.js';
import { FreeSync } from '../../src/shm/sync/free.js';
import { LockdepError, lockdepDependencies, lockdepReset, takeLockdepReports } from '../../src/shm/sync/lockdep.js';
import { buildSandboxMemory } from '../../src/vmm/sandbox/build.js';

interface World {
  mem: Mem;
  t1: FreeSync;
  t2: FreeSync;
  /** VM 0's locks: kvm->lock and slots_lock (mutexes), mmu_lock (an rwlock_t), kvm->srcu; VM 1's slots_lock. */
  kvmLock: number;
  slots: number;
  mmu: number;
  srcu: number;
  slots1: number;
}

function world(): World {
  const desc = buildSandboxMemory({ memory: '1MiB', gpaSpace: '1MiB', userMemory: '1MiB', gmemSpace: '1MiB', maxVms: 2 });
  const mem = mapBuffers(desc.buffers);
  const describe = wordDescriber(mem);
  const vms = new Vms(mem);
  return {
    mem,
    t1: new FreeSync(mem, 1, describe),
    t2: new FreeSync(mem, 2, describe),
    kvmLock: vms.kvmLockWord(0),
    slots: vms.slotsLockWord(0),
    mmu: vms.mmuLockWord(0),
    srcu: vms.srcu(0),
    slots1: vms.slotsLockWord(1),
  };
}

describe('lockdep: the lock order of classes', () => {
  it('thread 1 takes kvm->lock then slots_lock; later thread 2 takes them the other way: one report, both chains', () => {
    const { mem, t1, t2, kvmLock, slots } = world();
    t1.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t1.mutexLock(slots, LockClass.SLOTS);
    t1.mutexUnlock(slots);
    t1.mutexUnlock(kvmLock);
    expect(takeLockdepReports(mem)).toEqual([]);
    t2.mutexLock(slots, LockClass.SLOTS);
    t2.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t2.mutexUnlock(kvmLock);
    t2.mutexUnlock(slots);
    const reports = takeLockdepReports(mem);
    expect(reports).toHaveLength(1);
    const [r] = reports;
    expect(r.tid).toBe(2);
    expect(r.classes).toEqual(['kvm->slots_lock', 'kvm->lock']);
    // The closing chain, then the opposite one, each with the code site that made it.
    const closing = r.text.indexOf('thread 2 took kvm->lock of vm 0 (kvm->lock, mutex) while holding slots_lock of vm 0');
    const opposite = r.text.indexOf('thread 1 took slots_lock of vm 0 (kvm->slots_lock, mutex) while holding kvm->lock of vm 0');
    expect(closing).toBeGreaterThan(0);
    expect(opposite).toBeGreaterThan(closing);
    expect(r.text.match(/test[/\\]unit[/\\]lockdep\.test\.ts/g)).toHaveLength(2);
    // Both orders again: the graph already has them, nothing more is reported.
    t1.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t1.mutexLock(slots, LockClass.SLOTS);
    t1.mutexUnlock(slots);
    t1.mutexUnlock(kvmLock);
    t2.mutexLock(slots, LockClass.SLOTS);
    t2.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t2.mutexUnlock(kvmLock);
    t2.mutexUnlock(slots);
    expect(takeLockdepReports(mem)).toEqual([]);
    expect(lockdepDependencies(mem).map((d) => `${d.from} -> ${d.to} by ${d.tid}`)).toEqual([
      'kvm->lock -> kvm->slots_lock by 1',
      'kvm->slots_lock -> kvm->lock by 2',
    ]);
  });

  it('one order on two threads, through three classes and a read acquisition: no report', () => {
    const { mem, t1, t2, kvmLock, slots, mmu } = world();
    for (const t of [t1, t2]) {
      t.mutexLock(kvmLock, LockClass.KVM_LOCK);
      t.mutexLock(slots, LockClass.SLOTS);
      t.readLock(mmu, LockClass.MMU);
      t.readUnlock(mmu);
      t.mutexUnlock(slots);
      t.mutexUnlock(kvmLock);
    }
    t2.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t2.writeLock(mmu, LockClass.MMU);
    t2.writeUnlock(mmu);
    t2.mutexUnlock(kvmLock);
    expect(takeLockdepReports(mem)).toEqual([]);
    expect(lockdepDependencies(mem)).toHaveLength(3);
  });

  it('a cycle through three classes names all three dependencies', () => {
    const { mem, t1, t2, kvmLock, slots, mmu } = world();
    t1.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t1.mutexLock(slots, LockClass.SLOTS);
    t1.mutexUnlock(slots);
    t1.mutexUnlock(kvmLock);
    t1.mutexLock(slots, LockClass.SLOTS);
    t1.writeLock(mmu, LockClass.MMU);
    t1.writeUnlock(mmu);
    t1.mutexUnlock(slots);
    t2.readLock(mmu, LockClass.MMU);
    t2.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t2.mutexUnlock(kvmLock);
    t2.readUnlock(mmu);
    const [r, ...more] = takeLockdepReports(mem);
    expect(more).toEqual([]);
    expect(r.classes).toEqual(['kvm->mmu_lock', 'kvm->lock', 'kvm->slots_lock']);
    expect(r.text).toMatch(/through 2 dependencies/);
    expect(r.text).toMatch(/thread 2 took kvm->lock of vm 0 \(kvm->lock, mutex\) while holding mmu_lock of vm 0 \(kvm->mmu_lock, read\)/);
  });

  it('SRCU read sections never wait for each other: srcu read -> X and X -> srcu read are no inversion', () => {
    const { mem, t1, t2, slots, srcu } = world();
    t1.mutexLock(slots, LockClass.SLOTS);
    t1.srcuReadLock(srcu, LockClass.SRCU);
    // Nested read sections of one srcu_struct, as a pre-fault inside its ioctl's.
    t1.srcuReadLock(srcu, LockClass.SRCU);
    t1.srcuReadUnlock(srcu);
    t1.srcuReadUnlock(srcu);
    t1.mutexUnlock(slots);
    t2.srcuReadLock(srcu, LockClass.SRCU);
    t2.mutexLock(slots, LockClass.SLOTS);
    t2.mutexUnlock(slots);
    t2.srcuReadUnlock(srcu);
    expect(takeLockdepReports(mem)).toEqual([]);
    expect(lockdepDependencies(mem).map((d) => `${d.from} -> ${d.to}`)).toEqual(['kvm->srcu -> kvm->slots_lock']);
  });

  it('synchronize_srcu under X, and X taken in a read section: an inversion (the updater waits for the reader)', () => {
    const { mem, t1, t2, slots, srcu } = world();
    t1.mutexLock(slots, LockClass.SLOTS);
    t1.synchronizeSrcu(srcu, LockClass.SRCU);
    t1.mutexUnlock(slots);
    expect(takeLockdepReports(mem)).toEqual([]);
    t2.srcuReadLock(srcu, LockClass.SRCU);
    t2.mutexLock(slots, LockClass.SLOTS);
    t2.mutexUnlock(slots);
    t2.srcuReadUnlock(srcu);
    const reports = takeLockdepReports(mem);
    expect(reports.map((r) => r.classes)).toEqual([['kvm->srcu', 'kvm->slots_lock']]);
    expect(reports[0].text).toMatch(/thread 1 took kvm->srcu of vm 0 \(kvm->srcu, write\) while holding slots_lock of vm 0/);
    expect(reports[0].text).toMatch(
      /thread 2 took slots_lock of vm 0 \(kvm->slots_lock, mutex\) while holding kvm->srcu of vm 0 \(kvm->srcu, SRCU read section\)/,
    );
  });

  it('read acquisitions of a writer-fair lock wait too: read X -> Y and Y -> read X is an inversion', () => {
    const { mem, t1, t2, slots, mmu } = world();
    t1.readLock(mmu, LockClass.MMU);
    t1.mutexLock(slots, LockClass.SLOTS);
    t1.mutexUnlock(slots);
    t1.readUnlock(mmu);
    t2.mutexLock(slots, LockClass.SLOTS);
    t2.readLock(mmu, LockClass.MMU);
    t2.readUnlock(mmu);
    t2.mutexUnlock(slots);
    expect(takeLockdepReports(mem).map((r) => r.classes)).toEqual([['kvm->slots_lock', 'kvm->mmu_lock']]);
  });

  it('a trylock depends on nothing it is taken under, but what is taken under it depends on it', () => {
    const { mem, t1, t2, kvmLock, slots, mmu } = world();
    t1.mutexLock(slots, LockClass.SLOTS);
    expect(t1.mutexTryLock(kvmLock, LockClass.KVM_LOCK)).toBe(true);
    t1.readLock(mmu, LockClass.MMU);
    t1.readUnlock(mmu);
    t1.mutexUnlock(kvmLock);
    t1.mutexUnlock(slots);
    t2.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t2.mutexLock(slots, LockClass.SLOTS);
    t2.mutexUnlock(slots);
    t2.mutexUnlock(kvmLock);
    expect(takeLockdepReports(mem)).toEqual([]);
    expect(lockdepDependencies(mem).map((d) => `${d.from} -> ${d.to}`)).toEqual([
      'kvm->slots_lock -> kvm->mmu_lock',
      'kvm->lock -> kvm->mmu_lock',
      'kvm->lock -> kvm->slots_lock',
    ]);
  });

  it('two locks of one class nest in either order without a report (the order within a class is not checked)', () => {
    const { mem, t1, t2, slots, slots1 } = world();
    t1.mutexLock(slots, LockClass.SLOTS);
    t1.mutexLock(slots1, LockClass.SLOTS);
    t1.mutexUnlock(slots1);
    t1.mutexUnlock(slots);
    t2.mutexLock(slots1, LockClass.SLOTS);
    t2.mutexLock(slots, LockClass.SLOTS);
    t2.mutexUnlock(slots);
    t2.mutexUnlock(slots1);
    expect(takeLockdepReports(mem)).toEqual([]);
    expect(lockdepDependencies(mem)).toEqual([]);
  });

  it('a sandbox reset empties the graph and what an aborted run left held', () => {
    const { mem, t1, t2, kvmLock, slots } = world();
    t1.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t1.mutexLock(slots, LockClass.SLOTS);
    // The run ends here with both held (an abort); the reset zeroes the words, lockdep follows.
    Atomics.store(mem.w, kvmLock, 0);
    Atomics.store(mem.w, slots, 0);
    lockdepReset(mem);
    expect(lockdepDependencies(mem)).toEqual([]);
    t2.mutexLock(slots, LockClass.SLOTS);
    t2.mutexLock(kvmLock, LockClass.KVM_LOCK);
    t2.mutexUnlock(kvmLock);
    t2.mutexUnlock(slots);
    t1.mutexLock(slots, LockClass.SLOTS);
    expect(() => t1.assertHeld(kvmLock)).toThrow(LockdepError);
    t1.mutexUnlock(slots);
    expect(takeLockdepReports(mem)).toEqual([]);
    expect(lockdepDependencies(mem).map((d) => `${d.from} -> ${d.to} by ${d.tid}`)).toEqual(['kvm->slots_lock -> kvm->lock by 2']);
  });
});

/** A controlled actor on the calling thread: the only one, so every choice is its own. */
function controlledActor(mem: Mem, tid: number): ControlledSync {
  new SchedControl(mem).configure({ strategy: 'random', seed: 1, actors: 1 });
  const c = new ControlledSync(mem, tid, wordDescriber(mem));
  c.register();
  return c;
}

describe('lockdep_assert_held in both sync modes', () => {
  for (const mode of ['free', 'controlled'] as const) {
    it(`${mode}: passes when held, throws naming the lock and its holder when not`, () => {
      const { mem, t2, slots, mmu } = world();
      const me = mode === 'free' ? new FreeSync(mem, 3, wordDescriber(mem)) : controlledActor(mem, 3);
      expect(() => me.assertHeld(slots)).toThrow(
        new LockdepError('lockdep_assert_held(slots_lock of vm 0) failed: thread 3 does not hold it; held by nobody'),
      );
      t2.mutexLock(slots, LockClass.SLOTS);
      expect(() => me.assertHeld(slots)).toThrow(
        /lockdep_assert_held\(slots_lock of vm 0\) failed: thread 3 does not hold it; held by thread 2$/,
      );
      t2.mutexUnlock(slots);
      me.mutexLock(slots, LockClass.SLOTS);
      me.assertHeld(slots);
      me.assertHeldWrite(slots);
      expect(() => me.assertHeldRead(slots)).toThrow(
        /lockdep_assert_held_read\(slots_lock of vm 0\) failed: thread 3 holds it \(a mutex\)/,
      );
      me.mutexUnlock(slots);
      me.readLock(mmu, LockClass.MMU);
      me.assertHeld(mmu);
      me.assertHeldRead(mmu);
      expect(() => me.assertHeldWrite(mmu)).toThrow(
        /lockdep_assert_held_write\(mmu_lock of vm 0\) failed: thread 3 holds it \(for read\) by its lockdep stack; held by 1 reader\(s\)/,
      );
      me.readUnlock(mmu);
      t2.writeLock(mmu, LockClass.MMU);
      expect(() => me.assertHeldWrite(mmu)).toThrow(
        /lockdep_assert_held_write\(mmu_lock of vm 0\) failed: thread 3 does not hold it; held by writer thread 2/,
      );
      t2.writeUnlock(mmu);
      if (me instanceof ControlledSync) me.exit();
    });
  }
});

describe('controlled mode: the owner and underflow checks of every release', () => {
  it('up_write by a thread that is not the writer throws, and leaves the lock held', () => {
    const { mem, t2, mmu } = world();
    const me = controlledActor(mem, 3);
    t2.writeLock(mmu, LockClass.MMU);
    expect(() => me.upWrite(mmu)).toThrow(/up_write of mmu_lock of vm 0 by thread 3, not its writer/);
    expect(() => me.writeUnlock(mmu)).toThrow(/up_write of mmu_lock of vm 0 by thread 3, not its writer/);
    t2.assertHeldWrite(mmu);
    t2.writeUnlock(mmu);
    me.exit();
  });

  it('mutex_unlock by a non-owner, up_read of a free rwsem, read_unlock of a lock another thread read-holds: each throws', () => {
    const { mem, t2, slots, mmu } = world();
    const me = controlledActor(mem, 3);
    t2.mutexLock(slots, LockClass.SLOTS);
    expect(() => me.mutexUnlock(slots)).toThrow(/mutex slots_lock of vm 0 unlocked by thread 3 but held by thread 2/);
    t2.readLock(mmu, LockClass.MMU);
    // The count alone would let it through: lockdep knows thread 3 holds no read of it.
    expect(() => me.readUnlock(mmu)).toThrow(new LockdepError('lockdep: thread 3 releases mmu_lock of vm 0, which it does not hold'));
    const { mem: mem2, mmu: free } = world();
    const other = controlledActor(mem2, 3);
    expect(() => other.upRead(free)).toThrow(/up_read of mmu_lock of vm 0 not read-held \(state 0\)/);
    other.exit();
    me.exit();
  });
});
