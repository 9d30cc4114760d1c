/**
 * Timeouts and retry policies per step, as data. Transient faults (SSH drops, timeouts, LACP still
 * negotiating) retry with exponential backoff; the error types in NON_RETRYABLE_ERROR_TYPES never do.
 */
import { ActivityCancellationType, type ActivityOptions } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { NON_RETRYABLE_ERROR_TYPES } from '../common/errors';
import { STEP_DEFS, type StepName } from '../steps';

const nonRetryableErrorTypes = [...NON_RETRYABLE_ERROR_TYPES];

function policy(startToClose: Duration, maximumAttempts: number, heartbeat: Duration = '30s'): ActivityOptions {
  return {
    startToCloseTimeout: startToClose,
    heartbeatTimeout: heartbeat,
    // On cancellation, wait for the step to stop touching the host (and report its pre-state) before the
    // workflow starts compensating: rolling back under a still-running change would race it.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts, nonRetryableErrorTypes },
  };
}

/** Each step's apply policy, from its definition (src/steps/<step>.ts), where the reason for its numbers is kept. */
export const STEP_POLICY: Record<StepName, ActivityOptions> = Object.fromEntries(
  STEP_DEFS.map((d) => [d.name, policy(d.policy.startToClose, d.policy.maximumAttempts, d.policy.heartbeat)]),
) as Record<StepName, ActivityOptions>;

/** Rollbacks must finish: more attempts, generous timeouts. */
export const ROLLBACK_POLICY: ActivityOptions = policy('45m', 8, '2m');

/**
 * Drift sweeps. Observation is read-only and opens one SSH session for all steps; lookups talk to Temporal only.
 * None of them changes a host, so they retry freely (except on the typed non-retryable errors).
 */
export const DRIFT_POLICY = {
  inventory: { startToCloseTimeout: '5m', heartbeatTimeout: '1m', retry: { initialInterval: '2s', maximumAttempts: 3, nonRetryableErrorTypes } },
  lookup: { startToCloseTimeout: '1m', retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 10, nonRetryableErrorTypes } },
  unmanaged: { startToCloseTimeout: '15m', heartbeatTimeout: '1m', retry: { initialInterval: '2s', maximumAttempts: 5, nonRetryableErrorTypes } },
  observe: policy('5m', 3),
} satisfies Record<string, ActivityOptions>;

/**
 * Health sweeps: the probe reads the host and writes one textfile (≈ 3 s: parallel 2 s ping bursts). Two
 * attempts at most, so a run opens at most two SSH sessions per host; the next scheduled run probes again.
 */
export const HEALTH_POLICY = {
  probe: {
    startToCloseTimeout: '2m',
    retry: { initialInterval: '5s', maximumAttempts: 2, nonRetryableErrorTypes },
  },
} satisfies Record<string, ActivityOptions>;
