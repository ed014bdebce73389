// The checker's invariants of guest_memfd host mappings (6.18), each kept by the kernel and each
// shown breaking, with exact counts, on a planted bug or a test hook: no host PTE maps a freed
// page, a page its file no longer holds (truncate_cleanup_folio -> unmap_mapping_folio), or a
// private one (RMP-assigned, or at a PRIVATE gfn; fe2bf6234e94); a folio is cleared once, by
// kvm_gmem_fault_user_mapping or kvm_gmem_get_pfn, whichever meets it first, before either uses
// it, and neither sees another tenant's data; a default VM's guest (a GMEM_ONLY memslot's shared
// fault, f029f04ddbec) and the host see the same folio. The host's reads are the stress and
// explore 'touch' op's (src/vmm/workload/ops/host.ts), on this thread.

import { describe, expect, it } from 'vitest';
import { HOST_PATTERN, type KernelVersionName, PAGE_SIZE, Sandbox } from '../../src/index.js';
import { auditQuiescent } from '../../src/checker/audit.js';
import { onlineChecker, takeOnlineReports } from '../../src/checker/online.js';
import type { Invariant } from '../../src/checker/violations.js';
import { type BugName, bugMask, setBugs } from '../../src/gmem/bugs.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../src/gmem/flags.js';
import { PG_FREE, PG_UPTODATE } from '../../src/gmem/folio.js';
import { gmemSharedFrame, makeSpte } from '../../src/kvm/spte.js';
import { Prng } from '../../src/shm/prng.js';
import { RunControl } from '../../src/vcpu-workers/runctl.js';
import { TAG_MAGIC } from '../../src/vcpu-workers/guest-workload.js';
import type { StressTarget } from '../../src/vmm/workload/layout.js';
import { touchPage } from '../../src/vmm/workload/ops/host.js';
import type { OpContext } from '../../src/vmm/workload/ops/op.js';
import { dataOf } from '../helpers/helpers.js';

const GFN = 16;
const PAGES = 4;

/**
 * A default VM of 6.18 whose memslot binds an MMAP | INIT_SHARED guest_memfd at gfn 16 (GMEM_ONLY),
 * the file mapped whole, and the 'touch' op's context over it, with `bugs` planted.
 */
