// A vCPU thread for tests: the production vCPU API (src/vcpu-workers/api.ts) plus hooks that make
// the thread fail on purpose, so that tests can check how a crash, an exit, a failing round, a
// wait nobody can end, a hang or a model assertion is reported. Built into dist/test/workers/ by
// `npm run build`; a test names it through RuntimeOptions.vcpuWorker (TEST_VCPU_WORKER in
// test/helpers/runtime-helpers.ts). Tests import this file's types only: outside a worker thread
// its exposeToParent throws.

import { asActor } from '../../src/firmware/open.js';
import { gmemFput } from '../../src/gmem/guest_memfd.js';
import type { KvmCtx } from '../../src/kvm/ctx.js';
import { onlineChecker } from '../../src/checker/online.js';
import { exposeToParent } from '../../src/shm/rpc.js';
import { LockClass } from '../../src/shm/sync/classes.js';
import { SyncControl } from '../../src/shm/sync/control.js';
import { AbortReason, SyncAbortError } from '../../src/shm/sync/sync.js';
import { type VcpuInit, VcpuWorker } from '../../src/vcpu-workers/api.js';
import { type WorkloadConfig, type WorkloadResult, runWorkload } from '../../src/vcpu-workers/guest-workload.js';

/**
 * What the vCPU does wrong in every explorer round from now on (a kernel bug planted from outside
 * the kernel's code, so that no planted-bug switch is needed):
 * - 'retry-wait-holding-mmu-lock': takes mmu_lock for read, then sleeps in the fault's retry
 *   wait for mmu_invalidate_seq to move (which needs mmu_lock for write);
 * - 'spin-holding-mmu-lock': the same, in pre-fault's spin on the memslot generation;
 * - 'retry-wait-in-srcu': enters a kvm->srcu read section, then sleeps in the retry wait for the
 *   memslot generation to move (which a memslot update publishes after synchronize_srcu);
 * - 'exit-holding-mmu-lock': runs its workload, then returns to user space holding mmu_lock;
 * - 'extra-fput': runs its workload, then drops a reference to its memslot's guest_memfd that it
 *   never took (the VMM's close in teardown then underflows the count);
 * - 'warn-at-point-N': at its Nth scheduling point, throws a model assertion (as a WARN_ON the
 *   model checks would throw), inside the actor;
 * - 'hang-at-point-N': at its Nth scheduling point, waits outside the sync layer until the
 *   sandbox is aborted (a hang only the round watchdog can end).
 */
export type Misbehaviour =
  | 'retry-wait-holding-mmu-lock'
  | 'spin-holding-mmu-lock'
  | 'retry-wait-in-srcu'
  | 'exit-holding-mmu-lock'
  | 'extra-fput'
  | `warn-at-point-${number}`
  | `hang-at-point-${number}`;

/**
 * How a test arms the test vCPU workers of a run it cannot reach (the CLI's explorers), read at
 * each worker's start: MISBEHAVIOUR (every vCPU actor) or MISBEHAVIOUR@I (vCPU actor I only).
 */
export const MISBEHAVE_ENV = 'GMEM_SANDBOX_TEST_VCPU_MISBEHAVE';
const fromEnv = (process.env[MISBEHAVE_ENV] ?? '').split('@');

export class VcpuTestWorker extends VcpuWorker {
  /** Set by failNextRound: the next init throws it. */
  private initFailure: string | null = null;
  private misbehaviour: Misbehaviour | null = fromEnv[0] !== '' ? (fromEnv[0] as Misbehaviour) : null;
  /** The explorer's vCPU actor index this worker follows rounds as (-1: none yet). */
  private actorIndex = -1;

  /**
   * Makes this worker's part of the next explorer round throw, before it joins the run: an
   * explorer's vCPU is attached (init) by each round, before it registers as an actor.
   */
  failNextRound(message: string): void {
    this.initFailure = message;
  }

  /** From now on (null: no longer), each run misbehaves so. */
  misbehave(m: Misbehaviour | null): void {
    this.misbehaviour = m;
  }

  override init(init: VcpuInit): { id: number; slot: number } {
    const failure = this.initFailure;
    this.initFailure = null;
    if (failure !== null) throw new Error(failure);
    return super.init(init);
  }

  override exploreFollow(...args: Parameters<VcpuWorker['exploreFollow']>): ReturnType<VcpuWorker['exploreFollow']> {
    this.actorIndex = args[3];
    return super.exploreFollow(...args);
  }

  override run(cfg: WorkloadConfig): WorkloadResult {
    const m = this.misbehaviour;
    const onlyActor = fromEnv.length > 1 && m === fromEnv[0] ? Number(fromEnv[1]) : this.actorIndex;
    if (m === null || onlyActor !== this.actorIndex) return super.run(cfg);
    const k = this.c.k;
    const online = onlineChecker(k);
    const at = /^(hang|warn)-at-point-(\d+)$/.exec(m);
    let points = 0;
    const hook = (): void => {
      online();
      if (at === null || ++points !== Number(at[2])) return;
      if (at[1] === 'hang') hangOutsideSyncLayer(k);
      throw new Error(`WARN_ON: planted at scheduling point ${points}`);
    };
    return asActor(
      k.sync,
      () => {
        before(k, this.c.vcpu.vm, m);
        const r = runWorkload(this.c, this.rc!, cfg);
        after(k, this.c.vcpu.vm, cfg.gfnStart, m);
        return r;
      },
      false,
      hook,
    );
  }

  /** Throws inside the worker. */
  crash(message: string): never {
    throw new Error(message);
  }

  /** Exits the thread abruptly: a worker that dies mid-run. */
  exitNow(code: number): void {
    process.exit(code);
  }
}

function before(k: KvmCtx, vm: number, m: Misbehaviour): void {
  const w = k.mem.w;
  if (m === 'retry-wait-holding-mmu-lock' || m === 'spin-holding-mmu-lock') {
    k.sync.readLock(k.vms.mmuLockWord(vm), LockClass.MMU);
    if (m === 'spin-holding-mmu-lock') {
      const gen = k.memslots.generationWord(vm);
      for (;;) k.sync.spinWhileEqualsInterruptible(gen, Atomics.load(w, gen));
    }
    const seq = k.vms.seqWord(vm);
    for (;;) k.sync.idleWhileEquals(seq, Atomics.load(w, seq), 0);
  }
  if (m === 'retry-wait-in-srcu') {
    k.sync.srcuReadLock(k.vms.srcu(vm), LockClass.SRCU);
    const gen = k.memslots.generationWord(vm);
    for (;;) k.sync.idleWhileEquals(gen, Atomics.load(w, gen), 0);
  }
}

function after(k: KvmCtx, vm: number, gfn: number, m: Misbehaviour): void {
  if (m === 'exit-holding-mmu-lock') k.sync.readLock(k.vms.mmuLockWord(vm), LockClass.MMU);
  if (m === 'extra-fput') {
    const s = k.memslots.lookup(vm, gfn);
    if (s >= 0) gmemFput(k.g, k.memslots.gmemFile(vm, s));
  }
}

/** Waits outside the sync layer (no scheduler sees it) until the sandbox is aborted, then unwinds. */
function hangOutsideSyncLayer(k: KvmCtx): never {
  const ctl = new SyncControl(k.mem);
  const park = new Int32Array(new SharedArrayBuffer(4));
  while (ctl.abortReason() === AbortReason.NONE) Atomics.wait(park, 0, 0, 20);
  throw new SyncAbortError(ctl.abortReason());
}

export type VcpuTestWorkerApi = VcpuTestWorker;

exposeToParent(new VcpuTestWorker());
