// The API's VM: the VM ioctls (guest_memfd, memslots, attributes, SNP launch, vCPUs) and
// queries of the RMP and the backing of a gpa.

import { GUEST_MEMFD_FLAG_NAMES, type GuestMemfdFlagName } from '../../gmem/flags.js';
import { gmemCreate, gmemLink } from '../../gmem/guest_memfd.js';
import { KVM_CAP_NAMES, type KvmCapName, kvmCheckExtension } from '../../kvm/check_extension.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../kvm/attributes.js';
import { kvmSetMemoryAttributes, kvmSetMemoryRegion } from '../../kvm/kvm_main.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../../kvm/memslots.js';
import { SNP_PAGE_TYPE_NAMES } from '../../kvm/psp.js';
import { kvmVmIoctlCreateVcpu } from '../../kvm/kvm_vcpu_ioctl.js';
import { snpLaunchFinish, snpLaunchStart, snpLaunchUpdate } from '../../kvm/sev.js';
import { guestAccessIsPrivate } from '../../kvm/private_mem.js';
import { kvmTaskWork } from '../../kvm/task_work.js';
import { KvmVcpu } from '../../kvm/vcpu.js';
import { type VmTypeName } from '../../kvm/vm.js';
import { Errno, errnoName } from '../../shm/errno.js';
import { PAGE_SIZE, SandboxLimitError } from '../../shm/limits.js';
import { ArgumentError, KvmError, check } from './errors.js';
import { type RmpQuery, type SandboxPort, type VmPort, int } from './port.js';
import { parseSize } from './units.js';

import { GuestMemfd } from './guest-memfd.js';
import { Vcpu } from './vcpu.js';
import { pfnOf } from '../../shm/frames.js';

export interface UserMemoryRegion2Args {
  slot: number;
  flags?: number | Array<'guest_memfd' | 'readonly' | 'log_dirty_pages'>;
  guestPhysAddr: number | string;
  memorySize: number | string;
  userspaceAddr?: number | string;
  /** A guest_memfd (object or fd number). */
  guestMemfd?: GuestMemfd | number;
  guestMemfdOffset?: number | string;
}

const MEM_FLAG_NAMES = { guest_memfd: KVM_MEM_GUEST_MEMFD, readonly: KVM_MEM_READONLY, log_dirty_pages: KVM_MEM_LOG_DIRTY_PAGES } as const;

/** The arguments of KVM_SEV_SNP_LAUNCH_UPDATE (see Vm.snpLaunchUpdate). */
export interface LaunchUpdateArgs {
  gpa: number | string;
  len?: number | string;
  type?: keyof typeof SNP_PAGE_TYPE_NAMES;
  /**
   * The source bytes (zero-padded to len); null is a NULL uaddr: no source at all, which 7.4
   * with gmem_in_place_conversion takes to measure the pages' own contents in place, and every
   * other kernel refuses (EIO, populate EINVAL; before 7.0 EFAULT).
   */
  data?: Uint8Array | null;
  sourcePages?: number;
  sourceOffset?: number;
}

export class Vm implements VmPort {
  constructor(
    readonly sb: SandboxPort,
    readonly id: number,
    readonly type: VmTypeName,
    readonly fd: number,
  ) {}

  get asid(): number {
    return this.sb.k.vms.asid(this.id);
  }

  // KVM_CREATE_GUEST_MEMFD
  /** `flags` is the uAPI's u64 (a bigint reaches bits above 2^53), or names: 'mmap', 'init_shared' (6.18). */
  async createGuestMemfd(args: { size: number | string; flags?: number | bigint | GuestMemfdFlagName[] }): Promise<GuestMemfd> {
    return this.createGuestMemfdSync(args);
  }
  createGuestMemfdSync(args: { size: number | string; flags?: number | bigint | GuestMemfdFlagName[] }): GuestMemfd {
    const size = parseSize(args.size, 'size');
    let flags: number | bigint = 0;
    if (Array.isArray(args.flags)) {
      for (const n of args.flags) {
        if (!(n in GUEST_MEMFD_FLAG_NAMES))
          throw new ArgumentError('flags', `unknown guest_memfd flag '${n}'; known: ${Object.keys(GUEST_MEMFD_FLAG_NAMES).join(', ')}`);
        flags |= GUEST_MEMFD_FLAG_NAMES[n];
      }
    } else flags = args.flags ?? 0;
    const f = check('KVM_CREATE_GUEST_MEMFD', gmemCreate(this.sb.k.g, this.id, size, flags));
    return new GuestMemfd(this.sb, f, this.sb.allocFd({ kind: 'gmem', file: f }));
  }

