/**
 * Which network manager runs a Linux host, and which one owns each interface — read in one command, parsed here,
 * decided by `chooseManager`. underlay writes persistent network configuration through the manager that runs
 * the host (systemd-networkd, NetworkManager or ifupdown); see docs/persistence.md.
 *
 * Being active is not owning: networkd can run while every link is `unmanaged`, and Debian's networking.service
 * stays active after `ifup -a` set up only `lo`. So the choice looks at who manages the NICs underlay will
 * touch, and falls back to the active manager only when nobody manages them yet.
 */
import { UnsupportedPlatformError } from '../../common/errors';
import type { StepName } from '../../steps';
import type { RemoteHost } from '../remote';
import { sh } from '../shell';

export const NET_MANAGERS = ['networkd', 'networkmanager', 'ifupdown'] as const;
export type NetManager = (typeof NET_MANAGERS)[number];

export interface ManagerFacts {
  /** `systemctl is-active` of each manager's service. */
  active: { networkd: boolean; networkmanager: boolean; ifupdown: boolean };
  /** `systemctl is-enabled` (enabled, or static/indirect through a socket/alias) of each. */
  enabled: { networkd: boolean; networkmanager: boolean; ifupdown: boolean };
  /** ifupdown tools present: ifup, ifenslave's bond hook, bridge-utils' bridge hook. */
  ifupdown: { installed: boolean; ifenslave: boolean; bridgeUtils: boolean; sourcesInterfacesD: boolean };
  /** netplan YAML files in /etc/netplan (underlay does not write netplan). */
  netplan: string[];
  /** NetworkManager's view per device: state (`connected`, `unmanaged`, …) and active connection; when NM runs. */
  nm: Record<string, { state: string; connection: string | null }>;
  /** networkd's view per link: setup state (`configured`, `unmanaged`, …) and its .network file; when networkd runs. */
  networkd: Record<string, { setup: string; networkFile: string | null }>;
  /** Interfaces ifupdown brought up (/run/network/ifstate), and those /etc/network/interfaces defines. */
  ifupdownUp: string[];
  ifupdownDefined: string[];
}

const SECTION = /^## (\S+)(?: (\S+))?$/;
/** networkd's per-link setup states (networkctl(1)). */
const NETWORKD_SETUP_STATES = new Set(['pending', 'initialized', 'configuring', 'configured', 'unmanaged', 'failed', 'linger']);

/**
 * One script printing every fact in sections (`## name`), each read tolerantly: a tool that is missing prints
 * nothing. Read-only; privileged because `systemctl` needs root where the host has no D-Bus (the lab's Debian) and
 * `networkctl status` may; `ifquery --list` only reads /etc/network, so it runs as the login (`command` skips the
 * elevation alias of a non-root login: one sudo call less per observation, src/drivers/elevate.ts).
 */
export function factsScript() {
  // One systemctl call for the three units (blocks in argument order, separated by an empty line): a non-root
  // login pays one sudo call per command, ≈ 1–3 s each on the lab's emulated guests. One awk reads the three
  // blocks (first line: networkd's and NetworkManager's ActiveState, for the sections below; then the facts):
  // every process costs tens of milliseconds on an emulated guest, and this runs in each network step's observe.
  return sh`st=$(systemctl show -p ActiveState -p UnitFileState systemd-networkd.service NetworkManager.service networking.service 2>/dev/null)
units=$(printf '%s\n' "$st" | awk 'BEGIN { RS = ""; FS = "\\n"; n = split("systemd-networkd NetworkManager networking", u, " ") }
  { for (k = 1; k <= NF; k++) { if ($k ~ /^ActiveState=/) a[NR] = substr($k, 13); else if ($k ~ /^UnitFileState=/) e[NR] = substr($k, 15) } }
  END { print a[1] " " a[2]; for (i = 1; i <= n; i++) { printf "## active %s\\n", u[i]; if (a[i] != "") print a[i]; printf "## enabled %s\\n", u[i]; if (e[i] != "") print e[i] } }')
nl='
'
first=\${units%%"$nl"*}; nda=\${first%% *}; nma=\${first#* }
printf '%s\n' "\${units#*"$nl"}"
printf '## ifupdown\n'; command -v ifup >/dev/null && echo installed; [ -x /etc/network/if-pre-up.d/ifenslave ] && echo ifenslave; [ -x /etc/network/if-pre-up.d/bridge ] && echo bridge-utils
grep -Eqs '^[[:space:]]*(source|source-directory)[[:space:]]+/etc/network/interfaces\\.d' /etc/network/interfaces && echo sources-interfaces-d
printf '## netplan\n'; ls -1 /etc/netplan/*.yaml /etc/netplan/*.yml 2>/dev/null
printf '## nm\n'; if [ "$nma" = active ]; then nmcli -t -f DEVICE,STATE,CONNECTION device 2>/dev/null; fi
printf '## networkd\n'; if [ "$nda" = active ]; then for l in $(ls /sys/class/net); do printf '%s\t' "$l"; networkctl status --no-pager "$l" 2>/dev/null | sed -n 's/^ *State: .*(\\([a-z-]*\\))$/\\1/p; s/^ *Network File: //p' | tr '\n' '\t'; echo; done; fi
printf '## ifupdown-up\n'; cat /run/network/ifstate 2>/dev/null
printf '## ifupdown-defined\n'; command -v ifquery >/dev/null && command ifquery --list --allow=auto 2>/dev/null; command -v ifquery >/dev/null && command ifquery --list --allow=hotplug 2>/dev/null; true`;
}

