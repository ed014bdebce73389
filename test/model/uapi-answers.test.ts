// uAPI answers checked against the kernel (6.11): KVM_CREATE_GUEST_MEMFD's u64 flags (kvm_gmem_create:
// flags & ~valid_flags), READONLY memslots on SNP (66155de93bcf), the SNP launch commands on other
// VMs (snp_launch_update: !sev_snp_guest), a guest write to a READONLY memslot (KVM_PFN_ERR_RO_FAULT
// -> RET_PF_EMULATE -> MMIO exit), and vfs_fallocate's mode checks before kvm_gmem_fallocate's,
// 6.11's and the mode switch of 57413d8e172c (6.12, modelled from 6.18).

import { describe, expect, it } from 'vitest';
import { runScenario } from '../../src/vmm/scenario/runner.js';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { KERNEL_VERSIONS, type KernelVersionName, Sandbox, VERSIONS } from '../../src/index.js';
import { MiB, PAGE_SIZE, setupVm, smallSandbox } from '../helpers/helpers.js';

const KEEP_SIZE = 0x01;
const PUNCH_HOLE = 0x02;
const NO_HIDE_STALE = 0x04;
const COLLAPSE_RANGE = 0x08;
const ZERO_RANGE = 0x10;
const INSERT_RANGE = 0x20;
const UNSHARE_RANGE = 0x40;

describe('KVM_CREATE_GUEST_MEMFD: flags are a u64 (kvm_gmem_create: flags & ~valid_flags)', () => {
  it('a flag bit at 32 or above is EINVAL, as is a value no u64 holds; 0 is fine', async () => {
    const sb = await smallSandbox();
    const vm = await sb.createVm({ type: 'snp' });
    for (const flags of [2 ** 32, 2 ** 40, 2 ** 52, 2 ** 63, 1n << 63n, (1n << 64n) - 1n, 2 ** 32 + 2 ** 33]) {
      await expect(vm.createGuestMemfd({ size: MiB, flags }), String(flags)).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
    }
    for (const flags of [-1, -(2 ** 32), 0.5, Number.NaN, Infinity, 2 ** 64, 1n << 64n, -1n]) {
      await expect(vm.createGuestMemfd({ size: MiB, flags }), String(flags)).rejects.toMatchObject({ code: 'EINVAL' });
    }
    const g = await vm.createGuestMemfd({ size: MiB, flags: 0n });
    expect(g.fstat().size).toBe(MiB);
  });

  it('in a scenario, a hex u64 flag with bit 63 is EINVAL', async () => {
    const r = await runScenario(
      parseScenario({
        policy: 'prepare-on-fault-own-vm',
        memory: '4MiB',
        vms: [{ name: 'a', type: 'snp', vcpus: 0 }],
        steps: [
          { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '1MiB', flags: '0x8000000000000000', expect: 'EINVAL' },
          { op: 'create_guest_memfd', vm: 'a', as: 'h', size: '1MiB', flags: 4294967296, expect: 'EINVAL' },
          { op: 'create_guest_memfd', vm: 'a', as: 'i', size: '1MiB', flags: '0x0', expect: 'ok' },
        ],
      }),
    );
    expect(r.steps.map((s) => s.result)).toEqual(['EINVAL', 'EINVAL', 'ok']);
    expect(r.ok).toBe(true);
  });
});

describe('KVM_SET_USER_MEMORY_REGION2: READONLY on a VM with protected state (66155de93bcf)', () => {
  it('SNP: READONLY is EINVAL and no slot is made; sw-protected and default VMs accept it', async () => {
    const sb = await smallSandbox();
    const snp = await sb.createVm({ type: 'snp' });
    await expect(snp.setUserMemoryRegion2({ slot: 1, flags: ['readonly'], guestPhysAddr: 4 * MiB, memorySize: MiB })).rejects.toMatchObject(
      { code: 'EINVAL', errno: 22 },
    );
    // The slot id is free: the same slot without READONLY is created.
    await snp.setUserMemoryRegion2({ slot: 1, guestPhysAddr: 4 * MiB, memorySize: MiB });
    for (const type of ['sw-protected', 'default'] as const) {
      const vm = await sb.createVm({ type });
      await vm.setUserMemoryRegion2({ slot: 1, flags: ['readonly'], guestPhysAddr: 4 * MiB, memorySize: MiB });
    }
  });
});

