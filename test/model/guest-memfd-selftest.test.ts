// tools/testing/selftests/kvm/guest_memfd_test.c as 6.18 has it (the rc2 rework, 21d602ed616a to
// 505f5224b197), ported: for every VM type, test_guest_memfd_flags against
// KVM_CAP_GUEST_MEMFD_FLAGS, then __test_guest_memfd with flags 0, MMAP and MMAP | INIT_SHARED as
// the capability offers them; and test_guest_memfd_guest, a default VM's guest and the host
// sharing a page through a GMEM_ONLY memslot. The selftest checks only that read, write, pread,
// pwrite and the refused mmaps fail; here each asserts the kernel's errno. Kernel: kvm_gmem_create,
// kvm_gmem_get_supported_flags, kvm_gmem_mmap, kvm_gmem_fault_user_mapping, kvm_gmem_fallocate,
// kvm_mmu_faultin_pfn_gmem. Not ported: st_blksize and st_ino (the model's fstat has the size
// only), and 6.19's NUMA tests and 7.0's MADV_COLLAPSE test (no NUMA nodes, no madvise).

import { describe, expect, it } from 'vitest';
import { type GuestMemfd, HostSignalError, type KernelVersionName, PAGE_SIZE, Sandbox, type Vm, VM_TYPES } from '../../src/index.js';
import { dataOf, thrown } from '../helpers/helpers.js';

const GUEST_MEMFD_FLAG_MMAP = 1;
const GUEST_MEMFD_FLAG_INIT_SHARED = 2;
const KEEP_SIZE = 0x01;
const PUNCH_HOLE = 0x02;
const page = PAGE_SIZE;
const total = page * 4;

function sandbox(kernel: KernelVersionName): Promise<Sandbox> {
  return Sandbox.create({ kernel, memory: '4MiB', gpaSpace: '2GiB', userMemory: '1MiB', gmemSpace: '64MiB', maxVms: 4 });
}

/** TEST_EXPECT_SIGBUS(fn) */
function expectSigbus(fn: () => unknown): void {
  let e: unknown = null;
  try {
    fn();
  } catch (err) {
    e = err;
  }
  expect(e).toBeInstanceOf(HostSignalError);
  expect((e as HostSignalError).signal).toBe('SIGBUS');
}

function test_file_read_write(g: GuestMemfd): void {
  expect(thrown(() => g.read()).code).toBe('EINVAL');
  expect(thrown(() => g.write()).code).toBe('EINVAL');
  expect(thrown(() => g.pread(0)).code).toBe('ESPIPE');
  expect(thrown(() => g.pwrite(0)).code).toBe('ESPIPE');
}

function test_mmap_cow(g: GuestMemfd, size: number): void {
  expect(thrown(() => g.mmapSync({ size, shared: false })).code).toBe('EINVAL');
}

function test_mmap_supported(g: GuestMemfd, size: number): void {
  const mem = g.mmapSync({ size });
  mem.writeSync(0, new Uint8Array(size).fill(0xaa));
  expect(mem.readSync(0, size).every((b) => b === 0xaa)).toBe(true);
  g.fallocateSync(KEEP_SIZE | PUNCH_HOLE, 0, page);
  const after = mem.readSync(0, size);
  expect(after.subarray(0, page).every((b) => b === 0x00)).toBe(true);
  expect(after.subarray(page).every((b) => b === 0xaa)).toBe(true);
  mem.writeSync(0, new Uint8Array(page).fill(0xaa));
  expect(mem.readSync(0, size).every((b) => b === 0xaa)).toBe(true);
  mem.munmapSync();
}

function test_fault_sigbus(g: GuestMemfd, accessible: number, mapSize: number): void {
  const mem = g.mmapSync({ size: mapSize });
  expectSigbus(() => mem.writeSync(0, new Uint8Array(mapSize).fill(0xaa)));
  expectSigbus(() => mem.readSync(accessible, 1));
  if (accessible > 0) expect(mem.readSync(0, accessible).every((b) => b === 0xaa)).toBe(true);
  mem.munmapSync();
}

function test_fault_overflow(g: GuestMemfd, size: number): void {
  test_fault_sigbus(g, size, size * 4);
}

function test_fault_private(g: GuestMemfd, size: number): void {
  test_fault_sigbus(g, 0, size);
}

function test_mmap_not_supported(g: GuestMemfd, size: number): void {
  expect(thrown(() => g.mmapSync({ size: page })).code).toBe('ENODEV');
  expect(thrown(() => g.mmapSync({ size })).code).toBe('ENODEV');
}

