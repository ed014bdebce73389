// The conversion experiment's table (the CLI's text and the HTML report share it) and its report.

import type { ConversionRow } from '../experiments/conversion.js';
import type { ReportData } from './model.js';

export const CONVERSION_COLUMNS = [
  'kernel',
  'conversion',
  'attempts',
  'conversions/s',
  'EAGAIN',
  'EAGAIN rate',
  'bytes cleared',
  'bytes copied',
  'zaps/conversion',
  'punches',
  'pins',
];

export function conversionCells(r: ConversionRow): Array<string | number> {
  return [
    r.kernel,
    r.mode,
    r.attempts,
    Math.round(r.conversionsPerSecond),
    r.eagain,
    `${(100 * r.eagainRate).toFixed(2)}%`,
    r.bytesCleared,
    r.bytesCopied,
    r.zapsPerConversion.toFixed(2),
    r.punches,
    r.vmm.pins,
  ];
}

export function reportFromConversion(rows: ConversionRow[], command: string, seed: number): ReportData {
  return {
    title: 'gmem-sandbox experiment conversion',
    command,
    seed,
    generatedAt: new Date().toISOString(),
    summary: [
      [
        'workload',
        'a guest converts its memory shared <=> private chunk by chunk while the VMM faults pages into its mapping and pins some',
      ],
      ['kernels', rows.map((r) => r.kernel).join(', ')],
    ],
    tables: [
      {
        title: '7.0 (per-VM attributes) and 7.4 (in place) side by side',
        columns: CONVERSION_COLUMNS,
        rows: rows.map(conversionCells),
        paragraphs: rows.map((r) => ({ lead: r.kernel, text: r.sentence })),
      },
      {
        title: 'Zaps, drains and the VMM thread',
        columns: [
          'kernel',
          'to private',
          'to shared',
          'SPTEs zapped',
          'host PTEs zapped',
          'LRU drains',
          'host accesses',
          'SIGBUS',
          'pins refused',
        ],
        rows: rows.map((r) => [
          r.kernel,
          r.toPrivate,
          r.toShared,
          r.sptesZapped,
          r.hostPtesZapped,
          r.lruDrains,
          r.vmm.hostAccesses,
          r.vmm.sigbus,
          r.vmm.pinFailures,
        ]),
      },
    ],
    faultLatency: [],
    throughput: [],
    lockWaits: [],
    series: rows.map((r) => ({ name: `${r.kernel} (${r.mode})`, faultLatency: r.faultLatency, throughput: [], lockWaits: r.lockWaits })),
  };
}
