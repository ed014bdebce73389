// The conversion experiment (issue 19, item 6): a guest converts its memory back and forth,
// shared <=> private, while the VMM faults pages into its host mapping and pins some (GUP), on
// 7.0 (per-VM attributes, KVM_SET_MEMORY_ATTRIBUTES, a PUNCH_HOLE of the old private backing
// after a conversion to shared) and on 7.4 (in place: KVM_SET_MEMORY_ATTRIBUTES2 on the
// guest_memfd with gmem_in_place_conversion on). Two VMM worker threads run it
// (workload/conversion.ts); this file starts them, and counts per version.

import { VERSIONS } from '../../gmem/version.js';
import { PAGE_SIZE } from '../../shm/limits.js';
import { LOCK_STAT_NAMES, type StatsSnapshot, sumLatency } from '../../shm/stats.js';
import { type CrashReport, Runtime } from '../sandbox/runtime.js';
import type { GuestConvertResult, VmmPinResult } from '../workload/conversion.js';
import { type ConversionKernel, type ConversionOptions, checkConversionOptions } from './conversion-options.js';

export interface ConversionRow {
  kernel: ConversionKernel;
  /** How the version converts. */
  mode: string;
  attempts: number;
  conversions: number;
  toPrivate: number;
  toShared: number;
  conversionsPerSecond: number;
  eagain: number;
  /** EAGAIN refusals per attempt. */
  eagainRate: number;
  /** Other refusals by errno name. */
  errors: Record<string, number>;
  /** Bytes of folios cleared (kvm_gmem_prepare's clear) during the conversions. */
  bytesCleared: number;
  /** Bytes the guest copied back because a conversion did not keep them. */
  bytesCopied: number;
  sptesZapped: number;
  hostPtesZapped: number;
  /** SPTEs and host PTEs zapped per conversion done. */
  zapsPerConversion: number;
  punches: number;
  lruDrains: number;
  vmm: VmmPinResult;
  accessExits: number;
  elapsedMs: number;
  crashes: CrashReport[];
  interrupted: boolean;
  faultLatency: Array<{ lowNs: number; highNs: number; count: number }>;
  lockWaits: Array<{ lock: string; waitMs: number; contended: number }>;
  sentence: string;
}

/** The version's sandbox: 7.4 with gmem_in_place_conversion on. */
async function startRuntime(kernel: ConversionKernel, o: ConversionOptions, trace: boolean): Promise<Runtime> {
  const bytes = o.pages * PAGE_SIZE;
  return Runtime.start({
    sandbox: {
      kernel,
      memory: Math.max(16 << 20, 2 * bytes + (8 << 20)),
      userMemory: Math.max(16 << 20, bytes),
      ...(VERSIONS[kernel].inPlaceConversionParam ? { moduleParams: { gmem_in_place_conversion: true } } : {}),
    },
    callTimeoutMs: (o.conversions ? 0 : o.durationMs) + 60_000,
    trace,
    ...(o.signal ? { signal: o.signal } : {}),
  });
}

interface RunOut {
  guest: GuestConvertResult;
  vmm: VmmPinResult;
  before: StatsSnapshot;
  after: StatsSnapshot;
}

/** One version: the guest's setup, then its conversions and the VMM's thread side by side. */
async function runVersion(rt: Runtime, kernel: ConversionKernel, o: ConversionOptions): Promise<RunOut> {
  const inPlace = VERSIONS[kernel].inPlaceConversionParam;
  const l = await rt.call(rt.vmm, () => rt.vmm.api.conversionSetup(o.pages, inPlace));
  const v = rt.addVmmThread();
  await rt.call(v, () => v.api.init(rt.descriptor, v.tid));
  const held = o.holdPin === undefined ? -1 : await rt.call(v, () => v.api.conversionHoldPin(l, o.holdPin!));
  const before = rt.stats();
  // An interrupt stops both loops at their next turn; the row covers what ran.
  const stop = (): void => rt.requestStop();
  o.signal?.addEventListener('abort', stop, { once: true });
  const durationMs = o.conversions ? 600_000 : o.durationMs;
  const [guest, vmm] = await Promise.all([
    rt.call(rt.vmm, () => rt.vmm.api.conversionGuest({ chunk: o.chunk, durationMs, maxAttempts: o.conversions ?? 0 })),
    rt.call(v, () => v.api.conversionVmm(l, { durationMs, seed: o.seed, pinMs: o.pinMs, faults: o.faults ?? true, held })),
  ]);
  o.signal?.removeEventListener('abort', stop);
  if (held >= 0) vmm.pins++;
  return { guest, vmm, before, after: rt.stats() };
}