async function setup(bugs: BugName[] = [], kernel: KernelVersionName = '6.18') {
  const base = await Sandbox.create({ kernel, memory: '4MiB', gpaSpace: '32MiB', userMemory: '8MiB', gmemSpace: '32MiB' });
  setBugs(base.mem, bugMask(bugs));
  // A context reads the planted bugs when it is made: this thread joins again to see them.
  const sb = Sandbox.attach(base.descriptor, 5, { platform: 'direct' });
  const vm = await sb.createVm({ type: 'default' });
  const gmem = await vm.createGuestMemfd({ size: PAGES * PAGE_SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  await vm.setUserMemoryRegion2({
    slot: 1,
    flags: ['guest_memfd'],
    guestPhysAddr: GFN * PAGE_SIZE,
    memorySize: PAGES * PAGE_SIZE,
    guestMemfd: gmem,
  });
  const vcpu = await vm.createVcpu();
  const map = gmem.mmapSync({ size: PAGES * PAGE_SIZE });
  const m = { handle: map.handle, pgoff: 0, npages: PAGES, regions: [0] };
  const t: StressTarget = {
    regions: [{ vm: vm.id, slot: 1, gfn: GFN, npages: PAGES, pgoff: 0, userPage: 0, file: gmem.file, fd: gmem.fd, filePages: PAGES }],
    pages: PAGES,
    vms: [vm.id],
    prefaultVcpus: [],
    populateVm: -1,
    linked: false,
    gmemFlags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
    hostMaps: [m],
    thread: 0,
    threads: 1,
  };
  const c: OpContext = {
    sb,
    rc: new RunControl(sb.mem),
    t,
    rng: new Prng(1),
    signalTids: [],
    starved: false,
    maps: [],
    hostWrites: new Map(),
    pins: [],
  };
  const online = onlineChecker(sb.k);
  /** The online checker at a scheduling point now, and what it reported. */
  const onlineNow = () => {
    online();
    return takeOnlineReports(sb.mem);
  };
  return { sb, vm, gmem, vcpu, map, m, c, onlineNow };
}

/** The audit's counts, only those above 0. */
function broken(sb: Sandbox): Partial<Record<Invariant, number>> {
  return Object.fromEntries(Object.entries(auditQuiescent(sb.mem).counts).filter(([, n]) => n > 0));
}

/** A guest's tag, as the stress and explore guests write it: magic, gfn, vCPU, generation. */
function guestTag(gfn: number): Uint8Array {
  return new Uint8Array(new Uint32Array([TAG_MAGIC, gfn, 0, 1]).buffer);
}

describe('no host PTE maps a freed page, a page the file no longer holds, or a private page', () => {
  it('PUNCH_HOLE unmaps the host PTE before the folio goes: both paths then see the new zeroed folio, and both checkers are clean', async () => {
    const { sb, gmem, vcpu, map, onlineNow } = await setup();
    map.writeSync(0, new Uint8Array([1, 2, 3, 4]));
    await gmem.fallocate(['keep_size', 'punch_hole'], 0, PAGE_SIZE);
    expect(onlineNow()).toEqual([]);
    expect(broken(sb)).toEqual({});
    expect([...map.readSync(0, 4)]).toEqual([0, 0, 0, 0]);
    expect(dataOf(await vcpu.read(GFN * PAGE_SIZE, 4))).toEqual([0, 0, 0, 0]);
    expect(sb.stats().hostPtesZapped).toBe(1);
  });

  it('truncate-skips-host-unmap: the PTE keeps the old page; reported once online and once by the audit (useAfterFree), and the guest and the host disagree', async () => {
    const { sb, gmem, vcpu, map, onlineNow } = await setup(['truncate-skips-host-unmap']);
    map.writeSync(0, new Uint8Array([1, 2, 3, 4]));
    const old = gmem.folioAt(0)!.pfn;
    await gmem.fallocate(['keep_size', 'punch_hole'], 0, PAGE_SIZE);
    const reports = onlineNow();
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ invariant: 'useAfterFree', pfn: old });
    expect(reports[0].detail).toMatch(
      new RegExp(
        `^at a scheduling point, the host PTE for index 0 of guest_memfd inode \\d+ maps pfn ${old}, which the file no longer holds there$`,
      ),
    );
    const audit = auditQuiescent(sb.mem);
    expect(broken(sb)).toEqual({ useAfterFree: 1 });
    expect(audit.violations[0].detail).toMatch(/maps pfn \d+ but the file holds nothing there \(truncated without unmap_mapping_folio\)$/);
    // The guest faults a new folio; the host still reads and writes the old page.
    expect(dataOf(await vcpu.read(GFN * PAGE_SIZE, 4))).toEqual([0, 0, 0, 0]);
    expect([...map.readSync(0, 4)]).toEqual([1, 2, 3, 4]);
    expect((await vcpu.write(GFN * PAGE_SIZE, new Uint8Array([9]))).ok).toBe(true);
    expect(map.readSync(0, 1)[0]).toBe(1);
    expect(gmem.folioAt(0)!.pfn).not.toBe(old);
    // munmap drops the PTE's reference, the last one: the old page is freed, and all is clean again.
    await map.munmap();
    expect(sb.k.g.folios.test(old, PG_FREE)).toBe(true);
    expect(broken(sb)).toEqual({});
  });

  it('a host PTE of a free page (a test hook): useAfterFree once online, once in the audit, which also finds the mapped folio a reference short', async () => {
    const { sb, gmem, map, onlineNow } = await setup();
    map.readSync(PAGE_SIZE, 1);
    const word = sb.k.g.vmas.pteWord(map.handle, 1);
    const mapped = gmem.folioAt(PAGE_SIZE)!.pfn;
    let free = 0;
    while (!sb.k.g.folios.test(free, PG_FREE)) free++;
    Atomics.store(sb.mem.w, word, free + 1);
    const reports = onlineNow();
    expect(reports.map((r) => [r.invariant, r.pfn])).toEqual([['useAfterFree', free]]);
    expect(reports[0].detail).toMatch(/which is on the free list$/);
    expect(broken(sb)).toEqual({ useAfterFree: 1, balance: 1 });
    Atomics.store(sb.mem.w, word, mapped + 1);
    expect(broken(sb)).toEqual({});
  });

  it('a host PTE of a page an SNP VM linked to the inode faulted in at a private gfn: hostIsolation twice in the audit (the RMP, the attribute), once online', async () => {
    const { sb, gmem, map, onlineNow } = await setup();
    // Reachable only through link (an experiment's uAPI): no kernel gives an INIT_SHARED file to a VM with private memory.
    const snp = await sb.createVm({ type: 'snp' });
    const linked = await snp.linkGuestMemfd(gmem);
    await snp.setUserMemoryRegion2({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: PAGE_SIZE, guestMemfd: linked });
    await snp.setMemoryAttributes({ address: 0, size: PAGE_SIZE, attributes: 'private' });
    await snp.snpLaunchStart();
    await snp.snpLaunchFinish();
    // The SNP fault first: from 6.11 to 6.19 up to date also means prepared, so a folio the host
    // fault cleared first would never be assigned.
    await (await snp.createVcpu()).preFaultMemory({ gpa: 0, size: PAGE_SIZE });
    expect(onlineNow()).toEqual([]);
    // A read: only the host's writes to an assigned page fault in the RMP.
    map.readSync(0, 2);
    const reports = onlineNow();
    expect(reports.map((r) => r.invariant)).toEqual(['hostIsolation']);
    expect(reports[0].detail).toMatch(/which the RMP assigns to a guest$/);
    const audit = auditQuiescent(sb.mem);
    expect(broken(sb)).toEqual({ hostIsolation: 2 });
    expect(audit.violations.map((v) => v.detail.replace(/^.*maps pfn \d+, /, ''))).toEqual([
      `which the RMP assigns to ASID ${snp.asid}`,
      `which vm ${snp.id} binds at gfn 0, a private gfn`,
    ]);
  });
});

