/**
 * The server spec: everything underlay needs to onboard one bare-metal server.
 *
 * This is the only place input is trusted from. Every object is strict (an unknown key is an error, so a
 * `password:` field is rejected rather than ignored), every identifier matches a pattern that admits no shell
 * metacharacter, and credentials are references (env var, file, SSH agent) — never the secret itself.
 */
import { z } from 'zod';
import {
  Cidr,
  CredentialPath,
  EnvVarName,
  FilePath,
  HostAddress,
  HostKeyFingerprint,
  IfName,
  IpAddress,
  Label,
  MacAddress,
  ObjectName,
  PackageName,
  PortId,
  ServerId,
  UserName,
} from './identifiers';

const Port = z.number().int().min(1).max(65535);

/**
 * Upper bounds of the spec's lists: far above any real server (a 4-socket host has a dozen NICs), low enough that
 * a hostile spec cannot make validation or a step loop long. Documented in README (Bounded input).
 */
export const MAX_NICS = 64;
export const MAX_VLANS = 128;
export const MAX_VLAN_PORTS = 256;
export const MAX_PACKAGES = 64;

/** How to authenticate over SSH: by reference only. */
export const SshCredentialRef = z.union(
  [
    z.strictObject({
      privateKeyFile: CredentialPath.describe(
        'OpenSSH private key file on the worker, inside its credentials directory (absolute, or relative to it); mode 600',
      ),
      passphraseEnv: EnvVarName.optional().describe('Env var on the worker holding the key passphrase'),
    }),
    z.strictObject({
      privateKeyEnv: EnvVarName.describe(
        'Env var on the worker holding an OpenSSH private key (PEM); must start with the worker’s secret prefix (UNDERLAY_SECRET_)',
      ),
      passphraseEnv: EnvVarName.optional(),
    }),
    z.strictObject({
      agent: z.literal(true).describe('Use the worker’s ssh-agent (SSH_AUTH_SOCK)'),
      agentSocketEnv: EnvVarName.optional().describe('Env var naming the agent socket: SSH_AUTH_SOCK (the default) or one with the worker’s secret prefix'),
    }),
  ],
  { message: 'must be one of {privateKeyFile}, {privateKeyEnv} or {agent: true} — a reference, never the secret' },
);

/** Username/password for an HTTP API, by reference. */
export const HttpCredentialRef = z.union(
  [
    z.strictObject({ usernameEnv: EnvVarName, passwordEnv: EnvVarName }),
    z.strictObject({ file: CredentialPath.describe('File with two lines: username, password; inside the worker’s credentials directory, mode 600') }),
  ],
  { message: 'must be {usernameEnv, passwordEnv} or {file} — a reference, never the secret' },
);

export const Management = z.strictObject({
  address: HostAddress.describe('Where the host’s SSH (or WinRM) answers'),
  port: Port.default(22),
  user: UserName.default('root'),
  hostKey: HostKeyFingerprint.describe('Pinned SHA256 fingerprint of the host key; any other key is refused'),
  credentials: SshCredentialRef,
});

export const LldpNeighbour = z.strictObject({
  switch: Label.describe('System name the switch announces over LLDP'),
  port: PortId.describe('Port id (or description) the switch announces for this cable'),
});

export const Nic = z.strictObject({
  name: IfName,
  mac: MacAddress.optional().describe('Permanent MAC; when set, the cable check matches the NIC by it'),
  speedMbps: z.number().int().positive().optional().describe('Expected negotiated speed in Mb/s (unchecked when absent)'),
  lldp: LldpNeighbour.optional().describe('Expected neighbour at the other end of the cable'),
  cabled: z.boolean().default(true).describe('False for a NIC with no cable to check (e.g. an SR-IOV PF used only for its VFs): the cable check skips it'),
});

export const Bond = z.strictObject({
  name: IfName.default('bond0'),
  members: z.array(IfName).min(1).max(8),
  mode: z.enum(['802.3ad', 'active-backup', 'balance-alb', 'balance-tlb']).default('802.3ad'),
  lacpRate: z.enum(['slow', 'fast']).default('fast'),
  xmitHashPolicy: z.enum(['layer2', 'layer2+3', 'layer3+4', 'encap2+3', 'encap3+4']).default('layer3+4'),
  miimon: z.number().int().min(0).max(10000).default(100),
});