const MODES: Record<ConversionKernel, string> = {
  '7.0': 'per-VM attributes, PUNCH_HOLE after',
  '7.4': 'in place (ATTRIBUTES2)',
};

function rowOf(kernel: ConversionKernel, r: RunOut, rt: Runtime): Omit<ConversionRow, 'sentence'> {
  const d = (n: keyof StatsSnapshot): number => r.after[n] - r.before[n];
  const g = r.guest;
  const sptes = d('sptesZapped');
  const hostPtes = d('hostPtesZapped');
  return {
    kernel,
    mode: MODES[kernel],
    attempts: g.attempts,
    conversions: g.conversions,
    toPrivate: g.toPrivate,
    toShared: g.toShared,
    conversionsPerSecond: g.elapsedMs > 0 ? (1000 * g.conversions) / g.elapsedMs : 0,
    eagain: g.eagain,
    eagainRate: g.attempts > 0 ? g.eagain / g.attempts : 0,
    errors: g.errors,
    bytesCleared: d('clears') * PAGE_SIZE,
    bytesCopied: g.bytesCopied,
    sptesZapped: sptes,
    hostPtesZapped: hostPtes,
    zapsPerConversion: g.conversions > 0 ? (sptes + hostPtes) / g.conversions : 0,
    punches: g.punches,
    lruDrains: d('lruDrains'),
    vmm: r.vmm,
    accessExits: g.accessExits,
    elapsedMs: g.elapsedMs,
    crashes: [...rt.crashes],
    interrupted: false,
    faultLatency: sumLatency(rt.mem),
    lockWaits: LOCK_STAT_NAMES.map((l) => ({
      lock: l,
      waitMs: r.after[`lockWaitNs.${l}`] / 1e6,
      contended: r.after[`lockContended.${l}`],
    })),
  };
}

const KiB = (n: number): string => `${(n / 1024).toLocaleString('en-US')} KiB`;

/** What the row shows, in a sentence. */
export function explainConversion(r: Omit<ConversionRow, 'sentence'>): string {
  const refused =
    r.eagain > 0
      ? `${r.eagain} of ${r.attempts} attempts were refused with EAGAIN, each a page the VMM held pinned (${r.vmm.pins} pins)`
      : `no attempt was refused (${r.vmm.pins} pins)`;
  if (r.kernel === '7.4')
    return (
      `Each conversion changed the guest_memfd's attributes in place: the data stayed in its folio (${KiB(r.bytesCopied)} copied, ` +
      `${KiB(r.bytesCleared)} cleared), the host's PTEs went on the way to private (${r.hostPtesZapped}) and the guest's SPTEs of the old kind ` +
      `(${r.sptesZapped}); ${refused}.`
    );
  return (
    `Each conversion changed the VM's attributes and the data moved between the shared mapping and guest_memfd: the guest copied ` +
    `${KiB(r.bytesCopied)} back, a fresh private folio was cleared on every way to private (${KiB(r.bytesCleared)}) and the VMM punched the ` +
    `old backing ${r.punches} times; ${refused}, as nothing of the VMM's can hold a per-VM conversion back.`
  );
}

/** Runs the versions in turn: one row each (the versions run before an abort). */
export async function conversionExperiment(o: ConversionOptions): Promise<ConversionRow[]> {
  const kernels = checkConversionOptions(o);
  const rows: ConversionRow[] = [];
  for (const [i, kernel] of kernels.entries()) {
    if (o.signal?.aborted) break;
    o.onProgress?.(i / kernels.length, `${kernel} (${i + 1} of ${kernels.length})`);
    const trace = o.trace?.(kernel);
    const rt = await startRuntime(kernel, o, trace !== undefined);
    let row: Omit<ConversionRow, 'sentence'>;
    try {
      row = rowOf(kernel, await runVersion(rt, kernel, o), rt);
    } finally {
      await rt.shutdown();
      if (trace !== undefined) rt.writeTrace(trace, `gmem-sandbox experiment conversion (${kernel})`);
    }
    row.interrupted = o.signal?.aborted ?? false;
    rows.push({ ...row, sentence: explainConversion(row) });
  }
  o.onProgress?.(1, 'done');
  return rows;
}
