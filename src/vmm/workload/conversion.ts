// The conversion experiment's two threads (experiments/conversion.ts runs them on VMM workers).
// The guest's thread converts chunks of its memory back and forth, shared <=> private, as a
// vCPU thread handles the guest's page-state changes (KVM_HC_MAP_GPA_RANGE exits to the VMM):
// 7.0 with KVM_SET_MEMORY_ATTRIBUTES on the VM and a PUNCH_HOLE of the private backing after a
// conversion to shared; 7.4 with KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd, in place. After
// each conversion the guest checks that its data is still there and copies it back when not (what
// a move between the shared and the private backing costs). The VMM's thread meanwhile faults
// pages in through its host mapping, and pins a page (GUP) for a while, then unpins it (7.4: the
// 7.0 guest_memfd of an SNP VM cannot be mapped).

import { gmemIoctlSetAttributes2 } from '../../gmem/convert.js';
import { gmemPinUserPage, gmemUnpinUserPage } from '../../gmem/gup.js';
import { HOST_SIGBUS, gmemHostAccess } from '../../gmem/mmap.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../kvm/attributes.js';
import { kvmSetMemoryAttributes } from '../../kvm/kvm_main.js';
import { Errno, errnoName } from '../../shm/errno.js';
import { PAGE_SIZE } from '../../shm/limits.js';
import { Prng } from '../../shm/prng.js';
import { TraceKind } from '../../shm/trace.js';
import { Exit, type GuestCpu } from '../../vcpu-workers/guest.js';
import { RunControl } from '../../vcpu-workers/runctl.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import { IOCTL_STEPS, IOCTL_TRACE_BASE } from '../scenario/ioctl-exec.js';
import { punchFd } from './ops/op.js';

/** 'conv': the guest's tag at the start of each page, [magic, page, generation, 0]. */
const CONV_TAG = 0x636f6e76;
const TAG_BYTES = 16;

/** What the guest's thread built, for the VMM's thread (plain data: it crosses a port). */
export interface ConversionLayout {
  vm: number;
  fd: number;
  pages: number;
  /** The VMM's host mapping of the whole file (7.4), or -1. */
  map: number;
  inPlace: boolean;
}

export interface GuestConvertConfig {
  /** Pages one conversion covers (the file is a whole number of chunks). */
  chunk: number;
  durationMs: number;
  /** Stop after this many conversion attempts (0: run for durationMs). */
  maxAttempts: number;
}

export interface GuestConvertResult {
  attempts: number;
  conversions: number;
  toPrivate: number;
  toShared: number;
  /** Conversions refused with EAGAIN (a folio with a reference beyond the page cache's). */
  eagain: number;
  /** Other refusals, by errno name. */
  errors: Record<string, number>;
  /** Bytes the guest copied back because a conversion did not keep its data. */
  bytesCopied: number;
  /** PUNCH_HOLEs of the old private backing after a conversion to shared (7.0). */
  punches: number;
  /** Guest accesses that exited to the VMM instead of completing. */
  accessExits: number;
  elapsedMs: number;
}

export interface VmmPinConfig {
  durationMs: number;
  seed: number;
  /** How long the VMM holds each pin (0: no pins, host faults only). */
  pinMs: number;
  /** Whether the VMM faults pages into its mapping (host accesses) at all. */
  faults: boolean;
  /** A pin taken before the guest started (holdPin), unpinned at the end (-1: none). */
  held: number;
}

export interface VmmPinResult {
  hostAccesses: number;
  sigbus: number;
  pins: number;
  /** Pins refused (the page was private: no host PTE could be made). */
  pinFailures: number;
  elapsedMs: number;
}

/**
 * The guest's setup on the VMM's first thread: an SNP VM, one guest_memfd binding all its
 * memory, shared to start with (7.4: made INIT_SHARED and MMAP, and mapped for the VMM), the
 * launch done, the guest's vCPU, and every page written once through the shared view.
 */
export function setupConversion(sb: Sandbox, pages: number, inPlace: boolean): GuestSide {
  const vm = sb.createVmSync({ type: 'snp' });
  const size = pages * PAGE_SIZE;
  const g = vm.createGuestMemfdSync({ size, flags: inPlace ? ['mmap', 'init_shared'] : [] });
  // 7.0: the shared half lives in a separate user mapping (userspace_addr 0 of the VMM's memory).
  vm.setUserMemoryRegion2Sync({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: size, guestMemfd: g, userspaceAddr: 0 });
  vm.snpLaunchStartSync();
  vm.snpLaunchFinishSync();
  const map = inPlace ? g.mmapSync({ size }).handle : -1;
  const layout = { vm: vm.id, fd: g.fd, pages, map, inPlace };
  const guest = new GuestSide(sb, layout, vm.createVcpuSync().cpu);
  for (let p = 0; p < pages; p++) guest.write(p);
  return guest;
}

