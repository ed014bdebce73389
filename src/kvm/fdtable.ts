// The VMM process's file descriptor table (fs/file.c's files_struct), in shared memory so that
// every VMM thread of the process sees one table: an fd closed by one thread is gone for the
// others, and a lookup racing a close either gets a reference or EBADF, never a freed file.
// Owns the 'fdtable' region.

import { Errno } from '../shm/errno.js';
import { type LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { assert } from '../shm/limits.js';
import { NO_WRITE_POINTS, WHOLE_REGION, type WritePoints } from '../shm/sync/sync.js';
import type { KvmCtx } from './ctx.js';
import { kvmGmemClose } from './task_work.js';

/** RLIMIT_NOFILE's usual soft limit: fds 0..MAX_FDS-1, of which 0-2 are stdio. */
export const MAX_FDS = 1024;
const FIRST_FD = 3;
const REGION = 'fdtable';

/**
 * What an fd refers to. An entry packs the kind in its top two bits and a 30-bit value (a gmem
 * file handle, a VM id) below, so that one atomic load reads both, as the kernel's one pointer.
 */
export const FdKind = { GMEM: 1, VM: 2, VCPU: 3 } as const;
export type FdKind = (typeof FdKind)[keyof typeof FdKind];
const VALUE_BITS = 30;
const VALUE_MASK = (1 << VALUE_BITS) - 1;

export interface FdEntry {
  fd: number;
  kind: FdKind;
  value: number;
}

export function declareFdTable(lb: LayoutBuilder): void {
  lb.add(REGION, MAX_FDS, 'kvm/fdtable.ts');
}

function pack(kind: FdKind, value: number): number {
  assert(value >= 0 && value <= VALUE_MASK, `fd entry value ${value} out of range`);
  return (kind << VALUE_BITS) | value | 0;
}

function unpack(fd: number, e: number): FdEntry | null {
  if (e === 0) return null;
  return { fd, kind: (e >>> VALUE_BITS) as FdKind, value: e & VALUE_MASK };
}

export class FdTable {
  private readonly base: number;
  private readonly w: Int32Array;

  constructor(
    mem: Mem,
    /** The point before each write (a VMM thread's view passes its Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
  }

  private word(fd: number): number {
    return this.base + fd;
  }

  private inRange(fd: number): boolean {
    return Number.isInteger(fd) && fd >= 0 && fd < MAX_FDS;
  }

  // alloc_fd + fd_install: the lowest free fd. The kernel serialises on files->file_lock; a
  // compare-and-swap on the entry gives the same one-winner-per-fd answer without a wait.
  install(kind: FdKind, value: number): number {
    const e = pack(kind, value);
    // The lowest free fd depends on every close: the table is one object.
    this.wp.sharedWrite(this.base, WHOLE_REGION);
    for (let fd = FIRST_FD; fd < MAX_FDS; fd++) {
      if (Atomics.load(this.w, this.word(fd)) !== 0) continue;
      if (Atomics.compareExchange(this.w, this.word(fd), 0, e) === 0) return fd;
    }
    return -Errno.EMFILE;
  }

  /** The entry now at `fd`, without a reference (vm and vcpu fds, checks). */
  peek(fd: number): FdEntry | null {
    if (!this.inRange(fd)) return null;
    return unpack(fd, Atomics.load(this.w, this.word(fd)));
  }

  // __fget_files_rcu + kvm_gmem_bind's f_op check: a reference on the gmem file at `fd`, -EBADF
  // for no file, -EINVAL for a file that is not a guest_memfd. The entry is re-read once the
  // count is taken: a close (and a reuse of the fd) in between gives the reference back and
  // retries, as the kernel does.
  fgetGmem(k: KvmCtx, fd: number): number {
    if (!this.inRange(fd)) return -Errno.EBADF;
    for (;;) {
      const e = Atomics.load(this.w, this.word(fd));
      if (e === 0) return -Errno.EBADF;
      const ent = unpack(fd, e)!;
      if (ent.kind !== FdKind.GMEM) return -Errno.EINVAL;
      if (!k.g.files.tryGet(ent.value)) {
        // The count reached zero: closed meanwhile (the entry has moved on) or about to be.
        if (Atomics.load(this.w, this.word(fd)) === e) return -Errno.EBADF;
        continue;
      }
      if (Atomics.load(this.w, this.word(fd)) === e) return ent.value;
      kvmGmemClose(k, ent.value);
    }
  }

  // file_close_fd: takes the entry out; the caller drops the reference it held (filp_close).
  remove(fd: number): FdEntry | null {
    if (!this.inRange(fd)) return null;
    this.wp.sharedWrite(this.base, WHOLE_REGION);
    return unpack(fd, Atomics.exchange(this.w, this.word(fd), 0));
  }

  /** Every open fd, lowest first. */
  open(): FdEntry[] {
    const out: FdEntry[] = [];
    for (let fd = FIRST_FD; fd < MAX_FDS; fd++) {
      const ent = unpack(fd, Atomics.load(this.w, this.word(fd)));
      if (ent !== null) out.push(ent);
    }
    return out;
  }
}

/** fdput of a reference fgetGmem took (its last reference releases the file on the way out). */
export function fdputGmem(k: KvmCtx, file: number): void {
  if (file >= 0) kvmGmemClose(k, file);
}
