/**
 * Step 1 on Hyper-V: every cabled NIC of the spec is present (by name), Up, at the expected speed and with the
 * expected MAC — Get-NetAdapter, read-only. Windows shows no LLDP neighbours; the validator refuses nics[].lldp
 * on Hyper-V rather than skip the check silently.
 */
import { normalizeMac, readNetAdapters, type NetAdapterJson } from '../../drivers/hyperv/cmdlets';
import type { NicSpec } from '../../spec/server';
import { diffState } from '../diff';
import { pollUntilHolds, type Problem } from '../poll';
import type { Step, StepIo } from '../step';

export interface HypervCableState {
  nics: Record<string, { status: string; speedMbps: number | null; mac: string | null }>;
}

/** Get-NetAdapter's answers as the cable check sees them (pure: tested on fixtures). */
export function cableStateFrom(specNics: NicSpec[], adapters: NetAdapterJson[]): HypervCableState {
  const byName = new Map(adapters.map((a) => [a.Name, a]));
  const nics: HypervCableState['nics'] = {};
  for (const nic of specNics) {
    const a = byName.get(nic.name);
    nics[nic.name] = a
      ? { status: a.Status, speedMbps: a.ReceiveLinkSpeed ? Math.round(a.ReceiveLinkSpeed / 1_000_000) : null, mac: normalizeMac(a.MacAddress) }
      : { status: 'absent', speedMbps: null, mac: null };
  }
  return { nics };
}

/** What is wrong with the cabling, per NIC; a wrong MAC or speed is final, a link still coming up is not. */
export function cableProblems(specNics: NicSpec[], s: HypervCableState): Problem[] {
  const problems: Problem[] = [];
  for (const nic of specNics.filter((n) => n.cabled)) {
    const got = s.nics[nic.name];
    if (!got || got.status === 'absent') {
      problems.push({ field: `${nic.name}`, expected: 'a network adapter of that name', observed: 'absent', final: true });
      continue;
    }
    if (nic.mac && got.mac !== nic.mac) problems.push({ field: `${nic.name}.mac`, expected: nic.mac, observed: got.mac ?? 'none', final: true });
    if (got.status !== 'Up') {
      problems.push({ field: `${nic.name}.status`, expected: 'Up', observed: got.status, final: got.status === 'Disabled' || got.status === 'Not Present' });
      continue;
    }
    if (nic.speedMbps !== undefined && got.speedMbps !== nic.speedMbps)
      problems.push({
        field: `${nic.name}.speed`,
        expected: `${nic.speedMbps} Mb/s`,
        observed: got.speedMbps ? `${got.speedMbps} Mb/s` : 'unknown',
        final: true,
      });
  }
  return problems;
}

async function observe(io: StepIo<NicSpec[]>): Promise<HypervCableState> {
  return cableStateFrom(io.want, await readNetAdapters(io.host));
}

export const hypervCableStep: Step<HypervCableState, NicSpec[]> = {
  name: 'cable',
  want: (spec) => spec.nics,
  observe,
  // Read-only: nothing to apply, the check is all in verify.
  plan: () => [],
  apply: async () => undefined,
  verify: (io) => pollUntilHolds(io, 'cabling', async () => cableProblems(io.want, await observe(io)), { timeoutMs: 60_000, intervalMs: 5_000 }),
  undo: async () => undefined,
  diff: (a, b) => diffState(a, b),
};
