/**
 * The standard vSwitch alternative to a distributed switch, over SSH on the ESXi host: esxcli command builders
 * (every value quoted by `sh`) and structural parsers of esxcli's machine formats.
 *
 *   esxcli network vswitch standard add | remove                       --vswitch-name
 *   esxcli network vswitch standard uplink add | remove                --uplink-name --vswitch-name
 *   esxcli network vswitch standard policy failover set                --vswitch-name --active-uplinks ...
 *   esxcli network vswitch standard portgroup add | remove             --portgroup-name --vswitch-name
 *   esxcli network vswitch standard portgroup set                      --portgroup-name --vlan-id
 *   esxcli --formatter=xml|csv network vswitch standard [portgroup] list
 *
 * `--formatter=xml` prints `<output xmlns="http://www.vmware.com/Products/ESX/5.0/esxcli"><root><list
 * type="structure"><structure typeName=".."><field name="Name"><string>..</string></field>…`, with field names in
 * esxcli's compact form (`VLANID`, `VirtualSwitch`, `Uplinks`) and typed values (`<string>`, `<integer>`,
 * `<boolean>`, `<list type="string">`). `--formatter=csv` prints a header of the same compact names and one
 * line per structure, each line ending in a comma. test/fixtures/esxi/SOURCES.md says where the samples come
 * from (no ESXi host runs here).
 *
 * Used by the ESXi standard-vSwitch attach step (src/activities/esxi/vswitch.ts, attach kind `vswitch`).
 */
import { z } from 'zod';
import { UnexpectedOutputError } from '../../common/errors';
import { parseXml } from '../../transports/soap';
import { join, sh, type Shell } from '../shell';

// ---- commands ------------------------------------------------------------------------------------------------

export type LoadBalancing = 'portid' | 'iphash' | 'mac' | 'explicit';

export interface FailoverPolicy {
  active: string[];
  standby?: string[];
  /** `iphash` is the standard vSwitch's static EtherChannel (no LACP: that needs a distributed switch). */
  loadBalancing?: LoadBalancing;
  failureDetection?: 'link' | 'beacon';
  notifySwitches?: boolean;
  failback?: boolean;
}

function nonEmpty(what: string, v: string): string {
  if (!v) throw new TypeError(`${what} must not be empty`);
  return v;
}

function vlanId(v: number): number {
  // 0 = no tagging, 4095 = all VLANs (virtual guest tagging): what esxcli accepts.
  if (!Number.isInteger(v) || v < 0 || v > 4095) throw new TypeError(`VLAN id must be 0–4095, not ${v}`);
  return v;
}

export const esxcli = {
  vswitchAdd: (vswitch: string, ports?: number): Shell =>
    ports === undefined
      ? sh`esxcli network vswitch standard add --vswitch-name=${nonEmpty('vswitch', vswitch)}`
      : sh`esxcli network vswitch standard add --vswitch-name=${nonEmpty('vswitch', vswitch)} --ports=${ports}`,
  vswitchRemove: (vswitch: string): Shell => sh`esxcli network vswitch standard remove --vswitch-name=${nonEmpty('vswitch', vswitch)}`,
  uplinkAdd: (vswitch: string, uplink: string): Shell =>
    sh`esxcli network vswitch standard uplink add --uplink-name=${nonEmpty('uplink', uplink)} --vswitch-name=${nonEmpty('vswitch', vswitch)}`,
  uplinkRemove: (vswitch: string, uplink: string): Shell =>
    sh`esxcli network vswitch standard uplink remove --uplink-name=${nonEmpty('uplink', uplink)} --vswitch-name=${nonEmpty('vswitch', vswitch)}`,
  failoverSet: (vswitch: string, p: FailoverPolicy): Shell => {
    if (!p.active.length) throw new TypeError('a failover policy needs at least one active uplink');
    const parts: Shell[] = [
      sh`esxcli network vswitch standard policy failover set --vswitch-name=${nonEmpty('vswitch', vswitch)} --active-uplinks=${p.active.map((u) => nonEmpty('uplink', u)).join(',')}`,
    ];
    if (p.standby?.length) parts.push(sh`--standby-uplinks=${p.standby.join(',')}`);
    if (p.loadBalancing) parts.push(sh`--load-balancing=${p.loadBalancing}`);
    if (p.failureDetection) parts.push(sh`--failure-detection=${p.failureDetection}`);
    if (p.notifySwitches !== undefined) parts.push(sh`--notify-switches=${String(p.notifySwitches)}`);
    if (p.failback !== undefined) parts.push(sh`--failback=${String(p.failback)}`);
    return join(' ', parts);
  },
  portgroupAdd: (vswitch: string, portgroup: string): Shell =>
    sh`esxcli network vswitch standard portgroup add --portgroup-name=${nonEmpty('portgroup', portgroup)} --vswitch-name=${nonEmpty('vswitch', vswitch)}`,
  portgroupRemove: (vswitch: string, portgroup: string): Shell =>
    sh`esxcli network vswitch standard portgroup remove --portgroup-name=${nonEmpty('portgroup', portgroup)} --vswitch-name=${nonEmpty('vswitch', vswitch)}`,
  portgroupSetVlan: (portgroup: string, vlan: number): Shell =>
    sh`esxcli network vswitch standard portgroup set --portgroup-name=${nonEmpty('portgroup', portgroup)} --vlan-id=${vlanId(vlan)}`,
  vswitchList: (format: 'xml' | 'csv' = 'xml'): Shell => sh`esxcli --formatter=${format} network vswitch standard list`,
  portgroupList: (format: 'xml' | 'csv' = 'xml'): Shell => sh`esxcli --formatter=${format} network vswitch standard portgroup list`,
};

