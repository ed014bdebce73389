// The CPU running one vCPU's guest: a guest access walks the SPTEs, takes the KVM fault path on
// a miss (on this thread, as the kernel does), and applies the SNP hardware checks (RMP
// violation, #VC for an unvalidated page) before touching the page's bytes.

import { Rmp } from '../firmware/rmp.js';
import type { KvmCtx } from '../kvm/ctx.js';
import { RET_PF_EMULATE, RET_PF_FIXED, kvmTdpPageFault, memoryFaultExit } from '../kvm/mmu.js';
import { GMEM_SHARED_FRAME, makeSpte, spteFrame, sptePrivate, spteWritable } from '../kvm/spte.js';
import type { KvmVcpu } from '../kvm/vcpu.js';
import { SnpPhase } from '../kvm/vm.js';
import { Errno } from '../shm/errno.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { P } from '../shm/points.js';
import { C } from '../shm/stats.js';
import { FreeSync } from '../shm/sync/free.js';
import { type Sync } from '../shm/sync/sync.js';
import { WRITER } from '../shm/sync/words.js';
import { Tlb } from './tlb.js';

/** How a guest access ended. */
export const Exit = {
  NONE: 0,
  /** KVM_EXIT_MEMORY_FAULT: attribute mismatch, or guest_memfd could not supply the page. */
  MEMORY_FAULT: 1,
  /** #NPF for an RMP check failure: the page is not the guest's at this GPA. */
  RMP_VIOLATION: 2,
  /** #VC: the page is the guest's but was never PVALIDATEd. */
  VC: 3,
  /** No memslot (or a write to a READONLY one): KVM emulates MMIO. */
  MMIO: 4,
  /**
   * KVM_EXIT_FAIL_ENTRY: VMRUN refused the vCPU (an SNP vCPU before LAUNCH_FINISH); KVM_RUN
   * returns 0 and the guest ran no instruction.
   */
  FAIL_ENTRY: 5,
} as const;
export const EXIT_NAMES = ['none', 'memory_fault', 'rmp_violation', 'vc', 'mmio', 'fail_entry'] as const;
/** SVM_EXIT_ERR (VMEXIT_INVALID), kvm_run->fail_entry.hardware_entry_failure_reason of a failed VMRUN. */
export const SVM_EXIT_ERR = -1;
export type ExitName = (typeof EXIT_NAMES)[number];

const P_BEFORE_ACCESS = P['guest.before_access'];
const P_IN_ACCESS = P['guest.in_access'];
/** Loads a vCPU spins on mmu_lock before sleeping, while it checks a suspect TLB hit. */
const STALE_CHECK_SPIN = 1000;

/** Copies n bytes; a short copy is a loop, which costs less than a subarray view and set(). */
function copyBytes(src: Uint8Array, from: number, dst: Uint8Array, to: number, n: number): void {
  if (n <= 32) {
    for (let i = 0; i < n; i++) dst[to + i] = src[from + i];
  } else {
    dst.set(src.subarray(from, from + n), to);
  }
}

export class GuestCpu {
  /** The fault path's errno for the last MEMORY_FAULT exit. */
  lastErrno = 0;
  private readonly rmp: Rmp;
  private readonly asid: number;
  private readonly snp: boolean;
  /** The VM's launch has finished (SNP): its vCPUs can enter. */
  private launched = false;
  private readonly sptes: Int32Array;
  private readonly spteBase: number;
  private readonly gfnsPerVm: number;
  private readonly sync: Sync;
  private readonly stats: Float64Array;
  private readonly host: Uint8Array;
  private readonly user: Uint8Array;
  private readonly mmuLock: number;
  /** This CPU's TLB (flushed through vcpu.flushTlb by every flush request it acknowledges). */
  readonly tlb = new Tlb();
  /**
   * The auditor's check of every TLB hit against the SPTE (one more load per access): an access
   * through a translation zapped without a TLB flush is counted (staleTlbAccesses). Off, a hit
   * is what the hardware does: no shared-memory access at all.
   */
  auditTlb: boolean;
  /**
   * Whether a running guest's every access is a pause/scheduling point. In the controlled mode it
   * is (the explorer interleaves accesses); in the free mode the pause point costs a load per
   * access, so a running guest polls it between bursts instead (pollAccessPoint).
   */
  private readonly pointEveryAccess: boolean;

