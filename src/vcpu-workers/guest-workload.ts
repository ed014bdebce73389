// A guest workload for one vCPU: accesses over a gfn range (sequential, random or a hot set),
// a read/write mix, PVALIDATE on #VC under SNP, and guest-side data checks. Every write tags the
// page with (magic, gfn, vCPU, generation); every read verifies the tag, so a guest that sees
// host bytes, another page's bytes, or loses its own write reports it.

import { kvmVcpuPreFaultMemory } from '../kvm/kvm_main.js';
import { kvmMemIsPrivate } from '../kvm/private_mem.js';
import { errnoName } from '../shm/errno.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { Prng } from '../shm/prng.js';
import { C } from '../shm/stats.js';
import { EXIT_NAMES, Exit, type GuestCpu } from './guest.js';
import type { RunControl } from './runctl.js';
import { type Violation, ViolationLog } from '../checker/violations.js';

export const TAG_MAGIC = 0x676d656d; // 'gmem'
/** What the VMM's LAUNCH_UPDATEs measure into a launching VM's pages (every byte). */
export const LAUNCH_BYTE = 0x5a;
const TAG_BYTES = 16;

export const PATTERNS = ['sequential', 'random', 'hot'] as const;
export type Pattern = (typeof PATTERNS)[number];

export interface WorkloadConfig {
  gfnStart: number;
  gfnCount: number;
  pattern: Pattern;
  /** Share of accesses that write (only to gfns this vCPU owns). */
  writeRatio: number;
  /** For 'hot': share of accesses that go to the hot tenth of the range. */
  hotRatio: number;
  seed: number;
  /** This vCPU writes gfns with gfn % writers === writerIndex; all vCPUs read all. */
  writerIndex: number;
  writers: number;
  durationMs: number;
  /** Stop after this many accesses (0 = only the duration or a stop request bounds it). */
  maxAccesses: number;
  /** Several VMs share the memory: an RMP violation is an expected finding, not a broken invariant. */
  multiVm: boolean;
  /**
   * A launching SNP VM is bound to this VM's inode (link): a page its LAUNCH_UPDATE filled is
   * that tenant's measured data, which the link shares by design, not host data.
   */
  launchLinked?: boolean;
  /**
   * Share of steps where the vCPU thread, between two KVM_RUNs, issues KVM_PRE_FAULT_MEMORY on
   * its own vCPU for the page instead (0 or absent: never).
   */
  prefaultRatio?: number;
  /**
   * Share of steps that read a gfn of [gfn, gfn + count) as shared, unchecked: memory a VMM op
   * creates, moves and deletes under the guest (a plain memslot), so that faults meet a slot in
   * flux. Its contents are the VMM's; the auditor judges the SPTEs and TLB entries (absent: never).
   */
  probe?: { gfn: number; count: number; ratio: number };
}

export interface WorkloadResult {
  accesses: number;
  exits: Record<string, number>;
  violations: Violation[];
  violationCount: number;
  elapsedMs: number;
}

export function runWorkload(cpu: GuestCpu, rc: RunControl, cfg: WorkloadConfig): WorkloadResult {
  return new GuestWorkload(cpu, rc, cfg).run();
}

/** One vCPU's run of a workload: its state between accesses, and the checks each access makes. */
class GuestWorkload {
  private readonly k: GuestCpu['k'];
  private readonly vm: number;
  private readonly rng: Prng;
  private readonly log = new ViolationLog();
  private readonly by: string;
  private readonly n: number;
  /** Per page this vCPU owns: the generation it last wrote, and the discard epoch it wrote in. */
  private readonly lastGen: Int32Array;
  private readonly epochAtWrite: Int32Array;
  private readonly tag = new Uint32Array(4);
  private readonly tagBytes = new Uint8Array(this.tag.buffer);
  private readonly seen = new Uint32Array(4);
  private readonly seenBytes = new Uint8Array(this.seen.buffer);
  private readonly want = new Uint32Array(2);
  private readonly wantBytes = new Uint8Array(this.want.buffer);
  private readonly exits: Record<string, number> = { memory_fault: 0, rmp_violation: 0, vc: 0, mmio: 0 };
  private readonly crossVmSeen: Uint8Array;
  private readonly hot: number;
  private readonly t0 = performance.now();
  private readonly deadline: number;
  private readonly prefaultRatio: number;
  private seq = 0;
  private accesses = 0;

  constructor(
    private readonly cpu: GuestCpu,
    private readonly rc: RunControl,
    private readonly cfg: WorkloadConfig,
  ) {
    this.k = cpu.k;
    this.vm = cpu.vcpu.vm;
    this.rng = new Prng(cfg.seed);
    this.by = `vcpu ${cpu.vcpu.id} of vm ${this.vm}`;
    this.n = cfg.gfnCount;
    this.lastGen = new Int32Array(this.n);
    this.epochAtWrite = new Int32Array(this.n).fill(-1);
    this.crossVmSeen = new Uint8Array(this.n);
    this.hot = Math.max(1, Math.floor(this.n / 10));
    this.deadline = cfg.durationMs > 0 ? this.t0 + cfg.durationMs : Infinity;
    this.prefaultRatio = cfg.prefaultRatio ?? 0;
  }