// ---- parsing: the XML formatter --------------------------------------------------------------------------------

export type EsxcliValue = string | number | boolean | string[];
export type EsxcliRecord = Record<string, EsxcliValue>;

function arr(v: unknown): unknown[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function text(v: unknown): string {
  if (typeof v === 'string') return v;
  const o = obj(v);
  if (o && typeof o['#text'] === 'string') return o['#text'];
  if (o && Object.keys(o).every((k) => k.startsWith('@_'))) return '';
  throw new TypeError('not a text value');
}

/** One `<field>`'s typed value. */
function fieldValue(field: Record<string, unknown>, name: string, command: string): EsxcliValue {
  const bad = (observed: string) => new UnexpectedOutputError(`esxcli field ${name} has an unexpected value`, { command, field: name, observed });
  const kinds = Object.keys(field).filter((k) => !k.startsWith('@_'));
  if (kinds.length !== 1) throw bad(kinds.join(',') || 'nothing');
  const kind = kinds[0]!;
  const raw = field[kind];
  switch (kind) {
    case 'string':
      return text(raw);
    case 'integer':
    case 'long': {
      const s = text(raw);
      if (!/^-?\d{1,15}$/.test(s)) throw bad(s);
      return Number(s);
    }
    case 'boolean': {
      const s = text(raw);
      if (s !== 'true' && s !== 'false') throw bad(s);
      return s === 'true';
    }
    case 'list': {
      const list = obj(raw) ?? {};
      if (list['@_type'] !== undefined && list['@_type'] !== 'string') throw bad(`list of ${String(list['@_type'])}`);
      return arr(list.string).map(text);
    }
    default:
      throw bad(kind);
  }
}

/** `--formatter=xml` output of a list command → one record per `<structure>`, fields by their compact names. */
export function parseEsxcliXml(output: string, command: string): EsxcliRecord[] {
  let doc: Record<string, unknown>;
  try {
    doc = parseXml(output);
  } catch (e) {
    throw new UnexpectedOutputError(`esxcli output is not XML (${(e as Error).message})`, { command });
  }
  const out = obj(doc.output);
  if (!out) throw new UnexpectedOutputError('esxcli XML has no <output> element', { command, observed: Object.keys(doc).join(',') });
  const root = obj(out.root) ?? out;
  const list = obj(root.list);
  // An empty list prints `<list type="structure"></list>`; a single structure is not wrapped in an array.
  const structures = list ? arr(list.structure) : arr(root.structure);
  if (!list && !structures.length) throw new UnexpectedOutputError('esxcli XML holds neither a list nor a structure', { command });
  return structures.map((s) => {
    const rec: EsxcliRecord = {};
    for (const f of arr(obj(s)?.field)) {
      const field = obj(f);
      const name = field?.['@_name'];
      if (!field || typeof name !== 'string') throw new UnexpectedOutputError('esxcli XML field without a name', { command });
      rec[name] = fieldValue(field, name, command);
    }
    return rec;
  });
}

// ---- parsing: the CSV formatter --------------------------------------------------------------------------------

/** Splits one CSV line (double-quoted fields with "" escapes, as RFC 4180). */
function csvFields(line: string, command: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let v = '';
      i++;
      for (;;) {
        if (i >= line.length) throw new UnexpectedOutputError('esxcli CSV has an unterminated quoted field', { command, observed: line.slice(0, 200) });
        if (line[i] === '"' && line[i + 1] === '"') {
          v += '"';
          i += 2;
        } else if (line[i] === '"') {
          i++;
          break;
        } else v += line[i++];
      }
      out.push(v);
      if (i < line.length && line[i] !== ',')
        throw new UnexpectedOutputError('esxcli CSV has text after a quoted field', { command, observed: line.slice(0, 200) });
      i++;
    } else {
      const end = line.indexOf(',', i);
      out.push(line.slice(i, end === -1 ? line.length : end));
      i = end === -1 ? line.length + 1 : end + 1;
    }
  }
  return out;
}

