/** Starting and following onboardings from a client (CLI, tests, other services). */
import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type Client, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { INSTALLABLE_HYPERVISORS } from '../activities/hypervisor';
import { onboardingWorkflowId, TASK_QUEUE } from '../common/config';
import { UnsupportedPlatformError } from '../common/errors';
import { SA_HYPERVISOR, SA_RACK, SA_SERVER_ID, SA_SITE, SA_OUTCOME } from '../common/search-attributes';
import { STEPS, stepApplies } from '../common/steps';
import type { ServerSpec } from '../spec/server';
import type { onboardServer } from '../workflows/onboard';
import { statusQuery, type OnboardingStatus } from '../workflows/messages';

export class OnboardingAlreadyRunningError extends Error {
  constructor(readonly serverId: string) {
    super(
      `server ${serverId} is already being onboarded (workflow ${onboardingWorkflowId(serverId)} is running); ` +
        `follow it with \`underlay status ${serverId} --watch\`, or cancel it before starting again`,
    );
    this.name = 'OnboardingAlreadyRunningError';
  }
}

export interface StartOptions {
  taskQueue?: string;
}

/** Refuses, before anything touches the host, a spec this build has no drivers for. */
export function assertOnboardable(spec: ServerSpec): void {
  if (!(INSTALLABLE_HYPERVISORS as readonly string[]).includes(spec.hypervisor.kind)) {
    throw new UnsupportedPlatformError(`no ${spec.hypervisor.kind} installer in this build`, { host: spec.id, field: 'hypervisor.kind', expected: INSTALLABLE_HYPERVISORS.join('|'), observed: spec.hypervisor.kind });
  }
}

export async function startOnboarding(client: Client, spec: ServerSpec, opts: StartOptions = {}): Promise<WorkflowHandleWithFirstExecutionRunId<typeof onboardServer>> {
  assertOnboardable(spec);
  const steps = STEPS.filter((s) => stepApplies(s, spec));
  try {
    return await client.workflow.start<typeof onboardServer>('onboardServer', {
      taskQueue: opts.taskQueue ?? TASK_QUEUE,
      workflowId: onboardingWorkflowId(spec.id),
      workflowIdConflictPolicy: 'FAIL',
      args: [{ spec }],
      typedSearchAttributes: [
        { key: SA_SERVER_ID, value: spec.id },
        { key: SA_SITE, value: spec.site },
        { key: SA_RACK, value: spec.rack },
        { key: SA_HYPERVISOR, value: spec.hypervisor.kind },
        { key: SA_OUTCOME, value: 'running' },
      ],
      staticSummary: `Onboard ${spec.id} → ${spec.hypervisor.kind} (${spec.site}/${spec.rack})`,
      staticDetails: `Steps: ${steps.join(' → ')}\n\nManagement: ${spec.management.user}@${spec.management.address}:${spec.management.port}`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new OnboardingAlreadyRunningError(spec.id);
    throw err;
  }
}

export async function queryStatus(client: Client, serverId: string): Promise<OnboardingStatus> {
  return client.workflow.getHandle(onboardingWorkflowId(serverId)).query(statusQuery);
}

/** The most useful message of a failed onboarding: the workflow's own summary (step, attempts, rollback). */
export function describeFailure(err: unknown): string {
  if (err instanceof WorkflowFailedError) return err.cause?.message ?? err.message;
  return err instanceof Error ? err.message : String(err);
}
