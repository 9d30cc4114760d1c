/**
 * An ESXi host as vCenter holds it: where it sits in the inventory (datacenter, cluster), adding it (with its SSL
 * thumbprint pinned) and removing it, and its own network — standard vSwitches, port groups, VMkernel adapters,
 * the proxy switch of each distributed switch it is a member of — read and changed through its HostNetworkSystem.
 *
 * The host's network is read from two places and overlaid by key: `HostSystem.config.network` (HostNetworkInfo)
 * and `HostNetworkSystem.networkConfig` (HostNetworkConfig). On a real host both describe the current state, so the
 * overlay changes nothing; where a simulator keeps only the last HostNetworkConfig it was sent (vcsim), the overlay
 * is what a host applying that change in `modify` mode would report.
 *
 * Changes go through one `UpdateNetworkConfig(config, "modify")` — the proxy switch's pnic backing, the standard
 * vSwitches that give up those pnics, and the VMkernel adapter moved with them, together — so that vCenter can roll
 * the whole change back when the host stops answering it (`config.vpxd.network.rollback`).
 */
import { z } from 'zod';
import { InvalidSpecError, UnexpectedOutputError } from '../../common/errors';
import { el, xml, type XmlFragment } from '../../transports/soap';
import type { VsphereClient, WaitOptions } from './client';
import { intSchema, many, morSchema, parseWith, type Mor } from './schema';
import type { MemberPnic } from './dvs';

const text = z.preprocess((v) => {
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if ('#text' in o) return o['#text'];
    if (Object.keys(o).every((k) => k.startsWith('@_'))) return '';
  }
  return v;
}, z.string());
const name = text.pipe(z.string().min(1));
const obj = <T extends z.ZodRawShape>(shape: T) => z.preprocess((v) => (v === '' || v === undefined || v === null ? {} : v), z.looseObject(shape));

// ---- inventory ---------------------------------------------------------------------------------------------

export interface HostPlacement {
  datacenter: string;
  /** The cluster, or null for a standalone host (its own ComputeResource). */
  cluster: string | null;
  /** The host's parent: the ClusterComputeResource or the standalone ComputeResource. */
  computeResource: Mor;
}

/** Walks a host's `parent` chain up to its datacenter (bounded). */
export async function hostPlacement(c: VsphereClient, host: Mor): Promise<HostPlacement> {
  const parentOf = async (ref: Mor): Promise<Mor | undefined> => {
    const oc = await c.properties(ref, ['parent']);
    return oc.props.parent === undefined ? undefined : parseWith(morSchema, oc.props.parent, `${ref.type} ${ref.value} parent`, c.label);
  };
  const computeResource = await parentOf(host);
  if (!computeResource) throw new UnexpectedOutputError(`host ${host.value} has no parent`, { host: c.label, command: 'RetrievePropertiesEx parent' });
  let cluster: string | null = null;
  if (computeResource.type === 'ClusterComputeResource') cluster = await readName(c, computeResource);
  let ref: Mor | undefined = computeResource;
  for (let i = 0; i < 16 && ref; i++) {
    ref = await parentOf(ref);
    if (ref?.type === 'Datacenter') return { datacenter: await readName(c, ref), cluster, computeResource };
  }
  throw new UnexpectedOutputError(`host ${host.value} is not under a datacenter`, { host: c.label, command: 'RetrievePropertiesEx parent' });
}

async function readName(c: VsphereClient, ref: Mor): Promise<string> {
  const oc = await c.properties(ref, ['name']);
  return parseWith(name, oc.props.name, `${ref.type} ${ref.value} name`, c.label);
}

export interface HostSummary {
  ref: Mor;
  name: string;
  /** runtime.connectionState: connected, disconnected, notResponding. */
  connection: string;
  networkSystem: Mor | undefined;
}

