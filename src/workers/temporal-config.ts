/**
 * Which Temporal service underlay talks to, and how: Temporal's own client configuration (`@temporalio/envconfig`),
 * the same for the CLI, the worker and the codec server.
 *
 *   TEMPORAL_CONFIG_FILE    TOML file with [profile.<name>] tables (default ~/.config/temporalio/temporal.toml;
 *                           a missing default file is fine, a missing named one is an error)
 *   TEMPORAL_PROFILE        the profile to use (default "default")
 *   TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS, TEMPORAL_TLS_SERVER_CA_CERT_PATH,
 *   TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_GRPC_META_*
 *                           override the profile, as in every Temporal SDK and the `temporal` CLI
 *   UNDERLAY_TEMPORAL_API_KEY_FILE   the API key by reference: a file holding it (e.g. a systemd credential)
 *
 * Nothing set → the local dev server (127.0.0.1:7233, namespace "default", plain text).
 *
 * underlay is stricter than the SDK, so that a mistake is one clear message before anything connects: unknown
 * keys in the TOML file are refused (a typo would silently mean "no TLS"); the client key only by file, never
 * inline; certificate and key both or neither, and matching; host verification cannot be turned off; an API
 * key only over TLS; every file bounded in size; address, namespace and server name checked for shape.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import type { TLSConfig } from '@temporalio/client';
import { loadClientConfig, loadClientConfigProfile, type ClientConfigProfile, type ConfigDataSource } from '@temporalio/envconfig';
import { DEFAULT_TEMPORAL_ADDRESS } from '../common/config';
import { TemporalConnectionError } from '../common/errors';

export const ENV_API_KEY_FILE = 'UNDERLAY_TEMPORAL_API_KEY_FILE';
export const DEFAULT_NAMESPACE = 'default';
const MAX_CONFIG_BYTES = 64 * 1024;
const MAX_PEM_BYTES = 256 * 1024;
const MAX_API_KEY_BYTES = 16 * 1024;
const MAX_META_BYTES = 4 * 1024;

type Env = Record<string, string | undefined>;

/** What the SDK's Connection.connect and NativeConnection.connect take. */
export interface TemporalConnectionOptions {
  address: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
  metadata?: Record<string, string>;
}

export interface TemporalTlsSettings {
  /** PEM file of the CA(s) that must have signed the server's certificate; none → the system's CAs. */
  caFile?: string;
  /** Where the CA came from, when given inline (TEMPORAL_TLS_SERVER_CA_CERT_DATA / server_ca_cert_data). */
  caInline?: string;
  clientCertFile?: string;
  clientCertInline?: string;
  clientKeyFile?: string;
  /** The client certificate's subject, for messages (`CN=underlay-worker`). */
  clientSubject?: string;
  /** The name the server's certificate must carry, when it differs from the address's host. */
  serverName?: string;
}

export interface TemporalSettings {
  profile: string;
  /** The TOML file the profile was read from; undefined when there was none. */
  configFile?: string;
  address: string;
  host: string;
  port: number;
  namespace: string;
  tls: TemporalTlsSettings | false;
  /** Where the API key comes from (a variable or file name — never the key); undefined → none. */
  apiKeySource?: string;
  /** Names of extra gRPC metadata headers (their values may be secret and are never shown). */
  metadataKeys: string[];
  connectionOptions: TemporalConnectionOptions;
}

function configError(message: string): TemporalConnectionError {
  return new TemporalConnectionError('config', message);
}

export function defaultConfigFile(env: Env): string | undefined {
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'temporalio', 'temporal.toml');
  const home = env.HOME || homedir();
  return home ? join(home, '.config', 'temporalio', 'temporal.toml') : undefined;
}

/** A file's bytes: a regular file, at most `max` bytes; errors name the setting it came from. */
function readBounded(path: string, max: number, setting: string, opts: { missingOk?: boolean } = {}): Buffer | undefined {
  if (!path || path.length > 4096 || path.includes('\0')) throw configError(`${setting}: not a usable file path`);
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw configError(`${setting}=${path}: not a regular file`);
    size = st.size;
  } catch (err) {
    if (err instanceof TemporalConnectionError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && opts.missingOk) return undefined;
    throw configError(`${setting}=${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? 'unreadable')}`);
  }
  if (size > max)
    throw configError(`${setting}=${path}: ${size} bytes, more than the ${max} a ${setting.includes('CONFIG') ? 'config file' : 'PEM file'} may have`);
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw configError(`${setting}=${path}: ${code === 'EACCES' ? 'permission denied' : (code ?? 'unreadable')}`);
  }
}