/** nmcli -t escapes `:` and `\` in values with a backslash. */
function splitNmcli(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) cur += line[++i];
    else if (c === ':') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

export function parseManagerFacts(text: string): ManagerFacts {
  const facts: ManagerFacts = {
    active: { networkd: false, networkmanager: false, ifupdown: false },
    enabled: { networkd: false, networkmanager: false, ifupdown: false },
    ifupdown: { installed: false, ifenslave: false, bridgeUtils: false, sourcesInterfacesD: false },
    netplan: [],
    nm: {},
    networkd: {},
    ifupdownUp: [],
    ifupdownDefined: [],
  };
  const unit: Record<string, NetManager> = { 'systemd-networkd': 'networkd', NetworkManager: 'networkmanager', networking: 'ifupdown' };
  let section = '';
  let arg = '';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const m = SECTION.exec(line);
    if (m) {
      section = m[1]!;
      arg = m[2] ?? '';
      continue;
    }
    if (!line.trim()) continue;
    switch (section) {
      case 'active':
        if (unit[arg]) facts.active[unit[arg]!] = line.trim() === 'active';
        break;
      case 'enabled':
        if (unit[arg]) facts.enabled[unit[arg]!] = ['enabled', 'static', 'indirect', 'alias', 'enabled-runtime'].includes(line.trim());
        break;
      case 'ifupdown':
        if (line === 'installed') facts.ifupdown.installed = true;
        if (line === 'ifenslave') facts.ifupdown.ifenslave = true;
        if (line === 'bridge-utils') facts.ifupdown.bridgeUtils = true;
        if (line === 'sources-interfaces-d') facts.ifupdown.sourcesInterfacesD = true;
        break;
      case 'netplan':
        facts.netplan.push(line.trim());
        break;
      case 'nm': {
        const [dev, state, conn] = splitNmcli(line);
        if (dev) facts.nm[dev] = { state: state ?? '', connection: conn ? conn : null };
        break;
      }
      case 'networkd': {
        const [link, ...rest] = line.split('\t').filter((f) => f !== '');
        if (!link) break;
        // `networkctl status`: "State: routable (configured)" → the setup state; "Network File: /etc/…" or "n/a".
        const setup = rest.find((f) => NETWORKD_SETUP_STATES.has(f)) ?? 'unknown';
        const file = rest.find((f) => f.startsWith('/')) ?? null;
        facts.networkd[link] = { setup, networkFile: file };
        break;
      }
      case 'ifupdown-up': {
        // /run/network/ifstate: `eth1=eth1` (or `bond0.100=bond0.100`), one per line.
        const name = line.split('=')[0]!.trim();
        if (name && name !== 'lo') facts.ifupdownUp.push(name);
        break;
      }
      case 'ifupdown-defined':
        for (const n of line.trim().split(/\s+/)) if (n && n !== 'lo' && !facts.ifupdownDefined.includes(n)) facts.ifupdownDefined.push(n);
        break;
    }
  }
  return facts;
}

