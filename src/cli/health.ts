/**
 * `underlay health schedule | run | status | unschedule`: the fleet's health probes on a Temporal Schedule
 * (id `underlay-health`, overlap SKIP), over the same inventory directory as the drift sweep. `underlay health
 * <spec>` (main.ts) probes one host now. The functions take a Client, so tests use them without the command line.
 */
import { type Client, type ScheduleDescription, type ScheduleHandle, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { Command } from 'commander';
import { DEFAULT_PING_COUNT, DEFAULT_TEXTFILE_DIR, validTextfileDir } from '../activities/probe';
import { HEALTH_SCHEDULE_ID, TASK_QUEUE } from '../common/config';
import type { healthSweep, HealthSweepInput, HealthSweepSummary } from '../workflows/health';
import { withClient } from '../workers/connection';
import { inventoryPath } from './drift';
import { describeSchedule, latestCompleted, renderSchedule, upsertSweepSchedule } from './schedules';
import { siteQueuesFromEnv } from './onboarding';

export interface HealthSweepOptions {
  inventoryDir: string;
  concurrency?: number;
  pageSize?: number;
  /** Echo requests per gateway. */
  count?: number;
  textfileDir?: string;
  taskQueue?: string;
  siteQueues?: boolean;
}

export interface HealthScheduleOptions extends HealthSweepOptions {
  /** An interval such as `5m` (the alert rules assume a probe every 5 minutes), or … */
  every?: string;
  /** … a cron expression (exactly one of the two). */
  cron?: string;
  scheduleId?: string;
  paused?: boolean;
}

export function healthSweepInput(o: HealthSweepOptions): HealthSweepInput {
  if (o.count !== undefined && (!Number.isInteger(o.count) || o.count < 1 || o.count > 100)) throw new Error(`--count: 1–100 (got ${o.count})`);
  const probe = {
    ...(o.count !== undefined ? { count: o.count } : {}),
    ...(o.textfileDir !== undefined ? { textfileDir: validTextfileDir(o.textfileDir) } : {}),
  };
  return {
    inventoryDir: o.inventoryDir,
    ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
    ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}),
    ...(Object.keys(probe).length ? { probe } : {}),
    ...((o.siteQueues ?? siteQueuesFromEnv()) ? { siteQueues: true } : {}),
  };
}

/** One sweep now, outside the Schedule. */
export async function startHealthSweep(client: Client, o: HealthSweepOptions): Promise<WorkflowHandleWithFirstExecutionRunId<typeof healthSweep>> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return client.workflow.start<typeof healthSweep>('healthSweep', {
    taskQueue: o.taskQueue ?? TASK_QUEUE,
    workflowId: `${HEALTH_SCHEDULE_ID}-run-${stamp}`,
    args: [healthSweepInput(o)],
    staticSummary: `Health sweep of ${o.inventoryDir}`,
  });
}

/** Creates the health Schedule, or replaces the spec and action of the existing one. Overlap policy: SKIP. */
export async function scheduleHealth(client: Client, o: HealthScheduleOptions): Promise<{ handle: ScheduleHandle; created: boolean }> {
  return upsertSweepSchedule(client, {
    scheduleId: o.scheduleId ?? HEALTH_SCHEDULE_ID,
    workflowType: 'healthSweep',
    taskQueue: o.taskQueue ?? TASK_QUEUE,
    input: healthSweepInput(o),
    ...(o.every !== undefined ? { every: o.every } : {}),
    ...(o.cron !== undefined ? { cron: o.cron } : {}),
    staticSummary: `Scheduled health sweep of ${o.inventoryDir}`,
    // A probe that missed its slot is worth nothing later: a short catch-up window.
    catchupWindow: '1m',
    ...(o.paused !== undefined ? { paused: o.paused } : {}),
  });
}

export async function healthScheduleHandle(client: Client, scheduleId = HEALTH_SCHEDULE_ID): Promise<{ handle: ScheduleHandle; desc: ScheduleDescription }> {
  return describeSchedule(client, scheduleId, `no health schedule ${scheduleId}: create it with \`underlay health schedule --every 5m\``);
}

/** The Schedule for humans: state, when, what, next runs, recent sweeps and how they ended. */
export async function renderHealthSchedule(client: Client, desc: ScheduleDescription): Promise<string> {
  return renderSchedule(
    client,
    desc,
    (i) => {
      const input = i as Partial<HealthSweepInput>;
      return `inventory ${input.inventoryDir ?? '?'} · ${input.concurrency ?? 10} host(s) at once · ${input.probe?.count ?? DEFAULT_PING_COUNT} echo requests per gateway · textfile ${input.probe?.textfileDir ?? DEFAULT_TEXTFILE_DIR}`;
    },
    5,
  );
}

/** The most recently finished health sweep (its last run holds the summary); at most `scan` runs are read. */
export async function latestHealthSweep(client: Client, scan = 200): Promise<{ workflowId: string; summary: HealthSweepSummary } | undefined> {
  const r = await latestCompleted(client, 'healthSweep', scan);
  return r && { workflowId: r.workflowId, summary: r.result as HealthSweepSummary };
}

