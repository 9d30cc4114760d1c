/**
 * Package installs and their undo for the hypervisor steps (KVM's apt/dnf set, Xen's xen-system-amd64), as
 * detached host jobs (./job.ts): a worker lost in the middle of an install leaves the install running on the
 * host, and the next attempt waits for it instead of starting apt again.
 *
 * Before a job starts (Debian):
 * - the package locks: while another process holds one (unattended-upgrades or cloud-init on a fresh server),
 *   wait — bounded, with a progress note naming the holder, its pid and unit and how long we have waited;
 * - dpkg itself: when it was interrupted or left packages half-done, and an underlay job is what left it so (the
 *   job's record on the host, DPKG_JOB_RECORD), run `dpkg --configure -a` (and `apt-get -f install`) as a
 *   detached job first. When no underlay job did, refuse (PackageDatabaseError, naming the packages): underlay
 *   does not repair a package database someone else broke without an operator looking at it.
 *
 * The undo purges what was installed since the snapshot, leaving dpkg clean — except packages that packages
 * present before now need (an install that upgraded a pre-existing package to a version depending on a new one):
 * purging those would take the pre-existing package with it, so they are kept, and the compensation says so.
 */
import { NotConvergedError, PackageDatabaseError } from '../common/errors';
import {
  describeHolder,
  describeUnclean,
  dpkgClean,
  dpkgHealth,
  dpkgRecoverScript,
  lockHolders,
  packageRelationsScript,
  parsePackageRelations,
  parseSimulatedRemovals,
  recordedDpkgJob,
  simulatePurgeScript,
} from '../drivers/linux/dpkg';
import { jobStatus, releaseJob } from '../drivers/linux/job';
import { installedPackages, installPackages, purgePackages } from '../drivers/linux/packages';
import type { OsFamily } from '../drivers/linux/parse/text';
import { jobMarkKey, runDetached, unitFor, type JobOutcome } from './job';
import type { StepIo } from './step';

export interface PackageJobOptions {
  /** Bound of the install job on the host. */
  installTimeoutMs: number;
  /** Bound of the purge (and recovery) job on the host. */
  purgeTimeoutMs: number;
  /** How long to wait for another process's package lock (default 20 min). */
  lockWaitMs?: number;
  /** How often to look at a lock or a job (default 5 s). */
  pollMs?: number;
  /** Fallback job state directory (no systemd), for tests. */
  stateDir?: string;
}

export const DEFAULT_LOCK_WAIT_MS = 20 * 60_000;
const DEFAULT_POLL_MS = 5_000;

/** apt/dnf saying the repositories do not have a package: a retry will not change that. */
const NOT_OFFERED = /Unable to locate package|has no installation candidate|No match for argument/;

const secs = (ms: number) => Math.round(ms / 1000);

/** Waits (bounded) until no process holds a package lock; notes who holds it meanwhile. Debian only. */
export async function waitForPackageLocks(io: StepIo<unknown>, opts: Pick<PackageJobOptions, 'lockWaitMs' | 'pollMs'> = {}): Promise<void> {
  const bound = opts.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS;
  const pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
  const since = Date.now();
  const rounds = Math.min(100_000, Math.ceil(bound / pollMs) + 1);
  let holders = await lockHolders(io.host);
  for (let i = 0; holders.length && i < rounds && Date.now() - since < bound; i++) {
    const who = [...new Set(holders.map(describeHolder))].join(', ');
    const lock = holders[0]!.lock.split('/').pop();
    io.progress(`waiting for the dpkg lock (${lock}) held by ${who}, ${secs(Date.now() - since)} s`);
    await io.sleep(pollMs);
    holders = await lockHolders(io.host);
  }
  if (holders.length) {
    throw new NotConvergedError(`the package lock is still held after ${secs(Date.now() - since)} s`, {
      host: io.host.label,
      step: io.host.step,
      field: 'dpkg lock',
      expected: 'free',
      observed: [...new Set(holders.map((h) => `${h.lock} by ${describeHolder(h)}`))].join('; '),
    });
  }
  if (Date.now() - since > pollMs) io.progress(`the dpkg lock is free after ${secs(Date.now() - since)} s`);
}

/**
 * Makes sure dpkg is clean before underlay runs apt: recovers what an underlay job left half-done, refuses what
 * someone else did. Debian only.
 */
