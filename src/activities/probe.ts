/**
 * Health probe of an onboarded Linux host (issue 17): one command over one SSH session reads what the network
 * steps set up — gateway RTT and loss per VLAN, LACP members in service against the spec's, NIC link state, speed
 * and error counters, the LLDP neighbour against the spec's, the VF count — and the same session writes the
 * result as a Prometheus textfile (`underlay.prom`) into node_exporter's textfile-collector directory on the host.
 * docs/monitoring.md says why the host exposes it (one writer per host, no contradicting series from several
 * workers) and lists every metric.
 */
import { InvalidSpecError, UnexpectedOutputError, UnsupportedPlatformError, type ErrorContext } from '../common/errors';
import { writeScript } from '../drivers/linux/files';
import { hasPartner, memberInService, parseProcNetBonding } from '../drivers/linux/parse/bonding';
import { neighbourMatches, parseLldpJson0, describeNeighbour } from '../drivers/linux/parse/lldp';
import { parseNicSysfs } from '../drivers/linux/parse/text';
import {
  NIC_COUNTERS,
  parseNicCounters,
  parsePing,
  parseProbeOutput,
  probeScript,
  type NicCounter,
  type ProbeSection,
  type ProbeTargets,
} from '../drivers/linux/probe';
import type { RemoteHost } from '../drivers/remote';
import { vlanIfName, type ServerSpec } from '../spec/server';
import { parseServerSpec } from '../spec/validate';
import { assertSecretScope } from '../transports/secret-scope';
import type { Connector } from './run-step';

/** Debian's prometheus-node-exporter reads textfiles from here (its --collector.textfile.directory default). */
export const DEFAULT_TEXTFILE_DIR = '/var/lib/prometheus/node-exporter';
export const TEXTFILE_NAME = 'underlay.prom';
export const DEFAULT_PING_COUNT = 10;

export type ProbePart = 'links' | 'bond' | 'nics' | 'lldp' | 'sriov' | 'gateway';

export interface GatewayHealth {
  vlan: number;
  ifname: string;
  gateway: string;
  transmitted: number;
  received: number;
  /** 1 - received / transmitted. */
  lossRatio: number;
  rttSeconds: number | null;
}

export interface BondHealth {
  name: string;
  configured: number;
  /** Members carrying traffic: MII up and, under 802.3ad, in the active aggregator in sync both ways. */
  active: number;
  partner: boolean;
  present: boolean;
  members: Array<{ nic: string; inService: boolean; churned: boolean }>;
}

export interface NicHealth {
  nic: string;
  present: boolean;
  /** False for a NIC the spec marks `cabled: false` (an SR-IOV PF used for its VFs): no carrier is expected. */
  cabled: boolean;
  carrier: boolean | null;
  speedBytesPerSecond: number | null;
  counters: Partial<Record<NicCounter, number>>;
}

export interface HostHealth {
  server: string;
  site: string;
  rack: string;
  /** Unix time of the probe, seconds (the host's clock). */
  timestamp: number;
  durationSeconds: number;
  /** Which parts produced a measurement (a part the spec does not use is absent). */
  parts: Partial<Record<ProbePart, boolean>>;
  gateways: GatewayHealth[];
  bonds: BondHealth[];
  nics: NicHealth[];
  lldp: Array<{ nic: string; expected: string; observed: string; match: boolean }>;
  sriov?: { pf: string; expected: number; observed: number | null };
}

export interface ProbeOptions {
  /** Echo requests per gateway, 0.2 s apart (default 10: about 2 s). */
  count?: number;
  /** node_exporter's textfile directory on the host; null: do not write (the result is only returned). */
  textfileDir?: string | null;
}

/** What to read on this host, from its spec. */
export function probeTargets(spec: ServerSpec, count = DEFAULT_PING_COUNT): ProbeTargets {
  const nics = [...new Set([...spec.nics.map((n) => n.name), ...(spec.bond?.members ?? [])])];
  return {
    nics,
    bonds: spec.bond ? [spec.bond.name] : [],
    pings: spec.vlans.filter((v) => v.gateway).map((v) => ({ ifname: vlanIfName(v), gateway: v.gateway! })),
    lldp: spec.nics.some((n) => n.lldp),
    sriovPf: spec.sriov?.pf,
    count,
  };
}

