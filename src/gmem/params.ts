// kvm.ko's module parameters that guest_memfd reads, set once when the sandbox is built (as at
// module load: __ro_after_init) and kept across the explorer's resets. Owns the 'module_params'
// region.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';

/** The parameters by name, as `modprobe kvm NAME=...` takes them. */
export const MODULE_PARAM_NAMES = ['gmem_in_place_conversion'] as const;
export type ModuleParamName = (typeof MODULE_PARAM_NAMES)[number];
export type ModuleParams = Partial<Record<ModuleParamName, boolean>>;

const REGION = 'module_params';
const P_GMEM_IN_PLACE_CONVERSION = 0;
/** Not a parameter: whether this kernel keeps per-inode memory attributes (7.4), for the auditor. */
const P_GMEM_ATTRIBUTES = 1;

export function declareModuleParams(lb: LayoutBuilder): void {
  // resetWords 0: a reset between schedules keeps what the module was loaded with.
  lb.add(REGION, 2, 'gmem/params.ts', 0);
}

/** Records whether the kernel keeps per-inode attributes (KernelVersion.gmemAttributes), once at build. */
export function setGmemAttributesKept(mem: Mem, kept: boolean): void {
  Atomics.store(mem.w, regionBase(mem, REGION) + P_GMEM_ATTRIBUTES, kept ? 1 : 0);
}

/** Whether the kernel in this memory keeps per-inode attributes: a reader without the version (the auditor). */
export function gmemAttributesKept(mem: Mem): boolean {
  return Atomics.load(mem.w, regionBase(mem, REGION) + P_GMEM_ATTRIBUTES) !== 0;
}

/**
 * Writes the parameters before any thread opens the kernel. A kernel built with
 * CONFIG_KVM_VM_MEMORY_ATTRIBUTES defaults gmem_in_place_conversion to off (537ec2b15fdd).
 */
export function setModuleParams(mem: Mem, p: ModuleParams): void {
  Atomics.store(mem.w, regionBase(mem, REGION) + P_GMEM_IN_PLACE_CONVERSION, p.gmem_in_place_conversion ? 1 : 0);
}

export function readModuleParams(mem: Mem): Required<ModuleParams> {
  return { gmem_in_place_conversion: Atomics.load(mem.w, regionBase(mem, REGION) + P_GMEM_IN_PLACE_CONVERSION) !== 0 };
}
