// The typed library API: a sandbox of VMs, guest_memfds and vCPUs driven like the KVM uAPI.
// Every call validates its arguments, runs the modelled ioctl, and throws a KvmError carrying
// the kernel's errno when the kernel would refuse it; a refused call changes nothing.

import type { DirectPlatform } from '../../firmware/direct.js';
import type { MailboxPlatform } from '../../firmware/mailbox.js';
import { openKernel, type PlatformKind, type SyncMode } from '../../firmware/open.js';
import { FwCmd } from '../../firmware/snp.js';
import { PG_HWPOISON, PG_UPTODATE } from '../../gmem/folio.js';
import { FALLOC_MODE_NAMES, type FallocModeName, gmemFallocate } from '../../gmem/fallocate.js';
import { gmemCreate, gmemErrorFolio, gmemLink } from '../../gmem/guest_memfd.js';
import type { PolicyName } from '../../gmem/policy.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../kvm/attributes.js';
import type { KvmCtx } from '../../kvm/ctx.js';
import { kvmDestroyVm, kvmSetMemoryAttributes, kvmSetMemoryRegion, kvmVcpuPreFaultMemory } from '../../kvm/kvm_main.js';
import { kvmGmemClose } from '../../kvm/task_work.js';
import { FdKind, FdTable, MAX_FDS, fdputGmem } from '../../kvm/fdtable.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../../kvm/memslots.js';
import { SNP_PAGE_TYPE_NAMES, SnpPageType } from '../../kvm/psp.js';
import { snpLaunchFinish, snpLaunchStart, snpLaunchUpdate } from '../../kvm/sev.js';
import { KvmVcpu, type MemoryFaultExit } from '../../kvm/vcpu.js';
import { VM_TYPES, type VmTypeName } from '../../kvm/vm.js';
import { Errno, errnoName, type ErrnoCode } from '../../shm/errno.js';
import type { Mem } from '../../shm/layout.js';
import { PAGE_SIZE, SandboxLimitError } from '../../shm/limits.js';
import { type StatsSnapshot, sumStats } from '../../shm/stats.js';
import { SyncControl } from '../../shm/sync/control.js';
import { EXIT_NAMES, Exit, type ExitName, GuestCpu } from '../../vcpu-workers/guest.js';
import { type SandboxDescriptor, type SandboxOptions, buildSandboxMemory } from './build.js';
import { ArgumentError, KvmError, SandboxClosedError, check } from './errors.js';
import { parseSize } from './units.js';

/** Thread ids: the controller is 0; workers take the ids above. */
export const TID_CONTROLLER = 0;

type FdEntry = { kind: 'gmem'; file: number } | { kind: 'vm'; vm: number } | { kind: 'vcpu' };
const FD_KIND = { gmem: FdKind.GMEM, vm: FdKind.VM, vcpu: FdKind.VCPU } as const;

/** What a guest access saw: the bytes read, or the exit that stopped it. */
export type GuestAccessResult =
  { ok: true; data: Uint8Array } | { ok: false; exit: Exclude<ExitName, 'none'>; errno?: ErrnoCode; memoryFault?: MemoryFaultExit };

export interface RmpQuery {
  present: boolean;
  pfn?: number;
  assigned?: boolean;
  asid?: number;
  gpa?: number;
  validated?: boolean;
  immutable?: boolean;
}

export interface FolioInfo {
  pfn: number;
  uptodate: boolean;
  hwpoison: boolean;
  refcount: number;
}

function int(v: unknown, field: string, min = 0): number {
  const n = parseSize(v, field);
  if (n < min) throw new ArgumentError(field, `must be at least ${min}, got ${n}`);
  return n;
}

export class Sandbox {
  readonly mem: Mem;
  readonly k: KvmCtx;
  readonly psp: DirectPlatform | MailboxPlatform;
  readonly control: SyncControl;
  readonly policy: PolicyName;
  /** The process's fd table: shared by every Sandbox attached to this memory (every VMM thread). */
  readonly fdt: FdTable;
  private closed = false;

  private constructor(
    readonly descriptor: SandboxDescriptor,
    tid = TID_CONTROLLER,
    opts: { mode?: SyncMode; platform?: PlatformKind } = {},
  ) {
    this.policy = descriptor.policy;
    this.k = openKernel({
      buffers: descriptor.buffers,
      kernel: descriptor.kernel,
      tid,
      mode: opts.mode ?? 'free',
      platform: opts.platform ?? 'direct',
    });
    this.mem = this.k.mem;
    this.psp = this.k.psp as DirectPlatform | MailboxPlatform;
    this.control = new SyncControl(this.mem);
    this.fdt = new FdTable(this.mem);
  }