  run(): WorkloadResult {
    // An SNP vCPU before LAUNCH_FINISH cannot enter (KVM_EXIT_FAIL_ENTRY): the guest runs nothing.
    if (this.cpu.entryFails()) {
      this.exits.fail_entry = 1;
      return this.result();
    }
    // The guest runs in guest mode, leaving it only for exits and at the run-control checkpoints.
    this.cpu.vcpu.enterGuest();
    try {
      this.guestLoop();
    } finally {
      this.cpu.vcpu.exitGuest();
    }
    return this.result();
  }

  private result(): WorkloadResult {
    return {
      accesses: this.accesses,
      exits: this.exits,
      violations: this.log.list,
      violationCount: this.log.count,
      elapsedMs: performance.now() - this.t0,
    };
  }

  private pick(): number {
    switch (this.cfg.pattern) {
      case 'sequential':
        return this.seq++ % this.n;
      case 'random':
        return this.rng.below(this.n);
      case 'hot':
        return this.rng.next() < this.cfg.hotRatio ? this.rng.below(this.hot) : this.rng.below(this.n);
    }
  }

  private guestLoop(): void {
    const { cpu, rc, cfg } = this;
    const sync = this.k.sync;
    for (;;) {
      if ((this.accesses & 255) === 0) {
        if (rc.stopRequested() || sync.aborted() || performance.now() > this.deadline) break;
        cpu.vcpu.exitGuest();
        rc.checkpoint(sync);
        cpu.pollAccessPoint();
        cpu.vcpu.enterGuest();
      }
      if (cfg.maxAccesses > 0 && this.accesses >= cfg.maxAccesses) break;
      const i = this.pick();
      const gfn = cfg.gfnStart + i;
      const probe = cfg.probe;
      if (probe !== undefined && this.rng.next() < probe.ratio) this.probeRead(probe.gfn + this.rng.below(probe.count));
      else if (this.prefaultRatio > 0 && this.rng.next() < this.prefaultRatio) this.prefault(gfn);
      else this.access(i, gfn);
      this.accesses++;
    }
  }

  /** A vCPU ioctl between two KVM_RUNs: issued from userspace, outside guest mode. */
  private prefault(gfn: number): void {
    const vcpu = this.cpu.vcpu;
    vcpu.exitGuest();
    const r = kvmVcpuPreFaultMemory(this.k, vcpu, { gpa: gfn * PAGE_SIZE, size: PAGE_SIZE, flags: 0 });
    vcpu.enterGuest();
    const key = r < 0 ? `prefault:${errnoName(r)}` : 'prefault';
    this.exits[key] = (this.exits[key] ?? 0) + 1;
  }

  /**
   * A shared read of the probed memory (WorkloadConfig.probe), outside the pages this vCPU
   * tracks: the exit is counted (mmio where no slot is), the bytes are not checked.
   */
  private probeRead(gfn: number): void {
    const code = this.cpu.access(gfn * PAGE_SIZE, TAG_BYTES, false, this.seenBytes, null);
    const key = `probe:${EXIT_NAMES[code]}`;
    this.exits[key] = (this.exits[key] ?? 0) + 1;
  }

  /** A tagged write to a page this vCPU owns, or a read checked against what it may hold. */
  private access(i: number, gfn: number): void {
    const { cpu, rc, cfg, vm } = this;
    const gpa = gfn * PAGE_SIZE;
    const owner = i % cfg.writers === cfg.writerIndex;
    const write = owner && this.rng.next() < cfg.writeRatio;
    // What the guest believes the gfn is: the VM's attribute, or with gmem_in_place_conversion
    // guest_memfd's (the VMM converts in the file, 7.4).
    const priv = kvmMemIsPrivate(this.k, vm, gfn);
    const e0 = rc.epoch(vm, gfn);
    let code: number;
    if (write) {
      const tag = this.tag;
      tag[0] = TAG_MAGIC;
      tag[1] = gfn;
      tag[2] = cpu.vcpu.id;
      tag[3] = this.lastGen[i] + 1;
      code = cpu.access(gpa, TAG_BYTES, priv, null, this.tagBytes);
      if (code === Exit.VC) code = revalidate(cpu, gpa, priv, null, this.tagBytes);
      if (code === Exit.NONE) {
        this.lastGen[i]++;
        this.epochAtWrite[i] = e0;
      }
    } else {
      code = cpu.access(gpa, TAG_BYTES, priv, this.seenBytes, null);
      if (code === Exit.VC) code = revalidate(cpu, gpa, priv, this.seenBytes, null);
      if (code === Exit.NONE) {
        const e1 = rc.epoch(vm, gfn);
        // An odd epoch is a discard in progress (the VMM bumps before and after): a write and a
        // read both inside that window may legitimately see the discard between them.
        this.checkRead(i, gfn, owner, owner && e0 === e1 && this.epochAtWrite[i] === e0 && (e0 & 1) === 0);
      }
    }
    if (code !== Exit.NONE) this.onExit(code, gfn);
  }

