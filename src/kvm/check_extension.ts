// KVM_CHECK_EXTENSION for the guest_memfd capabilities (kvm_vm_ioctl_check_extension_generic in
// virt/kvm/kvm_main.c), on a VM fd or on /dev/kvm, which asks with kvm == NULL.

import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../gmem/attributes.js';
import { gmemSupportedFlags } from '../gmem/flags.js';
import type { KvmCtx } from './ctx.js';
import { supportedMemAttributes } from './kvm_main.js';

/** KVM_CAP_MEMORY_ATTRIBUTES: the attributes KVM_SET_MEMORY_ATTRIBUTES (the VM ioctl) takes. */
export const KVM_CAP_MEMORY_ATTRIBUTES = 233;
export const KVM_CAP_GUEST_MEMFD = 234;
/** KVM_CAP_GUEST_MEMFD_FLAGS (d2042d8f96dd, 6.18; KVM_CAP_GUEST_MEMFD_MMAP in 6.18-rc1 only). */
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244;
/**
 * KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES (7.4): the attributes KVM_SET_MEMORY_ATTRIBUTES2 (the
 * guest_memfd ioctl) takes. 250 in the v8 posting; linux-next's number is not in the stored text.
 */
export const KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES = 250;
/** The capabilities by name, for the library and scenarios. */
export const KVM_CAP_NAMES = {
  memory_attributes: KVM_CAP_MEMORY_ATTRIBUTES,
  guest_memfd: KVM_CAP_GUEST_MEMFD,
  guest_memfd_flags: KVM_CAP_GUEST_MEMFD_FLAGS,
  guest_memfd_memory_attributes: KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES,
} as const;
export type KvmCapName = keyof typeof KVM_CAP_NAMES;

// kvm_vm_ioctl_check_extension_generic: `vm` null is the system fd. An unknown capability is 0.
export function kvmCheckExtension(k: KvmCtx, vm: number | null, cap: number): number {
  switch (cap) {
    case KVM_CAP_GUEST_MEMFD:
      // d1e54dd08f16 (6.18): every VM; before, only a VM with private memory (or the system fd).
      if (k.version.gmemOnDefaultVm) return 1;
      return vm === null || k.vms.hasPrivateMem(vm) ? 1 : 0;
    case KVM_CAP_GUEST_MEMFD_FLAGS:
      // kvm_gmem_get_supported_flags; before 6.18 the capability does not exist.
      return gmemSupportedFlags(k.g, vm);
    case KVM_CAP_MEMORY_ATTRIBUTES:
      return supportedMemAttributes(k, vm);
    case KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES:
      // 7.4: !gmem_in_place_conversion || !kvm_supports_private_mem(kvm) (true for kvm == NULL).
      if (!k.version.setMemoryAttributes2 || !k.g.inPlace) return 0;
      return vm === null || k.vms.hasPrivateMem(vm) ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
    default:
      return 0;
  }
}
