/**
 * Step 6 on Xen: a Linux bridge (xenbr0 by default) with the bond — or the spec's uplink — as its port, for
 * Xen guests' vifs. Written through the host's network manager like the bond and VLANs (systemd-networkd: a bridge
 * netdev and a `Bridge=` drop-in on the uplink's .network; ifupdown: a `bridge_ports` stanza), so it comes back
 * after a reboot; the undo restores those files byte for byte. NetworkManager is refused for this bridge (its bond
 * profile would have to name the bridge as its controller, and that profile is the bond step's).
 *
 * Nothing that carries the SSH session is moved: the lockout guard (as in attach.ts and bond.ts) refuses an
 * uplink or bridge that is the management interface, and an uplink with addresses of its own is refused too —
 * enslaving it would strand them (moving a host's addresses onto the bridge is not in this runbook). VLAN
 * interfaces on the uplink keep working: the kernel hands tagged frames to them before the bridge sees them.
 */
import { LockoutRiskError, UnsupportedPlatformError } from '../../common/errors';
import { convergeFilesScript, restoreFilesScript } from '../../drivers/linux/files';
import { listAddresses, listLinks, requireManagementInterface } from '../../drivers/linux/net';
import type { NetManager } from '../../drivers/linux/netmgr';
import { applyBridgeScript, bondFilePaths, bridgeFilePaths, renderBridgeFiles, undoBridgeScript, type BridgeConfig } from '../../drivers/linux/persist';
import { sh } from '../../drivers/shell';
import { convergeBridgeScript, readBrportState, type BridgeAttachState } from '../../drivers/xen/bridge';
import type { ServerSpec } from '../../spec/server';
import { bondConfig } from '../bond';
import { diffState } from '../diff';
import { detectManager, fileChanges, observeFiles } from '../persist';
import { pollUntilHolds, verificationFailure, type Problem } from '../poll';
import type { Change, Step, StepIo } from '../step';
import { attachOfKind } from '../want';

type BridgeSpec = Extract<NonNullable<ServerSpec['attach']>, { kind: 'bridge' }>;

/** The bridge, and its uplink: the spec's, or the bond. */
export interface XenBridgeWant {
  attach: BridgeSpec;
  uplink: string;
  serverId: string;
  spec: ServerSpec;
}

type Io = StepIo<XenBridgeWant>;

/** The runtime bridge and its uplink, and the manager files that keep them across a reboot. */
export interface XenBridgeState extends BridgeAttachState {
  persisted: {
    manager: NetManager;
    files: Record<string, string | null>;
    /** networkd: the .network file configuring the uplink (the `Bridge=` drop-in goes next to it); null: none. */
    uplinkFile: string | null;
    why: string;
  };
}

export function xenBridgeWant(spec: ServerSpec): XenBridgeWant {
  const attach = attachOfKind(spec, ['bridge']);
  const uplink = attach.uplink ?? spec.bond?.name;
  if (!uplink) {
    throw new UnsupportedPlatformError('the bridge has no uplink: name one or configure a bond', {
      host: spec.id,
      step: 'attach',
      field: 'attach.uplink',
      expected: 'an uplink, or a bond section',
      observed: 'neither',
    });
  }
  return { attach, uplink, serverId: spec.id, spec };
}

const config = (w: XenBridgeWant): BridgeConfig => ({ name: w.attach.name, uplink: w.uplink });

function wanted(a: BridgeSpec): BridgeAttachState {
  return { bridge: { kind: 'bridge', up: true }, uplinkMaster: a.name };
}

async function observeRuntime(io: Io): Promise<BridgeAttachState> {
  const a = io.want.attach;
  const links = await listLinks(io.host);
  const br = links.get(a.name);
  const up = links.get(io.want.uplink);
  return { bridge: br ? { kind: br.kind ?? 'physical', up: br.up } : null, uplinkMaster: up?.master ?? null };
}

