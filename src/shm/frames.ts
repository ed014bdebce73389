// Distinct types for the numbers that name pages, where one has been (or could be) passed as the
// other: a guest frame number of a VM and a host frame number of the sandbox's memory travel
// side by side through the arch hooks and the RMP instructions (rmp_make_private(pfn, gpa, ...),
// kvm_arch_gmem_prepare(kvm, gfn, pfn, ...)), and a swap there typechecks as plain numbers.
// They cost nothing at run time: the brand exists for the compiler only.

/** A guest frame number (gpa >> 12) of one VM. */
export type Gfn = number & { readonly __frame: 'gfn' };
/** A host frame number: a page of host memory, with its folio and its RMP entry. */
export type Pfn = number & { readonly __frame: 'pfn' };
/** A page index inside a guest_memfd (pgoff_t). */
export type PgOff = number & { readonly __frame: 'pgoff' };

/** Names a number a gfn (where it is computed: gpa >> 12, base_gfn + offset). */
export const gfnOf = (n: number): Gfn => n as Gfn;
/** Names a number a pfn (where it is computed: a folio lookup that succeeded). */
export const pfnOf = (n: number): Pfn => n as Pfn;
/** Names a number a file index. */
export const pgoffOf = (n: number): PgOff => n as PgOff;
