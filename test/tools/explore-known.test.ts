// Known bugs set aside: explore counts a failure that matches a catalogued bug of the kernel it
// runs (its invariant, its detail, a version that has it) and goes on, exiting 1 only for a new
// one; --stop-on-known stops at the first; a catalogued finding (an accepted race, a counter, not
// a violation) is counted per schedule and ends a --catalogue search for it. The catalogue's
// bugs: 3ccbf6f47098 (pre-fault vs memslot delete, 6.11), ae431059e75d, 9935df5333aa, and
// b85524314a's punch-hole leftover.

import { describe, expect, it } from 'vitest';
import { cli, tempDir } from '../helpers/cli-helpers.js';

describe('explore sets known bugs aside', () => {
  it('6.11: the pre-fault deadlock is counted (known, with its fix) and the search goes on; --stop-on-known stops at it', async () => {
    const out = tempDir();
    const [aside, stop] = await Promise.all([
      cli(['explore', '--kernel', '6.11', '--schedules', '40', '--json', '--out', out]),
      cli(['explore', '--kernel', '6.11', '--schedules', '40', '--json', '--stop-on-known', '--no-shrink', '--out', out]),
    ]);
    expect(aside.status, aside.stderr).toBe(0);
    const r = JSON.parse(aside.stdout).results[0];
    expect(r).toMatchObject({ found: false, schedules: 40 });
    const deadlock = r.known.find((k: { id: string }) => k.id === 'prefault-memslot-deadlock');
    expect(deadlock).toMatchObject({ fixedBy: '3ccbf6f47098 (6.18: pre-fault returns EAGAIN)', firstSeed: 3 });
    expect(deadlock.schedules).toBeGreaterThanOrEqual(1);
    expect(stop.status).toBe(1);
    expect(JSON.parse(stop.stdout).results[0]).toMatchObject({ found: true, seed: 3, known: [] });
  });

  it('a finding searched for in the catalogue ends the search when a schedule shows it, on a version that has it', async () => {
    const r = await cli(['explore', '--catalogue', 'punch-hole-leftover', '--schedules', '300', '--json', '--out', tempDir()]);
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout).results[0];
    expect(res).toMatchObject({ found: true, expected: 'found', violation: 'finding: punch-hole-leftover (no invariant broken)' });
    expect(res.findings['punch-hole-leftover']).toBeGreaterThanOrEqual(1);
    expect(res.schedules).toBe(res.seed);
  });
});