/** `--formatter=csv` output → one record of strings per line, keyed by the header. Every line ends in a comma. */
export function parseEsxcliCsv(output: string, command: string): Array<Record<string, string>> {
  const lines = output.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (!lines.length) throw new UnexpectedOutputError('esxcli CSV output is empty (not even a header)', { command });
  const trim = (f: string[]) => (f.length && f[f.length - 1] === '' ? f.slice(0, -1) : f);
  const header = trim(csvFields(lines[0]!, command));
  if (!header.length || header.some((h) => !/^[A-Za-z][A-Za-z0-9]*$/.test(h))) {
    throw new UnexpectedOutputError('esxcli CSV header is not a list of field names', { command, observed: lines[0]!.slice(0, 200) });
  }
  return lines.slice(1).map((line, n) => {
    const fields = trim(csvFields(line, command));
    if (fields.length !== header.length) {
      throw new UnexpectedOutputError(`esxcli CSV line ${n + 2} has ${fields.length} fields for ${header.length} columns`, {
        command,
        observed: line.slice(0, 200),
      });
    }
    return Object.fromEntries(header.map((h, i) => [h, fields[i]!]));
  });
}

// ---- typed views -----------------------------------------------------------------------------------------------

export interface StandardVswitch {
  name: string;
  uplinks: string[];
  portgroups: string[];
  mtu: number;
  numPorts?: number;
  usedPorts?: number;
  configuredPorts?: number;
  cdpStatus?: string;
}

export interface StandardPortgroup {
  name: string;
  vswitch: string;
  vlanId: number;
  activeClients: number;
}

const VswitchRecord = z.looseObject({
  Name: z.string().min(1),
  Uplinks: z.array(z.string()),
  Portgroups: z.array(z.string()),
  MTU: z.number().int(),
  NumPorts: z.number().int().optional(),
  UsedPorts: z.number().int().optional(),
  ConfiguredPorts: z.number().int().optional(),
  CDPStatus: z.string().optional(),
});

const intText = z
  .string()
  .regex(/^\d{1,9}$/)
  .transform(Number);
const PortgroupRecord = z.looseObject({
  Name: z.string().min(1),
  VirtualSwitch: z.string().min(1),
  VLANID: z.union([z.number().int(), intText]).pipe(z.number().int().min(0).max(4095)),
  ActiveClients: z.union([z.number().int(), intText]),
});

function check<T extends z.ZodType>(schema: T, rec: unknown, command: string, i: number): z.output<T> {
  const r = schema.safeParse(rec);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new UnexpectedOutputError(`esxcli record ${i + 1} lacks an expected field`, { command, field: issue?.path.join('.'), observed: issue?.message });
}

/** `esxcli --formatter=xml network vswitch standard list`. */
export function parseVswitchList(xmlOutput: string): StandardVswitch[] {
  const command = esxcli.vswitchList('xml').text;
  return parseEsxcliXml(xmlOutput, command).map((rec, i) => {
    const r = check(VswitchRecord, rec, command, i);
    return {
      name: r.Name,
      uplinks: r.Uplinks,
      portgroups: r.Portgroups,
      mtu: r.MTU,
      ...(r.NumPorts !== undefined ? { numPorts: r.NumPorts } : {}),
      ...(r.UsedPorts !== undefined ? { usedPorts: r.UsedPorts } : {}),
      ...(r.ConfiguredPorts !== undefined ? { configuredPorts: r.ConfiguredPorts } : {}),
      ...(r.CDPStatus !== undefined ? { cdpStatus: r.CDPStatus } : {}),
    };
  });
}

/** `esxcli --formatter=xml|csv network vswitch standard portgroup list`. */
export function parsePortgroupList(output: string, format: 'xml' | 'csv'): StandardPortgroup[] {
  const command = esxcli.portgroupList(format).text;
  const records = format === 'xml' ? parseEsxcliXml(output, command) : parseEsxcliCsv(output, command);
  return records.map((rec, i) => {
    const r = check(PortgroupRecord, rec, command, i);
    return { name: r.Name, vswitch: r.VirtualSwitch, vlanId: r.VLANID, activeClients: r.ActiveClients };
  });
}

