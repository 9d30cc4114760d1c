/** Starting and following onboardings from a client (CLI, tests, other services). */
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { missingSteps } from '../activities/platforms';
import { driftWorkflowId, onboardingWorkflowId, TASK_QUEUE } from '../common/config';
import { UnsupportedPlatformError } from '../common/errors';
import { SA_HYPERVISOR, SA_RACK, SA_SERVER_ID, SA_SITE, SA_OUTCOME } from '../common/search-attributes';
import { STEPS, stepApplies } from '../common/steps';
import type { ServerSpec } from '../spec/server';
import type { onboardServer } from '../workflows/onboard';
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

/** The mode of a running `drift-<id>` that may change the host, or undefined (none, or report mode). */
export async function blockingDriftCheck(client: Client, serverId: string): Promise<string | undefined> {
  try {
    const d = await client.workflow.getHandle(driftWorkflowId(serverId)).describe();
    if (d.status.name !== 'RUNNING') return undefined;
    const mode = typeof d.memo?.mode === 'string' ? d.memo.mode : 'unknown';
    return mode === 'report' ? undefined : mode;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

export interface StartOptions {
  taskQueue?: string;
  /** Steps that wait for `underlay approve` before they run (refused unless the spec has them); `a,b` or a list. */
  approvalBefore?: string | readonly string[];
}

/** Refuses, before anything touches the host, a spec this build has no drivers for. */
export function assertOnboardable(spec: ServerSpec): void {
  const missing = missingSteps(spec, (s) => stepApplies(s, spec));
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
  const before = await blockingDriftCheck(client, spec.id);
  if (before) throw new DriftRemediationRunningError(spec.id, before);
  let handle: WorkflowHandleWithFirstExecutionRunId<typeof onboardServer>;
  try {
    handle = await client.workflow.start<typeof onboardServer>('onboardServer', {
      taskQueue: opts.taskQueue ?? TASK_QUEUE,
      workflowId: onboardingWorkflowId(spec.id),
      workflowIdConflictPolicy: 'FAIL',
      args: [{ spec, ...(approvalBefore.length ? { approvalBefore } : {}) }],
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

export async function queryStatus(client: Client, serverId: string): Promise<OnboardingStatus> {
  return client.workflow.getHandle(onboardingWorkflowId(serverId)).query(statusQuery);
}

/** The most useful message of a failed onboarding: the workflow's own summary (step, attempts, rollback). */
export function describeFailure(err: unknown): string {
  if (err instanceof WorkflowFailedError) return err.cause?.message ?? err.message;
  return err instanceof Error ? err.message : String(err);
}
