// Opens one thread's view of the kernel: the context (ctx.ts) wired the way virt/kvm wires
// guest_memfd.c to the MMU (mmu.ts) and to the arch hooks (sev.ts, kvm_arch_gmem_prepare).

import type { KernelVersion } from '../gmem/version.js';
import type { Mem } from '../shm/layout.js';
import type { Sync } from '../shm/sync/sync.js';
import { KvmCtx } from './ctx.js';
import { invalidateBegin, invalidateEnd } from './mmu.js';
import type { SnpPlatform } from './psp.js';
import { SevArch } from './sev.js';

export function openKvm(mem: Mem, sync: Sync, psp: SnpPlatform & { readonly core?: unknown }, version: KernelVersion): KvmCtx {
  return new KvmCtx(mem, sync, psp, version, { arch: (k) => new SevArch(k, psp), invalidateBegin, invalidateEnd });
}
