/**
 * Persistent host network configuration through the host's own network manager: the files each manager reads
 * (rendered here, deterministic, so their hashes say whether a host holds the spec) and the commands that make
 * the manager apply them now — and undo them. Three backends: systemd-networkd (.netdev / .network files and
 * drop-ins), NetworkManager (keyfiles underlay writes and loads with nmcli), ifupdown (stanzas in
 * /etc/network/interfaces.d). docs/persistence.md has the table: detection, files, apply, undo, drift.
 *
 * Ownership: each step owns the files it writes (the bond step its bond and port files, the VLAN step its VLAN
 * files and the drop-in that ties them to their parent), so an undo of one step never touches another's files.
 * A NIC another configuration already defines is taken over cleanly: networkd by a lower-numbered .network file
 * (the first match wins), NetworkManager by port profiles of higher autoconnect priority, ifupdown by disabling
 * its stanzas in the file that holds them (that file is then part of the step's state and restored byte for byte).
 */
import { createHash } from 'node:crypto';
import type { DesiredFile } from '../files';
import type { NetManager } from '../netmgr';
import { join, sh, type Shell } from '../../shell';

export interface BondConfig {
  name: string;
  members: string[];
  mode: string;
  miimon: number;
  lacpRate: 'slow' | 'fast';
  xmitHashPolicy: string;
}

export interface VlanConfig {
  name: string;
  parent: string;
  id: number;
  address?: string;
}

export const NETWORKD_DIR = '/etc/systemd/network';
export const NM_DIR = '/etc/NetworkManager/system-connections';
export const IFUPDOWN_DIR = '/etc/network/interfaces.d';

const header = (serverId: string, step: string) =>
  `# Written by underlay for ${serverId} (${step} step); \`underlay rollback ${serverId}\` restores what was here before.\n`;

/** Deletes a link (bond, VLAN, bridge) when it exists: a no-op for one already gone. */
function delLinkIfPresent(name: string): Shell {
  return sh`{ ! [ -e /sys/class/net/${name} ] || ip link del dev ${name}; }`;
}

