// Scenario validation before anything runs (vmm/scenario/schema.ts): every problem names the
// field path and the rule (sizes, ops, nested parallel steps, unknown keys, VM, vCPU and fd names,
// policies, posted patches, pause points, expected outcomes). Expected outcomes are the kernel's errno names and KVM
// exit reasons (include/uapi/linux/kvm.h: KVM_EXIT_MEMORY_FAULT, KVM_EXIT_MMIO, ...).

import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/vmm/scenario/schema.js';
import { ScenarioError } from '../../src/vmm/io/problems.js';

describe('scenario validation', () => {
  /** A valid scenario whose third step each case replaces. */
  const base = (): { policy: string; memory: string; vms: unknown[]; steps: Array<Record<string, unknown>> } => ({
    policy: 'prepare-on-fault',
    memory: '16MiB',
    vms: [{ name: 'a', type: 'snp', vcpus: 1 }],
    steps: [
      { op: 'create_guest_memfd', vm: 'a', as: 'g', size: '1MiB' },
      {
        op: 'set_user_memory_region2',
        vm: 'a',
        slot: 0,
        flags: ['guest_memfd'],
        guest_phys_addr: 0,
        memory_size: '1MiB',
        guest_memfd: 'g',
      },
      { op: 'set_memory_attributes', vm: 'a', address: 0, size: '1MiB', attributes: 'private' },
    ],
  });
  const problems = (raw: unknown): string[] => {
    try {
      parseScenario(raw);
    } catch (e) {
      expect(e).toBeInstanceOf(ScenarioError);
      return (e as ScenarioError).problems;
    }
    throw new Error('parseScenario accepted a bad scenario');
  };
  const withStep = (st: Record<string, unknown>, at = 2): unknown => {
    const s = base();
    s.steps[at] = st;
    return s;
  };

  it('accepts the base scenario', () => {
    expect(parseScenario(base()).steps).toHaveLength(3);
  });

  it('a bad size string: steps.2.size, with the accepted forms', () => {
    expect(problems(withStep({ op: 'create_guest_memfd', vm: 'a', as: 'h', size: '12 parsecs' }))).toEqual([
      'steps.2.size: must be a number, a hex string ("0x1000") or a size ("4KiB", "2MiB", "1GiB"), got "12 parsecs"',
    ]);
  });

  it('an unknown op: steps.2.op, with the known ops', () => {
    const [p, ...rest] = problems(withStep({ op: 'frobnicate', vm: 'a' }));
    expect(rest).toEqual([]);
    expect(p).toMatch(/^steps\.2\.op: unknown op "frobnicate"; expected one of create_guest_memfd, .*guest_read, .*parallel$/);
  });

  it('an unknown op inside parallel: the nested path, parallel not offered', () => {
    const [p, ...rest] = problems(withStep({ op: 'parallel', steps: [{ op: 'stats' }, { op: 'nap' }] }));
    expect(rest).toEqual([]);
    expect(p).toMatch(/^steps\.2\.steps\.1\.op: unknown op "nap"; expected one of .*stats$/);
  });

  it('an unknown field: its step and the key', () => {
    expect(problems(withStep({ op: 'close', fd: 'g', colour: 'red' }))).toEqual(['steps.2: Unrecognized key: "colour"']);
  });

  it('a VM not declared in vms', () => {
    expect(problems(withStep({ op: 'snp_launch_start', vm: 'zed' }))).toEqual(["steps.2.vm: no VM named 'zed' in vms"]);
  });

  it('a vCPU the VM does not have', () => {
    expect(problems(withStep({ op: 'guest_read', vm: 'a', vcpu: 1, gpa: 0, len: 4 }))).toEqual(["steps.2.vcpu: VM 'a' has 1 vCPU(s)"]);
  });

  it('an fd used before the step that creates it', () => {
    const s = base();
    s.steps.unshift({ op: 'close', fd: 'late' });
    s.steps.push({ op: 'create_guest_memfd', vm: 'a', as: 'late', size: '4KiB' });
    expect(problems(s)).toEqual(["steps.0.fd: no guest_memfd named 'late' was created by an earlier step"]);
  });

  it('an fd name created twice', () => {
    expect(problems(withStep({ op: 'create_guest_memfd', vm: 'a', as: 'g', size: '4KiB' }))).toEqual(["steps.2.as: 'g' is already used"]);
  });

  it('a bad policy, a bad pause point and an unknown top-level key are all reported at once', () => {
    const s = base() as Record<string, unknown> & ReturnType<typeof base>;
    s.policy = 'yolo';
    s.extra = true;
    s.steps[2] = { op: 'pause', point: 'nowhere' };
    const p = problems(s);
    expect(p).toHaveLength(3);
    expect(p).toContainEqual(
      expect.stringMatching(
        /^policy: Invalid option: expected one of "prepare-on-allocate"\|"prepare-on-fault"\|"prepare-on-fault-own-vm"\|"prepare-on-every-fault"$/,
      ),
    );
    expect(p).toContainEqual(expect.stringMatching(/^steps\.2\.point: Invalid option: expected one of "fault\.begin"\|/));
    expect(p).toContainEqual('(top level): Unrecognized key: "extra"');
  });

  it('patches: known names, each once (a posted patch applied on top of the kernel)', () => {
    expect(parseScenario({ ...base(), patches: ['snp-launch-state'] }).patches).toEqual(['snp-launch-state']);
    expect(problems({ ...base(), patches: ['snp-launch-state', 'snp-launch-state'] })).toEqual(['patches: names a patch twice']);
    expect(problems({ ...base(), patches: ['no-such-patch'] })).toEqual(['patches.0: Invalid input: expected "snp-launch-state"']);
  });

  it('a bad expected outcome names the outcomes allowed', () => {
    const [p] = problems(withStep({ op: 'close', fd: 'g', expect: 'EWHATEVER' }));
    expect(p).toMatch(/^steps\.2\.expect: Invalid option: expected one of "ok"\|.*"EINVAL"\|.*"memory_fault"\|/);
  });

  it('the host mapping steps (6.18): mmap names a mapping the later steps use; SIGBUS and SIGSEGV are outcomes', () => {
    const s = base();
    s.steps.push(
      { op: 'create_guest_memfd', vm: 'a', as: 'm', size: '16KiB', flags: ['mmap', 'init_shared'] },
      { op: 'check_extension', cap: 'guest_memfd_flags', expect_value: 3 },
      { op: 'check_extension', vm: 'a', cap: 'guest_memfd' },
      { op: 'mmap', fd: 'm', as: 'map', offset: 0, size: '64KiB' },
      { op: 'host_write', map: 'map', offset: 0, data: 'aabb' },
      { op: 'host_read', map: 'map', offset: '16KiB', len: 1, expect: 'SIGBUS' },
      { op: 'munmap', map: 'map' },
      { op: 'host_read', map: 'map', offset: 0, len: 1, expect: 'SIGSEGV' },
      { op: 'read', fd: 'm', expect: 'EINVAL' },
      { op: 'write', fd: 'm', expect: 'EINVAL' },
      { op: 'pread', fd: 'm', offset: -1, expect: 'EINVAL' },
      { op: 'pwrite', fd: 'm', expect: 'ESPIPE' },
      { op: 'mmap', fd: 'g', as: 'map2', offset: 0, size: 4096, shared: false, expect: 'ENODEV' },
    );
    const parsed = parseScenario(s);
    expect(parsed.steps[3]).toMatchObject({ flags: ['mmap', 'init_shared'] });
    expect(parsed.steps[6]).toMatchObject({ op: 'mmap', offset: 0, size: 65536 });
  });

  it('fallocate takes a negative offset and length (loff_t: the kernel answers EINVAL)', () => {
    expect(parseScenario(withStep({ op: 'fallocate', fd: 'g', mode: ['keep_size'], offset: -4096, len: '-1' })).steps[2]).toMatchObject({
      offset: -4096,
      len: -1,
    });
  });

  it('a mapping used before its mmap, a mapping name taken by an fd, an unknown capability and signal', () => {
    expect(problems(withStep({ op: 'host_read', map: 'nope', offset: 0, len: 1 }))).toEqual([
      "steps.2.map: no mapping named 'nope' was made by an earlier mmap",
    ]);
    expect(problems(withStep({ op: 'mmap', fd: 'g', as: 'g', offset: 0, size: 4096 }))).toEqual(["steps.2.as: 'g' is already used"]);
    expect(problems(withStep({ op: 'check_extension', cap: 'guest_memfd_mmap' }))[0]).toMatch(
      /^steps\.2\.cap: Invalid option: expected one of "memory_attributes"\|"guest_memfd"\|"guest_memfd_flags"\|"guest_memfd_memory_attributes"$/,
    );
    expect(problems(withStep({ op: 'munmap', map: 'x', expect: 'SIGKILL' }))[0]).toMatch(/^steps\.2\.expect: Invalid option: /);
    expect(problems(withStep({ op: 'create_guest_memfd', vm: 'a', as: 'h', size: 4096, flags: ['mmap', 'huge'] }))[0]).toMatch(
      /^steps\.2\.flags/,
    );
  });
  it('the conversion steps (7.4): module_params, set_memory_attributes2 with u64 fields, gup_pin names a pin unpin uses', () => {
    const s = { ...base(), kernel: '7.4', module_params: { gmem_in_place_conversion: true } } as Record<string, unknown>;
    delete s.policy;
    const steps = s.steps as Array<Record<string, unknown>>;
    steps.push(
      { op: 'mmap', fd: 'g', as: 'm', offset: 0, size: '16KiB' },
      { op: 'gup_pin', map: 'm', offset: '8KiB', as: 'p' },
      {
        op: 'set_memory_attributes2',
        fd: 'g',
        offset: 0,
        size: '16KiB',
        attributes: 'private',
        expect: 'EAGAIN',
        expect_value: { error_offset: 8192 },
      },
      { op: 'unpin', pin: 'p' },
      { op: 'set_memory_attributes2', fd: 'g', offset: '0xfffffffffffff000', size: '8KiB', attributes: 8, flags: 1, expect: 'EINVAL' },
    );
    const parsed = parseScenario(s);
    expect(parsed.module_params).toEqual({ gmem_in_place_conversion: true });
    expect(parsed.steps[5]).toMatchObject({ op: 'set_memory_attributes2', offset: 0, size: 16384, attributes: 'private' });
    expect(parsed.steps[7]).toMatchObject({ offset: 0xfffffffffffff000n, size: 8192, attributes: 8, flags: 1 });
  });

  it('an unknown module parameter, a pin used before its gup_pin, a pin name taken by an fd', () => {
    const s = { ...base(), module_params: { gmem_in_place: true } };
    expect(problems(s)).toEqual(['module_params: Unrecognized key: "gmem_in_place"']);
    expect(problems(withStep({ op: 'unpin', pin: 'p' }))).toEqual(["steps.2.pin: no pin named 'p' was made by an earlier gup_pin"]);
    const t = base();
    t.steps.push({ op: 'mmap', fd: 'g', as: 'm', offset: 0, size: 4096 }, { op: 'gup_pin', map: 'm', offset: 0, as: 'g' });
    expect(problems(t)).toEqual(["steps.4.as: 'g' is already used"]);
  });
});
