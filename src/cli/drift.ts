/**
 * `underlay drift …`: drift sweeps now or on a Temporal Schedule, their reports, and approvals.
 *
 *   drift run [--mode m] [--inventory DIR]                    one sweep now (waits for it; --detach does not)
 *   drift schedule --every 1h | --cron "0 3 * * *" --mode m   create or replace the `underlay-drift` Schedule
 *   drift pause | resume | trigger | unschedule               pause, resume, start a sweep now, delete it
 *   drift status                                              the Schedule: next runs, recent sweeps
 *   drift report [--json]                                     the latest finished sweep, as a table
 *   drift approve <serverId> [--reject]                       let a waiting drift check remediate (or not)
 *
 * The functions below take a Client, so tests and other services use them without the command line.
 */
import { isAbsolute, resolve } from 'node:path';
import { userInfo } from 'node:os';
import {
  ScheduleOverlapPolicy,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import type { Command } from 'commander';
import { DRIFT_SCHEDULE_ID, driftWorkflowId, TASK_QUEUE } from '../common/config';
import type { driftSweep, DriftSweepInput } from '../workflows/drift';
import {
  approveUpdate,
  DRIFT_MODES,
  sweepProgressQuery,
  type ApprovalAnswer,
  type DriftCheckResult,
  type DriftMode,
  type DriftSweepSummary,
} from '../workflows/drift-messages';
import { withClient } from '../workers/connection';
import { siteQueuesFromEnv } from './onboarding';
import { describeSchedule, latestCompleted, parseDuration, renderSchedule, upsertSweepSchedule } from './schedules';

export interface SweepOptions {
  inventoryDir: string;
  mode: DriftMode;
  concurrency?: number;
  pageSize?: number;
  approvalTimeout?: string;
  taskQueue?: string;
  /** Site queues: each check observes and remediates on `<taskQueue>-<site>` (default: UNDERLAY_SITE_QUEUES). */
  siteQueues?: boolean;
}

export interface ScheduleOptions extends SweepOptions {
  /** An interval such as `1h` or `30m`, or … */
  every?: string;
  /** … a cron expression such as `0 3 * * *` (exactly one of the two). */
  cron?: string;
  scheduleId?: string;
  paused?: boolean;
}

export function parseMode(mode: string): DriftMode {
  if (!(DRIFT_MODES as readonly string[]).includes(mode)) throw new Error(`--mode must be one of ${DRIFT_MODES.join(', ')} (got ${mode})`);
  return mode as DriftMode;
}

/** A positive duration such as `30m`, `1h` or `1d` (refused here, not in a workflow). */

/** The inventory as workers will read it: an absolute path (workers need not share the CLI's cwd). */
export function inventoryPath(dir: string | undefined): string {
  const d = dir ?? process.env.UNDERLAY_INVENTORY ?? 'inventory';
  return isAbsolute(d) ? d : resolve(d);
}

function sweepInput(o: SweepOptions): DriftSweepInput {
  return {
    inventoryDir: o.inventoryDir,
    mode: o.mode,
    ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
    ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}),
    ...(o.approvalTimeout !== undefined ? { approvalTimeout: parseDuration(o.approvalTimeout, '--approval-timeout') } : {}),
    ...((o.siteQueues ?? siteQueuesFromEnv()) ? { siteQueues: true } : {}),
  };
}

/** Starts one sweep now, outside the Schedule. */
export async function startSweep(client: Client, o: SweepOptions): Promise<WorkflowHandleWithFirstExecutionRunId<typeof driftSweep>> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return client.workflow.start<typeof driftSweep>('driftSweep', {
    taskQueue: o.taskQueue ?? TASK_QUEUE,
    workflowId: `${DRIFT_SCHEDULE_ID}-run-${stamp}`,
    args: [sweepInput(o)],
    staticSummary: `Drift sweep (${o.mode}) of ${o.inventoryDir}`,
  });
}

