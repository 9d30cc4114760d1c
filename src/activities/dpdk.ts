/**
 * The DPDK step (KVM on Debian, before the hypervisor install): the IOMMU on and hugepages reserved on the kernel
 * command line (a GRUB drop-in, one reboot waited for durably — src/activities/reboot.ts), and the spec's devices
 * bound to vfio-pci persistently with driverctl (installed when missing), with DPDK's user-space drivers for them
 * (each device's poll-mode driver and the ring mempool: Debian ships them as plugin packages that `dpdk` only
 * recommends, so nothing else installs them). Undo gives every device back to the
 * driver it had (driverctl unset-override reprobes its default driver, or the override it had), frees the
 * hugepages, restores the drop-in and the device record, reboots once to drop the kernel parameters, and purges
 * driverctl and the plugin packages the step installed. The OVS-DPDK datapath is the attach step's (src/activities/ovs-dpdk.ts).
 */
import { LockoutRiskError, UnsupportedHardwareError, UnsupportedPlatformError, VerificationError } from '../common/errors';
import {
  DPDK_DEVICE_RECORD,
  DPDK_GRUB_DROP_IN,
  dpdkUserspacePackages,
  HUGEPAGE_KB,
  kernelParams,
  missingParams,
  offeredDpdkPackages,
  readDpdkHost,
  renderDeviceRecord,
  renderDpdkDropIn,
  setOverride,
  unsetOverride,
  type DpdkHost,
} from '../drivers/linux/dpdk';
import { requireManagementInterface } from '../drivers/linux/net';
import { installedPackages, readOsFamily } from '../drivers/linux/packages';
import { join, sh, writeTo, type Shell } from '../drivers/shell';
import { GRUB_CFG, readOptionalFile, updateGrub, writeFileAtomically } from '../drivers/xen/grub';
import type { DpdkSpec } from '../spec/server';
import { diffState } from './diff';
import { installDetached, restorePackageSet, type PackageJobOptions } from './packages';
import { pollUntilHolds, type Problem } from './poll';
import { LINUX_REBOOT, rebootAndWait } from './reboot';
import type { Change, Step, StepIo } from './step';
import { section } from './want';

export interface DpdkWant {
  dpdk: DpdkSpec;
}

type Io = StepIo<DpdkWant>;

/** One device as the step found it. */
export interface DpdkDeviceState {
  ref: string;
  address: string;
  /** Bound driver (null: none). */
  driver: string | null;
  /** driverctl's persisted override (null: none). */
  override: string | null;
}

export interface DpdkState {
  cpuVendor: string;
  /** The running kernel's DPDK parameters (IOMMU, hugepages), in command-line order. */
  params: string[];
  iommuGroups: number;
  /** vfio can use the IOMMU: interrupt remapping on, or allow_unsafe_interrupts set by the operator. */
  vfioUsable: boolean;
  /** Reserved pages of the spec's size: in all, and per NUMA node. */
  hugepages: { all: number; nodes: Record<string, number> };
  devices: DpdkDeviceState[];
  driverctl: boolean;
  /**
   * DPDK's user-space drivers for the devices (PMD plugins, ring mempool): the packages wanted, those of them
   * installed, and the devices none is known or offered for (refused by apply, before anything changes).
   */
  userspace: { want: string[]; installed: string[]; unsupported: { ref: string; why: string }[] };
  /** Every installed package: what the undo compares against to purge only what the step added. */
  packages: string[];
  /**
   * The host boots through GRUB (/boot/grub/grub.cfg and update-grub): the drop-in is how the parameters persist.
   * Without GRUB (a host booted by PXE or directly, its command line given by the boot server) the parameters must
   * come from there: the step checks them and writes no drop-in.
   */
  grub: boolean;
  /** underlay's GRUB drop-in and device record (our own files: no secret), or null when absent. */
  dropIn: string | null;
  record: string | null;
}

/** Real servers POST for minutes (as the Xen install's reboot). */
export const DPDK_REBOOT = { timeoutMs: 20 * 60_000, intervalMs: 10_000 };
export const DPDK_PACKAGE_JOBS: PackageJobOptions = { installTimeoutMs: 10 * 60_000, purgeTimeoutMs: 10 * 60_000 };
const PARAM_NAMES = new Set(['intel_iommu', 'amd_iommu', 'iommu', 'default_hugepagesz', 'hugepagesz', 'hugepages']);

