/**
 * Drift detection and remediation.
 *
 *   driftSweep  (started by the `underlay-drift` Schedule or `underlay drift run`)
 *     page 1 of the inventory ─▶ one driftCheck child per server (≤ concurrency at once) ─▶ continue-as-new
 *     page 2 …                                                                              ─▶ … ─▶ summary
 *   driftCheck  (`drift-<serverId>`)
 *     managed? (completed onboarding, none running) ─▶ observe all steps over one SSH session ─▶ diff
 *       report: change nothing · remediate: re-apply the drifted steps · approve: wait for approval, then remediate
 *
 * Remediation is the onboarding saga (saga.ts) restricted to the drifted steps: the same step activities, retry
 * policies, verification and compensation — a remediation that fails is rolled back to the drifted state it found.
 *
 * History stays bounded: a sweep run handles one inventory page (≤ MAX_PAGE_SIZE children) and continues as new,
 * carrying only counts and capped details; every server's full result lives in its own `drift-<id>` workflow.
 */
import {
  ApplicationFailure,
  condition,
  continueAsNew,
  executeChild,
  isCancellation,
  ParentClosePolicy,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  allHandlersFinished,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError, type Duration } from '@temporalio/common';
import type { Activities, Change, OnboardingPlan } from '../activities';
import { driftWorkflowId, siteTaskQueue } from '../common/config';
import { SA_DRIFT_STATUS, SA_DRIFTED_STEPS, SA_LAST_CHECKED, SA_RACK, SA_SERVER_ID, SA_SITE } from '../common/search-attributes';
import type { ServerSpec } from '../spec/server';
import type { StepName } from '../steps';
import {
  approveUpdate,
  driftProgressQuery,
  DRIFT_MODES,
  sweepProgressQuery,
  type ApprovalRequest,
  type DriftCheckProgress,
  type DriftCheckResult,
  type DriftMode,
  type DriftStatus,
  type DriftSweepSummary,
  type StepDrift,
} from './drift-messages';
import { DRIFT_POLICY } from './policy';
import { describeCompensations, rootMessage, runStepSaga } from './saga';
import { checkRouting, watchedCall, type StepRouting } from './site-queue';

const { loadInventoryPage } = proxyActivities<Activities>(DRIFT_POLICY.inventory);
const { findUnmanaged } = proxyActivities<Activities>(DRIFT_POLICY.unmanaged);
// A short read of Temporal's own state: a local activity (no extra task round trips per server).
const { onboardingState } = proxyLocalActivities<Activities>(DRIFT_POLICY.lookup);
const { observeDrift } = proxyActivities<Activities>(DRIFT_POLICY.observe);

export const DRIFT_DEFAULTS = { concurrency: 10, pageSize: 100, approvalTimeout: '1h' } as const;
const LIMITS = { concurrency: 100, pageSize: 500, changesPerStep: 10, detailedServers: 100, listed: 100, issuesPerFile: 5, valueChars: 160 };

// ---- driftCheck: one server ----------------------------------------------------------------------------------

export interface DriftCheckInput {
  /** The inventory's spec of the server (validated by loadInventoryPage; every activity validates again). */
  spec: ServerSpec;
  mode: DriftMode;
  /** approve mode: how long to wait for `underlay drift approve <id>` before giving up (nothing changed). */
  approvalTimeout?: Duration;
  /** Site queues: observation and remediation run on the server's site queue (see OnboardInput.stepRouting). */
  stepRouting?: StepRouting;
}

