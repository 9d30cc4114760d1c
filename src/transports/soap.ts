/**
 * SOAP over HTTPS, as the vSphere Web Services API speaks it (vCenter's /sdk): one POST per operation, a session
 * cookie (`vmware_soap_session`) after Login, faults in the SOAP body.
 *
 * XML is built by one helper, the `xml` tagged template: literal parts are trusted program text, every
 * interpolation is escaped (or is a fragment `xml` built). Nothing concatenates an unescaped value into a request.
 * Responses are parsed by fast-xml-parser with entity expansion off (no DOCTYPE entities, no expansion attacks)
 * and the five XML entities plus numeric references decoded here; callers validate the parsed shape with zod.
 *
 * Trust is pinned, never accept-all: the `caFile` bundle is the only trust anchor — node's `ca` replaces the system
 * store, so no publicly trusted CA can vouch for a vCenter — and the certificate must name the host (node's
 * standard identity check). Or `pin`: one self-signed certificate saved as a file (./pinned-tls.ts) is the only one
 * trusted — how the worker talks to an installed ESXi host. One of them is required: a credential is only ever sent
 * to a server whose trust is pinned. A certificate that does not verify is HostKeyMismatchError (never retried).
 *
 * Credentials are references (env vars or a file), read at open time into private fields; they go into the
 * Login body only, and never into an error, a log entry or a result (fault texts are excerpted with them
 * removed).
 *
 * Errors: unreachable peer, reset, timeout, HTTP 5xx without a SOAP fault → ConnectionError (retryable);
 * InvalidLogin / NotAuthenticated → AuthenticationError; other faults → SoapFaultError, retryable only for the
 * transient kinds (ConcurrentAccess, TaskInProgress, HostCommunication, ...).
 */
import { readScopedFile } from './secret-scope';
import { excerpt, resolveCredentials, type HttpCredentialRefSpec, type Secrets } from './http-credentials';
import { Agent } from 'node:https';
import { httpsExchange } from './https-exchange';
import { isIP } from 'node:net';
import { checkServerIdentity } from 'node:tls';
import { XMLParser } from 'fast-xml-parser';
import { loadPinnedCertificate, pinnedTlsOptions, type CertificatePin } from './pinned-tls';
import {
  AuthenticationError,
  ConnectionError,
  HostKeyMismatchError,
  InvalidSpecError,
  UnderlayError,
  UnexpectedOutputError,
  type ErrorContext,
} from '../common/errors';

// ---- building XML ------------------------------------------------------------------------------------------

/** XML text that is already safe to splice: built by `xml` (or `el`), never by concatenation. */
export class XmlFragment {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type XmlValue = string | number | boolean | bigint | XmlFragment | ReadonlyArray<XmlFragment>;

/** Characters XML 1.0 cannot carry at all (not even as references): refused rather than silently dropped. */
// eslint-disable-next-line no-control-regex
const XML_FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

/** Escapes text for an element's content or a double-quoted attribute. */
export function escapeXml(value: string): string {
  if (XML_FORBIDDEN.test(value)) throw new TypeError('refusing a value with a character XML cannot carry');
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function render(v: XmlValue): string {
  if (v instanceof XmlFragment) return v.text;
  if (Array.isArray(v)) return (v as ReadonlyArray<XmlFragment>).map((f) => render(f)).join('');
  if (typeof v === 'number' && !Number.isFinite(v)) throw new TypeError('refusing a non-finite number in XML');
  return escapeXml(String(v));
}

/** Tagged template: literal parts are trusted XML, interpolations are escaped (fragments are spliced as they are). */
export function xml(strings: TemplateStringsArray, ...values: XmlValue[]): XmlFragment {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] ?? '');
  });
  return new XmlFragment(out);
}

const XML_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*(?::[A-Za-z_][A-Za-z0-9_.-]*)?$/;

