// Random explore layouts (vmm/workload/layout.ts): two memslots always map the range exactly,
// with varying gfn bases and file offsets, over one guest_memfd or two; two slots on one file never
// bind the same index, which kvm_gmem_bind would refuse (-EINVAL when the index range is bound).

import { describe, expect, it } from 'vitest';
import { randomLayout } from '../../src/vmm/workload/layout.js';

describe('random layouts', () => {
  it('vary the gfn base, the file offsets, and one file or two behind the two memslots, and always map the range exactly', () => {
    const seen = { gfnNotIndex: 0, twoFiles: 0, oneFileTwoSlots: 0 };
    for (let seed = 1; seed <= 60; seed++) {
      const [a, b] = randomLayout(4, seed);
      expect(a.gfn + a.npages).toBe(b.gfn);
      expect(a.npages + b.npages).toBe(4);
      expect(a.npages).toBeGreaterThan(0);
      if (a.gfn !== a.pgoff || b.gfn !== b.pgoff) seen.gfnNotIndex++;
      if (a.file !== b.file) seen.twoFiles++;
      else {
        seen.oneFileTwoSlots++;
        // Two slots on one file never bind the same index.
        expect(b.pgoff).toBeGreaterThanOrEqual(a.pgoff + a.npages);
      }
    }
    expect(seen.gfnNotIndex).toBeGreaterThan(40);
    expect(seen.twoFiles).toBeGreaterThan(10);
    expect(seen.oneFileTwoSlots).toBeGreaterThan(10);
  });
});