describe('a folio is cleared once, by whichever path meets it first, and neither path sees another tenant’s data', () => {
  it('the guest first, then the host: one clear; the host reads the guest’s tag and its own back, nothing stale or lost', async () => {
    const { sb, vcpu, m, c } = await setup();
    const clears = sb.stats().clears;
    expect((await vcpu.write(GFN * PAGE_SIZE, guestTag(GFN))).ok).toBe(true);
    expect(touchPage(c, m, 0, false)).toBe(0);
    expect(touchPage(c, m, 0, true)).toBe(0);
    expect(touchPage(c, m, 0, false)).toBe(0);
    // The host first on another page, then the guest: still one clear each.
    expect(touchPage(c, m, 1, true)).toBe(0);
    expect(dataOf(await vcpu.read((GFN + 1) * PAGE_SIZE, 4))).toEqual([0, 0, 0, 0]);
    const s = sb.stats();
    expect([s.clears - clears, s.hostStaleReads, s.hostLostWrites, s.hostFaults]).toEqual([2, 0, 0, 2]);
    expect(broken(sb)).toEqual({});
  });

  it('host-fault-skips-clear: the host reads the free pattern; one stale read, one staleData in the audit; the guest then reads it too', async () => {
    const { sb, vcpu, map, m, c } = await setup(['host-fault-skips-clear']);
    expect(touchPage(c, m, 2, false)).toBe(0);
    expect(sb.stats().hostStaleReads).toBe(1);
    const audit = auditQuiescent(sb.mem);
    expect(broken(sb)).toEqual({ staleData: 1 });
    expect(audit.violations[0].detail).toBe('1 host read(s) through a guest_memfd mapping saw bytes nobody wrote at that index');
    expect(map.readSync(2 * PAGE_SIZE, 2)).toEqual(new Uint8Array([HOST_PATTERN, HOST_PATTERN]));
    // kvm_gmem_get_pfn finds the folio up to date and does not clear it either.
    expect(dataOf(await vcpu.read((GFN + 2) * PAGE_SIZE, 2))).toEqual([HOST_PATTERN, HOST_PATTERN]);
  });

  it('a folio cleared again after the host wrote it (a test hook) loses the write: one lost read, one dataLost; after a discard the zeros are no loss', async () => {
    const { sb, vm, gmem, m, c } = await setup();
    expect(touchPage(c, m, 1, true)).toBe(0);
    sb.mem.fillPage(gmem.folioAt(PAGE_SIZE)!.pfn, 0);
    expect(touchPage(c, m, 1, false)).toBe(0);
    expect(sb.stats().hostLostWrites).toBe(1);
    expect(broken(sb)).toEqual({ dataLost: 1 });
    // A PUNCH_HOLE as the workload's punch makes it, the guests' epochs moved around it.
    expect(touchPage(c, m, 3, true)).toBe(0);
    c.rc.bumpEpochs(vm.id, GFN + 3, GFN + 4);
    await gmem.fallocate(['keep_size', 'punch_hole'], 3 * PAGE_SIZE, PAGE_SIZE);
    c.rc.bumpEpochs(vm.id, GFN + 3, GFN + 4);
    expect(touchPage(c, m, 3, false)).toBe(0);
    expect(sb.stats().hostLostWrites).toBe(1);
  });

  it('a folio the guest and the host both map but not up to date (a test hook): staleData twice in the audit (the SPTE, the PTE), once online', async () => {
    const { sb, gmem, vcpu, map, onlineNow } = await setup();
    expect((await vcpu.write((GFN + 3) * PAGE_SIZE, new Uint8Array([5]))).ok).toBe(true);
    expect(map.readSync(3 * PAGE_SIZE, 1)[0]).toBe(5);
    sb.k.g.folios.clear(gmem.folioAt(3 * PAGE_SIZE)!.pfn, PG_UPTODATE);
    const reports = onlineNow();
    expect(reports.map((r) => r.invariant)).toEqual(['staleData']);
    expect(reports[0].detail).toMatch(/which was never cleared \(not up to date\)$/);
    expect(broken(sb)).toEqual({ staleData: 2 });
  });
});

