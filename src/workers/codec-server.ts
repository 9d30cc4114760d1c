/**
 * A codec server for the Temporal Web UI and CLI ("Remote Codec Endpoint", `--codec-endpoint`): with payload
 * encryption on, the UI shows ciphertext until it can POST payloads here to be decoded.
 *
 *   POST /decode   {"payloads":[{"metadata":{"<key>":"<base64>"},"data":"<base64>"}]}  →  the same shape, decrypted
 *   POST /encode   the reverse (the UI uses it for e.g. signal input typed in the browser)
 *   OPTIONS        CORS preflight: allowed only for the configured origin(s)
 *
 * Anyone who can reach this server can decrypt payloads: bind it to loopback (the default) or put it behind
 * an authenticating proxy. Logs carry method, path, status and payload counts — never payloads or keys.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { codecFromEnv, ENV_KEY, ENV_KEY_ID, ENV_KEYS_FILE } from './codec-keys';
import { checkTemporal, type ConnectOptions } from './connection';

export const DEFAULT_CODEC_LISTEN = '127.0.0.1:8888';
/** Temporal's own limit on a request is 4 MB; a larger body is not a batch of payloads from the UI. */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** `host:port`; port 0 picks a free one. Default 127.0.0.1:8888. */
  listen?: string;
  /** Browser origins allowed to call (the Web UI, e.g. http://localhost:8233). None → no CORS headers. */
  corsOrigins?: string[];
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

/** Starts the codec server; resolves once it listens. */
export async function startCodecServer(opts: CodecServerOptions): Promise<CodecServer> {
  const { host, port } = parseListen(opts.listen ?? DEFAULT_CODEC_LISTEN);
  const origins = new Set((opts.corsOrigins ?? []).map((o) => o.replace(/\/+$/, '')));
  const max = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const log = opts.log ?? (() => undefined);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const origin = req.headers.origin;
    if (origin && origins.has(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
    }
    res.setHeader('Vary', 'Origin');
    const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '');
    const op = path === '/encode' ? 'encode' : path === '/decode' ? 'decode' : undefined;
    let count = 0;
    let status = 200;
    try {
      if (!op) throw new HttpError(404, 'not found: POST /encode or /decode');
      if (req.method === 'OPTIONS') {
        status = 204;
        if (origin && origins.has(origin)) {
          res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
          res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
          res.setHeader('Access-Control-Max-Age', '600');
        }
        res.writeHead(204).end();
        return;
      }
      if (req.method !== 'POST') {
        res.setHeader('Allow', 'POST, OPTIONS');
        throw new HttpError(405, `method ${req.method} not allowed: POST`);
      }
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
        // An oversized body is not read any further: answer, then drop the connection.
        res.writeHead(status, { 'Content-Type': 'application/json', ...(status === 413 ? { Connection: 'close' } : {}) });
      }
      res.end(JSON.stringify({ error: message }));
    } finally {
      log(`${req.method} ${path || '/'} ${status} payloads=${count}`);
    }
  };

  const server = createServer((req, res) => void handle(req, res));
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
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `http://${shownHost}:${addr.port}`,
    close: () => new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))),
  };
}

/** Whether a listen host is loopback (anything else exposes decryption to the network). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}

/**
 * `underlay codec-server`: serves the codec configured in the environment (codec-keys.ts) until SIGINT/SIGTERM.
 * Prints its URL and the key ids (never the keys). Unless `temporalCheck` is false, it first connects with the
 * same Temporal profile as the workers (connection.ts) and checks the namespace, so a codec server configured
 * for the wrong service or namespace fails at start with the reason, not later as undecodable payloads.
 */
export async function runCodecServer(
  opts: { listen?: string; corsOrigin?: string[]; temporalCheck?: boolean },
  out: (line: string) => void = console.log,
  connect: ConnectOptions = {},
): Promise<void> {
  const codec = codecFromEnv();
  if (!codec) throw new Error(`payload encryption is not configured: set ${ENV_KEYS_FILE}, or ${ENV_KEY} and ${ENV_KEY_ID}`);
  if (opts.temporalCheck !== false) {
    const s = await checkTemporal(connect);
    out(`Temporal namespace ${s.namespace} at ${s.address} answers (profile "${s.profile}"): its Web UI can use this codec server`);
  }
  const listen = opts.listen ?? DEFAULT_CODEC_LISTEN;
  const corsOrigins = (opts.corsOrigin ?? [])
    .flatMap((o) => o.split(','))
    .map((o) => o.trim())
    .filter(Boolean);
  const srv = await startCodecServer({ codec, listen, corsOrigins, log: (l) => out(`codec-server: ${l}`) });
  out(`codec server on ${srv.url} (POST /encode, /decode); keys: ${codec.keyIds.join(', ')} (encrypting with ${codec.encryptionKeyId})`);
  out(corsOrigins.length ? `CORS allowed for ${corsOrigins.join(', ')}` : 'no CORS origin allowed: add --cors-origin <Web UI URL> for the browser');
  if (!isLoopback(parseListen(listen).host)) out('WARNING: not bound to loopback — anyone who can reach this address can decrypt payloads');
  out(`Web UI: set "Remote Codec Endpoint" to ${srv.url} (or start the dev server with --ui-codec-endpoint ${srv.url})`);
  await new Promise<void>((resolve) => {
    const stop = () => void srv.close().finally(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
