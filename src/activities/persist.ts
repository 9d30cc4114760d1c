/**
 * What the Linux network steps share about persistence: which network manager they write through (detected per
 * host, or forced by the spec), the files they own as hashes in their state, and what the undo of those files
 * must reach. The per-manager files and commands are in src/drivers/linux/persist.
 */
import { hashFiles, listFiles, readFiles, sha256 as hashOfContent, type DesiredFile, type FileHashes } from '../drivers/linux/files';
import { chooseManager, ownerOf, readManagerFacts, type ManagerChoice, type ManagerFacts, type NetManager } from '../drivers/linux/netmgr';
import { DISABLED_MARK, definedInterfaces, disableInterfaces } from '../drivers/linux/persist/ifupdown-parse';
import { IFUPDOWN_DIR } from '../drivers/linux/persist';
import type { ServerSpec } from '../spec/server';
import type { StepName } from '../steps';
import type { Change, StepIo } from './step';

export interface PersistedState {
  manager: NetManager;
  /** path → sha256 (null: absent) of every file the step owns or changed. */
  files: FileHashes;
}

export interface Detected {
  facts: ManagerFacts;
  choice: ManagerChoice;
}

export async function detectManager(io: StepIo<unknown>, spec: ServerSpec, nics: readonly string[], step: StepName): Promise<Detected> {
  const facts = await readManagerFacts(io.host);
  return { facts, choice: chooseManager(facts, spec.network.manager, nics, { host: io.host.label, step }) };
}

/** What a NIC is configured by now, for the state (an undo must give it back to the same owner). */
export function memberOwner(facts: ManagerFacts, ifname: string): string | null {
  switch (ownerOf(facts, ifname)) {
    case 'networkmanager':
      return `networkmanager:${facts.nm[ifname]?.connection ?? '-'}`;
    case 'networkd':
      return `networkd:${facts.networkd[ifname]?.networkFile ?? '-'}`;
    case 'ifupdown':
      return `ifupdown:${facts.ifupdownUp.includes(ifname) ? 'up' : 'defined'}`;
    default:
      return null;
  }
}

/** The planned changes of a step's files: one per file whose content differs from what the spec renders. */
export function fileChanges(manager: NetManager | 'udev' | 'systemd', desired: readonly DesiredFile[], files: FileHashes): Change[] {
  return desired
    .filter((f) => (files[f.path] ?? null) !== (f.content === null ? null : hashOfContent(f.content)))
    .map((f) => ({
      field: `${manager} ${f.path}`,
      from: files[f.path] === null || files[f.path] === undefined ? 'absent' : 'other content',
      to: f.content === null ? 'absent' : 'written by underlay',
    }));
}

/**
 * ifupdown: the files (other than ours) that define any of `ifaces`, or that we disabled them in — with what
 * they would look like with those definitions disabled. Read on the host; only hashes go into a step's state.
 */
export async function ifupdownTakeover(
  io: StepIo<unknown>,
  ifaces: readonly string[],
  ownPaths: readonly string[],
): Promise<{ paths: string[]; rewritten: DesiredFile[]; defining: Record<string, string[]> }> {
  const candidates = ['/etc/network/interfaces', ...(await listFiles(io.host, IFUPDOWN_DIR, '*'))].filter((p) => !ownPaths.includes(p));
  const contents = await readFiles(io.host, candidates);
  const paths: string[] = [];
  const rewritten: DesiredFile[] = [];
  const defining: Record<string, string[]> = {};
  for (const [path, text] of Object.entries(contents)) {
    if (text === null) continue;
    const defines = definedInterfaces(text).filter((n) => ifaces.includes(n));
    const disabledHere = ifaces.some((n) =>
      text.split('\n').some((l) => l.startsWith(DISABLED_MARK) && new RegExp(`\\b${n.replace(/\./g, '\\.')}\\b`).test(l)),
    );
    if (!defines.length && !disabledHere) continue;
    paths.push(path);
    if (defines.length) {
      defining[path] = defines;
      rewritten.push({ path, content: disableInterfaces(text, defines), mode: '0644' });
    }
  }
  return { paths, rewritten, defining };
}

/** Whether the observed files hold exactly the desired ones (and no foreign file still defines what we took over). */
export async function observeFiles(io: StepIo<unknown>, paths: readonly string[]): Promise<FileHashes> {
  return hashFiles(io.host, [...new Set(paths)].sort());
}
