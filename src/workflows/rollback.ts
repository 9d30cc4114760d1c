/**
 * rollbackServer — undo a completed onboarding: every step that changed the host, newest first, each restoring
 * the pre-state it observed before onboarding (the same compensations a failed onboarding runs, with their
 * verification), read from the onboarding's result. It runs under the onboarding's own workflow id
 * (`onboard-<id>`), so a rollback and an onboarding of one server never run at once, and afterwards the server
 * is no longer managed (drift skips it) until it is onboarded again.
 */
import { ApplicationFailure, log, proxyActivities, setCurrentDetails, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { SA_OUTCOME, SA_STEP } from '../common/search-attributes';
import { STEP_TITLES } from '../steps';
import type { CompensationOutcome } from './messages';
import { DRIFT_POLICY } from './policy';
import { compensate, describeCompensations } from './saga';
import { checkRouting, type StepRouting, type WorkerWait } from './site-queue';

const { loadRollback } = proxyActivities<Activities>(DRIFT_POLICY.lookup);

export interface RollbackInput {
  serverId: string;
  /** Site queues: the undo activities go to the server's site queue (see OnboardInput.stepRouting). */
  stepRouting?: StepRouting;
}

export interface RollbackResult {
  serverId: string;
  /** The onboarding run that was undone. */
  onboardingRunId: string;
  compensations: CompensationOutcome[];
}

export async function rollbackServer(input: RollbackInput): Promise<RollbackResult> {
  checkRouting(input.stepRouting);
  const plan = await loadRollback(input.serverId);
  const outcomes: CompensationOutcome[] = [];
  let waiting: WorkerWait | null = null;
  const publish = (phase: string) =>
    setCurrentDetails(
      [
        `**${plan.serverId}** · ${phase} · undoing onboarding run \`${plan.runId}\``,
        '',
        ...(waiting ? [`⏳ **No worker for site ${waiting.site}**: ${waiting.detail}`, ''] : []),
        '| step | rollback |',
        '|---|---|',
        ...plan.compensations.map((c) => `| ${STEP_TITLES[c.step]} | ${outcomes.find((o) => o.step === c.step)?.outcome ?? 'pending'} |`),
      ].join('\n'),
    );
  upsertSearchAttributes([{ key: SA_OUTCOME, value: 'rolling-back' }]);
  publish('rolling-back');
  const done = await compensate(
    plan.spec,
    plan.compensations,
    {
      compensating: (step) => upsertSearchAttributes([{ key: SA_STEP, value: `rollback:${step}` }]),
      compensated: (_step, o) => {
        outcomes.push(o);
        publish('rolling-back');
      },
      waitingForWorker: (w) => {
        waiting = w;
        publish('rolling-back');
      },
      workerFound: () => {
        waiting = null;
        publish('rolling-back');
      },
    },
    input.stepRouting,
  );
  const complete = done.every((o) => o.outcome !== 'failed');
  const phase = complete ? 'rolled-back' : 'rollback-incomplete';
  upsertSearchAttributes([{ key: SA_OUTCOME, value: phase }]);
  publish(phase);
  const result = { serverId: plan.serverId, onboardingRunId: plan.runId, compensations: done };
  if (!complete) {
    log.error('rollback incomplete', { workflowId: workflowInfo().workflowId });
    throw ApplicationFailure.create({
      type: 'RollbackIncomplete',
      nonRetryable: true,
      message: `rollback of ${plan.serverId} incomplete: ${describeCompensations(done)}`,
      details: [result],
    });
  }
  return result;
}
