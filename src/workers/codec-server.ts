/**
 * A codec server for the Temporal Web UI and CLI ("Remote Codec Endpoint", `--codec-endpoint`): with payload
 * encryption on, the UI shows ciphertext until it can POST payloads here to be decoded.
 *
 *   POST /decode   {"payloads":[{"metadata":{"<key>":"<base64>"},"data":"<base64>"}]}  →  the same shape, decrypted
 *   POST /encode   the reverse (the UI uses it for e.g. signal input typed in the browser)
 *   OPTIONS        CORS preflight: allowed only for the configured origin(s)
 *
 * Whoever can call /decode reads every spec; whoever can call /encode can start onboardServer with a spec the
 * workers accept. So every request is checked, in this order:
 *   1. Host: exactly one of the allowed `Host` values (the listen address; for loopback also localhost and
 *      127.0.0.1 / [::1] with the port) — a DNS-rebinding page reaches the socket but names its own host;
 *   2. Origin: absent (CLI, curl) or one of --cors-origin — no other web page may use the browser as a proxy;
 *   3. authentication: a client certificate issued by --client-ca (mTLS, checked in the TLS handshake) and/or
 *      `Authorization: Bearer <token>` (UNDERLAY_CODEC_TOKEN or UNDERLAY_CODEC_TOKEN_FILE, compared in constant
 *      time). At least one is required; `--insecure-no-auth` is accepted on a loopback address only;
 *   4. the body: at most 4 MiB, JSON of base64 payloads.
 * It listens on loopback unless told otherwise; a non-loopback address needs TLS (--tls-cert/--tls-key), so a
 * token never crosses the network in clear. Logs carry method, path, status and payload counts — never
 * payloads, keys or tokens. /decode passes payloads that are not encrypted through unchanged (display only:
 * decoding plaintext reveals nothing); the workers' own codec refuses them.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { isIP, type AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { FileCheckError, insideCredentialsDir, MAX_CERTIFICATE_BYTES, MAX_SECRET_BYTES, readCheckedFile, secretScopeFromEnv } from '../transports/secret-scope';
import { codecFromEnv, ENV_KEY, ENV_KEY_ID, ENV_KEYS_FILE } from './codec-keys';
import { checkTemporal, type ConnectOptions } from './connection';

export const ENV_TOKEN = 'UNDERLAY_CODEC_TOKEN';
export const ENV_TOKEN_FILE = 'UNDERLAY_CODEC_TOKEN_FILE';
/** A bearer token shorter than this is refused at start (`openssl rand -base64 32` gives 44 characters). */
export const MIN_TOKEN_CHARS = 16;

export const DEFAULT_CODEC_LISTEN = '127.0.0.1:8888';
/** Temporal's own limit on a request is 4 MB; a larger body is not a batch of payloads from the UI. */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** `host:port`; port 0 picks a free one. Default 127.0.0.1:8888. */
  listen?: string;
  /** Browser origins allowed to call (the Web UI, e.g. http://localhost:8233). None → no browser may call. */
  corsOrigins?: string[];
  /** Extra `Host` header values accepted, exactly as clients send them (e.g. codec.example.net:8888). */
  allowedHosts?: string[];
  /** Bearer tokens accepted (any one of them). */
  tokens?: string[];
  /** HTTPS: the server's certificate and key (PEM); with `clientCa`, clients must present a certificate it issued. */
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer };
  /** Serve without authentication: loopback only, for a local dev setup. */
  insecureNoAuth?: boolean;
  maxBodyBytes?: number;
  log?: (line: string) => void;
}

export interface CodecServer {
  server: Server;
  /** e.g. http://127.0.0.1:8888 */
  url: string;
  close(): Promise<void>;
}

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function fromBase64(s: unknown, where: string): Uint8Array {
  if (typeof s !== 'string' || !BASE64.test(s)) throw new HttpError(400, `${where}: expected a base64 string`);
  return Buffer.from(s, 'base64');
}

function fromJson(p: unknown, i: number): Payload {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new HttpError(400, `payloads[${i}]: expected an object`);
  const { metadata, data } = p as { metadata?: unknown; data?: unknown };
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))) {
    throw new HttpError(400, `payloads[${i}].metadata: expected an object`);
  }
  return {
    metadata: Object.fromEntries(Object.entries(metadata ?? {}).map(([k, v]) => [k, fromBase64(v, `payloads[${i}].metadata.${k}`)])),
    data: data === undefined || data === null ? new Uint8Array() : fromBase64(data, `payloads[${i}].data`),
  };
}

