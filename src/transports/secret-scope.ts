/**
 * The worker's secret scope: which environment variables and files a spec may make the worker read.
 *
 * A spec names credentials by reference (`passwordEnv: X`, `privateKeyFile: /p`), and the spec also names where
 * they are sent (`bmc.address`, `vcenter.address`). So whoever writes a spec chooses which of the worker's secrets
 * leave the machine, and to where. The worker — not the spec — therefore decides what is reachable at all:
 *
 *   UNDERLAY_SECRET_ENV_PREFIX   env vars a spec may name must start with it        (default UNDERLAY_SECRET_)
 *   UNDERLAY_CREDENTIALS_DIR     files a spec may name must resolve inside it        (default /etc/underlay/credentials)
 *
 * The worker's own secrets are unreachable by construction: the codec keys and the codec server's token are
 * `UNDERLAY_CODEC_*`, Temporal's credentials `TEMPORAL_*`, and no allowed prefix may overlap either family
 * (checked when the scope is read, so a prefix like `UNDERLAY_` is a configuration error). The files those
 * variables point at (codec key file, Temporal TLS key, ...) must lie outside the credentials directory, and a
 * reference that resolves to one of them is refused even so.
 *
 * Files are read the way OpenSSH reads a private key: the path is resolved (symlinks followed) and must stay
 * inside the directory; `.`/`..` segments, /proc, /dev and /sys are refused outright; the file is opened without
 * following a final symlink and without blocking (a FIFO cannot stall the worker), then fstat'ed: a regular file
 * only (not /dev/zero, a FIFO, a directory), at most 64 KiB for a secret (1 MiB for a certificate bundle),
 * owned by the worker's user or root, and — for keys and password files — not readable by group or others.
 *
 * A reference outside the scope is an InvalidSpecError (non-retryable) naming the field and the reference (the
 * variable name or the path, never what it holds); an unusable file or unset variable inside the scope is a
 * CredentialUnavailableError. The worker is the authority: it checks every reference of a spec before an
 * activity connects anywhere (`assertSecretScope`) and again at every read. `underlay validate` only warns,
 * since the CLI may run on another machine with another scope.
 */
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, resolve, sep } from 'node:path';
import { CredentialUnavailableError, InvalidSpecError } from '../common/errors';
import { secretReferences, type SecretReference } from '../spec/references';
import type { ServerSpec } from '../spec/server';

export const ENV_SECRET_PREFIX = 'UNDERLAY_SECRET_ENV_PREFIX';
export const ENV_CREDENTIALS_DIR = 'UNDERLAY_CREDENTIALS_DIR';
export const DEFAULT_SECRET_PREFIX = 'UNDERLAY_SECRET_';
export const DEFAULT_CREDENTIALS_DIR = '/etc/underlay/credentials';
/** A private key, password file or passphrase: OpenSSH keys are a few KiB at most. */
export const MAX_SECRET_BYTES = 64 * 1024;
/** A CA bundle or a pinned certificate (Debian's whole ca-certificates.crt is ≈ 220 KiB). */
export const MAX_CERTIFICATE_BYTES = 1024 * 1024;

/** Env-var families the worker reads for itself; an allowed prefix may not overlap them. */
export const RESERVED_ENV_PREFIXES = ['UNDERLAY_CODEC_', 'TEMPORAL_'] as const;
/** Env vars naming files the worker reads for itself: those files must stay out of the credentials directory. */
export const RESERVED_FILE_ENVS = [
  'UNDERLAY_CODEC_KEYS_FILE',
  'UNDERLAY_CODEC_TOKEN_FILE',
  'TEMPORAL_CONFIG_FILE',
  'TEMPORAL_TLS_CLIENT_KEY_PATH',
  'TEMPORAL_TLS_CLIENT_CERT_PATH',
  'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
] as const;
/** The agent socket variable a spec may always name (it holds a socket path, not a secret). */
const AGENT_SOCKET_ENV = 'SSH_AUTH_SOCK';
const PREFIX_RE = /^[A-Z][A-Z0-9_]{2,62}_$/;
const FORBIDDEN_ROOTS = ['/proc', '/dev', '/sys'];

type Env = Record<string, string | undefined>;

export interface SecretScope {
  /** Env vars a spec may name start with this. */
  envPrefix: string;
  /** Absolute; files a spec names must resolve inside it. */
  credentialsDir: string;
  /** The environment secrets are read from (the worker's own). */
  env: Env;
}

/** A configuration error of the scope itself (the worker's environment, not a spec). */
export class SecretScopeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretScopeConfigError';
  }
}

