// struct kvm_vcpu: which VM, the exit the fault path prepared, and vcpu->mode / requests in
// shared memory so kvm_flush_remote_tlbs can wait for a vCPU to leave any access that may use a
// zapped translation (the IPI a TLB shootdown sends). Owns the 'vcpus' region.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { type Sync, WHOLE_REGION } from '../shm/sync/sync.js';

/** KVM_MEMORY_EXIT_FLAG_PRIVATE */
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3;

export interface MemoryFaultExit {
  reason: 'memory_fault';
  gpa: number;
  size: number;
  flags: number;
}

const VCPU_WORDS = 16; // a cache line each: the vCPU writes MODE and ACK on its hot path
const VC_VM = 0; // vm + 1; 0 = unused
const VC_MODE = 1;
const VC_REQ = 2;
const VC_ACK = 3;
const VC_FLUSH_WAITERS = 4;

export const OUTSIDE_GUEST_MODE = 0;
export const IN_GUEST_MODE = 1;
/** Spin this many loads for an ack before sleeping. */
const ACK_SPIN = 200;

const REGION = 'vcpus';

export function declareVcpus(lb: LayoutBuilder): void {
  lb.add(REGION, LIMITS.MAX_THREADS * VCPU_WORDS, 'kvm/vcpu.ts');
}

export class VcpuTable {
  readonly base: number;
  private readonly w: Int32Array;
  /** The request number flushRemoteTlbs made per slot (0: none); reused, no allocation. */
  private readonly reqs = new Int32Array(LIMITS.MAX_THREADS);
  constructor(mem: Mem) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
  }
  at(slot: number): number {
    return this.base + slot * VCPU_WORDS;
  }
  /** Claims a slot for a vCPU of `vm`; -1 when all are taken. */
  claim(vm: number): number {
    for (let s = 0; s < LIMITS.MAX_THREADS; s++) {
      if (Atomics.compareExchange(this.w, this.at(s) + VC_VM, 0, vm + 1) === 0) {
        Atomics.store(this.w, this.at(s) + VC_MODE, OUTSIDE_GUEST_MODE);
        return s;
      }
    }
    return -1;
  }
  /** The vCPU slot whose flush-ack word `i` is, or -1. */
  ackWordSlot(i: number): number {
    const rel = i - this.base;
    if (rel < 0 || rel >= LIMITS.MAX_THREADS * VCPU_WORDS || rel % VCPU_WORDS !== VC_ACK) return -1;
    return Math.floor(rel / VCPU_WORDS);
  }
  release(slot: number): void {
    Atomics.store(this.w, this.at(slot) + VC_MODE, OUTSIDE_GUEST_MODE);
    Atomics.store(this.w, this.at(slot) + VC_VM, 0);
  }

  // kvm_flush_remote_tlbs: every vCPU of `vm` drops its TLB, and each in guest mode must finish
  // its current access. As kvm_make_all_cpus_request does, every request is made before the
  // first wait: no vCPU keeps using a zapped translation while the flusher waits for another one.
  // Returns how many vCPUs the flusher found mid-access and waited for.
  flushRemoteTlbs(sync: Sync, vm: number): number {
    const w = this.w;
    let waited = 0;
    const reqs = this.reqs;
    // kvm_make_all_cpus_request: a request to every vCPU of the VM, one write to the table.
    sync.sharedWrite(this.base, WHOLE_REGION);
    for (let s = 0; s < LIMITS.MAX_THREADS; s++) {
      const b = this.at(s);
      reqs[s] = Atomics.load(w, b + VC_VM) === vm + 1 ? Atomics.add(w, b + VC_REQ, 1) + 1 : 0;
    }
    for (let s = 0; s < LIMITS.MAX_THREADS; s++) {
      const b = this.at(s);
      const req = reqs[s];
      if (req === 0 || Atomics.load(w, b + VC_MODE) !== IN_GUEST_MODE) continue;
      Atomics.add(w, b + VC_FLUSH_WAITERS, 1);
      try {
        let ack = Atomics.load(w, b + VC_ACK);
        if (ack - req < 0) waited++;
        for (; ack - req < 0 && Atomics.load(w, b + VC_MODE) === IN_GUEST_MODE; ack = Atomics.load(w, b + VC_ACK)) {
          sync.waitWhileEquals(b + VC_ACK, ack, ACK_SPIN);
        }
      } finally {
        Atomics.sub(w, b + VC_FLUSH_WAITERS, 1);
      }
    }
    return waited;
  }
}

export class KvmVcpu {
  /** kvm_run->memory_fault, set by kvm_mmu_prepare_memory_fault_exit. */
  exit: MemoryFaultExit | null = null;
  /** This thread's own copy of vcpu->mode == IN_GUEST_MODE. */
  inGuest = false;
  /** The last flush request this vCPU acknowledged. */
  private acked = 0;
  /** Drops the CPU's TLB: run for every flush request before it is acknowledged. */
  flushTlb: () => void = () => {};
  private readonly b: number;
  private readonly w: Int32Array;
  private readonly region: number;

  constructor(
    readonly vm: number,
    readonly id: number,
    readonly slot: number,
    table: VcpuTable,
    mem: Mem,
    private readonly sync: Sync,
  ) {
    this.b = table.at(slot);
    this.w = mem.w;
    this.region = table.base;
  }

  /**
   * vcpu->mode = IN_GUEST_MODE: from now on guest accesses use SPTEs without a lock. A vCPU
   * running guest code stays in guest mode across accesses, as a real one does between exits.
   */
  enterGuest(): void {
    this.sync.sharedWrite(this.region, this.b);
    Atomics.store(this.w, this.b + VC_MODE, IN_GUEST_MODE);
    this.inGuest = true;
    // A flush asked while outside guest mode did not wait for us: honour it before any access
    // (vcpu_enter_guest checks requests after setting the mode, as here).
    this.checkRequests();
  }
  /** Leaves guest mode and acknowledges any flush asked meanwhile. */
  exitGuest(): void {
    this.sync.sharedWrite(this.region, this.b);
    Atomics.store(this.w, this.b + VC_MODE, OUTSIDE_GUEST_MODE);
    this.inGuest = false;
    this.checkRequests();
  }
  /**
   * At a guest access boundary: acknowledges a flush asked since the last one, so the flusher
   * knows no access still uses a zapped translation. One load when there is none.
   */
  checkRequests(): void {
    const req = Atomics.load(this.w, this.b + VC_REQ);
    if (req === this.acked) return;
    this.acked = req;
    this.flushTlb();
    this.sync.sharedWrite(this.region, this.b);
    Atomics.store(this.w, this.b + VC_ACK, req);
    if (Atomics.load(this.w, this.b + VC_FLUSH_WAITERS) > 0) this.sync.wake(this.b + VC_ACK, Infinity);
  }
  /** The last flush request acknowledged: a change means a flush was honoured since. */
  get requestsAcked(): number {
    return this.acked;
  }
}
