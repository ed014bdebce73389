// The VMM's side of a stress run, on the VMM worker: fallocate, PUNCH_HOLE, attribute
// conversion and pre-fault, drawn from a weighted mix at a given rate, while the vCPUs run.

import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, gmemFallocate } from '../../gmem/fallocate.js';
import { gmemCreate, gmemErrorFolio } from '../../gmem/guest_memfd.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../kvm/attributes.js';
import { kvmSetMemoryAttributes, kvmSetMemoryRegion, kvmVcpuPreFaultMemory } from '../../kvm/kvm_main.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES } from '../../kvm/memslots.js';
import { SnpPageType } from '../../kvm/psp.js';
import { snpLaunchFinish, snpLaunchUpdate } from '../../kvm/sev.js';
import type { KvmVcpu } from '../../kvm/vcpu.js';
import { Errno, errnoName } from '../../shm/errno.js';
import { PAGE_SIZE } from '../../shm/limits.js';
import { Prng } from '../../shm/prng.js';
import { TraceKind } from '../../shm/trace.js';
import type { RunControl } from '../../vcpu-workers/runctl.js';
import type { Sandbox } from '../sandbox/sandbox.js';

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
 * fallocates a range meanwhile (ENOMEM paths).
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
] as const;
export type VmmOp = (typeof VMM_OPS)[number];

/** The byte a 'populate' op measures into the launching VM: no guest tag can match it. */
const LAUNCH_BYTE = 0x5a;

export interface VmmOpsConfig {
  /** Relative weights; an op with weight 0 never runs. */
  mix: Partial<Record<VmmOp, number>>;
  /** Operations per second (0: as fast as possible). */
  rate: number;
  /** Largest range one op touches, in pages. */
  maxPages: number;
  seed: number;
  durationMs: number;
  maxOps: number;
  /** Thread ids of the vCPU threads a 'signal' op may target (none: the op does nothing). */
  signalTids?: number[];
}

/** One memslot of the target layout: VM 0's (linked VMs bind theirs the same way) or a launching VM's. */
export interface StressRegion {
  /** The VM whose memslot it is (VM 0, or an SNP VM launching beside it). */
  vm: number;
  slot: number;
  gfn: number;
  npages: number;
  /** Index in the file of the region's first gfn. */
  pgoff: number;
  userPage: number;
  /** The guest_memfd behind it ('close' replaces it) and its fd in the VMM's table. */
  file: number;
  fd: number;
  /** Size of that file, in pages. */
  filePages: number;
}

export interface StressTarget {
  /** The layout's memslots, in gfn order; together they map `pages` gfns. */
  regions: StressRegion[];
  pages: number;
  vms: number[];
  /** One handle per VM for KVM_PRE_FAULT_MEMORY, issued from the VMM thread. */
  prefaultVcpus: KvmVcpu[];
  /** An SNP VM still launching, whose pages the 'populate' op LAUNCH_UPDATEs (-1: none). */
  populateVm: number;
  /** The VMs bind one inode by link: 'close' is off, and a conversion does not discard the backing. */
  linked: boolean;
}

export interface VmmOpsResult {
  ops: Record<VmmOp, number>;
  errors: Record<string, number>;
  elapsedMs: number;
}

