// The scenario file format, validated with zod so that every bad field is reported with its
// path and the rule it breaks, before anything runs.

import { z } from 'zod';
import { FALLOC_MODE_NAMES, type FallocModeName } from '../../gmem/fallocate.js';
import { GUEST_MEMFD_FLAG_NAMES, type GuestMemfdFlagName } from '../../gmem/flags.js';
import { POLICIES } from '../../gmem/policy.js';
import { KERNEL_CHOICES, PATCH_NAMES, POLICY_VERSION, resolveKernelChoice } from '../../gmem/version.js';
import { KVM_CAP_NAMES, type KvmCapName } from '../../kvm/check_extension.js';
import { SNP_PAGE_TYPE_NAMES } from '../../kvm/psp.js';
import { VM_TYPES } from '../../kvm/vm.js';
import { Errno } from '../../shm/errno.js';
import { LIMITS } from '../../shm/limits.js';
import { POINTS } from '../../shm/points.js';
import { EXIT_NAMES } from '../../vcpu-workers/guest.js';
import { parseSize } from '../sandbox/units.js';
import { ScenarioError } from '../io/problems.js';

/** A size or address: a number, a hex string ("0x1000") or a size ("4KiB", "2MiB"). */
const size = z.union([z.number(), z.string()]).transform((v, ctx) => {
  let n: number;
  try {
    n = parseSize(v, 'value');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(/^value: /, '') });
    return z.NEVER;
  }
  // Sizes, lengths and addresses are unsigned in the uAPI (__u64): a negative one is a typo.
  if (n < 0) {
    ctx.addIssue({ code: 'custom', message: `must not be negative, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return n;
});

/** A signed offset or length: fallocate(2) takes loff_t, and refuses a negative one itself (EINVAL). */
const signedSize = z.union([z.number(), z.string()]).transform((v, ctx) => {
  try {
    return parseSize(v, 'value');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(/^value: /, '') });
    return z.NEVER;
  }
});

/** Bytes one guest_read returns: the result is printed and kept in the report. */
export const MAX_GUEST_READ = 1 << 20;
const readLen = size.pipe(z.number().max(MAX_GUEST_READ, `must be at most ${MAX_GUEST_READ} bytes (1MiB) per guest_read`));
const hostReadLen = size.pipe(z.number().max(MAX_GUEST_READ, `must be at most ${MAX_GUEST_READ} bytes (1MiB) per host_read`));

/** vCPU threads a scenario can start: thread ids less the controller, VMM and firmware. */
export const MAX_SCENARIO_VCPUS = LIMITS.MAX_THREADS - 3;

const name = z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, 'must be a name of letters, digits, "_" or "-"');
const fdRef = z.union([name, z.number().int()]);
/**
 * A __u64 field of a uAPI struct: a size as above, or a hex string of up to 16 digits for the
 * values a JSON number cannot hold exactly (e.g. an offset that overflows with its size).
 */
const u64 = z.union([
  z
    .string()
    .regex(/^0x[0-9a-fA-F]{1,16}$/)
    .transform((v) => BigInt(v)),
  size,
]);
const hexData = z.string().regex(/^(0x)?([0-9a-fA-F]{2})*$/, 'must be hex bytes, e.g. "deadbeef"');

/** 'hang': the watchdog ended a wait that never finished (the run stops there). */
/** 'SIGBUS', 'SIGSEGV': the signal a host access through a guest_memfd mapping takes. */
export const OUTCOMES = [
  'ok',
  ...Object.keys(Errno),
  ...EXIT_NAMES.filter((e) => e !== 'none'),
  'SIGBUS',
  'SIGSEGV',
  'ELIMIT',
  'ETIMEDOUT',
  'hang',
] as const;
const expect = z.enum(OUTCOMES as unknown as [string, ...string[]]).optional();

const base = { expect, expect_value: z.unknown().optional(), note: z.string().optional() };
const vmStep = { vm: name, ...base };
const vcpuStep = { vm: name, vcpu: z.number().int().min(0), ...base };

const actor = z.union([z.literal('vmm'), z.strictObject({ vm: name, vcpu: z.number().int().min(0) })]);

const leafSteps = [
  z.strictObject({
    op: z.literal('create_guest_memfd'),
    ...vmStep,
    as: name,
    size,
    // A u64: a number, a hex string for the bits a JSON number cannot hold exactly, or names (6.18).
    flags: z
      .union([
        z.array(z.enum(Object.keys(GUEST_MEMFD_FLAG_NAMES) as [GuestMemfdFlagName, ...GuestMemfdFlagName[]])),
        z.number().int(),
        z
          .string()
          .regex(/^0x[0-9a-fA-F]{1,16}$/, 'must be a number or a hex u64 like "0x8000000000000000"')
          .transform((v) => BigInt(v)),
      ])
      .optional(),
  }),
  z.strictObject({ op: z.literal('link_guest_memfd'), ...vmStep, fd: fdRef, as: name }),
  z.strictObject({ op: z.literal('close'), fd: fdRef, ...base }),
  z.strictObject({
    op: z.literal('set_user_memory_region2'),
    ...vmStep,
    slot: z.number().int(),
    flags: z.union([z.array(z.enum(['guest_memfd', 'readonly', 'log_dirty_pages'])), z.number().int()]).optional(),
    guest_phys_addr: size,
    memory_size: size,
    userspace_addr: size.optional(),
    guest_memfd: fdRef.optional(),
    guest_memfd_offset: size.optional(),
  }),
  z.strictObject({
    op: z.literal('set_memory_attributes'),
    ...vmStep,
    address: size,
    size,
    attributes: z.enum(['private', 'shared']),
    flags: z.number().int().optional(),
  }),
  z.strictObject({
    op: z.literal('set_memory_attributes2'),
    fd: fdRef,
    offset: u64,
    size: u64,
    attributes: z.union([z.enum(['private', 'shared']), u64]),
    flags: u64.optional(),
    ...base,
  }),
  z.strictObject({
    op: z.literal('fallocate'),
    fd: fdRef,
    mode: z.union([z.array(z.enum(Object.keys(FALLOC_MODE_NAMES) as [FallocModeName, ...FallocModeName[]])), z.number().int()]),
    offset: signedSize,
    len: signedSize,
    ...base,
  }),
  z.strictObject({ op: z.literal('read'), fd: fdRef, ...base }),
  z.strictObject({ op: z.literal('write'), fd: fdRef, ...base }),
  z.strictObject({ op: z.literal('pread'), fd: fdRef, offset: signedSize.optional(), ...base }),
  z.strictObject({ op: z.literal('pwrite'), fd: fdRef, offset: signedSize.optional(), ...base }),
  z.strictObject({
    op: z.literal('check_extension'),
    vm: name.optional(),
    cap: z.enum(Object.keys(KVM_CAP_NAMES) as [KvmCapName, ...KvmCapName[]]),
    ...base,
  }),
  z.strictObject({ op: z.literal('mmap'), fd: fdRef, as: name, offset: size, size, shared: z.boolean().optional(), ...base }),
  z.strictObject({ op: z.literal('munmap'), map: name, ...base }),
  z.strictObject({ op: z.literal('host_read'), map: name, offset: size, len: hostReadLen, ...base }),
  z.strictObject({ op: z.literal('host_write'), map: name, offset: size, data: hexData, ...base }),
  z.strictObject({ op: z.literal('gup_pin'), map: name, offset: size, as: name, ...base }),
  z.strictObject({ op: z.literal('unpin'), pin: name, ...base }),
  z.strictObject({ op: z.literal('snp_launch_start'), ...vmStep }),
  z.strictObject({
    op: z.literal('snp_launch_update'),
    ...vmStep,
    gpa: size,
    len: size,
    type: z.enum(Object.keys(SNP_PAGE_TYPE_NAMES) as [string, ...string[]]).optional(),
    /** The source bytes; without them uaddr is NULL (7.4 with gmem_in_place_conversion: populate in place). */
    data: hexData.optional(),
    /** Source pages mapped (default: all of len); a page past them faults (EFAULT). */
    source_pages: z
      .number()
      .int()
      .min(0)
      .max(1 << 20)
      .optional(),
    /** The source address's offset within its page (7.0 refuses one that is not 0). */
    source_offset: z.number().int().min(0).max(4095).optional(),
  }),
  z.strictObject({ op: z.literal('snp_launch_finish'), ...vmStep }),
  z.strictObject({ op: z.literal('pre_fault_memory'), ...vcpuStep, gpa: size, size, flags: z.number().int().optional() }),
  z.strictObject({ op: z.literal('guest_read'), ...vcpuStep, gpa: size, len: readLen, private: z.boolean().optional() }),
  z.strictObject({ op: z.literal('guest_write'), ...vcpuStep, gpa: size, data: hexData, private: z.boolean().optional() }),
  z.strictObject({ op: z.literal('pvalidate'), ...vcpuStep, gpa: size, validate: z.boolean().optional() }),
  z.strictObject({ op: z.literal('hwpoison'), fd: fdRef, offset: size, ...base }),
  z.strictObject({ op: z.literal('rmp_query'), ...vmStep, gpa: size }),
  z.strictObject({ op: z.literal('folio_query'), fd: fdRef, offset: size, ...base }),
  z.strictObject({ op: z.literal('pause'), point: z.enum(POINTS as unknown as [string, ...string[]]), actor: actor.optional(), ...base }),
  z.strictObject({ op: z.literal('resume'), point: z.enum(POINTS as unknown as [string, ...string[]]), ...base }),
  z.strictObject({
    op: z.literal('await_held'),
    point: z.enum(POINTS as unknown as [string, ...string[]]),
    timeout_ms: z.number().int().min(1).max(60_000).optional(),
    ...base,
  }),
  z.strictObject({ op: z.literal('signal'), actor, ...base }),
  z.strictObject({ op: z.literal('settle'), timeout_ms: z.number().int().min(1).optional(), ...base }),
  z.strictObject({ op: z.literal('stats'), ...base }),
] as const;

const leaf = z.discriminatedUnion('op', leafSteps);
const parallel = z.strictObject({ op: z.literal('parallel'), steps: z.array(leaf).min(1), ...base });
export const step = z.discriminatedUnion('op', [...leafSteps, parallel]);

export const scenarioSchema = z.strictObject({
  /** The modelled kernel (default 6.11); `policy` is the older name of the same choice. */
  kernel: z.enum(KERNEL_CHOICES).optional(),
  policy: z.enum(POLICIES).optional(),
  /** Posted patches applied on top of the kernel (gmem/version.ts KERNEL_PATCHES), each once. */
  patches: z
    .array(z.enum(PATCH_NAMES))
    .refine((ps) => new Set(ps).size === ps.length, 'names a patch twice')
    .optional(),
  memory: size.optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
  watchdog_ms: z.number().int().min(0).max(600_000).optional(),
  /** kvm.ko's module parameters at load (a kernel without one ignores it). */
  module_params: z.strictObject({ gmem_in_place_conversion: z.boolean().optional() }).optional(),
  vms: z
    .array(z.strictObject({ name, type: z.enum(VM_TYPES), vcpus: z.number().int().min(0).max(LIMITS.MAX_VCPUS_PER_VM).default(1) }))
    .min(1)
    .max(LIMITS.MAX_VMS),
  steps: z.array(step),
});

export type Scenario = z.output<typeof scenarioSchema>;
export type Step = z.output<typeof step>;
export type LeafStep = z.output<typeof leaf>;
export type IoctlStep = Extract<
  LeafStep,
  {
    op:
      | 'create_guest_memfd'
      | 'link_guest_memfd'
      | 'close'
      | 'set_user_memory_region2'
      | 'set_memory_attributes'
      | 'fallocate'
      | 'snp_launch_start'
      | 'snp_launch_update'
      | 'snp_launch_finish'
      | 'hwpoison'
      | 'rmp_query'
      | 'folio_query'
      | 'read'
      | 'write'
      | 'pread'
      | 'pwrite'
      | 'check_extension'
      | 'mmap'
      | 'munmap'
      | 'host_read'
      | 'host_write'
      | 'set_memory_attributes2'
      | 'gup_pin'
      | 'unpin';
  }
>;

/** Validates raw JSON; throws a ScenarioError listing every problem as "path: rule". */
export function parseScenario(raw: unknown): Scenario {
  const r = scenarioSchema.safeParse(raw);
  if (!r.success) {
    throw new ScenarioError(r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${issueMessage(i, raw)}`));
  }
  checkNames(r.data);
  return r.data;
}

