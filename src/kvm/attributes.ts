// Memory attributes per VM and gfn (kvm->mem_attr_array). Owns the 'mem_attrs' region.

import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../gmem/attributes.js';
import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import { NO_WRITE_POINTS, type WritePoints } from '../shm/sync/sync.js';

export { KVM_MEMORY_ATTRIBUTE_PRIVATE };

const REGION = 'mem_attrs';

export function declareAttributes(lb: LayoutBuilder, maxVms: number, gfnsPerVm: number): void {
  lb.add(REGION, maxVms * gfnsPerVm, 'kvm/attributes.ts');
}

export class MemAttributes {
  readonly base: number;
  readonly gfnsPerVm: number;
  private readonly w: Int32Array;

  constructor(
    mem: Mem,
    /** The point before each write (the kernel's views pass their Sync; readers need none). */
    private readonly wp: WritePoints = NO_WRITE_POINTS,
  ) {
    this.base = regionBase(mem, REGION);
    this.gfnsPerVm = mem.limits.gfnsPerVm;
    this.w = mem.w;
  }

  // kvm_get_memory_attributes
  get(vm: number, gfn: number): number {
    if (gfn < 0 || gfn >= this.gfnsPerVm) return 0;
    return Atomics.load(this.w, this.base + vm * this.gfnsPerVm + gfn);
  }
  // kvm_mem_is_private
  isPrivate(vm: number, gfn: number): boolean {
    return (this.get(vm, gfn) & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
  }
  // kvm_range_has_memory_attributes(kvm, start, end, ~0, attrs)
  rangeHas(vm: number, start: number, end: number, attrs: number): boolean {
    for (let g = start; g < end; g++) if (this.get(vm, g) !== attrs) return false;
    return true;
  }
  set(vm: number, start: number, end: number, attrs: number): void {
    const b = this.base + vm * this.gfnsPerVm;
    // One object per VM: a range is written at once (the xarray store of the range).
    this.wp.sharedWrite(this.base, b);
    for (let g = start; g < end; g++) Atomics.store(this.w, b + g, attrs);
  }
  clearVm(vm: number): void {
    this.set(vm, 0, this.gfnsPerVm, 0);
  }
}
