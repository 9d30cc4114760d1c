/**
 * Parsing and validation of server specs: shape (zod), cross-field rules, and the no-inline-secret rule.
 *
 * Every problem is reported with the path of the bad field, all at once, so an operator fixes a spec in one
 * pass. Cross-field rules run even when the shape has errors (they tolerate missing pieces).
 */
import { z } from 'zod';
import { InvalidSpecError, printable } from '../common/errors';
import {
  ATTACH_MATRIX,
  HOST_NETWORK_SECTIONS,
  MAX_HUGEPAGE_MIB,
  PLATFORM_MATRIX,
  ServerSpecShape,
  vlanIfName,
  type HostNetworkSection,
  type ServerSpec,
} from './server';

export interface SpecIssue {
  path: string;
  message: string;
}

export type SpecResult = { ok: true; spec: ServerSpec } | { ok: false; issues: SpecIssue[] };

/** How deep a spec may nest (its own deepest field, `attach.vlanPorts[0].name`, is 4 levels down). */
export const MAX_SPEC_DEPTH = 16;
/** Values a spec may hold in all (a large real spec has ≈ 150). */
export const MAX_SPEC_NODES = 50_000;
/** Longest string a spec may hold (URLs and paths are far shorter; their patterns say so). */
export const MAX_STRING_CHARS = 4096;
/** Problems listed at most; the rest are counted in one last issue. */
export const MAX_ISSUES = 100;

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;

/**
 * Formats a path as `a.b[2].c`. A key that is not a plain name (an unknown key may hold anything: a newline,
 * a terminal escape) is shown quoted and escaped, `["a\u000ab"]`, so it cannot forge an output line.
 */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (typeof p === 'string' && PLAIN_KEY.test(p)) out += out ? `.${p}` : p;
    else out += `["${printable(String(p), 64).replace(/"/g, '\\u0022')}"]`;
  }
  return out || '(root)';
}

/** At most `max` names, then how many more: a message never lists thousands of names. */
function listNames(names: Iterable<string>, show: (s: string) => string, max = 8): string {
  const all = [...names];
  if (all.length === 0) return 'none';
  const head = all.slice(0, max).map(show).join(', ');
  return all.length > max ? `${head}, … ${all.length - max} more` : head;
}

/**
 * Size and shape limits checked before anything else walks the input (zod, the inline-secret scan, the
 * cross-field rules): depth, number of values, string length. Iterative, so deep input cannot exhaust the stack.
 */
function structureIssues(raw: unknown): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const stack: Array<{ v: unknown; path: PropertyKey[] }> = [{ v: raw, path: [] }];
  let nodes = 0;
  while (stack.length && issues.length < 20) {
    const { v, path } = stack.pop()!;
    if (++nodes > MAX_SPEC_NODES) {
      issues.push({ path: '(root)', message: `must hold at most ${MAX_SPEC_NODES} values` });
      break;
    }
    if (typeof v === 'string') {
      if (v.length > MAX_STRING_CHARS) issues.push({ path: formatPath(path), message: `must be at most ${MAX_STRING_CHARS} characters` });
      continue;
    }
    if (!v || typeof v !== 'object') continue;
    if (path.length >= MAX_SPEC_DEPTH) {
      issues.push({ path: formatPath(path), message: `must not nest deeper than ${MAX_SPEC_DEPTH} levels` });
      continue;
    }
    if (Array.isArray(v)) v.forEach((x, i) => stack.push({ v: x, path: [...path, i] }));
    else for (const [k, x] of Object.entries(v)) stack.push({ v: x, path: [...path, k] });
  }
  return issues;
}

// Keys that name a credential *reference* are fine; any other secret-looking key holds the secret itself.
const REFERENCE_KEY = /(Env|File)$/;
const SECRET_KEY = /pass(word|wd|phrase)?$|secret|token|api[-_]?key|private[-_]?key|credential[s]?$|^key$/i;

