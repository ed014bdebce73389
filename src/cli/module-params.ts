// --module-param NAME=VALUE of explore and stress: kvm.ko's parameters in modprobe's syntax.

import { InvalidArgumentError, Option } from 'commander';
import { MODULE_PARAM_NAMES } from '../gmem/params.js';
import { parseModuleParamArgs } from '../vmm/sandbox/build.js';

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