/** `host:port` or `[v6]:port`; the host a DNS name or an IP address. */
export function parseAddress(address: string, setting: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535 || (m[1] !== undefined && isIP(m[1]) !== 6)) {
    throw configError(`${setting}=${JSON.stringify(address.slice(0, 300))}: expected <host>:<port>, e.g. temporal.example.com:7233`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

function checkCertificate(pem: Buffer, setting: string): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    throw configError(`${setting}: not a PEM certificate (-----BEGIN CERTIFICATE-----)`);
  }
  const now = Date.now();
  if (Date.parse(cert.validTo) < now) throw configError(`${setting}: the certificate (${subjectOf(cert)}) expired on ${cert.validTo}`);
  if (Date.parse(cert.validFrom) > now) throw configError(`${setting}: the certificate (${subjectOf(cert)}) is not valid before ${cert.validFrom}`);
  return cert;
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.split('\n').join(', ');
}

function dataOrFile(
  source: ConfigDataSource | undefined,
  envPath: string,
  envData: string,
  tomlKey: string,
  where: (key: string) => string,
  env: Env,
): { bytes?: Buffer; file?: string; inline?: string } {
  if (!source) return {};
  if ('path' in source) {
    const setting = env[envPath] !== undefined ? envPath : where(`${tomlKey}_path`);
    return { bytes: readBounded(source.path, MAX_PEM_BYTES, setting), file: source.path };
  }
  const setting = env[envData] !== undefined ? envData : where(`${tomlKey}_data`);
  const bytes = Buffer.from(source.data);
  if (bytes.length > MAX_PEM_BYTES) throw configError(`${setting}: more than ${MAX_PEM_BYTES} bytes`);
  return { bytes, inline: setting };
}

function checkToken(value: string, setting: string, max: number): string {
  if (Buffer.byteLength(value) > max) throw configError(`${setting}: longer than ${max} bytes`);
  // It travels in a header: visible ASCII only (no spaces, no line breaks that could add a header).
  if (!/^[\x21-\x7e]+$/.test(value)) throw configError(`${setting}: must be printable ASCII without spaces`);
  return value;
}

/**
 * The Temporal settings from the environment and the config file, checked. Throws TemporalConnectionError
 * (problem 'config') naming the setting at fault.
 */
