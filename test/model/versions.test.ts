// Each behaviour switch of gmem/version.ts on the version before its commit and the one after:
// READONLY memslots on SNP (66155de93bcf), pre-fault before LAUNCH_FINISH (5932ca411e53), populate
// of a shared gfn (e4ee54479273); the policy names as aliases of b85524314a, 6.10 and 6.11
// (6dd761d92f66), and every later version keeping the earlier fixes.

import { describe, expect, it } from 'vitest';
import { KERNEL_VERSIONS, VERSIONS } from '../../src/gmem/version.js';
import { Sandbox } from '../../src/vmm/sandbox/sandbox.js';
import { MiB, PAGE_SIZE } from '../helpers/helpers.js';

async function sandbox(kernel: (typeof KERNEL_VERSIONS)[number]): Promise<Sandbox> {
  return Sandbox.create({ kernel, memory: '4MiB', gpaSpace: '32MiB', userMemory: '8MiB', gmemSpace: '32MiB' });
}

describe('kernel versions', () => {
  it('policy names are aliases of the versions they were modelled on, and a contradiction is refused naming both', async () => {
    expect((await Sandbox.create({ policy: 'prepare-on-fault', memory: '4MiB' })).descriptor.kernel).toBe('b85524314a');
    expect((await Sandbox.create({ policy: 'prepare-on-allocate', memory: '4MiB' })).descriptor.kernel).toBe('6.10');
    expect((await Sandbox.create({ memory: '4MiB' })).descriptor.kernel).toBe('6.11');
    expect(() => Sandbox.createSync({ kernel: '6.18', policy: 'prepare-on-fault' })).toThrow(
      /^policy: 'prepare-on-fault' is kernel b85524314a, which contradicts kernel '6.18'/,
    );
    expect(() => Sandbox.createSync({ kernel: '6.12' as never })).toThrow(
      /^kernel: must be one of 6.10, b85524314a, 6.11, 6.18, 6.19, 7.0, 7.4, upstream, got '6.12'/,
    );
  });

  // populateRefusesUptodate is not among them: 7.0 (8622ef05709f) moved that refusal to the RMP.
  it('each later version keeps every fix of the earlier ones', () => {
    const fixes = [
      'prefaultInvalidSlotEagain',
      'unbindDyingFile',
      'rejectGmemFlagsChange',
      'populatePrivateOnly',
      'readonlyRefusedOnSnp',
      'prefaultNeedsLaunch',
    ] as const;
    for (let i = 1; i < KERNEL_VERSIONS.length; i++) {
      for (const f of fixes)
        if (VERSIONS[KERNEL_VERSIONS[i - 1]][f]) expect(VERSIONS[KERNEL_VERSIONS[i]][f], `${KERNEL_VERSIONS[i]}.${f}`).toBe(true);
    }
  });

  it('66155de93bcf (6.11-rc4): a READONLY memslot on an SNP VM is accepted by the seed, EINVAL from 6.11', async () => {
    for (const [kernel, ok] of [
      ['b85524314a', true],
      ['6.11', false],
    ] as const) {
      const sb = await sandbox(kernel);
      const vm = await sb.createVm({ type: 'snp' });
      const r = vm.setUserMemoryRegion2({ slot: 0, flags: ['readonly'], guestPhysAddr: 0, memorySize: MiB });
      if (ok) await expect(r).resolves.toBeUndefined();
      else await expect(r).rejects.toMatchObject({ code: 'EINVAL' });
      await sb.close();
    }
  });

  it('5932ca411e53 (before the seed): pre-fault before LAUNCH_FINISH is allowed by 6.11-rc1 (the 6.10 label), EOPNOTSUPP from the seed', async () => {
    for (const [kernel, want] of [
      ['6.10', 'ok'],
      ['b85524314a', 'EOPNOTSUPP'],
    ] as const) {
      const sb = await sandbox(kernel);
      const vm = await sb.createVm({ type: 'snp' });
      const gmem = await vm.createGuestMemfd({ size: MiB });
      await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: gmem });
      await vm.setMemoryAttributes({ address: 0, size: MiB, attributes: 'private' });
      await vm.snpLaunchStart();
      const vcpu = await vm.createVcpu();
      const r = vcpu.preFaultMemory({ gpa: 0, size: PAGE_SIZE });
      if (want === 'ok') await expect(r).resolves.toEqual({ gpa: PAGE_SIZE, size: 0 });
      else await expect(r).rejects.toMatchObject({ code: want });
      await sb.close();
    }
  });

  it('e4ee54479273: populate of a shared gfn is EINVAL in common code from 6.11; at the seed SNP post_populate refuses it (EINVAL too)', async () => {
    for (const kernel of ['b85524314a', '6.11'] as const) {
      const sb = await sandbox(kernel);
      const vm = await sb.createVm({ type: 'snp' });
      const gmem = await vm.createGuestMemfd({ size: MiB });
      await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: MiB, guestMemfd: gmem });
      await vm.snpLaunchStart();
      await expect(vm.snpLaunchUpdate({ gpa: 0, data: new Uint8Array(16) })).rejects.toMatchObject({
        code: 'EIO',
        populateError: 'EINVAL',
      });
      expect(sb.stats().rmpUpdates).toBe(0);
      await sb.close();
    }
  });
});
