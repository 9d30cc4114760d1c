/**
 * `underlay fleet onboard|status|pause|resume|approve|abort` — a fleet rollout (onboardFleet, src/workflows/fleet.ts):
 * a canary, then waves, a concurrency cap over the whole fleet and a failure budget. `--watch` redraws the waves
 * and counts until the fleet ends.
 */
import { resolve } from 'node:path';
import { userInfo } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import type { Command } from 'commander';
import { fleetWorkflowId, TASK_QUEUE, TASK_QUEUE_RE } from '../common/config';
import { InvalidSpecError } from '../common/errors';
import { Label } from '../spec/identifiers';
import {
  abortFleetUpdate,
  approveFleetUpdate,
  FINAL_FLEET_PHASES,
  fleetProgressQuery,
  ON_STOP,
  pauseFleetUpdate,
  resumeFleetUpdate,
  type FleetAnswer,
  type FleetInput,
  type FleetProgress,
  type OnStop,
} from '../workflows/fleet-messages';
import { fleetBar, waveName, waveState } from '../workflows/fleet-status';
import type { onboardFleet } from '../workflows/fleet';
import { withClient } from '../workers/connection';
import { siteQueuesFromEnv } from './onboarding';

export class FleetAlreadyRunningError extends Error {
  constructor(readonly fleet: string) {
    super(`fleet ${fleet} is already running (${fleetWorkflowId(fleet)}): follow it with \`underlay fleet status ${fleet} --watch\``);
    this.name = 'FleetAlreadyRunningError';
  }
}

/** An operator request the fleet refused (its validator said why). */
export class FleetRequestRefusedError extends Error {
  constructor(
    readonly fleet: string,
    readonly action: string,
    why: string,
  ) {
    super(`fleet ${fleet}: ${action} refused: ${why}`);
    this.name = 'FleetRequestRefusedError';
  }
}

function checkName(name: string): string {
  const r = Label.safeParse(name);
  if (!r.success) throw new InvalidSpecError('bad fleet name', [{ path: 'name', message: 'a label: letters, digits, - (at most 63)' }]);
  return r.data;
}

