// The experiments by kernel version: which versions run (and the policy aliases), and the multi-VM
// numbers each version's prepare gives (kvm_gmem_prepare_folio for every bound VM at b85524314a, for
// the faulting VM only from 6dd761d92f66; at allocation on 6.10). Two SNP VMs map 16 pages of one
// inode; seed 1 makes 12 of them private and 4 shared, and every VM faults every page once, so the
// counts are exact even though the run is free-running.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArgumentError, KERNEL_VERSIONS, type KernelVersionName, multiVmExperiment, policiesExperiment } from '../../src/index.js';
import { experimentKernels, launchAfterFallocate } from '../../src/vmm/experiments/experiments.js';
import { tempDir } from '../helpers/cli-helpers.js';

const RUN = { vms: 2, pages: 16, durationMs: 300, seed: 1 };

describe('which kernel versions an experiment runs', () => {
  it('kernel: a version, all, or a list in order; by default all', () => {
    expect(experimentKernels({})).toEqual([...KERNEL_VERSIONS]);
    expect(experimentKernels({ kernel: 'all' })).toEqual([...KERNEL_VERSIONS]);
    expect(experimentKernels({ kernel: '6.18' })).toEqual(['6.18']);
    expect(experimentKernels({ kernel: ['upstream', '6.10'] })).toEqual(['7.0', '6.10']);
    expect(() => experimentKernels({ kernel: '6.12' as never })).toThrow(
      /^kernel: must be one of 6.10, b85524314a, 6.11, 6.18, 6.19, 7.0, 7.4, upstream, got '6.12'$/,
    );
  });

  it('policies are aliases for the versions they were modelled on; both given must agree', () => {
    expect(experimentKernels({ policies: ['prepare-on-allocate', 'prepare-on-fault', 'prepare-on-fault-own-vm'] })).toEqual([
      '6.10',
      'b85524314a',
      '6.11',
    ]);
    expect(experimentKernels({ kernel: '6.10', policies: ['prepare-on-allocate'] })).toEqual(['6.10']);
    expect(() => experimentKernels({ kernel: '6.18', policies: ['prepare-on-fault'] })).toThrow(
      /^policies: 'prepare-on-fault' is kernel b85524314a, which contradicts kernel '6.18'; give one of them$/,
    );
    expect(() => experimentKernels({ kernel: 'all', policies: ['prepare-on-fault'] }, 'policy')).toThrow(
      /^policy: 'prepare-on-fault' is kernel b85524314a, which contradicts kernel 'all'; give one of them$/,
    );
  });

  it('the experiments refuse a contradiction before running anything', async () => {
    await expect(multiVmExperiment({ ...RUN, kernel: '6.11', policies: ['prepare-on-allocate'] })).rejects.toBeInstanceOf(ArgumentError);
    await expect(policiesExperiment({ kernel: '6.12' as never, durationMs: 100, seed: 1 })).rejects.toThrow(/^kernel: must be one of/);
  });
});

