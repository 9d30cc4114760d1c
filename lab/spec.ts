/**
 * The server spec of a lab VM: its forwarded SSH port, the host key it printed at first boot (pinned), the
 * lab's key as a credential reference, its MACs and cabling (serverK eth1/eth2 → leaf-01 swp(2K-1)/swp(2K)),
 * the switch's VLANs and gateways, and the netdevsim PF. `lab/lab spec <vm>` prints it as YAML.
 * The VMs come from `lab.env` (lab/up.sh): NAME ROLE SSH-PORT IMAGE VIA NEW-PORT, one line per VM.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { sha256Fingerprint } from '../src/transports/fingerprint';
import { parseServerSpec } from '../src/spec/validate';
import type { ServerSpec, ServerSpecInput } from '../src/spec/server';

/** The lab directory, read at call time: a test file may choose its own lab (and ports) before it boots one. */
export function labDir(): string {
  return process.env.UNDERLAY_LAB_DIR ?? resolve(__dirname, '../.lab');
}

/** The image variants of lab/image/build.sh: the switch runs `base`, servers one of the others. */
export const LAB_IMAGES = ['base', 'fresh', 'ifupdown', 'networkd', 'nm'] as const;
export type LabImage = (typeof LAB_IMAGES)[number];

/**
 * A server managed over its data NIC (lab/up.sh UNDERLAY_LAB_DATA_MGMT): its own management NIC has no SSH
 * forward; the switch forwards two ports on 127.0.0.1 (DNAT + masquerade), answered by the same host key.
 */
export interface LabDataMgmt {
  /** The NIC the server is reached on before onboarding (its address set by the server's network manager). */
  nic: 'eth1';
  /** 127.0.0.1 port → eth1's pre-onboarding address, untagged (the switch ports' native VLAN). Equals `LabVm.port`. */
  oldPort: number;
  /** eth1's pre-onboarding address, 198.18.10.(20+K)/24; the switch is 198.18.10.1 on that network. */
  oldAddress: string;
  /** 127.0.0.1 port → the address the server has after onboarding on VLAN 100. */
  newPort: number;
  /** 192.0.2.(20+K)/24 on `<bond>.100`; the lab spec puts it on its VLAN 100. */
  newAddress: string;
  vlan: 100;
  gateway: '192.0.2.1';
}

export interface LabVm {
  name: string;
  role: 'switch' | 'server';
  /** The 127.0.0.1 port that reaches the VM's sshd now (for a server managed over eth1: the old path). */
  port: number;
  /** SHA256 fingerprint of the host key the VM generated at first boot. */
  hostKey: string;
  /** The image variant it booted from. */
  image: LabImage;
  dataMgmt?: LabDataMgmt;
}

export function labVms(dir = labDir()): LabVm[] {
  const env = readFileSync(join(dir, 'lab.env'), 'utf8').trim().split('\n');
  const known = readFileSync(join(dir, 'known_hosts'), 'utf8').trim().split('\n');
  return env.map((line) => {
    const [name, role, port, image = 'base', via = 'eth0', newPort = '-'] = line.split(/\s+/) as [string, 'switch' | 'server', string, ...string[]];
    const entry = known.find((k) => k.startsWith(`[127.0.0.1]:${port} `));
    if (!entry) throw new Error(`${name}: no host key in ${dir}/known_hosts (is the lab up?)`);
    if (!(LAB_IMAGES as readonly string[]).includes(image)) throw new Error(`${name}: unknown image '${image}' in ${dir}/lab.env`);
    const blob = Buffer.from(entry.split(/\s+/)[2]!, 'base64');
    const vm: LabVm = { name, role, port: Number(port), hostKey: sha256Fingerprint(blob), image: image as LabImage };
    if (via === 'eth1') {
      const k = serverIndex(name);
      vm.dataMgmt = {
        nic: 'eth1',
        oldPort: Number(port),
        oldAddress: `198.18.10.${20 + k}/24`,
        newPort: Number(newPort),
        newAddress: `192.0.2.${20 + k}/24`,
        vlan: 100,
        gateway: '192.0.2.1',
      };
    }
    return vm;
  });
}

