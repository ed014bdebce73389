// The API's guest_memfd: fallocate, close, fstat, the refused read/write and pread/pwrite, mmap,
// memory failure, and a look at the folio behind an offset.

import { PG_HWPOISON, PG_UPTODATE } from '../../gmem/folio.js';
import { FALLOC_MODE_NAMES, type FallocModeName, gmemFallocate } from '../../gmem/fallocate.js';
import { ATTRIBUTES2_RESERVED_WORDS, gmemIoctlSetAttributes2 } from '../../gmem/convert.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../gmem/attributes.js';
import { gmemErrorFolio } from '../../gmem/guest_memfd.js';
import { gmemMmap } from '../../gmem/mmap.js';
import { Errno } from '../../shm/errno.js';
import { PAGE_SIZE } from '../../shm/limits.js';
import { ArgumentError, KvmError, check } from './errors.js';
import { HostMapping } from './host-mapping.js';
import { type FolioInfo, type SandboxPort, int, u64 } from './port.js';

/** The fields of struct kvm_memory_attributes2 userspace fills (see GuestMemfd.setMemoryAttributes2). */
export interface MemoryAttributes2Args {
  /** Byte offset into the file; with `size`, page aligned and inside it. */
  offset: number | string | bigint;
  size: number | string | bigint;
  /** 'private' (KVM_MEMORY_ATTRIBUTE_PRIVATE), 'shared' (0), or the raw u64. */
  attributes: 'private' | 'shared' | number | bigint;
  /** Must be 0 (no flag is defined). */
  flags?: number | bigint;
  /** reserved[11], zero-filled; any nonzero word is EINVAL. */
  reserved?: ReadonlyArray<number | bigint>;
}

export class GuestMemfd {
  constructor(
    readonly sb: SandboxPort,
    readonly file: number,
    readonly fd: number,
  ) {}

  // fallocate(2) on the guest_memfd
  async fallocate(mode: number | FallocModeName[], offset: number | string, len: number | string): Promise<void> {
    this.fallocateSync(mode, offset, len);
  }
  fallocateSync(mode: number | FallocModeName[], offset: number | string, len: number | string): void {
    let m = 0;
    if (Array.isArray(mode)) {
      for (const n of mode) {
        if (!(n in FALLOC_MODE_NAMES))
          throw new ArgumentError('mode', `unknown fallocate mode '${n as string}'; known: ${Object.keys(FALLOC_MODE_NAMES).join(', ')}`);
        m |= FALLOC_MODE_NAMES[n];
      }
    } else m = mode;
    const off = int(offset, 'offset', -Infinity);
    const n = int(len, 'len', -Infinity);
    this.requireOpen('fallocate');
    check(
      'fallocate',
      this.sb.withGmemFd(this.fd, (f) => (f < 0 ? f : gmemFallocate(this.sb.k.g, f, m, off, n))),
    );
  }

  /** close(2): release when no other reference is left. */
  async close(): Promise<void> {
    this.sb.closeFd(this.fd);
  }

  /** fstat(2): the file's size. */
  fstat(): { size: number } {
    this.requireOpen('fstat');
    return { size: this.sb.k.g.inodes.sizePages(this.sb.k.g.files.inode(this.file)) * PAGE_SIZE };
  }

  /** read(2) / write(2): guest_memfd has neither. */
  read(): never {
    this.requireOpen('read');
    throw new KvmError('read', -Errno.EINVAL, 'guest_memfd does not support read');
  }
  write(): never {
    this.requireOpen('write');
    throw new KvmError('write', -Errno.EINVAL, 'guest_memfd does not support write');
  }

  /**
   * pread(2) / pwrite(2): the file was never opened through do_dentry_open, so it has no
   * FMODE_PREAD / FMODE_PWRITE: ESPIPE (a negative position is EINVAL before the fd is looked up).
   */
  pread(offset: number | string = 0): never {
    return this.positioned('pread', offset);
  }
  pwrite(offset: number | string = 0): never {
    return this.positioned('pwrite', offset);
  }
  private positioned(op: string, offset: number | string): never {
    if (int(offset, 'offset', -Infinity) < 0) throw new KvmError(op, -Errno.EINVAL);
    this.requireOpen(op);
    throw new KvmError(op, -Errno.ESPIPE, 'guest_memfd has no positioned I/O');
  }

