// Chrome trace event JSON (opens in Perfetto and chrome://tracing) from the controlled
// scheduler's log: one track per actor, a slice per step it ran, and a "wait" slice for every
// stretch it spent blocked on a lock or a word.

import { wordDescriber } from '../kvm/describe.js';
import type { Mem } from '../shm/layout.js';
import { POINTS } from '../shm/points.js';
import type { SchedTraceEvent } from '../shm/sched.js';

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

export function chromeTraceFromSchedule(mem: Mem, events: readonly SchedTraceEvent[], names: Map<number, string>): { traceEvents: ChromeTraceEvent[]; displayTimeUnit: 'ns' } {
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
      out.push({ name: label(e), cat: 'wait', ph: 'X', ts: e.step * STEP_US, dur: Math.max(1, (end - e.step) * STEP_US), pid: 1, tid: e.tid, args: { step: e.step } });
      continue;
    }
    out.push({ name: label(e), cat: e.kind, ph: 'X', ts: e.step * STEP_US, dur: STEP_US, pid: 1, tid: e.tid, args: { step: e.step } });
  }
  return { traceEvents: out, displayTimeUnit: 'ns' };
}
