// --module-param NAME=VALUE of explore and stress: kvm.ko's parameters in modprobe's syntax.

import { InvalidArgumentError, Option } from 'commander';
import { MODULE_PARAM_NAMES, type ModuleParamName, type ModuleParams } from '../gmem/params.js';
import { ArgumentError } from '../vmm/sandbox/errors.js';

/** modprobe's words for a bool parameter (kstrtobool): 1/y/Y/on and 0/n/N/off. */
const BOOL_WORDS: Readonly<Record<string, boolean>> = { '1': true, y: true, Y: true, on: true, '0': false, n: false, N: false, off: false };

/**
 * `--module-param NAME=VALUE` words as `modprobe kvm NAME=VALUE` takes them (a bare NAME sets a
 * bool parameter): checked, each naming its field and rule; a parameter given twice is refused.
 */
export function parseModuleParamArgs(args: readonly string[]): ModuleParams {
  const out: ModuleParams = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    const word = eq < 0 ? '1' : arg.slice(eq + 1);
    if (!(MODULE_PARAM_NAMES as readonly string[]).includes(name))
      throw new ArgumentError('--module-param', `unknown kvm parameter '${name}' in '${arg}'; known: ${MODULE_PARAM_NAMES.join(', ')}`);
    const n = name as ModuleParamName;
    if (out[n] !== undefined) throw new ArgumentError('--module-param', `'${name}' is given twice`);
    const v = BOOL_WORDS[word];
    if (v === undefined) throw new ArgumentError(`--module-param ${name}`, `must be a bool (1, 0, y, n, on, off), got '${word}'`);
    out[n] = v;
  }
  return out;
}

/** --module-param NAME=VALUE (repeatable): kvm.ko's parameters, in modprobe's syntax, checked as each is parsed. */
function moduleParamArg(v: string, prev: string[] | undefined): string[] {
  const all = [...(prev ?? []), v];
  try {
    parseModuleParamArgs(all);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return all;
}
export const moduleParamOption = () =>
  new Option(
    '--module-param <name=value>',
    `a kvm.ko module parameter as modprobe takes it (repeatable; known: ${MODULE_PARAM_NAMES.join(', ')}; a kernel without it ignores it, as kvm.ko does)`,
  ).argParser(moduleParamArg);
