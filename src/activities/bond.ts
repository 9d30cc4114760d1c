/**
 * Step 2, bond: an 802.3ad (or other mode) bond over the spec's member NICs, verified by what LACP negotiated:
 * every member in the active aggregator, a real partner MAC, no churn, ports collecting and distributing.
 * Refuses to enslave the NIC that carries the management session (lockout guard).
 */
import { LockoutRiskError } from '../common/errors';
import { join, sh, type Shell } from '../drivers/shell';
import { listAddresses, listLinks, managementInterface } from '../drivers/linux/net';
import { LACP_IN_SERVICE, NO_PARTNER_MAC } from '../drivers/linux/parse/ip-link';
import { parseChurnedMembers } from '../drivers/linux/parse/text';
import type { BondSpec, ServerSpec } from '../spec/server';
import { diffState } from './diff';
import { pollUntilHolds, type Problem } from './poll';
import type { Change, Step, StepIo } from './step';

export interface BondParams {
  mode: string;
  miimon: number | null;
  lacpRate: string | null;
  xmitHashPolicy: string | null;
}

export interface BondState {
  /** The bond's parameters, or null when there is no such link. */
  bond: (BondParams & { up: boolean }) | null;
  /** Each member's master and admin state. */
  members: Record<string, { master: string | null; up: boolean }>;
}

const LACP_VERIFY = { fast: { timeoutMs: 30_000, intervalMs: 1_000 }, slow: { timeoutMs: 120_000, intervalMs: 3_000 } };

/** The parameters the kernel reports for a bond built from this spec (kernel names, not spec names). */
export function wantedParams(b: BondSpec): BondParams {
  const lacp = b.mode === '802.3ad';
  return {
    mode: b.mode,
    miimon: b.miimon,
    lacpRate: lacp ? b.lacpRate : null,
    xmitHashPolicy: lacp || b.mode === 'balance-tlb' || b.mode === 'balance-alb' ? b.xmitHashPolicy : null,
  };
}

async function observe(io: StepIo): Promise<BondState> {
  const bond = io.spec.bond!;
  const links = await listLinks(io.host);
  const link = links.get(bond.name);
  const want = wantedParams(bond);
  const members: BondState['members'] = {};
  for (const m of bond.members) {
    const l = links.get(m);
    members[m] = { master: l?.master ?? null, up: l?.up ?? false };
  }
  return {
    bond: link
      ? {
          mode: link.bond?.mode ?? `not a bond (${link.kind ?? 'physical'})`,
          miimon: link.bond?.miimon ?? null,
          // Only compare what the mode uses: the kernel reports defaults for the rest.
          lacpRate: want.lacpRate === null ? null : (link.bond?.lacpRate ?? null),
          xmitHashPolicy: want.xmitHashPolicy === null ? null : (link.bond?.xmitHashPolicy ?? null),
          up: link.up,
        }
      : null,
    members,
  };
}

function desiredFromSpec(b: BondSpec): BondState {
  return {
    bond: { ...wantedParams(b), up: true },
    members: Object.fromEntries(b.members.map((m) => [m, { master: b.name, up: true }])),
  };
}

function plan(spec: ServerSpec, observed: BondState): Change[] {
  return diffState(observed, desiredFromSpec(spec.bond!));
}

/** One script converging `now` to `want`: release, (re)create, enslave, raise, restore admin states. */
function convergeScript(name: string, now: BondState, want: BondState): Shell {
  const cmds: Shell[] = [];
  const paramsDiffer = JSON.stringify({ ...now.bond, up: 0 }) !== JSON.stringify({ ...want.bond, up: 0 });
  const recreate = now.bond !== null && (want.bond === null || paramsDiffer);
  for (const [m, s] of Object.entries(now.members)) {
    if (s.master && (s.master !== want.members[m]?.master || (recreate && s.master === name))) cmds.push(sh`ip link set dev ${m} nomaster`);
  }
  if (recreate) cmds.push(sh`ip link del dev ${name}`);
  if (want.bond && (now.bond === null || recreate)) {
    const p = want.bond;
    const opts: Shell[] = [sh`mode ${p.mode}`];
    if (p.miimon !== null) opts.push(sh`miimon ${p.miimon}`);
    if (p.lacpRate !== null) opts.push(sh`lacp_rate ${p.lacpRate}`);
    if (p.xmitHashPolicy !== null) opts.push(sh`xmit_hash_policy ${p.xmitHashPolicy}`);
    cmds.push(sh`ip link add dev ${name} type bond ${join(' ', opts)}`);
  }
  for (const [m, w] of Object.entries(want.members)) {
    const cur = now.members[m];
    // A NIC must be down to be enslaved; the bond raises it again.
    if (w.master && (cur?.master !== w.master || recreate)) cmds.push(sh`ip link set dev ${m} down`, sh`ip link set dev ${m} master ${w.master}`);
  }
  if (want.bond?.up) cmds.push(sh`ip link set dev ${name} up`);
  for (const [m, w] of Object.entries(want.members)) {
    if (!w.master) cmds.push(w.up ? sh`ip link set dev ${m} up` : sh`ip link set dev ${m} down`);
  }
  return join('&&', cmds);
}

