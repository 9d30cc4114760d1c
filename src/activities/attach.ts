/**
 * Step 6, network attach: give guests a path onto the fabric. For KVM either a libvirt macvtap network on the
 * bond (guests get macvtap endpoints directly on it) or an Open vSwitch bridge with the bond as uplink and
 * tagged internal ports, built in one atomic ovs-vsctl transaction (optionally with a libvirt network on it).
 * With the spec's dpdk.ovs, the bridge runs on the DPDK datapath: Debian's DPDK ovs-vswitchd, dpdk-init, a
 * netdev bridge with a `dpdk` port per device the dpdk step bound and vhost-user ports; undo goes back to the
 * kernel datapath (src/drivers/linux/ovs-dpdk.ts).
 */
import { LockoutRiskError, UnsupportedPlatformError } from '../common/errors';
import { listLinks, requireManagementInterface } from '../drivers/linux/net';
import { defineNetwork, networkXml, readNetwork, removeNetwork, setNetworkRunning, type NetDef, type NetState } from '../drivers/linux/libvirt';
import { convergeBridge, readBridge, type OvsBridge } from '../drivers/linux/ovs';
import { readDpdkHost } from '../drivers/linux/dpdk';
import {
  convergeOvsDpdkScript,
  readOvsDpdk,
  readPortStatus,
  VHOST_USER_DIR,
  VSWITCHD_DPDK,
  wantedDpdkConfig,
  type OvsDpdkState,
} from '../drivers/linux/ovs-dpdk';
import type { AttachSpec, DpdkSpec, ServerSpec } from '../spec/server';
import { attachOfKind } from './want';
import { diffState } from './diff';
import { pollUntilHolds, type Problem } from './poll';
import type { Change, Step, StepIo } from './step';

export interface AttachState {
  /** The libvirt network of the spec, or null when absent. */
  network: NetState | null;
  /** The OVS bridge (ovs attach only). */
  bridge?: OvsBridge;
  /** OVS-DPDK (dpdk.ovs only): the vswitchd alternative, other_config, dpdk_initialized; the devices' PCI addresses. */
  ovsDpdk?: OvsDpdkState;
  dpdkAddresses?: string[];
}

type LinuxAttach = Extract<AttachSpec, { kind: 'macvtap' | 'ovs' }>;

/** The attach, and the device it rides on: its own `device` / `uplink`, or the bond. */
export interface LinuxAttachWant {
  attach: LinuxAttach;
  lower: string;
  /** The dpdk section when its OVS options put the ovs attach on the DPDK datapath. */
  dpdk?: { devices: string[]; ovs: NonNullable<DpdkSpec['ovs']> };
}

type Io = StepIo<LinuxAttachWant>;

/** How long ovs-vswitchd may take to initialize DPDK after its restart (seconds on hardware, minutes under TCG). */
const DPDK_INIT_WAIT = { timeoutMs: 5 * 60_000, intervalMs: 2_000 };

export function linuxAttachWant(spec: ServerSpec): LinuxAttachWant {
  const attach = attachOfKind(spec, ['macvtap', 'ovs']);
  const own = attach.kind === 'macvtap' ? attach.device : attach.uplink;
  const lower = own ?? spec.bond?.name;
  if (!lower) {
    throw new UnsupportedPlatformError('the attach has no lower device: name one or configure a bond', {
      host: spec.id,
      step: 'attach',
      field: attach.kind === 'macvtap' ? 'attach.device' : 'attach.uplink',
      expected: 'a device, or a bond section',
      observed: 'neither',
    });
  }
  const ovs = spec.dpdk?.ovs;
  return { attach, lower, ...(ovs && attach.kind === 'ovs' ? { dpdk: { devices: spec.dpdk!.devices, ovs } } : {}) };
}

function wantedNetwork({ attach: a, lower }: LinuxAttachWant): NetDef | null {
  if (a.kind === 'macvtap') return { name: a.network, forwardMode: a.mode, interfaces: [lower], bridge: null, virtualport: null };
  if (a.network) return { name: a.network, forwardMode: 'bridge', interfaces: [], bridge: a.bridge, virtualport: 'openvswitch' };
  return null;
}

