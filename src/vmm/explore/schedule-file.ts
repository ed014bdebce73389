// The saved-schedule format (explore writes it, replay reads it), validated with zod before a
// single worker starts: a corrupted or hand-edited file is refused naming the field and the rule,
// and the workload is bounded by what the explorer's small sandbox can run (a schedule edited to
// 1,000 vCPUs is refused, not run for minutes).

import { z } from 'zod';
import { BUG_NAMES } from '../../gmem/bugs.js';
import { POLICIES } from '../../gmem/policy.js';
import { KERNEL_CHOICES, PATCH_NAMES, UPSTREAM_BEFORE_7_0 } from '../../gmem/version.js';
import { INVARIANTS } from '../../checker/violations.js';
import { POINTS_MODES } from '../../shm/points.js';
import { MAX_VMM_THREADS, type ScheduleFile } from './explorer.js';
import { parseMix } from '../workload/mix.js';
import { ScheduleError } from '../io/problems.js';

/** Bounds of a controlled workload: the explorer's sandbox has 64 guest pages per VM. */
export const SCHEDULE_LIMITS = { vms: 4, vcpus: 8, pages: 64, accesses: 100_000, vmmOps: 100_000, maxSteps: 1_000_000, depth: 17 } as const;

const int = (min: number, max: number) => z.number().int().min(min).max(max);
const L = SCHEDULE_LIMITS;

const workload = z.strictObject({
  vmType: z.enum(['snp', 'sw-protected']),
  vms: int(1, L.vms),
  pages: int(1, L.pages),
  vcpus: int(1, L.vcpus),
  accesses: int(0, L.accesses),
  writeRatio: z.number().min(0).max(1),
  ops: z.string().superRefine((v, ctx) => {
    try {
      parseMix(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(/^--ops: /, '') });
    }
  }),
  vmmOps: int(0, L.vmmOps),
  populateFirstVm: z.boolean(),
  // Absent in schedules saved before they existed: those ran without them.
  prefaultRatio: z.number().min(0).max(1).default(0),
  layout: z.enum(['random', 'identity']).default('identity'),
  vmmThreads: int(1, MAX_VMM_THREADS).default(1),
  multiVmShare: z.number().min(0).max(1).default(0),
  gmemOnlyShare: z.number().min(0).max(1).default(0),
});

export const scheduleSchema = z
  .strictObject({
    version: z.literal(1),
    config: z.strictObject({
      // `upstream` in a file saved before 7.0 was modelled meant 6.19's behaviour; saves now name the version.
      kernel: z
        .enum(KERNEL_CHOICES)
        .optional()
        .transform((k) => (k === 'upstream' ? UPSTREAM_BEFORE_7_0 : k)),
      policy: z.enum(POLICIES).optional(),
      patches: z
        .array(z.enum(PATCH_NAMES))
        .refine((ps) => new Set(ps).size === ps.length, 'names a patch twice')
        .optional(),
      // Absent in schedules saved before explore took module parameters: every one at its default.
      moduleParams: z.strictObject({ gmem_in_place_conversion: z.boolean().optional() }).optional(),
      bug: z.enum(BUG_NAMES as [string, ...string[]]).nullable(),
      strategy: z.enum(['random', 'pct', 'replay']),
      depth: int(1, L.depth),
      maxSteps: int(1, L.maxSteps),
      // Absent in schedules saved before the mode existed, and in 'locks' ones.
      points: z.enum(POINTS_MODES).optional(),
      workload,
      scheduleTimeoutMs: int(1, 3_600_000).optional(),
    }),
    seed: int(0, 2 ** 32 - 1),
    choices: z
      .array(
        z
          .number()
          .int()
          .min(0)
          .max(1 << 16),
      )
      .max(L.maxSteps),
    outcome: z.enum(['ok', 'violation', 'deadlock', 'step-limit', 'hang']),
    violations: z.array(z.looseObject({ invariant: z.enum(INVARIANTS), by: z.string(), detail: z.string() })),
  })
  .superRefine((s, ctx) => {
    const w = s.config.workload;
    if (w.populateFirstVm && w.vms < 2)
      ctx.addIssue({
        code: 'custom',
        path: ['config', 'workload', 'vms'],
        message: 'must be at least 2 when populateFirstVm is set (one VM launches, one runs)',
      });
    if (s.choices.length > s.config.maxSteps)
      ctx.addIssue({
        code: 'custom',
        path: ['choices'],
        message: `has ${s.choices.length} choices, more than maxSteps (${s.config.maxSteps})`,
      });
  });

/** Validates a parsed schedule file; throws a ScheduleError listing every problem as "path: rule". */
export function parseSchedule(raw: unknown): ScheduleFile {
  const r = scheduleSchema.safeParse(raw);
  if (!r.success) throw new ScheduleError(r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`));
  return r.data as ScheduleFile;
}
