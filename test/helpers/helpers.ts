// Shared setup for the tests of the kernel model on the calling thread (test/model): small
// sandboxes, an SNP (or other) VM with a guest_memfd bound by a private memslot, and a few
// assertions used across files.

import { expect } from 'vitest';
import {
  type GuestAccessResult,
  type GuestMemfd,
  HOST_PATTERN,
  type KvmError,
  PAGE_SIZE,
  type PolicyName,
  Sandbox,
  type Vcpu,
  type Vm,
  type VmTypeName,
} from '../../src/index.js';
import { pfnOf } from '../../src/shm/frames.js';

export const KiB = 1024;
export const MiB = 1 << 20;
export { PAGE_SIZE };

/** KVM_MEMORY_EXIT_FLAG_PRIVATE */
export const EXIT_FLAG_PRIVATE = 8;

/** A sandbox small enough to build in a few milliseconds. */
export async function smallSandbox(policy: PolicyName = 'prepare-on-fault-own-vm', maxVms = 4): Promise<Sandbox> {
  return Sandbox.create({ policy, memory: '4MiB', gpaSpace: '32MiB', userMemory: '8MiB', gmemSpace: '32MiB', maxVms });
}

export interface SetupOptions {
  policy?: PolicyName;
  type?: VmTypeName;
  /** Size of the guest_memfd (default 1MiB). */
  gmemSize?: number;
  /** The memslot: gpa, size (default: the whole file at gpa 0), offset into the file, slot id. */
  gpa?: number;
  slotSize?: number;
  offset?: number;
  slot?: number;
  /** Set the memslot's range PRIVATE (default true; ignored for a 'default' VM). */
  private?: boolean;
  /** SNP launch phase to reach (default 'none'). */
  launch?: 'none' | 'started' | 'finished';
  /** Reuse a sandbox (for a second VM). */
  sb?: Sandbox;
}

export interface Setup {
  sb: Sandbox;
  vm: Vm;
  gmem: GuestMemfd;
  vcpu: Vcpu;
}

/** A sandbox + VM (SNP by default) + guest_memfd + a GUEST_MEMFD memslot over it, PRIVATE. */
export async function setupVm(o: SetupOptions = {}): Promise<Setup> {
  const sb = o.sb ?? (await smallSandbox(o.policy));
  const type = o.type ?? 'snp';
  const vm = await sb.createVm({ type });
  const gmemSize = o.gmemSize ?? MiB;
  const gmem = await vm.createGuestMemfd({ size: gmemSize });
  const gpa = o.gpa ?? 0;
  const slotSize = o.slotSize ?? gmemSize - (o.offset ?? 0);
  if (type !== 'default') {
    await vm.setUserMemoryRegion2({
      slot: o.slot ?? 0,
      flags: ['guest_memfd'],
      guestPhysAddr: gpa,
      memorySize: slotSize,
      guestMemfd: gmem,
      guestMemfdOffset: o.offset ?? 0,
    });
    if (o.private ?? true) await vm.setMemoryAttributes({ address: gpa, size: slotSize, attributes: 'private' });
  }
  if (type === 'snp' && o.launch !== undefined && o.launch !== 'none') {
    await vm.snpLaunchStart();
    if (o.launch === 'finished') await vm.snpLaunchFinish();
  }
  const vcpu = await vm.createVcpu();
  return { sb, vm, gmem, vcpu };
}

/** A second SNP VM in `a.sb` with its own file on `a.gmem`'s inode, bound at the same offset. */
export async function linkSecondVm(
  a: Setup,
  o: { gpa?: number; slotSize?: number; offset?: number; launch?: 'none' | 'finished' } = {},
): Promise<Setup> {
  const vm = await a.sb.createVm({ type: 'snp' });
  const gmem = await vm.linkGuestMemfd(a.gmem);
  const gpa = o.gpa ?? 0;
  const slotSize = o.slotSize ?? gmem.fstat().size - (o.offset ?? 0);
  await vm.setUserMemoryRegion2({
    slot: 0,
    flags: ['guest_memfd'],
    guestPhysAddr: gpa,
    memorySize: slotSize,
    guestMemfd: gmem,
    guestMemfdOffset: o.offset ?? 0,
  });
  await vm.setMemoryAttributes({ address: gpa, size: slotSize, attributes: 'private' });
  // A running second guest by default: an SNP vCPU cannot enter before LAUNCH_FINISH.
  if ((o.launch ?? 'finished') === 'finished') {
    await vm.snpLaunchStart();
    await vm.snpLaunchFinish();
  }
  const vcpu = await vm.createVcpu();
  return { sb: a.sb, vm, gmem, vcpu };
}

/** One page filled with a recognisable image (never zero, never HOST_PATTERN). */
export function image(seed: number, len = PAGE_SIZE): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    let b = (i * 31 + seed * 7 + 1) & 0xff;
    if (b === 0 || b === HOST_PATTERN) b = 0x11;
    out[i] = b;
  }
  return out;
}

/** Runs `fn` and returns what it threw (fails the test if it did not throw). */
export function thrown(fn: () => unknown): KvmError {
  try {
    fn();
  } catch (e) {
    return e as KvmError;
  }
  throw new Error('expected the call to throw');
}

/** The bytes of a successful guest access (fails the test on an exit). */
export function dataOf(r: GuestAccessResult): number[] {
  expect(r.ok, `guest access exited: ${JSON.stringify(r)}`).toBe(true);
  return r.ok ? [...r.data] : [];
}

export function filled(n: number, byte: number): number[] {
  return new Array<number>(n).fill(byte);
}

/** A private SNP page made usable by the guest: fault (exit vc), PVALIDATE, then a read of zeros. */
export async function faultAndValidate(vcpu: Vcpu, gpa: number): Promise<void> {
  expect(await vcpu.read(gpa, 1)).toEqual({ ok: false, exit: 'vc' });
  expect(await vcpu.pvalidate(gpa)).toEqual({ ok: true, code: 0 });
}

/** The RMP entry of a host pfn, whether or not any folio holds it now. */
export function rmpOfPfn(
  sb: Sandbox,
  pfn: number,
): { assigned: boolean; asid: number; gpa: number; validated: boolean; immutable: boolean } {
  const e = sb.psp.rmpLookup(pfnOf(pfn));
  return { assigned: e.assigned, asid: e.asid, gpa: e.gfn * PAGE_SIZE, validated: e.validated, immutable: e.immutable };
}

export const HYPERVISOR_OWNED = { assigned: false, asid: 0, gpa: 0, validated: false, immutable: false } as const;

/** The freed pfn is the host's again: hypervisor-owned in the RMP and refilled with HOST_PATTERN. */
export function expectFreedPfn(sb: Sandbox, pfn: number): void {
  expect(rmpOfPfn(sb, pfn)).toEqual(HYPERVISOR_OWNED);
  expect(sb.hostPage(pfn).every((b) => b === HOST_PATTERN)).toBe(true);
}

/** Host isolation: the host never wrote a page assigned to a guest (no RMP fault on a host write). */
export function expectHostIsolation(sb: Sandbox): void {
  expect(sb.stats().hostRmpFaults).toBe(0);
}

/** Counter deltas around `fn`. */
export async function statsDelta<K extends keyof ReturnType<Sandbox['stats']>>(
  sb: Sandbox,
  keys: readonly K[],
  fn: () => Promise<unknown> | unknown,
): Promise<Record<K, number>> {
  const before = sb.stats();
  await fn();
  const after = sb.stats();
  return Object.fromEntries(keys.map((k) => [k, after[k] - before[k]])) as Record<K, number>;
}