describe('a default VM’s guest and the host see the same folio through a GMEM_ONLY memslot', () => {
  it('each sees the other’s bytes; a shared SPTE that maps another page than the file holds (a test hook) is useAfterFree once', async () => {
    const { sb, vm, gmem, vcpu, map } = await setup();
    expect((await vcpu.write(GFN * PAGE_SIZE + 8, new Uint8Array([7, 8]))).ok).toBe(true);
    map.writeSync(PAGE_SIZE + 8, new Uint8Array([9, 10]));
    expect([...map.readSync(8, 2)]).toEqual([7, 8]);
    expect(dataOf(await vcpu.read((GFN + 1) * PAGE_SIZE + 8, 2))).toEqual([9, 10]);
    expect(broken(sb)).toEqual({});
    const other = gmem.folioAt(PAGE_SIZE)!.pfn;
    sb.k.sptes.set(vm.id, GFN, makeSpte(gmemSharedFrame(other), false));
    const audit = auditQuiescent(sb.mem);
    expect(broken(sb)).toEqual({ useAfterFree: 1 });
    expect(audit.violations[0]).toMatchObject({ vm: vm.id, gfn: GFN, pfn: other });
    expect(audit.violations[0].detail).toBe(
      `a shared SPTE maps pfn ${other} but index 0 of its guest_memfd holds pfn ${gmem.folioAt(0)!.pfn}`,
    );
  });
});
