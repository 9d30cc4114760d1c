/** SR-IOV through sysfs: read a PF's VF state, set sriov_numvfs (with the EBUSY rule), bind VFs to vfio-pci. */
import { UnexpectedOutputError } from '../../common/errors';
import { join, sh, writeTo, type Shell } from '../shell';
import type { RemoteHost } from '../remote';
import { lines } from './parse/text';

export interface PfState {
  /** False when the PF has no sriov_numvfs attribute (no SR-IOV capability or driver support). */
  capable: boolean;
  /** null when the device does not report it (netdevsim has no sriov_totalvfs). */
  totalVfs: number | null;
  numVfs: number;
  /** VF PCI address → bound driver ('-' unbound) and driver_override ('' none). Empty for non-PCI VFs. */
  vfs: Array<{ bdf: string; driver: string; override: string }>;
}

export function deviceDir(pf: string): string {
  return `/sys/class/net/${pf}/device`;
}

/** Output lines: `capable 0|1`, `total N|-`, `num N`, `vf <bdf> <driver|-> <override|->`. */
export function parsePfState(text: string): PfState {
  const st: PfState = { capable: false, totalVfs: null, numVfs: 0, vfs: [] };
  for (const line of lines(text)) {
    const [k, a, b, c] = line.split('\t');
    if (k === 'capable') st.capable = a === '1';
    else if (k === 'total') st.totalVfs = a === '-' ? null : Number(a);
    else if (k === 'num') st.numVfs = Number(a);
    else if (k === 'vf' && a) st.vfs.push({ bdf: a, driver: b ?? '-', override: !c || c === '-' || c === '(null)' ? '' : c });
    else throw new UnexpectedOutputError('SR-IOV sysfs listing: unknown line', { observed: line });
  }
  if (!Number.isInteger(st.numVfs) || (st.totalVfs !== null && !Number.isInteger(st.totalVfs))) {
    throw new UnexpectedOutputError('SR-IOV sysfs listing: non-numeric VF count', { observed: text.slice(0, 200) });
  }
  st.vfs.sort((x, y) => x.bdf.localeCompare(y.bdf));
  return st;
}

export async function readPf(host: RemoteHost, pf: string): Promise<PfState> {
  const script = sh`d=${deviceDir(pf)}
if [ -e "$d/sriov_numvfs" ]; then echo "capable	1"; else echo "capable	0"; exit 0; fi
printf 'total\t%s\n' "$(cat "$d/sriov_totalvfs" 2>/dev/null || echo -)"
printf 'num\t%s\n' "$(cat "$d/sriov_numvfs")"
for v in "$d"/virtfn*; do
  [ -e "$v" ] || continue
  drv=-; [ -e "$v/driver" ] && drv=$(basename "$(readlink -f "$v/driver")")
  printf 'vf\t%s\t%s\t%s\n' "$(basename "$(readlink -f "$v")")" "$drv" "$(cat "$v/driver_override" 2>/dev/null || echo -)"
done`;
  return parsePfState(await host.read(script, { description: `read SR-IOV state of ${pf}`, privileged: false }));
}

/** Sets the VF count. The kernel refuses N→M with both non-zero (EBUSY), so go through 0. */
export function setNumVfs(pf: string, current: number, want: number): Shell {
  const file = `${deviceDir(pf)}/sriov_numvfs`;
  if (current === want) return sh`true`;
  return current > 0 && want > 0 ? join('&&', [writeTo(file, 0), writeTo(file, want)]) : writeTo(file, want);
}

/** Binds every VF of the PF to `driver` (vfio-pci), or back to the default driver when driver is ''. */
export function bindVfs(pf: string, driver: string): Shell {
  const load = driver ? sh`modprobe ${driver} && ` : sh``;
  return sh`${load}for v in ${deviceDir(pf)}/virtfn*; do
  [ -e "$v" ] || continue
  bdf=$(basename "$(readlink -f "$v")")
  printf '%s\n' ${driver} | tee "$v/driver_override" >/dev/null
  if [ -e "$v/driver" ]; then printf '%s\n' "$bdf" | tee "$v/driver/unbind" >/dev/null; fi
  printf '%s\n' "$bdf" | tee /sys/bus/pci/drivers_probe >/dev/null || true
done`;
}

/** The PF's device as sysfs names it (`0000:3b:00.0`, or `netdevsim10` in the lab): what a udev rule matches. */
export async function readPfDevice(host: RemoteHost, pf: string): Promise<string> {
  const out = (await host.read(sh`basename "$(readlink -f ${deviceDir(pf)})"`, { description: `read the device of ${pf}`, privileged: false })).trim();
  if (!/^[A-Za-z0-9:._-]{1,64}$/.test(out)) throw host.unexpected(`readlink ${deviceDir(pf)}`, out);
  return out;
}

export const SRIOV_VFIO_HELPER = '/usr/local/sbin/underlay-sriov-vfio';

export function sriovRulePath(pf: string): string {
  return `/etc/udev/rules.d/70-underlay-sriov-${pf}.rules`;
}

/**
 * The udev rule that gives the PF its VFs at every boot: on the PF's net "add" event, the count written as an
 * ATTR assignment (the kernel refuses a second non-zero count, but the event comes once per boot, with 0 VFs), and
 * for vfio-pci the helper run after it (the VFs exist by then). Matched by the device, not the interface name.
 */
export function sriovUdevRule(serverId: string, device: string, numVfs: number, vfioPci: boolean): string {
  const run = vfioPci ? `, RUN+="${SRIOV_VFIO_HELPER} %S%p/device"` : '';
  return (
    `# Written by underlay for ${serverId} (sriov step); \`underlay rollback ${serverId}\` restores what was here before.\n` +
    `ACTION=="add", SUBSYSTEM=="net", KERNELS=="${device}", ATTR{device/sriov_numvfs}="${numVfs}"${run}\n`
  );
}

/** The helper the rule runs: every VF of the PF at $1 to vfio-pci (the same steps as bindVfs, for boot). */
export function vfioHelperScript(serverId: string): string {
  return `#!/bin/sh
# Written by underlay for ${serverId} (sriov step): binds every VF of the PF device at $1 to vfio-pci; run by udev.
set -u
modprobe vfio-pci || exit 1
for v in "$1"/virtfn*; do
  [ -e "$v" ] || continue
  bdf=$(basename "$(readlink -f "$v")")
  printf '%s\\n' vfio-pci > "$v/driver_override"
  if [ -e "$v/driver" ]; then printf '%s\\n' "$bdf" > "$v/driver/unbind"; fi
  printf '%s\\n' "$bdf" > /sys/bus/pci/drivers_probe || true
done
`;
}
