/** Parsers for line-oriented outputs: sysfs listings, dpkg-query/rpm, os-release, virsh net-info. */
import { UnexpectedOutputError, type ErrorContext } from '../../../common/errors';

export interface NicSysfs {
  name: string;
  /** null when the kernel refuses to report (interface admin-down gives EINVAL). */
  carrier: boolean | null;
  /** Mb/s; null when unknown (-1, or unreadable while down). */
  speedMbps: number | null;
  operstate: string;
  mac: string;
}

/** Lines `name<TAB>carrier<TAB>speed<TAB>operstate<TAB>address`, unreadable values as `-`. */
export function parseNicSysfs(text: string, ctx: ErrorContext = {}): NicSysfs[] {
  return lines(text).map((line) => {
    const f = line.split('\t');
    if (f.length !== 5) throw new UnexpectedOutputError('sysfs NIC listing: expected 5 tab-separated fields', { ...ctx, observed: line });
    const [name, carrier, speed, operstate, mac] = f as [string, string, string, string, string];
    const speedN = Number(speed);
    return {
      name,
      carrier: carrier === '1' ? true : carrier === '0' ? false : null,
      speedMbps: speed !== '-' && Number.isInteger(speedN) && speedN > 0 ? speedN : null,
      operstate,
      mac: mac.toLowerCase(),
    };
  });
}

/** `dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\n'` or `rpm -qa --qf '%{NAME}\tii \n'` → installed names. */
export function parseInstalledPackages(text: string, ctx: ErrorContext = {}): string[] {
  const out = new Set<string>();
  for (const line of lines(text)) {
    const [name, status] = line.split('\t');
    if (!name || status === undefined) throw new UnexpectedOutputError('package listing: expected "name<TAB>status"', { ...ctx, observed: line });
    // ${db:Status-Abbrev}: desired action, status, error flag — "ii " installed, "hi " held, "rc " removed with
    // config left, "pn " purged. A package half-way (unpacked "iU", half-configured "iF", half-installed "iH",
    // triggers pending "it" / awaited "iW" — what an interrupted dpkg leaves) is on the host: it counts, so a
    // pre-existing package whose triggers are pending does not look "missing".
    // ${Status}: "install ok installed", "hold ok installed", "deinstall ok config-files", "install ok unpacked".
    const present = status.includes(' ok ') ? !/ (not-installed|config-files)$/.test(status.trim()) : /^.[iUFHWt]/.test(status);
    if (present) out.add(name.split(':')[0] ?? name);
  }
  return [...out].sort();
}

/** /etc/os-release → its key/value pairs, unquoted. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines(text)) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    out[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
  }
  return out;
}

export type OsFamily = 'debian' | 'rhel';

export function osFamily(osRelease: Record<string, string>): OsFamily | undefined {
  const ids = [osRelease.ID, ...(osRelease.ID_LIKE ?? '').split(/\s+/)].filter(Boolean);
  if (ids.some((i) => i === 'debian' || i === 'ubuntu')) return 'debian';
  if (ids.some((i) => ['rhel', 'fedora', 'centos', 'rocky', 'almalinux'].includes(i!))) return 'rhel';
  return undefined;
}

/** `virsh net-info NAME` → {active, autostart, persistent}. */
export function parseVirshNetInfo(text: string, ctx: ErrorContext = {}): { active: boolean; autostart: boolean; persistent: boolean } {
  const kv = new Map<string, string>();
  for (const line of lines(text)) {
    const m = /^([A-Za-z ]+):\s+(.*)$/.exec(line);
    if (m) kv.set(m[1]!.trim().toLowerCase(), m[2]!.trim().toLowerCase());
  }
  const yes = (k: string) => {
    const v = kv.get(k);
    if (v === undefined) throw new UnexpectedOutputError(`virsh net-info: no "${k}" line`, { ...ctx, observed: text.slice(0, 200) });
    return v === 'yes';
  };
  return { active: yes('active'), autostart: yes('autostart'), persistent: yes('persistent') };
}

export function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '');
}

/**
 * /proc/net/bonding/<bond> → members whose actor or partner churn state is "churned" (LACP could not agree
 * within the churn detection time). "monitoring" is normal for the first ~60 s after a change; "none" after.
 */
export function parseChurnedMembers(text: string): string[] {
  const out: string[] = [];
  let member = '';
  for (const line of lines(text)) {
    const slave = /^Slave Interface:\s*(\S+)/.exec(line);
    if (slave) member = slave[1]!;
    const churn = /^(Actor|Partner) Churn State:\s*(\S+)/.exec(line);
    if (churn && churn[2] === 'churned' && member) out.push(`${member} ${churn[1]!.toLowerCase()} churned`);
  }
  return out;
}
