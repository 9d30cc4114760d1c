/**
 * Commit-confirmed changes that move the management path (issue 12). The protocol, with the host-side pieces in
 * src/drivers/linux/txn.ts:
 *
 *   1. mark `move` (phase `arming`, the transaction id) in the activity's heartbeat and let it become durable;
 *   2. one SSH command saves the persisted files, writes restore.sh, arms the rollback timer (the window) and the
 *      boot guard, and starts the change as a detached systemd unit — the session may drop under it;
 *      mark `armed` with the deadline;
 *   3. reconnect over the new path (pinned host key, as always), verify there, and confirm (the timer is stopped,
 *      the transaction removed); mark `confirmed`;
 *   4. no good answer on the new path before the deadline: wait out the window, reconnect over the old path, check
 *      the host rolled itself back (the transaction says so, and the pre-state holds), mark `rolled-back` and fail
 *      the step with ManagementMoveError naming the window and the rollback.
 *
 * A retry (another worker after a SIGKILL) finds the mark: it never arms or applies again; it resumes at 3 or 4.
 */
import { randomBytes } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ConnectionError, ManagementMoveError } from '../common/errors';
import { abandonScript, armScript, cleanupScript, confirmScript, logScript, parseTxnStatus, statusScript, type TxnState } from '../drivers/linux/txn';
import type { Shell } from '../drivers/shell';
import type { RemoteHost } from '../drivers/remote';
import { managementPaths, type PathName } from '../spec/management';
import type { Problem } from './poll';
import type { StepIo } from './step';

export const MOVE_MARK = 'move';

/**
 * Prometheus (the worker's endpoint, through the activity context's metric meter): transactions by outcome —
 * `armed` (this attempt armed one), `resumed` (a retry took over an armed one), `confirmed`, `rolled_back` (the
 * host undid it by itself, verified), `failed` (neither: the host unreachable on both paths, or a rollback that did
 * not restore the pre-state) — and the seconds from the arm to the confirm.
 */
export const MOVE_COUNT_METRIC = 'underlay_mgmt_move_total';
export const MOVE_CONFIRM_METRIC = 'underlay_mgmt_move_confirm_seconds';
export const MOVE_CONFIRM_BUCKETS = [5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800];
export type MoveOutcomeLabel = 'armed' | 'resumed' | 'confirmed' | 'rolled_back' | 'failed';

export interface MoveMark {
  /** The host-side transaction id (unit names, /var/lib/underlay/txn/<id>). */
  id: string;
  phase: 'arming' | 'armed' | 'confirmed' | 'rolled-back';
  windowSec: number;
  /** The path the change moves management to, and the one it came from. */
  to: PathName;
  from: PathName;
  /** Epoch ms (worker clock): when the arm was marked / ran, and when the host's timer fires. */
  markedAt: number;
  armedAt?: number;
  deadline?: number;
  /** Until when a retry keeps reconnecting (either path) before it gives up (run-step.ts honours it). */
  waitUntil: number;
  /** For people: "management onto bond0.100 (127.0.0.1:24241)". */
  what: string;
  /** Epoch ms of the confirm or of the observed rollback. */
  decidedAt?: number;
  /** MovePlan.pre: what verifyRolledBack checks against. */
  pre?: unknown;
}

export interface MoveOutcome {
  result: 'confirmed';
  id: string;
  windowSec: number;
  /** ms from the arm to the confirm. */
  confirmedAfterMs: number;
  /** Whether this attempt armed it, or resumed an earlier attempt's transaction. */
  resumed: boolean;
}

export interface MovePlan {
  /** Short, [a-z-]: part of the transaction id (`bond`, `bond-undo`). */
  purpose: string;
  files: readonly string[];
  /** Re-applies the restored files through the manager (the runtime pre-state). */
  reactivate: Shell;
  change: Shell;
  windowSec: number;
  to: PathName;
  from: PathName;
  what: string;
  /** What must hold on the new path before the confirm (LACP, the address, the gateway): problems, none = good. */
  verifyNew(io: StepIo<unknown>): Promise<Problem[]>;
  /** What must hold on the old path after a rollback (the pre-state, as recorded in the mark): problems, none = good. */
  verifyRolledBack(io: StepIo<unknown>, pre: unknown): Promise<Problem[]>;
  /** What the rollback must restore (JSON, small: file hashes), kept in the mark for a retry. */
  pre: unknown;
  /** A retry that only resumes: never arms (there is nothing to arm with). */
  resumeOnly?: boolean;
}

