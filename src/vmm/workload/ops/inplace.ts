// The VMM's ops of 7.4's in-place conversion (gmem_in_place_conversion on): KVM_SET_MEMORY_ATTRIBUTES2
// on a guest_memfd, flipping a range to private or to shared in place, and a device's GUP pins
// taken through the VMM's mapping of a file and released by a later op (or at the end of the
// thread's ops). A pin left in place makes a conversion to private of its page answer EAGAIN with
// error_offset; a folio the LRU batch still holds makes it drain them once. And the 'punch' op's
// check on 7.4 that PUNCH_HOLE leaves the attributes alone (punchKeepsAttributes).

import { gmemIsPrivateMem } from '../../../gmem/attributes.js';
import { type Attributes2Result, gmemIoctlSetAttributes2 } from '../../../gmem/convert.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, gmemFallocate } from '../../../gmem/fallocate.js';
import { gmemPinUserPage, gmemUnpinUserPage } from '../../../gmem/gup.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../../kvm/attributes.js';
import { Errno } from '../../../shm/errno.js';
import { PAGE_SIZE } from '../../../shm/limits.js';
import { C } from '../../../shm/stats.js';
import type { Sandbox } from '../../sandbox/sandbox.js';
import type { OpContext, OpHandler } from './op.js';

/** The most pins one VMM thread holds at once (a further 'pin' releases one instead). */
const MAX_OWN_PINS = 2;

/** The VMs and gfns that bind [index, index + len) of the file at `fd`, by the layout's regions. */
function boundGfns(c: OpContext, fd: number, index: number, len: number): Array<{ vm: number; start: number; end: number }> {
  const out: Array<{ vm: number; start: number; end: number }> = [];
  for (const r of c.t.regions) {
    if (r.fd !== fd) continue;
    const a = Math.max(index, r.pgoff);
    const b = Math.min(index + len, r.pgoff + r.npages);
    if (a < b) out.push({ vm: r.vm, start: r.gfn + a - r.pgoff, end: r.gfn + b - r.pgoff });
  }
  return out;
}

/**
 * KVM_SET_MEMORY_ATTRIBUTES2 on the range of the file: to private if its first index is shared
 * now, else to shared. The guests' discard epochs of the gfns it binds are bumped around it (a
 * guest's check forgives what it saw change meanwhile). EAGAIN (a pin, a mapping, a fault in
 * flight) is an outcome: counted, and its error_offset must lie in the range.
 */
export const convert2: OpHandler = {
  range: 'file',
  run(c, { fd, index, len }) {
    const { sb, rc } = c;
    const g = sb.k.g;
    const bound = boundGfns(c, fd, index, len);
    for (const b of bound) rc.bumpEpochs(b.vm, b.start, b.end);
    const res = sb.withGmemFd(fd, (f): Attributes2Result => {
      if (f < 0) return { r: f };
      const ino = g.files.inode(f);
      const size = g.inodes.sizePages(ino);
      // The VMM's own guess of the range's state (no lock: the kernel judges).
      const toPrivate = index >= size || !gmemIsPrivateMem(g, ino, index);
      const attributes = BigInt(toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
      const a = { offset: BigInt(index * PAGE_SIZE), size: BigInt(len * PAGE_SIZE), attributes, flags: 0n, reserved: [] };
      return gmemIoctlSetAttributes2(g, f, a);
    });
    for (const b of bound) rc.bumpEpochs(b.vm, b.start, b.end);
    if (res.r === -Errno.EAGAIN) checkErrorOffset(res, index, len);
    return res.r;
  },
};

/** An EAGAIN's error_offset names a page of the range asked for (kvm_gmem_set_attributes writes the refused index back). */
function checkErrorOffset(res: Attributes2Result, index: number, len: number): void {
  const off = res.errorOffset ?? -1;
  if (off % PAGE_SIZE !== 0 || off < index * PAGE_SIZE || off >= (index + len) * PAGE_SIZE)
    throw new Error(
      `KVM_SET_MEMORY_ATTRIBUTES2 answered EAGAIN with error_offset ${off}, outside [${index * PAGE_SIZE}, ${(index + len) * PAGE_SIZE})`,
    );
}

/**
 * A device pins a page through one of the VMM's mappings (pin_user_pages, FOLL_LONGTERM), or
 * releases one it pinned before (every other time, and always once it holds MAX_OWN_PINS).
 * EFAULT (the page is private: the fault refuses it) is an outcome.
 */
export const pin: OpHandler = {
  range: 'file',
  run(c) {
    const g = c.sb.k.g;
    if (c.pins.length >= MAX_OWN_PINS || (c.pins.length > 0 && c.rng.below(2) === 0)) {
      const [h] = c.pins.splice(c.rng.below(c.pins.length), 1);
      g.stats[C.gupUnpins]++;
      return gmemUnpinUserPage(g, h);
    }
    const maps = [...c.t.hostMaps, ...c.maps];
    if (maps.length === 0) return null;
    const m = maps[c.rng.below(maps.length)];
    const h = gmemPinUserPage(g, m.handle, c.rng.below(m.npages) * PAGE_SIZE);
    if (h < 0) return h;
    c.pins.push(h);
    g.stats[C.gupPins]++;
    return 0;
  },
};

/** The pins this thread still holds are released (the device lets go at the end of its ops). */
export function unpinAll(c: OpContext): void {
  for (const h of c.pins.splice(0)) {
    c.sb.k.g.stats[C.gupUnpins]++;
    gmemUnpinUserPage(c.sb.k.g, h);
  }
}

/**
 * PUNCH_HOLE of `len` pages at `index` of the file at `fd`, on a kernel that keeps attributes per
 * index (7.4, 1ae5be958ff7: kvm_gmem_punch_hole frees folios, never the maple tree's entries):
 * the range's attributes read before and after, with the stores' sequence count, so that a
 * change no conversion made is counted (attributesLostOnPunch, which the auditor reports).
 */
export function punchKeepsAttributes(sb: Sandbox, fd: number, index: number, len: number): number {
  const g = sb.k.g;
  return sb.withGmemFd(fd, (f) => {
    if (f < 0) return f;
    const ino = g.files.inode(f);
    const end = Math.min(index + len, g.inodes.sizePages(ino));
    const read = (): number[] => Array.from({ length: Math.max(0, end - index) }, (_, i) => g.attrs.get(ino, index + i));
    const seq = g.attrs.seq();
    const before = read();
    const r = gmemFallocate(g, f, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, index * PAGE_SIZE, len * PAGE_SIZE);
    const after = read();
    if ((seq & 1) === 0 && g.attrs.seq() === seq && after.some((a, i) => a !== before[i])) g.stats[C.attributesLostOnPunch]++;
    return r;
  });
}
