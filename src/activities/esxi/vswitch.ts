/**
 * Step 6 for ESXi without vCenter: a standard vSwitch configured with esxcli over SSH on the installed host
 * (`management.address`, the pinned `management.hostKey`) — the switch (`attach.name`), its uplinks (all active,
 * in the spec's order), its load balancing (`attach.teaming`), optionally its MTU, and one port group with its
 * VLAN. A standard vSwitch has no LACP: `iphash` is a static EtherChannel, to be matched on the physical switch.
 *
 * Commands go through `host.runLine` with the bare esxcli line, not `host.run`: run() wraps every command in
 * `timeout -k 5 N sh -c '…'`, and ESXi's shell is VMware's busybox build, whose applet set is not documented —
 * whether it has `timeout`, and with GNU's `-k` syntax (older busybox takes `timeout -t SECS`), could not be
 * established here (no ESXi host runs on this machine; the public material searched does not say). esxcli needs
 * no shell features, so each command is sent as built by `sh` (every value quoted); the deadline is the SSH
 * transport's own (it sends KILL, closes the channel and throws CommandTimeoutError), exit codes are mapped by runLine,
 * and there is no sudo (ESXi's SSH login is root).
 *
 * Read with three list commands in `--formatter=xml` (parsed by src/drivers/esxi/esxcli.ts) and
 * `policy failover get`; changed only by the esxcli builders there (and `vswitch standard set --mtu`).
 */
import { InvalidSpecError, LockoutRiskError, UnsupportedHardwareError, UnsupportedPlatformError } from '../../common/errors';
import {
  esxcli,
  failoverGet,
  mtuSet,
  nicList,
  parseFailoverGet,
  parseNicNames,
  parsePortgroupList,
  parseVswitchList,
  SETTABLE_TEAMING,
  type LoadBalancing,
} from '../../drivers/esxi/esxcli';
import type { Shell } from '../../drivers/shell';
import type { AttachSpec, ServerSpec } from '../../spec/server';
import { diffState } from '../diff';
import { pollUntilHolds, type Problem } from '../poll';
import { wholeSpec, type Change, type Step, type StepIo } from '../step';

export type VswitchAttachSpec = Extract<AttachSpec, { kind: 'vswitch' }>;

export interface VswitchAttachState {
  /** The spec's standard vSwitch, or null when the host has none of that name. */
  vswitch: {
    /** Its uplinks, sorted. */
    uplinks: string[];
    /** The failover order's active uplinks, in order. */
    active: string[];
    /** Load balancing in the spec's words (portid, iphash, mac, explicit); an unknown value as esxcli printed it. */
    teaming: string;
    mtu: number;
  } | null;
  /** The spec's port group, wherever it is, or null. */
  portgroup: { vswitch: string; vlan: number } | null;
  /** Facts plan and apply need, not state this step owns (diff ignores them): the host's physical NICs, and */
  hostNics: string[];
  /** the uplinks of the host's other standard vSwitches (vmnic → vSwitch). */
  otherUplinks: Record<string, string>;
}

const STEP = 'attach' as const;
const COMMAND_TIMEOUT_MS = 60_000;

function vswitchAttach(spec: ServerSpec): VswitchAttachSpec {
  const a = spec.attach;
  if (a?.kind !== 'vswitch') {
    throw new UnsupportedPlatformError('the ESXi standard-vSwitch step needs attach.kind vswitch', {
      host: spec.id,
      step: STEP,
      field: 'attach.kind',
      expected: 'vswitch',
      observed: a?.kind ?? 'none',
    });
  }
  return a;
}

/** One esxcli command through the one command runner, bounded by the transport's deadline (no host-side one). */
async function esx(io: StepIo, cmd: Shell, description: string): Promise<string> {
  return (await io.host.runLine({ text: cmd.text }, { description, timeoutMs: COMMAND_TIMEOUT_MS, privileged: false })).stdout;
}

