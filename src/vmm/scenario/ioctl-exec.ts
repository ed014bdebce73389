// Runs one ioctl-like scenario step against a Sandbox on the calling thread (the VMM worker),
// resolving VM and guest_memfd names, and reports its Outcome.

import { TraceKind } from '../../shm/trace.js';
import { hex, type Outcome, outcomeOfError } from '../../vcpu-workers/outcome.js';
import { bytesOfHex } from '../../vcpu-workers/ops.js';
import { type GupPin, GuestMemfd, type HostMapping, type Sandbox, type Vm } from '../sandbox/sandbox.js';
import { Errno } from '../../shm/errno.js';
import { PAGE_SIZE } from '../../shm/limits.js';
import type { IoctlStep } from './schema.js';

/** Ioctl steps in trace order: a trace event's arg is IOCTL_TRACE_BASE + the index here. */
export const IOCTL_STEPS = [
  'create_guest_memfd',
  'link_guest_memfd',
  'close',
  'set_user_memory_region2',
  'set_memory_attributes',
  'fallocate',
  'snp_launch_start',
  'snp_launch_update',
  'snp_launch_finish',
  'hwpoison',
  'rmp_query',
  'folio_query',
  'read',
  'write',
  'pread',
  'pwrite',
  'check_extension',
  'mmap',
  'munmap',
  'host_read',
  'host_write',
  'set_memory_attributes2',
  'gup_pin',
  'unpin',
] as const;
export const IOCTL_TRACE_BASE = 16;

export class IoctlExecutor {
  readonly vms = new Map<string, Vm>();
  readonly fds = new Map<string, GuestMemfd>();
  /** Mappings by name; a name outlives its munmap (an access there is then SIGSEGV). */
  readonly maps = new Map<string, HostMapping>();
  /** Pins by name; a name outlives its unpin (a second unpin is then EINVAL). */
  readonly pins = new Map<string, GupPin>();

  constructor(readonly sb: Sandbox) {}

  private fdNumber(ref: string | number): number {
    if (typeof ref === 'number') return ref;
    const g = this.fds.get(ref);
    if (g === undefined) throw new Error(`no guest_memfd named '${ref}'`);
    return g.fd;
  }
  /** The guest_memfd behind a name or fd number; a number that is no guest_memfd gives its errno. */
  private gmem(ref: string | number): GuestMemfd | number {
    if (typeof ref === 'string') return this.fds.get(ref) ?? this.fdNumber(ref);
    for (const g of this.fds.values()) if (g.fd === ref) return g;
    const file = this.sb.gmemFileOfFd(ref);
    return file < 0 ? ref : new GuestMemfd(this.sb, file, ref);
  }
  private gmemOrErrno(ref: string | number): GuestMemfd | Outcome {
    const g = this.gmem(ref);
    if (typeof g !== 'number') return g;
    const r = this.sb.gmemFileOfFd(g);
    return { result: r === -Errno.EINVAL ? 'EINVAL' : 'EBADF' };
  }
  private vm(name: string): Vm {
    const v = this.vms.get(name);
    if (v === undefined) throw new Error(`no VM named '${name}'`);
    return v;
  }

  exec(st: IoctlStep): Outcome {
    const tracer = this.sb.k.tracer;
    const t0 = tracer.on ? tracer.now() : 0;
    try {
      return this.run(st);
    } catch (e) {
      return outcomeOfError(e);
    } finally {
      if (tracer.on) tracer.record(TraceKind.IOCTL, IOCTL_TRACE_BASE + IOCTL_STEPS.indexOf(st.op), t0);
    }
  }