export function runVmmOps(sb: Sandbox, rc: RunControl, t: StressTarget, cfg: VmmOpsConfig): VmmOpsResult {
  const k = sb.k;
  const rng = new Prng(cfg.seed);
  const ops = zeroOps();
  const errors: Record<string, number> = {};
  // An op the layout cannot run is not drawn: populate needs a launching VM, close a VM of its own.
  const runnable = (o: VmmOp): boolean => (o !== 'populate' || t.populateVm >= 0) && (o !== 'close' || !t.linked);
  // Beside a launching VM, populate is the op that VM is there for: drawn four times as often.
  const weights = VMM_OPS.map((o) => (runnable(o) ? Math.max(0, cfg.mix[o] ?? 0) * (o === 'populate' ? 4 : 1) : 0));
  const total = weights.reduce((a, b) => a + b, 0);
  const t0 = performance.now();
  const deadline = cfg.durationMs > 0 ? t0 + cfg.durationMs : Infinity;
  const gap = cfg.rate > 0 ? 1000 / cfg.rate : 0;
  const tracer = k.tracer;
  let opStart = 0;
  const note = (r: number, op: VmmOp): void => {
    if (tracer.on) tracer.record(TraceKind.IOCTL, VMM_OPS.indexOf(op), opStart);
    ops[op]++;
    if (r < 0) {
      const key = `${op}:${errnoName(r)}`;
      errors[key] = (errors[key] ?? 0) + 1;
    }
  };
  let starved = false;
  try {
    for (let n = 0; total > 0; n++) {
      if (rc.stopRequested() || k.sync.aborted() || performance.now() > deadline) break;
      if (cfg.maxOps > 0 && n >= cfg.maxOps) break;
      rc.checkpoint(k.sync);
      // An 'oom' lasts until this thread's next op.
      if (starved) {
        sb.reserveHostPages(0);
        starved = false;
      }
      let pick = rng.next() * total;
      let op: VmmOp = 'punch';
      for (let i = 0; i < VMM_OPS.length; i++) {
        if (pick < weights[i]) {
          op = VMM_OPS[i];
          break;
        }
        pick -= weights[i];
      }
      // A range inside one memslot: `gfn` in the guest, `index` in the file behind it. One op in
      // three goes wide instead: a file range anywhere in the file (across two memslots' bindings,
      // over indices no memslot binds, up to a page past the end), or a gfn range across memslots
      // (up to a page past the last).
      const region = t.regions[rng.below(t.regions.length)];
      let len = 1 + rng.below(Math.min(cfg.maxPages, region.npages));
      if (tracer.on) opStart = tracer.now();
      const at = rng.below(region.npages - len + 1);
      let gfn = region.gfn + at;
      let index = region.pgoff + at;
      if (rng.below(3) === 0) {
        const fileOp = op === 'punch' || op === 'fallocate' || op === 'hwpoison' || op === 'oom';
        const first = fileOp ? 0 : t.regions[0].gfn;
        const span = fileOp ? region.filePages : t.pages;
        const start = rng.below(span);
        len = 1 + rng.below(Math.min(2 * cfg.maxPages, span - start + 1));
        if (fileOp) index = start;
        else gfn = first + start;
      }
      const fd = region.fd;
      switch (op) {
        case 'punch':
          // Epochs move before and after a discard, like a seqcount: a write whose epoch falls in
          // the window may be lost legitimately, and the guest will not call it data loss.
          bumpMapped(rc, t, fd, index, len);
          note(punchFd(sb, fd, index, len), op);
          bumpMapped(rc, t, fd, index, len);
          break;
        case 'fallocate':
          note(
            sb.withGmemFd(fd, (f) => (f < 0 ? f : gmemFallocate(k.g, f, FALLOC_FL_KEEP_SIZE, index * PAGE_SIZE, len * PAGE_SIZE))),
            op,
          );
          break;
        case 'convert': {
          const vm = t.vms[rng.below(t.vms.length)];
          const toPrivate = !k.attrs.isPrivate(vm, gfn);
          rc.bumpEpochs(vm, gfn, gfn + len);
          let r = kvmSetMemoryAttributes(k, vm, gfn * PAGE_SIZE, len * PAGE_SIZE, toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);
          // A VMM discards the private backing of memory converted to shared (QEMU does): the
          // regions' file is VM 0's own unless linked (a launching VM beside has its own).
          if (r === 0 && !toPrivate && !t.linked) {
            for (const x of t.regions) {
              if (x.vm !== vm) continue;
              const a = Math.max(gfn, x.gfn);
              const b = Math.min(gfn + len, x.gfn + x.npages);
              if (a < b) r ||= punchFd(sb, x.fd, x.pgoff + a - x.gfn, b - a);
            }
          }
          rc.bumpEpochs(vm, gfn, gfn + len);
          note(r, op);
          break;
        }
        case 'populate': {
          if (t.populateVm < 0) break;
          // A range, so that a page populated earlier answers EEXIST and the rest are not done.
          const r = snpLaunchUpdate(
            k,
            k.psp,
            t.populateVm,
            gfn,
            len * PAGE_SIZE,
            SnpPageType.NORMAL,
            new Uint8Array(len * PAGE_SIZE).fill(LAUNCH_BYTE),
          );
          let e = r.ret < 0 ? r.populateErr || r.ret : 0;
          // One time in four the launch ends here and the VMM pre-faults what it populated, as a VMM
          // boots its guest: the auditor then holds those SPTEs to the RMP (a page a failed
          // populate left unmeasured, but marked up to date, shows).
          if (rng.below(4) === 0) {
            e ||= snpLaunchFinish(k, k.psp, t.populateVm);
            const v = t.prefaultVcpus[t.vms.indexOf(t.populateVm)];
            if (v !== undefined) e ||= kvmVcpuPreFaultMemory(k, v, { gpa: gfn * PAGE_SIZE, size: len * PAGE_SIZE, flags: 0 });
          }
          note(e, op);
          break;
        }
        case 'prefault': {
          const i = rng.below(t.vms.length);
          const range = { gpa: gfn * PAGE_SIZE, size: len * PAGE_SIZE, flags: 0 };
          note(kvmVcpuPreFaultMemory(k, t.prefaultVcpus[i], range), op);
          break;
        }
        case 'memslot':
          note(memslotOp(sb, region, 0), op);
          break;
        case 'memflags':
          note(memslotOp(sb, region, 1 + rng.below(2)), op);
          break;
        case 'close': {
          // Only a VM's own file: a linked inode outlives it, and its other VMs keep their slots.
          if (t.linked) break;
          for (const vm of t.vms) rc.bumpEpochs(vm, t.regions[0].gfn, t.regions[0].gfn + t.pages);
          note(closeAndRebuild(sb, t, fd), op);
          for (const vm of t.vms) rc.bumpEpochs(vm, t.regions[0].gfn, t.regions[0].gfn + t.pages);
          break;
        }
        case 'hwpoison':
          note(
            sb.withGmemFd(fd, (f) => (f < 0 ? f : gmemErrorFolio(k.g, f, index))),
            op,
          );
          break;
        case 'fwfail':
          // With a VM launching, half the time its next LAUNCH_UPDATE fails instead.
          sb.injectFirmwareFailures(t.populateVm >= 0 && rng.below(2) === 0 ? 'LAUNCH_UPDATE' : 'RMPUPDATE', 1);
          note(0, op);
          break;
        case 'signal': {
          const tids = cfg.signalTids ?? [];
          if (tids.length === 0) break;
          sb.raiseSignal(tids[rng.below(tids.length)]);
          note(0, op);
          break;
        }
        case 'plainslot':
          note(plainSlotOp(sb, t.vms[0], rng.below(2)), op);
          break;
        case 'badbind':
          note(badBindOp(sb, region.vm, region, rng.below(3)), op);
          break;
        case 'oom':
          // Starve, then allocate into the range as the VMM would (fallocate's ENOMEM path); the
          // vCPUs' faults meanwhile take theirs.
          sb.reserveHostPages(Math.max(1, sb.freeHostPages() - rng.below(3)));
          starved = true;
          note(
            sb.withGmemFd(fd, (f) => (f < 0 ? f : gmemFallocate(k.g, f, FALLOC_FL_KEEP_SIZE, index * PAGE_SIZE, len * PAGE_SIZE))),
            op,
          );
          break;
      }
      if (gap > 0) k.sync.sleepMs(gap);
    }
  } finally {
    if (starved) sb.reserveHostPages(0);
  }
  return { ops, errors, elapsedMs: performance.now() - t0 };
}