  constructor(
    readonly k: KvmCtx,
    readonly vcpu: KvmVcpu,
    opts: { auditTlb?: boolean } = {},
  ) {
    this.sync = k.sync;
    this.stats = k.stats;
    this.host = k.mem.host;
    this.user = k.mem.user;
    this.rmp = new Rmp(k.mem, k.sync);
    this.asid = k.vms.asid(vcpu.vm);
    this.snp = k.vms.isSnp(vcpu.vm);
    this.sptes = k.mem.w;
    this.spteBase = k.sptes.word(vcpu.vm, 0);
    this.gfnsPerVm = k.mem.limits.gfnsPerVm;
    this.mmuLock = k.vms.mmuLockWord(vcpu.vm);
    this.auditTlb = opts.auditTlb ?? true;
    this.pointEveryAccess = !(k.sync instanceof FreeSync);
    const tlb = this.tlb;
    vcpu.flushTlb = () => tlb.flush();
  }

  /**
   * Translates gfn for an access of the given kind, faulting it in if needed. Returns the frame
   * (host pfn for private, userspace page for shared, GMEM_SHARED_FRAME + pfn for a GMEM_ONLY
   * slot's shared page) or -(Exit code). Runs in guest mode; the
   * fault path runs outside it. `dataAccess` false (PVALIDATE) skips the RMP check: the
   * instruction checks the entry itself.
   */
  translate(gfn: number, priv: boolean, dataAccess = true, write = false): number {
    if (gfn < 0 || gfn >= this.gfnsPerVm) return -this.beyondGpaSpace(gfn, priv);
    if (dataAccess) {
      const hit = this.tlb.lookup(gfn, priv);
      if (hit >= 0 && (!this.auditTlb || this.hitIsCurrent(gfn, priv, hit))) return hit;
    }
    return this.walk(gfn, priv, dataAccess, write);
  }

  /**
   * A gfn past the sandbox's guest physical space has no memslot and no attribute (shared): a
   * shared access is emulated MMIO, a private one mismatches the attribute and exits to the VMM
   * (kvm_faultin_pfn checks the attribute before the memslot).
   */
  private beyondGpaSpace(gfn: number, priv: boolean): number {
    if (!priv) return Exit.MMIO;
    this.lastErrno = -memoryFaultExit(this.k, this.vcpu, gfn, true, -Errno.EFAULT);
    return Exit.MEMORY_FAULT;
  }

  /** The SPTE walk of a TLB miss (and the fault path on an EPT violation); fills the TLB. */
  private walk(gfn: number, priv: boolean, dataAccess: boolean, write = false): number {
    for (;;) {
      const spte = Atomics.load(this.sptes, this.spteBase + gfn);
      // A write through a read-only SPTE faults as a write (a READONLY memslot: emulated MMIO).
      if (spte !== 0 && sptePrivate(spte) === priv && (!write || spteWritable(spte))) {
        const frame = spteFrame(spte);
        if (priv && this.snp && dataAccess) {
          const c = this.rmp.guestCheck(frame, this.asid, gfn);
          if (c !== 0) {
            this.stats[c === 1 ? C.rmpViolations : C.vcExceptions]++;
            return c === 1 ? -Exit.RMP_VIOLATION : -Exit.VC;
          }
        } else if (this.snp && dataAccess && frame >= GMEM_SHARED_FRAME && this.rmp.assigned(frame - GMEM_SHARED_FRAME)) {
          // A shared access must reach a hypervisor-owned page; a GMEM_ONLY slot's get_pfn made it the guest's.
          this.stats[C.rmpViolations]++;
          return -Exit.RMP_VIOLATION;
        }
        // A read-only translation is not cached: a write through it must fault (and exit MMIO).
        if (dataAccess && spteWritable(spte)) this.tlb.fill(gfn, priv, frame);
        return frame;
      }
      // EPT violation: exit to KVM, fault, and re-enter.
      this.vcpu.exitGuest();
      this.vcpu.exit = null;
      const r = kvmTdpPageFault(this.k, this.vcpu, gfn, priv, write);
      this.vcpu.enterGuest();
      if (r === RET_PF_FIXED) continue;
      if (r === RET_PF_EMULATE) return -Exit.MMIO;
      this.lastErrno = -r;
      return -Exit.MEMORY_FAULT;
    }
  }

