// guest_memfd in-place shared <=> private conversion as queued for 7.4 (linux-next next-20260923):
// KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd (kvm_gmem_set_attributes, 799c9fadc639), its
// refcount check (kvm_gmem_has_outstanding_references, dcde2f853ff4), the per-inode attributes the
// host fault checks (kvm_gmem_fault_user_mapping, 1ae5be958ff7), INIT_SHARED on confidential VMs
// (b5ed1ee2a7a0) and KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES. The cases port
// tools/testing/selftests/kvm/x86/guest_memfd_conversions_test.c (eaef4ed5fabc, e5fa04dc920e,
// 492080a3d4e5, 97137c140360, 5362c5fb88f6, bfb9b5a286ea, 8b72eaa766b6, 0db3f14f40c4): a
// sw-protected VM, the file mapped by the VMM, contents surviving every conversion.

import { describe, expect, it } from 'vitest';
import { HostSignalError, type HostMapping, type KernelVersionName, PAGE_SIZE, Sandbox, type VmTypeName } from '../../src/index.js';
import { auditQuiescent } from '../../src/checker/audit.js';
import { dataOf, thrown } from '../helpers/helpers.js';

const MMAP = 1;
const INIT_SHARED = 2;
const GPA = 16 << 20;
const PRIVATE = 8;

function sandbox(kernel: KernelVersionName = '7.4', inPlace = true): Promise<Sandbox> {
  return Sandbox.create({
    kernel,
    moduleParams: { gmem_in_place_conversion: inPlace },
    memory: '4MiB',
    gpaSpace: '32MiB',
    userMemory: '8MiB',
    gmemSpace: '32MiB',
  });
}

/** The selftest's setup: a sw-protected VM, an MMAP guest_memfd of `pages` bound at GPA, mapped by the VMM, one vCPU. */
async function setup(pages: number, flags = 0, o: { kernel?: KernelVersionName; type?: VmTypeName } = {}) {
  const sb = await sandbox(o.kernel);
  const vm = await sb.createVm({ type: o.type ?? 'sw-protected' });
  const gmem = await vm.createGuestMemfd({ size: pages * PAGE_SIZE, flags: MMAP | flags });
  await vm.setUserMemoryRegion2({ slot: 1, flags: ['guest_memfd'], guestPhysAddr: GPA, memorySize: pages * PAGE_SIZE, guestMemfd: gmem });
  const map = gmem.mmapSync({ size: pages * PAGE_SIZE });
  const vcpu = await vm.createVcpu();
  const at = (p: number) => p * PAGE_SIZE;
  const signal = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(HostSignalError);
      return (e as HostSignalError).signal;
    }
    return 'none';
  };
  const t = {
    sb,
    vm,
    gmem,
    map,
    vcpu,
    setPrivate: (p: number, n = 1) => gmem.setMemoryAttributes2Sync({ offset: at(p), size: n * PAGE_SIZE, attributes: 'private' }),
    setShared: (p: number, n = 1) => gmem.setMemoryAttributes2Sync({ offset: at(p), size: n * PAGE_SIZE, attributes: 'shared' }),
    /** test_private: the host faults SIGBUS both ways; the guest reads `start` and writes `w`. */
    testPrivate(p: number, start: number, w: number) {
      expect(
        signal(() => map.writeSync(at(p), new Uint8Array([0xee]))),
        `host write page ${p}`,
      ).toBe('SIGBUS');
      expect(dataOf(vcpu.readSync(GPA + at(p), 1)), `guest read page ${p}`).toEqual([start]);
      expect(vcpu.writeSync(GPA + at(p), new Uint8Array([w])).ok).toBe(true);
      expect(
        signal(() => map.readSync(at(p), 1)),
        `host read page ${p}`,
      ).toBe('SIGBUS');
    },
    /** test_shared: the host reads `start` and writes `hw`; the guest reads `hw` and writes `w`; the host reads `w`. */
    testShared(p: number, start: number, hw: number, w: number) {
      expect([...map.readSync(at(p), 1)], `host read page ${p}`).toEqual([start]);
      map.writeSync(at(p), new Uint8Array([hw]));
      expect(dataOf(vcpu.readSync(GPA + at(p), 1)), `guest read page ${p}`).toEqual([hw]);
      expect(vcpu.writeSync(GPA + at(p), new Uint8Array([w])).ok).toBe(true);
      expect([...map.readSync(at(p), 1)], `host read page ${p} again`).toEqual([w]);
    },
  };
  return t;
}

