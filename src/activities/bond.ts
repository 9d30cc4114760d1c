/**
 * Step 2, bond: an 802.3ad (or other mode) bond over the spec's member NICs, written through the host's network
 * manager so that it survives a reboot (systemd-networkd, NetworkManager or ifupdown: src/drivers/linux/persist),
 * applied by that manager now, and verified by what LACP negotiated: every member in the active aggregator, a real
 * partner MAC, no churn, ports collecting and distributing — and by the files on disk being the ones underlay wrote.
 * The undo restores the files byte for byte (from the host's backup store) and gives the NICs back to the
 * configuration that had them before. Refuses to enslave the NIC that carries the management session.
 */
import { LockoutRiskError, UnsupportedPlatformError } from '../common/errors';
import { convergeFilesScript, restoreFilesScript, type FileHashes } from '../drivers/linux/files';
import { listAddresses, listLinks, requireManagementInterface } from '../drivers/linux/net';
import type { NetManager } from '../drivers/linux/netmgr';
import {
  applyBondScript,
  bondFilePaths,
  moveBackScript,
  moveReactivateScript,
  moveReapplyScript,
  moveUpScript,
  renderBondFiles,
  renderVlanFiles,
  undoBondScript,
  vlanFilePaths,
  vlanParentFile,
  type BondConfig,
  type MoveActivation,
  type VlanConfig,
} from '../drivers/linux/persist';
import { LACP_IN_SERVICE, NO_PARTNER_MAC } from '../drivers/linux/parse/ip-link';
import { parseChurnedMembers } from '../drivers/linux/parse/text';
import { join, sh, type Shell } from '../drivers/shell';
import { vlanIfName, type BondSpec, type ServerSpec, type VlanSpec } from '../spec/server';
import { commitConfirmed, moveMark, type MovePlan } from './move';
import { managementPaths } from '../spec/management';
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
  /** Management moves onto the bond (spec network.management): where to, and the confirm window. */
  move?: ManagementMove;
}

export interface ManagementMove {
  /** The bond or its VLAN that carries the management address afterwards. */
  interface: string;
  /** That VLAN of the spec (undefined: the bond itself). */
  vlan?: VlanSpec;
  windowSec: number;
}

export function managementMove(spec: ServerSpec): ManagementMove | undefined {
  const m = spec.network.management;
  if (!m || !spec.bond) return undefined;
  const vlan = spec.vlans.find((v) => vlanIfName(v) === m.interface && v.parent === spec.bond!.name);
  return { interface: m.interface, ...(vlan ? { vlan } : {}), windowSec: m.confirmWindowSeconds };
}

const vlanConfig = (v: VlanSpec): VlanConfig => ({ name: vlanIfName(v), parent: v.parent, id: v.id, ...(v.address ? { address: v.address } : {}) });

/**
 * The files the move writes besides the bond's own: the management VLAN's (networkd: its .netdev/.network and the
 * bond's VLAN= drop-in). The VLAN step later finds them in place and adds the other VLANs next to them.
 */
function moveVlanFiles(manager: NetManager, want: BondWant): { paths: string[]; render: () => ReturnType<typeof renderVlanFiles> } {
  const v = want.move?.vlan;
  if (!v) return { paths: [], render: () => [] };
  const cfg = vlanConfig(v);
  const bondNetwork = bondFilePaths('networkd', bondConfig(want.bond))[1]!;
  const paths = [...vlanFilePaths(manager, cfg), ...(manager === 'networkd' ? [vlanParentFile(want.bond.name, bondNetwork).dropIn] : [])];
  return { paths, render: () => renderVlanFiles(manager, [cfg], want.serverId, { [want.bond.name]: bondNetwork }) };
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
    files: await observeFiles(io, [...own, ...takeover.paths, ...moveVlanFiles(choice.manager, io.want).paths]),
    foreignDefines: takeover.defining,
    owners,
    why: choice.why,
  };
}

