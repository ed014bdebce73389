// A broken invariant (DESIGN.md section 7), as found online by a guest or by the auditor.

/** lockOrder: lockdep saw two lock classes taken in both orders (shm/sync/lockdep.ts), deadlocked or not. */
export const INVARIANTS = [
  'staleData',
  'rmpAgreement',
  'hostIsolation',
  'useAfterFree',
  'dataLost',
  'balance',
  'liveness',
  'lockOrder',
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
