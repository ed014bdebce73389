// The API's guest_memfd: fallocate, close, fstat, the refused read/write, memory failure, and a
// look at the folio behind an offset.

import { PG_HWPOISON, PG_UPTODATE } from '../../gmem/folio.js';
import { FALLOC_MODE_NAMES, type FallocModeName, gmemFallocate } from '../../gmem/fallocate.js';
import { gmemErrorFolio } from '../../gmem/guest_memfd.js';
import { Errno } from '../../shm/errno.js';
import { PAGE_SIZE } from '../../shm/limits.js';
import { ArgumentError, KvmError, check } from './errors.js';
import { type FolioInfo, type SandboxPort, int } from './port.js';

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

  /** The folio cached at `offset`, or null for a hole. */
  folioAt(offset: number | string): FolioInfo | null {
    this.requireOpen('folioAt');
    const g = this.sb.k.g;
    const pfn = g.inodes.peek(g.files.inode(this.file), Math.floor(int(offset, 'offset') / PAGE_SIZE));
    if (pfn < 0) return null;
    return { pfn, uptodate: g.folios.test(pfn, PG_UPTODATE), hwpoison: g.folios.test(pfn, PG_HWPOISON), refcount: g.folios.refcount(pfn) };
  }

  private requireOpen(op: string): void {
    if (this.sb.gmemFileOfFd(this.fd) !== this.file) throw new KvmError(op, -Errno.EBADF);
  }
}
