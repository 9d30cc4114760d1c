/**
 * vSphere Distributed Switch operations: find switches, hosts and port groups by name; read a switch's host
 * members (with the pnics backing them, when vCenter reports them), its uplink port groups and LACP groups
 * (LAGs); add / edit / remove a host member (ReconfigureDvs_Task); add a port group with a VLAN
 * (AddDVPortgroup_Task), change its VLAN (ReconfigureDVPortgroup_Task), destroy it (Destroy_Task).
 *
 * Request bodies follow the vim25 WSDL's element order (real vCenter is strict about it; vcsim is not).
 */
import { z } from 'zod';
import { el, xml, type XmlFragment } from '../../transports/soap';
import { morEl, type VsphereClient, type WaitOptions } from './client';
import { boolSchema, intSchema, many, morSchema, parseWith, type Mor } from './schema';

/** A leaf value: plain text, or `{ '#text', '@_xsiType' }` when vCenter typed it; `<x xsi:type=".."/>` is ''. */
const leaf = z.preprocess((v) => {
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if ('#text' in o) return o['#text'];
    if (Object.keys(o).every((k) => k.startsWith('@_'))) return '';
  }
  return v;
}, z.string());

const nameVal = leaf.pipe(z.string().min(1));
const morList = z.preprocess((v) => (v === '' ? {} : v), z.looseObject({ ManagedObjectReference: many(morSchema) })).transform((o) => o.ManagedObjectReference);

// ---- VLAN settings -------------------------------------------------------------------------------------------

/** A port group's VLAN as vCenter holds it. `id` 0 is "no VLAN"; `inherited` takes the switch's default. */
export type VlanSetting =
  { kind: 'id'; id: number } | { kind: 'trunk'; ranges: Array<{ start: number; end: number }> } | { kind: 'pvlan'; id: number } | { kind: 'inherited' };

const NumericRange = z.object({ start: intSchema, end: intSchema });
const VlanSpecSchema = z
  .looseObject({
    '@_xsiType': z.string(),
    inherited: boolSchema.optional(),
    vlanId: z.unknown().optional(),
    pvlanId: intSchema.optional(),
  })
  .transform((v, ctx): VlanSetting => {
    const type = v['@_xsiType'].replace(/^[^:]*:/, '');
    if (v.inherited) return { kind: 'inherited' };
    if (type === 'VmwareDistributedVirtualSwitchVlanIdSpec') {
      const id = intSchema.safeParse(v.vlanId ?? '0');
      if (id.success) return { kind: 'id', id: id.data };
    } else if (type === 'VmwareDistributedVirtualSwitchTrunkVlanSpec') {
      const ranges = many(NumericRange).safeParse(v.vlanId);
      if (ranges.success) return { kind: 'trunk', ranges: ranges.data };
    } else if (type === 'VmwareDistributedVirtualSwitchPvlanSpec' && v.pvlanId !== undefined) {
      return { kind: 'pvlan', id: v.pvlanId };
    }
    ctx.addIssue({ code: 'custom', message: `unknown VLAN spec ${type}` });
    return z.NEVER;
  });

/** The `<vlan>` element of a VMwareDVSPortSetting for a VLAN setting. */
export function vlanXml(v: VlanSetting): XmlFragment {
  switch (v.kind) {
    case 'id':
      return xml`<vlan xsi:type="VmwareDistributedVirtualSwitchVlanIdSpec"><inherited>false</inherited>${el('vlanId', v.id)}</vlan>`;
    case 'trunk':
      return xml`<vlan xsi:type="VmwareDistributedVirtualSwitchTrunkVlanSpec"><inherited>false</inherited>${v.ranges.map((r) => xml`<vlanId>${el('start', r.start)}${el('end', r.end)}</vlanId>`)}</vlan>`;
    case 'pvlan':
      return xml`<vlan xsi:type="VmwareDistributedVirtualSwitchPvlanSpec"><inherited>false</inherited>${el('pvlanId', v.id)}</vlan>`;
    case 'inherited':
      return xml`<vlan xsi:type="VmwareDistributedVirtualSwitchVlanIdSpec"><inherited>true</inherited><vlanId>0</vlanId></vlan>`;
  }
}

export function describeVlan(v: VlanSetting | null | undefined): string {
  if (!v) return 'none';
  if (v.kind === 'id') return v.id === 0 ? 'no VLAN (0)' : `VLAN ${v.id}`;
  if (v.kind === 'trunk') return `trunk ${v.ranges.map((r) => (r.start === r.end ? `${r.start}` : `${r.start}-${r.end}`)).join(',')}`;
  if (v.kind === 'pvlan') return `private VLAN ${v.id}`;
  return 'inherited from the switch';
}

// ---- reading -----------------------------------------------------------------------------------------------