export async function driftCheck(input: DriftCheckInput): Promise<DriftCheckResult> {
  const { spec, mode } = input;
  const routing = input.stepRouting;
  checkRouting(routing);
  const observe = routing ? proxyActivities<Activities>({ ...DRIFT_POLICY.observe, taskQueue: routing.taskQueue }).observeDrift : observeDrift;
  const approvalTimeout = input.approvalTimeout ?? DRIFT_DEFAULTS.approvalTimeout;
  const progress: DriftCheckProgress = { serverId: spec.id, mode, status: 'clean', driftedSteps: [], diffs: [], phase: 'checking' };
  let decision: ApprovalRequest | undefined;
  /** The drifted steps a remediation re-applies (not those whose health needs a person). */
  let remediable: StepName[] = [];
  setHandler(driftProgressQuery, () => progress);
  setHandler(
    approveUpdate,
    (req) => {
      decision = req ?? {};
      return { serverId: spec.id, decision: decision.approve === false ? 'rejected' : 'approved', steps: remediable };
    },
    {
      description: 'approve (or, with approve: false, reject) the remediation of the drifted steps',
      validator: (req) => {
        if (progress.phase !== 'awaiting-approval' || decision !== undefined) {
          throw new Error(`${driftWorkflowId(spec.id)} is not awaiting approval (phase ${progress.phase}, status ${progress.status})`);
        }
        if (req !== undefined && (typeof req !== 'object' || req === null)) throw new Error('expected { approve?: boolean, by?: string }');
        if (req?.by !== undefined && (typeof req.by !== 'string' || req.by.length > 100)) throw new Error('by: a name of at most 100 characters');
        if (req?.approve !== undefined && typeof req.approve !== 'boolean') throw new Error('approve: true or false');
      },
    },
  );

  /** Search attributes: the status, and once the host was observed, what drifted and when. */
  const publish = (status: DriftStatus): void =>
    upsertSearchAttributes([
      { key: SA_DRIFT_STATUS, value: status },
      ...(progress.checkedAt
        ? [
            { key: SA_LAST_CHECKED, value: new Date(progress.checkedAt) },
            { key: SA_DRIFTED_STEPS, value: progress.driftedSteps },
          ]
        : []),
    ]);
  const finish = async (status: DriftStatus, extra: Partial<DriftCheckResult> = {}): Promise<DriftCheckResult> => {
    Object.assign(progress, { status, phase: 'done' }, extra);
    publish(status);
    await condition(allHandlersFinished);
    const { phase: _phase, ...result } = progress;
    return result;
  };

  try {
    const managed = await onboardingState(spec.id);
    if (managed.state === 'running') return await finish('skipped', { skip: 'onboarding-running', reason: `skipped: ${managed.detail}` });
    if (managed.state === 'not-onboarded') return await finish('skipped', { skip: 'not-onboarded', reason: managed.detail });

    const plan = await watchedCall(routing, () => observe(spec), {});
    progress.checkedAt = new Date().toISOString();
    progress.diffs = compactPlan(plan);
    progress.driftedSteps = progress.diffs.filter((d) => !d.error && d.changes.length).map((d) => d.step);
    const unobservable = progress.diffs.filter((d) => d.error);
    if (unobservable.length) {
      return await finish('failed', { reason: `cannot observe ${unobservable.map((d) => `${d.step} (${d.error})`).join('; ')}; nothing changed` });
    }
    // Health a re-apply cannot fix is for a person; its steps are left alone (re-applying would fail its verification).
    const unhealthy = progress.diffs.filter((d) => d.health?.length).map((d) => d.step);
    if (unhealthy.length) progress.unhealthySteps = unhealthy;
    const operatorNote = unhealthy.length ? `needs an operator: ${describeHealth(progress.diffs)}` : '';
    const drifted = progress.driftedSteps.filter((s) => !unhealthy.includes(s));
    remediable = drifted;
    if (!progress.driftedSteps.length && !unhealthy.length) return await finish('clean');
    if (!drifted.length) return await finish('needs-operator', { reason: `${operatorNote}; nothing re-applied` });
    if (mode === 'report') {
      return await finish(unhealthy.length ? 'needs-operator' : 'drifted', {
        reason: [`drifted: ${drifted.join(', ')}; report mode, nothing changed`, operatorNote].filter(Boolean).join('; '),
      });
    }

    let approvedBy: string | undefined;
    if (mode === 'approve') {
      progress.phase = 'awaiting-approval';
      progress.status = 'awaiting-approval';
      publish('awaiting-approval');
      const answered = await condition(() => decision !== undefined, approvalTimeout);
      if (!answered) return await finish('drifted', { reason: `approval timed out after ${String(approvalTimeout)}; nothing changed` });
      approvedBy = decision?.by ?? 'unknown';
      if (decision?.approve === false) return await finish('drifted', { reason: `remediation rejected by ${approvedBy}; nothing changed` });
    }

    // Mutual exclusion: look again right before changing anything (an approval may have waited for hours).
    const again = await onboardingState(spec.id);
    if (again.state === 'running') return await finish('skipped', { skip: 'onboarding-running', reason: `skipped: ${again.detail}; nothing changed` });

    progress.phase = 'remediating';
    const outcome = await runStepSaga(spec, drifted, {}, routing);
    if (outcome.ok) {
      return await finish(unhealthy.length ? 'needs-operator' : 'remediated', {
        reason: [`restored ${drifted.join(', ')}`, operatorNote].filter(Boolean).join('; '),
        remediation: { steps: drifted, approvedBy },
      });
    }
    const remediation = {
      steps: drifted,
      approvedBy,
      failedStep: outcome.failedStep,
      attempts: outcome.attempts,
      error: rootMessage(outcome.error),
      compensations: outcome.compensations,
    };
    const reason = `remediation ${outcome.cancelled ? 'cancelled' : `failed at ${outcome.failedStep ?? '?'}: ${remediation.error}`} — rollback: ${describeCompensations(outcome.compensations)}`;
    if (outcome.cancelled) {
      // Compensated (non-cancellable) already; record why, then end as cancelled.
      Object.assign(progress, { status: 'failed', phase: 'done', reason, remediation });
      publish('failed');
      throw outcome.error;
    }
    return await finish('failed', { reason, remediation });
  } catch (err) {
    if (isCancellation(err)) {
      // Cancelled before changing anything (checking, or waiting for approval).
      if (progress.phase !== 'done') upsertSearchAttributes([{ key: SA_DRIFT_STATUS, value: progress.driftedSteps.length ? 'drifted' : 'skipped' }]);
      throw err;
    }
    return await finish('failed', { reason: `drift check failed: ${rootMessage(err)}` });
  }
}

