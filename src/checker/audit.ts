// The auditor: checks the invariants of DESIGN.md section 7 over the whole shared state, at a
// quiescent point (every loop parked, so no lock is legitimately held) and at teardown.

import { Rmp } from '../firmware/rmp.js';
import { PfnAllocator } from '../gmem/allocator.js';
import { Files } from '../gmem/file.js';
import { Folios, PG_FREE, PG_HWPOISON } from '../gmem/folio.js';
import { Inodes } from '../gmem/inode.js';
import { MemAttributes } from '../kvm/attributes.js';
import { Memslots } from '../kvm/memslots.js';
import { KVM_MEM_GUEST_MEMFD } from '../kvm/memslots.js';
import { Sptes, spteFrame, sptePrivate } from '../kvm/spte.js';
import { describeKasan, takeKasanReports } from '../shm/slab.js';
import { Vms } from '../kvm/vm.js';
import type { Mem } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { sumStats } from '../shm/stats.js';
import { FreeSync } from '../shm/sync/free.js';
import { INVARIANTS, type Invariant, type Violation, ViolationLog } from './violations.js';

export interface AuditReport {
  violations: Violation[];
  counts: Record<Invariant, number>;
  findings: { punchHoleLeftovers: number; crossVmPrepare: number };
  checkedSptes: number;
}

class Views {
  readonly folios: Folios;
  readonly inodes: Inodes;
  readonly files: Files;
  readonly vms: Vms;
  readonly memslots: Memslots;
  readonly attrs: MemAttributes;
  readonly sptes: Sptes;
  readonly rmp: Rmp;
  readonly alloc: PfnAllocator;
  constructor(readonly mem: Mem) {
    this.folios = new Folios(mem);
    this.inodes = new Inodes(mem);
    this.files = new Files(mem);
    this.vms = new Vms(mem);
    this.memslots = new Memslots(mem);
    this.attrs = new MemAttributes(mem);
    this.sptes = new Sptes(mem);
    this.rmp = new Rmp(mem);
    this.alloc = new PfnAllocator(mem, new FreeSync(mem, 0));
  }
}

function emptyCounts(): Record<Invariant, number> {
  return Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>;
}

/** Counts every violation per invariant and keeps the first ones in full. */
function recorder(): { add: (x: Violation) => void; counts: Record<Invariant, number>; log: ViolationLog } {
  const log = new ViolationLog(50);
  const counts = emptyCounts();
  return {
    add: (x) => {
      counts[x.invariant]++;
      log.add(x);
    },
    counts,
    log,
  };
}

/** Does another VM bound to the inode behind (vm, gfn) own `pfn`'s RMP entry? */
function ownedByCoBoundVm(v: Views, ino: number, asid: number): boolean {
  const n = v.inodes.nfiles(ino);
  for (let k = 0; k < n; k++) {
    const vm = v.files.vm(v.inodes.file(ino, k));
    if (v.vms.asid(vm) === asid) return true;
  }
  return false;
}

/** Every use of a freed object a thread reported (KASAN), each once. */
function auditKasan(mem: Mem, add: (x: Violation) => void): void {
  const { count, reports } = takeKasanReports(mem);
  for (const r of reports)
    add({ invariant: 'useAfterFree', by: `thread ${r.tid}`, ...(r.owner >= 0 ? { vm: r.owner } : {}), detail: describeKasan(r) });
  for (let i = reports.length; i < count; i++)
    add({ invariant: 'useAfterFree', by: 'kasan', detail: 'a further KASAN report (not kept in full)' });
}

/**
 * Memslots and bindings agree: a published guest_memfd slot whose file is still set is bound by
 * that file over its whole range, and no binding points at a freed memslot (a dangling pointer
 * that kvm_gmem_release or an invalidation would write or read through).
 */