/** The memslot id 'plainslot' uses: above the layouts' (0 and 1). */
const PLAIN_SLOT = 8;
const PLAIN_PAGES = 2;

/**
 * A memslot of VMM memory only, at the top of the guest physical space: created, given dirty
 * logging by a flags-only change, moved up (variant 1 moves first), then deleted. The guests
 * never touch its gfns. Returns the first error, or 0.
 */
function plainSlotOp(sb: Sandbox, vm: number, variant: number): number {
  const top = sb.k.memslots.gfnsPerVm;
  const gfn = top - 4 * PLAIN_PAGES;
  const user = sb.mem.limits.userPages - PLAIN_PAGES;
  const set = (flags: number, at: number, npages: number): number =>
    kvmSetMemoryRegion(sb.k, vm, {
      slot: PLAIN_SLOT,
      flags,
      guestPhysAddr: at * PAGE_SIZE,
      memorySize: npages * PAGE_SIZE,
      userspaceAddr: user * PAGE_SIZE,
      gmemFile: -1,
      guestMemfdOffset: 0,
    });
  if (gfn < 0 || user < 0) return 0;
  const steps =
    variant === 0
      ? [
          () => set(0, gfn, PLAIN_PAGES),
          () => set(KVM_MEM_LOG_DIRTY_PAGES, gfn, PLAIN_PAGES),
          () => set(KVM_MEM_LOG_DIRTY_PAGES, gfn + PLAIN_PAGES, PLAIN_PAGES),
        ]
      : [
          () => set(0, gfn, PLAIN_PAGES),
          () => set(0, gfn + PLAIN_PAGES, PLAIN_PAGES),
          () => set(KVM_MEM_LOG_DIRTY_PAGES, gfn + PLAIN_PAGES, PLAIN_PAGES),
        ];
  let e = 0;
  for (const step of steps) e ||= step();
  // Delete whatever is there (another VMM thread may have made or moved it).
  const del = set(0, gfn, 0);
  return e || (del === -Errno.EINVAL ? 0 : del);
}