function clip(v: unknown): unknown {
  const text = JSON.stringify(v) ?? 'null';
  return text.length <= LIMITS.valueChars ? v : `${text.slice(0, LIMITS.valueChars - 1)}…`;
}

/** The steps that differ from the spec, could not be observed, or are unhealthy, with their first changes, values clipped. */
function compactPlan(plan: OnboardingPlan): StepDrift[] {
  return plan.steps
    .filter((s) => s.applies && (s.changes.length || s.error || s.health?.length))
    .map((s) => {
      const changes: Change[] = s.changes.slice(0, LIMITS.changesPerStep).map((c) => ({ field: c.field, from: clip(c.from), to: clip(c.to) }));
      const more = s.changes.length - changes.length;
      const health = (s.health ?? [])
        .slice(0, LIMITS.changesPerStep)
        .map((h) => ({ field: h.field, expected: clip(h.expected), observed: clip(h.observed), hint: h.hint }));
      return { step: s.step, changes, ...(more > 0 ? { more } : {}), ...(s.error ? { error: s.error } : {}), ...(health.length ? { health } : {}) };
    });
}

/** One line: `bond (eth2.aggregator: expected 1, observed 2 — look at …), vlan (…)`. */
function describeHealth(diffs: StepDrift[]): string {
  return diffs
    .filter((d) => d.health?.length)
    .map(
      (d) =>
        `${d.step} (${d.health!.map((h) => `${h.field}: expected ${JSON.stringify(h.expected)}, observed ${JSON.stringify(h.observed)} — look at ${h.hint}`).join('; ')})`,
    )
    .join(', ');
}

// ---- driftSweep: the inventory --------------------------------------------------------------------------------

export interface DriftSweepInput {
  /** Inventory directory, as the workers see it (absolute path). */
  inventoryDir: string;
  mode: DriftMode;
  /** Drift checks running at once (SSH sessions, approvals waiting). Default 10. */
  concurrency?: number;
  /** Inventory files per page, i.e. per workflow run. Default 100, at most 500. */
  pageSize?: number;
  approvalTimeout?: Duration;
  /** Site queues: each server's check observes and remediates on its site's queue (`<this queue>-<site>`). */
  siteQueues?: boolean;
  /** Carried across continue-as-new; leave unset. */
  pageToken?: string;
  summary?: DriftSweepSummary;
}

