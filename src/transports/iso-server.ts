/**
 * The worker's ISO server: HTTPS that serves the per-host installer ISOs to BMCs' virtual media, and nothing else.
 *
 * - **Only its own files.** It serves files of its own directory named `<serverId>-<sha256(token)>.iso`, regular
 *   files (lstat: no symlinks), owned by the worker's user, mode 0600 — files the worker wrote. No other path is
 *   mapped: the URL holds a server id and a token, never a file name.
 * - **Authenticated per install.** Each ISO gets a new random 256-bit token, carried in the URL path
 *   (`/iso/<token>/<serverId>.iso`) — the one form of credential every BMC's InsertMedia accepts. The token is
 *   never stored: the file name holds its SHA-256, so a request is looked up by hashing the token it brings. Tokens
 *   live only in the URL handed to the BMC (and the BMC's VirtualMedia `Image` while inserted); the server's log
 *   and every message name the server id only.
 * - **Bounded.** GET and HEAD only, a fixed path pattern, single byte ranges (`Range: bytes=a-b`, what BMCs use
 *   to read a CD image on demand; several ranges get the whole file), a connection cap, idle timeouts.
 * - **Survives a worker restart on the same machine**: nothing is in memory but the listening socket, so a new
 *   process on the same directory, port and certificate serves the same URLs.
 *
 * TLS: a certificate the operator configures, or one the worker makes for the public URL's host. The BMC can pin
 * it (Redfish VirtualMedia `Certificates` + `VerifyCertificate`, which src/drivers/redfish supports).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface IsoServerOptions {
  /** Listen address and port (port 0: any free port — tests only; a restarted worker must find the same port). */
  host: string;
  port: number;
  /** What the BMC connects to, `https://host[:port]`; default `https://<host>:<port>`. */
  publicUrl?: string;
  certFile: string;
  keyFile: string;
  /** The server's own directory (mode 0700): the ISOs it serves. */
  dir: string;
  maxConnections?: number;
}

export interface IsoServeLogEntry {
  serverId: string;
  method: string;
  status: number;
  /** Bytes sent in the body. */
  bytes: number;
  /** The byte range served, `a-b`, when the request asked for one. */
  range?: string;
  at: number;
}

export interface IsoSlot {
  /** Where the ISO must be written (mode 0600) to be served. */
  file: string;
  /** The URL for the BMC (holds the token: a secret while the ISO exists). */
  url: string;
  /** The token's SHA-256 (hex): names the file, safe to record. */
  tokenHash: string;
}

const PATH_RE = /^\/iso\/([A-Za-z0-9_-]{43})\/([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.iso$/;
const SERVER_ID_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const FILE_RE = /^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)-([0-9a-f]{64})\.iso$/;
const LOG_KEEP = 1000;

/**
 * An ISO URL of the shape this server hands out (`…/iso/<token>/<serverId>.iso`), whichever worker made it: its
 * base, token and server id. What a step reads back from a BMC is recognised (and masked) with this, without a server.
 */
export function parseIsoUrl(url: string): { base: string; token: string; serverId: string } | undefined {
  const at = url.indexOf('/iso/');
  if (at < 0 || !/^https:\/\/[^/]+$/.test(url.slice(0, at))) return undefined;
  const m = PATH_RE.exec(url.slice(at));
  return m ? { base: url.slice(0, at), token: m[1]!, serverId: m[2]! } : undefined;
}

/** The URL with its token masked: what may be shown, logged or recorded. */
export function maskIsoUrl(url: string): string {
  const p = parseIsoUrl(url);
  return p ? `${p.base}/iso/***/${p.serverId}.iso` : url;
}

/** SHA-256 (hex) of an ISO URL's token: names the file that URL serves. */
export function isoTokenHash(token: string): string {
  return sha256hex(token);
}

function sha256hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** The single byte range of a Range header, or null (serve the whole file), or 'invalid' (416). */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'invalid' {
  if (!header) return null;
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!m) return header.includes(',') ? null : 'invalid';
  const [, a, b] = m;
  if (a === '' && b === '') return 'invalid';
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'invalid';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size || end < start) return 'invalid';
  return { start, end };
}

export class IsoServer {
  readonly #server: Server;
  readonly #dir: string;
  #publicUrl = '';
  readonly #certificatePem: string;
  readonly #log: IsoServeLogEntry[] = [];
  readonly #uid: number | undefined;

  private constructor(server: Server, dir: string, certificatePem: string) {
    this.#server = server;
    this.#dir = dir;
    this.#certificatePem = certificatePem;
    this.#uid = process.getuid?.();
  }

