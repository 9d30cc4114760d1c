/**
 * Step 6 for ESXi, network attach through vCenter: make the host a member of the spec's vSphere Distributed
 * Switch with its uplinks (`attach.uplinks`, pnic backing) and make sure the switch has the spec's port group
 * with the spec's VLAN. Talks to vCenter's SOAP API (src/drivers/vsphere); opens no SSH session.
 *
 * The host is found in vCenter by name: `management.address` must be the name the host was added to vCenter
 * under (its FQDN, or its IP when it was added by address) — which is what vCenter shows as the host's name.
 *
 * LACP (`attach.lacp`): a LAG is switch-wide configuration (every host on the switch gets its ports), so this step
 * does not create one; it requires the switch to have exactly one LAG and binds the uplinks to the LAG's ports.
 * A switch without a LAG is refused before anything changes.
 */
import { InvalidSpecError, UnsupportedHardwareError, UnsupportedPlatformError } from '../../common/errors';
import type { AttachSpec, ServerSpec } from '../../spec/server';
import { VsphereClient, type WaitOptions } from '../../drivers/vsphere/client';
import {
  addPortgroup,
  describeVlan,
  destroy,
  findByName,
  readDvs,
  readHost,
  readName,
  readPortgroup,
  reconfigureHostMember,
  setPortgroupVlan,
  type DvsInfo,
  type HostInfo,
  type Lag,
  type MemberPnic,
  type PortgroupInfo,
  type VlanSetting,
} from '../../drivers/vsphere/dvs';
import type { Mor } from '../../drivers/vsphere/schema';
import { diffState } from '../diff';
import { pollUntilHolds, type Problem } from '../poll';
import { wholeSpec, type Change, type Step, type StepIo } from '../step';

export type VdsAttachSpec = Extract<AttachSpec, { kind: 'vds' }>;

export interface VdsAttachState {
  switch: string;
  /** The host's name in vCenter (= management.address). */
  host: string;
  /** Whether the host is a member of the switch (summary.hostMember). */
  member: boolean;
  /**
   * The member's pnics as the switch reports them (config.host[].config.backing), with the uplink ports they are
   * bound to. [] when the host is not a member; null when it is but vCenter reports no backing for it (vcsim
   * keeps none) — then the pnics cannot be read back, and are neither compared nor changed.
   */
  uplinks: MemberPnic[] | null;
  /** The spec's port group on this switch, or null when the switch has none of that name. */
  portgroup: { vlan: VlanSetting } | null;
  /** Facts plan and apply need, not state this step owns (diff ignores them): */
  hostPnics: string[];
  lags: Lag[];
  /** The switch a port group of the spec's name belongs to, when it is another switch. */
  portgroupOnOtherSwitch?: string;
}

const STEP = 'attach' as const;
const TASK_TIMEOUT_MS = 120_000;

function vdsAttach(spec: ServerSpec): VdsAttachSpec {
  const a = spec.attach;
  if (a?.kind !== 'vds') {
    throw new UnsupportedPlatformError('the ESXi attach step drives a vSphere Distributed Switch only', {
      host: spec.id,
      step: STEP,
      field: 'attach.kind',
      expected: 'vds',
      observed: a?.kind ?? 'none',
    });
  }
  return a;
}

async function withVcenter<T>(io: StepIo, fn: (c: VsphereClient, wait: WaitOptions) => Promise<T>): Promise<T> {
  const a = vdsAttach(io.spec);
  const c = await VsphereClient.connect({
    address: a.vcenter.address,
    port: a.vcenter.port,
    credentials: a.vcenter.credentials,
    caFile: a.vcenter.caFile,
    label: io.spec.id,
  });
  try {
    return await fn(c, { sleep: io.sleep, progress: io.progress, timeoutMs: TASK_TIMEOUT_MS });
  } finally {
    await c.close();
  }
}

/** Exactly one object of that name, or a non-retryable error naming the spec field. */
async function findOne(c: VsphereClient, spec: ServerSpec, type: string, name: string, field: string, what: string): Promise<Mor> {
  const found = await findByName(c, type, name);
  if (found.length === 1) return found[0]!;
  throw new InvalidSpecError(
    found.length ? `${found.length} ${what}s in vCenter are named ${name}: the name is ambiguous` : `vCenter has no ${what} named ${name}`,
    [],
    {
      host: spec.id,
      step: STEP,
      field,
      expected: `one ${what} named ${name}`,
      observed: found.length ? found.map((f) => f.value) : 'none',
    },
  );
}

interface Live {
  dvs: DvsInfo;
  host: HostInfo;
  portgroup: PortgroupInfo | null;
  state: VdsAttachState;
}

