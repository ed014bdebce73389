// One thread's view of the kernel: guest_memfd plus KVM's per-VM tables, wired together the way
// virt/kvm wires guest_memfd.c to the MMU and to the arch (SEV) hooks.

import type { GmemKvmOps } from '../gmem/arch.js';
import { GmemCtx } from '../gmem/ctx.js';
import type { Policy } from '../gmem/policy.js';
import type { Mem } from '../shm/layout.js';
import { threadLatency, threadStats } from '../shm/stats.js';
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
    policy: Policy,
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
    this.g = new GmemCtx(mem, sync, this.stats, policy, this.arch, this);
  }

  invalidateBegin(vm: number, ranges: readonly number[]): void {
    invalidateBegin(this, vm, ranges);
  }
  invalidateEnd(vm: number): void {
    invalidateEnd(this, vm);
  }
  detachSlot(vm: number, slot: number): void {
    this.memslots.detachFile(vm, slot);
  }
}
