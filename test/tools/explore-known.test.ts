// Known bugs set aside: explore counts a failure that matches a catalogued bug of the kernel it
// runs (its invariant, its detail, a version that has it) and goes on, exiting 1 only for a new
// one; --stop-on-known stops at the first; a catalogued finding (an accepted race, a counter, not
// a violation) is counted per schedule and ends a --catalogue search for it. The catalogue's
// bugs: 3ccbf6f47098 (pre-fault vs memslot delete, 6.11), ae431059e75d, 9935df5333aa,
// b85524314a's punch-hole leftover, and the late LAUNCH_UPDATE (snp_launch_update after
// LAUNCH_FINISH racing KVM_PRE_FAULT_MEMORY; no merged fix), gone with the posted launch-state
// patch (--patch snp-launch-state).

import { readFileSync } from 'node:fs';
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

  it('the late LAUNCH_UPDATE is found on upstream, and not with --patch snp-launch-state (both exit 0: as expected)', async () => {
    const out = tempDir();
    const [found, patched] = await Promise.all([
      cli(['explore', '--catalogue', 'late-launch-update-prefault', '--schedules', '300', '--no-shrink', '--json', '--out', out]),
      cli([
        'explore',
        '--catalogue',
        'late-launch-update-prefault',
        '--patch',
        'snp-launch-state',
        '--schedules',
        '300',
        '--json',
        '--out',
        out,
      ]),
    ]);
    expect(found.status, found.stderr).toBe(0);
    const f = JSON.parse(found.stdout);
    expect(f).toMatchObject({ kernel: null, patches: [] });
    expect(f.results[0]).toMatchObject({ found: true, expected: 'found', seed: 25, schedules: 25 });
    // On the way, a second LAUNCH_FINISH of that workload: another known bug, set aside.
    expect(f.results[0].known.map((k: { id: string; firstSeed: number }) => [k.id, k.firstSeed])).toEqual([['snp-launch-finish-twice', 4]]);
    expect(f.results[0].violation).toBe(
      'rmpAgreement: RMP entry of pfn 96 is hypervisor-owned: snp_page_reclaim made it shared after the firmware refused its LAUNCH_UPDATE',
    );
    const saved = JSON.parse(readFileSync(f.results[0].saved, 'utf8'));
    expect(saved.violations[1].detail).toMatch(
      /^the host wrote 1 guest-assigned page\(s\) \(RMP faults\); the first: clear_highpage in kvm_gmem_get_pfn on pfn 96 \(thread \d+\), assigned to ASID \d+ at gfn \d+, immutable/,
    );
    expect(patched.status, patched.stderr).toBe(0);
    const p = JSON.parse(patched.stdout);
    expect(p).toMatchObject({ patches: ['snp-launch-state'] });
    expect(p.results[0]).toMatchObject({ found: false, expected: 'not found', schedules: 300, known: [] });
  });

  it('the default workload on upstream meets the late LAUNCH_UPDATE and the two LAUNCH_FINISH bugs of 7.0, and sets each aside as known', async () => {
    const r = await cli(['explore', '--kernel', 'upstream', '--schedules', '400', '--json', '--out', tempDir()]);
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout).results[0];
    expect(res).toMatchObject({ found: false, schedules: 400 });
    expect(res.known.map((k: { id: string; firstSeed: number }) => [k.id, k.firstSeed])).toEqual([
      ['snp-launch-finish-twice', 98],
      ['late-launch-update-prefault', 239],
      ['snp-launch-finish-unlocked-vcpus', 376],
    ]);
  });
});
