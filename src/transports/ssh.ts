/**
 * SSH transport: one pinned-host-key connection per server, many commands over it (one channel each).
 *
 * Every failure surfaces as a typed error from common/errors so activities can tell Temporal whether to retry:
 * host key mismatch / auth / credential problems are final, connection problems and timeouts are retryable.
 */
import { StringDecoder } from 'node:string_decoder';
import { Client, type ClientChannel } from 'ssh2';
import type { SshCredentialRefSpec } from '../spec/server';
import {
  AuthenticationError,
  CommandTimeoutError,
  ConnectionError,
  CredentialUnavailableError,
  HostKeyMismatchError,
  InvalidSpecError,
  type UnderlayError,
} from '../common/errors';
import { FINGERPRINT_RE, fingerprintsEqual, sha256Fingerprint } from './fingerprint';
import { resolveAuth } from './ssh-auth';

export { sha256Fingerprint } from './fingerprint';

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  /** Pinned host key: 'SHA256:' + 43 base64 chars, as `ssh-keygen -lf` prints. Any other key is refused. */
  hostKey: string;
  credentials: SshCredentialRefSpec;
  /** Server id, used in error messages. */
  label: string;
}

export interface ConnectOptions {
  /** Whole handshake incl. authentication. Default 20000. */
  connectTimeoutMs?: number;
  /** SSH-level keepalive; a dead peer is detected after 3 missed replies. Default 15000; 0 disables. */
  keepaliveIntervalMs?: number;
}

export interface ExecOptions {
  /** Default 120000. On expiry the command is sent KILL, its channel closed, and CommandTimeoutError thrown. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed (stdin is closed even without this). */
  stdin?: string | Buffer;
  /** Streamed output, UTF-8 decoded (multi-byte characters are never split across chunks). */
  onData?: (chunk: string, stream: 'stdout' | 'stderr') => void;
  /** Shown in errors instead of the command text. */
  description?: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** null when the command was killed by a signal (see `signal`). */
  exitCode: number | null;
  signal: string | null;
  /** Output beyond MAX_CAPTURE_BYTES was dropped: stdout keeps its head, stderr its tail. */
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  durationMs: number;
}

/** Per stream. Enough for any inventory command; bounds memory if something spews. */
export const MAX_CAPTURE_BYTES = 4 * 1024 * 1024;

const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
const DEFAULT_KEEPALIVE_MS = 15_000;
const DEFAULT_EXEC_TIMEOUT_MS = 120_000;
const STDERR_IN_ERROR_CHARS = 2000;

type Ssh2Error = Error & { level?: string; code?: string | number };

export class SshSession {
  readonly #client: Client;
  readonly #target: SshTarget;
  #closed = false;
  #closeReason = '';
  /** Abort hooks of commands in flight, so a dropped connection fails them at once instead of leaving them hanging. */
  readonly #inflight = new Set<(reason: string) => void>();