/** The probe's output, read against the spec. Pure: tested on outputs captured on lab hosts. */
export function evaluateProbe(spec: ServerSpec, sections: ProbeSection[], durationSeconds: number): HostHealth {
  const ctx: ErrorContext = { host: spec.id };
  const time = sections.find((s) => s.kind === 'time');
  const timestamp = Number(time?.args[0]);
  if (!Number.isInteger(timestamp)) throw new UnexpectedOutputError('health probe: no time line', { ...ctx, observed: String(time?.args) });
  const h: HostHealth = {
    server: spec.id,
    site: spec.site,
    rack: spec.rack,
    timestamp,
    durationSeconds,
    parts: { links: true },
    gateways: [],
    bonds: [],
    nics: [],
    lldp: [],
  };

  if (spec.bond) {
    const b = spec.bond;
    const sec = sections.find((s) => s.kind === 'bonding' && s.args[0] === b.name);
    if (!sec || sec.absent) {
      h.bonds.push({
        name: b.name,
        configured: b.members.length,
        active: 0,
        partner: false,
        present: false,
        members: b.members.map((nic) => ({ nic, inService: false, churned: false })),
      });
    } else {
      const parsed = parseProcNetBonding(sec.body, ctx);
      const members = b.members.map((nic) => {
        const m = parsed.members.find((x) => x.name === nic);
        return { nic, inService: !!m && memberInService(parsed, m), churned: !!m && (m.actorChurned || m.partnerChurned) };
      });
      h.bonds.push({
        name: b.name,
        configured: b.members.length,
        active: members.filter((m) => m.inService).length,
        partner: hasPartner(parsed),
        present: true,
        members,
      });
    }
    h.parts.bond = true;
  }

  const nicSec = sections.find((s) => s.kind === 'nics');
  const statSec = sections.find((s) => s.kind === 'stats');
  if (nicSec && statSec) {
    const rows = nicSec.body.split('\n').filter((l) => l.trim() !== '');
    const absent = new Set(rows.filter((l) => /\tabsent$/.test(l)).map((l) => l.split('\t')[0]!));
    const sysfs = new Map(parseNicSysfs(rows.filter((l) => !/\tabsent$/.test(l)).join('\n'), ctx).map((n) => [n.name, n]));
    const counters = parseNicCounters(statSec.body, ctx);
    for (const nic of probeTargets(spec).nics) {
      const s = sysfs.get(nic);
      h.nics.push({
        nic,
        present: !absent.has(nic) && !!s,
        cabled: spec.nics.find((n) => n.name === nic)?.cabled !== false,
        carrier: s?.carrier ?? null,
        speedBytesPerSecond: s?.speedMbps ? (s.speedMbps * 1_000_000) / 8 : null,
        counters: counters.get(nic) ?? {},
      });
    }
    h.parts.nics = true;
  } else h.parts.nics = false;

  const expectLldp = spec.nics.filter((n) => n.lldp);
  if (expectLldp.length) {
    const sec = sections.find((s) => s.kind === 'lldp');
    if (!sec || sec.absent) h.parts.lldp = false;
    else {
      const seen = new Map(parseLldpJson0(sec.body, ctx).map((n) => [n.interface, n]));
      for (const n of expectLldp) {
        const o = seen.get(n.name);
        h.lldp.push({ nic: n.name, expected: `${n.lldp!.switch}/${n.lldp!.port}`, observed: describeNeighbour(o), match: !!o && neighbourMatches(o, n.lldp!) });
      }
      h.parts.lldp = true;
    }
  }

  if (spec.sriov) {
    const sec = sections.find((s) => s.kind === 'sriov');
    const n = sec && !sec.absent && /^\d+$/.test(sec.body.trim()) ? Number(sec.body.trim()) : null;
    h.sriov = { pf: spec.sriov.pf, expected: spec.sriov.numVfs, observed: n };
    h.parts.sriov = n !== null;
  }

  const pings = spec.vlans.filter((v) => v.gateway);
  if (pings.length) {
    let ok = true;
    for (const v of pings) {
      const ifname = vlanIfName(v);
      const sec = sections.find((s) => s.kind === 'ping' && s.args[0] === ifname && s.args[1] === v.gateway);
      // Exit 2 with no statistics: ping could not send at all (no such interface, no address): all lost.
      let p;
      try {
        p = sec ? parsePing(sec.body, { ...ctx, field: `${ifname}.gateway` }) : null;
      } catch {
        p = null;
      }
      if (!p || p.transmitted === 0) {
        ok = ok && !!sec;
        h.gateways.push({ vlan: v.id, ifname, gateway: v.gateway!, transmitted: 0, received: 0, lossRatio: 1, rttSeconds: null });
        continue;
      }
      h.gateways.push({
        vlan: v.id,
        ifname,
        gateway: v.gateway!,
        transmitted: p.transmitted,
        received: p.received,
        lossRatio: 1 - p.received / p.transmitted,
        rttSeconds: p.rttAvgSeconds,
      });
    }
    h.parts.gateway = ok;
  }
  return h;
}