/** Heartbeats leave the worker at most every 2 s: waiting this long after marking makes the mark durable. */
const MARK_DURABLE_MS = 2_500;
const RETRY_EVERY_MS = 3_000;
/** The confirm must be on the host this long before the timer fires (a confirm racing the timer loses cleanly). */
const CONFIRM_MARGIN_MS = 5_000;
/** The host's timer fires at the deadline (AccuracySec=1s); the worker's first look at the old path is this much later. */
const TIMER_SLACK_MS = 2_000;
/** After the window: time for restore.sh and the manager to bring the old path back (polled, not slept). */
const ROLLBACK_GRACE_MS = 20_000;
/** With ROLLBACK_GRACE_MS: how long after the deadline the old path is polled before the step gives up. */
const OLD_PATH_WAIT_MS = 90_000;

export function moveMark(io: Pick<StepIo<unknown>, 'marks'>, purpose: string): MoveMark | undefined {
  return (io.marks[`${MOVE_MARK}:${purpose}`] as MoveMark | null | undefined) ?? undefined;
}

/** Counts a transaction event (outside an activity: nothing). Metrics never fail a step. */
function countMove(io: StepIo<unknown>, purpose: string, outcome: MoveOutcomeLabel, confirmedAfterMs?: number): void {
  let step = 'bond';
  try {
    step = io.host.step ?? step; // the getter throws when the last reconnect failed
  } catch {
    // keep the default
  }
  try {
    const meter = Context.current().metricMeter;
    const tags = { step, purpose, outcome };
    meter.createCounter(MOVE_COUNT_METRIC, '1', 'Commit-confirmed network transactions (management moves) by outcome').add(1, tags);
    if (confirmedAfterMs !== undefined)
      meter
        .createHistogram(MOVE_CONFIRM_METRIC, 'float', 's', 'Seconds from arming a commit-confirmed network transaction to its confirm')
        .record(confirmedAfterMs / 1000, { step: tags.step, purpose });
  } catch {
    // Metrics never fail a step (no activity context, no meter, a bad label).
  }
}

const where = (io: StepIo<unknown>) => ({ host: io.spec.id, step: io.host.step ?? 'bond' });

function pathText(io: StepIo<unknown>, which: PathName): string {
  const p = managementPaths(io.spec).find((x) => x.which === which);
  return p ? `${p.address}:${p.port}` : which;
}

async function txnStatus(host: RemoteHost, id: string): Promise<TxnState> {
  const out = await host.read(statusScript(id), { description: `status of network transaction ${id}` });
  const s = parseTxnStatus(out);
  if (!s) throw host.unexpected(`status of network transaction ${id}`, out);
  return s;
}

/** Reconnects over `path`, one try per RETRY_EVERY_MS, until `until`; undefined when it never answered. */
async function reach(io: StepIo<unknown>, path: PathName, until: number): Promise<RemoteHost | undefined> {
  const rounds = Math.max(1, Math.ceil((until - Date.now()) / RETRY_EVERY_MS) + 1);
  for (let i = 0; i < Math.min(rounds, 2_000); i++) {
    try {
      return await io.reconnect!({ path });
    } catch (err) {
      if (!(err instanceof ConnectionError)) throw err;
      if (Date.now() + RETRY_EVERY_MS > until) return undefined;
      await io.sleep(RETRY_EVERY_MS);
    }
  }
  return undefined;
}

const showProblems = (ps: Problem[]) => ps.map((p) => `${p.field}: expected ${String(p.expected)}, observed ${String(p.observed)}`).join('; ');

/**
 * Runs `plan` commit-confirmed, or resumes the transaction an earlier attempt armed. Resolves once confirmed;
 * throws ManagementMoveError after a self-rollback.
 */
