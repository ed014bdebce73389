// The set-up several scenarios of the 6.18 host-mapping tests share: a default VM ('a', one
// vCPU) whose slot 1 at 1 MiB binds an 8 KiB MMAP | INIT_SHARED guest_memfd ('g'), so the slot is
// GMEM_ONLY and every guest fault takes the file's folio (kvm_gmem_get_pfn).

/** The gpa slot 1 starts at. */
export const GMEM_ONLY_GPA = '1MiB';

/** A scenario's header and first steps (without a mapping); append the steps of the test. */
export function gmemOnlyScenario(
  steps: object[],
  over: { kernel?: string; vmType?: string; module_params?: object } = {},
): Record<string, unknown> {
  return {
    kernel: over.kernel ?? '6.18',
    ...(over.module_params !== undefined ? { module_params: over.module_params } : {}),
    memory: '4MiB',
    vms: [{ name: 'a', type: over.vmType ?? 'default', vcpus: 1 }],
    steps: [
      { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '8KiB', flags: ['mmap', 'init_shared'], expect: 'ok' },
      {
        op: 'set_user_memory_region2',
        vm: 'a',
        slot: 1,
        flags: ['guest_memfd'],
        guest_phys_addr: GMEM_ONLY_GPA,
        memory_size: '8KiB',
        guest_memfd: 'g',
        expect: 'ok',
      },
      ...steps,
    ],
  };
}
