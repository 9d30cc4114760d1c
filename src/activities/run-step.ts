/**
 * Runs a Step as a Temporal activity: connect once, observe, plan, apply, verify — and undo.
 *
 * Retries remember the pre-state: the first attempt heartbeats what it observed before touching the host, and
 * later attempts read it back from `heartbeatDetails`, so a retry after a half-applied change still knows (and
 * returns) the true pre-state. Failures leave as ApplicationFailures typed by error class, non-retryable when
 * the error says so, with StepFailureDetails the workflow uses to compensate a half-applied step.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { ConnectionError, inStep, RollbackVerificationError, UnderlayError } from '../common/errors';
import { parseServerSpec } from '../spec/validate';
import { assertSecretScope } from '../transports/secret-scope';
import type { ServerSpec } from '../spec/server';
import type { PathName } from '../spec/management';
import { RemoteHost } from '../drivers/remote';
import { stepSummary, type StepName } from '../steps';
import { MOVE_MARK, type MoveMark } from './move';
import {
  chooseStep,
  REBOOT_MARK,
  type RebootMark,
  type Step,
  type StepChoice,
  type StepFailureDetails,
  type StepIo,
  type StepResult,
  type UndoResult,
} from './step';

/**
 * Opens the host for one activity; the runner closes it, saying whether the activity failed (a pooling connector
 * keeps a session for the next step only after a success: see connect.ts).
 */
export type Connector = (
  spec: ServerSpec,
  step: StepName,
  onProgress: (note: string) => void,
  /** `path`: only this management path (a step that moved management checks the new one on purpose). */
  opts?: { path?: PathName },
) => Promise<{ host: RemoteHost; close(failed?: boolean): void }>;

interface Carried<S> {
  pre?: S;
  touched?: boolean;
  marks?: Record<string, unknown>;
  /** The latest progress note, for `underlay status` (read from the pending activity's heartbeat details). */
  note?: string;
}

const HEARTBEAT_EVERY_MS = 5_000;
/** While a step's reboot is pending, how often the runner tries to reach the host again. */
const REBOOT_RECONNECT_EVERY_MS = 5_000;

/** The `host` of a step that opens no SSH session: using it is a programming error, said plainly. */
export function noShell(spec: ServerSpec, step: StepName): RemoteHost {
  const refuse = () => Promise.reject(new Error(`the ${step} step of ${spec.id} opens no SSH session (connection: 'none')`));
  return new RemoteHost({ exec: refuse }, spec.id, true, step);
}

/**
 * The step's session. When an earlier attempt (or a worker that died) left a reboot pending, the host may be
 * down right now: keep trying — bounded by the mark's deadline — instead of failing on the first refusal.
 */
async function connectForStep(spec: ServerSpec, step: StepName, connect: Connector, marks: Record<string, unknown>, beat: () => void) {
  const reboot = marks[REBOOT_MARK] as RebootMark | null | undefined;
  // A management move an earlier attempt armed (src/activities/move.ts): the host may be between its paths now.
  const move = Object.entries(marks)
    .filter(([k, v]) => k.startsWith(`${MOVE_MARK}:`) && v)
    .map(([, v]) => v as MoveMark)
    .find((m) => m.phase === 'arming' || m.phase === 'armed');
  const pending = reboot && !reboot.back ? reboot : move ? { waitUntil: move.waitUntil } : undefined;
  if (!pending) return connect(spec, step, () => beat());
  const ctx = Context.current();
  const rounds = Math.min(1_000, Math.max(1, Math.ceil((pending.waitUntil - Date.now()) / REBOOT_RECONNECT_EVERY_MS) + 1));
  for (let round = 1; ; round++) {
    try {
      return await connect(spec, step, () => beat());
    } catch (err) {
      const transient = err instanceof ConnectionError;
      if (!transient || round >= rounds || Date.now() + REBOOT_RECONNECT_EVERY_MS > pending.waitUntil) throw err;
      ctx.log.debug('host not answering after the reboot yet', { step, server: spec.id, round });
      beat();
      await ctx.sleep(REBOOT_RECONNECT_EVERY_MS);
    }
  }
}

