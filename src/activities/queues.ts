/**
 * Who polls a task queue, as the Temporal server saw it (DescribeTaskQueue): whether a site's step activities
 * have a worker to run them. Read through the worker's own client; changes nothing.
 */
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { tsToDate } from '@temporalio/common/lib/time';
import { TASK_QUEUE_RE } from '../common/config';
import { InvalidSpecError } from '../common/errors';

/** How long a poller may have been silent and still count as a worker that answers (a long poll lasts ≈ 1 min). */
export const POLLER_FRESH_MS = 2 * 60_000;

export interface QueueWorkers {
  /** Pollers the server remembers (it forgets them a few minutes after their last poll). */
  pollers: number;
  /** Pollers seen within POLLER_FRESH_MS. */
  live: number;
  /** The most recent poll, ISO time, or null. */
  lastSeen: string | null;
}

export async function queueWorkers(client: Client, taskQueue: string, type: 'activity' | 'workflow' = 'activity', now = Date.now()): Promise<QueueWorkers> {
  if (typeof taskQueue !== 'string' || !TASK_QUEUE_RE.test(taskQueue)) {
    throw new InvalidSpecError('bad task queue name', [{ path: 'taskQueue', message: 'letters, digits, ".", "_" or "-" (≤ 200)' }]);
  }
  const { TaskQueueType } = temporal.api.enums.v1;
  const r = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: type === 'activity' ? TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY : TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  const seen = (r.pollers ?? []).map((p) => (p.lastAccessTime ? tsToDate(p.lastAccessTime).getTime() : 0));
  const last = seen.length ? Math.max(...seen) : 0;
  return { pollers: seen.length, live: seen.filter((t) => t && now - t < POLLER_FRESH_MS).length, lastSeen: last ? new Date(last).toISOString() : null };
}
