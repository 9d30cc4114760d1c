/** OS family detection and package install/purge for Debian-like (apt) and RHEL-like (dnf) hosts. */
import { UnsupportedPlatformError } from '../../common/errors';
import { sh, type Shell } from '../shell';
import type { RemoteHost } from '../remote';
import { osFamily, parseInstalledPackages, parseOsRelease, type OsFamily } from './parse/text';

export async function readOsFamily(host: RemoteHost): Promise<OsFamily> {
  const text = await host.read(sh`cat /etc/os-release`, { description: 'read /etc/os-release', privileged: false });
  const rel = parseOsRelease(text);
  const family = osFamily(rel);
  if (!family) {
    throw new UnsupportedPlatformError('no package driver for this OS', {
      host: host.label,
      step: host.step,
      expected: 'a Debian- or RHEL-like OS',
      observed: `${rel.ID ?? '?'} ${rel.VERSION_ID ?? ''}`.trim(),
    });
  }
  return family;
}

export async function installedPackages(host: RemoteHost, family: OsFamily): Promise<string[]> {
  const script = family === 'debian' ? sh`dpkg-query -W -f='\${Package}\t\${db:Status-Abbrev}\n'` : sh`rpm -qa --qf '%{NAME}\tii\n'`;
  const out = await host.read(script, { description: 'list installed packages', privileged: false });
  return parseInstalledPackages(out, { host: host.label, step: host.step });
}

/** Non-interactive install; waits up to two minutes for another package manager's lock instead of failing. */
export function installPackages(family: OsFamily, pkgs: string[]): Shell {
  return family === 'debian'
    ? sh`DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=120 install --no-install-recommends ${pkgs}`
    : sh`dnf -y -q install ${pkgs}`;
}

/** Removes exactly these packages (and their config on Debian). */
export function purgePackages(family: OsFamily, pkgs: string[]): Shell {
  return family === 'debian'
    ? sh`DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=120 purge ${pkgs}`
    : sh`dnf -y -q remove ${pkgs}`;
}

/** `systemctl is-active` answer for a unit ("active", "inactive", "failed", ...; a missing unit is "inactive"). */
/** Several units' states in one call (`systemctl is-active` answers a line per unit, in order). */
export async function unitStates<U extends string>(host: RemoteHost, units: readonly U[]): Promise<Record<U, string>> {
  const r = await host.run(sh`systemctl is-active ${[...units]}`, {
    description: `systemctl is-active ${units.join(' ')}`,
    okExitCodes: [0, 1, 3, 4],
    privileged: false,
  });
  // No answer (no systemd to ask) reads as inactive; an answer that is not states is refused.
  const states = r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  if ((states.length && states.length !== units.length) || states.some((s) => !/^[a-z-]{1,32}$/.test(s))) {
    throw host.unexpected(`systemctl is-active ${units.join(' ')}`, r.stdout);
  }
  return Object.fromEntries(units.map((u, i) => [u, states[i] ?? 'inactive'])) as Record<U, string>;
}