export const Vlan = z.strictObject({
  id: z.number().int().min(1, { message: 'VLAN id must be 1–4094' }).max(4094, { message: 'VLAN id must be 1–4094' }),
  parent: IfName.describe('Bond or NIC carrying the tag'),
  name: IfName.optional().describe('Interface name; default <parent>.<id>'),
  address: Cidr.optional(),
  gateway: IpAddress.optional().describe('Address pinged to verify the VLAN carries traffic'),
});

/**
 * Management that moves during onboarding: the host is reached over a NIC the bond takes (PXE / DHCP on a data
 * NIC), and its management address ends up on the bond or a VLAN of it. The change is commit-confirmed: armed on
 * the host with a dead-man that undoes it by itself unless underlay reaches the host over the new path in time.
 */
export const ManagementMove = z.strictObject({
  interface: IfName.describe('The bond, or a VLAN of the spec on it, that carries the management address after onboarding'),
  reachAt: z
    .strictObject({ address: HostAddress, port: Port.optional() })
    .optional()
    .describe('Where underlay reaches the host over the new path (default: the interface’s address, management.port)'),
  confirmWindowSeconds: z
    .number()
    .int()
    .min(30)
    .max(1800)
    .default(120)
    .describe('How long the host waits for underlay to confirm over the new path before it undoes the change by itself'),
});

/** How the host's own network configuration is kept: through the network manager that runs the host. */
export const HostNetwork = z.strictObject({
  manager: z
    .enum(['auto', 'networkd', 'networkmanager', 'ifupdown'])
    .default('auto')
    .describe(
      'The network manager underlay writes persistent configuration through (systemd-networkd, NetworkManager, ifupdown); auto: the one that configures the NICs, else the only one running',
    ),
  management: ManagementMove.optional().describe('Where the management address lives after onboarding, when it moves onto the bond'),
});

export const Sriov = z.strictObject({
  pf: IfName.describe('Physical function'),
  numVfs: z.number().int().min(1).max(1024),
  vfioPci: z.boolean().default(false).describe('Bind every VF to vfio-pci for device assignment'),
});

/** A PCI function address as Linux names it under /sys/bus/pci/devices: domain:bus:device.function. */
export const PciAddress = z
  .string()
  .regex(/^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-1][0-9A-Fa-f]\.[0-7]$/, { message: 'must be a PCI address like 0000:03:00.0 (domain:bus:device.function)' })
  .transform((s) => s.toLowerCase());

export const MAX_DPDK_DEVICES = 16;
export const MAX_NUMA_NODES = 8;
export const MAX_VHOST_USER_PORTS = 64;
/** Hugepages reserved at most, in MiB (4 TiB): far above a real host's memory, low enough to keep sums exact. */
export const MAX_HUGEPAGE_MIB = 4 * 1024 * 1024;
const CpuMask = z
  .string()
  .regex(/^0x[0-9A-Fa-f]{1,64}$/, { message: 'must be a CPU mask in hex like 0x6 (up to 256 CPUs)' })
  .transform((s) => s.toLowerCase())
  .refine((s) => /[1-9a-f]/.test(s.slice(2)), { message: 'must name at least one CPU' });

/**
 * Hugepages for DPDK, reserved on the kernel command line (the only way 1 GiB pages are reliably had: memory
 * fragments after boot) — a total, or a count per NUMA node.
 */
export const Hugepages = z
  .strictObject({
    size: z.enum(['2M', '1G']).default('2M').describe('Page size: 2M, or 1G (needs the pdpe1gb CPU flag)'),
    count: z.number().int().min(1).max(1_048_576).optional().describe('Pages in all (the kernel spreads them over the nodes)'),
    perNode: z
      .array(
        z.strictObject({
          node: z
            .number()
            .int()
            .min(0)
            .max(MAX_NUMA_NODES - 1),
          count: z.number().int().min(0).max(1_048_576),
        }),
      )
      .min(1)
      .max(MAX_NUMA_NODES)
      .optional()
      .describe('Pages per NUMA node instead of a total'),
  })
  .refine((h) => (h.count === undefined) !== (h.perNode === undefined), { message: 'give either count or perNode', path: ['count'] });