describe('SNP launch commands on a VM that is not SNP', () => {
  it('LAUNCH_UPDATE is EINVAL (snp_launch_update: !sev_snp_guest), START and FINISH ENOTTY', async () => {
    for (const type of ['default', 'sw-protected'] as const) {
      const { vm } = await setupVm({ type });
      await expect(vm.snpLaunchUpdate({ gpa: 0, len: PAGE_SIZE, type: 'zero' }), type).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
      await expect(vm.snpLaunchStart(), type).rejects.toMatchObject({ code: 'ENOTTY', errno: 25 });
      await expect(vm.snpLaunchFinish(), type).rejects.toMatchObject({ code: 'ENOTTY', errno: 25 });
    }
  });
});

describe('a guest write to a READONLY memslot (KVM_PFN_ERR_RO_FAULT -> RET_PF_EMULATE -> MMIO exit)', () => {
  for (const type of ['default', 'sw-protected'] as const) {
    it(`${type}: reads see the VMM's bytes; a write exits 'mmio', before and after the page is mapped, and memory is unchanged`, async () => {
      const sb = await smallSandbox();
      const vm = await sb.createVm({ type });
      // One page of VMM memory seen at two GPAs: writable at 0, read-only at 1 MiB.
      await vm.setUserMemoryRegion2({ slot: 0, guestPhysAddr: 0, memorySize: PAGE_SIZE, userspaceAddr: 0 });
      await vm.setUserMemoryRegion2({ slot: 1, flags: ['readonly'], guestPhysAddr: MiB, memorySize: PAGE_SIZE, userspaceAddr: 0 });
      const vcpu = await vm.createVcpu();
      expect(await vcpu.write(0x10, new Uint8Array([1, 2, 3, 4]), { private: false })).toMatchObject({ ok: true });
      const faults0 = sb.stats().faults;
      // A write before any read: the fault sees the read-only slot and emulates.
      expect(await vcpu.write(MiB + 0x10, new Uint8Array([9, 9, 9, 9]), { private: false })).toEqual({ ok: false, exit: 'mmio' });
      expect(await vcpu.read(MiB + 0x10, 4, { private: false })).toEqual({ ok: true, data: new Uint8Array([1, 2, 3, 4]) });
      // Now mapped read-only: the write faults again and exits the same way.
      expect(await vcpu.write(MiB + 0x10, new Uint8Array([9, 9, 9, 9]), { private: false })).toEqual({ ok: false, exit: 'mmio' });
      expect(sb.stats().faults - faults0).toBe(3);
      expect(await vcpu.read(0x10, 4, { private: false })).toEqual({ ok: true, data: new Uint8Array([1, 2, 3, 4]) });
      // The writable alias still writes, and the read-only view sees it.
      expect(await vcpu.write(0x10, new Uint8Array([5, 6, 7, 8]), { private: false })).toMatchObject({ ok: true });
      expect(await vcpu.read(MiB + 0x10, 4, { private: false })).toEqual({ ok: true, data: new Uint8Array([5, 6, 7, 8]) });
    });
  }
});

