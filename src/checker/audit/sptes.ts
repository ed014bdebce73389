// The MMU's state at a quiescent point: no invalidation in progress, no VM lock held, and every
// present SPTE maps what it may: a shared one only a shared gfn; a private one a live folio of
// its memslot's guest_memfd at that index, assigned in the RMP to the VM's ASID at that gfn (SNP).

import { PG_FREE, PG_HWPOISON, PG_UPTODATE } from '../../gmem/folio.js';
import { KVM_MEMSLOT_GMEM_ONLY } from '../../kvm/memslots.js';
import { GMEM_SHARED_FRAME, spteFrame, sptePrivate } from '../../kvm/spte.js';
import { type Add, Views } from './views.js';

/** Does another VM bound to the inode behind (vm, gfn) own `pfn`'s RMP entry? */
function ownedByCoBoundVm(v: Views, ino: number, asid: number): boolean {
  const n = v.inodes.nfiles(ino);
  for (let k = 0; k < n; k++) {
    const vm = v.files.vm(v.inodes.file(ino, k));
    if (v.vms.asid(vm) === asid) return true;
  }
  return false;
}

/** What the SPTE walk counted: private SPTEs checked, and pages another VM on the inode owns. */
export interface SpteTally {
  checked: number;
  crossVm: number;
}

/** Every live VM's MMU state and SPTEs. */
export function auditVms(v: Views, add: Add): SpteTally {
  const tally: SpteTally = { checked: 0, crossVm: 0 };
  const w = v.mem.w;
  for (let vm = 0; vm < v.vms.maxVms; vm++) {
    if (!v.vms.live(vm)) continue;
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
        if (v.isPrivate(vm, gfn))
          add({
            invariant: 'rmpAgreement',
            by: 'auditor',
            vm,
            gfn,
            detail: `a shared SPTE (user page ${spteFrame(spte)}) maps a gfn whose attribute is private`,
          });
        if (spteFrame(spte) >= GMEM_SHARED_FRAME) auditGmemSharedSpte(v, vm, gfn, spteFrame(spte) - GMEM_SHARED_FRAME, add);
        else auditUserSpte(v, vm, gfn, spteFrame(spte), add);
        continue;
      }
      tally.checked++;
      if (auditPrivateSpte(v, vm, gfn, spteFrame(spte), add)) tally.crossVm++;
    }
  }
  return tally;
}

/**
 * A shared SPTE on the VMM's memory: the page its memslot's userspace mapping gives that gfn.
 * kvm_set_memslot zaps a deleted or moved slot's range (kvm_arch_flush_shadow_memslot) before
 * it returns, so at a quiescent point no such SPTE outlives its slot or its place.
 */
function auditUserSpte(v: Views, vm: number, gfn: number, page: number, add: Add): void {
  const s = v.memslots.lookup(vm, gfn);
  // A GMEM_ONLY slot's shared gfns come from its file: what a flags change left is judged elsewhere.
  if (s >= 0 && (v.memslots.flags(vm, s) & KVM_MEMSLOT_GMEM_ONLY) !== 0) return;
  const want = s < 0 ? -1 : v.memslots.userPage(vm, s) + gfn - v.memslots.baseGfn(vm, s);
  if (want === page) return;
  add({
    invariant: 'useAfterFree',
    by: 'auditor',
    vm,
    gfn,
    detail:
      s < 0
        ? `a shared SPTE (user page ${page}) survives its memslot: no slot holds gfn ${gfn}`
        : `a shared SPTE maps user page ${page}, but gfn ${gfn}'s memslot maps user page ${want} (a moved slot not zapped)`,
  });
}