/** Walks the raw input for inline secrets: a secret-looking key with a literal value, or a PEM block. */
function findInlineSecrets(value: unknown, path: PropertyKey[] = [], out: SpecIssue[] = []): SpecIssue[] {
  if (typeof value === 'string') {
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(value)) {
      out.push({ path: formatPath(path), message: 'holds a private key; reference it with privateKeyFile or privateKeyEnv instead' });
    }
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => findInlineSecrets(v, [...path, i], out));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (SECRET_KEY.test(k) && !REFERENCE_KEY.test(k) && (typeof v === 'string' || typeof v === 'number')) {
        out.push({
          path: formatPath([...path, k]),
          message: 'inline secrets are refused: credentials travel by reference (…Env, …File, or agent)',
        });
        continue;
      }
      findInlineSecrets(v, [...path, k], out);
    }
  }
  return out;
}

type Loose = Record<string, unknown>;
const obj = (v: unknown): Loose => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Loose) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function ipv4ToInt(a: string): number | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (!m) return undefined;
  return m.slice(1).reduce((acc, o) => acc * 256 + Number(o), 0);
}

/** An IPv6 address as a 128-bit integer (`::` compression and a dotted IPv4 tail allowed), else undefined. */
function ipv6ToBigInt(a: string): bigint | undefined {
  let text = a;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const v4 = ipv4ToInt(tail[1] ?? '');
    if (v4 === undefined) return undefined;
    text = `${text.slice(0, -(tail[1] ?? '').length)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string | undefined) => (h ? h.split(':') : []);
  const head = groups(halves[0]);
  const rest = groups(halves[1]);
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return undefined;
  const all = [...head, ...Array<string>(halves.length === 1 ? 0 : fill).fill('0'), ...rest];
  let out = 0n;
  for (const g of all) {
    if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return undefined;
    out = (out << 16n) | BigInt(parseInt(g, 16));
  }
  return out;
}

/** An address as (family, 32- or 128-bit integer), or undefined when it is neither. */
function parseIp(a: string): { bits: 32 | 128; value: bigint } | undefined {
  const v4 = ipv4ToInt(a);
  if (v4 !== undefined) return { bits: 32, value: BigInt(v4) };
  const v6 = a.includes(':') ? ipv6ToBigInt(a) : undefined;
  return v6 === undefined ? undefined : { bits: 128, value: v6 };
}

// Cross-field messages name the values they are about. Those values come from the raw input, unchecked, and
// issues end up in logs and Temporal history, which must never carry a secret: a private key pasted into
// nics[0].name used to be echoed back whole in "bond.members[0]: … is not one of the spec's NICs (<the key>, …)".
// Only a value that looks like a plain name or address is shown.
const SHOWABLE = /^[A-Za-z0-9._:/@+-]{1,64}$/;
const plain = (s: string): string => (SHOWABLE.test(s) ? s : '<value not shown>');
const q = (s: string): string => (SHOWABLE.test(s) ? `"${s}"` : '<value not shown>');

/** Rules that relate fields to each other. Written against the raw input so they run alongside shape errors. */
function crossFieldIssues(raw: unknown): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const add = (path: PropertyKey[], message: string) => issues.push({ path: formatPath(path), message });
  const spec = obj(raw);

  const nics = arr(spec.nics).map(obj);
  const nicNames = new Set<string>();
  const macs = new Set<string>();
  nics.forEach((n, i) => {
    const name = str(n.name);
    if (name && nicNames.has(name)) add(['nics', i, 'name'], `duplicate NIC name ${q(name)}`);
    if (name) nicNames.add(name);
    const mac = str(n.mac)?.toLowerCase();
    if (mac && macs.has(mac)) add(['nics', i, 'mac'], `duplicate MAC ${plain(mac)}`);
    if (mac) macs.add(mac);
  });

  const bond = spec.bond === undefined ? undefined : obj(spec.bond);
  const bondName = bond ? (str(bond.name) ?? 'bond0') : undefined;
  const members = new Set<string>();
  if (bond) {
    if (bondName && nicNames.has(bondName)) add(['bond', 'name'], `${q(bondName)} is already a NIC name`);
    arr(bond.members).forEach((m, i) => {
      const name = str(m);
      if (!name) return;
      if (!nicNames.has(name)) add(['bond', 'members', i], `${q(name)} is not one of the spec's NICs (${listNames(nicNames, plain)})`);
      if (members.has(name)) add(['bond', 'members', i], `${q(name)} is listed twice`);
      members.add(name);
    });
  }

  const linkNames = new Set<string>([...nicNames, ...(bondName ? [bondName] : [])]);
  const vlanKeys = new Set<string>();
  arr(spec.vlans).forEach((rv, i) => {
    const v = obj(rv);
    const parent = str(v.parent);
    const id = typeof v.id === 'number' ? v.id : undefined;
    if (parent && !linkNames.has(parent)) {
      add(['vlans', i, 'parent'], `${q(parent)} is neither the bond nor a NIC (${listNames(linkNames, plain)})`);
    }
    if (parent && members.has(parent)) add(['vlans', i, 'parent'], `${q(parent)} is a bond member; tag the bond instead`);
    if (parent && id !== undefined) {
      const key = `${parent}.${id}`;
      const twice = vlanKeys.has(key);
      if (twice) add(['vlans', i, 'id'], `VLAN ${id} is defined twice on ${plain(parent)}`);
      vlanKeys.add(key);
      const ifname = vlanIfName({ id, parent, name: str(v.name) });
      if (ifname.length > 15) add(['vlans', i, 'name'], `interface name ${q(ifname)} is longer than 15 characters; set vlans[${i}].name`);
      // A VLAN interface named like a NIC, the bond or another VLAN (`name: eth1`) used to pass: the host cannot
      // have two links of one name, so the VLAN step would fail late or, worse, reconfigure the other link.
      if (!twice && linkNames.has(ifname)) add(['vlans', i, 'name'], `interface name ${q(ifname)} is already a NIC, the bond or another VLAN`);
      linkNames.add(ifname);
    }
    const address = str(v.address);
    const gateway = str(v.gateway);
    if (address && gateway) {
      // This check used to parse IPv4 only, so an IPv6 gateway outside its subnet — or an IPv6 gateway for an
      // IPv4 address, or the reverse — passed silently. Both families are compared now.
      const [ip, prefixText] = address.split('/');
      const a = parseIp(ip ?? '');
      const g = parseIp(gateway);
      const prefix = Number(prefixText);
      if (a && g && a.bits !== g.bits) {
        add(['vlans', i, 'gateway'], `${plain(gateway)} is IPv${g.bits === 32 ? 4 : 6} but the address ${plain(address)} is IPv${a.bits === 32 ? 4 : 6}`);
      } else if (a && g && Number.isInteger(prefix) && prefix >= 0 && prefix <= a.bits) {
        const width = BigInt(a.bits);
        const mask = ((1n << width) - 1n) ^ ((1n << (width - BigInt(prefix))) - 1n);
        // fe80::/10: an IPv6 link-local gateway (the usual router address) is on-link whatever the prefix.
        const linkLocal = g.bits === 128 && g.value >> 118n === 0x3fan;
        if (!linkLocal && (a.value & mask) !== (g.value & mask)) add(['vlans', i, 'gateway'], `${plain(gateway)} is outside ${plain(address)}`);
        if (a.value === g.value) add(['vlans', i, 'gateway'], `the gateway ${plain(gateway)} is the VLAN's own address`);
      }
    }
  });

  // Management that moves onto the bond: its interface must be the bond or one of the spec's VLANs on it with an
  // address (the address the host is reached at afterwards, unless reachAt says otherwise).
  const move = obj(obj(spec.network).management);
  const moveIf = str(move.interface);
  if (obj(spec.network).management !== undefined && moveIf) {
    const vlans = arr(spec.vlans).map(obj);
    const vlan = vlans.find((v) => {
      const parent = str(v.parent);
      const id = typeof v.id === 'number' ? v.id : undefined;
      return parent && id !== undefined && vlanIfName({ id, parent, name: str(v.name) }) === moveIf;
    });
    if (!bond) add(['network', 'management'], 'management moves onto the bond: the spec needs a bond section');
    else if (moveIf !== bondName && !vlan) {
      add(['network', 'management', 'interface'], `${q(moveIf)} is neither the bond nor a VLAN of the spec (${listNames(linkNames, plain)})`);
    } else if (vlan && str(vlan.parent) !== bondName) {
      add(['network', 'management', 'interface'], `${q(moveIf)} is not on the bond: management moves onto the bond or a VLAN of it`);
    } else if (moveIf === bondName) {
      // The move puts the management address on a VLAN of the bond (its address in the spec); the bond carries none.
      add(['network', 'management', 'interface'], 'the bond carries no address of its own in the spec: move management onto a VLAN of it that has one');
    } else if (vlan && !str(vlan.address) && move.reachAt === undefined) {
      add(['network', 'management', 'interface'], `${q(moveIf)} has no address in the spec: give it one, or set reachAt`);
    }
  }

  const sriov = spec.sriov === undefined ? undefined : obj(spec.sriov);
  const pf = sriov ? str(sriov.pf) : undefined;
  if (pf && !nicNames.has(pf)) add(['sriov', 'pf'], `${q(pf)} is not one of the spec's NICs`);

  const hvKind = str(obj(spec.hypervisor).kind);
  const attach = spec.attach === undefined ? undefined : obj(spec.attach);
  const attachKind = attach ? str(attach.kind) : undefined;
  // Object.hasOwn, not `in`: `in` walks the prototype, so kind "toString" or "constructor" reached
  // ATTACH_MATRIX[kind].includes(...) on a function and validateServerSpec threw a TypeError instead of reporting.
  if (hvKind && attachKind && Object.hasOwn(ATTACH_MATRIX, hvKind)) {
    const allowed: readonly string[] = ATTACH_MATRIX[hvKind as keyof typeof ATTACH_MATRIX];
    if (!allowed.includes(attachKind)) {
      add(['attach', 'kind'], `${q(attachKind)} does not fit hypervisor ${hvKind}; use ${allowed.join(' or ')}`);
    }
  }
  if (hvKind === 'esxi') {
    // The management NIC the kickstart names must be one of the server's NICs.
    const device = obj(obj(obj(spec.hypervisor).kickstart).network).device;
    const name = device === undefined ? 'vmnic0' : str(device);
    if (name && !nicNames.has(name)) {
      add(['hypervisor', 'kickstart', 'network', 'device'], `${q(name)} is not one of the spec's NICs (${[...nicNames].map(plain).join(', ') || 'none'})`);
    }
  }
  if (hvKind && Object.hasOwn(PLATFORM_MATRIX, hvKind)) platformIssues(hvKind as keyof typeof PLATFORM_MATRIX, spec, add);
  if (attach && attachKind) {
    // The link the attachment sits on must be something the spec creates or names.
    const lower = str(attach.device) ?? str(attach.uplink);
    if ((attachKind === 'macvtap' || attachKind === 'ovs' || attachKind === 'bridge') && !lower && !bondName) {
      add(['attach', attachKind === 'macvtap' ? 'device' : 'uplink'], 'no bond in the spec to default to; name the lower device');
    }
    if (lower && !linkNames.has(lower)) add(['attach', attach.device ? 'device' : 'uplink'], `${q(lower)} is not a NIC, the bond or a VLAN of the spec`);
    if (attachKind === 'set') {
      if (bond && (str(bond.mode) ?? '802.3ad') === '802.3ad') {
        add(['bond', 'mode'], 'Switch Embedded Teaming is switch-independent; it cannot run over an 802.3ad (LACP) bond');
      }
      // attach.nics defaults to the bond members; with neither, SET had no NIC to team and still passed.
      if (!bond && attach.nics === undefined) add(['attach', 'nics'], 'no bond in the spec to default to; list the NICs to team');
      arr(attach.nics).forEach((n, i) => {
        const name = str(n);
        if (name && !nicNames.has(name)) add(['attach', 'nics', i], `${q(name)} is not one of the spec's NICs`);
      });
    }
    if (attachKind === 'vds' || attachKind === 'vswitch') {
      // The SET attach checked its NICs, the vds one did not: a typo in uplinks surfaced only after the whole
      // ESXi install, at the last step. The uplinks are physical NICs (vmnicN), so they must be in nics[].
      const seen = new Set<string>();
      arr(attach.uplinks).forEach((n, i) => {
        const name = str(n);
        if (name && !nicNames.has(name)) add(['attach', 'uplinks', i], `${q(name)} is not one of the spec's NICs (${listNames(nicNames, plain)})`);
        // esxcli refuses an uplink added twice, and the failover order (or the proxy switch backing) would name it twice.
        if (name && seen.has(name)) add(['attach', 'uplinks', i], `${q(name)} is listed twice`);
        if (name) seen.add(name);
      });
    }
    if (attachKind === 'vds' && hvKind === 'esxi') {
      // The kickstart puts vmk0 on vSwitch0 with this one NIC. Handing that NIC to the distributed switch without
      // moving vmk0 along strands the host's management: the attach step would refuse it (lockout guard) after the
      // whole install; say it now.
      const mgmtNic = str(obj(obj(obj(spec.hypervisor).kickstart).network).device) ?? 'vmnic0';
      const i = arr(attach.uplinks).findIndex((n) => str(n) === mgmtNic);
      if (i >= 0 && attach.migrateVmk === undefined) {
        add(
          ['attach', 'uplinks', i],
          `${q(mgmtNic)} carries the management vmk0 (hypervisor.kickstart.network.device): set attach.migrateVmk: vmk0 to move it along, or leave the NIC out`,
        );
      }
    }
    if (attachKind === 'ovs' || attachKind === 'bridge') {
      // The bridge is a new link on the host; like the OVS vlanPorts it must not reuse an existing name.
      const field = attachKind === 'ovs' ? 'bridge' : 'name';
      const bridge = str(attach[field]) ?? (attachKind === 'ovs' ? 'br-underlay' : 'xenbr0');
      if (linkNames.has(bridge)) add(['attach', field], `${q(bridge)} clashes with an interface of the spec`);
      linkNames.add(bridge);
    }
    if (attachKind === 'ovs') {
      arr(attach.vlanPorts).forEach((p, i) => {
        const name = str(obj(p).name);
        if (name && linkNames.has(name)) add(['attach', 'vlanPorts', i, 'name'], `${q(name)} clashes with an interface of the spec`);
        // Two internal ports of one name clashed with each other unnoticed.
        if (name) linkNames.add(name);
      });
    }
  }
  if (spec.dpdk !== undefined) dpdkIssues(spec, { hvKind, nicNames, members, bondName, pf, attach, attachKind, linkNames }, add);
  return issues;
}