async function observe(io: StepIo): Promise<VswitchAttachState> {
  const a = vswitchAttach(io.spec);
  const hostNics = parseNicNames(await esx(io, nicList(), 'list physical NICs'), nicList().text);
  const switches = parseVswitchList(await esx(io, esxcli.vswitchList('xml'), 'list standard vSwitches'));
  const sw = switches.find((v) => v.name === a.name);
  const policy = sw ? parseFailoverGet(await esx(io, failoverGet(a.name), `read ${a.name}'s failover policy`), failoverGet(a.name).text) : null;
  const pg = parsePortgroupList(await esx(io, esxcli.portgroupList('xml'), 'list standard port groups'), 'xml').find((p) => p.name === a.portgroup);
  const otherUplinks: Record<string, string> = {};
  for (const v of switches) if (v.name !== a.name) for (const u of v.uplinks) otherUplinks[u] = v.name;
  return {
    vswitch: sw && policy ? { uplinks: [...sw.uplinks].sort(), active: policy.active, teaming: policy.teaming, mtu: sw.mtu } : null,
    portgroup: pg ? { vswitch: pg.vswitch, vlan: pg.vlanId } : null,
    hostNics,
    otherUplinks,
  };
}

/** What this step converges to: a vSwitch (mtu undefined = leave as it is) and a port group, or their absence. */
interface Target {
  vswitch: { uplinks: string[]; active: string[]; teaming: string; mtu?: number } | null;
  portgroup: { vlan: number } | null;
}

function wanted(spec: ServerSpec, observed: VswitchAttachState): Target {
  const a = vswitchAttach(spec);
  return {
    vswitch: { uplinks: [...a.uplinks].sort(), active: [...a.uplinks], teaming: a.teaming, ...(a.mtu !== undefined ? { mtu: a.mtu } : {}) },
    portgroup: { vlan: a.vlan ?? (observed.portgroup?.vswitch === a.name ? observed.portgroup.vlan : 0) },
  };
}

/** Refusals before anything changes: a NIC the host lacks, an uplink of another vSwitch, a port group elsewhere. */
function preflight(spec: ServerSpec, observed: VswitchAttachState): void {
  const a = vswitchAttach(spec);
  const missing = a.uplinks.filter((u) => !observed.hostNics.includes(u));
  if (missing.length) {
    throw new UnsupportedHardwareError(`the host has no physical NIC ${missing.join(', ')}`, {
      host: spec.id,
      step: STEP,
      field: 'attach.uplinks',
      expected: a.uplinks,
      observed: observed.hostNics,
    });
  }
  // Taking vSwitch0's uplink (usually the management network's) would cut this very session off.
  const taken = a.uplinks.filter((u) => observed.otherUplinks[u]);
  if (taken.length) {
    throw new LockoutRiskError(`${taken.map((u) => `${u} is an uplink of ${observed.otherUplinks[u]}`).join('; ')}: refusing to move it`, {
      host: spec.id,
      step: STEP,
      field: 'attach.uplinks',
      expected: `NICs not used by another vSwitch`,
      observed: taken.map((u) => `${u}@${observed.otherUplinks[u]}`),
    });
  }
  if (observed.portgroup && observed.portgroup.vswitch !== a.name) {
    throw new InvalidSpecError(`port group ${a.portgroup} exists on ${observed.portgroup.vswitch} (esxcli names port groups host-wide)`, [], {
      host: spec.id,
      step: STEP,
      field: 'attach.portgroup',
      expected: `a port group of ${a.name}`,
      observed: observed.portgroup.vswitch,
    });
  }
}

function plan(spec: ServerSpec, observed: VswitchAttachState): Change[] {
  preflight(spec, observed);
  const a = vswitchAttach(spec);
  const want = wanted(spec, observed);
  const sw = observed.vswitch;
  const changes: Change[] = [];
  if (!sw) changes.push({ field: 'vswitch', from: null, to: a.name });
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  if (!same(sw?.uplinks ?? [], want.vswitch!.uplinks)) changes.push({ field: 'vswitch.uplinks', from: sw?.uplinks ?? [], to: want.vswitch!.uplinks });
  if (!same(sw?.active ?? [], want.vswitch!.active)) changes.push({ field: 'vswitch.active', from: sw?.active ?? [], to: want.vswitch!.active });
  if (sw?.teaming !== a.teaming) changes.push({ field: 'vswitch.teaming', from: sw?.teaming ?? null, to: a.teaming });
  if (a.mtu !== undefined && sw?.mtu !== a.mtu) changes.push({ field: 'vswitch.mtu', from: sw?.mtu ?? null, to: a.mtu });
  if (!observed.portgroup) changes.push({ field: 'portgroup', from: null, to: { name: a.portgroup, vlan: want.portgroup!.vlan } });
  else if (observed.portgroup.vlan !== want.portgroup!.vlan) changes.push({ field: 'portgroup.vlan', from: observed.portgroup.vlan, to: want.portgroup!.vlan });
  return changes;
}

