/**
 * Which implementation of each step runs for which hypervisor: the platform matrix in code.
 *
 * KVM and Xen run on a Linux host reached over SSH (Xen differs in the install and the attach); ESXi is
 * installed through the BMC (Redfish) and attached through vCenter (distributed switch) or over SSH (standard
 * vSwitch); Hyper-V is Windows reached by PowerShell over SSH. A step a platform does not list is not in its runbook — the spec schema rejects specs asking for it.
 */
import { UnsupportedPlatformError } from '../common/errors';
import { STEPS, type StepName } from '../common/steps';
import type { HypervisorKind, ServerSpec } from '../spec/server';
import { attachStep } from './attach';
import { bondStep } from './bond';
import { cableStep } from './cable';
import { vdsAttachStep } from './esxi/attach';
import { esxiVswitchStep } from './esxi/vswitch';
import { redfishCableStep } from './esxi/cable';
import { esxiInstallStep } from './esxi/install';
import { hypervisorStep } from './hypervisor';
import { hypervSetAttachStep } from './hyperv/attach';
import { hypervCableStep } from './hyperv/cable';
import { hypervInstallStep } from './hyperv/install';
import { sriovStep } from './sriov';
import { chooseStep, type Step, type StepChoice } from './step';
import { vlanStep } from './vlan';
import { xenBridgeAttachStep } from './xen/attach';
import { xenInstallStep } from './xen/install';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyStep = Step<any>;
export type StepSet = { [K in StepName]: StepChoice };

/** The Linux (KVM) implementations of the six steps. */
export const LINUX_STEPS: { [K in StepName]: AnyStep } = {
  cable: cableStep,
  bond: bondStep,
  vlan: vlanStep,
  sriov: sriovStep,
  hypervisor: hypervisorStep,
  attach: attachStep,
};

/** The ESXi attach: a distributed switch through vCenter, or a standard vSwitch over SSH — as the spec's attach.kind says. */
const esxiAttach = (spec: ServerSpec): AnyStep => (spec.attach?.kind === 'vswitch' ? esxiVswitchStep : vdsAttachStep);

/** A value is a step, or a chooser of one by the spec (where one platform has several for a step). */
export const PLATFORM_STEPS: Record<HypervisorKind, Partial<Record<StepName, StepChoice>>> = {
  kvm: LINUX_STEPS,
  xen: { cable: cableStep, bond: bondStep, vlan: vlanStep, sriov: sriovStep, hypervisor: xenInstallStep, attach: xenBridgeAttachStep },
  esxi: { cable: redfishCableStep, hypervisor: esxiInstallStep, attach: esxiAttach },
  hyperv: { cable: hypervCableStep, hypervisor: hypervInstallStep, attach: hypervSetAttachStep },
};

/** The implementation of `step` for the spec's hypervisor, or a non-retryable error naming what is missing. */
export function platformStep(step: StepName, spec: ServerSpec): AnyStep {
  const impl = PLATFORM_STEPS[spec.hypervisor.kind][step];
  if (!impl) {
    throw new UnsupportedPlatformError(`no ${step} step for ${spec.hypervisor.kind} in this build`, {
      host: spec.id,
      step,
      field: 'hypervisor.kind',
      expected: (Object.keys(PLATFORM_STEPS) as HypervisorKind[]).filter((k) => PLATFORM_STEPS[k][step]).join('|'),
      observed: spec.hypervisor.kind,
    });
  }
  return chooseStep(impl, spec);
}

/** Every step chosen by the spec's hypervisor: what the worker registers. */
export const PLATFORM_STEP_SET: StepSet = Object.fromEntries(STEPS.map((s) => [s, (spec: ServerSpec) => platformStep(s, spec)])) as StepSet;

/** Whether this build can run every step the spec asks for (the CLI refuses to start otherwise). */
export function missingSteps(spec: ServerSpec, applies: (s: StepName) => boolean): StepName[] {
  return STEPS.filter((s) => applies(s) && !PLATFORM_STEPS[spec.hypervisor.kind][s]);
}
