// The vCPU's TLB, private to its thread as a CPU's is: gfn -> frame translations made by an SPTE
// walk, with the RMP check's verdict (an entry exists only for a translation that passed it, as
// the hardware caches the RMP check with the translation). Dropped whole by a TLB flush request
// (kvm_flush_remote_tlbs, which every zap sends) and per gfn by the guest's own INVLPG after a
// PVALIDATE. Direct-mapped: a hit costs two plain loads of thread-local memory.

/** Translations held: AMD Zen 3/4's L2 data TLB has 2048 entries. */
export const TLB_ENTRIES = 2048;
const INDEX_MASK = TLB_ENTRIES - 1;

export class Tlb {
  /** gfn * 2 + private + 1 per entry; 0 = empty. */
  private readonly tags = new Int32Array(TLB_ENTRIES);
  private readonly frames = new Int32Array(TLB_ENTRIES);
  /** Whole flushes done, for tests and reports. */
  flushes = 0;

  /** The cached frame of (gfn, private), or -1 on a miss. */
  lookup(gfn: number, priv: boolean): number {
    const i = gfn & INDEX_MASK;
    return this.tags[i] === gfn * 2 + (priv ? 2 : 1) ? this.frames[i] : -1;
  }

  fill(gfn: number, priv: boolean, frame: number): void {
    const i = gfn & INDEX_MASK;
    this.tags[i] = gfn * 2 + (priv ? 2 : 1);
    this.frames[i] = frame;
  }

  /** INVLPG: drops gfn's translation, private or shared. */
  invalidate(gfn: number): void {
    const i = gfn & INDEX_MASK;
    if (this.tags[i] !== 0 && (this.tags[i] - 1) >> 1 === gfn) this.tags[i] = 0;
  }

  flush(): void {
    this.tags.fill(0);
    this.flushes++;
  }
}