export async function readHostSummary(c: VsphereClient, ref: Mor): Promise<HostSummary> {
  const oc = await c.properties(ref, ['name', 'runtime.connectionState', 'configManager.networkSystem']);
  const ns = oc.props['configManager.networkSystem'];
  return {
    ref,
    name: parseWith(name, oc.props.name, `HostSystem ${ref.value} name`, c.label),
    connection: parseWith(text, oc.props['runtime.connectionState'] ?? '', `HostSystem ${ref.value} runtime.connectionState`, c.label),
    networkSystem: ns === undefined ? undefined : parseWith(morSchema, ns, `HostSystem ${ref.value} configManager.networkSystem`, c.label),
  };
}

/** The datacenter of that name and its host folder (InvalidSpecError when there is none, or several). */
export async function findDatacenter(c: VsphereClient, dcName: string, label: string): Promise<{ ref: Mor; hostFolder: Mor }> {
  const all = await c.findAll('Datacenter', ['name', 'hostFolder']);
  const hits = all.filter((o) => parseWith(text, o.props.name, 'Datacenter name', c.label) === dcName);
  if (hits.length !== 1) {
    throw new InvalidSpecError(hits.length ? `${hits.length} datacenters are named ${dcName}` : `vCenter has no datacenter named ${dcName}`, [], {
      host: label,
      step: 'attach',
      field: 'attach.datacenter',
      expected: `one datacenter named ${dcName}`,
      observed: hits.length ? hits.map((h) => h.obj.value) : all.map((o) => parseWith(text, o.props.name, 'Datacenter name', c.label)),
    });
  }
  return { ref: hits[0]!.obj, hostFolder: parseWith(morSchema, hits[0]!.props.hostFolder, 'Datacenter hostFolder', c.label) };
}

/** The cluster of that name in the datacenter. */
export async function findCluster(c: VsphereClient, dcName: string, clusterName: string, label: string): Promise<Mor> {
  const hits: Mor[] = [];
  for (const o of await c.findAll('ClusterComputeResource', ['name'])) {
    if (parseWith(text, o.props.name, 'cluster name', c.label) !== clusterName) continue;
    let ref: Mor | undefined = o.obj;
    for (let i = 0; i < 16 && ref && ref.type !== 'Datacenter'; i++) {
      const p: unknown = (await c.properties(ref, ['parent'])).props.parent;
      ref = p === undefined ? undefined : parseWith(morSchema, p, 'parent', c.label);
    }
    if (ref?.type === 'Datacenter' && (await readName(c, ref)) === dcName) hits.push(o.obj);
  }
  if (hits.length !== 1) {
    throw new InvalidSpecError(
      hits.length ? `${hits.length} clusters of ${dcName} are named ${clusterName}` : `datacenter ${dcName} has no cluster named ${clusterName}`,
      [],
      {
        host: label,
        step: 'attach',
        field: 'attach.cluster',
        expected: `one cluster named ${clusterName} in ${dcName}`,
        observed: hits.map((h) => h.value),
      },
    );
  }
  return hits[0]!;
}

export interface ConnectSpec {
  hostName: string;
  port: number;
  /** SHA-1 of the host's certificate, `AA:BB:…`: vCenter connects only to a host presenting it. */
  sslThumbprint: string;
  userName: string;
  password: string;
}

/** HostConnectSpec, in the WSDL's order. `force: false`: a host managed by another vCenter is refused, not taken. */
function connectSpecXml(tag: 'spec' | 'cnxSpec', s: ConnectSpec): XmlFragment {
  const body = xml`${el('hostName', s.hostName)}${el('port', s.port)}${el('sslThumbprint', s.sslThumbprint)}${el('userName', s.userName)}${el('password', s.password)}<force>false</force>`;
  return tag === 'spec' ? xml`<spec>${body}</spec>` : xml`<cnxSpec>${body}</cnxSpec>`;
}