function wantedBridge(a: Extract<LinuxAttach, { kind: 'ovs' }>, lower: string, dpdk?: LinuxAttachWant['dpdk'], addresses?: string[]): OvsBridge {
  const ports: OvsBridge['ports'] = { [lower]: { tag: null, type: 'system' } };
  for (const p of a.vlanPorts) ports[p.name] = { tag: p.vlan, type: 'internal' };
  if (!dpdk) return { exists: true, ports };
  // Port dpdk<i> for dpdk.devices[i] (the validator keeps these names free), by PCI address.
  (addresses ?? []).forEach((address, i) => (ports[`dpdk${i}`] = { tag: null, type: 'dpdk', options: { 'dpdk-devargs': address } }));
  for (const p of dpdk.ovs.vhostUserPorts) {
    ports[p.name] = { tag: null, type: 'dpdkvhostuserclient', options: { 'vhost-server-path': `${VHOST_USER_DIR}/${p.name}.sock` } };
  }
  return { exists: true, ports, datapath: 'netdev' };
}

function wantedOvsDpdk(dpdk: NonNullable<LinuxAttachWant['dpdk']>): OvsDpdkState {
  return { alternative: { status: 'manual', value: VSWITCHD_DPDK }, config: wantedDpdkConfig(dpdk.ovs), initialized: true };
}

/** The PCI addresses of the DPDK devices (a NIC given by name is on vfio-pci by now: the dpdk step's record). */
async function dpdkAddresses(io: Io, devices: string[]): Promise<string[]> {
  const h = await readDpdkHost(io.host, devices);
  return h.devices.map((d, i) => {
    if (!d.address || d.missing) {
      throw new UnsupportedPlatformError('a DPDK device has no PCI address on the host', {
        host: io.host.label,
        step: 'attach',
        field: `dpdk.devices[${i}]`,
        expected: 'a PCI device (bound by the dpdk step)',
        observed: d.address ?? 'unknown name',
      });
    }
    return d.address;
  });
}

async function observe(io: Io): Promise<AttachState> {
  const a = io.want.attach;
  const name = a.network;
  const network = name ? await readNetwork(io.host, name) : null;
  if (a.kind !== 'ovs') return { network };
  const bridge = await readBridge(io.host, a.bridge);
  const d = io.want.dpdk;
  if (!d) return { network, bridge };
  return { network, bridge, ovsDpdk: await readOvsDpdk(io.host), dpdkAddresses: await dpdkAddresses(io, d.devices) };
}

/** The comparable view of a state: definitions and run state, not libvirt's generated XML details. */
function view(s: AttachState) {
  return {
    network: s.network && { def: s.network.def, active: s.network.active, autostart: s.network.autostart },
    ...(s.bridge ? { bridge: s.bridge } : {}),
    ...(s.ovsDpdk ? { ovsDpdk: s.ovsDpdk } : {}),
  };
}

function plan(want: LinuxAttachWant, observed: AttachState): Change[] {
  const a = want.attach;
  const net = wantedNetwork(want);
  const wanted = {
    network: net && { def: net, active: true, autostart: true },
    ...(a.kind === 'ovs' ? { bridge: wantedBridge(a, want.lower, want.dpdk, observed.dpdkAddresses) } : {}),
    ...(want.dpdk ? { ovsDpdk: wantedOvsDpdk(want.dpdk) } : {}),
  };
  return diffState(view(observed), wanted);
}

async function guardManagement(io: Io, device: string): Promise<void> {
  const mgmt = await requireManagementInterface(io.host, 'attach', 'attach');
  if (mgmt === device) {
    throw new LockoutRiskError('refusing to attach a switch to the interface that carries the management session', {
      host: io.host.label,
      step: 'attach',
      field: 'attach',
      expected: 'a lower device other than the management interface',
      observed: mgmt,
    });
  }
}

async function convergeNetwork(io: Io, now: NetState | null, want: NetDef | null, run: { active: boolean; autostart: boolean }, xml?: string): Promise<void> {
  if (!want) {
    if (now) await removeNetwork(io.host, now);
    return;
  }
  let current = now;
  if (!current || JSON.stringify(current.def) !== JSON.stringify(want)) {
    // A running network keeps its old definition until restarted: stop it, redefine, start again.
    if (current?.active) await setNetworkRunning(io.host, want.name, { active: false, autostart: current.autostart }, current);
    await defineNetwork(io.host, xml ?? networkXml(want), want.name);
    // Known without asking: a (re)defined network is inactive (a running one was stopped above) and keeps its
    // autostart flag (a new one has none). The verify reads it back.
    current = { def: want, xml: '', active: false, autostart: current?.autostart ?? false };
  }
  await setNetworkRunning(io.host, want.name, run, current ?? { active: false, autostart: false });
}

