/**
 * DPDK host preparation on a Debian KVM host: the IOMMU and hugepages on the kernel command line (a GRUB drop-in,
 * the mechanism the Xen install uses), devices on vfio-pci through driverctl, and one read-back script that
 * reports all of it from /proc and /sys.
 *
 * Why the kernel command line for hugepages, not sysctl.d: pages reserved at boot come before memory fragments,
 * the only way 1 GiB pages are reliably had; the command line has a per-NUMA-node form (`hugepages=0:N,1:M`,
 * Linux ≥ 5.18; Debian 12 runs 6.1) that vm.nr_hugepages lacks; and the IOMMU needs the command line and a reboot
 * anyway, so one drop-in and one reboot carry both.
 *
 * Why driverctl: Debian packages it, it persists an override per PCI address (/etc/driverctl.d/pci-<address>,
 * replayed by its udev rule at boot before any other driver keeps the device), and `unset-override` reprobes the
 * device so that its default kernel driver takes it back.
 */
import type { DpdkSpec } from '../../spec/server';
import type { RemoteHost } from '../remote';
import { sh, type Shell } from '../shell';

/** Sorted before Debian's own grub.d files; read by grub-mkconfig like every *.cfg there. */
export const DPDK_GRUB_DROP_IN = '/etc/default/grub.d/underlay-dpdk.cfg';
/** NIC name → PCI address of the devices given by name: a NIC on vfio-pci has no name on the host any more. */
export const DPDK_DEVICE_RECORD = '/etc/underlay/dpdk-devices';
export const DRIVERCTL_DIR = '/etc/driverctl.d';

export const HUGEPAGE_KB = { '2M': 2048, '1G': 1048576 } as const;
export type HugepageSize = keyof typeof HUGEPAGE_KB;

/** The kernel parameters the spec needs; `intel` adds intel_iommu=on (AMD's IOMMU is on by default). */
export function kernelParams(d: Pick<DpdkSpec, 'hugepages'>, cpuVendor: string): string[] {
  const h = d.hugepages;
  const pages = h.count !== undefined ? String(h.count) : h.perNode!.map((n) => `${n.node}:${n.count}`).join(',');
  return [
    ...(cpuVendor === 'GenuineIntel' ? ['intel_iommu=on'] : []),
    'iommu=pt',
    `default_hugepagesz=${h.size}`,
    `hugepagesz=${h.size}`,
    `hugepages=${pages}`,
  ];
}

/** The GRUB drop-in: appends the parameters to what /etc/default/grub passes to every Linux entry. */
export function renderDpdkDropIn(params: readonly string[]): string {
  return [
    '# Written by underlay (dpdk step): the IOMMU on and hugepages reserved at boot, for DPDK.',
    '# To undo: delete this file and run update-grub.',
    `GRUB_CMDLINE_LINUX="\${GRUB_CMDLINE_LINUX:+$GRUB_CMDLINE_LINUX }${params.join(' ')}"`,
    '',
  ].join('\n');
}

/** The record of named devices: `name address` per line, sorted. */
export function renderDeviceRecord(byName: Record<string, string>): string | null {
  const names = Object.keys(byName).sort();
  if (!names.length) return null;
  return `# Written by underlay (dpdk step): NICs handed to DPDK, by the name they had.\n${names.map((n) => `${n} ${byName[n]}`).join('\n')}\n`;
}

/**
 * Prints the host's DPDK-relevant state, one fact per line (read by parseDpdkHost). `root` prefixes every path,
 * so a test runs the very script over a directory tree laid out like /proc and /sys.
 *
 *   vendor <cpu vendor>            pdpe1gb <0|1>             cmdline <the running kernel's command line>
 *   iommu_groups <count>           vfio <0|1> (module known)   driverctl <0|1> (installed)
 *   irq_remap <0|1> (interrupt remapping on: IR- chips in /proc/interrupts)
 *   unsafe_interrupts <0|1> (vfio_iommu_type1 allow_unsafe_interrupts=Y)
 *   hp <node|all> <size kB> <pages>
 *   dev <ref> <address|-> <driver|-> <vendor:device|-> <ifname|-> <kernel module|->
 *   override <address> <driver>    (from /etc/driverctl.d)
 */