export async function commitConfirmed(io: StepIo<unknown>, plan: MovePlan): Promise<MoveOutcome> {
  if (!io.reconnect) throw new Error('a commit-confirmed change needs a step that can reconnect');
  const key = `${MOVE_MARK}:${plan.purpose}`;
  let mark = moveMark(io, plan.purpose);
  const resumed = mark !== undefined;
  if (mark?.phase === 'confirmed') return { result: 'confirmed', id: mark.id, windowSec: mark.windowSec, confirmedAfterMs: 0, resumed };
  if (mark?.phase === 'rolled-back') throw rolledBack(io, mark, 'recorded by an earlier attempt');
  if (mark?.phase === 'arming') {
    // Marked, then the worker died or the arming command was cut off: the arm may have run, or half of it. The host
    // knows. Not run, or cut off before its timer (nothing changed then): start over with a new transaction.
    const s = await txnStatus(io.host, mark.id);
    const halfArmed = s.state === 'armed' && !s.timerActive && s.applied === null;
    const abandoned =
      halfArmed && (await io.host.read(abandonScript(mark.id), { description: `abandon half-armed network transaction ${mark.id}` })).trim() === 'abandoned';
    if (s.state === 'none' || abandoned) {
      if (abandoned) io.progress(`network transaction ${mark.id} was cut off before its timer was armed (nothing changed): arming afresh`);
      io.mark(key, null);
      mark = undefined;
    } else {
      mark = { ...mark, phase: 'armed', armedAt: mark.markedAt, deadline: mark.markedAt + mark.windowSec * 1000 };
      io.mark(key, mark);
    }
  }
  if (!mark && plan.resumeOnly) throw new Error(`no network transaction of ${plan.purpose} to resume`);
  if (!mark) {
    const id = `${plan.purpose}-${randomBytes(5).toString('hex')}`;
    const now = Date.now();
    mark = {
      id,
      phase: 'arming',
      windowSec: plan.windowSec,
      to: plan.to,
      from: plan.from,
      markedAt: now,
      waitUntil: now + plan.windowSec * 1000 + ROLLBACK_GRACE_MS + OLD_PATH_WAIT_MS,
      what: plan.what,
      pre: plan.pre,
    };
    io.mark(key, mark);
    await io.sleep(MARK_DURABLE_MS);
    await io.host.run(armScript({ id, files: plan.files, reactivate: plan.reactivate, change: plan.change, windowSec: plan.windowSec }), {
      description: `arm network transaction ${id} (rollback in ${plan.windowSec} s unless confirmed) and start ${plan.what} detached`,
      // Two daemon-reloads and two systemd-runs: seconds on a real host, up to a minute on a loaded TCG VM.
      timeoutMs: 180_000,
    });
    const armedAt = Date.now();
    mark = {
      ...mark,
      phase: 'armed',
      armedAt,
      deadline: armedAt + plan.windowSec * 1000,
      waitUntil: armedAt + plan.windowSec * 1000 + ROLLBACK_GRACE_MS + OLD_PATH_WAIT_MS,
    };
    countMove(io, plan.purpose, 'armed'); // counted first: a worker killed as soon as the mark is out has counted it
    io.mark(key, mark);
    io.progress(
      `armed ${plan.what}: the host rolls back by itself at ${new Date(mark.deadline!).toISOString()} (window ${plan.windowSec} s) unless confirmed over ${pathText(io, plan.to)}`,
    );
  } else {
    countMove(io, plan.purpose, 'resumed');
    io.progress(`resuming network transaction ${mark.id} (${mark.what}) armed by an earlier attempt`);
  }
  const deadline = mark.deadline ?? mark.markedAt + mark.windowSec * 1000;

  // 3. The new path, verified, confirmed — before the timer.
  let lastProblems: Problem[] = [];
  while (Date.now() + CONFIRM_MARGIN_MS < deadline) {
    const host = await reach(io, plan.to, deadline - CONFIRM_MARGIN_MS);
    if (!host) break;
    try {
      lastProblems = await plan.verifyNew(io);
      if (!lastProblems.length) {
        if (Date.now() + 1_000 > deadline) break;
        const r = await host.run(confirmScript(mark.id), { description: `confirm network transaction ${mark.id}`, okExitCodes: [0, 5] });
        if (r.exitCode === 0) {
          const at = Date.now();
          io.mark(key, { ...mark, phase: 'confirmed', decidedAt: at });
          countMove(io, plan.purpose, 'confirmed', at - (mark.armedAt ?? mark.markedAt));
          io.progress(`confirmed ${plan.what} over ${pathText(io, plan.to)} ${Math.round((at - (mark.armedAt ?? mark.markedAt)) / 1000)} s after arming`);
          return { result: 'confirmed', id: mark.id, windowSec: mark.windowSec, confirmedAfterMs: at - (mark.armedAt ?? mark.markedAt), resumed };
        }
        break; // the host rolled back already
      }
      io.progress(`${plan.what}: the new path answers but does not verify yet (${showProblems(lastProblems)})`);
    } catch (err) {
      if (!(err instanceof ConnectionError)) throw err;
    }
    await io.sleep(RETRY_EVERY_MS);
  }

  // 4. Not confirmed: the host undoes it by itself. Wait for its timer, then poll the old path until the host says
  //    its rollback is done (no fixed grace: restore.sh takes seconds on a quick host and a minute under TCG).
  const giveUp = deadline + ROLLBACK_GRACE_MS + OLD_PATH_WAIT_MS;
  const waitMs = deadline + TIMER_SLACK_MS - Date.now();
  io.progress(
    `${plan.what} not confirmed (${lastProblems.length ? showProblems(lastProblems) : `no answer on ${pathText(io, plan.to)}`}); waiting ${Math.max(0, Math.round(waitMs / 1000))} s for the host's rollback`,
  );
  if (waitMs > 0) await io.sleep(waitMs);
  let old: RemoteHost | undefined;
  let s: TxnState | undefined;
  for (let i = 0; i < 1_000; i++) {
    old ??= await reach(io, plan.from, giveUp);
    if (!old) break;
    try {
      s = await txnStatus(old, mark.id);
      // Armed: the timer has not fired yet (clock skew) or the old path never went away; rolling back: not done yet.
      if (s.state !== 'armed' && !(s.state === 'rolled-back' && !s.done)) break;
    } catch (err) {
      if (!(err instanceof ConnectionError)) throw err;
      old = undefined; // the rollback cut this session: reconnect
    }
    if (Date.now() + RETRY_EVERY_MS > giveUp) break;
    await io.sleep(RETRY_EVERY_MS);
  }
  if (!old || !s) {
    countMove(io, plan.purpose, 'failed');
    throw new ManagementMoveError(
      `${plan.what} was not confirmed within its ${mark.windowSec} s window, and the host does not answer on the old path ${pathText(io, plan.from)} either (${Math.round((giveUp - deadline) / 1000)} s after the rollback was due): it needs a console`,
      { ...where(io), field: 'network.management', expected: 'the host reachable on one of its paths', observed: 'no answer on either' },
    );
  }
  const log = (await old.read(logScript(mark.id), { description: `log of network transaction ${mark.id}` })).trim().split('\n').slice(-3).join(' | ');
  if (s.state !== 'rolled-back' || !s.done) {
    countMove(io, plan.purpose, 'failed');
    throw new ManagementMoveError(
      `${plan.what} was not confirmed within its ${mark.windowSec} s window, but the host's rollback did not complete (transaction ${mark.id}: ${s.state}, ${Math.round((Date.now() - deadline) / 1000)} s after it was due)`,
      { ...where(io), field: 'network.management', expected: 'rolled back', observed: `${s.state}; log: ${log}`.slice(0, 500) },
    );
  }
  const pre = await plan.verifyRolledBack(io, mark.pre ?? plan.pre);
  if (pre.length) {
    countMove(io, plan.purpose, 'failed');
    throw new ManagementMoveError(
      `${plan.what} was not confirmed within its ${mark.windowSec} s window; the host rolled back (transaction ${mark.id}) but not to its pre-state: ${showProblems(pre)}`,
      { ...where(io), field: 'network.management', expected: 'the pre-state', observed: showProblems(pre).slice(0, 500) },
    );
  }
  mark = { ...mark, phase: 'rolled-back', decidedAt: Date.now() };
  io.mark(key, mark);
  countMove(io, plan.purpose, 'rolled_back');
  await old.run(cleanupScript(mark.id), { description: `remove rolled-back network transaction ${mark.id}` });
  throw rolledBack(
    io,
    mark,
    lastProblems.length ? `the new path answered but did not verify: ${showProblems(lastProblems)}` : `no answer on ${pathText(io, plan.to)}`,
  );
}

function rolledBack(io: StepIo<unknown>, mark: MoveMark, why: string): ManagementMoveError {
  return new ManagementMoveError(
    `${mark.what} was not confirmed within its ${mark.windowSec} s window (${why}); the host rolled itself back (transaction ${mark.id}) and answers on the old path ${pathText(io, mark.from)} with its pre-state`,
    { ...where(io), field: 'network.management', expected: `confirmed over ${pathText(io, mark.to)}`, observed: 'rolled back by the host' },
  );
}
