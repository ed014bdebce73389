// Groups 'fault' (issue item 5) and 'prefault' (item 6), on the controller thread with a
// MailboxPlatform-backed KvmCtx (Sandbox.attach) while the real firmware worker serves.
//  - fault: one private fault per call, timed call by call into a Histogram, the rows taking
//    turns in blocks (alternateBlocks): a cold fault (kvm_tdp_page_fault on a gfn never faulted:
//    grab a new folio, clear it, RMPUPDATE it on this thread under SNP, install the SPTE) in a
//    sw-protected and an SNP VM of 6.11 and an SNP VM of 7.0; then a re-fault of the same gfns
//    after an attribute round trip zapped their SPTEs, SNP on 6.11 and on 7.0 (8622ef05709f: the
//    arch prepare hook on every fault). vs zero-filling one page (sw), the sw fault (snp), 6.11 (7.0).
//  - prefault: KVM_PRE_FAULT_MEMORY over 256 MiB and 1 GiB (16 MiB with --quick), then a
//    PUNCH_HOLE of the range (untimed) to start the next repetition from empty; vs a page-by-page
//    fill of the same bytes of host memory.

import { HOST_PATTERN } from '../src/gmem/folio.js';
import { kvmVcpuPreFaultMemory } from '../src/kvm/kvm_main.js';
import { RET_PF_FIXED, kvmTdpPageFault } from '../src/kvm/mmu.js';
import { PAGE_SIZE } from '../src/shm/limits.js';
import { buildSandboxMemory } from '../src/vmm/sandbox/build.js';
import type { KernelVersionName } from '../src/gmem/version.js';
import { type GuestMemfd, Sandbox, type Vcpu, type Vm } from '../src/vmm/sandbox/sandbox.js';
import { Histogram } from './histogram.js';
import { HostFaultArm, hostMapping } from './host.js';
import { type BlockArm, type BlockPlan, type Ctx, alternateBlocks, histSampled, median, timedLoop } from './measure.js';
import { EchoPeer, FirmwareServer } from './roundtrip.js';
import type { Row } from './table.js';

const MiB = 1 << 20;
/** The controller joins as the VMM's thread id: no VMM worker runs in these groups. */
const TID_MAIN = 1;

interface PrivateVm {
  vm: Vm;
  vcpu: Vcpu;
  gmem: GuestMemfd;
}

/** A VM with one guest_memfd of `bytes` bound at gpa 0, all private; SNP launched and finished. */
function privateVm(sb: Sandbox, type: 'sw-protected' | 'snp', bytes: number): PrivateVm {
  const vm = sb.createVmSync({ type });
  const gmem = vm.createGuestMemfdSync({ size: bytes });
  vm.setUserMemoryRegion2Sync({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: bytes, guestMemfd: gmem });
  vm.setMemoryAttributesSync({ address: 0, size: bytes, attributes: 'private' });
  if (type === 'snp') {
    vm.snpLaunchStartSync();
    vm.snpLaunchFinishSync();
  }
  return { vm, vcpu: vm.createVcpuSync(), gmem };
}

const roundUpMiB = (bytes: number): number => Math.ceil(bytes / MiB) * MiB;

/**
 * The fault rows' blocks. Every row runs as many calls: in the warm-up blocks, the skipped start
 * of each block, and the samples. The rows take turns at opening a block (`rotate`), so that no
 * row always runs first, or always after the same other row.
 */
function faultPlan(quick: boolean): Required<BlockPlan> {
  return quick
    ? { blocks: 3, perBlock: 100, skip: 5, batch: 1, warmBlocks: 1, rotate: true }
    : { blocks: 16, perBlock: 500, skip: 20, batch: 1, warmBlocks: 4, rotate: true };
}
const planCalls = (p: Required<BlockPlan>): number => (p.warmBlocks + p.blocks) * (p.skip + p.perBlock);

/** The counters a fault row checks per call: what its fault did, besides the map. */
const PER_CALL = ['clears', 'archPrepareCalls', 'rmpUpdates', 'firmwareCommands'] as const;
type PerCall = Record<(typeof PER_CALL)[number], number>;