async function readLive(c: VsphereClient, spec: ServerSpec): Promise<Live> {
  const a = vdsAttach(spec);
  const dvs = await readDvs(c, await findOne(c, spec, 'DistributedVirtualSwitch', a.switch, 'attach.switch', 'distributed switch'));
  const host = await readHost(c, await findOne(c, spec, 'HostSystem', spec.management.address, 'management.address', 'host'));
  const member = dvs.members.some((m) => m.value === host.ref.value);
  let portgroup: PortgroupInfo | null = null;
  let elsewhere: string | undefined;
  for (const ref of await findByName(c, 'DistributedVirtualPortgroup', a.portgroup)) {
    const pg = await readPortgroup(c, ref);
    if (pg.switch.value === dvs.ref.value) portgroup = pg;
    else elsewhere = await readName(c, pg.switch);
  }
  const state: VdsAttachState = {
    switch: dvs.name,
    host: host.name,
    member,
    uplinks: member ? (dvs.backing[host.ref.value] ?? null) : [],
    portgroup: portgroup && { vlan: portgroup.vlan },
    hostPnics: host.pnics,
    lags: dvs.lags,
    ...(elsewhere && !portgroup ? { portgroupOnOtherSwitch: elsewhere } : {}),
  };
  return { dvs, host, portgroup, state };
}

function observe(io: StepIo): Promise<VdsAttachState> {
  return withVcenter(io, async (c) => (await readLive(c, io.spec)).state);
}

/** The LAG the uplinks go to when the spec asks for LACP (exactly one on the switch), else null. */
function lagFor(spec: ServerSpec, observed: VdsAttachState): Lag | null {
  const a = vdsAttach(spec);
  if (!a.lacp) return null;
  const ctx = {
    host: spec.id,
    step: STEP,
    field: 'attach.lacp',
    expected: `exactly one link aggregation group on ${a.switch} with ≥ ${a.uplinks.length} ports`,
  };
  if (observed.lags.length !== 1) {
    throw new UnsupportedPlatformError(
      observed.lags.length
        ? `LACP asked for, but ${a.switch} has ${observed.lags.length} LAGs and the spec does not say which`
        : `LACP asked for, but ${a.switch} has no link aggregation group (LAGs are switch-wide; this step binds uplinks to one, it does not create one)`,
      { ...ctx, observed: observed.lags.map((l) => l.name) },
    );
  }
  const lag = observed.lags[0]!;
  if (lag.uplinkPortKeys.length < a.uplinks.length) {
    throw new UnsupportedPlatformError(`LAG ${lag.name} has ${lag.uplinkPortKeys.length} ports for ${a.uplinks.length} uplinks`, {
      ...ctx,
      observed: `${lag.name}: ${lag.uplinkPortKeys.length} ports`,
    });
  }
  return lag;
}

/** The pnic backing the spec asks for: the uplinks, bound to the LAG's ports under LACP. */
function wantedUplinks(spec: ServerSpec, observed: VdsAttachState): MemberPnic[] {
  const lag = lagFor(spec, observed);
  return vdsAttach(spec).uplinks.map((device, i) => (lag ? { device, uplinkPortKey: lag.uplinkPortKeys[i]! } : { device }));
}

/** How uplinks compare: pnic devices (sorted), plus the port each is bound to when LACP decides the ports. */
function uplinkView(u: MemberPnic[] | null, withPorts: boolean): string[] | null {
  if (u === null) return null;
  return u.map((p) => (withPorts ? `${p.device}@${p.uplinkPortKey ?? '?'}` : p.device)).sort();
}

function wantedVlan(spec: ServerSpec, observed: VdsAttachState): VlanSetting {
  const a = vdsAttach(spec);
  if (a.vlan !== undefined) return { kind: 'id', id: a.vlan };
  return observed.portgroup?.vlan ?? { kind: 'id', id: 0 };
}

function plan(spec: ServerSpec, observed: VdsAttachState): Change[] {
  const a = vdsAttach(spec);
  const missing = a.uplinks.filter((u) => !observed.hostPnics.includes(u));
  if (missing.length) {
    throw new UnsupportedHardwareError(`host ${observed.host} has no physical NIC ${missing.join(', ')}`, {
      host: spec.id,
      step: STEP,
      field: 'attach.uplinks',
      expected: a.uplinks,
      observed: observed.hostPnics,
    });
  }
  if (!observed.portgroup && observed.portgroupOnOtherSwitch) {
    throw new InvalidSpecError(`port group ${a.portgroup} exists on another switch (${observed.portgroupOnOtherSwitch})`, [], {
      host: spec.id,
      step: STEP,
      field: 'attach.portgroup',
      expected: `a port group of ${a.switch}`,
      observed: observed.portgroupOnOtherSwitch,
    });
  }
  const lacp = a.lacp;
  const want = wantedUplinks(spec, observed);
  const changes: Change[] = [];
  if (!observed.member) changes.push({ field: 'member', from: false, to: true });
  // Unknown backing (vCenter reports none for a member) is left alone: nothing to compare it with.
  const have = observed.member ? uplinkView(observed.uplinks, lacp) : [];
  const wanted = uplinkView(want, lacp);
  if (have !== null && JSON.stringify(have) !== JSON.stringify(wanted)) changes.push({ field: 'uplinks', from: have, to: wanted });
  const vlan = wantedVlan(spec, observed);
  if (!observed.portgroup) changes.push({ field: 'portgroup', from: null, to: { name: a.portgroup, vlan: describeVlan(vlan) } });
  else if (JSON.stringify(observed.portgroup.vlan) !== JSON.stringify(vlan))
    changes.push({ field: 'portgroup.vlan', from: describeVlan(observed.portgroup.vlan), to: describeVlan(vlan) });
  return changes;
}

