/**
 * Least privilege for a non-root login: the ONE list of commands underlay runs as root, from which both the
 * elevation shims (aliases at the top of every privileged script of a non-root login) and the sudoers fragment
 * (deploy/sudoers/underlay, `underlay sudoers`) are derived.
 *
 * A privileged script of a non-root login runs as the login user; each listed command in it is a shell alias
 * `alias ip='/usr/bin/sudo -n /usr/sbin/ip'`, defined only when the file exists (`-e`, not `-x`: Debian's lldpcli
 * is executable by group adm only), so `command -v` still tells an absent tool. An alias, not a function: dash
 * refuses function names with '-' such as `systemd-run`. The shims come on lines of their own before the script:
 * sh parses, and so expands aliases in, each line after the lines before it ran. Everything else in the script —
 * tests, `cat` of /sys and /proc, `printf` — runs unprivileged, and writes to root-owned files go through the
 * elevated writer `tee` (never a shell `>` redirection). `command <name>` runs the login's own, unelevated.
 * Observations that need no root at all run with `privileged: false` and get no shims.
 *
 * Paths are Debian 12's (merged /usr); sudo matches a command by the file it resolves to, so /sbin/ip and
 * /usr/sbin/ip are the same entry.
 */
import { Shell } from './shell';

export type ElevatedGroup = 'network' | 'files' | 'packages' | 'services' | 'virtualization' | 'xen';

export interface ElevatedCommand {
  /** The name drivers call it by. */
  name: string;
  /** Absolute path, as sudoers needs it. */
  path: string;
  group: ElevatedGroup;
  /** What underlay uses it for. */
  why: string;
  /**
   * True when the command alone lets its caller act as root — read or write any file, or run any program: `ip
   * netns exec`, `modprobe -C`, `ifup -i`, a pager's shell escape (`systemctl`, `journalctl`), a job unit.
   */
  rootEquivalent: boolean;
}

export const ELEVATED_COMMANDS: readonly ElevatedCommand[] = [
  { name: 'ip', path: '/usr/sbin/ip', group: 'network', why: 'links, bonds, VLANs, addresses (cable, bond, vlan)', rootEquivalent: true },
  { name: 'modprobe', path: '/usr/sbin/modprobe', group: 'network', why: 'bonding, 8021q, vfio-pci, kvm modules', rootEquivalent: true },
  { name: 'udevadm', path: '/usr/bin/udevadm', group: 'network', why: 'reload the SR-IOV udev rule', rootEquivalent: false },
  { name: 'lldpctl', path: '/usr/sbin/lldpctl', group: 'network', why: "read LLDP neighbours (lldpd's socket is root/_lldpd only)", rootEquivalent: false },
  { name: 'networkctl', path: '/usr/bin/networkctl', group: 'network', why: 'systemd-networkd: reload, reconfigure', rootEquivalent: false },
  { name: 'nmcli', path: '/usr/bin/nmcli', group: 'network', why: 'NetworkManager: reload, connection up/down', rootEquivalent: false },
  { name: 'ifup', path: '/usr/sbin/ifup', group: 'network', why: 'ifupdown: bring a stanza up', rootEquivalent: true },
  { name: 'ifdown', path: '/usr/sbin/ifdown', group: 'network', why: 'ifupdown: bring a stanza down', rootEquivalent: true },
  { name: 'ifquery', path: '/usr/sbin/ifquery', group: 'network', why: "ifupdown: read its state (/run/network is root's)", rootEquivalent: false },
  {
    name: 'tee',
    path: '/usr/bin/tee',
    group: 'files',
    why: 'the one writer: sysfs attributes, configuration files (a temporary file, then mv)',
    rootEquivalent: true,
  },
  { name: 'mkdir', path: '/usr/bin/mkdir', group: 'files', why: 'configuration directories, the backup store', rootEquivalent: false },
  { name: 'cp', path: '/usr/bin/cp', group: 'files', why: 'back up a file before replacing it; restore it', rootEquivalent: true },
  { name: 'mv', path: '/usr/bin/mv', group: 'files', why: 'atomic replace of a configuration file', rootEquivalent: true },
  { name: 'rm', path: '/usr/bin/rm', group: 'files', why: 'remove a file underlay wrote', rootEquivalent: true },
  { name: 'chmod', path: '/usr/bin/chmod', group: 'files', why: 'the mode of a written file', rootEquivalent: true },
  {
    name: 'sha256sum',
    path: '/usr/bin/sha256sum',
    group: 'files',
    why: 'hash configuration files and backups (NetworkManager keyfiles are 0600)',
    rootEquivalent: false,
  },
  { name: 'head', path: '/usr/bin/head', group: 'files', why: 'read a root-only configuration file, bounded', rootEquivalent: true },
  { name: 'systemctl', path: '/usr/bin/systemctl', group: 'services', why: 'libvirtd, release a finished job unit', rootEquivalent: true },
  {
    name: 'systemd-run',
    path: '/usr/bin/systemd-run',
    group: 'services',
    why: 'detached jobs (package installs, purges) and the reboot timer',
    rootEquivalent: true,
  },
  { name: 'journalctl', path: '/usr/bin/journalctl', group: 'services', why: "read a job's output", rootEquivalent: true },
  { name: 'apt-get', path: '/usr/bin/apt-get', group: 'packages', why: 'simulate a purge (installs run in a job)', rootEquivalent: true },
  { name: 'dnf', path: '/usr/bin/dnf', group: 'packages', why: 'RHEL-family installs', rootEquivalent: true },
  { name: 'virsh', path: '/usr/bin/virsh', group: 'virtualization', why: 'libvirt networks (qemu:///system)', rootEquivalent: true },
  { name: 'ovs-vsctl', path: '/usr/bin/ovs-vsctl', group: 'virtualization', why: 'Open vSwitch bridge and ports', rootEquivalent: false },
  { name: 'update-grub', path: '/usr/sbin/update-grub', group: 'xen', why: 'Xen: regenerate grub.cfg', rootEquivalent: false },
  { name: 'grub-editenv', path: '/usr/bin/grub-editenv', group: 'xen', why: "Xen: read grubenv's next-boot entry", rootEquivalent: false },
  { name: 'xl', path: '/usr/sbin/xl', group: 'xen', why: 'Xen: xl info', rootEquivalent: true },
];

