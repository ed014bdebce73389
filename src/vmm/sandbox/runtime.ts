// The controller's side of a threaded sandbox: starts the firmware, VMM and vCPU workers on one
// shared memory, drives them over comlink, turns a crash, an exit or a hang into a report, and
// tears everything down without hanging the process. The controller never blocks on a lock.

import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { FirmwareWorkerApi } from '../../firmware/worker.js';
import { Mailbox, type MailboxTuning } from '../../shm/mailbox.js';
import { FIRMWARE_MAILBOX } from '../../firmware/mailbox.js';
import type { VmTypeName } from '../../kvm/vm.js';
import { wordDescriber } from '../../firmware/describe.js';
import { type Mem, mapBuffers } from '../../shm/layout.js';
import { type Remote, wrapWorker } from '../../shm/rpc.js';
import { type StatsSnapshot, sumStats } from '../../shm/stats.js';
import { SandboxClosedError } from './errors.js';
import { collectTrace, enableTracing, traceDropped } from '../../shm/trace.js';
import { setBugs } from '../../gmem/bugs.js';
import { chromeTraceFromEvents } from '../report/chrome-trace.js';
import { writeOutput } from '../io/outputs.js';
import { FreeSync } from '../../shm/sync/free.js';
import { SyncControl } from '../../shm/sync/control.js';
import { AbortReason } from '../../shm/sync/sync.js';
import { RunControl } from '../../vcpu-workers/runctl.js';
import type { VcpuWorkerApi } from '../../vcpu-workers/api.js';
import { type SandboxDescriptor, type SandboxOptions, buildSandboxMemoryAsync } from './build.js';
import type { VmmWorkerApi } from './vmm-worker.js';
import { WORKER_BUNDLES, WORKER_MODULES_ENV } from './worker-entries.js';

export const TID_VMM = 1;
export const TID_FIRMWARE = 2;
export const TID_FIRST_VCPU = 3;

/**
 * Where a worker's compiled entry lives: workers always run the built JavaScript in dist/, as
 * one bundled file where `npm run build` made one (worker-entries.ts).
 */
export function workerFile(rel: string): string {
  return entryFile(`src/${rel}`);
}

/** A worker entry under dist/ (`src/...` or `test/workers/...`), or its bundle. */
function entryFile(rel: string): string {
  const bundle = WORKER_BUNDLES[rel];
  if (bundle === undefined || process.env[WORKER_MODULES_ENV] === '1') return distFile(rel);
  const file = distFile(bundle);
  return existsSync(file) ? file : distFile(rel);
}

/** A built file, by its path under dist/ (`src/...`, or `test/workers/...` for a test's worker). */
export function distFile(rel: string): string {
  const here = fileURLToPath(import.meta.url);
  // Running from dist/src/vmm/sandbox/runtime.js. Running from src/vmm/sandbox/runtime.ts (vitest): dist/.
  const root = here.replace(/[\\/](dist[\\/])?src[\\/]vmm[\\/]sandbox[\\/]runtime\.[jt]s$/, '');
  return `${root}/dist/${rel}`;
}

export interface CrashReport {
  actor: string;
  kind: 'error' | 'exit' | 'timeout';
  message: string;
  stack?: string;
}

export class WorkerCrashError extends Error {
  constructor(readonly report: CrashReport) {
    super(`${report.actor} ${report.kind === 'exit' ? 'exited' : report.kind === 'timeout' ? 'hung' : 'crashed'}: ${report.message}`);
    this.name = 'WorkerCrashError';
  }
}

export interface Actor<T> {
  name: string;
  tid: number;
  worker: Worker;
  api: Remote<T>;
  /** Rejects when the worker dies; never resolves. */
  dead: Promise<never>;
}

export interface VcpuActor extends Actor<VcpuWorkerApi> {
  vm: number;
  vmName: string;
  index: number;
}

export interface RuntimeVm {
  name: string;
  type: VmTypeName;
  vcpus: number;
}

