// struct kvm: type, ASID, kvm->lock, slots_lock, mmu_lock and the mmu_invalidate_* fields, SNP launch phase.
// Owns the 'vms' region.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { NO_WRITE_POINTS, WHOLE_REGION, type WritePoints } from '../shm/sync/sync.js';
import { RWSEM_WORDS, srcuReaderOf, srcuWords } from '../shm/sync/words.js';

export const VM_TYPES = ['default', 'sw-protected', 'snp'] as const;
export type VmTypeName = (typeof VM_TYPES)[number];
export const VmType = { DEFAULT: 0, SW_PROTECTED: 1, SNP: 2 } as const;

/** KVM-side SNP launch phase (sev->snp_context and what LAUNCH_FINISH sets). */
export const SnpPhase = { NONE: 0, LAUNCHING: 1, FINISHED: 2 } as const;

const VM_WORDS = 32;
const V_STATE = 0;
const V_TYPE = 1;
const V_ASID = 2;
const V_PRE_FAULT_ALLOWED = 3;
const V_SNP_PHASE = 4;
const V_SLOTS_LOCK = 5;
const V_MMU_SEQ = 6;
const V_MMU_IN_PROGRESS = 7;
const V_RANGE_START = 8;
const V_RANGE_END = 9;
/** Faults sleeping until mmu_invalidate_seq moves. */
const V_SEQ_SLEEPERS = 10;
const V_NR_VCPUS = 11;
/** kvm->lock: every SEV ioctl holds it (sev_mem_enc_ioctl), outside slots_lock. */
const V_KVM_LOCK = 12;
/** Bumped when the VM is destroyed, so a stale VM id is told apart from a reused one. */
const V_GEN = 13;
/** kvm->online_vcpus: vCPUs in vcpu_array (V_NR_VCPUS is kvm->created_vcpus). */
const V_ONLINE_VCPUS = 14;
const V_MMU_LOCK = 16;

/** mmu_invalidate_range_start/end while no range is set (INVALID_GPA). */
export const INVALID_GFN = -1;

const REGION = 'vms';
/** kvm->srcu of every VM (each an srcu_struct, laid out by the sync layer). */
const SRCU = 'kvm_srcu';

export function declareVms(lb: LayoutBuilder, maxVms: number, maxThreads: number): void {
  lb.add(REGION, maxVms * VM_WORDS, 'kvm/vm.ts');
  lb.add(SRCU, maxVms * srcuWords(maxThreads), 'kvm/vm.ts');
  if (V_MMU_LOCK + RWSEM_WORDS > VM_WORDS) throw new Error('vm layout overflow');
}