/** Creates the drift Schedule, or replaces the spec and action of the existing one. Overlap policy: SKIP. */
export async function scheduleSweeps(client: Client, o: ScheduleOptions): Promise<{ handle: ScheduleHandle; created: boolean }> {
  return upsertSweepSchedule(client, {
    scheduleId: o.scheduleId ?? DRIFT_SCHEDULE_ID,
    workflowType: 'driftSweep',
    taskQueue: o.taskQueue ?? TASK_QUEUE,
    input: sweepInput(o),
    ...(o.every !== undefined ? { every: o.every } : {}),
    ...(o.cron !== undefined ? { cron: o.cron } : {}),
    staticSummary: `Scheduled drift sweep (${o.mode}) of ${o.inventoryDir}`,
    catchupWindow: '10m',
    ...(o.paused !== undefined ? { paused: o.paused } : {}),
  });
}

export async function scheduleHandle(client: Client, scheduleId = DRIFT_SCHEDULE_ID): Promise<{ handle: ScheduleHandle; desc: ScheduleDescription }> {
  return describeSchedule(client, scheduleId, `no drift schedule ${scheduleId}: create it with \`underlay drift schedule --every 1h --mode report\``);
}

/** The Schedule for humans: state, when, what, next runs, recent sweeps and how they ended. */
export async function renderScheduleStatus(client: Client, desc: ScheduleDescription): Promise<string> {
  return renderSchedule(
    client,
    desc,
    (i) => {
      const input = i as Partial<DriftSweepInput>;
      return `mode ${input.mode ?? '?'} · inventory ${input.inventoryDir ?? '?'}`;
    },
    10,
  );
}

export interface LatestSweep {
  workflowId: string;
  runId: string;
  closedAt?: Date;
  summary: DriftSweepSummary;
}

/**
 * The most recently finished sweep (its last run, after continue-as-new, holds the summary). Visibility is
 * scanned for completed `driftSweep` runs (at most `scan` of them; namespace retention bounds the rest).
 */
export async function latestSweep(client: Client, scan = 1000): Promise<LatestSweep | undefined> {
  const r = await latestCompleted(client, 'driftSweep', scan);
  return r && { workflowId: r.workflowId, runId: r.runId, closedAt: r.closedAt, summary: r.result as DriftSweepSummary };
}

/** Sweeps running now, with their progress so far (needs a worker to answer the query). */
export async function runningSweeps(client: Client): Promise<Array<{ workflowId: string; progress?: DriftSweepSummary }>> {
  const out: Array<{ workflowId: string; progress?: DriftSweepSummary }> = [];
  for await (const wf of client.workflow.list({ query: `WorkflowType = 'driftSweep' AND ExecutionStatus = 'Running'` })) {
    const progress = await client.workflow
      .getHandle(wf.workflowId)
      .query(sweepProgressQuery)
      .catch(() => undefined);
    out.push({ workflowId: wf.workflowId, progress });
    if (out.length >= 10) break;
  }
  return out;
}

function changeText(r: DriftCheckResult): string {
  return r.diffs
    .map((d) => {
      const changes = d.error ?? d.changes.map((c) => `${c.field} ${JSON.stringify(c.from)} → ${JSON.stringify(c.to)}`).join(', ');
      const health = (d.health ?? []).map(
        (h) => `! ${h.field}: expected ${JSON.stringify(h.expected)}, observed ${JSON.stringify(h.observed)} (look at ${h.hint})`,
      );
      return `${d.step}: ${[changes, ...health].filter(Boolean).join(', ')}${d.more ? ` (+${d.more})` : ''}`;
    })
    .join('; ');
}