/**
 * `<name attr="v">value</name>`; nothing at all when value is undefined (optional fields stay absent).
 * Names are program text and must look like XML names; attribute values are escaped like content.
 */
export function el(name: string, value: XmlValue | undefined, attrs: Record<string, string> = {}): XmlFragment {
  if (value === undefined) return new XmlFragment('');
  for (const n of [name, ...Object.keys(attrs)]) if (!XML_NAME.test(n)) throw new TypeError(`not an XML name: ${JSON.stringify(n)}`);
  const a = Object.entries(attrs)
    .map(([k, v]) => ` ${k}="${escapeXml(v)}"`)
    .join('');
  return new XmlFragment(`<${name}${a}>${render(value)}</${name}>`);
}

// ---- parsing XML -------------------------------------------------------------------------------------------

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Decodes the predefined entities and numeric character references in one pass (so `&amp;lt;` stays `&lt;`). */
export function decodeXmlText(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|[a-z]{2,4});/g, (m, ref: string) => {
    if (ref.startsWith('#')) {
      const cp = ref[1] === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
    }
    return ENTITIES[ref] ?? m;
  });
}

/**
 * Parses a SOAP response. Tag names lose their namespace prefix (`soapenv:Body` → `Body`); an element's
 * attributes become `@_name`, except `xsi:type` (whatever the prefix) which becomes `@_xsiType`, so it cannot
 * collide with a managed object reference's own `type` attribute. Text of an element with attributes is `#text`.
 * Values stay strings (callers' zod schemas coerce), repeated elements become arrays, single ones do not.
 */
export function parseXml(text: string): Record<string, unknown> {
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@_',
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: true,
    processEntities: false,
    ignoreDeclaration: true,
    ignorePiTags: true,
    transformTagName: (n) => n.replace(/^[^:]*:/, ''),
    transformAttributeName: (n) => {
      const bare = n.startsWith('@_') ? n.slice(2) : n;
      const m = /^([^:]+):(.+)$/.exec(bare);
      if (!m) return n;
      if (m[1] === 'xmlns') return n;
      return m[2] === 'type' ? '@_xsiType' : `@_${m[2]}`;
    },
    tagValueProcessor: (_tag, value) => decodeXmlText(value),
    attributeValueProcessor: (_name, value) => decodeXmlText(value),
  });
  const doc: unknown = parser.parse(text, true);
  if (typeof doc !== 'object' || doc === null) throw new TypeError('not an XML document');
  return doc as Record<string, unknown>;
}

// ---- the client --------------------------------------------------------------------------------------------

export type { HttpCredentialRefSpec };

export interface SoapTarget {
  host: string;
  port: number;
  /** Endpoint path; vCenter's is /sdk. */
  path: string;
  /** PEM bundle that is the only trust anchor (the system store is never consulted); or `pin`. */
  caFile?: string;
  /** One self-signed certificate that is the only one trusted (instead of `caFile`). */
  pin?: CertificatePin;
  /** Absent: the client can make anonymous calls only (RetrieveServiceContent), not `login`. */
  credentials?: HttpCredentialRefSpec;
  /** Sent as SOAPAction, e.g. `urn:vim25/8.0.0.0`. */
  soapAction: string;
  /** Server id, used in error messages. */
  label: string;
}

export interface SoapClientOptions {
  /** Whole request (connect, send, full response). Default 30000. */
  timeoutMs?: number;
  /** Largest response body accepted. Default 16 MiB. */
  maxBodyBytes?: number;
}

/** One call as the client saw it (what tests read). Never bodies, cookies or credentials. */
export interface SoapCallLogEntry {
  operation: string;
  ms: number;
  /** HTTP status, when an answer came. */
  status?: number;
  /** The fault type or error class, when the call failed. */
  error?: string;
}

