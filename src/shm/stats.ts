// Per-thread statistics: one block of Float64 counters per thread, each block on its own cache
// lines, written only by its thread and summed by the controller.

import { LayoutBuilder, type Mem, regionBase } from './layout.js';

/**
 * The groups lock contention is counted in (a lock's fine-grained class, sync/classes.ts, maps to
 * one of them): the names of stats output and reports.
 */
export const LockStat = {
  FOLIO: 0,
  INVALIDATE: 1,
  MMU: 2,
  SLOTS: 3,
  ALLOCATOR: 4,
  OTHER: 5,
  /** synchronize_srcu waiting for readers. */
  SRCU: 6,
} as const;
export type LockStat = (typeof LockStat)[keyof typeof LockStat];
export const LOCK_STAT_NAMES = ['folio', 'invalidate', 'mmu', 'slots', 'allocator', 'other', 'srcu'] as const;

export const COUNTER_NAMES = [
  'faults',
  'faultRetries',
  'faultsPrivate',
  'faultsShared',
  'memoryFaultExits',
  'sptesInstalled',
  'sptesZapped',
  'prepares',
  'clears',
  'archPrepareCalls',
  /** Arch prepare calls a fault made for a VM bound to the inode other than the faulting one. */
  'archPrepareCallsOtherVm',
  'archInvalidateCalls',
  'firmwareCommands',
  'rmpUpdates',
  /** RMPUPDATE executions that failed transiently (FAIL_OVERLAP) and were retried. */
  'rmpUpdateRetries',
  'foliosAllocated',
  'foliosFreed',
  'fallocates',
  'punchHoles',
  'punchHoleLeftovers',
  'conversions',
  /** KVM_SET_MEMORY_ATTRIBUTES2 refused with EAGAIN: a folio of the range had references beyond the page cache's (7.4). */
  'conversionsRefused',
  /** lru_add_drain_all calls (7.4's conversion, once per call at most). */
  'lruDrains',
  /**
   * A checker's count, not the kernel's: EAGAIN answers whose folio, when refused, had no
   * reference beyond the page cache's, the check's own and the per-CPU LRU batches' (7.4).
   */
  'conversionsRefusedLruOnly',
  /** GUP pins taken (pin_user_pages through a guest_memfd mapping) and released. */
  'gupPins',
  'gupUnpins',
  /** A checker's count: PUNCH_HOLEs after which an index's attribute differed, with no attribute store in between. */
  'attributesLostOnPunch',
  'populatedPages',
  'preFaultedPages',
  'guestReads',
  'guestWrites',
  'pvalidates',
  'rmpViolations',
  'vcExceptions',
  'staleTlbAccesses',
  /** Remote TLB flushes that waited for a vCPU still in guest mode to finish its access. */
  'tlbFlushWaits',
  'hostRmpFaults',
  /** User accesses of the VMM through guest_memfd mappings, and what ended them with a signal (an outcome, not an error). */
  'hostAccesses',
  'hostSigbus',
  /** kvm_gmem_fault_user_mapping calls that mapped a page. */
  'hostFaults',
  /** Host PTEs truncation or memory failure cleared (unmap_mapping_folio): punches that hit mapped pages. */
  'hostPtesZapped',
  /** Host reads through a mapping that saw bytes nobody wrote at that index (stale data), or lost the VMM's own write. */
  'hostStaleReads',
  'hostLostWrites',
  /**
   * vCPU ioctls that changed a vCPU while LAUNCH_FINISH synced its VMSA; VMSAs synced again after
   * the firmware took them; vCPUs a LAUNCH_FINISH skipped half created (harmless, counted).
   */
  'vmsaSyncRaces',
  'vmsaResyncs',
  'vcpusSkippedByLaunchFinish',
  /** A checker's count (7.4): host accesses that moved the bytes of a page its file holds at a private index. */
  'hostPrivateAccesses',
  'faultNs',
  'guestExitsHandled',
  'violation.staleData',
  'violation.dataLost',
  'violation.rmpAgreement',
  'violation.hostIsolation',
  'violation.useAfterFree',
  'violation.balance',
  'violation.liveness',
  'finding.crossVmPrepare',
  'lockContended.folio',
  'lockContended.invalidate',
  'lockContended.mmu',
  'lockContended.slots',
  'lockContended.allocator',
  'lockContended.other',
  'lockContended.srcu',
  'lockWaitNs.folio',
  'lockWaitNs.invalidate',
  'lockWaitNs.mmu',
  'lockWaitNs.slots',
  'lockWaitNs.allocator',
  'lockWaitNs.other',
  'lockWaitNs.srcu',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];