  /** KVM_CHECK_EXTENSION on this VM's fd: the capability's value (0 for one the kernel lacks). */
  checkExtension(cap: KvmCapName): number {
    if (!(cap in KVM_CAP_NAMES)) throw new ArgumentError('cap', `must be one of ${Object.keys(KVM_CAP_NAMES).join(', ')}, got '${cap}'`);
    return kvmCheckExtension(this.sb.k, this.id, KVM_CAP_NAMES[cap]);
  }

  /** KVM_LINK_GUEST_MEMFD (experimental): this VM gets its own file on `gmem`'s inode. */
  async linkGuestMemfd(gmem: GuestMemfd | number): Promise<GuestMemfd> {
    return this.linkGuestMemfdSync(gmem);
  }
  linkGuestMemfdSync(gmem: GuestMemfd | number): GuestMemfd {
    const fd = typeof gmem === 'number' ? gmem : gmem.fd;
    const f = check(
      'KVM_LINK_GUEST_MEMFD',
      this.sb.withGmemFd(fd, (file) => (file < 0 ? file : gmemLink(this.sb.k.g, file, this.id))),
    );
    return new GuestMemfd(this.sb, f, this.sb.allocFd({ kind: 'gmem', file: f }));
  }

  // KVM_SET_USER_MEMORY_REGION2
  async setUserMemoryRegion2(a: UserMemoryRegion2Args): Promise<void> {
    this.setUserMemoryRegion2Sync(a);
  }
  setUserMemoryRegion2Sync(a: UserMemoryRegion2Args): void {
    let flags = 0;
    if (Array.isArray(a.flags)) {
      for (const n of a.flags) {
        if (!(n in MEM_FLAG_NAMES))
          throw new ArgumentError('flags', `unknown memslot flag '${n}'; known: ${Object.keys(MEM_FLAG_NAMES).join(', ')}`);
        flags |= MEM_FLAG_NAMES[n];
      }
    } else flags = a.flags ?? 0;
    const fd = a.guestMemfd === undefined ? -1 : typeof a.guestMemfd === 'number' ? a.guestMemfd : a.guestMemfd.fd;
    const region = {
      slot: int(a.slot, 'slot'),
      flags,
      guestPhysAddr: int(a.guestPhysAddr, 'guest_phys_addr', -Infinity),
      memorySize: int(a.memorySize, 'memory_size', -Infinity),
      userspaceAddr: int(a.userspaceAddr ?? 0, 'userspace_addr', -Infinity),
      guestMemfdOffset: int(a.guestMemfdOffset ?? 0, 'guest_memfd_offset', -Infinity),
    };
    check(
      'KVM_SET_USER_MEMORY_REGION2',
      this.sb.withGmemFd(fd, (gmemFile) => kvmSetMemoryRegion(this.sb.k, this.id, { ...region, gmemFile })),
    );
  }

  // KVM_SET_MEMORY_ATTRIBUTES
  async setMemoryAttributes(a: {
    address: number | string;
    size: number | string;
    attributes: number | 'private' | 'shared';
    flags?: number;
  }): Promise<void> {
    this.setMemoryAttributesSync(a);
  }
  setMemoryAttributesSync(a: {
    address: number | string;
    size: number | string;
    attributes: number | 'private' | 'shared';
    flags?: number;
  }): void {
    const attrs = a.attributes === 'private' ? KVM_MEMORY_ATTRIBUTE_PRIVATE : a.attributes === 'shared' ? 0 : a.attributes;
    if (typeof attrs !== 'number') throw new ArgumentError('attributes', `must be 'private', 'shared' or a number`);
    check(
      'KVM_SET_MEMORY_ATTRIBUTES',
      kvmSetMemoryAttributes(this.sb.k, this.id, int(a.address, 'address', -Infinity), int(a.size, 'size', -Infinity), attrs, a.flags ?? 0),
    );
  }

  // KVM_SEV_SNP_LAUNCH_START
  async snpLaunchStart(): Promise<void> {
    this.snpLaunchStartSync();
  }
  snpLaunchStartSync(): void {
    check('KVM_SEV_SNP_LAUNCH_START', snpLaunchStart(this.sb.k, this.sb.psp, this.id));
  }

