// The conversion experiment's options and their checks, apart from the experiment itself so that
// the command line can name its choices and limits without loading the sandbox.

import { ArgumentError } from '../sandbox/errors.js';

/** The versions compared: 7.0's per-VM attributes, 7.4's in-place conversion. */
export const CONVERSION_KERNELS = ['7.0', '7.4'] as const;
export type ConversionKernel = (typeof CONVERSION_KERNELS)[number];
/** Largest guest (pages) and chunk (pages: 2 MiB). */
export const MAX_CONVERSION_PAGES = 8192;
export const MAX_CONVERSION_CHUNK = 512;

export interface ConversionOptions {
  /** '7.0', '7.4', 'all' or a list (default: both). */
  kernel?: ConversionKernel | 'all' | readonly ConversionKernel[];
  /** Run length per version, unless `conversions` is given. */
  durationMs: number;
  /** Conversion attempts per version (0 or absent: run for durationMs). */
  conversions?: number;
  /** Guest memory in pages, a whole number of chunks. */
  pages: number;
  /** Pages one conversion covers. */
  chunk: number;
  /** How long the VMM holds each pin it takes (0: no random pins). */
  pinMs: number;
  /** Whether the VMM faults pages into its host mapping (7.4; default true). */
  faults?: boolean;
  /** A page the VMM pins before the guest starts and holds to the end (7.4; absent: none). */
  holdPin?: number;
  seed: number;
  trace?: (kernel: ConversionKernel) => string | undefined;
  signal?: AbortSignal;
  onProgress?: (fraction: number, what: string) => void;
}

function intIn(field: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new ArgumentError(field, `must be an integer from ${min} to ${max}, got ${v}`);
}

/** The versions to run, each option checked: an ArgumentError names the field and its rule. */
export function checkConversionOptions(o: ConversionOptions): ConversionKernel[] {
  const ks = o.kernel === undefined || o.kernel === 'all' ? CONVERSION_KERNELS : typeof o.kernel === 'string' ? [o.kernel] : o.kernel;
  for (const k of ks)
    if (!(CONVERSION_KERNELS as readonly string[]).includes(k))
      throw new ArgumentError('kernel', `must be ${CONVERSION_KERNELS.join(', ')} or all, got '${String(k)}'`);
  if (ks.length === 0) throw new ArgumentError('kernel', 'must name at least one version');
  intIn('chunk', o.chunk, 1, MAX_CONVERSION_CHUNK);
  intIn('pages', o.pages, 1, MAX_CONVERSION_PAGES);
  if (o.pages % o.chunk !== 0) throw new ArgumentError('pages', `must be a whole number of chunks (${o.chunk} pages), got ${o.pages}`);
  intIn('conversions', o.conversions ?? 0, 0, 10_000_000);
  if (!(o.conversions ?? 0) && !(Number.isFinite(o.durationMs) && o.durationMs >= 10 && o.durationMs <= 600_000))
    throw new ArgumentError('durationMs', `must be from 10 to 600000 ms, got ${o.durationMs}`);
  if (!(Number.isFinite(o.pinMs) && o.pinMs >= 0 && o.pinMs <= 1000))
    throw new ArgumentError('pinMs', `must be from 0 to 1000 ms, got ${o.pinMs}`);
  if (o.holdPin !== undefined) intIn('holdPin', o.holdPin, 0, o.pages - 1);
  intIn('seed', o.seed, 0, 2 ** 32 - 1);
  return [...new Set(ks)];
}
