// The per-thread guest_memfd context: views of the shared tables plus the hooks from above.

import type { Mem } from '../shm/layout.js';
import type { Sync } from '../shm/sync/sync.js';
import { PfnAllocator } from './allocator.js';
import { GmemAttributes } from './attributes_table.js';
import { GupPins } from './pin_table.js';
import { readBugs } from './bugs.js';
import type { ArchGmemHooks, GmemKvmOps } from './arch.js';
import { Files } from './file.js';
import { Folios } from './folio.js';
import { Inodes } from './inode.js';
import { LruBatches } from './lru.js';
import { readModuleParams } from './params.js';
import type { Policy } from './policy.js';
import type { KernelVersion } from './version.js';
import { HostMappings } from './vma.js';

export class GmemCtx {
  readonly folios: Folios;
  readonly alloc: PfnAllocator;
  readonly inodes: Inodes;
  readonly files: Files;
  /** The VMM process's mappings of guest_memfd files and their page tables. */
  readonly vmas: HostMappings;
  /** The per-inode memory attributes (7.4). */
  readonly attrs: GmemAttributes;
  /** The per-thread lru_add batches (7.4's conversion checks folio references). */
  readonly lru: LruBatches;
  /** The pages a device pinned through a host mapping (GUP). */
  readonly pins: GupPins;
  /**
   * gmem_in_place_conversion as this kernel has it: the module parameter where the version has
   * it (ee1168fb7313), false before (an unknown parameter is ignored at module load).
   */
  readonly inPlace: boolean;
  /** Planted bugs enabled for this run (gmem/bugs.ts); 0 in any normal run. */
  readonly bugs: number;
  readonly policy: Policy;
  /**
   * Files whose last reference this thread dropped: their release (__fput) runs as task work
   * when the thread leaves the kernel, never inside the path that dropped it (which may hold
   * kvm->srcu, while release takes slots_lock).
   */
  readonly deferredFput: number[] = [];

  constructor(
    readonly mem: Mem,
    readonly sync: Sync,
    readonly stats: Float64Array,
    readonly version: KernelVersion,
    readonly arch: ArchGmemHooks,
    readonly kvm: GmemKvmOps,
  ) {
    this.policy = version.prepare;
    this.folios = new Folios(mem, sync);
    this.alloc = new PfnAllocator(mem, sync);
    this.inodes = new Inodes(mem, sync);
    this.files = new Files(mem, sync);
    this.vmas = new HostMappings(mem, sync);
    this.attrs = new GmemAttributes(mem, this.inodes, sync);
    this.lru = new LruBatches(mem, sync);
    this.pins = new GupPins(mem, sync);
    this.inPlace = version.inPlaceConversionParam && readModuleParams(mem).gmem_in_place_conversion;
    this.bugs = readBugs(mem);
  }
}