async function apply(io: StepIo): Promise<void> {
  const a = vdsAttach(io.spec);
  await withVcenter(io, async (c, wait) => {
    // Re-read: the switch's configVersion must be current, and a retry may find part of the work done.
    const live = await readLive(c, io.spec);
    // LAG ports live in the switch's uplink port group: name it along with the port.
    const uplinkPortgroupKey = live.dvs.uplinkPortgroups[0]?.value;
    const want = wantedUplinks(io.spec, live.state).map((p) => (p.uplinkPortKey && uplinkPortgroupKey ? { ...p, uplinkPortgroupKey } : p));
    if (!live.state.member) {
      io.progress(`attach: adding ${live.host.name} to ${live.dvs.name} with ${a.uplinks.join(', ')}`);
      await reconfigureHostMember(c, live.dvs, 'add', live.host.ref, want, wait);
    } else if (live.state.uplinks !== null && JSON.stringify(uplinkView(live.state.uplinks, a.lacp)) !== JSON.stringify(uplinkView(want, a.lacp))) {
      io.progress(`attach: setting ${live.host.name}'s uplinks on ${live.dvs.name} to ${a.uplinks.join(', ')}`);
      await reconfigureHostMember(c, live.dvs, 'edit', live.host.ref, want, wait);
    }
    const vlan = wantedVlan(io.spec, live.state);
    if (!live.portgroup) {
      io.progress(`attach: adding port group ${a.portgroup} (${describeVlan(vlan)}) to ${live.dvs.name}`);
      await addPortgroup(c, live.dvs.ref, a.portgroup, vlan, wait);
    } else if (JSON.stringify(live.portgroup.vlan) !== JSON.stringify(vlan)) {
      io.progress(`attach: port group ${a.portgroup}: ${describeVlan(live.portgroup.vlan)} → ${describeVlan(vlan)}`);
      await setPortgroupVlan(c, live.portgroup, vlan, wait);
    }
  });
}

async function check(io: StepIo): Promise<Problem[]> {
  const now = await observe(io);
  return plan(io.spec, now).map((c) => ({ field: c.field, expected: c.to, observed: c.from }));
}

async function undo(io: StepIo, pre: VdsAttachState): Promise<void> {
  const a = vdsAttach(io.spec);
  await withVcenter(io, async (c, wait) => {
    const live = await readLive(c, io.spec);
    // The port group first: it goes with the switch, the host leaves after.
    if (!pre.portgroup && live.portgroup) {
      io.progress(`attach undo: destroying port group ${a.portgroup}`);
      await destroy(c, live.portgroup.ref, wait);
    } else if (pre.portgroup && !live.portgroup) {
      await addPortgroup(c, live.dvs.ref, a.portgroup, pre.portgroup.vlan, wait);
    } else if (pre.portgroup && live.portgroup && JSON.stringify(pre.portgroup.vlan) !== JSON.stringify(live.portgroup.vlan)) {
      await setPortgroupVlan(c, live.portgroup, pre.portgroup.vlan, wait);
    }
    if (!pre.member && live.state.member) {
      io.progress(`attach undo: removing ${live.host.name} from ${live.dvs.name}`);
      await reconfigureHostMember(c, live.dvs, 'remove', live.host.ref, undefined, wait);
    } else if (pre.member && !live.state.member) {
      await reconfigureHostMember(c, live.dvs, 'add', live.host.ref, pre.uplinks ?? [], wait);
    } else if (
      pre.member &&
      pre.uplinks &&
      live.state.uplinks &&
      JSON.stringify(uplinkView(pre.uplinks, false)) !== JSON.stringify(uplinkView(live.state.uplinks, false))
    ) {
      await reconfigureHostMember(c, live.dvs, 'edit', live.host.ref, pre.uplinks, wait);
    }
  });
}

/** What this step owns, comparably: membership, the member's pnics (when reported), the port group's VLAN. */
function view(s: VdsAttachState) {
  return { member: s.member, uplinks: uplinkView(s.uplinks, false), portgroup: s.portgroup && { vlan: s.portgroup.vlan } };
}

export const vdsAttachStep: Step<VdsAttachState> = {
  name: 'attach',
  want: wholeSpec,
  connection: 'none',
  observe,
  plan,
  apply: (io) => apply(io),
  verify: (io) => pollUntilHolds(io, 'distributed switch attach', () => check(io), { timeoutMs: 30_000, intervalMs: 1_000 }),
  undo: (io, pre) => undo(io, pre),
  diff: (a, b) => diffState(view(a), view(b)),
};
