/** libvirt networks through virsh: macvtap pools (forward mode bridge/vepa/private/passthrough) and OVS bridges. */
import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import { UnexpectedOutputError } from '../../common/errors';
import { join, sh, type Shell } from '../shell';
import type { RemoteHost } from '../remote';
import { parseVirshNetInfo } from './parse/text';

/** The parts of a network definition underlay manages (libvirt adds uuid/mac of its own; those are ignored). */
export interface NetDef {
  name: string;
  forwardMode: string | null;
  interfaces: string[];
  bridge: string | null;
  virtualport: string | null;
}

export interface NetState {
  def: NetDef;
  /** The full XML as libvirt holds it, to restore a network exactly. */
  xml: string;
  active: boolean;
  autostart: boolean;
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', isArray: (name) => name === 'interface' });

export function parseNetworkXml(xml: string): NetDef {
  let doc: { network?: Record<string, unknown> };
  try {
    doc = parser.parse(xml) as typeof doc;
  } catch {
    throw new UnexpectedOutputError('virsh net-dumpxml: not XML', { observed: xml.slice(0, 200) });
  }
  const net = doc.network;
  if (!net || typeof net.name !== 'string') throw new UnexpectedOutputError('virsh net-dumpxml: no <network><name>', { observed: xml.slice(0, 200) });
  const fwd = (net.forward ?? {}) as Record<string, unknown>;
  const ifaces = (fwd.interface ?? []) as Array<Record<string, string>>;
  const attr = (o: unknown, k: string) => (o && typeof o === 'object' ? ((o as Record<string, string>)[k] ?? null) : null);
  return {
    name: net.name,
    forwardMode: attr(net.forward, '@mode'),
    interfaces: ifaces
      .map((i) => i['@dev'] ?? '')
      .filter(Boolean)
      .sort(),
    bridge: attr(net.bridge, '@name'),
    virtualport: attr(net.virtualport, '@type'),
  };
}

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@', format: true, suppressEmptyNode: true });

/** Network XML for a definition; the builder escapes every value. */
export function networkXml(def: NetDef): string {
  const network: Record<string, unknown> = { name: def.name };
  if (def.forwardMode)
    network.forward = { '@mode': def.forwardMode, ...(def.interfaces.length ? { interface: def.interfaces.map((dev) => ({ '@dev': dev })) } : {}) };
  if (def.bridge) network.bridge = { '@name': def.bridge };
  if (def.virtualport) network.virtualport = { '@type': def.virtualport };
  return builder.build({ network }) as string;
}

/** Separates net-info's answer from net-dumpxml's in readNetworkScript's output. */
const NET_READ_SEP = '@@underlay:net-dumpxml@@';

/**
 * One command that reads a network: `absent` when virsh lists no network of that name, else net-info, a separator
 * line and the inactive XML. Exit 127: no virsh; a failing net-list (libvirtd down) fails the command — never
 * "absent". One SSH round trip where three were (each costs a session and a shell on the host).
 */
export function readNetworkScript(name: string) {
  const virsh = sh`virsh -c qemu:///system`;
  return sh`command -v virsh >/dev/null || exit 127; l=$(${virsh} -q net-list --all --name) || exit 3; printf '%s\n' "$l" | sed 's/^ *//; s/ *$//' | grep -qxF -- ${name} || { echo absent; exit 0; }; ${virsh} net-info ${name} && echo ${NET_READ_SEP} && ${virsh} net-dumpxml --inactive ${name}`;
}

/** readNetworkScript's answer: null when absent, else net-info's and net-dumpxml's parts; undefined when malformed. */
export function splitNetworkRead(stdout: string): { info: string; xml: string } | null | undefined {
  if (stdout.trim() === 'absent') return null;
  const at = stdout.indexOf(`\n${NET_READ_SEP}\n`);
  if (at < 0) return undefined;
  return { info: stdout.slice(0, at + 1), xml: stdout.slice(at + NET_READ_SEP.length + 2) };
}

export async function readNetwork(host: RemoteHost, name: string): Promise<NetState | null> {
  const r = await host.run(readNetworkScript(name), { description: `virsh net-info and net-dumpxml ${name}`, okExitCodes: [0, 127] });
  if (r.exitCode === 127) return null;
  const parts = splitNetworkRead(r.stdout);
  if (parts === null) return null;
  if (!parts) throw host.unexpected(`virsh net-info and net-dumpxml ${name}`, r.stdout);
  const i = parseVirshNetInfo(parts.info, { host: host.label, step: host.step });
  return { def: parseNetworkXml(parts.xml), xml: parts.xml, active: i.active, autostart: i.autostart };
}

/** Defines (or redefines) a persistent network from XML passed on stdin — no temp file content in argv. */
export async function defineNetwork(host: RemoteHost, xml: string, name: string): Promise<void> {
  await host.run(sh`f=$(mktemp) && cat > "$f" && virsh -c qemu:///system net-define "$f"; rc=$?; rm -f "$f"; exit $rc`, {
    description: `virsh net-define ${name}`,
    stdin: xml,
    retryable: false,
  });
}

export async function setNetworkRunning(
  host: RemoteHost,
  name: string,
  want: { active: boolean; autostart: boolean },
  now: { active: boolean; autostart: boolean },
): Promise<void> {
  const verbs: Array<[string, Shell]> = [
    ...(want.active && !now.active ? [['net-start', sh`net-start`] as [string, Shell]] : []),
    ...(!want.active && now.active ? [['net-destroy', sh`net-destroy`] as [string, Shell]] : []),
    ...(want.autostart !== now.autostart
      ? [
          want.autostart
            ? (['net-autostart', sh`net-autostart`] as [string, Shell])
            : (['net-autostart --disable', sh`net-autostart --disable`] as [string, Shell]),
        ]
      : []),
  ];
  if (!verbs.length) return;
  // One round trip: start (or stop) and the autostart flag together, the second only once the first succeeded.
  await host.run(
    join(
      '&&',
      verbs.map(([, v]) => sh`virsh -c qemu:///system ${v} ${name}`),
    ),
    { description: `virsh ${verbs.map(([l]) => l).join(', ')} ${name}` },
  );
}

export async function removeNetwork(host: RemoteHost, net: NetState): Promise<void> {
  if (net.active) await host.run(sh`virsh -c qemu:///system net-destroy ${net.def.name}`, { description: `virsh net-destroy ${net.def.name}` });
  await host.run(sh`virsh -c qemu:///system net-undefine ${net.def.name}`, { description: `virsh net-undefine ${net.def.name}` });
}
