// Run control shared by the controller and every worker's loop: stop, and pause for a quiescent
// point (the auditor reads shared state while every loop is parked). Also the per-VM, per-gfn
// discard epochs the VMM bumps before it punches or converts a range, so a guest can tell "my
// data was discarded" from "my data was lost". Owns the 'runctl' and 'guest_epochs' regions.

import { LayoutBuilder, type Mem, regionBase } from '../shm/layout.js';
import type { Sync } from '../shm/sync/sync.js';

const R_STOP = 0;
const R_PAUSE = 1;
const R_PARKED = 2;
const RUNCTL = 'runctl';
const EPOCHS = 'guest_epochs';

export function declareRunctl(lb: LayoutBuilder, maxVms: number, gfnsPerVm: number): void {
  lb.add(RUNCTL, 16, 'vcpu-workers/runctl.ts');
  lb.add(EPOCHS, maxVms * gfnsPerVm, 'vcpu-workers/runctl.ts');
}

export class RunControl {
  readonly base: number;
  readonly epochBase: number;
  readonly gfnsPerVm: number;
  readonly w: Int32Array;
  constructor(mem: Mem) {
    this.base = regionBase(mem, RUNCTL);
    this.epochBase = regionBase(mem, EPOCHS);
    this.gfnsPerVm = mem.limits.gfnsPerVm;
    this.w = mem.w;
  }
  stopRequested(): boolean {
    return Atomics.load(this.w, this.base + R_STOP) !== 0;
  }
  setStop(v: boolean, sync: Sync): void {
    Atomics.store(this.w, this.base + R_STOP, v ? 1 : 0);
    if (v) this.setPause(false, sync);
  }
  /** Asks every loop to park (true) or lets them go (false). */
  setPause(v: boolean, sync: Sync): void {
    Atomics.store(this.w, this.base + R_PAUSE, v ? 1 : 0);
    if (!v) sync.wake(this.base + R_PAUSE, Infinity);
  }
  parked(): number {
    return Atomics.load(this.w, this.base + R_PARKED);
  }
  /** Called by a loop at a safe point: parks while a pause is asked for. */
  checkpoint(sync: Sync): void {
    if (Atomics.load(this.w, this.base + R_PAUSE) === 0) return;
    Atomics.add(this.w, this.base + R_PARKED, 1);
    try {
      while (Atomics.load(this.w, this.base + R_PAUSE) !== 0 && !sync.aborted()) sync.idleWhileEquals(this.base + R_PAUSE, 1, 0);
    } finally {
      Atomics.sub(this.w, this.base + R_PARKED, 1);
    }
  }

  epochWord(vm: number, gfn: number): number {
    return this.epochBase + vm * this.gfnsPerVm + gfn;
  }
  epoch(vm: number, gfn: number): number {
    return Atomics.load(this.w, this.epochBase + vm * this.gfnsPerVm + gfn);
  }
  /** The VMM is about to discard, or has just discarded, [start, end) of vm's memory. */
  bumpEpochs(vm: number, start: number, end: number): void {
    const b = this.epochBase + vm * this.gfnsPerVm;
    for (let g = Math.max(0, start); g < Math.min(end, this.gfnsPerVm); g++) Atomics.add(this.w, b + g, 1);
  }
}
