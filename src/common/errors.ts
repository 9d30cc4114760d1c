/**
 * Typed errors shared by transports, drivers and activities.
 *
 * Pure TypeScript (no Node builtins) so workflows may import the type names.
 * An activity that throws one of these is reported to Temporal as an ApplicationFailure whose `type` is the
 * class name; `retryable` decides whether Temporal may try again. Messages name the host, the step, the field,
 * what was expected and what was observed — and never carry a secret (credentials travel by reference only).
 */
import type { StepName } from '../steps';

/**
 * Text from outside (a key of a spec, a parser's message) made safe to print on one line: control characters
 * (a newline that would forge a CLI output line, a terminal escape), line and paragraph separators, bidi
 * overrides, zero-width and other invisible characters, and lone surrogates are shown as \uXXXX; other text,
 * Unicode included, stays readable. Cut at `max` characters.
 */
export function printable(text: string, max = 200): string {
  const cut = text.length > max ? text.slice(0, max) : text;
  let out = '';
  for (let i = 0; i < cut.length; i++) {
    const c = cut.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < cut.length && isLowSurrogate(cut.charCodeAt(i + 1))) {
      out += cut[i]! + cut[i + 1]!; // a whole astral character (emoji, CJK extension): readable
      i++;
    } else if (isInvisible(c) || (c >= 0xd800 && c <= 0xdfff)) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += cut[i];
  }
  return text.length > max ? `${out}…` : out;
}

const isLowSurrogate = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/** C0/C1 controls, DEL, soft hyphen, bidi marks and overrides, zero-width and filler characters, specials. */
function isInvisible(c: number): boolean {
  return (
    c < 0x20 ||
    (c >= 0x7f && c <= 0x9f) ||
    c === 0xad ||
    c === 0x61c ||
    c === 0x115f ||
    c === 0x1160 ||
    c === 0x17b4 ||
    c === 0x17b5 ||
    c === 0x180e ||
    (c >= 0x200b && c <= 0x200f) ||
    (c >= 0x2028 && c <= 0x202e) ||
    (c >= 0x2060 && c <= 0x206f) ||
    c === 0x3164 ||
    (c >= 0xfe00 && c <= 0xfe0f) ||
    c === 0xfeff ||
    c === 0xffa0 ||
    c >= 0xfff0
  );
}

export interface ErrorContext {
  host?: string;
  step?: StepName;
  /** Spec path (e.g. `bond.members[1]`) or observed attribute the error is about. */
  field?: string;
  expected?: unknown;
  observed?: unknown;
  /** Short description of the command that failed (never its secrets: commands carry none). */
  command?: string;
  exitCode?: number | null;
  stderr?: string;
}

export abstract class UnderlayError extends Error {
  /** Whether Temporal may retry the activity that threw this. */
  abstract readonly retryable: boolean;
  readonly context: ErrorContext;
  /** The message without the context (what formatMessage was given). */
  readonly bareMessage: string;

  constructor(message: string, context: ErrorContext = {}) {
    super(formatMessage(message, context));
    this.name = new.target.name;
    this.context = context;
    this.bareMessage = message;
  }
}

/**
 * The same error naming `step` — for errors raised below the step that met them (a transport's ConnectionError
 * knows the host, not the step). Unchanged when it names a step already.
 */
