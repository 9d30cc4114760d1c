/**
 * Connections to Temporal for the CLI (Client over grpc-js), the worker (NativeConnection, the Rust core) and the
 * codec server's check — all from the same settings (temporal-config.ts: envconfig profile + TEMPORAL_* variables),
 * each announced in one line on stderr (profile, address, namespace, TLS material by file name, never a secret),
 * each failing with one TemporalConnectionError that says what is wrong: unreachable, the server's certificate
 * not trusted, our client certificate refused, TLS/plain-text mismatch, API key refused, namespace missing.
 * Payload encryption from UNDERLAY_CODEC_KEYS_FILE or UNDERLAY_CODEC_KEY(_ID) (codec-keys.ts); nothing set → off.
 */
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection } from '@temporalio/worker';
import { TemporalConnectionError } from '../common/errors';
import { dataConverterFromEnv, loadCodecKeys } from './codec-keys';
import { describeTemporalSettings, loadTemporalSettings, type TemporalSettings } from './temporal-config';
import { probeTemporal } from './temporal-probe';

type Env = Record<string, string | undefined>;

export interface ConnectOptions {
  /** Where the one-line description of the settings goes; default stderr. */
  announce?: (line: string) => void;
  env?: Env;
}

const toStderr = (line: string) => process.stderr.write(`underlay: ${line}\n`);

/** The gRPC status of an SDK error: grpc-js puts it on the error or its cause; the Rust core only in its text. */
function grpcStatus(err: unknown): { code?: number; text: string } {
  const e = err as { code?: unknown; details?: unknown; message?: unknown; cause?: { code?: unknown; details?: unknown; message?: unknown } } | undefined;
  const code = typeof e?.code === 'number' ? e.code : typeof e?.cause?.code === 'number' ? e.cause.code : undefined;
  const text = [e?.message, e?.cause?.message].filter((x): x is string => typeof x === 'string').join(': ');
  if (code !== undefined) return { code, text };
  // tonic's Code descriptions, as NativeConnection reports them ("code: 'The request does not have valid …'").
  if (/Unauthenticated|does not have valid authentication credentials/.test(text)) return { code: 16, text };
  if (/PermissionDenied|does not have permission/.test(text)) return { code: 7, text };
  if (/NotFound|Some requested entity .* was not found/.test(text)) return { code: 5, text };
  return { text };
}

function serverMessage(text: string): string {
  const m = /message: "([^"]*)"/.exec(text) ?? /\d+ [A-Z_]+: (.*)$/.exec(text);
  return (m?.[1] ?? text).slice(0, 300);
}

/** A refusal at the gRPC level mapped to what the operator must change; undefined when it is none of those. */
export function mapServiceError(s: TemporalSettings, err: unknown): TemporalConnectionError | undefined {
  const { code, text } = grpcStatus(err);
  const at = `Temporal at ${s.address} (profile "${s.profile}")`;
  if (code === 16) {
    return new TemporalConnectionError(
      'api-key',
      s.apiKeySource
        ? `${at} refused the API key from ${s.apiKeySource} (UNAUTHENTICATED: ${serverMessage(text)}) — check that the key is current and meant for this account`
        : `${at} requires authentication (UNAUTHENTICATED: ${serverMessage(text)}) — set an API key (UNDERLAY_TEMPORAL_API_KEY_FILE, TEMPORAL_API_KEY or the profile's api_key)`,
    );
  }
  if (code === 7) {
    return new TemporalConnectionError(
      'permission',
      `${at} does not let this ${s.apiKeySource ? 'API key' : 'client certificate'} use namespace ${s.namespace} (PERMISSION_DENIED: ${serverMessage(text)})`,
    );
  }
  if (code === 5 && /namespace/i.test(text)) {
    return new TemporalConnectionError(
      'namespace',
      `namespace "${s.namespace}" does not exist on ${at} — create it (temporal operator namespace create --namespace ${s.namespace}) or set TEMPORAL_NAMESPACE / the profile's namespace`,
    );
  }
  return undefined;
}

function describeCause(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 300);
}

/**
 * Connects with `open`, while probing the same address with the same TLS material: a definite transport problem
 * (certificate not trusted, client certificate refused, TLS mismatch) fails at once with its reason instead of
 * after the SDK's connect timeout; an SDK failure is explained by the probe or mapped from its gRPC status.
 */
