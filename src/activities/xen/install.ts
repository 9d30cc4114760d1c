/**
 * Step 5 on Xen: install Debian's Xen (xen-system-amd64), make the Xen GRUB entry the default with dom0's memory
 * on Xen's command line, reboot once into it, and verify with `xl info`.
 *
 * The reboot is issued once per activity and only waited for by retries (src/activities/reboot.ts). What the
 * earlier steps configured (bond, VLANs, SR-IOV) is persisted through the host's network manager, so it comes
 * back by itself after the reboot; drift checks report it if it does not.
 *
 * Undo: point GRUB away from Xen (XEN_OVERRIDE_GRUB_DEFAULT=0), reboot once out of Xen, purge the packages that
 * were not installed before, restore the drop-in as it was, update-grub.
 */
import { UnsupportedPlatformError, VerificationError } from '../../common/errors';
import { installedPackages, readOsFamily } from '../../drivers/linux/packages';
import type { OsFamily } from '../../drivers/linux/parse/text';
import { sh } from '../../drivers/shell';
import {
  readEffectiveGrubConfig,
  readNextBoot,
  readOptionalFile,
  renderXenDropIn,
  updateGrub,
  writeFileAtomically,
  XEN_DROP_IN,
  type NextBoot,
} from '../../drivers/xen/grub';
import { dom0MemOption, parseDom0Mem, readXenRuntime, readXlInfo } from '../../drivers/xen/xl';
import type { ServerSpec } from '../../spec/server';
import { pollUntilHolds, type Problem } from '../poll';
import { LINUX_REBOOT, rebootAndWait } from '../reboot';
import type { Change, Step, StepIo } from '../step';
import { hypervisorOfKind } from '../want';
import { installDetached, restorePackageSet, type PackageJobOptions } from '../packages';

export const XEN_PACKAGES = ['xen-system-amd64'];

/** Real servers POST for minutes; bound the wait generously (the hypervisor step may take 60 min in all). */
export const XEN_REBOOT = { timeoutMs: 20 * 60_000, intervalMs: 10_000 };

/** Bounds of the Xen install and purge jobs on the host. */
export const XEN_PACKAGE_JOBS: PackageJobOptions = { installTimeoutMs: 30 * 60_000, purgeTimeoutMs: 30 * 60_000 };

export interface XenInstallState {
  family: OsFamily;
  /** Every installed package, sorted: the snapshot an undo restores. */
  packages: string[];
  /** underlay's GRUB drop-in, or null when absent. */
  dropIn: string | null;
  /** What GRUB boots next (null: no /boot/grub/grub.cfg). */
  nextBoot: Pick<NextBoot, 'path' | 'xen'> | null;
  /** The running kernel is a Xen dom0. */
  dom0: boolean;
  /** From `xl info` on a dom0. */
  xen: { version: string; dom0Mem: string | null } | null;
}

function wantedDropIn(spec: ServerSpec): string {
  const hv = spec.hypervisor;
  return renderXenDropIn(hv.kind === 'xen' && hv.dom0MemoryMb ? dom0MemOption(hv.dom0MemoryMb) : null);
}

async function observe(io: StepIo): Promise<XenInstallState> {
  const family = await readOsFamily(io.host);
  if (family !== 'debian') {
    throw new UnsupportedPlatformError('Xen is installed from Debian’s packages in this build', {
      host: io.host.label,
      step: 'hypervisor',
      field: 'hypervisor.kind',
      expected: 'a Debian-like OS',
      observed: family,
    });
  }
  const [packages, dropIn, next, runtime] = await Promise.all([
    installedPackages(io.host, family),
    readOptionalFile(io.host, XEN_DROP_IN),
    readNextBoot(io.host),
    readXenRuntime(io.host),
  ]);
  const info = runtime.dom0 ? await readXlInfo(io.host) : null;
  const state: XenInstallState = {
    family,
    packages,
    dropIn,
    nextBoot: next && { path: next.path, xen: next.xen },
    dom0: runtime.dom0,
    xen: info && { version: info.xenVersion, dom0Mem: parseDom0Mem(info.commandLine)?.text ?? null },
  };
  return state;
}

