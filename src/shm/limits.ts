// Every fixed size of a sandbox, in one place. A sandbox is carved once from these; nothing grows.

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** Bytes per cache line; regions and per-thread blocks are aligned to it to avoid false sharing. */
export const CACHE_LINE = 64;

/** Hard ceilings: they bound table sizes and the bit fields that encode ids in lock words. */
export const LIMITS = {
  /** Threads that may touch shared memory (controller, VMM, firmware, vCPUs). */
  MAX_THREADS: 64,
  MAX_VMS: 8,
  MAX_INODES: 64,
  MAX_FILES: 128,
  /** gmem files linked to one inode (KVM_CREATE_GUEST_MEMFD makes 1, `link` adds more). */
  MAX_FILES_PER_INODE: 8,
  /** Memslot bindings held by one gmem file. */
  MAX_BINDINGS_PER_FILE: 8,
  /** Memslots per VM (the kernel allows 32764; the sandbox keeps a small table). */
  MAX_MEMSLOTS: 32,
  /** Host frames are encoded in 29 bits of an SPTE. */
  MAX_PFNS: 1 << 22,
  /** Guest frames per VM (the size of the attribute and SPTE tables). */
  MAX_GFNS: 1 << 22,
  MAX_VCPUS_PER_VM: 32,
  /** Shared mappings of guest_memfd files the VMM process may hold at once (mmap). */
  MAX_HOST_MAPPINGS: 32,
} as const;

/** Sizes of one sandbox, fixed when it is built. */
export interface SandboxLimits {
  /** Host pages backing guest_memfd (the pfn allocator's pool). */
  nrPfns: number;
  /** Guest frames per VM: gpa space = gfnsPerVm * 4 KiB. */
  gfnsPerVm: number;
  /** Pages of VMM (userspace) memory that back shared guest memory. */
  userPages: number;
  /** Filemap slots over all inodes (each inode takes size/4KiB of them for its life). */
  filemapPages: number;
  maxVms: number;
  maxThreads: number;
}

export class SandboxLimitError extends Error {
  constructor(
    readonly field: string,
    readonly rule: string,
  ) {
    super(`${field}: ${rule}`);
    this.name = 'SandboxLimitError';
  }
}

/** Throws a SandboxLimitError unless `ok`. */
export function checkLimit(ok: boolean, field: string, rule: string): void {
  if (!ok) throw new SandboxLimitError(field, rule);
}

export function isPageAligned(n: number): boolean {
  return n % PAGE_SIZE === 0;
}

/** Assertion for what must hold; a failure is a sandbox bug, never a user error. */
export function assert(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}
