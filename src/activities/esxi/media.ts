/**
 * The per-host installer ISO of the ESXi install: where it comes from, how it is made, and how it is served.
 *
 * Configuration is the worker's (its environment), not the spec's — a spec names a file, the worker decides which
 * directory such files may come from and where its ISO server listens:
 *
 *   UNDERLAY_ISO_DIR        vendor installer ISOs a spec may name (hypervisor.installer.iso must be inside, after
 *                           symlinks are resolved). Default /var/lib/underlay/isos.
 *   UNDERLAY_ISO_WORK_DIR   the ISO server's own directory (mode 0700): per-host ISOs while an install runs, and the
 *                           server's generated certificate. Default /var/lib/underlay/iso-work.
 *   UNDERLAY_ISO_LISTEN     host:port the ISO server binds (an address the BMCs reach). Default 127.0.0.1:8443.
 *   UNDERLAY_ISO_URL        https://host[:port] the BMCs are given, when it differs from the listen address.
 *   UNDERLAY_ISO_CERT, UNDERLAY_ISO_KEY
 *                           the server's certificate and key (PEM); unset: made once by openssl (P-256, for the URL's
 *                           host) and kept in the work dir.
 *   UNDERLAY_ISO_MAX_BYTES  largest vendor ISO accepted. Default 4 GiB.
 *
 * The per-host ISO holds secrets (the root password's hash, the host's TLS key): it is written at mode 0600 into the
 * 0700 work dir, served only under its per-install token, and deleted when the install is verified and by undo.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, chmod, lstat, mkdir, mkdtemp, readFile, realpath, rename, rm } from 'node:fs/promises';
import { readScopedFile } from '../../transports/secret-scope';
import { isIP } from 'node:net';
import { join, relative, sep } from 'node:path';
import { CredentialUnavailableError, InvalidSpecError } from '../../common/errors';
import { CRYPT_ARGS, parseCryptHash, renderKickstart } from '../../drivers/esxi/kickstart';
import { remasterInstaller, type RemasterResult } from '../../drivers/esxi/iso';
import type { ServerSpec } from '../../spec/server';
import { IsoServer, pruneIsos, removeIsos } from '../../transports/iso-server';
import { runLocal } from '../../transports/local-tool';
import { loadPinnedCertificate } from '../../transports/pinned-tls';
import type { EsxiSpec } from './bmc';

export interface IsoConfig {
  isoDir: string;
  workDir: string;
  host: string;
  port: number;
  publicUrl?: string;
  certFile?: string;
  keyFile?: string;
  maxBytes: number;
}

const STALE_ISO_MS = 24 * 3600_000;

/** The worker's ISO configuration, from its environment. */
export function isoConfig(env: NodeJS.ProcessEnv = process.env): IsoConfig {
  const listen = env.UNDERLAY_ISO_LISTEN ?? '127.0.0.1:8443';
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new InvalidSpecError('UNDERLAY_ISO_LISTEN must be host:port', [{ path: 'UNDERLAY_ISO_LISTEN', message: listen }]);
  const url = env.UNDERLAY_ISO_URL;
  if (url !== undefined && !/^https:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(url)) {
    throw new InvalidSpecError('UNDERLAY_ISO_URL must be https://host[:port]', [{ path: 'UNDERLAY_ISO_URL', message: 'not https://host[:port]' }]);
  }
  if ((env.UNDERLAY_ISO_CERT === undefined) !== (env.UNDERLAY_ISO_KEY === undefined)) {
    throw new InvalidSpecError('set both UNDERLAY_ISO_CERT and UNDERLAY_ISO_KEY, or neither', [
      { path: 'UNDERLAY_ISO_CERT', message: 'one without the other' },
    ]);
  }
  const maxBytes = env.UNDERLAY_ISO_MAX_BYTES ? Number(env.UNDERLAY_ISO_MAX_BYTES) : 4 * 1024 ** 3;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
    throw new InvalidSpecError('UNDERLAY_ISO_MAX_BYTES must be a positive integer', [{ path: 'UNDERLAY_ISO_MAX_BYTES', message: 'not a number' }]);
  }
  return {
    isoDir: env.UNDERLAY_ISO_DIR ?? '/var/lib/underlay/isos',
    workDir: env.UNDERLAY_ISO_WORK_DIR ?? '/var/lib/underlay/iso-work',
    host: m[1]!.replace(/^\[|\]$/g, ''),
    port,
    ...(url ? { publicUrl: url } : {}),
    ...(env.UNDERLAY_ISO_CERT ? { certFile: env.UNDERLAY_ISO_CERT, keyFile: env.UNDERLAY_ISO_KEY } : {}),
    maxBytes,
  };
}