  private constructor(client: Client, target: SshTarget) {
    this.#client = client;
    this.#target = target;
    // A permanent 'error' listener: an unhandled 'error' event (e.g. keepalive timeout) would crash the worker.
    client.on('error', (err: Ssh2Error) => this.#drop(`connection error: ${err.message}`));
    client.on('end', () => this.#drop('connection ended by the server'));
    client.on('close', () => this.#drop('connection closed'));
  }

  get closed(): boolean {
    return this.#closed;
  }

  static async connect(target: SshTarget, opts: ConnectOptions = {}): Promise<SshSession> {
    const host = target.label;
    if (!FINGERPRINT_RE.test(target.hostKey)) {
      // Checked so a typo can't silently turn into "every key mismatches" — or into anything looser.
      throw new InvalidSpecError(`pinned host key is not an OpenSSH SHA256 fingerprint`, [], { host, field: 'hostKey' });
    }
    const auth = await resolveAuth(target.credentials, target.user, host);
    const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const keepalive = opts.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_MS;
    const where = `${target.host}:${target.port}`;

    return new Promise<SshSession>((resolve, reject) => {
      const client = new Client();
      let observed: string | undefined; // set only when the presented key did not match
      let settled = false;

      const classify = (err: Ssh2Error): UnderlayError => {
        if (observed !== undefined) {
          return new HostKeyMismatchError(`host key mismatch at ${where}: refusing the connection`, {
            host,
            field: 'hostKey',
            expected: target.hostKey,
            observed,
          });
        }
        switch (err.level) {
          case 'client-authentication':
            return new AuthenticationError(`${where} refused ${auth.source} for user ${target.user}`, { host });
          case 'agent':
            return new CredentialUnavailableError(`${auth.source} is unusable: ${err.message}`, { host });
          case 'client-timeout':
            return new ConnectionError(`timed out after ${timeoutMs} ms connecting to ${where}`, { host });
          case 'client-socket':
          case 'client-dns':
            return new ConnectionError(`cannot connect to ${where}: ${err.code ?? err.message}`, { host });
          default:
            return new ConnectionError(`SSH handshake with ${where} failed: ${err.message}`, { host });
        }
      };

      const settle = (err: UnderlayError | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        client.off('ready', onReady).off('error', onError).off('close', onClose);
        if (err) {
          client.on('error', () => {}); // late errors from the dying client must not go unhandled
          client.destroy();
          reject(err);
        } else {
          resolve(new SshSession(client, target));
        }
      };
      const onReady = (): void => settle(undefined);
      const onError = (err: Ssh2Error): void => settle(classify(err));
      const onClose = (): void =>
        settle(observed !== undefined ? classify(new Error('closed')) : new ConnectionError(`connection to ${where} closed during the handshake`, { host }));
      // ssh2's readyTimeout should fire first; this guard only makes sure connect() can never hang.
      const guard = setTimeout(() => settle(new ConnectionError(`timed out after ${timeoutMs} ms connecting to ${where}`, { host })), timeoutMs + 1000);

      client.on('ready', onReady).on('error', onError).on('close', onClose);
      try {
        client.connect({
          host: target.host,
          port: target.port,
          username: target.user,
          readyTimeout: timeoutMs,
          keepaliveInterval: keepalive,
          keepaliveCountMax: 3,
          // Without `hostHash`, ssh2 passes the raw key blob, which is what OpenSSH fingerprints. Returning false
          // makes ssh2 abort the key exchange, before any authentication or command. Never accept-all.
          hostVerifier: (key: Buffer): boolean => {
            const fp = sha256Fingerprint(key);
            if (fingerprintsEqual(fp, target.hostKey)) return true;
            observed = fp;
            return false;
          },
          // Exactly one method, from the reference (no 'none' probe, no password, no keyboard-interactive).
          authHandler: [auth.method],
        });
      } catch (e) {
        settle(new ConnectionError(`cannot start SSH connection to ${where}: ${(e as Error).message}`, { host }));
      }
    });
  }

  /** Runs a command; resolves with its output whatever the exit code. Rejects only on timeout / transport failure. */
  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const description = opts.description ?? command.slice(0, 200);
    const ctx = { host: this.#target.label, command: description };
    if (this.#closed) {
      return Promise.reject(new ConnectionError(`SSH session is closed (${this.#closeReason})`, ctx));
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    const started = Date.now();

    return new Promise<ExecResult>((resolve, reject) => {
      const out = new Capture('head');
      const err = new Capture('tail');
      const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
      let channel: ClientChannel | undefined;
      let exit: { code: number | null; signal: string | null } | undefined;
      let settled = false;

      const finish = (e: Error | undefined, r?: ExecResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#inflight.delete(abort);
        if (e) reject(e);
        else resolve(r!);
      };
      const stopChannel = (): void => {
        if (!channel) return;
        // close() frees the channel on our side even if the server ignores the signal, so we never wait on it.
        sendSignal(channel, 'KILL');
        try {
          channel.close();
        } catch {
          /* channel already gone */
        }
      };
      const abort = (reason: string): void => finish(new ConnectionError(`connection lost while the command was running (${reason})`, ctx));
      this.#inflight.add(abort);

      const timer = setTimeout(() => {
        stopChannel();
        finish(
          new CommandTimeoutError(`command did not finish within ${timeoutMs} ms; sent KILL and closed its channel`, {
            ...ctx,
            stderr: tailOf(err.text(), STDERR_IN_ERROR_CHARS),
          }),
        );
      }, timeoutMs);

      const onChunk = (stream: 'stdout' | 'stderr', cap: Capture) => (chunk: Buffer) => {
        if (settled) return;
        cap.push(Buffer.from(chunk)); // own copy: don't pin or alias ssh2's packet buffers
        if (!opts.onData) return;
        const s = decoders[stream].write(chunk);
        if (!s) return;
        try {
          opts.onData(s, stream);
        } catch (e) {
          // A throwing callback must not become an uncaught exception in the worker: fail this command instead.
          stopChannel();
          finish(e instanceof Error ? e : new Error(String(e)));
        }
      };

      try {
        this.#client.exec(command, (e, ch) => {
          if (e) {
            finish(new ConnectionError(`cannot open an SSH channel: ${e.message}`, ctx));
            return;
          }
          channel = ch;
          if (settled) {
            // Timed out (or connection dropped) while the channel was opening.
            stopChannel();
            return;
          }
          ch.on('data', onChunk('stdout', out));
          ch.stderr.on('data', onChunk('stderr', err));
          ch.on('exit', (code: number | null, signal?: string) => {
            exit = { code: typeof code === 'number' ? code : null, signal: signal ?? null };
          });
          ch.on('error', (ce: Error) => {
            stopChannel();
            finish(new ConnectionError(`SSH channel error: ${ce.message}`, ctx));
          });
          ch.on('close', () => {
            // No exit status + the connection gone = the command's fate is unknown: a retryable transport error.
            if (!exit && this.#closed) {
              finish(new ConnectionError(`connection lost while the command was running (${this.#closeReason})`, ctx));
              return;
            }
            if (opts.onData) {
              try {
                for (const stream of ['stdout', 'stderr'] as const) {
                  const rest = decoders[stream].end();
                  if (rest) opts.onData(rest, stream);
                }
              } catch (e) {
                finish(e instanceof Error ? e : new Error(String(e)));
                return;
              }
            }
            finish(undefined, {
              stdout: out.text(),
              stderr: err.text(),
              exitCode: exit?.code ?? null,
              signal: exit?.signal ?? null,
              stdoutTruncated: out.truncated,
              stderrTruncated: err.truncated,
              durationMs: Date.now() - started,
            });
          });
          // Always send EOF: a command that reads stdin must not wait forever for input we will never send.
          if (opts.stdin !== undefined) ch.end(opts.stdin);
          else ch.end();
        });
      } catch (e) {
        finish(new ConnectionError(`cannot start command: ${(e as Error).message}`, ctx));
      }
    });
  }

  /** Idempotent. Commands still running fail with ConnectionError. */
  close(): void {
    if (this.#closed) return;
    this.#drop('closed by the caller');
    this.#client.end();
    // end() waits for the server to close; don't let a silent peer keep the socket (and the process) alive.
    setTimeout(() => this.#client.destroy(), 2000).unref();
  }

  #drop(reason: string): void {
    if (!this.#closed) {
      this.#closed = true;
      this.#closeReason = reason;
    }
    for (const abort of [...this.#inflight]) abort(this.#closeReason);
  }
}

/** Connects, runs fn, and always closes the session. */
export async function withSsh<T>(target: SshTarget, fn: (s: SshSession) => Promise<T>, opts?: ConnectOptions): Promise<T> {
  const session = await SshSession.connect(target, opts);
  try {
    return await fn(session);
  } finally {
    session.close();
  }
}

/** Bounded output buffer: 'head' keeps the first MAX_CAPTURE_BYTES, 'tail' the last. */
class Capture {
  #chunks: Buffer[] = [];
  #bytes = 0;
  truncated = false;
  constructor(private readonly keep: 'head' | 'tail') {}

  push(chunk: Buffer): void {
    if (this.keep === 'head') {
      const room = MAX_CAPTURE_BYTES - this.#bytes;
      if (room <= 0) {
        this.truncated = true;
        return;
      }
      if (chunk.length > room) this.truncated = true;
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.#chunks.push(part);
      this.#bytes += part.length;
      return;
    }
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    while (this.#bytes > MAX_CAPTURE_BYTES && this.#chunks.length) {
      this.truncated = true;
      const first = this.#chunks[0]!;
      const excess = this.#bytes - MAX_CAPTURE_BYTES;
      if (first.length <= excess) {
        this.#chunks.shift();
        this.#bytes -= first.length;
      } else {
        this.#chunks[0] = first.subarray(excess);
        this.#bytes -= excess;
      }
    }
  }

  text(): string {
    return Buffer.concat(this.#chunks).toString('utf8');
  }
}

/**
 * ssh2's `channel.signal()` silently does nothing once the channel's writable side has ended (state 'eof') — and
 * we always end it right away (stdin EOF). So send the "signal" channel request through the protocol object directly when the
 * channel is still open, falling back to the public method if ssh2's internals ever change shape.
 */
function sendSignal(channel: ClientChannel, name: string): void {
  const internals = channel as unknown as {
    outgoing?: { id?: unknown; state?: unknown };
    _client?: { _protocol?: { signal?: (id: number, name: string) => void } };
  };
  const proto = internals._client?._protocol;
  const out = internals.outgoing;
  try {
    if (proto && typeof proto.signal === 'function' && typeof out?.id === 'number') {
      // After our EOF ssh2 marks the channel 'eof'; RFC 4254 still allows channel requests then.
      if (out.state === 'open' || out.state === 'eof') proto.signal(out.id, name);
    } else {
      channel.signal(name);
    }
  } catch {
    /* channel or connection already gone: nothing left to signal */
  }
}

function tailOf(s: string, n: number): string {
  return s.length > n ? s.slice(-n) : s;
}
