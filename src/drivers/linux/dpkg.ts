/**
 * The Debian package database as underlay sees it before and after touching it: who holds its locks (read from
 * /proc/locks, so no extra tool is needed on the host), whether dpkg was interrupted or left packages
 * half-done, whether an underlay job is what interrupted it (a record the job keeps on the host while dpkg is
 * not clean), and what a purge would take with it (apt's simulation) — so a compensation never removes a package
 * that was there before.
 */
import { sh, type Shell } from '../shell';
import type { RemoteHost } from '../remote';

/** apt's and dpkg's lock files, in the order apt takes them. */
export const DPKG_LOCKS = ['/var/lib/dpkg/lock-frontend', '/var/lib/dpkg/lock', '/var/cache/apt/archives/lock', '/var/lib/apt/lists/lock'] as const;

/**
 * Written by every underlay dpkg job when it starts and removed when it ends with dpkg clean: present while dpkg
 * is not clean means an underlay job left it so (killed, host rebooted, failed half-way). Survives reboots.
 */
export const DPKG_JOB_RECORD = '/var/lib/underlay/dpkg-job';

export interface LockHolder {
  lock: string;
  /** -1 for an open-file-description lock (no owning pid). */
  pid: number;
  /** /proc/<pid>/comm (15 characters at most, e.g. `unattended-upgr`). */
  command: string;
  /** The systemd unit of the process (`apt-daily-upgrade.service`), when there is one. */
  unit?: string;
}

/**
 * One line per holder of a package lock: `lock<TAB>pid<TAB>comm<TAB>unit`. /proc/locks names a lock's file as
 * `MAJOR:MINOR:INODE` (hex device numbers) of the file system's device, matched against stat's device number
 * (Linux's dev_t encoding). Where the two differ (btrfs subvolumes) no holder is found, and apt's own
 * `DPkg::Lock::Timeout` is what waits.
 */
export function lockHoldersScript(): Shell {
  return sh`for f in ${[...DPKG_LOCKS]}; do
  [ -e "$f" ] || continue
  id=$(stat -L -c '%d %i' "$f" 2>/dev/null) || continue
  for pid in $(awk -v id="$id" 'BEGIN { split(id, w, " "); d = w[1]; key = sprintf("%02x:%02x:%s", int(d / 256) % 4096, d % 256 + int(d / 1048576) * 256, w[2]) }
      /->/ { next }
      $6 == key { print $5 }' /proc/locks | sort -u); do
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')
    unit=$(sed -n 's#^.*/\\([^/]*\\.\\(service\\|scope\\)\\)$#\\1#p' "/proc/$pid/cgroup" 2>/dev/null | head -n 1)
    printf '%s\\t%s\\t%s\\t%s\\n' "$f" "$pid" "$comm" "$unit"
  done
done; true`;
}

export function parseLockHolders(text: string): LockHolder[] {
  const out: LockHolder[] = [];
  for (const line of text.split('\n')) {
    const [lock, pid, command, unit] = line.split('\t');
    if (!lock || pid === undefined || !/^-?\d+$/.test(pid)) continue;
    out.push({ lock, pid: Number(pid), command: command || '?', ...(unit ? { unit } : {}) });
  }
  return out;
}

export async function lockHolders(host: RemoteHost): Promise<LockHolder[]> {
  return parseLockHolders(await host.read(lockHoldersScript(), { description: 'read the package lock holders', timeoutMs: 30_000 }));
}

/** "apt-get (pid 812, apt-daily-upgrade.service)". */
export function describeHolder(h: LockHolder): string {
  return `${h.command} (${h.pid < 0 ? 'no pid: an open-file lock' : `pid ${h.pid}`}${h.unit ? `, ${h.unit}` : ''})`;
}

export interface DpkgHealth {
  /** dpkg's journal (/var/lib/dpkg/updates) holds entries: dpkg was interrupted (apt: "dpkg was interrupted"). */
  interrupted: boolean;
  /** Packages half-installed, unpacked, half-configured, awaiting or pending triggers, or needing reinstallation. */
  unclean: Array<{ name: string; status: string }>;
  /** The DPKG_JOB_RECORD's content (the unit of the underlay job that left dpkg unclean), when present. */
  underlayJob?: string;
}

export function dpkgClean(h: DpkgHealth): boolean {
  return !h.interrupted && h.unclean.length === 0;
}

const STATUS_WORDS: Record<string, string> = {
  H: 'half-installed',
  U: 'unpacked',
  F: 'half-configured',
  W: 'triggers-awaited',
  t: 'triggers-pending',
};

