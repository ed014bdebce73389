// Group 'zerofill' (issue 12 item 4): the ways to clear one 4 KiB page of a SharedArrayBuffer in
// Node 20, each timed over the same 64 pages (256 KiB, L2-resident) so that only the method
// differs, against the physical anchor: the kernel's clear_page at about 13.7 GB/s. The sandbox
// uses the fastest (src/shm/pagefill.ts); `zero-fill.sandbox` is that path as the fault path
// calls it (Mem.fillPage).

import { PAGE_SIZE } from '../src/shm/limits.js';
import { allocateHostMemory, pageFiller } from '../src/shm/pagefill.js';
import { type Ctx, consume, tinySync } from './measure.js';
import type { Row } from './table.js';

const PAGES = 64;
/** Pages cleared per timed call: the timer's cost is spread over them. */
const BATCH = 256;
/** clear_page on the physical machine (rep stosb), bytes per ns. */
export const CLEAR_PAGE_GBPS = 13.7;

export async function runZeroFill(ctx: Ctx): Promise<Row[]> {
  // One extra page stays zero: the source of the copyWithin candidate.
  const mem = allocateHostMemory((PAGES + 1) * PAGE_SIZE);
  const u8 = new Uint8Array(mem.buffer, 0, (PAGES + 1) * PAGE_SIZE);
  const u16 = new Uint16Array(mem.buffer, 0, u8.length / 2);
  const u32 = new Uint32Array(mem.buffer, 0, u8.length / 4);
  const f64 = new Float64Array(mem.buffer, 0, u8.length / 8);
  const b64 = new BigUint64Array(mem.buffer, 0, u8.length / 8);
  const buf = Buffer.from(mem.buffer, 0, u8.length);
  const zero = PAGES * PAGE_SIZE;
  const fillPage = pageFiller(u8, mem.wasm);
  const plain = pageFiller(u8, null);
  const candidates: Array<[string, string, (p: number) => void]> = [
    ['zero-fill.u8.fill', 'Uint8Array.fill', (p) => u8.fill(0, p * PAGE_SIZE, (p + 1) * PAGE_SIZE)],
    ['zero-fill.u16.fill', 'Uint16Array.fill', (p) => u16.fill(0, p * 2048, (p + 1) * 2048)],
    ['zero-fill.u32.fill', 'Uint32Array.fill', (p) => u32.fill(0, p * 1024, (p + 1) * 1024)],
    ['zero-fill.f64.fill', 'Float64Array.fill', (p) => f64.fill(0, p * 512, (p + 1) * 512)],
    ['zero-fill.b64.fill', 'BigUint64Array.fill', (p) => b64.fill(0n, p * 512, (p + 1) * 512)],
    [
      'zero-fill.copyWithin',
      'Uint8Array.copyWithin from a zero page of the same buffer',
      (p) => u8.copyWithin(p * PAGE_SIZE, zero, zero + PAGE_SIZE),
    ],
    ['zero-fill.Buffer.fill', 'Buffer.fill over the shared bytes', (p) => buf.fill(0, p * PAGE_SIZE, (p + 1) * PAGE_SIZE)],
    ['zero-fill.set.template', 'Uint8Array.set from a private zero page (the fallback without wasm)', (p) => plain(p, 0)],
    ['zero-fill.wasm.memory.fill', 'WebAssembly memory.fill on the shared wasm memory the buffer is', (p) => fillPage(p, 0)],
  ];
  const o = { batch: BATCH, timeMs: ctx.quick ? 40 : 400, warmupMs: ctx.quick ? 10 : 100 };
  const anchorNs = PAGE_SIZE / CLEAR_PAGE_GBPS;
  const rows: Row[] = [
    {
      group: 'zerofill',
      name: 'clear_page.anchor',
      kind: 'time',
      median: anchorNs,
      note: `the kernel's clear_page at ${CLEAR_PAGE_GBPS} GB/s (physical anchor, not measured here)`,
    },
  ];
  for (const [name, what, fn] of candidates) {
    ctx.log(`zerofill: ${name}`);
    const s = tinySync(
      name,
      () => {
        for (let i = 0; i < BATCH; i++) fn(i & (PAGES - 1));
        consume(u8[0]);
      },
      o,
    );
    rows.push({
      group: 'zerofill',
      name,
      kind: 'time',
      ...s,
      baseline: 'clear_page.anchor',
      note: `${what}; ${(PAGE_SIZE / s.median).toFixed(1)} GB/s, batches of ${BATCH}`,
    });
  }
  return rows;
}
