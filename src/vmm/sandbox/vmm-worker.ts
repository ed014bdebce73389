// The VMM thread: the user-space VMM's ioctls (scenario steps, and the stress op mix) on a
// Sandbox attached to the shared memory, firmware commands going through the mailbox.

import { asActor, type PlatformKind, type SyncMode } from '../../firmware/open.js';
import type { VmTypeName } from '../../kvm/vm.js';
import { exposeToParent } from '../../shm/rpc.js';
import type { Outcome } from '../../vcpu-workers/outcome.js';
import { RunControl } from '../../vcpu-workers/runctl.js';
import { onlineChecker } from '../../checker/online.js';
import type { SandboxDescriptor } from './build.js';
import { IoctlExecutor } from '../scenario/ioctl-exec.js';
import { GuestMemfd, Sandbox } from './sandbox.js';
import type { IoctlStep } from '../scenario/schema.js';
import { type LeaderHooks, type RoundPayload, type RoundPlan, type RoundRecord, leadRounds } from '../explore/round.js';
import { followRounds } from '../../shm/bell.js';
import { mapBuffers } from '../../shm/layout.js';
import { SyncControl } from '../../shm/sync/control.js';
import {
  type SharedStressTarget,
  type StressLayout,
  type StressSetup,
  type StressTarget,
  attachStressTarget,
  buildStressLayout,
} from '../workload/layout.js';
import { type VmmOp, zeroOps } from '../workload/mix.js';
import { type Violation, assertionViolation } from '../../checker/violations.js';
import { SyncAbortError } from '../../shm/sync/sync.js';
import { type VmmOpsConfig, type VmmOpsResult, runVmmOps } from '../workload/vmm-ops.js';
import {
  type ConversionLayout,
  type GuestConvertConfig,
  type GuestConvertResult,
  type GuestSide,
  type VmmPinConfig,
  type VmmPinResult,
  holdPin,
  runGuestConversions,
  runVmmPins,
  setupConversion,
} from '../workload/conversion.js';

class VmmWorker {
  private sb: Sandbox | null = null;
  private ex: IoctlExecutor | null = null;
  private target: StressTarget | null = null;
  private stressFds: GuestMemfd[] = [];
  /** vCPU slots setupStress claimed for pre-fault handles (every VMM thread's), released at closeAll. */
  private prefaultSlots: number[] = [];
  /** The conversion experiment's guest, on this thread. */
  private guest: GuestSide | null = null;

  init(descriptor: SandboxDescriptor, tid: number, opts: { mode?: SyncMode; platform?: PlatformKind } = {}): void {
    this.sb = Sandbox.attach(descriptor, tid, opts);
    this.ex = new IoctlExecutor(this.sb);
    this.target = null;
    this.stressFds = [];
    this.prefaultSlots = [];
  }

  private get s(): Sandbox {
    if (this.sb === null) throw new Error('VMM worker used before init');
    return this.sb;
  }

  /** Creates the scenario's VMs; returns their ids in order. */
  createVms(specs: Array<{ name: string; type: VmTypeName }>): number[] {
    return specs.map((v) => {
      const vm = this.s.createVmSync({ type: v.type });
      this.ex!.vms.set(v.name, vm);
      return vm.id;
    });
  }

  exec(step: IoctlStep): Outcome {
    return this.ex!.exec(step);
  }

  /** An ioctl step as an actor of a controlled run (a model checker's parallel group). */
  execActor(step: IoctlStep): Outcome {
    return asActor(this.s.k.sync, () => this.ex!.exec(step), false, onlineChecker(this.s.k));
  }

  /** Builds the stress layout (workload/layout.ts) and takes it as VMM thread 0. */
  setupStress(cfg: StressSetup): Omit<StressLayout, 'fds' | 'prefaultSlots'> {
    const { fds, prefaultSlots, ...built } = buildStressLayout(this.s, cfg);
    this.stressFds = fds;
    this.prefaultSlots = prefaultSlots;
    this.attachStress(structuredClone(built.shared), 0);
    // What crosses the port to the controller: plain data, no handles.
    return built;
  }

  /** Another VMM thread of the process takes the layout setupStress built: same fds, its own pre-fault vCPUs. */
  attachStress(shared: SharedStressTarget, thread: number): void {
    this.target = attachStressTarget(this.s, shared, thread);
  }

