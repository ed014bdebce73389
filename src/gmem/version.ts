// The modelled kernel versions: one record of behaviour switches per version, each switch naming
// the commit that changed it. Kernel code reads the switches of its sandbox's version; nothing
// else picks behaviour by version. The prepare policies of earlier releases of this tool are
// aliases for the versions they were taken from.

import { Policy, type PolicyName } from './policy.js';

export const KERNEL_VERSIONS = ['6.10', 'b85524314a', '6.11', '6.18', 'upstream'] as const;
export type KernelVersionName = (typeof KERNEL_VERSIONS)[number];

export interface KernelVersion {
  readonly name: KernelVersionName;
  /** Where folios are prepared, and for which VMs (b85524314a; 6dd761d92f66 for the faulting VM only). */
  readonly prepare: Policy;
  /**
   * KVM_PRE_FAULT_MEMORY meeting a KVM_MEMSLOT_INVALID slot: false = retry while holding
   * kvm->srcu, so a memslot delete waiting in synchronize_srcu never finishes (6.11..6.17);
   * true = return -EAGAIN (3ccbf6f47098, "KVM: x86/mmu: Return -EAGAIN if userspace
   * deletes/moves memslot during prefault", 6.18).
   */
  readonly prefaultInvalidSlotEagain: boolean;
  /**
   * kvm_gmem_unbind of a slot whose file is dying (count zero, release not yet run): false =
   * return without removing the binding, so kvm_gmem_release later writes into the freed
   * memslot (since a7800aa80ea4); true = remove it anyway (ae431059e75d, 6.18).
   */
  readonly unbindDyingFile: boolean;
  /**
   * A flags-only KVM_SET_USER_MEMORY_REGION2 on a guest_memfd slot that drops
   * KVM_MEM_GUEST_MEMFD: false = accepted, the binding is left pointing at the freed old slot;
   * true = EINVAL (9935df5333aa, after 6.18).
   */
  readonly rejectGmemFlagsChange: boolean;
}

const V610: KernelVersion = { name: '6.10', prepare: Policy.ON_ALLOCATE, prefaultInvalidSlotEagain: false, unbindDyingFile: false, rejectGmemFlagsChange: false };
const SEED: KernelVersion = { ...V610, name: 'b85524314a', prepare: Policy.ON_FAULT };
const V611: KernelVersion = { ...SEED, name: '6.11', prepare: Policy.ON_FAULT_OWN_VM };
const V618: KernelVersion = { ...V611, name: '6.18', prefaultInvalidSlotEagain: true, unbindDyingFile: true };
const UPSTREAM: KernelVersion = { ...V618, name: 'upstream', rejectGmemFlagsChange: true };

export const VERSIONS: Readonly<Record<KernelVersionName, KernelVersion>> = { '6.10': V610, b85524314a: SEED, '6.11': V611, '6.18': V618, upstream: UPSTREAM };

/** The version each prepare-policy name was modelled on. */
export const POLICY_VERSION: Readonly<Record<PolicyName, KernelVersionName>> = {
  'prepare-on-allocate': '6.10',
  'prepare-on-fault': 'b85524314a',
  'prepare-on-fault-own-vm': '6.11',
};

export const DEFAULT_KERNEL: KernelVersionName = '6.11';

export function kernelVersion(name: string): KernelVersion {
  if (!(KERNEL_VERSIONS as readonly string[]).includes(name)) throw new Error(`kernel: must be one of ${KERNEL_VERSIONS.join(', ')}; got '${name}'`);
  return VERSIONS[name as KernelVersionName];
}