/** A sweep's summary for a terminal: counts, then each host that is not healthy, then the healthy ones. */
export function renderHealthSweep(s: HealthSweepSummary, title = 'health sweep'): string {
  const c = s.counts;
  const lines = [
    `${title} · inventory ${s.inventoryDir} · ${s.startedAt} → ${s.finishedAt ?? 'running'} · ${s.pages} page(s)`,
    `${c.servers} host(s): ${c.healthy} healthy · ${c.degraded} degraded · ${c.failed} probe failed · ${c.skipped} skipped · ${c.invalid} invalid spec(s)`,
  ];
  const order = { degraded: 0, failed: 1, skipped: 2, healthy: 3 } as const;
  for (const r of [...s.rows].sort((a, b) => order[a.status] - order[b.status] || a.serverId.localeCompare(b.serverId))) {
    const loss = r.gateways.map((g) => `VLAN ${g.vlan} loss ${Math.round(g.loss * 100)}%`).join(', ');
    const bond = r.bond ? `bond ${r.bond.active}/${r.bond.configured}` : '';
    lines.push(
      `  ${r.status === 'healthy' ? '✓' : '✗'} ${r.serverId} ${r.status}${[loss, bond].filter(Boolean).length ? ` · ${[loss, bond].filter(Boolean).join(' · ')}` : ''}`,
    );
    for (const p of r.problems) lines.push(`      ${p}`);
  }
  if (s.omitted) lines.push(`  … ${s.omitted} more host(s) not listed`);
  if (s.invalid.length) lines.push(`invalid specs (not probed): ${s.invalid.join(', ')}`);
  return lines.join('\n');
}

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`expected a positive integer, got ${v}`);
  return n;
};

interface HealthFlags {
  inventory?: string;
  concurrency?: number;
  pageSize?: number;
  pings?: number;
  textfileDir?: string;
  taskQueue: string;
  siteQueues?: boolean;
}

function sweepFlags(cmd: Command): Command {
  return cmd
    .option('--inventory <dir>', 'inventory directory of spec files, one <id>.yaml per server (default $UNDERLAY_INVENTORY or ./inventory)')
    .option('--concurrency <n>', 'hosts probed at once (≤ 50)', int)
    .option('--page-size <n>', 'inventory files per workflow run (≤ 500)', int)
    .option('--pings <n>', 'echo requests per gateway (default 10, 0.2 s apart)', int)
    .option('--textfile-dir <dir>', `node_exporter's textfile directory on the hosts (default ${DEFAULT_TEXTFILE_DIR})`)
    .option('--task-queue <name>', 'task queue of the workers', TASK_QUEUE)
    .option('--site-queues', "probe on each server's site queue (<task-queue>-<site>; default $UNDERLAY_SITE_QUEUES)");
}

function toOptions(f: HealthFlags): HealthSweepOptions {
  return {
    inventoryDir: inventoryPath(f.inventory),
    concurrency: f.concurrency,
    pageSize: f.pageSize,
    count: f.pings,
    textfileDir: f.textfileDir,
    taskQueue: f.taskQueue,
    ...(f.siteQueues ? { siteQueues: true } : {}),
  };
}

/** Subcommands of `underlay health` (which itself, with a spec file, probes one host now). */
export function registerHealthCommands(health: Command): void {
  sweepFlags(health.command('run').description('probe every onboarded host of the inventory now (one sweep) and print the result'))
    .option('--detach', 'print the workflow id and return without waiting')
    .action(async (f: HealthFlags & { detach?: boolean }) =>
      withClient(async (client) => {
        const handle = await startHealthSweep(client, toOptions(f));
        console.log(`started ${handle.workflowId}`);
        if (!f.detach) console.log(renderHealthSweep(await handle.result(), handle.workflowId));
      }),
    );

  sweepFlags(health.command('schedule').description('probe the inventory on a Temporal Schedule (id underlay-health; a sweep still running skips the next)'))
    .option('--every <interval>', 'e.g. 5m (the alert rules assume 5 minutes)')
    .option('--cron <expression>', 'e.g. "*/5 * * * *"')
    .option('--paused', 'create it paused')
    .action(async (f: HealthFlags & { every?: string; cron?: string; paused?: boolean }) =>
      withClient(async (client) => {
        const { handle, created } = await scheduleHealth(client, { ...toOptions(f), every: f.every, cron: f.cron, paused: f.paused });
        console.log(`${created ? 'created' : 'updated'} schedule ${handle.scheduleId}`);
        console.log(await renderHealthSchedule(client, await handle.describe()));
      }),
    );

  health
    .command('status')
    .description('the health schedule (state, next runs, recent sweeps) and the latest finished sweep')
    .option('--json', 'print the latest sweep as JSON')
    .action(async (f: { json?: boolean }) =>
      withClient(async (client) => {
        const latest = await latestHealthSweep(client);
        if (f.json) {
          console.log(JSON.stringify(latest ?? null, null, 2));
          return;
        }
        const { desc } = await healthScheduleHandle(client);
        console.log(await renderHealthSchedule(client, desc));
        console.log(latest ? `\n${renderHealthSweep(latest.summary, latest.workflowId)}` : '\nno finished health sweep yet');
      }),
    );

  health
    .command('unschedule')
    .description('delete the health schedule (a running sweep continues)')
    .action(async () =>
      withClient(async (client) => {
        const { handle } = await healthScheduleHandle(client);
        await handle.delete();
        console.log(`deleted ${handle.scheduleId}`);
      }),
    );
}
