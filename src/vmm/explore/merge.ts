// Merges the --json results of `explore --shard K/N` runs (one machine each) into the result the
// unsharded search would give: per search, the schedules run add up and the first failing seed
// over all shards is the one reported. Inputs are validated: every shard of one search, each once.

import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { z } from 'zod';
import { POINTS_MODES } from '../../shm/points.js';
import { InputError } from '../io/outputs.js';

const search = z.looseObject({
  bug: z.string().nullable(),
  found: z.boolean(),
  schedules: z.number().int().min(0),
  seed: z.number().int().optional(),
  violation: z.string().optional(),
  saved: z.string().optional(),
  expected: z.enum(['found', 'not found']).optional(),
  interrupted: z.boolean().optional(),
});

export const exploreResultSchema = z.looseObject({
  explore: z.literal(1),
  kernel: z.string().nullable(),
  // Absent in results written before patches existed: none.
  patches: z.array(z.string()).default([]),
  // Absent in results written before explore took module parameters: none.
  moduleParams: z.record(z.string(), z.boolean()).default({}),
  strategy: z.string(),
  depth: z.number().int(),
  // Null: each search ran its own (a planted bug's); absent in results written before the mode existed.
  points: z.enum(POINTS_MODES).nullable().default(null),
  seed: z.number().int(),
  schedules: z.number().int().min(1),
  catalogue: z.string().nullable(),
  shard: z.strictObject({ k: z.number().int().min(0), n: z.number().int().min(1) }),
  interrupted: z.boolean(),
  results: z.array(search).min(1),
});
export type ExploreResult = z.output<typeof exploreResultSchema>;

/** True if the text is an explore result (rather than sweep lines): a JSON object with `explore`. */
export function looksLikeExploreResult(file: string): boolean {
  // Only the head is read: a sweep's output can be hundreds of megabytes, and `merge` streams it.
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return /^\{\s*"explore"\s*:/.test(buf.toString('utf8', 0, n).trimStart());
  } finally {
    closeSync(fd);
  }
}

export function readExploreResult(file: string): ExploreResult {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InputError(`${file}: not JSON: ${(e as Error).message}`);
  }
  const r = exploreResultSchema.safeParse(raw);
  if (!r.success)
    throw new InputError(
      `${file}: not an explore --json result:\n  ${r.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('\n  ')}`,
    );
  return r.data;
}

/** One search over every shard; missing shards are named and make the merge incomplete. */
export function mergeExploreResults(
  files: string[],
  parts: ExploreResult[],
): ExploreResult & { missingShards: number[]; shardCount: number } {
  const first = parts[0];
  const same = (p: ExploreResult): string =>
    JSON.stringify([
      p.kernel,
      p.patches,
      p.moduleParams,
      p.strategy,
      p.depth,
      p.points,
      p.seed,
      p.schedules,
      p.catalogue,
      p.shard.n,
      p.results.map((r) => r.bug),
    ]);
  parts.forEach((p, i) => {
    if (same(p) !== same(first))
      throw new InputError(
        `${files[i]}: a shard of another search than ${files[0]} (kernel, patches, module parameters, strategy, depth, points, seed, schedules, catalogue, shard count and bugs must agree)`,
      );
  });
  const seen = new Map<number, string>();
  parts.forEach((p, i) => {
    const other = seen.get(p.shard.k);
    if (other !== undefined) throw new InputError(`${files[i]}: shard ${p.shard.k}/${p.shard.n} again (also ${other})`);
    seen.set(p.shard.k, files[i]);
  });
  const missingShards = Array.from({ length: first.shard.n }, (_, k) => k).filter((k) => !seen.has(k));
  const results = first.results.map((_, j) => {
    const all = parts.map((p) => p.results[j]);
    const found = all.filter((r) => r.found).sort((a, b) => (a.seed ?? 0) - (b.seed ?? 0));
    const base = { ...all[0], schedules: all.reduce((n, r) => n + r.schedules, 0), interrupted: all.some((r) => r.interrupted === true) };
    // Every shard ran every seed below its own first failure, so the unsharded search would have
    // stopped at the earliest one, after as many schedules as seeds up to it.
    return found.length > 0
      ? { ...base, ...found[0], schedules: (found[0].seed ?? first.seed) - first.seed + 1, found: true }
      : { ...base, found: false };
  });
  return {
    ...first,
    shard: { k: 0, n: 1 },
    interrupted: parts.some((p) => p.interrupted),
    results,
    missingShards,
    shardCount: first.shard.n,
  };
}
