/**
 * GRUB on a Debian Xen host: make the Xen entry the default boot, with dom0's memory on Xen's command line.
 *
 * Debian's xen-hypervisor-common ships /etc/default/grub.d/xen.cfg, which sets GRUB_DEFAULT to the Xen entry
 * when XEN_OVERRIDE_GRUB_DEFAULT is 1 (or unset, with a warning). That file is a conffile: underlay leaves it
 * alone and writes its own drop-in, sorted before it (grub-mkconfig sources /etc/default/grub.d/*.cfg in glob
 * order), so xen.cfg reads underlay's XEN_OVERRIDE_GRUB_DEFAULT=1. Undo deletes the drop-in (or restores what
 * was there) and runs update-grub again.
 *
 * What the next boot will be is read back from the generated /boot/grub/grub.cfg (its `set default=`) and
 * grubenv (saved_entry, next_entry), not assumed from the config.
 */
import { sh, type Shell } from '../shell';
import type { RemoteHost } from '../remote';

/** Sorted before Debian's xen.cfg ('u' < 'x'), which reads XEN_OVERRIDE_GRUB_DEFAULT. */
export const XEN_DROP_IN = '/etc/default/grub.d/underlay-xen.cfg';
export const GRUB_CFG = '/boot/grub/grub.cfg';
export const GRUBENV = '/boot/grub/grubenv';

/** The drop-in for a spec: Xen by default, and a fixed dom0 allocation when the spec sets one. */
export function renderXenDropIn(dom0Option: string | null): string {
  const lines = [
    '# Written by underlay (hypervisor step, Xen). Boots the Xen entry by default: read by',
    '# /etc/default/grub.d/xen.cfg, which sorts after this file. To undo: delete this file, run update-grub.',
    'XEN_OVERRIDE_GRUB_DEFAULT=1',
  ];
  // Appended to what /etc/default/grub may already pass to Xen; Xen reads options in order, the last one wins.
  if (dom0Option) lines.push(`GRUB_CMDLINE_XEN_DEFAULT="\${GRUB_CMDLINE_XEN_DEFAULT:+$GRUB_CMDLINE_XEN_DEFAULT }${dom0Option}"`);
  return lines.join('\n') + '\n';
}

/** Writes a file atomically (temp file in the same directory, then rename), mode 0644. */
export function writeFileAtomically(path: string, content: string): Shell {
  const tmp = `${path}.underlay-tmp`;
  return sh`printf '%s' ${content} | tee ${tmp} >/dev/null && chmod 0644 ${tmp} && mv -f ${tmp} ${path}`;
}

/** Prints the file, or exits 3 when it does not exist. */
export function readFileOrAbsent(path: string): Shell {
  return sh`if [ -e ${path} ]; then cat ${path}; else exit 3; fi`;
}

export async function readOptionalFile(host: RemoteHost, path: string): Promise<string | null> {
  const r = await host.run(readFileOrAbsent(path), { description: `read ${path}`, okExitCodes: [0, 3] });
  return r.exitCode === 3 ? null : r.stdout;
}

export function updateGrub(): Shell {
  return sh`update-grub`;
}

/**
 * The configuration grub-mkconfig would see: /etc/default/grub, then /etc/default/grub.d/*.cfg in order, sourced
 * the way grub-mkconfig sources them (output discarded; xen.cfg calls gettext). Prints KEY=value lines.
 */
export function effectiveGrubConfigScript(root = ''): Shell {
  const grub = `${root}/etc/default/grub`;
  const dir = `${root}/etc/default/grub.d`;
  return sh`gettext() { printf '%s' "$1"; }
{ if [ -f ${grub} ]; then . ${grub}; fi
  for x in ${dir}/*.cfg; do if [ -e "$x" ]; then . "$x"; fi; done; } >/dev/null 2>&1
for v in GRUB_DEFAULT XEN_OVERRIDE_GRUB_DEFAULT GRUB_CMDLINE_XEN_DEFAULT GRUB_CMDLINE_XEN; do
  eval "val=\\\${$v-}"; printf '%s=%s\n' "$v" "$(printf '%s' "$val" | tr '\n' ' ')"
done`;
}

export interface GrubConfig {
  GRUB_DEFAULT: string;
  XEN_OVERRIDE_GRUB_DEFAULT: string;
  GRUB_CMDLINE_XEN_DEFAULT: string;
  GRUB_CMDLINE_XEN: string;
}

export function parseEffectiveGrubConfig(text: string): GrubConfig {
  const out: GrubConfig = { GRUB_DEFAULT: '', XEN_OVERRIDE_GRUB_DEFAULT: '', GRUB_CMDLINE_XEN_DEFAULT: '', GRUB_CMDLINE_XEN: '' };
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i <= 0) continue;
    const k = line.slice(0, i);
    if (k in out) out[k as keyof GrubConfig] = line.slice(i + 1).trim();
  }
  return out;
}

export async function readEffectiveGrubConfig(host: RemoteHost): Promise<GrubConfig> {
  return parseEffectiveGrubConfig(await host.read(effectiveGrubConfigScript(), { description: 'evaluate /etc/default/grub and grub.d/*.cfg' }));
}

// ---- grub.cfg -------------------------------------------------------------------------------------------------

