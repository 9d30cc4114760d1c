/**
 * A one-activity workflow for the inventory test: `loadInventoryPage` under a short heartbeat timeout and no
 * retry, so a page whose parsing stops the worker's heartbeats fails instead of being retried.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { InventoryPage, InventoryPageInput } from '../../src/activities/drift';

export const INVENTORY_HEARTBEAT_TIMEOUT_MS = 1000;

const { loadInventoryPage } = proxyActivities<{ loadInventoryPage(input: InventoryPageInput): Promise<InventoryPage> }>({
  startToCloseTimeout: '5m',
  heartbeatTimeout: INVENTORY_HEARTBEAT_TIMEOUT_MS,
  retry: { maximumAttempts: 1 },
});

/** The page's counts only (its issues stay out of the history). */
export async function readInventoryPage(input: InventoryPageInput): Promise<{ servers: number; invalid: number; mostIssues: number }> {
  const page = await loadInventoryPage(input);
  return { servers: page.servers.length, invalid: page.invalid.length, mostIssues: Math.max(0, ...page.invalid.map((f) => f.issues.length)) };
}