export interface RuntimeOptions {
  sandbox: SandboxOptions;
  /** Mailbox spin tuning for the firmware and its clients. */
  mailbox?: MailboxTuning;
  /** Longest a single control-plane call may take before the run is declared hung (default 60 s). */
  callTimeoutMs?: number;
  /** Record a wall-clock trace of faults, ioctls, lock waits and firmware commands. */
  trace?: boolean;
  /** Planted bugs (gmem/bugs.ts mask), set before any worker reads them. */
  bugs?: number;
  /** Trace events per thread when `trace` is on (default 65,536). */
  traceEvents?: number;
  /** Progress of building the shared memory (seconds for gigabytes). */
  onSetupProgress?: (fraction: number, what: string) => void;
  /** Abandons the start: the build stops between steps, started workers are shut down. */
  signal?: AbortSignal;
  /**
   * The vCPU workers' entry, under dist/ (default src/vcpu-workers/worker.js): tests name one
   * that serves the same API plus their hooks (test/workers/vcpu-test-worker.ts).
   */
  vcpuWorker?: string;
}

export class Runtime {
  readonly mem: Mem;
  readonly control: SyncControl;
  readonly rc: RunControl;
  readonly crashes: CrashReport[] = [];
  readonly vcpus: VcpuActor[] = [];
  /** VMM threads beside `vmm` (a userspace VMM's other threads issuing ioctls on the same fds). */
  readonly extraVmms: Array<Actor<VmmWorkerApi>> = [];
  readonly vmIds = new Map<string, number>();
  private readonly sync: FreeSync;
  private firmwareDone: Promise<number> | null = null;
  private stopped = false;
  /** Set when shutdown starts: later calls are refused, calls in flight reject (see spawn). */
  private closing: Promise<void> | null = null;
  private nextTid = TID_FIRST_VCPU;

  private constructor(
    readonly descriptor: SandboxDescriptor,
    readonly vmm: Actor<VmmWorkerApi>,
    readonly firmware: Actor<FirmwareWorkerApi>,
    readonly opts: RuntimeOptions,
  ) {
    this.mem = mapBuffers(descriptor.buffers);
    this.control = new SyncControl(this.mem);
    this.rc = new RunControl(this.mem);
    this.sync = new FreeSync(this.mem, 0, wordDescriber(this.mem));
  }