export const SUDO = '/usr/bin/sudo';
/** Variables sudo keeps for apt-get (it resets the environment otherwise). */
const APT_ENV_KEEP = 'DEBIAN_FRONTEND';
/** The login the shipped fragment names; `underlay sudoers --user` writes another. */
export const DEFAULT_SUDO_USER = 'underlay';
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;

/**
 * Aliases that elevate exactly the listed commands, one line each; prepended to a privileged script of a
 * non-root login. Built from the constants above, never from input. A command reached through another program
 * (`timeout 10 lldpctl`, `xargs`, `find -exec`) is not in command position and is not elevated.
 */
export function elevationShims(): Shell {
  return new Shell(ELEVATED_COMMANDS.map((c) => `if [ -e ${safe(c.path)} ]; then alias ${safe(c.name)}='${SUDO} -n ${safe(c.path)}'; fi`).join('\n') + '\n');
}

function safe(word: string): string {
  if (!/^[a-z/][a-z0-9/_-]*$/.test(word)) throw new Error(`not a plain command name or path: ${word}`);
  return word;
}

const ALIAS: Record<ElevatedGroup, string> = {
  network: 'UNDERLAY_NETWORK',
  files: 'UNDERLAY_FILES',
  packages: 'UNDERLAY_PACKAGES',
  services: 'UNDERLAY_SERVICES',
  virtualization: 'UNDERLAY_VIRT',
  xen: 'UNDERLAY_XEN',
};

/** The sudoers fragment for login `user`: the listed commands, as root, without a password, and nothing else. */
export function sudoersFragment(user = DEFAULT_SUDO_USER): string {
  if (!USER_RE.test(user)) throw new Error(`not a login name for sudoers: ${JSON.stringify(user)} (lower-case letters, digits, _ and -; at most 32)`);
  const groups = [...new Set(ELEVATED_COMMANDS.map((c) => c.group))];
  const out = [
    '# underlay: the commands a non-root underlay login runs as root — generated from src/drivers/elevate.ts',
    '# (`underlay sudoers --user NAME`); do not edit by hand. Install: visudo -cf FILE && install -m 0440 FILE /etc/sudoers.d/underlay',
    '# Each command runs as `sudo -n <path> args…` from a script that otherwise runs as the login user.',
    '# Marked (root-equivalent): the command alone can read or write any file or run any program as root.',
    '# This fragment makes root use auditable (one auth-log line per command) and gives no shell; it does not',
    '# contain a compromised worker. Read docs/least-privilege.md.',
    '',
  ];
  for (const g of groups) {
    const cmds = ELEVATED_COMMANDS.filter((c) => c.group === g);
    for (const c of cmds) out.push(`#   ${c.path.padEnd(22)} ${c.why}${c.rootEquivalent ? ' (root-equivalent)' : ''}`);
    out.push(`Cmnd_Alias ${ALIAS[g]} = ${cmds.map((c) => c.path).join(', ')}`, '');
  }
  const apt = ELEVATED_COMMANDS.find((c) => c.name === 'apt-get')!;
  out.push(`Defaults!${apt.path} env_keep += "${APT_ENV_KEEP}"`);
  out.push(`${user} ALL=(root) NOPASSWD: ${groups.map((g) => ALIAS[g]).join(', ')}`, '');
  return out.join('\n');
}
