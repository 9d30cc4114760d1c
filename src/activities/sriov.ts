/**
 * Step 4, SR-IOV enable: the PF gets the spec's number of VFs, optionally each bound to vfio-pci for device
 * assignment. Undo returns the VF count and bindings to what they were.
 */
import { UnsupportedHardwareError } from '../common/errors';
import { join } from '../drivers/shell';
import { bindVfs, readPf, setNumVfs } from '../drivers/linux/sriov';
import type { ServerSpec } from '../spec/server';
import { diffState } from './diff';
import { pollUntilHolds, type Problem } from './poll';
import type { Change, Step, StepIo } from './step';

export interface SriovState {
  pf: string;
  numVfs: number;
  /** Driver of each VF, in PCI address order ('-' when unbound). */
  vfDrivers: string[];
}

const VERIFY = { timeoutMs: 30_000, intervalMs: 1_000 };

async function observe(io: StepIo): Promise<SriovState> {
  const { pf, numVfs } = io.spec.sriov!;
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
  return { pf, numVfs: st.numVfs, vfDrivers: st.vfs.map((v) => v.driver) };
}

function plan(spec: ServerSpec, observed: SriovState): Change[] {
  const s = spec.sriov!;
  const changes = diffState({ numVfs: observed.numVfs }, { numVfs: s.numVfs });
  // VF drivers matter only when the spec asks for vfio-pci; else whatever the host binds is right.
  if (s.vfioPci && (observed.numVfs !== s.numVfs || observed.vfDrivers.some((d) => d !== 'vfio-pci'))) {
    changes.push({ field: 'vfDrivers', from: observed.vfDrivers, to: `vfio-pci ×${s.numVfs}` });
  }
  return changes;
}

async function apply(io: StepIo, observed: SriovState): Promise<void> {
  const s = io.spec.sriov!;
  const cmds = [setNumVfs(s.pf, observed.numVfs, s.numVfs)];
  if (s.vfioPci) cmds.push(bindVfs(s.pf, 'vfio-pci'));
  // A wrong count (ERANGE) or a PF without sriov_configure (ENOENT) will not change on retry.
  await io.host.run(join('&&', cmds), { description: `set ${s.numVfs} VFs on ${s.pf}${s.vfioPci ? ' bound to vfio-pci' : ''}`, retryable: false });
}

async function check(io: StepIo): Promise<Problem[]> {
  const s = io.spec.sriov!;
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

async function undo(io: StepIo, pre: SriovState, now: SriovState): Promise<void> {
  // Recreating the VFs drops every override and lets the host's default drivers probe again.
  const cmds = [setNumVfs(pre.pf, now.numVfs, 0), setNumVfs(pre.pf, 0, pre.numVfs)];
  if (pre.vfDrivers.length && pre.vfDrivers.every((d) => d === 'vfio-pci')) cmds.push(bindVfs(pre.pf, 'vfio-pci'));
  await io.host.run(join('&&', cmds), { description: `restore ${pre.numVfs} VFs on ${pre.pf}` });
}

export const sriovStep: Step<SriovState> = {
  name: 'sriov',
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, `SR-IOV on ${io.spec.sriov!.pf}`, () => check(io), VERIFY),
  undo,
  diff: (a, b) => diffState({ numVfs: a.numVfs, vfDrivers: a.vfDrivers }, { numVfs: b.numVfs, vfDrivers: b.vfDrivers }),
  summary: (spec) => `${spec.sriov!.pf} · ${spec.sriov!.numVfs} VFs${spec.sriov!.vfioPci ? ' · vfio-pci' : ''}`,
};
