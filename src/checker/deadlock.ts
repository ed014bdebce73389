// A controlled run's deadlock in words: every blocked actor, what it waits on, and who holds that,
// from the scheduler's snapshot taken when the deadlock was found (the actors unwound since).

import { wordDescriber } from '../firmware/describe.js';
import type { Mem } from '../shm/layout.js';
import type { SchedControl } from '../shm/sched/control.js';
import { OWNER_MASK } from '../shm/sync/words.js';

export function describeDeadlock(mem: Mem, sched: SchedControl, names: ReadonlyMap<number, string>): string {
  const describe = wordDescriber(mem);
  const name = (tid: number): string => names.get(tid) ?? `thread ${tid}`;
  const left = sched.exitHeld();
  return sched
    .deadlock()
    .map((b) => {
      const d = describe(b.word);
      const holder =
        d.kind === 'srcu'
          ? `held by ${name(d.reader ?? -1)}`
          : d.kind === 'mutex'
            ? `held by ${name((b.value & OWNER_MASK) - 1)}`
            : d.kind === 'rwsem'
              ? `state ${b.value}`
              : `value ${b.value}`;
      // An actor that returned to user space holding the lock will never release it.
      const gone = left.filter((l) => describe(l.word).name === d.name).map((l) => name(l.tid));
      const exited = gone.length > 0 ? `; ${gone.join(' and ')} returned to user space holding it` : '';
      return `${name(b.tid)} waits on ${d.name} (${holder}${exited})${b.orWord >= 0 ? ' or a signal' : ''}`;
    })
    .join('; ');
}
