// Builds a sandbox's shared memory: every region declared by its owner, buffers allocated,
// allocator filled, free pages painted with the host pattern.

import { declareFirmwareLock } from '../../firmware/direct.js';
import { declareFirmwareMailbox } from '../../firmware/mailbox.js';
import { declareRmp } from '../../firmware/rmp.js';
import { declareSnpGuests } from '../../firmware/snp.js';
import { declareAllocator, PfnAllocator } from '../../gmem/allocator.js';
import { declareGmemAttributes } from '../../gmem/attributes_table.js';
import { declareBugs } from '../../gmem/bugs.js';
import { declareFailslab } from '../../gmem/failslab.js';
import { declareGupPins } from '../../gmem/pin_table.js';
import { declareLruAdd } from '../../gmem/lru.js';
import { MODULE_PARAM_NAMES, type ModuleParams, declareModuleParams, setGmemAttributesKept, setModuleParams } from '../../gmem/params.js';
import { declareFiles } from '../../gmem/file.js';
import { declareHostRmpFault } from '../../gmem/filemap.js';
import { declareFdTable } from '../../kvm/fdtable.js';
import { declareVcpuStates } from '../../kvm/vcpu_state.js';
import { HOST_PATTERN, declareFolios, Folios } from '../../gmem/folio.js';
import { declareInodes } from '../../gmem/inode.js';
import { declareHostMappings } from '../../gmem/vma.js';
import { POLICIES, POLICY_NAMES_BY_ID, type PolicyName } from '../../gmem/policy.js';
import {
  DEFAULT_KERNEL,
  KERNEL_CHOICES,
  type KernelChoice,
  type KernelVersionName,
  POLICY_VERSION,
  type PatchName,
  declareKernelPatches,
  patchNames,
  resolveKernelChoice,
  setKernelPatches,
  VERSIONS,
} from '../../gmem/version.js';
import { declareAttributes } from '../../kvm/attributes.js';
import { declareMemslots } from '../../kvm/memslots.js';
import { declareSptes } from '../../kvm/spte.js';
import { declareVcpus } from '../../kvm/vcpu.js';
import { declareVms } from '../../kvm/vm.js';
import { LayoutBuilder, type SharedBuffers, allocateBuffers, mapBuffers } from '../../shm/layout.js';
import { LIMITS, PAGE_SIZE, type SandboxLimits, checkLimit, isPageAligned } from '../../shm/limits.js';
import { declareCoverage } from '../../shm/coverage.js';
import { declareLatency, declareStats } from '../../shm/stats.js';
import { declareTrace } from '../../shm/trace.js';
import { declareKasan } from '../../shm/slab.js';
import { declareSched } from '../../shm/sched/layout.js';
import { declareRunctl } from '../../vcpu-workers/runctl.js';
import { declareOnlineAudit } from '../../checker/online.js';
import { DEFAULT_SPIN, DEFAULT_WATCHDOG_MS } from '../../shm/sync/sync.js';
import { FreeSync } from '../../shm/sync/free.js';
import { SyncControl, declareSync } from '../../shm/sync/control.js';
import { declareLockdep, lockdepReset } from '../../shm/sync/lockdep.js';
import { ArgumentError } from './errors.js';
import { parseSize } from './units.js';

export interface SandboxOptions {
  /** The modelled kernel (default '6.11'). */
  kernel?: KernelChoice;
  /** A prepare policy: an alias for the kernel version it was modelled on (see gmem/version.ts). */
  policy?: PolicyName;
  /** Posted patches to apply on top of the kernel version (KERNEL_PATCHES in gmem/version.ts). */
  patches?: readonly string[];
  /** Host memory for guest_memfd folios (default 64MiB). */
  memory?: number | string;
  /** Guest physical address space per VM (default: the larger of 1GiB and twice `memory`). */
  gpaSpace?: number | string;
  /** VMM userspace memory backing shared guest pages (default 16MiB). */
  userMemory?: number | string;
  /** Total guest_memfd size over the sandbox's life (default: 4 x memory, at least gpaSpace). */
  gmemSpace?: number | string;
  maxVms?: number;
  /** A wait longer than this is reported as a hang, naming the lock and its holder (default 5000). */
  watchdogMs?: number;
  /** Loads a waiter spins before it sleeps (default 200). */
  spin?: number;
  /** Room for this many trace events per thread (0, the default: no tracing). */
  traceEvents?: number;
  /**
   * kvm.ko's module parameters, as at module load (default: all off). A version without the
   * parameter ignores it, as the module loader ignores an unknown one.
   */
  moduleParams?: ModuleParams;
}