function toJson(p: Payload): JsonPayload {
  const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
  const out: JsonPayload = {};
  const meta = Object.entries(p.metadata ?? {}).filter((e): e is [string, Uint8Array] => e[1] != null);
  if (meta.length) out.metadata = Object.fromEntries(meta.map(([k, v]) => [k, b64(v)]));
  if (p.data && p.data.length) out.data = b64(p.data);
  return out;
}

async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) throw new HttpError(413, `request body over ${max} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new HttpError(413, `request body over ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function parsePayloads(body: Buffer): Payload[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
  const payloads = (parsed as { payloads?: unknown } | null)?.payloads;
  if (!Array.isArray(payloads)) throw new HttpError(400, 'expected {"payloads": [...]}');
  return payloads.map(fromJson);
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(listen.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`listen address ${JSON.stringify(listen)}: expected <host>:<port>, e.g. ${DEFAULT_CODEC_LISTEN}`);
  return { host: (m[1] ?? m[2])!, port };
}

/** Starts the codec server; resolves once it listens. Throws when it would serve unauthenticated or in clear. */
export async function startCodecServer(opts: CodecServerOptions): Promise<CodecServer> {
  const { host, port } = parseListen(opts.listen ?? DEFAULT_CODEC_LISTEN);
  const loopback = isLoopback(host);
  const tokens = (opts.tokens ?? []).map((t) => {
    if (t.length < MIN_TOKEN_CHARS) throw new Error(`a codec server token must be at least ${MIN_TOKEN_CHARS} characters (e.g. openssl rand -base64 32)`);
    return digest(t);
  });
  const mtls = opts.tls?.clientCa !== undefined;
  if (!tokens.length && !mtls && !opts.insecureNoAuth) {
    throw new Error(`the codec server decrypts for whoever calls it: configure a token (${ENV_TOKEN} or ${ENV_TOKEN_FILE}) and/or mTLS (--client-ca)`);
  }
  if (opts.insecureNoAuth && (tokens.length || mtls)) throw new Error('--insecure-no-auth contradicts the token / client CA that is configured');
  if (opts.insecureNoAuth && !loopback) throw new Error(`--insecure-no-auth is for a loopback address only, not ${host}`);
  if (!loopback && !opts.tls)
    throw new Error(`listening on ${host} (not loopback) needs TLS (--tls-cert, --tls-key): a token must not cross the network in clear`);

  const origins = new Set((opts.corsOrigins ?? []).map((o) => o.replace(/\/+$/, '')));
  const max = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const log = opts.log ?? (() => undefined);
  let hosts = new Set<string>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const origin = req.headers.origin;
    const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '');
    const op = path === '/encode' ? 'encode' : path === '/decode' ? 'decode' : undefined;
    let count = 0;
    let status = 200;
    try {
      // 1. Host: a DNS-rebinding page reaches this socket under its own name; only our names are served.
      const hostHeader = (req.headers.host ?? '').toLowerCase();
      if (!hosts.has(hostHeader)) throw new HttpError(421, 'unexpected Host header: this codec server answers only to its own address');
      // 2. Origin: a browser always sends it on cross-origin requests; only the configured UI origins may call.
      if (origin !== undefined && !origins.has(origin)) throw new HttpError(403, 'origin not allowed: add it with --cors-origin');
      if (origin !== undefined) {
        res.setHeader('Access-Control-Allow-Origin', origin);
        res.setHeader('Access-Control-Allow-Credentials', 'true');
      }
      res.setHeader('Vary', 'Origin');
      if (!op) throw new HttpError(404, 'not found: POST /encode or /decode');
      if (req.method === 'OPTIONS') {
        // A preflight carries no credentials (browsers strip them); it grants nothing but the right to ask.
        status = 204;
        res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
        res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization, Authorization-Extras');
        res.setHeader('Access-Control-Max-Age', '600');
        res.writeHead(204).end();
        return;
      }
      if (req.method !== 'POST') {
        res.setHeader('Allow', 'POST, OPTIONS');
        throw new HttpError(405, `method ${req.method} not allowed: POST`);
      }
      // 3. Authentication (mTLS was enforced by the handshake already: an unverified client never gets here).
      if (tokens.length && !tokenMatches(req.headers.authorization, tokens)) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="underlay-codec"');
        throw new HttpError(401, 'authentication required: Authorization: Bearer <token>');
      }
      // 4. The body.
      const payloads = parsePayloads(await readBody(req, max));
      count = payloads.length;
      let out: Payload[];
      try {
        out = op === 'encode' ? await opts.codec.encode(payloads) : await opts.codec.decode(payloads);
      } catch (err) {
        throw new HttpError(400, err instanceof Error ? err.message : String(err));
      }
      const body = JSON.stringify({ payloads: out.map(toJson) });
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
    } catch (err) {
      status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof HttpError ? err.message : 'internal error';
      if (!res.headersSent) {
        // A refused request's body is not read: answer, then drop the connection.
        res.writeHead(status, { 'Content-Type': 'application/json', ...(status === 200 ? {} : { Connection: 'close' }) });
      }
      res.end(JSON.stringify({ error: message }));
    } finally {
      log(`${req.method} ${path || '/'} ${status} payloads=${count}`);
    }
  };

  const listener = (req: IncomingMessage, res: ServerResponse) => void handle(req, res);
  const server: Server = opts.tls
    ? createHttpsServer(
        {
          cert: opts.tls.cert,
          key: opts.tls.key,
          minVersion: 'TLSv1.2',
          ...(opts.tls.clientCa ? { ca: opts.tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
        },
        listener,
      )
    : createServer(listener);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  hosts = allowedHostHeaders(host, addr.port, opts.allowedHosts ?? []);
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `${opts.tls ? 'https' : 'http'}://${shownHost}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** The Host header values a server listening on host:port answers to: its own name, and loopback's aliases. */
export function allowedHostHeaders(host: string, port: number, extra: readonly string[]): Set<string> {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  const named = isIP(bare) === 6 ? `[${bare}]` : bare;
  const out = new Set<string>([`${named}:${port}`]);
  if (isLoopback(host)) for (const h of ['localhost', '127.0.0.1', '[::1]']) out.add(`${h}:${port}`);
  for (const h of extra) out.add(h.trim().toLowerCase());
  return out;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** `Authorization: Bearer <token>` against the configured tokens, in constant time per token (hashes compared). */
function tokenMatches(header: string | undefined, tokens: readonly Buffer[]): boolean {
  const m = /^Bearer ([\x21-\x7e]{1,4096})$/.exec(header ?? '');
  if (!m) return false;
  const got = digest(m[1]!);
  let ok = false;
  for (const t of tokens) ok = timingSafeEqual(got, t) || ok;
  return ok;
}

/**
 * Whether a listen host is loopback (anything else exposes decryption to the network): `localhost`, an IPv4
 * address in 127.0.0.0/8, or ::1 (also as ::ffff:127.x). Parsed as an address, not matched as text: the name
 * `127.evil.example` is not loopback.
 */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.split('.')[0] === '127';
  if (isIP(h) === 6) {
    const norm = new URL(`http://[${h}]/`).hostname; // canonical form: [::1], [::ffff:7f00:1]
    return norm === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(norm);
  }
  return false;
}