/** Open vSwitch with the DPDK datapath (Debian's openvswitch-switch-dpdk) on the attach's OVS bridge. */
export const OvsDpdk = z.strictObject({
  pmdCpuMask: CpuMask.describe('other_config:pmd-cpu-mask: the CPUs that poll the DPDK ports'),
  lcoreMask: CpuMask.optional().describe('other_config:dpdk-lcore-mask: the CPUs of DPDK’s non-datapath threads'),
  socketMemoryMb: z
    .array(z.number().int().min(0).max(MAX_HUGEPAGE_MIB))
    .min(1)
    .max(MAX_NUMA_NODES)
    .describe('other_config:dpdk-socket-mem: hugepage memory (MiB) DPDK takes per NUMA node, node 0 first'),
  vhostUserPorts: z
    .array(z.strictObject({ name: IfName }))
    .max(MAX_VHOST_USER_PORTS)
    .default([])
    .describe('vhost-user ports for guests (dpdkvhostuserclient: QEMU serves the socket, OVS connects)'),
});

/** Host preparation for DPDK (KVM on Debian): IOMMU, hugepages, devices on vfio-pci, optionally OVS-DPDK. */
export const Dpdk = z.strictObject({
  hugepages: Hugepages,
  devices: z
    .array(
      z
        .string()
        .refine((s) => PciAddress.safeParse(s).success || IfName.safeParse(s).success, {
          message: 'must be a PCI address (0000:03:00.0) or a NIC name of the spec',
        })
        .transform((s) => (PciAddress.safeParse(s).success ? s.toLowerCase() : s)),
    )
    .min(1)
    .max(MAX_DPDK_DEVICES)
    .describe('The NICs handed to DPDK: PCI addresses, or names of the spec’s NICs'),
  driver: z.literal('vfio-pci').default('vfio-pci').describe('The userspace driver (vfio-pci: needs the IOMMU, which the step turns on)'),
  ovs: OvsDpdk.optional().describe('Run the attach’s Open vSwitch bridge on the DPDK datapath with these devices as ports'),
});

const KvmHypervisor = z.strictObject({
  kind: z.literal('kvm'),
  packages: z.array(PackageName).min(1).max(MAX_PACKAGES).optional().describe('Override the package set (default per OS family)'),
});
const XenHypervisor = z.strictObject({
  kind: z.literal('xen'),
  dom0MemoryMb: z.number().int().min(512).max(65536).optional(),
});
const Bmc = z.strictObject({
  address: HostAddress,
  port: Port.default(443),
  systemId: ObjectName.optional().describe('Redfish ComputerSystem id; default the only one'),
  credentials: HttpCredentialRef,
  tls: z.union([
    z.strictObject({ caFile: CredentialPath }),
    z.strictObject({
      certFile: CredentialPath.describe("The BMC's own (self-signed) certificate, saved by the operator: the only certificate trusted"),
      fingerprint: z
        .string()
        .regex(/^sha256\/[A-Za-z0-9+/]{43}=$/, { message: 'must be sha256/<base64 of the DER certificate hash>' })
        .describe('SHA-256 of certFile, as the BMC shows it: a wrong file is refused'),
    }),
  ]),
});
const CertFingerprint = z.string().regex(/^sha256\/[A-Za-z0-9+/]{43}=$/, { message: 'must be sha256/<base64 of the DER certificate hash>' });
const Ipv4 = z.ipv4({ message: 'must be an IPv4 address' });
/** The vendor installer ISO: a file on the worker, under its ISO directory (UNDERLAY_ISO_DIR), pinned by hash. */
const EsxiInstaller = z.strictObject({
  iso: FilePath.describe('The vendor ESXi installer ISO on the worker: a path under the worker’s UNDERLAY_ISO_DIR'),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, { message: 'must be the ISO’s SHA-256 as 64 lowercase hex digits' })
    .describe('SHA-256 of the ISO (as VMware publishes it): any other file is refused'),
  version: z
    .string()
    .regex(/^\d{1,2}\.\d{1,2}\.\d{1,2}$/, { message: 'must be an ESXi version like 8.0.3' })
    .describe('ESXi version the installed host must report (about.version); checked against the ISO’s BOOT.CFG build= line'),
  build: z
    .string()
    .regex(/^\d{1,12}$/, { message: 'must be a build number (digits)' })
    .optional()
    .describe('Build the installed host must report (about.build); checked against the ISO too'),
});
/** The installed host's management network, written into the kickstart (`network …`). */
const EsxiKickstartNetwork = z
  .strictObject({
    device: IfName.default('vmnic0').describe('Physical NIC of the management vmk0 (a NIC of the spec)'),
    address: z.cidrv4({ message: 'must be an IPv4 address with prefix, like 192.0.2.21/24' }).optional().describe('Static address; absent: DHCP'),
    gateway: Ipv4.optional(),
    nameservers: z.array(Ipv4).max(3).default([]),
    vlan: z.number().int().min(1).max(4094).optional().describe('Management VLAN tag on vmk0'),
  })
  .refine((n) => n.address !== undefined || (n.gateway === undefined && n.nameservers.length === 0), {
    message: 'gateway and nameservers need a static address (without one the host uses DHCP)',
    path: ['address'],
  });
