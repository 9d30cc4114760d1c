/**
 * Step 6 for ESXi, network attach through vCenter (its SOAP API, src/drivers/vsphere; no SSH), in this order:
 *
 *   1. **Join vCenter.** The host (named `management.address`, as vCenter names hosts by what they were added
 *      under) is added to `attach.datacenter` / `attach.cluster` when vCenter lacks it — `AddHost_Task` or
 *      `AddStandaloneHost_Task`, with the SHA-1 thumbprint of `hypervisor.hostCertificate` pinned, so vCenter
 *      connects only to the host presenting the certificate its kickstart installed (root password by reference).
 *      A host vCenter has elsewhere is refused, never moved; a disconnected one is reconnected with the same pin.
 *   2. **Port group** `attach.portgroup` with `attach.vlan` on the switch (created or retagged).
 *   3. **Member** of the distributed switch (`ReconfigureDvs_Task` add), with the uplinks no standard vSwitch uses.
 *   4. **Host network, in one change** (`UpdateNetworkConfig`, modify): the proxy switch gets all of
 *      `attach.uplinks`, the standard vSwitches give up the ones they had, and `attach.migrateVmk` (vmk0) moves
 *      onto the port group — together, so vCenter's network rollback (`config.vpxd.network.rollback`, on unless
 *      switched off) undoes all of it if the host stops answering vCenter. The step refuses (before any change)
 *      when that rollback is off, and when the change would leave a VMkernel adapter on a vSwitch with no uplink.
 *   5. **Verify**: the plan is empty, vCenter has the host connected, and the host still answers its own API over
 *      the pinned certificate.
 *
 * Undo goes back to the observed pre-state in reverse: host network (VMkernel adapter, vSwitch uplinks, proxy
 * backing), port group, membership, and the host leaves vCenter only if this step added it.
 *
 * LACP (`attach.lacp`): a LAG is switch-wide configuration (every host on the switch gets its ports), so this step
 * does not create one; it requires the switch to have exactly one LAG and binds the uplinks to the LAG's ports.
 */
import {
  HostKeyMismatchError,
  InvalidSpecError,
  LockoutRiskError,
  UnsupportedHardwareError,
  UnsupportedPlatformError,
  VerificationError,
} from '../../common/errors';
import type { AttachSpec, ServerSpec } from '../../spec/server';
import { VsphereClient, type WaitOptions } from '../../drivers/vsphere/client';
import {
  addPortgroup,
  describeVlan,
  destroy,
  findByName,
  readDvs,
  readName,
  readPortgroup,
  reconfigureHostMember,
  setPortgroupVlan,
  type DvsInfo,
  type Lag,
  type MemberPnic,
  type PortgroupInfo,
  type VlanSetting,
} from '../../drivers/vsphere/dvs';
import {
  addHost,
  findCluster,
  findDatacenter,
  hostPlacement,
  readHostNetwork,
  readHostSummary,
  reconnectHost,
  removeHost,
  updateNetworkConfig,
  type ConnectSpec,
  type HostNetwork,
  type HostSummary,
  type NetworkChange,
  type VswitchInfo,
} from '../../drivers/vsphere/host';
import { probeHostApi } from '../../drivers/vsphere/host-api';
import type { Mor } from '../../drivers/vsphere/schema';
import { SoapFaultError } from '../../transports/soap';
import { loadPinnedCertificate, sha1Thumbprint } from '../../transports/pinned-tls';
import { diffState } from '../diff';
import { pollUntilHolds, type Problem } from '../poll';
import { wholeSpec, type Change, type Step, type StepIo } from '../step';
import { rootPassword } from './media';

export type VdsAttachSpec = Extract<AttachSpec, { kind: 'vds' }>;

/** Where a VMkernel adapter is attached. */
export type VmkPlacement =
  { kind: 'standard'; portgroup: string } | { kind: 'distributed'; switchUuid: string; portgroupKey: string; portgroup: string | null } | { kind: 'absent' };

