/** Names shared by clients, workers and workflows. */
export const TASK_QUEUE = 'underlay';

/** A task queue name as underlay accepts it from a flag or a workflow input (Temporal allows more; we need no more). */
export const TASK_QUEUE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/**
 * The task queue of a site's step activities: `<central queue>-<site>`, i.e. `underlay-fra1` by default. With site
 * queues on (`--site-queues`, UNDERLAY_SITE_QUEUES=1), workflows run on the central queue and every step activity
 * of a server goes to its site's queue, which `underlay worker --site <site>` polls from inside that site.
 */
export function siteTaskQueue(site: string, centralQueue: string = TASK_QUEUE): string {
  return `${centralQueue}-${site}`;
}

/** Whether the environment turns site queues on for clients that do not say (UNDERLAY_SITE_QUEUES=1|true|yes). */
export const SITE_QUEUES_ENV = 'UNDERLAY_SITE_QUEUES';

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
/** The Schedule of the fleet's health probes (`underlay health schedule`). */
export const HEALTH_SCHEDULE_ID = 'underlay-health';

/** Default frontend address: the local dev server (scripts/dev-server.sh). */
export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';

/** A fleet rollout (onboardFleet): `fleet-<name>`; its children keep their own `onboard-<id>`. */
export function fleetWorkflowId(name: string): string {
  return `fleet-${name}`;
}
