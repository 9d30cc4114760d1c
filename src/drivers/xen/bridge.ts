/**
 * The Linux bridge Xen guests attach to (xenbr0 by convention): iproute2 commands and the bridge-port state
 * from sysfs. Runtime configuration, like the bond and VLAN steps.
 */
import { join, sh, type Shell } from '../shell';
import type { RemoteHost } from '../remote';

export interface BridgeLinkState {
  /** The link's kind (`bridge`, or what else holds the name); null when absent. */
  kind: string | null;
  up: boolean;
}

export interface BridgeAttachState {
  bridge: BridgeLinkState | null;
  /** The uplink's master (the bridge when attached), null when it has none or does not exist. */
  uplinkMaster: string | null;
}

/** One script converging the bridge and its uplink from `now` to `want` (both for the same names). */
export function convergeBridgeScript(bridge: string, uplink: string, now: BridgeAttachState, want: BridgeAttachState): Shell | null {
  const cmds: Shell[] = [];
  if (now.uplinkMaster && now.uplinkMaster !== want.uplinkMaster) cmds.push(sh`ip link set dev ${uplink} nomaster`);
  if (now.bridge && !want.bridge) cmds.push(sh`ip link del dev ${bridge}`);
  if (!now.bridge && want.bridge) cmds.push(sh`ip link add name ${bridge} type bridge`);
  if (want.uplinkMaster && now.uplinkMaster !== want.uplinkMaster) cmds.push(sh`ip link set dev ${uplink} master ${want.uplinkMaster}`);
  if (want.bridge && (!now.bridge || now.bridge.up !== want.bridge.up))
    cmds.push(want.bridge.up ? sh`ip link set dev ${bridge} up` : sh`ip link set dev ${bridge} down`);
  return cmds.length ? join('&&', cmds) : null;
}

/** Linux bridge port states (include/uapi/linux/if_bridge.h). */
export const BR_STATES = ['disabled', 'listening', 'learning', 'forwarding', 'blocking'] as const;

/** `/sys/class/net/<port>/brport/state` → its name, or null when the link is no bridge port. */
export function parseBrportState(text: string): string | null {
  const n = Number(text.trim());
  return text.trim() !== '' && Number.isInteger(n) ? (BR_STATES[n] ?? `state ${n}`) : null;
}

export async function readBrportState(host: RemoteHost, port: string): Promise<string | null> {
  const path = `/sys/class/net/${port}/brport/state`;
  const r = await host.run(sh`cat ${path} 2>/dev/null || true`, { description: `read ${path}`, privileged: false });
  return parseBrportState(r.stdout);
}
