// Delta debugging (ddmin) over a failing schedule's switch points, shared by the explorer and the
// model checker: a candidate keeps a subset of the switches, forcing the actor chosen at each
// kept one and running without preemption everywhere else; a subset is kept when the run still
// fails. The result is the smallest failing run's choices, cut after its last kept switch, so it
// replays exactly.

export interface Shrinkable {
  seed: number;
  choices: number[];
}

/**
 * `rerun(seed, forced)` runs a schedule with forced choices (-1: no decision there) and returns
 * it if it still fails, else null. At most `budget` reruns.
 */
export async function ddminSwitches<R extends Shrinkable>(
  failing: R,
  rerun: (seed: number, forced: number[]) => Promise<R | null>,
  budget: number,
): Promise<R> {
  const c = failing.choices;
  let switches: number[] = [];
  for (let i = 1; i < c.length; i++) if (c[i] !== c[i - 1]) switches.push(i);
  let best = failing;
  let tries = 0;
  const attempt = (keep: number[]): Promise<R | null> => {
    tries++;
    const last = keep.length ? keep[keep.length - 1] + 1 : 1;
    // The first step is kept so that the run starts with the same actor.
    const forced = new Array<number>(last).fill(-1);
    forced[0] = c[0];
    for (const i of keep) forced[i] = c[i];
    return rerun(failing.seed, forced);
  };
  let n = 2;
  while (switches.length > 0 && tries < budget) {
    const size = Math.ceil(switches.length / n);
    let reduced = false;
    for (let k = 0; k < n && tries < budget; k++) {
      const complement = [...switches.slice(0, k * size), ...switches.slice((k + 1) * size)];
      const r = await attempt(complement);
      if (r) {
        switches = complement;
        best = r;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= switches.length) break;
      n = Math.min(n * 2, switches.length);
    }
  }
  const cut = switches.length ? switches[switches.length - 1] + 1 : 1;
  return { ...best, choices: best.choices.slice(0, Math.max(cut, 1)) };
}
