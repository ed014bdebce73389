// The typed library API: a sandbox of VMs, guest_memfds and vCPUs driven like the KVM uAPI.
// Every call validates its arguments, runs the modelled ioctl, and throws a KvmError carrying
// the kernel's errno when the kernel would refuse it; a refused call changes nothing.

import type { DirectPlatform } from '../../firmware/direct.js';
import type { MailboxPlatform } from '../../firmware/mailbox.js';
import { openKernel, type PlatformKind, type SyncMode } from '../../firmware/open.js';
import { FwCmd } from '../../firmware/snp.js';
import { injectSlabFailures } from '../../gmem/failslab.js';
import { lruAddDrainAll } from '../../gmem/filemap.js';
import { gmemUnpinAll } from '../../gmem/gup.js';
import type { ModuleParams } from '../../gmem/params.js';
import type { PolicyName } from '../../gmem/policy.js';
import type { KvmCtx } from '../../kvm/ctx.js';
import { KVM_CAP_NAMES, type KvmCapName, kvmCheckExtension } from '../../kvm/check_extension.js';
import { kvmExitMm } from '../../kvm/host_mm.js';
import { kvmDestroyVm } from '../../kvm/kvm_main.js';
import { kvmGmemClose } from '../../kvm/task_work.js';
import { FdKind, FdTable, MAX_FDS, fdputGmem } from '../../kvm/fdtable.js';
import { VM_TYPES, type VmTypeName } from '../../kvm/vm.js';
import { Errno } from '../../shm/errno.js';
import type { Mem } from '../../shm/layout.js';
import { PAGE_SIZE, SandboxLimitError } from '../../shm/limits.js';
import { type StatsSnapshot, sumStats } from '../../shm/stats.js';
import { SyncControl } from '../../shm/sync/control.js';
import { type SandboxDescriptor, type SandboxOptions, buildSandboxMemory } from './build.js';
import { ArgumentError, SandboxClosedError, check } from './errors.js';
import { FD_KIND, type FdEntry, type SandboxPort } from './port.js';

import { GuestMemfd } from './guest-memfd.js';
import { GupPin, HostMapping } from './host-mapping.js';
import { Vcpu } from './vcpu.js';
import { Vm } from './vm.js';

/** Thread ids: the controller is 0; workers take the ids above. */
export const TID_CONTROLLER = 0;

export type { FolioInfo, GuestAccessResult, RmpQuery } from './port.js';
export type { LaunchUpdateArgs, UserMemoryRegion2Args } from './vm.js';
export type { MemoryAttributes2Args } from './guest-memfd.js';
export { GuestMemfd, GupPin, HostMapping, Vcpu, Vm };

export class Sandbox implements SandboxPort {
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
    this.fdt = new FdTable(this.mem, this.k.sync);
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
   * Unmaps every guest_memfd mapping, then closes every fd, guest_memfds first (each pins its
   * VM), then the VMs: kvm_destroy_vm frees
   * their memslots. A VM some file still pins (a reference held elsewhere) is left, as the
   * kernel leaves it, and the teardown audit reports it.
   */
  closeAllFds(): void {
    // The pinning device goes first (its file's release unpins), then do_exit: exit_mm before
    // exit_files, so the mappings' file references go first.
    gmemUnpinAll(this.k.g);
    kvmExitMm(this.k);
    for (const e of this.fdt.open()) if (e.kind === FdKind.GMEM) this.closeFdRaw(e.fd);
    for (const e of this.fdt.open()) {
      this.fdt.remove(e.fd);
      if (e.kind === FdKind.VM) kvmDestroyVm(this.k, e.value);
    }
    // The per-CPU LRU batches move on as the CPUs go on: their last references go.
    if (this.k.version.setMemoryAttributes2) lruAddDrainAll(this.k.g);
  }

  /** kvm.ko's module parameters this sandbox's kernel was loaded with. */
  get moduleParams(): Required<ModuleParams> {
    return { ...this.descriptor.moduleParams };
  }

  /**
   * echo 1 > /proc/sys/vm/drop_caches: lru_add_drain_all, which drops the references the per-CPU
   * LRU batches hold on folios added lately (7.4 models them); guest_memfd's folios themselves are
   * unevictable and stay.
   */
  dropCaches(): void {
    if (this.k.version.setMemoryAttributes2) lruAddDrainAll(this.k.g);
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

  /** KVM_CHECK_EXTENSION on /dev/kvm (kvm == NULL): the capability's value (0 for one the kernel lacks). */
  checkExtension(cap: KvmCapName): number {
    if (!(cap in KVM_CAP_NAMES)) throw new ArgumentError('cap', `must be one of ${Object.keys(KVM_CAP_NAMES).join(', ')}, got '${cap}'`);
    return kvmCheckExtension(this.k, null, KVM_CAP_NAMES[cap]);
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

  /**
   * Fault injection (failslab): the next `n` allocations of guest_memfd's maple tree and xarray
   * nodes fail with ENOMEM: KVM_SET_MEMORY_ATTRIBUTES2 and 7.4's KVM_CREATE_GUEST_MEMFD answer
   * ENOMEM, and a memslot's binding fails (7.4: ENOMEM; before e6ecb88711d9 the error was ignored).
   */
  injectSlabFailures(n: number): void {
    if (!Number.isInteger(n) || n < 0) throw new ArgumentError('n', `must be a non-negative integer, got ${n}`);
    injectSlabFailures(this.mem, n);
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

/**
 * Every method of the API objects refuses to run once their sandbox is closed: an async one
 * rejects, a sync one throws, a SandboxClosedError either way, and nothing is changed. Done once
 * per class, so a method added later is covered too.
 */
function refuseAfterClose(cls: { name: string; prototype: object }, sandboxOf: (self: never) => SandboxPort, except: string[] = []): void {
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
refuseAfterClose(HostMapping, (m: HostMapping) => m.sb);
refuseAfterClose(GupPin, (p: GupPin) => p.sb);