/** One fault row: faults gfn i at call i of `vm` (of `sb`), and checks what each call did. */
class FaultArm implements BlockArm {
  readonly h = new Histogram();
  private readonly seen: PerCall = { clears: 0, archPrepareCalls: 0, rmpUpdates: 0, firmwareCommands: 0 };
  private before: PerCall = this.seen;
  private calls = 0;
  readonly op: (gfn: number) => void;

  constructor(
    readonly name: string,
    private readonly sb: Sandbox,
    vm: PrivateVm,
    private readonly want: PerCall,
    /** Calls per block (skipped and recorded). */
    private readonly pages: number,
    /** Untimed, before each block: e.g. zap what the block faults again. */
    private readonly beforeBlock?: (gfn: number, pages: number) => void,
  ) {
    const k = sb.k;
    const kv = vm.vcpu.kvcpu;
    this.op = (gfn) => {
      const r = kvmTdpPageFault(k, kv, gfn, true);
      if (r !== RET_PF_FIXED) throw new Error(`${name}: fault on gfn ${gfn} returned ${r}`);
    };
  }

  enter(gfn: number): void {
    this.beforeBlock?.(gfn, this.pages);
    this.before = this.sb.stats();
  }

  leave(): void {
    const now = this.sb.stats();
    for (const c of PER_CALL) this.seen[c] += now[c] - this.before[c];
    this.calls += this.pages;
  }

  /** What each call did, checked against `want`: the row measures the path it names, or fails. */
  perCall(): string {
    for (const c of PER_CALL) {
      if (this.seen[c] !== this.want[c] * this.calls) {
        throw new Error(`${this.name}: ${this.seen[c]} ${c} in ${this.calls} faults, want ${this.want[c]} per fault`);
      }
    }
    const w = this.want;
    return `${w.clears} clear, ${w.archPrepareCalls} arch prepare, ${w.rmpUpdates} RMPUPDATE, 0 firmware commands per call`;
  }
}

/** A sandbox of `kernel` on the controller, with its firmware worker (for the SNP launch only). */
async function faultSandbox(
  kernel: KernelVersionName,
  vms: number,
  perVm: number,
  extraBytes: number,
): Promise<{ sb: Sandbox; fw: FirmwareServer }> {
  const desc = buildSandboxMemory({
    kernel,
    memory: vms * perVm + extraBytes + MiB,
    gpaSpace: perVm,
    userMemory: perVm,
    gmemSpace: vms * perVm,
    maxVms: vms,
  });
  const fw = await FirmwareServer.start(desc);
  return { sb: Sandbox.attach(desc, TID_MAIN), fw };
}