// ---------------------------------------------------------------- exposition (Prometheus text format 0.0.4)

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function num(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN';
}

/** Metric families of the textfile: name → [type, help]. docs/monitoring.md lists the same. */
export const HEALTH_METRICS = {
  underlay_probe_timestamp_seconds: ['gauge', 'Unix time of the last health probe of this host'],
  underlay_probe_duration_seconds: ['gauge', 'How long the last health probe took'],
  underlay_probe_success: ['gauge', 'Whether a part of the health probe produced a measurement (1) or not (0)'],
  underlay_gateway_loss_ratio: ['gauge', 'Share of echo requests to the VLAN gateway left unanswered in the last burst'],
  underlay_gateway_rtt_seconds: ['gauge', 'Mean round trip to the VLAN gateway in the last burst'],
  underlay_bond_ports_configured: ['gauge', 'Bond members in the spec'],
  underlay_bond_ports_active: ['gauge', 'Bond members carrying traffic (LACP: in the active aggregator, in sync both ways)'],
  underlay_bond_partner_up: ['gauge', 'Whether the bond hears an LACP partner'],
  underlay_bond_member_active: ['gauge', 'Whether this bond member carries traffic'],
  underlay_bond_member_churned: ['gauge', 'Whether LACP churned on this member'],
  underlay_nic_present: ['gauge', 'Whether the spec NIC exists on the host'],
  underlay_nic_carrier: ['gauge', 'Whether the NIC has carrier'],
  underlay_nic_speed_bytes: ['gauge', 'Negotiated link speed in bytes per second'],
  underlay_nic_receive_errors_total: ['counter', 'rx_errors of the NIC (kernel counter)'],
  underlay_nic_transmit_errors_total: ['counter', 'tx_errors of the NIC (kernel counter)'],
  underlay_nic_receive_crc_errors_total: ['counter', 'rx_crc_errors of the NIC (kernel counter)'],
  underlay_nic_receive_drops_total: ['counter', 'rx_dropped of the NIC (kernel counter)'],
  underlay_nic_transmit_drops_total: ['counter', 'tx_dropped of the NIC (kernel counter)'],
  underlay_nic_receive_missed_errors_total: ['counter', 'rx_missed_errors of the NIC (kernel counter)'],
  underlay_nic_transmit_carrier_errors_total: ['counter', 'tx_carrier_errors of the NIC (kernel counter)'],
  underlay_lldp_neighbour_match: ['gauge', 'Whether the NIC hears the LLDP neighbour the spec expects'],
  underlay_sriov_vfs: ['gauge', 'Virtual functions enabled on the SR-IOV PF'],
  underlay_sriov_vfs_expected: ['gauge', 'Virtual functions the spec asks for'],
} as const;
export type HealthMetric = keyof typeof HEALTH_METRICS;

