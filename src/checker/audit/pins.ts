// 7.4's in-place conversion at a quiescent point (and, through pinnedPrivate, at every scheduling
// point of a controlled run): no page the file holds at a private index is pinned. A conversion to
// private unmaps the host's PTEs and then refuses (EAGAIN) a folio with a reference beyond the
// page cache's (kvm_gmem_has_outstanding_references, dcde2f853ff4), and a GUP pin is one taken
// through a PTE before the conversion; after it, the fault refuses the private index. So a pin
// that survives a conversion to private of its page is one that no kernel can leave.

import { GmemAttributes, KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../gmem/attributes_table.js';
import type { Folios } from '../../gmem/folio.js';
import { GupPins } from '../../gmem/pin_table.js';
import type { Inodes } from '../../gmem/inode.js';
import type { Mem } from '../../shm/layout.js';
import type { Add, Views } from './views.js';

/** A pinned folio the file still holds at an index now private. */
export interface PinnedPrivate {
  pfn: number;
  ino: number;
  index: number;
}

/** The views the check reads (the auditor's Views, or the online checker's own). */
export interface PinViews {
  mem: Mem;
  folios: Folios;
  inodes: Inodes;
  gmemAttrs: GmemAttributes;
}

/** The first pin held on a page its file holds at a private index, or null (7.4 only: per-inode attributes). */
export function pinnedPrivate(v: PinViews, pins: GupPins): PinnedPrivate | null {
  for (const h of pins.live()) {
    const pfn = pins.pfnOf(h);
    if (pfn < 0) continue;
    const ino = v.folios.inode(pfn);
    const index = v.folios.index(pfn);
    if (ino < 0 || !v.inodes.live(ino) || v.inodes.peek(ino, index) !== pfn) continue;
    if (v.gmemAttrs.get(ino, index) & KVM_MEMORY_ATTRIBUTE_PRIVATE) return { pfn, ino, index };
  }
  return null;
}

/** The text of a report of `p`. */
export function pinnedPrivateDetail(p: PinnedPrivate): string {
  return `pfn ${p.pfn}, index ${p.index} of guest_memfd inode ${p.ino}, is private yet pinned (GUP): a conversion to private succeeded while a reference taken before it survived (kvm_gmem_has_outstanding_references)`;
}

/** Every GUP pin held at a quiescent point, on a kernel that keeps per-inode attributes. */
export function auditPins(v: Views, add: Add): void {
  if (!v.gmemAttributesKept) return;
  const p = pinnedPrivate(v, new GupPins(v.mem));
  if (p !== null) add({ invariant: 'hostIsolation', by: 'auditor', pfn: p.pfn, detail: pinnedPrivateDetail(p) });
}
