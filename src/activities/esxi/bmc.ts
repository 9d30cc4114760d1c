/** The ESXi steps' way to the server: its BMC over Redfish, opened from the spec for one step. */
import { UnsupportedPlatformError } from '../../common/errors';
import type { HypervisorSpec, ServerSpec } from '../../spec/server';
import { RedfishBmc } from '../../drivers/redfish/bmc';
import type { StepIo } from '../step';

export type EsxiSpec = Extract<HypervisorSpec, { kind: 'esxi' }>;

export function esxiOf(spec: ServerSpec, step: 'cable' | 'hypervisor'): EsxiSpec {
  if (spec.hypervisor.kind !== 'esxi') {
    throw new UnsupportedPlatformError(`this ${step} step is ESXi's (through the BMC)`, {
      host: spec.id,
      step,
      field: 'hypervisor.kind',
      expected: 'esxi',
      observed: spec.hypervisor.kind,
    });
  }
  return spec.hypervisor;
}

/** Opens the BMC, runs `fn`, and always closes it (the Redfish session is deleted). */
export async function withBmc<T>(io: StepIo, step: 'cable' | 'hypervisor', fn: (bmc: RedfishBmc, esxi: EsxiSpec) => Promise<T>): Promise<T> {
  const esxi = esxiOf(io.spec, step);
  const bmc = await RedfishBmc.connect(esxi.bmc, io.spec.id, { step, sleep: (ms) => io.sleep(ms) });
  try {
    return await fn(bmc, esxi);
  } finally {
    await bmc.close();
  }
}
