// One thread's view of the kernel (struct kvm and its friends, for every VM): guest_memfd plus
// KVM's per-VM tables. The MMU and the arch (SEV) hooks are wired in by kvm.ts, so that nothing
// here imports the modules that take this context.

import type { ArchGmemHooks, GmemKvmOps } from '../gmem/arch.js';
import { GmemCtx } from '../gmem/ctx.js';
import type { KernelVersion } from '../gmem/version.js';
import type { Mem } from '../shm/layout.js';
import { threadLatency, threadStats } from '../shm/stats.js';
import { Tracer } from '../shm/trace.js';
import type { Sync } from '../shm/sync/sync.js';
import { MemAttributes } from './attributes.js';
import { Memslots } from './memslots.js';
import type { SnpPlatform } from './psp.js';
import { Sptes } from './spte.js';
import { VcpuTable } from './vcpu.js';
import { VcpuStates } from './vcpu_state.js';
import { Vms } from './vm.js';

/** What kvm.ts plugs in: the arch hooks (sev.ts) and the MMU's invalidation (mmu.ts). */
export interface KvmWiring {
  arch(k: KvmCtx): ArchGmemHooks;
  invalidateBegin(k: KvmCtx, vm: number, ranges: readonly number[], filter: number): void;
  invalidateEnd(k: KvmCtx, vm: number): void;
}

export class KvmCtx implements GmemKvmOps {
  readonly vms: Vms;
  readonly memslots: Memslots;
  readonly attrs: MemAttributes;
  readonly sptes: Sptes;
  readonly vcpus: VcpuTable;
  readonly vcpuStates: VcpuStates;
  readonly stats: Float64Array;
  readonly latency: Float64Array;
  readonly tracer: Tracer;
  readonly g: GmemCtx;
  readonly arch: ArchGmemHooks;

  constructor(
    readonly mem: Mem,
    readonly sync: Sync,
    readonly psp: SnpPlatform & { readonly core?: unknown },
    readonly version: KernelVersion,
    private readonly wiring: KvmWiring,
  ) {
    // The views the kernel writes through: each write may be a scheduling point (Sync.sharedWrite).
    this.vms = new Vms(mem, sync);
    this.memslots = new Memslots(mem, sync);
    this.attrs = new MemAttributes(mem, sync);
    this.sptes = new Sptes(mem, sync);
    this.vcpus = new VcpuTable(mem);
    this.vcpuStates = new VcpuStates(mem, sync);
    this.stats = threadStats(mem, sync.tid);
    this.latency = threadLatency(mem, sync.tid);
    this.tracer = new Tracer(mem, sync.tid);
    this.arch = wiring.arch(this);
    this.g = new GmemCtx(mem, sync, this.stats, version, this.arch, this);
  }

  invalidateBegin(vm: number, ranges: readonly number[], filter: number): void {
    this.wiring.invalidateBegin(this, vm, ranges, filter);
  }
  invalidateEnd(vm: number): void {
    this.wiring.invalidateEnd(this, vm);
  }
  detachSlot(vm: number, slot: number, site: number): void {
    // A write into a freed slot would corrupt whatever reused it: reported, not done.
    if (this.memslots.check(vm, slot, site, this.sync.tid)) this.memslots.detachFile(vm, slot);
  }
  slotLive(vm: number, slot: number, site: number): boolean {
    return this.memslots.check(vm, slot, site, this.sync.tid);
  }
  slotsLockWord(vm: number): number {
    return this.vms.slotsLockWord(vm);
  }
  // kvm_arch_supports_gmem_init_shared (x86.c, 44c6cb9fe988): not for VMs with private memory,
  // whose shared/private tracking is not in guest_memfd, until b5ed1ee2a7a0 (7.4) allows it
  // whenever gmem_in_place_conversion is on.
  supportsGmemInitShared(vm: number): boolean {
    if (this.version.initSharedOnCoco && this.g.inPlace) return true;
    return !this.vms.hasPrivateMem(vm);
  }
  hasPrivateMem(vm: number): boolean {
    return this.vms.hasPrivateMem(vm);
  }
}