// ---- converging --------------------------------------------------------------------------------------------------

export interface StandardVswitchWant {
  vswitch: string;
  uplinks: string[];
  portgroup: string;
  vlan: number;
  loadBalancing?: LoadBalancing;
}

/**
 * The esxcli commands that take the host from what the two list commands show to `want`, in order: the switch,
 * its uplinks (extra ones removed), the failover order, the port group, its VLAN. Empty when it already holds.
 * A port group of that name on another vSwitch is refused (esxcli names port groups host-wide).
 */
export function standardVswitchCommands(vswitches: StandardVswitch[], portgroups: StandardPortgroup[], want: StandardVswitchWant): Shell[] {
  const cmds: Shell[] = [];
  const sw = vswitches.find((v) => v.name === want.vswitch);
  if (!sw) cmds.push(esxcli.vswitchAdd(want.vswitch));
  const have = sw?.uplinks ?? [];
  for (const u of want.uplinks) if (!have.includes(u)) cmds.push(esxcli.uplinkAdd(want.vswitch, u));
  for (const u of have) if (!want.uplinks.includes(u)) cmds.push(esxcli.uplinkRemove(want.vswitch, u));
  if (cmds.length) cmds.push(esxcli.failoverSet(want.vswitch, { active: want.uplinks, ...(want.loadBalancing ? { loadBalancing: want.loadBalancing } : {}) }));
  const pg = portgroups.find((p) => p.name === want.portgroup);
  if (pg && pg.vswitch !== want.vswitch) {
    throw new UnexpectedOutputError(`port group ${want.portgroup} exists on ${pg.vswitch}`, {
      field: 'portgroup',
      expected: want.vswitch,
      observed: pg.vswitch,
    });
  }
  if (!pg) cmds.push(esxcli.portgroupAdd(want.vswitch, want.portgroup));
  if (!pg || pg.vlanId !== want.vlan) cmds.push(esxcli.portgroupSetVlan(want.portgroup, want.vlan));
  return cmds;
}

/** Further reads and a write of the standard-vSwitch attach step (src/activities/esxi/vswitch.ts). */
export const nicList = (): Shell => sh`esxcli --formatter=xml network nic list`;
export const failoverGet = (vswitch: string): Shell => sh`esxcli --formatter=xml network vswitch standard policy failover get --vswitch-name=${vswitch}`;
export const mtuSet = (vswitch: string, mtu: number): Shell => sh`esxcli network vswitch standard set --mtu=${mtu} --vswitch-name=${vswitch}`;

// esxcli's `get` prints the policy in the vSphere API's words (srcport, srcmac…); `set` takes portid, mac….
const TEAMING: Record<string, string> = {
  srcport: 'portid',
  portid: 'portid',
  iphash: 'iphash',
  srcmac: 'mac',
  mac: 'mac',
  explicit: 'explicit',
  failover_explicit: 'explicit',
};
export const SETTABLE_TEAMING = new Set<string>(['portid', 'iphash', 'mac', 'explicit']);

const FailoverRecord = z.looseObject({ LoadBalancing: z.string().min(1), ActiveAdapters: z.array(z.string()) });
const NicRecord = z.looseObject({ Name: z.string().min(1) });

function oneRecord<T extends z.ZodType>(schema: T, rec: unknown, command: string): z.output<T> {
  const r = schema.safeParse(rec);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new UnexpectedOutputError('esxcli output lacks an expected field', { command, field: issue?.path.join('.'), observed: issue?.message });
}

/** `esxcli --formatter=xml network vswitch standard policy failover get`: one structure. */
export function parseFailoverGet(xml: string, command: string): { teaming: string; active: string[] } {
  const recs = parseEsxcliXml(xml, command);
  if (recs.length !== 1) throw new UnexpectedOutputError(`esxcli printed ${recs.length} failover policies for one vSwitch`, { command });
  const r = oneRecord(FailoverRecord, recs[0], command);
  return { teaming: TEAMING[r.LoadBalancing] ?? r.LoadBalancing, active: r.ActiveAdapters };
}

/** `esxcli --formatter=xml network nic list` → the physical NICs' names. */
export function parseNicNames(xml: string, command: string): string[] {
  return parseEsxcliXml(xml, command).map((rec) => oneRecord(NicRecord, rec, command).Name);
}
