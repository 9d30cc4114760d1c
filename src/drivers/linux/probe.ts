/**
 * The health probe of an onboarded Linux host as ONE command (one SSH channel): the links (`ip -j -d link show`),
 * each bond's /proc/net/bonding file, carrier/speed/state and error counters of the spec's NICs from sysfs, LLDP
 * neighbours (`lldpctl -f json0`), the VF count of the SR-IOV PF, and a short ping burst to each VLAN's gateway
 * from the VLAN interface — the bursts run in parallel, so a host with many VLANs still answers in seconds.
 *
 * The output is a list of sections, each opened by a line `@@ <kind> [args…]`; parseProbeOutput splits them and
 * the existing parsers (ip-link, lldp, sysfs, bonding) read each. Nothing here changes the host.
 */
import { UnexpectedOutputError, type ErrorContext } from '../../common/errors';
import { Shell, sh } from '../shell';
import { deviceDir } from './sriov';
import { lines } from './parse/text';

export interface ProbeTargets {
  /** NICs whose link state, speed and error counters are read. */
  nics: string[];
  bonds: string[];
  /** VLAN interfaces and the gateway each pings. */
  pings: Array<{ ifname: string; gateway: string }>;
  lldp: boolean;
  sriovPf?: string;
  /** Echo requests per gateway (sent 0.2 s apart). */
  count: number;
}

/** The counters read from /sys/class/net/<nic>/statistics (names as the kernel's files). */
export const NIC_COUNTERS = ['rx_errors', 'tx_errors', 'rx_crc_errors', 'rx_dropped', 'tx_dropped', 'rx_missed_errors', 'tx_carrier_errors'] as const;
export type NicCounter = (typeof NIC_COUNTERS)[number];

export const MAX_PING_COUNT = 50;

function nicScript(nics: readonly string[]): Shell {
  // Same table as readNicSysfs (name, carrier, speed, operstate, address), then one line per counter.
  return sh`echo '@@ nics'
for n in ${[...nics]}; do d=/sys/class/net/$n; [ -e "$d" ] || { printf '%s\tabsent\n' "$n"; continue; }; printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$(cat "$d/carrier" 2>/dev/null || echo -)" "$(cat "$d/speed" 2>/dev/null || echo -)" "$(cat "$d/operstate" 2>/dev/null || echo -)" "$(cat "$d/address" 2>/dev/null || echo -)"; done
echo '@@ stats'
for n in ${[...nics]}; do for c in ${[...NIC_COUNTERS]}; do f=/sys/class/net/$n/statistics/$c; [ -r "$f" ] && printf '%s\t%s\t%s\n' "$n" "$c" "$(cat "$f")"; done; done; true`;
}

/** The probe script; prints sections (see the file comment). Its own exit status is 0 unless the shell breaks. */
export function probeScript(t: ProbeTargets): Shell {
  if (!Number.isInteger(t.count) || t.count < 1 || t.count > MAX_PING_COUNT) throw new Error(`ping count must be 1–${MAX_PING_COUNT}`);
  const parts: Shell[] = [sh`echo "@@ time $(date +%s)"`];
  if (t.pings.length) {
    // Start the bursts first, in parallel, each into its own file; read them at the end.
    parts.push(sh`t=$(mktemp -d) || exit 1`);
    t.pings.forEach((p, i) => {
      const family = p.gateway.includes(':') ? '-6' : '-4';
      parts.push(sh`{ ping ${family} -n -q -c ${t.count} -i 0.2 -W 1 -I ${p.ifname} ${p.gateway} > "$t/${i}" 2>&1; echo "@@ exit $?" >> "$t/${i}"; } &`);
    });
  }
  parts.push(sh`echo '@@ links'; ip -j -d link show`);
  for (const b of t.bonds) parts.push(sh`echo ${`@@ bonding ${b}`}; cat ${`/proc/net/bonding/${b}`} 2>/dev/null || echo '@@ absent'`);
  parts.push(nicScript(t.nics));
  if (t.lldp)
    parts.push(
      sh`if command -v lldpctl >/dev/null; then echo '@@ lldp'; timeout 10 lldpctl -f json0 || echo '@@ absent'; else echo '@@ lldp'; echo '@@ absent'; fi`,
    );
  if (t.sriovPf) parts.push(sh`echo ${`@@ sriov ${t.sriovPf}`}; cat ${`${deviceDir(t.sriovPf)}/sriov_numvfs`} 2>/dev/null || echo '@@ absent'`);
  if (t.pings.length) {
    parts.push(sh`wait`);
    t.pings.forEach((p, i) => parts.push(sh`echo ${`@@ ping ${p.ifname} ${p.gateway}`}; cat "$t/${i}"`));
    parts.push(sh`rm -rf "$t"`);
  }
  // One statement per line: `&` and `;` may not be followed by another `;`.
  return new Shell(parts.map((p) => p.text).join('\n'));
}

