/**
 * How each step runs on each platform: the implementations, registered once, typed against the platform
 * matrix (src/spec/server.ts PLATFORM_MATRIX) and the step registry (src/steps). A platform must implement
 * every step whose spec section it accepts — cable and hypervisor always, attach always, bond / vlans / sriov
 * where its `sections` list them — and nothing else; the compiler and test/activities/registry.test.ts hold
 * that. Adding a platform touches this table and its own files only.
 *
 * KVM and Xen run on a Linux host reached over SSH (Xen differs in the install and the attach); ESXi is installed
 * through the BMC (Redfish) and attached through vCenter (distributed switch) or over SSH (standard vSwitch);
 * Hyper-V is Windows reached by PowerShell over SSH.
 */
import { UnsupportedPlatformError } from '../common/errors';
import { PLATFORM_MATRIX, type HypervisorKind, type ServerSpec } from '../spec/server';
import { STEP_DEFS, STEPS, stepApplies, type StepName } from '../steps';
import { attachStep } from './attach';
import { bondStep } from './bond';
import { cableStep } from './cable';
import { dpdkStep } from './dpdk';
import { vdsAttachStep } from './esxi/attach';
import { redfishCableStep } from './esxi/cable';
import { esxiInstallStep } from './esxi/install';
import { esxiVswitchStep } from './esxi/vswitch';
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
type AnyStep = Step<any, any>;
/** One choice per step: what a worker runs (tests swap in their own). */
export type StepSet = { [K in StepName]: StepChoice };

type Def = (typeof STEP_DEFS)[number];
type SectionsOf<K extends HypervisorKind> =
  (typeof PLATFORM_MATRIX)[K]['sections'][number] | 'attach' | ((typeof PLATFORM_MATRIX)[K]['dpdk'] extends true ? 'dpdk' : never);
/** The steps platform K runs: those without a section, and those whose section the platform accepts. */
export type PlatformStepName<K extends HypervisorKind> = Def extends infer D
  ? D extends { name: infer N; section: infer S }
    ? S extends SectionsOf<K>
      ? N
      : never
    : D extends { name: infer N }
      ? N
      : never
  : never;

/** An implementation, or a chooser of one by the spec (its `name` must be the step's: registry.test.ts checks). */
type Impl = AnyStep | ((spec: ServerSpec) => AnyStep);

/** Exactly the steps each platform runs: a missing or an extra one does not compile. */
export type PlatformImplementations = { [K in HypervisorKind]: { readonly [N in PlatformStepName<K>]: Impl } };

/** The ESXi attach: a distributed switch through vCenter, or a standard vSwitch over SSH — as attach.kind says. */
const esxiAttach = (spec: ServerSpec) => (spec.attach?.kind === 'vswitch' ? esxiVswitchStep : vdsAttachStep);

export const IMPLEMENTATIONS: PlatformImplementations = {
  kvm: { cable: cableStep, bond: bondStep, vlan: vlanStep, sriov: sriovStep, dpdk: dpdkStep, hypervisor: hypervisorStep, attach: attachStep },
  xen: { cable: cableStep, bond: bondStep, vlan: vlanStep, sriov: sriovStep, hypervisor: xenInstallStep, attach: xenBridgeAttachStep },
  esxi: { cable: redfishCableStep, hypervisor: esxiInstallStep, attach: esxiAttach },
  hyperv: { cable: hypervCableStep, hypervisor: hypervInstallStep, attach: hypervSetAttachStep },
};

/** The platforms' step tables as plain records (for lookups by name). */
const TABLE = IMPLEMENTATIONS as unknown as Record<HypervisorKind, Partial<Record<StepName, StepChoice>>>;

/** The steps platform `kind` runs, in runbook order (derived from the matrix and the registry, as the type is). */
export function platformSteps(kind: HypervisorKind): StepName[] {
  const sections: readonly string[] = [...PLATFORM_MATRIX[kind].sections, 'attach', ...(PLATFORM_MATRIX[kind].dpdk ? ['dpdk'] : [])];
  return STEP_DEFS.filter((d) => !('section' in d) || sections.includes(d.section)).map((d) => d.name);
}

/** The implementation of `step` for the spec's hypervisor, or a non-retryable error naming what is missing. */
export function platformStep(step: StepName, spec: ServerSpec): AnyStep {
  const impl = TABLE[spec.hypervisor.kind][step];
  if (!impl) {
    throw new UnsupportedPlatformError(`no ${step} step for ${spec.hypervisor.kind} in this build`, {
      host: spec.id,
      step,
      field: 'hypervisor.kind',
      expected: (Object.keys(TABLE) as HypervisorKind[]).filter((k) => TABLE[k][step]).join('|'),
      observed: spec.hypervisor.kind,
    });
  }
  return chooseStep(impl, spec);
}

/** Every step chosen by the spec's hypervisor: what the worker registers, what the CLI plans with. */
export const PLATFORM_STEP_SET: StepSet = Object.fromEntries(STEPS.map((s) => [s, (spec: ServerSpec) => platformStep(s, spec)])) as StepSet;

/** One platform's steps as a StepSet (tests of one platform swap single steps in it). */
export function stepSetOf(kind: HypervisorKind): StepSet {
  return Object.fromEntries(STEPS.map((s) => [s, TABLE[kind][s] ?? ((spec: ServerSpec) => platformStep(s, spec))])) as StepSet;
}

/** The steps the spec asks for that this build cannot run (the CLI refuses to start such a spec). */
export function missingSteps(spec: ServerSpec): StepName[] {
  return STEPS.filter((s) => stepApplies(s, spec) && !TABLE[spec.hypervisor.kind][s]);
}
