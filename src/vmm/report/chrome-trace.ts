// Chrome trace event JSON (opens in Perfetto and chrome://tracing) from the controlled
// scheduler's log: one track per actor, a slice per step it ran, and a "wait" slice for every
// stretch it spent blocked on a lock or a word.

import { wordDescriber } from '../../firmware/describe.js';
import { type Mem, regionAt } from '../../shm/layout.js';
import { POINTS } from '../../shm/points.js';
import type { SchedTraceEvent } from '../../shm/sched/control.js';
import { LOCK_STAT_NAMES } from '../../shm/stats.js';
import { TRACE_KIND_NAMES, TraceKind, type TraceEvent } from '../../shm/trace.js';
import { IOCTL_STEPS, IOCTL_TRACE_BASE } from '../scenario/ioctl-exec.js';
import { VMM_OPS } from '../workload/mix.js';

export interface ChromeTraceEvent {
  name: string;
  ph: 'X' | 'M' | 'i';
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  cat?: string;
  args?: Record<string, unknown>;
  s?: 't' | 'p' | 'g';
}

/** Logical time: one scheduling step is shown as this many microseconds. */
const STEP_US = 10;

export function chromeTraceFromSchedule(
  mem: Mem,
  events: readonly SchedTraceEvent[],
  names: Map<number, string>,
): { traceEvents: ChromeTraceEvent[]; displayTimeUnit: 'ns' } {
  const describe = wordDescriber(mem);
  const label = (e: SchedTraceEvent): string => {
    switch (e.kind) {
      case 'point':
        return POINTS[e.arg] ?? `point ${e.arg}`;
      case 'lock':
      case 'read_lock':
      case 'write_lock':
        return `${e.kind.replace('_', ' ')} ${describe(e.arg).name}`;
      case 'wait':
      case 'block':
        return `wait ${describe(e.arg).name}`;
      case 'write': {
        const at = regionAt(mem, e.arg);
        return at === null ? `write word ${e.arg}` : `write ${at.name}+${at.offset}`;
      }
      default:
        return e.kind;
    }
  };
  const out: ChromeTraceEvent[] = [];
  for (const [tid, name] of names) out.push({ name: 'thread_name', ph: 'M', ts: 0, pid: 1, tid, args: { name } });
  out.push({ name: 'process_name', ph: 'M', ts: 0, pid: 1, tid: 0, args: { name: 'gmem-sandbox (controlled schedule)' } });
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    if (e.kind === 'block') {
      let j = i + 1;
      while (j < events.length && events[j].tid !== e.tid) j++;
      const end = j < events.length ? events[j].step : events[events.length - 1].step + 1;
      out.push({
        name: label(e),
        cat: 'wait',
        ph: 'X',
        ts: e.step * STEP_US,
        dur: Math.max(1, (end - e.step) * STEP_US),
        pid: 1,
        tid: e.tid,
        args: { step: e.step },
      });
      continue;
    }
    out.push({ name: label(e), cat: e.kind, ph: 'X', ts: e.step * STEP_US, dur: STEP_US, pid: 1, tid: e.tid, args: { step: e.step } });
  }
  return { traceEvents: out, displayTimeUnit: 'ns' };
}

const FIRMWARE_COMMANDS = [
  '',
  'RMPUPDATE private',
  'RMPUPDATE shared',
  'LAUNCH_START',
  'LAUNCH_UPDATE',
  'LAUNCH_FINISH',
  'PVALIDATE',
  'NOP',
];

/** Chrome trace events from a free-mode run's wall-clock trace (shm/trace.ts). */
export function chromeTraceFromEvents(
  events: readonly TraceEvent[],
  names: Map<number, string>,
  title: string,
): { traceEvents: ChromeTraceEvent[]; displayTimeUnit: 'ms' } {
  const t0 = events.reduce((m, e) => Math.min(m, e.startMs), Infinity);
  const name = (e: TraceEvent): string => {
    switch (e.kind) {
      case TraceKind.FAULT:
        return 'fault';
      case TraceKind.IOCTL:
        return e.arg >= IOCTL_TRACE_BASE ? (IOCTL_STEPS[e.arg - IOCTL_TRACE_BASE] ?? 'ioctl') : (VMM_OPS[e.arg] ?? 'ioctl');
      case TraceKind.LOCK_WAIT:
        return `wait ${LOCK_STAT_NAMES[e.arg] ?? 'lock'}`;
      case TraceKind.FIRMWARE:
        return FIRMWARE_COMMANDS[Math.floor(e.arg / 256)] ?? 'firmware';
      default:
        return TRACE_KIND_NAMES[e.kind] ?? 'event';
    }
  };
  const out: ChromeTraceEvent[] = [{ name: 'process_name', ph: 'M', ts: 0, pid: 1, tid: 0, args: { name: title } }];
  for (const [tid, n] of names) out.push({ name: 'thread_name', ph: 'M', ts: 0, pid: 1, tid, args: { name: n } });
  for (const e of events) {
    out.push({
      name: name(e),
      cat: TRACE_KIND_NAMES[e.kind] ?? 'event',
      ph: 'X',
      ts: Math.round((e.startMs - t0) * 1000 * 1000) / 1000,
      dur: Math.max(0.001, Math.round(e.durMs * 1000 * 1000) / 1000),
      pid: 1,
      tid: e.tid,
      ...(e.kind === TraceKind.FAULT ? { args: { gfn: e.arg } } : e.kind === TraceKind.FIRMWARE ? { args: { client: e.arg % 256 } } : {}),
    });
  }
  return { traceEvents: out, displayTimeUnit: 'ms' };
}