/** A sweep summary as a table of the servers that are not clean, with the counts and the reported lists. */
export function renderSweepReport(s: DriftSweepSummary, title = 'drift sweep'): string {
  const c = s.counts;
  const lines = [
    `${title} · mode ${s.mode} · inventory ${s.inventoryDir} · ${s.startedAt} → ${s.finishedAt ?? 'running'} · ${s.pages} page(s)`,
    `${c.servers} server(s): ${c.clean} clean · ${c.drifted} drifted · ${c.needsOperator ?? 0} need an operator · ${c.remediated} remediated · ${c.failed} failed · ${c.skipped} skipped · ` +
      `${c.notOnboarded} not onboarded · ${c.invalid} invalid spec(s) · ${c.unmanaged} unmanaged`,
  ];
  if (s.servers.length) {
    const rows = s.servers.map((r) => [
      r.serverId,
      r.status,
      [...r.driftedSteps, ...(r.unhealthySteps ?? []).filter((x) => !r.driftedSteps.includes(x)).map((x) => `${x}!`)].join(',') || '-',
      r.status === 'drifted' && !r.remediation ? changeText(r) || (r.reason ?? '') : (r.reason ?? changeText(r)),
    ]);
    const head = ['SERVER', 'STATUS', 'STEPS', 'DETAIL'];
    const w = [0, 1, 2].map((i) => Math.max(head[i]!.length, ...rows.map((r) => r[i]!.length)));
    lines.push(
      '',
      [head, ...rows]
        .map((r) =>
          r
            .map((cell, i) => (i < 3 ? cell.padEnd(w[i]!) : cell))
            .join('  ')
            .trimEnd(),
        )
        .join('\n'),
    );
    if (s.omitted) lines.push(`… and ${s.omitted} more (filter the Web UI: UnderlayDriftStatus != "clean")`);
  } else lines.push('', c.servers ? 'No drift: every checked server matches its spec.' : 'No server was checked.');
  if (s.invalid.length) {
    lines.push('', 'invalid specs (not checked, never remediated):');
    for (const f of s.invalid) lines.push(`  ${f.file}: ${f.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
  }
  if (s.notOnboarded.length)
    lines.push(
      '',
      `not onboarded (in the inventory, no completed onboarding): ${s.notOnboarded.join(', ')}${c.notOnboarded > s.notOnboarded.length ? ', …' : ''}`,
    );
  if (s.unmanaged.length)
    lines.push('', `unmanaged (onboarded, missing from the inventory): ${s.unmanaged.join(', ')}${c.unmanaged > s.unmanaged.length ? ', …' : ''}`);
  return lines.join('\n');
}

/** Approves (or rejects) the remediation a `drift-<id>` workflow in approve mode is waiting for. */
export async function approveDrift(client: Client, serverId: string, opts: { approve?: boolean; by?: string } = {}): Promise<ApprovalAnswer> {
  const handle = client.workflow.getHandle(driftWorkflowId(serverId));
  try {
    return await handle.executeUpdate(approveUpdate, { args: [{ approve: opts.approve ?? true, by: opts.by ?? userInfo().username }] });
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new Error(`no drift check is running for ${serverId} (workflow ${driftWorkflowId(serverId)})`);
    if (err instanceof WorkflowUpdateFailedError) throw new Error(`approval refused: ${err.cause?.message ?? err.message}`);
    throw err;
  }
}

// ---- the command line ----------------------------------------------------------------------------------------

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`expected a positive integer, got ${v}`);
  return n;
};

interface SweepFlags {
  mode: string;
  inventory?: string;
  concurrency?: number;
  pageSize?: number;
  approvalTimeout?: string;
  taskQueue: string;
  siteQueues?: boolean;
}

function sweepFlags(cmd: Command): Command {
  return cmd
    .option('--mode <mode>', `what to do about drift: ${DRIFT_MODES.join(' | ')}`, 'report')
    .option('--inventory <dir>', 'inventory directory of spec files, one <id>.yaml per server (default $UNDERLAY_INVENTORY or ./inventory)')
    .option('--concurrency <n>', 'servers checked at once', int)
    .option('--page-size <n>', 'inventory files per workflow run (≤ 500)', int)
    .option('--approval-timeout <duration>', 'approve mode: how long to wait for approval, e.g. 4h')
    .option('--task-queue <name>', 'task queue of the workers', TASK_QUEUE)
    .option('--site-queues', "observe and remediate on each server's site queue (<task-queue>-<site>; default $UNDERLAY_SITE_QUEUES)");
}

function toSweepOptions(f: SweepFlags): SweepOptions {
  return {
    inventoryDir: inventoryPath(f.inventory),
    mode: parseMode(f.mode),
    concurrency: f.concurrency,
    pageSize: f.pageSize,
    approvalTimeout: f.approvalTimeout,
    taskQueue: f.taskQueue,
    ...(f.siteQueues ? { siteQueues: true } : {}),
  };
}

export function registerDriftCommands(program: Command): void {
  const drift = program.command('drift').description('detect (and by policy remediate) drift of onboarded servers from their inventory specs');

  sweepFlags(drift.command('run').description('sweep the inventory now'))
    .option('--detach', 'print the workflow id and return without waiting')
    .action(async (f: SweepFlags & { detach?: boolean }) =>
      withClient(async (client) => {
        const handle = await startSweep(client, toSweepOptions(f));
        console.log(`started ${handle.workflowId}`);
        if (f.detach) return;
        if (f.mode === 'approve') console.log('drifted servers wait for `underlay drift approve <serverId>`');
        console.log(renderSweepReport(await handle.result(), handle.workflowId));
      }),
    );

  sweepFlags(drift.command('schedule').description('sweep on a Temporal Schedule (id underlay-drift; a sweep still running skips the next)'))
    .option('--every <interval>', 'e.g. 1h, 30m, 1d')
    .option('--cron <expression>', 'e.g. "0 3 * * *"')
    .option('--paused', 'create it paused')
    .action(async (f: SweepFlags & { every?: string; cron?: string; paused?: boolean }) =>
      withClient(async (client) => {
        const { handle, created } = await scheduleSweeps(client, { ...toSweepOptions(f), every: f.every, cron: f.cron, paused: f.paused });
        console.log(`${created ? 'created' : 'updated'} schedule ${handle.scheduleId}`);
        console.log(await renderScheduleStatus(client, await handle.describe()));
      }),
    );

  drift
    .command('pause')
    .description('pause the drift schedule (a running sweep continues)')
    .option('--note <text>', 'why, for the record')
    .action(async (f: { note?: string }) =>
      withClient(async (client) => {
        const { handle } = await scheduleHandle(client);
        await handle.pause(f.note ?? `paused by ${userInfo().username}`);
        console.log(`paused ${handle.scheduleId}`);
      }),
    );

  drift
    .command('resume')
    .description('resume the drift schedule')
    .action(async () =>
      withClient(async (client) => {
        const { handle } = await scheduleHandle(client);
        await handle.unpause(`resumed by ${userInfo().username}`);
        console.log(`resumed ${handle.scheduleId}`);
      }),
    );

  drift
    .command('trigger')
    .description('start the scheduled sweep now (skipped if one is running)')
    .action(async () =>
      withClient(async (client) => {
        const { handle } = await scheduleHandle(client);
        await handle.trigger(ScheduleOverlapPolicy.SKIP);
        console.log(`triggered ${handle.scheduleId}`);
      }),
    );

  drift
    .command('unschedule')
    .description('delete the drift schedule (a running sweep continues)')
    .action(async () =>
      withClient(async (client) => {
        const { handle } = await scheduleHandle(client);
        await handle.delete();
        console.log(`deleted ${handle.scheduleId}`);
      }),
    );

  drift
    .command('status')
    .description('the drift schedule: state, next runs, recent sweeps; and sweeps running now')
    .action(async () =>
      withClient(async (client) => {
        const { desc } = await scheduleHandle(client);
        console.log(await renderScheduleStatus(client, desc));
      }),
    );

  drift
    .command('report')
    .description('the latest finished sweep: counts and every server that is not clean')
    .option('--json', 'print the summary as JSON')
    .action(async (f: { json?: boolean }) =>
      withClient(async (client) => {
        const latest = await latestSweep(client);
        const running = await runningSweeps(client);
        if (f.json) {
          console.log(JSON.stringify({ latest: latest ?? null, running }, null, 2));
          return;
        }
        for (const r of running) console.log(`${r.workflowId} is running${r.progress ? `: ${r.progress.counts.servers} server(s) checked so far` : ''}\n`);
        if (!latest) {
          console.log('no finished drift sweep yet: run `underlay drift run` or `underlay drift schedule`');
          return;
        }
        console.log(renderSweepReport(latest.summary, latest.workflowId));
      }),
    );

  drift
    .command('approve <serverId>')
    .description('approve the remediation a drift check in approve mode waits for')
    .option('--reject', 'reject it instead: nothing is changed')
    .option('--by <name>', 'who approves, for the record (default: your user name)')
    .action(async (serverId: string, f: { reject?: boolean; by?: string }) =>
      withClient(async (client) => {
        const a = await approveDrift(client, serverId, { approve: !f.reject, by: f.by });
        console.log(`${a.decision} remediation of ${a.serverId}: ${a.steps.join(', ')}`);
      }),
    );
}
