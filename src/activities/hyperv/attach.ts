/**
 * Step 6 on Hyper-V: a Switch Embedded Teaming (SET) switch over the spec's NICs — New-VMSwitch
 * -EnableEmbeddedTeaming with a host vNIC (-AllowManagementOS) — its load-balancing algorithm, and the host
 * vNIC's access VLAN (attach.managementVlan). SET is switch-independent only (no LACP on the switch ports).
 *
 * Lockout guard, as on Linux: creating the switch over (or re-teaming, or removing it from) the NIC that
 * carries this SSH session, and re-tagging the host vNIC the session runs through, are refused — Windows
 * moves the NIC's address to the vNIC and the session would drop, or the VLAN would cut it off.
 */
import { LockoutRiskError, UnsupportedHardwareError, UnsupportedPlatformError } from '../../common/errors';
import {
  getManagementOsVlan,
  getVMSwitch,
  getVMSwitchTeam,
  newSetSwitch,
  readNetAdapters,
  readSessionInterface,
  removeSwitch,
  setAllowManagementOS,
  setManagementOsVlan,
  setSwitchTeam,
  VlanSetting,
  VMSwitch,
  VMSwitchTeam,
  type NetAdapterJson,
} from '../../drivers/hyperv/cmdlets';
import { psJoin, type Ps } from '../../drivers/hyperv/powershell';
import { readPs, runPs } from '../../drivers/hyperv/run';
import type { ServerSpec } from '../../spec/server';
import { diffState } from '../diff';
import { pollUntilHolds, type Problem } from '../poll';
import type { Change, Step, StepIo } from '../step';
import { attachOfKind } from '../want';

type SetSpec = Extract<NonNullable<ServerSpec['attach']>, { kind: 'set' }>;

export interface SetAttachState {
  /** The switch of the spec's name, or null. */
  switch: { type: string; embeddedTeaming: boolean; allowManagementOS: boolean } | null;
  /** Its team: member adapter names (sorted), algorithm, mode; null when there is no SET team of that name. */
  team: { members: string[]; loadBalancing: string; teamingMode: string } | null;
  /** Access VLAN of the host vNIC named after the switch; null when untagged or there is no such vNIC. */
  managementVlan: number | null;
}

/** The SET attach, and the NICs to team: attach.nics (the validator requires them on Hyper-V; the bond members are a fallback). */
export interface SetWant {
  attach: SetSpec;
  nics: string[];
}

type Io = StepIo<SetWant>;

export function setWant(spec: ServerSpec): SetWant {
  const attach = attachOfKind(spec, ['set']);
  return { attach, nics: [...(attach.nics ?? spec.bond?.members ?? [])] };
}

/** The host vNIC New-VMSwitch -AllowManagementOS creates is named after the switch; Windows shows it as `vEthernet (<name>)`. */
export function hostVnicAlias(switchName: string): string {
  return `vEthernet (${switchName})`;
}

export function wantedSet({ attach: a, nics }: SetWant): SetAttachState {
  return {
    switch: { type: 'External', embeddedTeaming: true, allowManagementOS: true },
    team: { members: [...nics].sort(), loadBalancing: a.loadBalancing, teamingMode: 'SwitchIndependent' },
    managementVlan: a.managementVlan ?? null,
  };
}

/** Builds the state from the cmdlets' answers (pure: tested on fixtures). */
export function setStateFrom(
  sw: { SwitchType: string; EmbeddedTeamingEnabled: boolean; AllowManagementOS: boolean } | undefined,
  team: { TeamingMode: string; LoadBalancingAlgorithm: string; NetAdapterInterfaceDescription: string[] } | undefined,
  vlan: { OperationMode: string; AccessVlanId: number } | undefined,
  adapters: NetAdapterJson[],
): SetAttachState {
  const byDescription = new Map(adapters.map((n) => [n.InterfaceDescription, n.Name]));
  return {
    switch: sw ? { type: sw.SwitchType, embeddedTeaming: sw.EmbeddedTeamingEnabled, allowManagementOS: sw.AllowManagementOS } : null,
    team: team
      ? {
          // A member whose description matches no adapter is shown by its description: it cannot equal a spec name.
          members: team.NetAdapterInterfaceDescription.map((d) => byDescription.get(d) ?? `(${d})`).sort(),
          loadBalancing: team.LoadBalancingAlgorithm,
          teamingMode: team.TeamingMode,
        }
      : null,
    managementVlan: vlan && vlan.OperationMode === 'Access' ? vlan.AccessVlanId : null,
  };
}

async function observe(io: Io): Promise<SetAttachState> {
  const a = io.want.attach;
  const opts = (what: string) => ({ description: what, timeoutMs: 60_000 });
  const [sw] = await readPs(io.host, getVMSwitch(a.switchName), VMSwitch, opts(`Get-VMSwitch ${a.switchName}`));
  const [team] = sw?.EmbeddedTeamingEnabled ? await readPs(io.host, getVMSwitchTeam(a.switchName), VMSwitchTeam, opts(`Get-VMSwitchTeam ${a.switchName}`)) : [];
  const [vlan] = sw
    ? await readPs(io.host, getManagementOsVlan(a.switchName), VlanSetting, opts(`Get-VMNetworkAdapterVlan -ManagementOS ${a.switchName}`))
    : [];
  return setStateFrom(sw, team, vlan, await readNetAdapters(io.host));
}

function plan(want: SetWant, observed: SetAttachState): Change[] {
  return diffState(observed, wantedSet(want));
}