export interface RunCodecServerOptions {
  listen?: string;
  corsOrigin?: string[];
  allowedHost?: string[];
  tlsCert?: string;
  tlsKey?: string;
  clientCa?: string;
  insecureNoAuth?: boolean;
}

type Env = Record<string, string | undefined>;

/** The bearer token from UNDERLAY_CODEC_TOKEN or UNDERLAY_CODEC_TOKEN_FILE (owner-only file), if any. */
export function codecTokenFromEnv(env: Env = process.env): string | undefined {
  const inline = env[ENV_TOKEN];
  const file = env[ENV_TOKEN_FILE];
  if (inline && file) throw new Error(`set either ${ENV_TOKEN} or ${ENV_TOKEN_FILE}, not both`);
  if (inline) return inline.trim();
  if (!file) return undefined;
  outsideSpecReach(file, ENV_TOKEN_FILE, env);
  const buf = readFileOrExplain(file, ENV_TOKEN_FILE, MAX_SECRET_BYTES, true);
  const token = buf.toString('utf8').trim();
  buf.fill(0);
  if (!token) throw new Error(`${ENV_TOKEN_FILE}=${file}: empty`);
  return token;
}

function readTlsKey(path: string): Buffer {
  outsideSpecReach(path, '--tls-key', process.env);
  return readFileOrExplain(path, '--tls-key', MAX_SECRET_BYTES, true);
}

