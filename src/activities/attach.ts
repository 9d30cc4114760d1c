/**
 * Step 6, network attach: give guests a path onto the fabric. For KVM either a libvirt macvtap network on the
 * bond (guests get macvtap endpoints directly on it) or an Open vSwitch bridge with the bond as uplink and
 * tagged internal ports, built in one atomic ovs-vsctl transaction (optionally with a libvirt network on it).
 */
import { LockoutRiskError, UnsupportedPlatformError } from '../common/errors';
import { listLinks, requireManagementInterface } from '../drivers/linux/net';
import { defineNetwork, networkXml, readNetwork, removeNetwork, setNetworkRunning, type NetDef, type NetState } from '../drivers/linux/libvirt';
import { convergeBridge, readBridge, type OvsBridge } from '../drivers/linux/ovs';
import type { AttachSpec, ServerSpec } from '../spec/server';
import { attachOfKind } from './want';
import { diffState } from './diff';
import { pollUntilHolds, type Problem } from './poll';
import type { Change, Step, StepIo } from './step';

export interface AttachState {
  /** The libvirt network of the spec, or null when absent. */
  network: NetState | null;
  /** The OVS bridge (ovs attach only). */
  bridge?: OvsBridge;
}

type LinuxAttach = Extract<AttachSpec, { kind: 'macvtap' | 'ovs' }>;

/** The attach, and the device it rides on: its own `device` / `uplink`, or the bond. */
export interface LinuxAttachWant {
  attach: LinuxAttach;
  lower: string;
}

type Io = StepIo<LinuxAttachWant>;

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
  return { attach, lower };
}

function wantedNetwork({ attach: a, lower }: LinuxAttachWant): NetDef | null {
  if (a.kind === 'macvtap') return { name: a.network, forwardMode: a.mode, interfaces: [lower], bridge: null, virtualport: null };
  if (a.network) return { name: a.network, forwardMode: 'bridge', interfaces: [], bridge: a.bridge, virtualport: 'openvswitch' };
  return null;
}

function wantedBridge(a: Extract<LinuxAttach, { kind: 'ovs' }>, lower: string): OvsBridge {
  const ports: OvsBridge['ports'] = { [lower]: { tag: null, type: 'system' } };
  for (const p of a.vlanPorts) ports[p.name] = { tag: p.vlan, type: 'internal' };
  return { exists: true, ports };
}

async function observe(io: Io): Promise<AttachState> {
  const a = io.want.attach;
  const name = a.network;
  const network = name ? await readNetwork(io.host, name) : null;
  return a.kind === 'ovs' ? { network, bridge: await readBridge(io.host, a.bridge) } : { network };
}

/** The comparable view of a state: definitions and run state, not libvirt's generated XML details. */
function view(s: AttachState) {
  return {
    network: s.network && { def: s.network.def, active: s.network.active, autostart: s.network.autostart },
    ...(s.bridge ? { bridge: s.bridge } : {}),
  };
}

function plan(want: LinuxAttachWant, observed: AttachState): Change[] {
  const a = want.attach;
  const net = wantedNetwork(want);
  const wanted = {
    network: net && { def: net, active: true, autostart: true },
    ...(a.kind === 'ovs' ? { bridge: wantedBridge(a, want.lower) } : {}),
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
    current = await readNetwork(io.host, want.name);
  }
  await setNetworkRunning(io.host, want.name, run, current ?? { active: false, autostart: false });
}

async function apply(io: Io, observed: AttachState): Promise<void> {
  const { attach: a, lower } = io.want;
  await guardManagement(io, lower);
  const links = await listLinks(io.host);
  if (!links.has(lower)) {
    throw new UnsupportedPlatformError('the lower device for the attachment does not exist', {
      host: io.host.label,
      step: 'attach',
      field: a.kind === 'macvtap' ? 'attach.device' : 'attach.uplink',
      expected: lower,
      observed: 'absent',
    });
  }
  if (a.kind === 'ovs') {
    const script = convergeBridge(a.bridge, observed.bridge!, wantedBridge(a, lower));
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
