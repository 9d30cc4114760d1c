/**
 * Step 3, VLANs: a tagged interface per spec VLAN on the bond (or a NIC), with its address, written through the
 * host's network manager so it survives a reboot, applied by the manager now, and verified by pinging the VLAN's
 * gateway through it — the proof that the switch trunks the tag — and by the files on disk being underlay's.
 * The undo takes the VLANs down through the manager and restores its files byte for byte.
 */
import { convergeFilesScript, hashOf, restoreFilesScript, type DesiredFile } from '../drivers/linux/files';
import { listAddresses, listLinks, requireManagementInterface } from '../drivers/linux/net';
import type { NetManager } from '../drivers/linux/netmgr';
import { applyVlansScript, bondFilePaths, renderVlanFiles, undoVlansScript, vlanFilePaths, vlanParentFile, type VlanConfig } from '../drivers/linux/persist';
import { bondConfig } from './bond';
import { join, sh } from '../drivers/shell';
import { vlanIfName, type ServerSpec, type VlanSpec } from '../spec/server';
import { diffState } from './diff';
import { detectManager, fileChanges, observeFiles } from './persist';
import { pollUntilHolds, verificationFailure, type Problem } from './poll';
import type { Change, HealthProblem, Step, StepIo, UndoOutcome } from './step';

export interface VlanLinkState {
  parent: string | null;
  id: number | null;
  up: boolean;
  addresses: string[];
}

export interface VlanState {
  /** Per VLAN interface of the spec: its state, or null when absent. */
  vlans: Record<string, VlanLinkState | null>;
  persisted: {
    manager: NetManager;
    files: Record<string, string | null>;
    /** networkd: the .network file configuring each parent (the VLAN= drop-in goes next to it); null: none. */
    parentFiles: Record<string, string | null>;
    why: string;
  };
}

export interface VlanWant {
  vlans: VlanSpec[];
  serverId: string;
  spec: ServerSpec;
}

type Io = StepIo<VlanWant>;

const VERIFY = { timeoutMs: 45_000, intervalMs: 2_000 };

function configs(vlans: readonly VlanSpec[]): VlanConfig[] {
  return vlans.map((v) => ({ name: vlanIfName(v), parent: v.parent, id: v.id, ...(v.address ? { address: v.address } : {}) }));
}

async function observeRuntime(io: Io): Promise<VlanState['vlans']> {
  const [links, addrs] = await Promise.all([listLinks(io.host), listAddresses(io.host)]);
  const vlans: VlanState['vlans'] = {};
  for (const v of io.want.vlans) {
    const name = vlanIfName(v);
    const l = links.get(name);
    vlans[name] = l ? { parent: l.parent ?? null, id: l.vlan?.id ?? null, up: l.up, addresses: [...(addrs.get(name) ?? [])].sort() } : null;
  }
  return vlans;
}

/** The files this step owns on this host (the parent drop-ins depend on which file configures each parent). */
function ownedPaths(manager: NetManager, vlans: readonly VlanConfig[], parentFiles: Record<string, string | null>): string[] {
  const paths = vlans.flatMap((v) => vlanFilePaths(manager, v));
  if (manager === 'networkd') {
    for (const parent of new Set(vlans.map((v) => v.parent))) {
      const { dropIn, ownNetworkFile } = vlanParentFile(parent, parentFiles[parent] ?? null);
      paths.push(dropIn, ...(ownNetworkFile ? [ownNetworkFile] : []));
    }
  }
  return paths;
}

async function observePersisted(io: Io): Promise<VlanState['persisted']> {
  const parents = [...new Set(io.want.vlans.map((v) => v.parent))];
  const bond = io.want.spec.bond;
  // On the spec's bond, the manager is the bond's: its members decide (the bond may not exist yet in a dry run).
  const nics = [...parents, ...(bond && parents.includes(bond.name) ? bond.members : [])];
  const { facts, choice } = await detectManager(io, io.want.spec, nics, 'vlan');
  const parentFiles: Record<string, string | null> = {};
  for (const p of parents) {
    // The spec's bond is configured by the bond step's own .network file (networkd), whether or not it exists yet.
    const file = bond?.name === p ? bondFilePaths('networkd', bondConfig(bond))[1]! : (facts.networkd[p]?.networkFile ?? null);
    // Our own parent file (a parent nothing else configured) is ours to list, not the parent's own configuration.
    parentFiles[p] = file && !/\/25-underlay-[^/]+\.network$/.test(file) ? file : null;
  }
  return {
    manager: choice.manager,
    files: await observeFiles(io, ownedPaths(choice.manager, configs(io.want.vlans), parentFiles)),
    parentFiles,
    why: choice.why,
  };
}

async function observe(io: Io): Promise<VlanState> {
  const [vlans, persisted] = await Promise.all([observeRuntime(io), observePersisted(io)]);
  return { vlans, persisted };
}

function desired(v: VlanSpec): VlanLinkState {
  return { parent: v.parent, id: v.id, up: true, addresses: v.address ? [v.address] : [] };
}