const EsxiKickstart = z.strictObject({
  disk: z
    .string()
    .regex(/^[A-Za-z0-9:._-]{1,128}$/, { message: 'must be a disk name of letters, digits and : . _ -' })
    .optional()
    .describe('Install disk (install --disk=…); absent: the first disk (install --firstdisk)'),
  network: EsxiKickstartNetwork.default({ device: 'vmnic0', nameservers: [] }),
});
/**
 * The certificate the installed host presents: generated by the operator (or their PKI), installed by the
 * kickstart, pinned by the worker when it asks the host's API whether ESXi is up, and given to vCenter as the
 * host's SSL thumbprint when the host is added.
 */
const EsxiHostCertificate = z.strictObject({
  certFile: CredentialPath.describe('The host’s certificate (PEM), in the worker’s credentials directory'),
  keyFile: CredentialPath.describe('Its private key (PEM), in the worker’s credentials directory: goes into the per-host ISO only'),
  fingerprint: CertFingerprint.describe('SHA-256 of certFile: a wrong file is refused'),
});
const EsxiHypervisor = z.strictObject({
  kind: z.literal('esxi'),
  bmc: Bmc,
  installer: EsxiInstaller,
  kickstart: EsxiKickstart.default({ network: { device: 'vmnic0', nameservers: [] } }),
  rootPassword: z
    .strictObject({ file: CredentialPath.describe('File in the worker’s credentials directory holding the root password (one line)') })
    .describe('The installed host’s root password, by reference: hashed into the kickstart, and given to vCenter when the host is added'),
  hostCertificate: EsxiHostCertificate,
  apiPort: Port.default(443).describe('Where the installed host’s vSphere API answers (hostd behind 443)'),
  installTimeoutSeconds: z
    .number()
    .int()
    .min(10)
    .max(4 * 3600)
    .default(2700)
    .describe('How long the install may take, from the power cycle until the host’s API answers'),
});
const HypervHypervisor = z.strictObject({
  kind: z.literal('hyperv'),
  transport: z.enum(['ssh', 'winrm']).default('ssh'),
});
export const Hypervisor = z.discriminatedUnion('kind', [KvmHypervisor, XenHypervisor, EsxiHypervisor, HypervHypervisor]);