export async function ensureDpkgUsable(io: StepIo<unknown>, opts: PackageJobOptions): Promise<void> {
  const h = await dpkgHealth(io.host);
  if (dpkgClean(h)) return;
  const where = { host: io.host.label, step: io.host.step, field: 'dpkg', expected: 'clean (dpkg --audit empty, no interrupted run)' };
  if (!h.underlayJob) {
    throw new PackageDatabaseError(
      'dpkg on this host was left unclean, and not by an underlay job; not repairing someone else’s package database — ' +
        'check what was running, finish it (`dpkg --configure -a`) and retry',
      { ...where, observed: describeUnclean(h) },
    );
  }
  io.progress(`dpkg was left unclean by underlay’s job ${h.underlayJob}: ${describeUnclean(h)} — recovering (dpkg --configure -a)`);
  // Only reached when dpkg is unclean now: an earlier recovery's "done" is history.
  const key = jobMarkKey('dpkg-recover');
  if ((io.marks[key] as { phase?: string } | null | undefined)?.phase === 'done') io.mark(key, null);
  await runDetached(io, {
    purpose: 'dpkg-recover',
    command: recordedDpkgJob(unitFor(io, 'dpkg-recover'), dpkgRecoverScript()),
    what: 'dpkg --configure -a (finish the interrupted run)',
    timeoutMs: opts.purgeTimeoutMs,
    ...(opts.pollMs ? { pollMs: opts.pollMs } : {}),
    ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
  });
  const after = await dpkgHealth(io.host);
  if (!dpkgClean(after)) {
    throw new PackageDatabaseError('dpkg is still not clean after underlay’s recovery (dpkg --configure -a, apt-get -f install)', {
      ...where,
      observed: describeUnclean(after),
    });
  }
  io.progress('dpkg recovered: clean');
}

async function prepare(io: StepIo<unknown>, family: OsFamily, opts: PackageJobOptions): Promise<void> {
  // dnf waits for its own lock ("Waiting for process with pid …") and rpm has no half-configured state.
  if (family !== 'debian') return;
  await waitForPackageLocks(io, opts);
  await ensureDpkgUsable(io, opts);
}

/**
 * Installs `pkgs` as this step's detached `install` job — or, when this activity already started one (an earlier
 * attempt, a worker that died), waits for that one. With nothing to install, only waits for a pending job.
 */
export async function installDetached(
  io: StepIo<unknown>,
  family: OsFamily,
  pkgs: string[],
  opts: PackageJobOptions & { notOffered?: string },
): Promise<JobOutcome | undefined> {
  const unit = unitFor(io, 'install');
  const job = {
    purpose: 'install',
    command: family === 'debian' ? recordedDpkgJob(unit, installPackages(family, pkgs)) : installPackages(family, pkgs),
    what: `install ${pkgs.join(' ') || '(nothing left)'}`,
    timeoutMs: opts.installTimeoutMs,
    beforeStart: () => prepare(io, family, opts),
    retryable: (out: string) => !NOT_OFFERED.test(out),
    failure: (out: string) =>
      NOT_OFFERED.test(out) ? (opts.notOffered ?? 'the host’s package repositories do not offer the packages') : 'package installation failed',
    ...(opts.pollMs ? { pollMs: opts.pollMs } : {}),
    ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
  };
  if (!pkgs.length) return runDetached(io, job, { reattachOnly: true });
  // A job of this activity that succeeded earlier, yet packages are missing again: install anew.
  const key = jobMarkKey('install');
  if ((io.marks[key] as { phase?: string } | null | undefined)?.phase === 'done') io.mark(key, null);
  return runDetached(io, job);
}

export interface KeptPackage {
  name: string;
  /** Packages present before (or kept themselves) that depend on it. */
  neededBy: string[];
}

export interface RestoreOutcome {
  purged: string[];
  kept: KeptPackage[];
}

/** "libfoo2 (needed by libc6)" */
export function describeKept(kept: KeptPackage[]): string {
  return kept.map((k) => `${k.name} (needed by ${k.neededBy.join(', ')})`).join(', ');
}

/** Waits (bounded) while this step's install job — of any activity — still runs on the host, then frees its name. */
async function waitForInstallJob(io: StepIo<unknown>, opts: PackageJobOptions): Promise<void> {
  const unit = unitFor(io, 'install');
  const pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
  const since = Date.now();
  const rounds = Math.min(100_000, Math.ceil((opts.installTimeoutMs + 2 * 60_000) / pollMs) + 1);
  for (let i = 0; i < rounds; i++) {
    const s = await jobStatus(io.host, unit, opts.stateDir);
    if (s.state !== 'running') {
      // Finished, and its own activity is over (this is its undo): nobody else will read its result.
      if (s.state !== 'not-found' && s.token) {
        io.progress(`releasing the finished install job ${unit} (${s.result ?? s.state})`);
        await releaseJob(io.host, unit, s.token, opts.stateDir);
      }
      return;
    }
    io.progress(`waiting for the install job ${unit} to finish before undoing it (${secs(Date.now() - since)} s)`);
    await io.sleep(pollMs);
  }
  throw new NotConvergedError(`the install job ${unit} is still running`, {
    host: io.host.label,
    step: io.host.step,
    field: unit,
    expected: 'finished',
    observed: 'running',
  });
}