  private checkRead(i: number, gfn: number, owner: boolean, mustHaveMine: boolean): void {
    const { seen, lastGen } = this;
    const zero = seen[0] === 0 && seen[1] === 0 && seen[2] === 0 && seen[3] === 0;
    if (zero) {
      if (mustHaveMine && lastGen[i] > 0) this.lost(gfn, `read zeros where generation ${lastGen[i]} was written`);
      return;
    }
    // A read racing the owner's first write of a zeroed page may see part of the tag and part of
    // the zeros (a 16-byte access is not atomic): not stale data.
    if (!owner && (seen[0] !== TAG_MAGIC || seen[1] !== gfn) && this.tornTag(gfn)) return;
    if (this.cfg.launchLinked === true && this.launchFill()) {
      // It replaced what this vCPU wrote: the populate overwrote a page in use.
      if (mustHaveMine && lastGen[i] > 0)
        this.lost(gfn, `read a linked VM's LAUNCH_UPDATE data where generation ${lastGen[i]} was written`);
      return;
    }
    if (seen[0] !== TAG_MAGIC) {
      this.stale(gfn, `read bytes ${Buffer.from(this.seenBytes).toString('hex')} that no guest wrote (host data)`);
      return;
    }
    if (seen[1] !== gfn) {
      this.stale(gfn, `read the data of gfn ${seen[1]} (vcpu ${seen[2]}, generation ${seen[3]})`);
      return;
    }
    const me = this.cpu.vcpu.id;
    if (mustHaveMine && (seen[2] !== me || seen[3] !== lastGen[i])) {
      this.lost(gfn, `read generation ${seen[3]} of vcpu ${seen[2]}, expected generation ${lastGen[i]} of vcpu ${me}`);
    }
  }

  private launchFill(): boolean {
    for (let b = 0; b < TAG_BYTES; b++) if (this.seenBytes[b] !== LAUNCH_BYTE) return false;
    return true;
  }

  /** Every byte of the magic and gfn words is either 0 or the byte a tag of `gfn` has there. */
  private tornTag(gfn: number): boolean {
    this.want[0] = TAG_MAGIC;
    this.want[1] = gfn;
    for (let b = 0; b < 8; b++) if (this.seenBytes[b] !== 0 && this.seenBytes[b] !== this.wantBytes[b]) return false;
    return true;
  }

  private stale(gfn: number, detail: string): void {
    this.k.stats[C['violation.staleData']]++;
    this.log.add({ invariant: 'staleData', by: this.by, vm: this.vm, gfn, detail });
  }

  private lost(gfn: number, detail: string): void {
    this.k.stats[C['violation.dataLost']]++;
    this.log.add({ invariant: 'dataLost', by: this.by, vm: this.vm, gfn, detail });
  }

  private onExit(code: number, gfn: number): void {
    const { exits, cfg } = this;
    const stats = this.k.stats;
    switch (code) {
      case Exit.MEMORY_FAULT:
        // The VMM converted or punched the page behind this guest, or memory ran out: the exit
        // is handled by skipping the access, as a VMM would after fixing the attribute.
        exits.memory_fault++;
        stats[C.guestExitsHandled]++;
        return;
      case Exit.RMP_VIOLATION:
        exits.rmp_violation++;
        if (cfg.multiVm) {
          // Counted once per page and vCPU: the guest keeps touching a page it cannot use.
          if (this.crossVmSeen[gfn - cfg.gfnStart] === 0) {
            this.crossVmSeen[gfn - cfg.gfnStart] = 1;
            stats[C['finding.crossVmPrepare']]++;
          }
        } else {
          stats[C['violation.rmpAgreement']]++;
          this.log.add({
            invariant: 'rmpAgreement',
            by: this.by,
            vm: this.vm,
            gfn,
            detail: 'RMP violation on a private access to a page this VM faulted in',
          });
        }
        return;
      case Exit.VC:
        exits.vc++;
        return;
      case Exit.MMIO:
        exits.mmio++;
        return;
    }
  }
}

/** #VC on a fresh private page: the guest PVALIDATEs it and retries the access once. */
function revalidate(cpu: GuestCpu, gpa: number, priv: boolean, out: Uint8Array | null, data: Uint8Array | null): number {
  const r = cpu.pvalidate(gpa, true);
  if (r < 0) return -r;
  return cpu.access(gpa, TAG_BYTES, priv, out, data);
}