/** The commands converging `now` to `want` (both SET states of switch `name`). */
export function convergeSet(name: string, nics: string[], now: SetAttachState, want: SetAttachState): Ps[] {
  const cmds: Ps[] = [];
  if (!want.switch) {
    if (now.switch) cmds.push(removeSwitch(name));
    return cmds;
  }
  if (!now.switch) {
    cmds.push(newSetSwitch(name, nics));
    // Always explicit: the default algorithm differs between Windows Server releases (Dynamic, later HyperVPort).
    if (want.team) cmds.push(setSwitchTeam(name, { loadBalancing: want.team.loadBalancing }));
  } else {
    const sameMembers = JSON.stringify(now.team?.members ?? []) === JSON.stringify(want.team?.members ?? []);
    const sameLb = now.team?.loadBalancing === want.team?.loadBalancing;
    if (want.team && (!sameMembers || !sameLb))
      cmds.push(setSwitchTeam(name, { ...(sameMembers ? {} : { nics: want.team.members }), ...(sameLb ? {} : { loadBalancing: want.team.loadBalancing }) }));
    if (now.switch.allowManagementOS !== want.switch.allowManagementOS) cmds.push(setAllowManagementOS(name, want.switch.allowManagementOS));
  }
  if (want.switch.allowManagementOS && (now.managementVlan !== want.managementVlan || !now.switch)) {
    if (want.managementVlan !== null || now.managementVlan !== null) cmds.push(setManagementOsVlan(name, want.managementVlan));
  }
  return cmds;
}

async function guard(io: Io, a: SetSpec, now: SetAttachState, want: SetAttachState): Promise<void> {
  const session = await readSessionInterface(io.host);
  if (!session) {
    // Fail closed: without knowing which interface the session runs over, any team change could cut it.
    throw new LockoutRiskError('cannot tell which interface carries the management session; refusing a change that could cut it', {
      host: io.host.label,
      step: 'attach',
      field: 'attach.nics',
      expected: 'the SSH session’s local address on one of the host’s adapters',
      observed: 'none',
    });
  }
  const vnic = hostVnicAlias(a.switchName);
  const members = new Set([...(now.team?.members ?? []), ...(want.team?.members ?? [])]);
  const touchesTeam = !now.switch || !want.switch || JSON.stringify(now.team?.members) !== JSON.stringify(want.team?.members);
  if (touchesTeam && members.has(session)) {
    throw new LockoutRiskError('refusing to team the NIC that carries the management session into a SET switch', {
      host: io.host.label,
      step: 'attach',
      field: 'attach.nics',
      expected: 'team NICs other than the management interface',
      observed: session,
    });
  }
  if (session === vnic && (!want.switch || now.managementVlan !== want.managementVlan)) {
    throw new LockoutRiskError('refusing to re-tag or remove the host vNIC that carries the management session', {
      host: io.host.label,
      step: 'attach',
      field: 'attach.managementVlan',
      expected: `management over an interface other than ${vnic}`,
      observed: session,
    });
  }
}

async function converge(io: Io, now: SetAttachState, want: SetAttachState, what: string): Promise<void> {
  const { attach: a, nics } = io.want;
  await guard(io, a, now, want);
  if (want.switch && !now.switch) {
    // Every NIC must exist and be free before New-VMSwitch: its own error is a long .NET message.
    const adapters = new Map((await readNetAdapters(io.host)).map((n) => [n.Name, n]));
    const missing = nics.filter((n) => !adapters.has(n));
    if (missing.length)
      throw new UnsupportedHardwareError('SET team NICs not found on the host', {
        host: io.host.label,
        step: 'attach',
        field: 'attach.nics',
        expected: nics,
        observed: [...adapters.keys()],
      });
  }
  if (now.switch && !now.switch.embeddedTeaming && want.switch) {
    throw new UnsupportedPlatformError('a virtual switch without embedded teaming already has this name', {
      host: io.host.label,
      step: 'attach',
      field: 'attach.switchName',
      expected: 'a SET switch (or none)',
      observed: `${now.switch.type} switch without embedded teaming`,
    });
  }
  const cmds = convergeSet(a.switchName, nics, now, want);
  if (cmds.length) await runPs(io.host, psJoin(cmds), { description: `${what} ${a.switchName}`, timeoutMs: 10 * 60_000 });
}

async function apply(io: Io, observed: SetAttachState): Promise<void> {
  await converge(io, observed, wantedSet(io.want), 'configure SET switch');
}

async function check(io: Io): Promise<Problem[]> {
  const problems: Problem[] = plan(io.want, await observe(io)).map((c) => ({ field: c.field, expected: c.to, observed: c.from, final: true }));
  if (problems.length) return problems;
  const adapters = new Map((await readNetAdapters(io.host)).map((n) => [n.Name, n]));
  for (const nic of io.want.nics) {
    const s = adapters.get(nic)?.Status;
    if (s !== 'Up') problems.push({ field: `${nic}.Status`, expected: 'Up', observed: s ?? 'absent' });
  }
  return problems;
}

async function undo(io: Io, pre: SetAttachState, now: SetAttachState): Promise<void> {
  await converge(io, now, pre, 'restore SET switch');
}

export const hypervSetAttachStep: Step<SetAttachState, SetWant> = {
  name: 'attach',
  want: setWant,
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, `SET switch ${io.want.attach.switchName}`, () => check(io), { timeoutMs: 60_000, intervalMs: 5_000 }),
  undo,
  diff: (a, b) => diffState(a, b),
};