/** The esxcli commands from `now` to `target`, in an order that works both ways (port group out before the switch). */
export function convergeCommands(name: string, portgroup: string, now: VswitchAttachState, target: Target): Shell[] {
  const cmds: Shell[] = [];
  const pgHere = now.portgroup?.vswitch === name ? now.portgroup : null;
  if (!target.portgroup && pgHere) cmds.push(esxcli.portgroupRemove(name, portgroup));
  if (!target.vswitch) {
    if (now.vswitch) cmds.push(esxcli.vswitchRemove(name));
    return cmds;
  }
  const t = target.vswitch;
  if (!now.vswitch) cmds.push(esxcli.vswitchAdd(name));
  const have = now.vswitch?.uplinks ?? [];
  const adds = t.uplinks.filter((u) => !have.includes(u));
  const removes = have.filter((u) => !t.uplinks.includes(u));
  for (const u of adds) cmds.push(esxcli.uplinkAdd(name, u));
  for (const u of removes) cmds.push(esxcli.uplinkRemove(name, u));
  if (t.mtu !== undefined && now.vswitch?.mtu !== t.mtu) cmds.push(mtuSet(name, t.mtu));
  const policyDiffers =
    !now.vswitch ||
    adds.length > 0 ||
    removes.length > 0 ||
    JSON.stringify(now.vswitch.active) !== JSON.stringify(t.active) ||
    now.vswitch.teaming !== t.teaming;
  // An empty active list (a pre-state switch without uplinks) cannot be set, and needs no setting once they are gone.
  if (policyDiffers && t.active.length) {
    cmds.push(esxcli.failoverSet(name, { active: t.active, ...(SETTABLE_TEAMING.has(t.teaming) ? { loadBalancing: t.teaming as LoadBalancing } : {}) }));
  }
  if (target.portgroup) {
    if (!pgHere) cmds.push(esxcli.portgroupAdd(name, portgroup), esxcli.portgroupSetVlan(portgroup, target.portgroup.vlan));
    else if (pgHere.vlan !== target.portgroup.vlan) cmds.push(esxcli.portgroupSetVlan(portgroup, target.portgroup.vlan));
  }
  return cmds;
}

async function runAll(io: StepIo, cmds: Shell[], what: string): Promise<void> {
  for (const [i, c] of cmds.entries()) {
    io.progress(`attach: ${what} (${i + 1}/${cmds.length}): ${c.text}`);
    await esx(io, c, `${what}: ${c.text}`);
  }
}

async function apply(io: StepIo): Promise<void> {
  const a = vswitchAttach(io.spec);
  // Re-read: a retry may find part of the work done.
  const live = await observe(io);
  preflight(io.spec, live);
  await runAll(io, convergeCommands(a.name, a.portgroup, live, wanted(io.spec, live)), `configure standard vSwitch ${a.name}`);
}

async function check(io: StepIo): Promise<Problem[]> {
  return plan(io.spec, await observe(io)).map((c) => ({ field: c.field, expected: c.to, observed: c.from }));
}

async function undo(io: StepIo, pre: VswitchAttachState): Promise<void> {
  const a = vswitchAttach(io.spec);
  const live = await observe(io);
  const target: Target = {
    vswitch: pre.vswitch && { uplinks: pre.vswitch.uplinks, active: pre.vswitch.active, teaming: pre.vswitch.teaming, mtu: pre.vswitch.mtu },
    // A port group on another switch in the pre-state was never this step's (apply refuses it): leave it be.
    portgroup: pre.portgroup?.vswitch === a.name ? { vlan: pre.portgroup.vlan } : null,
  };
  await runAll(io, convergeCommands(a.name, a.portgroup, live, target), `restore standard vSwitch ${a.name}`);
}

/** What this step owns, comparably: the switch and the port group (not the host's NIC inventory). */
function view(s: VswitchAttachState) {
  return { vswitch: s.vswitch, portgroup: s.portgroup };
}

export const esxiVswitchStep: Step<VswitchAttachState> = {
  name: 'attach',
  want: wholeSpec,
  connection: 'ssh',
  observe,
  plan,
  apply: (io) => apply(io),
  verify: (io) => pollUntilHolds(io, 'standard vSwitch attach', () => check(io), { timeoutMs: 30_000, intervalMs: 2_000 }),
  undo: (io, pre) => undo(io, pre),
  diff: (a, b) => diffState(view(a), view(b)),
};