/** The words of a command line this step owns (IOMMU and hugepage parameters). */
export function dpdkParams(cmdline: string): string[] {
  return cmdline.split(/\s+/).filter((w) => PARAM_NAMES.has(w.split('=')[0]!));
}

function ctx(io: Io, field: string) {
  return { host: io.host.label, step: 'dpdk' as const, field };
}

interface Extra {
  grub: boolean;
  dropIn: string | null;
  record: string | null;
  packages: string[];
  offered: string[];
}

function toState(h: DpdkHost, want: DpdkSpec, extra: Extra, io: Io): DpdkState {
  const kb = String(HUGEPAGE_KB[want.hugepages.size]);
  const devices = h.devices.map((d, i): DpdkDeviceState => {
    if (!d.address || d.missing) {
      throw new UnsupportedHardwareError(
        d.missing ? 'no such PCI device on the host' : 'no NIC of that name on the host, and none recorded by an earlier run',
        {
          ...ctx(io, `dpdk.devices[${i}]`),
          expected: d.missing ? `PCI device ${d.address}` : `a NIC ${d.ref}`,
          observed: 'absent',
        },
      );
    }
    return { ref: d.ref, address: d.address, driver: d.driver, override: h.overrides[d.address] ?? null };
  });
  const userspace = dpdkUserspacePackages(h.devices, extra.offered);
  const installed = new Set(extra.packages);
  return {
    cpuVendor: h.cpuVendor,
    params: dpdkParams(h.cmdline),
    iommuGroups: h.iommuGroups,
    vfioUsable: h.irqRemap || h.unsafeInterrupts,
    hugepages: {
      all: h.hugepages.all[kb] ?? 0,
      nodes: Object.fromEntries(Object.entries(h.hugepages.nodes).map(([n, s]) => [n, s[kb] ?? 0])),
    },
    devices,
    driverctl: h.driverctl,
    userspace: { want: userspace.packages, installed: userspace.packages.filter((p) => installed.has(p)), unsupported: userspace.unsupported },
    packages: extra.packages,
    grub: extra.grub,
    dropIn: extra.dropIn,
    record: extra.record,
  };
}

async function observe(io: Io): Promise<DpdkState> {
  const family = await readOsFamily(io.host);
  if (family !== 'debian') {
    throw new UnsupportedPlatformError('DPDK hosts are prepared with Debian’s driverctl, update-grub and openvswitch-switch-dpdk in this build', {
      ...ctx(io, 'dpdk'),
      expected: 'a Debian-like OS',
      observed: family,
    });
  }
  const want = io.want.dpdk;
  const [h, dropIn, record, grub, packages, offered] = await Promise.all([
    readDpdkHost(io.host, want.devices),
    readOptionalFile(io.host, DPDK_GRUB_DROP_IN),
    readOptionalFile(io.host, DPDK_DEVICE_RECORD),
    io.host.run(sh`[ -f ${GRUB_CFG} ] && command -v update-grub >/dev/null`, { description: 'is there GRUB', okExitCodes: [0, 1], privileged: false }),
    installedPackages(io.host, family),
    offeredDpdkPackages(io.host),
  ]);
  if (want.hugepages.size === '1G' && !h.pdpe1gb) {
    throw new UnsupportedHardwareError('the CPU has no 1 GiB pages (no pdpe1gb flag)', {
      ...ctx(io, 'dpdk.hugepages.size'),
      expected: 'pdpe1gb in /proc/cpuinfo',
      observed: 'absent: use 2M',
    });
  }
  if (!h.vfioModule) {
    throw new UnsupportedPlatformError('the running kernel has no vfio-pci module', { ...ctx(io, 'dpdk.driver'), expected: 'vfio-pci.ko', observed: 'absent' });
  }
  return toState(h, want, { grub: grub.exitCode === 0, dropIn, record, packages, offered }, io);
}

function wantedParams(want: DpdkWant, o: Pick<DpdkState, 'cpuVendor'>): string[] {
  return kernelParams(want.dpdk, o.cpuVendor);
}

/** The device record of the devices given by name (the name disappears once the NIC is on vfio-pci). */
function wantedRecord(o: DpdkState): string | null {
  return renderDeviceRecord(Object.fromEntries(o.devices.filter((d) => !/^[0-9a-f]{4}:/.test(d.ref)).map((d) => [d.ref, d.address])));
}

