// A broken invariant (DESIGN.md section 7), as found online by a guest or by the auditor.

/**
 * lockOrder: lockdep saw two lock classes taken in both orders (shm/sync/lockdep.ts), deadlocked
 * or not. assertion: the model's own check fired inside an actor (a refcount underflow, a
 * lockdep_assert_held, a WARN): what the kernel would oops or warn on. launchState: a vCPU
 * changed while LAUNCH_FINISH synced its VMSA into what the firmware measures.
 */
export const INVARIANTS = [
  'staleData',
  'rmpAgreement',
  'hostIsolation',
  'useAfterFree',
  'dataLost',
  'balance',
  'liveness',
  'lockOrder',
  'assertion',
  'launchState',
] as const;
export type Invariant = (typeof INVARIANTS)[number];

export interface Violation {
  invariant: Invariant;
  /** Who saw it: 'vcpu 3', 'auditor', ... */
  by: string;
  vm?: number;
  gfn?: number;
  pfn?: number;
  detail: string;
  /** Where an assertion fired: the error's stack. */
  stack?: string;
}

/** A model assertion an actor's code threw, as a violation: its message, and its stack. */
export function assertionViolation(e: unknown, by: string): Violation {
  const err = e instanceof Error ? e : new Error(String(e));
  return { invariant: 'assertion', by, detail: `${err.name}: ${err.message}`, ...(err.stack !== undefined ? { stack: err.stack } : {}) };
}

/** Keeps the first few violations in full; the rest are only counted. */
export class ViolationLog {
  readonly list: Violation[] = [];
  count = 0;
  constructor(private readonly keep = 20) {}
  add(v: Violation): void {
    this.count++;
    if (this.list.length < this.keep) this.list.push(v);
  }
}