const COUNTER_METRIC: Record<NicCounter, HealthMetric> = {
  rx_errors: 'underlay_nic_receive_errors_total',
  tx_errors: 'underlay_nic_transmit_errors_total',
  rx_crc_errors: 'underlay_nic_receive_crc_errors_total',
  rx_dropped: 'underlay_nic_receive_drops_total',
  tx_dropped: 'underlay_nic_transmit_drops_total',
  rx_missed_errors: 'underlay_nic_receive_missed_errors_total',
  tx_carrier_errors: 'underlay_nic_transmit_carrier_errors_total',
};

/** The textfile: every family once with HELP and TYPE, labels server/site/rack plus vlan, nic or probe. */
export function renderHealthTextfile(h: HostHealth): string {
  const samples = new Map<HealthMetric, string[]>();
  const base = { server: h.server, site: h.site, rack: h.rack };
  const add = (m: HealthMetric, labels: Record<string, string>, v: number) => {
    const l = Object.entries({ ...base, ...labels })
      .map(([k, x]) => `${k}="${esc(x)}"`)
      .join(',');
    samples.set(m, [...(samples.get(m) ?? []), `${m}{${l}} ${num(v)}`]);
  };
  add('underlay_probe_timestamp_seconds', {}, h.timestamp);
  add('underlay_probe_duration_seconds', {}, Math.round(h.durationSeconds * 1000) / 1000);
  for (const [part, ok] of Object.entries(h.parts)) add('underlay_probe_success', { probe: part }, ok ? 1 : 0);
  for (const g of h.gateways) {
    add('underlay_gateway_loss_ratio', { vlan: String(g.vlan) }, g.lossRatio);
    if (g.rttSeconds !== null) add('underlay_gateway_rtt_seconds', { vlan: String(g.vlan) }, g.rttSeconds);
  }
  for (const b of h.bonds) {
    add('underlay_bond_ports_configured', { nic: b.name }, b.configured);
    add('underlay_bond_ports_active', { nic: b.name }, b.active);
    add('underlay_bond_partner_up', { nic: b.name }, b.partner ? 1 : 0);
    for (const m of b.members) {
      add('underlay_bond_member_active', { nic: m.nic }, m.inService ? 1 : 0);
      add('underlay_bond_member_churned', { nic: m.nic }, m.churned ? 1 : 0);
    }
  }
  for (const n of h.nics) {
    add('underlay_nic_present', { nic: n.nic }, n.present ? 1 : 0);
    if (!n.present) continue;
    // No carrier series for a NIC without a cable (the cable check does not expect one there either).
    if (n.cabled) add('underlay_nic_carrier', { nic: n.nic }, n.carrier ? 1 : 0);
    if (n.speedBytesPerSecond !== null) add('underlay_nic_speed_bytes', { nic: n.nic }, n.speedBytesPerSecond);
    for (const c of NIC_COUNTERS) if (n.counters[c] !== undefined) add(COUNTER_METRIC[c], { nic: n.nic }, n.counters[c]);
  }
  for (const l of h.lldp) add('underlay_lldp_neighbour_match', { nic: l.nic }, l.match ? 1 : 0);
  if (h.sriov) {
    add('underlay_sriov_vfs_expected', { nic: h.sriov.pf }, h.sriov.expected);
    if (h.sriov.observed !== null) add('underlay_sriov_vfs', { nic: h.sriov.pf }, h.sriov.observed);
  }
  const out: string[] = [];
  for (const [m, [type, help]] of Object.entries(HEALTH_METRICS) as Array<[HealthMetric, readonly [string, string]]>) {
    const s = samples.get(m);
    if (!s) continue;
    out.push(`# HELP ${m} ${help}`, `# TYPE ${m} ${type}`, ...s);
  }
  return out.join('\n') + '\n';
}

/** An absolute directory of plain path characters (it goes into a command and names a file on the host). */
export function validTextfileDir(dir: string): string {
  if (!/^\/[A-Za-z0-9_.@+/-]{0,254}$/.test(dir) || dir.split('/').some((s) => s === '..' || s === '.')) {
    throw new InvalidSpecError('bad textfile directory', [
      { path: 'textfileDir', message: `${JSON.stringify(dir.slice(0, 100))}: an absolute path without . or ..` },
    ]);
  }
  return dir.replace(/\/+$/, '') || '/';
}