function auditBindings(v: Views, add: (x: Violation) => void): void {
  for (let vm = 0; vm < v.vms.maxVms; vm++) {
    if (!v.vms.live(vm)) continue;
    for (const s of v.memslots.used(vm)) {
      const m = v.memslots.info(vm, s);
      if ((m.flags & KVM_MEM_GUEST_MEMFD) === 0 || m.gmemFile < 0) continue;
      if (!v.files.valid(m.gmemFile)) {
        add({
          invariant: 'useAfterFree',
          by: 'auditor',
          vm,
          detail: `memslot ${m.id} still points at gmem file record ${m.gmemFile & 255}, which was freed`,
        });
        continue;
      }
      const first = v.files.bindingAt(m.gmemFile, m.gmemPgoff);
      const last = v.files.bindingAt(m.gmemFile, m.gmemPgoff + m.npages - 1);
      if (first < 0 || last < 0 || v.files.bindingSlot(m.gmemFile, first) !== s || v.files.bindingSlot(m.gmemFile, last) !== s) {
        add({
          invariant: 'balance',
          by: 'auditor',
          vm,
          detail: `memslot ${m.id} is not bound by its gmem file over indices ${m.gmemPgoff}..${m.gmemPgoff + m.npages - 1}`,
        });
      }
    }
  }
  // kvm_set_memory_region refuses a slot overlapping another (EEXIST): the active slots are disjoint.
  for (let vm = 0; vm < v.vms.maxVms; vm++) {
    if (!v.vms.live(vm)) continue;
    const ms = v.memslots
      .used(vm)
      .map((s) => v.memslots.info(vm, s))
      .sort((a, b) => a.baseGfn - b.baseGfn);
    for (let i = 1; i < ms.length; i++) {
      if (ms[i].baseGfn < ms[i - 1].baseGfn + ms[i - 1].npages)
        add({
          invariant: 'balance',
          by: 'auditor',
          vm,
          detail: `memslots ${ms[i - 1].id} and ${ms[i].id} of vm ${vm} overlap at gfn ${ms[i].baseGfn}`,
        });
    }
  }
  for (let id = 0; id < LIMITS.MAX_FILES; id++) {
    const f = v.files.slab.handle(id);
    if (!v.files.valid(f)) continue;
    const vm = v.files.vm(f);
    // kvm_gmem_bind refuses a range past the file's size or one already bound (EINVAL).
    const size = v.inodes.sizePages(v.files.inode(f));
    const bds = [];
    for (let k = 0; k < LIMITS.MAX_BINDINGS_PER_FILE; k++) {
      const bd = v.files.binding(f, k);
      if (bd.npages === 0) continue;
      if (bd.pgoff < 0 || bd.pgoff + bd.npages > size)
        add({
          invariant: 'balance',
          by: 'auditor',
          vm,
          detail: `a binding of gmem file ${id} covers indices ${bd.pgoff}..${bd.pgoff + bd.npages - 1}, past its ${size} pages`,
        });
      bds.push(bd);
    }
    bds.sort((a, b) => a.pgoff - b.pgoff);
    for (let i = 1; i < bds.length; i++) {
      if (bds[i].pgoff < bds[i - 1].pgoff + bds[i - 1].npages)
        add({ invariant: 'balance', by: 'auditor', vm, detail: `two bindings of gmem file ${id} overlap at index ${bds[i].pgoff}` });
    }
    for (const slot of v.files.boundSlots(f)) {
      if (!v.memslots.valid(vm, slot))
        add({
          invariant: 'useAfterFree',
          by: 'auditor',
          vm,
          detail: `a binding of gmem file ${id} points at memslot record ${slot & 255} of vm ${vm}, which was freed (a dangling pointer)`,
        });
    }
  }
}

/**
 * Balance of the free lists at a quiescent point: the zone's list and every thread's pcp list
 * together hold each free pfn exactly once and nothing else, and no pcp list is locked.
 */
function auditFreeLists(v: Views, add: (x: Violation) => void): void {
  const seen = new Uint8Array(v.folios.nrPfns);
  const check = (pfns: Int32Array, where: string): void => {
    for (const pfn of pfns) {
      if (pfn < 0 || pfn >= v.folios.nrPfns)
        add({ invariant: 'balance', by: 'auditor', detail: `${where} holds pfn ${pfn}, which does not exist` });
      else if (seen[pfn]++ !== 0)
        add({ invariant: 'balance', by: 'auditor', pfn, detail: `pfn ${pfn} is on the free lists twice (again in ${where})` });
      else if (!v.folios.test(pfn, PG_FREE))
        add({ invariant: 'balance', by: 'auditor', pfn, detail: `${where} holds pfn ${pfn}, which is in use` });
    }
  };
  check(v.alloc.freePfns(), 'the zone free list');
  for (let tid = 0; tid < LIMITS.MAX_THREADS; tid++) {
    const pcp = v.alloc.pcpList(tid);
    if (pcp.locked) add({ invariant: 'balance', by: 'auditor', detail: `the pcp list of thread ${tid} is locked at a quiescent point` });
    check(pcp.pfns, `the pcp list of thread ${tid}`);
  }
  let lost = 0;
  for (let pfn = 0; pfn < v.folios.nrPfns; pfn++) if (seen[pfn] === 0 && v.folios.test(pfn, PG_FREE)) lost++;
  if (lost > 0) add({ invariant: 'balance', by: 'auditor', detail: `${lost} free pfn(s) on no free list (lost to the allocator)` });
}

