/**
 * Step 5, hypervisor install. KVM on Linux: install the virtualization stack with the OS's package manager,
 * start libvirtd, and verify /dev/kvm, the daemon and `virsh version`. Undo purges exactly the packages that
 * were not installed before, so the package set returns to the snapshot.
 *
 * The install and the purge run as detached host jobs (./packages.ts, ./job.ts): a worker that dies mid-install
 * leaves apt running on the host, and the retry — on this worker or another — waits for that same job.
 */
import { UnsupportedHardwareError, VerificationError } from '../common/errors';
import { join, sh } from '../drivers/shell';
import { jobStatus } from '../drivers/linux/job';
import { installedPackages, readOsFamily, unitStates } from '../drivers/linux/packages';
import type { OsFamily } from '../drivers/linux/parse/text';
import type { ServerSpec } from '../spec/server';
import { hypervisorOfKind } from './want';
import { unitFor } from './job';
import { describeKept, installDetached, restorePackageSet, type PackageJobOptions } from './packages';
import { pollUntilHolds, type Problem } from './poll';
import type { Change, Step, StepIo, UndoOutcome } from './step';

export interface HypervisorState {
  family: OsFamily;
  /** Every installed package (names), sorted: the snapshot an undo restores. */
  packages: string[];
  /**
   * libvirtd answers: its service runs, or its socket is listening — Debian's libvirtd is socket-activated and
   * exits after two idle minutes (--timeout 120), so the service alone would flap between active and inactive.
   */
  libvirtdActive: boolean;
  /** This step's install job is running on the host right now (its unit), e.g. started by a worker that died. */
  installJob?: string;
}

/** Bounds of the KVM install and purge jobs on the host. */
export const KVM_PACKAGE_JOBS: PackageJobOptions = { installTimeoutMs: 45 * 60_000, purgeTimeoutMs: 30 * 60_000 };

const DEFAULT_PACKAGES: Record<OsFamily, string[]> = {
  debian: ['qemu-system-x86', 'libvirt-daemon-system', 'libvirt-clients'],
  rhel: ['qemu-kvm', 'libvirt', 'virt-install'],
};
const OVS_PACKAGE: Record<OsFamily, string> = { debian: 'openvswitch-switch', rhel: 'openvswitch' };

/** What the KVM install owns: the package override, and whether the attach needs Open vSwitch. */
export interface KvmWant {
  packages?: string[];
  withOvs: boolean;
  /** dpdk.ovs: Debian's DPDK build of ovs-vswitchd as well (the attach step switches to it). */
  withOvsDpdk?: boolean;
}

type Io = StepIo<KvmWant>;

export function kvmWant(spec: ServerSpec): KvmWant {
  const h = hypervisorOfKind(spec, 'kvm');
  const withOvs = spec.attach?.kind === 'ovs';
  return { ...(h.packages ? { packages: h.packages } : {}), withOvs, ...(withOvs && spec.dpdk?.ovs ? { withOvsDpdk: true } : {}) };
}

/** Debian's DPDK-enabled ovs-vswitchd (an alternative next to the plain one); DPDK hosts are Debian-only. */
const OVS_DPDK_PACKAGE = 'openvswitch-switch-dpdk';

export function kvmPackages(want: KvmWant, family: OsFamily): string[] {
  const base = want.packages ?? DEFAULT_PACKAGES[family];
  if (!want.withOvs) return base;
  return [...base, OVS_PACKAGE[family], ...(want.withOvsDpdk && family === 'debian' ? [OVS_DPDK_PACKAGE] : [])];
}

/** libvirtd and its socket (Debian's libvirtd is socket-activated): either answering is enough. */
const LIBVIRTD_UNITS = ['libvirtd', 'libvirtd.socket'] as const;

async function observe(io: Io): Promise<HypervisorState> {
  // Side by side (one round trip, not two); the CPU's answer is looked at first.
  const familyRead = readOsFamily(io.host);
  familyRead.catch(() => undefined); // awaited below, unless the CPU check throws first
  const flags = Number(
    (await io.host.read(sh`grep -Ec '(vmx|svm)' /proc/cpuinfo || true`, { description: 'count vmx/svm CPU flags', privileged: false })).trim(),
  );
  if (!flags) {
    throw new UnsupportedHardwareError('the CPU offers no hardware virtualization (enable VT-x/AMD-V in firmware)', {
      host: io.host.label,
      step: 'hypervisor',
      expected: 'vmx or svm in /proc/cpuinfo',
      observed: 'neither',
    });
  }
  const family = await familyRead;
  const unit = unitFor(io, 'install');
  const [packages, units, job] = await Promise.all([installedPackages(io.host, family), unitStates(io.host, LIBVIRTD_UNITS), jobStatus(io.host, unit)]);
  return {
    family,
    packages,
    libvirtdActive: units.libvirtd === 'active' || units['libvirtd.socket'] === 'active',
    ...(job.state === 'running' ? { installJob: unit } : {}),
  };
}