async function ensureWorkDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (!st.isDirectory())
    throw new InvalidSpecError(`UNDERLAY_ISO_WORK_DIR ${dir} is not a directory`, [{ path: 'UNDERLAY_ISO_WORK_DIR', message: 'not a directory' }]);
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

/** The server's certificate and key: configured, or made once for the public URL's host and kept in the work dir. */
async function serverCertificate(c: IsoConfig): Promise<{ certFile: string; keyFile: string }> {
  if (c.certFile && c.keyFile) return { certFile: c.certFile, keyFile: c.keyFile };
  const certFile = join(c.workDir, 'iso-server.crt');
  const keyFile = join(c.workDir, 'iso-server.key');
  if (
    await access(certFile).then(
      () => access(keyFile).then(() => true),
      () => false,
    )
  )
    return { certFile, keyFile };
  const host = c.publicUrl ? new URL(c.publicUrl).hostname.replace(/^\[|\]$/g, '') : c.host;
  const san = isIP(host) ? `IP:${host}` : `DNS:${host}`;
  await runLocal({
    file: 'openssl',
    args: ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '825', '-subj', '/CN=underlay ISO server'].concat([
      '-addext',
      `subjectAltName=${san}`,
      '-keyout',
      keyFile + '.new',
      '-out',
      certFile + '.new',
    ]),
    label: 'iso-server',
    what: 'make the ISO server certificate',
    timeoutMs: 30_000,
  });
  await chmod(keyFile + '.new', 0o600);
  await rename(keyFile + '.new', keyFile);
  await rename(certFile + '.new', certFile);
  return { certFile, keyFile };
}

let shared: { key: string; server: Promise<IsoServer> } | undefined;

/** The worker's ISO server (started on first use; one per worker process and configuration). */
export function isoServer(c: IsoConfig = isoConfig()): Promise<IsoServer> {
  const key = JSON.stringify(c);
  if (shared?.key === key) return shared.server;
  const previous = shared?.server;
  const server = (async () => {
    await previous?.then((s) => s.stop()).catch(() => undefined);
    await ensureWorkDir(c.workDir);
    await pruneIsos(c.workDir, STALE_ISO_MS);
    const { certFile, keyFile } = await serverCertificate(c);
    return IsoServer.start({ host: c.host, port: c.port, ...(c.publicUrl ? { publicUrl: c.publicUrl } : {}), certFile, keyFile, dir: c.workDir });
  })();
  shared = { key, server };
  server.catch(() => {
    if (shared?.server === server) shared = undefined;
  });
  return server;
}

/** Stops the ISO server of this process, if one runs (tests; worker shutdown). */
export async function stopIsoServer(): Promise<void> {
  const s = shared;
  shared = undefined;
  await s?.server.then((srv) => srv.stop()).catch(() => undefined);
}

/** The ISO server's certificate, if it has one (read without starting it: undo runs where no install ran). */
export async function isoServerCertificatePem(c: IsoConfig = isoConfig()): Promise<string | undefined> {
  const certFile = c.certFile ?? join(c.workDir, 'iso-server.crt');
  return readFile(certFile, 'utf8').catch(() => undefined);
}

/** Deletes every per-host ISO of this server on this worker. */
export function removeHostIsos(serverId: string, keepTokenHash?: string, c: IsoConfig = isoConfig()): Promise<number> {
  return removeIsos(c.workDir, serverId, keepTokenHash);
}

