// The VMM's op names and the op mix a stress run or an explorer workload gives them ("punch=3,
// convert=1"). The order of VMM_OPS is the order weights are laid out in when an op is drawn,
// and each op's number in a trace: a new op goes at the end, so that saved seeds draw as before.

import { ArgumentError } from '../sandbox/errors.js';

/**
 * memslot: delete slot 0 and recreate it; memflags: first drop KVM_MEM_GUEST_MEMFD from it by a
 * flags-only change or a move (as a fuzzer would; refused since 9935df5333aa), then delete and
 * recreate; close: close the guest_memfd, whose faults may still hold it, then rebuild slot 0
 * on a new one; hwpoison: memory_failure on a page; fwfail: the next RMPUPDATE (or, with a VM
 * launching, LAUNCH_UPDATE) fails; signal: a signal for a vCPU or VMM thread (its pre-fault,
 * fallocate or populate in flight, or next, returns EINTR); plainslot: a memslot without
 * guest_memfd created, given dirty logging (flags only), moved and deleted;
 * badbind: memslots the kernel must refuse (a binding of indices already bound, one past the
 * file's end, a slot over another's gfns), left in place if accepted, for the auditor to see;
 * oom: the allocator keeps all but 0-2 free pages back until this thread's next op, and the VMM
 * fallocates a range meanwhile (ENOMEM paths); mmap, touch, munmap (6.18, on a layout whose files
 * the VMM may map: GUEST_MEMFD_FLAG_MMAP): map a file range with MAP_SHARED, read or write a page
 * through a mapping (a SIGBUS is an outcome), unmap one this thread made; launch: the launching
 * VM booted from several threads (each LAUNCH_UPDATEs its share of the image, the first one ends
 * the launch and pre-faults the range), drawn as each VMM thread's first op beside a launching VM;
 * vcpu: the launching VM's vCPU threads (KVM_CREATE_VCPU, or KVM_RUN of one) before its launch ends;
 * convert2, pin (7.4 with gmem_in_place_conversion on, where the layout's files are mapped and
 * convert in place): KVM_SET_MEMORY_ATTRIBUTES2 on a file range, to private or to shared; a GUP
 * pin through the VMM's mapping, or the release of one this thread holds.
 */
export const VMM_OPS = [
  'punch',
  'fallocate',
  'convert',
  'prefault',
  'populate',
  'memslot',
  'memflags',
  'plainslot',
  'badbind',
  'close',
  'hwpoison',
  'fwfail',
  'oom',
  'signal',
  'mmap',
  'touch',
  'munmap',
  'launch',
  'vcpu',
  'convert2',
  'pin',
] as const;
export type VmmOp = (typeof VMM_OPS)[number];

/** A count (or weight) of 0 for every op. */
export function zeroOps(): Record<VmmOp, number> {
  return Object.fromEntries(VMM_OPS.map((o) => [o, 0])) as Record<VmmOp, number>;
}

/** Parses "punch=3,convert=1" (names from VMM_OPS); unknown names or bad weights throw. */
export function parseMix(s: string): Record<VmmOp, number> {
  const mix = zeroOps();
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name, w] = part.split('=');
    if (!(VMM_OPS as readonly string[]).includes(name))
      throw new ArgumentError('--ops', `unknown operation '${name}'; known: ${VMM_OPS.join(', ')}`);
    const weight = w === undefined ? 1 : Number(w);
    if (!Number.isFinite(weight) || weight < 0)
      throw new ArgumentError('--ops', `weight of '${name}' must be a finite non-negative number, got '${w}'`);
    mix[name as VmmOp] = weight;
  }
  return mix;
}
