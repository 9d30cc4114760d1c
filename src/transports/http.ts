/**
 * JSON over HTTPS for vendor APIs (Redfish BMCs, vCenter): pinned trust, credentials by reference, timeouts,
 * ETags, and typed errors.
 *
 * Trust is pinned, never accept-all. Either
 *   - `caFile`: the CA bundle is the only trust anchor (node's `ca` option; the system store is not consulted) and
 *     the certificate must name the host (node's standard identity check); or
 *   - `certFile` + `fingerprint: sha256/<base64 of the DER certificate's SHA-256>`: the BMC's own (self-signed)
 *     certificate, saved by the operator, is the pin. `open()` refuses a file whose hash is not the fingerprint (the
 *     wrong file), then that exact certificate is the only trust anchor (`ca`) of every request, whose
 *     `checkServerIdentity` checks the hash again. No connection is ever made without chain verification, so a
 *     server presenting another certificate is refused in the handshake, before a request or credential is sent.
 *
 * Credentials are read from the environment or a file at open time, kept in private fields, and never appear in
 * an error, a log entry or a result: error bodies are excerpted with secrets redacted.
 *
 * Errors: unreachable peers, resets, timeouts, 408/429/5xx are retryable (ConnectionError / HttpStatusError);
 * other 4xx are not (HttpStatusError with the status and a redacted excerpt); 401/403 are AuthenticationError;
 * a certificate that is not the pinned one (or not trusted by the CA file) is HostKeyMismatchError.
 */
import { X509Certificate, createHash, timingSafeEqual } from 'node:crypto';
import { readScopedFile } from './secret-scope';
import { excerpt, resolveCredentials, type HttpCredentialRefSpec, type Secrets } from './http-credentials';
import { Agent } from 'node:https';
import { httpsExchange } from './https-exchange';
import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { checkServerIdentity as standardIdentityCheck, type PeerCertificate } from 'node:tls';
import {
  AuthenticationError,
  ConnectionError,
  HostKeyMismatchError,
  InvalidSpecError,
  UnderlayError,
  UnexpectedOutputError,
  type ErrorContext,
} from '../common/errors';

export type { HttpCredentialRefSpec };
export type TlsTrust = { caFile: string } | { certFile: string; fingerprint: string };

export interface HttpTarget {
  host: string;
  port: number;
  tls: TlsTrust;
  credentials: HttpCredentialRefSpec;
  /** Server id, used in error messages. */
  label: string;
}

export interface HttpClientOptions {
  /** Whole request (connect, send, full response). Default 30000. */
  timeoutMs?: number;
  /** Extra attempts of an idempotent GET after a transient failure. Default 2. */
  getRetries?: number;
  /** Largest response body accepted. Default 8 MiB. */
  maxBodyBytes?: number;
}

export interface RequestOptions {
  body?: unknown;
  /** Sent as If-Match (optimistic concurrency on a PATCH). */
  ifMatch?: string;
  timeoutMs?: number;
  /** Default true. False sends no credentials (service roots, session login). */
  authenticate?: boolean;
}

export interface HttpResponse<T = unknown> {
  status: number;
  headers: IncomingHttpHeaders;
  /** Parsed JSON, or undefined for an empty body. */
  body: T | undefined;
  /** The ETag header, else the body's `@odata.etag`. */
  etag?: string;
  /** The Location header, reduced to a path when it points at this host. */
  location?: string;
  /** Retry-After, in ms, when the response carried one. */
  retryAfterMs?: number;
}

/** One request as the client saw it: what tests and progress notes read. Never headers or bodies. */
export interface RequestLogEntry {
  method: string;
  path: string;
  status?: number;
  error?: string;
  ms: number;
}

/** An HTTP status that is an error. Retryable for 408, 429 and 5xx; final for the other 4xx. */
export class HttpStatusError extends UnderlayError {
  constructor(
    message: string,
    context: ErrorContext,
    readonly status: number,
    readonly retryable: boolean,
    /** What the response said, redacted and cut short. */
    readonly excerpt: string,
    /** The response's Retry-After, in ms. */
    readonly retryAfterMs?: number,
  ) {
    super(message, context);
  }
}

export const CERT_FINGERPRINT_RE = /^sha256\/[A-Za-z0-9+/]{43}=$/;

