// gmem-sandbox: the public library API.

export { Sandbox, Vm, GuestMemfd, HostMapping, GupPin, Vcpu } from './vmm/sandbox/sandbox.js';
export type {
  GuestAccessResult,
  RmpQuery,
  FolioInfo,
  UserMemoryRegion2Args,
  LaunchUpdateArgs,
  MemoryAttributes2Args,
} from './vmm/sandbox/sandbox.js';
export { KVM_MEMORY_ATTRIBUTE_PRIVATE } from './gmem/attributes.js';
export { MODULE_PARAM_NAMES, type ModuleParams } from './gmem/params.js';
export type { SandboxOptions } from './vmm/sandbox/build.js';
export { KvmError, ArgumentError, SandboxClosedError, HostSignalError } from './vmm/sandbox/errors.js';
export { GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED, type GuestMemfdFlagName } from './gmem/flags.js';
export {
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES,
  KVM_CAP_MEMORY_ATTRIBUTES,
  type KvmCapName,
} from './kvm/check_extension.js';
export { SandboxLimitError, PAGE_SIZE, LIMITS } from './shm/limits.js';
export { POLICIES, type PolicyName } from './gmem/policy.js';
export { KERNEL_CHOICES, KERNEL_VERSIONS, type KernelChoice, type KernelVersionName, UPSTREAM, VERSIONS } from './gmem/version.js';
export { VM_TYPES, type VmTypeName } from './kvm/vm.js';
export { HOST_PATTERN } from './gmem/folio.js';
export { PvalidateRet, RmpupdateRet, SevRet } from './kvm/psp.js';
export type { ErrnoCode } from './shm/errno.js';
export { AbortReason, LockTimeoutError, SyncAbortError } from './shm/sync/sync.js';

// The threaded runtime and the runs built on it (what the CLI commands call).
export { Runtime, type RuntimeOptions, WorkerCrashError, type CrashReport } from './vmm/sandbox/runtime.js';
export { runStress, type StressOptions, type StressReport } from './vmm/stress/stress.js';
export { parseScenario, type Scenario } from './vmm/scenario/schema.js';
export { ScenarioError } from './vmm/io/problems.js';
export { runScenario, type ScenarioReport } from './vmm/scenario/runner.js';
export { Explorer, type ExploreConfig, type ScheduleResult, workloadFor } from './vmm/explore/explorer.js';
export { ExplorePool, type PoolSearch } from './vmm/explore/pool.js';
export {
  multiVmExperiment,
  policiesExperiment,
  type KernelSet,
  type MultiVmOptions,
  type MultiVmResult,
  type PageOwners,
  type PoliciesOptions,
  type PolicyRow,
} from './vmm/experiments/experiments.js';
export { conversionExperiment, type ConversionRow } from './vmm/experiments/conversion.js';
export { CONVERSION_KERNELS, type ConversionKernel, type ConversionOptions } from './vmm/experiments/conversion-options.js';
export { BUG_NAMES, type BugName, plantedBugPoints } from './gmem/bugs.js';
export { POINTS_MODES, type PointsMode } from './shm/points.js';