  /**
   * KVM_SEV_SNP_LAUNCH_UPDATE: populates [gpa, gpa + len) with `data` (zero-padded; none for type
   * 'zero'). Returns the pages done: fewer than len's when a page after the first fails (the
   * kernel reports that as success with partial progress). A failure of the first page throws
   * EIO, as the kernel returns, with kvm_gmem_populate's errno (EEXIST, EINVAL, EFAULT, ...) in
   * `populateError`. `sourcePages` maps only that many source pages (a page past them faults);
   * `sourceOffset` is the source address's offset within its page (7.0 refuses one that is not 0).
   */
  async snpLaunchUpdate(a: LaunchUpdateArgs): Promise<{ pagesDone: number }> {
    return this.snpLaunchUpdateSync(a);
  }
  snpLaunchUpdateSync(a: LaunchUpdateArgs): { pagesDone: number } {
    const gpa = int(a.gpa, 'gpa');
    // Without len, the data rounded up to whole pages (at least one page).
    const len = a.len === undefined ? Math.max(1, Math.ceil((a.data?.length ?? 0) / PAGE_SIZE)) * PAGE_SIZE : int(a.len, 'len');
    const noSource = a.data === null;
    const typeName = a.type ?? 'normal';
    if (!(typeName in SNP_PAGE_TYPE_NAMES))
      throw new ArgumentError('type', `must be one of ${Object.keys(SNP_PAGE_TYPE_NAMES).join(', ')}`);
    const type = SNP_PAGE_TYPE_NAMES[typeName];
    const pages = Math.max(0, Math.ceil(len / PAGE_SIZE));
    const mapped = a.sourcePages === undefined ? pages : int(a.sourcePages, 'sourcePages');
    const offset = a.sourceOffset === undefined ? 0 : int(a.sourceOffset, 'sourceOffset');
    if (offset >= PAGE_SIZE) throw new ArgumentError('sourceOffset', `must be below the page size (${PAGE_SIZE}), got ${offset}`);
    const data = new Uint8Array(Math.min(pages, mapped) * PAGE_SIZE);
    if (a.data) data.set(a.data.subarray(0, data.length));
    if (gpa % PAGE_SIZE !== 0) throw new KvmError('KVM_SEV_SNP_LAUNCH_UPDATE', -Errno.EINVAL, 'gpa must be page aligned');
    const src = noSource ? null : { data, pageOffset: offset };
    const r = snpLaunchUpdate(this.sb.k, this.sb.psp, this.id, gpa / PAGE_SIZE, len, type, src);
    if (r.ret < 0) {
      throw new KvmError(
        'KVM_SEV_SNP_LAUNCH_UPDATE',
        r.ret,
        undefined,
        r.populateErr < 0 ? errnoName(r.populateErr) : undefined,
        r.fwError,
      );
    }
    return { pagesDone: r.pagesDone };
  }

  // KVM_SEV_SNP_LAUNCH_FINISH
  async snpLaunchFinish(): Promise<void> {
    this.snpLaunchFinishSync();
  }
  snpLaunchFinishSync(): void {
    check('KVM_SEV_SNP_LAUNCH_FINISH', snpLaunchFinish(this.sb.k, this.sb.psp, this.id));
  }

  /** The firmware's launch digest so far (SHA-384, hex). */
  snpLaunchDigest(): string {
    return Buffer.from(this.sb.psp.launchDigest(this.asid)).toString('hex');
  }

  async createVcpu(): Promise<Vcpu> {
    return this.createVcpuSync();
  }
  createVcpuSync(): Vcpu {
    const id = kvmVmIoctlCreateVcpu(this.sb.k, this.id);
    if (id < 0) throw new SandboxLimitError('vcpus', 'too many vCPUs for this VM');
    const slot = this.sb.k.vcpus.claim(this.id);
    if (slot < 0) throw new SandboxLimitError('vcpus', 'too many vCPUs in the sandbox');
    this.sb.allocFd({ kind: 'vcpu' });
    return new Vcpu(this, new KvmVcpu(this.id, id, slot, this.sb.k.vcpus, this.sb.mem, this.sb.k.sync));
  }

  /** The RMP entry of the folio now backing gpa (present: false when no folio backs it). */
  rmpQuery(gpa: number | string): RmpQuery {
    const pfn = this.backingPfn(int(gpa, 'gpa'));
    if (pfn < 0) return { present: false };
    const e = this.sb.psp.rmpLookup(pfnOf(pfn));
    return {
      present: true,
      pfn,
      assigned: e.assigned,
      asid: e.asid,
      gpa: e.gfn * PAGE_SIZE,
      validated: e.validated,
      immutable: e.immutable,
    };
  }

  /** The pfn cached in guest_memfd for gpa through this VM's memslot, or -1. */
  backingPfn(gpa: number): number {
    const k = this.sb.k;
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const s = k.memslots.lookup(this.id, gfn);
    if (s < 0) return -1;
    const m = k.memslots.info(this.id, s);
    if (m.gmemFile < 0 || !k.g.files.valid(m.gmemFile)) return -1;
    return k.g.inodes.peek(k.g.files.inode(m.gmemFile), gfn - m.baseGfn + m.gmemPgoff);
  }

  /** What a vCPU's access to gpa is by default: private where KVM says the gfn is (VMs with private memory only). */
  isPrivate(gpa: number): boolean {
    const k = this.sb.k;
    const priv = guestAccessIsPrivate(k, this.id, Math.floor(gpa / PAGE_SIZE));
    kvmTaskWork(k);
    return priv;
  }
}