/** `sha256/` + base64 of SHA-256 over the DER certificate — the form the spec pins (`openssl x509 -outform der | sha256 | base64`). */
export function certificateFingerprint(der: Buffer): string {
  return 'sha256/' + createHash('sha256').update(der).digest('base64');
}

function sameFingerprint(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_GET_RETRIES = 2;
const DEFAULT_MAX_BODY = 8 * 1024 * 1024;
const MAX_RETRY_AFTER_MS = 10_000;
const LOG_KEEP = 1000;
/** A request path: no whitespace, quotes, angle brackets or backslashes — nothing a header or URL parser could split. */
const SAFE_PATH_RE = /^\/[A-Za-z0-9._~:@!$&'()*+,;=%/-]*(?:\?[A-Za-z0-9._~:@!$&'()*+,;=%/?-]*)?$/;
/** OpenSSL verification codes and node's identity-check code: the peer is not who the pin says. */
const TLS_TRUST_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME|PINNED/;

export class HttpClient {
  readonly #target: HttpTarget;
  readonly #secrets: Secrets;
  readonly #agent: Agent;
  readonly #timeoutMs: number;
  readonly #getRetries: number;
  readonly #maxBody: number;
  readonly #log: RequestLogEntry[] = [];
  #session: { token: string; path?: string; loginPath: string } | undefined;
  #closed = false;