/** Full check at a quiescent point. */
export function auditQuiescent(mem: Mem): AuditReport {
  const v = new Views(mem);
  const { add, counts, log } = recorder();
  auditKasan(mem, add);
  auditBindings(v, add);
  let crossVm = 0;
  let checked = 0;
  const w = mem.w;
  for (let vm = 0; vm < v.vms.maxVms; vm++) {
    if (!v.vms.live(vm)) continue;
    const snp = v.vms.isSnp(vm);
    const asid = v.vms.asid(vm);
    if (Atomics.load(w, v.vms.inProgressWord(vm)) !== 0)
      add({ invariant: 'balance', by: 'auditor', vm, detail: 'mmu_invalidate_in_progress is not 0 at a quiescent point' });
    for (const lock of [v.vms.mmuLockWord(vm), v.vms.slotsLockWord(vm)]) {
      if (Atomics.load(w, lock) !== 0)
        add({ invariant: 'balance', by: 'auditor', vm, detail: `a lock of vm ${vm} is held at a quiescent point` });
    }
    for (let gfn = 0; gfn < v.sptes.gfnsPerVm; gfn++) {
      const spte = v.sptes.get(vm, gfn);
      if (spte === 0) continue;
      if (!sptePrivate(spte)) {
        // A conversion to private zaps the range (kvm_arch_pre_set_memory_attributes) and a
        // fault re-checks the attribute under mmu_lock: no shared SPTE outlives its attribute.
        if (v.attrs.isPrivate(vm, gfn))
          add({
            invariant: 'rmpAgreement',
            by: 'auditor',
            vm,
            gfn,
            detail: `a shared SPTE (user page ${spteFrame(spte)}) maps a gfn whose attribute is private`,
          });
        continue;
      }
      checked++;
      const pfn = spteFrame(spte);
      if (v.folios.test(pfn, PG_FREE)) {
        add({ invariant: 'useAfterFree', by: 'auditor', vm, gfn, pfn, detail: `SPTE maps pfn ${pfn}, which is on the free list` });
        continue;
      }
      // kvm_gmem_error_folio zaps a poisoned folio's mappings and kvm_gmem_get_pfn refuses it
      // (EHWPOISON): once both are done, no SPTE may map it.
      if (v.folios.test(pfn, PG_HWPOISON)) {
        add({ invariant: 'useAfterFree', by: 'auditor', vm, gfn, pfn, detail: `SPTE maps pfn ${pfn}, which is hwpoisoned` });
        continue;
      }
      if (!v.attrs.isPrivate(vm, gfn))
        add({ invariant: 'rmpAgreement', by: 'auditor', vm, gfn, pfn, detail: 'a private SPTE maps a gfn whose attribute is shared' });
      const s = v.memslots.lookup(vm, gfn);
      const file = s < 0 ? -1 : v.memslots.gmemFile(vm, s);
      if (file < 0 || !v.files.valid(file)) {
        add({ invariant: 'useAfterFree', by: 'auditor', vm, gfn, pfn, detail: 'a private SPTE survives its memslot or guest_memfd' });
        continue;
      }
      const ino = v.files.inode(file);
      const index = gfn - v.memslots.baseGfn(vm, s) + v.memslots.gmemPgoff(vm, s);
      const cached = v.inodes.peek(ino, index);
      if (cached !== pfn) {
        add({
          invariant: 'useAfterFree',
          by: 'auditor',
          vm,
          gfn,
          pfn,
          detail: `SPTE maps pfn ${pfn} but index ${index} of its guest_memfd holds ${cached < 0 ? 'nothing' : `pfn ${cached}`}`,
        });
        continue;
      }
      if (!snp) continue;
      const e = v.rmp.lookup(pfn);
      if (e.assigned && e.asid === asid && e.gfn === gfn) continue;
      // Another VM bound to the same inode owns it: the kernel's known cross-VM prepare outcome.
      if (e.assigned && e.asid !== asid && ownedByCoBoundVm(v, ino, e.asid)) {
        crossVm++;
        continue;
      }
      add({
        invariant: 'rmpAgreement',
        by: 'auditor',
        vm,
        gfn,
        pfn,
        detail: e.assigned
          ? `RMP entry of pfn ${pfn} is assigned to ASID ${e.asid} at gfn ${e.gfn}, not ASID ${asid} at gfn ${gfn}`
          : `RMP entry of pfn ${pfn} is hypervisor-owned`,
      });
    }
  }
  for (let pfn = 0; pfn < v.folios.nrPfns; pfn++) {
    if (Atomics.load(w, v.folios.lockWord(pfn)) !== 0)
      add({ invariant: 'balance', by: 'auditor', pfn, detail: `folio lock of pfn ${pfn} held at a quiescent point` });
    if (v.folios.test(pfn, PG_FREE)) {
      if (v.rmp.assigned(pfn))
        add({
          invariant: 'hostIsolation',
          by: 'auditor',
          pfn,
          detail: `free pfn ${pfn} is still assigned to ASID ${v.rmp.asid(pfn)} in the RMP`,
        });
      if (v.folios.refcount(pfn) !== 0)
        add({ invariant: 'balance', by: 'auditor', pfn, detail: `free pfn ${pfn} has refcount ${v.folios.refcount(pfn)}` });
    } else if (v.folios.inode(pfn) >= 0 && v.folios.refcount(pfn) !== 1) {
      add({
        invariant: 'balance',
        by: 'auditor',
        pfn,
        detail: `cached folio of pfn ${pfn} has refcount ${v.folios.refcount(pfn)} at a quiescent point (expected 1)`,
      });
    }
  }
  auditFreeLists(v, add);
  for (let ino = 0; ino < LIMITS.MAX_INODES; ino++) {
    if (!v.inodes.live(ino)) continue;
    if (Atomics.load(w, v.inodes.invalidateLockWord(ino)) !== 0)
      add({ invariant: 'balance', by: 'auditor', detail: `invalidate_lock of inode ${ino} held at a quiescent point` });
  }
  const stats = sumStats(mem);
  if (stats.hostRmpFaults > 0)
    add({ invariant: 'hostIsolation', by: 'auditor', detail: `the host wrote ${stats.hostRmpFaults} guest-assigned page(s) (RMP faults)` });
  if (stats.staleTlbAccesses > 0)
    add({
      invariant: 'useAfterFree',
      by: 'auditor',
      detail: `${stats.staleTlbAccesses} guest access(es) went through a TLB entry whose SPTE was zapped without a TLB flush`,
    });
  return {
    violations: log.list,
    counts,
    findings: { punchHoleLeftovers: stats.punchHoleLeftovers, crossVmPrepare: crossVm + stats['finding.crossVmPrepare'] },
    checkedSptes: checked,
  };
}

