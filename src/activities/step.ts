/**
 * The shape every onboarding step has — observe / plan / apply / verify / undo — and the types the workflow
 * sees. Steps are written against a RemoteHost; the runner (run-step.ts) supplies the connection, heartbeats,
 * retries' memory of the pre-state, and typed failures.
 */
import type { StepName } from '../steps';
import type { ServerSpec } from '../spec/server';
import type { PathName } from '../spec/management';
import type { RemoteHost } from '../drivers/remote';

/** A step, or the choice of one by the spec (e.g. the ESXi attach differs per attach kind). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StepChoice = Step<any, any> | ((spec: ServerSpec) => Step<any, any>);

export function chooseStep(choice: StepChoice, spec: ServerSpec): Step<unknown, unknown> {
  return typeof choice === 'function' ? choice(spec) : choice;
}

/** One difference between two states: what `field` is and what it should become. */
export interface Change {
  field: string;
  from: unknown;
  to: unknown;
}

export interface StepIo<P = ServerSpec> {
  /** The host's shell over SSH. A step with `connection: 'none'` has none: touching it throws. */
  host: RemoteHost;
  /** The whole spec (for what the step does not own: the server id, the management address). */
  spec: ServerSpec;
  /** The part of the spec the step owns, narrowed by its `want` (e.g. the bond section). */
  want: P;
  /** Cancellation-aware sleep that keeps heartbeating. */
  sleep(ms: number): Promise<void>;
  /** Records progress (also keeps the heartbeat alive). */
  progress(note: string): void;
  /**
   * Durable checkpoints of this activity: what `mark` recorded in an earlier attempt (or before a worker
   * restart) is here again on the retry. Steps use them not to repeat an action that must happen once — a
   * power cycle, a reboot — while they wait for its effect.
   */
  readonly marks: Readonly<Record<string, unknown>>;
  /** Records a checkpoint in the activity's heartbeat details (sent at once). Values must be JSON. */
  mark(key: string, value: unknown): void;
  /**
   * Closes the step's SSH session and opens a new one — one attempt: an unreachable host throws the transport's
   * retryable ConnectionError. `host` is the new session afterwards. For steps that reboot the host
   * (src/activities/reboot.ts). Absent where no session can be reopened (dry-run plans, `connection: 'none'`).
   */
  reconnect?(opts?: { path?: PathName }): Promise<RemoteHost>;
}

/**
 * The checkpoint a step records while the host reboots on its behalf (src/activities/reboot.ts). While it is
 * set and not `back`, the runner waits for the host to answer again before the step's observe — bounded by
 * `waitUntil` — instead of failing the attempt on a refused connection.
 */
export const REBOOT_MARK = 'reboot';
export interface RebootMark {
  /** The boot identity before the reboot (Linux boot_id, Windows LastBootUpTime). */
  bootId: string;
  /** Epoch ms when the reboot was issued, and until when to wait for the host. */
  issuedAt: number;
  waitUntil: number;
  /** The new boot identity, once the host answered with one. */
  back?: string;
  /** Epoch ms when the new boot answered. */
  backAt?: number;
}

/**
 * How a step runs on one platform. Its identity — title, activity names, policy, summary — is in its definition
 * (src/steps/<step>.ts); implementations are registered per platform in registry.ts.
 */
export interface Step<S, P = ServerSpec> {
  name: StepName;
  /**
   * What the runner opens before calling the step: an SSH session to the host (default), or nothing — for steps
   * that talk to a vendor API (Redfish BMC, vCenter) and build their own clients from the spec.
   */
  connection?: 'ssh' | 'none';
  /**
   * The part of the spec this step owns, narrowed and checked once (e.g. the bond section, or the attach of the
   * kind this implementation handles); throws a typed error naming the field when the spec has no such part.
   */
  want(spec: ServerSpec): P;
  /** Reads the live state this step owns. Read-only. */
  observe(io: StepIo<P>): Promise<S>;
  /** What apply would change, from the observed state to the wanted one. Pure; empty means the step already holds. */
  plan(want: P, observed: S): Change[];
  /** Converges the host to the spec. Idempotent: applying twice equals applying once. */
  apply(io: StepIo<P>, observed: S, changes: Change[]): Promise<void>;
  /** Confirms the spec holds on the host (polling, bounded), or throws VerificationError / NotConvergedError. */
  verify(io: StepIo<P>): Promise<void>;
  /**
   * Converges the host back to `pre`, given what it is `now`. Returns an outcome only when part of the pre-state
   * cannot be restored safely: the undo is then verified against its `target`, and its note is reported.
   */
  undo(io: StepIo<P>, pre: S, now: S): Promise<void | UndoOutcome<S>>;
  /** The differences between two observations that this step is responsible for (used to verify an undo). */
  diff(a: S, b: S): Change[];
  /** What the observation found that an operator should see next to the step (e.g. the network manager it persists through). */
  note?(observed: S): string | undefined;
  /**
   * Health that re-applying cannot fix, read now without waiting (drift checks): a lost LACP partner, a gateway that
   * stopped answering, a cable moved to another switch port. Each problem needs a person; an empty list is healthy.
   * Configuration drift is not here: plan() shows it, and remediation re-applies it.
   */
  health?(io: StepIo<P>): Promise<HealthProblem[]>;
}

/** A health problem of a step: what is wrong, what was expected and observed, and what a person should look at. */
export interface HealthProblem {
  field: string;
  expected: unknown;
  observed: unknown;
  /** Where to look: `the switch side of eth2`, `the cable of eth1`. */
  hint: string;
}

/** An undo that restores less than the whole pre-state, and says why (e.g. packages pre-existing ones need now). */
export interface UndoOutcome<S> {
  /** The state the undo converged to: the pre-state except what the note names. */
  target: S;
  /** For the compensation's outcome: what was not restored and why. */
  note: string;
}

/** `want` for steps that read the whole spec (vendor steps whose inputs span several sections). */
export const wholeSpec = (spec: ServerSpec): ServerSpec => spec;

export interface StepResult {
  step: StepName;
  /** True when the host differs from the pre-state afterwards, i.e. there is something to compensate. */
  changed: boolean;
  changes: Change[];
  /** The state observed before this step first touched the host (kept across retries). */
  pre: unknown;
  attempt: number;
  summary: string;
  /** The step's note on what it found (Step.note), for the status and the Web UI. */
  note?: string;
}

export interface UndoResult {
  step: StepName;
  /** What the undo changed on the host (empty when the host already was in the pre-state). */
  changes: Change[];
  /** What the undo left different from the pre-state on purpose, and why (UndoOutcome.note). */
  note?: string;
}

/** Carried in a step's ApplicationFailure details, so the workflow can compensate a half-applied step. */
export interface StepFailureDetails {
  step: StepName;
  host: string;
  attempt: number;
  /** Whether any attempt began changing the host. */
  touched: boolean;
  pre?: unknown;
}

/** The same io (host, marks, reconnect — live, not copied) with another step's part of the spec: for a step that runs another. */
export function withWant<P>(io: StepIo<unknown>, want: P): StepIo<P> {
  return Object.assign(Object.create(io) as StepIo<P>, { want });
}