async function observe(io: Io): Promise<BondState> {
  const [runtime, persisted] = await Promise.all([observeRuntime(io), observePersisted(io)]);
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

/**
 * Whether the change re-parents the interface that carries the management session. Refused (LockoutRiskError)
 * unless the spec moves management onto the bond: then the change runs commit-confirmed (moveManagement).
 */
async function cutsManagement(io: Io): Promise<boolean> {
  const bond = io.want.bond;
  const mgmt = await requireManagementInterface(io.host, 'bond', 'bond.members');
  if (!bond.members.includes(mgmt) && mgmt !== bond.name) return false;
  if (io.want.move && mgmt !== bond.name) return true;
  throw new LockoutRiskError(
    'refusing to re-parent the interface that carries the management session (set network.management to move it onto the bond, commit-confirmed)',
    {
      host: io.host.label,
      step: 'bond',
      field: 'bond.members',
      expected: 'members other than the management interface',
      observed: mgmt,
    },
  );
}

async function apply(io: Io, observed: BondState): Promise<void> {
  // A move an earlier attempt armed: resume it (confirm or see the rollback), never apply twice.
  if (moveMark(io, 'bond')) {
    await commitConfirmed(io, movePlan(io, observed));
    return;
  }
  const b = io.want.bond;
  const p = observed.persisted;
  const cfg = bondConfig(b);
  const own = renderBondFiles(p.manager, cfg, io.want.serverId);
  // The lockout guard and the member stanzas to take over, read side by side.
  const [moving, takeover] = await Promise.all([
    cutsManagement(io),
    p.manager === 'ifupdown'
      ? ifupdownTakeover(
          io,
          b.members,
          own.map((f) => f.path),
        ).then((t) => t.rewritten)
      : [],
  ]);
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
  if (moving) {
    await commitConfirmed(io, movePlan(io, observed, { script, written: [...own, ...takeover].map((f) => f.path) }));
    return;
  }
  io.progress(`bond ${b.name}: writing ${p.manager} configuration and applying it (${p.why})`);
  await io.host.run(script, { description: `configure ${b.name} over ${b.members.join(', ')} through ${p.manager}`, timeoutMs: 180_000 });
}

/**
 * What the move needs from the manager besides files, and what brings the members back: from the members' owners
 * before onboarding (their NetworkManager profiles, the NICs ifupdown had up).
 */
function moveActivation(b: BondSpec, vlan: string, owners: Record<string, string | null>): MoveActivation {
  const previous = (prefix: string) =>
    b.members
      .map((m) => owners[m])
      .filter((o): o is string => !!o && o.startsWith(prefix) && !o.includes('underlay-'))
      .map((o) => o.slice(prefix.length))
      .filter((c) => c !== '-');
  return {
    bond: bondConfig(b),
    vlan,
    nmConnections: [...new Set(previous('networkmanager:'))],
    ifupdownUp: b.members.filter((m) => owners[m] === 'ifupdown:up'),
  };
}

/**
 * The bond taking the NIC that carries the session, with the management address moving onto the bond's VLAN, as
 * one commit-confirmed change (src/activities/move.ts): the bond's and the management VLAN's files, applied by the
 * manager, run detached; the host restores the files and re-applies them unless confirmed over the new path.
 * `armWith` undefined: a retry resuming the transaction (nothing is armed then); `armWith.written`: every file its script writes.
 */
function movePlan(io: Io, observed: BondState, armWith?: { script: ReturnType<typeof applyBondScript>; written: readonly string[] }): MovePlan {
  const b = io.want.bond;
  const move = io.want.move!;
  const p = observed.persisted;
  if (!move.vlan) {
    // The spec refuses management on the bond itself; this guards the type.
    throw new UnsupportedPlatformError('moving management onto the bond itself is not built: name a VLAN of the bond', {
      host: io.host.label,
      step: 'bond',
      field: 'network.management.interface',
      expected: `a VLAN on ${b.name}`,
      observed: move.interface,
    });
  }
  const vlanFiles = moveVlanFiles(p.manager, io.want);
  const vlanName = vlanIfName(move.vlan);
  const activation = moveActivation(b, vlanName, p.owners);
  const change = armWith
    ? join('&&', [
        ...[convergeFilesScript(vlanFiles.render(), p.files)].filter((x): x is NonNullable<typeof x> => x !== null),
        armWith.script,
        moveUpScript(p.manager, activation),
      ])
    : sh`false`;
  const reactivate = moveReactivateScript(p.manager, activation);
  // Every file the change writes is saved, whatever observe saw (ifupdown: the member's stanza rewritten in a foreign file).
  const files = [...new Set([...Object.keys(p.files), ...vlanFiles.paths, ...(armWith?.written ?? [])])].sort();
  return {
    purpose: 'bond',
    files,
    reactivate,
    change,
    windowSec: move.windowSec,
    to: 'moved',
    from: 'initial',
    what: `management onto ${move.interface} (${b.name} ← ${b.members.join(', ')})`,
    pre: { files: p.files, bond: observed.bond === null ? null : 'present' },
    ...(armWith ? {} : { resumeOnly: true }),
    verifyNew: async () => {
      const problems = await check(io);
      if (problems.length || !move.vlan) return problems;
      const addrs = await listAddresses(io.host);
      const want = move.vlan.address;
      if (want && !(addrs.get(vlanName) ?? []).includes(want)) return [{ field: `${vlanName}.address`, expected: want, observed: addrs.get(vlanName) ?? [] }];
      if (move.vlan.gateway) {
        const r = await io.host.run(sh`ping -c 2 -i 0.3 -W 1 -I ${vlanName} ${move.vlan.gateway}`, {
          description: `ping ${move.vlan.gateway} via ${vlanName}`,
          okExitCodes: [0, 1, 2],
          timeoutMs: 15_000,
        });
        if (r.exitCode !== 0) return [{ field: `${vlanName}.gateway`, expected: `${move.vlan.gateway} answers`, observed: 'no reply' }];
      }
      return [];
    },
    verifyRolledBack: async (_io, pre) => {
      const want = pre as { files: FileHashes; bond: 'present' | null };
      const [runtime, persisted] = await Promise.all([observeRuntime(io), observePersisted(io)]);
      const problems = diffState({ files: persisted.files, bond: runtime.bond === null ? null : 'present' }, want).map((c) => ({
        field: c.field,
        expected: c.to,
        observed: c.from,
      }));
      const mgmt = await requireManagementInterface(io.host, 'bond', 'network.management');
      if (!b.members.includes(mgmt))
        problems.push({ field: 'management interface', expected: `one of ${b.members.join(', ')} (the pre-state)`, observed: mgmt });
      return problems;
    },
  };
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
  // A reverse move an earlier attempt armed: resume it (confirm over the initial path, or see the host roll back to
  // the moved state), never arm or apply twice.
  if (moveMark(io, REVERSE_MOVE)) {
    await commitConfirmed(io, reverseMovePlan(io, pre, now));
    await settleMembers(io, pre);
    return;
  }
  // Management moved onto the bond (commit-confirmed): undoing the bond cuts the session it runs over. Then the undo
  // is the move in reverse, under a dead-man (reverseMovePlan); what cannot be done that way is refused (fail closed).
  const mgmt = await requireManagementInterface(io.host, 'bond', 'network.management');
  const links = await listLinks(io.host);
  if (mgmt === b.name || b.members.includes(mgmt) || links.get(mgmt)?.parent === b.name) {
    await commitConfirmed(io, reverseMovePlan(io, pre, now, mgmt));
    await settleMembers(io, pre);
    return;
  }
  const cfg = bondConfig(b);
  const manager = pre.persisted.manager;
  const restore = restoreFilesScript(pre.persisted.files, now.persisted.files);
  const { nmConnections, ifupdownUp } = moveActivation(b, b.name, pre.persisted.owners);
  const script = undoBondScript(manager, cfg, restore, { nmConnections, ifupdownUp });
  await io.host.run(script, { description: `restore ${b.name}, its members and their ${manager} configuration`, timeoutMs: 180_000 });
  await settleMembers(io, pre);
}

/** After an undo: what the manager left at runtime (admin states) towards the pre-state, then a bounded wait for it. */
async function settleMembers(io: Io, pre: BondState): Promise<void> {
  const b = io.want.bond;
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

/** The purpose (transaction id prefix, mark key) of the reverse move: management back off the bond. */
const REVERSE_MOVE = 'bond-undo';

/**
 * The undo of a host whose management moved onto the bond's VLAN, as ONE commit-confirmed transaction
 * (src/activities/move.ts) from the moved path back to the initial one: the bond's and the management VLAN's files
 * removed (or put back byte for byte from the backup store, for any that existed before), the VLAN and the bond
 * deleted, the members given back to their own configuration (their owners in the pre-state: the NICs ifupdown
 * had up, their NetworkManager profiles; networkd never touched a member's own .network file) — run detached,
 * per manager (moveBackScript: the forward move's rollback after the files). Unless confirmed over the initial
 * path (no bond, the session on a member), the host restores the moved state by itself (moveReapplyScript).
 * `mgmt` undefined: a retry resuming the transaction. Refuses (LockoutRiskError) what it cannot do that way.
 */
export function reverseMovePlan(io: Io, pre: BondState, now: BondState, mgmt?: string): MovePlan {
  const b = io.want.bond;
  const move = io.want.move;
  const refuse = (why: string, expected: string, observed: string) =>
    new LockoutRiskError(`undoing ${b.name} would cut the management session, which runs over ${mgmt ?? '?'}; ${why}`, {
      host: io.host.label,
      step: 'bond',
      field: 'network.management',
      expected,
      observed,
    });
  if (mgmt !== undefined) {
    if (!move || !move.vlan)
      throw refuse('the spec moves no management onto a VLAN of the bond, so it cannot be moved back', 'network.management on a VLAN of the bond', mgmt);
    if (mgmt !== move.interface)
      throw refuse(
        `only a session over ${move.interface} (the moved path) can be moved back`,
        `a session over ${move.interface} or a NIC outside the bond`,
        mgmt,
      );
    if (pre.bond !== null)
      throw refuse(
        'the bond existed before onboarding, so there is no initial path without it to move back to',
        'no bond in the pre-state',
        'a bond in the pre-state',
      );
  }
  const manager = now.persisted.manager;
  // The members' own configuration comes from the pre-state (the moved state's owners are the bond's).
  const activation = moveActivation(b, move?.vlan ? vlanIfName(move.vlan) : b.name, pre.persisted.owners);
  const change = mgmt === undefined ? sh`false` : moveBackScript(manager, activation, restoreFilesScript(pre.persisted.files, now.persisted.files));
  // restore.sh has put the moved state's files back: the manager makes the bond and its VLAN again (as the move did).
  const reactivate = moveReapplyScript(manager, activation);
  const files = [...new Set([...Object.keys(pre.persisted.files), ...Object.keys(now.persisted.files)])].sort();
  const initial = managementPaths(io.want.spec).find((p) => p.which === 'initial')!;
  const sessionOnMember = async (): Promise<Problem[]> => {
    const m = await requireManagementInterface(io.host, 'bond', 'network.management');
    return b.members.includes(m) ? [] : [{ field: 'management interface', expected: `one of ${b.members.join(', ')} (the pre-state)`, observed: m }];
  };
  return {
    purpose: REVERSE_MOVE,
    files,
    reactivate,
    change,
    windowSec: move?.windowSec ?? 120,
    to: 'initial',
    from: 'moved',
    what: `management back to ${initial.address}:${initial.port} off ${move?.interface ?? b.name} (${b.name} ← ${b.members.join(', ')} removed)`,
    // What the host's own rollback must bring back: the moved state's files and a bond.
    pre: { files: now.persisted.files, bond: 'present' },
    ...(mgmt === undefined ? { resumeOnly: true } : {}),
    // The pre-onboarding state on the initial path: the files as before onboarding, no bond, the session on a member.
    verifyNew: async () => {
      const [runtime, persisted] = await Promise.all([observeRuntime(io), observePersisted(io)]);
      const problems: Problem[] = diffState(
        { files: persisted.files, bond: runtime.bond === null ? null : 'present', masters: Object.values(runtime.members).map((m) => m.master) },
        { files: pre.persisted.files, bond: null, masters: Object.values(pre.members).map((m) => m.master) },
      ).map((c) => ({ field: c.field, expected: c.to, observed: c.from }));
      return [...problems, ...(await sessionOnMember())];
    },
    // Still moved: the moved state's files, the bond, the session on the management VLAN.
    verifyRolledBack: async (_io, moved) => {
      const want = moved as { files: FileHashes; bond: 'present' };
      const [runtime, persisted] = await Promise.all([observeRuntime(io), observePersisted(io)]);
      const problems: Problem[] = diffState({ files: persisted.files, bond: runtime.bond === null ? null : 'present' }, want).map((c) => ({
        field: c.field,
        expected: c.to,
        observed: c.from,
      }));
      const m = await requireManagementInterface(io.host, 'bond', 'network.management');
      if (m !== (move?.interface ?? b.name)) problems.push({ field: 'management interface', expected: `${move?.interface} (the moved state)`, observed: m });
      return problems;
    },
  };
}

function diffBond(a: BondState, b: BondState): Change[] {
  return diffState(
    { bond: a.bond, members: a.members, files: a.persisted.files, owners: a.persisted.owners },
    { bond: b.bond, members: b.members, files: b.persisted.files, owners: b.persisted.owners },
  );
}

async function verify(io: Io): Promise<void> {
  // A retry after the worker died between arm and confirm: the host may hold the moved state (nothing to apply) with
  // the timer still running — confirm it over the new path, or see it roll back.
  const mark = moveMark(io, 'bond');
  if (mark && mark.phase !== 'confirmed') await commitConfirmed(io, movePlan(io, await observe(io)));
  // The files are read while LACP converges (they are written by now): the wait hides their round trips.
  const persistedRead = persistedProblems(io);
  persistedRead.catch(() => undefined); // awaited below, unless the LACP wait throws first
  await pollUntilHolds(io, `bond ${io.want.bond.name}`, () => check(io), LACP_VERIFY[io.want.bond.lacpRate]);
  const persisted = await persistedRead;
  if (persisted.length) throw verificationFailure(io, `persisted configuration of ${io.want.bond.name}`, persisted);
}

export const bondStep: Step<BondState, BondWant> = {
  name: 'bond',
  want: (spec) => {
    const move = managementMove(spec);
    return { bond: section(spec, 'bond', 'bond'), serverId: spec.id, spec, ...(move ? { move } : {}) };
  },
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
