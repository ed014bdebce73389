// KVM_SET_MEMORY_ATTRIBUTES (virt/kvm/kvm_main.c: kvm_vm_ioctl_set_mem_attributes,
// kvm_vm_set_mem_attributes): -EINVAL for bad flags, attributes, alignment or size; PRIVATE only
// where kvm_supported_mem_attributes has it; a range already set is a no-op
// (kvm_range_has_memory_attributes); a change zaps the range's SPTEs (kvm_handle_gfn_range ->
// kvm_mmu_unmap_gfn_range), so the old kind of access exits with KVM_EXIT_MEMORY_FAULT.

import { describe, expect, it } from 'vitest';
import type { Vm } from '../../src/index.js';
import { makeSpte, spteFrame } from '../../src/kvm/spte.js';
import { auditQuiescent } from '../../src/checker/audit.js';
import {
  EXIT_FLAG_PRIVATE,
  MiB,
  PAGE_SIZE,
  dataOf,
  faultAndValidate,
  filled,
  setupVm,
  smallSandbox,
  statsDelta,
} from '../helpers/helpers.js';

const PRIVATE = 8; // KVM_MEMORY_ATTRIBUTE_PRIVATE

function privateMap(vm: Vm, pages: number): boolean[] {
  return Array.from({ length: pages }, (_, i) => vm.isPrivate(i * PAGE_SIZE));
}

describe('KVM_SET_MEMORY_ATTRIBUTES', () => {
  it('refuses bad arguments with EINVAL and changes nothing', async () => {
    const { sb, vm } = await setupVm({ type: 'snp', private: false });
    await vm.setMemoryAttributes({ address: PAGE_SIZE, size: PAGE_SIZE, attributes: 'private' });
    const before = privateMap(vm, 8);
    const bad: Array<[string, Parameters<Vm['setMemoryAttributes']>[0]]> = [
      ['unaligned address', { address: 100, size: PAGE_SIZE, attributes: 'private' }],
      ['unaligned size', { address: 0, size: PAGE_SIZE + 8, attributes: 'private' }],
      ['size 0', { address: 0, size: 0, attributes: 'private' }],
      ['flags != 0', { address: 0, size: PAGE_SIZE, attributes: 'private', flags: 1 }],
      ['unknown attribute bit 0', { address: 0, size: PAGE_SIZE, attributes: 1 }],
      ['unknown attribute with PRIVATE', { address: 0, size: PAGE_SIZE, attributes: PRIVATE | (1 << 4) }],
    ];
    const d = await statsDelta(sb, ['conversions', 'sptesZapped'], async () => {
      for (const [what, args] of bad) await expect(vm.setMemoryAttributes(args), what).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
    });
    expect(d).toEqual({ conversions: 0, sptesZapped: 0 });
    expect(privateMap(vm, 8)).toEqual(before);
  });

  it('PRIVATE on a default VM is EINVAL (shared is accepted as a no-op)', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'default' });
    await expect(vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: 'private' })).rejects.toMatchObject({ code: 'EINVAL' });
    expect(vm.isPrivate(0)).toBe(false);
    const d = await statsDelta(sb, ['conversions'], () => vm.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: 'shared' }));
    expect(d.conversions).toBe(0);
  });

  it('a real change counts one conversion and sets the whole range', async () => {
    const { sb, vm } = await setupVm({ type: 'sw-protected', private: false });
    const d = await statsDelta(sb, ['conversions'], () =>
      vm.setMemoryAttributes({ address: 2 * PAGE_SIZE, size: 3 * PAGE_SIZE, attributes: 'private' }),
    );
    expect(d.conversions).toBe(1);
    expect(privateMap(vm, 6)).toEqual([false, false, true, true, true, false]);
  });

  it('setting a range to what it already is changes nothing: no conversion, no zap, no refault', async () => {
    const { sb, vm, vcpu } = await setupVm({ type: 'snp', launch: 'finished' });
    await faultAndValidate(vcpu, 0);
    await vcpu.write(0, Uint8Array.of(1, 2, 3));
    const d = await statsDelta(sb, ['conversions', 'sptesZapped', 'faults'], async () => {
      await vm.setMemoryAttributes({ address: 0, size: MiB, attributes: 'private' });
      await vm.setMemoryAttributes({ address: 2 * MiB, size: PAGE_SIZE, attributes: 'shared' });
      expect(dataOf(await vcpu.read(0, 3))).toEqual([1, 2, 3]);
    });
    expect(d).toEqual({ conversions: 0, sptesZapped: 0, faults: 0 });
  });

  it('a conversion zaps the SPTEs of the range; the old kind of access then exits to the VMM', async () => {
    const { sb, vm, vcpu } = await setupVm({ type: 'sw-protected' });
    await vcpu.write(PAGE_SIZE, Uint8Array.of(9, 9));
    const d = await statsDelta(sb, ['conversions', 'sptesZapped'], () =>
      vm.setMemoryAttributes({ address: 0, size: 4 * PAGE_SIZE, attributes: 'shared' }),
    );
    expect(d).toEqual({ conversions: 1, sptesZapped: 1 });
    expect(await vcpu.read(PAGE_SIZE, 2, { private: true })).toMatchObject({
      ok: false,
      exit: 'memory_fault',
      memoryFault: { gpa: PAGE_SIZE, size: PAGE_SIZE, flags: EXIT_FLAG_PRIVATE },
    });
    // A shared access now goes to the VMM's memory, which the guest never wrote.
    expect(dataOf(await vcpu.read(PAGE_SIZE, 2))).toEqual(filled(2, 0));
    // Back to private: the guest_memfd page (never punched) still holds the guest's data.
    await vm.setMemoryAttributes({ address: 0, size: 4 * PAGE_SIZE, attributes: 'private' });
    expect(dataOf(await vcpu.read(PAGE_SIZE, 2))).toEqual([9, 9]);
  });

  it('the auditor holds shared SPTEs to their attribute: the conversion to private zaps them; one left behind is reported', async () => {
    const { sb, vm, vcpu } = await setupVm({ type: 'sw-protected' });
    await vm.setMemoryAttributes({ address: 0, size: 4 * PAGE_SIZE, attributes: 'shared' });
    await vcpu.write(2 * PAGE_SIZE, Uint8Array.of(7));
    const spte = sb.k.sptes.get(vm.id, 2);
    expect(spte).not.toBe(0);
    const d = await statsDelta(sb, ['sptesZapped'], () =>
      vm.setMemoryAttributes({ address: 0, size: 4 * PAGE_SIZE, attributes: 'private' }),
    );
    expect(d).toEqual({ sptesZapped: 1 });
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
    // What a conversion that skipped the zap would leave: the auditor names it.
    sb.k.sptes.set(vm.id, 2, makeSpte(spteFrame(spte), false));
    expect(auditQuiescent(sb.mem).violations.map((v) => [v.invariant, v.gfn])).toEqual([['rmpAgreement', 2]]);
  });
});
