/**
 * Is this host a running Xen dom0, and what does `xl info` say: the hypervisor version, its capabilities and
 * the command line Xen booted with (where dom0_mem shows).
 */
import { UnexpectedOutputError, type ErrorContext } from '../../common/errors';
import { sh } from '../shell';
import type { RemoteHost } from '../remote';

export interface XlInfo {
  /** Every `key : value` line, as printed. */
  fields: Record<string, string>;
  /** `xen_version` (4.17.4-pre), or major.minor+extra when only those are printed (older xl). */
  xenVersion: string;
  /** `virt_caps` words: pv, hvm, hap, shadow, hvm_directio, ... (empty on PV-only hosts). */
  virtCaps: string[];
  xenCaps: string[];
  /** `xen_commandline`: what the hypervisor booted with (GRUB's GRUB_CMDLINE_XEN*). */
  commandLine: string;
  totalMemoryMb?: number;
  freeMemoryMb?: number;
}

/** Parses `xl info`: lines `key<spaces>: value`, keys lowercase with underscores. */
export function parseXlInfo(text: string, ctx: ErrorContext = {}): XlInfo {
  const fields: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (!line.trim()) continue;
    const m = /^([a-z][a-z0-9_]*)\s*:(?: (.*))?$/.exec(line);
    if (!m) throw new UnexpectedOutputError('xl info: a line is not "key : value"', { ...ctx, observed: line.slice(0, 200) });
    fields[m[1]!] = (m[2] ?? '').trim();
  }
  const major = fields.xen_major;
  const minor = fields.xen_minor;
  const xenVersion = fields.xen_version || (major && minor ? `${major}.${minor}${fields.xen_extra ?? ''}` : '');
  if (!xenVersion) throw new UnexpectedOutputError('xl info: no xen_version (nor xen_major/xen_minor)', { ...ctx, observed: text.slice(0, 200) });
  const words = (v: string | undefined) => (v ?? '').split(/\s+/).filter(Boolean);
  const mb = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
  return {
    fields,
    xenVersion,
    virtCaps: words(fields.virt_caps),
    xenCaps: words(fields.xen_caps),
    commandLine: fields.xen_commandline ?? '',
    totalMemoryMb: mb(fields.total_memory),
    freeMemoryMb: mb(fields.free_memory),
  };
}

export interface Dom0Mem {
  /** The initial allocation in MiB (a bare size, or `min:` when only that is given); null when absent or negative. */
  amountMb: number | null;
  maxMb: number | null;
  /** The option as written, e.g. `dom0_mem=8192M,max:8192M`. */
  text: string;
}

const UNIT_MB: Record<string, number> = { b: 1 / (1024 * 1024), k: 1 / 1024, m: 1, g: 1024, t: 1024 * 1024 };

/** A Xen size (`512M`, `2G`, `1048576` = KiB by default) in MiB; negative sizes (all but N) give null. */
function sizeMb(s: string): number | null {
  const m = /^(\d+)([bkmgtBKMGT]?)$/.exec(s);
  if (!m) return null;
  return Math.round(Number(m[1]) * (UNIT_MB[(m[2] || 'k').toLowerCase()] ?? 0));
}

/** The last `dom0_mem=` on a Xen command line (Xen reads options left to right; the last one wins). */
export function parseDom0Mem(commandLine: string): Dom0Mem | null {
  const all = [...commandLine.matchAll(/(?:^|\s)dom0_mem=(\S+)/g)];
  const last = all.at(-1);
  if (!last) return null;
  let amountMb: number | null = null;
  let maxMb: number | null = null;
  let minMb: number | null = null;
  for (const part of last[1]!.split(',')) {
    const [k, v] = part.includes(':') ? (part.split(':', 2) as [string, string]) : (['', part] as const);
    if (k === 'max') maxMb = sizeMb(v);
    else if (k === 'min') minMb = sizeMb(v);
    else if (k === '') amountMb = sizeMb(v);
  }
  return { amountMb: amountMb ?? minMb, maxMb, text: `dom0_mem=${last[1]}` };
}

/** The option underlay writes for a spec's dom0MemoryMb: fixed size, no ballooning above it. */
export function dom0MemOption(mb: number): string {
  return `dom0_mem=${mb}M,max:${mb}M`;
}

export interface XenRuntime {
  /** `/sys/hypervisor/type` (xen, kvm, ...), or null when the kernel runs on bare metal. */
  hypervisorType: string | null;
  /** `/proc/xen/capabilities` contains `control_d`: this kernel is dom0 (a domU sees xen too, but not this). */
  dom0: boolean;
}

/** `type=<...>` and `caps=<...>` lines (see readXenRuntime). */
export function parseXenRuntime(text: string): XenRuntime {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  const type = kv.get('type') || null;
  return { hypervisorType: type, dom0: type === 'xen' && /\bcontrol_d\b/.test(kv.get('caps') ?? '') };
}

export async function readXenRuntime(host: RemoteHost): Promise<XenRuntime> {
  const out = await host.read(sh`printf 'type=%s\ncaps=%s\n' "$(cat /sys/hypervisor/type 2>/dev/null)" "$(cat /proc/xen/capabilities 2>/dev/null)"`, {
    description: 'read /sys/hypervisor/type and /proc/xen/capabilities',
  });
  return parseXenRuntime(out);
}

/** `xl info` on a dom0, or null when xl is missing or cannot reach the hypervisor (not booted into Xen). */
export async function readXlInfo(host: RemoteHost): Promise<XlInfo | null> {
  const r = await host.run(sh`command -v xl >/dev/null 2>&1 || exit 127; xl info`, { description: 'xl info', okExitCodes: [0, 1, 127], timeoutMs: 60_000 });
  if (r.exitCode !== 0) return null;
  return parseXlInfo(r.stdout, { host: host.label, step: host.step });
}