export function inStep<E extends UnderlayError>(err: E, step: StepName): E {
  if (err.context.step) return err;
  const context = { ...err.context, step };
  const copy = Object.create(Object.getPrototypeOf(err) as object) as E;
  Object.assign(copy, err);
  Object.defineProperty(copy, 'context', { value: context, enumerable: true });
  Object.defineProperty(copy, 'message', { value: formatMessage(err.bareMessage, context), writable: true, configurable: true });
  Object.defineProperty(copy, 'stack', { value: err.stack, writable: true, configurable: true });
  return copy;
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function formatMessage(message: string, c: ErrorContext): string {
  const where = [c.step && `step ${c.step}`, c.host && `host ${c.host}`].filter(Boolean).join(', ');
  const parts = [where ? `${where}: ${message}` : message];
  if (c.field) parts.push(`field ${c.field}`);
  if (c.expected !== undefined) parts.push(`expected ${show(c.expected)}`);
  if (c.observed !== undefined) parts.push(`observed ${show(c.observed)}`);
  if (c.command) parts.push(`command: ${c.command}`);
  if (c.exitCode !== undefined) parts.push(`exit code ${c.exitCode}`);
  if (c.stderr) parts.push(`stderr: ${c.stderr.trim().slice(-500)}`);
  return parts.join('; ');
}

// ---- input -------------------------------------------------------------------------------------------------
/** The spec (or an activity's input) is invalid. `issues` lists every bad field by path. */
export class InvalidSpecError extends UnderlayError {
  readonly retryable = false;
  /** The message without the issues (e.g. "kvm.yaml is invalid"), for a caller that lists the issues itself. */
  readonly summary: string;
  constructor(
    message: string,
    readonly issues: Array<{ path: string; message: string }> = [],
    context: ErrorContext = {},
  ) {
    super(issues.length ? `${message}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}` : message, context);
    this.summary = context.host ? `host ${context.host}: ${message}` : message;
  }
}

/** A credential reference cannot be resolved (env var unset, file unreadable, no agent socket). */
export class CredentialUnavailableError extends UnderlayError {
  readonly retryable = false;
}

// ---- transport ---------------------------------------------------------------------------------------------
/** The host presented a key whose SHA256 fingerprint differs from the pinned one. Never retried. */
export class HostKeyMismatchError extends UnderlayError {
  readonly retryable = false;
}

/** The host refused our credentials. */
export class AuthenticationError extends UnderlayError {
  readonly retryable = false;
}

/** Could not reach the host, or the connection dropped: worth retrying with backoff. */
export class ConnectionError extends UnderlayError {
  readonly retryable = true;
}

/** A remote command exited non-zero. Retryable unless the caller knows the failure is deterministic. */
export class CommandFailedError extends UnderlayError {
  constructor(
    message: string,
    context: ErrorContext,
    readonly retryable: boolean = true,
  ) {
    super(message, context);
  }
}

/** A remote command did not finish within its timeout; it was signalled and its channel closed. */
export class CommandTimeoutError extends UnderlayError {
  readonly retryable = true;
}

// ---- host state ----------------------------------------------------------------------------------------------
/** A command's output did not have the shape its parser expects. */
export class UnexpectedOutputError extends UnderlayError {
  readonly retryable = false;
}

/** The host lacks something the spec needs (no virtualization flags, no SR-IOV on the PF, ...). */
export class UnsupportedHardwareError extends UnderlayError {
  readonly retryable = false;
}

/** The step has no driver for this platform / OS family in this build. */
export class UnsupportedPlatformError extends UnderlayError {
  readonly retryable = false;
}

/** After applying, the observed state still differs from the spec. */
export class VerificationError extends UnderlayError {
  readonly retryable = false;
}

/** The state is converging but has not yet (LACP negotiating, LLDP neighbour not yet heard): retry later. */
export class NotConvergedError extends UnderlayError {
  readonly retryable = true;
}

/** The change would touch the interface that carries the management session: refused to avoid a lockout. */
export class LockoutRiskError extends UnderlayError {
  readonly retryable = false;
}

/**
 * A commit-confirmed change (management moved onto the bond) was not confirmed: the new path did not answer, or did
 * not verify, within the window, and the host rolled itself back to its pre-state (src/activities/move.ts). The
 * message names the window, the path and the rollback. Not retryable: the same change would cut the host off again.
 */
export class ManagementMoveError extends UnderlayError {
  readonly retryable = false;
}

/**
 * A detached host job (src/drivers/linux/job.ts) ended without success: its command exited non-zero, was killed,
 * or hit its runtime bound. The message names the unit, the exit status and the tail of the job's output.
 * Retryable unless the caller knows the failure is deterministic (a package the repositories do not carry).
 */
export class JobFailedError extends UnderlayError {
  constructor(
    message: string,
    context: ErrorContext,
    readonly retryable: boolean = true,
  ) {
    super(message, context);
  }
}

/**
 * The host's package database is not in a state underlay may build on: dpkg was interrupted or left packages
 * half-configured, and not by an underlay job (so underlay does not guess how to repair it), or it is still
 * inconsistent after underlay's own recovery. Names the packages and what to run.
 */
export class PackageDatabaseError extends UnderlayError {
  readonly retryable = false;
}

/** A rollback ran but the host did not return to the observed pre-state. */
export class RollbackVerificationError extends UnderlayError {
  readonly retryable = false;
}

// ---- Temporal ------------------------------------------------------------------------------------------------
/** What is wrong with the way underlay reaches Temporal (one of these, named in the message). */
export type TemporalProblem =
  'config' | 'unreachable' | 'not-tls' | 'tls-required' | 'tls-trust' | 'client-certificate' | 'api-key' | 'permission' | 'namespace';

/**
 * underlay cannot use the configured Temporal service: a bad setting (profile, file, address), or the service
 * refused us — unreachable, its certificate not trusted, our client certificate or API key refused, the namespace
 * missing. The message names the setting to change; never a secret (API key values are never shown).
 */
export class TemporalConnectionError extends UnderlayError {
  /** Only an unreachable server may be there a moment later. */
  get retryable(): boolean {
    return this.problem === 'unreachable';
  }
  constructor(
    readonly problem: TemporalProblem,
    message: string,
  ) {
    super(message);
  }
}

/** Names Temporal must never retry; workflows pass this list as `nonRetryableErrorTypes` too. */
export const NON_RETRYABLE_ERROR_TYPES = [
  'InvalidSpecError',
  'CredentialUnavailableError',
  'HostKeyMismatchError',
  'AuthenticationError',
  'UnexpectedOutputError',
  'UnsupportedHardwareError',
  'UnsupportedPlatformError',
  'VerificationError',
  'LockoutRiskError',
  'ManagementMoveError',
  'RollbackVerificationError',
  'PackageDatabaseError',
] as const;