/** The memslot id 'badbind' tries: above the others. */
const BAD_SLOT = 9;

/**
 * A KVM_SET_USER_MEMORY_REGION2 the kernel must refuse (kvm_gmem_bind, kvm_set_memory_region):
 * variant 0 binds an index of `r`'s file that `r` already binds, 1 binds past the file's end, 2
 * places a plain slot over `r`'s first gfn. Returns its errno: 0 means it was accepted, and the
 * slot stays for the auditor (bindings and memslots must stay disjoint, inside the file).
 */
function badBindOp(sb: Sandbox, vm: number, r: StressRegion, variant: number): number {
  const gfn = variant === 2 ? r.gfn : sb.k.memslots.gfnsPerVm - 6 * PLAIN_PAGES;
  const pgoff = variant === 0 ? r.pgoff : r.filePages - 1;
  const npages = variant === 1 ? 2 : 1;
  if (gfn < 0 || pgoff < 0) return 0;
  return sb.withGmemFd(r.fd, (gmemFile) =>
    kvmSetMemoryRegion(sb.k, vm, {
      slot: BAD_SLOT,
      flags: variant === 2 ? 0 : KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: gfn * PAGE_SIZE,
      memorySize: npages * PAGE_SIZE,
      userspaceAddr: (sb.mem.limits.userPages - PLAIN_PAGES) * PAGE_SIZE,
      gmemFile,
      guestMemfdOffset: pgoff * PAGE_SIZE,
    }),
  );
}

/** fallocate(PUNCH_HOLE | KEEP_SIZE) of `len` pages at `index` of the file at `fd`. */
function punchFd(sb: Sandbox, fd: number, index: number, len: number): number {
  return sb.withGmemFd(fd, (f) =>
    f < 0 ? f : gmemFallocate(sb.k.g, f, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, index * PAGE_SIZE, len * PAGE_SIZE),
  );
}

/** Moves the guests' epochs of every gfn that maps indices [index, index + len) of the file at `fd` (a discard). */
function bumpMapped(rc: RunControl, t: StressTarget, fd: number, index: number, len: number): void {
  for (const r of t.regions) {
    if (r.fd !== fd) continue;
    const a = Math.max(index, r.pgoff);
    const b = Math.min(index + len, r.pgoff + r.npages);
    // Linked VMs map the same indices at the same gfns; otherwise only the region's VM sees it.
    if (a < b) for (const vm of t.linked ? t.vms : [r.vm]) rc.bumpEpochs(vm, r.gfn + a - r.pgoff, r.gfn + b - r.pgoff);
  }
}