  /** The auditor's check of a TLB hit: false (the TLB flushed) when the SPTE changed since the fill. */
  private hitIsCurrent(gfn: number, priv: boolean, frame: number): boolean {
    if (Atomics.load(this.sptes, this.spteBase + gfn) === makeSpte(frame, priv)) return true;
    this.checkStaleHit();
    return false;
  }

  /**
   * A TLB hit whose SPTE changed since the fill. That is legal only while the zap that changed it
   * is still inside its mmu_lock write section, whose flush request then reaches this vCPU before
   * the lock is released (an access in flight when a flush starts may use the old translation).
   * So wait, outside guest mode (the flusher must not wait for us meanwhile), until no writer
   * holds mmu_lock: if no flush request came by then, the zap sent none, and this access went
   * through a stale translation. Either way the TLB is dropped and the access walks again.
   */
  private checkStaleHit(): void {
    const v = this.vcpu;
    const acked = v.requestsAcked;
    const inGuest = v.inGuest;
    if (inGuest) v.exitGuest();
    this.sync.waitWhileEquals(this.mmuLock, WRITER, STALE_CHECK_SPIN);
    v.checkRequests();
    if (v.requestsAcked === acked) this.stats[C.staleTlbAccesses]++;
    this.tlb.flush();
    if (inGuest) v.enterGuest();
  }

  /**
   * One guest read (write when `data` is given) of `len` bytes at gpa. Bytes read go to `out`.
   * Returns Exit.NONE or the exit that stopped it (bytes before the failing page are done).
   * This is the guest's hot path (bench 'access.mapped.*'): no allocation, and a running guest's
   * access that hits the TLB reads one shared word, its request word (plus, audited, the SPTE).
   */
  access(gpa: number, len: number, priv: boolean, out: Uint8Array | null, data: Uint8Array | null): number {
    const vcpu = this.vcpu;
    const off = gpa % PAGE_SIZE;
    if (vcpu.inGuest && gpa >= 0 && len > 0 && off + len <= PAGE_SIZE) {
      // The common case, a running guest touching one page: no entry, no loop, no try.
      if (this.pointEveryAccess && this.sync.pointArmed(P_BEFORE_ACCESS)) this.pointOutsideGuest();
      vcpu.checkRequests();
      const gfn = (gpa - off) / PAGE_SIZE;
      let frame = this.tlb.lookup(gfn, priv);
      if (frame < 0 || (this.auditTlb && !this.hitIsCurrent(gfn, priv, frame))) {
        if (gfn >= this.gfnsPerVm) return this.beyondGpaSpace(gfn, priv);
        frame = this.walk(gfn, priv, true, data !== null);
        if (frame < 0) return -frame;
      }
      // Mid-access, in guest mode (controlled runs): a zap's TLB flush must now wait for this
      // access to finish, which may still use the translation it found (kvm_flush_remote_tlbs).
      if (this.pointEveryAccess) this.sync.point(P_IN_ACCESS);
      let mem = priv ? this.host : this.user;
      if (frame >= GMEM_SHARED_FRAME) {
        // A GMEM_ONLY slot's shared page: a guest_memfd pfn.
        mem = this.host;
        frame -= GMEM_SHARED_FRAME;
      }
      if (data !== null) {
        copyBytes(data, 0, mem, frame * PAGE_SIZE + off, len);
        this.stats[C.guestWrites]++;
      } else {
        copyBytes(mem, frame * PAGE_SIZE + off, out!, 0, len);
        this.stats[C.guestReads]++;
      }
      return Exit.NONE;
    }
    return this.accessSlow(gpa, len, priv, out, data);
  }