function persistedChanges(want: VlanWant, p: VlanState['persisted']): Change[] {
  return fileChanges(p.manager, renderVlanFiles(p.manager, configs(want.vlans), want.serverId, p.parentFiles), p.files);
}

function plan(want: VlanWant, observed: VlanState): Change[] {
  const wanted = Object.fromEntries(want.vlans.map((v) => [vlanIfName(v), desired(v)]));
  // Addresses an operator put there are left alone (reported, not removed).
  const current = Object.fromEntries(
    Object.entries(observed.vlans).map(([n, s]) => [n, s && { ...s, addresses: s.addresses.filter((a) => wanted[n]?.addresses.includes(a)) }]),
  );
  return [...diffState(current, wanted), ...persistedChanges(want, observed.persisted)];
}

async function apply(io: Io, observed: VlanState): Promise<void> {
  const p = observed.persisted;
  const cfgs = configs(io.want.vlans);
  const files = convergeFilesScript(renderVlanFiles(p.manager, cfgs, io.want.serverId, p.parentFiles), p.files);
  // A link of the VLAN's name that is not that VLAN (another parent or id) is made again by the manager.
  const recreate = io.want.vlans
    .map((v) => ({ v, now: observed.vlans[vlanIfName(v)] }))
    .filter(({ v, now }) => now && (now.parent !== v.parent || now.id !== v.id))
    .map(({ v }) => vlanIfName(v));
  io.progress(`VLANs: writing ${p.manager} configuration and applying it (${p.why})`);
  await io.host.run(applyVlansScript(p.manager, cfgs, files, recreate), {
    description: `configure VLANs ${cfgs.map((c) => c.name).join(', ')} through ${p.manager}`,
    timeoutMs: 180_000,
  });
}

async function check(io: Io): Promise<Problem[]> {
  const state = await observeRuntime(io);
  const problems: Problem[] = [];
  const pings: Array<Promise<Problem[]>> = [];
  for (const v of io.want.vlans) {
    const name = vlanIfName(v);
    const s = state[name];
    if (!s || s.id !== v.id || s.parent !== v.parent) {
      // Absent: the manager may still be creating it. Another VLAN of that name will not change by waiting.
      problems.push({ field: name, expected: `VLAN ${v.id} on ${v.parent}`, observed: s ? `VLAN ${s.id} on ${s.parent}` : 'absent', final: !!s });
      continue;
    }
    if (v.address && !s.addresses.includes(v.address)) {
      // No address yet: its gateway cannot answer either — the next round pings it.
      problems.push({ field: `${name}.address`, expected: v.address, observed: s.addresses });
      continue;
    }
    // The gateways of all VLANs side by side: each ping waits for its replies.
    if (v.gateway) pings.push(gatewayProblems(io, name, v.gateway));
  }
  for (const p of await Promise.all(pings)) problems.push(...p);
  return problems;
}

async function gatewayProblems(io: Io, name: string, gateway: string): Promise<Problem[]> {
  const family = gateway.includes(':') ? '-6' : '-4';
  const r = await io.host.run(sh`ping ${family} -c 2 -i 0.3 -W 1 -I ${name} ${gateway}`, {
    description: `ping ${gateway} via ${name}`,
    okExitCodes: [0, 1, 2],
    timeoutMs: 15_000,
  });
  return r.exitCode === 0 ? [] : [{ field: `${name}.gateway`, expected: `${gateway} answers`, observed: 'no reply' }];
}

async function verify(io: Io): Promise<void> {
  // The files are read while the addresses and gateways come up (they are written by now).
  const persistedRead = observePersisted(io);
  persistedRead.catch(() => undefined); // awaited below, unless the wait throws first
  await pollUntilHolds(io, 'VLANs', () => check(io), VERIFY);
  const persisted = persistedChanges(io.want, await persistedRead).map((c) => ({ field: c.field, expected: c.to, observed: c.from, final: true }));
  if (persisted.length) throw verificationFailure(io, 'persisted VLAN configuration', persisted);
}

/**
 * The management VLAN the session runs over now (spec `network.management` moved it onto the bond's VLAN), or
 * undefined. Its link and files are the bond step's to undo — as a reverse move under a dead-man — not this step's:
 * deleting it here would cut the session the undo runs over.
 */
async function movedManagementVlan(io: Io): Promise<string | undefined> {
  const m = io.want.spec.network.management;
  const bond = io.want.spec.bond;
  if (!m || !bond) return undefined;
  const v = io.want.vlans.find((x) => vlanIfName(x) === m.interface && x.parent === bond.name);
  if (!v) return undefined;
  const mgmt = await requireManagementInterface(io.host, 'vlan', 'network.management');
  return mgmt === m.interface ? m.interface : undefined;
}

/**
 * What the undo converges to on a moved host: the pre-state, except the management VLAN (as it is now: its link,
 * its files) and, networkd, the parent's drop-in listing the VLANs that stay (the pre-state's and the management
 * VLAN). In the usual order (the bond step's move made the management VLAN before this step ran) that is the
 * pre-state itself.
 */