function test_file_size(g: GuestMemfd, size: number): void {
  expect(g.fstat().size).toBe(size);
}

function test_fallocate(g: GuestMemfd, size: number): void {
  g.fallocateSync(KEEP_SIZE, 0, size);
  expect(thrown(() => g.fallocateSync(KEEP_SIZE | PUNCH_HOLE, page - 1, page)).code).toBe('EINVAL');
  expect(thrown(() => g.fallocateSync(KEEP_SIZE, size, page)).code).toBe('EINVAL');
  expect(thrown(() => g.fallocateSync(KEEP_SIZE, size + page, page)).code).toBe('EINVAL');
  g.fallocateSync(KEEP_SIZE | PUNCH_HOLE, size, page);
  g.fallocateSync(KEEP_SIZE | PUNCH_HOLE, size + page, page);
  expect(thrown(() => g.fallocateSync(KEEP_SIZE | PUNCH_HOLE, page, page - 1)).code).toBe('EINVAL');
  g.fallocateSync(KEEP_SIZE | PUNCH_HOLE, page, page);
  g.fallocateSync(KEEP_SIZE, page, page);
}

function test_invalid_punch_hole(g: GuestMemfd): void {
  const cases: Array<[number, number]> = [
    [0, 1],
    [0, page - 1],
    [0, page + 1],
    [1, 1],
    [1, page - 1],
    [1, page],
    [1, page + 1],
    [page, 1],
    [page, page - 1],
    [page, page + 1],
  ];
  for (const [offset, len] of cases) {
    expect(thrown(() => g.fallocateSync(KEEP_SIZE | PUNCH_HOLE, offset, len)).code, `offset ${offset} len ${len}`).toBe('EINVAL');
  }
}

function test_create_guest_memfd_invalid_sizes(vm: Vm, flags: number): void {
  for (let size = 1; size < page; size++) {
    expect(thrown(() => vm.createGuestMemfdSync({ size, flags })).code, `size ${size}`).toBe('EINVAL');
  }
}

async function test_create_guest_memfd_multiple(vm: Vm): Promise<void> {
  const fd1 = vm.createGuestMemfdSync({ size: page });
  expect(fd1.fstat().size).toBe(page);
  const fd2 = vm.createGuestMemfdSync({ size: page * 2 });
  expect(fd2.fstat().size).toBe(page * 2);
  expect(fd1.fstat().size).toBe(page);
  // Different inodes (st_ino): the model's inode ids.
  const g = vm.sb.k.g;
  expect(g.files.inode(fd1.file)).not.toBe(g.files.inode(fd2.file));
  await fd2.close();
  await fd1.close();
}

async function test_guest_memfd_flags(vm: Vm): Promise<void> {
  const valid = BigInt(vm.checkExtension('guest_memfd_flags'));
  for (let bit = 0n; bit < 64n; bit++) {
    const flag = 1n << bit;
    if (flag & valid) {
      await (await vm.createGuestMemfd({ size: page, flags: flag })).close();
    } else {
      expect(thrown(() => vm.createGuestMemfdSync({ size: page, flags: flag })).code, `flag 0x${flag.toString(16)}`).toBe('EINVAL');
    }
  }
}

/** gmem_test(__test, __vm, __flags): a fresh file of page_size * 4 per test, closed after it. */
async function gmemTest(vm: Vm, flags: number, test: (g: GuestMemfd, size: number) => void): Promise<void> {
  const g = vm.createGuestMemfdSync({ size: total, flags });
  test(g, total);
  await g.close();
}

/** __test_guest_memfd; returns the tests run, by name, for the driver's checks. */
async function __test_guest_memfd(vm: Vm, flags: number): Promise<string[]> {
  const ran: string[] = [];
  const run = async (name: string, t: (g: GuestMemfd, size: number) => void): Promise<void> => {
    ran.push(name);
    await gmemTest(vm, flags, t);
  };
  await test_create_guest_memfd_multiple(vm);
  test_create_guest_memfd_invalid_sizes(vm, flags);
  await run('file_read_write', test_file_read_write);
  if (flags & GUEST_MEMFD_FLAG_MMAP) {
    if (flags & GUEST_MEMFD_FLAG_INIT_SHARED) {
      await run('mmap_supported', test_mmap_supported);
      await run('fault_overflow', test_fault_overflow);
    } else {
      await run('fault_private', test_fault_private);
    }
    await run('mmap_cow', test_mmap_cow);
  } else {
    await run('mmap_not_supported', test_mmap_not_supported);
  }
  await run('file_size', test_file_size);
  await run('fallocate', test_fallocate);
  await run('invalid_punch_hole', test_invalid_punch_hole);
  return ran;
}