/** Adds the host to a cluster (AddHost_Task) or as a standalone host to a datacenter's host folder. */
export async function addHost(c: VsphereClient, where: { cluster: Mor } | { hostFolder: Mor }, s: ConnectSpec, wait: WaitOptions): Promise<void> {
  try {
    if ('cluster' in where) {
      await c.runTask('AddHost_Task', where.cluster, [connectSpecXml('spec', s), el('asConnected', true)], wait);
    } else {
      await c.runTask('AddStandaloneHost_Task', where.hostFolder, [connectSpecXml('spec', s), el('addConnected', true)], wait);
    }
  } catch (e) {
    maskPassword(e, s.password);
    throw e;
  }
}

/** Reconnects a disconnected host, with the same pinned thumbprint and credentials. */
export async function reconnectHost(c: VsphereClient, host: Mor, s: ConnectSpec, wait: WaitOptions): Promise<void> {
  try {
    await c.runTask('ReconnectHost_Task', host, [connectSpecXml('cnxSpec', s)], wait);
  } catch (e) {
    maskPassword(e, s.password);
    throw e;
  }
}

/**
 * Removes the host from vCenter: a cluster member enters maintenance mode first (vCenter removes only hosts in
 * maintenance mode or disconnected from a cluster), a standalone host goes with its ComputeResource.
 */
export async function removeHost(c: VsphereClient, host: Mor, placement: HostPlacement, wait: WaitOptions): Promise<void> {
  if (placement.cluster !== null) {
    await c.runTask('EnterMaintenanceMode_Task', host, [el('timeout', 0), el('evacuatePoweredOffVms', false)], wait);
    await c.runTask('Destroy_Task', host, [], wait);
  } else {
    await c.runTask('Destroy_Task', placement.computeResource, [], wait);
  }
}

/** A password vCenter echoed in a fault (it should not; if it does, it goes no further). */
function maskPassword(e: unknown, password: string): void {
  if (!(e instanceof Error) || password.length < 1) return;
  const mask = (s: string) => s.split(password).join('***');
  e.message = mask(e.message);
  if (e.stack) e.stack = mask(e.stack);
  const ctx = (e as { context?: Record<string, unknown> }).context;
  if (ctx) for (const [k, v] of Object.entries(ctx)) if (typeof v === 'string') ctx[k] = mask(v);
}

// ---- the host's network -------------------------------------------------------------------------------------

export interface VswitchInfo {
  name: string;
  /** The bridge's pnics (its uplinks). */
  nics: string[];
  active: string[];
  standby: string[];
  numPorts: number;
  mtu?: number;
}

export interface VnicInfo {
  device: string;
  /** The standard port group it is on, or null when it is on a distributed port. */
  portgroup: string | null;
  dvPort?: { switchUuid: string; portgroupKey: string };
}

export interface HostNetwork {
  pnics: string[];
  vswitches: VswitchInfo[];
  portgroups: Array<{ name: string; vswitch: string }>;
  vnics: VnicInfo[];
  /** Proxy switches by distributed switch uuid: the pnic backing. */
  proxies: Record<string, MemberPnic[]>;
  /** config.network alone (on a real host the same as the overlay). */
  base: { vswitches: VswitchInfo[]; vnics: VnicInfo[] };
}

