// The API's vCPU: guest reads and writes through the fault path on the calling thread,
// PVALIDATE, and KVM_PRE_FAULT_MEMORY.

import { kvmVcpuPreFaultMemory } from '../../kvm/kvm_main.js';
import { KvmVcpu } from '../../kvm/vcpu.js';
import { errnoName, type ErrnoCode } from '../../shm/errno.js';
import { EXIT_NAMES, Exit, type ExitName, GuestCpu } from '../../vcpu-workers/guest.js';
import { ArgumentError, check } from './errors.js';
import { type GuestAccessResult, type VmPort, int } from './port.js';

export class Vcpu {
  readonly cpu: GuestCpu;
  constructor(
    readonly vm: VmPort,
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