/**
 * Probes the host over `host` (its one session): one read command, then — unless textfileDir is null — one
 * atomic write of underlay.prom (temporary file + rename, so node_exporter never reads half a file).
 */
export async function probeHost(host: RemoteHost, spec: ServerSpec, opts: ProbeOptions = {}): Promise<HostHealth> {
  const dir = opts.textfileDir === null ? null : validTextfileDir(opts.textfileDir ?? DEFAULT_TEXTFILE_DIR);
  const targets = probeTargets(spec, opts.count ?? DEFAULT_PING_COUNT);
  const started = process.hrtime.bigint();
  const out = await host.read(probeScript(targets), { description: 'health probe', timeoutMs: 60_000 });
  const health = evaluateProbe(spec, parseProbeOutput(out, { host: host.label }), Number(process.hrtime.bigint() - started) / 1e9);
  if (dir) {
    await host.run(writeScript({ path: `${dir}/${TEXTFILE_NAME}`, content: renderHealthTextfile(health), mode: '0644' }), {
      description: `write ${dir}/${TEXTFILE_NAME}`,
    });
  }
  return health;
}

/**
 * Probes the server a spec describes, over its management SSH session (the one a step would use): what
 * `underlay health` runs. Linux hosts only (KVM, Xen); the textfile is written only when textfileDir is given.
 */
export async function probeServer(rawSpec: unknown, connect: Connector, opts: ProbeOptions = {}): Promise<HostHealth> {
  const spec = parseServerSpec(rawSpec, 'spec');
  if (spec.hypervisor.kind !== 'kvm' && spec.hypervisor.kind !== 'xen') {
    throw new UnsupportedPlatformError(`the health probe reads Linux hosts; ${spec.id} runs ${spec.hypervisor.kind}`, {
      host: spec.id,
      field: 'hypervisor.kind',
      expected: 'kvm or xen',
      observed: spec.hypervisor.kind,
    });
  }
  assertSecretScope(spec); // before any connection, as every step
  const conn = await connect(spec, 'cable', () => undefined);
  try {
    return await probeHost(conn.host, spec, { ...opts, textfileDir: opts.textfileDir ?? null });
  } finally {
    conn.close();
  }
}

/** A few lines for a terminal: what is unhealthy first, then the measurements. */
export function renderHealth(h: HostHealth): string {
  const out: string[] = [`${h.server} (${h.site}/${h.rack}) probed in ${h.durationSeconds.toFixed(1)} s`];
  for (const g of h.gateways) {
    const rtt = g.rttSeconds === null ? 'no answer' : `rtt ${(g.rttSeconds * 1000).toFixed(2)} ms`;
    out.push(
      `  ${g.lossRatio > 0 ? '✗' : '✓'} VLAN ${g.vlan} gateway ${g.gateway} via ${g.ifname}: loss ${Math.round(g.lossRatio * 100)}% (${g.received}/${g.transmitted}), ${rtt}`,
    );
  }
  for (const b of h.bonds) {
    const out1 = b.members.filter((m) => !m.inService).map((m) => m.nic);
    out.push(
      `  ${b.active === b.configured && b.partner ? '✓' : '✗'} ${b.name}: ${b.active}/${b.configured} ports in service${b.partner ? '' : ', no LACP partner'}${out1.length ? ` (out: ${out1.join(', ')})` : ''}`,
    );
  }
  for (const n of h.nics) {
    if (!n.present) {
      out.push(`  ✗ ${n.nic}: absent`);
      continue;
    }
    const errors = (n.counters.rx_errors ?? 0) + (n.counters.tx_errors ?? 0);
    const speed = n.speedBytesPerSecond === null ? 'speed unknown' : `${(n.speedBytesPerSecond * 8) / 1e9} Gb/s`;
    const ok = n.carrier || !n.cabled;
    out.push(
      `  ${ok ? '✓' : '✗'} ${n.nic}: ${n.carrier ? 'carrier' : n.cabled ? 'no carrier' : 'no carrier (not cabled)'}, ${speed}, ${errors} errors since boot`,
    );
  }
  for (const l of h.lldp) out.push(`  ${l.match ? '✓' : '✗'} ${l.nic} LLDP: expected ${l.expected}, observed ${l.observed}`);
  if (h.sriov) out.push(`  ${h.sriov.observed === h.sriov.expected ? '✓' : '✗'} ${h.sriov.pf}: ${h.sriov.observed ?? '?'} of ${h.sriov.expected} VFs`);
  for (const [part, ok] of Object.entries(h.parts)) if (!ok) out.push(`  ✗ the ${part} probe measured nothing`);
  return out.join('\n');
}

