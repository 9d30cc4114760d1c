/** Linux network observation commands (iproute2, sysfs, lldpd) and their parsed answers. */
import { sh } from '../shell';
import type { RemoteHost } from '../remote';
import { parseIpLink, type Link } from './parse/ip-link';
import { parseIpAddr } from './parse/ip-addr';
import { parseLldpJson0, type LldpNeighbour } from './parse/lldp';
import { parseNicSysfs, type NicSysfs } from './parse/text';
import { LockoutRiskError, UnsupportedPlatformError } from '../../common/errors';
import type { StepName } from '../../steps';

const ctxOf = (host: RemoteHost) => ({ host: host.label, step: host.step });

export async function listLinks(host: RemoteHost): Promise<Map<string, Link>> {
  const out = await host.read(sh`ip -j -d link show`, { description: 'ip -j -d link show', privileged: false });
  return new Map(parseIpLink(out, ctxOf(host)).map((l) => [l.name, l]));
}

export async function listAddresses(host: RemoteHost): Promise<Map<string, string[]>> {
  const out = await host.read(sh`ip -j addr show`, { description: 'ip -j addr show', privileged: false });
  return parseIpAddr(out, ctxOf(host));
}

/** carrier/speed/operstate/address of every interface, one read of sysfs. */
export async function readNicSysfs(host: RemoteHost): Promise<Map<string, NicSysfs>> {
  // Reading carrier or speed of an admin-down link fails with EINVAL: print "-" for those.
  const script = sh`for d in /sys/class/net/*; do n=\${d##*/}; printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$(cat "$d/carrier" 2>/dev/null || echo -)" "$(cat "$d/speed" 2>/dev/null || echo -)" "$(cat "$d/operstate" 2>/dev/null || echo -)" "$(cat "$d/address" 2>/dev/null || echo -)"; done`;
  const out = await host.read(script, { description: 'read /sys/class/net/*/{carrier,speed,operstate,address}', privileged: false });
  return new Map(parseNicSysfs(out, ctxOf(host)).map((n) => [n.name, n]));
}

export async function readLldpNeighbours(host: RemoteHost): Promise<Map<string, LldpNeighbour>> {
  const r = await host.run(sh`command -v lldpctl >/dev/null || exit 127; lldpctl -f json0`, { description: 'lldpctl -f json0', okExitCodes: [0, 127] });
  if (r.exitCode === 127) {
    throw new UnsupportedPlatformError('lldpctl not found: the cable check needs lldpd running on the host', {
      ...ctxOf(host),
      expected: 'lldpd installed and running',
    });
  }
  return new Map(parseLldpJson0(r.stdout, ctxOf(host)).map((n) => [n.interface, n]));
}

/**
 * The interface carrying this SSH session, from the session's own SSH_CONNECTION (server address = field 3).
 * Changes to it could cut us off; steps refuse them (lockout guard). undefined when not determinable.
 */
export async function managementInterface(host: RemoteHost, addrs: Map<string, string[]>): Promise<string | undefined> {
  // sudo resets the environment, so read SSH_CONNECTION as the login user.
  const out = (await host.read(sh`printf '%s\n' "$SSH_CONNECTION"`, { description: 'read SSH_CONNECTION', privileged: false })).trim();
  const local = out.split(/\s+/)[2];
  if (!local) return undefined;
  for (const [ifname, list] of addrs) if (list.some((a) => a.split('/')[0] === local)) return ifname;
  return undefined;
}

/**
 * The interface carrying this SSH session, or a LockoutRiskError when it cannot be told: a step that may cut the
 * session fails closed rather than guess (an unknown management interface used to let the change through).
 */
export async function requireManagementInterface(host: RemoteHost, step: StepName, field: string): Promise<string> {
  const mgmt = await managementInterface(host, await listAddresses(host));
  if (!mgmt) {
    throw new LockoutRiskError(
      'cannot tell which interface carries the management session (its address is on no interface); refusing a change that could cut it',
      {
        host: host.label,
        step,
        field,
        expected: 'the SSH session’s local address on one of the host’s interfaces',
        observed: 'none: NAT in between, or a session through a proxy',
      },
    );
  }
  return mgmt;
}
