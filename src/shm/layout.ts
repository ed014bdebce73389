// Carves the sandbox's shared memory into named regions. Each region has exactly one owner
// module, which declares its size here and computes offsets only within its own region.

import { CACHE_LINE, PAGE_SIZE, type SandboxLimits, assert, checkLimit } from './limits.js';
import { type PageFill, type WasmMemory, allocateHostMemory, pageFiller } from './pagefill.js';

const WORDS_PER_LINE = CACHE_LINE / 4;

export interface Region {
  /** First Int32 word of the region in the meta buffer (cache-line aligned). */
  readonly base: number;
  readonly words: number;
  /**
   * The words, from the base, that a reset of the sandbox zeroes; the owner writes the rest
   * before it reads them (the scheduler's logs: 1.5 MiB that a reset per schedule would clear).
   */
  readonly resetWords: number;
  /** Who owns the region's layout, for reports and reviewers. */
  readonly owner: string;
}

/** Serializable description of every region: sent once to each worker at start-up. */
export interface Layout {
  readonly regions: Readonly<Record<string, Region>>;
  readonly totalWords: number;
}

export class LayoutBuilder {
  private next = 0;
  private readonly regions: Record<string, Region> = {};

  /** Declares a region of `words` Int32 words, aligned to a cache line; a reset zeroes its first `resetWords`. */
  add(name: string, words: number, owner: string, resetWords = words): void {
    assert(!(name in this.regions), `region ${name} declared twice`);
    assert(Number.isInteger(words) && words >= 0, `region ${name} size`);
    assert(Number.isInteger(resetWords) && resetWords >= 0 && resetWords <= words, `region ${name} reset size`);
    const base = this.next;
    this.regions[name] = { base, words, resetWords, owner };
    this.next = base + Math.ceil(words / WORDS_PER_LINE) * WORDS_PER_LINE;
  }

  build(): Layout {
    // Float64 views over the same buffer need 8-byte alignment: regions are line-aligned already.
    return { regions: { ...this.regions }, totalWords: this.next };
  }
}

/** The sandbox's shared buffers; the same object shape exists on every thread. */
export interface SharedBuffers {
  readonly meta: SharedArrayBuffer;
  /** Host pages backing guest_memfd folios: nrPfns * 4 KiB. */
  readonly host: SharedArrayBuffer;
  /** The shared wasm memory whose buffer `host` is (null when host memory is too big for one). */
  readonly hostWasm: WasmMemory | null;
  /** VMM userspace memory that backs shared guest memory: userPages * 4 KiB. */
  readonly user: SharedArrayBuffer;
  readonly layout: Layout;
  readonly limits: SandboxLimits;
}

/** Per-thread typed views over the shared buffers. */
export interface Mem {
  readonly w: Int32Array;
  readonly f64: Float64Array;
  readonly host: Uint8Array;
  /** Fills one whole host page (clear_page, the free path's paint): the fastest way there is. */
  readonly fillPage: PageFill;
  readonly user: Uint8Array;
  readonly layout: Layout;
  readonly limits: SandboxLimits;
  readonly buffers: SharedBuffers;
}

/** Most memory one sandbox's metadata may take; a bigger configuration is refused up front. */
export const MAX_META_BYTES = 1 << 30;

export function allocateBuffers(layout: Layout, limits: SandboxLimits): SharedBuffers {
  const metaBytes = layout.totalWords * 4;
  checkLimit(metaBytes <= MAX_META_BYTES, 'memory', `metadata would take ${metaBytes} bytes, more than ${MAX_META_BYTES}`);
  const host = allocateHostMemory(limits.nrPfns * PAGE_SIZE);
  return {
    meta: new SharedArrayBuffer(metaBytes),
    host: host.buffer,
    hostWasm: host.wasm,
    user: new SharedArrayBuffer(limits.userPages * PAGE_SIZE),
    layout,
    limits,
  };
}

export function mapBuffers(buffers: SharedBuffers): Mem {
  // A wasm memory is whole 64 KiB pages: the view ends at the last host page.
  const host = new Uint8Array(buffers.host, 0, buffers.limits.nrPfns * PAGE_SIZE);
  return {
    w: new Int32Array(buffers.meta),
    f64: new Float64Array(buffers.meta),
    host,
    fillPage: pageFiller(host, buffers.hostWasm),
    user: new Uint8Array(buffers.user),
    layout: buffers.layout,
    limits: buffers.limits,
    buffers,
  };
}

/** The region holding word `i` and the word's offset in it (traces name a write's object so), or null. */
export function regionAt(mem: Mem, i: number): { name: string; offset: number } | null {
  for (const [name, r] of Object.entries(mem.layout.regions)) if (i >= r.base && i < r.base + r.words) return { name, offset: i - r.base };
  return null;
}

/** Base word of a region; only the region's owner module should call this. */
export function regionBase(mem: Mem, name: string): number {
  const r = mem.layout.regions[name];
  assert(r !== undefined, `region ${name} is not declared`);
  return r.base;
}