function serverIndex(name: string): number {
  const k = Number(/^server(\d+)$/.exec(name)?.[1]);
  if (!Number.isInteger(k) || k < 1) throw new Error(`${name} is not a lab server (serverK)`);
  return k;
}

export function labVm(name: string, dir = labDir()): LabVm {
  const vm = labVms(dir).find((v) => v.name === name);
  if (!vm) throw new Error(`no lab VM named ${name} (see ${dir}/lab.env)`);
  return vm;
}

export interface LabSpecOptions {
  attach?: 'macvtap' | 'ovs';
  /** Expect the two cables on each other's switch port (to test the miscabling check). */
  swapCables?: boolean;
  dir?: string;
}

/** The spec input (YAML-able) of lab server `serverK`. */
export function labSpecInput(name: string, opts: LabSpecOptions = {}): ServerSpecInput {
  const dir = opts.dir ?? labDir();
  const vm = labVm(name, dir);
  if (vm.role !== 'server') throw new Error(`${name} is the ${vm.role}, not a server`);
  const k = serverIndex(name);
  const mac = (nic: number) => `52:54:00:00:${k.toString(16).padStart(2, '0')}:${nic.toString(16).padStart(2, '0')}`;
  const ports = [`swp${2 * k - 1}`, `swp${2 * k}`];
  if (opts.swapCables) ports.reverse();
  return {
    id: `lab-${name}`,
    site: 'lab',
    rack: 'qemu',
    management: { address: '127.0.0.1', port: vm.port, user: 'root', hostKey: vm.hostKey, credentials: { privateKeyFile: join(dir, 'id_ed25519') } },
    nics: [
      { name: 'eth1', mac: mac(1), speedMbps: 10000, lldp: { switch: 'leaf-01', port: ports[0]! } },
      { name: 'eth2', mac: mac(2), speedMbps: 10000, lldp: { switch: 'leaf-01', port: ports[1]! } },
      // netdevsim PF (stands in for an SR-IOV NIC): no cable to check.
      { name: 'eth3', cabled: false },
    ],
    bond: { name: 'bond0', members: ['eth1', 'eth2'], mode: '802.3ad', lacpRate: 'fast', xmitHashPolicy: 'layer3+4', miimon: 100 },
    vlans: [
      // A server managed over its data NIC: the address the switch forwards its new management path to.
      { id: 100, parent: 'bond0', address: vm.dataMgmt?.newAddress ?? `192.0.2.${10 + k}/24`, gateway: '192.0.2.1' },
      { id: 200, parent: 'bond0', address: `198.18.1.${10 + k}/24`, gateway: '198.18.1.1' },
    ],
    sriov: { pf: 'eth3', numVfs: 4, vfioPci: false },
    hypervisor: { kind: 'kvm' },
    attach:
      opts.attach === 'ovs'
        ? { kind: 'ovs', bridge: 'br-underlay', vlanPorts: [{ name: 'vm-v100', vlan: 100 }] }
        : { kind: 'macvtap', network: 'underlay-macvtap', mode: 'bridge' },
  };
}

export function labSpec(name: string, opts: LabSpecOptions = {}): ServerSpec {
  return parseServerSpec(labSpecInput(name, opts), `lab spec of ${name}`);
}

if (require.main === module) {
  const [name, ...flags] = process.argv.slice(2);
  if (!name) {
    console.error('usage: lab spec <serverK> [--ovs] [--swap-cables]');
    process.exit(2);
  }
  const input = labSpecInput(name, { attach: flags.includes('--ovs') ? 'ovs' : 'macvtap', swapCables: flags.includes('--swap-cables') });
  parseServerSpec(input, `lab spec of ${name}`);
  process.stdout.write(`# underlay spec of lab VM ${name} (generated by lab/spec.ts from ${labDir()})\n${stringify(input)}`);
}