const MacvtapAttach = z.strictObject({
  kind: z.literal('macvtap'),
  network: ObjectName.default('underlay-macvtap').describe('libvirt network name'),
  device: IfName.optional().describe('Lower device; default the bond'),
  mode: z.enum(['bridge', 'vepa', 'private', 'passthrough']).default('bridge'),
});
const OvsAttach = z.strictObject({
  kind: z.literal('ovs'),
  bridge: IfName.default('br-underlay'),
  uplink: IfName.optional().describe('Port carrying the bridge’s traffic; default the bond'),
  vlanPorts: z
    .array(z.strictObject({ name: IfName, vlan: z.number().int().min(1).max(4094) }))
    .max(MAX_VLAN_PORTS)
    .default([])
    .describe('Internal ports with an access tag'),
  network: ObjectName.optional().describe('Also define a libvirt network on the bridge'),
});
const BridgeAttach = z.strictObject({
  kind: z.literal('bridge'),
  name: IfName.default('xenbr0'),
  uplink: IfName.optional().describe('Default the bond'),
});
const VdsAttach = z.strictObject({
  kind: z.literal('vds'),
  vcenter: z.strictObject({
    address: HostAddress,
    port: Port.default(443),
    credentials: HttpCredentialRef,
    // Required: the vCenter password is only ever sent to a server whose certificate chains to this bundle alone
    // (no fallback to the publicly trusted CAs, which would accept any certificate a public CA issued).
    caFile: CredentialPath.describe('PEM bundle that is the only trust anchor for vCenter’s certificate (required)'),
  }),
  datacenter: ObjectName.describe('vCenter datacenter the host belongs to; the step adds the host there when vCenter lacks it'),
  cluster: ObjectName.optional().describe('Cluster of that datacenter to add the host to; absent: a standalone host in the datacenter'),
  switch: ObjectName,
  portgroup: ObjectName,
  vlan: z.number().int().min(0).max(4094).optional(),
  uplinks: z.array(IfName).min(1).max(32),
  lacp: z.boolean().default(false),
  migrateVmk: z
    .string()
    .regex(/^vmk[0-9]{1,3}$/, { message: 'must be a VMkernel adapter name like vmk0' })
    .optional()
    .describe('VMkernel adapter (vmk0: management) moved onto the port group, together with the uplinks, relying on vCenter’s network rollback'),
});
/** ESXi without vCenter: a standard vSwitch configured with esxcli over SSH on the installed host. */
const VswitchAttach = z.strictObject({
  kind: z.literal('vswitch'),
  name: ObjectName.default('vSwitch1').describe('Standard vSwitch name on the ESXi host'),
  uplinks: z.array(IfName).min(1).max(32).describe('Physical NICs (vmnicN) of the spec, all active in this order'),
  teaming: z
    .enum(['portid', 'iphash', 'mac'])
    .default('portid')
    .describe('Load balancing: originating port id, IP hash (static EtherChannel on the switch side; no LACP), source MAC hash'),
  portgroup: ObjectName,
  vlan: z.number().int().min(0).max(4095).optional().describe('Port group VLAN id: 0 untagged, 4095 all VLANs (guest tagging)'),
  mtu: z.number().int().min(1280).max(9000).optional().describe('vSwitch MTU; unset leaves it as it is'),
});
const SetAttach = z.strictObject({
  kind: z.literal('set'),
  switchName: ObjectName.default('SETswitch'),
  nics: z.array(IfName).min(1).max(8).optional().describe('Default the bond members'),
  loadBalancing: z.enum(['HyperVPort', 'Dynamic']).default('Dynamic'),
  managementVlan: z.number().int().min(1).max(4094).optional(),
});
export const Attach = z.discriminatedUnion('kind', [MacvtapAttach, OvsAttach, BridgeAttach, VdsAttach, VswitchAttach, SetAttach]);

/** Which attach kinds each hypervisor supports. The documented matrix; enforced below. */
export const ATTACH_MATRIX = {
  kvm: ['macvtap', 'ovs'],
  xen: ['bridge'],
  esxi: ['vds', 'vswitch'],
  hyperv: ['set'],
} as const satisfies Record<z.infer<typeof Hypervisor>['kind'], ReadonlyArray<z.infer<typeof Attach>['kind']>>;

type AttachTransport = 'ssh' | 'vcenter' | 'ssh-powershell';

/** The sections of a spec that configure the host's own network before the hypervisor (steps bond, vlan, sriov). */
export const HOST_NETWORK_SECTIONS = ['bond', 'vlans', 'sriov'] as const;
export type HostNetworkSection = (typeof HOST_NETWORK_SECTIONS)[number];