  private constructor(target: HttpTarget, secrets: Secrets, agent: Agent, opts: HttpClientOptions) {
    this.#target = target;
    this.#secrets = secrets;
    this.#agent = agent;
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#getRetries = opts.getRetries ?? DEFAULT_GET_RETRIES;
    this.#maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  }

  /** Resolves the credentials and the trust anchor; opens no session yet (see `login`). */
  static async open(target: HttpTarget, opts: HttpClientOptions = {}): Promise<HttpClient> {
    const host = target.label;
    const secrets = await resolveCredentials(target.credentials, host);
    const servername = isIP(target.host) ? undefined : target.host;
    let agent: Agent;
    if ('caFile' in target.tls) {
      // Inside the worker's credentials directory, a regular file, size-capped (secret-scope.ts).
      const ca = readScopedFile(target.tls.caFile, { kind: 'certificate', what: 'CA file' }, { host, field: 'tls.caFile' });
      // `ca` replaces the system store: only this bundle is trusted. The identity check is node's standard one.
      agent = new Agent({ keepAlive: true, maxSockets: 4, ca, servername, checkServerIdentity: standardIdentityCheck });
    } else {
      const pin = target.tls.fingerprint;
      const x509 = await pinnedCertificate(target.tls.certFile, pin, host);
      agent = new Agent({
        keepAlive: true,
        maxSockets: 4,
        ca: x509.toString(),
        servername,
        // The chain is verified against the pinned certificate alone; the hash is checked again on every
        // connection. The host name is not: the pin is stronger, and BMC certificates rarely name their address.
        checkServerIdentity: (_host: string, peer: PeerCertificate) => {
          const fp = certificateFingerprint(peer.raw);
          if (sameFingerprint(fp, pin)) return undefined;
          return Object.assign(new Error(`certificate ${fp} is not the pinned one`), { code: 'ERR_UNDERLAY_CERT_NOT_PINNED' });
        },
      });
    }
    return new HttpClient(target, secrets, agent, opts);
  }

  /** Every request so far (the last 1000): method, path, status or error, duration. */
  get log(): readonly RequestLogEntry[] {
    return this.#log;
  }

  get usesSession(): boolean {
    return this.#session !== undefined;
  }

  /** Redfish session login: POST {UserName, Password}, then X-Auth-Token on every request; `close` deletes it. */
  async login(loginPath: string): Promise<void> {
    const res = await this.#send('POST', loginPath, { body: { UserName: this.#secrets.username, Password: this.#secrets.password }, authenticate: false });
    const token = res.headers['x-auth-token'];
    if (typeof token !== 'string' || !token) {
      throw new UnexpectedOutputError(`session login at ${loginPath} returned no X-Auth-Token`, {
        host: this.#target.label,
        command: `POST ${loginPath}`,
        observed: `HTTP ${res.status}`,
      });
    }
    this.#session = { token, path: res.location, loginPath };
  }

  async request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<HttpResponse<T>> {
    const idempotent = method === 'GET' || method === 'HEAD';
    const attempts = idempotent ? this.#getRetries + 1 : 1;
    let reloggedIn = false;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#send<T>(method, path, opts);
      } catch (err) {
        // An expired session: log in again once, then repeat the request once.
        if (err instanceof AuthenticationError && this.#session && !reloggedIn && opts.authenticate !== false) {
          reloggedIn = true;
          const loginPath = this.#session.loginPath;
          this.#session = undefined;
          await this.login(loginPath);
          attempt--;
          continue;
        }
        const transient = err instanceof ConnectionError || (err instanceof HttpStatusError && err.retryable);
        if (!transient || attempt >= attempts) throw err;
        const hinted = err instanceof HttpStatusError ? err.retryAfterMs : undefined;
        await delay(Math.min(hinted ?? 500 * 2 ** (attempt - 1), MAX_RETRY_AFTER_MS));
      }
    }
  }

  get<T = unknown>(path: string, opts: Omit<RequestOptions, 'body'> = {}): Promise<HttpResponse<T>> {
    return this.request<T>('GET', path, opts);
  }

  /** Deletes the Redfish session (bounded, best effort) and closes the connections. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    const session = this.#session;
    if (session?.path) {
      await this.#send('DELETE', session.path, { timeoutMs: 5_000 }).catch(() => undefined);
    }
    this.#session = undefined;
    this.#closed = true;
    this.#agent.destroy();
  }

  async #send<T>(method: string, path: string, opts: RequestOptions): Promise<HttpResponse<T>> {
    const host = this.#target.label;
    const what = `${method} ${path}`;
    if (this.#closed) throw new ConnectionError(`HTTP client for ${this.#target.host} is closed`, { host, command: what });
    if (!SAFE_PATH_RE.test(path)) {
      throw new UnexpectedOutputError('refusing a request path with unsafe characters', { host, command: `${method} ${JSON.stringify(path.slice(0, 120))}` });
    }
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    const headers: Record<string, string> = { Accept: 'application/json', 'OData-Version': '4.0' };
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.body), 'utf8');
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    if (opts.ifMatch) headers['If-Match'] = opts.ifMatch;
    if (opts.authenticate !== false) {
      if (this.#session) headers['X-Auth-Token'] = this.#session.token;
      else headers.Authorization = 'Basic ' + Buffer.from(`${this.#secrets.username}:${this.#secrets.password}`, 'utf8').toString('base64');
    }
    const started = Date.now();
    const record = (entry: Omit<RequestLogEntry, 'method' | 'path' | 'ms'>) => {
      this.#log.push({ method, path, ms: Date.now() - started, ...entry });
      if (this.#log.length > LOG_KEEP) this.#log.splice(0, this.#log.length - LOG_KEEP);
    };

    const fail = (err: UnderlayError, status?: number): never => {
      record({ status, error: err.name });
      throw err;
    };
    const answer = await httpsExchange({
      host: this.#target.host,
      port: this.#target.port,
      method,
      path,
      headers,
      body: payload,
      agent: this.#agent,
      timeoutMs,
      maxBody: this.#maxBody,
      context: { host, command: what },
      transportError: (e) => this.#transportError(e, what),
    }).catch((e: UnderlayError) => fail(e));
    const { status, text } = answer;
    const retryAfterMs = parseRetryAfter(answer.headers['retry-after']);
    if (status >= 400 || status < 200) return fail(this.#statusError(status, what, text, retryAfterMs), status);
    let body: T | undefined;
    if (text.trim()) {
      try {
        body = JSON.parse(text) as T;
      } catch {
        return fail(new UnexpectedOutputError(`response is not JSON`, { host, command: what, observed: excerpt(text, this.#secrets) }), status);
      }
    }
    record({ status });
    const etagHeader = answer.headers.etag;
    const bodyEtag = body && typeof body === 'object' ? (body as Record<string, unknown>)['@odata.etag'] : undefined;
    return {
      status,
      headers: answer.headers,
      body,
      etag: etagHeader ?? (typeof bodyEtag === 'string' ? bodyEtag : undefined),
      location: this.#localPath(answer.headers.location),
      retryAfterMs,
    };
  }

  #statusError(status: number, what: string, text: string, retryAfterMs: number | undefined): UnderlayError {
    const host = this.#target.label;
    const said = excerpt(redfishMessage(text) ?? text, this.#secrets);
    if (status === 401 || status === 403) {
      return new AuthenticationError(`${this.#target.host} answered HTTP ${status} to ${what}${this.#session ? ' (session token)' : ''}`, {
        host,
        command: what,
        observed: said || undefined,
      });
    }
    const retryable = status === 408 || status === 429 || status >= 500;
    return new HttpStatusError(
      `${this.#target.host} answered HTTP ${status}${said ? `: ${said}` : ''}`,
      { host, command: what },
      status,
      retryable,
      said,
      retryAfterMs,
    );
  }

  #transportError(e: NodeJS.ErrnoException, what: string): UnderlayError {
    const host = this.#target.label;
    const where = `${this.#target.host}:${this.#target.port}`;
    const code = e.code ?? '';
    if (TLS_TRUST_CODES.test(code)) {
      // The handshake failed verification, so the presented certificate cannot be read: say what was expected.
      if ('fingerprint' in this.#target.tls) {
        const { fingerprint, certFile } = this.#target.tls;
        return new HostKeyMismatchError(`TLS certificate of ${where} is not the pinned one (${code}): refusing the connection`, {
          host,
          field: 'tls.fingerprint',
          command: what,
          expected: `${fingerprint} (${certFile})`,
          observed: code,
        });
      }
      return new HostKeyMismatchError(`TLS certificate of ${where} is not trusted (${code}): refusing the connection`, {
        host,
        field: 'tls',
        command: what,
        expected: `a certificate for ${this.#target.host} issued by ${this.#target.tls.caFile}`,
      });
    }
    return new ConnectionError(`cannot reach ${where}: ${code || e.message}`, { host, command: what });
  }

  #localPath(location: string | undefined): string | undefined {
    if (!location) return undefined;
    if (location.startsWith('/')) return location;
    try {
      const u = new URL(location);
      const sameHost = u.hostname.replace(/^\[|\]$/g, '') === this.#target.host && Number(u.port || 443) === this.#target.port;
      return sameHost ? u.pathname + u.search : undefined;
    } catch {
      return undefined;
    }
  }
}

/** The certificate in `certFile`, checked against the spec's fingerprint and refused when it is CA-issued. */
async function pinnedCertificate(certFile: string, pin: string, host: string): Promise<X509Certificate> {
  if (!CERT_FINGERPRINT_RE.test(pin)) {
    throw new InvalidSpecError('pinned certificate fingerprint is not sha256/<base64>', [], { host, field: 'tls.fingerprint' });
  }
  const pem = readScopedFile(certFile, { kind: 'certificate', what: 'pinned certificate' }, { host, field: 'tls.certFile' });
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch {
    throw new InvalidSpecError(`cannot read the pinned certificate ${certFile} (not a PEM or DER certificate)`, [], { host, field: 'tls.certFile' });
  }
  const inFile = certificateFingerprint(x509.raw);
  if (!sameFingerprint(inFile, pin)) {
    throw new InvalidSpecError(`the certificate in ${certFile} is not the pinned one (its SHA-256 is ${inFile}; the spec pins ${pin})`, [], {
      host,
      field: 'tls.fingerprint',
    });
  }
  if (!x509.checkIssued(x509)) {
    throw new InvalidSpecError(`the certificate in ${certFile} is CA-issued (${x509.issuer.replace(/\n/g, ', ')}): trust its CA with tls.caFile instead`, [], {
      host,
      field: 'tls.certFile',
    });
  }
  return x509;
}

function parseRetryAfter(v: string | undefined): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The message of a Redfish error body (`error.message` and the extended infos), when the body is one. */
function redfishMessage(text: string): string | undefined {
  try {
    const j = JSON.parse(text) as { error?: { message?: unknown; '@Message.ExtendedInfo'?: Array<{ Message?: unknown; MessageId?: unknown }> } };
    if (!j?.error) return undefined;
    const parts = [j.error.message, ...(j.error['@Message.ExtendedInfo'] ?? []).map((i) => i.Message ?? i.MessageId)].filter(
      (p): p is string => typeof p === 'string' && p.length > 0,
    );
    return parts.length ? [...new Set(parts)].join(' | ') : undefined;
  } catch {
    return undefined;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