function hugepageProblems(want: DpdkSpec, o: DpdkState): Problem[] {
  const h = want.hugepages;
  if (h.count !== undefined) return o.hugepages.all === h.count ? [] : [{ field: `hugepages ${h.size}`, expected: h.count, observed: o.hugepages.all }];
  return h
    .perNode!.filter((n) => (o.hugepages.nodes[String(n.node)] ?? 0) !== n.count)
    .map((n) => ({ field: `hugepages ${h.size} node ${n.node}`, expected: n.count, observed: o.hugepages.nodes[String(n.node)] ?? 'no such node' }));
}

function plan(want: DpdkWant, o: DpdkState): Change[] {
  const params = wantedParams(want, o);
  const changes: Change[] = [];
  if (!o.driverctl) changes.push({ field: 'package driverctl', from: 'absent', to: 'installed' });
  for (const p of missingUserspace(o)) changes.push({ field: `package ${p}`, from: 'absent', to: 'installed' });
  const dropIn = o.grub ? renderDpdkDropIn(params) : o.dropIn;
  if (o.dropIn !== dropIn) changes.push({ field: DPDK_GRUB_DROP_IN, from: o.dropIn === null ? 'absent' : 'other content', to: params.join(' ') });
  const record = wantedRecord(o);
  if (o.record !== record) changes.push({ field: DPDK_DEVICE_RECORD, from: o.record === null ? 'absent' : 'other content', to: record ?? 'absent' });
  const missing = missingParams(o.params.join(' '), params);
  if (missing.length) changes.push({ field: 'kernel command line', from: o.params.join(' ') || '(none)', to: `${params.join(' ')}, after one reboot` });
  for (const p of hugepageProblems(want.dpdk, o)) changes.push({ field: p.field, from: p.observed, to: p.expected });
  for (const d of o.devices) {
    if (d.driver !== want.dpdk.driver) changes.push({ field: `${d.ref}.driver`, from: d.driver ?? 'none', to: want.dpdk.driver });
    if (d.override !== want.dpdk.driver) changes.push({ field: `${d.ref}.override`, from: d.override ?? 'none', to: `${want.dpdk.driver} (driverctl)` });
  }
  return changes;
}

function missingUserspace(o: DpdkState): string[] {
  return o.userspace.want.filter((p) => !o.userspace.installed.includes(p));
}

/** The NIC that carries the session must never be taken from the kernel. */
async function guardManagement(io: Io): Promise<void> {
  const mgmt = await requireManagementInterface(io.host, 'dpdk', 'dpdk.devices');
  const h = await readDpdkHost(io.host, io.want.dpdk.devices);
  const i = h.devices.findIndex((d) => d.ifname === mgmt);
  if (i >= 0) {
    throw new LockoutRiskError('refusing to hand the NIC that carries the management session to DPDK', {
      ...ctx(io, `dpdk.devices[${i}]`),
      expected: 'a NIC other than the management interface',
      observed: mgmt,
    });
  }
}

/** Runtime hugepages (when the command line already reserves them at boot): the sysfs counts. */
function hugepageRuntime(want: DpdkSpec): Shell {
  const kb = HUGEPAGE_KB[want.hugepages.size];
  const h = want.hugepages;
  if (h.count !== undefined) return writeTo(`/sys/kernel/mm/hugepages/hugepages-${kb}kB/nr_hugepages`, h.count);
  return join(
    '&&',
    h.perNode!.map((n) => writeTo(`/sys/devices/system/node/node${n.node}/hugepages/hugepages-${kb}kB/nr_hugepages`, n.count)),
  );
}

async function writeOwnFile(io: Io, path: string, content: string | null, description: string): Promise<void> {
  await io.host.run(content === null ? sh`rm -f ${path}` : sh`mkdir -p ${path.slice(0, path.lastIndexOf('/'))} && ${writeFileAtomically(path, content)}`, {
    description,
  });
}