/** test_guest_memfd(vm_type): the flag sets it ran, and each one's tests. */
async function test_guest_memfd(sb: Sandbox, type: (typeof VM_TYPES)[number]): Promise<Record<number, string[]>> {
  const vm = await sb.createVm({ type });
  await test_guest_memfd_flags(vm);
  const runs: Record<number, string[]> = { 0: await __test_guest_memfd(vm, 0) };
  const flags = vm.checkExtension('guest_memfd_flags');
  if (flags & GUEST_MEMFD_FLAG_MMAP) runs[GUEST_MEMFD_FLAG_MMAP] = await __test_guest_memfd(vm, GUEST_MEMFD_FLAG_MMAP);
  // MMAP should always be supported if INIT_SHARED is supported.
  if (flags & GUEST_MEMFD_FLAG_INIT_SHARED) {
    const both = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
    runs[both] = await __test_guest_memfd(vm, both);
  }
  return runs;
}

const COMMON = ['file_read_write', 'file_size', 'fallocate', 'invalid_punch_hole'];

describe.each(['6.18', '6.19', '7.0'] as const)('guest_memfd_test on %s', (kernel) => {
  it.each(VM_TYPES.map((t) => [t] as const))('test_guest_memfd(%s)', async (type) => {
    const sb = await sandbox(kernel);
    const runs = await test_guest_memfd(sb, type);
    // Which passes ran follows the VM type's KVM_CAP_GUEST_MEMFD_FLAGS (MMAP | INIT_SHARED without private memory).
    const expected: Record<number, string[]> = {
      0: [...COMMON.slice(0, 1), 'mmap_not_supported', ...COMMON.slice(1)],
      1: [...COMMON.slice(0, 1), 'fault_private', 'mmap_cow', ...COMMON.slice(1)],
    };
    if (type === 'default') expected[3] = [...COMMON.slice(0, 1), 'mmap_supported', 'fault_overflow', 'mmap_cow', ...COMMON.slice(1)];
    expect(runs).toEqual(expected);
    // Every file closed and every folio freed: the pool is whole again.
    expect(sb.freeHostPages()).toBe(1024);
  });

  it("test_guest_memfd_guest: a default VM's guest reads the host's 0xaa through a GMEM_ONLY slot and writes 0xff the host then reads", async () => {
    const sb = await sandbox(kernel);
    expect(sb.checkExtension('guest_memfd_flags')).not.toBe(0);
    const gpa = 1 << 30;
    const slot = 1;
    const vm = await sb.createVm({ type: 'default' });
    const vcpu = await vm.createVcpu();
    expect(vm.checkExtension('guest_memfd_flags') & GUEST_MEMFD_FLAG_MMAP).toBe(GUEST_MEMFD_FLAG_MMAP);
    expect(vm.checkExtension('guest_memfd_flags') & GUEST_MEMFD_FLAG_INIT_SHARED).toBe(GUEST_MEMFD_FLAG_INIT_SHARED);
    const size = page;
    const fd = await vm.createGuestMemfd({ size, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    await vm.setUserMemoryRegion2({ slot, flags: ['guest_memfd'], guestPhysAddr: gpa, memorySize: size, userspaceAddr: 0, guestMemfd: fd });
    let mem = await fd.mmap({ size });
    await mem.write(0, new Uint8Array(size).fill(0xaa));
    await mem.munmap();
    // guest_code: every byte is 0xaa, then memset 0xff.
    expect(dataOf(await vcpu.read(gpa, size))).toEqual(new Array<number>(size).fill(0xaa));
    expect((await vcpu.write(gpa, new Uint8Array(size).fill(0xff))).ok).toBe(true);
    mem = await fd.mmap({ size });
    expect([...(await mem.read(0, size))]).toEqual(new Array<number>(size).fill(0xff));
    await fd.close();
    // The selftest leaves this mapping to process exit: it holds the file, so the page stays until it goes.
    expect(sb.freeHostPages()).toBe(1023);
    await mem.munmap();
    expect(sb.freeHostPages()).toBe(1024);
  });
});