/** Why a platform has no DPDK section in this build. */
const NO_DPDK: Record<'xen' | 'esxi' | 'hyperv', string> = {
  xen: 'not in the Xen runbook: DPDK in a Xen dom0 needs its hugepages and IOMMU set through Xen (dom0_mem, iommu=) rather than the Linux kernel command line, which this build does not do; use hypervisor.kind kvm',
  esxi: 'not in the ESXi runbook: ESXi’s data path is VMware’s own; there is no DPDK host preparation for it',
  hyperv: 'not in the Hyper-V runbook: Windows has no DPDK host preparation in this build',
};

const HUGEPAGE_MIB = { '2M': 2, '1G': 1024 } as const;

/**
 * The dpdk section against the rest of the spec: its platform (KVM only), its devices (a NIC of the spec that no
 * other step uses, or a PCI address; none twice), and the OVS-DPDK options (an ovs attach to run them on, socket
 * memory that fits the hugepages reserved, port names that clash with nothing).
 */
function dpdkIssues(
  spec: Loose,
  ctx: {
    hvKind: string | undefined;
    nicNames: Set<string>;
    members: Set<string>;
    bondName: string | undefined;
    pf: string | undefined;
    attach: Loose | undefined;
    attachKind: string | undefined;
    linkNames: Set<string>;
  },
  add: (path: PropertyKey[], message: string) => void,
): void {
  const { hvKind, nicNames, members, bondName, pf, attach, attachKind, linkNames } = ctx;
  if (hvKind && Object.hasOwn(PLATFORM_MATRIX, hvKind) && !PLATFORM_MATRIX[hvKind as keyof typeof PLATFORM_MATRIX].dpdk) {
    add(['dpdk'], NO_DPDK[hvKind as keyof typeof NO_DPDK]);
    return;
  }
  const dpdk = obj(spec.dpdk);
  const lower = attach ? (str(attach.device) ?? str(attach.uplink) ?? bondName) : undefined;
  const vlanParents = new Set(
    arr(spec.vlans)
      .map((v) => str(obj(v).parent))
      .filter((x): x is string => !!x),
  );
  const seen = new Set<string>();
  arr(dpdk.devices).forEach((d, i) => {
    const name = str(d);
    if (!name) return;
    const key = name.toLowerCase();
    if (seen.has(key)) add(['dpdk', 'devices', i], `${q(name)} is listed twice`);
    seen.add(key);
    if (/^[0-9a-fA-F]{4}:/.test(name)) return; // a PCI address: checked on the host (it must exist there)
    if (!nicNames.has(name)) add(['dpdk', 'devices', i], `${q(name)} is not one of the spec's NICs (${listNames(nicNames, plain)}) nor a PCI address`);
    else if (members.has(name)) add(['dpdk', 'devices', i], `${q(name)} is a member of the bond: a NIC on vfio-pci leaves the kernel and the bond with it`);
    else if (name === pf) add(['dpdk', 'devices', i], `${q(name)} is the SR-IOV PF (sriov.pf): its VFs need the PF on its kernel driver`);
    else if (name === lower) add(['dpdk', 'devices', i], `${q(name)} is the attach's lower device: it cannot be a kernel link and a DPDK port at once`);
    else if (vlanParents.has(name)) add(['dpdk', 'devices', i], `${q(name)} carries VLANs of the spec: a NIC on vfio-pci has no kernel link to tag`);
    else {
      const n = arr(spec.nics).findIndex((x) => str(obj(x).name) === name);
      if (n >= 0 && obj(arr(spec.nics)[n]).cabled !== false) {
        add(
          ['nics', n, 'cabled'],
          `${q(name)} goes to DPDK (dpdk.devices[${i}]): set cabled: false — on vfio-pci it has no kernel link for the cable check of a re-run or a drift check to read`,
        );
      }
    }
  });

  const hp = obj(dpdk.hugepages);
  const size = str(hp.size) ?? '2M';
  const pageMib = size === '1G' || size === '2M' ? HUGEPAGE_MIB[size] : undefined;
  const perNodeList = arr(hp.perNode).map(obj);
  const nodes = new Set<number>();
  perNodeList.forEach((n, i) => {
    if (typeof n.node !== 'number') return;
    if (nodes.has(n.node)) add(['dpdk', 'hugepages', 'perNode', i, 'node'], `node ${n.node} is listed twice`);
    nodes.add(n.node);
  });
  const total = typeof hp.count === 'number' ? hp.count : perNodeList.reduce((a, n) => a + (typeof n.count === 'number' ? n.count : 0), 0);
  if (pageMib && total * pageMib > MAX_HUGEPAGE_MIB) add(['dpdk', 'hugepages'], `reserves ${total * pageMib} MiB: at most ${MAX_HUGEPAGE_MIB} MiB`);

  if (dpdk.ovs === undefined) return;
  const ovs = obj(dpdk.ovs);
  if (attachKind !== 'ovs') {
    add(['dpdk', 'ovs'], `OVS-DPDK runs on the attach's Open vSwitch bridge: set attach.kind ovs (attach is ${attachKind ? q(attachKind) : 'absent'})`);
  }
  // DPDK takes its socket memory from the hugepages: more than is reserved (on a node) cannot initialize.
  const mem = arr(ovs.socketMemoryMb).map((m) => (typeof m === 'number' ? m : 0));
  if (pageMib && mem.length) {
    if (perNodeList.length) {
      mem.forEach((m, node) => {
        const pages = perNodeList.find((n) => n.node === node);
        const have = (typeof pages?.count === 'number' ? pages.count : 0) * pageMib;
        if (m > have) add(['dpdk', 'ovs', 'socketMemoryMb', node], `${m} MiB on node ${node} but the hugepages reserve ${have} MiB there`);
      });
    } else {
      const sum = mem.reduce((a, b) => a + b, 0);
      if (sum > total * pageMib)
        add(['dpdk', 'ovs', 'socketMemoryMb'], `${sum} MiB in all but the hugepages reserve ${total * pageMib} MiB (${total} × ${size})`);
    }
  }
  // The DPDK ports are named dpdk0, dpdk1… after the devices; those and the vhost-user ports are new OVS ports.
  const names = new Set(linkNames);
  arr(dpdk.devices).forEach((_, i) => {
    const port = `dpdk${i}`;
    if (names.has(port)) add(['dpdk', 'devices', i], `its OVS port ${q(port)} clashes with an interface of the spec`);
    names.add(port);
  });
  arr(ovs.vhostUserPorts).forEach((p, i) => {
    const name = str(obj(p).name);
    if (name && names.has(name)) add(['dpdk', 'ovs', 'vhostUserPorts', i, 'name'], `${q(name)} clashes with an interface or port of the spec`);
    if (name) names.add(name);
  });
}