describe('fallocate: vfs_fallocate (6.11) checks, in its order, before kvm_gmem_fallocate', () => {
  it('KEEP_SIZE with COLLAPSE_RANGE or INSERT_RANGE is EINVAL (those modes are exclusive)', async () => {
    const { gmem } = await setupVm();
    await expect(gmem.fallocate(KEEP_SIZE | COLLAPSE_RANGE, 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
    await expect(gmem.fallocate(KEEP_SIZE | INSERT_RANGE, 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL', errno: 22 });
    await expect(gmem.fallocate(['keep_size', 'collapse_range'], 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(gmem.fallocate(['keep_size', 'insert_range'], 0, PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
    expect(gmem.folioAt(0)).toBeNull();
  });

  it('each mode reaches the check that refuses it first', async () => {
    const { gmem } = await setupVm();
    const cases: Array<[number, string]> = [
      // Alone, COLLAPSE/INSERT pass the VFS; guest_memfd wants KEEP_SIZE.
      [COLLAPSE_RANGE, 'EOPNOTSUPP'],
      [INSERT_RANGE, 'EOPNOTSUPP'],
      // Not in FALLOC_FL_SUPPORTED_MASK.
      [KEEP_SIZE | NO_HIDE_STALE, 'EOPNOTSUPP'],
      [KEEP_SIZE | 0x80, 'EOPNOTSUPP'],
      // Punch hole and zero range together; punch hole without keep size.
      [KEEP_SIZE | PUNCH_HOLE | ZERO_RANGE, 'EOPNOTSUPP'],
      [PUNCH_HOLE, 'EOPNOTSUPP'],
      // Unshare only with allocate mode; with KEEP_SIZE it passes the VFS and guest_memfd refuses it.
      [KEEP_SIZE | PUNCH_HOLE | UNSHARE_RANGE, 'EINVAL'],
      [KEEP_SIZE | UNSHARE_RANGE, 'EOPNOTSUPP'],
      [KEEP_SIZE | ZERO_RANGE, 'EOPNOTSUPP'],
      // COLLAPSE|PUNCH_HOLE without KEEP_SIZE: "punch hole must have keep size" comes first.
      [COLLAPSE_RANGE | PUNCH_HOLE, 'EOPNOTSUPP'],
      [COLLAPSE_RANGE | PUNCH_HOLE | KEEP_SIZE, 'EINVAL'],
    ];
    for (const [mode, code] of cases)
      await expect(gmem.fallocate(mode, 0, PAGE_SIZE), `mode 0x${mode.toString(16)}`).rejects.toMatchObject({ code });
    // offset < 0 or len <= 0 is checked before any mode.
    await expect(gmem.fallocate(KEEP_SIZE | 0x80, -PAGE_SIZE, PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(gmem.fallocate(PUNCH_HOLE, 0, 0)).rejects.toMatchObject({ code: 'EINVAL' });
    // The modes guest_memfd has still work.
    await gmem.fallocate(['keep_size'], 0, PAGE_SIZE);
    await gmem.fallocate(['keep_size', 'punch_hole'], 0, PAGE_SIZE);
  });
});

describe('fallocate: vfs_fallocate as a switch over the mode from 6.12 (57413d8e172c), checked before kvm_gmem_fallocate', () => {
  async function gmemOn(kernel: KernelVersionName) {
    const sb = await Sandbox.create({ kernel, memory: '4MiB', gpaSpace: '32MiB', userMemory: '8MiB', gmemSpace: '32MiB' });
    const vm = await sb.createVm({ type: 'sw-protected' });
    return vm.createGuestMemfd({ size: MiB });
  }
  // mode, the answer before (6.10 to 6.11), the answer from 6.18
  const cases: Array<[number, string, string]> = [
    [KEEP_SIZE | COLLAPSE_RANGE, 'EINVAL', 'EOPNOTSUPP'],
    [KEEP_SIZE | INSERT_RANGE, 'EINVAL', 'EOPNOTSUPP'],
    // Two modes at once.
    [KEEP_SIZE | PUNCH_HOLE | UNSHARE_RANGE, 'EINVAL', 'EOPNOTSUPP'],
    [COLLAPSE_RANGE | PUNCH_HOLE | KEEP_SIZE, 'EINVAL', 'EOPNOTSUPP'],
    [COLLAPSE_RANGE | INSERT_RANGE, 'EINVAL', 'EOPNOTSUPP'],
    [KEEP_SIZE | PUNCH_HOLE | ZERO_RANGE, 'EOPNOTSUPP', 'EOPNOTSUPP'],
    // One mode each, which the VFS lets through and guest_memfd refuses.
    [COLLAPSE_RANGE, 'EOPNOTSUPP', 'EOPNOTSUPP'],
    [KEEP_SIZE | UNSHARE_RANGE, 'EOPNOTSUPP', 'EOPNOTSUPP'],
    [KEEP_SIZE | ZERO_RANGE, 'EOPNOTSUPP', 'EOPNOTSUPP'],
    [PUNCH_HOLE, 'EOPNOTSUPP', 'EOPNOTSUPP'],
    [KEEP_SIZE | NO_HIDE_STALE, 'EOPNOTSUPP', 'EOPNOTSUPP'],
  ];

  it.each(KERNEL_VERSIONS.map((k) => [k] as const))('%s', async (kernel) => {
    const gmem = await gmemOn(kernel);
    const from618 = VERSIONS[kernel].fallocateModeSwitch;
    expect(from618).toBe(['6.18', '6.19', '7.0', '7.4'].includes(kernel));
    for (const [mode, before, after] of cases)
      await expect(gmem.fallocate(mode, 0, PAGE_SIZE), `mode 0x${mode.toString(16)}`).rejects.toMatchObject({
        code: from618 ? after : before,
      });
    // A negative offset, or a length not above zero, is EINVAL before any mode on every version.
    await expect(gmem.fallocate(KEEP_SIZE | COLLAPSE_RANGE, -PAGE_SIZE, PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(gmem.fallocate(KEEP_SIZE | PUNCH_HOLE | UNSHARE_RANGE, 0, 0)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(gmem.fallocate(KEEP_SIZE | 0x80, 0, -PAGE_SIZE)).rejects.toMatchObject({ code: 'EINVAL' });
    expect(gmem.folioAt(0)).toBeNull();
    await gmem.fallocate(['keep_size'], 0, PAGE_SIZE);
    await gmem.fallocate(['keep_size', 'punch_hole'], 0, PAGE_SIZE);
  });
});
