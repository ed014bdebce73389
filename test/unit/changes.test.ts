// The behaviour changes the catalogue lists between versions: each names real modelled versions
// in order and points at test files that exist in this repository.

import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KERNEL_VERSIONS } from '../../src/gmem/version.js';
import { CHANGES } from '../../src/vmm/explore/changes.js';

describe('version changes', () => {
  it.each(CHANGES.map((c) => [c.id, c] as const))('%s: versions in order, its tests exist', (_id, c) => {
    expect(KERNEL_VERSIONS.indexOf(c.before)).toBeLessThan(KERNEL_VERSIONS.indexOf(c.after));
    expect(KERNEL_VERSIONS.indexOf(c.before)).toBeGreaterThanOrEqual(0);
    const files = c.shownBy.split(', ');
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(existsSync(new URL(`../../${f}`, import.meta.url)), f).toBe(true);
  });
});
