// One thread's view of the kernel: guest_memfd plus KVM's per-VM tables, wired together the way
// virt/kvm wires guest_memfd.c to the MMU and to the arch (SEV) hooks.

import type { GmemKvmOps } from '../gmem/arch.js';
import { GmemCtx } from '../gmem/ctx.js';
import type { KernelVersion } from '../gmem/version.js';
import type { Mem } from '../shm/layout.js';
import { LockClass, threadLatency, threadStats } from '../shm/stats.js';
import { Tracer } from '../shm/trace.js';
import type { Sync } from '../shm/sync.js';
import { MemAttributes } from './attributes.js';
import { Memslots } from './memslots.js';
import { invalidateBegin, invalidateEnd } from './mmu.js';
import type { SnpPlatform } from './psp.js';
import { SevArch } from './sev.js';
import { Sptes } from './spte.js';
import { VcpuTable } from './vcpu.js';
import { Vms } from './vm.js';

export class KvmCtx implements GmemKvmOps {
  readonly vms: Vms;
  readonly memslots: Memslots;
  readonly attrs: MemAttributes;
  readonly sptes: Sptes;
  readonly vcpus: VcpuTable;
  readonly stats: Float64Array;
  readonly latency: Float64Array;
  readonly tracer: Tracer;
  readonly g: GmemCtx;
  readonly arch: SevArch;

  constructor(
    readonly mem: Mem,
    readonly sync: Sync,
    readonly psp: SnpPlatform & { readonly core?: unknown },
    readonly version: KernelVersion,
  ) {
    this.vms = new Vms(mem);
    this.memslots = new Memslots(mem);
    this.attrs = new MemAttributes(mem);
    this.sptes = new Sptes(mem);
    this.vcpus = new VcpuTable(mem);
    this.stats = threadStats(mem, sync.tid);
    this.latency = threadLatency(mem, sync.tid);
    this.tracer = new Tracer(mem, sync.tid);
    this.arch = new SevArch(this, psp);
    this.g = new GmemCtx(mem, sync, this.stats, version, this.arch, this);
  }

  invalidateBegin(vm: number, ranges: readonly number[]): void {
    invalidateBegin(this, vm, ranges);
  }
  invalidateEnd(vm: number): void {
    invalidateEnd(this, vm);
  }
  detachSlot(vm: number, slot: number, site: number): void {
    // A write into a freed slot would corrupt whatever reused it: reported, not done.
    if (this.memslots.check(vm, slot, site, this.sync.tid)) this.memslots.detachFile(vm, slot);
  }
  slotLive(vm: number, slot: number, site: number): boolean {
    return this.memslots.check(vm, slot, site, this.sync.tid);
  }
}

/** Runs `fn` holding the mutex at word `lock` (mutex_lock ... mutex_unlock). */
export function withMutex<T>(k: KvmCtx, lock: number, cls: LockClass, fn: () => T): T {
  k.sync.mutexLock(lock, cls);
  try {
    return fn();
  } finally {
    k.sync.mutexUnlock(lock);
  }
}

/** Runs `fn` under the VM's slots_lock (mutex_lock(&kvm->slots_lock)). */
export function withSlotsLock<T>(k: KvmCtx, vm: number, fn: () => T): T {
  return withMutex(k, k.vms.slotsLockWord(vm), LockClass.SLOTS, fn);
}