export function readDpdkHostScript(refs: readonly string[], root = ''): Shell {
  const cpuinfo = `${root}/proc/cpuinfo`;
  const cmdline = `${root}/proc/cmdline`;
  const groups = `${root}/sys/kernel/iommu_groups`;
  const hpAll = `${root}/sys/kernel/mm/hugepages`;
  const nodes = `${root}/sys/devices/system/node`;
  const pci = `${root}/sys/bus/pci/devices`;
  const net = `${root}/sys/class/net`;
  const record = `${root}${DPDK_DEVICE_RECORD}`;
  const dctl = `${root}${DRIVERCTL_DIR}`;
  const modules = `${root}/lib/modules`;
  const sysmod = `${root}/sys/module/vfio_pci`;
  const interrupts = `${root}/proc/interrupts`;
  const unsafe = `${root}/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts`;
  return sh`printf 'vendor %s\n' "$(sed -n 's/^vendor_id[[:space:]]*:[[:space:]]*//p' ${cpuinfo} | head -n 1)"
if grep -qw pdpe1gb ${cpuinfo}; then echo 'pdpe1gb 1'; else echo 'pdpe1gb 0'; fi
printf 'cmdline %s\n' "$(head -c 4096 ${cmdline})"
n=0; for g in ${groups}/*; do [ -e "$g" ] && n=$((n+1)); done; echo "iommu_groups $n"
if grep -q ' IR-' ${interrupts} 2>/dev/null; then echo 'irq_remap 1'; else echo 'irq_remap 0'; fi
if [ "$(cat ${unsafe} 2>/dev/null)" = Y ]; then echo 'unsafe_interrupts 1'; else echo 'unsafe_interrupts 0'; fi
if [ -d ${sysmod} ] || find ${modules}/"$(uname -r)" -name 'vfio-pci.ko*' 2>/dev/null | grep -q .; then echo 'vfio 1'; else echo 'vfio 0'; fi
if command -v driverctl >/dev/null 2>&1; then echo 'driverctl 1'; else echo 'driverctl 0'; fi
for d in ${hpAll}/hugepages-*kB; do [ -r "$d/nr_hugepages" ] || continue; k=\${d##*-}; printf 'hp all %s %s\n' "\${k%kB}" "$(cat "$d/nr_hugepages")"; done
for d in ${nodes}/node[0-9]*/hugepages/hugepages-*kB; do [ -r "$d/nr_hugepages" ] || continue; k=\${d##*-}; nd=\${d%/hugepages/*}; printf 'hp %s %s %s\n' "\${nd##*/node}" "\${k%kB}" "$(cat "$d/nr_hugepages")"; done
for r in ${[...refs]}; do
  a=-; ifn=-
  case "$r" in
    [0-9a-f][0-9a-f][0-9a-f][0-9a-f]:*) a=$r ;;
    *) if [ -e ${net}/"$r"/device ]; then a=$(basename "$(readlink -f ${net}/"$r"/device)"); ifn=$r
       elif [ -f ${record} ]; then a=$(awk -v n="$r" '$1 == n { print $2; exit }' ${record}); [ -n "$a" ] || a=-; fi ;;
  esac
  drv=-; id=-; km=-
  if [ "$a" != - ] && [ -e ${pci}/"$a" ]; then
    [ -L ${pci}/"$a"/driver ] && drv=$(basename "$(readlink ${pci}/"$a"/driver)")
    id="$(sed 's/^0x//' ${pci}/"$a"/vendor):$(sed 's/^0x//' ${pci}/"$a"/device)"
    if [ "$ifn" = - ]; then for i in ${pci}/"$a"/net/* ${pci}/"$a"/virtio*/net/*; do [ -e "$i" ] && { ifn=\${i##*/}; break; }; done; fi
    # The kernel module that drives the device when it is not handed to userspace: its bound driver, or (on
    # vfio-pci or unbound) the module its modalias resolves to.
    case "$drv" in
      -|vfio-pci|uio_pci_generic|igb_uio) km=$(modprobe -R "$(cat ${pci}/"$a"/modalias 2>/dev/null)" 2>/dev/null | head -n 1) ;;
      *) km=$drv ;;
    esac
  elif [ "$a" != - ]; then a="$a?"
  fi
  printf 'dev %s %s %s %s %s %s\n' "$r" "$a" "$drv" "$id" "$ifn" "\${km:--}"
done
for f in ${dctl}/pci-*; do [ -s "$f" ] && printf 'override %s %s\n' "\${f##*/pci-}" "$(head -n 1 "$f")"; done
true`;
}

export interface DpdkDevice {
  /** As the spec gives it: a PCI address or a NIC name. */
  ref: string;
  /** The PCI address, or null when the name resolves to none (no such NIC, not recorded). */
  address: string | null;
  /** The address does not exist under /sys/bus/pci/devices. */
  missing: boolean;
  /** Bound driver, or null when unbound. */
  driver: string | null;
  /** PCI vendor:device, e.g. 8086:10d3. */
  id: string | null;
  /** The kernel NIC it is now (absent while on vfio-pci). */
  ifname: string | null;
  /** The kernel module that drives it outside DPDK (its driver, or its modalias's module), or null if unknown. */
  kernelModule: string | null;
}

