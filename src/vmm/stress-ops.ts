// The VMM's side of a stress run, on the VMM worker: fallocate, PUNCH_HOLE, attribute
// conversion and pre-fault, drawn from a weighted mix at a given rate, while the vCPUs run.

import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, gmemFallocate } from '../gmem/guest_memfd.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../kvm/attributes.js';
import { kvmSetMemoryAttributes, kvmVcpuPreFaultMemory } from '../kvm/kvm_main.js';
import { SnpPageType } from '../kvm/psp.js';
import { snpLaunchUpdate } from '../kvm/sev.js';
import type { KvmVcpu } from '../kvm/vcpu.js';
import { errnoName } from '../shm/errno.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { Prng } from '../shm/prng.js';
import { TraceKind } from '../shm/trace.js';
import type { RunControl } from '../vcpu-workers/runctl.js';
import type { Sandbox } from './sandbox.js';

export const VMM_OPS = ['punch', 'fallocate', 'convert', 'prefault', 'populate'] as const;
export type VmmOp = (typeof VMM_OPS)[number];

/** The page a 'populate' op measures into the launching VM: bytes no guest tag can match. */
const LAUNCH_IMAGE = new Uint8Array(PAGE_SIZE).fill(0x5a);

export interface VmmOpsConfig {
  /** Relative weights; an op with weight 0 never runs. */
  mix: Partial<Record<VmmOp, number>>;
  /** Operations per second (0: as fast as possible). */
  rate: number;
  /** Largest range one op touches, in pages. */
  maxPages: number;
  seed: number;
  durationMs: number;
  maxOps: number;
}

export interface StressTarget {
  /** guest_memfd file shared by every VM (offset i backs gfn i of each VM). */
  file: number;
  pages: number;
  vms: number[];
  /** One handle per VM for KVM_PRE_FAULT_MEMORY, issued from the VMM thread. */
  prefaultVcpus: KvmVcpu[];
  /** An SNP VM still launching, whose pages the 'populate' op LAUNCH_UPDATEs (-1: none). */
  populateVm: number;
}

export interface VmmOpsResult {
  ops: Record<VmmOp, number>;
  errors: Record<string, number>;
  elapsedMs: number;
}

export function runVmmOps(sb: Sandbox, rc: RunControl, t: StressTarget, cfg: VmmOpsConfig): VmmOpsResult {
  const k = sb.k;
  const rng = new Prng(cfg.seed);
  const ops: Record<VmmOp, number> = { punch: 0, fallocate: 0, convert: 0, prefault: 0, populate: 0 };
  const errors: Record<string, number> = {};
  const weights = VMM_OPS.map((o) => Math.max(0, cfg.mix[o] ?? 0));
  const total = weights.reduce((a, b) => a + b, 0);
  const t0 = performance.now();
  const deadline = cfg.durationMs > 0 ? t0 + cfg.durationMs : Infinity;
  const gap = cfg.rate > 0 ? 1000 / cfg.rate : 0;
  const tracer = k.tracer;
  let opStart = 0;
  const note = (r: number, op: VmmOp): void => {
    if (tracer.on) tracer.record(TraceKind.IOCTL, VMM_OPS.indexOf(op), opStart);
    ops[op]++;
    if (r < 0) {
      const key = `${op}:${errnoName(r)}`;
      errors[key] = (errors[key] ?? 0) + 1;
    }
  };
  for (let n = 0; total > 0; n++) {
    if (rc.stopRequested() || k.sync.aborted() || performance.now() > deadline) break;
    if (cfg.maxOps > 0 && n >= cfg.maxOps) break;
    rc.checkpoint(k.sync);
    let pick = rng.next() * total;
    let op: VmmOp = 'punch';
    for (let i = 0; i < VMM_OPS.length; i++) {
      if (pick < weights[i]) {
        op = VMM_OPS[i];
        break;
      }
      pick -= weights[i];
    }
    const len = 1 + rng.below(Math.min(cfg.maxPages, t.pages));
    if (tracer.on) opStart = tracer.now();
    const start = rng.below(t.pages - len + 1);
    switch (op) {
      case 'punch':
        // Epochs move before and after a discard, like a seqcount: a write whose epoch falls in
        // the window may be lost legitimately, and the guest will not call it data loss.
        for (const vm of t.vms) rc.bumpEpochs(vm, start, start + len);
        note(gmemFallocate(k.g, t.file, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, start * PAGE_SIZE, len * PAGE_SIZE), op);
        for (const vm of t.vms) rc.bumpEpochs(vm, start, start + len);
        break;
      case 'fallocate':
        note(gmemFallocate(k.g, t.file, FALLOC_FL_KEEP_SIZE, start * PAGE_SIZE, len * PAGE_SIZE), op);
        break;
      case 'convert': {
        const vm = t.vms[rng.below(t.vms.length)];
        const toPrivate = !k.attrs.isPrivate(vm, start);
        rc.bumpEpochs(vm, start, start + len);
        let r = kvmSetMemoryAttributes(k, vm, start * PAGE_SIZE, len * PAGE_SIZE, toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);
        // A VMM discards the private backing of memory converted to shared (QEMU does).
        if (r === 0 && !toPrivate && t.vms.length === 1) r = gmemFallocate(k.g, t.file, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, start * PAGE_SIZE, len * PAGE_SIZE);
        rc.bumpEpochs(vm, start, start + len);
        note(r, op);
        break;
      }
      case 'populate': {
        if (t.populateVm < 0) break;
        const r = snpLaunchUpdate(k, k.psp, t.populateVm, start, PAGE_SIZE, SnpPageType.NORMAL, LAUNCH_IMAGE);
        note(r.ret < 0 ? r.populateErr || r.ret : 0, op);
        break;
      }
      case 'prefault': {
        const i = rng.below(t.vms.length);
        const range = { gpa: start * PAGE_SIZE, size: len * PAGE_SIZE, flags: 0 };
        note(kvmVcpuPreFaultMemory(k, t.prefaultVcpus[i], range), op);
        break;
      }
    }
    if (gap > 0) k.sync.sleepMs(gap);
  }
  return { ops, errors, elapsedMs: performance.now() - t0 };
}

/** Parses "punch=3,convert=1" (names from VMM_OPS); unknown names or bad weights throw. */
export function parseMix(s: string): Record<VmmOp, number> {
  const mix: Record<VmmOp, number> = { punch: 0, fallocate: 0, convert: 0, prefault: 0, populate: 0 };
  for (const part of s.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name, w] = part.split('=');
    if (!(VMM_OPS as readonly string[]).includes(name)) throw new Error(`--ops: unknown operation '${name}'; known: ${VMM_OPS.join(', ')}`);
    const weight = w === undefined ? 1 : Number(w);
    if (!Number.isFinite(weight) || weight < 0) throw new Error(`--ops: weight of '${name}' must be a non-negative number, got '${w}'`);
    mix[name as VmmOp] = weight;
  }
  return mix;
}
