// The VMM's host-mapping ops (mmap, touch, munmap) in explore and stress: a default VM on GMEM_ONLY
// memslots (576d035e2aef, f029f04ddbec) whose MMAP | INIT_SHARED guest_memfds the VMM maps
// (kvm_gmem_mmap, 3d3a04fad25a) and touches (kvm_gmem_fault_user_mapping, fe2bf6234e94) while its
// PUNCH_HOLEs truncate them (truncate_cleanup_folio -> unmap_mapping_folio). On 6.18 and 7.0 the
// ops run and the schedules and runs are clean; on 6.11 (no host mmap, no GMEM_ONLY slots) they
// do nothing, and the seeds run as if they were not in the mix; the planted bugs of the host
// paths are found, each as its invariant.

import { afterAll, describe, expect, it } from 'vitest';
import { INVARIANTS } from '../../src/checker/violations.js';
import type { BugName } from '../../src/gmem/bugs.js';
import { ArgumentError } from '../../src/vmm/sandbox/errors.js';
import { type ExploreConfig, Explorer, type ScheduleResult, workloadFor } from '../../src/vmm/explore/explorer.js';
import { resolveStressOptions, runStress } from '../../src/vmm/stress/stress.js';

const HOST_MIX = 'mmap=1,touch=4,munmap=1,punch=2';
const explorers: Explorer[] = [];
afterAll(async () => {
  await Promise.all(explorers.map((e) => e.close()));
});

function explorer(kernel: ExploreConfig['kernel'], ops: string, bug: BugName | null = null): Explorer {
  const e = new Explorer({
    kernel,
    bug,
    strategy: 'random',
    depth: 3,
    maxSteps: 20_000,
    workload: workloadFor(bug, { gmemOnlyShare: 1, ops, vmmOps: 8 }),
  });
  explorers.push(e);
  return e;
}

/** Seeds 1..n in batches of 16, as explore runs them (a batch ends at its first failing schedule). */
async function schedules(e: Explorer, n: number): Promise<ScheduleResult[]> {
  const out: ScheduleResult[] = [];
  for (let s = 1; s <= n; s += 16) out.push(...(await e.runSchedules(Array.from({ length: Math.min(16, n - s + 1) }, (_, i) => s + i))));
  return out;
}

const sum = (rs: ScheduleResult[], op: keyof ScheduleResult['ops']) => rs.reduce((a, r) => a + r.ops[op], 0);

describe('explore: the host ops run on a default VM with GMEM_ONLY memslots from 6.18, and do nothing before', () => {
  it.each(['6.18', '7.0', '7.4'] as const)(
    '%s: every schedule runs the shape, every host op runs, 48 schedules are clean',
    async (kernel) => {
      const rs = await schedules(explorer(kernel, HOST_MIX), 48);
      expect(rs.map((r) => r.outcome).filter((o) => o !== 'ok')).toEqual([]);
      expect(rs.every((r) => r.shape.gmemOnly === true)).toBe(true);
      for (const op of ['mmap', 'touch', 'munmap', 'punch'] as const) expect(sum(rs, op), op).toBeGreaterThan(10);
    },
  );

  it('6.11: no schedule runs the shape, no host op runs, and the seeds run exactly as with punch alone', async () => {
    const withHost = await schedules(explorer('6.11', HOST_MIX), 32);
    const without = await schedules(explorer('6.11', 'punch=2'), 32);
    expect(withHost.some((r) => r.shape.gmemOnly)).toBe(false);
    expect(sum(withHost, 'mmap') + sum(withHost, 'touch') + sum(withHost, 'munmap')).toBe(0);
    expect(sum(withHost, 'punch')).toBeGreaterThan(100);
    const strip = (r: ScheduleResult) => ({ seed: r.seed, outcome: r.outcome, steps: r.steps, choices: r.choices, ops: r.ops });
    expect(withHost.map(strip)).toEqual(without.map(strip));
  });
});

describe('explore finds the planted bugs of the host paths', () => {
  it('truncate-skips-host-unmap: a host PTE left on a truncated page, seen online as useAfterFree', async () => {
    const rs = await schedules(explorer('7.0', workloadFor('truncate-skips-host-unmap').ops, 'truncate-skips-host-unmap'), 32);
    const found = rs.find((r) => r.outcome !== 'ok');
    expect(found?.outcome).toBe('violation');
    expect(found!.violations[0].invariant).toBe('useAfterFree');
    expect(found!.violations[0].detail).toMatch(
      /^at a scheduling point, the host PTE for index \d+ of guest_memfd inode \d+ maps pfn \d+, which the file no longer holds there$/,
    );
  });

  it('host-fault-skips-clear: the VMM reads the free pattern through its mapping, or a guest does: staleData', async () => {
    const rs = await schedules(explorer('7.0', workloadFor('host-fault-skips-clear').ops, 'host-fault-skips-clear'), 32);
    const found = rs.find((r) => r.outcome !== 'ok');
    expect(found?.outcome).toBe('violation');
    expect(found!.violations.map((v) => v.invariant)).toContain('staleData');
    expect(found!.violations.every((v) => v.invariant === 'staleData')).toBe(true);
  });
});

describe('stress: --vm-type default runs the host ops from 6.18', () => {
  it.each(['6.18', '7.0', '7.4'] as const)(
    '%s: the VMM maps and touches while it punches the mapped pages; 0 violations',
    async (kernel) => {
      const r = await runStress({ kernel, vmType: 'default', durationMs: 800, seed: 11, auditEveryMs: 500, memory: '16MiB' });
      expect(r.crashes).toEqual([]);
      expect(r.violations, JSON.stringify(r.violationDetails)).toEqual(Object.fromEntries(INVARIANTS.map((i) => [i, 0])));
      expect(r.ok).toBe(true);
      for (const op of ['mmap', 'touch', 'munmap', 'punch'] as const) expect(r.vmmOps[op], op).toBeGreaterThan(0);
      // Punches hit pages the host had mapped, and the guests fault from the file.
      for (const c of ['hostAccesses', 'hostFaults', 'hostPtesZapped', 'faults', 'guestWrites'] as const)
        expect(r.counters[c], c).toBeGreaterThan(0);
      expect(r.vmmOps.convert).toBe(0);
    },
  );

  it('6.11: the default mix names the host ops, an SNP layout cannot map its files, so none runs; --vm-type default is refused', async () => {
    const r = await runStress({ kernel: '6.11', durationMs: 800, seed: 11, auditEveryMs: 0, memory: '16MiB' });
    expect(r.config.ops).toMatch(/mmap=1,touch=4,munmap=1,convert2=2,pin=2$/);
    // In-place conversion's ops need 7.4 with gmem_in_place_conversion: never drawn here.
    expect([r.vmmOps.convert2, r.vmmOps.pin]).toEqual([0, 0]);
    expect(r.ok).toBe(true);
    expect([r.vmmOps.mmap, r.vmmOps.touch, r.vmmOps.munmap, r.counters.hostAccesses, r.counters.hostFaults]).toEqual([0, 0, 0, 0, 0]);
    expect(r.vmmOps.punch).toBeGreaterThan(0);
    expect(() => resolveStressOptions({ kernel: '6.11', vmType: 'default' })).toThrow(ArgumentError);
    expect(() => resolveStressOptions({ kernel: '6.11', vmType: 'default' })).toThrow(
      /vm-type: .*default needs GMEM_ONLY memslots: 6\.18 on/,
    );
  });
});
