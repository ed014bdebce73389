// `--shard K/N`: one of N machines runs the items i with i % N === K (0-based K, like a
// Kubernetes indexed Job's JOB_COMPLETION_INDEX). One parser for explore and sweep.

import { ArgumentError } from '../sandbox/errors.js';

export interface Shard {
  /** 0-based shard number, 0 <= k < n. */
  k: number;
  n: number;
}

/** Parses `K/N` (spaces around the slash allowed); anything else is an ArgumentError naming --shard and the rule. */
export function parseShard(raw: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(raw);
  if (m === null) throw new ArgumentError('--shard', `expected K/N with integers, K 0-based (0 <= K < N), got '${raw}'`);
  const k = Number(m[1]);
  const n = Number(m[2]);
  if (n < 1 || !Number.isSafeInteger(n)) throw new ArgumentError('--shard', `N must be an integer of at least 1, got '${raw}'`);
  if (k >= n)
    throw new ArgumentError(
      '--shard',
      `K is 0-based and must be from 0 to ${n - 1} (shards are 0/${n} .. ${n - 1}/${n}, like JOB_COMPLETION_INDEX), got '${raw}'`,
    );
  return { k, n };
}
