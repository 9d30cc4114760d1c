/**
 * What the drift and the health Schedules share: create-or-replace with overlap SKIP, describe with a hint when
 * absent, the status text, and the latest completed run of a sweep workflow. src/cli/drift.ts and
 * src/cli/health.ts say what their sweep is; this module knows only Temporal Schedules.
 */
import { userInfo } from 'node:os';
import {
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
  type ScheduleSpec,
} from '@temporalio/client';
import { msToNumber, type Duration } from '@temporalio/common';

/** A Temporal duration string (`30m`, `1h`, `1d`, …), checked; `what` names the flag in the error. */
export function parseDuration(v: string, what: string): Duration {
  let n = NaN;
  try {
    n = msToNumber(v as Duration);
  } catch {
    /* not a duration */
  }
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${what}: expected a duration such as 30m, 1h or 1d, got ${JSON.stringify(v)}`);
  return v as Duration;
}

export interface SweepScheduleOptions {
  scheduleId: string;
  workflowType: string;
  taskQueue: string;
  /** The sweep workflow's one argument. */
  input: unknown;
  /** An interval such as `1h`, or … */
  every?: string;
  /** … a cron expression (exactly one of the two). */
  cron?: string;
  staticSummary: string;
  /** How late a missed run may still start. */
  catchupWindow: Duration;
  paused?: boolean;
}

/** Creates the Schedule, or replaces the spec and action of the existing one. Overlap policy: SKIP. */
export async function upsertSweepSchedule(client: Client, o: SweepScheduleOptions): Promise<{ handle: ScheduleHandle; created: boolean }> {
  if (!o.every === !o.cron) throw new Error('give exactly one of --every <interval> and --cron <expression>');
  const spec: ScheduleSpec = o.every ? { intervals: [{ every: parseDuration(o.every, '--every') }] } : { cronExpressions: [o.cron!] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: o.workflowType,
    // The Schedule appends the scheduled time: underlay-drift-sweep-2025-01-01T03:00:00Z.
    workflowId: `${o.scheduleId}-sweep`,
    taskQueue: o.taskQueue,
    args: [o.input],
    staticSummary: o.staticSummary,
    // How the operator said it (the description only has the compiled spec); shown by `… status`.
    staticDetails: `when: ${o.every ? `every ${o.every}` : `cron "${o.cron}"`}`,
  };
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: o.catchupWindow, pauseOnFailure: false };
  try {
    const handle = await client.schedule.create({
      scheduleId: o.scheduleId,
      spec,
      action,
      policies,
      state: { paused: o.paused ?? false, note: `created by ${userInfo().username}` },
    });
    return { handle, created: true };
  } catch (err) {
    if ((err as Error).name !== 'ScheduleAlreadyRunning') throw err;
    const handle = client.schedule.getHandle(o.scheduleId);
    await handle.update((prev) => ({ ...prev, spec, action, policies }));
    return { handle, created: false };
  }
}

/** The Schedule and its description; absent → an error that says how to create it. */
export async function describeSchedule(client: Client, scheduleId: string, absent: string): Promise<{ handle: ScheduleHandle; desc: ScheduleDescription }> {
  const handle = client.schedule.getHandle(scheduleId);
  try {
    return { handle, desc: await handle.describe() };
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new Error(absent);
    throw err;
  }
}

/**
 * The Schedule for humans: state, when and `what` (from the sweep's input), next runs, the last `recent` sweeps
 * and how they ended, the ones running now.
 */
export async function renderSchedule(client: Client, desc: ScheduleDescription, what: (input: unknown) => string, recent: number): Promise<string> {
  const input = desc.action.type === 'startWorkflow' ? (desc.action.args?.[0] ?? {}) : {};
  const every = desc.spec.intervals?.[0]?.every;
  const details = desc.action.type === 'startWorkflow' ? desc.action.staticDetails : undefined;
  const when = details?.replace(/^when: /, '') ?? (every ? `every ${every / 1000} s` : 'calendar spec');
  const lines = [
    `schedule ${desc.scheduleId}: ${desc.state.paused ? 'PAUSED' : 'active'}${desc.state.note ? ` (${desc.state.note})` : ''}`,
    `  ${when} · ${what(input)} · overlap ${desc.policies.overlap}`,
    `  actions: ${desc.info.numActionsTaken} taken, ${desc.info.numActionsSkippedOverlap} skipped (a sweep was still running), ${desc.info.numActionsMissedCatchupWindow} missed`,
    `  next runs: ${
      desc.state.paused
        ? '(paused)'
        : desc.info.nextActionTimes
            .slice(0, 3)
            .map((d) => d.toISOString())
            .join(', ') || '(none)'
    }`,
  ];
  const taken = desc.info.recentActions.slice(-recent);
  if (taken.length) lines.push('  recent sweeps:');
  for (const a of taken) {
    const status = await client.workflow
      .getHandle(a.action.workflow.workflowId)
      .describe()
      .then(
        (d) => d.status.name.toLowerCase(),
        () => 'unknown',
      );
    lines.push(`    ${a.takenAt.toISOString()}  ${a.action.workflow.workflowId}  ${status}`);
  }
  for (const r of desc.info.runningActions) lines.push(`  running now: ${r.workflow.workflowId}`);
  return lines.join('\n');
}

/**
 * The most recently closed completed run of `workflowType` (after continue-as-new its last run holds the
 * summary): at most `scan` runs are read from visibility (namespace retention bounds the rest).
 */
export async function latestCompleted(
  client: Client,
  workflowType: string,
  scan: number,
): Promise<{ workflowId: string; runId: string; closedAt?: Date; result: unknown } | undefined> {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(workflowType)) throw new Error(`not a workflow type: ${JSON.stringify(workflowType)}`);
  let best: { workflowId: string; runId: string; closeTime?: Date } | undefined;
  let n = 0;
  for await (const wf of client.workflow.list({ query: `WorkflowType = '${workflowType}' AND ExecutionStatus = 'Completed'` })) {
    if ((wf.closeTime?.getTime() ?? 0) > (best?.closeTime?.getTime() ?? -1)) best = wf;
    if (++n >= scan) break;
  }
  if (!best) return undefined;
  const result: unknown = await client.workflow.getHandle(best.workflowId, best.runId, { followRuns: false }).result();
  return { workflowId: best.workflowId, runId: best.runId, closedAt: best.closeTime, result };
}