// Why a host-network section is not in a platform's runbook, and what to use instead (named by field).
const NOT_IN_RUNBOOK: Record<'esxi' | 'hyperv', Record<HostNetworkSection, string>> = {
  esxi: {
    bond: 'not in the ESXi runbook: the distributed switch carries the team and LACP — list the NICs in attach.uplinks and set attach.lacp',
    vlans: 'not in the ESXi runbook: the VLAN is the distributed port group’s — set attach.vlan',
    sriov: 'not in the ESXi runbook: SR-IOV virtual functions are set in the host’s NIC driver, not by underlay',
  },
  hyperv: {
    bond: 'not in the Hyper-V runbook: the SET switch is the team — list its NICs in attach.nics',
    vlans: 'not in the Hyper-V runbook: the host’s VLAN is attach.managementVlan; guest VLANs are set per VM',
    sriov: 'not in the Hyper-V runbook: SR-IOV on Hyper-V is a property of the virtual switch (New-VMSwitch -EnableIov), not configured by this build',
  },
};

/** The platform matrix (PLATFORM_MATRIX): host-network sections, transports, and per-platform attach rules. */
function platformIssues(hv: keyof typeof PLATFORM_MATRIX, spec: Loose, add: (path: PropertyKey[], message: string) => void): void {
  const row = PLATFORM_MATRIX[hv];
  const allowed: readonly string[] = row.sections;
  const present: Record<HostNetworkSection, boolean> = { bond: spec.bond !== undefined, vlans: arr(spec.vlans).length > 0, sriov: spec.sriov !== undefined };
  for (const section of HOST_NETWORK_SECTIONS) {
    if (!present[section] || allowed.includes(section)) continue;
    const why = hv === 'esxi' || hv === 'hyperv' ? NOT_IN_RUNBOOK[hv][section] : `not in the ${hv} runbook`;
    add([section], why);
  }
  // `network` has a default (a parsed spec carries it): only a manager actually chosen is refused.
  const manager = str(obj(spec.network).manager);
  if (obj(spec.network).management !== undefined && !allowed.length) {
    add(['network', 'management'], `not used on ${hv}: moving management onto a bond is a Linux host's runbook`);
  }
  if (manager && manager !== 'auto' && !allowed.length) {
    add(['network', 'manager'], `not used on ${hv}: it says how a Linux host's bond, VLANs and SR-IOV persist, which this platform's runbook does not set up`);
  }
  const hvSpec = obj(spec.hypervisor);
  const transport = str(hvSpec.transport);
  if (transport && (row.refusedTransports as readonly string[]).includes(transport)) {
    add(['hypervisor', 'transport'], `${q(transport)} is not in this build; use ${row.transport.install} (PowerShell over OpenSSH for Windows)`);
  }
  const attach = spec.attach === undefined ? undefined : obj(spec.attach);
  if (hv === 'esxi' && attach && str(attach.kind) === 'vds' && attach.lacp === true && arr(attach.uplinks).length < 2) {
    add(['attach', 'lacp'], 'a LACP LAG needs at least two uplinks (attach.uplinks)');
  }
  if (hv === 'hyperv') {
    // The Hyper-V cable check reads Get-NetAdapter (status, speed, MAC): Windows shows no LLDP neighbours.
    arr(spec.nics).forEach((n, i) => {
      if (obj(n).lldp !== undefined)
        add(
          ['nics', i, 'lldp'],
          'not checked on Hyper-V: Windows has no LLDP neighbour view in this build (the cable check reads status, speed and MAC); remove it',
        );
    });
    if (attach && str(attach.kind) === 'set' && spec.bond !== undefined && attach.nics === undefined) {
      add(['attach', 'nics'], 'list the NICs to team (Hyper-V takes no bond)');
    }
  }
}