const LEAF_OPS = leafSteps.map((s) => s.shape.op.value);

/** zod's message, except for an unknown step op, where it only says "Invalid input". */
function issueMessage(i: z.core.$ZodIssue, raw: unknown): string {
  if (i.code !== 'invalid_union' || i.path[i.path.length - 1] !== 'op') return i.message;
  const got = i.path.reduce<unknown>(
    (o, k) => (o !== null && typeof o === 'object' ? (o as Record<PropertyKey, unknown>)[k] : undefined),
    raw,
  );
  const known = i.path.length > 3 ? LEAF_OPS : [...LEAF_OPS, 'parallel'];
  return `unknown op ${JSON.stringify(got)}; expected one of ${known.join(', ')}`;
}

/** Names must be defined before use: fds by `as`, VMs in `vms`, vCPUs by count. */
function checkNames(s: Scenario): void {
  const problems: string[] = [];
  if (s.kernel !== undefined && s.policy !== undefined && POLICY_VERSION[s.policy] !== resolveKernelChoice(s.kernel)) {
    problems.push(`policy: '${s.policy}' is kernel ${POLICY_VERSION[s.policy]}, which contradicts kernel '${s.kernel}'; give one of them`);
  }
  const vms = new Map(s.vms.map((v) => [v.name, v]));
  if (vms.size !== s.vms.length) problems.push('vms: VM names must be unique');
  const vcpus = s.vms.reduce((n, v) => n + v.vcpus, 0);
  if (vcpus > MAX_SCENARIO_VCPUS)
    problems.push(`vms: ${vcpus} vCPUs in all; at most ${MAX_SCENARIO_VCPUS} (one thread each, beside the controller, VMM and firmware)`);
  const fds = new Set<string>();
  const maps = new Set<string>();
  const pins = new Set<string>();
  const visit = (st: Step, path: string): void => {
    if ('vm' in st && typeof st.vm === 'string' && !vms.has(st.vm)) problems.push(`${path}.vm: no VM named '${st.vm}' in vms`);
    if ('vcpu' in st && typeof st.vm === 'string' && vms.has(st.vm) && st.vcpu >= vms.get(st.vm)!.vcpus) {
      problems.push(`${path}.vcpu: VM '${st.vm}' has ${vms.get(st.vm)!.vcpus} vCPU(s)`);
    }
    if ('actor' in st && typeof st.actor === 'object' && st.actor !== null) {
      const a = st.actor;
      if (!vms.has(a.vm)) problems.push(`${path}.actor.vm: no VM named '${a.vm}'`);
      else if (a.vcpu >= vms.get(a.vm)!.vcpus) problems.push(`${path}.actor.vcpu: VM '${a.vm}' has ${vms.get(a.vm)!.vcpus} vCPU(s)`);
    }
    for (const f of ['fd', 'guest_memfd'] as const) {
      const v = (st as Record<string, unknown>)[f];
      if (typeof v === 'string' && !fds.has(v)) problems.push(`${path}.${f}: no guest_memfd named '${v}' was created by an earlier step`);
    }
    if ('map' in st && !maps.has(st.map)) problems.push(`${path}.map: no mapping named '${st.map}' was made by an earlier mmap`);
    if ('pin' in st && !pins.has(st.pin)) problems.push(`${path}.pin: no pin named '${st.pin}' was made by an earlier gup_pin`);
    if ('as' in st) {
      if (fds.has(st.as) || maps.has(st.as) || pins.has(st.as)) problems.push(`${path}.as: '${st.as}' is already used`);
      (st.op === 'mmap' ? maps : st.op === 'gup_pin' ? pins : fds).add(st.as);
    }
    if (st.op === 'parallel') st.steps.forEach((c, j) => visit(c, `${path}.steps.${j}`));
  };
  s.steps.forEach((st, i) => visit(st, `steps.${i}`));
  if (problems.length) throw new ScenarioError(problems);
}