function emptyResult(): GuestConvertResult {
  return {
    attempts: 0,
    conversions: 0,
    toPrivate: 0,
    toShared: 0,
    eagain: 0,
    errors: {},
    bytesCopied: 0,
    punches: 0,
    accessExits: 0,
    elapsedMs: 0,
  };
}

/** The guest's side: its vCPU, what it wrote to each page, its view of each page's state, the counts. */
export class GuestSide {
  readonly gen: Int32Array;
  readonly page = new Uint8Array(PAGE_SIZE);
  readonly tag = new Uint8Array(TAG_BYTES);
  readonly priv: Uint8Array;

  constructor(
    readonly sb: Sandbox,
    readonly l: ConversionLayout,
    readonly cpu: GuestCpu,
    public res: GuestConvertResult = emptyResult(),
  ) {
    this.gen = new Int32Array(l.pages);
    this.priv = new Uint8Array(l.pages);
  }

  /** The guest's write of page p's next tag (filling the page, as a guest uses it). */
  write(p: number): void {
    this.gen[p]++;
    this.fill(p);
    this.access(p, null, this.page);
  }
  private fill(p: number): void {
    new Uint32Array(this.page.buffer, 0, 4).set([CONV_TAG, p, this.gen[p], 0]);
  }
  private access(p: number, out: Uint8Array | null, data: Uint8Array | null): boolean {
    const r = this.cpu.access(p * PAGE_SIZE, (out ?? data)!.length, this.priv[p] !== 0, out, data);
    if (r !== Exit.NONE) this.res.accessExits++;
    return r === Exit.NONE;
  }
  /** After a conversion: the page still holds its data, or the guest copies it back (bytes counted). */
  keep(p: number): void {
    const ok = this.access(p, this.tag, null);
    const t = new Uint32Array(this.tag.buffer);
    if (ok && t[0] === CONV_TAG && t[1] === p && t[2] === this.gen[p]) return;
    this.fill(p);
    if (this.access(p, null, this.page)) this.res.bytesCopied += PAGE_SIZE;
  }
  /** PVALIDATE of a chunk: validated after a conversion to private, rescinded before one to shared. */
  pvalidate(first: number, n: number, validate: boolean): void {
    for (let p = first; p < first + n; p++) if (this.cpu.pvalidate(p * PAGE_SIZE, validate) < 0) this.res.accessExits++;
  }
}

/** kvm_vm_ioctl_set_mem_attributes (7.0) or kvm_gmem_ioctl's KVM_SET_MEMORY_ATTRIBUTES2 (7.4): 0 or -errno. */
function convertChunk(sb: Sandbox, l: ConversionLayout, first: number, n: number, toPrivate: boolean): number {
  const attrs = toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
  if (!l.inPlace) return kvmSetMemoryAttributes(sb.k, l.vm, first * PAGE_SIZE, n * PAGE_SIZE, attrs, 0);
  const a = { offset: BigInt(first * PAGE_SIZE), size: BigInt(n * PAGE_SIZE), attributes: BigInt(attrs), flags: 0n, reserved: [] };
  return sb.withGmemFd(l.fd, (f) => (f < 0 ? f : gmemIoctlSetAttributes2(sb.k.g, f, a).r));
}

function traceStart(sb: Sandbox): number {
  return sb.k.tracer.on ? sb.k.tracer.now() : 0;
}
/** The ioctl in the trace, named as a scenario step is. */
function traceIoctl(sb: Sandbox, op: (typeof IOCTL_STEPS)[number], t0: number): void {
  if (sb.k.tracer.on) sb.k.tracer.record(TraceKind.IOCTL, IOCTL_TRACE_BASE + IOCTL_STEPS.indexOf(op), t0);
}

/** One conversion of chunk [first, first + n) the other way, as the guest asks for it. */
function convertOnce(s: GuestSide, first: number, n: number): void {
  const { sb, l, res } = s;
  const toPrivate = s.priv[first] === 0;
  if (!toPrivate) s.pvalidate(first, n, false);
  const t0 = traceStart(sb);
  const r = convertChunk(sb, l, first, n, toPrivate);
  traceIoctl(sb, l.inPlace ? 'set_memory_attributes2' : 'set_memory_attributes', t0);
  res.attempts++;
  if (r < 0) {
    if (r === -Errno.EAGAIN) res.eagain++;
    else res.errors[errnoName(r)] = (res.errors[errnoName(r)] ?? 0) + 1;
    // Refused: the chunk keeps its state (a page going shared stays validated).
    if (!toPrivate) s.pvalidate(first, n, true);
    return;
  }
  // 7.0: the VMM discards the private backing it no longer uses.
  if (!l.inPlace && !toPrivate) {
    const t1 = traceStart(sb);
    if (punchFd(sb, l.fd, first, n) === 0) res.punches++;
    traceIoctl(sb, 'fallocate', t1);
  }
  res.conversions++;
  if (toPrivate) res.toPrivate++;
  else res.toShared++;
  s.priv.fill(toPrivate ? 1 : 0, first, first + n);
  if (toPrivate) s.pvalidate(first, n, true);
  for (let p = first; p < first + n; p++) s.keep(p);
  for (let p = first; p < first + n; p++) s.write(p);
}