export async function startFleet(
  client: Client,
  name: string,
  input: FleetInput,
  opts: { taskQueue?: string } = {},
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof onboardFleet>> {
  const taskQueue = opts.taskQueue ?? TASK_QUEUE;
  try {
    return await client.workflow.start<typeof onboardFleet>('onboardFleet', {
      taskQueue,
      workflowId: fleetWorkflowId(checkName(name)),
      workflowIdConflictPolicy: 'FAIL',
      args: [input],
      staticSummary: `Fleet ${name}: ${describeInput(input)}`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new FleetAlreadyRunningError(name);
    throw err;
  }
}

function describeInput(i: FleetInput): string {
  const s = i.source;
  const src = s.kind === 'inventory' ? `inventory ${s.dir}` : s.kind === 'files' ? `${s.files.length} spec file(s)` : 'earlier onboardings';
  return [
    src,
    i.canary ? `canary ${i.canary.size} (${i.canary.approval})` : 'no canary',
    `cap ${i.concurrency ?? 10}`,
    i.waveSize ? `waves of ${i.waveSize}` : 'one wave',
    `budget ${i.failureBudget?.count ?? (i.failureBudget?.percent !== undefined ? `${i.failureBudget.percent}%` : 0)}`,
    `on stop: ${i.onStop ?? 'finish'}`,
  ].join(' · ');
}

export async function queryFleet(client: Client, name: string): Promise<FleetProgress> {
  return client.workflow.getHandle(fleetWorkflowId(checkName(name))).query(fleetProgressQuery);
}

export type FleetAction = 'pause' | 'resume' | 'approve' | 'abort';

/** An operator request; a refusal (the validator) comes back as an UnderlayError saying why. */
export async function controlFleet(
  client: Client,
  name: string,
  action: FleetAction,
  req: { by?: string; reason?: string; onStop?: OnStop } = {},
): Promise<FleetAnswer> {
  const h = client.workflow.getHandle(fleetWorkflowId(checkName(name)));
  const by = req.by ?? userInfo().username;
  const base = { by, ...(req.reason ? { reason: req.reason } : {}) };
  try {
    if (action === 'pause') return await h.executeUpdate(pauseFleetUpdate, { args: [base] });
    if (action === 'resume') return await h.executeUpdate(resumeFleetUpdate, { args: [base] });
    if (action === 'approve') return await h.executeUpdate(approveFleetUpdate, { args: [base] });
    return await h.executeUpdate(abortFleetUpdate, { args: [{ ...base, ...(req.onStop ? { onStop: req.onStop } : {}) }] });
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) throw new FleetRequestRefusedError(name, action, err.cause?.message ?? err.message);
    if (err instanceof WorkflowNotFoundError) throw new FleetRequestRefusedError(name, action, `no running fleet ${name} (it has ended, or never started)`);
    throw err;
  }
}

/** The fleet as text: phase, bar, counts against the budget and cap, one line per wave, failures with reasons. */
export function renderFleet(p: FleetProgress): string {
  const c = p.counts;
  const lines = [
    `${p.fleetId} · ${p.phase}${p.stopReason ? ` · ${p.stopReason}` : ''}`,
    `${fleetBar(p, 30)}  ${c.onboarded} onboarded · ${c.failed} failed (budget ${p.budget.allowed}) · ${c.cancelled} cancelled · ${c.skipped} skipped · ${c.invalid} invalid · ${c.running} running (cap ${p.concurrency})`,
  ];
  if (p.control.pause) lines.push(`paused by ${p.control.pause.by}: \`underlay fleet resume ${p.fleetId.replace(/^fleet-/, '')}\``);
  if (p.phase === 'awaiting-approval') lines.push(`the canary onboarded: \`underlay fleet approve ${p.fleetId.replace(/^fleet-/, '')}\` to go on`);
  if (p.foldedWaves) lines.push(`  … ${p.foldedWaves} earlier wave(s)`);
  for (const w of p.waves) {
    const of = w.planned ? `/${w.planned}` : '';
    const bar = w.planned ? `${'█'.repeat(Math.round(((w.onboarded + w.failed + w.cancelled + w.skipped) / w.planned) * 10))}`.padEnd(10, '░') : '';
    lines.push(
      `  ${waveName(w).padEnd(8)} ${bar} ${w.size}${of} started · ${w.onboarded} ok · ${w.failed + w.cancelled} failed · ${w.skipped} skipped · ${waveState(w, p)}`,
    );
  }
  for (const f of p.failures.slice(0, 20)) lines.push(`  ✗ ${f.serverId}: ${f.reason}`);
  for (const s of p.skipped.slice(0, 10)) lines.push(`  – ${s.serverId} skipped: ${s.reason}`);
  for (const s of p.invalid.slice(0, 10)) lines.push(`  ! ${s.serverId} invalid: ${s.reason}`);
  lines.push(`  history: run ${p.runs}, ${p.historyEvents} events`);
  return lines.join('\n');
}

type Out = NodeJS.WritableStream & { isTTY?: boolean };

/** Follows a fleet until it ends (bounded by maxPolls); returns an exit code: 0 completed, 1 otherwise. */
export async function watchFleet(client: Client, name: string, out: Out, opts: { pollMs?: number; maxPolls?: number } = {}): Promise<number> {
  const pollMs = opts.pollMs ?? 1000;
  let last = '';
  for (let i = 0; i < (opts.maxPolls ?? 1_000_000); i++) {
    let p: FleetProgress | undefined;
    try {
      p = await queryFleet(client, name);
    } catch {
      // No worker right now, or a continue-as-new in progress: ask again.
    }
    if (p) {
      const text = renderFleet(p);
      if (text !== last) {
        out.write(out.isTTY && last ? `\x1b[${last.split('\n').length}F\x1b[J${text}\n` : `${text}\n\n`);
        last = text;
      }
      if (FINAL_FLEET_PHASES.includes(p.phase)) return p.phase === 'completed' ? 0 : 1;
    }
    await sleep(pollMs);
  }
  return 1;
}

function int(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,7}$/.test(v)) throw new InvalidSpecError('bad fleet option', [{ path: what, message: 'a whole number' }]);
  return Number(v);
}

interface OnboardOpts {
  inventory?: string;
  site?: string;
  rack?: string;
  hypervisor?: string;
  outcome?: string;
  canary?: string;
  canaryApproval: string;
  concurrency?: string;
  waveSize?: string;
  maxFailures?: string;
  maxFailurePercent?: string;
  onStop: string;
  siteQueues?: boolean;
  taskQueue: string;
  watch?: boolean;
}

/** The workflow input from the command line (the workflow validates it again). */
export function fleetInputFromOptions(files: string[], o: OnboardOpts): FleetInput {
  const list = (v: string | undefined) => v?.split(',').filter(Boolean);
  const search = { site: list(o.site), rack: list(o.rack), hypervisor: list(o.hypervisor), outcome: list(o.outcome) };
  const searching = Object.values(search).some((v) => v?.length);
  const kinds = [!!o.inventory, files.length > 0, searching].filter(Boolean).length;
  if (kinds !== 1)
    throw new InvalidSpecError('bad fleet source', [
      { path: 'source', message: 'exactly one of: spec files, --inventory <dir>, or search flags (--site/--rack/--hypervisor/--outcome)' },
    ]);
  if (!(ON_STOP as readonly string[]).includes(o.onStop)) throw new InvalidSpecError('bad fleet option', [{ path: 'on-stop', message: ON_STOP.join(' or ') }]);
  if (!TASK_QUEUE_RE.test(o.taskQueue)) throw new InvalidSpecError('bad fleet option', [{ path: 'task-queue', message: 'a task queue name' }]);
  const canary = int(o.canary, 'canary');
  const percent = o.maxFailurePercent === undefined ? undefined : Number(o.maxFailurePercent);
  const count = int(o.maxFailures, 'max-failures');
  const concurrency = int(o.concurrency, 'concurrency');
  const waveSize = int(o.waveSize, 'wave-size');
  return {
    source: o.inventory
      ? { kind: 'inventory', dir: resolve(o.inventory) }
      : files.length
        ? { kind: 'files', files: files.map((f) => resolve(f)) }
        : { kind: 'search', filter: Object.fromEntries(Object.entries(search).filter(([, v]) => v?.length)) },
    ...(canary ? { canary: { size: canary, approval: o.canaryApproval === 'auto' ? 'auto' : 'wait' } } : {}),
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(waveSize !== undefined ? { waveSize } : {}),
    ...(count !== undefined || percent !== undefined
      ? { failureBudget: { ...(count !== undefined ? { count } : {}), ...(percent !== undefined ? { percent } : {}) } }
      : {}),
    onStop: o.onStop as OnStop,
    ...((o.siteQueues ?? siteQueuesFromEnv()) ? { siteQueues: true } : {}),
  };
}

