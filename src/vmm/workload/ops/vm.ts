// The VMM's ops on a VM's gfns and threads: attribute conversion, KVM_PRE_FAULT_MEMORY,
// SNP_LAUNCH_UPDATE into a launching VM, its vCPU threads, a firmware command made to fail, and a signal.

import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../../kvm/attributes.js';
import { kvmSetMemoryAttributes, kvmVcpuPreFaultMemory } from '../../../kvm/kvm_main.js';
import { SnpPageType } from '../../../kvm/psp.js';
import { RunExit, kvmVcpuIoctlRun, kvmVmIoctlCreateVcpu } from '../../../kvm/kvm_vcpu_ioctl.js';
import { snpLaunchFinish, snpLaunchUpdate } from '../../../kvm/sev.js';
import { PAGE_SIZE } from '../../../shm/limits.js';
import { LAUNCH_BYTE } from '../../../vcpu-workers/guest-workload.js';
import { type OpHandler, punchFd } from './op.js';

/** The byte a 'populate' op measures into the launching VM: no guest tag can match it. */

/** KVM_SET_MEMORY_ATTRIBUTES flipping the range's first gfn's state, and the discard a VMM makes of memory turned shared. */
export const convert: OpHandler = {
  range: 'gfn',
  run({ sb, rc, t, rng }, { gfn, len }) {
    const k = sb.k;
    const vm = t.vms[rng.below(t.vms.length)];
    const toPrivate = !k.attrs.isPrivate(vm, gfn);
    rc.bumpEpochs(vm, gfn, gfn + len);
    let r = kvmSetMemoryAttributes(k, vm, gfn * PAGE_SIZE, len * PAGE_SIZE, toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);
    // A VMM discards the private backing of memory converted to shared (QEMU does): the
    // regions' file is VM 0's own unless linked (a launching VM beside has its own).
    if (r === 0 && !toPrivate && !t.linked) {
      for (const x of t.regions) {
        if (x.vm !== vm) continue;
        const a = Math.max(gfn, x.gfn);
        const b = Math.min(gfn + len, x.gfn + x.npages);
        if (a < b) r ||= punchFd(sb, x.fd, x.pgoff + a - x.gfn, b - a);
      }
    }
    rc.bumpEpochs(vm, gfn, gfn + len);
    return r;
  },
};

/** KVM_PRE_FAULT_MEMORY on a random VM, through this VMM thread's vCPU handle of it. */
export const prefault: OpHandler = {
  range: 'gfn',
  run({ sb, t, rng }, { gfn, len }) {
    const i = rng.below(t.vms.length);
    const range = { gpa: gfn * PAGE_SIZE, size: len * PAGE_SIZE, flags: 0 };
    return kvmVcpuPreFaultMemory(sb.k, t.prefaultVcpus[i], range);
  },
};

/** SNP_LAUNCH_UPDATE of the range into the launching VM (snp_launch_update), sometimes then LAUNCH_FINISH and a pre-fault. */
export const populate: OpHandler = {
  range: 'gfn',
  run({ sb, t, rng }, { gfn, len }) {
    if (t.populateVm < 0) return null;
    const k = sb.k;
    // A range, so that a page populated earlier answers EEXIST and the rest are not done.
    // With gmem_in_place_conversion (7.4, edcc3f42981e) one time in two with no source: the
    // pages are measured in place, as the VMM wrote them into the file.
    const inPlace = k.g.inPlace && k.version.launchUpdateInPlace && rng.below(2) === 0;
    const src = inPlace ? null : { data: new Uint8Array(len * PAGE_SIZE).fill(LAUNCH_BYTE), pageOffset: 0 };
    const r = snpLaunchUpdate(k, k.psp, t.populateVm, gfn, len * PAGE_SIZE, SnpPageType.NORMAL, src);
    let e = r.ret < 0 ? r.populateErr || r.ret : 0;
    // One time in four the launch ends here (again, perhaps) and the VMM pre-faults what it
    // populated, as a VMM boots its guest: the auditor then holds those SPTEs to the RMP (a page a failed
    // populate left unmeasured, but marked up to date, shows).
    if (rng.below(4) === 0) {
      // Whatever its LAUNCH_UPDATE answered: a VMM may end a launch twice, and KVM must cope.
      const f = snpLaunchFinish(k, k.psp, t.populateVm);
      e ||= f;
      const v = t.prefaultVcpus[t.vms.indexOf(t.populateVm)];
      if (v !== undefined) e ||= kvmVcpuPreFaultMemory(k, v, { gpa: gfn * PAGE_SIZE, size: len * PAGE_SIZE, flags: 0 });
    }
    return e;
  },
};

