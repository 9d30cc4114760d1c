/**
 * The per-host ESXi installer ISO, made from the vendor's with xorriso (Debian's `xorriso`, run on the worker with
 * an argument vector — no shell): the kickstart goes in as `/KS.CFG`, and every `BOOT.CFG` (the BIOS one at the
 * root, the UEFI one in `/EFI/BOOT`) gets `ks=cdrom:/KS.CFG` on its `kernelopt=` line. The vendor's El Torito boot
 * records (BIOS `ISOLINUX.BIN`, UEFI `EFIBOOT.IMG`) are replayed as they were (`-boot_image any replay`), and the
 * result is checked: the same boot records, by platform and image path, as the source.
 *
 * Also: the version the ISO says it installs (`build=8.0.3-0.0.24022510` in BOOT.CFG), read before remastering
 * so a spec that expects another version is refused before the server is touched.
 */
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidSpecError, UnexpectedOutputError } from '../../common/errors';
import { runLocal } from '../../transports/local-tool';

/** Where the kickstart goes on the ISO, and what the installer is told. */
export const KS_ISO_PATH = '/KS.CFG';
export const KS_KERNELOPT = 'ks=cdrom:/KS.CFG';

const MAX_BOOT_CFG_BYTES = 64 * 1024;
const XORRISO = 'xorriso';
const REPORT_TIMEOUT_MS = 60_000;
const REMASTER_TIMEOUT_MS = 15 * 60_000;

export interface ElToritoEntry {
  n: number;
  platform: string;
  path: string;
}

/** `xorriso -report_el_torito plain` → the boot images: number, platform (BIOS / UEFI), image path. */
export function parseElTorito(report: string): ElToritoEntry[] {
  const platforms = new Map<number, string>();
  const paths = new Map<number, string>();
  for (const line of report.split('\n')) {
    let m = /^El Torito boot img :\s+(\d+)\s+(\S+)\s/.exec(line);
    if (m) platforms.set(Number(m[1]), m[2]!);
    m = /^El Torito img path :\s+(\d+)\s+(\S.*)$/.exec(line);
    if (m) paths.set(Number(m[1]), m[2]!.trim());
  }
  return [...platforms.entries()].sort(([a], [b]) => a - b).map(([n, platform]) => ({ n, platform, path: paths.get(n) ?? '?' }));
}

/** `kernelopt=…` with any earlier `ks=` dropped and `ks=cdrom:/KS.CFG` appended; every other line unchanged. */
export function editBootCfg(text: string, where: string, label: string): string {
  if (Buffer.byteLength(text) > MAX_BOOT_CFG_BYTES) {
    throw new UnexpectedOutputError(`${where} is larger than ${MAX_BOOT_CFG_BYTES} bytes`, { host: label, command: 'read BOOT.CFG' });
  }
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  let found = 0;
  const lines = text.split(/\r?\n/).map((line) => {
    const m = /^kernelopt=(.*)$/.exec(line);
    if (!m) return line;
    found++;
    const opts = m[1]!.split(/\s+/).filter((o) => o && !/^ks=/.test(o));
    return `kernelopt=${[...opts, KS_KERNELOPT].join(' ')}`;
  });
  if (found !== 1) {
    throw new UnexpectedOutputError(`${where} has ${found} kernelopt= lines`, {
      host: label,
      command: 'edit BOOT.CFG',
      expected: 'exactly one kernelopt= line (a VMware ESXi installer ISO)',
      observed: `${found}`,
    });
  }
  return lines.join(eol);
}

/** The version and build BOOT.CFG's `build=` line names (`build=8.0.3-0.0.24022510` → 8.0.3, 24022510). */
export function bootCfgProduct(text: string): { version: string; build: string } | undefined {
  const m = /^build=(\d{1,2}\.\d{1,2}\.\d{1,2})-[0-9.]*?(\d{4,12})\s*$/m.exec(text);
  return m ? { version: m[1]!, build: m[2]! } : undefined;
}

/** The files of the ISO named `name` (any directory), as xorriso's -find prints them. */
export function parseFind(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith("'/") && l.endsWith("'"))
    .map((l) => l.slice(1, -1));
}

async function xorriso(args: string[], label: string, what: string, timeoutMs = REPORT_TIMEOUT_MS) {
  return runLocal({ file: XORRISO, args, label, what, timeoutMs });
}

