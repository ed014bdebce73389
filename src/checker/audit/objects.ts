// Object lifetimes: uses of freed objects the slabs reported (KASAN), and memslots, bindings and
// gmem files that point at each other consistently, without dangling pointers.

import { KVM_MEM_GUEST_MEMFD } from '../../kvm/memslots.js';
import type { Mem } from '../../shm/layout.js';
import { LIMITS } from '../../shm/limits.js';
import { describeKasan, takeKasanReports } from '../../shm/slab.js';
import { type Add, Views } from './views.js';

/** Every use of a freed object a thread reported (KASAN), each once. */
export function auditKasan(mem: Mem, add: Add): void {
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
export function auditBindings(v: Views, add: Add): void {
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