const PnicSpec = z.looseObject({ pnicDevice: name, uplinkPortKey: text.optional(), uplinkPortgroupKey: text.optional() });
const VswitchSchema = z.looseObject({
  name,
  changeOperation: text.optional(),
  spec: obj({
    numPorts: intSchema.optional(),
    mtu: intSchema.optional(),
    bridge: obj({ nicDevice: many(text) }).optional(),
    policy: obj({ nicTeaming: obj({ nicOrder: obj({ activeNic: many(text), standbyNic: many(text) }).optional() }).optional() }).optional(),
  }).optional(),
});
const PortgroupSchema = z.looseObject({ changeOperation: text.optional(), spec: z.looseObject({ name, vswitchName: text }) });
const VnicSchema = z.looseObject({
  device: name,
  changeOperation: text.optional(),
  portgroup: text.optional(),
  spec: obj({
    portgroup: text.optional(),
    distributedVirtualPort: z.looseObject({ switchUuid: name, portgroupKey: text.optional() }).optional(),
  }).optional(),
});
const ProxySchema = z.looseObject({
  dvsUuid: text.optional(),
  uuid: text.optional(),
  changeOperation: text.optional(),
  spec: obj({ backing: obj({ pnicSpec: many(PnicSpec) }).optional() }).optional(),
});
const NetworkSchema = obj({
  vswitch: many(VswitchSchema),
  portgroup: many(PortgroupSchema),
  vnic: many(VnicSchema),
  proxySwitch: many(ProxySchema),
  pnic: many(z.looseObject({ device: name })),
});

type Parsed = z.output<typeof NetworkSchema>;

function vswitchInfo(v: z.output<typeof VswitchSchema>): VswitchInfo {
  const nics = v.spec?.bridge?.nicDevice.filter(Boolean) ?? [];
  const order = v.spec?.policy?.nicTeaming?.nicOrder;
  return {
    name: v.name,
    nics,
    active: order?.activeNic.filter(Boolean) ?? nics,
    standby: order?.standbyNic.filter(Boolean) ?? [],
    numPorts: v.spec?.numPorts ?? 128,
    ...(v.spec?.mtu ? { mtu: v.spec.mtu } : {}),
  };
}

function vnicInfo(v: z.output<typeof VnicSchema>): VnicInfo {
  const dv = v.spec?.distributedVirtualPort;
  if (dv) return { device: v.device, portgroup: null, dvPort: { switchUuid: dv.switchUuid, portgroupKey: dv.portgroupKey ?? '' } };
  return { device: v.device, portgroup: v.portgroup || v.spec?.portgroup || null };
}

function pnics(p: z.output<typeof ProxySchema>): MemberPnic[] {
  return (p.spec?.backing?.pnicSpec ?? []).map((s) => ({
    device: s.pnicDevice,
    ...(s.uplinkPortKey ? { uplinkPortKey: s.uplinkPortKey } : {}),
    ...(s.uplinkPortgroupKey ? { uplinkPortgroupKey: s.uplinkPortgroupKey } : {}),
  }));
}

/** Entries of `over` replace those of `base` with the same key; `remove` operations delete them. */
function overlay<T>(base: T[], over: T[], key: (t: T) => string, removed: (t: T) => boolean): T[] {
  const out = new Map(base.map((b) => [key(b), b]));
  for (const o of over) {
    if (removed(o)) out.delete(key(o));
    else out.set(key(o), o);
  }
  return [...out.values()];
}

export function hostNetworkOf(info: Parsed, config: Parsed): HostNetwork {
  const isRemove = (o: { changeOperation?: string }) => o.changeOperation === 'remove';
  const vswitches = overlay(info.vswitch, config.vswitch, (v) => v.name, isRemove).map(vswitchInfo);
  const portgroups = overlay(info.portgroup, config.portgroup, (p) => p.spec.name, isRemove).map((p) => ({ name: p.spec.name, vswitch: p.spec.vswitchName }));
  const vnics = overlay(info.vnic, config.vnic, (v) => v.device, isRemove).map(vnicInfo);
  const proxies: Record<string, MemberPnic[]> = {};
  for (const p of overlay(info.proxySwitch, config.proxySwitch, (x) => x.dvsUuid ?? x.uuid ?? '', isRemove)) {
    const uuid = p.dvsUuid ?? p.uuid;
    if (uuid) proxies[uuid] = pnics(p);
  }
  return {
    pnics: info.pnic.map((p) => p.device),
    vswitches,
    portgroups,
    vnics,
    proxies,
    base: { vswitches: info.vswitch.map(vswitchInfo), vnics: info.vnic.map(vnicInfo) },
  };
}