export interface ProbeSection {
  kind: string;
  args: string[];
  body: string;
  /** The section said its source is not there (`@@ absent`: no such bond file, no lldpctl, no SR-IOV). */
  absent: boolean;
  /** `@@ exit N` of a ping burst. */
  exitCode?: number;
}

/** Splits the probe output into its sections, in order. */
export function parseProbeOutput(text: string, ctx: ErrorContext = {}): ProbeSection[] {
  const out: ProbeSection[] = [];
  let cur: (ProbeSection & { lines: string[] }) | undefined;
  for (const line of text.split('\n')) {
    const m = /^@@ (\S+)(.*)$/.exec(line);
    if (!m) {
      cur?.lines.push(line);
      continue;
    }
    const [, kind, rest] = m as unknown as [string, string, string];
    if (kind === 'absent' && cur) cur.absent = true;
    else if (kind === 'exit' && cur) cur.exitCode = Number(rest.trim());
    else {
      if (cur) out.push(finish(cur));
      cur = { kind, args: rest.trim() ? rest.trim().split(/\s+/) : [], body: '', absent: false, lines: [] };
    }
  }
  if (cur) out.push(finish(cur));
  if (!out.some((s) => s.kind === 'links')) throw new UnexpectedOutputError('health probe: no links section', { ...ctx, observed: text.slice(0, 300) });
  return out;
}

function finish(s: ProbeSection & { lines: string[] }): ProbeSection {
  const { lines: ls, ...rest } = s;
  return { ...rest, body: ls.join('\n') };
}

export interface PingSummary {
  transmitted: number;
  received: number;
  /** Mean round trip of the answered requests, in seconds; null when none answered. */
  rttAvgSeconds: number | null;
  rttMaxSeconds: number | null;
}

/** iputils `ping -q` summary → counts and RTT (ms on the wire, seconds out). */
export function parsePing(text: string, ctx: ErrorContext = {}): PingSummary {
  const counts = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(text);
  if (!counts) throw new UnexpectedOutputError('ping: no statistics line', { ...ctx, observed: text.slice(-300) });
  const rtt = /(?:rtt|round-trip) min\/avg\/max(?:\/mdev)? = ([\d.]+)\/([\d.]+)\/([\d.]+)/.exec(text);
  return {
    transmitted: Number(counts[1]),
    received: Number(counts[2]),
    rttAvgSeconds: rtt ? msToSeconds(rtt[2]!) : null,
    rttMaxSeconds: rtt ? msToSeconds(rtt[3]!) : null,
  };
}

/** ping prints milliseconds with up to 3 decimals: microseconds are exact integers, so is the division. */
function msToSeconds(ms: string): number {
  return Math.round(Number(ms) * 1000) / 1e6;
}

/** The stats section: `nic<TAB>counter<TAB>value` lines → nic → counter → value. */
export function parseNicCounters(text: string, ctx: ErrorContext = {}): Map<string, Partial<Record<NicCounter, number>>> {
  const out = new Map<string, Partial<Record<NicCounter, number>>>();
  for (const line of lines(text)) {
    const [nic, counter, value] = line.split('\t');
    if (!nic || !counter || !(NIC_COUNTERS as readonly string[]).includes(counter) || !/^\d+$/.test(value ?? '')) {
      throw new UnexpectedOutputError('sysfs NIC statistics: expected <nic> <counter> <integer>', { ...ctx, observed: line });
    }
    const m = out.get(nic) ?? {};
    m[counter as NicCounter] = Number(value);
    out.set(nic, m);
  }
  return out;
}
