// The conversion rows of the fault group (issue 19, item 7): one conversion of 4 KiB and of 2 MiB
// of an SNP guest's memory each way, timed call by call, in turns (alternateBlocks):
//  - convert.SIZE.private.7.4 / .shared.7.4: KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd with
//    gmem_in_place_conversion on (kvm_gmem_set_attributes: to private, the host's mappings go and
//    the refcount check runs; the SPTEs of the old kind are zapped; to shared, the RMP entries go
//    back to the host);
//  - convert.SIZE.private.7.0 / .shared.7.0: KVM_SET_MEMORY_ATTRIBUTES on the VM
//    (kvm_vm_set_mem_attributes), and to shared the VMM's PUNCH_HOLE of the old private backing.
// Before each block (untimed) the arm's chunks are put in the other state and every page touched
// by the guest, so that each conversion meets faulted-in memory.

import { gmemIoctlSetAttributes2 } from '../src/gmem/convert.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, gmemFallocate } from '../src/gmem/fallocate.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../src/kvm/attributes.js';
import { kvmSetMemoryAttributes } from '../src/kvm/kvm_main.js';
import { PAGE_SIZE } from '../src/shm/limits.js';
import { buildSandboxMemory } from '../src/vmm/sandbox/build.js';
import { Sandbox, type Vm } from '../src/vmm/sandbox/sandbox.js';
import type { GuestCpu } from '../src/vcpu-workers/guest.js';
import { Histogram } from './histogram.js';
import { type BlockArm, type BlockPlan, type Ctx, alternateBlocks, histSampled } from './measure.js';
import { FirmwareServer } from './roundtrip.js';
import type { Row } from './table.js';

export type ConvertWay = 'private' | 'shared';

/** One conversion row: call i converts chunk i mod `chunks` of its own VM the arm's way. */
export class ConvertArm implements BlockArm {
  readonly h = new Histogram();
  readonly name: string;
  readonly op: (i: number) => void;
  private readonly vm: Vm;
  private readonly cpu: GuestCpu;
  private readonly file: number;
  private readonly inPlace: boolean;
  private calls = 0;
  private seen = { conversions: 0, punchHoles: 0, conversionsRefused: 0 };
  private before = this.seen;

  constructor(
    private readonly sb: Sandbox,
    private readonly chunkPages: number,
    /** Chunks of the arm's VM: the calls of one block, so that a block converts each once. */
    private readonly chunks: number,
    private readonly way: ConvertWay,
  ) {
    this.inPlace = sb.k.g.inPlace;
    const size = chunkPages * chunks * PAGE_SIZE;
    this.vm = sb.createVmSync({ type: 'snp' });
    const g = this.vm.createGuestMemfdSync({ size, flags: this.inPlace ? ['mmap', 'init_shared'] : [] });
    this.file = g.file;
    this.vm.setUserMemoryRegion2Sync({ slot: 0, flags: ['guest_memfd'], guestPhysAddr: 0, memorySize: size, guestMemfd: g });
    this.vm.snpLaunchStartSync();
    this.vm.snpLaunchFinishSync();
    this.cpu = this.vm.createVcpuSync().cpu;
    const size2 = chunkPages >= 512 ? `${(chunkPages * PAGE_SIZE) >> 20}MiB` : `${(chunkPages * PAGE_SIZE) >> 10}KiB`;
    this.name = `convert.${size2}.${way}.${sb.k.version.name}`;
    const toPrivate = way === 'private';
    this.op = (i) => {
      const r = this.convert((i % chunks) * chunkPages, chunkPages, toPrivate);
      if (r !== 0) throw new Error(`${this.name}: conversion ${i} returned ${r}`);
    };
  }

  /** The conversion a VMM makes for the guest: 0 or -errno. */
  private convert(first: number, n: number, toPrivate: boolean): number {
    const k = this.sb.k;
    const attrs = toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
    if (this.inPlace) {
      const a = { offset: BigInt(first * PAGE_SIZE), size: BigInt(n * PAGE_SIZE), attributes: BigInt(attrs), flags: 0n, reserved: [] };
      return gmemIoctlSetAttributes2(k.g, this.file, a).r;
    }
    const r = kvmSetMemoryAttributes(k, this.vm.id, first * PAGE_SIZE, n * PAGE_SIZE, attrs, 0);
    if (r !== 0 || toPrivate) return r;
    // 7.0: the VMM frees the private backing it no longer uses (kvm_gmem_punch_hole).
    return gmemFallocate(k.g, this.file, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, first * PAGE_SIZE, n * PAGE_SIZE);
  }

  /** Untimed: every chunk in the other state, each page touched by the guest (faulted in). */
  enter(): void {
    const pages = this.chunkPages * this.chunks;
    const toPrivate = this.way !== 'private';
    if (this.convert(0, pages, toPrivate) !== 0) throw new Error(`${this.name}: the reset conversion failed`);
    const word = new Uint8Array(4);
    for (let p = 0; p < pages; p++) {
      if (toPrivate) this.cpu.pvalidate(p * PAGE_SIZE, true);
      this.cpu.access(p * PAGE_SIZE, 4, toPrivate, null, word);
    }
    const s = this.sb.stats();
    this.before = { conversions: s.conversions, punchHoles: s.punchHoles, conversionsRefused: s.conversionsRefused };
  }

