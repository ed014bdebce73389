// The layout a stress or explore run works on: the VMs, their guest_memfds and memslots, the
// launch state, and the vCPUs the VMM creates for the vCPU workers and for its own pre-faults.
// Built once on the VMM thread that leads (buildStressLayout); every other VMM thread of the
// process attaches to it (attachStressTarget) and shares its fds.

import { kvmVmIoctlCreateVcpu } from '../../kvm/kvm_vcpu_ioctl.js';
import { GUEST_MEMFD_FLAG_MMAP } from '../../gmem/flags.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../kvm/attributes.js';
import { KvmVcpu } from '../../kvm/vcpu.js';
import type { VmTypeName } from '../../kvm/vm.js';
import { PAGE_SIZE } from '../../shm/limits.js';
import { Prng } from '../../shm/prng.js';
import type { GuestMemfd, Sandbox, Vm } from '../sandbox/sandbox.js';

/** One memslot of the target layout: VM 0's (linked VMs bind theirs the same way) or a launching VM's. */
export interface StressRegion {
  /** The VM whose memslot it is (VM 0, or an SNP VM launching beside it). */
  vm: number;
  slot: number;
  gfn: number;
  npages: number;
  /** Index in the file of the region's first gfn. */
  pgoff: number;
  userPage: number;
  /** The guest_memfd behind it ('close' replaces it) and its fd in the VMM's table. */
  file: number;
  fd: number;
  /** Size of that file, in pages. */
  filePages: number;
}

/** The layout as one VMM thread runs its ops on it (attachStressTarget). */
export interface StressTarget {
  /** The layout's memslots, in gfn order; together they map `pages` gfns. */
  regions: StressRegion[];
  pages: number;
  vms: number[];
  /** One handle per VM for KVM_PRE_FAULT_MEMORY, issued from the VMM thread. */
  prefaultVcpus: KvmVcpu[];
  /** An SNP VM still launching, whose pages the 'populate' op LAUNCH_UPDATEs (-1: none). */
  populateVm: number;
  /** The VMs bind one inode by link: 'close' is off, and a conversion does not discard the backing. */
  linked: boolean;
  /** KVM_CREATE_GUEST_MEMFD flags of the layout's files ('close' rebuilds with them too). */
  gmemFlags: number;
  /** The VMM's mappings of the layout's files, made at set-up and kept to the end (the host ops' targets). */
  hostMaps: HostMap[];
  /** This VMM thread's index among the run's (0 leads). */
  thread: number;
  /** How many VMM threads the run has. */
  threads: number;
}

/**
 * A host mapping of a guest_memfd (6.18) the VMM made: its handle, the file range it maps, and
 * the layout's regions (indices into `regions`) that bind that file: their gfns are the ones
 * whose guests' tags the mapped pages may hold.
 */
export interface HostMap {
  handle: number;
  pgoff: number;
  npages: number;
  regions: number[];
}

export interface StressSetup {
  vmType: VmTypeName;
  vms: number;
  /** guest pages each VM maps (gpa 0 .. pages), all backed by one guest_memfd. */
  pages: number;
  /** Share of the range made private at the start (the rest is shared). */
  privateShare: number;
  /** VM 0 is an SNP VM left between LAUNCH_START and LAUNCH_FINISH, for 'populate' ops. */
  populateFirstVm?: boolean;
  /** Draw a random layout from this seed (one VM only; absent: identity, gfn i at index i). */
  layoutSeed?: number;
  /**
   * vCPUs to create (KVM_CREATE_VCPU, here on the VMM) per running VM, for vCPU workers that
   * then attach to them by id and slot: created in this order, they are the same every time.
   */
  vcpusPerVm?: number;
  /** VMM threads that will run ops on this layout (each gets its own pre-fault vCPU per VM; default 1). */
  vmmThreads?: number;
  /**
   * Adds an SNP VM left launching beside the running ones, on a guest_memfd of its own over the
   * same gfns, for 'populate' ops (no running VM shares its inode: no kernel can fault a page a
   * populate is measuring, as SNP vCPUs do not run before LAUNCH_FINISH).
   */
  launchingBeside?: boolean;
  /** vCPUs to create over all running VMs, round robin (instead of vcpusPerVm). */
  vcpusTotal?: number;
  /** KVM_CREATE_GUEST_MEMFD flags of the running VMs' files (GUEST_MEMFD_FLAG_*; default 0). */
  gmemFlags?: number;
  /** The VMM maps each of those files whole (MAP_SHARED) at set-up, as a VMM that reaches guest memory through guest_memfd (6.18). */
  hostMap?: boolean;
}