/** One pnic of a host member as the switch reports it: the device and the uplink port it is bound to. */
export interface MemberPnic {
  device: string;
  uplinkPortKey?: string;
  uplinkPortgroupKey?: string;
}

export interface Lag {
  key: string;
  name: string;
  mode?: string;
  uplinkPortKeys: string[];
}

export interface DvsInfo {
  ref: Mor;
  name: string;
  /** The switch's uuid: names its proxy switch on each member host, and its ports in a VMkernel adapter's spec. */
  uuid: string;
  /** Must accompany a ReconfigureDvs_Task (optimistic concurrency); '' when vCenter keeps none (vcsim). */
  configVersion: string;
  /** summary.hostMember: the hosts that are members. */
  members: Mor[];
  /** config.host: each member's pnic backing, by host moref value. Empty when vCenter does not report it (vcsim). */
  backing: Record<string, MemberPnic[]>;
  uplinkPortgroups: Mor[];
  lags: Lag[];
  portgroups: Mor[];
}

const PnicSpecSchema = z.looseObject({ pnicDevice: nameVal, uplinkPortKey: leaf.optional(), uplinkPortgroupKey: leaf.optional() });
const HostMemberSchema = z.looseObject({
  config: z.looseObject({
    host: morSchema.optional(),
    backing: z.looseObject({ pnicSpec: many(PnicSpecSchema) }).optional(),
  }),
});
const LagSchema = z.looseObject({ key: nameVal, name: nameVal, mode: leaf.optional(), uplinkPortKey: many(leaf) });
const DvsConfigSchema = z.looseObject({
  name: nameVal,
  configVersion: leaf.optional(),
  host: many(HostMemberSchema),
  uplinkPortgroup: many(morSchema),
  lacpGroupConfig: many(LagSchema),
});

export async function readDvs(c: VsphereClient, ref: Mor): Promise<DvsInfo> {
  const oc = await c.properties(ref, ['config', 'summary.hostMember', 'portgroup', 'uuid']);
  const what = `DistributedVirtualSwitch ${ref.value}`;
  const config = parseWith(DvsConfigSchema, oc.props.config, `${what} config`, c.label);
  const backing: Record<string, MemberPnic[]> = {};
  for (const h of config.host) {
    if (!h.config.host) continue;
    backing[h.config.host.value] = (h.config.backing?.pnicSpec ?? []).map((p) => ({
      device: p.pnicDevice,
      ...(p.uplinkPortKey ? { uplinkPortKey: p.uplinkPortKey } : {}),
      ...(p.uplinkPortgroupKey ? { uplinkPortgroupKey: p.uplinkPortgroupKey } : {}),
    }));
  }
  return {
    ref,
    name: config.name,
    uuid: parseWith(nameVal, oc.props.uuid, `${what} uuid`, c.label),
    configVersion: config.configVersion ?? '',
    members: parseWith(morList.optional().default([]), oc.props['summary.hostMember'], `${what} summary.hostMember`, c.label),
    backing,
    uplinkPortgroups: config.uplinkPortgroup,
    lags: config.lacpGroupConfig.map((l) => ({
      key: l.key,
      name: l.name,
      ...(l.mode ? { mode: l.mode } : {}),
      uplinkPortKeys: l.uplinkPortKey.filter(Boolean),
    })),
    portgroups: parseWith(morList.optional().default([]), oc.props.portgroup, `${what} portgroup`, c.label),
  };
}

/** Objects of `type` whose name is exactly `name` (vCenter names are case-sensitive). */
export async function findByName(c: VsphereClient, type: string, name: string): Promise<Mor[]> {
  const all = await c.findAll(type, ['name']);
  return all.filter((o) => parseWith(leaf, o.props.name, `${type} name`, c.label) === name).map((o) => o.obj);
}

/** An object's name. */
export async function readName(c: VsphereClient, ref: Mor): Promise<string> {
  const oc = await c.properties(ref, ['name']);
  return parseWith(nameVal, oc.props.name, `${ref.type} ${ref.value} name`, c.label);
}

export interface HostInfo {
  ref: Mor;
  name: string;
  /** Physical NIC device names (vmnic0, ...). */
  pnics: string[];
}

const PnicListSchema = z
  .preprocess((v) => (v === '' || v === undefined ? {} : v), z.looseObject({ PhysicalNic: many(z.looseObject({ device: nameVal })) }))
  .transform((o) => o.PhysicalNic.map((p) => p.device));

export async function readHost(c: VsphereClient, ref: Mor): Promise<HostInfo> {
  const oc = await c.properties(ref, ['name', 'config.network.pnic']);
  return {
    ref,
    name: parseWith(nameVal, oc.props.name, `HostSystem ${ref.value} name`, c.label),
    pnics: parseWith(PnicListSchema, oc.props['config.network.pnic'], `HostSystem ${ref.value} config.network.pnic`, c.label),
  };
}