/** Everything a thread needs to join the sandbox; structured-cloneable. */
export interface SandboxDescriptor {
  buffers: SharedBuffers;
  kernel: KernelVersionName;
  /** The prepare policy of `kernel`. */
  policy: PolicyName;
  /** The patches the kernel runs with (kept in the shared memory too, for every thread's kernel). */
  patches: PatchName[];
  watchdogMs: number;
  spin: number;
  /** The module parameters in force (those the kernel version has). */
  moduleParams: Required<ModuleParams>;
}

/**
 * Largest host or VMM memory buffer: Node 20's typed arrays hold at most 2^32 elements, so a
 * byte view of a larger SharedArrayBuffer cannot be made (LIMITS.MAX_PFNS alone would allow 16 GiB).
 */
export const MAX_BUFFER_BYTES = 2 ** 32;

function pages(v: number | string | undefined, dflt: number, field: string): number {
  const bytes = v === undefined ? dflt : parseSize(v, field);
  if (!(bytes > 0) || !isPageAligned(bytes))
    throw new ArgumentError(field, `must be a positive multiple of ${PAGE_SIZE} bytes, got ${bytes}`);
  return bytes / PAGE_SIZE;
}

export function resolveLimits(o: SandboxOptions): SandboxLimits {
  const nrPfns = pages(o.memory, 64 << 20, 'memory');
  checkLimit(
    nrPfns <= LIMITS.MAX_PFNS && nrPfns * PAGE_SIZE <= MAX_BUFFER_BYTES,
    'memory',
    `at most ${MAX_BUFFER_BYTES / (1 << 30)} GiB (a typed array's limit in Node), got ${nrPfns * PAGE_SIZE} bytes`,
  );
  const gfnsPerVm = pages(o.gpaSpace, Math.max(1 << 30, 2 * nrPfns * PAGE_SIZE), 'gpaSpace');
  checkLimit(gfnsPerVm <= LIMITS.MAX_GFNS, 'gpaSpace', `at most ${(LIMITS.MAX_GFNS * PAGE_SIZE) / (1 << 30)} GiB`);
  const userPages = pages(o.userMemory, 16 << 20, 'userMemory');
  checkLimit(
    userPages * PAGE_SIZE <= MAX_BUFFER_BYTES,
    'userMemory',
    `at most ${MAX_BUFFER_BYTES / (1 << 30)} GiB (a typed array's limit in Node), got ${userPages * PAGE_SIZE} bytes`,
  );
  const filemapPages = pages(o.gmemSpace, Math.max(4 * nrPfns, gfnsPerVm) * PAGE_SIZE, 'gmemSpace');
  const maxVms = o.maxVms ?? 4;
  if (!Number.isInteger(maxVms) || maxVms < 1 || maxVms > LIMITS.MAX_VMS)
    throw new ArgumentError('maxVms', `must be an integer from 1 to ${LIMITS.MAX_VMS}, got ${maxVms}`);
  return { nrPfns, gfnsPerVm, userPages, filemapPages, maxVms, maxThreads: LIMITS.MAX_THREADS };
}