export function registerFleetCommands(program: Command): void {
  const fleet = program.command('fleet').description('onboard many servers: a canary, then waves, a concurrency cap and a failure budget');
  fleet
    .command('onboard <name> [specs...]')
    .description('start a fleet rollout of spec files, an inventory directory, or the servers of earlier onboardings')
    .option('--inventory <dir>', 'every spec file of this directory (as the workers see it)')
    .option('--site <sites>', 'search: earlier onboardings at these sites (comma-separated)')
    .option('--rack <racks>', 'search: … in these racks')
    .option('--hypervisor <kinds>', 'search: … of these hypervisors')
    .option('--outcome <outcomes>', 'search: … whose outcome was one of these (e.g. failed)')
    .option('--canary <n>', 'the first n servers run alone first')
    .option('--canary-approval <wait|auto>', 'after the canary: wait for `underlay fleet approve`, or go on', 'wait')
    .option('--concurrency <n>', 'onboardings at once over the whole fleet (default 10)')
    .option('--wave-size <n>', 'servers per wave after the canary (default: one wave)')
    .option('--max-failures <n>', 'stop starting servers when more than n failed (default 0)')
    .option('--max-failure-percent <p>', 'stop starting servers when more than p% of the fleet failed')
    .option('--on-stop <finish|rollback>', 'when the fleet stops: running onboardings finish, or are cancelled and rolled back', 'finish')
    .option('--site-queues', "step activities on each server's site queue (default $UNDERLAY_SITE_QUEUES)")
    .option('--task-queue <name>', 'task queue of the workers', TASK_QUEUE)
    .option('-w, --watch', 'follow the fleet until it ends')
    .action(async (name: string, specs: string[], o: OnboardOpts) => {
      const input = fleetInputFromOptions(specs, o);
      await withClient(async (client) => {
        const h = await startFleet(client, name, input, { taskQueue: o.taskQueue });
        console.log(`started ${h.workflowId} (run ${h.firstExecutionRunId})`);
        if (o.watch) process.exitCode = await watchFleet(client, name, process.stdout);
      });
    });
  fleet
    .command('status <name>')
    .description('the waves, counts and failures of a fleet')
    .option('--json', 'print JSON')
    .option('-w, --watch', 'follow the fleet until it ends')
    .action(async (name: string, o: { json?: boolean; watch?: boolean }) => {
      await withClient(async (client) => {
        if (o.watch) process.exitCode = await watchFleet(client, name, process.stdout);
        else {
          const p = await queryFleet(client, name);
          console.log(o.json ? JSON.stringify(p, null, 2) : renderFleet(p));
        }
      });
    });
  for (const action of ['pause', 'resume', 'approve'] as const) {
    fleet
      .command(`${action} <name>`)
      .description(
        action === 'pause'
          ? 'start no new server until resumed (running ones go on)'
          : action === 'resume'
            ? 'resume a paused fleet'
            : 'go on after the canary',
      )
      .option('--reason <text>', 'why (kept in the fleet status)')
      .action(async (name: string, o: { reason?: string }) => {
        await withClient(async (client) => console.log((await controlFleet(client, name, action, o.reason ? { reason: o.reason } : {})).message));
      });
  }
  fleet
    .command('abort <name>')
    .description('start no new server; running onboardings finish, or with --on-stop rollback are cancelled and rolled back')
    .option('--on-stop <finish|rollback>', "override the fleet's on-stop policy")
    .option('--reason <text>', 'why (kept in the fleet status)')
    .action(async (name: string, o: { onStop?: string; reason?: string }) => {
      if (o.onStop !== undefined && !(ON_STOP as readonly string[]).includes(o.onStop)) {
        throw new InvalidSpecError('bad fleet option', [{ path: 'on-stop', message: ON_STOP.join(' or ') }]);
      }
      await withClient(async (client) =>
        console.log(
          (await controlFleet(client, name, 'abort', { ...(o.reason ? { reason: o.reason } : {}), ...(o.onStop ? { onStop: o.onStop as OnStop } : {}) }))
            .message,
        ),
      );
    });
}