/** Counter indices by name, e.g. `C.faults`. */
export const C = Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, i])) as { readonly [K in CounterName]: number };
export const LOCK_CONTENDED_BASE = C['lockContended.folio'];
export const LOCK_WAIT_NS_BASE = C['lockWaitNs.folio'];

/** Float64 slots per thread block: the counters rounded up to whole cache lines (8 per line). */
const SLOTS_PER_THREAD = Math.ceil(COUNTER_NAMES.length / 8) * 8;
const REGION = 'stats';

export function declareStats(lb: LayoutBuilder, maxThreads: number): void {
  lb.add(REGION, maxThreads * SLOTS_PER_THREAD * 2, 'shm/stats.ts');
}

/** Thread `tid`'s block of `slots` Float64 slots in a per-thread region of this module. */
function threadBlock(mem: Mem, region: string, slots: number, tid: number): Float64Array {
  const base = regionBase(mem, region) / 2 + tid * slots;
  return mem.f64.subarray(base, base + slots);
}

/** One thread's counters: a Float64Array view onto that thread's block only. */
export function threadStats(mem: Mem, tid: number): Float64Array {
  return threadBlock(mem, REGION, SLOTS_PER_THREAD, tid);
}

export type StatsSnapshot = Record<CounterName, number>;

/** Sums every thread's block. Reads race benignly with writers: a snapshot may be a few counts old. */
export function sumStats(mem: Mem): StatsSnapshot {
  // Summed by index, then named once: adding into the named object costs ten times more.
  const sums = new Float64Array(COUNTER_NAMES.length);
  for (let t = 0; t < mem.limits.maxThreads; t++) {
    const s = threadStats(mem, t);
    for (let i = 0; i < sums.length; i++) sums[i] += s[i];
  }
  return Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, sums[i]])) as StatsSnapshot;
}

/** Fault latency histogram: bucket b counts faults that took [2^b, 2^(b+1)) ns. */
export const LATENCY_BUCKETS = 40;
const HIST = 'fault_latency';

export function declareLatency(lb: LayoutBuilder, maxThreads: number): void {
  lb.add(HIST, maxThreads * LATENCY_BUCKETS * 2, 'shm/stats.ts');
}

/** One thread's histogram (Float64 counts). */
export function threadLatency(mem: Mem, tid: number): Float64Array {
  return threadBlock(mem, HIST, LATENCY_BUCKETS, tid);
}

export function latencyBucket(ns: number): number {
  return ns < 1 ? 0 : Math.min(LATENCY_BUCKETS - 1, Math.floor(Math.log2(ns)));
}

/** Every thread's histogram summed: [lowNs, highNs, count] per non-empty bucket. */
export function sumLatency(mem: Mem): Array<{ lowNs: number; highNs: number; count: number }> {
  const sums = new Float64Array(LATENCY_BUCKETS);
  for (let t = 0; t < mem.limits.maxThreads; t++) {
    const h = threadLatency(mem, t);
    for (let b = 0; b < LATENCY_BUCKETS; b++) sums[b] += h[b];
  }
  const out: Array<{ lowNs: number; highNs: number; count: number }> = [];
  for (let b = 0; b < LATENCY_BUCKETS; b++) if (sums[b] > 0) out.push({ lowNs: 2 ** b, highNs: 2 ** (b + 1), count: sums[b] });
  return out;
}
