// The pfn allocator's per-thread lists, after mm/page_alloc.c's per-CPU pagesets: the first
// allocation moves a batch from the zone to the thread's list (rmqueue_pcplist -> rmqueue_bulk), a
// free goes to the freeing thread's list and a list at its high mark gives a batch back
// (free_unref_page -> free_pcppages_bulk), and an empty zone drains every thread's list before
// ENOMEM (drain_all_pages). The auditor's balance check counts the lists and names a corrupt one.

import { describe, expect, it } from 'vitest';
import { PCP_BATCH, PCP_HIGH, PfnAllocator } from '../../src/gmem/allocator.js';
import { FreeSync } from '../../src/shm/sync/free.js';
import { auditQuiescent, auditTeardown } from '../../src/checker/audit.js';
import { Sandbox, TID_CONTROLLER } from '../../src/vmm/sandbox/sandbox.js';

const PAGE = 4096;
const MiB = 1 << 20;

/** A sw-protected VM over all of a 1 MiB sandbox's 256 pages (more gpa space than memory). */
function vmOver1MiB() {
  const sb = Sandbox.createSync({ memory: MiB, gpaSpace: 2 * MiB, userMemory: 2 * MiB, gmemSpace: 2 * MiB, maxVms: 1 });
  const vm = sb.createVmSync({ type: 'sw-protected' });
  const gmem = vm.createGuestMemfdSync({ size: 2 * MiB });
  vm.setUserMemoryRegion2Sync({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: 2 * MiB, guestMemfd: gmem });
  vm.setMemoryAttributesSync({ address: 0, size: 2 * MiB, attributes: 'private' });
  const alloc = new PfnAllocator(sb.mem, new FreeSync(sb.mem, TID_CONTROLLER));
  return { sb, vm, gmem, vcpu: vm.createVcpuSync(), alloc };
}

describe('pcp lists', () => {
  it("the first fault moves a batch to the thread's list; frees go back to it; counts stay exact", () => {
    const { sb, vm, gmem, vcpu, alloc } = vmOver1MiB();
    expect(vcpu.readSync(0, 1).ok).toBe(true);
    expect(vm.backingPfn(0)).toBe(0);
    expect(alloc.freePfns().length).toBe(256 - PCP_BATCH);
    expect(alloc.pcpList(TID_CONTROLLER).pfns.length).toBe(PCP_BATCH - 1);
    expect(sb.freeHostPages()).toBe(255);
    // The next pages come from the same list, in order.
    expect(vcpu.readSync(PAGE, 1).ok).toBe(true);
    expect(vm.backingPfn(PAGE)).toBe(1);
    gmem.fallocateSync(['keep_size', 'punch_hole'], 0, 2 * PAGE);
    expect(alloc.pcpList(TID_CONTROLLER).pfns.length).toBe(PCP_BATCH);
    expect(sb.freeHostPages()).toBe(256);
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
  });

  it('a list at its high mark gives its oldest batch back to the zone', () => {
    const { sb, gmem, vcpu, alloc } = vmOver1MiB();
    for (let g = 0; g < PCP_HIGH; g++) expect(vcpu.readSync(g * PAGE, 1).ok).toBe(true);
    expect(alloc.freePfns().length).toBe(256 - PCP_HIGH);
    gmem.fallocateSync(['keep_size', 'punch_hole'], 0, PCP_HIGH * PAGE);
    // PCP_HIGH frees: the list reached the mark at the last, and spilled one batch.
    expect(alloc.pcpList(TID_CONTROLLER).pfns.length).toBe(PCP_HIGH - PCP_BATCH);
    expect(alloc.freePfns().length).toBe(256 - PCP_HIGH + PCP_BATCH);
    expect(sb.freeHostPages()).toBe(256);
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
  });

  it("an empty zone drains the other threads' lists before it reports ENOMEM: every page is reachable", () => {
    const { sb, vm, vcpu, alloc } = vmOver1MiB();
    // Another thread takes a batch and frees its one page: 32 pages wait on its list.
    const other = new PfnAllocator(sb.mem, new FreeSync(sb.mem, 9));
    const pfn = other.alloc();
    other.free(pfn);
    expect(other.pcpList(9).pfns.length).toBe(PCP_BATCH);
    for (let g = 0; g < 256; g++) expect(vcpu.readSync(g * PAGE, 1).ok, `gfn ${g}`).toBe(true);
    expect(other.pcpList(9).pfns.length).toBe(0);
    expect(vcpu.readSync(256 * PAGE, 1)).toMatchObject({ ok: false, exit: 'memory_fault', errno: 'ENOMEM' });
    expect(sb.freeHostPages()).toBe(0);
    expect(new Set(Array.from({ length: 256 }, (_, g) => vm.backingPfn(g * PAGE))).size).toBe(256);
    expect(alloc.freePfns().length).toBe(0);
  });

  it('a reserve counts the pages on every list: exactly `free - reserve` more pages can be had', () => {
    const { sb, vcpu } = vmOver1MiB();
    expect(vcpu.readSync(0, 1).ok).toBe(true);
    sb.reserveHostPages(250);
    for (let g = 1; g <= 5; g++) expect(vcpu.readSync(g * PAGE, 1).ok, `gfn ${g}`).toBe(true);
    expect(vcpu.readSync(6 * PAGE, 1)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    sb.reserveHostPages(0);
    expect(vcpu.readSync(6 * PAGE, 1).ok).toBe(true);
  });

  it('the balance audit sees a page in use on a list, one listed twice, and teardown counts the lists', async () => {
    const { sb, gmem, vcpu, alloc } = vmOver1MiB();
    expect(vcpu.readSync(0, 1).ok).toBe(true);
    const w = sb.mem.w;
    const list = alloc.pcpList(TID_CONTROLLER).pfns;
    // Corrupt the list in place: its last entry (pfn 1, the next one handed out) becomes pfn 0,
    // which is in use. The list's words follow its lock word; 1 is nowhere else in between.
    expect(list[list.length - 1]).toBe(1);
    const word = w.indexOf(1, alloc.pcpLockWord(TID_CONTROLLER));
    const saved = w[word];
    w[word] = 0;
    const bad = auditQuiescent(sb.mem).violations.map((v) => v.detail);
    expect(bad).toEqual([
      `the pcp list of thread ${TID_CONTROLLER} holds pfn 0, which is in use`,
      '1 free pfn(s) on no free list (lost to the allocator)',
    ]);
    w[word] = list[0];
    expect(auditQuiescent(sb.mem).violations.map((v) => v.detail)).toEqual([
      `pfn ${list[0]} is on the free lists twice (again in the pcp list of thread ${TID_CONTROLLER})`,
      '1 free pfn(s) on no free list (lost to the allocator)',
    ]);
    w[word] = saved;
    expect(auditQuiescent(sb.mem).violations).toEqual([]);
    gmem.fallocateSync(['keep_size', 'punch_hole'], 0, PAGE);
    await sb.close();
    expect(auditTeardown(sb.mem).violations).toEqual([]);
  });
});