async function guardManagement(io: StepIo): Promise<void> {
  const bond = io.spec.bond!;
  const mgmt = await managementInterface(io.host, await listAddresses(io.host));
  if (mgmt && (bond.members.includes(mgmt) || mgmt === bond.name)) {
    throw new LockoutRiskError('refusing to re-parent the interface that carries the management session', {
      host: io.host.label,
      step: 'bond',
      field: 'bond.members',
      expected: 'members other than the management interface',
      observed: mgmt,
    });
  }
}

async function apply(io: StepIo, observed: BondState): Promise<void> {
  await guardManagement(io);
  const b = io.spec.bond!;
  await io.host.run(convergeScript(b.name, observed, desiredFromSpec(b)), { description: `configure ${b.name} over ${b.members.join(', ')}` });
}

async function check(io: StepIo): Promise<Problem[]> {
  const b = io.spec.bond!;
  const links = await listLinks(io.host);
  const bond = links.get(b.name);
  if (!bond?.bond) return [{ field: b.name, expected: 'a bond', observed: bond ? (bond.kind ?? 'physical link') : 'absent', final: true }];
  const problems: Problem[] = [];
  for (const m of b.members) {
    const l = links.get(m);
    if (l?.master !== b.name) problems.push({ field: `${m}.master`, expected: b.name, observed: l?.master ?? 'none', final: true });
    else if (l.bondMember?.miiStatus !== 'UP') problems.push({ field: `${m}.mii`, expected: 'UP', observed: l.bondMember?.miiStatus ?? '?' });
  }
  if (b.mode !== '802.3ad' || problems.length) return problems;
  const ad = bond.bond.adInfo;
  if (!ad || ad.partnerMac === NO_PARTNER_MAC) return [{ field: `${b.name}.partner`, expected: 'an LACP partner', observed: 'none (no LACPDUs heard)' }];
  for (const m of b.members) {
    const s = links.get(m)?.bondMember;
    if (s?.aggregatorId !== ad.aggregator) problems.push({ field: `${m}.aggregator`, expected: ad.aggregator, observed: s?.aggregatorId ?? 'none' });
    else if (((s.actorPortState ?? 0) & LACP_IN_SERVICE) !== LACP_IN_SERVICE || ((s.partnerPortState ?? 0) & LACP_IN_SERVICE) !== LACP_IN_SERVICE) {
      problems.push({ field: `${m}.lacp`, expected: 'sync+collecting+distributing', observed: `actor ${s.actorPortState}, partner ${s.partnerPortState}` });
    }
  }
  if (ad.numPorts !== b.members.length) problems.push({ field: `${b.name}.ports`, expected: b.members.length, observed: ad.numPorts });
  if (!problems.length) {
    const churned = await readChurn(io, b.name);
    if (churned.length) problems.push({ field: `${b.name}.churn`, expected: 'no churned member', observed: churned.join(', ') });
  }
  return problems;
}

/** Members LACP churned on (only /proc/net/bonding shows churn). */
async function readChurn(io: StepIo, bond: string): Promise<string[]> {
  return parseChurnedMembers(await io.host.read(sh`cat ${`/proc/net/bonding/${bond}`}`, { description: `read /proc/net/bonding/${bond}` }));
}

async function undo(io: StepIo, pre: BondState, now: BondState): Promise<void> {
  await io.host.run(convergeScript(io.spec.bond!.name, now, pre), { description: `restore ${io.spec.bond!.name} and its members` });
}

export const bondStep: Step<BondState> = {
  name: 'bond',
  observe,
  plan,
  apply,
  verify: (io) => pollUntilHolds(io, `bond ${io.spec.bond!.name}`, () => check(io), LACP_VERIFY[io.spec.bond!.lacpRate]),
  undo,
  diff: (a, b) => diffState(a, b),
  summary: (spec) => {
    const b = spec.bond!;
    return `${b.name} ← ${b.members.join(',')} · ${b.mode}${b.mode === '802.3ad' ? ` · ${b.lacpRate}` : ''}`;
  },
};