  /**
   * mmap(2) of [offset, offset + size) of the file: MAP_SHARED unless `shared` is false (which
   * guest_memfd refuses). The mapping may run past the file's end; access there is SIGBUS.
   */
  async mmap(a: { size: number | string; offset?: number | string; shared?: boolean }): Promise<HostMapping> {
    return this.mmapSync(a);
  }
  mmapSync(a: { size: number | string; offset?: number | string; shared?: boolean }): HostMapping {
    const off = int(a.offset ?? 0, 'offset');
    const size = int(a.size, 'size');
    // The syscall refuses an offset inside a page before it looks at the fd.
    if (off % PAGE_SIZE !== 0) throw new KvmError('mmap', -Errno.EINVAL, 'offset must be page aligned');
    this.requireOpen('mmap');
    const h = check(
      'mmap',
      this.sb.withGmemFd(this.fd, (f) => (f < 0 ? f : gmemMmap(this.sb.k.g, f, off, size, a.shared ?? true))),
    );
    return new HostMapping(this.sb, h, Math.ceil(size / PAGE_SIZE) * PAGE_SIZE, off);
  }

  /** memory_failure on the folio at `offset` (fault injection). */
  async hwpoison(offset: number | string): Promise<void> {
    this.hwpoisonSync(offset);
  }
  hwpoisonSync(offset: number | string): void {
    const off = int(offset, 'offset');
    this.requireOpen('hwpoison');
    check(
      'hwpoison',
      this.sb.withGmemFd(this.fd, (f) => (f < 0 ? f : gmemErrorFolio(this.sb.k.g, f, Math.floor(off / PAGE_SIZE)))),
    );
  }

  /**
   * KVM_SET_MEMORY_ATTRIBUTES2 (7.4, with gmem_in_place_conversion on; ENOTTY otherwise): converts
   * [offset, offset + size) of the file to private or shared in place. A refusal throws a KvmError;
   * with EAGAIN (a page has references beyond the page cache's, e.g. a pin) and ENOMEM it carries
   * `errorOffset`, the byte offset the kernel writes back.
   */
  async setMemoryAttributes2(a: MemoryAttributes2Args): Promise<void> {
    this.setMemoryAttributes2Sync(a);
  }
  setMemoryAttributes2Sync(a: MemoryAttributes2Args): void {
    const attributes =
      a.attributes === 'private' ? BigInt(KVM_MEMORY_ATTRIBUTE_PRIVATE) : a.attributes === 'shared' ? 0n : u64(a.attributes, 'attributes');
    const reserved = (a.reserved ?? []).map((w, i) => u64(w, `reserved.${i}`));
    if (reserved.length > ATTRIBUTES2_RESERVED_WORDS)
      throw new ArgumentError('reserved', `has ${ATTRIBUTES2_RESERVED_WORDS} words, got ${reserved.length}`);
    const args = { offset: u64(a.offset, 'offset'), size: u64(a.size, 'size'), attributes, flags: u64(a.flags ?? 0, 'flags'), reserved };
    this.requireOpen('KVM_SET_MEMORY_ATTRIBUTES2');
    const res = this.sb.withGmemFd(this.fd, (f) => (f < 0 ? { r: f } : gmemIoctlSetAttributes2(this.sb.k.g, f, args)));
    if (res.r < 0) throw new KvmError('KVM_SET_MEMORY_ATTRIBUTES2', res.r, undefined, undefined, undefined, res.errorOffset);
  }

  /** The folio cached at `offset`, or null for a hole. */
  folioAt(offset: number | string): FolioInfo | null {
    this.requireOpen('folioAt');
    const g = this.sb.k.g;
    const pfn = g.inodes.peek(g.files.inode(this.file), Math.floor(int(offset, 'offset') / PAGE_SIZE));
    if (pfn < 0) return null;
    return {
      pfn,
      uptodate: g.folios.test(pfn, PG_UPTODATE),
      hwpoison: g.folios.test(pfn, PG_HWPOISON),
      refcount: g.folios.refcount(pfn),
      pincount: g.folios.pincount(pfn),
    };
  }

  private requireOpen(op: string): void {
    if (this.sb.gmemFileOfFd(this.fd) !== this.file) throw new KvmError(op, -Errno.EBADF);
  }
}
