// The auditor's read-only views of every region, and the recorder its checks report into.

import { Rmp } from '../../firmware/rmp.js';
import { PfnAllocator } from '../../gmem/allocator.js';
import { GmemAttributes, KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../gmem/attributes_table.js';
import { LruBatches } from '../../gmem/lru.js';
import { gmemAttributesKept, readModuleParams } from '../../gmem/params.js';
import { Files } from '../../gmem/file.js';
import { Folios } from '../../gmem/folio.js';
import { Inodes } from '../../gmem/inode.js';
import { HostMappings } from '../../gmem/vma.js';
import { MemAttributes } from '../../kvm/attributes.js';
import { Memslots } from '../../kvm/memslots.js';
import { Sptes } from '../../kvm/spte.js';
import { Vms } from '../../kvm/vm.js';
import type { Mem } from '../../shm/layout.js';
import { FreeSync } from '../../shm/sync/free.js';
import { INVARIANTS, type Invariant, type Violation, ViolationLog } from '../violations.js';

export class Views {
  readonly folios: Folios;
  readonly inodes: Inodes;
  readonly files: Files;
  readonly vms: Vms;
  readonly memslots: Memslots;
  readonly attrs: MemAttributes;
  readonly sptes: Sptes;
  readonly rmp: Rmp;
  readonly alloc: PfnAllocator;
  readonly vmas: HostMappings;
  readonly gmemAttrs: GmemAttributes;
  readonly lru: LruBatches;
  /** gmem_in_place_conversion as the kernel in this memory has it (7.4: guest_memfd says what is private). */
  readonly inPlace: boolean;
  /** Whether the kernel keeps per-inode attributes (7.4): then they, not INIT_SHARED, say what the host may map. */
  readonly gmemAttributesKept: boolean;
  constructor(readonly mem: Mem) {
    this.folios = new Folios(mem);
    this.inodes = new Inodes(mem);
    this.files = new Files(mem);
    this.vms = new Vms(mem);
    this.memslots = new Memslots(mem);
    this.attrs = new MemAttributes(mem);
    this.sptes = new Sptes(mem);
    this.rmp = new Rmp(mem);
    this.alloc = new PfnAllocator(mem, new FreeSync(mem, 0));
    this.vmas = new HostMappings(mem);
    this.gmemAttrs = new GmemAttributes(mem, this.inodes);
    this.lru = new LruBatches(mem);
    this.inPlace = readModuleParams(mem).gmem_in_place_conversion;
    this.gmemAttributesKept = gmemAttributesKept(mem);
  }

  /**
   * kvm_mem_is_private at a quiescent point, read without references: the VM's attribute, or with
   * gmem_in_place_conversion on, the attribute of the guest_memfd index its memslot binds.
   */
  isPrivate(vm: number, gfn: number): boolean {
    if (!this.inPlace) return this.attrs.isPrivate(vm, gfn);
    const s = this.memslots.lookup(vm, gfn);
    const file = s < 0 ? -1 : this.memslots.gmemFile(vm, s);
    if (file < 0 || !this.files.isOpen(file)) return false;
    const index = gfn - this.memslots.baseGfn(vm, s) + this.memslots.gmemPgoff(vm, s);
    return (this.gmemAttrs.get(this.files.inode(file), index) & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
  }
}

export function emptyCounts(): Record<Invariant, number> {
  return Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>;
}

/** Where a check reports a violation. */
export type Add = (x: Violation) => void;

/** Counts every violation per invariant and keeps the first ones in full. */
export function recorder(): { add: (x: Violation) => void; counts: Record<Invariant, number>; log: ViolationLog } {
  const log = new ViolationLog(50);
  const counts = emptyCounts();
  return {
    add: (x) => {
      counts[x.invariant]++;
      log.add(x);
    },
    counts,
    log,
  };
}