async function apply(io: Io, o: DpdkState): Promise<void> {
  const want = io.want.dpdk;
  await guardManagement(io);
  const unsupported = o.userspace.unsupported[0];
  if (unsupported) {
    const i = o.devices.findIndex((d) => d.ref === unsupported.ref);
    throw new UnsupportedPlatformError('DPDK has no user-space driver for a device on this host', {
      ...ctx(io, i >= 0 ? `dpdk.devices[${i}]` : 'dpdk'),
      expected: `a DPDK poll-mode driver package for ${unsupported.ref}`,
      observed: unsupported.why,
    });
  }
  const install = [...(o.driverctl ? [] : ['driverctl']), ...missingUserspace(o)];
  if (install.length) {
    const family = await readOsFamily(io.host);
    await installDetached(io, family, install, { ...DPDK_PACKAGE_JOBS, notOffered: `the host’s package repositories do not offer ${install.join(', ')}` });
  }
  const params = wantedParams(io.want, o);
  if (!o.grub && missingParams(o.params.join(' '), params).length) {
    throw new UnsupportedPlatformError('the host does not boot through GRUB: its boot loader (PXE, direct boot) must pass the DPDK kernel parameters', {
      ...ctx(io, 'kernel command line'),
      expected: params.join(' '),
      observed: o.params.join(' ') || '(none of them)',
    });
  }
  const dropIn = o.grub ? renderDpdkDropIn(params) : o.dropIn;
  if (o.dropIn !== dropIn) {
    await writeOwnFile(io, DPDK_GRUB_DROP_IN, dropIn, `write ${DPDK_GRUB_DROP_IN}`);
    await io.host.run(updateGrub(), { description: 'update-grub', timeoutMs: 5 * 60_000 });
  }
  const record = wantedRecord(o);
  if (o.record !== record) await writeOwnFile(io, DPDK_DEVICE_RECORD, record, `write ${DPDK_DEVICE_RECORD}`);

  if (missingParams(o.params.join(' '), params).length) {
    // Refuse a reboot that would not boot with the parameters: it would cost a reboot and prove nothing.
    const cfg = await readOptionalFile(io.host, GRUB_CFG);
    if (cfg === null || !cfg.includes(params.join(' '))) {
      throw new VerificationError('after update-grub the generated GRUB configuration does not pass the DPDK parameters; not rebooting', {
        ...ctx(io, GRUB_CFG),
        expected: params.join(' '),
        observed: cfg === null ? 'no /boot/grub/grub.cfg' : 'absent from every linux line',
      });
    }
    await rebootAndWait(io, LINUX_REBOOT, { reason: 'turn the IOMMU on and reserve hugepages at boot', ...DPDK_REBOOT });
  } else if (hugepageProblems(want, o).length) {
    await io.host.run(hugepageRuntime(want), { description: `reserve ${want.hugepages.size} hugepages` });
  }
  const now = await observe(io);
  if (now.iommuGroups === 0) {
    throw new VerificationError('the IOMMU is off although the kernel was booted with it on: enable VT-d / AMD-Vi in the firmware', {
      ...ctx(io, 'iommu'),
      expected: '/sys/kernel/iommu_groups populated',
      observed: 'no IOMMU groups',
    });
  }
  if (!now.vfioUsable) throw noInterruptRemapping(io);
  const bind = now.devices.filter((d) => d.driver !== want.driver || d.override !== want.driver).map((d) => setOverride(d.address, want.driver));
  if (bind.length) await io.host.run(join('&&', bind), { description: `bind ${bind.length} device(s) to ${want.driver}`, retryable: false });
}

function noInterruptRemapping(io: Io): UnsupportedHardwareError {
  return new UnsupportedHardwareError('the IOMMU does no interrupt remapping: vfio refuses to give DPDK the devices (“failed to select IOMMU type”)', {
    ...ctx(io, 'iommu.interruptRemapping'),
    expected: 'interrupt remapping on (IR-* chips in /proc/interrupts): enable VT-d / AMD-Vi interrupt remapping in the firmware',
    observed: 'off, and vfio_iommu_type1 allow_unsafe_interrupts not set',
  });
}