  leave(): void {
    const s = this.sb.stats();
    this.seen = {
      conversions: this.seen.conversions + s.conversions - this.before.conversions,
      punchHoles: this.seen.punchHoles + s.punchHoles - this.before.punchHoles,
      conversionsRefused: this.seen.conversionsRefused + s.conversionsRefused - this.before.conversionsRefused,
    };
    this.calls += this.chunks;
  }

  /** Each call was one conversion (7.0 to shared: and one punch), none refused, or the row measured something else. */
  perCall(): string {
    const punches = !this.inPlace && this.way === 'shared' ? this.calls : 0;
    if (this.seen.conversions !== this.calls || this.seen.punchHoles !== punches || this.seen.conversionsRefused !== 0)
      throw new Error(
        `${this.name}: ${JSON.stringify(this.seen)} in ${this.calls} calls, want 1 conversion${punches ? ' and 1 punch' : ''} each`,
      );
    return `1 conversion${punches ? ' + 1 PUNCH_HOLE' : ''} of ${this.chunkPages} page(s) per call`;
  }
}

/** The conversion rows' blocks: each block converts every chunk of its arm once (plus the skipped first). */
export function convertPlan(quick: boolean, chunkPages: number): Required<BlockPlan> {
  if (chunkPages === 1)
    return quick
      ? { blocks: 3, perBlock: 50, skip: 2, batch: 1, warmBlocks: 1, rotate: true }
      : { blocks: 12, perBlock: 250, skip: 10, batch: 1, warmBlocks: 2, rotate: true };
  return quick
    ? { blocks: 2, perBlock: 2, skip: 1, batch: 1, warmBlocks: 1, rotate: true }
    : { blocks: 10, perBlock: 8, skip: 1, batch: 1, warmBlocks: 2, rotate: true };
}

const MiB = 1 << 20;
/** The controller joins as the VMM's thread id, as in the fault rows. */
const TID_MAIN = 1;

/** A sandbox of `kernel` (7.4: gmem_in_place_conversion on) on the controller, with its firmware worker. */
async function convertSandbox(kernel: '7.0' | '7.4', bytes: number): Promise<{ sb: Sandbox; fw: FirmwareServer }> {
  const desc = buildSandboxMemory({
    kernel,
    memory: bytes + 8 * MiB,
    userMemory: bytes,
    maxVms: 4,
    ...(kernel === '7.4' ? { moduleParams: { gmem_in_place_conversion: true } } : {}),
  });
  const fw = await FirmwareServer.start(desc);
  return { sb: Sandbox.attach(desc, TID_MAIN), fw };
}

/** Each row's baseline: the 7.0 4 KiB rows a cold fault on 7.0, the 7.0 2 MiB rows the 4 KiB ones, 7.4 the same row on 7.0. */
function baselineOf(name: string): string {
  const [, size, way, ...v] = name.split('.');
  if (v.join('.') === '7.4') return `convert.${size}.${way}.7.0`;
  return size === '4KiB' ? 'fault.cold.snp.7.0' : `convert.4KiB.${way}.7.0`;
}

/** The conversion rows of the fault group: 4 KiB rows in turns, then 2 MiB rows in turns. */
export async function runConvert(ctx: Ctx): Promise<Row[]> {
  const small = convertPlan(ctx.quick, 1);
  const large = convertPlan(ctx.quick, 512);
  const chunks = (p: Required<BlockPlan>) => p.skip + p.perBlock;
  const bytes = 2 * (chunks(small) + 512 * chunks(large)) * PAGE_SIZE;
  const made = [await convertSandbox('7.0', bytes), await convertSandbox('7.4', bytes)];
  const rows: Row[] = [];
  try {
    for (const [pages, plan] of [
      [1, small],
      [512, large],
    ] as const) {
      const arms = made.flatMap(({ sb }) => (['private', 'shared'] as const).map((way) => new ConvertArm(sb, pages, chunks(plan), way)));
      ctx.log(`fault: conversions of ${pages === 1 ? '4 KiB' : '2 MiB'} each way, 7.0 and 7.4 in place, in turn`);
      await alternateBlocks(plan, arms);
      for (const arm of arms) {
        const note = `${arm.perCall()}; in blocks of ${plan.perBlock} taking turns with the other ${pages === 1 ? '4 KiB' : '2 MiB'} rows; mean ${(arm.h.mean() / 1000).toFixed(2)} µs`;
        rows.push({ group: 'fault', name: arm.name, kind: 'time', ...histSampled(arm.h), baseline: baselineOf(arm.name), note });
      }
    }
    return rows;
  } finally {
    for (const { sb, fw } of made) {
      await sb.close();
      await fw.stop();
    }
  }
}
