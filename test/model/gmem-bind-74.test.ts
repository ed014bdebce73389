// The memslot binding as the 7.4 push reworks it, against 7.0: the xarray store's error returned
// and the partial store undone (kvm_gmem_commit_memory_region, e6ecb88711d9), where before the
// memslot went live without its binding and a guest fault met WARN + EIO in __kvm_gmem_get_pfn;
// an overlapping binding refused with EEXIST in commit (83411f32b8ad) where kvm_gmem_bind said
// EINVAL; and kvm_gmem_init_inode's maple tree store failing KVM_CREATE_GUEST_MEMFD (1ae5be958ff7).

import { describe, expect, it } from 'vitest';
import { type KernelVersionName, PAGE_SIZE, Sandbox } from '../../src/index.js';
import { thrown } from '../helpers/helpers.js';

async function vmWithFile(kernel: KernelVersionName) {
  const sb = await Sandbox.create({ kernel, memory: '4MiB', gpaSpace: '32MiB', userMemory: '8MiB', gmemSpace: '32MiB' });
  const vm = await sb.createVm({ type: 'sw-protected' });
  const gmem = await vm.createGuestMemfd({ size: 4 * PAGE_SIZE });
  const bind = (slot: number, gpa: number) =>
    vm.setUserMemoryRegion2Sync({ slot, flags: ['guest_memfd'], guestPhysAddr: gpa, memorySize: 2 * PAGE_SIZE, guestMemfd: gmem });
  return { sb, vm, gmem, bind };
}

describe('the bind store failing (failslab on the xarray node)', () => {
  it('7.0: the memslot goes live without its binding; a private guest fault is EIO', async () => {
    const { sb, vm, bind } = await vmWithFile('7.0');
    sb.injectSlabFailures(1);
    bind(0, 0);
    vm.setMemoryAttributesSync({ address: 0, size: 2 * PAGE_SIZE, attributes: 'private' });
    const v = await vm.createVcpu();
    expect(v.readSync(0, 1)).toMatchObject({ ok: false, exit: 'memory_fault', errno: 'EIO' });
    // No binding was stored, so nothing overlaps it.
    bind(1, 8 * PAGE_SIZE);
  });

  it('7.4 (e6ecb88711d9): ENOMEM, no memslot; the same range binds once memory is back', async () => {
    const { sb, vm, bind } = await vmWithFile('7.4');
    sb.injectSlabFailures(1);
    expect(thrown(() => bind(0, 0)).code).toBe('ENOMEM');
    bind(0, 0);
    vm.setMemoryAttributesSync({ address: 0, size: 2 * PAGE_SIZE, attributes: 'private' });
    const v = await vm.createVcpu();
    expect(v.readSync(0, 1)).toEqual({ ok: true, data: new Uint8Array([0]) });
  });
});

describe('an overlapping binding of the same file range', () => {
  it.each([
    ['7.0', 'EINVAL'],
    ['7.4', 'EEXIST'],
  ] as const)('%s: %s', async (kernel, code) => {
    const { bind } = await vmWithFile(kernel);
    bind(0, 0);
    expect(thrown(() => bind(1, 8 * PAGE_SIZE)).code).toBe(code);
  });
});

describe('KVM_CREATE_GUEST_MEMFD storing the default attributes', () => {
  it.each([
    ['7.0', 'ok'],
    ['7.4', 'ENOMEM'],
  ] as const)('%s with one allocation failure: %s', async (kernel, want) => {
    const { sb, vm } = await vmWithFile(kernel);
    sb.injectSlabFailures(1);
    let got = 'ok';
    try {
      vm.createGuestMemfdSync({ size: PAGE_SIZE });
    } catch (e) {
      got = (e as { code: string }).code;
    }
    expect(got).toBe(want);
    sb.injectSlabFailures(0);
  });
});
