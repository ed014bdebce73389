// The bench's alternation of rows in blocks (bench/measure.ts, alternateBlocks), without timing:
// which row runs when, which calls are recorded, and what each call is told. The fault rows take
// turns at opening a block (rotate), so that no row always runs first; the mailbox rows keep a
// fixed order. No kernel code: the order is the harness's.

import { describe, expect, it } from 'vitest';
import { Histogram } from '../../bench/histogram.js';
import { type BlockArm, alternateBlocks } from '../../bench/measure.js';

/** Arms that log each block as `name@first call` and each call index they are given. */
function arms(names: string[], log: string[], calls: Record<string, number[]>): BlockArm[] {
  return names.map((name) => {
    calls[name] = [];
    return {
      h: new Histogram(),
      op: (i: number) => calls[name].push(i),
      enter: (i: number) => void log.push(`${name}@${i}`),
      leave: () => void log.push(`/${name}`),
    };
  });
}

describe('alternateBlocks', () => {
  it('without rotate, the first row opens every block; each row counts its own calls across blocks', async () => {
    const log: string[] = [];
    const calls: Record<string, number[]> = {};
    const a = arms(['spin', 'mailbox'], log, calls);
    await alternateBlocks({ blocks: 2, perBlock: 2, skip: 1, batch: 3 }, a);
    expect(log).toEqual(['spin@0', '/spin', 'mailbox@0', '/mailbox', 'spin@9', '/spin', 'mailbox@9', '/mailbox']);
    expect(calls.spin).toEqual([...Array(18).keys()]);
    // One sample per batch; the skipped first sample of each block is not recorded.
    expect(a.map((x) => x.h.count)).toEqual([4, 4]);
  });

  it('with rotate, block k opens with row k mod rows, so that each row in turn runs first and after each other row', async () => {
    const log: string[] = [];
    const calls: Record<string, number[]> = {};
    const a = arms(['sw', 'snp', 'snp70'], log, calls);
    await alternateBlocks({ blocks: 2, perBlock: 1, skip: 0, warmBlocks: 1, rotate: true }, a);
    expect(log.filter((l) => !l.startsWith('/'))).toEqual([
      'sw@0',
      'snp@0',
      'snp70@0',
      'snp@1',
      'snp70@1',
      'sw@1',
      'snp70@2',
      'sw@2',
      'snp@2',
    ]);
    // The warm-up block is run, not recorded.
    expect(a.map((x) => x.h.count)).toEqual([2, 2, 2]);
    expect(calls.snp70).toEqual([0, 1, 2]);
  });
});
