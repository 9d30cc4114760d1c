/** Names shared by clients, workers and workflows. */
export const TASK_QUEUE = 'underlay';

/** One onboarding per server: the workflow id is derived from the server id. */
export function onboardingWorkflowId(serverId: string): string {
  return `onboard-${serverId}`;
}

/** Default frontend address: the local dev server (scripts/dev-server.sh). */
export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';