  private run(st: IoctlStep): Outcome {
    switch (st.op) {
      case 'create_guest_memfd': {
        const g = this.vm(st.vm).createGuestMemfdSync({ size: st.size, flags: st.flags ?? 0 });
        this.fds.set(st.as, g);
        return { result: 'ok', value: { fd: g.fd } };
      }
      case 'link_guest_memfd': {
        const g = this.vm(st.vm).linkGuestMemfdSync(this.gmem(st.fd));
        this.fds.set(st.as, g);
        return { result: 'ok', value: { fd: g.fd } };
      }
      case 'close':
        this.sb.closeFd(this.fdNumber(st.fd));
        return { result: 'ok' };
      case 'set_user_memory_region2':
        this.vm(st.vm).setUserMemoryRegion2Sync({
          slot: st.slot,
          flags: st.flags ?? 0,
          guestPhysAddr: st.guest_phys_addr,
          memorySize: st.memory_size,
          userspaceAddr: st.userspace_addr ?? 0,
          guestMemfd: st.guest_memfd === undefined ? undefined : this.gmem(st.guest_memfd),
          guestMemfdOffset: st.guest_memfd_offset ?? 0,
        });
        return { result: 'ok' };
      case 'set_memory_attributes':
        this.vm(st.vm).setMemoryAttributesSync({ address: st.address, size: st.size, attributes: st.attributes, flags: st.flags ?? 0 });
        return { result: 'ok' };
      case 'fallocate': {
        const g = this.gmemOrErrno(st.fd);
        if (!(g instanceof GuestMemfd)) return g;
        g.fallocateSync(st.mode, st.offset, st.len);
        return { result: 'ok' };
      }
      case 'snp_launch_start':
        this.vm(st.vm).snpLaunchStartSync();
        return { result: 'ok' };
      case 'snp_launch_update': {
        const r = this.vm(st.vm).snpLaunchUpdateSync({
          gpa: st.gpa,
          len: st.len,
          type: (st.type ?? 'normal') as 'normal',
          // No data: a NULL uaddr.
          data: st.data !== undefined ? bytesOfHex(st.data) : null,
          ...(st.source_pages !== undefined ? { sourcePages: st.source_pages } : {}),
          ...(st.source_offset !== undefined ? { sourceOffset: st.source_offset } : {}),
        });
        return { result: 'ok', value: { pages_done: r.pagesDone, digest: this.vm(st.vm).snpLaunchDigest() } };
      }
      case 'snp_launch_finish':
        this.vm(st.vm).snpLaunchFinishSync();
        return { result: 'ok', value: { digest: this.vm(st.vm).snpLaunchDigest() } };
      case 'hwpoison': {
        const g = this.gmemOrErrno(st.fd);
        if (!(g instanceof GuestMemfd)) return g;
        g.hwpoisonSync(st.offset);
        return { result: 'ok' };
      }
      case 'rmp_query':
        return { result: 'ok', value: this.vm(st.vm).rmpQuery(st.gpa) };
      case 'folio_query': {
        const g = this.gmemOrErrno(st.fd);
        if (!(g instanceof GuestMemfd)) return g;
        const f = g.folioAt(st.offset);
        return {
          result: 'ok',
          value: f === null ? { present: false } : { present: true, ...f, contents: hex(this.sb.hostPage(f.pfn).subarray(0, 16)) },
        };
      }
      case 'set_memory_attributes2':
      case 'gup_pin':
      case 'unpin':
        return this.runConversion(st);
      default:
        return this.runHostMm(st);
    }
  }

  /** 7.4's in-place conversion on the guest_memfd, and the device pins that can hold it back. */
  private runConversion(st: Extract<IoctlStep, { op: 'set_memory_attributes2' | 'gup_pin' | 'unpin' }>): Outcome {
    switch (st.op) {
      case 'set_memory_attributes2': {
        const g = this.gmemOrErrno(st.fd);
        if (!(g instanceof GuestMemfd)) return g;
        // A refusal's error_offset is the outcome's value (outcomeOfError).
        g.setMemoryAttributes2Sync({ offset: st.offset, size: st.size, attributes: st.attributes, flags: st.flags ?? 0 });
        return { result: 'ok' };
      }
      case 'gup_pin':
        this.pins.set(st.as, this.mapping(st.map).pinSync(st.offset));
        return { result: 'ok' };
      case 'unpin': {
        const p = this.pins.get(st.pin);
        if (p === undefined) throw new Error(`no pin named '${st.pin}'`);
        p.unpinSync();
        return { result: 'ok' };
      }
    }
  }

  private mapping(name: string): HostMapping {
    const m = this.maps.get(name);
    if (m === undefined) throw new Error(`no mapping named '${name}'`);
    return m;
  }

  /** The 6.18 host-mapping steps, the file I/O guest_memfd refuses, and KVM_CHECK_EXTENSION. */
  private runHostMm(st: HostMmStep): Outcome {
    if (st.op === 'check_extension') {
      const value = st.vm === undefined ? this.sb.checkExtension(st.cap) : this.vm(st.vm).checkExtension(st.cap);
      return { result: 'ok', value };
    }
    if (st.op === 'munmap' || st.op === 'host_read' || st.op === 'host_write') {
      const m = this.mapping(st.map);
      if (st.op === 'munmap') m.munmapSync();
      else if (st.op === 'host_write') m.writeSync(st.offset, bytesOfHex(st.data));
      else return { result: 'ok', value: hex(m.readSync(st.offset, st.len)) };
      return { result: 'ok' };
    }
    // Checked before the fd is looked up: pread's negative position, mmap's offset inside a page.
    if ((st.op === 'pread' || st.op === 'pwrite') && (st.offset ?? 0) < 0) return { result: 'EINVAL' };
    if (st.op === 'mmap' && st.offset % PAGE_SIZE !== 0) return { result: 'EINVAL' };
    const g = this.gmemOrErrno(st.fd);
    if (!(g instanceof GuestMemfd)) return g;
    switch (st.op) {
      case 'mmap':
        this.maps.set(st.as, g.mmapSync({ offset: st.offset, size: st.size, shared: st.shared ?? true }));
        return { result: 'ok' };
      case 'read':
        return g.read();
      case 'write':
        return g.write();
      case 'pread':
        return g.pread(st.offset ?? 0);
      case 'pwrite':
        return g.pwrite(st.offset ?? 0);
    }
  }
}

type HostMmStep = Extract<
  IoctlStep,
  { op: 'read' | 'write' | 'pread' | 'pwrite' | 'check_extension' | 'mmap' | 'munmap' | 'host_read' | 'host_write' }
>;
