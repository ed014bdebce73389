// Mutations of JSON inputs for the fuzz tests (fast-check): values a field may be set to, paths
// into a document, and the example scenario and saved schedule they are applied to.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { root } from './cli-helpers.js';

export const example = JSON.parse(readFileSync(join(root, 'examples/private-fault-snp.json'), 'utf8'));
export const schedule = JSON.parse(readFileSync(join(root, 'test/fixtures/schedule-prepare-skips-clear.json'), 'utf8'));

/** Values a field may be set to: right and wrong types, edge numbers, units, garbage. Bounded so a run stays short. */
const value = fc.oneof(
  fc.constantFrom(0, 1, -1, -4, 2, 3, 7, 31, 32, 4096, 0x1000, 2 ** 32, 2 ** 53, 1e300, 0.5, -0.5, Number.NaN),
  fc.constantFrom(
    '0',
    '1',
    '-4',
    '4KiB',
    '2MiB',
    '1MiB',
    '4MiB',
    '5GiB',
    '0x1000',
    '0xzz',
    '12 parsecs',
    '',
    'a',
    'g',
    'snp',
    'ok',
    'EINVAL',
    'private',
    'fault.begin',
  ),
  fc.constantFrom(null, true, false, [], {}, ['guest_memfd'], ['keep_size', 'punch_hole'], { vm: 'a', vcpu: 0 }),
  fc.string({ maxLength: 8 }),
  fc.integer({ min: -10, max: 100 }),
);

/** A path into a JSON value: keys of objects and indices of arrays, chosen by numbers. */
export type Mutation = { kind: 'set' | 'delete' | 'add'; path: number[]; value: unknown; key: string };
export const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom('set', 'delete', 'add'),
  path: fc.array(fc.nat(20), { minLength: 0, maxLength: 4 }),
  value,
  key: fc.constantFrom('extra', 'len', 'size', 'vm', 'vcpu', 'op', 'expect', 'timeout_ms', 'memory', 'policy', 'steps'),
});

/** Applies mutations to a deep copy; a path picks the child (index modulo the number of children) at each level. */
export function mutate(base: unknown, ms: Mutation[]): unknown {
  const doc = structuredClone(base);
  for (const m of ms) {
    let parent: Record<string, unknown> | unknown[] | null = null;
    let key: string | number = '';
    let node: unknown = doc;
    for (const step of m.path) {
      if (node === null || typeof node !== 'object') break;
      const keys = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
      if (keys.length === 0) break;
      parent = node as Record<string, unknown>;
      key = keys[step % keys.length];
      node = (node as Record<string | number, unknown>)[key];
    }
    if (m.kind === 'add' && node !== null && typeof node === 'object' && !Array.isArray(node))
      (node as Record<string, unknown>)[m.key] = m.value;
    else if (parent === null) continue;
    else if (m.kind === 'delete' && !Array.isArray(parent)) delete (parent as Record<string, unknown>)[key as string];
    else (parent as Record<string | number, unknown>)[key] = m.value;
  }
  return doc;
}

export const PROBLEM = /^(\(top level\)|[\w-]+(\.[\w-]+)*): \S.*$/s;