/** Whether the running Xen differs from the spec in a way only a reboot fixes. */
function needsReboot(spec: ServerSpec, o: XenInstallState): boolean {
  if (!o.dom0) return true;
  const hv = spec.hypervisor;
  return hv.kind === 'xen' && hv.dom0MemoryMb !== undefined && o.xen?.dom0Mem !== dom0MemOption(hv.dom0MemoryMb);
}

function plan(spec: ServerSpec, o: XenInstallState): Change[] {
  const changes: Change[] = XEN_PACKAGES.filter((p) => !o.packages.includes(p)).map((p) => ({ field: `package ${p}`, from: 'absent', to: 'installed' }));
  if (o.dropIn !== wantedDropIn(spec)) changes.push({ field: XEN_DROP_IN, from: o.dropIn === null ? 'absent' : 'other content', to: wantedDropIn(spec) });
  if (!o.nextBoot?.xen) changes.push({ field: 'GRUB default entry', from: o.nextBoot?.path?.join(' > ') ?? 'unknown', to: 'the Xen entry' });
  if (!o.dom0) changes.push({ field: 'running hypervisor', from: 'none (bare-metal kernel)', to: 'xen (dom0), after one reboot' });
  else if (needsReboot(spec, o)) {
    const hv = spec.hypervisor;
    changes.push({ field: 'dom0_mem', from: o.xen?.dom0Mem ?? 'unset', to: hv.kind === 'xen' && hv.dom0MemoryMb ? dom0MemOption(hv.dom0MemoryMb) : 'unset' });
  }
  return changes;
}

async function installMissing(io: StepIo, o: XenInstallState): Promise<boolean> {
  const missing = XEN_PACKAGES.filter((p) => !o.packages.includes(p));
  // A detached job (../packages.ts): a worker lost mid-install leaves it running; the retry waits for it.
  const r = await installDetached(io, o.family, missing, {
    ...XEN_PACKAGE_JOBS,
    notOffered: 'the host’s package repositories do not offer Xen (xen-system-amd64)',
  });
  return r !== undefined;
}

async function apply(io: StepIo, o: XenInstallState): Promise<void> {
  const installed = await installMissing(io, o);
  const want = wantedDropIn(io.spec);
  if (o.dropIn !== want || installed || !o.nextBoot?.xen) {
    if (o.dropIn !== want) await io.host.run(writeFileAtomically(XEN_DROP_IN, want), { description: `write ${XEN_DROP_IN}` });
    await io.host.run(updateGrub(), { description: 'update-grub', timeoutMs: 5 * 60_000 });
  }
  if (needsReboot(io.spec, o)) {
    const next = await readNextBoot(io.host);
    if (!next) {
      throw new UnsupportedPlatformError('no /boot/grub/grub.cfg: this build makes Xen the default through Debian’s GRUB', {
        host: io.host.label,
        step: 'hypervisor',
        field: 'GRUB',
        expected: '/boot/grub/grub.cfg',
        observed: 'absent',
      });
    }
    if (!next.xen) {
      // Refuse a reboot that would not boot Xen: it would cost a reboot and prove nothing. Say why GRUB chose it.
      const cfg = await readEffectiveGrubConfig(io.host);
      throw new VerificationError('after update-grub the next boot is still not the Xen entry; not rebooting', {
        host: io.host.label,
        step: 'hypervisor',
        field: 'GRUB default entry',
        expected: 'an entry loading Xen',
        observed: `${next.source} ${next.selector} → ${next.path?.join(' > ') ?? 'no such entry'} (GRUB_DEFAULT=${cfg.GRUB_DEFAULT}, XEN_OVERRIDE_GRUB_DEFAULT=${cfg.XEN_OVERRIDE_GRUB_DEFAULT || 'unset'})`,
      });
    }
    await rebootAndWait(io, LINUX_REBOOT, { reason: 'boot into Xen', ...XEN_REBOOT });
  }
}