  runOps(cfg: VmmOpsConfig): VmmOpsResult {
    const t = this.target;
    if (t === null) throw new Error('runOps before setupStress');
    return asActor(this.s.k.sync, () => runVmmOps(this.s, new RunControl(this.s.mem), t, cfg), false, onlineChecker(this.s.k));
  }

  /** The conversion experiment's guest: its VM, guest_memfd and vCPU (workload/conversion.ts). */
  conversionSetup(pages: number, inPlace: boolean): ConversionLayout {
    this.guest = setupConversion(this.s, pages, inPlace);
    return this.guest.l;
  }
  conversionGuest(cfg: GuestConvertConfig): GuestConvertResult {
    if (this.guest === null) throw new Error('conversionGuest before conversionSetup');
    return runGuestConversions(this.guest, cfg);
  }
  conversionHoldPin(l: ConversionLayout, page: number): number {
    return holdPin(this.s, l, page);
  }
  conversionVmm(l: ConversionLayout, cfg: VmmPinConfig): VmmPinResult {
    return runVmmPins(this.s, l, cfg);
  }

  /** The explorer's schedules, this thread leading (explore/round.ts): one record per schedule run. */
  exploreLead(plan: RoundPlan): RoundRecord[] {
    const tid = plan.vmmTids[0];
    const hooks: LeaderHooks = {
      mem: mapBuffers(plan.descriptor.buffers),
      init: () => this.init(plan.descriptor, tid, { mode: 'controlled', platform: 'direct' }),
      setup: (cfg) => this.setupStress(cfg),
      runOps: (cfg) => this.runOps(cfg),
      // The round admitted this thread as the one actor of the teardown (round.ts).
      closeAll: () => asActor(this.s.k.sync, () => this.closeAll()),
    };
    return leadRounds(plan, hooks);
  }

  /**
   * The explorer's schedules as VMM thread `t` of each: the leader's layout, its share of the ops
   * (null: aborted), and a model assertion they fired (which ends the batch).
   */
  exploreFollow(bell: SharedArrayBuffer, fromGen: number, descriptor: SandboxDescriptor, tid: number, t: number): Array<VmmRound | null> {
    return followRounds(
      bell,
      fromGen,
      new SyncControl(mapBuffers(descriptor.buffers)),
      (p: RoundPayload): VmmRound => {
        this.init(descriptor, tid, { mode: 'controlled', platform: 'direct' });
        this.attachStress(p.shared, t);
        try {
          return { ops: this.runOps(p.vmmOps[t]).ops, violations: [] };
        } catch (e) {
          // asActor ended the run: the assertion is the schedule's finding.
          if (e instanceof SyncAbortError) throw e;
          return { ops: zeroOps(), violations: [assertionViolation(e, `vmm ${t + 1}`)] };
        }
      },
      (r) => r.violations.length > 0,
    );
  }

  /** Closes every guest_memfd this VMM holds (teardown: folios go back to the allocator). */
  closeAll(): void {
    for (const slot of this.prefaultSlots) this.s.k.vcpus.release(slot);
    this.prefaultSlots = [];
    this.s.closeAllFds();
  }

  /** Fault injection, from the VMM's side. */
  injectFirmwareFailures(cmd: 'RMPUPDATE' | 'LAUNCH_UPDATE' | 'LAUNCH_START' | 'LAUNCH_FINISH', n: number): void {
    this.s.injectFirmwareFailures(cmd, n);
  }
  reserveHostPages(pages: number): void {
    this.s.reserveHostPages(pages);
  }
  hwpoisonOffset(offset: number): Outcome {
    const g = this.stressFds[0];
    try {
      g.hwpoisonSync(offset);
      return { result: 'ok' };
    } catch (e) {
      return { result: (e as { code?: string }).code ?? 'error', detail: (e as Error).message };
    }
  }
}

/** What a following VMM thread did in one round: its ops, and the assertion that ended it. */
export interface VmmRound {
  ops: Record<VmmOp, number>;
  violations: Violation[];
}

export type VmmWorkerApi = VmmWorker;
exposeToParent(new VmmWorker());
