// Opens the kernel as one thread sees it: views of the shared tables, this thread's Sync (free
// or controlled), and the firmware reached in process or through the firmware worker's mailbox.

import { type KernelVersionName, kernelVersion, readKernelPatches } from '../gmem/version.js';
import { wordDescriber } from './describe.js';
import type { KvmCtx } from '../kvm/ctx.js';
import { openKvm } from '../kvm/kvm.js';
import { type SharedBuffers, mapBuffers } from '../shm/layout.js';
import { ControlledSync } from '../shm/sched/controlled.js';
import { FreeSync } from '../shm/sync/free.js';
import { type Sync, SyncAbortError } from '../shm/sync/sync.js';
import { DirectPlatform } from './direct.js';
import { MailboxPlatform } from './mailbox.js';

export type SyncMode = 'free' | 'controlled';
export type PlatformKind = 'direct' | 'mailbox';

export interface KernelOptions {
  buffers: SharedBuffers;
  kernel: KernelVersionName;
  tid: number;
  mode?: SyncMode;
  platform?: PlatformKind;
}

export function openKernel(o: KernelOptions): KvmCtx {
  const mem = mapBuffers(o.buffers);
  const describe = wordDescriber(mem);
  const sync: Sync = o.mode === 'controlled' ? new ControlledSync(mem, o.tid, describe) : new FreeSync(mem, o.tid, describe);
  const psp =
    o.platform === 'direct'
      ? new DirectPlatform(mem, sync)
      : new MailboxPlatform(mem, sync, o.mode === 'controlled' ? { clientSpin: 0, serverSpin: 0 } : undefined);
  // The sandbox's patches, from its shared memory: every thread's kernel applies the same ones.
  return openKvm(mem, sync, psp, kernelVersion(o.kernel, readKernelPatches(mem)));
}

/** Runs `job` as an actor of a controlled run (register, run, exit); as is in free mode. */
export function asActor<T>(sync: Sync, job: () => T, server = false, stepHook: (() => void) | null = null): T {
  if (!(sync instanceof ControlledSync)) return job();
  sync.setStepHook(stepHook);
  sync.register(server);
  try {
    return job();
  } catch (e) {
    // A model assertion (not an abort of the run): the run ends here, for every actor.
    if (!(e instanceof SyncAbortError)) sync.failRun();
    throw e;
  } finally {
    sync.exit();
    sync.setStepHook(null);
  }
}