/** The vendor ISO the spec names: inside UNDERLAY_ISO_DIR, a regular file, bounded in size, with the pinned hash. */
export async function checkSourceIso(spec: ServerSpec, esxi: EsxiSpec, c: IsoConfig, onProgress: () => void): Promise<string> {
  const field = 'hypervisor.installer.iso';
  const ctx = { host: spec.id, step: 'hypervisor' as const, field };
  let dir: string;
  let file: string;
  try {
    dir = await realpath(c.isoDir);
    file = await realpath(esxi.installer.iso);
  } catch (e) {
    throw new InvalidSpecError(`cannot read the installer ISO (${(e as NodeJS.ErrnoException).code ?? 'error'})`, [], { ...ctx, observed: esxi.installer.iso });
  }
  const rel = relative(dir, file);
  if (rel === '' || rel.startsWith('..') || rel.startsWith(sep)) {
    throw new InvalidSpecError('the installer ISO is outside the worker’s ISO directory', [], {
      ...ctx,
      expected: `a file under ${dir} (UNDERLAY_ISO_DIR)`,
      observed: file,
    });
  }
  const st = await lstat(file);
  if (!st.isFile()) throw new InvalidSpecError('the installer ISO is not a regular file', [], { ...ctx, observed: file });
  if (st.size > c.maxBytes) {
    throw new InvalidSpecError('the installer ISO is too large', [], { ...ctx, expected: `≤ ${c.maxBytes} bytes (UNDERLAY_ISO_MAX_BYTES)`, observed: st.size });
  }
  const hash = createHash('sha256');
  let read = 0;
  for await (const chunk of createReadStream(file, { end: c.maxBytes })) {
    hash.update(chunk as Buffer);
    read += (chunk as Buffer).length;
    if (read % (64 * 1024 * 1024) < (chunk as Buffer).length) onProgress();
  }
  const sha = hash.digest('hex');
  if (sha !== esxi.installer.sha256) {
    throw new InvalidSpecError('the installer ISO is not the pinned one', [], {
      ...ctx,
      field: 'hypervisor.installer.sha256',
      expected: esxi.installer.sha256,
      observed: sha,
    });
  }
  return file;
}

/** A small secret file a spec names: through the worker's secret scope (its credentials directory, owner-only, bounded). */
export async function readSecretFile(path: string, serverId: string, field: string): Promise<string> {
  const buf = readScopedFile(path, { kind: 'secret', what: field }, { host: serverId, field });
  try {
    return buf.toString('utf8');
  } finally {
    buf.fill(0);
  }
}

/** The root password (first line of hypervisor.rootPassword.file). */
export async function rootPassword(spec: ServerSpec, esxi: EsxiSpec): Promise<string> {
  const field = 'hypervisor.rootPassword.file';
  const text = await readSecretFile(esxi.rootPassword.file, spec.id, field);
  const password = text.split('\n')[0]!.replace(/\r$/, '');
  if (!password) throw new CredentialUnavailableError(`${esxi.rootPassword.file} holds no password on its first line`, { host: spec.id, field });
  return password;
}

export interface HostIso {
  /** For the BMC (holds the token). */
  url: string;
  /** The token: masked out of anything the BMC says back. */
  token: string;
  tokenHash: string;
  remaster: RemasterResult;
}

/** Makes this host's installer ISO and places it where the worker's ISO server serves it. */
export async function buildHostIso(spec: ServerSpec, esxi: EsxiSpec, server: IsoServer, c: IsoConfig, progress: (note: string) => void): Promise<HostIso> {
  const source = await checkSourceIso(spec, esxi, c, () => progress('hashing the installer ISO'));
  const x509 = await loadPinnedCertificate(esxi.hostCertificate, spec.id, 'hypervisor.hostCertificate');
  const keyPem = await readSecretFile(esxi.hostCertificate.keyFile, spec.id, 'hypervisor.hostCertificate.keyFile');
  const { stdout } = await runLocal({
    file: 'openssl',
    args: CRYPT_ARGS,
    input: (await rootPassword(spec, esxi)) + '\n',
    label: spec.id,
    what: 'hash the root password',
    timeoutMs: 30_000,
  });
  const kickstart = renderKickstart({
    serverId: spec.id,
    ...(isIP(spec.management.address) ? {} : { hostname: spec.management.address }),
    ...(esxi.kickstart.disk ? { disk: esxi.kickstart.disk } : {}),
    network: esxi.kickstart.network,
    rootPasswordHash: parseCryptHash(stdout, spec.id),
    certificatePem: x509.toString(),
    keyPem,
  });
  const slot = server.slot(spec.id);
  const scratch = await mkdtemp(join(c.workDir, 'build-'));
  try {
    const out = join(scratch, 'host.iso');
    progress(`remastering ${esxi.installer.iso} for ${spec.id}`);
    const remaster = await remasterInstaller({
      source,
      output: out,
      kickstart,
      scratchParent: scratch,
      expect: { version: esxi.installer.version, ...(esxi.installer.build ? { build: esxi.installer.build } : {}) },
      label: spec.id,
    });
    await rename(out, slot.file);
    const token = new URL(slot.url).pathname.split('/')[2]!;
    return { url: slot.url, token, tokenHash: slot.tokenHash, remaster };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