export function loadTemporalSettings(env: Env = process.env): TemporalSettings {
  const envVars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  const explicitFile = env.TEMPORAL_CONFIG_FILE || undefined;
  const candidate = explicitFile ?? defaultConfigFile(env);
  const data = candidate
    ? readBounded(candidate, MAX_CONFIG_BYTES, explicitFile ? 'TEMPORAL_CONFIG_FILE' : 'the default config file', { missingOk: !explicitFile })
    : undefined;
  const configFile = data ? candidate : undefined;

  const requested = env.TEMPORAL_PROFILE || undefined;
  const profile = requested ?? 'default';
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(profile)) throw configError(`TEMPORAL_PROFILE=${JSON.stringify(profile.slice(0, 80))}: not a profile name`);
  if (data) {
    let names: string[];
    try {
      names = Object.keys(loadClientConfig({ configSource: { data: data.toString('utf8') }, configFileStrict: true }).profiles);
    } catch (err) {
      throw configError(`config file ${configFile}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
    if (requested && !names.includes(requested)) {
      throw configError(`TEMPORAL_PROFILE=${requested}: no [profile.${requested}] in ${configFile} (profiles there: ${names.join(', ') || 'none'})`);
    }
  } else if (requested) {
    throw configError(
      `TEMPORAL_PROFILE=${requested}, but there is no config file ${explicitFile ? '' : `(looked for ${candidate ?? 'one in $HOME'}; set TEMPORAL_CONFIG_FILE)`}`.trim(),
    );
  }

  let p: ClientConfigProfile;
  try {
    p = loadClientConfigProfile({
      ...(data ? { configSource: { data: data.toString('utf8') } } : { disableFile: true }),
      profile,
      configFileStrict: true,
      overrideEnvVars: envVars,
    });
  } catch (err) {
    throw configError(`profile "${profile}"${configFile ? ` in ${configFile}` : ''}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const where = (key: string) => `${configFile} [profile.${profile}${key.includes('.') ? '' : '.tls'}] ${key}`;

  const rawAddress = p.address ?? DEFAULT_TEMPORAL_ADDRESS;
  const addressSetting = env.TEMPORAL_ADDRESS !== undefined ? 'TEMPORAL_ADDRESS' : `${configFile} [profile.${profile}] address`;
  const { host, port } = parseAddress(rawAddress.trim(), addressSetting);
  const address = rawAddress.trim();

  const namespace = p.namespace ?? DEFAULT_NAMESPACE;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(namespace)) {
    const setting = env.TEMPORAL_NAMESPACE !== undefined ? 'TEMPORAL_NAMESPACE' : `${configFile} [profile.${profile}] namespace`;
    throw configError(`${setting}=${JSON.stringify(namespace.slice(0, 300))}: not a namespace name`);
  }

  // The API key: by file (underlay's own reference), else the profile's or TEMPORAL_API_KEY.
  let apiKey: string | undefined;
  let apiKeySource: string | undefined;
  const keyFile = env[ENV_API_KEY_FILE];
  if (keyFile) {
    if (env.TEMPORAL_API_KEY !== undefined) throw configError(`set either ${ENV_API_KEY_FILE} or TEMPORAL_API_KEY, not both`);
    const text = readBounded(keyFile, MAX_API_KEY_BYTES, ENV_API_KEY_FILE)!.toString('utf8').trim();
    if (!text) throw configError(`${ENV_API_KEY_FILE}=${keyFile}: the file is empty`);
    apiKey = checkToken(text, `${ENV_API_KEY_FILE}=${keyFile}`, MAX_API_KEY_BYTES);
    apiKeySource = `${ENV_API_KEY_FILE}=${keyFile}`;
  } else if (p.apiKey !== undefined && p.apiKey !== '') {
    apiKeySource = env.TEMPORAL_API_KEY !== undefined ? 'TEMPORAL_API_KEY' : `${configFile} [profile.${profile}] api_key`;
    apiKey = checkToken(p.apiKey, apiKeySource, MAX_API_KEY_BYTES);
  }

  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.grpcMeta ?? {})) {
    if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(k)) throw configError(`gRPC metadata header ${JSON.stringify(k.slice(0, 80))}: not a header name`);
    metadata[k] = checkToken(v, `gRPC metadata header ${k}`, MAX_META_BYTES);
  }

  if (['1', 'true'].includes(env.TEMPORAL_TLS_DISABLE_HOST_VERIFICATION ?? '')) {
    throw configError(
      'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: underlay always verifies the server certificate; set TEMPORAL_TLS_SERVER_NAME to the name it carries instead',
    );
  }

  // TLS: on with a [tls] table or TEMPORAL_TLS*, or implied by an API key (the SDK's rule).
  const t = p.tls;
  const tlsOn = t ? t.disabled !== true : apiKey !== undefined;
  let tls: TemporalTlsSettings | false = false;
  let tlsOption: TLSConfig | boolean | undefined;
  if (tlsOn) {
    if (t?.clientKey && 'data' in t.clientKey) {
      const setting = env.TEMPORAL_TLS_CLIENT_KEY_DATA !== undefined ? 'TEMPORAL_TLS_CLIENT_KEY_DATA' : where('client_key_data');
      throw configError(`${setting}: underlay takes the client key by file only (TEMPORAL_TLS_CLIENT_KEY_PATH / client_key_path), never inline`);
    }
    if (Boolean(t?.clientCert) !== Boolean(t?.clientKey)) {
      throw configError(
        t?.clientCert
          ? 'a client certificate without its key: set TEMPORAL_TLS_CLIENT_KEY_PATH (or client_key_path) too'
          : 'a client key without its certificate: set TEMPORAL_TLS_CLIENT_CERT_PATH (or client_cert_path) too',
      );
    }
    const ca = dataOrFile(t?.serverCACert, 'TEMPORAL_TLS_SERVER_CA_CERT_PATH', 'TEMPORAL_TLS_SERVER_CA_CERT_DATA', 'server_ca_cert', where, env);
    const crt = dataOrFile(t?.clientCert, 'TEMPORAL_TLS_CLIENT_CERT_PATH', 'TEMPORAL_TLS_CLIENT_CERT_DATA', 'client_cert', where, env);
    const key = dataOrFile(t?.clientKey, 'TEMPORAL_TLS_CLIENT_KEY_PATH', 'TEMPORAL_TLS_CLIENT_KEY_DATA', 'client_key', where, env);
    if (ca.bytes) checkCertificate(ca.bytes, ca.file ?? ca.inline!);
    let clientSubject: string | undefined;
    if (crt.bytes && key.bytes) {
      const cert = checkCertificate(crt.bytes, crt.file ?? crt.inline!);
      clientSubject = subjectOf(cert);
      let privateKey;
      try {
        privateKey = createPrivateKey(key.bytes);
      } catch {
        throw configError(`${key.file}: not an unencrypted PEM private key`);
      }
      if (!cert.checkPrivateKey(privateKey))
        throw configError(`${key.file} is not the key of the client certificate ${crt.file ?? crt.inline} (${clientSubject})`);
    }
    const serverName = t?.serverName || undefined;
    if (serverName !== undefined && !/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(serverName)) {
      throw configError(`TLS server name ${JSON.stringify(serverName.slice(0, 300))}: not a host name`);
    }
    tls = {
      caFile: ca.file,
      caInline: ca.inline,
      clientCertFile: crt.file,
      clientCertInline: crt.inline,
      clientKeyFile: key.file,
      clientSubject,
      serverName,
    };
    tlsOption =
      ca.bytes || crt.bytes || serverName
        ? {
            ...(serverName ? { serverNameOverride: serverName } : {}),
            ...(ca.bytes ? { serverRootCACertificate: ca.bytes } : {}),
            ...(crt.bytes && key.bytes ? { clientCertPair: { crt: crt.bytes, key: key.bytes } } : {}),
          }
        : true;
  } else if (apiKey !== undefined) {
    throw configError(`an API key (${apiKeySource}) is sent only over TLS, and TLS is turned off (TEMPORAL_TLS / [tls] disabled)`);
  }

  return {
    profile,
    configFile,
    address,
    host,
    port,
    namespace,
    tls,
    apiKeySource,
    metadataKeys: Object.keys(metadata),
    connectionOptions: {
      address,
      ...(tlsOption !== undefined ? { tls: tlsOption } : {}),
      ...(apiKey !== undefined ? { apiKey } : {}),
      ...(Object.keys(metadata).length ? { metadata } : {}),
    },
  };
}

/** One line naming the profile, address, namespace and how we authenticate — file names, never secrets. */
export function describeTemporalSettings(s: TemporalSettings): string {
  const from = s.configFile ? `from ${s.configFile}` : 'no config file';
  let security = 'plain text (no TLS)';
  if (s.tls) {
    const parts = [
      s.tls.caFile ? `CA ${s.tls.caFile}` : s.tls.caInline ? `CA from ${s.tls.caInline}` : 'system CAs',
      ...(s.tls.clientCertFile || s.tls.clientCertInline
        ? [`client certificate ${s.tls.clientCertFile ?? s.tls.clientCertInline} (${s.tls.clientSubject})`]
        : []),
      ...(s.tls.serverName ? [`server name ${s.tls.serverName}`] : []),
    ];
    security = `TLS (${parts.join(', ')})`;
  }
  const key = s.apiKeySource ? `, API key from ${s.apiKeySource}` : '';
  const meta = s.metadataKeys.length ? `, gRPC headers ${s.metadataKeys.join(', ')}` : '';
  return `Temporal profile "${s.profile}" (${from}): ${s.address}, namespace ${s.namespace}, ${security}${key}${meta}`;
}
