/**
 * Step 2, bond: an 802.3ad (or other mode) bond over the spec's member NICs, written through the host's network
 * manager so that it survives a reboot (systemd-networkd, NetworkManager or ifupdown: src/drivers/linux/persist),
 * applied by that manager now, and verified by what LACP negotiated: every member in the active aggregator, a real
 * partner MAC, no churn, ports collecting and distributing — and by the files on disk being the ones underlay wrote.
 * The undo restores the files byte for byte (from the host's backup store) and gives the NICs back to the
 * configuration that had them before. Refuses to enslave the NIC that carries the management session.
 */
import { LockoutRiskError, UnsupportedPlatformError } from '../common/errors';
import { convergeFilesScript, restoreFilesScript } from '../drivers/linux/files';
import { listLinks, requireManagementInterface } from '../drivers/linux/net';
import type { NetManager } from '../drivers/linux/netmgr';
import { applyBondScript, bondFilePaths, renderBondFiles, undoBondScript, type BondConfig } from '../drivers/linux/persist';
import { LACP_IN_SERVICE, NO_PARTNER_MAC } from '../drivers/linux/parse/ip-link';
import { parseChurnedMembers } from '../drivers/linux/parse/text';
import { join, sh, type Shell } from '../drivers/shell';
import type { BondSpec, ServerSpec } from '../spec/server';
import { diffState } from './diff';
import { detectManager, fileChanges, ifupdownTakeover, memberOwner, observeFiles, type Detected } from './persist';
import { pollUntilHolds, verificationFailure, type Problem } from './poll';
import type { Change, HealthProblem, Step, StepIo } from './step';
import { section } from './want';

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
  persisted: {
    manager: NetManager;
    /** The files the bond owns, and (ifupdown) the foreign files that defined its members: path → sha256 | null. */
    files: Record<string, string | null>;
    /** ifupdown: files other than ours that still define a member (path → members). */
    foreignDefines: Record<string, string[]>;
    /** Who configures the bond and each member, by the manager's account (an undo gives each back to it). */
    owners: Record<string, string | null>;
    /** Why this manager (for plans and the status). */
    why: string;
  };
}

/** The bond step's part of the spec. */
export interface BondWant {
  bond: BondSpec;
  serverId: string;
  spec: ServerSpec;
}

type Io = StepIo<BondWant>;

const LACP_VERIFY = { fast: { timeoutMs: 30_000, intervalMs: 1_000 }, slow: { timeoutMs: 120_000, intervalMs: 3_000 } };
/** Managers settle asynchronously after an undo (NetworkManager re-activating a NIC's old profile). */
const UNDO_SETTLE = { timeoutMs: 45_000, intervalMs: 1_500 };

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

export function bondConfig(b: BondSpec): BondConfig {
  return { name: b.name, members: [...b.members], mode: b.mode, miimon: b.miimon, lacpRate: b.lacpRate, xmitHashPolicy: b.xmitHashPolicy };
}

