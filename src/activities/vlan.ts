/**
 * Step 3, VLANs: a tagged interface per spec VLAN on the bond (or a NIC), with its address, verified by
 * pinging the VLAN's gateway through it — the proof that the switch trunks the tag.
 */
import { join, sh, type Shell } from '../drivers/shell';
import { listAddresses, listLinks } from '../drivers/linux/net';
import { vlanIfName, type ServerSpec, type VlanSpec } from '../spec/server';
import { diffState } from './diff';
import { pollUntilHolds, type Problem } from './poll';
import type { Change, Step, StepIo } from './step';

export interface VlanLinkState {
  parent: string | null;
  id: number | null;
  up: boolean;
  addresses: string[];
}

export interface VlanState {
  /** Per VLAN interface of the spec: its state, or null when absent. */
  vlans: Record<string, VlanLinkState | null>;
}

const VERIFY = { timeoutMs: 45_000, intervalMs: 2_000 };

async function observe(io: StepIo): Promise<VlanState> {
  const [links, addrs] = await Promise.all([listLinks(io.host), listAddresses(io.host)]);
  const vlans: VlanState['vlans'] = {};
  for (const v of io.spec.vlans) {
    const name = vlanIfName(v);
    const l = links.get(name);
    vlans[name] = l ? { parent: l.parent ?? null, id: l.vlan?.id ?? null, up: l.up, addresses: [...(addrs.get(name) ?? [])].sort() } : null;
  }
  return { vlans };
}

function desired(v: VlanSpec): VlanLinkState {
  return { parent: v.parent, id: v.id, up: true, addresses: v.address ? [v.address] : [] };
}

function plan(spec: ServerSpec, observed: VlanState): Change[] {
  const want = Object.fromEntries(spec.vlans.map((v) => [vlanIfName(v), desired(v)]));
  // Apply adds what the spec asks for; extra addresses an operator put there are left alone (reported, not removed).
  const current = Object.fromEntries(
    Object.entries(observed.vlans).map(([n, s]) => [n, s && { ...s, addresses: s.addresses.filter((a) => want[n]?.addresses.includes(a)) }]),
  );
  return diffState(current, want);
}

function converge(name: string, now: VlanLinkState | null, want: VlanLinkState | null): Shell[] {
  const cmds: Shell[] = [];
  const recreate = now !== null && (want === null || now.parent !== want.parent || now.id !== want.id);
  if (recreate) cmds.push(sh`ip link del dev ${name}`);
  if (!want) return cmds;
  if (now === null || recreate) cmds.push(sh`ip link add link ${want.parent!} name ${name} type vlan id ${want.id!}`);
  const have = recreate || now === null ? [] : now.addresses;
  for (const a of have) if (!want.addresses.includes(a)) cmds.push(sh`ip addr del ${a} dev ${name}`);
  for (const a of want.addresses) if (!have.includes(a)) cmds.push(sh`ip addr add ${a} dev ${name}`);
  cmds.push(want.up ? sh`ip link set dev ${name} up` : sh`ip link set dev ${name} down`);
  return cmds;
}

async function apply(io: StepIo, observed: VlanState): Promise<void> {
  const cmds = io.spec.vlans.flatMap((v) => {
    const name = vlanIfName(v);
    const now = observed.vlans[name] ?? null;
    // Keep addresses we did not put there: converge towards now ∪ spec.
    const want = desired(v);
    if (now && now.parent === want.parent && now.id === want.id) want.addresses = [...new Set([...now.addresses, ...want.addresses])];
    return converge(name, now, want);
  });
  await io.host.run(join('&&', cmds), { description: `configure VLANs ${Object.keys(observed.vlans).join(', ')}` });
}

async function check(io: StepIo): Promise<Problem[]> {
  const state = await observe(io);
  const problems: Problem[] = [];
  for (const v of io.spec.vlans) {
    const name = vlanIfName(v);
    const s = state.vlans[name];
    if (!s || s.id !== v.id || s.parent !== v.parent) {
      problems.push({ field: name, expected: `VLAN ${v.id} on ${v.parent}`, observed: s ? `VLAN ${s.id} on ${s.parent}` : 'absent', final: true });
      continue;
    }
    if (v.address && !s.addresses.includes(v.address)) problems.push({ field: `${name}.address`, expected: v.address, observed: s.addresses, final: true });
    if (v.gateway) {
      const family = v.gateway.includes(':') ? '-6' : '-4';
      const r = await io.host.run(sh`ping ${family} -c 2 -i 0.3 -W 1 -I ${name} ${v.gateway}`, {
        description: `ping ${v.gateway} via ${name}`,
        okExitCodes: [0, 1, 2],
        timeoutMs: 15_000,
      });
      if (r.exitCode !== 0) problems.push({ field: `${name}.gateway`, expected: `${v.gateway} answers`, observed: 'no reply' });
    }
  }
  return problems;
}

async function undo(io: StepIo, pre: VlanState, now: VlanState): Promise<void> {
  const cmds = Object.keys(pre.vlans).flatMap((name) => converge(name, now.vlans[name] ?? null, pre.vlans[name] ?? null));
  if (cmds.length) await io.host.run(join('&&', cmds), { description: `restore VLANs ${Object.keys(pre.vlans).join(', ')}` });
}

export const vlanStep: Step<VlanState> = {
  name: 'vlan',
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, 'VLANs', () => check(io), VERIFY),
  undo,
  diff: (a, b) => diffState(a.vlans, b.vlans),
  summary: (spec) => spec.vlans.map((v) => `${vlanIfName(v)}${v.address ? ` ${v.address}` : ''}${v.gateway ? ` → ${v.gateway}` : ''}`).join(', '),
};
