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
import { listAddresses, listLinks, managementInterface } from '../../drivers/linux/net';
import { convergeBridgeScript, readBrportState, type BridgeAttachState } from '../../drivers/xen/bridge';
import type { ServerSpec } from '../../spec/server';
import { diffState } from '../diff';
import { pollUntilHolds, type Problem } from '../poll';
import type { Change, Step, StepIo } from '../step';

type BridgeSpec = Extract<NonNullable<ServerSpec['attach']>, { kind: 'bridge' }>;

function bridgeAttach(io: StepIo): BridgeSpec {
  const a = io.spec.attach;
  if (a?.kind !== 'bridge') {
    throw new UnsupportedPlatformError('the Xen attach step builds a Linux bridge only', {
      host: io.host.label,
      step: 'attach',
      field: 'attach.kind',
      expected: 'bridge',
      observed: a?.kind ?? 'none',
    });
  }
  return a;
}

export function bridgeUplink(spec: ServerSpec, a: BridgeSpec): string {
  return a.uplink ?? spec.bond!.name;
}

function wanted(a: BridgeSpec): BridgeAttachState {
  return { bridge: { kind: 'bridge', up: true }, uplinkMaster: a.name };
}

async function observe(io: StepIo): Promise<BridgeAttachState> {
  const a = bridgeAttach(io);
  const links = await listLinks(io.host);
  const br = links.get(a.name);
  const up = links.get(bridgeUplink(io.spec, a));
  return { bridge: br ? { kind: br.kind ?? 'physical', up: br.up } : null, uplinkMaster: up?.master ?? null };
}

function plan(spec: ServerSpec, observed: BridgeAttachState): Change[] {
  return diffState(observed, wanted(spec.attach as BridgeSpec));
}

async function guard(io: StepIo, a: BridgeSpec, uplink: string): Promise<void> {
  const addrs = await listAddresses(io.host);
  const mgmt = await managementInterface(io.host, addrs);
  if (mgmt && (mgmt === uplink || mgmt === a.name)) {
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

async function apply(io: StepIo, observed: BridgeAttachState): Promise<void> {
  const a = bridgeAttach(io);
  const uplink = bridgeUplink(io.spec, a);
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

async function check(io: StepIo): Promise<Problem[]> {
  const a = bridgeAttach(io);
  const uplink = bridgeUplink(io.spec, a);
  const problems: Problem[] = plan(io.spec, await observe(io)).map((c) => ({ field: c.field, expected: c.to, observed: c.from, final: true }));
  if (problems.length) return problems;
  // With STP off (the default) a port forwards as soon as it is up; anything else means it is not passing frames.
  const state = await readBrportState(io.host, uplink);
  if (state !== 'forwarding') problems.push({ field: `${uplink}.brport.state`, expected: 'forwarding', observed: state ?? 'not a bridge port' });
  return problems;
}

async function undo(io: StepIo, pre: BridgeAttachState, now: BridgeAttachState): Promise<void> {
  const a = bridgeAttach(io);
  const uplink = bridgeUplink(io.spec, a);
  if (now.bridge && now.bridge.kind !== 'bridge') return; // not ours: nothing to restore
  const script = convergeBridgeScript(a.name, uplink, now, pre);
  if (script) await io.host.run(script, { description: `restore bridge ${a.name} and ${uplink}` });
}

export const xenBridgeAttachStep: Step<BridgeAttachState> = {
  name: 'attach',
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, `bridge ${bridgeAttach(io).name}`, () => check(io), { timeoutMs: 20_000, intervalMs: 1_000 }),
  undo,
  diff: (a, b) => diffState(a, b),
  summary: (spec) => (spec.attach?.kind === 'bridge' ? `Linux bridge ${spec.attach.name} ← ${bridgeUplink(spec, spec.attach)}` : 'bridge'),
};