/** At teardown, after every guest_memfd was closed: everything is back where it started. */
export function auditTeardown(mem: Mem): AuditReport {
  const v = new Views(mem);
  const { add, counts, log } = recorder();
  const free = v.alloc.freeCount();
  if (free !== v.folios.nrPfns)
    add({ invariant: 'balance', by: 'auditor', detail: `${v.folios.nrPfns - free} pfn(s) not back in the allocator at teardown` });
  let notFree = 0;
  let assigned = 0;
  for (let pfn = 0; pfn < v.folios.nrPfns; pfn++) {
    if (!v.folios.test(pfn, PG_FREE) || v.folios.refcount(pfn) !== 0) notFree++;
    if (v.rmp.assigned(pfn)) assigned++;
  }
  if (notFree) add({ invariant: 'balance', by: 'auditor', detail: `${notFree} folio(s) not free with refcount 0 at teardown` });
  if (assigned)
    add({
      invariant: 'balance',
      by: 'auditor',
      detail: `${assigned} RMP entr${assigned === 1 ? 'y is' : 'ies are'} still guest-owned at teardown`,
    });
  auditKasan(mem, add);
  // Every slab is empty once every fd was closed: nothing leaked, nothing left half-released.
  const files = LIMITS.MAX_FILES - v.files.freeSlotCount();
  if (files) add({ invariant: 'balance', by: 'auditor', detail: `${files} gmem file(s) not released at teardown` });
  let inodes = 0;
  for (let ino = 0; ino < LIMITS.MAX_INODES; ino++) if (v.inodes.live(ino)) inodes++;
  if (inodes) add({ invariant: 'balance', by: 'auditor', detail: `${inodes} guest_memfd inode(s) not evicted at teardown` });
  for (let vm = 0; vm < v.vms.maxVms; vm++) {
    if (v.vms.live(vm))
      add({ invariant: 'balance', by: 'auditor', vm, detail: `vm ${vm} was not destroyed at teardown (a gmem file still pins it)` });
    const slots = v.memslots.recordsInUse(vm);
    if (slots) add({ invariant: 'balance', by: 'auditor', vm, detail: `${slots} memslot record(s) of vm ${vm} not freed at teardown` });
  }
  const stats = sumStats(mem);
  return {
    violations: log.list,
    counts,
    findings: { punchHoleLeftovers: stats.punchHoleLeftovers, crossVmPrepare: stats['finding.crossVmPrepare'] },
    checkedSptes: 0,
  };
}

/** Adds b's counts and violations into a. */
export function mergeAudit(a: AuditReport, b: AuditReport): AuditReport {
  const counts = emptyCounts();
  for (const i of INVARIANTS) counts[i] = a.counts[i] + b.counts[i];
  return {
    violations: [...a.violations, ...b.violations].slice(0, 50),
    counts,
    findings: {
      punchHoleLeftovers: Math.max(a.findings.punchHoleLeftovers, b.findings.punchHoleLeftovers),
      crossVmPrepare: Math.max(a.findings.crossVmPrepare, b.findings.crossVmPrepare),
    },
    checkedSptes: a.checkedSptes + b.checkedSptes,
  };
}