/** The host's network: config.network overlaid with its HostNetworkSystem's networkConfig. */
export async function readHostNetwork(c: VsphereClient, host: HostSummary): Promise<HostNetwork> {
  const oc = await c.properties(host.ref, ['config.network']);
  const info = parseWith(NetworkSchema, oc.props['config.network'], `HostSystem ${host.ref.value} config.network`, c.label);
  let config = parseWith(NetworkSchema, undefined, 'empty', c.label);
  if (host.networkSystem) {
    const ns = await c.properties(host.networkSystem, ['networkConfig']);
    config = parseWith(NetworkSchema, ns.props.networkConfig, `HostNetworkSystem ${host.networkSystem.value} networkConfig`, c.label);
  }
  return hostNetworkOf(info, config);
}

export interface NetworkChange {
  /** Standard vSwitches whose uplinks (and failover order) change. */
  vswitches: VswitchInfo[];
  /** The proxy switch of a distributed switch, with its pnic backing. */
  proxy?: { uuid: string; pnics: MemberPnic[] };
  /** VMkernel adapters moved: onto a distributed port group, or onto a standard port group by name. */
  vnics: Array<{ device: string; to: { switchUuid: string; portgroupKey: string } | { portgroup: string } }>;
}

/** The HostNetworkConfig of a change, in the WSDL's element order (vswitch, proxySwitch, portgroup, pnic, vnic). */
export function networkConfigXml(ch: NetworkChange): XmlFragment {
  const vswitches = ch.vswitches.map((v) => {
    const bridge = v.nics.length ? xml`<bridge xsi:type="HostVirtualSwitchBondBridge">${v.nics.map((n) => el('nicDevice', n))}</bridge>` : xml``;
    const order = xml`<nicOrder>${v.active.map((n) => el('activeNic', n))}${v.standby.map((n) => el('standbyNic', n))}</nicOrder>`;
    return xml`<vswitch><changeOperation>edit</changeOperation>${el('name', v.name)}<spec>${el('numPorts', v.numPorts)}${bridge}<policy><nicTeaming>${order}</nicTeaming></policy>${el('mtu', v.mtu)}</spec></vswitch>`;
  });
  const proxy = ch.proxy
    ? xml`<proxySwitch><changeOperation>edit</changeOperation>${el('uuid', ch.proxy.uuid)}<spec><backing xsi:type="DistributedVirtualSwitchHostMemberPnicBacking">${ch.proxy.pnics.map(
        (p) => xml`<pnicSpec>${el('pnicDevice', p.device)}${el('uplinkPortKey', p.uplinkPortKey)}${el('uplinkPortgroupKey', p.uplinkPortgroupKey)}</pnicSpec>`,
      )}</backing></spec></proxySwitch>`
    : xml``;
  const vnics = ch.vnics.map((v) =>
    'switchUuid' in v.to
      ? xml`<vnic><changeOperation>edit</changeOperation>${el('device', v.device)}<portgroup></portgroup><spec><distributedVirtualPort>${el('switchUuid', v.to.switchUuid)}${el('portgroupKey', v.to.portgroupKey)}</distributedVirtualPort></spec></vnic>`
      : xml`<vnic><changeOperation>edit</changeOperation>${el('device', v.device)}${el('portgroup', v.to.portgroup)}<spec>${el('portgroup', v.to.portgroup)}</spec></vnic>`,
  );
  return xml`<config>${vswitches}${proxy}${vnics}</config>`;
}

/** One UpdateNetworkConfig in `modify` mode (synchronous: it answers when the host has applied it). */
export async function updateNetworkConfig(c: VsphereClient, networkSystem: Mor, ch: NetworkChange): Promise<void> {
  await c.invoke('UpdateNetworkConfig', networkSystem, [networkConfigXml(ch), el('changeMode', 'modify')]);
}