/** The kernel version named by `kernel`, or by `policy` (an alias), or the default. */
export function resolveKernel(o: { kernel?: string; policy?: string }): KernelVersionName {
  if (o.policy !== undefined && !(POLICIES as readonly string[]).includes(o.policy)) {
    throw new ArgumentError('policy', `must be one of ${POLICIES.join(', ')}, got '${o.policy}'`);
  }
  if (o.kernel !== undefined && !(KERNEL_CHOICES as readonly string[]).includes(o.kernel)) {
    throw new ArgumentError('kernel', `must be one of ${KERNEL_CHOICES.join(', ')}, got '${o.kernel}'`);
  }
  const kernel = o.kernel === undefined ? undefined : resolveKernelChoice(o.kernel as KernelChoice);
  const byPolicy = o.policy === undefined ? undefined : POLICY_VERSION[o.policy as PolicyName];
  if (kernel !== undefined && byPolicy !== undefined && kernel !== byPolicy) {
    throw new ArgumentError('policy', `'${o.policy}' is kernel ${byPolicy}, which contradicts kernel '${o.kernel}'; give one of them`);
  }
  return kernel ?? byPolicy ?? DEFAULT_KERNEL;
}

export function buildSandboxMemory(o: SandboxOptions): SandboxDescriptor {
  const d = allocateSandbox(o);
  for (const _ of resetSteps(d, true));
  return d;
}

export interface BuildProgress {
  onProgress?: (fraction: number, what: string) => void;
  /** Abandons the build between steps (the caller gets an AbortError). */
  signal?: AbortSignal;
}

/**
 * The same build in steps, yielding to the event loop between them: a gigabyte sandbox takes
 * seconds to paint, during which progress is shown and a signal still gets an answer.
 */
export async function buildSandboxMemoryAsync(o: SandboxOptions, p: BuildProgress = {}): Promise<SandboxDescriptor> {
  const d = allocateSandbox(o);
  for (const fraction of resetSteps(d, true)) {
    p.signal?.throwIfAborted();
    p.onProgress?.(fraction, `setting up ${(d.buffers.host.byteLength / (1 << 20)).toFixed(0)} MiB of host memory`);
    await new Promise((r) => setImmediate(r));
  }
  return d;
}

function allocateSandbox(o: SandboxOptions): SandboxDescriptor {
  const kernel = resolveKernel(o);
  const policy = POLICY_NAMES_BY_ID[VERSIONS[kernel].prepare];
  const patches = resolvePatches(o.patches);
  const watchdogMs = o.watchdogMs ?? DEFAULT_WATCHDOG_MS;
  if (!Number.isInteger(watchdogMs) || watchdogMs < 0)
    throw new ArgumentError('watchdogMs', `must be a non-negative integer, got ${watchdogMs}`);
  const spin = o.spin ?? DEFAULT_SPIN;
  if (!Number.isInteger(spin) || spin < 1) throw new ArgumentError('spin', `must be a positive integer, got ${spin}`);
  const limits = resolveLimits(o);
  const traceEvents = o.traceEvents ?? 0;
  if (!Number.isInteger(traceEvents) || traceEvents < 0 || traceEvents > 1 << 20)
    throw new ArgumentError('traceEvents', `must be an integer from 0 to ${1 << 20}, got ${traceEvents}`);
  const lb = new LayoutBuilder();
  declareSync(lb, limits.maxThreads);
  declareStats(lb, limits.maxThreads);
  declareLatency(lb, limits.maxThreads);
  declareTrace(lb, limits.maxThreads, traceEvents);
  declareFolios(lb, limits.nrPfns);
  declareAllocator(lb, limits.nrPfns);
  declareInodes(lb, limits.filemapPages);
  declareFiles(lb);
  declareFdTable(lb);
  declareVms(lb, limits.maxVms, limits.maxThreads);
  declareVcpus(lb);
  declareMemslots(lb, limits.maxVms, limits.gfnsPerVm);
  declareAttributes(lb, limits.maxVms, limits.gfnsPerVm);
  declareSptes(lb, limits.maxVms, limits.gfnsPerVm);
  declareRmp(lb, limits.nrPfns);
  declareSnpGuests(lb, limits.maxVms);
  declareFirmwareLock(lb);
  declareFirmwareMailbox(lb);
  declareRunctl(lb, limits.maxVms, limits.gfnsPerVm);
  declareBugs(lb);
  declareSched(lb, limits.maxThreads);
  declareKasan(lb);
  declareOnlineAudit(lb);
  // Last, so that adding them moved no other region's words.
  declareLockdep(lb);
  // After lockdep, for the same reason.
  declareHostMappings(lb, limits.filemapPages);
  declareCoverage(lb, limits.maxThreads);
  declareKernelPatches(lb);
  declareHostRmpFault(lb);
  // 7.4's regions, last for the same reason.
  declareModuleParams(lb);
  declareFailslab(lb);
  declareGmemAttributes(lb, limits.filemapPages);
  declareLruAdd(lb, limits.maxThreads);
  declareGupPins(lb);
  declareVcpuStates(lb, limits.maxVms);
  const buffers = allocateBuffers(lb.build(), limits);
  const moduleParams = resolveModuleParams(o.moduleParams, kernel);
  const mem = mapBuffers(buffers);
  setModuleParams(mem, moduleParams);
  setGmemAttributesKept(mem, VERSIONS[kernel].gmemAttributes);
  return { buffers, kernel, policy, patches, watchdogMs, spin, moduleParams };
}