export async function runColdFault(ctx: Ctx): Promise<Row[]> {
  const plan = faultPlan(ctx.quick);
  const calls = planCalls(plan);
  const perVm = roundUpMiB((calls + 1) * PAGE_SIZE);
  // The page-fill baselines: one page a call, from the top of 6.11's host memory.
  const n = plan.blocks * plan.perBlock;
  const warm = ctx.quick ? 200 : 5000;
  const servers: FirmwareServer[] = [];
  const sandboxes: Sandbox[] = [];
  try {
    // 6.11 (prepare once per folio, for the faulting VM) and 7.0 (the arch hook on every fault).
    const a = await faultSandbox('6.11', 2, perVm, roundUpMiB(2 * (n + warm) * PAGE_SIZE));
    // 7.0 with room for a second file, mapped by the host (host.fault.cold).
    const b = await faultSandbox('7.0', 2, perVm, 0);
    servers.push(a.fw, b.fw);
    sandboxes.push(a.sb, b.sb);
    const sw = privateVm(a.sb, 'sw-protected', perVm);
    const snp = privateVm(a.sb, 'snp', perVm);
    const snp70 = privateVm(b.sb, 'snp', perVm);
    const rows = await pageFillBaselines(ctx, a.sb, n, warm);
    const pages = plan.skip + plan.perBlock;
    const cold = { clears: 1, archPrepareCalls: 1, rmpUpdates: 1, firmwareCommands: 0 };
    const coldArms = [
      new FaultArm('fault.cold.sw', a.sb, sw, { ...cold, archPrepareCalls: 0, rmpUpdates: 0 }, pages),
      new FaultArm('fault.cold.snp', a.sb, snp, cold, pages),
      new FaultArm('fault.cold.snp.7.0', b.sb, snp70, cold, pages),
      new HostFaultArm(b.sb, hostMapping(b.sb, perVm), pages),
    ];
    ctx.log('fault: cold faults, sw and SNP on 6.11, SNP on 7.0, the host through a mapping on 7.0, in turn');
    await alternateBlocks(plan, coldArms);
    // The same gfns again, each block's range zapped first by a private -> shared -> private
    // round trip (KVM_SET_MEMORY_ATTRIBUTES unmaps the SPTEs; the folio stays, up to date, its
    // RMP entry assigned).
    const roundTrip = (v: PrivateVm) => (gfn: number, count: number) => {
      for (const attributes of ['shared', 'private'] as const) {
        v.vm.setMemoryAttributesSync({ address: gfn * PAGE_SIZE, size: count * PAGE_SIZE, attributes });
      }
    };
    const again = { clears: 0, archPrepareCalls: 0, rmpUpdates: 0, firmwareCommands: 0 };
    const refaultArms = [
      new FaultArm('fault.refault.snp', a.sb, snp, again, pages, roundTrip(snp)),
      new FaultArm('fault.refault.snp.7.0', b.sb, snp70, { ...again, archPrepareCalls: 1 }, pages, roundTrip(snp70)),
    ];
    ctx.log('fault: re-faults after an attribute round trip, SNP on 6.11 and 7.0, in turn');
    await alternateBlocks(plan, refaultArms);
    const order = `in blocks of ${plan.perBlock} taking turns with`;
    const notes: Record<string, [string | undefined, string]> = {
      'fault.cold.sw': ['zero-fill.page', `6.11 sw-protected: grab + clear + map; ${order} the SNP and host rows`],
      'fault.cold.snp': ['fault.cold.sw', `6.11 SNP: grab + clear + RMPUPDATE on this thread + map; ${order} the sw, 7.0 and host rows`],
      'fault.cold.snp.7.0': ['fault.cold.snp', `7.0 SNP (8622ef05709f): the same work; ${order} the 6.11 and host rows`],
      'host.fault.cold': [
        'fault.cold.sw',
        `7.0, a default VM's MMAP|INIT_SHARED file read through its mapping: kvm_gmem_fault_user_mapping grabs, clears, maps; ${order} the guest rows`,
      ],
      'fault.refault.snp': ['fault.cold.snp', `6.11 SNP, SPTE zapped, folio prepared: no hook; ${order} 7.0`],
      'fault.refault.snp.7.0': ['fault.refault.snp', `7.0 SNP, the same: sev_gmem_prepare finds the page assigned; ${order} 6.11`],
    };
    const fillNs = rows.find((r) => r.name === 'zero-fill.page')?.median ?? NaN;
    for (const arm of [...coldArms, ...refaultArms]) {
      const [baseline, note] = notes[arm.name];
      const h = arm.h;
      const vsFill = `${(histSampled(h).median / fillNs).toFixed(1)}x zero-fill.page`;
      rows.push({
        group: 'fault',
        name: arm.name,
        kind: 'time',
        ...histSampled(h),
        ...(baseline ? { baseline } : {}),
        note: `${note}; ${arm.perCall()}; ${vsFill}; mean ${fmtNs(h.mean())}, per call`,
      });
    }
    return rows;
  } finally {
    for (const sb of sandboxes) await sb.close();
    for (const fw of servers) await fw.stop();
  }
}

