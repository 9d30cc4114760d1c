/**
 * Configuration files on a Linux host, handled so that an undo can restore them byte for byte:
 *   - observed as SHA-256 hashes (contents never leave the host in a step's state: a network file may hold a
 *     802.1X or Wi-Fi secret);
 *   - before a file is replaced or removed, its content is kept in a content-addressed store on the host
 *     (/var/lib/underlay/backup/<sha256>, root-only), from which an undo puts it back and checks the hash;
 *   - written atomically (a temporary file in the same directory, then rename), with an explicit mode.
 */
import { createHash } from 'node:crypto';
import { UnexpectedOutputError } from '../../common/errors';
import type { RemoteHost } from '../remote';
import { glob, join, sh, type Shell } from '../shell';

export const BACKUP_DIR = '/var/lib/underlay/backup';
/** Files underlay reads to parse (network configuration) are small; anything bigger is not what we think it is. */
export const MAX_CONFIG_BYTES = 256 * 1024;

/** path → sha256 of its content, or null when there is no such file. */
export type FileHashes = Record<string, string | null>;

export interface DesiredFile {
  path: string;
  /** null: the file must not exist. */
  content: string | null;
  /** Octal mode for a written file, e.g. '0644' (NetworkManager ignores keyfiles others can read: '0600'). */
  mode?: string;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export function hashOf(f: DesiredFile): string | null {
  return f.content === null ? null : sha256(f.content);
}

const HASH_LINE = /^(\S+)\t([0-9a-f]{64}|-)$/;

/** Hashes of the given paths (a missing path, or one that is not a regular file, is null). */
// A read runs as the login user when it may read the file (`command` skips the elevation alias), else elevated:
// NetworkManager keyfiles and the backup store are root-only (src/drivers/elevate.ts).
export async function hashFiles(host: RemoteHost, paths: readonly string[]): Promise<FileHashes> {
  if (!paths.length) return {};
  const script = sh`for p in ${[...paths]}; do if [ -f "$p" ] && [ ! -L "$p" ]; then printf '%s\t%s\n' "$p" "$({ if [ -r "$p" ]; then command sha256sum "$p"; else sha256sum "$p"; fi; } | cut -d' ' -f1)"; else printf '%s\t-\n' "$p"; fi; done`;
  const out = await host.read(script, { description: `hash ${paths.length} configuration file(s)` });
  const hashes: FileHashes = {};
  for (const line of out.split('\n').filter(Boolean)) {
    const m = HASH_LINE.exec(line);
    if (!m) throw new UnexpectedOutputError('file hash listing: expected "path<TAB>sha256|-"', { host: host.label, step: host.step, observed: line });
    hashes[m[1]!] = m[2] === '-' ? null : m[2]!;
  }
  for (const p of paths) if (!(p in hashes)) throw host.unexpected('file hash listing', `no line for ${p}`);
  return hashes;
}

/** Paths of regular files in a directory matching a shell glob (e.g. `*.network`), sorted. */
export async function listFiles(host: RemoteHost, dir: string, pattern: string): Promise<string[]> {
  const out = await host.read(sh`cd ${dir} 2>/dev/null || exit 0; for f in ${glob(pattern)}; do [ -f "$f" ] && printf '%s/%s\n' ${dir} "$f"; done; true`, {
    description: `list ${dir}/${pattern}`,
  });
  return out.split('\n').filter(Boolean).sort();
}

/** Reads small text files (configuration), each bounded; missing files are null. */
export async function readFiles(host: RemoteHost, paths: readonly string[]): Promise<Record<string, string | null>> {
  const out: Record<string, string | null> = {};
  for (const p of paths) {
    const r = await host.run(
      sh`if [ ! -f ${p} ]; then exit 3; elif [ -r ${p} ]; then command head -c ${MAX_CONFIG_BYTES + 1} ${p}; else head -c ${MAX_CONFIG_BYTES + 1} ${p}; fi`,
      { description: `read ${p}`, okExitCodes: [0, 3] },
    );
    if (r.exitCode === 3) out[p] = null;
    else if (Buffer.byteLength(r.stdout) > MAX_CONFIG_BYTES) throw host.unexpected(`read ${p}`, `larger than ${MAX_CONFIG_BYTES} bytes`);
    else out[p] = r.stdout;
  }
  return out;
}

/** Keeps a file's current content in the backup store (idempotent: the store is addressed by content). */
export function backupScript(path: string, store = BACKUP_DIR): Shell {
  // The store is root-only: for a non-root login the `[ -f ]` there is false and the copy is made again (same bytes).
  return sh`if [ -f ${path} ]; then mkdir -p -m 0700 ${store} && h=$({ if [ -r ${path} ]; then command sha256sum ${path}; else sha256sum ${path}; fi; } | cut -d' ' -f1) && { [ -f ${store}/"$h" ] || { cp -p ${path} ${store}/"$h.tmp" && mv -f ${store}/"$h.tmp" ${store}/"$h"; }; }; fi`;
}

/** Writes a file atomically with its mode (content spliced quoted: no shell interpretation; `tee` writes it). */
export function writeScript(f: DesiredFile & { content: string }): Shell {
  const tmp = `${f.path}.underlay-tmp`;
  const dir = f.path.slice(0, f.path.lastIndexOf('/')) || '/';
  return sh`mkdir -p ${dir} && printf '%s' ${f.content} | tee ${tmp} >/dev/null && chmod ${f.mode ?? '0644'} ${tmp} && mv -f ${tmp} ${f.path}`;
}

/**
 * Converges files to their desired content: each file that will be replaced or removed is backed up first.
 * One script; the caller runs it (and what activates the change) in the same command where order matters.
 */
export function convergeFilesScript(files: readonly DesiredFile[], now: FileHashes, store = BACKUP_DIR): Shell | null {
  const cmds: Shell[] = [];
  for (const f of files) {
    const want = hashOf(f);
    if (now[f.path] === want) continue;
    cmds.push(backupScript(f.path, store));
    cmds.push(f.content === null ? sh`rm -f ${f.path}` : writeScript(f as DesiredFile & { content: string }));
  }
  return cmds.length ? join('&&', cmds) : null;
}

/**
 * Puts files back to the content they had (by hash, from the backup store), or removes those that did not exist.
 * Fails (exit 4, naming the path) when a backup is missing or does not match its hash: nothing then claims a
 * byte-for-byte restore it could not do.
 */
export function restoreFilesScript(pre: FileHashes, now: FileHashes, store = BACKUP_DIR): Shell | null {
  const cmds: Shell[] = [];
  for (const [path, want] of Object.entries(pre)) {
    if (now[path] === want) continue;
    if (want === null) {
      cmds.push(backupScript(path, store), sh`rm -f ${path}`);
      continue;
    }
    const src = `${store}/${want}`;
    const tmp = `${path}.underlay-tmp`;
    cmds.push(
      backupScript(path, store),
      sh`{ [ "$(sha256sum ${src} 2>/dev/null | cut -d' ' -f1)" = ${want} ] || { echo ${`no backup of ${path} with sha256 ${want} in ${store}`} >&2; exit 4; }; }`,
      sh`mkdir -p ${path.slice(0, path.lastIndexOf('/')) || '/'} && cp -p ${src} ${tmp} && mv -f ${tmp} ${path}`,
    );
  }
  return cmds.length ? join('&&', cmds) : null;
}