/** The token and the TLS key must not be where a spec on this machine could name them as a credential. */
function outsideSpecReach(path: string, what: string, env: Env): void {
  const scope = secretScopeFromEnv(env);
  if (insideCredentialsDir(path, scope)) {
    throw new Error(`${what} ${path} is inside the credentials directory ${scope.credentialsDir}, where a spec could name it: move it out`);
  }
}

function readFileOrExplain(path: string, what: string, maxBytes: number, ownerOnly: boolean): Buffer {
  try {
    return readCheckedFile(path, { maxBytes, ownerOnly });
  } catch (err) {
    throw new Error(`${what} ${path}: ${err instanceof FileCheckError ? err.detail : String(err)}`);
  }
}

/**
 * `underlay codec-server`: serves the codec configured in the environment (codec-keys.ts) until SIGINT/SIGTERM.
 * Prints its URL and the key ids (never the keys, never the token). Unless `temporalCheck` is false, it first
 * connects with the same Temporal profile as the workers (connection.ts) and checks the namespace, so a codec server
 * configured for the wrong service or namespace fails at start with the reason, not later as undecodable payloads.
 */
export async function runCodecServer(
  opts: RunCodecServerOptions & { temporalCheck?: boolean },
  out: (line: string) => void = console.log,
  connect: ConnectOptions = {},
): Promise<void> {
  const codec = codecFromEnv(process.env, { acceptPlaintext: true });
  if (!codec) throw new Error(`payload encryption is not configured: set ${ENV_KEYS_FILE}, or ${ENV_KEY} and ${ENV_KEY_ID}`);
  if (opts.temporalCheck !== false) {
    const s = await checkTemporal(connect);
    out(`Temporal namespace ${s.namespace} at ${s.address} answers (profile "${s.profile}"): its Web UI can use this codec server`);
  }
  const listen = opts.listen ?? DEFAULT_CODEC_LISTEN;
  const list = (v: string[] | undefined) =>
    (v ?? [])
      .flatMap((o) => o.split(','))
      .map((o) => o.trim())
      .filter(Boolean);
  const corsOrigins = list(opts.corsOrigin);
  const token = codecTokenFromEnv();
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) throw new Error('--tls-cert and --tls-key go together');
  if (opts.clientCa && !opts.tlsCert) throw new Error('--client-ca (mTLS) needs --tls-cert and --tls-key');
  const tls =
    opts.tlsCert && opts.tlsKey
      ? {
          cert: readFileOrExplain(opts.tlsCert, '--tls-cert', MAX_CERTIFICATE_BYTES, false),
          key: readTlsKey(opts.tlsKey),
          ...(opts.clientCa ? { clientCa: readFileOrExplain(opts.clientCa, '--client-ca', MAX_CERTIFICATE_BYTES, false) } : {}),
        }
      : undefined;
  const srv = await startCodecServer({
    codec,
    listen,
    corsOrigins,
    allowedHosts: list(opts.allowedHost),
    tokens: token ? [token] : [],
    tls,
    insecureNoAuth: opts.insecureNoAuth,
    log: (l) => out(`codec-server: ${l}`),
  });
  const auth =
    [token && 'bearer token', tls?.clientCa && 'client certificate (mTLS)'].filter(Boolean).join(' + ') || 'NONE (--insecure-no-auth, loopback only)';
  out(
    `codec server on ${srv.url} (POST /encode, /decode); keys: ${codec.keyIds.join(', ')} (encrypting with ${codec.encryptionKeyId}); authentication: ${auth}`,
  );
  out(corsOrigins.length ? `CORS allowed for ${corsOrigins.join(', ')}` : 'no browser origin allowed: add --cors-origin <Web UI URL> for the Web UI');
  out(
    `Web UI: Settings → Codec Server → endpoint ${srv.url} (or start the dev server with --ui-codec-endpoint ${srv.url}); CLI: --codec-endpoint ${srv.url} --codec-auth "Bearer $TOKEN"`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => void srv.close().finally(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