/** The scope configured in the worker's environment; throws SecretScopeConfigError on a bad setting. */
export function secretScopeFromEnv(env: Env = process.env): SecretScope {
  const envPrefix = env[ENV_SECRET_PREFIX] || DEFAULT_SECRET_PREFIX;
  if (!PREFIX_RE.test(envPrefix)) {
    throw new SecretScopeConfigError(
      `${ENV_SECRET_PREFIX}=${JSON.stringify(envPrefix)}: expected 4–64 of A-Z 0-9 _ ending in "_", e.g. ${DEFAULT_SECRET_PREFIX}`,
    );
  }
  for (const reserved of RESERVED_ENV_PREFIXES) {
    if (reserved.startsWith(envPrefix) || envPrefix.startsWith(reserved)) {
      throw new SecretScopeConfigError(
        `${ENV_SECRET_PREFIX}=${envPrefix} overlaps ${reserved}*, the worker's own settings (codec keys, Temporal credentials): choose a prefix such as ${DEFAULT_SECRET_PREFIX}`,
      );
    }
  }
  const dir = env[ENV_CREDENTIALS_DIR] || DEFAULT_CREDENTIALS_DIR;
  if (!isAbsolute(dir)) throw new SecretScopeConfigError(`${ENV_CREDENTIALS_DIR}=${JSON.stringify(dir)}: expected an absolute path`);
  const credentialsDir = resolve(dir);
  if (credentialsDir === sep || FORBIDDEN_ROOTS.some((r) => within(r, credentialsDir) || credentialsDir === r)) {
    throw new SecretScopeConfigError(`${ENV_CREDENTIALS_DIR}=${credentialsDir}: a directory that holds only credentials, e.g. ${DEFAULT_CREDENTIALS_DIR}`);
  }
  return { envPrefix, credentialsDir, env };
}

/**
 * Checks the scope against the worker's own files at start (`underlay worker`): the credentials directory is not
 * writable by others, and no file the worker reads for itself (codec keys, Temporal TLS key, ...) is inside it.
 * Returns notes to print (e.g. the directory does not exist yet); throws SecretScopeConfigError on a conflict.
 */
export function checkScopeAtStart(scope: SecretScope): string[] {
  const notes: string[] = [];
  let realDir: string;
  try {
    realDir = realpathSync(scope.credentialsDir);
  } catch {
    notes.push(`credentials directory ${scope.credentialsDir} does not exist: specs can reference env vars ${scope.envPrefix}* and ssh-agent only`);
    return notes;
  }
  const st = statSync(realDir);
  if (!st.isDirectory()) throw new SecretScopeConfigError(`${ENV_CREDENTIALS_DIR}=${scope.credentialsDir} is not a directory`);
  if (st.mode & 0o002) throw new SecretScopeConfigError(`${ENV_CREDENTIALS_DIR}=${scope.credentialsDir} is writable by everyone (mode ${mode(st.mode)})`);
  for (const [name, real] of reservedFiles(scope.env)) {
    if (within(realDir, real)) {
      throw new SecretScopeConfigError(`${name} points inside ${ENV_CREDENTIALS_DIR} (${scope.credentialsDir}), where a spec could name it: move it out`);
    }
  }
  return notes;
}

/** Whether a file (symlinks resolved where it exists) lies inside the credentials directory, where a spec could name it. */
export function insideCredentialsDir(path: string, scope: SecretScope): boolean {
  const real = realpathOrUndefined(path) ?? resolve(path);
  const realDir = realpathOrUndefined(scope.credentialsDir) ?? scope.credentialsDir;
  return within(realDir, real) || within(scope.credentialsDir, resolve(path));
}

// ---- references ------------------------------------------------------------------------------------------------

/** Where a read is for: the host (server id) and the field, for error messages. */
export interface ReadContext {
  host: string;
  /** Spec path of the reference, e.g. `hypervisor.bmc.credentials.passwordEnv`. */
  field: string;
}

/** Why an env-var name is outside the scope, or undefined when a spec may name it. */
export function envRefProblem(name: string, scope: SecretScope, agentSocket = false): string | undefined {
  if (agentSocket && name === AGENT_SOCKET_ENV) return undefined;
  if (RESERVED_ENV_PREFIXES.some((r) => name.startsWith(r))) return `$${name} is one of the worker's own settings, never a spec's credential`;
  if (!name.startsWith(scope.envPrefix) || name.length === scope.envPrefix.length) {
    return `$${name} is outside the worker's secret scope: names must start with ${scope.envPrefix} (${ENV_SECRET_PREFIX})${agentSocket ? ` or be ${AGENT_SOCKET_ENV}` : ''}`;
  }
  return undefined;
}