async function check(io: Io): Promise<Problem[]> {
  const want = io.want.dpdk;
  const o = await observe(io);
  const problems: Problem[] = [];
  const params = wantedParams(io.want, o);
  const missing = missingParams(o.params.join(' '), params);
  if (missing.length) problems.push({ field: 'kernel command line', expected: params.join(' '), observed: o.params.join(' ') || '(none)', final: true });
  if (o.iommuGroups === 0) problems.push({ field: 'iommu', expected: 'IOMMU groups', observed: 'none', final: true });
  if (!o.vfioUsable) problems.push({ field: 'iommu.interruptRemapping', expected: 'on', observed: 'off', final: true });
  // The kernel reserves what memory allows at boot: fewer pages than asked will not grow by waiting.
  for (const p of hugepageProblems(want, o)) problems.push({ ...p, final: true });
  for (const d of o.devices) {
    if (d.driver !== want.driver) problems.push({ field: `${d.ref}.driver`, expected: want.driver, observed: d.driver ?? 'none' });
    if (d.override !== want.driver) problems.push({ field: `${d.ref}.override`, expected: want.driver, observed: d.override ?? 'none' });
  }
  if (!o.driverctl) problems.push({ field: 'package driverctl', expected: 'installed', observed: 'absent', final: true });
  for (const p of missingUserspace(o)) problems.push({ field: `package ${p}`, expected: 'installed', observed: 'absent', final: true });
  return problems;
}

async function undo(io: Io, pre: DpdkState, now: DpdkState): Promise<void> {
  // Devices first, while driverctl is still there: the override they had, or none (their default driver reprobes).
  const release = now.devices
    .map((d) => ({ d, p: pre.devices.find((x) => x.address === d.address) }))
    .filter(({ d, p }) => p && (d.override !== p.override || d.driver !== p.driver))
    .map(({ p }) => (p!.override ? setOverride(p!.address, p!.override) : unsetOverride(p!.address)));
  if (release.length) await io.host.run(join('&&', release), { description: `give ${release.length} device(s) back to their drivers` });
  if (now.hugepages.all !== pre.hugepages.all) {
    const kb = HUGEPAGE_KB[io.want.dpdk.hugepages.size];
    await io.host.run(writeTo(`/sys/kernel/mm/hugepages/hugepages-${kb}kB/nr_hugepages`, pre.hugepages.all), { description: 'free the hugepages' });
  }
  if (now.record !== pre.record) await writeOwnFile(io, DPDK_DEVICE_RECORD, pre.record, `restore ${DPDK_DEVICE_RECORD}`);
  if (now.dropIn !== pre.dropIn) {
    await writeOwnFile(io, DPDK_GRUB_DROP_IN, pre.dropIn, `restore ${DPDK_GRUB_DROP_IN}`);
    await io.host.run(updateGrub(), { description: 'update-grub', timeoutMs: 5 * 60_000 });
  }
  // The IOMMU and the boot-time reservation go with the kernel parameters: one reboot drops them.
  if (JSON.stringify(now.params) !== JSON.stringify(pre.params)) {
    await rebootAndWait(io, LINUX_REBOOT, { reason: 'boot without the DPDK kernel parameters', ...DPDK_REBOOT });
  }
  // The packages the step added: driverctl and DPDK's libraries (the plugins and what they pulled in). Anything
  // else installed since (a later step's, if its undo did not run) is kept, and so is what it depends on.
  const before = new Set(pre.packages);
  const ours = (p: string) => !before.has(p) && (p === 'driverctl' || p.startsWith('librte-'));
  if (now.packages.some(ours)) {
    const family = await readOsFamily(io.host);
    const current = await installedPackages(io.host, family);
    await restorePackageSet(
      io,
      family,
      current.filter((p) => !ours(p)),
      DPDK_PACKAGE_JOBS,
    );
  }
}

/** What an undo must restore: the parameters, IOMMU, pages, bindings and files (not the CPU). */
function view(s: DpdkState) {
  return {
    params: s.params,
    iommu: s.iommuGroups > 0,
    hugepages: s.hugepages.all,
    devices: Object.fromEntries(s.devices.map((d) => [d.address, { driver: d.driver, override: d.override }])),
    driverctl: s.driverctl,
    userspace: s.userspace.installed,
    dropIn: s.dropIn,
    record: s.record,
  };
}

export const dpdkStep: Step<DpdkState, DpdkWant> = {
  name: 'dpdk',
  want: (spec) => ({ dpdk: section(spec, 'dpdk', 'dpdk') }),
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, 'DPDK host preparation', () => check(io), { timeoutMs: 60_000, intervalMs: 2_000 }),
  undo,
  diff: (a, b) => diffState(view(a), view(b)),
  note: (o) => `${o.iommuGroups > 0 ? `IOMMU on (${o.iommuGroups} groups)` : 'IOMMU off'}${o.grub ? '' : '; no GRUB: kernel parameters from the boot loader'}`,
};