export interface VdsAttachState {
  switch: string;
  /** The host's name in vCenter (= management.address). */
  host: string;
  /** Where vCenter has the host, or null when vCenter has no host of that name. */
  inventory: { datacenter: string; cluster: string | null; connection: string } | null;
  /** Whether the host is a member of the switch (summary.hostMember). */
  member: boolean;
  /**
   * The member's pnics with the uplink ports they are bound to: the host's proxy switch for this switch, else the
   * switch's config.host backing. [] when the host is not a member; null when neither reports them.
   */
  uplinks: MemberPnic[] | null;
  /** The spec's port group on this switch, or null when the switch has none of that name. */
  portgroup: { vlan: VlanSetting } | null;
  /** Where attach.migrateVmk is (null: not asked for, or the host is not in vCenter yet). */
  vmk: VmkPlacement | null;
  /** The host's standard vSwitches (their uplinks and failover order): they give up the pnics the switch takes. */
  vswitches: VswitchInfo[];
  /** Facts plan and apply need, not state this step owns (diff ignores them): */
  hostPnics: string[];
  lags: Lag[];
  /** Which VMkernel adapters are on which standard vSwitch (the lockout guard). */
  vmkOnVswitch: Record<string, string>;
  /** vCenter's `config.vpxd.network.rollback` (true unless switched off). */
  rollback: boolean;
  /** The switch a port group of the spec's name belongs to, when it is another switch. */
  portgroupOnOtherSwitch?: string;
}

const STEP = 'attach' as const;
const TASK_TIMEOUT_MS = 120_000;
const API_TIMEOUT_MS = 5_000;
/** The vCenter setting that makes it undo host network changes that cut it off from the host. */
export const ROLLBACK_SETTING = 'config.vpxd.network.rollback';

function vdsAttach(spec: ServerSpec): VdsAttachSpec {
  const a = spec.attach;
  if (a?.kind !== 'vds' || spec.hypervisor.kind !== 'esxi') {
    throw new UnsupportedPlatformError('the ESXi attach step drives a vSphere Distributed Switch only', {
      host: spec.id,
      step: STEP,
      field: 'attach.kind',
      expected: 'vds (hypervisor esxi)',
      observed: `${a?.kind ?? 'none'} (hypervisor ${spec.hypervisor.kind})`,
    });
  }
  return a;
}

function esxiOf(spec: ServerSpec) {
  if (spec.hypervisor.kind !== 'esxi') throw new Error('unreachable: vdsAttach checked the hypervisor');
  return spec.hypervisor;
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
    { host: spec.id, step: STEP, field, expected: `one ${what} named ${name}`, observed: found.length ? found.map((f) => f.value) : 'none' },
  );
}

interface Live {
  dvs: DvsInfo;
  host: HostSummary | null;
  net: HostNetwork | null;
  portgroup: PortgroupInfo | null;
  state: VdsAttachState;
}

function placementOf(net: HostNetwork, device: string, dvs: DvsInfo, pg: PortgroupInfo | null): VmkPlacement {
  const v = net.vnics.find((n) => n.device === device);
  if (!v) return { kind: 'absent' };
  if (v.dvPort) {
    const here = v.dvPort.switchUuid === dvs.uuid && pg && v.dvPort.portgroupKey === pg.key;
    return { kind: 'distributed', switchUuid: v.dvPort.switchUuid, portgroupKey: v.dvPort.portgroupKey, portgroup: here ? pg.name : null };
  }
  return { kind: 'standard', portgroup: v.portgroup ?? '' };
}