/** "libvirt0 (half-configured), qemu-utils (unpacked)" — at most `max` named. */
export function describeUnclean(h: DpkgHealth, max = 8): string {
  const named = h.unclean.slice(0, max).map((p) => `${p.name} (${STATUS_WORDS[p.status[1] ?? ''] ?? (p.status[2] === 'R' ? 'reinst-required' : p.status)})`);
  const more = h.unclean.length > max ? `, and ${h.unclean.length - max} more` : '';
  const parts = [...(h.interrupted ? ['dpkg was interrupted (entries in /var/lib/dpkg/updates)'] : []), ...(named.length ? [named.join(', ') + more] : [])];
  return parts.join('; ');
}

export function dpkgHealthScript(): Shell {
  return sh`echo "updates=$(ls -A /var/lib/dpkg/updates 2>/dev/null | wc -l)"
if [ -f ${DPKG_JOB_RECORD} ]; then echo "record=$(head -c 200 ${DPKG_JOB_RECORD} | tr -d '\\n')"; fi
dpkg-query -W -f='\${Package}\\t\${db:Status-Abbrev}\\n' | awk -F '\\t' '{ s = substr($2, 2, 1); e = substr($2, 3, 1); if (s ~ /[HUFWt]/ || e == "R") print "unclean\\t" $1 "\\t" $2 }'`;
}

export function parseDpkgHealth(text: string): DpkgHealth {
  const h: DpkgHealth = { interrupted: false, unclean: [] };
  for (const line of text.split('\n')) {
    if (line.startsWith('updates=')) h.interrupted = Number(line.slice(8).trim()) > 0;
    else if (line.startsWith('record=')) h.underlayJob = line.slice(7).trim() || 'an underlay job';
    else if (line.startsWith('unclean\t')) {
      const [, name, status] = line.split('\t');
      if (name) h.unclean.push({ name: name.split(':')[0] ?? name, status: (status ?? '').trimEnd() });
    }
  }
  return h;
}

export async function dpkgHealth(host: RemoteHost): Promise<DpkgHealth> {
  return parseDpkgHealth(await host.read(dpkgHealthScript(), { description: 'check the dpkg database', timeoutMs: 60_000 }));
}

/**
 * Wraps a dpkg-touching job script: records the job on the host before it starts, and removes the record when
 * it ends with dpkg clean — whatever its exit status — so the record outlives only a job that left dpkg unclean.
 */
export function recordedDpkgJob(unit: string, script: Shell): Shell {
  return sh`mkdir -p /var/lib/underlay && printf '%s\\n' ${unit} >${DPKG_JOB_RECORD}
${script}
rc=$?
if [ -z "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] && [ -z "$(dpkg --audit 2>/dev/null)" ]; then rm -f ${DPKG_JOB_RECORD}; fi
exit $rc`;
}

/** Finishes what an interrupted dpkg run left: configure everything unpacked, then let apt fix what is missing. */
export function dpkgRecoverScript(): Shell {
  return sh`export DEBIAN_FRONTEND=noninteractive
dpkg --configure -a
apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=60 -f install --no-install-recommends`;
}

/** apt's simulation of a purge: the packages it would remove (asked for, and taken along). */
export function simulatePurgeScript(pkgs: string[]): Shell {
  return sh`apt-get -s -q -o Debug::NoLocking=1 purge ${pkgs}`;
}

export function parseSimulatedRemovals(text: string): string[] {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^(?:Purg|Remv) (\S+)/.exec(line);
    if (m) out.add(m[1]!.split(':')[0]!);
  }
  return [...out].sort();
}

/** Depends, Pre-Depends and Provides of installed packages: `name<TAB>depends<TAB>provides`. */
export function packageRelationsScript(pkgs: string[]): Shell {
  return sh`dpkg-query -W -f='\${Package}\\t\${Depends}, \${Pre-Depends}\\t\${Provides}\\n' ${pkgs} 2>/dev/null; true`;
}

export interface PackageRelations {
  /** Every package name a dependency mentions (each alternative), without versions or architectures. */
  needs: string[];
  provides: string[];
}

function relationNames(field: string): string[] {
  return field
    .split(/[,|]/)
    .map((d) => d.trim().split(/[\s(]/)[0]?.split(':')[0] ?? '')
    .filter(Boolean);
}

export function parsePackageRelations(text: string): Map<string, PackageRelations> {
  const out = new Map<string, PackageRelations>();
  for (const line of text.split('\n')) {
    const [name, depends = '', provides = ''] = line.split('\t');
    if (!name) continue;
    out.set(name.split(':')[0]!, { needs: relationNames(depends), provides: relationNames(provides) });
  }
  return out;
}