/**
 * The platform matrix — hypervisor × attach kind × transport × host-network steps — documented in
 * docs/platforms.md and enforced by the validator (validate.ts). The attach column is ATTACH_MATRIX itself.
 *
 * - `transport`: how underlay reaches the host for each purpose; a transport a spec may name that this build
 *   lacks is listed under `refusedTransports` (refused at validation, with the field named).
 * - `dpdk`: whether the `dpdk` section (hugepages, IOMMU, vfio-pci, OVS-DPDK) is in the platform's runbook.
 * - `sections`: which of bond / vlans / sriov the platform's runbook configures. A spec that sets another one
 *   is refused: on ESXi the distributed switch carries LACP and the VLAN (attach.lacp, attach.vlan); on Hyper-V
 *   the SET switch is the team (attach.nics) and the host's VLAN is attach.managementVlan.
 */
export const PLATFORM_MATRIX = {
  kvm: { attach: ATTACH_MATRIX.kvm, transport: { install: 'ssh', attach: 'ssh' }, refusedTransports: [], sections: HOST_NETWORK_SECTIONS, dpdk: true },
  xen: { attach: ATTACH_MATRIX.xen, transport: { install: 'ssh', attach: 'ssh' }, refusedTransports: [], sections: HOST_NETWORK_SECTIONS, dpdk: false },
  esxi: {
    attach: ATTACH_MATRIX.esxi,
    transport: { install: 'redfish', attach: { vds: 'vcenter', vswitch: 'ssh' } },
    refusedTransports: [],
    sections: [],
    dpdk: false,
  },
  hyperv: {
    attach: ATTACH_MATRIX.hyperv,
    transport: { install: 'ssh-powershell', attach: 'ssh-powershell' },
    refusedTransports: ['winrm'],
    sections: [],
    dpdk: false,
  },
} as const satisfies Record<
  z.infer<typeof Hypervisor>['kind'],
  {
    attach: ReadonlyArray<z.infer<typeof Attach>['kind']>;
    /** `attach` is one transport, or one per attach kind where they differ (ESXi: vCenter for vds, SSH for vswitch). */
    transport: { install: 'ssh' | 'redfish' | 'ssh-powershell'; attach: AttachTransport | Partial<Record<z.infer<typeof Attach>['kind'], AttachTransport>> };
    refusedTransports: readonly string[];
    sections: readonly HostNetworkSection[];
    /** Whether the runbook prepares the host for DPDK (the `dpdk` section and step). */
    dpdk: boolean;
  }
>;

export const ServerSpecShape = z.strictObject({
  apiVersion: z.literal('underlay/v1').default('underlay/v1'),
  id: ServerId,
  site: Label,
  rack: Label,
  management: Management,
  nics: z.array(Nic).min(1).max(MAX_NICS),
  bond: Bond.optional(),
  vlans: z.array(Vlan).max(MAX_VLANS).default([]),
  sriov: Sriov.optional(),
  network: HostNetwork.default({ manager: 'auto' }).describe('Linux hosts: how bond, VLAN, SR-IOV and bridge configuration persist across reboots'),
  dpdk: Dpdk.optional().describe('KVM on Debian: hugepages, IOMMU, vfio-pci devices and OVS-DPDK'),
  hypervisor: Hypervisor,
  attach: Attach.optional(),
});

export type ServerSpec = z.output<typeof ServerSpecShape>;
export type ServerSpecInput = z.input<typeof ServerSpecShape>;
export type NicSpec = z.output<typeof Nic>;
export type BondSpec = z.output<typeof Bond>;
export type VlanSpec = z.output<typeof Vlan>;
export type SriovSpec = z.output<typeof Sriov>;
export type HostNetworkSpec = z.output<typeof HostNetwork>;
export type ManagementMoveSpec = z.output<typeof ManagementMove>;
export type HypervisorSpec = z.output<typeof Hypervisor>;
export type AttachSpec = z.output<typeof Attach>;
export type DpdkSpec = z.output<typeof Dpdk>;
export type SshCredentialRefSpec = z.output<typeof SshCredentialRef>;

/** The interface name a VLAN gets on the host. */
export function vlanIfName(v: Pick<VlanSpec, 'id' | 'parent' | 'name'>): string {
  return v.name ?? `${v.parent}.${v.id}`;
}
export type HypervisorKind = z.output<typeof Hypervisor>['kind'];