function plan(want: KvmWant, observed: HypervisorState): Change[] {
  const missing = kvmPackages(want, observed.family).filter((p) => !observed.packages.includes(p));
  const changes: Change[] = missing.map((p) => ({ field: `package ${p}`, from: 'absent', to: 'installed' }));
  if (!observed.libvirtdActive) changes.push({ field: 'libvirtd', from: 'inactive', to: 'active' });
  // Packages may look installed half-way through a running install: wait for it to finish before verifying.
  if (observed.installJob) changes.push({ field: 'install job', from: `${observed.installJob} running`, to: 'finished' });
  return changes;
}

async function apply(io: Io, observed: HypervisorState): Promise<void> {
  const missing = kvmPackages(io.want, observed.family).filter((p) => !observed.packages.includes(p));
  // With nothing missing this only waits for an install job an earlier attempt (or a dead worker) started.
  await installDetached(io, observed.family, missing, {
    ...KVM_PACKAGE_JOBS,
    notOffered: 'the host’s package repositories do not offer the hypervisor packages',
  });
  // /dev/kvm needs the vendor module; libvirtd is socket-activated on Debian but enable it for boot too.
  await io.host.run(join('&&', [sh`(modprobe kvm_intel 2>/dev/null || modprobe kvm_amd 2>/dev/null || true)`, sh`systemctl enable --now libvirtd`]), {
    description: 'load kvm module and start libvirtd',
  });
}

async function check(io: Io): Promise<Problem[]> {
  const problems: Problem[] = [];
  const [kvm, { libvirtd, 'libvirtd.socket': socket }] = await Promise.all([
    io.host.run(sh`test -c /dev/kvm`, { description: 'test -c /dev/kvm', okExitCodes: [0, 1], privileged: false }),
    unitStates(io.host, LIBVIRTD_UNITS),
  ]);
  if (kvm.exitCode !== 0) problems.push({ field: '/dev/kvm', expected: 'character device', observed: 'absent', final: true });
  if (libvirtd !== 'active' && socket !== 'active')
    problems.push({ field: 'libvirtd', expected: 'active (or its socket listening)', observed: `${libvirtd}, socket ${socket}` });
  else {
    const v = await io.host.run(sh`virsh -c qemu:///system version`, { description: 'virsh version', okExitCodes: [0, 1] });
    if (v.exitCode !== 0 || !/Running hypervisor:\s*QEMU/i.test(v.stdout)) {
      problems.push({ field: 'virsh version', expected: 'Running hypervisor: QEMU', observed: (v.stdout + v.stderr).trim().split('\n').pop() ?? '' });
    }
  }
  return problems;
}

async function undo(io: Io, pre: HypervisorState, now: HypervisorState): Promise<UndoOutcome<HypervisorState> | void> {
  const { purged, kept } = await restorePackageSet(io, pre.family, pre.packages, KVM_PACKAGE_JOBS);
  const current = await installedPackages(io.host, pre.family);
  const missing = pre.packages.filter((p) => !current.includes(p));
  if (missing.length)
    throw new VerificationError('packages present before are missing now; not reinstalling them blindly', {
      host: io.host.label,
      step: 'hypervisor',
      expected: 'installed',
      observed: missing.join(' '),
    });
  if (pre.libvirtdActive !== now.libvirtdActive && !purged.some((p) => p.startsWith('libvirt'))) {
    await io.host.run(
      pre.libvirtdActive ? sh`systemctl start libvirtd` : sh`systemctl disable --now libvirtd libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket`,
      { description: 'restore libvirtd state' },
    );
  }
  if (kept.length) {
    // What can be restored: the pre-state plus the packages that pre-existing ones need now.
    return {
      target: { ...pre, packages: [...new Set([...pre.packages, ...kept.map((k) => k.name)])].sort() },
      note: `kept ${describeKept(kept)}: the install upgraded packages present before, which now depend on them`,
    };
  }
}

function diff(a: HypervisorState, b: HypervisorState): Change[] {
  const onlyA = a.packages.filter((p) => !b.packages.includes(p));
  const onlyB = b.packages.filter((p) => !a.packages.includes(p));
  const changes: Change[] = [];
  if (onlyA.length || onlyB.length) changes.push({ field: 'packages', from: onlyA, to: onlyB });
  if (a.libvirtdActive !== b.libvirtdActive)
    changes.push({ field: 'libvirtd', from: a.libvirtdActive ? 'active' : 'inactive', to: b.libvirtdActive ? 'active' : 'inactive' });
  return changes;
}

export const hypervisorStep: Step<HypervisorState, KvmWant> = {
  name: 'hypervisor',
  want: kvmWant,
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, 'KVM', () => check(io), { timeoutMs: 60_000, intervalMs: 2_000 }),
  undo,
  diff,
};
