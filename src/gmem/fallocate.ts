// fs/open.c vfs_fallocate and virt/kvm/guest_memfd.c kvm_gmem_fallocate: allocate and PUNCH_HOLE.
// Functions return 0 / a value, or -errno, as the kernel does; nothing here throws for a user error.

import { Errno } from '../shm/errno.js';
import { PAGE_SHIFT, PAGE_SIZE, isPageAligned } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { C } from '../shm/stats.js';
import { LockClass } from '../shm/sync/classes.js';
import type { GmemCtx } from './ctx.js';
import { Bug } from './bugs.js';
import { PG_PUNCH_RACE } from './folio.js';
import { filemapGrabFolio, folioPut, folioUnlock, truncateRange } from './filemap.js';
import { Policy } from './policy.js';
import { allGfnsFilter, boundRanges, invalidateBegin, invalidateEnd } from './invalidate.js';
import { prepareFolioAllVms } from './prepare.js';
import { pfnOf } from '../shm/frames.js';

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_NO_HIDE_STALE = 0x04;
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const FALLOC_FL_INSERT_RANGE = 0x20;
export const FALLOC_FL_UNSHARE_RANGE = 0x40;
/** fallocate(2) mode bits by name, for the library and scenarios. */
export const FALLOC_MODE_NAMES = {
  keep_size: FALLOC_FL_KEEP_SIZE,
  punch_hole: FALLOC_FL_PUNCH_HOLE,
  no_hide_stale: FALLOC_FL_NO_HIDE_STALE,
  collapse_range: FALLOC_FL_COLLAPSE_RANGE,
  zero_range: FALLOC_FL_ZERO_RANGE,
  insert_range: FALLOC_FL_INSERT_RANGE,
  unshare_range: FALLOC_FL_UNSHARE_RANGE,
} as const;
export type FallocModeName = keyof typeof FALLOC_MODE_NAMES;
/** FALLOC_FL_SUPPORTED_MASK (include/linux/falloc.h, 6.11): NO_HIDE_STALE is not in it. */
const FALLOC_FL_SUPPORTED_MASK =
  FALLOC_FL_KEEP_SIZE |
  FALLOC_FL_PUNCH_HOLE |
  FALLOC_FL_COLLAPSE_RANGE |
  FALLOC_FL_ZERO_RANGE |
  FALLOC_FL_INSERT_RANGE |
  FALLOC_FL_UNSHARE_RANGE;

// vfs_fallocate (fs/open.c, 6.11): the VFS's checks, in its order, before the file's own.
function vfsFallocateChecks611(mode: number): number {
  if (mode & ~FALLOC_FL_SUPPORTED_MASK) return -Errno.EOPNOTSUPP;
  // Punch hole and zero range are mutually exclusive; punch hole must have keep size set.
  if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) === (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) return -Errno.EOPNOTSUPP;
  if (mode & FALLOC_FL_PUNCH_HOLE && !(mode & FALLOC_FL_KEEP_SIZE)) return -Errno.EOPNOTSUPP;
  // Collapse and insert range only exclusively; unshare range only with allocate mode.
  if (mode & FALLOC_FL_COLLAPSE_RANGE && mode & ~FALLOC_FL_COLLAPSE_RANGE) return -Errno.EINVAL;
  if (mode & FALLOC_FL_INSERT_RANGE && mode & ~FALLOC_FL_INSERT_RANGE) return -Errno.EINVAL;
  if (mode & FALLOC_FL_UNSHARE_RANGE && mode & ~(FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE)) return -Errno.EINVAL;
  return 0;
}

/** FALLOC_FL_WRITE_ZEROES (7bd43cc79cab, 6.17): a mode of its own, refused with KEEP_SIZE. */
const FALLOC_FL_WRITE_ZEROES = 0x80;
/** FALLOC_FL_MODE_MASK at 6.18: the modes, of which one at most may be set (allocate is none). */
const FALLOC_FL_MODE_MASK =
  FALLOC_FL_PUNCH_HOLE |
  FALLOC_FL_COLLAPSE_RANGE |
  FALLOC_FL_ZERO_RANGE |
  FALLOC_FL_INSERT_RANGE |
  FALLOC_FL_UNSHARE_RANGE |
  FALLOC_FL_WRITE_ZEROES;

// vfs_fallocate after 57413d8e172c ("fs: sort out the fallocate mode vs flag mess", 6.12): the
// modes are exclusive, two at once or KEEP_SIZE where it means nothing is EOPNOTSUPP.
function vfsFallocateModeSwitch(mode: number): number {
  if (mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE)) return -Errno.EOPNOTSUPP;
  switch (mode & FALLOC_FL_MODE_MASK) {
    case 0: // FALLOC_FL_ALLOCATE_RANGE
    case FALLOC_FL_UNSHARE_RANGE:
    case FALLOC_FL_ZERO_RANGE:
      return 0;
    case FALLOC_FL_PUNCH_HOLE:
      return mode & FALLOC_FL_KEEP_SIZE ? 0 : -Errno.EOPNOTSUPP;
    case FALLOC_FL_COLLAPSE_RANGE:
    case FALLOC_FL_INSERT_RANGE:
    case FALLOC_FL_WRITE_ZEROES:
      return mode & FALLOC_FL_KEEP_SIZE ? -Errno.EOPNOTSUPP : 0;
    default:
      return -Errno.EOPNOTSUPP;
  }
}

