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
  return parsePfState(await host.read(script, { description: `read SR-IOV state of ${pf}` }));
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
  printf '%s\n' ${driver} > "$v/driver_override"
  if [ -e "$v/driver" ]; then printf '%s\n' "$bdf" > "$v/driver/unbind"; fi
  printf '%s\n' "$bdf" > /sys/bus/pci/drivers_probe || true
done`;
}
