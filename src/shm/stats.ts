// Per-thread statistics: one block of Float64 counters per thread, each block on its own cache
// lines, written only by its thread and summed by the controller.

import { LayoutBuilder, type Mem, regionBase } from './layout.js';

/** Lock classes whose contention is measured separately. */
export const LockClass = {
  FOLIO: 0,
  INVALIDATE: 1,
  MMU: 2,
  SLOTS: 3,
  ALLOCATOR: 4,
  OTHER: 5,
} as const;
export type LockClass = (typeof LockClass)[keyof typeof LockClass];
export const LOCK_CLASS_NAMES = ['folio', 'invalidate', 'mmu', 'slots', 'allocator', 'other'] as const;

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
  'archInvalidateCalls',
  'firmwareCommands',
  'rmpUpdates',
  'foliosAllocated',
  'foliosFreed',
  'fallocates',
  'punchHoles',
  'punchHoleLeftovers',
  'conversions',
  'populatedPages',
  'preFaultedPages',
  'guestReads',
  'guestWrites',
  'pvalidates',
  'rmpViolations',
  'vcExceptions',
  'hostRmpFaults',
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
  'lockWaitNs.folio',
  'lockWaitNs.invalidate',
  'lockWaitNs.mmu',
  'lockWaitNs.slots',
  'lockWaitNs.allocator',
  'lockWaitNs.other',
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

/** One thread's counters: a Float64Array view onto that thread's block only. */
export function threadStats(mem: Mem, tid: number): Float64Array {
  const base = regionBase(mem, REGION) / 2 + tid * SLOTS_PER_THREAD;
  return mem.f64.subarray(base, base + SLOTS_PER_THREAD);
}

export type StatsSnapshot = Record<CounterName, number>;

/** Sums every thread's block. Reads race benignly with writers: a snapshot may be a few counts old. */
export function sumStats(mem: Mem): StatsSnapshot {
  const out = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as StatsSnapshot;
  for (let t = 0; t < mem.limits.maxThreads; t++) {
    const s = threadStats(mem, t);
    for (let i = 0; i < COUNTER_NAMES.length; i++) out[COUNTER_NAMES[i]] += s[i];
  }
  return out;
}
