// Groups 'fault' (issue item 5) and 'prefault' (item 6), on the controller thread with a
// MailboxPlatform-backed KvmCtx (Sandbox.attach) while the real firmware worker serves.
//  - fault: one cold private fault per call (kvm_tdp_page_fault on a gfn never faulted: grab a
//    new folio, clear it, RMPUPDATE it on this thread under SNP, install the SPTE), timed call
//    by call into a Histogram; vs zero-filling one page (sw), and vs the sw fault (snp).
//  - prefault: KVM_PRE_FAULT_MEMORY over 256 MiB and 1 GiB (16 MiB with --quick), then a
//    PUNCH_HOLE of the range (untimed) to start the next repetition from empty; vs a page-by-page
//    fill of the same bytes of host memory.

import { HOST_PATTERN } from '../src/gmem/folio.js';
import { kvmVcpuPreFaultMemory } from '../src/kvm/kvm_main.js';
import { RET_PF_FIXED, kvmTdpPageFault } from '../src/kvm/mmu.js';
import { PAGE_SIZE } from '../src/shm/limits.js';
import { buildSandboxMemory } from '../src/vmm/sandbox/build.js';
import { type GuestMemfd, Sandbox, type Vcpu } from '../src/vmm/sandbox/sandbox.js';
import { type Ctx, histSampled, median, timedLoop } from './measure.js';
import { EchoPeer, FirmwareServer } from './roundtrip.js';
import type { Row } from './table.js';

const MiB = 1 << 20;
/** The controller joins as the VMM's thread id: no VMM worker runs in these groups. */
const TID_MAIN = 1;

interface PrivateVm {
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
  return { vcpu: vm.createVcpuSync(), gmem };
}

const roundUpMiB = (bytes: number): number => Math.ceil(bytes / MiB) * MiB;

export async function runColdFault(ctx: Ctx): Promise<Row[]> {
  const n = ctx.quick ? 300 : 8000;
  // SNP faults take some 4000 calls to settle (JIT of both the fault path here and the firmware
  // worker's handler, with the compiler threads competing for the two CPUs).
  const warm = ctx.quick ? 200 : 5000;
  const perVm = roundUpMiB((n + warm + 1) * PAGE_SIZE);
  // Two VMs' worth of folios, plus as many pages again for the zero-fill baseline.
  const memory = 3 * perVm + MiB;
  const desc = buildSandboxMemory({
    policy: 'prepare-on-fault-own-vm',
    memory,
    gpaSpace: perVm,
    userMemory: perVm,
    gmemSpace: 2 * perVm,
    maxVms: 2,
  });
  const fw = await FirmwareServer.start(desc);
  const rows: Row[] = [];
  try {
    const sb = Sandbox.attach(desc, TID_MAIN);
    const host = sb.mem.host;
    // The same page fill the fault path's clear uses (src/shm/pagefill.ts).
    const fillPage = sb.mem.fillPage;
    const top = sb.mem.limits.nrPfns - 1;
    const sw = privateVm(sb, 'sw-protected', perVm);
    const snp = privateVm(sb, 'snp', perVm);

    // Baselines first, while the firmware worker sleeps (it has been idle since the launch).
    // The pages filled are the top of host memory, which the faults below never reach: cold
    // in the caches as the faults' pages are, and already backed by the OS (painted at build).
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
    // Repaint what the baselines filled: free pages carry the host pattern.
    host.fill(HOST_PATTERN, (top - 2 * (n + warm) + 1) * PAGE_SIZE, (top + 1) * PAGE_SIZE);

    for (const [name, v, extra] of [
      ['fault.cold.sw', sw, { baseline: 'zero-fill.page', note: 'sw-protected: grab + clear + map, per call' }],
      ['fault.cold.snp', snp, { baseline: 'fault.cold.sw', note: 'SNP: grab + clear + RMPUPDATE on this thread + map' }],
    ] as const) {
      ctx.log(`fault: ${name}`);
      const k = sb.k;
      const kv = v.vcpu.kvcpu;
      const mb = fw.mailbox();
      let asleep = 0;
      const fw0 = sb.stats().firmwareCommands;
      const h = timedLoop(n, warm, (gfn) => {
        if (gfn >= warm && mb.serverSleeping()) asleep++;
        const r = kvmTdpPageFault(k, kv, gfn, true);
        if (r !== RET_PF_FIXED) throw new Error(`${name}: fault on gfn ${gfn} returned ${r}`);
      });
      // RMPUPDATE is an instruction on the faulting thread: no fault may reach the firmware.
      const fwCommands = sb.stats().firmwareCommands - fw0;
      if (fwCommands !== 0) throw new Error(`${name}: ${fwCommands} firmware commands during faults`);
      const note = v === snp ? `${extra.note}; 0 firmware commands; the firmware worker was asleep at ${asleep} of ${n}` : extra.note;
      rows.push({ group: 'fault', name, kind: 'time', ...histSampled(h), ...extra, note });
    }
    await sb.close();
  } finally {
    await fw.stop();
  }
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
