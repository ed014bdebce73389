// The mutation catalogue: small, realistic mistakes in the kernel model (src/gmem, src/kvm,
// src/firmware), each a text patch on one file. `find` must occur exactly once in the file as it
// is checked out (`node scripts/mutants/run.mjs --check` says which ones no longer apply after a
// change); `replace` is what a careless edit would leave there. `kind` sorts them:
//   lock        a lock or unlock dropped, or taken in the wrong place
//   order       two statements swapped around a lock or a publish
//   recheck     a re-check after a lock or a lookup dropped
//   publish     a store moved after the step that publishes it
//   range       an off-by-one in a range or a size check
//   errno       a wrong error code
//   invalidate  an invalidation, zap, TLB flush or RMP change skipped
//   refcount    a reference put missing or doubled
//   condition   a condition inverted
// None of them is a planted bug (src/gmem/bugs.ts): those are compiled in, these are not.

export const MUTANTS = [
  // ---- src/gmem/filemap.ts ----
  {
    id: 'grab-no-recheck-after-lock',
    kind: 'recheck',
    file: 'src/gmem/filemap.ts',
    what: 'filemap_grab_folio returns the folio it locked without checking it is still at the index',
    find: `      folioLockGotten(g, pfn);
      if (Atomics.load(w, slot) === v && g.folios.inode(pfn) === ino) return pfn;
      folioUnlock(g, pfn);
      folioPut(g, pfn);
      continue;`,
    replace: `      folioLockGotten(g, pfn);
      return pfn;`,
  },
  {
    id: 'lock-folio-no-recheck',
    kind: 'recheck',
    file: 'src/gmem/filemap.ts',
    what: 'filemap_lock_folio (truncate, memory failure) does not check the folio it locked is still cached there',
    find: `    folioLockGotten(g, pfn);
    if (Atomics.load(w, slot) === v && g.folios.inode(pfn) === ino) return pfn;
    folioUnlock(g, pfn);
    folioPut(g, pfn);
  }`,
    replace: `    folioLockGotten(g, pfn);
    return pfn;
  }`,
  },
  {
    id: 'truncate-missing-cache-put',
    kind: 'refcount',
    file: 'src/gmem/filemap.ts',
    what: "truncate drops its lookup reference but not the page cache's: every punched folio leaks",
    find: `    folioPut(g, pfn); // the page cache's reference
`,
    replace: ``,
  },
  {
    id: 'truncate-skips-detach',
    kind: 'publish',
    file: 'src/gmem/filemap.ts',
    what: 'truncate clears the filemap slot but leaves folio->mapping set',
    find: `    g.inodes.filemapDelete(ino, index);
    g.folios.detach(pfn);`,
    replace: `    g.inodes.filemapDelete(ino, index);`,
  },
  {
    id: 'truncate-unlock-before-delete',
    kind: 'order',
    file: 'src/gmem/filemap.ts',
    what: 'truncate unlocks the folio before taking it out of the page cache',
    find: `    if ((g.bugs & Bug['truncate-skips-host-unmap']) === 0) unmapHostPtes(g, pfn, ino, index);
    g.inodes.filemapDelete(ino, index);
    g.folios.detach(pfn);`,
    replace: `    if ((g.bugs & Bug['truncate-skips-host-unmap']) === 0) unmapHostPtes(g, pfn, ino, index);
    folioUnlock(g, pfn);
    g.inodes.filemapDelete(ino, index);
    g.folios.detach(pfn);`,
    // The later unlock goes: the folio is unlocked once, early.
    also: [{ find: `    g.stats[C.foliosFreed]++;\n    folioUnlock(g, pfn);\n`, replace: `    g.stats[C.foliosFreed]++;\n` }],
  },
  {
    id: 'grab-lost-race-leaks-ref',
    kind: 'refcount',
    file: 'src/gmem/filemap.ts',
    what: 'a folio that lost the race to enter the page cache is put once, not twice: it leaks',
    find: `    g.folios.detach(pfn);
    folioUnlock(g, pfn);
    folioPut(g, pfn);
    folioPut(g, pfn);
  }`,
    replace: `    g.folios.detach(pfn);
    folioUnlock(g, pfn);
    folioPut(g, pfn);
  }`,
  },
  // ---- src/gmem/fallocate.ts ----
  {
    id: 'punch-no-invalidate-lock',
    kind: 'lock',
    file: 'src/gmem/fallocate.ts',
    what: 'PUNCH_HOLE runs without filemap_invalidate_lock',
    find: `  g.sync.downWrite(lock, LockClass.INVALIDATE);
  const per = boundRanges(g, ino, start, end);`,
    replace: `  const per = boundRanges(g, ino, start, end);`,
    also: [{ find: `  g.sync.upWrite(lock);\n  g.stats[C.punchHoles]++;`, replace: `  g.stats[C.punchHoles]++;` }],
  },
  {
    id: 'punch-end-off-by-one',
    kind: 'range',
    file: 'src/gmem/fallocate.ts',
    what: 'PUNCH_HOLE computes its last index inclusively and leaves the last page of the range',
    find: `  const end = Math.min((offset + len) >> PAGE_SHIFT, size);`,
    replace: `  const end = Math.min(((offset + len) >> PAGE_SHIFT) - 1, size);`,
  },
  {
    id: 'allocate-size-off-by-one',
    kind: 'range',
    file: 'src/gmem/fallocate.ts',
    what: 'fallocate accepts a range that ends one page past the end of the file',
    find: `  if (offset + len > size) return -Errno.EINVAL;`,
    replace: `  if (offset + len > size + PAGE_SIZE) return -Errno.EINVAL;`,
  },
  {
    id: 'allocate-enomem-leaks-lock',
    kind: 'lock',
    file: 'src/gmem/fallocate.ts',
    what: 'fallocate returns ENOMEM without releasing the invalidate lock',
    find: `    if (pfn < 0) {
      r = pfn;
      break;
    }
    g.sync.point(P['fallocate.after_grab']);`,
    replace: `    if (pfn < 0) return pfn;
    g.sync.point(P['fallocate.after_grab']);`,
  },
  {
    id: 'allocate-wrong-errno',
    kind: 'errno',
    file: 'src/gmem/fallocate.ts',
    what: 'fallocate refuses a range past the end of the file with ENOSPC instead of EINVAL',
    find: `  if (offset + len > size) return -Errno.EINVAL;`,
    replace: `  if (offset + len > size) return -Errno.ENOSPC;`,
  },
  // ---- src/gmem/get_pfn.ts ----
  {
    id: 'get-folio-no-hwpoison-check',
    kind: 'recheck',
    file: 'src/gmem/get_pfn.ts',
    what: '__kvm_gmem_get_pfn hands out a hardware-poisoned folio',
    find: `  if (g.folios.test(pfn, PG_HWPOISON)) {
    folioUnlock(g, pfn);
    folioPut(g, pfn);
    return -Errno.EHWPOISON;
  }`,
    replace: ``,
  },
  {
    id: 'get-folio-no-file-recheck',
    kind: 'recheck',
    file: 'src/gmem/get_pfn.ts',
    what: '__kvm_gmem_get_pfn does not check that slot->gmem.file is still the file it pinned',
    find: `  if (Atomics.load(g.mem.w, fileWord) - 1 !== file) return -Errno.EFAULT;
`,
    replace: ``,
  },
  {
    id: 'get-pfn-error-leaks-ref',
    kind: 'refcount',
    file: 'src/gmem/get_pfn.ts',
    what: 'a failed prepare returns without dropping the folio reference',
    find: `  if (r < 0) {
    folioPut(g, pfn);
    return r;
  }
  return pfn;`,
    replace: `  if (r < 0) return r;
  return pfn;`,
  },
  // ---- src/gmem/guest_memfd.ts ----
  {
    id: 'unbind-no-invalidate-lock',
    kind: 'lock',
    file: 'src/gmem/guest_memfd.ts',
    what: 'kvm_gmem_unbind removes the binding without filemap_invalidate_lock',
    find: `  const lock = g.inodes.invalidateLockWord(g.files.inode(file));
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  g.files.removeBinding(file, slot);
  g.kvm.detachSlot(vm, slot, Site['kvm_gmem_unbind: slot']);
  g.sync.upWrite(lock);`,
    replace: `  g.files.removeBinding(file, slot);
  g.kvm.detachSlot(vm, slot, Site['kvm_gmem_unbind: slot']);`,
  },
  {
    id: 'bind-overlap-off-by-one',
    kind: 'range',
    file: 'src/gmem/guest_memfd.ts',
    what: "kvm_gmem_bind's overlap check misses a binding that starts at the last index",
    find: `    if (g.files.anyBound(file, start, start + npages)) return`,
    replace: `    if (g.files.anyBound(file, start, start + npages - 1)) return`,
  },
  {
    id: 'bind-size-off-by-one',
    kind: 'range',
    file: 'src/gmem/guest_memfd.ts',
    what: 'kvm_gmem_bind accepts a binding one page past the end of the file',
    find: `offset + npages * PAGE_SIZE > size) return -Errno.EINVAL;`,
    replace: `offset + (npages - 1) * PAGE_SIZE > size) return -Errno.EINVAL;`,
  },
  {
    id: 'release-skips-invalidate',
    kind: 'invalidate',
    file: 'src/gmem/guest_memfd.ts',
    what: "kvm_gmem_release detaches the memslots but does not zap the file's mappings",
    find: `  invalidateBegin(g, per, allGfnsFilter(g, ino));
  invalidateEnd(g, per);
  const left = withTableLock(g, () => {`,
    replace: `  const left = withTableLock(g, () => {`,
  },
  {
    id: 'unbind-double-fput',
    kind: 'refcount',
    file: 'src/gmem/guest_memfd.ts',
    what: 'kvm_gmem_unbind drops its file reference twice',
    find: `  unbindLocked(g, vm, slot, file);
  gmemFput(g, file);
}`,
    replace: `  unbindLocked(g, vm, slot, file);
  gmemFput(g, file);
  gmemFput(g, file);
}`,
  },
  {
    id: 'error-folio-skips-zap',
    kind: 'invalidate',
    file: 'src/gmem/guest_memfd.ts',
    what: 'memory failure poisons the folio but leaves its mappings in place',
    find: `  const per = boundRanges(g, ino, index, index + 1);
  invalidateBegin(g, per, allGfnsFilter(g, ino));
  invalidateEnd(g, per);
  g.sync.upRead(lock);`,
    replace: `  g.sync.upRead(lock);`,
  },
  {
    id: 'release-skips-slot-detach',
    kind: 'publish',
    file: 'src/gmem/guest_memfd.ts',
    what: 'kvm_gmem_release frees the file without clearing slot->gmem.file in its bound memslots',
    find: `  for (const slot of g.files.boundSlots(file)) g.kvm.detachSlot(vm, slot, Site['kvm_gmem_release: WRITE_ONCE(slot->gmem.file, NULL)']);
`,
    replace: ``,
  },
  // ---- src/gmem/populate.ts ----
  {
    id: 'populate-failed-marks-uptodate',
    kind: 'condition',
    file: 'src/gmem/populate.ts',
    what: 'kvm_gmem_populate marks the folio up to date even when the arch callback failed',
    find: `  if (ret === 0) {
    g.folios.set(pfn, PG_UPTODATE);`,
    replace: `  if (ret <= 0) {
    g.folios.set(pfn, PG_UPTODATE);`,
  },
  {
    id: 'populate-error-leaks-lock',
    kind: 'order',
    file: 'src/gmem/populate.ts',
    what: 'per-page populate (7.0) tests for an error before it releases the invalidate lock',
    find: `    ret = populateOne(g, vm, file, s, startGfn + i, i, c);
    g.sync.upWrite(lock);
    if (ret < 0) break;`,
    replace: `    ret = populateOne(g, vm, file, s, startGfn + i, i, c);
    if (ret < 0) break;
    g.sync.upWrite(lock);`,
  },
  {
    id: 'populate-no-private-check',
    kind: 'recheck',
    file: 'src/gmem/populate.ts',
    what: 'kvm_gmem_populate does not refuse a gfn whose attributes are shared',
    find: `  if (g.version.populatePrivateOnly && !c.isPrivate(gfn)) {
    folioPut(g, pfn);
    return -Errno.EINVAL;
  }
`,
    replace: ``,
  },
  // ---- src/gmem/inode.ts, src/gmem/file.ts ----
  {
    id: 'get-file-active-no-reread',
    kind: 'recheck',
    file: 'src/gmem/file.ts',
    what: 'get_file_active does not re-read slot->gmem.file after taking the reference',
    find: `      if (Atomics.load(this.w, word) - 1 === h) return h;
      this.put(h);`,
    replace: `      return h;`,
  },
  {
    id: 'file-tryget-no-revalidate',
    kind: 'recheck',
    file: 'src/gmem/file.ts',
    what: 'a file reference taken on a record freed and reused meanwhile is kept',
    find: `        if (this.slab.valid(f)) return true;
        Atomics.sub(this.w, i, 1);
        return false;`,
    replace: `        return true;`,
  },
  // ---- src/gmem/allocator.ts ----
  {
    id: 'refill-top-after-unlock',
    kind: 'publish',
    file: 'src/gmem/allocator.ts',
    what: "a pcp refill stores the zone's new top after releasing the zone lock",
    find: `    this.setTop(top - n);
    this.sync.mutexUnlock(this.base + A_LOCK);`,
    replace: `    this.sync.mutexUnlock(this.base + A_LOCK);
    this.setTop(top - n);`,
  },
  {
    id: 'alloc-zone-no-lock',
    kind: 'lock',
    file: 'src/gmem/allocator.ts',
    what: '__rmqueue takes a page from the zone without the zone lock',
    find: `  private allocZone(reserve = 0): number {
    const w = this.w;
    this.sync.mutexLock(this.base + A_LOCK, LockClass.ZONE);`,
    replace: `  private allocZone(reserve = 0): number {
    const w = this.w;`,
    also: [
      {
        find: `      this.setTop(top - 1);
    }
    this.sync.mutexUnlock(this.base + A_LOCK);`,
        replace: `      this.setTop(top - 1);
    }`,
      },
    ],
  },
  // ---- src/kvm/mmu.ts ----
  {
    id: 'fault-first-check-dropped',
    kind: 'recheck',
    file: 'src/kvm/mmu.ts',
    what: 'the fault skips its first mmu_invalidate_retry_gfn_unsafe (a redundant check: the later ones cover it)',
    find: `  if (invalidateRetryGfn(k, vm, seq, gfn)) return retryWhen(k.vms.seqWord(vm), seq);
`,
    replace: ``,
  },
  {
    id: 'retry-gfn-range-off-by-one',
    kind: 'range',
    file: 'src/kvm/mmu.ts',
    what: 'mmu_invalidate_retry_gfn misses the first gfn of the range in progress',
    find: `    if (gfn >= start && gfn < Atomics.load(w, k.vms.rangeEndWord(vm))) return true;`,
    replace: `    if (gfn > start && gfn < Atomics.load(w, k.vms.rangeEndWord(vm))) return true;`,
  },
  {
    id: 'zap-gfn-range-skips-flush',
    kind: 'invalidate',
    file: 'src/kvm/mmu.ts',
    what: 'kvm_zap_gfn_range (memslot delete and move) zaps without flushing the TLBs',
    find: `      k.stats[C.tlbFlushWaits] += k.vcpus.flushRemoteTlbs(k.sync, vm);
    }
  } finally {
    k.sync.writeUnlock(lock);`,
    replace: `    }
  } finally {
    k.sync.writeUnlock(lock);`,
  },
  {
    id: 'prefault-ignores-signal',
    kind: 'condition',
    file: 'src/kvm/mmu.ts',
    what: 'kvm_tdp_map_page retries without checking for a pending signal',
    find: `      if (k.sync.signalPending()) return -Errno.EINTR;
      const r = kvmMmuDoPageFault(k, v, gfn, isPrivate, true, false);`,
    replace: `      const r = kvmMmuDoPageFault(k, v, gfn, isPrivate, true, false);`,
  },
  // ---- src/kvm/vm.ts ----
  {
    id: 'invalidate-end-count-before-seq',
    kind: 'publish',
    file: 'src/kvm/vm.ts',
    what: 'kvm_mmu_invalidate_end drops mmu_invalidate_in_progress before it moves mmu_invalidate_seq',
    find: `    Atomics.add(this.w, b + V_MMU_SEQ, 1);
    return Atomics.sub(this.w, b + V_MMU_IN_PROGRESS, 1) - 1;`,
    replace: `    const left = Atomics.sub(this.w, b + V_MMU_IN_PROGRESS, 1) - 1;
    Atomics.add(this.w, b + V_MMU_SEQ, 1);
    return left;`,
  },
  {
    id: 'range-add-end-off-by-one',
    kind: 'range',
    file: 'src/kvm/vm.ts',
    what: 'kvm_mmu_invalidate_range_add records a range one gfn short',
    find: `      Atomics.store(this.w, b + V_RANGE_START, start);
      Atomics.store(this.w, b + V_RANGE_END, end);`,
    replace: `      Atomics.store(this.w, b + V_RANGE_START, start);
      Atomics.store(this.w, b + V_RANGE_END, end - 1);`,
  },
  // ---- src/kvm/kvm_main.ts ----
  {
    id: 'set-memslot-skips-zap',
    kind: 'invalidate',
    file: 'src/kvm/kvm_main.ts',
    what: 'kvm_set_memslot deletes or moves a slot without kvm_arch_flush_shadow_memslot',
    find: `    zapGfnRange(k, vm, o.baseGfn, o.baseGfn + o.npages);
`,
    replace: ``,
  },
  {
    id: 'move-memslot-skips-zap',
    kind: 'invalidate',
    file: 'src/kvm/kvm_main.ts',
    what: 'kvm_set_memslot zaps the old range of a deleted slot but not of a moved one',
    find: `    zapGfnRange(k, vm, o.baseGfn, o.baseGfn + o.npages);
`,
    replace: `    if (change === MemslotChange.DELETE) zapGfnRange(k, vm, o.baseGfn, o.baseGfn + o.npages);
`,
  },
  {
    id: 'memslot-overlap-off-by-one',
    kind: 'range',
    file: 'src/kvm/kvm_main.ts',
    what: 'a new memslot may overlap the last gfn of another',
    find: `  if (k.memslots.overlaps(vm, -1, baseGfn, baseGfn + npages)) return -Errno.EEXIST;`,
    replace: `  if (k.memslots.overlaps(vm, -1, baseGfn, baseGfn + npages - 1)) return -Errno.EEXIST;`,
  },
  {
    id: 'set-attributes-skips-invalidate',
    kind: 'invalidate',
    file: 'src/kvm/kvm_main.ts',
    what: 'KVM_SET_MEMORY_ATTRIBUTES changes the attributes without zapping the mappings',
    find: `    if (ranges.length > 0) invalidateBegin(k, vm, ranges);
    k.sync.point(P['set_attributes.after_invalidate_begin']);
    k.attrs.set(vm, start, end, attributes);
    if (ranges.length > 0) invalidateEnd(k, vm);`,
    replace: `    k.sync.point(P['set_attributes.after_invalidate_begin']);
    k.attrs.set(vm, start, end, attributes);`,
  },
  {
    id: 'set-attributes-before-invalidate',
    kind: 'order',
    file: 'src/kvm/kvm_main.ts',
    what: 'KVM_SET_MEMORY_ATTRIBUTES stores the new attributes before the invalidation begins',
    find: `    if (ranges.length > 0) invalidateBegin(k, vm, ranges);
    k.sync.point(P['set_attributes.after_invalidate_begin']);
    k.attrs.set(vm, start, end, attributes);`,
    replace: `    k.attrs.set(vm, start, end, attributes);
    if (ranges.length > 0) invalidateBegin(k, vm, ranges);
    k.sync.point(P['set_attributes.after_invalidate_begin']);`,
  },
  {
    id: 'free-memslot-skips-unbind',
    kind: 'invalidate',
    file: 'src/kvm/kvm_main.ts',
    what: 'kvm_free_memslot frees a guest_memfd slot without kvm_gmem_unbind',
    find: `  if (k.memslots.flags(vm, s) & KVM_MEM_GUEST_MEMFD) gmemUnbind(k.g, vm, s, k.memslots.gmemFileWord(vm, s));
`,
    replace: ``,
  },
  {
    id: 'prefault-wrong-errno',
    kind: 'errno',
    file: 'src/kvm/kvm_main.ts',
    what: 'KVM_PRE_FAULT_MEMORY on a gfn with no memslot answers EFAULT instead of ENOENT',
    find: `  if (r === RET_PF_EMULATE) return -Errno.ENOENT;`,
    replace: `  if (r === RET_PF_EMULATE) return -Errno.EFAULT;`,
  },
  // ---- src/kvm/memslots.ts, src/kvm/spte.ts, src/kvm/vcpu.ts, src/kvm/fdtable.ts ----
  {
    id: 'memslot-index-off-by-one',
    kind: 'range',
    file: 'src/kvm/memslots.ts',
    what: "kvm_replace_memslot's gfn index gives a new slot one gfn past its end",
    find: `      for (let g = b; g < e; g++) Atomics.store(this.w, idx + g, next + 1);`,
    replace: `      for (let g = b; g <= e && g < this.gfnsPerVm; g++) Atomics.store(this.w, idx + g, next + 1);`,
  },
  {
    id: 'zap-range-off-by-one',
    kind: 'range',
    file: 'src/kvm/spte.ts',
    what: 'the SPTE zap of a range stops one gfn short',
    find: `    for (let g = Math.max(0, start); g < hi; g++) {`,
    replace: `    for (let g = Math.max(0, start); g < hi - 1; g++) {`,
  },
  {
    id: 'enter-guest-checks-requests-first',
    kind: 'publish',
    file: 'src/kvm/vcpu.ts',
    what: 'vcpu_enter_guest checks requests before it stores IN_GUEST_MODE, so a flush can miss it',
    find: `  enterGuest(): void {
    this.sync.sharedWrite(this.region, this.b);
    Atomics.store(this.w, this.b + VC_MODE, IN_GUEST_MODE);
    this.inGuest = true;
    // A flush asked while outside guest mode did not wait for us: honour it before any access
    // (vcpu_enter_guest checks requests after setting the mode, as here).
    this.checkRequests();
  }`,
    replace: `  enterGuest(): void {
    this.checkRequests();
    this.sync.sharedWrite(this.region, this.b);
    Atomics.store(this.w, this.b + VC_MODE, IN_GUEST_MODE);
    this.inGuest = true;
  }`,
  },
  {
    id: 'fget-no-recheck',
    kind: 'recheck',
    file: 'src/kvm/fdtable.ts',
    what: '__fget_files_rcu keeps a reference without re-reading the fd entry',
    find: `      if (Atomics.load(this.w, this.word(fd)) === e) return ent.value;
      kvmGmemClose(k, ent.value);`,
    replace: `      return ent.value;`,
  },
  // ---- src/kvm/sev.ts ----
  {
    id: 'sev-invalidate-inverted',
    kind: 'condition',
    file: 'src/kvm/sev.ts',
    what: 'sev_gmem_invalidate returns early for an assigned page instead of a shared one',
    find: `    this.k.stats[C.archInvalidateCalls]++;
    if (!this.psp.rmpAssigned(pfn)) return;
    this.k.stats[C.rmpUpdates]++;
    this.psp.rmpMakeShared(pfn);`,
    replace: `    this.k.stats[C.archInvalidateCalls]++;
    if (this.psp.rmpAssigned(pfn)) return;
    this.k.stats[C.rmpUpdates]++;
    this.psp.rmpMakeShared(pfn);`,
  },
  {
    id: 'sev-prepare-reassigns',
    kind: 'recheck',
    file: 'src/kvm/sev.ts',
    what: 'sev_gmem_prepare does not skip a page that is already assigned, and RMPUPDATEs it again',
    find: `    if (this.psp.rmpAssigned(pfn)) return 0;
    this.k.stats[C.rmpUpdates]++;`,
    replace: `    this.k.stats[C.rmpUpdates]++;`,
  },
  {
    id: 'launch-update-fail-no-reclaim',
    kind: 'invalidate',
    file: 'src/kvm/sev.ts',
    what: 'a failed LAUNCH_UPDATE leaves its page guest-owned (no snp_page_reclaim)',
    find: `      fw.error = ret;
      psp.rmpMakeShared(pfn, true);`,
    replace: `      fw.error = ret;`,
  },
  // ---- src/firmware ----
  {
    id: 'rmpupdate-no-overlap-retry',
    kind: 'condition',
    file: 'src/firmware/host-rmp.ts',
    what: 'rmpupdate() treats FAIL_OVERLAP as a hard failure instead of retrying',
    find: `      if (ret !== RmpupdateRet.FAIL_OVERLAP) return -Errno.EFAULT;`,
    replace: `      return -Errno.EFAULT;`,
  },
  {
    id: 'pvalidate-skips-owner-check',
    kind: 'recheck',
    file: 'src/firmware/rmp.ts',
    what: "PVALIDATE does not check that the entry is the guest's page at that gfn",
    find: `      if ((cur & OWNER_BITS) !== encode(RMP_ASSIGNED, asid, gfn)) return -1;
      if ((cur & RMP_IMMUTABLE) !== 0) return PvalidateRet.FAIL_INPUT;`,
    replace: `      if ((cur & RMP_IMMUTABLE) !== 0) return PvalidateRet.FAIL_INPUT;`,
  },
  {
    id: 'launch-update-no-state-check',
    kind: 'recheck',
    file: 'src/firmware/snp.ts',
    what: 'LAUNCH_UPDATE measures a page of a guest that is not in the LAUNCH state',
    find: `    if (Atomics.load(this.w, g + G_STATE) !== GuestState.LAUNCH) return SevRet.INVALID_GUEST_STATE;
    const e = this.rmp.lookup(pfn);`,
    replace: `    const e = this.rmp.lookup(pfn);`,
  },
];