/** The layout as another VMM thread of the process attaches to it (see attachStress). */
export interface SharedStressTarget {
  regions: StressRegion[];
  pages: number;
  vms: number[];
  populateVm: number;
  linked: boolean;
  gmemFlags: number;
  hostMaps: HostMap[];
  /** Per VMM thread, per VM: the vCPU its KVM_PRE_FAULT_MEMORY goes through. */
  prefault: CreatedVcpu[][];
}

/** A vCPU setupStress created for a vCPU worker. */
export interface CreatedVcpu {
  vm: number;
  id: number;
  slot: number;
}

/** What buildStressLayout made: the layout to share, and what the building thread owns. */
export interface StressLayout {
  vms: number[];
  file: number;
  gfnStart: number;
  vcpus: CreatedVcpu[];
  shared: SharedStressTarget;
  /** Every guest_memfd the layout opened (closed at teardown). */
  fds: GuestMemfd[];
  /** vCPU slots claimed for every VMM thread's pre-fault handles (released at teardown). */
  prefaultSlots: number[];
}

/** A layout's memslot before its files exist: `file` numbers the layout's files; `size` is the pages that file needs. */
export interface LayoutRegion extends Omit<StressRegion, 'fd' | 'filePages' | 'vm'> {
  size: number;
}

/** A random layout of `pages` gfns over two memslots (see VmmWorker.setupStress). */
export function randomLayout(pages: number, seed: number): LayoutRegion[] {
  const rng = new Prng(seed);
  const gfn = rng.below(8);
  const split = 1 + rng.below(pages - 1);
  const off0 = rng.below(4);
  const first: LayoutRegion = { slot: 0, gfn, npages: split, pgoff: off0, userPage: 0, file: 0, size: off0 + split };
  const sameFile = rng.below(2) === 0;
  const off1 = sameFile ? off0 + split + rng.below(3) : rng.below(4);
  const n1 = pages - split;
  return [first, { slot: 1, gfn: gfn + split, npages: n1, pgoff: off1, userPage: split, file: sameFile ? 0 : 1, size: off1 + n1 }];
}

/** A vCPU of `vm` created by the VMM (KVM_CREATE_VCPU) and given a slot. */
function createVcpu(sb: Sandbox, vm: number, what: string): CreatedVcpu {
  const id = kvmVmIoctlCreateVcpu(sb.k, vm);
  const slot = sb.k.vcpus.claim(vm);
  if (id < 0 || slot < 0) throw new Error(`vm ${vm}: no vCPU slot left${what}`);
  return { vm, id, slot };
}