export function keepingManagement(io: Pick<Io, 'want'>, keep: string, pre: VlanState, now: VlanState): { target: VlanState; write: DesiredFile[] } {
  const manager = pre.persisted.manager;
  const v = io.want.vlans.find((x) => vlanIfName(x) === keep)!;
  const files = { ...pre.persisted.files };
  for (const f of vlanFilePaths(manager, configs([v])[0]!)) files[f] = now.persisted.files[f] ?? null;
  const write: DesiredFile[] = [];
  if (manager === 'networkd') {
    const staying = io.want.vlans.filter((x) => x.parent === v.parent && (vlanIfName(x) === keep || pre.vlans[vlanIfName(x)]));
    const { dropIn } = vlanParentFile(v.parent, pre.persisted.parentFiles[v.parent] ?? null);
    const rendered = renderVlanFiles(manager, configs(staying), io.want.serverId, pre.persisted.parentFiles).find((f) => f.path === dropIn);
    if (rendered && dropIn in files && hashOf(rendered) !== pre.persisted.files[dropIn]) {
      write.push(rendered);
      files[dropIn] = hashOf(rendered);
    }
  }
  return { target: { vlans: { ...pre.vlans, [keep]: now.vlans[keep] ?? null }, persisted: { ...pre.persisted, files } }, write };
}

async function undo(io: Io, pre: VlanState, now: VlanState): Promise<void | UndoOutcome<VlanState>> {
  const cfgs = configs(io.want.vlans);
  const keep = await movedManagementVlan(io);
  const { target, write } = keep ? keepingManagement(io, keep, pre, now) : { target: pre, write: [] };
  const overridden = new Set(Object.keys(target.persisted.files).filter((f) => target.persisted.files[f] !== pre.persisted.files[f]));
  const restoreFrom = Object.fromEntries(Object.entries(pre.persisted.files).filter(([f]) => !overridden.has(f)));
  const restoreParts = [restoreFilesScript(restoreFrom, now.persisted.files), convergeFilesScript(write, now.persisted.files)].filter(
    (x): x is NonNullable<typeof x> => x !== null,
  );
  const restore = restoreParts.length ? join('&&', restoreParts) : null;
  const remove = Object.entries(pre.vlans)
    .filter(([name, s]) => s === null && now.vlans[name] !== null && name !== keep)
    .map(([name]) => name);
  await io.host.run(undoVlansScript(pre.persisted.manager, cfgs, restore, remove, keep), {
    description: `restore VLANs ${cfgs.map((c) => c.name).join(', ')} and their ${pre.persisted.manager} configuration`,
    timeoutMs: 180_000,
  });
  // A VLAN that existed before with other settings: back to them at runtime (the files are already restored).
  const after = await observeRuntime(io);
  for (const [name, want] of Object.entries(pre.vlans)) {
    const cur = after[name] ?? null;
    if (!want || !cur || name === keep) continue;
    for (const a of cur.addresses)
      if (!want.addresses.includes(a)) await io.host.run(sh`ip addr del ${a} dev ${name}`, { description: `remove ${a} from ${name}` });
    for (const a of want.addresses) if (!cur.addresses.includes(a)) await io.host.run(sh`ip addr add ${a} dev ${name}`, { description: `add ${a} to ${name}` });
    if (cur.up !== want.up)
      await io.host.run(want.up ? sh`ip link set dev ${name} up` : sh`ip link set dev ${name} down`, { description: `set ${name} admin state` });
  }
  if (keep && vlanStep.diff(target, pre).length)
    return { target, note: `${keep} carries the management session: left to the bond step's undo (management moved back under a dead-man)` };
}

export const vlanStep: Step<VlanState, VlanWant> = {
  name: 'vlan',
  want: (spec) => ({ vlans: spec.vlans, serverId: spec.id, spec }),
  observe,
  plan,
  apply,
  verify,
  undo,
  diff: (a, b) => diffState({ vlans: a.vlans, files: a.persisted.files }, { vlans: b.vlans, files: b.persisted.files }),
  note: (s) => `persisted through ${s.persisted.why}`,
  health,
};

/** For drift: each VLAN's gateway answers now (one burst, no waiting); a silent gateway is upstream's to fix. */
async function health(io: Io): Promise<HealthProblem[]> {
  const problems: HealthProblem[] = [];
  const state = await observeRuntime(io);
  for (const v of io.want.vlans) {
    const name = vlanIfName(v);
    const s = state[name];
    if (!v.gateway || !s || s.id !== v.id || s.parent !== v.parent || (v.address && !s.addresses.includes(v.address))) continue;
    for (const p of await gatewayProblems(io, name, v.gateway))
      problems.push({ ...p, hint: `VLAN ${v.id} upstream: the gateway ${v.gateway}, or the tag on the switch ports` });
  }
  return problems;
}