/** One present private SPTE; true when the page is another co-bound VM's (a counted finding). */
function auditPrivateSpte(v: Views, vm: number, gfn: number, pfn: number, add: Add): boolean {
  if (v.folios.test(pfn, PG_FREE)) {
    add({ invariant: 'useAfterFree', by: 'auditor', vm, gfn, pfn, detail: `SPTE maps pfn ${pfn}, which is on the free list` });
    return false;
  }
  // kvm_gmem_error_folio zaps a poisoned folio's mappings and kvm_gmem_get_pfn refuses it
  // (EHWPOISON): once both are done, no SPTE may map it.
  if (v.folios.test(pfn, PG_HWPOISON)) {
    add({ invariant: 'useAfterFree', by: 'auditor', vm, gfn, pfn, detail: `SPTE maps pfn ${pfn}, which is hwpoisoned` });
    return false;
  }
  if (!v.isPrivate(vm, gfn))
    add({ invariant: 'rmpAgreement', by: 'auditor', vm, gfn, pfn, detail: 'a private SPTE maps a gfn whose attribute is shared' });
  const s = v.memslots.lookup(vm, gfn);
  const file = s < 0 ? -1 : v.memslots.gmemFile(vm, s);
  if (file < 0 || !v.files.valid(file)) {
    add({ invariant: 'useAfterFree', by: 'auditor', vm, gfn, pfn, detail: 'a private SPTE survives its memslot or guest_memfd' });
    return false;
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
    return false;
  }
  return auditRmpEntry(v, vm, gfn, pfn, ino, add);
}

/**
 * A GMEM_ONLY slot's shared SPTE (f029f04ddbec): the folio the file holds at the slot's index,
 * cleared before the guest got it, as the host's PTE for that index maps the same one.
 */
function auditGmemSharedSpte(v: Views, vm: number, gfn: number, pfn: number, add: Add): void {
  const uaf = (detail: string): void => add({ invariant: 'useAfterFree', by: 'auditor', vm, gfn, pfn, detail });
  if (v.folios.test(pfn, PG_FREE)) return uaf(`a shared SPTE maps guest_memfd pfn ${pfn}, which is on the free list`);
  if (v.folios.test(pfn, PG_HWPOISON)) return uaf(`a shared SPTE maps guest_memfd pfn ${pfn}, which is hwpoisoned`);
  const s = v.memslots.lookup(vm, gfn);
  const file = s < 0 ? -1 : v.memslots.gmemFile(vm, s);
  if (file < 0 || !v.files.valid(file)) return uaf('a shared guest_memfd SPTE survives its memslot or guest_memfd');
  const index = gfn - v.memslots.baseGfn(vm, s) + v.memslots.gmemPgoff(vm, s);
  const cached = v.inodes.peek(v.files.inode(file), index);
  if (cached !== pfn)
    return uaf(`a shared SPTE maps pfn ${pfn} but index ${index} of its guest_memfd holds ${cached < 0 ? 'nothing' : `pfn ${cached}`}`);
  if (!v.folios.test(pfn, PG_UPTODATE))
    add({
      invariant: 'staleData',
      by: 'auditor',
      vm,
      gfn,
      pfn,
      detail: `a shared SPTE maps guest_memfd pfn ${pfn}, which was never cleared`,
    });
}

/** SNP: the RMP entry behind a private SPTE; true when another co-bound VM owns it (a finding). */
function auditRmpEntry(v: Views, vm: number, gfn: number, pfn: number, ino: number, add: Add): boolean {
  if (!v.vms.isSnp(vm)) return false;
  const asid = v.vms.asid(vm);
  const e = v.rmp.lookup(pfn);
  if (e.assigned && e.asid === asid && e.gfn === gfn) return false;
  // Another VM bound to the same inode owns it: the kernel's known cross-VM prepare outcome.
  if (e.assigned && e.asid !== asid && ownedByCoBoundVm(v, ino, e.asid)) return true;
  add({
    invariant: 'rmpAgreement',
    by: 'auditor',
    vm,
    gfn,
    pfn,
    detail: e.assigned
      ? `RMP entry of pfn ${pfn} is assigned to ASID ${e.asid} at gfn ${e.gfn}, not ASID ${asid} at gfn ${gfn}`
      : `RMP entry of pfn ${pfn} is hypervisor-owned${v.rmp.reclaimed(pfn) ? ': snp_page_reclaim made it shared after the firmware refused its LAUNCH_UPDATE' : ''}`,
  });
  return false;
}
