// struct kvm_vcpu as the SNP launch sees it: vcpu->mutex, whether the vCPU is online (in
// kvm->vcpu_array, so kvm_for_each_vcpu visits it), its register state, and the SEV-ES save
// area (VMSA) that snp_launch_update_vmsa syncs from it and hands to the firmware. Owns the
// 'vcpu_state' region. The per-thread run state (vcpu->mode, requests) is vcpu.ts's.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { LIMITS } from '../shm/limits.js';
import { NO_WRITE_POINTS, type WritePoints } from '../shm/sync/sync.js';

const ENTRY_WORDS = 8;
/** vcpu->mutex: every vCPU ioctl holds it (kvm_vcpu_ioctl). */
const E_MUTEX = 0;
/** 1 once kvm_vm_ioctl_create_vcpu put the vCPU in vcpu_array and bumped online_vcpus. */
const E_ONLINE = 1;
/** vcpu->arch.guest_state_protected: set once its VMSA is the guest's (LAUNCH_UPDATE of the VMSA). */
const E_PROTECTED = 2;
/** 1 while sev_es_sync_vmsa copies the registers into the VMSA and the firmware takes it. */
const E_SYNCING = 3;
/** The register state: a generation KVM_SET_REGS / KVM_RUN's sync_regs bump. */
const E_REGS = 4;
/** The generation sev_es_sync_vmsa copied into the VMSA. */
const E_VMSA_REGS = 5;

/** Per LaunchReport kind, the first vCPU it names: its VM + 1 (0 = none) and its id. */
const HEADER_WORDS = 8;

const REGION = 'vcpu_state';

export function declareVcpuStates(lb: LayoutBuilder, maxVms: number): void {
  lb.add(REGION, HEADER_WORDS + maxVms * LIMITS.MAX_VCPUS_PER_VM * ENTRY_WORDS, 'kvm/vcpu_state.ts');
}

/**
 * What the launch checks saw. RACE: a vCPU ioctl changed a vCPU while LAUNCH_FINISH synced its
 * VMSA (cb923ee6a80f). RESYNC: LAUNCH_FINISH copied into the VMSA of a vCPU already launched,
 * a page the firmware owns (9b9f7962e3e8).
 */
export const LaunchReport = { RACE: 0, RESYNC: 1 } as const;
export type LaunchReport = (typeof LaunchReport)[keyof typeof LaunchReport];

export interface LaunchStateReport {
  vm: number;
  vcpu: number;
}

export class VcpuStates {
  readonly base: number;
  private readonly w: Int32Array;

  constructor(
    mem: Mem,
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.w = mem.w;
  }

  private at(vm: number, id: number): number {
    return this.base + HEADER_WORDS + (vm * LIMITS.MAX_VCPUS_PER_VM + id) * ENTRY_WORDS;
  }
  private set(vm: number, id: number, word: number, v: number): void {
    const b = this.at(vm, id);
    this.wp.sharedWrite(this.base, b);
    Atomics.store(this.w, b + word, v);
  }
  private get(vm: number, id: number, word: number): number {
    return Atomics.load(this.w, this.at(vm, id) + word);
  }

  /** A new vCPU id of a VM (kvm_vcpu_init): a zeroed struct, not yet online; its mutex free. */
  init(vm: number, id: number): void {
    const b = this.at(vm, id);
    this.wp.sharedWrite(this.base, b);
    for (let i = 0; i < ENTRY_WORDS; i++) Atomics.store(this.w, b + i, 0);
  }
  mutexWord(vm: number, id: number): number {
    return this.at(vm, id) + E_MUTEX;
  }
  setOnline(vm: number, id: number): void {
    this.set(vm, id, E_ONLINE, 1);
  }
  online(vm: number, id: number): boolean {
    return this.get(vm, id, E_ONLINE) === 1;
  }
  protectedState(vm: number, id: number): boolean {
    return this.get(vm, id, E_PROTECTED) === 1;
  }
  setProtected(vm: number, id: number): void {
    this.set(vm, id, E_PROTECTED, 1);
  }
  syncing(vm: number, id: number): boolean {
    return this.get(vm, id, E_SYNCING) === 1;
  }
  setSyncing(vm: number, id: number, on: boolean): void {
    this.set(vm, id, E_SYNCING, on ? 1 : 0);
  }
  /** KVM_SET_REGS / sync_regs: the vCPU's register state changes. */
  writeRegs(vm: number, id: number): void {
    this.set(vm, id, E_REGS, this.get(vm, id, E_REGS) + 1);
  }
  /** sev_es_sync_vmsa's copy of the registers into the save area. */
  syncVmsa(vm: number, id: number): void {
    this.set(vm, id, E_VMSA_REGS, this.get(vm, id, E_REGS));
  }

  /** Records the vCPU if it is the first of its kind of report. */
  report(kind: LaunchReport, vm: number, id: number): void {
    const h = this.base + kind * 2;
    this.wp.sharedWrite(this.base, this.base);
    if (Atomics.compareExchange(this.w, h, 0, vm + 1) === 0) Atomics.store(this.w, h + 1, id);
  }
  first(kind: LaunchReport): LaunchStateReport | null {
    const h = this.base + kind * 2;
    const vm = Atomics.load(this.w, h) - 1;
    return vm < 0 ? null : { vm, vcpu: Atomics.load(this.w, h + 1) };
  }
}