// vfs_fallocate: a negative offset or a length not above zero first, then the mode.
function vfsFallocateChecks(g: GmemCtx, mode: number, offset: number, len: number): number {
  if (!(offset >= 0) || !(len > 0)) return -Errno.EINVAL;
  return g.version.fallocateModeSwitch ? vfsFallocateModeSwitch(mode) : vfsFallocateChecks611(mode);
}

// kvm_gmem_fallocate
export function gmemFallocate(g: GmemCtx, file: number, mode: number, offset: number, len: number): number {
  const vr = vfsFallocateChecks(g, mode, offset, len);
  if (vr < 0) return vr;
  if (!(mode & FALLOC_FL_KEEP_SIZE)) return -Errno.EOPNOTSUPP;
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) return -Errno.EOPNOTSUPP;
  if (!isPageAligned(offset) || !isPageAligned(len)) return -Errno.EINVAL;
  if (!g.files.valid(file)) throw new Error(`fallocate on gmem file ${file & 255} that was released`);
  const ino = g.files.inode(file);
  return mode & FALLOC_FL_PUNCH_HOLE ? gmemPunchHole(g, ino, offset, len) : gmemAllocate(g, ino, offset, len);
}

// kvm_gmem_allocate: under the invalidate lock shared; a signal stops it with EINTR, keeping
// what was done.
function gmemAllocate(g: GmemCtx, ino: number, offset: number, len: number): number {
  const size = g.inodes.sizePages(ino) * PAGE_SIZE;
  if (offset + len > size) return -Errno.EINVAL;
  const lock = g.inodes.invalidateLockWord(ino);
  g.sync.downRead(lock, LockClass.INVALIDATE);
  let r = 0;
  const end = (offset + len) >> PAGE_SHIFT;
  for (let index = offset >> PAGE_SHIFT; index < end; index++) {
    if (g.sync.signalPending()) {
      r = -Errno.EINTR;
      break;
    }
    const pfn = filemapGrabFolio(g, ino, index);
    if (pfn < 0) {
      r = pfn;
      break;
    }
    g.sync.point(P['fallocate.after_grab']);
    if (g.policy === Policy.ON_ALLOCATE) {
      // 6.10: kvm_gmem_get_folio(inode, index, prepare=true)
      const pr = prepareFolioAllVms(g, ino, index, pfnOf(pfn), -1);
      if (pr < 0) {
        folioUnlock(g, pfn);
        folioPut(g, pfn);
        r = pr;
        break;
      }
    }
    folioUnlock(g, pfn);
    folioPut(g, pfn);
  }
  g.sync.upRead(lock);
  g.stats[C.fallocates]++;
  return r;
}

// kvm_gmem_punch_hole
function gmemPunchHole(g: GmemCtx, ino: number, offset: number, len: number): number {
  const lock = g.inodes.invalidateLockWord(ino);
  const size = g.inodes.sizePages(ino);
  const start = Math.min(offset >> PAGE_SHIFT, size);
  const end = Math.min((offset + len) >> PAGE_SHIFT, size);
  g.sync.downWrite(lock, LockClass.INVALIDATE);
  const per = boundRanges(g, ino, start, end);
  g.inodes.punchBegin(ino, start, end);
  if (g.bugs & Bug['punch-frees-before-zap']) truncateRange(g, ino, start, end);
  invalidateBegin(g, per, allGfnsFilter(g, ino));
  g.sync.point(P['punch_hole.after_invalidate_begin']);
  if (g.bugs & Bug['invalidate-end-before-truncate']) invalidateEnd(g, per);
  if ((g.bugs & Bug['punch-frees-before-zap']) === 0) truncateRange(g, ino, start, end);
  g.sync.point(P['punch_hole.after_truncate']);
  if ((g.bugs & Bug['invalidate-end-before-truncate']) === 0) invalidateEnd(g, per);
  g.inodes.punchEnd(ino);
  // A fault that ran between truncate and invalidate end left a folio behind: allowed, counted.
  for (let index = start; index < end; index++) {
    const pfn = g.inodes.peek(ino, index);
    if (pfn >= 0 && g.folios.test(pfn, PG_PUNCH_RACE)) {
      g.folios.clear(pfn, PG_PUNCH_RACE);
      g.stats[C.punchHoleLeftovers]++;
    }
  }
  g.sync.upWrite(lock);
  g.stats[C.punchHoles]++;
  return 0;
}