export interface DpdkHost {
  cpuVendor: string;
  pdpe1gb: boolean;
  cmdline: string;
  iommuGroups: number;
  /**
   * Interrupt remapping is on (the IOMMU's IR-* interrupt chips). vfio's type-1 IOMMU refuses a device without it
   * (DPDK then fails with "failed to select IOMMU type") unless allow_unsafe_interrupts is set.
   */
  irqRemap: boolean;
  unsafeInterrupts: boolean;
  vfioModule: boolean;
  driverctl: boolean;
  /** Reserved pages per size (kB) in all, and per NUMA node. */
  hugepages: { all: Record<string, number>; nodes: Record<string, Record<string, number>> };
  devices: DpdkDevice[];
  /** driverctl's persisted overrides: PCI address → driver. */
  overrides: Record<string, string>;
}

const ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** Parses readDpdkHostScript's output; any line it does not know is an error (the script is ours). */
export function parseDpdkHost(text: string, unexpected: (what: string, observed: string) => Error): DpdkHost {
  const out: DpdkHost = {
    cpuVendor: '',
    pdpe1gb: false,
    cmdline: '',
    iommuGroups: 0,
    irqRemap: false,
    unsafeInterrupts: false,
    vfioModule: false,
    driverctl: false,
    hugepages: { all: {}, nodes: {} },
    devices: [],
    overrides: {},
  };
  for (const line of text.split('\n')) {
    if (!line) continue;
    const sp = line.indexOf(' ');
    const key = sp < 0 ? line : line.slice(0, sp);
    const rest = sp < 0 ? '' : line.slice(sp + 1);
    const f = rest.split(' ');
    const num = (s: string | undefined) => {
      if (!s || !/^\d{1,12}$/.test(s)) throw unexpected('DPDK host read-back', line);
      return Number(s);
    };
    switch (key) {
      case 'vendor':
        out.cpuVendor = rest.trim();
        break;
      case 'pdpe1gb':
        out.pdpe1gb = rest === '1';
        break;
      case 'cmdline':
        out.cmdline = rest.trim();
        break;
      case 'iommu_groups':
        out.iommuGroups = num(f[0]);
        break;
      case 'vfio':
        out.vfioModule = rest === '1';
        break;
      case 'irq_remap':
        out.irqRemap = rest === '1';
        break;
      case 'unsafe_interrupts':
        out.unsafeInterrupts = rest === '1';
        break;
      case 'driverctl':
        out.driverctl = rest === '1';
        break;
      case 'hp': {
        const [where, kb, pages] = f;
        if (!where || f.length !== 3) throw unexpected('DPDK host read-back', line);
        if (where === 'all') out.hugepages.all[String(num(kb))] = num(pages);
        else (out.hugepages.nodes[String(num(where))] ??= {})[String(num(kb))] = num(pages);
        break;
      }
      case 'dev': {
        if (f.length !== 6) throw unexpected('DPDK host read-back', line);
        const [ref, a, drv, id, ifn, km] = f as [string, string, string, string, string, string];
        const missing = a.endsWith('?');
        const address = a === '-' ? null : missing ? a.slice(0, -1) : a;
        if (address !== null && !ADDRESS.test(address)) throw unexpected('DPDK device address', line);
        out.devices.push({
          ref,
          address,
          missing,
          driver: drv === '-' ? null : drv,
          id: id === '-' ? null : id,
          ifname: ifn === '-' ? null : ifn,
          kernelModule: km === '-' ? null : km,
        });
        break;
      }
      case 'override': {
        const [a, drv] = f;
        if (!a || !drv || !ADDRESS.test(a)) throw unexpected('driverctl override', line);
        out.overrides[a] = drv;
        break;
      }
      default:
        throw unexpected('DPDK host read-back', line);
    }
  }
  return out;
}

export async function readDpdkHost(host: RemoteHost, refs: readonly string[]): Promise<DpdkHost> {
  const text = await host.read(readDpdkHostScript(refs), { description: 'read IOMMU, hugepages and DPDK devices' });
  return parseDpdkHost(text, (what, observed) => host.unexpected(what, observed));
}

/** The kernel parameters of `want` missing from (or different on) a command line, by name=value. */
export function missingParams(cmdline: string, want: readonly string[]): string[] {
  const words = cmdline.split(/\s+/).filter(Boolean);
  // The kernel takes the last of a repeated parameter; hugepagesz/hugepages pairs repeat legitimately, so look
  // for each wanted word itself.
  return want.filter((p) => !words.includes(p));
}

/** driverctl: bind now and persist (the override file), loading vfio-pci first. */
export function setOverride(address: string, driver: string): Shell {
  return sh`modprobe ${driver} && driverctl set-override ${address} ${driver}`;
}

/** driverctl: forget the override and reprobe, so the device's default kernel driver takes it back. */
export function unsetOverride(address: string): Shell {
  return sh`driverctl unset-override ${address}`;
}

