/**
 * Open vSwitch on the DPDK datapath, Debian's way: openvswitch-switch-dpdk installs a second ovs-vswitchd
 * (/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk) as an alternative of the plain one; `update-alternatives
 * --set ovs-vswitchd` picks it, Open_vSwitch other_config says dpdk-init=true (with socket memory and CPU masks),
 * and a restart of openvswitch-switch starts it. OVS itself reports whether DPDK initialized
 * (Open_vSwitch dpdk_initialized) and each DPDK port's link_state and error.
 */
import { UnsupportedPlatformError } from '../../common/errors';
import type { RemoteHost } from '../remote';
import { join, sh, Shell } from '../shell';
import { ovsMap, parseOvsTable } from './ovs';

export const VSWITCHD_ALTERNATIVE = 'ovs-vswitchd';
export const VSWITCHD_DPDK = '/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk';
/** The other_config keys this build sets: the undo restores exactly these. */
export const DPDK_CONFIG_KEYS = ['dpdk-init', 'dpdk-socket-mem', 'pmd-cpu-mask', 'dpdk-lcore-mask'] as const;
export type DpdkConfigKey = (typeof DPDK_CONFIG_KEYS)[number];
/** Where OVS, the vhost-user client, finds the socket QEMU serves for a guest's port. */
export const VHOST_USER_DIR = '/run/openvswitch';

export interface Alternative {
  /** auto: the highest priority wins (the plain ovs-vswitchd); manual: the one set. */
  status: 'auto' | 'manual';
  value: string | null;
}

export interface OvsDpdkState {
  alternative: Alternative;
  /** The keys of DPDK_CONFIG_KEYS that other_config has. */
  config: Partial<Record<DpdkConfigKey, string>>;
  /** Open_vSwitch dpdk_initialized, as the running ovs-vswitchd reports it. */
  initialized: boolean;
}

/** `update-alternatives --query ovs-vswitchd` → status and current value. */
export function parseAlternative(text: string): Alternative {
  const status = /^Status: (auto|manual)$/m.exec(text)?.[1] as Alternative['status'] | undefined;
  const value = /^Value: (\S+)$/m.exec(text)?.[1];
  return { status: status ?? 'auto', value: value && value !== 'none' ? value : null };
}

/**
 * Prints three sections separated by `--`: the alternative's query, other_config as JSON, dpdk_initialized.
 * Exits 127 without ovs-vsctl, 3 without the alternative (openvswitch-switch-dpdk not installed).
 */
export function readOvsDpdkScript(): Shell {
  return sh`command -v ovs-vsctl >/dev/null || exit 127
update-alternatives --query ${VSWITCHD_ALTERNATIVE} 2>/dev/null || exit 3
echo '--'; ovs-vsctl -f json --columns=other_config list Open_vSwitch
echo '--'; ovs-vsctl get Open_vSwitch . dpdk_initialized`;
}

export function parseOvsDpdk(text: string): OvsDpdkState {
  const [alt = '', cfg = '', init = ''] = text.split('\n--\n');
  const rows = parseOvsTable(cfg);
  const all = ovsMap(rows[0]?.other_config);
  const config: OvsDpdkState['config'] = {};
  for (const k of DPDK_CONFIG_KEYS) if (k in all) config[k] = all[k];
  return { alternative: parseAlternative(alt), config, initialized: init.trim() === 'true' };
}

export async function readOvsDpdk(host: RemoteHost): Promise<OvsDpdkState> {
  const r = await host.run(readOvsDpdkScript(), { description: 'read Open vSwitch DPDK state', okExitCodes: [0, 3, 127] });
  if (r.exitCode !== 0) {
    throw new UnsupportedPlatformError(r.exitCode === 127 ? 'ovs-vsctl not found' : 'no ovs-vswitchd alternative: openvswitch-switch-dpdk is not installed', {
      host: host.label,
      step: host.step,
      field: 'dpdk.ovs',
      expected: 'openvswitch-switch-dpdk installed (the hypervisor step installs it)',
      observed: 'absent',
    });
  }
  return parseOvsDpdk(r.stdout);
}

/** other_config as the spec wants it (socket memory per NUMA node, comma-separated). */
export function wantedDpdkConfig(ovs: { pmdCpuMask: string; lcoreMask?: string | undefined; socketMemoryMb: number[] }): OvsDpdkState['config'] {
  return {
    'dpdk-init': 'true',
    'dpdk-socket-mem': ovs.socketMemoryMb.join(','),
    'pmd-cpu-mask': ovs.pmdCpuMask,
    ...(ovs.lcoreMask ? { 'dpdk-lcore-mask': ovs.lcoreMask } : {}),
  };
}

/**
 * Converges the alternative and other_config, then restarts Open vSwitch when either changed (the DPDK binary
 * and dpdk-init are read at start). Null when nothing differs.
 */
export function convergeOvsDpdkScript(now: OvsDpdkState, want: Pick<OvsDpdkState, 'alternative' | 'config'>): Shell | null {
  const cmds: Shell[] = [];
  const alt = want.alternative;
  if (alt.status !== now.alternative.status || (alt.status === 'manual' && alt.value !== now.alternative.value)) {
    cmds.push(
      alt.status === 'auto' || !alt.value
        ? sh`update-alternatives --auto ${VSWITCHD_ALTERNATIVE}`
        : sh`update-alternatives --set ${VSWITCHD_ALTERNATIVE} ${alt.value}`,
    );
  }
  const set: string[] = [];
  const remove: string[] = [];
  for (const k of DPDK_CONFIG_KEYS) {
    const w = want.config[k];
    if (w === now.config[k]) continue;
    if (w === undefined) remove.push(k);
    else set.push(`other_config:${k}=${w}`);
  }
  const ops = [...(set.length ? [sh`set Open_vSwitch . ${set}`] : []), ...(remove.length ? [sh`remove Open_vSwitch . other_config ${remove}`] : [])];
  // One ovs-vsctl: the keys change in one transaction.
  if (ops.length) cmds.push(sh`ovs-vsctl ${new Shell(ops.map((o) => o.text).join(' -- '))}`);
  if (!cmds.length) return null;
  cmds.push(sh`systemctl restart openvswitch-switch`);
  return join('&&', cmds);
}

export interface DpdkPortStatus {
  name: string;
  type: string;
  /** up, down, or null when OVS has no link state for it (not created). */
  linkState: string | null;
  /** OVS's error for the interface (e.g. a device DPDK could not probe), or null. */
  error: string | null;
}

/** `ovs-vsctl -f json --columns=name,type,link_state,error list Interface` → the named ports. */
export function parsePortStatus(text: string, names: readonly string[]): DpdkPortStatus[] {
  const rows = new Map(parseOvsTable(text).map((r) => [String(r.name), r]));
  return names.map((name) => {
    const r = rows.get(name);
    const s = (v: unknown) => (typeof v === 'string' && v ? v : null);
    return { name, type: r ? String(r.type ?? '') : 'absent', linkState: s(r?.link_state), error: s(r?.error) };
  });
}

export async function readPortStatus(host: RemoteHost, names: readonly string[]): Promise<DpdkPortStatus[]> {
  const out = await host.read(sh`ovs-vsctl -f json --columns=name,type,link_state,error list Interface`, { description: 'read OVS interface states' });
  return parsePortStatus(out, names);
}
