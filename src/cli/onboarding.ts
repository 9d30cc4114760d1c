/** Starting and following onboardings from a client (CLI, tests, other services). */
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { blockingDriftCheck } from '../activities/drift';
import { missingSteps } from '../activities/registry';
import { driftWorkflowId, onboardingWorkflowId, SITE_QUEUES_ENV, siteTaskQueue, TASK_QUEUE } from '../common/config';
import { UnsupportedPlatformError } from '../common/errors';
import { temporal } from '@temporalio/proto';
import { tsToDate } from '@temporalio/common/lib/time';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { Payload } from '@temporalio/common';
import { SA_HYPERVISOR, SA_RACK, SA_SERVER_ID, SA_SITE, SA_OUTCOME, SA_STEP } from '../common/search-attributes';
import { STEP_TITLES, STEPS, stepApplies } from '../steps';
import type { ServerSpec } from '../spec/server';
import type { onboardServer } from '../workflows/onboard';
import type { rollbackServer } from '../workflows/rollback';
import type { RollbackPlan } from '../activities/rollback';
import type { StepRouting } from '../workflows/site-queue';
import { statusQuery, type OnboardingStatus } from '../workflows/messages';
import { onboardingDetails, parseApprovalGates } from './control';

export class OnboardingAlreadyRunningError extends Error {
  constructor(readonly serverId: string) {
    super(
      `server ${serverId} is already being onboarded (workflow ${onboardingWorkflowId(serverId)} is running); ` +
        `follow it with \`underlay status ${serverId} --watch\`, or cancel it before starting again`,
    );
    this.name = 'OnboardingAlreadyRunningError';
  }
}

/** Onboarding is refused while a drift check that may change the host (remediate / approve) runs. */
export class DriftRemediationRunningError extends Error {
  constructor(
    readonly serverId: string,
    readonly mode: string,
    raced = false,
  ) {
    super(
      `server ${serverId} has a drift check in ${mode} mode running (workflow ${driftWorkflowId(serverId)}), which may change the host; ` +
        `onboarding is refused until it ends — reject its approval with \`underlay drift approve ${serverId} --reject\`, or cancel it` +
        (raced ? ' (it started while this onboarding was starting: the onboarding was cancelled before its first change)' : ''),
    );
    this.name = 'DriftRemediationRunningError';
  }
}

export { blockingDriftCheck } from '../activities/drift';

/** UNDERLAY_SITE_QUEUES: 1/true/yes/on turns site queues on for every command that does not say; 0/false/no/off or unset: off. */
export function siteQueuesFromEnv(env: Record<string, string | undefined> = process.env): boolean {
  const v = env[SITE_QUEUES_ENV];
  if (v === undefined || v === '') return false;
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  throw new Error(`${SITE_QUEUES_ENV}=${JSON.stringify(v.slice(0, 40))}: expected 1, true, yes, on or 0, false, no, off`);
}

/** The step routing of a server with site queues: its site's queue, named after the central queue. */
export function stepRoutingFor(spec: Pick<ServerSpec, 'site'>, centralQueue: string, check?: StepRouting['check']): StepRouting {
  return { taskQueue: siteTaskQueue(spec.site, centralQueue), site: spec.site, ...(check ? { check } : {}) };
}

export interface StartOptions {
  taskQueue?: string;
  /** Site queues: the step activities go to `<taskQueue>-<site>` (default: UNDERLAY_SITE_QUEUES). */
  siteQueues?: boolean;
  /** With site queues: when the workflow first looks for a site worker, and how often (defaults 15 s, 60 s). */
  siteCheck?: StepRouting['check'];
  /** Steps that wait for `underlay approve` before they run (refused unless the spec has them); `a,b` or a list. */
  approvalBefore?: string | readonly string[];
}

/** Refuses, before anything touches the host, a spec this build has no drivers for. */
export function assertOnboardable(spec: ServerSpec): void {
  const missing = missingSteps(spec);
  if (missing.length) {
    throw new UnsupportedPlatformError(`no ${missing.join(', ')} step for ${spec.hypervisor.kind} in this build`, {
      host: spec.id,
      field: 'hypervisor.kind',
      expected: 'a hypervisor with every step the spec asks for',
      observed: spec.hypervisor.kind,
    });
  }
}

/**
 * Starts `onboard-<id>`, refused while the server is being onboarded or has a remediating drift check.
 *
 * Mutual exclusion with drift remediation: each side makes itself visible first and looks for the other after.
 * A drift check is visible (running `drift-<id>`) before it looks for a running onboarding; here the drift check
 * is looked for both before starting and after (when `onboard-<id>` is visible). If the second look finds one,
 * the drift check may have looked before this start: the new onboarding is cancelled (its first step, the cable
 * check, changes nothing on an onboarded host) — at worst both yield, never both change the host.
 */