/**
 * Why a file reference is outside the scope by its text alone (no file system access), or undefined. Relative
 * paths are relative to the credentials directory.
 */
export function fileRefLexicalProblem(path: string, scope: SecretScope): string | undefined {
  if (path.length === 0 || path.length > 4096 || [...path].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)) return 'is not a usable path';
  const segments = path.split('/');
  if (segments.some((s) => s === '..' || s === '.')) return `${path} has a "." or ".." segment: name the file itself`;
  const abs = resolve(scope.credentialsDir, path);
  if (FORBIDDEN_ROOTS.some((r) => abs === r || within(r, abs))) return `${path} is under /proc, /dev or /sys: never a credential`;
  if (!within(scope.credentialsDir, abs)) return `${path} is outside the worker's credentials directory ${scope.credentialsDir} (${ENV_CREDENTIALS_DIR})`;
  return undefined;
}

/** The scope problems of a spec by text alone, one per field (for `underlay validate` warnings). */
export function lexicalScopeProblems(spec: ServerSpec, scope: SecretScope): Array<{ path: string; message: string }> {
  return secretReferences(spec).flatMap((r) => {
    const why = r.kind === 'file' ? fileRefLexicalProblem(r.name, scope) : envRefProblem(r.name, scope, r.kind === 'agent-socket-env');
    return why ? [{ path: r.field, message: why }] : [];
  });
}

/**
 * The worker's check of a whole spec before an activity connects anywhere: every env-var name in the prefix,
 * every file inside the credentials directory after resolving symlinks (a file that does not exist yet is left
 * to the read, which reports it). Throws one InvalidSpecError naming every bad field.
 */
export function assertSecretScope(spec: ServerSpec, scope: SecretScope = secretScopeFromEnv()): void {
  const issues: Array<{ path: string; message: string }> = [];
  for (const ref of secretReferences(spec)) {
    const why = ref.kind === 'file' ? fileRefProblem(ref, scope) : envRefProblem(ref.name, scope, ref.kind === 'agent-socket-env');
    if (why) issues.push({ path: ref.field, message: why });
  }
  if (issues.length) throw new InvalidSpecError(`the spec refers to credentials outside the worker's secret scope`, issues, { host: spec.id });
}

function fileRefProblem(ref: SecretReference, scope: SecretScope): string | undefined {
  const lexical = fileRefLexicalProblem(ref.name, scope);
  if (lexical) return lexical;
  const real = realpathOrUndefined(resolve(scope.credentialsDir, ref.name));
  if (real === undefined) return undefined; // absent (or unreadable): the read says so, with the errno
  return containmentProblem(ref.name, real, scope);
}

function containmentProblem(path: string, real: string, scope: SecretScope): string | undefined {
  const realDir = realpathOrUndefined(scope.credentialsDir) ?? scope.credentialsDir;
  if (!within(realDir, real)) return `${path} resolves (through a symbolic link) outside the worker's credentials directory ${scope.credentialsDir}`;
  for (const [name, reserved] of reservedFiles(scope.env)) {
    if (real === reserved) return `${path} is the file of ${name}, one of the worker's own settings`;
  }
  return undefined;
}

// ---- reads -----------------------------------------------------------------------------------------------------

/** An environment variable a spec named, checked against the scope. */
export function readScopedEnv(name: string, what: string, ctx: ReadContext, scope: SecretScope = secretScopeFromEnv(), agentSocket = false): string {
  const why = envRefProblem(name, scope, agentSocket);
  if (why) throw new InvalidSpecError('credential reference refused', [{ path: ctx.field, message: why }], { host: ctx.host, field: ctx.field });
  const v = scope.env[name];
  if (v === undefined || v === '') throw new CredentialUnavailableError(`env var $${name} (${what}) is not set`, { host: ctx.host, field: ctx.field });
  if (Buffer.byteLength(v) > MAX_SECRET_BYTES) {
    throw new CredentialUnavailableError(`env var $${name} (${what}) is over ${MAX_SECRET_BYTES} bytes`, { host: ctx.host, field: ctx.field });
  }
  return v;
}

export interface ScopedFileOptions {
  /** 'secret': a private key or password file (64 KiB, owner-only like OpenSSH); 'certificate': public, 1 MiB. */
  kind: 'secret' | 'certificate';
  /** What the file is, for messages ("private key file", "CA file"). */
  what: string;
}