async function apply(io: Io, observed: AttachState): Promise<void> {
  const { attach: a, lower } = io.want;
  const [, links] = await Promise.all([guardManagement(io, lower), listLinks(io.host)]);
  if (!links.has(lower)) {
    throw new UnsupportedPlatformError('the lower device for the attachment does not exist', {
      host: io.host.label,
      step: 'attach',
      field: a.kind === 'macvtap' ? 'attach.device' : 'attach.uplink',
      expected: lower,
      observed: 'absent',
    });
  }
  const d = io.want.dpdk;
  if (d && observed.ovsDpdk) {
    const script = convergeOvsDpdkScript(observed.ovsDpdk, wantedOvsDpdk(d));
    if (script) await io.host.run(script, { description: 'Open vSwitch on the DPDK ovs-vswitchd with dpdk-init', timeoutMs: 5 * 60_000 });
    // DPDK ports exist only once DPDK initialized: wait for OVS to say so (EAL init is slow under emulation).
    await pollUntilHolds(
      io,
      'OVS DPDK initialization',
      async () => ((await readOvsDpdk(io.host)).initialized ? [] : [{ field: 'Open_vSwitch dpdk_initialized', expected: true, observed: false }]),
      DPDK_INIT_WAIT,
    );
  }
  if (a.kind === 'ovs') {
    const script = convergeBridge(a.bridge, observed.bridge!, wantedBridge(a, lower, d, observed.dpdkAddresses));
    if (script) await io.host.run(script, { description: `ovs-vsctl transaction for ${a.bridge}` });
  }
  await convergeNetwork(io, observed.network, wantedNetwork(io.want), { active: true, autostart: true });
}

async function check(io: Io): Promise<Problem[]> {
  const a = io.want.attach;
  const now = await observe(io);
  const diffs = plan(io.want, now);
  const problems: Problem[] = diffs.map((c) => ({ field: c.field, expected: c.to, observed: c.from, final: true }));
  if (!problems.length && a.kind === 'ovs') {
    const links = await listLinks(io.host);
    for (const p of a.vlanPorts)
      if (!links.get(p.name)) problems.push({ field: `${p.name}.link`, expected: 'internal port present in the kernel', observed: 'absent' });
  }
  if (!problems.length && io.want.dpdk) {
    // OVS's own word on each DPDK port: no error, link up.
    const ports = (now.dpdkAddresses ?? []).map((_, i) => `dpdk${i}`);
    for (const s of await readPortStatus(io.host, ports)) {
      if (s.error) problems.push({ field: `${s.name}.error`, expected: 'none', observed: s.error, final: true });
      else if (s.linkState !== 'up') problems.push({ field: `${s.name}.link_state`, expected: 'up', observed: s.linkState ?? 'none' });
    }
  }
  return problems;
}

async function undo(io: Io, pre: AttachState, now: AttachState): Promise<void> {
  const a = io.want.attach;
  // Take the libvirt network off the bridge before the bridge goes.
  await convergeNetwork(
    io,
    now.network,
    pre.network?.def ?? null,
    { active: pre.network?.active ?? false, autostart: pre.network?.autostart ?? false },
    pre.network?.xml,
  );
  if (a.kind === 'ovs' && pre.bridge && now.bridge) {
    const script = convergeBridge(a.bridge, now.bridge, pre.bridge);
    if (script) await io.host.run(script, { description: `restore OVS bridge ${a.bridge}` });
  }
  // Back to the kernel datapath: the plain ovs-vswitchd and other_config as they were.
  if (pre.ovsDpdk && now.ovsDpdk) {
    const script = convergeOvsDpdkScript(now.ovsDpdk, pre.ovsDpdk);
    if (script) await io.host.run(script, { description: 'Open vSwitch back to its datapath before', timeoutMs: 5 * 60_000 });
  }
}

export const attachStep: Step<AttachState, LinuxAttachWant> = {
  name: 'attach',
  want: linuxAttachWant,
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, 'network attach', () => check(io), { timeoutMs: 20_000, intervalMs: 1_000 }),
  undo,
  diff: (a, b) => diffState(view(a), view(b)),
};