async function observePersisted(io: Io): Promise<XenBridgeState['persisted']> {
  const { uplink, spec } = io.want;
  const bond = spec.bond;
  // On the spec's bond, the manager is the bond's: its members decide (the bond may not exist yet in a dry run).
  const nics = [uplink, ...(bond?.name === uplink ? bond.members : [])];
  const { facts, choice } = await detectManager(io, spec, nics, 'attach');
  if (choice.manager === 'networkmanager') {
    throw new UnsupportedPlatformError('a Xen bridge on a host NetworkManager runs is not supported: its bond profile would have to name the bridge', {
      host: io.host.label,
      step: 'attach',
      field: 'network.manager',
      expected: 'systemd-networkd or ifupdown (Xen hosts usually run ifupdown)',
      observed: choice.why,
    });
  }
  if (choice.manager === 'ifupdown' && !facts.ifupdown.bridgeUtils) {
    throw new UnsupportedPlatformError('ifupdown cannot make a bridge without bridge-utils', {
      host: io.host.label,
      step: 'attach',
      field: 'attach',
      expected: 'the bridge-utils package (its ifupdown hook /etc/network/if-pre-up.d/bridge)',
      observed: 'not installed',
    });
  }
  // The spec's bond is configured by the bond step's own .network file (networkd), whether or not it exists yet.
  const found = bond?.name === uplink ? bondFilePaths('networkd', bondConfig(bond))[1]! : (facts.networkd[uplink]?.networkFile ?? null);
  const uplinkFile = found && !/\/35-underlay-[^/]+\.network$/.test(found) ? found : null;
  return {
    manager: choice.manager,
    files: await observeFiles(io, bridgeFilePaths(choice.manager, config(io.want), uplinkFile)),
    uplinkFile,
    why: choice.why,
  };
}

async function observe(io: Io): Promise<XenBridgeState> {
  return { ...(await observeRuntime(io)), persisted: await observePersisted(io) };
}

function persistedChanges(want: XenBridgeWant, p: XenBridgeState['persisted']): Change[] {
  return fileChanges(p.manager, renderBridgeFiles(p.manager, config(want), want.serverId, p.uplinkFile), p.files);
}

function plan(want: XenBridgeWant, observed: XenBridgeState): Change[] {
  const { persisted, ...runtime } = observed;
  return [...diffState(runtime, wanted(want.attach)), ...persistedChanges(want, persisted)];
}

async function guard(io: Io, a: BridgeSpec, uplink: string): Promise<void> {
  const addrs = await listAddresses(io.host);
  const mgmt = await requireManagementInterface(io.host, 'attach', 'attach.uplink');
  if (mgmt === uplink || mgmt === a.name) {
    throw new LockoutRiskError('refusing to bridge the interface that carries the management session', {
      host: io.host.label,
      step: 'attach',
      field: mgmt === uplink ? 'attach.uplink' : 'attach.name',
      expected: 'an uplink other than the management interface',
      observed: mgmt,
    });
  }
  const own = (addrs.get(uplink) ?? []).filter((x) => !x.toLowerCase().startsWith('fe80:'));
  if (own.length) {
    throw new UnsupportedPlatformError('the uplink has addresses of its own; enslaving it to the bridge would strand them', {
      host: io.host.label,
      step: 'attach',
      field: 'attach.uplink',
      expected: 'an uplink without addresses (put them on a VLAN or the bridge)',
      observed: `${uplink}: ${own.join(', ')}`,
    });
  }
}