  /** An access that enters the guest, spans pages or is empty: kept apart so access() stays small. */
  private accessSlow(gpa: number, len: number, priv: boolean, out: Uint8Array | null, data: Uint8Array | null): number {
    const vcpu = this.vcpu;
    if (this.sync.pointArmed(P_BEFORE_ACCESS)) this.pointOutsideGuest();
    // Already running guest code (a workload): only the boundary's flush check. Otherwise this
    // one access is a visit to the guest: enter, and leave at the end.
    const visit = !vcpu.inGuest;
    if (visit && this.entryFails()) return Exit.FAIL_ENTRY;
    if (visit) vcpu.enterGuest();
    else vcpu.checkRequests();
    try {
      if (!(len > 0)) return Exit.NONE;
      let done = 0;
      for (;;) {
        const addr = gpa + done;
        const gfn = Math.floor(addr / PAGE_SIZE);
        const off = addr - gfn * PAGE_SIZE;
        const n = Math.min(len - done, PAGE_SIZE - off);
        const frame = this.translate(gfn, priv, true, data !== null);
        if (frame < 0) return -frame;
        const gmemShared = frame >= GMEM_SHARED_FRAME;
        const mem = priv || gmemShared ? this.host : this.user;
        const at = (gmemShared ? frame - GMEM_SHARED_FRAME : frame) * PAGE_SIZE + off;
        if (data !== null) {
          copyBytes(data, done, mem, at, n);
          this.stats[C.guestWrites]++;
        } else {
          copyBytes(mem, at, out!, done, n);
          this.stats[C.guestReads]++;
        }
        done += n;
        if (done >= len) return Exit.NONE;
        // Between two pages: acknowledge a flush asked meanwhile (exitGuest does after the last).
        vcpu.checkRequests();
      }
    } finally {
      if (visit) vcpu.exitGuest();
    }
  }

  /**
   * KVM_RUN of an SNP vCPU before LAUNCH_FINISH. 6.11 KVM has no check of its own (svm_vcpu_pre_run
   * only refuses a VM before KVM_SEV_INIT2): it runs VMRUN with a VMSA that snp_launch_update_vmsa
   * (in snp_launch_finish) has not yet made the guest's. That VMRUN fails (SVM_EXIT_ERR, which
   * svm_handle_exit reports as KVM_EXIT_FAIL_ENTRY, KVM_RUN returning 0) is the hardware's part,
   * not verifiable from kernel sources. Once finished, always finished.
   */
  entryFails(): boolean {
    if (!this.snp || this.launched) return false;
    this.launched = this.k.vms.snpPhase(this.vcpu.vm) === SnpPhase.FINISHED;
    return !this.launched;
  }

  /**
   * Between two bursts of a running guest's accesses, outside guest mode: takes a pause armed at
   * 'guest.before_access' meanwhile (the free mode's access fast path does not look for one).
   */
  pollAccessPoint(): void {
    // In the controlled mode every access is the point already: no extra scheduling step here.
    if (!this.pointEveryAccess && !this.vcpu.inGuest && this.sync.pointArmed(P_BEFORE_ACCESS)) this.sync.point(P_BEFORE_ACCESS);
  }

  /**
   * The pause/scheduling point before an access, taken outside guest mode: a vCPU that may be
   * held must not hold up a TLB flush (the kernel never sleeps in guest mode either).
   */
  private pointOutsideGuest(): void {
    const inGuest = this.vcpu.inGuest;
    if (inGuest) this.vcpu.exitGuest();
    this.sync.point(P_BEFORE_ACCESS);
    if (inGuest) this.vcpu.enterGuest();
  }

  /** PVALIDATE of the page at gpa: a PvalidateRet code, or -(Exit code). */
  pvalidate(gpa: number, validate: boolean): number {
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const visit = !this.vcpu.inGuest;
    if (visit && this.entryFails()) return -Exit.FAIL_ENTRY;
    if (visit) this.vcpu.enterGuest();
    try {
      const frame = this.translate(gfn, true, false);
      if (frame < 0) return frame;
      this.stats[C.pvalidates]++;
      // The guest's instruction, on this thread, on the translation just made: the vCPU stays in
      // guest mode, so no TLB flush completes before it. One CAS on the RMP entry, no firmware.
      const r = this.rmp.pvalidate(frame, this.asid, gfn, validate);
      // The guest's INVLPG after a change of validation: this CPU's cached RMP verdict is old.
      this.tlb.invalidate(gfn);
      if (r >= 0) return r;
      this.stats[C.rmpViolations]++;
      return -Exit.RMP_VIOLATION;
    } finally {
      if (visit) this.vcpu.exitGuest();
    }
  }
}
