/**
 * Step 4, SR-IOV enable: the PF gets the spec's number of VFs, optionally each bound to vfio-pci for device
 * assignment — now through sysfs, and at every boot through a udev rule on the PF's "add" event (the count as an
 * ATTR assignment; the vfio-pci binding by a small helper the rule runs once the VFs exist), so a reboot keeps
 * them whatever network manager runs. Undo returns the VF count, the bindings and the files to what they were.
 */
import { UnsupportedHardwareError } from '../common/errors';
import { join } from '../drivers/shell';
import { convergeFilesScript, restoreFilesScript, type DesiredFile } from '../drivers/linux/files';
import { bindVfs, readPf, readPfDevice, setNumVfs, SRIOV_VFIO_HELPER, sriovRulePath, sriovUdevRule, vfioHelperScript } from '../drivers/linux/sriov';
import { sh } from '../drivers/shell';
import type { SriovSpec } from '../spec/server';
import { diffState } from './diff';
import { pollUntilHolds, type Problem } from './poll';
import { fileChanges, observeFiles } from './persist';
import type { Change, Step, StepIo } from './step';
import { section } from './want';

export interface SriovWant {
  sriov: SriovSpec;
  serverId: string;
}

type Io = StepIo<SriovWant>;

export interface SriovState {
  pf: string;
  numVfs: number;
  /** Driver of each VF, in PCI address order ('-' when unbound). */
  vfDrivers: string[];
  persisted: {
    /** The PF's device (its sysfs name: a PCI address, or netdevsimN), which the udev rule matches. */
    device: string;
    files: Record<string, string | null>;
  };
}

const VERIFY = { timeoutMs: 30_000, intervalMs: 1_000 };

async function observe(io: Io): Promise<SriovState> {
  const { pf, numVfs } = io.want.sriov;
  // The three reads side by side (one round trip, not three); the PF's answer is looked at first: a PF that is
  // not there or not capable fails as such, whatever the other two reads made of it.
  const deviceRead = readPfDevice(io.host, pf);
  const filesRead = observeFiles(io, [sriovRulePath(pf), SRIOV_VFIO_HELPER]);
  for (const p of [deviceRead, filesRead]) p.catch(() => undefined); // awaited below, unless the PF check throws first
  const st = await readPf(io.host, pf);
  if (!st.capable) {
    throw new UnsupportedHardwareError('the PF has no SR-IOV support (no sriov_numvfs)', {
      host: io.host.label,
      step: 'sriov',
      field: 'sriov.pf',
      expected: `${pf} SR-IOV capable`,
      observed: 'not capable',
    });
  }
  if (st.totalVfs !== null && numVfs > st.totalVfs) {
    throw new UnsupportedHardwareError('the PF supports fewer VFs than the spec asks for', {
      host: io.host.label,
      step: 'sriov',
      field: 'sriov.numVfs',
      expected: numVfs,
      observed: `at most ${st.totalVfs}`,
    });
  }
  const [device, files] = await Promise.all([deviceRead, filesRead]);
  return { pf, numVfs: st.numVfs, vfDrivers: st.vfs.map((v) => v.driver), persisted: { device, files } };
}

/** The udev rule (and, for vfio-pci, its helper) that recreate the VFs at every boot. */
function desiredFiles(s: SriovSpec, serverId: string, device: string): DesiredFile[] {
  return [
    { path: sriovRulePath(s.pf), mode: '0644', content: sriovUdevRule(serverId, device, s.numVfs, s.vfioPci) },
    { path: SRIOV_VFIO_HELPER, mode: '0755', content: s.vfioPci ? vfioHelperScript(serverId) : null },
  ];
}

function plan(want: SriovWant, observed: SriovState): Change[] {
  const s = want.sriov;
  const changes = diffState({ numVfs: observed.numVfs }, { numVfs: s.numVfs });
  // VF drivers matter only when the spec asks for vfio-pci; else whatever the host binds is right.
  if (s.vfioPci && (observed.numVfs !== s.numVfs || observed.vfDrivers.some((d) => d !== 'vfio-pci'))) {
    changes.push({ field: 'vfDrivers', from: observed.vfDrivers, to: `vfio-pci ×${s.numVfs}` });
  }
  return [...changes, ...fileChanges('udev', desiredFiles(s, want.serverId, observed.persisted.device), observed.persisted.files)];
}

async function apply(io: Io, observed: SriovState): Promise<void> {
  const s = io.want.sriov;
  const cmds = [setNumVfs(s.pf, observed.numVfs, s.numVfs)];
  if (s.vfioPci) cmds.push(bindVfs(s.pf, 'vfio-pci'));
  const files = convergeFilesScript(desiredFiles(s, io.want.serverId, observed.persisted.device), observed.persisted.files);
  if (files) cmds.push(files, sh`udevadm control --reload`);
  // A wrong count (ERANGE) or a PF without sriov_configure (ENOENT) will not change on retry.
  await io.host.run(join('&&', cmds), { description: `set ${s.numVfs} VFs on ${s.pf}${s.vfioPci ? ' bound to vfio-pci' : ''}`, retryable: false });
}

async function check(io: Io): Promise<Problem[]> {
  const s = io.want.sriov;
  const st = await readPf(io.host, s.pf);
  const problems: Problem[] = [];
  if (st.numVfs !== s.numVfs) problems.push({ field: `${s.pf}.sriov_numvfs`, expected: s.numVfs, observed: st.numVfs, final: true });
  // PCI PFs list their VFs as virtfn links (emulated PFs such as netdevsim have none).
  if (st.vfs.length && st.vfs.length !== s.numVfs) problems.push({ field: `${s.pf}.virtfn`, expected: s.numVfs, observed: st.vfs.length });
  if (s.vfioPci) {
    const wrong = st.vfs.filter((v) => v.driver !== 'vfio-pci');
    if (wrong.length) problems.push({ field: `${s.pf}.vf-driver`, expected: 'vfio-pci', observed: wrong.map((v) => `${v.bdf}=${v.driver}`).join(', ') });
  }
  return problems;
}

async function undo(io: Io, pre: SriovState, now: SriovState): Promise<void> {
  // Recreating the VFs drops every override and lets the host's default drivers probe again.
  const cmds = [setNumVfs(pre.pf, now.numVfs, 0), setNumVfs(pre.pf, 0, pre.numVfs)];
  if (pre.vfDrivers.length && pre.vfDrivers.every((d) => d === 'vfio-pci')) cmds.push(bindVfs(pre.pf, 'vfio-pci'));
  const restore = restoreFilesScript(pre.persisted.files, now.persisted.files);
  if (restore) cmds.push(restore, sh`udevadm control --reload`);
  await io.host.run(join('&&', cmds), { description: `restore ${pre.numVfs} VFs on ${pre.pf}` });
}

export const sriovStep: Step<SriovState, SriovWant> = {
  name: 'sriov',
  want: (spec) => ({ sriov: section(spec, 'sriov', 'sriov'), serverId: spec.id }),
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, `SR-IOV on ${io.want.sriov.pf}`, () => check(io), VERIFY),
  undo,
  diff: (a, b) =>
    diffState({ numVfs: a.numVfs, vfDrivers: a.vfDrivers, files: a.persisted.files }, { numVfs: b.numVfs, vfDrivers: b.vfDrivers, files: b.persisted.files }),
};
