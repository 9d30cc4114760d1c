/** Names shared by clients, workers and workflows. */
export const TASK_QUEUE = 'underlay';

/** One onboarding per server: the workflow id is derived from the server id. */
export function onboardingWorkflowId(serverId: string): string {
  return `onboard-${serverId}`;
}

/** The drift check of one server (a child of a drift sweep, or started alone). */
export function driftWorkflowId(serverId: string): string {
  return `drift-${serverId}`;
}

/** The Temporal Schedule that starts drift sweeps, and the workflow id prefix of the sweeps it starts. */
export const DRIFT_SCHEDULE_ID = 'underlay-drift';

/** Default frontend address: the local dev server (scripts/dev-server.sh). */
export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';