/**
 * Reads a file a spec named: inside the credentials directory after resolving symlinks, a regular file (fstat
 * after an O_NOFOLLOW | O_NONBLOCK open), size-capped, owned by the worker's user or root, and for secrets not
 * readable by group or others. The caller should zero the buffer when done with a secret.
 */
export function readScopedFile(path: string, opts: ScopedFileOptions, ctx: ReadContext, scope: SecretScope = secretScopeFromEnv()): Buffer {
  const refuse = (why: string): never => {
    throw new InvalidSpecError('credential reference refused', [{ path: ctx.field, message: why }], { host: ctx.host, field: ctx.field });
  };
  const unavailable = (why: string): never => {
    throw new CredentialUnavailableError(`${opts.what} ${path} ${why}`, { host: ctx.host, field: ctx.field });
  };
  const lexical = fileRefLexicalProblem(path, scope);
  if (lexical) refuse(lexical);
  if (realpathOrUndefined(scope.credentialsDir) === undefined) unavailable(`cannot be read: the credentials directory ${scope.credentialsDir} does not exist`);
  let real: string;
  try {
    real = realpathSync(resolve(scope.credentialsDir, path));
  } catch (e) {
    return unavailable(`cannot be read (${errno(e)})`);
  }
  const outside = containmentProblem(path, real, scope);
  if (outside) refuse(outside);

  try {
    return readCheckedFile(real, { maxBytes: opts.kind === 'secret' ? MAX_SECRET_BYTES : MAX_CERTIFICATE_BYTES, ownerOnly: opts.kind === 'secret' });
  } catch (e) {
    if (!(e instanceof FileCheckError)) throw e;
    // Inside the scope but not a file a credential may come from: the spec's fault (refuse) or the worker's
    // file system (unavailable: fix the file, the spec is fine).
    if (e.reason === 'errno') return unavailable(`cannot be read (${e.detail})`);
    if (e.reason === 'owner' || e.reason === 'mode') return unavailable(e.detail);
    return refuse(`${path} ${e.detail}`);
  }
}

export class FileCheckError extends Error {
  constructor(
    readonly reason: 'errno' | 'symlink' | 'not-regular' | 'too-large' | 'owner' | 'mode',
    readonly detail: string,
  ) {
    super(detail);
    this.name = 'FileCheckError';
  }
}

/**
 * Reads a file the way OpenSSH reads a private key, for the scope above and for the worker's own key and token
 * files: opened with O_NOFOLLOW | O_NONBLOCK | O_NOCTTY (a final symlink is refused, a FIFO cannot block), then
 * fstat'ed — a regular file, at most `maxBytes` (and never more is read, even if it grows), owned by the
 * process's user or root, and with `ownerOnly` not accessible by group or others. Throws FileCheckError; its
 * messages never hold the file's content.
 */
export function readCheckedFile(path: string, opts: { maxBytes: number; ownerOnly: boolean }): Buffer {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw errno(e) === 'ELOOP' ? new FileCheckError('symlink', 'is a symbolic link') : new FileCheckError('errno', errno(e));
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FileCheckError('not-regular', 'is not a regular file');
    const max = opts.maxBytes;
    if (st.size > max) throw new FileCheckError('too-large', `is ${st.size} bytes, over the limit of ${max}`);
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
      throw new FileCheckError('owner', `is owned by uid ${st.uid}, not by this process's user (uid ${uid}) or root`);
    }
    if (opts.ownerOnly && st.mode & 0o077) {
      throw new FileCheckError('mode', `is accessible by group or others (mode ${mode(st.mode)}); like OpenSSH, only owner-only files are used: chmod 600 it`);
    }
    // Read at most max + 1 bytes whatever fstat said: a file that grows meanwhile is refused, not read unbounded.
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > max) {
        buf.fill(0);
        throw new FileCheckError('too-large', `grew over the limit of ${max} bytes while being read`);
      }
    }
    const out = Buffer.from(buf.subarray(0, n));
    buf.fill(0);
    return out;
  } finally {
    closeSync(fd);
  }
}

// ---- helpers ---------------------------------------------------------------------------------------------------

function within(dir: string, path: string): boolean {
  const base = dir.endsWith(sep) ? dir : dir + sep;
  return path.startsWith(base);
}

function realpathOrUndefined(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

function reservedFiles(env: Env): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const name of RESERVED_FILE_ENVS) {
    const v = env[name];
    const real = v ? realpathOrUndefined(v) : undefined;
    if (real) out.push([name, real]);
  }
  return out;
}

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? 'read error';
}

function mode(m: number): string {
  return (m & 0o7777).toString(8).padStart(4, '0');
}