  /** Builds the shared memory and starts the firmware and VMM workers. */
  static async start(opts: RuntimeOptions): Promise<Runtime> {
    const descriptor = await buildSandboxMemoryAsync(
      opts.trace ? { traceEvents: opts.traceEvents ?? 1 << 16, ...opts.sandbox } : opts.sandbox,
      {
        ...(opts.onSetupProgress ? { onProgress: opts.onSetupProgress } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
    );
    if (opts.trace) enableTracing(mapBuffers(descriptor.buffers));
    if (opts.bugs) setBugs(mapBuffers(descriptor.buffers), opts.bugs);
    const fw = spawn<FirmwareWorkerApi>(workerFile('firmware/worker.js'), 'firmware', TID_FIRMWARE);
    const vmm = spawn<VmmWorkerApi>(workerFile('vmm/sandbox/vmm-worker.js'), 'vmm', TID_VMM);
    const rt = new Runtime(descriptor, vmm, fw, opts);
    for (const a of [fw, vmm]) rt.watch(a);
    rt.firmwareDone = rt.call(fw, () => fw.api.serve(descriptor.buffers, TID_FIRMWARE, opts.mailbox), 0);
    rt.firmwareDone.catch(() => undefined);
    await rt.call(vmm, () => vmm.api.init(descriptor, TID_VMM));
    return rt;
  }

  private watch(a: Actor<unknown>): void {
    a.dead.catch((e: unknown) => {
      if (!(e instanceof WorkerCrashError)) return;
      if (!this.crashes.includes(e.report)) this.crashes.push(e.report);
      // One actor down: stop the others' waits so nothing hangs on a lock it held.
      if (!this.stopped) this.control.abort(AbortReason.WORKER_DIED);
    });
  }

  /** Starts one vCPU worker for VM `vm`. */
  async addVcpu(vmName: string, vm: number, index: number): Promise<VcpuActor> {
    const tid = this.nextTid++;
    const entry = entryFile(this.opts.vcpuWorker ?? 'src/vcpu-workers/worker.js');
    const a = spawn<VcpuWorkerApi>(entry, `vcpu ${index} of vm ${vmName}`, tid) as VcpuActor;
    a.vm = vm;
    a.vmName = vmName;
    a.index = index;
    this.watch(a);
    this.vcpus.push(a);
    // vm < 0: the caller initialises the worker itself later (the explorer, once per schedule).
    if (vm >= 0) await this.call(a, () => a.api.init({ buffers: this.descriptor.buffers, kernel: this.descriptor.kernel, tid, vm }));
    return a;
  }

  /** Starts another VMM thread of the same process (it shares the fd table); the caller inits it. */
  addVmmThread(): Actor<VmmWorkerApi> {
    const tid = this.nextTid++;
    const a = spawn<VmmWorkerApi>(workerFile('vmm/sandbox/vmm-worker.js'), `vmm ${this.extraVmms.length + 2}`, tid);
    this.watch(a);
    this.extraVmms.push(a);
    return a;
  }

  /** Creates VMs on the VMM worker and a vCPU worker for each of their vCPUs. */
  async createVms(vms: RuntimeVm[]): Promise<void> {
    const ids = await this.call(this.vmm, () => this.vmm.api.createVms(vms.map((v) => ({ name: v.name, type: v.type }))));
    vms.forEach((v, i) => this.vmIds.set(v.name, ids[i]));
    for (const v of vms) for (let c = 0; c < v.vcpus; c++) await this.addVcpu(v.name, ids[vms.indexOf(v)], c);
  }

  vcpu(vmName: string, index: number): VcpuActor {
    const a = this.vcpus.find((v) => v.vmName === vmName && v.index === index);
    if (a === undefined) throw new Error(`no vCPU ${index} of VM '${vmName}'`);
    return a;
  }

  /**
   * Runs a control-plane call on an actor: rejects with a WorkerCrashError if the worker dies
   * or (timeoutMs > 0) does not answer in time.
   */
  call<R>(a: Actor<unknown>, fn: () => Promise<R>, timeoutMs = this.opts.callTimeoutMs ?? 60_000): Promise<R> {
    if (this.closing) return Promise.reject(new SandboxClosedError(`Runtime.call(${a.name})`, 'shutdown'));
    const racers: Array<Promise<R>> = [fn(), a.dead];
    let timer: NodeJS.Timeout | undefined;
    if (timeoutMs > 0) {
      racers.push(
        new Promise<R>((_, reject) => {
          timer = setTimeout(() => {
            const report: CrashReport = { actor: a.name, kind: 'timeout', message: `no answer within ${timeoutMs} ms; ${this.whoWaits()}` };
            this.crashes.push(report);
            this.control.abort(AbortReason.TIMEOUT);
            reject(new WorkerCrashError(report));
          }, timeoutMs);
          timer.unref();
        }),
      );
    }
    return Promise.race(racers).finally(() => clearTimeout(timer));
  }

  /** Who is blocked on what, from the sync layer's waiting-on words. */
  whoWaits(): string {
    const d = wordDescriber(this.mem);
    const parts: string[] = [];
    for (let t = 0; t < this.mem.limits.maxThreads; t++) {
      const w = this.control.waitingOn(t);
      if (w !== 0) parts.push(`thread ${t} waits on ${d(w - 1).name}`);
    }
    return parts.length ? parts.join('; ') : 'no thread is blocked on a lock';
  }

  stats(): StatsSnapshot {
    return sumStats(this.mem);
  }

  /** Thread names by id, for traces and reports. */
  actorNames(): Map<number, string> {
    const m = new Map<number, string>([
      [0, 'controller'],
      [this.vmm.tid, 'vmm'],
      [this.firmware.tid, 'firmware'],
    ]);
    for (const v of [...this.extraVmms, ...this.vcpus]) m.set(v.tid, v.name);
    return m;
  }

  /**
   * The run's wall-clock trace as Chrome trace event JSON. A thread whose ring filled up lost its
   * later events; the metadata says how many, per thread, so a gap is never mistaken for idleness.
   */
  chromeTrace(title: string): { traceEvents: object[]; metadata: { droppedEvents: number; droppedByThread: Record<string, number> } } {
    const names = this.actorNames();
    const droppedByThread: Record<string, number> = {};
    let droppedEvents = 0;
    for (const [tid, n] of traceDropped(this.mem)) {
      droppedByThread[names.get(tid) ?? `thread ${tid}`] = n;
      droppedEvents += n;
    }
    return { ...chromeTraceFromEvents(collectTrace(this.mem), names, title), metadata: { droppedEvents, droppedByThread } };
  }

  /** Writes the trace (see chromeTrace); says on stderr if events were dropped or the file could not be written. */
  writeTrace(file: string, title: string): boolean {
    const t = this.chromeTrace(title);
    const { droppedEvents, droppedByThread } = t.metadata;
    if (droppedEvents > 0) {
      const who = Object.entries(droppedByThread)
        .map(([n, c]) => `${n}: ${c}`)
        .join(', ');
      process.stderr.write(`gmem-sandbox: trace ${file}: ${droppedEvents} event(s) dropped, the per-thread ring was full (${who})\n`);
    }
    return writeOutput(file, () => JSON.stringify(t));
  }

  /** Parks every worker loop at its next checkpoint; resolves once `expected` loops are parked. */
  async quiesce(expected: number, timeoutMs = 10_000): Promise<void> {
    this.rc.setPause(true, this.sync);
    const end = Date.now() + timeoutMs;
    while (this.rc.parked() < expected) {
      if (Date.now() > end)
        throw new Error(`quiesce: only ${this.rc.parked()} of ${expected} loops parked within ${timeoutMs} ms; ${this.whoWaits()}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }
  resume(): void {
    this.rc.setPause(false, this.sync);
  }

  /** Asks every worker loop to stop at its next checkpoint (an interrupted run). */
  requestStop(): void {
    this.rc.setStop(true, this.sync);
  }

  /**
   * Stops every worker: asks loops to stop, stops the firmware mailbox, then aborts any wait
   * and terminates the threads. Never hangs: each stage has a deadline.
   */
  async shutdown(graceMs = 2000): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = this.stopAll(graceMs);
    return this.closing;
  }

  private async stopAll(graceMs: number): Promise<void> {
    this.rc.setStop(true, this.sync);
    const mb = new Mailbox(this.mem, FIRMWARE_MAILBOX, this.sync);
    mb.stop();
    await Promise.race([this.firmwareDone?.catch(() => undefined), delay(graceMs)]);
    this.stopped = true;
    this.control.abort(AbortReason.SHUTDOWN);
    const all: Array<Actor<unknown>> = [this.vmm, this.firmware, ...this.extraVmms, ...this.vcpus];
    await Promise.race([Promise.all(all.map((a) => a.worker.terminate().catch(() => 0))), delay(graceMs)]);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

function spawn<T>(file: string, name: string, tid: number): Actor<T> {
  // A bundle's stack traces go back through its source map to the TypeScript each frame came from.
  const bundled = file.startsWith(distFile('workers/'));
  const worker = new Worker(file, { name, ...(bundled ? { execArgv: [...process.execArgv, '--enable-source-maps'] } : {}) });
  let fail: (e: Error) => void = () => undefined;
  const dead = new Promise<never>((_, reject) => {
    fail = reject;
  });
  dead.catch(() => undefined);
  let exitedOnPurpose = false;
  worker.on('error', (err: Error) => {
    const report: CrashReport = { actor: name, kind: 'error', message: err.message, ...(err.stack ? { stack: err.stack } : {}) };
    fail(new WorkerCrashError(report));
  });
  worker.on('exit', (code) => {
    if (exitedOnPurpose) return;
    fail(new WorkerCrashError({ actor: name, kind: 'exit', message: `thread exited with code ${code}` }));
  });
  const origTerminate = worker.terminate.bind(worker);
  worker.terminate = () => {
    exitedOnPurpose = true;
    // A call still waiting on this thread will never be answered: it rejects instead.
    fail(new SandboxClosedError(`worker ${name}`, 'shutdown'));
    return origTerminate();
  };
  return { name, tid, worker, api: settleOnDeath(wrapWorker<T>(worker), dead), dead };
}

/**
 * The worker's API with every call raced against the worker's death or termination, so that no
 * caller, even one that bypasses Runtime.call, waits forever on a thread that is gone.
 */
function settleOnDeath<T>(remote: Remote<T>, dead: Promise<never>): Remote<T> {
  return new Proxy(remote as object, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      // 'then' must stay undefined (the API object is not a promise); symbols are comlink's own.
      if (typeof prop !== 'string' || prop === 'then' || typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const raced = Promise.race([(v as (...a: unknown[]) => Promise<unknown>)(...args), dead]);
        // A caller that dropped the promise must not turn a shutdown into an unhandled rejection.
        raced.catch(() => undefined);
        return raced;
      };
    },
  }) as Remote<T>;
}