export interface PortgroupInfo {
  ref: Mor;
  name: string;
  key: string;
  configVersion: string;
  numPorts: number;
  type: string;
  /** The switch the port group belongs to. */
  switch: Mor;
  vlan: VlanSetting;
}

const PortgroupConfigSchema = z.looseObject({
  key: nameVal,
  name: nameVal,
  configVersion: leaf.optional(),
  numPorts: intSchema.optional(),
  type: leaf.optional(),
  distributedVirtualSwitch: morSchema,
  defaultPortConfig: z.looseObject({ vlan: VlanSpecSchema.optional() }).optional(),
});

export async function readPortgroup(c: VsphereClient, ref: Mor): Promise<PortgroupInfo> {
  const oc = await c.properties(ref, ['config']);
  const cfg = parseWith(PortgroupConfigSchema, oc.props.config, `DistributedVirtualPortgroup ${ref.value} config`, c.label);
  return {
    ref,
    name: cfg.name,
    key: cfg.key,
    configVersion: cfg.configVersion ?? '',
    numPorts: cfg.numPorts ?? 0,
    type: cfg.type ?? 'earlyBinding',
    switch: cfg.distributedVirtualSwitch,
    vlan: cfg.defaultPortConfig?.vlan ?? { kind: 'inherited' },
  };
}

// ---- changing ----------------------------------------------------------------------------------------------

function pnicBacking(pnics: MemberPnic[]): XmlFragment {
  const specs = pnics.map(
    (p) => xml`<pnicSpec>${el('pnicDevice', p.device)}${el('uplinkPortKey', p.uplinkPortKey)}${el('uplinkPortgroupKey', p.uplinkPortgroupKey)}</pnicSpec>`,
  );
  return xml`<backing xsi:type="DistributedVirtualSwitchHostMemberPnicBacking">${specs}</backing>`;
}

/** The ReconfigureDvs_Task body for one host member operation. */
export function hostMemberSpec(dvs: Pick<DvsInfo, 'configVersion'>, operation: 'add' | 'edit' | 'remove', host: Mor, pnics?: MemberPnic[]): XmlFragment {
  const member = xml`<host>${el('operation', operation)}${morEl('host', host)}${pnics ? pnicBacking(pnics) : xml``}</host>`;
  return xml`<spec xsi:type="DVSConfigSpec">${el('configVersion', dvs.configVersion || undefined)}${member}</spec>`;
}

/** Adds a host to the switch with its pnics as uplinks (or changes a member's pnics, or removes it). */
export async function reconfigureHostMember(
  c: VsphereClient,
  dvs: DvsInfo,
  operation: 'add' | 'edit' | 'remove',
  host: Mor,
  pnics: MemberPnic[] | undefined,
  wait: WaitOptions,
): Promise<void> {
  await c.runTask('ReconfigureDvs_Task', dvs.ref, hostMemberSpec(dvs, operation, host, operation === 'remove' ? undefined : pnics), wait);
}

/** The AddDVPortgroup_Task body: an early-binding, auto-expanding port group with the VLAN as its default. */
export function portgroupSpec(name: string, vlan: VlanSetting): XmlFragment {
  return xml`<spec>${el('name', name)}<numPorts>8</numPorts><defaultPortConfig xsi:type="VMwareDVSPortSetting">${vlanXml(vlan)}</defaultPortConfig><type>earlyBinding</type><autoExpand>true</autoExpand></spec>`;
}

export async function addPortgroup(c: VsphereClient, dvs: Mor, name: string, vlan: VlanSetting, wait: WaitOptions): Promise<void> {
  await c.runTask('AddDVPortgroup_Task', dvs, portgroupSpec(name, vlan), wait);
}

/**
 * Sets a port group's VLAN. Name, port count and type are sent unchanged with it: vCenter leaves unset fields
 * alone, but vcsim replaces the whole config with the spec, and would blank them.
 */
export async function setPortgroupVlan(c: VsphereClient, pg: PortgroupInfo, vlan: VlanSetting, wait: WaitOptions): Promise<void> {
  const spec = xml`<spec xsi:type="DVPortgroupConfigSpec">${el('configVersion', pg.configVersion || undefined)}${el('name', pg.name)}${el('numPorts', pg.numPorts)}<defaultPortConfig xsi:type="VMwareDVSPortSetting">${vlanXml(vlan)}</defaultPortConfig>${el('type', pg.type)}</spec>`;
  await c.runTask('ReconfigureDVPortgroup_Task', pg.ref, spec, wait);
}

export async function destroy(c: VsphereClient, ref: Mor, wait: WaitOptions): Promise<void> {
  await c.runTask('Destroy_Task', ref, [], wait);
}