async function check(io: StepIo): Promise<Problem[]> {
  const runtime = await readXenRuntime(io.host);
  if (!runtime.dom0)
    return [{ field: 'running hypervisor', expected: 'xen (dom0)', observed: runtime.hypervisorType ?? 'none (bare-metal kernel)', final: true }];
  const info = await readXlInfo(io.host);
  if (!info) return [{ field: 'xl info', expected: 'xen_version', observed: 'xl failed (toolstack not up yet?)' }];
  const problems: Problem[] = [];
  const hv = io.spec.hypervisor;
  const mem = parseDom0Mem(info.commandLine)?.text ?? null;
  if (hv.kind === 'xen' && hv.dom0MemoryMb !== undefined && mem !== dom0MemOption(hv.dom0MemoryMb)) {
    problems.push({ field: 'dom0_mem', expected: dom0MemOption(hv.dom0MemoryMb), observed: mem ?? 'unset', final: true });
  }
  return problems;
}

async function undo(io: StepIo, pre: XenInstallState, now: XenInstallState): Promise<void> {
  if (now.dom0 && !pre.dom0) {
    // Out of Xen first: purging its packages under a running dom0 stops the toolstack under the host's feet.
    await io.host.run(
      writeFileAtomically(XEN_DROP_IN, '# Written by underlay (undo of the Xen install): boot the plain kernel.\nXEN_OVERRIDE_GRUB_DEFAULT=0\n'),
      { description: `write ${XEN_DROP_IN} (override 0)` },
    );
    await io.host.run(updateGrub(), { description: 'update-grub', timeoutMs: 5 * 60_000 });
    const next = await readNextBoot(io.host);
    if (next?.xen) {
      throw new VerificationError('GRUB would still boot Xen after XEN_OVERRIDE_GRUB_DEFAULT=0; not rebooting', {
        host: io.host.label,
        step: 'hypervisor',
        field: 'GRUB default entry',
        expected: 'a non-Xen entry',
        observed: next.path?.join(' > ') ?? next.selector,
      });
    }
    await rebootAndWait(io, LINUX_REBOOT, { reason: 'boot out of Xen', ...XEN_REBOOT });
  }
  await restorePackageSet(io, pre.family, pre.packages, XEN_PACKAGE_JOBS);
  const current = await installedPackages(io.host, pre.family);
  const missing = pre.packages.filter((p) => !current.includes(p));
  if (missing.length)
    throw new VerificationError('packages present before are missing now; not reinstalling them blindly', {
      host: io.host.label,
      step: 'hypervisor',
      expected: 'installed',
      observed: missing.join(' '),
    });
  await io.host.run(pre.dropIn === null ? sh`rm -f ${XEN_DROP_IN}` : writeFileAtomically(XEN_DROP_IN, pre.dropIn), { description: `restore ${XEN_DROP_IN}` });
  if (pre.nextBoot !== null) await io.host.run(updateGrub(), { description: 'update-grub', timeoutMs: 5 * 60_000 });
}

function diff(a: XenInstallState, b: XenInstallState): Change[] {
  const changes: Change[] = [];
  const onlyA = a.packages.filter((p) => !b.packages.includes(p));
  const onlyB = b.packages.filter((p) => !a.packages.includes(p));
  if (onlyA.length || onlyB.length) changes.push({ field: 'packages', from: onlyA, to: onlyB });
  if (a.dropIn !== b.dropIn) changes.push({ field: XEN_DROP_IN, from: a.dropIn, to: b.dropIn });
  if ((a.nextBoot?.xen ?? false) !== (b.nextBoot?.xen ?? false))
    changes.push({ field: 'GRUB default is Xen', from: a.nextBoot?.xen ?? false, to: b.nextBoot?.xen ?? false });
  if (a.dom0 !== b.dom0) changes.push({ field: 'running Xen dom0', from: a.dom0, to: b.dom0 });
  return changes;
}

export const xenInstallStep: Step<XenInstallState> = {
  name: 'hypervisor',
  want: (spec) => (hypervisorOfKind(spec, 'xen'), spec),
  observe,
  plan,
  apply,
  // The toolstack (xenstored, xl) may come up a little after sshd on the new boot.
  verify: (io) => pollUntilHolds(io, 'Xen', () => check(io), { timeoutMs: 3 * 60_000, intervalMs: 5_000 }),
  undo,
  diff,
};