export async function elTorito(iso: string, label: string): Promise<ElToritoEntry[]> {
  const { stdout, stderr } = await xorriso(['-indev', iso, '-report_el_torito', 'plain'], label, 'read the El Torito boot records');
  // xorriso prints its reports on stdout and its messages on stderr; either may hold the table.
  return parseElTorito(`${stdout}\n${stderr}`);
}

export interface RemasterInput {
  /** The vendor ISO (already checked against its hash). */
  source: string;
  /** Where the per-host ISO goes (its directory must exist; the file is written at mode 0600). */
  output: string;
  kickstart: string;
  /** A private directory for the edited files (removed afterwards). */
  scratchParent: string;
  /** What the spec expects the ISO to install. */
  expect: { version: string; build?: string };
  label: string;
}

export interface RemasterResult {
  bootCfgs: string[];
  elTorito: ElToritoEntry[];
  /** The version BOOT.CFG names, when it names one. */
  isoProduct?: { version: string; build: string };
}

/** Extracts, edits and re-inserts the boot configurations, adds the kickstart, and checks the boot records. */
export async function remasterInstaller(r: RemasterInput): Promise<RemasterResult> {
  const label = r.label;
  const before = await elTorito(r.source, label);
  if (!before.length) {
    throw new UnexpectedOutputError('the installer ISO has no El Torito boot record', { host: label, command: 'xorriso -report_el_torito', observed: 'none' });
  }
  const found = parseFind(
    (await xorriso(['-osirrox', 'on', '-indev', r.source, '-find', '/', '-type', 'f', '-name', 'BOOT.CFG'], label, 'find BOOT.CFG')).stdout,
  ).filter((p) => p === '/BOOT.CFG' || p === '/EFI/BOOT/BOOT.CFG');
  if (!found.includes('/BOOT.CFG')) {
    throw new UnexpectedOutputError('the installer ISO has no /BOOT.CFG', {
      host: label,
      command: 'xorriso -find',
      expected: '/BOOT.CFG (a VMware ESXi installer ISO)',
      observed: found.join(', ') || 'none',
    });
  }
  const scratch = await mkdtemp(join(r.scratchParent, 'remaster-'));
  try {
    const locals = found.map((p, i) => join(scratch, `boot-${i}.cfg`));
    await xorriso(['-osirrox', 'on', '-indev', r.source, ...found.flatMap((p, i) => ['-extract', p, locals[i]!])], label, 'extract BOOT.CFG');
    let product: { version: string; build: string } | undefined;
    const maps: string[] = [];
    for (const [i, p] of found.entries()) {
      if ((await stat(locals[i]!)).size > MAX_BOOT_CFG_BYTES) {
        throw new UnexpectedOutputError(`${p} is larger than ${MAX_BOOT_CFG_BYTES} bytes`, { host: label, command: 'read BOOT.CFG' });
      }
      const text = await readFile(locals[i]!, 'utf8');
      product ??= bootCfgProduct(text);
      const edited = join(scratch, `boot-${i}.edited`);
      await writeFile(edited, editBootCfg(text, p, label), { mode: 0o600 });
      maps.push('-map', edited, p);
    }
    if (product && (product.version !== r.expect.version || (r.expect.build && product.build !== r.expect.build))) {
      throw new InvalidSpecError('the installer ISO installs another ESXi than the spec expects', [], {
        host: label,
        field: 'hypervisor.installer.version',
        expected: `${r.expect.version}${r.expect.build ? ` build ${r.expect.build}` : ''}`,
        observed: `${product.version} build ${product.build} (BOOT.CFG build=)`,
      });
    }
    const ks = join(scratch, 'KS.CFG');
    await writeFile(ks, r.kickstart, { mode: 0o600 });
    await xorriso(
      ['-indev', r.source, '-outdev', r.output, '-joliet', 'on', '-boot_image', 'any', 'replay', '-map', ks, KS_ISO_PATH, ...maps, '-end'],
      label,
      'remaster the installer ISO',
      REMASTER_TIMEOUT_MS,
    );
    await chmod(r.output, 0o600);
    const after = await elTorito(r.output, label);
    const key = (e: ElToritoEntry[]) => e.map((x) => `${x.platform} ${x.path}`).join(', ');
    if (key(after) !== key(before)) {
      throw new UnexpectedOutputError('the remastered ISO lost the vendor boot records', {
        host: label,
        command: 'xorriso -boot_image any replay',
        expected: key(before),
        observed: key(after) || 'none',
      });
    }
    return { bootCfgs: found, elTorito: after, ...(product ? { isoProduct: product } : {}) };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
