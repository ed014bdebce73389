// experiment conversion on 7.0 and 7.4, with exact counts. The guest converts its chunks in turn
// (chunk i mod n, each the other way from its state), so with the VMM's random faults and pins
// off the run is the same every time: 16 conversions of 4 pages are 8 each way. On 7.0 the data
// moves between the shared mapping and a fresh private folio every time (copied back; cleared on
// the way to private; punched on the way to shared: kvm_gmem_punch_hole); on 7.4 it stays in its
// folio (kvm_gmem_set_attributes). A pin the VMM holds on page 0 refuses that page's every
// conversion to private on 7.4 (EAGAIN, kvm_gmem_has_outstanding_references), never on 7.0.

import { describe, expect, it } from 'vitest';
import { ArgumentError, type ConversionRow, conversionExperiment } from '../../src/index.js';
import { reportFromConversion } from '../../src/vmm/report/conversion.js';
import { renderReport } from '../../src/vmm/report/html.js';

const PAGE = 4096;
const QUIET = { durationMs: 1000, pages: 4, chunk: 1, conversions: 16, pinMs: 0, faults: false, seed: 1 };

function byKernel(rows: ConversionRow[]): Record<string, ConversionRow> {
  return Object.fromEntries(rows.map((r) => [r.kernel, r]));
}

describe('experiment conversion', () => {
  it('4 KiB conversions: 7.0 copies and clears every move and punches, 7.4 neither; one zap each', async () => {
    const rows = await conversionExperiment(QUIET);
    expect(rows.map((r) => r.kernel)).toEqual(['7.0', '7.4']);
    const { '7.0': old, '7.4': now } = byKernel(rows);
    for (const r of rows) {
      expect(r).toMatchObject({ attempts: 16, conversions: 16, toPrivate: 8, toShared: 8, eagain: 0, errors: {}, accessExits: 0 });
      expect(r).toMatchObject({ sptesZapped: 16, hostPtesZapped: 0, zapsPerConversion: 1, crashes: [] });
    }
    expect(old).toMatchObject({ bytesCopied: 16 * PAGE, bytesCleared: 8 * PAGE, punches: 8, lruDrains: 0 });
    // The one drain: the guest's first writes left its folios in its LRU batch.
    expect(now).toMatchObject({ bytesCopied: 0, bytesCleared: 0, punches: 0, lruDrains: 1 });
  });

  it('2 MiB conversions: 7.0 copies 2 MiB each way, 7.4 nothing', async () => {
    const rows = byKernel(await conversionExperiment({ ...QUIET, pages: 512, chunk: 512, conversions: 4 }));
    expect(rows['7.0']).toMatchObject({ conversions: 4, bytesCopied: 4 * 512 * PAGE, bytesCleared: 2 * 512 * PAGE, punches: 2 });
    expect(rows['7.4']).toMatchObject({ conversions: 4, bytesCopied: 0, bytesCleared: 0, sptesZapped: 4 * 512 });
  });

  it('EAGAIN only with a pin: page 0 pinned refuses its 4 conversions to private on 7.4, none on 7.0', async () => {
    const rows = byKernel(await conversionExperiment({ ...QUIET, holdPin: 0 }));
    expect(rows['7.4']).toMatchObject({
      attempts: 16,
      eagain: 4,
      eagainRate: 0.25,
      conversions: 12,
      toPrivate: 6,
      toShared: 6,
      bytesCopied: 0,
    });
    // The pin's host PTE goes at the first refusal (unmap_mapping_pages runs before the check).
    expect(rows['7.4'].hostPtesZapped).toBe(1);
    expect(rows['7.4'].vmm.pins).toBe(1);
    expect(rows['7.0']).toMatchObject({ eagain: 0, conversions: 16 });
    expect(rows['7.0'].vmm.pins).toBe(0);
  });

  it('options are checked before anything runs, by field and rule', async () => {
    await expect(conversionExperiment({ ...QUIET, pages: 10, chunk: 4 })).rejects.toThrow(
      /^pages: must be a whole number of chunks \(4 pages\), got 10$/,
    );
    await expect(conversionExperiment({ ...QUIET, chunk: 0 })).rejects.toThrow(/^chunk: must be an integer from 1 to 512, got 0$/);
    await expect(conversionExperiment({ ...QUIET, kernel: '6.11' as never })).rejects.toBeInstanceOf(ArgumentError);
    await expect(conversionExperiment({ ...QUIET, holdPin: 4 })).rejects.toThrow(/^holdPin: must be an integer from 0 to 3, got 4$/);
    await expect(conversionExperiment({ ...QUIET, conversions: 0, durationMs: 0 })).rejects.toThrow(/^durationMs: /);
  });

  it('the report has a row and a paragraph per version', async () => {
    const rows = await conversionExperiment({ ...QUIET, kernel: '7.4', holdPin: 1 });
    const html = renderReport(reportFromConversion(rows, 'gmem-sandbox experiment conversion', 1));
    expect(html).toContain('in place (ATTRIBUTES2)');
    expect(html).toMatch(/4 of 16 attempts were refused with EAGAIN/);
  });
});