/**
 * A VMM booting the launching VM from several threads: each loads its share of the image
 * (ownPages), one LAUNCH_UPDATE per page; the first thread, once its share is in, ends the
 * launch and pre-faults the whole range. KVM accepts a LAUNCH_UPDATE after LAUNCH_FINISH (only
 * the firmware refuses it), so a thread still loading races that pre-fault on a page it has not
 * measured yet: the late-LAUNCH_UPDATE race of the catalogue.
 */
export const launch: OpHandler = {
  range: 'gfn',
  run({ sb, t }) {
    if (t.populateVm < 0) return null;
    const k = sb.k;
    const whole = t.regions.find((x) => x.vm === t.populateVm);
    if (whole === undefined) return null;
    const own = ownPages(whole, t.thread, t.threads);
    const data = new Uint8Array(PAGE_SIZE).fill(LAUNCH_BYTE);
    let e = 0;
    for (let p = own.first; p < own.first + own.n && e === 0; p++) {
      const r = snpLaunchUpdate(k, k.psp, t.populateVm, p, PAGE_SIZE, SnpPageType.NORMAL, { data, pageOffset: 0 });
      e = r.ret < 0 ? r.populateErr || r.ret : 0;
    }
    if (t.thread !== 0) return e;
    e ||= snpLaunchFinish(k, k.psp, t.populateVm);
    const v = t.prefaultVcpus[t.vms.indexOf(t.populateVm)];
    if (v !== undefined) e ||= kvmVcpuPreFaultMemory(k, v, { gpa: whole.gfn * PAGE_SIZE, size: whole.npages * PAGE_SIZE, flags: 0 });
    return e;
  },
};

/**
 * VMM thread `thread`'s share of the launching VM's pages, of `threads`: its first gfn and how
 * many (at least one). The first thread, which ends the launch, loads the first page only; the
 * others split the rest, so that their LAUNCH_UPDATEs may still be going when it ends it.
 */
export function ownPages(r: { gfn: number; npages: number }, thread: number, threads: number): { first: number; n: number } {
  if (threads === 1 || r.npages === 1) return { first: r.gfn, n: r.npages };
  if (thread === 0) return { first: r.gfn, n: 1 };
  const per = Math.ceil((r.npages - 1) / (threads - 1));
  const first = Math.min(r.npages - 1, 1 + (thread - 1) * per);
  return { first: r.gfn + first, n: Math.max(1, Math.min(per, r.npages - first)) };
}

/** The next RMPUPDATE fails (or, half the time with a VM launching, its next LAUNCH_UPDATE). */
export const fwfail: OpHandler = {
  range: 'gfn',
  run({ sb, t, rng }) {
    sb.injectFirmwareFailures(t.populateVm >= 0 && rng.below(2) === 0 ? 'LAUNCH_UPDATE' : 'RMPUPDATE', 1);
    return 0;
  },
};

/** A signal for a vCPU or VMM thread: its pre-fault, fallocate or populate in flight, or next, returns EINTR. */
export const signal: OpHandler = {
  range: 'gfn',
  run({ sb, rng, signalTids }) {
    if (signalTids.length === 0) return null;
    sb.raiseSignal(signalTids[rng.below(signalTids.length)]);
    return 0;
  },
};

/** How many vCPUs the 'vcpu' op lets the launching VM have (its pre-fault handles included). */
export const LAUNCH_VCPUS_MAX = 4;
/** How many KVM_RUNs a 'vcpu' op's thread makes while its vCPU cannot enter. */
const VCPU_RUN_TRIES = 8;

/**
 * The launching VM's vCPU threads, started before its launch ended: KVM_CREATE_VCPU one time in
 * three (while fewer than LAUNCH_VCPUS_MAX), else KVM_RUN of one, again and again while it cannot
 * enter (until LAUNCH_FINISH made its VMSA the guest's). Both race LAUNCH_FINISH's sync of the VMSAs.
 */
export const vcpu: OpHandler = {
  range: 'gfn',
  run({ sb, t, rng }) {
    if (t.populateVm < 0) return null;
    const k = sb.k;
    const vm = t.populateVm;
    const created = k.vms.createdVcpus(vm);
    if (created < LAUNCH_VCPUS_MAX && rng.below(3) === 0) {
      const id = kvmVmIoctlCreateVcpu(k, vm);
      return id < 0 ? id : 0;
    }
    // The vCPU fds this VMM has: those whose KVM_CREATE_VCPU returned.
    const fds: number[] = [];
    for (let id = 0; id < created; id++) if (k.vcpuStates.online(vm, id)) fds.push(id);
    if (fds.length === 0) return null;
    // A vCPU thread loops on KVM_RUN while its entry fails.
    const id = fds[rng.below(fds.length)];
    for (let i = 0; i < VCPU_RUN_TRIES && kvmVcpuIoctlRun(k, vm, id) === RunExit.FAIL_ENTRY; i++);
    return 0;
  },
};