export async function readManagerFacts(host: RemoteHost): Promise<ManagerFacts> {
  return parseManagerFacts(await host.read(factsScript(), { description: 'detect the network manager' }));
}

/** Who configures `ifname` now, by each manager's own account (null: nobody). */
export function ownerOf(facts: ManagerFacts, ifname: string): NetManager | null {
  const nm = facts.nm[ifname];
  if (facts.active.networkmanager && nm && nm.state !== 'unmanaged' && nm.state !== 'unavailable' && nm.connection) return 'networkmanager';
  const nd = facts.networkd[ifname];
  if (facts.active.networkd && nd && nd.setup !== 'unmanaged' && nd.networkFile) return 'networkd';
  if (facts.ifupdown.installed && (facts.ifupdownDefined.includes(ifname) || facts.ifupdownUp.includes(ifname))) return 'ifupdown';
  return null;
}

export interface ManagerChoice {
  manager: NetManager;
  /** One line for plans and the status: `networkd (manages eth1, eth2)`. */
  why: string;
}

function describeFacts(f: ManagerFacts): string {
  const on = (m: NetManager, name: string) => `${name} ${f.active[m] ? 'active' : 'inactive'}`;
  return [
    on('networkd', 'systemd-networkd'),
    on('networkmanager', 'NetworkManager'),
    `ifupdown ${f.ifupdown.installed ? (f.active.ifupdown ? 'active' : 'installed, networking.service inactive') : 'not installed'}`,
    ...(f.netplan.length ? [`netplan ${f.netplan.join(' ')}`] : []),
  ].join(', ');
}

/**
 * The manager underlay writes through, for the NICs it will configure: the spec's choice when it forces one
 * (and that manager runs), else the one that owns those NICs, else the only active one. Refuses — before any
 * change, naming what it found — netplan hosts, hosts where two managers own the NICs, and hosts with none.
 */
export function chooseManager(
  facts: ManagerFacts,
  wanted: NetManager | 'auto',
  nics: readonly string[],
  where: { host: string; step: StepName },
): ManagerChoice {
  const refuse = (message: string, expected: string) =>
    new UnsupportedPlatformError(message, { ...where, field: 'network.manager', expected, observed: describeFacts(facts) });
  if (facts.netplan.length) {
    throw refuse(
      'netplan describes this host’s network (underlay writes networkd, NetworkManager or ifupdown configuration, not netplan YAML)',
      'a host without /etc/netplan/*.yaml',
    );
  }
  const usable: Record<NetManager, boolean> = {
    networkd: facts.active.networkd,
    networkmanager: facts.active.networkmanager,
    ifupdown: facts.ifupdown.installed && facts.enabled.ifupdown,
  };
  if (wanted !== 'auto') {
    if (!usable[wanted]) throw refuse(`the spec asks for ${wanted}, which does not run on this host`, `${wanted} running`);
    return check(wanted, `${wanted} (set by the spec)`);
  }
  const owners = new Map<NetManager, string[]>();
  for (const n of nics) {
    const o = ownerOf(facts, n);
    if (o) owners.set(o, [...(owners.get(o) ?? []), n]);
  }
  if (owners.size > 1) {
    throw refuse(
      `the NICs are configured by different managers (${[...owners].map(([m, ns]) => `${m}: ${ns.join(', ')}`).join('; ')}); one must own them`,
      'one manager for all the NICs underlay configures',
    );
  }
  const [owner] = [...owners];
  if (owner) return check(owner[0], `${owner[0]} (manages ${owner[1].join(', ')})`);
  const running = (NET_MANAGERS as readonly NetManager[]).filter((m) => usable[m]);
  if (running.length === 1) return check(running[0]!, `${running[0]} (the only manager running)`);
  if (!running.length)
    throw refuse('no supported network manager runs on this host: nothing would bring the network back after a reboot', 'networkd, NetworkManager or ifupdown');
  throw refuse(`several network managers run (${running.join(', ')}) and none owns the NICs yet: set network.manager in the spec`, 'one manager');

  function check(m: NetManager, why: string): ManagerChoice {
    if (m === 'ifupdown' && !facts.ifupdown.sourcesInterfacesD) {
      throw refuse(
        '/etc/network/interfaces does not source /etc/network/interfaces.d, where underlay writes its stanzas',
        'source /etc/network/interfaces.d/*',
      );
    }
    return { manager: m, why };
  }
}
