// The guest-side steps a vCPU thread executes: guest accesses, PVALIDATE and the vCPU ioctl
// KVM_PRE_FAULT_MEMORY, each turned into an Outcome.

import type { KvmCtx } from '../kvm/ctx.js';
import { kvmVcpuPreFaultMemory } from '../kvm/kvm_main.js';
import { guestAccessIsPrivate } from '../kvm/private_mem.js';
import { kvmTaskWork } from '../kvm/task_work.js';
import { errnoName } from '../shm/errno.js';
import { PAGE_SIZE } from '../shm/limits.js';
import { EXIT_NAMES, Exit, type GuestCpu, SVM_EXIT_ERR } from './guest.js';
import { type Outcome, hex } from './outcome.js';

export type GuestOp =
  | { op: 'guest_read'; gpa: number; len: number; private?: boolean }
  | { op: 'guest_write'; gpa: number; data: string; private?: boolean }
  | { op: 'pvalidate'; gpa: number; validate?: boolean }
  | { op: 'pre_fault_memory'; gpa: number; size: number; flags?: number };

/** Hex string (optionally 0x-prefixed) to bytes. */
export function bytesOfHex(s: string): Uint8Array {
  const h = s.startsWith('0x') ? s.slice(2) : s;
  return Uint8Array.from(Buffer.from(h, 'hex'));
}

function exitOutcome(cpu: GuestCpu, code: number): Outcome {
  const name = EXIT_NAMES[code];
  if (code === Exit.MEMORY_FAULT) {
    const mf = cpu.vcpu.exit;
    return {
      result: name,
      exit: name,
      value: { errno: errnoName(cpu.lastErrno), ...(mf ? { gpa: mf.gpa, size: mf.size, flags: mf.flags } : {}) },
    };
  }
  if (code === Exit.FAIL_ENTRY) return { result: name, exit: name, value: { hardware_entry_failure_reason: SVM_EXIT_ERR } };
  return { result: name, exit: name };
}

/** The access a guest makes by default: private where KVM says the gfn is (VMs with private memory only). */
function defaultPrivate(k: KvmCtx, vm: number, gpa: number): boolean {
  const priv = guestAccessIsPrivate(k, vm, Math.floor(gpa / PAGE_SIZE));
  kvmTaskWork(k);
  return priv;
}

export function execGuestOp(cpu: GuestCpu, op: GuestOp): Outcome {
  const k = cpu.k;
  const vm = cpu.vcpu.vm;
  switch (op.op) {
    case 'guest_read': {
      const out = new Uint8Array(op.len);
      const priv = op.private ?? defaultPrivate(k, vm, op.gpa);
      const code = cpu.access(op.gpa, op.len, priv, out, null);
      return code === Exit.NONE ? { result: 'ok', value: hex(out) } : exitOutcome(cpu, code);
    }
    case 'guest_write': {
      const data = bytesOfHex(op.data);
      const priv = op.private ?? defaultPrivate(k, vm, op.gpa);
      const code = cpu.access(op.gpa, data.length, priv, null, data);
      return code === Exit.NONE ? { result: 'ok' } : exitOutcome(cpu, code);
    }
    case 'pvalidate': {
      const r = cpu.pvalidate(op.gpa, op.validate ?? true);
      return r >= 0 ? { result: 'ok', value: r } : exitOutcome(cpu, -r);
    }
    case 'pre_fault_memory': {
      const range = { gpa: op.gpa, size: op.size, flags: op.flags ?? 0 };
      const r = kvmVcpuPreFaultMemory(k, cpu.vcpu, range);
      return r < 0 ? { result: errnoName(r), value: range } : { result: 'ok', value: range };
    }
  }
}
