/** The onboarding runbook, in order. Shared by workflows, activities and the CLI. */
export const STEPS = ['cable', 'bond', 'vlan', 'sriov', 'hypervisor', 'attach'] as const;
export type StepName = (typeof STEPS)[number];

export const STEP_TITLES: Record<StepName, string> = {
  cable: 'cable check',
  bond: 'bond',
  vlan: 'VLAN',
  sriov: 'SR-IOV enable',
  hypervisor: 'hypervisor install',
  attach: 'network attach',
};

/** Whether a spec asks for a step at all: no bond in the spec → no bond step. */
export function stepApplies(step: StepName, spec: { bond?: unknown; vlans: unknown[]; sriov?: unknown; attach?: unknown }): boolean {
  switch (step) {
    case 'bond':
      return spec.bond !== undefined;
    case 'vlan':
      return spec.vlans.length > 0;
    case 'sriov':
      return spec.sriov !== undefined;
    case 'attach':
      return spec.attach !== undefined;
    default:
      return true;
  }
}
