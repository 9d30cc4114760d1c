/**
 * Step 6 on Xen: a Linux bridge (xenbr0 by default) with the bond — or the spec's uplink — as its port, for
 * Xen guests' vifs. Like the other Linux steps, iproute2 at runtime.
 *
 * Nothing that carries the SSH session is moved: the lockout guard (as in attach.ts and bond.ts) refuses an
 * uplink or bridge that is the management interface, and an uplink with addresses of its own is refused too —
 * enslaving it would strand them (moving a host's addresses onto the bridge is not in this runbook). VLAN
 * interfaces on the uplink keep working: the kernel hands tagged frames to them before the bridge sees them.
 */
import { LockoutRiskError, UnsupportedPlatformError } from '../../common/errors';
import { listAddresses, listLinks, requireManagementInterface } from '../../drivers/linux/net';
import { convergeBridgeScript, readBrportState, type BridgeAttachState } from '../../drivers/xen/bridge';
import type { ServerSpec } from '../../spec/server';
import { diffState } from '../diff';
import { pollUntilHolds, type Problem } from '../poll';
import type { Change, Step, StepIo } from '../step';
import { attachOfKind } from '../want';

type BridgeSpec = Extract<NonNullable<ServerSpec['attach']>, { kind: 'bridge' }>;

/** The bridge, and its uplink: the spec's, or the bond. */
export interface XenBridgeWant {
  attach: BridgeSpec;
  uplink: string;
}

type Io = StepIo<XenBridgeWant>;

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
  return { attach, uplink };
}

function wanted(a: BridgeSpec): BridgeAttachState {
  return { bridge: { kind: 'bridge', up: true }, uplinkMaster: a.name };
}

async function observe(io: Io): Promise<BridgeAttachState> {
  const a = io.want.attach;
  const links = await listLinks(io.host);
  const br = links.get(a.name);
  const up = links.get(io.want.uplink);
  return { bridge: br ? { kind: br.kind ?? 'physical', up: br.up } : null, uplinkMaster: up?.master ?? null };
}

function plan(want: XenBridgeWant, observed: BridgeAttachState): Change[] {
  return diffState(observed, wanted(want.attach));
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

async function apply(io: Io, observed: BridgeAttachState): Promise<void> {
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
  const script = convergeBridgeScript(a.name, uplink, observed, wanted(a));
  if (script) await io.host.run(script, { description: `bridge ${a.name} ← ${uplink}` });
}

async function check(io: Io): Promise<Problem[]> {
  const { uplink } = io.want;
  const problems: Problem[] = plan(io.want, await observe(io)).map((c) => ({ field: c.field, expected: c.to, observed: c.from, final: true }));
  if (problems.length) return problems;
  // With STP off (the default) a port forwards as soon as it is up; anything else means it is not passing frames.
  const state = await readBrportState(io.host, uplink);
  if (state !== 'forwarding') problems.push({ field: `${uplink}.brport.state`, expected: 'forwarding', observed: state ?? 'not a bridge port' });
  return problems;
}

async function undo(io: Io, pre: BridgeAttachState, now: BridgeAttachState): Promise<void> {
  const { attach: a, uplink } = io.want;
  if (now.bridge && now.bridge.kind !== 'bridge') return; // not ours: nothing to restore
  const script = convergeBridgeScript(a.name, uplink, now, pre);
  if (script) await io.host.run(script, { description: `restore bridge ${a.name} and ${uplink}` });
}

export const xenBridgeAttachStep: Step<BridgeAttachState, XenBridgeWant> = {
  name: 'attach',
  want: xenBridgeWant,
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, `bridge ${io.want.attach.name}`, () => check(io), { timeoutMs: 20_000, intervalMs: 1_000 }),
  undo,
  diff: (a, b) => diffState(a, b),
};