const fmtNs = (ns: number): string => (ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`);

/**
 * zero-fill.page and zero-fill+rt.spin, while the firmware worker sleeps (idle since the launch).
 * The pages filled are the top of host memory, which the faults never reach: cold in the caches as
 * a new folio is, and already backed by the OS (painted at build). They are painted again after.
 */
async function pageFillBaselines(ctx: Ctx, sb: Sandbox, n: number, warm: number): Promise<Row[]> {
  const rows: Row[] = [];
  // The same page fill the fault path's clear uses (src/shm/pagefill.ts).
  const fillPage = sb.mem.fillPage;
  const top = sb.mem.limits.nrPfns - 1;
  ctx.log('fault: zero-fill one page');
  const fill = timedLoop(n, warm, (i) => fillPage(top - i, 0));
  rows.push({
    group: 'fault',
    name: 'zero-fill.page',
    kind: 'time',
    ...histSampled(fill),
    note: 'one cold 4 KiB page, Mem.fillPage as the fault path clears, per call',
  });
  const peer = await EchoPeer.start();
  try {
    peer.begin('spin');
    const off = n + warm;
    ctx.log('fault: zero-fill one page + spin round trip');
    const both = timedLoop(n, warm, (i) => {
      fillPage(top - off - i, 0);
      peer.spinRoundTrip();
    });
    rows.push({
      group: 'fault',
      name: 'zero-fill+rt.spin',
      kind: 'time',
      ...histSampled(both),
      note: 'one page filled, then one cache-line round trip',
    });
    await peer.end();
  } finally {
    await peer.close();
  }
  // Free pages carry the host pattern.
  sb.mem.host.fill(HOST_PATTERN, (top - 2 * (n + warm) + 1) * PAGE_SIZE, (top + 1) * PAGE_SIZE);
  return rows;
}

export async function runPrefault(ctx: Ctx): Promise<Row[]> {
  const sizes = ctx.quick ? [16 * MiB] : [256 * MiB, 1024 * MiB];
  const snpSizes = ctx.quick ? [16 * MiB] : [256 * MiB];
  const reps = ctx.quick ? 1 : 3;
  const max = Math.max(...sizes);
  const memory = max + 8 * MiB;
  ctx.log(`prefault: building a ${memory / MiB} MiB sandbox`);
  const desc = buildSandboxMemory({
    policy: 'prepare-on-fault-own-vm',
    memory,
    gpaSpace: max,
    userMemory: max,
    gmemSpace: 2 * max,
    maxVms: 2,
  });
  const fw = await FirmwareServer.start(desc);
  const rows: Row[] = [];
  try {
    const sb = Sandbox.attach(desc, TID_MAIN);
    const fillPage = sb.mem.fillPage;
    const vms = { 'sw-protected': privateVm(sb, 'sw-protected', max), snp: privateVm(sb, 'snp', Math.max(...snpSizes)) };
    const label = (b: number): string => (b >= 1024 * MiB ? `${b / (1024 * MiB)}GiB` : `${b / MiB}MiB`);
    for (const size of sizes) {
      const fills: number[] = [];
      for (let r = 0; r < reps; r++) {
        // The same bytes of host memory, a page at a time as the fault path clears them. The
        // pattern keeps free pages painted (the byte written does not change the cost).
        const t0 = performance.now();
        for (let p = 0; p < size / PAGE_SIZE; p++) fillPage(p, HOST_PATTERN);
        fills.push((performance.now() - t0) * 1e6);
      }
      const base = `zero-fill.${label(size)}`;
      rows.push({
        group: 'prefault',
        name: base,
        kind: 'time',
        median: median(fills),
        samples: reps,
        note: `page-by-page fill of ${label(size)}, median of ${reps}`,
      });
      for (const type of ['sw-protected', 'snp'] as const) {
        if (type === 'snp' && !snpSizes.includes(size)) continue;
        const v = vms[type];
        const times: number[] = [];
        for (let r = 0; r < reps; r++) {
          ctx.log(`prefault: ${type} ${label(size)} #${r + 1}`);
          const range = { gpa: 0, size, flags: 0 };
          const t0 = performance.now();
          const ret = kvmVcpuPreFaultMemory(sb.k, v.vcpu.kvcpu, range);
          times.push((performance.now() - t0) * 1e6);
          if (ret !== 0 || range.size !== 0) throw new Error(`prefault ${type} ${label(size)}: returned ${ret}, ${range.size} bytes left`);
          v.gmem.fallocateSync(['keep_size', 'punch_hole'], 0, size);
        }
        const t = median(times);
        rows.push({
          group: 'prefault',
          name: `prefault.${label(size)}.${type === 'snp' ? 'snp' : 'sw'}`,
          kind: 'time',
          median: t,
          samples: reps,
          baseline: base,
          note: `KVM_PRE_FAULT_MEMORY, one call; ${(t / (size / PAGE_SIZE)) | 0} ns/page, ${(size / MiB / (t / 1e9)).toFixed(0)} MiB/s, median of ${reps}`,
        });
      }
    }
    await sb.close();
  } finally {
    await fw.stop();
  }
  return rows;
}