type T = Awaited<ReturnType<typeof setup>>;
const A = 0x41;
const B = 0x42;
const C = 0x43;
const D = 0x44;
const E = 0x45;

function toShared(t: T, p: number, start: number, hw: number, w: number): void {
  t.setShared(p);
  t.testShared(p, start, hw, w);
}
function toPrivate(t: T, p: number, start: number, w: number): void {
  t.setPrivate(p);
  t.testPrivate(p, start, w);
}
/** The auditor at a quiescent point, with the mapping live (its PTEs map shared pages only) and after teardown. */
function audited(t: T): void {
  expect(auditQuiescent(t.sb.mem).violations).toEqual([]);
  t.map.munmapSync();
  t.sb.closeAllFds();
  expect(auditQuiescent(t.sb.mem).violations).toEqual([]);
}

describe('KVM_SET_MEMORY_ATTRIBUTES2: the selftest cases (7.4, gmem_in_place_conversion=1)', () => {
  it('init_private: a fresh private page reads 0 in the guest; contents survive both conversions', async () => {
    const t = await setup(1);
    t.testPrivate(0, 0, A);
    toShared(t, 0, A, B, C);
    toPrivate(t, 0, C, E);
    audited(t);
  });

  it('init_shared: INIT_SHARED starts shared for the host; contents survive both conversions', async () => {
    const t = await setup(1, INIT_SHARED);
    t.testShared(0, 0, A, B);
    toPrivate(t, 0, B, C);
    toShared(t, 0, C, D, E);
    audited(t);
  });

  it.each([0, 1, 2, 3])('indexing: converting page %i changes that page only', async (tp) => {
    const t = await setup(4, INIT_SHARED);
    for (let p = 3; p >= 0; p--) t.testShared(p, 0, 0x10 + p, 0x20 + p);
    toPrivate(t, tp, 0x20 + tp, 0x30 + tp);
    for (let p = 0; p < 4; p++) if (p !== tp) t.testShared(p, 0x20 + p, 0x40 + p, 0x50 + p);
    toShared(t, tp, 0x30 + tp, 0x60 + tp, 0x70 + tp);
    for (let p = 0; p < 4; p++) expect([...t.map.readSync(p * PAGE_SIZE, 1)]).toEqual([p === tp ? 0x70 + p : 0x50 + p]);
    audited(t);
  });

  it('before_allocation: a conversion with no folio allocated is recorded; the first touch reads 0', async () => {
    const s = await setup(1, INIT_SHARED);
    expect(s.gmem.folioAt(0)).toBeNull();
    toPrivate(s, 0, 0, A);
    audited(s);
    const p = await setup(1);
    expect(p.gmem.folioAt(0)).toBeNull();
    toShared(p, 0, 0, A, B);
    audited(p);
  });

  it('unallocated_folios: one call converts 8 pages, 2 allocated and 6 holes', async () => {
    const t = await setup(8, INIT_SHARED);
    t.map.writeSync(2 * PAGE_SIZE, new Uint8Array([A]));
    t.map.writeSync(4 * PAGE_SIZE, new Uint8Array([A]));
    t.setPrivate(0, 8);
    for (let p = 0; p < 8; p++) t.testPrivate(p, p === 2 || p === 4 ? A : 0, B);
    for (let p = 0; p < 8; p++) toShared(t, p, B, C, D);
    audited(t);
  });

  it('truncate: PUNCH_HOLE keeps the attributes and zeroes the contents (reads of zero after a punch)', async () => {
    const t = await setup(1, INIT_SHARED);
    t.map.writeSync(0, new Uint8Array([A]));
    t.gmem.fallocateSync(['punch_hole', 'keep_size'], 0, PAGE_SIZE);
    t.testShared(0, 0, A, B);
    toPrivate(t, 0, B, C);
    t.gmem.fallocateSync(['punch_hole', 'keep_size'], 0, PAGE_SIZE);
    t.testPrivate(0, 0, A);
    audited(t);
  });

  it('forked_accesses: a conversion to private zaps every mapping of the page (unmap_mapping_pages)', async () => {
    const t = await setup(1, INIT_SHARED);
    const other = t.gmem.mmapSync({ size: PAGE_SIZE });
    other.writeSync(0, new Uint8Array([A]));
    expect([...t.map.readSync(0, 1)]).toEqual([A]);
    expect(t.gmem.folioAt(0)).toMatchObject({ refcount: 4 }); // page cache, two PTEs, the LRU batch
    t.setPrivate(0);
    expect(t.gmem.folioAt(0)).toMatchObject({ refcount: 1 });
    for (const m of [other, t.map] as HostMapping[]) {
      expect(thrown(() => m.readSync(0, 1))).toBeInstanceOf(HostSignalError);
      expect(thrown(() => m.writeSync(0, new Uint8Array([B])))).toBeInstanceOf(HostSignalError);
    }
    expect(dataOf(t.vcpu.readSync(GPA, 1))).toEqual([A]);
    other.munmapSync();
    audited(t);
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES2: references beyond the page cache', () => {
  it('elevated_refcount: a pinned page fails to-private with EAGAIN at its own offset, until unpinned', async () => {
    const tp = 2;
    const t = await setup(4, INIT_SHARED);
    for (let p = 0; p < 4; p++) t.map.writeSync(p * PAGE_SIZE, new Uint8Array([A]));
    const pin = t.map.pinSync(tp * PAGE_SIZE);
    expect(t.gmem.folioAt(tp * PAGE_SIZE)).toMatchObject({ pincount: 1 });
    for (let p = 0; p < 4; p++) t.testShared(p, A, A, B);
    const bulk = thrown(() => t.setPrivate(0, 4));
    expect({ code: bulk.code, errorOffset: bulk.errorOffset }).toEqual({ code: 'EAGAIN', errorOffset: tp * PAGE_SIZE });
    // Nothing was converted: the host PTEs went (to-private unmaps first), the attributes stayed.
    for (let p = 0; p < 4; p++) expect([...t.map.readSync(p * PAGE_SIZE, 1)]).toEqual([B]);
    for (let p = 0; p < 4; p++) {
      if (p === tp) {
        const e = thrown(() => t.setPrivate(p));
        expect({ code: e.code, errorOffset: e.errorOffset }).toEqual({ code: 'EAGAIN', errorOffset: tp * PAGE_SIZE });
      } else toPrivate(t, p, B, C);
    }
    // To shared never checks references: the pinned page may go shared (it already is).
    t.setShared(tp);
    pin.unpinSync();
    expect(thrown(() => pin.unpinSync()).code).toBe('EINVAL');
    t.setPrivate(0, 4);
    for (let p = 0; p < 4; p++) t.testPrivate(p, p === tp ? B : C, D);
    expect(t.sb.stats()).toMatchObject({ conversionsRefused: 2 });
    audited(t);
  });

  it('a recently faulted folio holds the LRU batch reference: one lru_add_drain_all, then the conversion passes', async () => {
    const t = await setup(2, INIT_SHARED);
    t.map.writeSync(0, new Uint8Array([A]));
    t.map.writeSync(PAGE_SIZE, new Uint8Array([A]));
    // The page cache, the PTE, the batch's reference (folio_add_lru).
    expect(t.gmem.folioAt(0)).toMatchObject({ refcount: 3, pincount: 0 });
    const before = t.sb.stats().lruDrains;
    t.setPrivate(0, 2);
    expect(t.sb.stats().lruDrains - before).toBe(1);
    expect(t.gmem.folioAt(0)).toMatchObject({ refcount: 1 });
    expect(t.gmem.folioAt(PAGE_SIZE)).toMatchObject({ refcount: 1 });
    audited(t);
  });

  it('a pinned folio fails at once (folio_maybe_dma_pinned), without the LRU drain', async () => {
    const t = await setup(1, INIT_SHARED);
    t.map.writeSync(0, new Uint8Array([A]));
    t.sb.dropCaches();
    const pin = t.map.pinSync(0);
    // The page cache, the PTE, the pin.
    expect(t.gmem.folioAt(0)).toMatchObject({ refcount: 3, pincount: 1 });
    const before = t.sb.stats().lruDrains;
    const e = thrown(() => t.setPrivate(0));
    expect({ code: e.code, errorOffset: e.errorOffset }).toEqual({ code: 'EAGAIN', errorOffset: 0 });
    expect(t.sb.stats().lruDrains - before).toBe(0);
    // The PTE went before the check (unmap_mapping_pages), the pin stays.
    expect(t.gmem.folioAt(0)).toMatchObject({ refcount: 2, pincount: 1 });
    pin.unpinSync();
    t.setPrivate(0);
    audited(t);
  });

  it('dropCaches drains the batches first: the conversion then needs no drain', async () => {
    const t = await setup(1, INIT_SHARED);
    t.map.writeSync(0, new Uint8Array([A]));
    t.map.munmapSync();
    t.sb.dropCaches();
    expect(t.gmem.folioAt(0)).toMatchObject({ refcount: 1 });
    const before = t.sb.stats().lruDrains;
    t.setPrivate(0);
    expect(t.sb.stats().lruDrains - before).toBe(0);
    t.sb.closeAllFds();
    expect(auditQuiescent(t.sb.mem).violations).toEqual([]);
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES2: the argument checks in the kernel order (kvm_gmem_set_attributes)', () => {
  it('EINVAL: flags, reserved, unknown attributes, zero size, overflow, unaligned, out of the file', async () => {
    const t = await setup(4);
    const P = PAGE_SIZE;
    const bad = [
      { offset: 0, size: P, attributes: 'private' as const, flags: 1 },
      { offset: 0, size: P, attributes: 'private' as const, reserved: [0, 0, 1] },
      { offset: 0, size: P, attributes: 1 },
      { offset: 0, size: P, attributes: PRIVATE | 16 },
      { offset: 0, size: 0, attributes: 'private' as const },
      { offset: 0xfffffffffffff000n, size: 2 * P, attributes: 'private' as const },
      { offset: 1, size: P, attributes: 'private' as const },
      { offset: 0, size: P + 1, attributes: 'private' as const },
      { offset: 4 * P, size: P, attributes: 'private' as const },
      { offset: 3 * P, size: 2 * P, attributes: 'private' as const },
    ];
    for (const a of bad) {
      const e = thrown(() => t.gmem.setMemoryAttributes2Sync(a));
      expect(
        { code: e.code, errorOffset: e.errorOffset },
        JSON.stringify(a, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}` : v)),
      ).toEqual({
        code: 'EINVAL',
        errorOffset: undefined,
      });
    }
    audited(t);
  });

  it('EINVAL on a VM without private memory (a default VM), before the range is looked at', async () => {
    const sb = await sandbox();
    const vm = await sb.createVm({ type: 'default' });
    const g = await vm.createGuestMemfd({ size: PAGE_SIZE, flags: MMAP | INIT_SHARED });
    expect(thrown(() => g.setMemoryAttributes2Sync({ offset: 0, size: PAGE_SIZE, attributes: 'private' })).code).toBe('EINVAL');
    expect(thrown(() => g.setMemoryAttributes2Sync({ offset: 1, size: 0, attributes: 'shared' })).code).toBe('EINVAL');
  });

  it('ENOMEM when the attributes cannot be preallocated, with error_offset the requested offset', async () => {
    const t = await setup(4, INIT_SHARED);
    t.sb.injectSlabFailures(1);
    const e = thrown(() => t.setPrivate(2, 2));
    expect({ code: e.code, errorOffset: e.errorOffset }).toEqual({ code: 'ENOMEM', errorOffset: 2 * PAGE_SIZE });
    t.testShared(2, 0, A, B);
    t.setPrivate(2, 2);
    t.testPrivate(2, B, C);
    audited(t);
  });

  it('ENOTTY unless gmem_in_place_conversion is on (off by default), before any argument check; and before 7.4', async () => {
    for (const [kernel, inPlace] of [
      ['7.4', false],
      ['7.0', true],
      ['6.18', true],
    ] as const) {
      const sb = await sandbox(kernel, inPlace);
      expect(sb.moduleParams).toEqual({ gmem_in_place_conversion: kernel === '7.4' ? inPlace : false });
      const vm = await sb.createVm({ type: 'sw-protected' });
      const g = await vm.createGuestMemfd({ size: PAGE_SIZE });
      for (const a of [
        { offset: 0, size: PAGE_SIZE, attributes: 'private' as const },
        { offset: 1, size: 0, attributes: 1, flags: 7 },
      ])
        expect(thrown(() => g.setMemoryAttributes2Sync(a)).code, `${kernel} ${inPlace}`).toBe('ENOTTY');
    }
    const def = await Sandbox.create({ kernel: '7.4', memory: '4MiB', gpaSpace: '32MiB', userMemory: '8MiB', gmemSpace: '32MiB' });
    expect(def.moduleParams).toEqual({ gmem_in_place_conversion: false });
  });
});

describe('capabilities and the per-VM attributes with gmem_in_place_conversion', () => {
  it('KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES is PRIVATE (8) on /dev/kvm and VMs with private memory, 0 otherwise', async () => {
    const on = await sandbox('7.4', true);
    expect(on.checkExtension('guest_memfd_memory_attributes')).toBe(PRIVATE);
    expect((await on.createVm({ type: 'sw-protected' })).checkExtension('guest_memfd_memory_attributes')).toBe(PRIVATE);
    expect((await on.createVm({ type: 'snp' })).checkExtension('guest_memfd_memory_attributes')).toBe(PRIVATE);
    expect((await on.createVm({ type: 'default' })).checkExtension('guest_memfd_memory_attributes')).toBe(0);
    // kvm_supported_vm_mem_attributes: the VM's own attributes are off.
    expect((await on.createVm({ type: 'sw-protected' })).checkExtension('memory_attributes')).toBe(0);
    const off = await sandbox('7.4', false);
    expect(off.checkExtension('guest_memfd_memory_attributes')).toBe(0);
    const vm = await off.createVm({ type: 'sw-protected' });
    expect(vm.checkExtension('guest_memfd_memory_attributes')).toBe(0);
    expect(vm.checkExtension('memory_attributes')).toBe(PRIVATE);
    const old = await sandbox('7.0', true);
    expect(old.checkExtension('guest_memfd_memory_attributes')).toBe(0);
  });

  it('with the parameter on, KVM_SET_MEMORY_ATTRIBUTES (the VM ioctl) refuses PRIVATE with EINVAL', async () => {
    const t = await setup(1, INIT_SHARED);
    expect(thrown(() => t.vm.setMemoryAttributesSync({ address: GPA, size: PAGE_SIZE, attributes: 'private' })).code).toBe('EINVAL');
    const off = await sandbox('7.4', false);
    const vm = await off.createVm({ type: 'sw-protected' });
    vm.setMemoryAttributesSync({ address: GPA, size: PAGE_SIZE, attributes: 'private' });
  });

  it('INIT_SHARED on a confidential VM only with the parameter on (b5ed1ee2a7a0)', async () => {
    for (const [kernel, inPlace, ok] of [
      ['7.4', true, true],
      ['7.4', false, false],
      ['7.0', true, false],
    ] as const) {
      const sb = await sandbox(kernel, inPlace);
      for (const type of ['sw-protected', 'snp'] as const) {
        const vm = await sb.createVm({ type });
        const create = () => vm.createGuestMemfdSync({ size: PAGE_SIZE, flags: MMAP | INIT_SHARED });
        if (ok) create();
        else expect(thrown(create).code, `${kernel} ${inPlace} ${type}`).toBe('EINVAL');
      }
    }
  });
});

describe('SNP LAUNCH_UPDATE without a source (edcc3f42981e)', () => {
  async function snp(kernel: KernelVersionName, inPlace: boolean) {
    const sb = await sandbox(kernel, inPlace);
    const vm = await sb.createVm({ type: 'snp' });
    const flags = kernel === '7.4' && inPlace ? MMAP | INIT_SHARED : MMAP;
    const gmem = await vm.createGuestMemfd({ size: 2 * PAGE_SIZE, flags });
    await vm.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: 2 * PAGE_SIZE, guestMemfd: gmem });
    await vm.snpLaunchStart();
    return { sb, vm, gmem };
  }

  it('7.4 with the parameter on: the host writes the shared page, converts it, and LAUNCH_UPDATE measures it in place', async () => {
    const { sb, vm, gmem } = await snp('7.4', true);
    const map = gmem.mmapSync({ size: 2 * PAGE_SIZE });
    map.writeSync(0, new Uint8Array([0xc0, 0xff, 0xee]));
    map.munmapSync();
    gmem.setMemoryAttributes2Sync({ offset: 0, size: PAGE_SIZE, attributes: 'private' });
    expect(vm.snpLaunchUpdateSync({ gpa: 0, len: PAGE_SIZE, data: null })).toEqual({ pagesDone: 1 });
    // A shared gfn cannot be populated (kvm_is_private_gfn): EIO, populate EINVAL.
    const e = thrown(() => vm.snpLaunchUpdateSync({ gpa: PAGE_SIZE, len: PAGE_SIZE, data: null }));
    expect({ code: e.code, populate: e.populateError }).toEqual({ code: 'EIO', populate: 'EINVAL' });
    await vm.snpLaunchFinish();
    const v = await vm.createVcpu();
    expect(dataOf(v.readSync(0, 3))).toEqual([0xc0, 0xff, 0xee]);
    sb.closeAllFds();
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
  });

  it('a measured page converted back to shared leaves the RMP (make_shared, 6fa1dab756fd): the host writes it again', async () => {
    const { sb, vm, gmem } = await snp('7.4', true);
    const map = gmem.mmapSync({ size: 2 * PAGE_SIZE });
    map.writeSync(0, new Uint8Array([0x11]));
    gmem.setMemoryAttributes2Sync({ offset: 0, size: PAGE_SIZE, attributes: 'private' });
    vm.snpLaunchUpdateSync({ gpa: 0, len: PAGE_SIZE, data: null });
    expect(vm.rmpQuery(0)).toMatchObject({ present: true, assigned: true });
    expect(thrown(() => map.readSync(0, 1))).toBeInstanceOf(HostSignalError);
    gmem.setMemoryAttributes2Sync({ offset: 0, size: PAGE_SIZE, attributes: 'shared' });
    expect(vm.rmpQuery(0)).toMatchObject({ present: true, assigned: false });
    map.writeSync(0, new Uint8Array([0x22]));
    expect([...map.readSync(0, 1)]).toEqual([0x22]);
    expect(sb.stats().hostRmpFaults).toBe(0);
    map.munmapSync();
    sb.closeAllFds();
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
  });

  it.each([
    ['7.4', false],
    ['7.0', true],
  ] as const)('%s (gmem_in_place_conversion %s): a NULL source is EIO, populate EINVAL', async (kernel, inPlace) => {
    const { vm } = await snp(kernel, inPlace);
    const e = thrown(() => vm.snpLaunchUpdateSync({ gpa: 0, len: PAGE_SIZE, data: null }));
    expect({ code: e.code, populate: e.populateError }).toEqual({ code: 'EIO', populate: 'EINVAL' });
  });
});