/**
 * DPDK's user-space side on Debian: the poll-mode driver (PMD) of each device and the ring mempool driver are
 * plugins in packages of their own (librte-net-<pmd><abi>, librte-mempool-ring<abi>) that the dpdk package only
 * recommends. Without them DPDK starts but cannot take the device ("failed to parse device"). Kernel module → the
 * DPDK net driver that serves the same hardware. NVIDIA/Mellanox ConnectX (mlx4/mlx5) is absent on purpose: its PMD
 * is bifurcated — the device stays on mlx5_core and DPDK reaches it through rdma-core — so handing it to vfio-pci,
 * as this step does, would leave DPDK without it.
 */
const BIFURCATED = new Set(['mlx4_core', 'mlx5_core']);
export const PMD_OF_KERNEL_MODULE: Readonly<Record<string, string>> = {
  e1000: 'e1000',
  e1000e: 'e1000',
  igb: 'e1000',
  igbvf: 'e1000',
  igc: 'igc',
  ixgbe: 'ixgbe',
  ixgbevf: 'ixgbe',
  i40e: 'i40e',
  iavf: 'iavf',
  ice: 'ice',
  fm10k: 'fm10k',
  bnxt_en: 'bnxt',
  qede: 'qede',
  ena: 'ena',
  enic: 'enic',
  cxgb4: 'cxgbe',
  nfp: 'nfp',
  sfc: 'sfc',
  hinic: 'hinic',
  atlantic: 'atlantic',
  vmxnet3: 'vmxnet3',
  virtio_pci: 'virtio',
  'virtio-pci': 'virtio',
  'thunder-nicvf': 'thunderx',
};

/** What the package index offers of DPDK's libraries: one name per line (`apt-cache pkgnames librte-`). */
export function offeredDpdkPackagesScript(): Shell {
  return sh`apt-cache pkgnames librte- 2>/dev/null | LC_ALL=C sort`;
}

/** Debian's shared-library package name: a hyphen before the ABI number when the name ends in a digit. */
function libPackage(stem: string, abi: string): string {
  return /\d$/.test(stem) ? `${stem}-${abi}` : `${stem}${abi}`;
}

export interface DpdkUserspace {
  /** The packages the devices need, sorted. */
  packages: string[];
  /** Devices whose PMD is not known or not offered: ref and why. */
  unsupported: { ref: string; why: string }[];
}

/**
 * The DPDK plugin packages for these devices, from the package names the host's repositories offer: the ring
 * mempool driver and each device's PMD, of the newest DPDK ABI offered (the one openvswitch-switch-dpdk links).
 */
export function dpdkUserspacePackages(devices: readonly Pick<DpdkDevice, 'ref' | 'kernelModule'>[], offered: readonly string[]): DpdkUserspace {
  const abis = offered.map((n) => /^librte-eal(\d+)$/.exec(n)?.[1]).filter((a): a is string => !!a);
  if (!abis.length) return { packages: [], unsupported: devices.map((d) => ({ ref: d.ref, why: 'the host’s repositories offer no DPDK (librte-eal)' })) };
  const abi = abis.sort((a, b) => Number(b) - Number(a))[0]!;
  const has = new Set(offered);
  const want = new Set<string>();
  const unsupported: DpdkUserspace['unsupported'] = [];
  const ring = libPackage('librte-mempool-ring', abi);
  if (has.has(ring)) want.add(ring);
  else unsupported.push({ ref: 'mempool', why: `${ring} is not offered` });
  for (const d of devices) {
    const pmd = d.kernelModule ? PMD_OF_KERNEL_MODULE[d.kernelModule] : undefined;
    if (!pmd) {
      if (d.kernelModule && BIFURCATED.has(d.kernelModule)) {
        unsupported.push({ ref: d.ref, why: `${d.kernelModule} devices use DPDK's bifurcated driver on their kernel driver, not vfio-pci` });
        continue;
      }
      unsupported.push({
        ref: d.ref,
        why: d.kernelModule ? `no DPDK poll-mode driver known for kernel module ${d.kernelModule}` : 'its kernel module is unknown',
      });
      continue;
    }
    const name = libPackage(`librte-net-${pmd}`, abi);
    if (has.has(name)) want.add(name);
    else unsupported.push({ ref: d.ref, why: `${name} is not offered` });
  }
  return { packages: [...want].sort(), unsupported };
}

export async function offeredDpdkPackages(host: RemoteHost): Promise<string[]> {
  const out = await host.read(offeredDpdkPackagesScript(), { description: 'list the DPDK packages offered', privileged: false });
  return out.split('\n').filter((l) => /^librte-[a-z0-9.+-]{1,80}$/.test(l));
}