export async function startOnboarding(
  client: Client,
  spec: ServerSpec,
  opts: StartOptions = {},
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof onboardServer>> {
  assertOnboardable(spec);
  const steps = STEPS.filter((s) => stepApplies(s, spec));
  const approvalBefore = parseApprovalGates(opts.approvalBefore, steps);
  const taskQueue = opts.taskQueue ?? TASK_QUEUE;
  const stepRouting = (opts.siteQueues ?? siteQueuesFromEnv()) ? stepRoutingFor(spec, taskQueue, opts.siteCheck) : undefined;
  const before = await blockingDriftCheck(client, spec.id);
  if (before) throw new DriftRemediationRunningError(spec.id, before);
  let handle: WorkflowHandleWithFirstExecutionRunId<typeof onboardServer>;
  try {
    handle = await client.workflow.start<typeof onboardServer>('onboardServer', {
      taskQueue,
      workflowId: onboardingWorkflowId(spec.id),
      workflowIdConflictPolicy: 'FAIL',
      args: [{ spec, ...(approvalBefore.length ? { approvalBefore } : {}), ...(stepRouting ? { stepRouting } : {}) }],
      typedSearchAttributes: [
        { key: SA_SERVER_ID, value: spec.id },
        { key: SA_SITE, value: spec.site },
        { key: SA_RACK, value: spec.rack },
        { key: SA_HYPERVISOR, value: spec.hypervisor.kind },
        { key: SA_OUTCOME, value: 'running' },
      ],
      staticSummary: `Onboard ${spec.id} → ${spec.hypervisor.kind} (${spec.site}/${spec.rack})`,
      staticDetails: onboardingDetails(spec, steps, approvalBefore),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new OnboardingAlreadyRunningError(spec.id);
    throw err;
  }
  const after = await blockingDriftCheck(client, spec.id);
  if (after) {
    await handle.cancel();
    throw new DriftRemediationRunningError(spec.id, after, true);
  }
  return handle;
}

/**
 * Starts `rollbackServer` under the onboarding's workflow id (so it cannot overlap an onboarding of the same
 * server), refused while a drift check that may change the host runs.
 */
export async function startRollback(
  client: Client,
  plan: RollbackPlan,
  opts: { taskQueue?: string; siteQueues?: boolean } = {},
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof rollbackServer>> {
  const { spec } = plan;
  const taskQueue = opts.taskQueue ?? TASK_QUEUE;
  const stepRouting = (opts.siteQueues ?? siteQueuesFromEnv()) ? stepRoutingFor(spec, taskQueue) : undefined;
  const drift = await blockingDriftCheck(client, spec.id);
  if (drift) throw new DriftRemediationRunningError(spec.id, drift);
  try {
    return await client.workflow.start<typeof rollbackServer>('rollbackServer', {
      taskQueue,
      workflowId: onboardingWorkflowId(spec.id),
      workflowIdConflictPolicy: 'FAIL',
      args: [{ serverId: spec.id, ...(stepRouting ? { stepRouting } : {}) }],
      typedSearchAttributes: [
        { key: SA_SERVER_ID, value: spec.id },
        { key: SA_SITE, value: spec.site },
        { key: SA_RACK, value: spec.rack },
        { key: SA_HYPERVISOR, value: spec.hypervisor.kind },
        { key: SA_OUTCOME, value: 'rolling-back' },
      ],
      staticSummary: `Roll back ${spec.id}: undo onboarding run ${plan.runId}`,
      staticDetails: renderRollbackPlan(plan),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new OnboardingAlreadyRunningError(spec.id);
    throw err;
  }
}

export function renderRollbackPlan(plan: RollbackPlan): string {
  return [
    `Undo the onboarding of **${plan.serverId}** (run \`${plan.runId}\`${plan.completedAt ? `, completed ${plan.completedAt}` : ''}), newest first:`,
    '',
    ...plan.compensations.map((c, i) => `${i + 1}. ${STEP_TITLES[c.step]} (${c.step}): back to its pre-onboarding state`),
    ...(plan.compensations.length ? [] : ['(nothing: the onboarding changed nothing)']),
  ].join('\n');
}

export async function queryStatus(client: Client, serverId: string): Promise<OnboardingStatus> {
  return client.workflow.getHandle(onboardingWorkflowId(serverId)).query(statusQuery);
}

/** What the server itself knows of an onboarding, when no worker answers the status query. */
export interface ServerSideStatus {
  serverId: string;
  workflowStatus: string;
  taskQueue: string;
  /** Workflow pollers the server saw on the task queue (identity and last access). */
  pollers: Array<{ identity: string; lastAccess: string | null }>;
  phase: string | null;
  step: string | null;
  pending: Array<{ activity: string; attempt: number; state: string; lastFailure?: string; note?: string }>;
}

/**
 * The progress note a step activity keeps in its heartbeat details (run-step.ts), decoded with the client's own
 * data converter (so through the payload codec when one is configured). Undefined when absent or unreadable.
 */
export async function heartbeatNote(client: Client, payloads: Payload[] | null | undefined): Promise<string | undefined> {
  if (!payloads?.length) return undefined;
  try {
    const details = await decodeFromPayloadsAtIndex<{ note?: unknown }>(client.options.loadedDataConverter, 0, payloads);
    return typeof details?.note === 'string' ? details.note.slice(0, 300) : undefined;
  } catch {
    return undefined;
  }
}

/** Reads the server's view: execution status, search attributes, pending activities, the task queue's pollers. */
export async function serverSideStatus(client: Client, serverId: string): Promise<ServerSideStatus> {
  const handle = client.workflow.getHandle(onboardingWorkflowId(serverId));
  const d = await handle.describe();
  const tq = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: d.taskQueue },
    taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  const sa = (key: typeof SA_OUTCOME | typeof SA_STEP) => d.typedSearchAttributes.get(key) ?? null;
  return {
    serverId,
    workflowStatus: d.status.name,
    taskQueue: d.taskQueue,
    pollers: (tq.pollers ?? []).map((p) => ({ identity: p.identity ?? '?', lastAccess: p.lastAccessTime ? tsToDate(p.lastAccessTime).toISOString() : null })),
    phase: sa(SA_OUTCOME),
    step: sa(SA_STEP),
    pending: await Promise.all(
      (d.raw.pendingActivities ?? []).map(async (a) => {
        const note = await heartbeatNote(client, a.heartbeatDetails?.payloads);
        return {
          activity: a.activityType?.name ?? '?',
          attempt: a.attempt ?? 1,
          state: temporal.api.enums.v1.PendingActivityState[a.state ?? 0]?.replace(/^PENDING_ACTIVITY_STATE_/, '').toLowerCase() ?? '?',
          ...(a.lastFailure?.message ? { lastFailure: a.lastFailure.message } : {}),
          ...(note ? { note } : {}),
        };
      }),
    ),
  };
}

/** How long a poller may have been silent and still count as a worker that answers. */
const POLLER_FRESH_MS = 2 * 60_000;

export function hasLiveWorker(s: Pick<ServerSideStatus, 'pollers'>, now = Date.now()): boolean {
  return s.pollers.some((p) => p.lastAccess !== null && now - Date.parse(p.lastAccess) < POLLER_FRESH_MS);
}

/**
 * The status query's answer, or — when no worker polls the onboarding's task queue (the query would only time
 * out) — what the server knows, saying plainly that no worker runs.
 */
export async function statusOrServerView(client: Client, serverId: string): Promise<{ status: OnboardingStatus } | { server: ServerSideStatus }> {
  const server = await serverSideStatus(client, serverId);
  if (server.workflowStatus === 'RUNNING' && !hasLiveWorker(server)) return { server };
  try {
    return { status: await queryStatus(client, serverId) };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw err;
    return { server: await serverSideStatus(client, serverId) };
  }
}

export function renderServerSideStatus(s: ServerSideStatus): string {
  const lines = [`${s.serverId}: ${s.phase ?? '?'}${s.step ? ` (${s.step})` : ''} — workflow ${s.workflowStatus.toLowerCase()}`];
  if (!hasLiveWorker(s)) {
    const last = s.pollers
      .map((p) => p.lastAccess)
      .filter(Boolean)
      .sort()
      .pop();
    lines.push(
      `  no worker polls task queue "${s.taskQueue}"${last ? ` (last seen ${last})` : ''}: start one with \`underlay worker --task-queue ${s.taskQueue}\``,
    );
  } else lines.push(`  the workers of task queue "${s.taskQueue}" did not answer the status query`);
  for (const a of s.pending)
    lines.push(
      `  pending ${a.activity}: ${a.state}, attempt ${a.attempt}${a.lastFailure ? ` — last error: ${a.lastFailure.split('\n')[0]}` : ''}${a.note ? ` — ${a.note.split('\n')[0]}` : ''}`,
    );
  lines.push('  (from the server: search attributes and pending activities; step details need a worker)');
  return lines.join('\n');
}

/** The most useful message of a failed onboarding: the workflow's own summary (step, attempts, rollback). */
export function describeFailure(err: unknown): string {
  if (err instanceof WorkflowFailedError) return err.cause?.message ?? err.message;
  return err instanceof Error ? err.message : String(err);
}