export function validateServerSpec(raw: unknown): SpecResult {
  const structural = structureIssues(raw);
  if (structural.length) return { ok: false, issues: structural };
  // De-duplication by Set: the list used to be searched once per issue, quadratic in the number of unknown keys.
  const issues: SpecIssue[] = [];
  const seenPaths = new Set<string>();
  const seen = new Set<string>();
  const add = (i: SpecIssue) => {
    const key = `${i.path}\u0000${i.message}`;
    if (seen.has(key)) return;
    seen.add(key);
    seenPaths.add(i.path);
    issues.push(i);
  };
  for (const i of findInlineSecrets(raw)) add(i);
  const parsed = ServerSpecShape.safeParse(raw);
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      const path = formatPath(i.path);
      // An inline secret also shows up as an unknown key; say it once, the clearer way.
      if (i.code === 'unrecognized_keys') {
        for (const k of i.keys) {
          const p = formatPath([...i.path, k]);
          if (!seenPaths.has(p)) add({ path: p, message: 'unknown field' });
        }
        continue;
      }
      add({ path, message: printable(i.message) });
    }
  }
  for (const c of crossFieldIssues(raw)) add(c);
  if (issues.length || !parsed.success) return { ok: false, issues: capIssues(issues) };
  return { ok: true, spec: parsed.data };
}

function capIssues(issues: SpecIssue[]): SpecIssue[] {
  if (issues.length <= MAX_ISSUES) return issues;
  return [...issues.slice(0, MAX_ISSUES), { path: '(more)', message: `${issues.length - MAX_ISSUES} more problems not listed` }];
}

/** Parses or throws a non-retryable InvalidSpecError listing every bad field. */
export function parseServerSpec(raw: unknown, source = 'spec'): ServerSpec {
  const r = validateServerSpec(raw);
  if (!r.ok) throw new InvalidSpecError(`${source} is invalid`, r.issues);
  return r.spec;
}

/** The JSON Schema of a spec file (input form: defaults are optional). */
export function serverSpecJsonSchema(): unknown {
  return z.toJSONSchema(ServerSpecShape, { io: 'input', target: 'draft-2020-12' });
}
