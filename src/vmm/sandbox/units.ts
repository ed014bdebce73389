// Sizes and addresses as users write them: numbers, hex strings, "4KiB", "2MiB", "1GiB".

import { ArgumentError } from './errors.js';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1 << 20,
  mb: 1 << 20,
  mib: 1 << 20,
  g: 1 << 30,
  gb: 1 << 30,
  gib: 1 << 30,
};

export function parseSize(v: unknown, field: string): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new ArgumentError(field, `must be an integer, got ${v}`);
    return v;
  }
  if (typeof v !== 'string') throw new ArgumentError(field, `must be a number or a size string like "4KiB", got ${typeof v}`);
  const s = v.trim();
  if (/^0x[0-9a-f]+$/i.test(s)) return Number.parseInt(s, 16);
  const m = /^(-?\d+)\s*([a-z]*)$/i.exec(s);
  if (m === null || !(m[2].toLowerCase() in UNITS)) {
    throw new ArgumentError(field, `must be a number, a hex string ("0x1000") or a size ("4KiB", "2MiB", "1GiB"), got "${v}"`);
  }
  const n = Number(m[1]) * UNITS[m[2].toLowerCase()];
  if (!Number.isSafeInteger(n)) throw new ArgumentError(field, `"${v}" is too large`);
  return n;
}