async function withStepIo<T>(
  step: Step<unknown, unknown>,
  spec: ServerSpec,
  connect: Connector,
  carried: { marks: Record<string, unknown>; beat: () => void; noted?: (note: string) => void },
  fn: (io: StepIo<unknown>) => Promise<T>,
): Promise<T> {
  const ctx = Context.current();
  const { beat, marks } = carried;
  const timer = setInterval(beat, HEARTBEAT_EVERY_MS);
  let conn: { host: RemoteHost; close(failed?: boolean): void } | undefined;
  let failed = true;
  try {
    // The step's part of the spec first: a spec without it fails before any connection.
    const want = step.want(spec);
    const work = (async () => {
      conn =
        step.connection === 'none' ? { host: noShell(spec, step.name), close: () => undefined } : await connectForStep(spec, step.name, connect, marks, beat);
      const io: StepIo<unknown> = {
        // A getter: reconnect() replaces the session.
        get host(): RemoteHost {
          if (!conn) throw new ConnectionError('no SSH session: the last reconnect failed', { host: spec.id, step: step.name });
          return conn.host;
        },
        spec,
        want,
        sleep: (ms) => ctx.sleep(ms),
        progress: (note) => {
          ctx.log.debug(note, { step: step.name, server: spec.id });
          carried.noted?.(note);
          beat();
        },
        marks,
        mark: (key, value) => {
          marks[key] = value;
          beat();
        },
        ...(step.connection === 'none'
          ? {}
          : {
              reconnect: async (opts?: { path?: PathName }): Promise<RemoteHost> => {
                // The old session is suspect (a reboot, a drop, a moved path): never handed back to a pool.
                conn?.close(true);
                conn = undefined;
                conn = await connect(spec, step.name, () => beat(), opts);
                return conn.host;
              },
            }),
      };
      return fn(io);
    })();
    // Cancellation reaches us through heartbeats; stop waiting on the host at once when it does.
    const result = await Promise.race([work, ctx.cancelled]);
    failed = false;
    return result;
  } finally {
    clearInterval(timer);
    conn?.close(failed);
  }
}

function toFailure(err: unknown, details: StepFailureDetails): Error {
  if (err instanceof CancelledFailure) return new CancelledFailure(err.message, [details]);
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof UnderlayError) {
    // A transport error names the host only; the failure names the step too.
    const e = inStep(err, details.step);
    return ApplicationFailure.create({ type: e.name, message: e.message, nonRetryable: !e.retryable, details: [details, e.context] });
  }
  const e = err instanceof Error ? err : new Error(String(err));
  return ApplicationFailure.create({ type: e.name || 'Error', message: e.message, nonRetryable: false, details: [details] });
}

export async function runStep(name: StepName, choice: StepChoice, rawSpec: unknown, connect: Connector): Promise<StepResult> {
  const ctx = Context.current();
  const { attempt } = ctx.info;
  const carried = (ctx.info.heartbeatDetails ?? {}) as Carried<unknown>;
  let pre = carried.pre;
  let touched = carried.touched ?? false;
  const marks = { ...carried.marks };
  let hostLabel = '?';
  let note: string | undefined;
  const beat = () => ctx.heartbeat({ pre, touched, marks, ...(note ? { note } : {}) } satisfies Carried<unknown>);
  try {
    const spec = parseServerSpec(rawSpec, 'activity input');
    hostLabel = spec.id;
    assertSecretScope(spec); // the worker decides which credentials a spec may use: before any connection
    const step = chooseStep(choice, spec);
    const noted = (n: string) => (note = n.slice(0, 300));
    return await withStepIo(step, spec, connect, { marks, beat, noted }, async (io) => {
      const observed = await step.observe(io);
      if (pre === undefined) {
        pre = observed;
        beat();
      }
      const changes = step.plan(io.want, observed);
      if (changes.length) {
        touched = true;
        beat();
        io.progress(`${step.name}: applying ${changes.length} change(s)`);
        await step.apply(io, observed, changes);
      }
      await step.verify(io);
      // An earlier attempt may have applied already: what counts is the distance from the pre-state.
      const sincePre = step.diff(pre, observed);
      const stepNote = [step.note?.(observed), ...moveNotes(marks)].filter(Boolean).join('; ');
      return {
        step: step.name,
        changed: changes.length > 0 || sincePre.length > 0,
        changes: changes.length ? changes : sincePre,
        pre,
        attempt,
        summary: stepSummary(name, spec),
        ...(stepNote ? { note: stepNote } : {}),
      };
    });
  } catch (err) {
    throw toFailure(err, { step: name, host: hostLabel, attempt, touched, pre });
  }
}

