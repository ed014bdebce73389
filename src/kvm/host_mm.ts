// The VMM process's memory syscalls on guest_memfd mappings, as seen from KVM's side: munmap and
// exit_mm drop the mappings' file references, and a last reference releases the file as task
// work on the way back to user space (kvm_gmem_release takes slots_lock).

import { gmemExitMm, gmemMunmap } from '../gmem/mmap.js';
import type { KvmCtx } from './ctx.js';
import { kvmTaskWork } from './task_work.js';

/** munmap(2) of mapping `map`: 0 (an unmapped range is no error). */
export function kvmMunmap(k: KvmCtx, map: number): number {
  const r = gmemMunmap(k.g, map);
  kvmTaskWork(k);
  return r;
}

/** exit_mm: every mapping goes (before the fds, as do_exit orders them). */
export function kvmExitMm(k: KvmCtx): void {
  gmemExitMm(k.g);
  kvmTaskWork(k);
}