export async function driftSweep(input: DriftSweepInput): Promise<DriftSweepSummary> {
  const concurrency = input.concurrency ?? DRIFT_DEFAULTS.concurrency;
  const pageSize = input.pageSize ?? DRIFT_DEFAULTS.pageSize;
  const approvalTimeout = input.approvalTimeout ?? DRIFT_DEFAULTS.approvalTimeout;
  checkSweepInput(input, concurrency, pageSize);

  const summary: DriftSweepSummary = input.summary ?? {
    mode: input.mode,
    inventoryDir: input.inventoryDir,
    startedAt: new Date().toISOString(),
    pages: 0,
    counts: { servers: 0, clean: 0, drifted: 0, needsOperator: 0, remediated: 0, failed: 0, skipped: 0, notOnboarded: 0, invalid: 0, unmanaged: 0 },
    servers: [],
    omitted: 0,
    invalid: [],
    notOnboarded: [],
    unmanaged: [],
  };
  setHandler(sweepProgressQuery, () => summary);

  const page = await loadInventoryPage({ dir: input.inventoryDir, pageToken: input.pageToken, pageSize });
  summary.pages++;
  summary.counts.invalid += page.invalid.length;
  for (const f of page.invalid) {
    if (summary.invalid.length < LIMITS.listed) summary.invalid.push({ file: f.file, issues: f.issues.slice(0, LIMITS.issuesPerFile) });
  }

  // A pool of `concurrency` lanes over this page's servers; each lane runs one child at a time.
  const queue = [...page.servers];
  const lane = async (): Promise<void> => {
    for (let spec = queue.shift(); spec; spec = queue.shift()) record(summary, await checkServer(spec, input.mode, approvalTimeout, input.siteQueues));
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, lane));

  if (page.nextPageToken !== undefined) {
    await continueAsNew<typeof driftSweep>({ ...input, pageToken: page.nextPageToken, summary });
  }
  const unmanaged = await findUnmanaged(input.inventoryDir);
  summary.counts.unmanaged = unmanaged.count;
  summary.unmanaged = unmanaged.serverIds.slice(0, LIMITS.listed);
  summary.finishedAt = new Date().toISOString();
  return summary;
}

function checkSweepInput(input: DriftSweepInput, concurrency: number, pageSize: number): void {
  const bad: string[] = [];
  if (!(DRIFT_MODES as readonly string[]).includes(input.mode)) bad.push(`mode: ${String(input.mode)} (expected ${DRIFT_MODES.join('|')})`);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > LIMITS.concurrency) bad.push(`concurrency: must be 1–${LIMITS.concurrency}`);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > LIMITS.pageSize) bad.push(`pageSize: must be 1–${LIMITS.pageSize}`);
  if (typeof input.inventoryDir !== 'string' || !input.inventoryDir) bad.push('inventoryDir: required');
  if (bad.length) throw ApplicationFailure.create({ type: 'InvalidSpecError', nonRetryable: true, message: `bad drift sweep input: ${bad.join('; ')}` });
}

async function checkServer(spec: ServerSpec, mode: DriftMode, approvalTimeout: Duration, siteQueues = false): Promise<DriftCheckResult> {
  const base = { serverId: spec.id, mode, driftedSteps: [], diffs: [] };
  const stepRouting = siteQueues ? { taskQueue: siteTaskQueue(spec.site, workflowInfo().taskQueue), site: spec.site } : undefined;
  try {
    return await executeChild(driftCheck, {
      workflowId: driftWorkflowId(spec.id),
      args: [{ spec, mode, approvalTimeout, ...(stepRouting ? { stepRouting } : {}) }],
      // Closing the sweep cancels its checks, so a remediation in flight is compensated, never cut off.
      parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      // Read by startOnboarding: onboarding is refused while a remediate/approve check runs.
      memo: { mode },
      typedSearchAttributes: [
        { key: SA_SERVER_ID, value: spec.id },
        { key: SA_SITE, value: spec.site },
        { key: SA_RACK, value: spec.rack },
      ],
      staticSummary: `Drift ${mode} ${spec.id} (sweep ${workflowInfo().workflowId})`,
    });
  } catch (err) {
    if (isCancellation(err)) throw err;
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      return { ...base, status: 'skipped', skip: 'already-running', reason: `skipped: ${driftWorkflowId(spec.id)} is already running` };
    }
    return { ...base, status: 'failed', reason: `drift check failed: ${rootMessage(err)}` };
  }
}

function record(summary: DriftSweepSummary, r: DriftCheckResult): void {
  const c = summary.counts;
  c.servers++;
  if (r.skip === 'not-onboarded') {
    c.notOnboarded++;
    if (summary.notOnboarded.length < LIMITS.listed) summary.notOnboarded.push(r.serverId);
    return;
  }
  switch (r.status) {
    case 'clean':
      c.clean++;
      return;
    case 'remediated':
      c.remediated++;
      break;
    case 'needs-operator':
      c.needsOperator++;
      break;
    case 'failed':
      c.failed++;
      break;
    case 'skipped':
      c.skipped++;
      break;
    default:
      c.drifted++;
  }
  if (summary.servers.length < LIMITS.detailedServers) summary.servers.push(r);
  else summary.omitted++;
}