/** The parameters named (each a known one, a boolean), as the kernel `kernel` has them. */
export function resolveModuleParams(p: ModuleParams | undefined, kernel: KernelVersionName): Required<ModuleParams> {
  const out: Required<ModuleParams> = { gmem_in_place_conversion: false };
  for (const [name, value] of Object.entries(p ?? {})) {
    if (!(MODULE_PARAM_NAMES as readonly string[]).includes(name))
      throw new ArgumentError('moduleParams', `unknown module parameter '${name}'; known: ${MODULE_PARAM_NAMES.join(', ')}`);
    if (typeof value !== 'boolean') throw new ArgumentError(`moduleParams.${name}`, `must be a boolean, got ${JSON.stringify(value)}`);
  }
  // ee1168fb7313 (7.4) adds the parameter; an older kvm.ko ignores it ("unknown parameter ignored").
  if (VERSIONS[kernel].inPlaceConversionParam) out.gmem_in_place_conversion = p?.gmem_in_place_conversion ?? false;
  return out;
}

/** The patches a sandbox is asked to run with, checked. */
export function resolvePatches(names: readonly string[] | undefined): PatchName[] {
  if (names === undefined) return [];
  if (!Array.isArray(names)) throw new ArgumentError('patches', `must be a list of patch names, got ${JSON.stringify(names)}`);
  try {
    return patchNames(names);
  } catch (e) {
    throw new ArgumentError('patches', (e as Error).message.replace(/^patches: /, ''));
  }
}

/**
 * Puts a sandbox's shared memory back to its state after build: every table empty, every pfn
 * free and painted with the host pattern. Only while no other thread touches it (the explorer
 * reuses one sandbox for many schedules).
 */
export function resetSandboxMemory(d: SandboxDescriptor): void {
  for (const _ of resetSteps(d, false));
}

/** Host memory painted per step: 64 MiB, a few tens of milliseconds on fresh memory. */
const PAINT_CHUNK = 64 << 20;

/** Resets in steps, yielding the fraction done after each; fresh buffers are already zero. */
function* resetSteps(d: SandboxDescriptor, fresh: boolean): Generator<number> {
  const mem = mapBuffers(d.buffers);
  if (!fresh) {
    for (const r of Object.values(mem.layout.regions)) mem.w.fill(0, r.base, r.base + r.resetWords);
    mem.user.fill(0);
  }
  new SyncControl(mem).init(d.watchdogMs, d.spin);
  setKernelPatches(mem, d.patches);
  lockdepReset(mem);
  const folios = new Folios(mem);
  for (let pfn = 0; pfn < mem.limits.nrPfns; pfn++) folios.markFree(pfn);
  new PfnAllocator(mem, new FreeSync(mem, 0)).initAll(mem.limits.nrPfns);
  // A page at a time through Mem.fillPage (a Uint8Array.fill of shared memory runs at a tenth
  // of the speed), in steps so that a large build can show progress and take a signal.
  const n = mem.limits.nrPfns;
  const perStep = PAINT_CHUNK / PAGE_SIZE;
  for (let first = 0; first < n; first += perStep) {
    yield first / n;
    const end = Math.min(n, first + perStep);
    for (let pfn = first; pfn < end; pfn++) mem.fillPage(pfn, HOST_PATTERN);
  }
}