/** Faults that say "not now" rather than "no": worth retrying the activity. */
const RETRYABLE_FAULTS = new Set([
  'ConcurrentAccess',
  'TaskInProgress',
  'HostCommunication',
  'HostNotConnected',
  'HostNotReachable',
  'Timedout',
  'RequestCanceled',
  'SystemError',
]);
/** Faults that mean the session or the credentials are not accepted. */
const AUTH_FAULTS = new Set(['InvalidLogin', 'NotAuthenticated', 'NoPermission']);

/** A SOAP fault other than an authentication one. `fault` is the vSphere fault type (e.g. `DuplicateName`). */
export class SoapFaultError extends UnderlayError {
  constructor(
    message: string,
    context: ErrorContext,
    readonly fault: string,
    readonly retryable: boolean,
    /** The parsed fault detail (the fault object's fields). */
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message, context);
  }
}

/** OpenSSL verification codes and node's identity-check code: the peer is not who the pin says. */
const TLS_TRUST_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ALTNAME|PINNED/;
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_BODY = 16 * 1024 * 1024;
const LOG_KEEP = 1000;
const SESSION_COOKIE = 'vmware_soap_session';

export class SoapClient {
  readonly #target: SoapTarget;
  readonly #secrets: Secrets | undefined;
  readonly #agent: Agent;
  readonly #timeoutMs: number;
  readonly #maxBody: number;
  readonly #log: SoapCallLogEntry[] = [];
  #cookie: string | undefined;
  #relogin: (() => Promise<void>) | undefined;
  #closed = false;

  private constructor(target: SoapTarget, secrets: Secrets | undefined, agent: Agent, opts: SoapClientOptions) {
    this.#target = target;
    this.#secrets = secrets;
    this.#agent = agent;
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  }

  /** Resolves the credentials and the trust anchor. Sends nothing yet. */
  static async open(target: SoapTarget, opts: SoapClientOptions = {}): Promise<SoapClient> {
    const host = target.label;
    if (!/^\/[A-Za-z0-9._~/-]*$/.test(target.path)) throw new InvalidSpecError('SOAP endpoint path has unsafe characters', [], { host, field: 'path' });
    const secrets = target.credentials ? await resolveCredentials(target.credentials, host) : undefined;
    if (target.pin) {
      const x509 = await loadPinnedCertificate(target.pin, host, 'pin');
      const agent = new Agent({
        keepAlive: true,
        maxSockets: 2,
        servername: isIP(target.host) ? undefined : target.host,
        ...pinnedTlsOptions(x509, target.pin.fingerprint),
      });
      return new SoapClient(target, secrets, agent, opts);
    }
    if (!target.caFile) throw new InvalidSpecError('no CA file: a credential is only sent to a server whose trust is pinned', [], { host, field: 'caFile' });
    // Inside the worker's credentials directory, a regular file, size-capped (secret-scope.ts).
    const ca = readScopedFile(target.caFile, { kind: 'certificate', what: 'CA file' }, { host, field: 'caFile' });
    const agent = new Agent({
      keepAlive: true,
      maxSockets: 2,
      ca,
      servername: isIP(target.host) ? undefined : target.host,
      rejectUnauthorized: true,
      checkServerIdentity,
    });
    return new SoapClient(target, secrets, agent, opts);
  }

  /** Every call so far (the last 1000). */
  get log(): readonly SoapCallLogEntry[] {
    return this.#log;
  }

  get hasSession(): boolean {
    return this.#cookie !== undefined;
  }