/**
 * The guest's thread: chunks converted in turn, each the other way from its state, until the time or the count is up; then it asks the VMM's thread to stop.
 */
export function runGuestConversions(s: GuestSide, cfg: GuestConvertConfig): GuestConvertResult {
  const { sb, l } = s;
  const res = (s.res = emptyResult());
  const rc = new RunControl(sb.mem);
  const t0 = performance.now();
  const deadline = t0 + cfg.durationMs;
  const chunks = l.pages / cfg.chunk;
  try {
    for (let i = 0; ; i++) {
      if (cfg.maxAttempts > 0 ? res.attempts >= cfg.maxAttempts : performance.now() >= deadline) break;
      if (sb.k.sync.aborted() || rc.stopRequested()) break;
      convertOnce(s, (i % chunks) * cfg.chunk, cfg.chunk);
    }
  } finally {
    res.elapsedMs = performance.now() - t0;
    rc.setStop(true, sb.k.sync);
  }
  return res;
}

/**
 * The VMM's thread (7.4): a host access to a random page through its mapping (a fault of the
 * page into the mapping, SIGBUS on a private one), and every so often a GUP pin of a page held
 * for pinMs, then unpinned. Ends by unpinning `held`.
 */
export function runVmmPins(sb: Sandbox, l: ConversionLayout, cfg: VmmPinConfig): VmmPinResult {
  const res: VmmPinResult = { hostAccesses: 0, sigbus: 0, pins: 0, pinFailures: 0, elapsedMs: 0 };
  const rc = new RunControl(sb.mem);
  const g = sb.k.g;
  const t0 = performance.now();
  if (l.map < 0 || (!cfg.faults && cfg.pinMs <= 0)) return finish(sb, cfg, res, t0);
  const rng = new Prng(cfg.seed);
  const buf = new Uint8Array(TAG_BYTES);
  const deadline = t0 + cfg.durationMs;
  try {
    while (!rc.stopRequested() && !sb.k.sync.aborted() && performance.now() < deadline) {
      const p = rng.below(l.pages);
      if (cfg.faults) {
        res.hostAccesses++;
        if (gmemHostAccess(g, l.map, p * PAGE_SIZE, buf, false) === HOST_SIGBUS) res.sigbus++;
      }
      if (cfg.pinMs <= 0 || rng.below(4) !== 0) continue;
      const pin = pinPage(sb, l.map, p, res);
      if (pin < 0) continue;
      sb.k.sync.sleepMs(cfg.pinMs);
      gmemUnpinUserPage(g, pin);
    }
  } finally {
    finish(sb, cfg, res, t0);
  }
  return res;
}

/** The VMM's thread ends: with nothing to do it waits for the guest's stop first; the held pin goes. */
function finish(sb: Sandbox, cfg: VmmPinConfig, res: VmmPinResult, t0: number): VmmPinResult {
  const rc = new RunControl(sb.mem);
  const deadline = t0 + cfg.durationMs;
  while (cfg.held >= 0 && !rc.stopRequested() && !sb.k.sync.aborted() && performance.now() < deadline) sb.k.sync.sleepMs(1);
  if (cfg.held >= 0) gmemUnpinUserPage(sb.k.g, cfg.held);
  res.elapsedMs = performance.now() - t0;
  return res;
}

/** A pin of page p the VMM takes before the guest starts and holds to the end of the run (-errno: refused). */
export function holdPin(sb: Sandbox, l: ConversionLayout, p: number): number {
  return l.map < 0 ? -Errno.EFAULT : gmemPinUserPage(sb.k.g, l.map, p * PAGE_SIZE);
}

/** pin_user_pages_fast (FOLL_PIN | FOLL_LONGTERM) of page p through the mapping: the pin, or -1 (counted) when the page is private. */
function pinPage(sb: Sandbox, map: number, p: number, res: VmmPinResult): number {
  const pin = gmemPinUserPage(sb.k.g, map, p * PAGE_SIZE);
  if (pin < 0) res.pinFailures++;
  else res.pins++;
  return pin;
}
