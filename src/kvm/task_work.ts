// The deferred half of fput (kernel/task_work.c, fs/file_table.c's __fput): a gmem file whose
// last reference a thread dropped inside the kernel is released when that thread leaves it.

import { gmemFput, gmemRelease, gmemTakeDeferredFput } from '../gmem/guest_memfd.js';
import { P } from '../shm/points.js';
import type { KvmCtx } from './ctx.js';
import { withSlotsLock } from './locking.js';

// kvm_gmem_release with the VM's slots_lock, as the file's last fput does.
export function kvmGmemRelease(k: KvmCtx, file: number): void {
  withSlotsLock(k, k.g.files.vm(file), () => gmemRelease(k.g, file));
}

/** task_work_run on the way back to userspace: the releases this thread owes. */
export function kvmTaskWork(k: KvmCtx): void {
  if (k.g.deferredFput.length === 0) return;
  for (const file of gmemTakeDeferredFput(k.g)) {
    k.sync.point(P['fput.before_release']);
    kvmGmemRelease(k, file);
  }
}

/** close(2) of an fd holding a reference on gmem file `file`. */
export function kvmGmemClose(k: KvmCtx, file: number): void {
  gmemFput(k.g, file);
  kvmTaskWork(k);
}