// ---------------------------------------------------------------- the scheduled sweep's activity

/** A host's last health in a few fields: what the health sweep records and the Web UI shows. */
export interface HealthRow {
  serverId: string;
  status: 'healthy' | 'degraded' | 'failed' | 'skipped';
  /** ISO time of the probe (the host's clock); absent when it did not run. */
  probedAt?: string;
  gateways: Array<{ vlan: number; loss: number; rttMs: number | null }>;
  bond?: { active: number; configured: number; partner: boolean };
  /** What is wrong, one short line each (at most MAX_PROBLEMS), or why the probe failed or was skipped. */
  problems: string[];
}

const MAX_PROBLEMS = 6;

/** What is wrong with a host's health, one line each: the conditions the alert rules look at. */
export function healthProblems(h: HostHealth): string[] {
  const p: string[] = [];
  for (const g of h.gateways) if (g.lossRatio > 0) p.push(`VLAN ${g.vlan} gateway ${g.gateway}: loss ${Math.round(g.lossRatio * 100)}%`);
  for (const b of h.bonds) {
    if (b.active < b.configured) p.push(`${b.name}: ${b.active}/${b.configured} ports in service`);
    if (!b.partner) p.push(`${b.name}: no LACP partner`);
  }
  for (const n of h.nics) if (!n.present || (n.cabled && !n.carrier)) p.push(`${n.nic}: ${n.present ? 'no carrier' : 'absent'}`);
  for (const l of h.lldp) if (!l.match) p.push(`${l.nic} LLDP: expected ${l.expected}, observed ${l.observed}`);
  if (h.sriov && h.sriov.observed !== h.sriov.expected) p.push(`${h.sriov.pf}: ${h.sriov.observed ?? '?'} of ${h.sriov.expected} VFs`);
  for (const [part, ok] of Object.entries(h.parts)) if (!ok) p.push(`the ${part} probe measured nothing`);
  return p;
}

export function healthRow(h: HostHealth): HealthRow {
  const problems = healthProblems(h);
  const bond = h.bonds[0];
  return {
    serverId: h.server,
    status: problems.length ? 'degraded' : 'healthy',
    probedAt: new Date(h.timestamp * 1000).toISOString(),
    gateways: h.gateways.map((g) => ({
      vlan: g.vlan,
      loss: Math.round(g.lossRatio * 1000) / 1000,
      rttMs: g.rttSeconds === null ? null : Math.round(g.rttSeconds * 1e6) / 1000,
    })),
    ...(bond ? { bond: { active: bond.active, configured: bond.configured, partner: bond.partner } } : {}),
    problems: problems.slice(0, MAX_PROBLEMS).map((x) => (x.length > 160 ? `${x.slice(0, 159)}…` : x)),
  };
}

export interface ProbeRequest {
  /** Echo requests per gateway (1–100; default 10). */
  count?: number;
  /** node_exporter's textfile directory on the host (default DEFAULT_TEXTFILE_DIR). */
  textfileDir?: string;
}

/**
 * The health sweep's activity: probes one host over one SSH session and writes its textfile there; returns the
 * compact row (the full result stays on the host, as underlay.prom).
 */
export async function probeHealth(rawSpec: unknown, connect: Connector, req: ProbeRequest = {}): Promise<HealthRow> {
  const count = req.count ?? DEFAULT_PING_COUNT;
  if (!Number.isInteger(count) || count < 1 || count > 100) {
    throw new InvalidSpecError('bad probe request', [{ path: 'count', message: `${String(count)}: an integer 1–100` }]);
  }
  const textfileDir = validTextfileDir(req.textfileDir ?? DEFAULT_TEXTFILE_DIR);
  return healthRow(await probeServer(rawSpec, connect, { count, textfileDir }));
}
