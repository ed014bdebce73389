// mutex_lock ... mutex_unlock around a critical section, for the locks KVM takes by name.

import { LockClass } from '../shm/sync/classes.js';
import type { KvmCtx } from './ctx.js';

/** Runs `fn` holding the mutex at word `lock` (mutex_lock ... mutex_unlock). */
export function withMutex<T>(k: KvmCtx, lock: number, cls: LockClass, fn: () => T): T {
  k.sync.mutexLock(lock, cls);
  try {
    return fn();
  } finally {
    k.sync.mutexUnlock(lock);
  }
}

/** Runs `fn` under the VM's slots_lock (mutex_lock(&kvm->slots_lock)). */
export function withSlotsLock<T>(k: KvmCtx, vm: number, fn: () => T): T {
  return withMutex(k, k.vms.slotsLockWord(vm), LockClass.SLOTS, fn);
}
