// The host rows (6.18's mmap of guest_memfd, 3d8160a... see docs/versions.md): a VMM that reaches
// guest memory through the file, as a default VM's GMEM_ONLY memslots let it.
//  - host.fault.cold: the first read of a page through a mapping (kvm_gmem_fault_user_mapping:
//    grab a new folio, clear it under its lock, install the host PTE), one page per call, in the
//    fault group's blocks, taking turns with the guest's cold faults;
//  - host.access.mapped: a 4-byte read through a PTE already there (mmap_lock for read, the
//    PTE walk, the folio pinned and the bytes copied), vs the bare Atomics.load of the micro group.

import { gmemHostAccess } from '../src/gmem/mmap.js';
import { PAGE_SIZE } from '../src/shm/limits.js';
import type { HostMapping, Sandbox } from '../src/vmm/sandbox/sandbox.js';
import { Histogram } from './histogram.js';
import type { BlockArm } from './measure.js';

/** A file of `bytes` that a default VM can map (MMAP | INIT_SHARED), mapped whole. */
export function hostMapping(sb: Sandbox, bytes: number): HostMapping {
  const vm = sb.createVmSync({ type: 'default' });
  const g = vm.createGuestMemfdSync({ size: bytes, flags: ['mmap', 'init_shared'] });
  return g.mmapSync({ size: bytes });
}

/** One read of `buf.length` bytes at `offset` of `m` through gmemHostAccess, or it throws. */
export function hostRead(sb: Sandbox, m: HostMapping, offset: number, buf: Uint8Array): void {
  const r = gmemHostAccess(sb.k.g, m.handle, offset, buf, false);
  if (r !== 0) throw new Error(`host read at ${offset} returned ${r}`);
}

/** host.fault.cold as a block arm: call i reads page i, never touched before. */
export class HostFaultArm implements BlockArm {
  readonly name = 'host.fault.cold';
  readonly h = new Histogram();
  readonly op: (i: number) => void;
  private clears = 0;
  private faults = 0;
  private calls = 0;
  private before = { clears: 0, hostFaults: 0 };

  constructor(
    private readonly sb: Sandbox,
    m: HostMapping,
    /** Calls per block. */
    private readonly pages: number,
  ) {
    const buf = new Uint8Array(1);
    this.op = (i) => hostRead(sb, m, i * PAGE_SIZE, buf);
  }

  enter(): void {
    const s = this.sb.stats();
    this.before = { clears: s.clears, hostFaults: s.hostFaults };
  }

  leave(): void {
    const s = this.sb.stats();
    this.clears += s.clears - this.before.clears;
    this.faults += s.hostFaults - this.before.hostFaults;
    this.calls += this.pages;
  }

  /** Each call was one host fault with one clear, or the row measured something else. */
  perCall(): string {
    if (this.clears !== this.calls || this.faults !== this.calls)
      throw new Error(`${this.name}: ${this.faults} host faults and ${this.clears} clears in ${this.calls} calls, want 1 each per call`);
    return '1 host fault, 1 clear per call';
  }
}