function zeroOps(): Record<VmmOp, number> {
  return Object.fromEntries(VMM_OPS.map((o) => [o, 0])) as Record<VmmOp, number>;
}

/** KVM_SET_USER_MEMORY_REGION2 for a region's slot on VM `vm`: its range, or a delete (npages 0), or another change. */
function setSlot(sb: Sandbox, r: StressRegion, vm: number, m: { flags: number; gfn: number; npages: number }): number {
  return sb.withGmemFd(r.fd, (gmemFile) =>
    kvmSetMemoryRegion(sb.k, vm, {
      slot: r.slot,
      flags: m.flags,
      guestPhysAddr: m.gfn * PAGE_SIZE,
      memorySize: m.npages * PAGE_SIZE,
      userspaceAddr: r.userPage * PAGE_SIZE,
      gmemFile,
      guestMemfdOffset: r.pgoff * PAGE_SIZE,
    }),
  );
}

/**
 * Variant 0 deletes the region's slot on VM 0 and recreates it; 1 and 2 first drop
 * KVM_MEM_GUEST_MEMFD by a flags-only change or a move to the top of the guest physical space
 * (accepted before 9935df5333aa, which leaves the file's binding on the freed slot), then
 * delete and recreate. Returns the first error, or 0.
 */
function memslotOp(sb: Sandbox, r: StressRegion, variant: number): number {
  const vm = r.vm;
  let e = 0;
  if (variant > 0) e = setSlot(sb, r, vm, { flags: 0, gfn: variant === 2 ? sb.k.memslots.gfnsPerVm - r.npages : r.gfn, npages: r.npages });
  const del = setSlot(sb, r, vm, { flags: KVM_MEM_GUEST_MEMFD, gfn: r.gfn, npages: 0 });
  const add = setSlot(sb, r, vm, { flags: KVM_MEM_GUEST_MEMFD, gfn: r.gfn, npages: r.npages });
  return e || del || add;
}

/**
 * close(2) of a guest_memfd while vCPUs may be faulting through it (their references keep it
 * until they let go); the VMM then deletes the slots it backed and binds a new guest_memfd of
 * the same size there.
 */
function closeAndRebuild(sb: Sandbox, t: StressTarget, fd: number): number {
  const backed = t.regions.filter((r) => r.fd === fd);
  const vm = backed[0].vm;
  const size = sb.withGmemFd(fd, (f) => (f < 0 ? f : sb.k.g.inodes.sizePages(sb.k.g.files.inode(f))));
  if (size < 0) return size;
  // Another VMM thread may have closed it first: that close's EBADF is this one's answer.
  const closed = sb.closeFdRaw(fd);
  if (closed < 0) return closed;
  let e = 0;
  for (const r of backed) e ||= setSlot(sb, r, vm, { flags: KVM_MEM_GUEST_MEMFD, gfn: r.gfn, npages: 0 });
  const next = gmemCreate(sb.k.g, vm, size * PAGE_SIZE, 0);
  if (next < 0) return next;
  const nfd = sb.allocFd({ kind: 'gmem', file: next });
  for (const r of backed) {
    r.file = next;
    r.fd = nfd;
    e ||= setSlot(sb, r, vm, { flags: KVM_MEM_GUEST_MEMFD, gfn: r.gfn, npages: r.npages });
  }
  return e;
}

/** Parses "punch=3,convert=1" (names from VMM_OPS); unknown names or bad weights throw. */
export function parseMix(s: string): Record<VmmOp, number> {
  const mix = zeroOps();
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name, w] = part.split('=');
    if (!(VMM_OPS as readonly string[]).includes(name)) throw new Error(`--ops: unknown operation '${name}'; known: ${VMM_OPS.join(', ')}`);
    const weight = w === undefined ? 1 : Number(w);
    if (!Number.isFinite(weight) || weight < 0) throw new Error(`--ops: weight of '${name}' must be a non-negative number, got '${w}'`);
    mix[name as VmmOp] = weight;
  }
  return mix;
}
