/**
 * Debian ifupdown's interfaces(5) files, as far as underlay needs them: which file defines an interface
 * (`auto`, `allow-*`, `iface` stanzas), and the same file with those definitions disabled (commented out with a
 * marker) so that a NIC underlay puts into a bond is not also brought up on its own — one manager, one owner.
 * The undo restores the original file byte for byte from the backup store (files.ts), not by un-commenting.
 */

/** Lines that start a stanza (interfaces(5)): everything until the next one belongs to it. */
const STANZA = /^\s*(iface|mapping|auto|allow-[a-z0-9-]+|source|source-directory|no-auto-down|no-scripts|rename)\b/;
export const DISABLED_MARK = '#underlay-disabled# ';

/** Interfaces a file brings up or defines (from `auto`/`allow-*` lines and `iface` stanzas). */
export function definedInterfaces(text: string): string[] {
  const out = new Set<string>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '');
    const m = /^\s*(auto|allow-[a-z0-9-]+|iface)\s+(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === 'iface') {
      const name = m[2]!.trim().split(/\s+/)[0];
      if (name) out.add(name);
    } else for (const n of m[2]!.trim().split(/\s+/)) if (n) out.add(n);
  }
  return [...out];
}

/**
 * The file with every definition of `ifaces` disabled: their `iface` stanzas commented out (with the marker),
 * and their names removed from `auto` / `allow-*` lines (a line left with no name is commented out too).
 * Lines of other interfaces are untouched, byte for byte.
 */
export function disableInterfaces(text: string, ifaces: readonly string[]): string {
  const drop = new Set(ifaces);
  const out: string[] = [];
  let inDropped = false;
  for (const raw of text.split('\n')) {
    const code = raw.replace(/#.*$/, '');
    if (STANZA.test(code)) inDropped = false;
    const start = /^(\s*)(auto|allow-[a-z0-9-]+|iface)\s+(.*?)\s*$/.exec(code);
    if (start && start[2] === 'iface') {
      const name = start[3]!.split(/\s+/)[0]!;
      inDropped = drop.has(name);
      out.push(inDropped ? DISABLED_MARK + raw : raw);
      continue;
    }
    if (start) {
      const names = start[3]!.split(/\s+/).filter(Boolean);
      const keep = names.filter((n) => !drop.has(n));
      if (keep.length === names.length) out.push(raw);
      else if (!keep.length) out.push(DISABLED_MARK + raw);
      else out.push(`${start[1]}${start[2]} ${keep.join(' ')}`, `${DISABLED_MARK}${start[2]} ${names.filter((n) => drop.has(n)).join(' ')}`);
      continue;
    }
    out.push(inDropped && raw.trim() !== '' ? DISABLED_MARK + raw : raw);
  }
  return out.join('\n');
}