/** Whether a commit-confirmed move of an earlier attempt is armed and undecided (marked, not confirmed or rolled back). */
function pendingMove(marks: Record<string, unknown>): boolean {
  return Object.entries(marks).some(([k, v]) => k.startsWith(`${MOVE_MARK}:`) && v && ['arming', 'armed'].includes((v as MoveMark).phase));
}

/** What a step's commit-confirmed management moves came to, for the step result (status, Web UI). */
function moveNotes(marks: Record<string, unknown>): string[] {
  return Object.entries(marks)
    .filter(([k, v]) => k.startsWith(`${MOVE_MARK}:`) && v)
    .map(([, v]) => v as MoveMark)
    .map((m) =>
      m.phase === 'confirmed'
        ? `${m.what}: commit-confirmed (window ${m.windowSec} s, confirmed ${Math.round(((m.decidedAt ?? 0) - (m.armedAt ?? m.markedAt)) / 1000)} s after arming, transaction ${m.id})`
        : `${m.what}: ${m.phase} (window ${m.windowSec} s, transaction ${m.id})`,
    );
}

export async function undoStep(name: StepName, choice: StepChoice, rawSpec: unknown, pre: unknown, connect: Connector): Promise<UndoResult> {
  const ctx = Context.current();
  const marks = { ...((ctx.info.heartbeatDetails ?? {}) as Carried<unknown>).marks };
  let hostLabel = '?';
  try {
    const spec = parseServerSpec(rawSpec, 'activity input');
    hostLabel = spec.id;
    assertSecretScope(spec); // the worker decides which credentials a spec may use: before any connection
    const step = chooseStep(choice, spec);
    let note: string | undefined;
    const beat = () => ctx.heartbeat({ marks, ...(note ? { note } : {}) } satisfies Carried<unknown>);
    return await withStepIo(step, spec, connect, { marks, beat, noted: (n) => (note = n.slice(0, 300)) }, async (io) => {
      const now = await step.observe(io);
      const changes = step.diff(now, pre);
      // A reverse move an earlier attempt armed (the undo of a moved host, src/activities/bond.ts): the host may look
      // restored while its timer still runs — the undo resumes it (confirm, or see the rollback), never skips it.
      if (!changes.length && !pendingMove(marks)) return { step: step.name, changes };
      io.progress(`${step.name}: restoring ${changes.length} field(s) to the pre-state`);
      const outcome = await step.undo(io, pre, now);
      const target = outcome ? outcome.target : pre;
      const after = await step.observe(io);
      const remaining = step.diff(after, target);
      if (remaining.length) {
        throw new RollbackVerificationError('the host did not return to its pre-state', {
          host: spec.id,
          step: step.name,
          field: remaining.map((c) => c.field).join(', '),
          expected: remaining.map((c) => c.to),
          observed: remaining.map((c) => c.from),
        });
      }
      return { step: step.name, changes, ...(outcome ? { note: outcome.note } : {}) };
    });
  } catch (err) {
    throw toFailure(err, { step: name, host: hostLabel, attempt: ctx.info.attempt, touched: true, pre });
  }
}
