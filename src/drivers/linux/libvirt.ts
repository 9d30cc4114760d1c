/** libvirt networks through virsh: macvtap pools (forward mode bridge/vepa/private/passthrough) and OVS bridges. */
import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import { UnexpectedOutputError } from '../../common/errors';
import { sh } from '../shell';
import type { RemoteHost } from '../remote';
import { lines, parseVirshNetInfo } from './parse/text';

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

export async function readNetwork(host: RemoteHost, name: string): Promise<NetState | null> {
  const list = await host.run(sh`command -v virsh >/dev/null || exit 127; virsh -q -c qemu:///system net-list --all --name`, {
    description: 'virsh net-list',
    okExitCodes: [0, 127],
  });
  if (
    list.exitCode === 127 ||
    !lines(list.stdout)
      .map((l) => l.trim())
      .includes(name)
  )
    return null;
  const [xml, info] = await Promise.all([
    host.read(sh`virsh -c qemu:///system net-dumpxml --inactive ${name}`, { description: `virsh net-dumpxml ${name}` }),
    host.read(sh`virsh -c qemu:///system net-info ${name}`, { description: `virsh net-info ${name}` }),
  ]);
  const i = parseVirshNetInfo(info, { host: host.label, step: host.step });
  return { def: parseNetworkXml(xml), xml, active: i.active, autostart: i.autostart };
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
  if (want.active && !now.active) await host.run(sh`virsh -c qemu:///system net-start ${name}`, { description: `virsh net-start ${name}` });
  if (!want.active && now.active) await host.run(sh`virsh -c qemu:///system net-destroy ${name}`, { description: `virsh net-destroy ${name}` });
  if (want.autostart !== now.autostart) {
    await host.run(want.autostart ? sh`virsh -c qemu:///system net-autostart ${name}` : sh`virsh -c qemu:///system net-autostart --disable ${name}`, {
      description: `virsh net-autostart ${name}`,
    });
  }
}

export async function removeNetwork(host: RemoteHost, net: NetState): Promise<void> {
  if (net.active) await host.run(sh`virsh -c qemu:///system net-destroy ${net.def.name}`, { description: `virsh net-destroy ${net.def.name}` });
  await host.run(sh`virsh -c qemu:///system net-undefine ${net.def.name}`, { description: `virsh net-undefine ${net.def.name}` });
}