  static async start(o: IsoServerOptions): Promise<IsoServer> {
    const [cert, key] = await Promise.all([readFile(o.certFile, 'utf8'), readFile(o.keyFile)]);
    const server = createServer({ cert, key, minVersion: 'TLSv1.2' });
    const self = new IsoServer(server, o.dir, cert);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void self.#handle(req, res));
    server.maxConnections = o.maxConnections ?? 32;
    server.headersTimeout = 20_000;
    server.requestTimeout = 30_000;
    // Idle sockets close; a transfer in progress is not idle.
    server.setTimeout(120_000, (socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // The server must not keep a worker (or a test) alive on its own.
    server.unref();
    const port = (server.address() as AddressInfo).port;
    const host = o.host.includes(':') ? `[${o.host}]` : o.host;
    self.#publicUrl = (o.publicUrl ?? `https://${host}:${port}`).replace(/\/+$/, '');
    return self;
  }

  /** The base URL the BMC is given. */
  get url(): string {
    return this.#publicUrl;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** The server's certificate (PEM): what a BMC that verifies media certificates is told to trust. */
  get certificatePem(): string {
    return this.#certificatePem;
  }

  /** Requests served so far (the last 1000): server id, method, status, bytes, range. Never the token. */
  get log(): readonly IsoServeLogEntry[] {
    return this.#log;
  }

  /** A new place for a server's ISO: its file and its URL with a fresh token. */
  slot(serverId: string): IsoSlot {
    if (!SERVER_ID_RE.test(serverId)) throw new TypeError(`not a server id: ${JSON.stringify(serverId)}`);
    const token = randomBytes(32).toString('base64url');
    const tokenHash = sha256hex(token);
    return { file: join(this.#dir, `${serverId}-${tokenHash}.iso`), url: `${this.#publicUrl}/iso/${token}/${serverId}.iso`, tokenHash };
  }

  /** Whether `url` is one of this server's ISO URLs (its base): the server id and the token's hash. */
  recognise(url: string): { serverId: string; tokenHash: string } | undefined {
    const p = parseIsoUrl(url);
    return p && p.base === this.#publicUrl ? { serverId: p.serverId, tokenHash: sha256hex(p.token) } : undefined;
  }

  /** The file an ISO URL of this server maps to. */
  fileOf(serverId: string, tokenHash: string): string {
    return isoFile(this.#dir, serverId, tokenHash);
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => {
      this.#server.close(() => r());
      this.#server.closeAllConnections();
    });
  }

  #record(e: Omit<IsoServeLogEntry, 'at'>): void {
    this.#log.push({ ...e, at: Date.now() });
    if (this.#log.length > LOG_KEEP) this.#log.splice(0, this.#log.length - LOG_KEEP);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? '';
    const m = PATH_RE.exec(req.url ?? '');
    const serverId = m?.[2] ?? '-';
    const answer = (status: number, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Cache-Control': 'no-store', 'Content-Length': '0', ...headers });
      res.end();
      this.#record({ serverId, method, status, bytes: 0 });
    };
    if (method !== 'GET' && method !== 'HEAD') return answer(405, { Allow: 'GET, HEAD' });
    if (!m) return answer(404);
    const file = isoFile(this.#dir, m[2]!, sha256hex(m[1]!));
    const st = await lstat(file).catch(() => undefined);
    // Only a file this worker wrote for this purpose: regular, its own, private.
    if (!st || !st.isFile() || (st.mode & 0o077) !== 0 || (this.#uid !== undefined && st.uid !== this.#uid)) return answer(404);
    const size = st.size;
    const range = parseRange(req.headers.range, size);
    if (range === 'invalid') return answer(416, { 'Content-Range': `bytes */${size}` });
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const length = size === 0 ? 0 : end - start + 1;
    const headers: Record<string, string> = {
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(length),
      'Accept-Ranges': 'bytes',
      'Content-Disposition': `attachment; filename="${m[2]}.iso"`,
      'Cache-Control': 'no-store',
    };
    if (range) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    const status = range ? 206 : 200;
    res.writeHead(status, headers);
    if (method === 'HEAD' || length === 0) {
      res.end();
      this.#record({ serverId, method, status, bytes: 0, ...(range ? { range: `${start}-${end}` } : {}) });
      return;
    }
    let sent = 0;
    const stream = createReadStream(file, { start, end });
    stream.on('data', (c) => (sent += c.length));
    stream.on('error', () => res.destroy());
    res.on('close', () => {
      stream.destroy();
      this.#record({ serverId, method, status, bytes: sent, ...(range ? { range: `${start}-${end}` } : {}) });
    });
    stream.pipe(res);
  }
}

/** Where a server's ISO for a token hash lives in an ISO directory. */
export function isoFile(dir: string, serverId: string, tokenHash: string): string {
  return join(dir, `${serverId}-${tokenHash}.iso`);
}

/** Deletes every ISO of a server in an ISO directory (all tokens but `keepTokenHash`). No server needed. */
export async function removeIsos(dir: string, serverId: string, keepTokenHash?: string): Promise<number> {
  let n = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = FILE_RE.exec(name);
    if (!m || m[1] !== serverId || m[2] === keepTokenHash) continue;
    await rm(join(dir, name), { force: true });
    n++;
  }
  return n;
}

/** Deletes ISOs older than `ageMs` (left by installs a worker never finished). */
export async function pruneIsos(dir: string, ageMs: number): Promise<number> {
  let n = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!FILE_RE.test(name)) continue;
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > ageMs) {
      await rm(join(dir, name), { force: true });
      n++;
    }
  }
  return n;
}
