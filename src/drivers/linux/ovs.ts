/** Open vSwitch through ovs-vsctl: read a bridge's ports and converge it in one atomic transaction. */
import { z } from 'zod';
import { UnsupportedPlatformError } from '../../common/errors';
import { Shell, sh } from '../shell';
import type { RemoteHost } from '../remote';
import { parseJsonOutput } from './parse/json';

export interface OvsPort {
  tag: number | null;
  type: string;
  /** Interface options (dpdk-devargs, vhost-server-path), present only when the interface has any. */
  options?: Record<string, string>;
}

export interface OvsBridge {
  exists: boolean;
  ports: Record<string, OvsPort>;
  /** `netdev` for the userspace (DPDK) datapath; absent for the kernel one (`system` or unset). */
  datapath?: 'netdev';
}

const Table = z.object({ headings: z.array(z.string()), data: z.array(z.array(z.unknown())) });

/** OVSDB JSON: a scalar, or ["set", [...]] (empty set = unset), or ["uuid", "..."]. */
function scalar(v: unknown): unknown {
  if (Array.isArray(v) && v[0] === 'set') return (v[1] as unknown[]).length ? scalar((v[1] as unknown[])[0]) : null;
  if (Array.isArray(v) && (v[0] === 'uuid' || v[0] === 'named-uuid')) return v[1];
  return v;
}

/** OVSDB JSON map ["map", [[k, v], ...]] → a record of strings (anything else: empty). */
export function ovsMap(v: unknown): Record<string, string> {
  if (!Array.isArray(v) || v[0] !== 'map' || !Array.isArray(v[1])) return {};
  return Object.fromEntries(
    (v[1] as unknown[]).filter((p): p is [unknown, unknown] => Array.isArray(p) && p.length === 2).map(([k, x]) => [String(k), String(x)]),
  );
}

/** `ovs-vsctl -f json --columns=a,b list T` → rows keyed by heading (maps stay raw: read them with ovsMap). */
export function parseOvsTable(text: string): Array<Record<string, unknown>> {
  const t = parseJsonOutput(Table, text, 'ovs-vsctl -f json list');
  return t.data.map((row) => Object.fromEntries(t.headings.map((h, i) => [h, Array.isArray(row[i]) && row[i][0] === 'map' ? row[i] : scalar(row[i])])));
}

export async function readBridge(host: RemoteHost, bridge: string): Promise<OvsBridge> {
  const ctx = { host: host.label, step: host.step };
  const probe = await host.run(sh`command -v ovs-vsctl >/dev/null || exit 127; ovs-vsctl br-exists ${bridge}`, {
    description: `ovs-vsctl br-exists ${bridge}`,
    okExitCodes: [0, 2, 127],
  });
  if (probe.exitCode === 127)
    throw new UnsupportedPlatformError('ovs-vsctl not found (the hypervisor step installs Open vSwitch when attach.kind is ovs)', {
      ...ctx,
      expected: 'openvswitch-switch installed',
    });
  if (probe.exitCode === 2) return { exists: false, ports: {} };
  const out = await host.read(
    sh`ovs-vsctl list-ports ${bridge} && echo '--' && ovs-vsctl -f json --columns=name,tag list Port && echo '--' && ovs-vsctl -f json --columns=name,type,options list Interface && echo '--' && ovs-vsctl get Bridge ${bridge} datapath_type`,
    { description: `read OVS bridge ${bridge}` },
  );
  const [portList = '', portsJson = '', ifacesJson = '', datapathType = ''] = out.split('\n--\n');
  const names = portList
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const tags = new Map(parseOvsTable(portsJson).map((r) => [String(r.name), typeof r.tag === 'number' ? r.tag : null]));
  const ifaces = parseOvsTable(ifacesJson);
  const types = new Map(ifaces.map((r) => [String(r.name), String(r.type ?? '')]));
  const options = new Map(ifaces.map((r) => [String(r.name), ovsMap(r.options)]));
  const port = (n: string): OvsPort => {
    const o = options.get(n) ?? {};
    return { tag: tags.get(n) ?? null, type: types.get(n) || 'system', ...(Object.keys(o).length ? { options: o } : {}) };
  };
  const netdev = datapathType.trim().replace(/^"|"$/g, '') === 'netdev';
  return { exists: true, ports: Object.fromEntries(names.sort().map((n) => [n, port(n)])), ...(netdev ? { datapath: 'netdev' as const } : {}) };
}

/**
 * One ovs-vsctl invocation converging `now` to `want`: everything in it commits atomically or not at all.
 */
export function convergeBridge(bridge: string, now: OvsBridge, want: OvsBridge): Shell | null {
  const ops: Shell[] = [];
  if (!want.exists) return now.exists ? sh`ovs-vsctl --if-exists del-br ${bridge}` : null;
  if (!now.exists) ops.push(sh`--may-exist add-br ${bridge}`);
  // A bridge's datapath is set before its ports: DPDK ports exist only on the netdev datapath.
  if ((now.exists ? now.datapath : undefined) !== want.datapath) ops.push(sh`set Bridge ${bridge} ${`datapath_type=${want.datapath ?? 'system'}`}`);
  for (const p of Object.keys(now.ports)) if (!(p in want.ports)) ops.push(sh`--if-exists del-port ${bridge} ${p}`);
  for (const [p, w] of Object.entries(want.ports)) {
    const cur = now.ports[p];
    if (!cur) ops.push(sh`--may-exist add-port ${bridge} ${p}`);
    if (w.type !== 'system' && cur?.type !== w.type) ops.push(sh`set Interface ${p} ${`type=${w.type}`}`);
    for (const [k, v] of Object.entries(w.options ?? {})) if (cur?.options?.[k] !== v) ops.push(sh`set Interface ${p} ${`options:${k}=${v}`}`);
    if ((cur?.tag ?? null) !== w.tag) ops.push(w.tag === null ? sh`clear Port ${p} tag` : sh`set Port ${p} ${`tag=${w.tag}`}`);
  }
  if (!ops.length) return null;
  return sh`ovs-vsctl ${new Shell(ops.map((o) => o.text).join(' -- '))}`;
}
