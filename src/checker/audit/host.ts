// The host page tables of guest_memfd mappings (6.18) at a quiescent point. A present PTE maps
// the folio its file holds at that index (truncate_cleanup_folio unmaps a folio before it leaves
// the page cache, memory failure before it is poisoned for good), cleared (up to date: the host
// fault and kvm_gmem_get_pfn clear a folio once, whoever meets it first), and shared: its inode
// was made INIT_SHARED (fe2bf6234e94; from 7.4 its index is shared in the inode's attributes,
// 1ae5be958ff7, which a conversion to private checks after unmapping), no RMP entry gives the page to a guest, and no VM bound
// to the inode has the PRIVATE attribute at a gfn that binds it.

import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../gmem/attributes.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED } from '../../gmem/flags.js';
import { PG_FREE, PG_HWPOISON, PG_UPTODATE } from '../../gmem/folio.js';
import { type Add, Views } from './views.js';

/** Every present host PTE; returns how many were checked. */
export function auditHostPtes(v: Views, add: Add): number {
  let checked = 0;
  v.vmas.scanPtes((map, k, ino, index, pfn) => {
    checked++;
    auditHostPte(v, add, { map, k, ino, index, pfn });
    return false;
  });
  return checked;
}

interface HostPte {
  map: number;
  k: number;
  ino: number;
  index: number;
  pfn: number;
}

/** One present host PTE. */
function auditHostPte(v: Views, add: Add, p: HostPte): void {
  const { ino, index, pfn } = p;
  const where = `the host PTE for index ${index} of guest_memfd inode ${ino} (mapping ${p.map & 255}, page ${p.k})`;
  const uaf = (detail: string): void => add({ invariant: 'useAfterFree', by: 'auditor', pfn, detail: `${where} ${detail}` });
  if (v.folios.test(pfn, PG_FREE)) return uaf(`maps pfn ${pfn}, which is on the free list`);
  if (v.folios.test(pfn, PG_HWPOISON)) return uaf(`maps pfn ${pfn}, which is hwpoisoned (memory failure unmaps it)`);
  if (!v.inodes.live(ino)) return uaf(`maps pfn ${pfn} of an inode that was evicted`);
  const cached = v.inodes.peek(ino, index);
  if (cached !== pfn)
    return uaf(
      `maps pfn ${pfn} but the file holds ${cached < 0 ? 'nothing' : `pfn ${cached}`} there (truncated without unmap_mapping_folio)`,
    );
  if (!v.folios.test(pfn, PG_UPTODATE))
    add({ invariant: 'staleData', by: 'auditor', pfn, detail: `${where} maps pfn ${pfn}, which was never cleared (not up to date)` });
  const iso = (detail: string): void => add({ invariant: 'hostIsolation', by: 'auditor', pfn, detail: `${where} ${detail}` });
  if (v.gmemAttributesKept) {
    if (v.gmemAttrs.get(ino, index) & KVM_MEMORY_ATTRIBUTE_PRIVATE) iso(`maps pfn ${pfn}, private in the inode's attributes`);
  } else if ((v.inodes.flags(ino) & GUEST_MEMFD_FLAG_INIT_SHARED) === 0)
    iso(`maps pfn ${pfn} of a file created without INIT_SHARED (private memory)`);
  if (v.rmp.assigned(pfn)) iso(`maps pfn ${pfn}, which the RMP assigns to ASID ${v.rmp.asid(pfn)}`);
  const priv = privateBinding(v, ino, index);
  if (priv !== null) iso(`maps pfn ${pfn}, which vm ${priv.vm} binds at gfn ${priv.gfn}, a private gfn`);
}

/** A VM bound to the inode whose gfn for `index` is PRIVATE, or null. */
function privateBinding(v: Views, ino: number, index: number): { vm: number; gfn: number } | null {
  const n = v.inodes.nfiles(ino);
  for (let i = 0; i < n; i++) {
    const f = v.inodes.file(ino, i);
    const b = v.files.bindingAt(f, index);
    if (b < 0) continue;
    const vm = v.files.vm(f);
    const gfn = v.files.bindingGfn(f, b, index);
    if (v.attrs.isPrivate(vm, gfn)) return { vm, gfn };
  }
  return null;
}
