/**
 * What `underlay rollback <server>` undoes: the compensations of the server's latest completed onboarding (each
 * step that changed the host, with the pre-state it observed), read from that run's result.
 */
import { InvalidSpecError } from '../common/errors';
import { onboardingWorkflowId } from '../common/config';
import { ServerId } from '../spec/identifiers';
import { parseServerSpec } from '../spec/validate';
import type { ServerSpec } from '../spec/server';
import { STEPS, type StepName } from '../steps';
import type { Client } from '@temporalio/client';

export interface RollbackPlan {
  serverId: string;
  spec: ServerSpec;
  /** The onboarding run being undone. */
  runId: string;
  completedAt: string | null;
  /** Newest first, as the saga would have run them. */
  compensations: Array<{ step: StepName; pre: unknown }>;
}

interface ResultShape {
  compensations?: Array<{ step: string; pre: unknown }>;
  spec?: unknown;
}

export async function loadRollback(client: Client, rawServerId: string): Promise<RollbackPlan> {
  const serverId = ServerId.parse(rawServerId);
  const workflowId = onboardingWorkflowId(serverId);
  let latest: { runId: string; closeTime?: Date } | undefined;
  for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}' AND WorkflowType = 'onboardServer' AND ExecutionStatus = 'Completed'` })) {
    if (!latest || (wf.closeTime && (!latest.closeTime || wf.closeTime > latest.closeTime))) latest = { runId: wf.runId, closeTime: wf.closeTime };
  }
  if (!latest) {
    throw new InvalidSpecError(`nothing to roll back: ${serverId} has no completed onboarding`, [
      { path: 'serverId', message: `no completed ${workflowId} run` },
    ]);
  }
  const result = (await client.workflow.getHandle(workflowId, latest.runId).result()) as ResultShape;
  if (!result.compensations || !result.spec) {
    throw new InvalidSpecError(`the onboarding run ${latest.runId} of ${serverId} kept no rollback data (it predates underlay rollback)`, [
      { path: 'serverId', message: 'roll back by hand, or onboard again with this version first' },
    ]);
  }
  const spec = parseServerSpec(result.spec, `the spec of ${workflowId} run ${latest.runId}`);
  const compensations = result.compensations.map((c, i) => {
    if (!(STEPS as readonly string[]).includes(c.step))
      throw new InvalidSpecError('unknown step in the rollback data', [{ path: `compensations[${i}].step`, message: String(c.step) }]);
    return { step: c.step as StepName, pre: c.pre };
  });
  return { serverId, spec, runId: latest.runId, completedAt: latest.closeTime?.toISOString() ?? null, compensations };
}
