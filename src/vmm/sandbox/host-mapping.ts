// The API's host mapping of a guest_memfd (mmap(2), MAP_SHARED): reads and writes by the calling
// thread through the mapping's page table, faulting as a user access does, and munmap.

import { gmemPinUserPage, gmemUnpinUserPage } from '../../gmem/gup.js';
import { HOST_SIGBUS, HOST_SIGSEGV, gmemHostAccess } from '../../gmem/mmap.js';
import { kvmMunmap } from '../../kvm/host_mm.js';
import { HostSignalError, check } from './errors.js';
import { type SandboxPort, int } from './port.js';

export class HostMapping {
  constructor(
    readonly sb: SandboxPort,
    /** The mapping's handle in the sandbox (what the kernel-level functions take). */
    readonly handle: number,
    /** Its length in bytes (rounded up to pages) and its offset in the file. */
    readonly size: number,
    readonly offset: number,
  ) {}

  /** Reads `len` bytes at `offset` of the mapping; a SIGBUS or SIGSEGV throws a HostSignalError. */
  async read(offset: number | string, len: number | string): Promise<Uint8Array> {
    return this.readSync(offset, len);
  }
  readSync(offset: number | string, len: number | string): Uint8Array {
    const off = int(offset, 'offset');
    const buf = new Uint8Array(int(len, 'len'));
    this.access('read', off, buf, false);
    return buf;
  }

  /** Writes `data` at `offset` of the mapping (as memset or memcpy would: bytes before a fault stay written). */
  async write(offset: number | string, data: Uint8Array): Promise<void> {
    this.writeSync(offset, data);
  }
  writeSync(offset: number | string, data: Uint8Array): void {
    this.access('write', int(offset, 'offset'), data, true);
  }

  /**
   * A device pins the page at `offset` of the mapping for DMA (pin_user_pages with FOLL_LONGTERM,
   * as the selftests' GUP_TEST does), faulting it in first. The pin outlives munmap until
   * GupPin.unpin. A page the host cannot map (private, past the file) is EFAULT.
   */
  async pin(offset: number | string): Promise<GupPin> {
    return this.pinSync(offset);
  }
  pinSync(offset: number | string): GupPin {
    const h = check('pin_user_pages', gmemPinUserPage(this.sb.k.g, this.handle, int(offset, 'offset')));
    return new GupPin(this.sb, h);
  }

  /** munmap(2) of the whole mapping; a second munmap does nothing, as munmap of an unmapped range. */
  async munmap(): Promise<void> {
    this.munmapSync();
  }
  munmapSync(): void {
    check('munmap', kvmMunmap(this.sb.k, this.handle));
  }

  private access(op: string, offset: number, buf: Uint8Array, write: boolean): void {
    const progress = { done: 0 };
    const r = gmemHostAccess(this.sb.k.g, this.handle, offset, buf, write, progress);
    if (r === HOST_SIGBUS || r === HOST_SIGSEGV)
      throw new HostSignalError(op, r === HOST_SIGBUS ? 'SIGBUS' : 'SIGSEGV', offset + progress.done);
    check(op, r);
  }
}

/** A page a device holds pinned (see HostMapping.pin). */
export class GupPin {
  constructor(
    readonly sb: SandboxPort,
    /** The pin's handle in the sandbox. */
    readonly handle: number,
  ) {}

  /** The pfn pinned, or -1 once unpinned. */
  get pfn(): number {
    return this.sb.k.g.pins.pfnOf(this.handle);
  }

  /** unpin_user_page: the device lets go; EINVAL if this pin was already dropped. */
  async unpin(): Promise<void> {
    this.unpinSync();
  }
  unpinSync(): void {
    check('unpin_user_page', gmemUnpinUserPage(this.sb.k.g, this.handle));
  }
}