export class Vms {
  readonly base: number;
  readonly maxVms: number;
  private readonly w: Int32Array;
  private readonly srcuBase: number;
  private readonly srcuStride: number;
  private readonly maxThreads: number;

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's views pass their Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.maxVms = mem.limits.maxVms;
    this.w = mem.w;
    this.srcuBase = regionBase(mem, SRCU);
    this.maxThreads = mem.limits.maxThreads;
    this.srcuStride = srcuWords(this.maxThreads);
  }

  /** kvm->srcu: the srcu_struct that protects this VM's memslots. */
  srcu(vm: number): number {
    return this.srcuBase + vm * this.srcuStride;
  }

  private at(vm: number): number {
    return this.base + vm * VM_WORDS;
  }
  /** The scheduling point before a write to struct kvm of `vm` (WHOLE_REGION: the table). */
  private writing(vm: number): void {
    this.wp.sharedWrite(this.base, vm === WHOLE_REGION ? WHOLE_REGION : this.at(vm));
  }

  /** kvm_create_vm: returns the VM id, or -1 when the table is full. */
  create(type: number): number {
    this.writing(WHOLE_REGION);
    for (let vm = 0; vm < this.maxVms; vm++) {
      const b = this.at(vm);
      if (Atomics.load(this.w, b + V_STATE) !== 0) continue;
      const gen = Atomics.load(this.w, b + V_GEN);
      for (let k = 0; k < VM_WORDS; k++) Atomics.store(this.w, b + k, 0);
      Atomics.store(this.w, b + V_GEN, gen);
      Atomics.store(this.w, b + V_TYPE, type);
      // An SNP guest's ASID comes with KVM_SEV_INIT2, folded into creation here.
      Atomics.store(this.w, b + V_ASID, type === VmType.SNP ? vm + 1 : 0);
      // kvm_arch_init_vm / svm_vm_init: SNP may pre-fault only after LAUNCH_FINISH.
      Atomics.store(this.w, b + V_PRE_FAULT_ALLOWED, type === VmType.SNP ? 0 : 1);
      Atomics.store(this.w, b + V_RANGE_START, INVALID_GFN);
      Atomics.store(this.w, b + V_RANGE_END, INVALID_GFN);
      Atomics.store(this.w, b + V_STATE, 1);
      return vm;
    }
    return -1;
  }

  /** kvm_destroy_vm's end: the record is free for the next VM. */
  destroy(vm: number): void {
    this.writing(WHOLE_REGION);
    Atomics.add(this.w, this.at(vm) + V_GEN, 1);
    Atomics.store(this.w, this.at(vm) + V_STATE, 0);
  }
  generation(vm: number): number {
    return Atomics.load(this.w, this.at(vm) + V_GEN);
  }
  live(vm: number): boolean {
    return vm >= 0 && vm < this.maxVms && Atomics.load(this.w, this.at(vm) + V_STATE) === 1;
  }
  type(vm: number): number {
    return Atomics.load(this.w, this.at(vm) + V_TYPE);
  }
  /** kvm_arch_has_private_mem */
  hasPrivateMem(vm: number): boolean {
    return this.type(vm) !== VmType.DEFAULT;
  }
  isSnp(vm: number): boolean {
    return this.type(vm) === VmType.SNP;
  }
  /** kvm->arch.has_protected_state: SEV-ES and SNP (of the modelled types, SNP only). */
  hasProtectedState(vm: number): boolean {
    return this.type(vm) === VmType.SNP;
  }
  asid(vm: number): number {
    return Atomics.load(this.w, this.at(vm) + V_ASID);
  }
  preFaultAllowed(vm: number): boolean {
    return Atomics.load(this.w, this.at(vm) + V_PRE_FAULT_ALLOWED) !== 0;
  }
  setPreFaultAllowed(vm: number): void {
    this.writing(vm);
    Atomics.store(this.w, this.at(vm) + V_PRE_FAULT_ALLOWED, 1);
  }
  snpPhase(vm: number): number {
    return Atomics.load(this.w, this.at(vm) + V_SNP_PHASE);
  }
  setSnpPhase(vm: number, phase: number): void {
    this.writing(vm);
    Atomics.store(this.w, this.at(vm) + V_SNP_PHASE, phase);
  }
  /** kvm->created_vcpus */
  createdVcpus(vm: number): number {
    return Atomics.load(this.w, this.at(vm) + V_NR_VCPUS);
  }
  /** atomic_read(&kvm->online_vcpus) */
  onlineVcpus(vm: number): number {
    return Atomics.load(this.w, this.at(vm) + V_ONLINE_VCPUS);
  }
  /** atomic_inc(&kvm->online_vcpus) */
  incOnlineVcpus(vm: number): void {
    this.writing(vm);
    Atomics.add(this.w, this.at(vm) + V_ONLINE_VCPUS, 1);
  }
  addVcpu(vm: number): number {
    this.writing(vm);
    const n = Atomics.add(this.w, this.at(vm) + V_NR_VCPUS, 1);
    if (n >= LIMITS.MAX_VCPUS_PER_VM) {
      Atomics.sub(this.w, this.at(vm) + V_NR_VCPUS, 1);
      return -1;
    }
    return n;
  }

  // kvm_mmu_invalidate_begin: the first invalidation in progress starts with no range.
  mmuInvalidateBegin(vm: number): void {
    this.writing(vm);
    const b = this.at(vm);
    if (Atomics.add(this.w, b + V_MMU_IN_PROGRESS, 1) === 0) {
      Atomics.store(this.w, b + V_RANGE_START, INVALID_GFN);
      Atomics.store(this.w, b + V_RANGE_END, INVALID_GFN);
    }
  }
  // kvm_mmu_invalidate_range_add: the range in progress grows to cover [start, end).
  mmuInvalidateRangeAdd(vm: number, start: number, end: number): void {
    this.writing(vm);
    const b = this.at(vm);
    const s0 = Atomics.load(this.w, b + V_RANGE_START);
    if (s0 === INVALID_GFN) {
      Atomics.store(this.w, b + V_RANGE_START, start);
      Atomics.store(this.w, b + V_RANGE_END, end);
    } else {
      Atomics.store(this.w, b + V_RANGE_START, Math.min(s0, start));
      Atomics.store(this.w, b + V_RANGE_END, Math.max(Atomics.load(this.w, b + V_RANGE_END), end));
    }
  }
  // kvm_mmu_invalidate_end: the sequence moves before the count drops; returns the invalidations
  // still in progress.
  mmuInvalidateEnd(vm: number): number {
    this.writing(vm);
    const b = this.at(vm);
    Atomics.add(this.w, b + V_MMU_SEQ, 1);
    return Atomics.sub(this.w, b + V_MMU_IN_PROGRESS, 1) - 1;
  }

  slotsLockWord(vm: number): number {
    return this.at(vm) + V_SLOTS_LOCK;
  }
  kvmLockWord(vm: number): number {
    return this.at(vm) + V_KVM_LOCK;
  }
  mmuLockWord(vm: number): number {
    return this.at(vm) + V_MMU_LOCK;
  }
  seqWord(vm: number): number {
    return this.at(vm) + V_MMU_SEQ;
  }
  seqSleepersWord(vm: number): number {
    return this.at(vm) + V_SEQ_SLEEPERS;
  }
  inProgressWord(vm: number): number {
    return this.at(vm) + V_MMU_IN_PROGRESS;
  }
  rangeStartWord(vm: number): number {
    return this.at(vm) + V_RANGE_START;
  }
  rangeEndWord(vm: number): number {
    return this.at(vm) + V_RANGE_END;
  }
  /** Which VM and lock a word is, for reports. */
  describeWord(
    i: number,
  ): { vm: number; what: 'slots_lock' | 'mmu_lock' | 'mmu_invalidate_seq' | 'kvm->lock' | 'kvm->srcu' | 'srcu'; reader?: number } | null {
    const srel = i - this.srcuBase;
    if (srel >= 0 && srel < this.maxVms * this.srcuStride) {
      const vm = Math.floor(srel / this.srcuStride);
      // The srcu_struct itself, as lockdep names an SRCU read section.
      if (srel % this.srcuStride === 0) return { vm, what: 'kvm->srcu' };
      const reader = srcuReaderOf(this.srcu(vm), this.maxThreads, i);
      return reader < 0 ? null : { vm, what: 'srcu', reader };
    }
    const rel = i - this.base;
    if (rel < 0 || rel >= this.maxVms * VM_WORDS) return null;
    const vm = Math.floor(rel / VM_WORDS);
    const off = rel % VM_WORDS;
    if (off === V_SLOTS_LOCK) return { vm, what: 'slots_lock' };
    if (off === V_KVM_LOCK) return { vm, what: 'kvm->lock' };
    if (off === V_MMU_LOCK) return { vm, what: 'mmu_lock' };
    if (off === V_MMU_SEQ) return { vm, what: 'mmu_invalidate_seq' };
    return null;
  }
}
