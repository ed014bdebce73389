// The flags of KVM_CREATE_GUEST_MEMFD (include/uapi/linux/kvm.h, 6.18) and which ones a VM may
// use: kvm_gmem_get_supported_flags (44c6cb9fe988) and kvm_gmem_supports_mmap (3d3a04fad25a).

import type { GmemCtx } from './ctx.js';

/** The file may be mmap()ed by the host (3d3a04fad25a). */
export const GUEST_MEMFD_FLAG_MMAP = 1;
/** All memory starts shared, so the host may fault it into its page tables (fe2bf6234e94). */
export const GUEST_MEMFD_FLAG_INIT_SHARED = 2;
/** The flags by name, for the library and scenarios. */
export const GUEST_MEMFD_FLAG_NAMES = { mmap: GUEST_MEMFD_FLAG_MMAP, init_shared: GUEST_MEMFD_FLAG_INIT_SHARED } as const;
export type GuestMemfdFlagName = keyof typeof GUEST_MEMFD_FLAG_NAMES;

// kvm_gmem_get_supported_flags: MMAP for every VM, INIT_SHARED where the arch allows it (x86: VMs
// without private memory); `vm` null is the system fd's question (kvm == NULL: both). No flag
// before 6.18.
export function gmemSupportedFlags(g: GmemCtx, vm: number | null): number {
  if (!g.version.gmemMmap) return 0;
  const initShared = vm === null || g.kvm.supportsGmemInitShared(vm);
  return GUEST_MEMFD_FLAG_MMAP | (initShared ? GUEST_MEMFD_FLAG_INIT_SHARED : 0);
}

// kvm_gmem_supports_mmap
export function gmemSupportsMmap(g: GmemCtx, ino: number): boolean {
  return (g.inodes.flags(ino) & GUEST_MEMFD_FLAG_MMAP) !== 0;
}

/** The file's memory starts shared, and stays so (the model has no in-place conversion). */
export function gmemInitShared(g: GmemCtx, ino: number): boolean {
  return (g.inodes.flags(ino) & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0;
}