async function establish<C>(s: TemporalSettings, open: () => Promise<C>, close: (c: C) => Promise<void>): Promise<C> {
  const probe = probeTemporal(s);
  const attempt = open();
  attempt.catch(() => undefined);
  const first = await Promise.race([
    attempt.then(
      (conn) => ({ conn }) as const,
      (err: unknown) => ({ err }) as const,
    ),
    probe.then((p) => ({ probe: p }) as const),
  ]);
  if ('conn' in first) return first.conn;
  if ('probe' in first) {
    const p = first.probe;
    // With the system's CAs the SDK's trust store may differ from Node's: let the SDK decide then. A timeout may
    // be a slow server: the SDK keeps trying until its own deadline.
    const ownTrust = p.problem?.problem !== 'tls-trust' || (s.tls && (s.tls.caFile || s.tls.caInline));
    if (p.problem && p.definite && ownTrust) {
      void attempt.then(close, () => undefined);
      throw p.problem;
    }
    try {
      return await attempt;
    } catch (err) {
      throw mapServiceError(s, err) ?? p.problem ?? unreachable(s, err);
    }
  }
  const mapped = mapServiceError(s, first.err);
  if (mapped) throw mapped;
  const p = await probe;
  throw p.problem ?? unreachable(s, first.err);
}

function unreachable(s: TemporalSettings, err: unknown): TemporalConnectionError {
  return new TemporalConnectionError(
    'unreachable',
    `cannot connect to Temporal at ${s.address} (profile "${s.profile}"): ${describeCause(err)} — check TEMPORAL_ADDRESS or TEMPORAL_PROFILE, or start the dev server: scripts/dev-server.sh start`,
  );
}

interface NamespaceService {
  describeNamespace(req: { namespace: string }): Promise<unknown>;
}

/** Connection.connect does not look at the namespace: ask for it, so a missing one is named now, not later. */
async function checkNamespace(s: TemporalSettings, service: NamespaceService): Promise<void> {
  try {
    await service.describeNamespace({ namespace: s.namespace });
  } catch (err) {
    throw mapServiceError(s, err) ?? unreachable(s, err);
  }
}

/** The settings, announced, and a connection to them (grpc-js for clients, the core's for workers) whose namespace exists. */
async function openChecked<C extends { workflowService: NamespaceService; close(): Promise<void> }>(
  opts: ConnectOptions,
  connect: (s: TemporalSettings) => Promise<C>,
): Promise<{ s: TemporalSettings; connection: C }> {
  const s = loadTemporalSettings(opts.env);
  (opts.announce ?? toStderr)(describeTemporalSettings(s));
  const connection = await establish(
    s,
    () => connect(s),
    (c) => c.close(),
  );
  try {
    await checkNamespace(s, connection.workflowService);
  } catch (err) {
    await connection.close();
    throw err;
  }
  return { s, connection };
}

/** A client; with payload encryption when configured (default: from the environment; workers use the same keys). */
export async function connectClient(dataConverter?: DataConverter, opts: ConnectOptions = {}): Promise<Client> {
  const dc = dataConverter ?? dataConverterFromEnv(opts.env);
  const { s, connection } = await openChecked(opts, (x) => Connection.connect(x.connectionOptions));
  return new Client({ connection, namespace: s.namespace, ...(dc ? { dataConverter: dc } : {}) });
}

/** Runs `fn` with a client and closes its connection afterwards, whatever `fn` did. */
export async function withClient<T>(fn: (client: Client) => Promise<T>, opts: ConnectOptions = {}): Promise<T> {
  const client = await connectClient(undefined, opts);
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}

/** The worker's connection (the Rust core's own gRPC client), checked like the client's. */
export async function connectWorker(opts: ConnectOptions = {}): Promise<{ connection: NativeConnection; namespace: string; settings: TemporalSettings }> {
  loadCodecKeys(opts.env); // a broken encryption setting fails here, before connecting (createWorker uses it)
  const { s, connection } = await openChecked(opts, (x) => NativeConnection.connect(x.connectionOptions));
  return { connection, namespace: s.namespace, settings: s };
}

/** Connects, checks the namespace, and closes again: the codec server's start-up check of its profile. */
export async function checkTemporal(opts: ConnectOptions = {}): Promise<TemporalSettings> {
  const { s, connection } = await openChecked(opts, (x) => Connection.connect(x.connectionOptions));
  await connection.close();
  return s;
}
