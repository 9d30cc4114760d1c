/**
 * Step 1 for ESXi, cable check from the BMC's inventory (there is no OS to ask yet): every spec NIC with a `mac`
 * must be among the system's Redfish EthernetInterfaces; a cabled NIC must report LinkStatus LinkUp where the
 * BMC reports link state, and the expected speed when the spec sets one. It changes nothing: apply and undo have
 * nothing to do, like the Linux cable step when every NIC is already up.
 */
import type { NicInventory } from '../../drivers/redfish/bmc';
import type { ServerSpec } from '../../spec/server';
import { pollUntilHolds, type Problem } from '../poll';
import { wholeSpec, type Change, type Step, type StepIo } from '../step';
import { withBmc } from './bmc';

export interface RedfishCableState {
  /** The BMC's view of each spec NIC that has a MAC (absent when the BMC does not list the MAC). */
  nics: Record<string, { id: string; linkStatus?: string; speedMbps?: number } | null>;
}

/** Link training after power-on and BMC inventory refreshes take seconds to a minute. */
const VERIFY = { timeoutMs: 90_000, intervalMs: 5_000 };

function byMac(inventory: NicInventory[]): Map<string, NicInventory> {
  return new Map(inventory.filter((n) => n.mac).map((n) => [n.mac!, n]));
}

async function observe(io: StepIo): Promise<RedfishCableState> {
  const inventory = await withBmc(io, 'cable', (bmc) => bmc.ethernetInterfaces());
  const macs = byMac(inventory);
  const nics: RedfishCableState['nics'] = {};
  for (const nic of io.spec.nics.filter((n) => n.mac)) {
    const seen = macs.get(nic.mac!);
    nics[nic.name] = seen ? { id: seen.id, linkStatus: seen.linkStatus, speedMbps: seen.speedMbps } : null;
  }
  return { nics };
}

export function cableProblems(spec: ServerSpec, inventory: NicInventory[]): Problem[] {
  const macs = byMac(inventory);
  const problems: Problem[] = [];
  for (const nic of spec.nics) {
    if (!nic.mac) continue;
    const seen = macs.get(nic.mac);
    if (!seen) {
      // A MAC the BMC does not list will not appear by waiting: the spec or the server is wrong.
      problems.push({
        field: `${nic.name}.mac`,
        expected: nic.mac,
        observed: `not among the BMC's NICs (${[...macs.keys()].join(', ') || 'none'})`,
        final: true,
      });
      continue;
    }
    if (!nic.cabled) continue;
    if (seen.linkStatus !== undefined && seen.linkStatus !== 'LinkUp') {
      problems.push({ field: `${nic.name}.link`, expected: 'LinkUp', observed: seen.linkStatus });
      continue;
    }
    if (nic.speedMbps !== undefined && seen.speedMbps !== nic.speedMbps) {
      problems.push({
        field: `${nic.name}.speed`,
        expected: `${nic.speedMbps} Mb/s`,
        observed: seen.speedMbps === undefined ? 'not reported by the BMC' : `${seen.speedMbps} Mb/s`,
        final: true,
      });
    }
  }
  return problems;
}

export const redfishCableStep: Step<RedfishCableState> = {
  name: 'cable',
  want: wholeSpec,
  connection: 'none',
  observe,
  plan: (): Change[] => [],
  apply: async () => undefined,
  verify: (io) =>
    pollUntilHolds(io, 'cabling (BMC inventory)', () => withBmc(io, 'cable', async (bmc) => cableProblems(io.spec, await bmc.ethernetInterfaces())), VERIFY),
  undo: async () => undefined,
  // The step owns no state: nothing it observes is its doing, so nothing is ever to be undone.
  diff: () => [],
};
