// A guest workload for one vCPU: accesses over a gfn range (sequential, random or a hot set),
// a read/write mix, PVALIDATE on #VC under SNP, and guest-side data checks. Every write tags the
// page with (magic, gfn, vCPU, generation); every read verifies the tag, so a guest that sees
// host bytes, another page's bytes, or loses its own write reports it.

import { kvmVcpuPreFaultMemory } from '../kvm/kvm_main.js';
import { errnoName } from '../shm/errno.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { Prng } from '../shm/prng.js';
import { C } from '../shm/stats.js';
import { Exit, type GuestCpu } from './guest.js';
import type { RunControl } from './runctl.js';
import { type Violation, ViolationLog } from '../checker/violations.js';

export const TAG_MAGIC = 0x676d656d; // 'gmem'
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
   * Share of steps where the vCPU thread, between two KVM_RUNs, issues KVM_PRE_FAULT_MEMORY on
   * its own vCPU for the page instead (0 or absent: never).
   */
  prefaultRatio?: number;
}

export interface WorkloadResult {
  accesses: number;
  exits: Record<string, number>;
  violations: Violation[];
  violationCount: number;
  elapsedMs: number;
}

export function runWorkload(cpu: GuestCpu, rc: RunControl, cfg: WorkloadConfig): WorkloadResult {
  const k = cpu.k;
  const vm = cpu.vcpu.vm;
  const sync = k.sync;
  const stats = k.stats;
  const rng = new Prng(cfg.seed);
  const log = new ViolationLog();
  const by = `vcpu ${cpu.vcpu.id} of vm ${vm}`;
  const n = cfg.gfnCount;
  const lastGen = new Int32Array(n);
  const epochAtWrite = new Int32Array(n).fill(-1);
  const tag = new Uint32Array(4);
  const tagBytes = new Uint8Array(tag.buffer);
  const seen = new Uint32Array(4);
  const seenBytes = new Uint8Array(seen.buffer);
  const want = new Uint32Array(2);
  const wantBytes = new Uint8Array(want.buffer);
  const exits: Record<string, number> = { memory_fault: 0, rmp_violation: 0, vc: 0, mmio: 0 };
  const crossVmSeen = new Uint8Array(n);
  const hot = Math.max(1, Math.floor(n / 10));
  const t0 = performance.now();
  const deadline = cfg.durationMs > 0 ? t0 + cfg.durationMs : Infinity;
  let seq = 0;
  let accesses = 0;
  const prefaultRatio = cfg.prefaultRatio ?? 0;

  const pick = (): number => {
    switch (cfg.pattern) {
      case 'sequential':
        return seq++ % n;
      case 'random':
        return rng.below(n);
      case 'hot':
        return rng.next() < cfg.hotRatio ? rng.below(hot) : rng.below(n);
    }
  };

  // An SNP vCPU before LAUNCH_FINISH cannot enter (KVM_EXIT_FAIL_ENTRY): the guest runs nothing.
  if (cpu.entryFails()) {
    exits.fail_entry = 1;
    return { accesses, exits, violations: log.list, violationCount: log.count, elapsedMs: performance.now() - t0 };
  }
  // The guest runs in guest mode, leaving it only for exits and at the run-control checkpoints.
  cpu.vcpu.enterGuest();
  try {
    guestLoop();
  } finally {
    cpu.vcpu.exitGuest();
  }

  function guestLoop(): void {
    for (;;) {
      if ((accesses & 255) === 0) {
        if (rc.stopRequested() || sync.aborted() || performance.now() > deadline) break;
        cpu.vcpu.exitGuest();
        rc.checkpoint(sync);
        cpu.pollAccessPoint();
        cpu.vcpu.enterGuest();
      }
      if (cfg.maxAccesses > 0 && accesses >= cfg.maxAccesses) break;
      const i = pick();
      const gfn = cfg.gfnStart + i;
      const gpa = gfn * PAGE_SIZE;
      if (prefaultRatio > 0 && rng.next() < prefaultRatio) {
        // A vCPU ioctl: issued from userspace, outside guest mode.
        cpu.vcpu.exitGuest();
        const r = kvmVcpuPreFaultMemory(k, cpu.vcpu, { gpa, size: PAGE_SIZE, flags: 0 });
        cpu.vcpu.enterGuest();
        exits[r < 0 ? `prefault:${errnoName(r)}` : 'prefault'] = (exits[r < 0 ? `prefault:${errnoName(r)}` : 'prefault'] ?? 0) + 1;
        accesses++;
        continue;
      }
      const owner = i % cfg.writers === cfg.writerIndex;
      const write = owner && rng.next() < cfg.writeRatio;
      const priv = k.attrs.isPrivate(vm, gfn);
      const e0 = rc.epoch(vm, gfn);
      let code: number;
      if (write) {
        tag[0] = TAG_MAGIC;
        tag[1] = gfn;
        tag[2] = cpu.vcpu.id;
        tag[3] = lastGen[i] + 1;
        code = cpu.access(gpa, TAG_BYTES, priv, null, tagBytes);
        if (code === Exit.VC) code = revalidate(cpu, gpa, priv, null, tagBytes);
        if (code === Exit.NONE) {
          lastGen[i]++;
          epochAtWrite[i] = e0;
        }
      } else {
        code = cpu.access(gpa, TAG_BYTES, priv, seenBytes, null);
        if (code === Exit.VC) code = revalidate(cpu, gpa, priv, seenBytes, null);
        if (code === Exit.NONE) {
          const e1 = rc.epoch(vm, gfn);
          // An odd epoch is a discard in progress (the VMM bumps before and after): a write and a
          // read both inside that window may legitimately see the discard between them.
          checkRead(i, gfn, owner, owner && e0 === e1 && epochAtWrite[i] === e0 && (e0 & 1) === 0);
        }
      }
      accesses++;
      if (code !== Exit.NONE) onExit(code, gfn);
    }
  }

  function checkRead(i: number, gfn: number, owner: boolean, mustHaveMine: boolean): void {
    const zero = seen[0] === 0 && seen[1] === 0 && seen[2] === 0 && seen[3] === 0;
    if (zero) {
      if (mustHaveMine && lastGen[i] > 0) lost(gfn, `read zeros where generation ${lastGen[i]} was written`);
      return;
    }
    // A read racing the owner's first write of a zeroed page may see part of the tag and part of
    // the zeros (a 16-byte access is not atomic): not stale data.
    if (!owner && (seen[0] !== TAG_MAGIC || seen[1] !== gfn) && tornTag(gfn)) return;
    if (seen[0] !== TAG_MAGIC) {
      stats[C['violation.staleData']]++;
      log.add({
        invariant: 'staleData',
        by,
        vm,
        gfn,
        detail: `read bytes ${Buffer.from(seenBytes).toString('hex')} that no guest wrote (host data)`,
      });
      return;
    }
    if (seen[1] !== gfn) {
      stats[C['violation.staleData']]++;
      log.add({ invariant: 'staleData', by, vm, gfn, detail: `read the data of gfn ${seen[1]} (vcpu ${seen[2]}, generation ${seen[3]})` });
      return;
    }
    if (mustHaveMine && (seen[2] !== cpu.vcpu.id || seen[3] !== lastGen[i])) {
      lost(gfn, `read generation ${seen[3]} of vcpu ${seen[2]}, expected generation ${lastGen[i]} of vcpu ${cpu.vcpu.id}`);
    }
  }

  /** Every byte of the magic and gfn words is either 0 or the byte a tag of `gfn` has there. */
  function tornTag(gfn: number): boolean {
    want[0] = TAG_MAGIC;
    want[1] = gfn;
    for (let b = 0; b < 8; b++) if (seenBytes[b] !== 0 && seenBytes[b] !== wantBytes[b]) return false;
    return true;
  }

  function lost(gfn: number, detail: string): void {
    stats[C['violation.dataLost']]++;
    log.add({ invariant: 'dataLost', by, vm, gfn, detail });
  }

  function onExit(code: number, gfn: number): void {
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
          if (crossVmSeen[gfn - cfg.gfnStart] === 0) {
            crossVmSeen[gfn - cfg.gfnStart] = 1;
            stats[C['finding.crossVmPrepare']]++;
          }
        } else {
          stats[C['violation.rmpAgreement']]++;
          log.add({ invariant: 'rmpAgreement', by, vm, gfn, detail: 'RMP violation on a private access to a page this VM faulted in' });
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

  return { accesses, exits, violations: log.list, violationCount: log.count, elapsedMs: performance.now() - t0 };
}

/** #VC on a fresh private page: the guest PVALIDATEs it and retries the access once. */
function revalidate(cpu: GuestCpu, gpa: number, priv: boolean, out: Uint8Array | null, data: Uint8Array | null): number {
  const r = cpu.pvalidate(gpa, true);
  if (r < 0) return -r;
  return cpu.access(gpa, TAG_BYTES, priv, out, data);
}