async function observeRuntime(io: Io): Promise<Pick<BondState, 'bond' | 'members'>> {
  const bond = io.want.bond;
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

async function observePersisted(io: Io, detected?: Detected): Promise<BondState['persisted']> {
  const b = io.want.bond;
  const { facts, choice } = detected ?? (await detectManager(io, io.want.spec, b.members, 'bond'));
  const own = bondFilePaths(choice.manager, bondConfig(b));
  if (choice.manager === 'ifupdown' && !facts.ifupdown.ifenslave) {
    throw new UnsupportedPlatformError('ifupdown runs this host but ifenslave (its bonding hooks) is not installed', {
      host: io.host.label,
      step: 'bond',
      field: 'network.manager',
      expected: 'the ifenslave package installed',
      observed: 'no /etc/network/if-pre-up.d/ifenslave',
    });
  }
  const takeover = choice.manager === 'ifupdown' ? await ifupdownTakeover(io, b.members, own) : { paths: [], defining: {} };
  const owners: Record<string, string | null> = {};
  for (const n of [b.name, ...b.members]) owners[n] = memberOwner(facts, n);
  return {
    manager: choice.manager,
    files: await observeFiles(io, [...own, ...takeover.paths]),
    foreignDefines: takeover.defining,
    owners,
    why: choice.why,
  };
}

async function observe(io: Io): Promise<BondState> {
  const [runtime, persisted] = [await observeRuntime(io), await observePersisted(io)];
  return { ...runtime, persisted };
}

function desiredRuntime(b: BondSpec): Pick<BondState, 'bond' | 'members'> {
  return {
    bond: { ...wantedParams(b), up: true },
    members: Object.fromEntries(b.members.map((m) => [m, { master: b.name, up: true }])),
  };
}

function persistedChanges(want: BondWant, p: BondState['persisted']): Change[] {
  const changes = fileChanges(p.manager, renderBondFiles(p.manager, bondConfig(want.bond), want.serverId), p.files);
  for (const [path, members] of Object.entries(p.foreignDefines)) {
    changes.push({ field: `${p.manager} ${path}`, from: `defines ${members.join(', ')}`, to: `their stanzas disabled: ${want.bond.name} owns them` });
  }
  return changes;
}

function plan(want: BondWant, observed: BondState): Change[] {
  return [...diffState({ bond: observed.bond, members: observed.members }, desiredRuntime(want.bond)), ...persistedChanges(want, observed.persisted)];
}

/** One runtime script converging `now` to `want` (what an undo leaves to iproute2 once the manager let go). */
function convergeScript(name: string, now: Pick<BondState, 'bond' | 'members'>, want: Pick<BondState, 'bond' | 'members'>): Shell | null {
  const cmds: Shell[] = [];
  const paramsDiffer = JSON.stringify({ ...now.bond, up: 0 }) !== JSON.stringify({ ...want.bond, up: 0 });
  const recreate = now.bond !== null && (want.bond === null || paramsDiffer);
  for (const [m, s] of Object.entries(now.members)) {
    if (s.master && (s.master !== want.members[m]?.master || (recreate && s.master === name))) cmds.push(sh`ip link set dev ${m} nomaster`);
  }
  if (recreate) cmds.push(sh`ip link del dev ${name}`);
  for (const [m, w] of Object.entries(want.members)) {
    if (!w.master && now.members[m]?.up !== w.up) cmds.push(w.up ? sh`ip link set dev ${m} up` : sh`ip link set dev ${m} down`);
  }
  return cmds.length ? join('&&', cmds) : null;
}

async function guardManagement(io: Io): Promise<void> {
  const bond = io.want.bond;
  const mgmt = await requireManagementInterface(io.host, 'bond', 'bond.members');
  if (bond.members.includes(mgmt) || mgmt === bond.name) {
    throw new LockoutRiskError('refusing to re-parent the interface that carries the management session', {
      host: io.host.label,
      step: 'bond',
      field: 'bond.members',
      expected: 'members other than the management interface',
      observed: mgmt,
    });
  }
}

async function apply(io: Io, observed: BondState): Promise<void> {
  await guardManagement(io);
  const b = io.want.bond;
  const p = observed.persisted;
  const cfg = bondConfig(b);
  const own = renderBondFiles(p.manager, cfg, io.want.serverId);
  const takeover =
    p.manager === 'ifupdown'
      ? (
          await ifupdownTakeover(
            io,
            b.members,
            own.map((f) => f.path),
          )
        ).rewritten
      : [];
  const files = convergeFilesScript([...own, ...takeover], p.files);
  const want = wantedParams(b);
  const runtimeDiffers = observed.bond !== null && JSON.stringify({ ...observed.bond, up: 0 }) !== JSON.stringify({ ...want, up: 0 });
  // A bond the manager did not make (an earlier runtime-only one, another manager's) is made again by this one.
  const owner = p.owners[b.name] ?? null;
  const foreignBond =
    observed.bond !== null && (owner === null || !owner.startsWith(`${p.manager}:`) || (p.manager !== 'ifupdown' && !owner.includes('underlay')));
  const script = applyBondScript(p.manager, cfg, files, {
    // ifdown needs the stanzas that brought these up: the members' own, and an earlier bond stanza being replaced.
    ifupdownUp: [...b.members, ...(runtimeDiffers ? [b.name] : [])].filter((m) => p.owners[m] === 'ifupdown:up'),
    recreate: runtimeDiffers || foreignBond,
  });
  io.progress(`bond ${b.name}: writing ${p.manager} configuration and applying it (${p.why})`);
  await io.host.run(script, { description: `configure ${b.name} over ${b.members.join(', ')} through ${p.manager}`, timeoutMs: 180_000 });
}

async function check(io: Io): Promise<Problem[]> {
  const b = io.want.bond;
  const links = await listLinks(io.host);
  const bond = links.get(b.name);
  // The manager creates the bond asynchronously: absent is worth waiting for, another kind of link is not.
  if (!bond?.bond) return [{ field: b.name, expected: 'a bond', observed: bond ? (bond.kind ?? 'physical link') : 'absent', final: !!bond }];
  const problems: Problem[] = [];
  for (const m of b.members) {
    const l = links.get(m);
    if (l?.master !== b.name) problems.push({ field: `${m}.master`, expected: b.name, observed: l?.master ?? 'none' });
    else if (l.bondMember?.miiStatus !== 'UP') problems.push({ field: `${m}.mii`, expected: 'UP', observed: l.bondMember?.miiStatus ?? '?' });
  }
  if (b.mode !== '802.3ad' || problems.length) return problems;
  return lacpProblems(io, links);
}

/** What LACP negotiated, as problems (none: every member in the active aggregator with a partner, no churn). */
async function lacpProblems(io: Io, links: Awaited<ReturnType<typeof listLinks>>): Promise<Problem[]> {
  const b = io.want.bond;
  const bond = links.get(b.name);
  const ad = bond?.bond?.adInfo;
  if (!ad || ad.partnerMac === NO_PARTNER_MAC) return [{ field: `${b.name}.partner`, expected: 'an LACP partner', observed: 'none (no LACPDUs heard)' }];
  const problems: Problem[] = [];
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

/** The files on disk are the ones the spec renders (what brings the bond back after a reboot). */
async function persistedProblems(io: Io): Promise<Problem[]> {
  const p = await observePersisted(io);
  return persistedChanges(io.want, p).map((c) => ({ field: c.field, expected: c.to, observed: c.from, final: true }));
}

/** Members LACP churned on (only /proc/net/bonding shows churn). */
async function readChurn(io: Io, bond: string): Promise<string[]> {
  return parseChurnedMembers(await io.host.read(sh`cat ${`/proc/net/bonding/${bond}`}`, { description: `read /proc/net/bonding/${bond}`, privileged: false }));
}

async function undo(io: Io, pre: BondState, now: BondState): Promise<void> {
  const b = io.want.bond;
  const cfg = bondConfig(b);
  const manager = pre.persisted.manager;
  const restore = restoreFilesScript(pre.persisted.files, now.persisted.files);
  const previous = (prefix: string) =>
    b.members
      .map((m) => pre.persisted.owners[m])
      .filter((o): o is string => !!o && o.startsWith(prefix) && !o.includes('underlay-'))
      .map((o) => o.slice(prefix.length))
      .filter((c) => c !== '-');
  const script = undoBondScript(manager, cfg, restore, {
    nmConnections: [...new Set(previous('networkmanager:'))],
    ifupdownUp: b.members.filter((m) => pre.persisted.owners[m] === 'ifupdown:up'),
  });
  await io.host.run(script, { description: `restore ${b.name}, its members and their ${manager} configuration`, timeoutMs: 180_000 });
  // What the manager left at runtime (admin states): iproute2, towards the pre-state.
  const runtime = await observeRuntime(io);
  const rest = convergeScript(b.name, runtime, pre);
  if (rest) await io.host.run(rest, { description: `restore ${b.members.join(', ')} at runtime` });
  // Managers settle asynchronously (a NIC's old profile re-activating): wait, bounded, for the pre-state.
  await pollUntilHolds(
    io,
    `undo of ${b.name}`,
    async () => {
      const after = await observe(io);
      return diffBond(after, pre).map((c) => ({ field: c.field, expected: c.to, observed: c.from }));
    },
    UNDO_SETTLE,
  ).catch((err: unknown) => {
    // The runner's own verification names what is left; this wait only gave the manager time.
    if (!(err instanceof Error && err.name === 'VerificationError')) throw err;
  });
}

function diffBond(a: BondState, b: BondState): Change[] {
  return diffState(
    { bond: a.bond, members: a.members, files: a.persisted.files, owners: a.persisted.owners },
    { bond: b.bond, members: b.members, files: b.persisted.files, owners: b.persisted.owners },
  );
}

async function verify(io: Io): Promise<void> {
  await pollUntilHolds(io, `bond ${io.want.bond.name}`, () => check(io), LACP_VERIFY[io.want.bond.lacpRate]);
  const persisted = await persistedProblems(io);
  if (persisted.length) throw verificationFailure(io, `persisted configuration of ${io.want.bond.name}`, persisted);
}

export const bondStep: Step<BondState, BondWant> = {
  name: 'bond',
  want: (spec) => ({ bond: section(spec, 'bond', 'bond'), serverId: spec.id, spec }),
  observe,
  plan,
  apply,
  verify,
  undo,
  diff: diffBond,
  note: (s) => `persisted through ${s.persisted.why}`,
  health,
};

/**
 * For drift: what LACP says now (no waiting). A member out of the aggregator, no partner, or churn is the switch
 * side's (or a cable's) to fix; a member that is not in the bond at all is configuration drift (plan), not here.
 */
async function health(io: Io): Promise<HealthProblem[]> {
  const links = await listLinks(io.host);
  const b = io.want.bond;
  if (!links.get(b.name)?.bond || b.mode !== '802.3ad') return [];
  if (b.members.some((m) => links.get(m)?.master !== b.name)) return [];
  return (await lacpProblems(io, links)).map((p) => ({
    ...p,
    hint:
      p.field.includes('.') && !p.field.startsWith(`${b.name}.`)
        ? `the switch port facing ${p.field.split('.')[0]} (its LACP, or the cable)`
        : `the switch's LACP bond facing ${b.name}`,
  }));
}