/**
 * Decides what to purge (Debian): everything installed since the snapshot, minus what apt's simulation shows
 * packages present before would lose — found through their Depends/Pre-Depends (and the Provides of the
 * candidates), round by round, until the purge takes nothing else along.
 */
async function planPurge(io: StepIo<unknown>, added: string[], pre: string[]): Promise<{ purge: string[]; kept: KeptPackage[] }> {
  const keep = new Map<string, Set<string>>();
  const where = { host: io.host.label, step: io.host.step, field: 'packages' };
  for (let round = 0; round <= added.length; round++) {
    const purge = added.filter((p) => !keep.has(p));
    const kept = [...keep].map(([name, by]) => ({ name, neededBy: [...by].sort() }));
    if (!purge.length) return { purge, kept };
    const removals = parseSimulatedRemovals(await io.host.read(simulatePurgeScript(purge), { description: 'simulate the purge', timeoutMs: 5 * 60_000 }));
    const collateral = removals.filter((p) => !purge.includes(p));
    if (!collateral.length) return { purge, kept };
    const rel = parsePackageRelations(
      await io.host.read(packageRelationsScript([...collateral, ...purge]), { description: 'read package dependencies', timeoutMs: 60_000 }),
    );
    let grew = false;
    for (const c of collateral) {
      const needs = new Set(rel.get(c)?.needs ?? []);
      for (const p of purge) {
        if (needs.has(p) || rel.get(p)?.provides.some((v) => needs.has(v))) {
          keep.set(p, (keep.get(p) ?? new Set()).add(c));
          grew = true;
        }
      }
    }
    if (!grew) {
      throw new PackageDatabaseError('purging the packages installed since the snapshot would remove packages that were there before; not purging', {
        ...where,
        expected: `only ${purge.length} package(s) added since the snapshot removed`,
        observed: `apt would also remove ${collateral.filter((c) => pre.includes(c)).join(', ') || collateral.join(', ')}`,
      });
    }
  }
  throw new PackageDatabaseError('could not find a purge that keeps the packages present before', where);
}

/**
 * Brings the installed package set back to `pre` (purging what was added), with dpkg clean afterwards. Waits for
 * a still-running install job of this step first, and recovers a dpkg an underlay job left half-done.
 */
export async function restorePackageSet(io: StepIo<unknown>, family: OsFamily, pre: string[], opts: PackageJobOptions): Promise<RestoreOutcome> {
  await waitForInstallJob(io, opts);
  if (family === 'debian') {
    await waitForPackageLocks(io, opts);
    await ensureDpkgUsable(io, opts);
  }
  const current = await installedPackages(io.host, family);
  const added = current.filter((p) => !pre.includes(p));
  if (!added.length) return { purged: [], kept: [] };
  const { purge, kept } = family === 'debian' ? await planPurge(io, added, pre) : { purge: added, kept: [] };
  if (kept.length) io.progress(`keeping ${describeKept(kept)}: packages present before depend on them`);
  if (purge.length) {
    const key = jobMarkKey('purge');
    if ((io.marks[key] as { phase?: string } | null | undefined)?.phase === 'done') io.mark(key, null);
    const unit = unitFor(io, 'purge');
    await runDetached(io, {
      purpose: 'purge',
      command: family === 'debian' ? recordedDpkgJob(unit, purgePackages(family, purge)) : purgePackages(family, purge),
      what: `purge ${purge.length} package(s) installed since the snapshot`,
      timeoutMs: opts.purgeTimeoutMs,
      beforeStart: () => prepare(io, family, opts),
      ...(opts.pollMs ? { pollMs: opts.pollMs } : {}),
      ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
    });
  }
  if (family === 'debian') {
    const h = await dpkgHealth(io.host);
    if (!dpkgClean(h)) {
      throw new PackageDatabaseError('dpkg is not clean after the purge', {
        host: io.host.label,
        step: io.host.step,
        field: 'dpkg',
        expected: 'clean',
        observed: describeUnclean(h),
      });
    }
  }
  return { purged: purge, kept };
}
