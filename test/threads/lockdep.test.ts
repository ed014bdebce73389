// Lockdep across real worker threads. The planted bug 'memslot-update-takes-kvm-lock' nests
// kvm->lock inside slots_lock in KVM_SET_USER_MEMORY_REGION2, the reverse of sev_mem_enc_ioctl,
// which holds kvm->lock around snp_launch_update's slots_lock (Documentation/virt/kvm/locking.rst:
// kvm->lock is taken outside kvm->slots_lock). Run one after the other on the VMM worker (the memslot update first), the two
// orders never deadlock; lockdep reports the inversion anyway (kernel/locking/lockdep.c:
// check_noncircular), as invariant 'lockOrder'. The kernel's own memory-failure order (the folio
// lock, then the invalidate lock, against PUNCH_HOLE's invalidate lock, then folio locks) is
// not reported: PG_locked has no lockdep map, in the kernel or here.

import { describe, expect, it } from 'vitest';
import { bugMask } from '../../src/gmem/bugs.js';
import { runScenario } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { Explorer, workloadFor } from '../../src/vmm/explore/explorer.js';

const memslotThenSev = parseScenario({
  kernel: 'upstream',
  memory: '16MiB',
  vms: [{ name: 'a', type: 'snp', vcpus: 1 }],
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
    { op: 'set_memory_attributes', vm: 'a', address: 0, size: '1MiB', attributes: 'private', expect: 'ok' },
    { op: 'snp_launch_start', vm: 'a', expect: 'ok' },
    { op: 'snp_launch_update', vm: 'a', gpa: 0, len: '4KiB', data: '11', expect: 'ok' },
  ],
});

const hwpoisonThenPunch = parseScenario({
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
  it('a memslot update that takes kvm->lock inside slots_lock, then an SEV command: one lockOrder violation naming both chains, no hang', async () => {
    const r = await runScenario(memslotThenSev, undefined, { bugs: bugMask(['memslot-update-takes-kvm-lock']) });
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
      assertion: 0,
      launchState: 0,
    });
    const [v] = r.audit.violations;
    expect(v.invariant).toBe('lockOrder');
    expect(v.detail).toMatch(/^lock order inversion: kvm->lock -> kvm->slots_lock -> kvm->lock\n/);
    // LAUNCH_UPDATE closes the cycle the memslot update opened, each chain with its site.
    expect(v.detail).toMatch(
      /took slots_lock of vm 0 \(kvm->slots_lock, mutex\) while holding kvm->lock of vm 0 \(kvm->lock, mutex\), at:\n\s+at snpLaunchUpdateLocked/,
    );
    expect(v.detail).toMatch(
      /opposite order was taken before:\nthread \d+ took kvm->lock of vm 0 \(kvm->lock, mutex\) while holding slots_lock of vm 0 \(kvm->slots_lock, mutex\), at:\n(.*\n)*\s+at kvmSetMemoryRegion/,
    );
    // Each site names the TypeScript file of its frame, through the worker bundle's source map.
    expect(v.detail).toMatch(/at snpLaunchUpdateLocked \(src\/kvm\/sev\.ts:\d+:\d+\)/);
    expect(r.ok).toBe(false);
  });

  it('the same steps without the planted bug: clean', async () => {
    const r = await runScenario(memslotThenSev);
    expect(r.steps.filter((s) => !s.pass)).toEqual([]);
    expect(r.audit.counts.lockOrder).toBe(0);
    expect(r.ok).toBe(true);
  });

  it("memory failure (folio lock, then the invalidate lock) and PUNCH_HOLE (the reverse) one after the other: lockdep, like the kernel's, does not see folio locks", async () => {
    const r = await runScenario(hwpoisonThenPunch);
    expect(r.steps.filter((s) => !s.pass)).toEqual([]);
    expect(r.audit.counts.lockOrder).toBe(0);
    expect(r.ok).toBe(true);
  });

  it('the explorer finds it as lockOrder with no preemption at all, and a replay reports it again', async () => {
    const bug = 'memslot-update-takes-kvm-lock';
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
