// What the API objects (Vm, GuestMemfd, Vcpu) need of their sandbox, so that they do not import
// the Sandbox class that creates them; and the small types and helpers the API files share.

import type { DirectPlatform } from '../../firmware/direct.js';
import type { MailboxPlatform } from '../../firmware/mailbox.js';
import type { KvmCtx } from '../../kvm/ctx.js';
import type { VmTypeName } from '../../kvm/vm.js';
import { FdKind } from '../../kvm/fdtable.js';
import { type MemoryFaultExit } from '../../kvm/vcpu.js';
import { type ErrnoCode } from '../../shm/errno.js';
import type { Mem } from '../../shm/layout.js';
import { type ExitName } from '../../vcpu-workers/guest.js';
import { ArgumentError } from './errors.js';
import { parseSize } from './units.js';

export type FdEntry = { kind: 'gmem'; file: number } | { kind: 'vm'; vm: number } | { kind: 'vcpu' };
export const FD_KIND = { gmem: FdKind.GMEM, vm: FdKind.VM, vcpu: FdKind.VCPU } as const;

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
  /** Pins of pin_user_pages held on it (each also one of `refcount`). */
  pincount: number;
}

export function int(v: unknown, field: string, min = 0): number {
  const n = parseSize(v, field);
  if (n < min) throw new ArgumentError(field, `must be at least ${min}, got ${n}`);
  return n;
}

/**
 * A __u64 field: a bigint (every u64), a safe integer, or a string (a hex string of up to 16
 * digits reaches any u64; a size like "4KiB").
 */
export function u64(v: unknown, field: string): bigint {
  let n: bigint;
  if (typeof v === 'bigint') n = v;
  else if (typeof v === 'string' && /^0x[0-9a-f]{1,16}$/i.test(v.trim())) n = BigInt(v.trim());
  else n = BigInt(parseSize(v, field));
  if (n < 0n || n >= 1n << 64n) throw new ArgumentError(field, `must be a u64 (0 to 2^64 - 1), got ${n}`);
  return n;
}

/** The sandbox as its VMs, guest_memfds and vCPUs see it (Sandbox implements it). */
export interface SandboxPort {
  readonly k: KvmCtx;
  readonly mem: Mem;
  readonly psp: DirectPlatform | MailboxPlatform;
  readonly isClosed: boolean;
  allocFd(e: FdEntry): number;
  closeFd(fd: number): void;
  gmemFileOfFd(fd: number): number;
  withGmemFd<T>(fd: number, fn: (file: number) => T): T;
}

/** The VM as its vCPUs see it (Vm implements it). */
export interface VmPort {
  readonly sb: SandboxPort;
  readonly id: number;
  readonly type: VmTypeName;
  /** The gpa's memory attribute is PRIVATE. */
  isPrivate(gpa: number): boolean;
  /** The pfn backing the gpa (for checks). */
  backingPfn(gpa: number): number;
}
