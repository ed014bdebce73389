// Lockdep across real worker threads: the planted bug 'error-folio-under-folio-lock' takes the
// invalidate lock with the folio still locked in memory failure (kvm_gmem_error_folio, here under
// the folio lock as mm/memory-failure.c's me_pagecache_clean holds it), the reverse of
// kvm_gmem_punch_hole's filemap_invalidate_lock -> truncate_inode_pages_range -> folio_lock. Run
// one after the other on the VMM worker, the two orders never deadlock; lockdep reports the
// inversion anyway (kernel/locking/lockdep.c: check_noncircular), as invariant 'lockOrder'.

import { describe, expect, it } from 'vitest';
import { bugMask } from '../../src/gmem/bugs.js';
import { runScenario } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { Explorer, workloadFor } from '../../src/vmm/explore/explorer.js';

const scenario = parseScenario({
  kernel: 'upstream',
  memory: '16MiB',
  vms: [{ name: 'a', type: 'sw-protected', vcpus: 1 }],
  steps: [
    { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '1MiB', expect: 'ok' },
    {
      op: 'set_user_memory_region2',
      vm: 'a',
      slot: 0,
      flags: ['guest_memfd'],
      guest_phys_addr: 0,
      memory_size: '1MiB',
      guest_memfd: 'g',
      expect: 'ok',
    },
    { op: 'fallocate', fd: 'g', mode: ['keep_size'], offset: 0, len: 4096, expect: 'ok' },
    { op: 'hwpoison', fd: 'g', offset: 0, expect: 'ok' },
    { op: 'fallocate', fd: 'g', mode: ['keep_size', 'punch_hole'], offset: 0, len: 4096, expect: 'ok' },
  ],
});

describe('lockdep on worker threads', () => {
  it('memory failure under the folio lock, then PUNCH_HOLE: one lockOrder violation naming both chains, no hang', async () => {
    const r = await runScenario(scenario, undefined, { bugs: bugMask(['error-folio-under-folio-lock']) });
    expect(r.crashes).toEqual([]);
    expect(r.steps.filter((s) => !s.pass)).toEqual([]);
    expect(r.audit.counts).toEqual({
      staleData: 0,
      rmpAgreement: 0,
      hostIsolation: 0,
      useAfterFree: 0,
      dataLost: 0,
      balance: 0,
      liveness: 0,
      lockOrder: 1,
    });
    const [v] = r.audit.violations;
    expect(v.invariant).toBe('lockOrder');
    expect(v.detail).toMatch(/^lock order inversion: mapping->invalidate_lock -> folio lock -> mapping->invalidate_lock\n/);
    // The punch's chain closes the cycle; memory failure's is the opposite order, each with its site.
    expect(v.detail).toMatch(
      /took folio lock of pfn \d+ \(folio lock, mutex\) while holding invalidate_lock \(rwsem\) of guest_memfd inode 0 \(mapping->invalidate_lock, write\), at:\n\s+at folioLock .*\n(.*\n)*\s+at gmemPunchHole/,
    );
    expect(v.detail).toMatch(
      /took invalidate_lock \(rwsem\) of guest_memfd inode 0 \(mapping->invalidate_lock, read\) while holding folio lock of pfn \d+ \(folio lock, mutex\), at:\n\s+at gmemErrorFolio/,
    );
    expect(r.ok).toBe(false);
  });

  it('the same steps without the planted bug: clean', async () => {
    const r = await runScenario(scenario);
    expect(r.audit.counts.lockOrder).toBe(0);
    expect(r.ok).toBe(true);
  });

  it('the explorer finds it as lockOrder with no preemption at all, and a replay reports it again', async () => {
    const bug = 'error-folio-under-folio-lock';
    const e = new Explorer({ kernel: 'upstream', bug, strategy: 'random', depth: 3, maxSteps: 20_000, workload: workloadFor(bug) });
    try {
      let found = null;
      for (let s = 1; s <= 64 && found === null; s += 16) {
        const rs = await e.runSchedules(
          Array.from({ length: 16 }, (_, i) => s + i),
          [],
        );
        found = rs.find((r) => r.outcome !== 'ok') ?? null;
      }
      expect(found).not.toBeNull();
      expect(found!.outcome).toBe('violation');
      expect(found!.violations.map((v) => v.invariant)).toEqual(['lockOrder']);
      const again = await e.runSchedule(found!.seed, found!.choices);
      expect(again.violations.map((v) => v.detail)).toEqual(found!.violations.map((v) => v.detail));
    } finally {
      await e.close();
    }
  });
});