  /** Builds a sandbox; options are checked first and a bad one throws naming the field. */
  static async create(options: SandboxOptions = {}): Promise<Sandbox> {
    return new Sandbox(buildSandboxMemory(options));
  }

  /**
   * Joins an existing sandbox from another thread (the VMM worker): same shared memory, its own
   * thread id, and firmware commands through the firmware worker's mailbox.
   */
  static attach(descriptor: SandboxDescriptor, tid: number, opts: { mode?: SyncMode; platform?: PlatformKind } = {}): Sandbox {
    return new Sandbox(descriptor, tid, { platform: 'mailbox', ...opts });
  }

  /** Same as create, for callers that cannot await (tests of single-threaded rules, tools). */
  static createSync(options: SandboxOptions = {}): Sandbox {
    return new Sandbox(buildSandboxMemory(options));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** A new fd for `e` (the lowest free one, as open(2) gives); EMFILE when the table is full. */
  allocFd(e: FdEntry): number {
    const fd = this.fdt.install(FD_KIND[e.kind], e.kind === 'gmem' ? e.file : e.kind === 'vm' ? e.vm : 0);
    if (fd < 0) throw new SandboxLimitError('fds', `at most ${MAX_FDS} file descriptors in the VMM process`);
    return fd;
  }

  /**
   * Runs `fn` with a reference on the guest_memfd at `fd` (fdget ... fdput): the file's handle,
   * or the errno of the lookup (EBADF, or EINVAL for an fd that is no guest_memfd).
   */
  withGmemFd<T>(fd: number, fn: (file: number) => T): T {
    const file = this.fdt.fgetGmem(this.k, fd);
    try {
      return fn(file);
    } finally {
      fdputGmem(this.k, file);
    }
  }

  /** The gmem file `fd` names now, without a reference (a check): its handle, or EBADF / EINVAL. */
  gmemFileOfFd(fd: number): number {
    const e = this.fdt.peek(fd);
    if (e === null) return -Errno.EBADF;
    if (e.kind !== FdKind.GMEM) return -Errno.EINVAL;
    return e.value;
  }

  /** close(2), returning its errno: drops the fd's reference; a gmem file is released with its last one. */
  closeFdRaw(fd: number): number {
    const e = this.fdt.remove(fd);
    if (e === null) return -Errno.EBADF;
    if (e.kind === FdKind.GMEM) kvmGmemClose(this.k, e.value);
    return 0;
  }

  /** close(2): throws EBADF for an fd that is not open. */
  closeFd(fd: number): void {
    check('close', this.closeFdRaw(fd));
  }

  /**
   * Closes every fd, guest_memfds first (each pins its VM), then the VMs: kvm_destroy_vm frees
   * their memslots. A VM some file still pins (a reference held elsewhere) is left, as the
   * kernel leaves it, and the teardown audit reports it.
   */
  closeAllFds(): void {
    for (const e of this.fdt.open()) if (e.kind === FdKind.GMEM) this.closeFdRaw(e.fd);
    for (const e of this.fdt.open()) {
      this.fdt.remove(e.fd);
      if (e.kind === FdKind.VM) kvmDestroyVm(this.k, e.value);
    }
  }

  async createVm(opts: { type?: VmTypeName } = {}): Promise<Vm> {
    return this.createVmSync(opts);
  }

  createVmSync(opts: { type?: VmTypeName } = {}): Vm {
    const type = opts.type ?? 'snp';
    const t = (VM_TYPES as readonly string[]).indexOf(type);
    if (t < 0) throw new ArgumentError('type', `must be one of ${VM_TYPES.join(', ')}, got '${type}'`);
    const vm = this.k.vms.create(t);
    if (vm < 0) throw new SandboxLimitError('vms', `at most ${this.mem.limits.maxVms} VMs in this sandbox (option maxVms)`);
    const fd = this.allocFd({ kind: 'vm', vm });
    return new Vm(this, vm, type, fd);
  }

  /** Counters summed over every thread. */
  stats(): StatsSnapshot {
    return sumStats(this.mem);
  }

  /** Makes a signal pending for the controller thread: the next interruptible loop gets EINTR. */
  raiseSignal(tid = TID_CONTROLLER): void {
    this.control.raiseSignal(tid);
  }

  /** Fault injection: the next `n` firmware commands of a kind fail. */
  injectFirmwareFailures(cmd: keyof typeof FwCmd, n = 1): void {
    this.psp.core.injectFailures(FwCmd[cmd], n);
  }

  /** Fault injection: the allocator keeps `pages` pages back (0 ends it). */
  reserveHostPages(pages: number): void {
    this.k.g.alloc.setReserve(pages);
  }

  freeHostPages(): number {
    return this.k.g.alloc.freeCount();
  }

  /** Bytes of a host page, as the host sees them (for checks; the host must not write them). */
  hostPage(pfn: number): Uint8Array {
    return this.mem.host.slice(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closeAllFds();
    this.closed = true;
  }
}

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

export class Vm {
  constructor(
    readonly sb: Sandbox,
    readonly id: number,
    readonly type: VmTypeName,
    readonly fd: number,
  ) {}

  get asid(): number {
    return this.sb.k.vms.asid(this.id);
  }

  // KVM_CREATE_GUEST_MEMFD
  /** `flags` is the uAPI's u64: a bigint reaches bits above 2^53. */
  async createGuestMemfd(args: { size: number | string; flags?: number | bigint }): Promise<GuestMemfd> {
    return this.createGuestMemfdSync(args);
  }
  createGuestMemfdSync(args: { size: number | string; flags?: number | bigint }): GuestMemfd {
    const size = parseSize(args.size, 'size');
    const f = check('KVM_CREATE_GUEST_MEMFD', gmemCreate(this.sb.k.g, this.id, size, args.flags ?? 0));
    return new GuestMemfd(this.sb, f, this.sb.allocFd({ kind: 'gmem', file: f }));
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
   * KVM_SEV_SNP_LAUNCH_UPDATE: populates [gpa, gpa + len) with `data` (or zeros for type 'zero').
   * Returns the pages done. A failure of kvm_gmem_populate throws EIO, as the kernel returns,
   * with the populate errno (EEXIST, EINVAL, ...) in `populateError`.
   */
  async snpLaunchUpdate(a: {
    gpa: number | string;
    len?: number | string;
    type?: keyof typeof SNP_PAGE_TYPE_NAMES;
    data?: Uint8Array;
  }): Promise<{ pagesDone: number }> {
    return this.snpLaunchUpdateSync(a);
  }
  snpLaunchUpdateSync(a: { gpa: number | string; len?: number | string; type?: keyof typeof SNP_PAGE_TYPE_NAMES; data?: Uint8Array }): {
    pagesDone: number;
  } {
    const gpa = int(a.gpa, 'gpa');
    // Without len, the data rounded up to whole pages (at least one page).
    const len = a.len === undefined ? Math.max(1, Math.ceil((a.data?.length ?? 0) / PAGE_SIZE)) * PAGE_SIZE : int(a.len, 'len');
    const typeName = a.type ?? 'normal';
    if (!(typeName in SNP_PAGE_TYPE_NAMES))
      throw new ArgumentError('type', `must be one of ${Object.keys(SNP_PAGE_TYPE_NAMES).join(', ')}`);
    const type = SNP_PAGE_TYPE_NAMES[typeName];
    let src: Uint8Array | null = null;
    if (type !== SnpPageType.ZERO) {
      src = new Uint8Array(Math.ceil(len / PAGE_SIZE) * PAGE_SIZE);
      if (a.data !== undefined) src.set(a.data.subarray(0, src.length));
    }
    if (gpa % PAGE_SIZE !== 0) throw new KvmError('KVM_SEV_SNP_LAUNCH_UPDATE', -Errno.EINVAL, 'gpa must be page aligned');
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
    const id = this.sb.k.vms.addVcpu(this.id);
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
    const e = this.sb.psp.rmpLookup(pfn);
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

  isPrivate(gpa: number): boolean {
    return this.sb.k.attrs.isPrivate(this.id, Math.floor(gpa / PAGE_SIZE));
  }
}

export class GuestMemfd {
  constructor(
    readonly sb: Sandbox,
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

export class Vcpu {
  readonly cpu: GuestCpu;
  constructor(
    readonly vm: Vm,
    readonly kvcpu: KvmVcpu,
  ) {
    this.cpu = new GuestCpu(vm.sb.k, kvcpu);
  }

  /** KVM_PRE_FAULT_MEMORY: returns the range left (gpa advanced, size shrunk) as the ioctl does. */
  async preFaultMemory(a: { gpa: number | string; size: number | string; flags?: number }): Promise<{ gpa: number; size: number }> {
    const range = { gpa: int(a.gpa, 'gpa', -Infinity), size: int(a.size, 'size', -Infinity), flags: a.flags ?? 0 };
    check('KVM_PRE_FAULT_MEMORY', kvmVcpuPreFaultMemory(this.vm.sb.k, this.kvcpu, range));
    return { gpa: range.gpa, size: range.size };
  }

  private result(code: number, data: Uint8Array): GuestAccessResult {
    if (code === Exit.NONE) return { ok: true, data };
    const exit = EXIT_NAMES[code] as Exclude<ExitName, 'none'>;
    if (code === Exit.MEMORY_FAULT) {
      return { ok: false, exit, errno: errnoName(this.cpu.lastErrno), ...(this.kvcpu.exit ? { memoryFault: { ...this.kvcpu.exit } } : {}) };
    }
    return { ok: false, exit };
  }

  /** A guest read; `private` defaults to what the VM's attributes say of gpa. */
  async read(gpa: number | string, len: number, opts: { private?: boolean } = {}): Promise<GuestAccessResult> {
    return this.readSync(gpa, len, opts);
  }
  readSync(gpa: number | string, len: number, opts: { private?: boolean } = {}): GuestAccessResult {
    const a = int(gpa, 'gpa');
    const out = new Uint8Array(int(len, 'len', 1));
    return this.result(this.cpu.access(a, out.length, opts.private ?? this.vm.isPrivate(a), out, null), out);
  }

  async write(gpa: number | string, data: Uint8Array, opts: { private?: boolean } = {}): Promise<GuestAccessResult> {
    return this.writeSync(gpa, data, opts);
  }
  writeSync(gpa: number | string, data: Uint8Array, opts: { private?: boolean } = {}): GuestAccessResult {
    const a = int(gpa, 'gpa');
    return this.result(this.cpu.access(a, data.length, opts.private ?? this.vm.isPrivate(a), null, data), new Uint8Array(0));
  }

  /** PVALIDATE: { ok, code } with the instruction's return code, or the exit taken. */
  async pvalidate(
    gpa: number | string,
    validate = true,
  ): Promise<{ ok: true; code: number } | { ok: false; exit: Exclude<ExitName, 'none'>; errno?: ErrnoCode }> {
    if (this.vm.type !== 'snp') throw new ArgumentError('pvalidate', 'PVALIDATE exists only in SNP guests');
    const r = this.cpu.pvalidate(int(gpa, 'gpa'), validate);
    if (r >= 0) return { ok: true, code: r };
    const res = this.result(-r, new Uint8Array(0));
    if (res.ok) throw new Error('unreachable');
    return res;
  }
}

/**
 * Every method of the API objects refuses to run once their sandbox is closed: an async one
 * rejects, a sync one throws, a SandboxClosedError either way, and nothing is changed. Done once
 * per class, so a method added later is covered too.
 */
function refuseAfterClose(cls: { name: string; prototype: object }, sandboxOf: (self: never) => Sandbox, except: string[] = []): void {
  for (const name of Object.getOwnPropertyNames(cls.prototype)) {
    const desc = Object.getOwnPropertyDescriptor(cls.prototype, name);
    if (name === 'constructor' || except.includes(name) || desc === undefined || typeof desc.value !== 'function') continue;
    const f = desc.value as (...a: unknown[]) => unknown;
    const isAsync = f.constructor.name === 'AsyncFunction';
    Object.defineProperty(cls.prototype, name, {
      ...desc,
      value: function guarded(this: never, ...args: unknown[]): unknown {
        if (sandboxOf(this).isClosed) {
          const e = new SandboxClosedError(`${cls.name}.${name}`, 'close');
          if (isAsync) return Promise.reject(e);
          throw e;
        }
        return f.apply(this, args);
      },
    });
  }
}
refuseAfterClose(Sandbox, (s: Sandbox) => s, ['close']);
refuseAfterClose(Vm, (v: Vm) => v.sb);
refuseAfterClose(GuestMemfd, (g: GuestMemfd) => g.sb);
refuseAfterClose(Vcpu, (c: Vcpu) => c.vm.sb);