export interface GrubEntry {
  kind: 'menuentry' | 'submenu';
  title: string;
  /** `$menuentry_id_option 'id'`, when present. */
  id?: string;
  /** Loads the Xen hypervisor (multiboot/multiboot2 of a xen image, or xen_hypervisor). */
  xen: boolean;
  children: GrubEntry[];
}

export interface GrubCfg {
  entries: GrubEntry[];
  /** The `set default="..."` of the normal boot (not the one-shot `${next_entry}` branch), unquoted. */
  default: string | null;
}

/** Parses a grub-script quoted word at the start of `s`: '...' (with '\'' joins), "...", or bare. */
function word(s: string): { value: string; rest: string } | null {
  let i = 0;
  let value = '';
  const t = s.trimStart();
  if (!t) return null;
  while (i < t.length && !/\s/.test(t[i]!)) {
    const c = t[i]!;
    if (c === "'") {
      const end = t.indexOf("'", i + 1);
      if (end < 0) return null;
      value += t.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      let j = i + 1;
      while (j < t.length && t[j] !== '"') {
        if (t[j] === '\\' && j + 1 < t.length) j++;
        value += t[j];
        j++;
      }
      i = j + 1;
    } else if (c === '\\' && i + 1 < t.length) {
      value += t[i + 1];
      i += 2;
    } else {
      value += c;
      i++;
    }
  }
  return { value, rest: t.slice(i) };
}

const XEN_LOADER = /^\s*(?:multiboot2?|xen_hypervisor)\s+(?:--\S+\s+)*\S*xen[^/\s]*(?:\s|$)/;

/** Entries (nested in submenus) and the normal-boot default of a generated grub.cfg. */
export function parseGrubCfg(text: string): GrubCfg {
  const root: GrubEntry = { kind: 'submenu', title: '', xen: false, children: [] };
  const stack: Array<GrubEntry | null> = [root]; // null: a non-menu block (function ... {)
  let def: string | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const top = stack[stack.length - 1];
    if (line === '}') {
      if (stack.length > 1) stack.pop();
      continue;
    }
    const menu = /^(menuentry|submenu)\s+(.*)$/.exec(line);
    if (menu && line.endsWith('{')) {
      const w = word(menu[2]!);
      const id = /\$menuentry_id_option\s+'([^']*)'/.exec(menu[2]!)?.[1];
      const entry: GrubEntry = { kind: menu[1] as GrubEntry['kind'], title: w?.value ?? '', ...(id ? { id } : {}), xen: false, children: [] };
      const parent = stack.filter((e): e is GrubEntry => e !== null).at(-1)!;
      parent.children.push(entry);
      stack.push(entry);
      continue;
    }
    if (line.endsWith('{')) {
      stack.push(null);
      continue;
    }
    if (top && top !== root && XEN_LOADER.test(line)) top.xen = true;
    const set = /^set\s+default=(.*)$/.exec(line);
    if (set) {
      const v = word(set[1]!)?.value ?? '';
      if (v !== '${next_entry}') def = v;
    }
  }
  return { entries: root.children, default: def };
}

/** Parses `grub-editenv list` (KEY=value lines). */
export function parseGrubEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

export interface NextBoot {
  /** How the default was chosen: `next_entry` (one-shot), `saved_entry`, or `default`. */
  source: 'next_entry' | 'saved_entry' | 'default';
  /** The selector (number, title, id, or a `>` path) before resolution. */
  selector: string;
  /** Titles from the top level down to the entry that boots, or null when the selector matches nothing. */
  path: string[] | null;
  xen: boolean;
}

function pick(entries: GrubEntry[], sel: string): GrubEntry | undefined {
  if (/^\d+$/.test(sel)) return entries[Number(sel)];
  return entries.find((e) => e.title === sel || e.id === sel);
}

/** What GRUB boots next: the one-shot next_entry, else `set default` (`${saved_entry}` read from grubenv). */
export function resolveNextBoot(cfg: GrubCfg, env: Record<string, string>): NextBoot | null {
  let source: NextBoot['source'] = 'default';
  let selector = cfg.default;
  if (env.next_entry) {
    source = 'next_entry';
    selector = env.next_entry;
  } else if (selector === '${saved_entry}') {
    source = 'saved_entry';
    selector = env.saved_entry || '0';
  }
  if (selector === null) selector = '0';
  let level = cfg.entries;
  const path: string[] = [];
  let entry: GrubEntry | undefined;
  for (const part of selector.split('>')) {
    entry = pick(level, part);
    if (!entry) return { source, selector, path: null, xen: false };
    path.push(entry.title);
    level = entry.children;
  }
  // A submenu chosen as a whole boots its first entry.
  while (entry && entry.kind === 'submenu' && entry.children.length) {
    entry = entry.children[0]!;
    path.push(entry.title);
  }
  return { source, selector, path, xen: entry?.xen ?? false };
}

/** grub.cfg and grubenv as the host has them (null when GRUB is not installed there). */
export async function readNextBoot(host: RemoteHost): Promise<NextBoot | null> {
  const cfg = await readOptionalFile(host, GRUB_CFG);
  if (cfg === null) return null;
  const env = await host.run(sh`if command -v grub-editenv >/dev/null 2>&1 && [ -e ${GRUBENV} ]; then grub-editenv ${GRUBENV} list; fi`, {
    description: 'grub-editenv list',
  });
  return resolveNextBoot(parseGrubCfg(cfg), parseGrubEnv(env.stdout));
}
