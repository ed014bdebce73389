// A vCPU thread for tests: the production vCPU API (src/vcpu-workers/api.ts) plus hooks that make
// the thread fail on purpose, so that tests can check how a crash, an exit or a failing round is
// reported. Built into dist/test/workers/ by `npm run build`; a test names it through
// RuntimeOptions.vcpuWorker (TEST_VCPU_WORKER in test/runtime-helpers.ts). Tests import this
// file's types only: outside a worker thread its exposeToParent throws.

import { exposeToParent } from '../../src/shm/rpc.js';
import { type VcpuInit, VcpuWorker } from '../../src/vcpu-workers/api.js';

export class VcpuTestWorker extends VcpuWorker {
  /** Set by failNextRound: the next init throws it. */
  private initFailure: string | null = null;

  /**
   * Makes this worker's part of the next explorer round throw, before it joins the run: an
   * explorer's vCPU is attached (init) by each round, before it registers as an actor.
   */
  failNextRound(message: string): void {
    this.initFailure = message;
  }

  override init(init: VcpuInit): { id: number; slot: number } {
    const failure = this.initFailure;
    this.initFailure = null;
    if (failure !== null) throw new Error(failure);
    return super.init(init);
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

export type VcpuTestWorkerApi = VcpuTestWorker;

exposeToParent(new VcpuTestWorker());