  /**
   * Logs in: `build` makes the Login body from the secrets (they never leave this call otherwise). The session
   * cookie the answer sets is sent on every later call; a NotAuthenticated fault later logs in again, once.
   */
  async login(operation: string, build: (username: string, password: string) => XmlFragment): Promise<Record<string, unknown>> {
    const secrets = this.#secrets;
    if (!secrets) throw new InvalidSpecError(`${operation}: no credentials configured for ${this.#target.host}`, [], { host: this.#target.label });
    const res = await this.#post(operation, build(secrets.username, secrets.password));
    if (!this.#cookie) {
      throw new UnexpectedOutputError(`${operation} answered without a ${SESSION_COOKIE} cookie`, { host: this.#target.label, command: operation });
    }
    this.#relogin = async () => {
      this.#cookie = undefined;
      await this.#post(operation, build(secrets.username, secrets.password));
    };
    return res;
  }

  /** Sends one operation element; returns the parsed content of the response element (e.g. `LoginResponse`). */
  async call(operation: string, payload: XmlFragment, opts: { timeoutMs?: number } = {}): Promise<Record<string, unknown>> {
    try {
      return await this.#post(operation, payload, opts.timeoutMs);
    } catch (err) {
      if (err instanceof AuthenticationError && this.#relogin && err.context.observed === 'NotAuthenticated') {
        const relogin = this.#relogin;
        this.#relogin = undefined; // once
        await relogin();
        return this.#post(operation, payload, opts.timeoutMs);
      }
      throw err;
    }
  }

  /** Forgets the session and closes the connections. Idempotent. (Log the session out first with `call`.) */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cookie = undefined;
    this.#relogin = undefined;
    this.#agent.destroy();
  }

  async #post(operation: string, payload: XmlFragment, timeoutMs = this.#timeoutMs): Promise<Record<string, unknown>> {
    const t = this.#target;
    const host = t.label;
    if (this.#closed) throw new ConnectionError(`SOAP client for ${t.host} is closed`, { host, command: operation });
    const envelope = xml`<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>${payload}</soapenv:Body></soapenv:Envelope>`;
    const body = Buffer.from(envelope.text, 'utf8');
    const headers: Record<string, string> = {
      'Content-Type': 'text/xml; charset=utf-8',
      'Content-Length': String(body.length),
      SOAPAction: `"${t.soapAction}"`,
    };
    if (this.#cookie) headers.Cookie = `${SESSION_COOKIE}=${this.#cookie}`;
    const started = Date.now();
    const record = (entry: Omit<SoapCallLogEntry, 'operation' | 'ms'>) => {
      this.#log.push({ operation, ms: Date.now() - started, ...entry });
      if (this.#log.length > LOG_KEEP) this.#log.splice(0, this.#log.length - LOG_KEEP);
    };

    const fail = (err: UnderlayError, status?: number): never => {
      record({ status, error: err instanceof SoapFaultError ? err.fault : err.name });
      throw err;
    };
    const answer = await httpsExchange({
      host: t.host,
      port: t.port,
      method: 'POST',
      path: t.path,
      headers,
      body,
      agent: this.#agent,
      timeoutMs,
      maxBody: this.#maxBody,
      context: { host, command: operation },
      transportError: (e) => this.#transportError(e, operation),
    }).catch((e: UnderlayError) => fail(e));
    const { status, text } = answer;
    const cookie = sessionCookie(answer.headers['set-cookie']);
    if (cookie) this.#cookie = cookie;
    let outcome: { ok: Record<string, unknown> } | { err: UnderlayError };
    try {
      outcome = this.#interpret(operation, status, text);
    } catch (e) {
      outcome = { err: e instanceof UnderlayError ? e : new UnexpectedOutputError(`unreadable answer: ${(e as Error).message}`, { host, command: operation }) };
    }
    if ('err' in outcome) return fail(outcome.err, status);
    record({ status });
    return outcome.ok;
  }

  #interpret(operation: string, status: number, text: string): { ok: Record<string, unknown> } | { err: UnderlayError } {
    const host = this.#target.label;
    const isXml = /^\s*<(\?xml|[A-Za-z_][\w.-]*:?[\w.-]*[\s>])/.test(text);
    if (!isXml) {
      const said = excerpt(text, this.#secrets);
      if (status >= 500 || status === 408 || status === 429)
        return { err: new ConnectionError(`${this.#target.host} answered HTTP ${status}${said ? `: ${said}` : ''}`, { host, command: operation }) };
      if (status === 401 || status === 403)
        return { err: new AuthenticationError(`${this.#target.host} answered HTTP ${status}`, { host, command: operation }) };
      return {
        err: new UnexpectedOutputError(`${this.#target.host} answered HTTP ${status} without a SOAP envelope`, {
          host,
          command: operation,
          observed: said || undefined,
        }),
      };
    }
    const doc = parseXml(text);
    const body = record(record(doc.Envelope)?.Body);
    if (!body) return { err: new UnexpectedOutputError('answer is not a SOAP envelope', { host, command: operation, observed: excerpt(text, this.#secrets) }) };
    const fault = record(body.Fault);
    if (fault) return { err: this.#faultError(operation, fault) };
    if (status < 200 || status >= 300) return { err: new UnexpectedOutputError(`${this.#target.host} answered HTTP ${status}`, { host, command: operation }) };
    const [name, content] = Object.entries(body).find(([k]) => !k.startsWith('@_')) ?? [];
    if (!name) return { err: new UnexpectedOutputError('SOAP body is empty', { host, command: operation }) };
    const expected = `${operation}Response`;
    if (name !== expected) return { err: new UnexpectedOutputError(`expected ${expected}`, { host, command: operation, expected, observed: name }) };
    return { ok: record(content) ?? {} };
  }

  #faultError(operation: string, fault: Record<string, unknown>): UnderlayError {
    const host = this.#target.label;
    const faultstring = typeof fault.faultstring === 'string' ? excerpt(fault.faultstring, this.#secrets) : '';
    const detail = record(fault.detail) ?? {};
    const [elName, elValue] = Object.entries(detail).find(([k]) => !k.startsWith('@_')) ?? [];
    const obj = record(elValue) ?? {};
    // The type is the element's xsi:type, else the element name without its `Fault` suffix (`InvalidLoginFault`).
    const type = typeof obj['@_xsiType'] === 'string' ? obj['@_xsiType'].replace(/^[^:]*:/, '') : (elName?.replace(/Fault$/, '') ?? 'UnknownFault');
    const message = `${operation} failed: ${type}${faultstring ? ` (${faultstring})` : ''}`;
    if (AUTH_FAULTS.has(type)) return new AuthenticationError(message, { host, command: operation, observed: type });
    return new SoapFaultError(message, { host, command: operation, observed: type }, type, RETRYABLE_FAULTS.has(type), obj);
  }

  #transportError(e: NodeJS.ErrnoException, operation: string): UnderlayError {
    const t = this.#target;
    const where = `${t.host}:${t.port}`;
    const code = e.code ?? '';
    if (TLS_TRUST_CODES.test(code)) {
      if (t.pin) {
        return new HostKeyMismatchError(`TLS certificate of ${where} is not the pinned one (${code}): refusing the connection`, {
          host: t.label,
          field: 'pin',
          command: operation,
          expected: `${t.pin.fingerprint} (${t.pin.certFile})`,
          observed: code,
        });
      }
      return new HostKeyMismatchError(`TLS certificate of ${where} is not trusted (${code}): refusing the connection`, {
        host: t.label,
        field: 'caFile',
        command: operation,
        expected: `a certificate for ${t.host} issued by ${t.caFile}`,
      });
    }
    return new ConnectionError(`cannot reach ${where}: ${code || e.message}`, { host: t.label, command: operation });
  }
}

function record(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** The session id from `Set-Cookie: vmware_soap_session="…"; Path=/; HttpOnly; Secure` (quoted or not). */
export function sessionCookie(setCookie: string[] | undefined): string | undefined {
  for (const c of setCookie ?? []) {
    // RFC 6265 cookie-octets only: nothing that could end or split the Cookie header we send back.
    const m = /^\s*vmware_soap_session=("?)([\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*)\1(?:;|\s*$)/.exec(c);
    if (m?.[2]) return m[1] ? `"${m[2]}"` : m[2];
  }
  return undefined;
}