async function apply(io: Io, observed: XenBridgeState): Promise<void> {
  const { attach: a, uplink } = io.want;
  await guard(io, a, uplink);
  const links = await listLinks(io.host);
  if (!links.has(uplink)) {
    throw new UnsupportedPlatformError('the bridge uplink does not exist', {
      host: io.host.label,
      step: 'attach',
      field: a.uplink ? 'attach.uplink' : 'bond.name',
      expected: uplink,
      observed: 'absent',
    });
  }
  if (observed.bridge && observed.bridge.kind !== 'bridge') {
    throw new UnsupportedPlatformError(`a ${observed.bridge.kind} link already has the bridge's name`, {
      host: io.host.label,
      step: 'attach',
      field: 'attach.name',
      expected: 'bridge',
      observed: observed.bridge.kind,
    });
  }
  const p = observed.persisted;
  const files = convergeFilesScript(renderBridgeFiles(p.manager, config(io.want), io.want.serverId, p.uplinkFile), p.files);
  io.progress(`bridge ${a.name}: writing ${p.manager} configuration and applying it (${p.why})`);
  await io.host.run(applyBridgeScript(p.manager, config(io.want), files), {
    description: `bridge ${a.name} ← ${uplink} through ${p.manager}`,
    timeoutMs: 180_000,
  });
  // What the manager left different at runtime (an older runtime-only bridge, a port elsewhere) is converged here.
  const script = convergeBridgeScript(a.name, uplink, await observeRuntime(io), wanted(a));
  if (script) await io.host.run(script, { description: `bridge ${a.name} ← ${uplink}` });
}

async function check(io: Io): Promise<Problem[]> {
  const { uplink } = io.want;
  const problems: Problem[] = diffState(await observeRuntime(io), wanted(io.want.attach)).map((c) => ({
    field: c.field,
    expected: c.to,
    observed: c.from,
  }));
  if (problems.length) return problems;
  // With STP off (the default) a port forwards as soon as it is up; anything else means it is not passing frames.
  const state = await readBrportState(io.host, uplink);
  if (state !== 'forwarding') problems.push({ field: `${uplink}.brport.state`, expected: 'forwarding', observed: state ?? 'not a bridge port' });
  return problems;
}

async function verify(io: Io): Promise<void> {
  await pollUntilHolds(io, `bridge ${io.want.attach.name}`, () => check(io), { timeoutMs: 30_000, intervalMs: 1_000 });
  const persisted = persistedChanges(io.want, await observePersisted(io)).map((c) => ({ field: c.field, expected: c.to, observed: c.from, final: true }));
  if (persisted.length) throw verificationFailure(io, 'persisted bridge configuration', persisted);
}

async function undo(io: Io, pre: XenBridgeState, now: XenBridgeState): Promise<void> {
  const { attach: a, uplink } = io.want;
  if (now.bridge && now.bridge.kind !== 'bridge') return; // not ours: nothing to restore
  const restore = restoreFilesScript(pre.persisted.files, now.persisted.files);
  await io.host.run(undoBridgeScript(pre.persisted.manager, config(io.want), restore, !pre.bridge && !!now.bridge), {
    description: `restore bridge ${a.name} and its ${pre.persisted.manager} configuration`,
    timeoutMs: 180_000,
  });
  // ifupdown's bridge hook takes the port down with the bridge: the uplink was up before it was bridged.
  const links = await listLinks(io.host);
  if (links.get(uplink) && !links.get(uplink)!.up) await io.host.run(sh`ip link set dev ${uplink} up`, { description: `set ${uplink} up again` });
  const script = convergeBridgeScript(a.name, uplink, await observeRuntime(io), { bridge: pre.bridge, uplinkMaster: pre.uplinkMaster });
  if (script) await io.host.run(script, { description: `restore bridge ${a.name} and ${uplink}` });
}

export const xenBridgeAttachStep: Step<XenBridgeState, XenBridgeWant> = {
  name: 'attach',
  want: xenBridgeWant,
  observe,
  plan,
  apply,
  verify,
  undo,
  diff: (a, b) =>
    diffState(
      { bridge: a.bridge, uplinkMaster: a.uplinkMaster, files: a.persisted.files },
      { bridge: b.bridge, uplinkMaster: b.uplinkMaster, files: b.persisted.files },
    ),
  note: (s) => `persisted through ${s.persisted.why}`,
};
