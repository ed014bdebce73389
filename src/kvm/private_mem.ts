// Whether a gfn is private: kvm_mem_is_private, renamed kvm_is_private_gfn (98fd6e30bd14, 7.4).
// kvm_init_memory_attributes points its static call at the VM's attributes, or, with
// gmem_in_place_conversion on, at guest_memfd's (kvm_gmem_is_private_gfn, 8ab5719fbcdc).

import { gmemFileIsPrivate } from '../gmem/attributes.js';
import { gmemFput } from '../gmem/guest_memfd.js';
import { NO_HANDLE } from '../shm/slab.js';
import type { KvmCtx } from './ctx.js';

// kvm_mem_is_private / kvm_is_private_gfn. With guest_memfd's answer the caller rechecks
// mmu_invalidate_seq under mmu_lock (or holds the invalidate lock), and runs its task work.
export function kvmMemIsPrivate(k: KvmCtx, vm: number, gfn: number): boolean {
  return k.g.inPlace ? kvmGmemIsPrivateGfn(k, vm, gfn) : k.attrs.isPrivate(vm, gfn);
}

// kvm_gmem_is_private_gfn: no memslot, or a file already closed, counts as shared.
function kvmGmemIsPrivateGfn(k: KvmCtx, vm: number, gfn: number): boolean {
  const s = k.memslots.lookup(vm, gfn);
  if (s === NO_HANDLE) return false;
  const file = k.g.files.getFileActive(k.memslots.gmemFileWord(vm, s));
  if (file === NO_HANDLE) return false;
  try {
    // kvm_gmem_get_index
    return gmemFileIsPrivate(k.g, file, gfn - k.memslots.baseGfn(vm, s) + k.memslots.gmemPgoff(vm, s));
  } finally {
    gmemFput(k.g, file);
  }
}

/** What a vCPU's access to `gfn` is by default: private only on a VM with private memory. */
export function guestAccessIsPrivate(k: KvmCtx, vm: number, gfn: number): boolean {
  return k.vms.hasPrivateMem(vm) && kvmMemIsPrivate(k, vm, gfn);
}