describe('multi-vm by kernel version', () => {
  /** Per version: arch prepare calls, those made for the VM that did not fault, and whether the newest VM gets every page. */
  const WANT: Record<KernelVersionName, { policy: string; arch: number; crossVm: number; newestOwnsAll: boolean }> = {
    // 6.10: every private fault (2 VMs x 12 pages) prepares for both VMs.
    '6.10': { policy: 'prepare-on-allocate', arch: 48, crossVm: 24, newestOwnsAll: true },
    // b85524314a: once per folio, still for both VMs (kvm_gmem_prepare_folio walks the inode's files).
    b85524314a: { policy: 'prepare-on-fault', arch: 24, crossVm: 12, newestOwnsAll: true },
    // 6dd761d92f66 (6.11): once per folio, for the faulting VM only.
    '6.11': { policy: 'prepare-on-fault-own-vm', arch: 12, crossVm: 0, newestOwnsAll: false },
    '6.18': { policy: 'prepare-on-fault-own-vm', arch: 12, crossVm: 0, newestOwnsAll: false },
    '6.19': { policy: 'prepare-on-fault-own-vm', arch: 12, crossVm: 0, newestOwnsAll: false },
    // 8622ef05709f (7.0): the arch hook on every fault (2 VMs x 12 pages), for the faulting VM only.
    '7.0': { policy: 'prepare-on-every-fault', arch: 24, crossVm: 0, newestOwnsAll: false },
    // 3df611b5a04e (7.4): the hook for private pages only; every page here is private, so as 7.0.
    '7.4': { policy: 'prepare-on-every-fault', arch: 24, crossVm: 0, newestOwnsAll: false },
  };

  it('kernel all: one row per version, in order, with exact prepare counts', async () => {
    const rows = await multiVmExperiment({ ...RUN, kernel: 'all' });
    expect(rows.map((r) => r.kernel)).toEqual([...KERNEL_VERSIONS]);
    for (const r of rows) {
      const want = WANT[r.kernel];
      const at = `kernel ${r.kernel}`;
      expect(r.run.crashes, at).toEqual([]);
      expect(r.run.ok, at).toBe(true);
      expect(r.run.config.kernel, at).toBe(r.kernel);
      expect(
        {
          policy: r.policy,
          faults: r.faults,
          arch: r.archPrepareCalls,
          crossVm: r.crossVmArchPrepareCalls,
          contested: r.owners.contested,
          unassigned: r.owners.unassigned,
        },
        at,
      ).toEqual({
        policy: want.policy,
        faults: 32,
        arch: want.arch,
        crossVm: want.crossVm,
        contested: 12,
        unassigned: 0,
      });
      expect(r.archPreparePerFault, at).toBe(want.arch / 32);
      expect(
        r.owners.byVm.reduce((a, b) => a + b, 0),
        at,
      ).toBe(12);
      // Before 6.11 the newest VM (first in the inode's list) is registered first and keeps every page.
      if (want.newestOwnsAll) expect(r.owners.byVm, at).toEqual([0, 12]);
      // Either way one VM touches pages the other owns.
      expect(r.rmpViolations, at).toBeGreaterThan(0);
    }
  }, 120_000);

  it('a policy runs as its version, labelled and traced by the version name', async () => {
    const dir = tempDir();
    const rows = await multiVmExperiment({ ...RUN, policies: ['prepare-on-fault'], trace: (k) => join(dir, `t.${k}.json`) });
    expect(rows.map((r) => [r.kernel, r.policy, r.archPrepareCalls, r.crossVmArchPrepareCalls])).toEqual([
      ['b85524314a', 'prepare-on-fault', 24, 12],
    ]);
    expect(rows[0].sentence).toMatch(
      /^The arch prepare ran once per folio for all 2 bound VMs .*, 12 of the 24 for a VM other than the faulting one\)/,
    );
    expect(existsSync(join(dir, 't.b85524314a.json'))).toBe(true);
  }, 60_000);
});

describe('policies by kernel version', () => {
  it('LAUNCH_UPDATE after fallocate fails only on 6.10, which registers the page at fallocate', async () => {
    const got: Record<string, string> = {};
    for (const k of KERNEL_VERSIONS) got[k] = await launchAfterFallocate(k);
    expect(got).toEqual({
      '6.10': 'EIO (populate: EINVAL)',
      b85524314a: 'ok',
      '6.11': 'ok',
      '6.18': 'ok',
      '6.19': 'ok',
      '7.0': 'ok',
      '7.4': 'ok',
    });
  });

  it('kernel: a list runs those versions, rows keyed by kernel with its policy', async () => {
    const rows = await policiesExperiment({ kernel: ['6.10', 'upstream'], durationMs: 300, seed: 1 });
    expect(rows.map((r) => [r.kernel, r.policy, r.launchUpdateAfterFallocate, r.violations])).toEqual([
      ['6.10', 'prepare-on-allocate', 'EIO (populate: EINVAL)', 0],
      ['7.0', 'prepare-on-every-fault', 'ok', 0],
    ]);
    for (const r of rows) expect(r.run.config.kernel).toBe(r.kernel);
  }, 60_000);
});