/** A stable UUID for a NetworkManager connection underlay owns (the same on every apply: its file's hash holds). */
export function connectionUuid(serverId: string, id: string): string {
  const h = createHash('sha256').update(`underlay:${serverId}:${id}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const lacp = (b: BondConfig) => b.mode === '802.3ad';
const hashes = (b: BondConfig) => lacp(b) || b.mode === 'balance-tlb' || b.mode === 'balance-alb';

// ---- file names ------------------------------------------------------------------------------------------------

export function bondFilePaths(m: NetManager, b: BondConfig): string[] {
  switch (m) {
    case 'networkd':
      return [
        `${NETWORKD_DIR}/10-underlay-${b.name}.netdev`,
        `${NETWORKD_DIR}/10-underlay-${b.name}.network`,
        `${NETWORKD_DIR}/10-underlay-${b.name}-ports.network`,
      ];
    case 'networkmanager':
      return [`${NM_DIR}/underlay-${b.name}.nmconnection`, ...b.members.map((p) => `${NM_DIR}/underlay-${b.name}-port-${p}.nmconnection`)];
    case 'ifupdown':
      return [`${IFUPDOWN_DIR}/underlay-${b.name}`];
  }
}

/** ifupdown's source glob reads names with dots too, but `source-directory` does not: keep names plain. */
const plain = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, '-');

export function vlanFilePaths(m: NetManager, v: VlanConfig): string[] {
  switch (m) {
    case 'networkd':
      return [`${NETWORKD_DIR}/20-underlay-${v.name}.netdev`, `${NETWORKD_DIR}/20-underlay-${v.name}.network`];
    case 'networkmanager':
      return [`${NM_DIR}/underlay-vlan-${v.name}.nmconnection`];
    case 'ifupdown':
      return [`${IFUPDOWN_DIR}/underlay-vlan-${plain(v.name)}`];
  }
}

/**
 * networkd: the drop-in that lists a parent's VLANs (`VLAN=`), next to the .network file that configures the
 * parent (its own, or the bond step's 10-underlay-<bond>.network); when no file configures it, one of our own.
 */
export function vlanParentFile(parent: string, parentNetworkFile: string | null): { dropIn: string; ownNetworkFile: string | null } {
  if (parentNetworkFile) return { dropIn: `${parentNetworkFile}.d/underlay-vlans.conf`, ownNetworkFile: null };
  const own = `${NETWORKD_DIR}/25-underlay-${parent}.network`;
  return { dropIn: `${own}.d/underlay-vlans.conf`, ownNetworkFile: own };
}

// ---- rendering -------------------------------------------------------------------------------------------------

export function renderBondFiles(m: NetManager, b: BondConfig, serverId: string): DesiredFile[] {
  const head = header(serverId, 'bond');
  const [main, second, third] = bondFilePaths(m, b);
  switch (m) {
    case 'networkd': {
      const bond = [
        '[Bond]',
        `Mode=${b.mode}`,
        ...(lacp(b) ? [`LACPTransmitRate=${b.lacpRate}`] : []),
        `MIIMonitorSec=${b.miimon}ms`,
        ...(hashes(b) ? [`TransmitHashPolicy=${b.xmitHashPolicy}`] : []),
      ];
      return [
        { path: main!, mode: '0644', content: `${head}[NetDev]\nName=${b.name}\nKind=bond\n\n${bond.join('\n')}\n` },
        // The bond itself carries no address; its VLANs (VLAN step, drop-in) do.
        // No address of its own: "online" at boot means carrier (the default, "degraded", would hold boot for 2 min).
        {
          path: second!,
          mode: '0644',
          content: `${head}[Match]\nName=${b.name}\n\n[Link]\nRequiredForOnline=carrier\n\n[Network]\nLinkLocalAddressing=no\nConfigureWithoutCarrier=yes\n`,
        },
        { path: third!, mode: '0644', content: `${head}[Match]\nName=${b.members.join(' ')}\n\n[Network]\nBond=${b.name}\n` },
      ];
    }
    case 'networkmanager': {
      const opts = [
        `mode=${b.mode}`,
        `miimon=${b.miimon}`,
        ...(lacp(b) ? [`lacp_rate=${b.lacpRate}`] : []),
        ...(hashes(b) ? [`xmit_hash_policy=${b.xmitHashPolicy}`] : []),
      ];
      const files: DesiredFile[] = [
        {
          path: main!,
          mode: '0600',
          content: `${head}[connection]\nid=underlay-${b.name}\nuuid=${connectionUuid(serverId, `underlay-${b.name}`)}\ntype=bond\ninterface-name=${b.name}\nautoconnect-slaves=1\n\n[bond]\n${opts.sort().join('\n')}\n\n[ipv4]\nmethod=disabled\n\n[ipv6]\naddr-gen-mode=eui64\nmethod=disabled\n`,
        },
      ];
      b.members.forEach((p) => {
        const id = `underlay-${b.name}-port-${p}`;
        files.push({
          path: `${NM_DIR}/${id}.nmconnection`,
          mode: '0600',
          // Priority above the installer's profile for the same NIC: at boot NetworkManager picks this one.
          content: `${head}[connection]\nid=${id}\nuuid=${connectionUuid(serverId, id)}\ntype=ethernet\ninterface-name=${p}\nmaster=${b.name}\nslave-type=bond\nautoconnect-priority=100\n\n[ethernet]\n`,
        });
      });
      return files;
    }
    case 'ifupdown': {
      const opts = [
        `bond-slaves ${b.members.join(' ')}`,
        `bond-mode ${b.mode}`,
        `bond-miimon ${b.miimon}`,
        ...(lacp(b) ? [`bond-lacp-rate ${b.lacpRate}`] : []),
        ...(hashes(b) ? [`bond-xmit-hash-policy ${b.xmitHashPolicy}`] : []),
      ];
      return [{ path: main!, mode: '0644', content: `${head}auto ${b.name}\niface ${b.name} inet manual\n${opts.map((o) => `    ${o}`).join('\n')}\n` }];
    }
  }
}

export function renderVlanFiles(
  m: NetManager,
  vlans: readonly VlanConfig[],
  serverId: string,
  parentNetworkFiles: Record<string, string | null>,
): DesiredFile[] {
  const head = header(serverId, 'vlan');
  const files: DesiredFile[] = [];
  for (const v of vlans) {
    const [a, b] = vlanFilePaths(m, v);
    switch (m) {
      case 'networkd':
        files.push(
          { path: a!, mode: '0644', content: `${head}[NetDev]\nName=${v.name}\nKind=vlan\n\n[VLAN]\nId=${v.id}\n` },
          {
            path: b!,
            mode: '0644',
            content: `${head}[Match]\nName=${v.name}\n\n${v.address ? `[Network]\nAddress=${v.address}\n` : '[Link]\nRequiredForOnline=carrier\n\n[Network]\nLinkLocalAddressing=no\nConfigureWithoutCarrier=yes\n'}`,
          },
        );
        break;
      case 'networkmanager': {
        const id = `underlay-vlan-${v.name}`;
        const ipv4 = v.address ? `method=manual\naddress1=${v.address}` : 'method=disabled';
        files.push({
          path: a!,
          mode: '0600',
          content: `${head}[connection]\nid=${id}\nuuid=${connectionUuid(serverId, id)}\ntype=vlan\ninterface-name=${v.name}\n\n[vlan]\nid=${v.id}\nparent=${v.parent}\n\n[ipv4]\n${ipv4}\n\n[ipv6]\naddr-gen-mode=eui64\nmethod=disabled\n`,
        });
        break;
      }
      case 'ifupdown':
        files.push({
          path: a!,
          mode: '0644',
          // ifupdown creates a dotted VLAN (bond0.100) itself; another name needs the vlan package's raw-device option.
          content: `${head}auto ${v.name}\niface ${v.name} inet ${v.address ? `static\n    address ${v.address}` : 'manual'}\n${v.name === `${v.parent}.${v.id}` ? '' : `    vlan-raw-device ${v.parent}\n`}`,
        });
        break;
    }
  }
  if (m === 'networkd') {
    // Per parent: the drop-in listing its VLANs (and, for a parent nothing configures, our own .network for it).
    const parents = [...new Set(vlans.map((v) => v.parent))];
    for (const parent of parents) {
      const { dropIn, ownNetworkFile } = vlanParentFile(parent, parentNetworkFiles[parent] ?? null);
      if (ownNetworkFile)
        files.push({
          path: ownNetworkFile,
          mode: '0644',
          content: `${head}[Match]\nName=${parent}\n\n[Link]\nRequiredForOnline=carrier\n\n[Network]\nLinkLocalAddressing=no\n`,
        });
      const list = vlans.filter((v) => v.parent === parent).map((v) => `VLAN=${v.name}`);
      files.push({ path: dropIn, mode: '0644', content: `${head}[Network]\n${list.join('\n')}\n` });
    }
  }
  return files;
}

// ---- applying and undoing ---------------------------------------------------------------------------------------

export interface BondActivation {
  /** Members ifupdown has up on their own (ifdown before their stanzas go). */
  ifupdownUp: string[];
  /** The runtime bond exists but is not what the files describe: delete it so the manager creates it anew. */
  recreate: boolean;
}

/** The file changes, wrapped in what makes the manager apply them now. */
/**
 * `ifup` that also brings back an interface someone deleted at runtime: ifupdown still lists it as up in
 * /run/network/ifstate, so a plain `ifup` would do nothing. Only then is that record dropped first (`ifdown
 * --force` of the missing link); otherwise this is the plain `ifup` ifupdown runs at boot.
 */
function ifupShell(name: string): Shell {
  return sh`{ if ! [ -e /sys/class/net/${name} ] && ifquery --state ${name} >/dev/null 2>&1; then ifdown --force ${name} >/dev/null 2>&1 || true; fi; ifup ${name}; }`;
}

export function applyBondScript(m: NetManager, b: BondConfig, files: Shell | null, a: BondActivation): Shell {
  const cmds: Shell[] = [];
  const del = delLinkIfPresent(b.name);
  switch (m) {
    case 'networkd':
      if (files) cmds.push(files);
      // networkd never changes an existing netdev's parameters: a stale bond must go before it makes its own.
      if (a.recreate) cmds.push(del);
      cmds.push(sh`networkctl reload`, sh`networkctl reconfigure ${b.members}`);
      break;
    case 'networkmanager':
      if (files) cmds.push(files);
      if (a.recreate) cmds.push(del);
      cmds.push(sh`nmcli connection reload`);
      // Activating a port activates its controller; the old profile of the NIC is deactivated by it.
      for (const p of b.members) cmds.push(sh`nmcli --wait 30 connection up ${`underlay-${b.name}-port-${p}`}`);
      break;
    case 'ifupdown':
      // ifdown needs the stanza that brought a NIC up: before the files change.
      for (const p of a.ifupdownUp) cmds.push(sh`ifdown ${p}`);
      if (files) cmds.push(files);
      if (a.recreate) cmds.push(del);
      cmds.push(ifupShell(b.name));
      break;
  }
  return join('&&', cmds);
}

export interface BondDeactivation {
  /** The members' own configuration to bring back: NetworkManager connection names, or ifupdown interfaces. */
  nmConnections: string[];
  ifupdownUp: string[];
}

/** Undoes the bond through the manager: takes it down while its files still say what it is, then restores them. */
export function undoBondScript(m: NetManager, b: BondConfig, restore: Shell | null, d: BondDeactivation): Shell {
  const cmds: Shell[] = [];
  const del = delLinkIfPresent(b.name);
  switch (m) {
    case 'networkd':
      if (restore) cmds.push(restore);
      cmds.push(sh`networkctl reload`, del, sh`{ networkctl reconfigure ${b.members} 2>/dev/null || true; }`);
      break;
    case 'networkmanager':
      cmds.push(sh`{ nmcli --wait 30 connection down ${`underlay-${b.name}`} 2>/dev/null || true; }`);
      if (restore) cmds.push(restore);
      cmds.push(sh`nmcli connection reload`, del);
      for (const c of d.nmConnections) cmds.push(sh`nmcli --wait 30 connection up ${c}`);
      break;
    case 'ifupdown':
      cmds.push(sh`{ ifdown ${b.name} 2>/dev/null || true; }`, del);
      if (restore) cmds.push(restore);
      for (const p of d.ifupdownUp) cmds.push(sh`ifup ${p}`);
      break;
  }
  return join('&&', cmds);
}

/**
 * A commit-confirmed move of the management address onto a VLAN of the bond (src/activities/bond.ts movePlan): what
 * the manager needs besides the bond's and the VLAN's files, and what brings the members back when the host rolls
 * the move back (src/drivers/linux/txn.ts runs it after restore.sh has put the files back).
 */
export interface MoveActivation {
  bond: BondConfig;
  /** The VLAN that carries the management address afterwards. */
  vlan: string;
  /** The members' own configuration to bring back: NetworkManager connection names, or the NICs ifupdown had up. */
  nmConnections: string[];
  ifupdownUp: string[];
}

/** Runs after the bond's apply script, in the detached change: brings the management VLAN up through the manager. */
export function moveUpScript(m: NetManager, a: MoveActivation): Shell {
  switch (m) {
    case 'networkd':
      // networkd creates the bond, then its VLAN from the drop-in: reconfigure the bond once it exists.
      return sh`for i in $(seq 1 40); do [ -e /sys/class/net/${a.bond.name} ] && break; sleep 0.25; done; networkctl reconfigure ${a.bond.name}`;
    case 'networkmanager':
      return sh`nmcli --wait 30 connection up ${`underlay-vlan-${a.vlan}`}`;
    case 'ifupdown':
      return ifupShell(a.vlan);
  }
}

/**
 * The runtime half of a rolled-back move, run with the pre-state's files back in place: the VLAN and the bond
 * deleted, the members brought back up by their own configuration. Every command runs (`;`): a rollback does as
 * much as it can.
 *  - networkd: reload (the bond's files are gone), delete the links, reconfigure the members.
 *  - NetworkManager: reload (the underlay keyfiles are gone, so are their profiles), delete the links, activate
 *    the members' own profiles again.
 *  - ifupdown: the stanzas of the bond and the VLAN are gone, but /run/network/ifstate may still list them (and not
 *    the members, which the change took down): delete the links, drop those records (`ifdown --force` of a link
 *    that no longer exists), and bring each member up from its restored stanza — `ifdown --force` first, so that a
 *    member the state still lists (a change cut off before it took the member down) is configured afresh.
 */
export function moveReactivateScript(m: NetManager, a: MoveActivation): Shell {
  const del = [a.vlan, a.bond.name].map(delLinkIfPresent);
  switch (m) {
    case 'networkd':
      return join(';', [sh`networkctl reload`, ...del, sh`networkctl reconfigure ${a.bond.members}`]);
    case 'networkmanager':
      return join(';', [sh`nmcli connection reload`, ...del, ...a.nmConnections.map((c) => sh`nmcli --wait 30 connection up ${c}`)]);
    case 'ifupdown':
      return join(';', [
        ...del,
        ...[a.vlan, a.bond.name].map((l) => sh`{ ! ifquery --state ${l} >/dev/null 2>&1 || ifdown --force ${l} >/dev/null 2>&1 || true; }`),
        ...a.ifupdownUp.map((p) => sh`{ ifdown --force ${p} >/dev/null 2>&1 || true; ip addr flush dev ${p} 2>/dev/null; ifup ${p}; }`),
      ]);
  }
}

/**
 * The reverse move's change (src/activities/bond.ts reverseMovePlan), run detached on a moved host: the
 * pre-onboarding files put back (`restore`), then what a rolled-back move does at runtime — the VLAN and the bond
 * deleted, the members brought back by their own configuration (moveReactivateScript; networkd: reload, delete,
 * reconfigure the members, which networkd gives back once the bond's ports file is gone).
 */
export function moveBackScript(m: NetManager, a: MoveActivation, restore: Shell | null): Shell {
  const head = restore ? [restore] : [];
  if (m === 'networkd')
    return join('&&', [
      ...head,
      sh`networkctl reload`,
      delLinkIfPresent(a.vlan),
      delLinkIfPresent(a.bond.name),
      sh`{ networkctl reconfigure ${a.bond.members} 2>/dev/null || true; }`,
    ]);
  return join('&&', [...head, sh`{ ${moveReactivateScript(m, a)}; }`]);
}

/**
 * The reverse move's rollback (the host's own, back to the moved state), run after restore.sh has put the moved
 * state's files back: what the forward move's change does once its files are written — the bond's apply through the
 * manager, then the management VLAN up (moveUpScript). Every part runs (`;`).
 *  - networkd: reload, reconfigure the members, then the bond once it exists (its VLAN comes from the drop-in).
 *  - NetworkManager: reload (the underlay keyfiles are back), the ports up (their controller with them), the VLAN up.
 *  - ifupdown: the members the reverse change brought up from their own stanzas (now disabled again) dropped from
 *    /run/network/ifstate and their addresses flushed, as the forward change's `ifdown` did; then the bond and the
 *    VLAN up from their stanzas.
 */
export function moveReapplyScript(m: NetManager, a: MoveActivation): Shell {
  switch (m) {
    case 'networkd':
      return join(';', [sh`networkctl reload`, sh`networkctl reconfigure ${a.bond.members}`, moveUpScript(m, a)]);
    case 'networkmanager':
      return join(';', [applyBondScript(m, a.bond, null, { ifupdownUp: [], recreate: false }), moveUpScript(m, a)]);
    case 'ifupdown':
      return join(';', [
        ...a.ifupdownUp.map((p) => sh`{ ifdown --force ${p} >/dev/null 2>&1 || true; ip addr flush dev ${p} 2>/dev/null; }`),
        applyBondScript(m, a.bond, null, { ifupdownUp: [], recreate: false }),
        moveUpScript(m, a),
      ]);
  }
}

export function applyVlansScript(m: NetManager, vlans: readonly VlanConfig[], files: Shell | null, recreate: readonly string[]): Shell {
  const cmds: Shell[] = [];
  for (const name of recreate) cmds.push(delLinkIfPresent(name));
  if (files) cmds.push(files);
  switch (m) {
    case 'networkd':
      cmds.push(sh`networkctl reload`, sh`networkctl reconfigure ${[...new Set(vlans.map((v) => v.parent))]}`);
      break;
    case 'networkmanager':
      cmds.push(sh`nmcli connection reload`);
      for (const v of vlans) cmds.push(sh`nmcli --wait 30 connection up ${`underlay-vlan-${v.name}`}`);
      break;
    case 'ifupdown':
      for (const v of vlans) cmds.push(ifupShell(v.name));
      break;
  }
  return join('&&', cmds);
}

/**
 * Undoes VLANs: down through the manager, files restored, the VLANs the pre-state did not have deleted. Only what
 * changes goes down: with the files as they were (undoing a drift remediation), just the VLANs to remove — taking
 * the others down through ifupdown or NetworkManager would delete links the pre-state has. `keep`: the VLAN that
 * carries the management session (moved onto it), never taken down here (the bond step's undo moves it back).
 */
export function undoVlansScript(m: NetManager, all: readonly VlanConfig[], restore: Shell | null, remove: readonly string[], keep?: string): Shell {
  const cmds: Shell[] = [];
  const vlans = (restore ? all : all.filter((v) => remove.includes(v.name))).filter((v) => v.name !== keep);
  switch (m) {
    case 'networkd':
      if (restore) cmds.push(restore);
      cmds.push(sh`networkctl reload`);
      break;
    case 'networkmanager':
      for (const v of vlans) cmds.push(sh`{ nmcli --wait 30 connection down ${`underlay-vlan-${v.name}`} 2>/dev/null || true; }`);
      if (restore) cmds.push(restore);
      cmds.push(sh`nmcli connection reload`);
      break;
    case 'ifupdown':
      for (const v of vlans) cmds.push(sh`{ ifdown ${v.name} 2>/dev/null || true; }`);
      if (restore) cmds.push(restore);
      break;
  }
  for (const name of remove) cmds.push(delLinkIfPresent(name));
  if (m === 'networkd') cmds.push(sh`{ networkctl reconfigure ${[...new Set(all.map((v) => v.parent))]} 2>/dev/null || true; }`);
  return cmds.length ? join('&&', cmds) : sh`true`;
}

// ---- the Xen bridge (attach step) -------------------------------------------------------------------------------

export interface BridgeConfig {
  name: string;
  /** Its one port: the bond (or the spec's uplink). */
  uplink: string;
}

/**
 * networkd: the drop-in that makes the uplink a port of the bridge (`Bridge=`), next to the .network file that
 * configures the uplink (the bond step's, for the bond); when nothing configures it, one of our own.
 */
export function bridgeUplinkFile(uplink: string, uplinkNetworkFile: string | null): { dropIn: string; ownNetworkFile: string | null } {
  if (uplinkNetworkFile) return { dropIn: `${uplinkNetworkFile}.d/underlay-bridge.conf`, ownNetworkFile: null };
  const own = `${NETWORKD_DIR}/35-underlay-${uplink}.network`;
  return { dropIn: `${own}.d/underlay-bridge.conf`, ownNetworkFile: own };
}

/** The files of the Xen bridge, per manager (NetworkManager is refused by the step before it gets here). */
export function bridgeFilePaths(m: NetManager, b: BridgeConfig, uplinkNetworkFile: string | null): string[] {
  switch (m) {
    case 'networkd': {
      const { dropIn, ownNetworkFile } = bridgeUplinkFile(b.uplink, uplinkNetworkFile);
      return [
        `${NETWORKD_DIR}/30-underlay-${b.name}.netdev`,
        `${NETWORKD_DIR}/30-underlay-${b.name}.network`,
        dropIn,
        ...(ownNetworkFile ? [ownNetworkFile] : []),
      ];
    }
    case 'ifupdown':
      return [`${IFUPDOWN_DIR}/underlay-bridge-${plain(b.name)}`];
    case 'networkmanager':
      return [];
  }
}

export function renderBridgeFiles(m: NetManager, b: BridgeConfig, serverId: string, uplinkNetworkFile: string | null): DesiredFile[] {
  const head = header(serverId, 'attach');
  const paths = bridgeFilePaths(m, b, uplinkNetworkFile);
  switch (m) {
    case 'networkd': {
      const [netdev, network, dropIn, own] = paths;
      // No address on the bridge (guests' vifs join it); STP off, as ifupdown's bridge_stp off: forwarding at once.
      const files: DesiredFile[] = [
        { path: netdev!, mode: '0644', content: `${head}[NetDev]\nName=${b.name}\nKind=bridge\n\n[Bridge]\nSTP=no\n` },
        {
          path: network!,
          mode: '0644',
          content: `${head}[Match]\nName=${b.name}\n\n[Link]\nRequiredForOnline=carrier\n\n[Network]\nLinkLocalAddressing=no\nConfigureWithoutCarrier=yes\n`,
        },
        { path: dropIn!, mode: '0644', content: `${head}[Network]\nBridge=${b.name}\n` },
      ];
      if (own) files.push({ path: own, mode: '0644', content: `${head}[Match]\nName=${b.uplink}\n\n[Network]\nLinkLocalAddressing=no\n` });
      return files;
    }
    case 'ifupdown':
      // bridge-utils' hooks create the bridge and enslave the port; `auto` brings it up at boot after the bond
      // (interfaces.d is read in name order: underlay-bond0, underlay-bridge-…, underlay-vlan-…).
      return [
        {
          path: paths[0]!,
          mode: '0644',
          content: `${head}auto ${b.name}\niface ${b.name} inet manual\n    bridge_ports ${b.uplink}\n    bridge_stp off\n    bridge_fd 0\n    bridge_maxwait 0\n`,
        },
      ];
    case 'networkmanager':
      return [];
  }
}

/** The bridge's files written, then applied by the manager now. */
export function applyBridgeScript(m: NetManager, b: BridgeConfig, files: Shell | null): Shell {
  const cmds: Shell[] = [];
  if (files) cmds.push(files);
  switch (m) {
    case 'networkd':
      // reload creates the bridge netdev; reconfiguring the uplink applies its Bridge= drop-in.
      cmds.push(sh`networkctl reload`, sh`networkctl reconfigure ${b.uplink}`);
      break;
    case 'ifupdown':
      cmds.push(ifupShell(b.name));
      break;
    case 'networkmanager':
      break;
  }
  return join('&&', cmds);
}

/** Undoes the bridge through the manager: down while its files still say what it is, files restored, link gone. */
export function undoBridgeScript(m: NetManager, b: BridgeConfig, restore: Shell | null, removeBridge: boolean): Shell {
  const cmds: Shell[] = [];
  const del = removeBridge ? [delLinkIfPresent(b.name)] : [];
  switch (m) {
    case 'networkd':
      if (restore) cmds.push(restore);
      cmds.push(sh`networkctl reload`, ...del, sh`{ networkctl reconfigure ${b.uplink} 2>/dev/null || true; }`);
      break;
    case 'ifupdown':
      cmds.push(sh`{ ifdown ${b.name} 2>/dev/null || true; }`);
      if (restore) cmds.push(restore);
      cmds.push(...del);
      break;
    case 'networkmanager':
      if (restore) cmds.push(restore);
      cmds.push(...del);
      break;
  }
  return join('&&', cmds);
}