/** Attributes, launch state and one pre-fault handle per VMM thread, for a VM whose memslots exist. */
function finishVm(sb: Sandbox, cfg: StressSetup, gfnStart: number, vm: Vm, launching: boolean, out: StressLayout): void {
  const priv = Math.floor(cfg.pages * cfg.privateShare);
  // With gmem_in_place_conversion the files say what is private (inPlaceShared): the VM's
  // attributes take no PRIVATE (537ec2b15fdd).
  if (priv > 0 && !sb.k.g.inPlace)
    vm.setMemoryAttributesSync({ address: gfnStart * PAGE_SIZE, size: priv * PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  if (vm.type === 'snp') {
    vm.snpLaunchStartSync();
    if (!launching) vm.snpLaunchFinishSync();
  }
  for (let t = 0; t < (cfg.vmmThreads ?? 1); t++) {
    const c = createVcpu(sb, vm.id, ' for a pre-fault handle');
    out.shared.prefault[t].push(c);
    out.prefaultSlots.push(c.slot);
  }
}

/** One guest_memfd per distinct `file` number of the layout, sized to the regions it backs. */
function openLayoutFiles(vm0: Vm, regions: readonly LayoutRegion[], flags: number): Map<number, GuestMemfd> {
  const files = new Map<number, GuestMemfd>();
  for (const r of regions) {
    if (files.has(r.file)) continue;
    const size = Math.max(...regions.filter((x) => x.file === r.file).map((x) => x.size));
    files.set(r.file, vm0.createGuestMemfdSync({ size: size * PAGE_SIZE, flags }));
  }
  return files;
}

/** mmap(MAP_SHARED) of each file whole, as a VMM that reaches guest memory through guest_memfd. */
function mapLayoutFiles(files: ReadonlyMap<number, GuestMemfd>, regions: readonly StressRegion[]): HostMap[] {
  return [...files.values()].map((gmem) => {
    const size = gmem.fstat().size;
    const handle = gmem.mmapSync({ size }).handle;
    return { handle, pgoff: 0, npages: size / PAGE_SIZE, regions: regionsOf(regions, (r) => r.file === gmem.file) };
  });
}

/** The indices of the regions that `pick` picks. */
export function regionsOf(regions: readonly StressRegion[], pick: (r: StressRegion) => boolean): number[] {
  return regions.flatMap((r, i) => (pick(r) ? [i] : []));
}

/**
 * Builds the stress layout. Identity: every VM binds one guest_memfd (linked for VMs after the
 * first) by slot 0, gfn i at index i. Random (one VM): the range starts at a random gfn and is
 * split in two memslots at a random page, the first at a random offset into its file, the
 * second either further into the same file or in a second file.
 */
export function buildStressLayout(sb: Sandbox, cfg: StressSetup): StressLayout {
  const vms: Vm[] = [];
  for (let i = 0; i < cfg.vms; i++) vms.push(sb.createVmSync({ type: i === 0 && cfg.populateFirstVm ? 'snp' : cfg.vmType }));
  const regions =
    cfg.layoutSeed !== undefined && cfg.vms === 1 && cfg.pages > 1
      ? randomLayout(cfg.pages, cfg.layoutSeed)
      : [{ slot: 0, gfn: 0, npages: cfg.pages, pgoff: 0, userPage: 0, file: 0, size: cfg.pages }];
  const inPlace = inPlaceLayout(sb, cfg);
  const gmemFlags = (cfg.gmemFlags ?? 0) | (inPlace ? GUEST_MEMFD_FLAG_MMAP : 0);
  const files = openLayoutFiles(vms[0], regions, gmemFlags);
  const gfnStart = regions[0].gfn;
  const threads = cfg.vmmThreads ?? 1;
  const shared: SharedStressTarget = {
    regions: [],
    pages: cfg.pages,
    vms: [],
    populateVm: cfg.populateFirstVm ? vms[0].id : -1,
    linked: cfg.vms > 1,
    gmemFlags,
    hostMaps: [],
    prefault: Array.from({ length: threads }, () => []),
  };
  const out: StressLayout = { vms: [], file: -1, gfnStart, vcpus: [], shared, fds: [...files.values()], prefaultSlots: [] };
  vms.forEach((vm, i) => {
    for (const r of regions) {
      const first = files.get(r.file)!;
      const gmem = i === 0 ? first : vm.linkGuestMemfdSync(first);
      if (i > 0) out.fds.push(gmem);
      const userPage = i * cfg.pages + r.userPage;
      vm.setUserMemoryRegion2Sync({
        slot: r.slot,
        flags: ['guest_memfd'],
        guestPhysAddr: r.gfn * PAGE_SIZE,
        memorySize: r.npages * PAGE_SIZE,
        userspaceAddr: userPage * PAGE_SIZE,
        guestMemfd: gmem,
        guestMemfdOffset: r.pgoff * PAGE_SIZE,
      });
      if (i === 0)
        shared.regions.push({
          vm: vm.id,
          slot: r.slot,
          gfn: r.gfn,
          npages: r.npages,
          pgoff: r.pgoff,
          userPage,
          file: gmem.file,
          fd: gmem.fd,
          filePages: gmem.fstat().size / PAGE_SIZE,
        });
    }
    finishVm(sb, cfg, gfnStart, vm, i === 0 && cfg.populateFirstVm === true, out);
  });
  if (inPlace) inPlaceShared(cfg, gfnStart, shared.regions, files);
  if (cfg.hostMap === true || inPlace) shared.hostMaps = mapLayoutFiles(files, shared.regions);
  const all = [...vms];
  if (cfg.launchingBeside) all.push(addLaunchingVm(sb, cfg, gfnStart, out));
  shared.vms = all.map((v) => v.id);
  out.vms = shared.vms;
  out.file = shared.regions[0].file;
  out.vcpus = createRunningVcpus(
    sb,
    cfg,
    vms.filter((vm) => vm.id !== shared.populateVm),
  );
  return out;
}

/**
 * Whether the layout's files convert in place (7.4 with gmem_in_place_conversion, on a VM with
 * private memory): they are made with GUEST_MEMFD_FLAG_MMAP, private by default, and the VMM maps
 * them whole, so that conversions, pins and host faults meet on the same folios.
 */
function inPlaceLayout(sb: Sandbox, cfg: StressSetup): boolean {
  return sb.k.g.inPlace && cfg.vmType !== 'default' && (cfg.gmemFlags ?? 0) === 0;
}

/** At most this share of an in-place layout starts private: the host's pins and touches need shared pages to reach. */
const IN_PLACE_PRIVATE_SHARE = 0.5;

/** The gfns past the private share made shared in the files (KVM_SET_MEMORY_ATTRIBUTES2), as finishVm would in the VM's attributes. */
function inPlaceShared(cfg: StressSetup, gfnStart: number, regions: readonly StressRegion[], files: ReadonlyMap<number, GuestMemfd>): void {
  const from = gfnStart + Math.floor(cfg.pages * Math.min(cfg.privateShare, IN_PLACE_PRIVATE_SHARE));
  for (const r of regions) {
    const a = Math.max(from, r.gfn);
    const b = r.gfn + r.npages;
    if (a >= b) continue;
    const gmem = [...files.values()].find((f) => f.fd === r.fd)!;
    gmem.setMemoryAttributes2Sync({ offset: (r.pgoff + a - r.gfn) * PAGE_SIZE, size: (b - a) * PAGE_SIZE, attributes: 'shared' });
  }
}

/**
 * An SNP VM launching beside the running ones, on a guest_memfd of its own over the same gfns:
 * its file is a target too, so punch, fallocate, hwpoison, close and memslot ops race its populates.
 */
function addLaunchingVm(sb: Sandbox, cfg: StressSetup, gfnStart: number, out: StressLayout): Vm {
  const vm = sb.createVmSync({ type: 'snp' });
  const gmem = vm.createGuestMemfdSync({ size: cfg.pages * PAGE_SIZE });
  vm.setUserMemoryRegion2Sync({
    slot: 0,
    flags: ['guest_memfd'],
    guestPhysAddr: gfnStart * PAGE_SIZE,
    memorySize: cfg.pages * PAGE_SIZE,
    userspaceAddr: cfg.vms * cfg.pages * PAGE_SIZE,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  finishVm(sb, cfg, gfnStart, vm, true, out);
  out.shared.populateVm = vm.id;
  out.shared.regions.push({
    vm: vm.id,
    slot: 0,
    gfn: gfnStart,
    npages: cfg.pages,
    pgoff: 0,
    userPage: cfg.vms * cfg.pages,
    file: gmem.file,
    fd: gmem.fd,
    filePages: cfg.pages,
  });
  out.fds.push(gmem);
  return vm;
}

/** The vCPUs the vCPU workers attach to: vcpusPerVm each, or vcpusTotal round robin over the running VMs. */
function createRunningVcpus(sb: Sandbox, cfg: StressSetup, running: readonly Vm[]): CreatedVcpu[] {
  const perVm = running.map(() => cfg.vcpusPerVm ?? 0);
  if (cfg.vcpusTotal !== undefined)
    for (let c = 0; c < running.length; c++)
      perVm[c] = Math.floor(cfg.vcpusTotal / running.length) + (c < cfg.vcpusTotal % running.length ? 1 : 0);
  const vcpus: CreatedVcpu[] = [];
  running.forEach((vm, v) => {
    for (let c = 0; c < perVm[v]; c++) vcpus.push(createVcpu(sb, vm.id, ''));
  });
  return vcpus;
}

/** VMM thread `thread`'s view of a built layout: the shared fds, its own pre-fault vCPUs. */
export function attachStressTarget(sb: Sandbox, shared: SharedStressTarget, thread: number): StressTarget {
  const k = sb.k;
  const prefaultVcpus = shared.prefault[thread].map((c) => new KvmVcpu(c.vm, c.id, c.slot, k.vcpus, sb.mem, k.sync));
  return {
    regions: shared.regions,
    pages: shared.pages,
    vms: shared.vms,
    prefaultVcpus,
    populateVm: shared.populateVm,
    linked: shared.linked,
    gmemFlags: shared.gmemFlags,
    hostMaps: shared.hostMaps,
    thread,
    threads: shared.prefault.length,
  };
}
