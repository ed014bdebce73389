// Filling a whole 4 KiB page of host memory: the fault path's clear_page and the free path's
// paint. On a SharedArrayBuffer, V8 fills and copies through its relaxed-atomic helpers, a word
// or a byte at a time (Uint8Array.fill: ~2.9 GB/s here), while WebAssembly's memory.fill on a
// shared memory is a real memset (~100 GB/s L2-resident; bench row group 'zerofill'). So host
// memory is a shared WebAssembly.Memory when it fits one, and pages are filled through it.

import { PAGE_SIZE } from './limits.js';

const WASM_PAGE = 65536;
/** A 32-bit wasm memory holds at most 4 GiB; a bigger host memory is a plain SharedArrayBuffer. */
export const MAX_WASM_PAGES = 65536;

// (module (import "m" "m" (memory 1 65536 shared))
//   (func (export "fill") (param $at i32) (param $byte i32)
//     (memory.fill (local.get $at) (local.get $byte) (i32.const 4096))))
const MODULE_BYTES = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  // type section: (i32, i32) -> ()
  0x01, 0x06, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x00,
  // import section: m.m, memory, shared, min 1, max 65536
  0x02, 0x0b, 0x01, 0x01, 0x6d, 0x01, 0x6d, 0x02, 0x03, 0x01, 0x80, 0x80, 0x04,
  // function section
  0x03, 0x02, 0x01, 0x00,
  // export section: "fill" = func 0
  0x07, 0x08, 0x01, 0x04, 0x66, 0x69, 0x6c, 0x6c, 0x00, 0x00,
  // code section: local.get 0, local.get 1, i32.const 4096, memory.fill 0, end
  0x0a, 0x0e, 0x01, 0x0c, 0x00, 0x20, 0x00, 0x20, 0x01, 0x41, 0x80, 0x20, 0xfc, 0x0b, 0x00, 0x0b,
]);

/** The part of the WebAssembly API used here (the project's type libs do not declare it). */
export interface WasmMemory {
  readonly buffer: SharedArrayBuffer;
}
interface WasmApi {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let compiled: object | null = null;

/** Host memory of `bytes`: backed by a shared wasm memory when it fits in one. */
export function allocateHostMemory(bytes: number): { buffer: SharedArrayBuffer; wasm: WasmMemory | null } {
  const pages = Math.max(1, Math.ceil(bytes / WASM_PAGE));
  if (pages > MAX_WASM_PAGES) return { buffer: new SharedArrayBuffer(bytes), wasm: null };
  const wasm = new Wasm.Memory({ initial: pages, maximum: pages, shared: true });
  return { buffer: wasm.buffer, wasm };
}

/** fill(page, byte): sets every byte of 4 KiB page `page` of `host` to `byte`. */
export type PageFill = (page: number, byte: number) => void;

export function pageFiller(host: Uint8Array, wasm: WasmMemory | null): PageFill {
  if (wasm !== null) {
    compiled ??= new Wasm.Module(MODULE_BYTES);
    const fill = new Wasm.Instance(compiled, { m: { m: wasm } }).exports.fill as (at: number, byte: number) => void;
    return (page, byte) => fill(page * PAGE_SIZE, byte);
  }
  // Without wasm, copying a page from a private template is the fastest of the JS ways (6x a
  // fill of the shared bytes); a template per byte value (0 and the host pattern, in practice).
  const templates = new Map<number, Uint8Array>();
  return (page, byte) => {
    let t = templates.get(byte);
    if (t === undefined) {
      t = new Uint8Array(PAGE_SIZE).fill(byte);
      templates.set(byte, t);
    }
    host.set(t, page * PAGE_SIZE);
  };
}