async function readLive(c: VsphereClient, spec: ServerSpec): Promise<Live> {
  const a = vdsAttach(spec);
  const dvs = await readDvs(c, await findOne(c, spec, 'DistributedVirtualSwitch', a.switch, 'attach.switch', 'distributed switch'));
  const hosts = await findByName(c, 'HostSystem', spec.management.address);
  if (hosts.length > 1) await findOne(c, spec, 'HostSystem', spec.management.address, 'management.address', 'host'); // throws: ambiguous
  let portgroup: PortgroupInfo | null = null;
  let elsewhere: string | undefined;
  for (const ref of await findByName(c, 'DistributedVirtualPortgroup', a.portgroup)) {
    const pg = await readPortgroup(c, ref);
    if (pg.switch.value === dvs.ref.value) portgroup = pg;
    else elsewhere = await readName(c, pg.switch);
  }
  const rollback = (await c.option(ROLLBACK_SETTING)) !== 'false';
  const common = {
    switch: dvs.name,
    host: spec.management.address,
    portgroup: portgroup && { vlan: portgroup.vlan },
    lags: dvs.lags,
    rollback,
    ...(elsewhere && !portgroup ? { portgroupOnOtherSwitch: elsewhere } : {}),
  };
  if (!hosts.length) {
    const state: VdsAttachState = { ...common, inventory: null, member: false, uplinks: [], vmk: null, vswitches: [], hostPnics: [], vmkOnVswitch: {} };
    return { dvs, host: null, net: null, portgroup, state };
  }
  const host = await readHostSummary(c, hosts[0]!);
  const where = await hostPlacement(c, host.ref);
  const net = await readHostNetwork(c, host);
  const member = dvs.members.some((m) => m.value === host.ref.value);
  const vmkOnVswitch: Record<string, string> = {};
  for (const v of net.vnics) {
    const pg = v.portgroup ? net.portgroups.find((p) => p.name === v.portgroup) : undefined;
    if (pg) vmkOnVswitch[v.device] = pg.vswitch;
  }
  const state: VdsAttachState = {
    ...common,
    inventory: { datacenter: where.datacenter, cluster: where.cluster, connection: host.connection },
    member,
    uplinks: member ? (net.proxies[dvs.uuid] ?? dvs.backing[host.ref.value] ?? null) : [],
    vmk: a.migrateVmk ? placementOf(net, a.migrateVmk, dvs, portgroup) : null,
    vswitches: net.vswitches,
    hostPnics: net.pnics,
    vmkOnVswitch,
  };
  return { dvs, host, net, portgroup, state };
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

/** A standard vSwitch without the pnics the distributed switch takes (its failover order too). */
function release(v: VswitchInfo, taken: Set<string>): VswitchInfo {
  const nics = v.nics.filter((n) => !taken.has(n));
  const active = v.active.filter((n) => !taken.has(n));
  const standby = v.standby.filter((n) => !taken.has(n));
  return { ...v, nics, active: active.length || !nics.length ? active : nics.filter((n) => !standby.includes(n)), standby };
}

/** The standard vSwitches once the switch has taken the spec's uplinks (only those that change). */
function releasedVswitches(spec: ServerSpec, o: VdsAttachState): VswitchInfo[] {
  const taken = new Set(vdsAttach(spec).uplinks);
  return o.vswitches.filter((v) => v.nics.some((n) => taken.has(n))).map((v) => release(v, taken));
}

function describePlacement(p: VmkPlacement | null): string {
  if (!p) return 'unknown (the host is not in vCenter yet)';
  if (p.kind === 'absent') return 'absent';
  if (p.kind === 'standard') return `standard port group ${p.portgroup}`;
  return p.portgroup ? `distributed port group ${p.portgroup}` : `distributed port group ${p.portgroupKey} of switch ${p.switchUuid}`;
}

function plan(spec: ServerSpec, o: VdsAttachState): Change[] {
  const a = vdsAttach(spec);
  const ctx = { host: spec.id, step: STEP };
  const placeWanted = `${a.datacenter}/${a.cluster ?? '(standalone)'}`;
  if (o.inventory && (o.inventory.datacenter !== a.datacenter || o.inventory.cluster !== (a.cluster ?? null))) {
    throw new InvalidSpecError(`vCenter has ${o.host} in another place than the spec (this step adds hosts; it does not move them)`, [], {
      ...ctx,
      field: a.cluster ? 'attach.cluster' : 'attach.datacenter',
      expected: placeWanted,
      observed: `${o.inventory.datacenter}/${o.inventory.cluster ?? '(standalone)'}`,
    });
  }
  const missing = o.inventory ? a.uplinks.filter((u) => !o.hostPnics.includes(u)) : [];
  if (missing.length) {
    throw new UnsupportedHardwareError(`host ${o.host} has no physical NIC ${missing.join(', ')}`, {
      ...ctx,
      field: 'attach.uplinks',
      expected: a.uplinks,
      observed: o.hostPnics,
    });
  }
  if (!o.portgroup && o.portgroupOnOtherSwitch) {
    throw new InvalidSpecError(`port group ${a.portgroup} exists on another switch (${o.portgroupOnOtherSwitch})`, [], {
      ...ctx,
      field: 'attach.portgroup',
      expected: `a port group of ${a.switch}`,
      observed: o.portgroupOnOtherSwitch,
    });
  }
  const changes: Change[] = [];
  if (!o.inventory) changes.push({ field: 'inventory', from: null, to: `${placeWanted} (SSL thumbprint pinned)` });
  else if (o.inventory.connection !== 'connected') changes.push({ field: 'connection', from: o.inventory.connection, to: 'connected' });
  if (!o.member) changes.push({ field: 'member', from: false, to: true });
  const want = wantedUplinks(spec, o);
  // Unknown backing (neither the host nor the switch reports it) is left alone: nothing to compare it with.
  const have = o.member ? uplinkView(o.uplinks, a.lacp) : [];
  const wanted = uplinkView(want, a.lacp);
  if (have !== null && JSON.stringify(have) !== JSON.stringify(wanted)) changes.push({ field: 'uplinks', from: have, to: wanted });
  const vlan = wantedVlan(spec, o);
  if (!o.portgroup) changes.push({ field: 'portgroup', from: null, to: { name: a.portgroup, vlan: describeVlan(vlan) } });
  else if (JSON.stringify(o.portgroup.vlan) !== JSON.stringify(vlan))
    changes.push({ field: 'portgroup.vlan', from: describeVlan(o.portgroup.vlan), to: describeVlan(vlan) });
  const released = releasedVswitches(spec, o);
  for (const v of released) {
    const before = o.vswitches.find((x) => x.name === v.name)!;
    changes.push({ field: `vswitch.${v.name}.uplinks`, from: before.nics, to: v.nics });
  }
  const vmkMoves = a.migrateVmk !== undefined && !(o.vmk?.kind === 'distributed' && o.vmk.portgroup === a.portgroup);
  if (a.migrateVmk && vmkMoves) changes.push({ field: `vmk.${a.migrateVmk}`, from: describePlacement(o.vmk), to: `distributed port group ${a.portgroup}` });

  // Guards, before anything changes: a VMkernel adapter must keep an uplink, and vCenter must be able to roll back.
  const stranded = Object.entries(o.vmkOnVswitch).filter(([vmk, vs]) => vmk !== a.migrateVmk && released.some((r) => r.name === vs && !r.nics.length));
  if (stranded.length) {
    throw new LockoutRiskError(`taking ${a.uplinks.join(', ')} would leave ${stranded.map(([vmk, vs]) => `${vmk} on ${vs}`).join(', ')} without an uplink`, {
      ...ctx,
      field: 'attach.uplinks',
      expected: `every VMkernel adapter keeps an uplink (or moves along: attach.migrateVmk)`,
      observed: stranded.map(([vmk, vs]) => `${vmk} on ${vs}, uplinks ${o.vswitches.find((v) => v.name === vs)?.nics.join(',') ?? '?'}`),
    });
  }
  if ((released.length || (a.migrateVmk && vmkMoves)) && !o.rollback) {
    throw new LockoutRiskError(`vCenter's network rollback is switched off: not moving the host's management network without it`, {
      ...ctx,
      field: 'attach.migrateVmk',
      expected: `${ROLLBACK_SETTING} = true (vCenter's default)`,
      observed: 'false',
    });
  }
  return changes;
}

function connectSpec(spec: ServerSpec, password: string, thumbprint: string): ConnectSpec {
  return { hostName: spec.management.address, port: esxiOf(spec).apiPort, sslThumbprint: thumbprint, userName: 'root', password };
}

async function thumbprintOf(spec: ServerSpec): Promise<string> {
  const x509 = await loadPinnedCertificate(esxiOf(spec).hostCertificate, spec.id, 'hypervisor.hostCertificate');
  return sha1Thumbprint(x509.raw);
}

/**
 * The HostNetworkSystem change that puts the host's network where the spec wants it, whole: the proxy backing, the
 * VMkernel adapter's port, and every standard vSwitch holding one of the uplinks — in the host's config.network or
 * in what it was last sent. (On a real host both are the same, so only vSwitches that change are sent; a host that
 * keeps just the last config it was sent — vcsim — gets the whole change again, so it stays whole.)
 */
function forwardChange(spec: ServerSpec, live: Live, uplinkPortgroupKey: string | undefined): NetworkChange {
  const a = vdsAttach(spec);
  const taken = new Set(a.uplinks);
  const pnics = wantedUplinks(spec, live.state).map((p) => (p.uplinkPortKey && uplinkPortgroupKey ? { ...p, uplinkPortgroupKey } : p));
  const holding = new Set([...live.state.vswitches, ...(live.net?.base.vswitches ?? [])].filter((v) => v.nics.some((n) => taken.has(n))).map((v) => v.name));
  return {
    vswitches: live.state.vswitches.filter((v) => holding.has(v.name)).map((v) => release(v, taken)),
    proxy: { uuid: live.dvs.uuid, pnics },
    vnics: a.migrateVmk && live.portgroup ? [{ device: a.migrateVmk, to: { switchUuid: live.dvs.uuid, portgroupKey: live.portgroup.key } }] : [],
  };
}

function hostNetworkDiffers(spec: ServerSpec, o: VdsAttachState): boolean {
  return plan(spec, o).some((c) => c.field === 'uplinks' || c.field.startsWith('vswitch.') || c.field.startsWith('vmk.'));
}

async function applyNetwork(c: VsphereClient, io: StepIo, live: Live, change: NetworkChange, what: string): Promise<void> {
  if (!live.host?.networkSystem) {
    throw new UnsupportedPlatformError(`vCenter reports no network system for ${live.state.host}`, {
      host: io.spec.id,
      step: STEP,
      field: 'configManager.networkSystem',
    });
  }
  io.progress(`attach: ${what}`);
  try {
    await updateNetworkConfig(c, live.host.networkSystem, change);
  } catch (e) {
    if (e instanceof SoapFaultError && e.fault === 'NetworkDisruptedAndConfigRolledBack') {
      throw new VerificationError(`vCenter lost the host during the network change and rolled it back`, {
        host: io.spec.id,
        step: STEP,
        field: 'attach.uplinks',
        expected: `${live.state.host} reachable from vCenter after: ${what}`,
        observed: 'NetworkDisruptedAndConfigRolledBack',
      });
    }
    throw e;
  }
}

async function apply(io: StepIo): Promise<void> {
  const a = vdsAttach(io.spec);
  await withVcenter(io, async (c, wait) => {
    // Re-read: the switch's configVersion must be current, and a retry may find part of the work done.
    let live = await readLive(c, io.spec);
    plan(io.spec, live.state); // the guards, on what is there now
    if (!live.host || live.state.inventory?.connection !== 'connected') {
      const cs = connectSpec(io.spec, await rootPassword(io.spec, esxiOf(io.spec)), await thumbprintOf(io.spec));
      if (!live.host) {
        io.progress(`attach: adding ${cs.hostName} to ${a.datacenter}/${a.cluster ?? '(standalone)'} (SSL thumbprint ${cs.sslThumbprint})`);
        const where = a.cluster
          ? { cluster: await findCluster(c, a.datacenter, a.cluster, io.spec.id) }
          : { hostFolder: (await findDatacenter(c, a.datacenter, io.spec.id)).hostFolder };
        await addHost(c, where, cs, wait);
      } else {
        io.progress(`attach: reconnecting ${cs.hostName} (${live.state.inventory?.connection})`);
        await reconnectHost(c, live.host.ref, cs, wait);
      }
      live = await readLive(c, io.spec);
      plan(io.spec, live.state); // the guards again, now that the host's network can be read
    }
    const host = live.host!;
    const vlan = wantedVlan(io.spec, live.state);
    if (!live.portgroup) {
      io.progress(`attach: adding port group ${a.portgroup} (${describeVlan(vlan)}) to ${live.dvs.name}`);
      await addPortgroup(c, live.dvs.ref, a.portgroup, vlan, wait);
    } else if (JSON.stringify(live.portgroup.vlan) !== JSON.stringify(vlan)) {
      io.progress(`attach: port group ${a.portgroup}: ${describeVlan(live.portgroup.vlan)} → ${describeVlan(vlan)}`);
      await setPortgroupVlan(c, live.portgroup, vlan, wait);
    }
    if (!live.state.member) {
      // Join with the uplinks no standard vSwitch uses; the others move in the host network change below.
      const used = new Set(live.state.vswitches.flatMap((v) => v.nics));
      const uplinkPortgroupKey = live.dvs.uplinkPortgroups[0]?.value;
      const free = wantedUplinks(io.spec, live.state)
        .filter((p) => !used.has(p.device))
        .map((p) => (p.uplinkPortKey && uplinkPortgroupKey ? { ...p, uplinkPortgroupKey } : p));
      io.progress(`attach: adding ${host.name} to ${live.dvs.name}${free.length ? ` with ${free.map((p) => p.device).join(', ')}` : ''}`);
      await reconfigureHostMember(c, live.dvs, 'add', host.ref, free, wait);
    }
    live = await readLive(c, io.spec);
    if (hostNetworkDiffers(io.spec, live.state)) {
      const change = forwardChange(io.spec, live, live.dvs.uplinkPortgroups[0]?.value);
      const moves = [
        `uplinks ${a.uplinks.join(', ')} → ${live.dvs.name}`,
        ...change.vswitches.map((v) => `${v.name} keeps ${v.nics.join(', ') || 'no uplink'}`),
        ...change.vnics.map((v) => `${v.device} → ${a.portgroup}`),
      ];
      await applyNetwork(c, io, live, change, moves.join('; '));
    }
  });
}

async function check(io: StepIo): Promise<Problem[]> {
  const esxi = esxiOf(io.spec);
  const problems: Problem[] = [];
  const now = await observe(io);
  problems.push(...plan(io.spec, now).map((c) => ({ field: c.field, expected: c.to, observed: c.from })));
  // The host must still answer: vCenter has it connected, and its own API answers over the pinned certificate.
  const api = await probeHostApi({ address: io.spec.management.address, port: esxi.apiPort, pin: esxi.hostCertificate, label: io.spec.id }, API_TIMEOUT_MS);
  if (api.state === 'untrusted') {
    throw new HostKeyMismatchError(`${io.spec.management.address}:${esxi.apiPort} answers with another certificate than the pinned one`, {
      host: io.spec.id,
      step: STEP,
      field: 'hypervisor.hostCertificate',
      expected: esxi.hostCertificate.fingerprint,
      observed: api.reason,
    });
  }
  if (api.state !== 'answers')
    problems.push({ field: 'host API', expected: `answering on ${io.spec.management.address}:${esxi.apiPort}`, observed: api.reason });
  return problems;
}

/** The HostNetworkSystem change back to the pre-state's VMkernel adapter, vSwitch uplinks and proxy backing. */
function backwardChange(spec: ServerSpec, pre: VdsAttachState, live: Live): NetworkChange | null {
  const a = vdsAttach(spec);
  const now = live.state;
  const vswitches = pre.vswitches.filter((p) => {
    const n = now.vswitches.find((v) => v.name === p.name);
    return n && JSON.stringify([n.nics, n.active, n.standby]) !== JSON.stringify([p.nics, p.active, p.standby]);
  });
  const vnics: NetworkChange['vnics'] = [];
  if (a.migrateVmk && pre.vmk && JSON.stringify(pre.vmk) !== JSON.stringify(now.vmk)) {
    if (pre.vmk.kind === 'standard') vnics.push({ device: a.migrateVmk, to: { portgroup: pre.vmk.portgroup } });
    else if (pre.vmk.kind === 'distributed') vnics.push({ device: a.migrateVmk, to: { switchUuid: pre.vmk.switchUuid, portgroupKey: pre.vmk.portgroupKey } });
  }
  // Not a member before: the proxy gives every pnic back before the host leaves the switch.
  const prePnics = pre.member ? pre.uplinks : [];
  const proxyDiffers = now.member && prePnics !== null && JSON.stringify(uplinkView(prePnics, false)) !== JSON.stringify(uplinkView(now.uplinks, false));
  if (!vswitches.length && !vnics.length && !proxyDiffers) return null;
  return { vswitches, ...(now.member && prePnics ? { proxy: { uuid: live.dvs.uuid, pnics: prePnics } } : {}), vnics };
}

async function undo(io: StepIo, pre: VdsAttachState): Promise<void> {
  const a = vdsAttach(io.spec);
  await withVcenter(io, async (c, wait) => {
    let live = await readLive(c, io.spec);
    if (live.host) {
      const back = backwardChange(io.spec, pre, live);
      if (back) await applyNetwork(c, io, live, back, `undo: host network back to its pre-state`);
      live = await readLive(c, io.spec);
    }
    // The port group next: it goes with the switch, the host leaves after.
    if (!pre.portgroup && live.portgroup) {
      io.progress(`attach undo: destroying port group ${a.portgroup}`);
      await destroy(c, live.portgroup.ref, wait);
    } else if (pre.portgroup && !live.portgroup) {
      await addPortgroup(c, live.dvs.ref, a.portgroup, pre.portgroup.vlan, wait);
    } else if (pre.portgroup && live.portgroup && JSON.stringify(pre.portgroup.vlan) !== JSON.stringify(live.portgroup.vlan)) {
      await setPortgroupVlan(c, live.portgroup, pre.portgroup.vlan, wait);
    }
    if (live.host) {
      if (!pre.member && live.state.member) {
        io.progress(`attach undo: removing ${live.host.name} from ${live.dvs.name}`);
        await reconfigureHostMember(c, live.dvs, 'remove', live.host.ref, undefined, wait);
      } else if (pre.member && !live.state.member) {
        await reconfigureHostMember(c, live.dvs, 'add', live.host.ref, pre.uplinks ?? [], wait);
      }
      // vCenter keeps the host unless this step added it.
      if (!pre.inventory) {
        const placement = await hostPlacement(c, live.host.ref);
        io.progress(`attach undo: removing ${live.host.name} from vCenter (underlay added it)`);
        await removeHost(c, live.host.ref, placement, wait);
      }
    }
  });
}

/** What this step owns, comparably: vCenter inventory, membership, pnics, port group VLAN, vSwitch uplinks, vmk. */
function view(s: VdsAttachState) {
  return {
    inventory: s.inventory && { datacenter: s.inventory.datacenter, cluster: s.inventory.cluster },
    member: s.member,
    uplinks: uplinkView(s.uplinks, false),
    portgroup: s.portgroup && { vlan: s.portgroup.vlan },
    vswitches: Object.fromEntries(s.vswitches.map((v) => [v.name, [...v.nics].sort()])),
    vmk: s.vmk,
  };
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
