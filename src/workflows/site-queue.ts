/**
 * Step activities on a site's task queue (`underlay-<site>`), and the watch that keeps a missing site worker from
 * being a silent hang.
 *
 * A scheduled activity whose queue has no poller just waits: Temporal does not tell the workflow. So while a step
 * activity routed to a site queue has not completed, the workflow looks at the queue itself (a local activity:
 * DescribeTaskQueue through the central worker's client) — first after `after`, then every `every` — and reports
 * through its hooks when no worker of the site has polled recently, and again when one has. The onboarding's status,
 * Web UI details and CLI then say which site's worker it waits for and how to start one. The activity itself is
 * left alone: it runs as soon as a site worker polls.
 */
import { ApplicationFailure, CancellationScope, isCancellation, log, proxyLocalActivities, sleep } from '@temporalio/workflow';
import { msToNumber, type Duration } from '@temporalio/common';
import type { Activities } from '../activities';
import { TASK_QUEUE_RE } from '../common/config';
import { DRIFT_POLICY } from './policy';

const { siteQueueWorkers } = proxyLocalActivities<Activities>(DRIFT_POLICY.lookup);

/** Where a server's step activities go: its site's queue. Absent: the workflow's own task queue, unwatched. */
export interface StepRouting {
  taskQueue: string;
  site: string;
  /** When the first look at the queue happens, and how often after that. Defaults 15 s and 60 s. */
  check?: { after?: Duration; every?: Duration };
}

/** The step waits for a worker of its site: no poller on the queue (or none polled lately). */
export interface WorkerWait {
  site: string;
  taskQueue: string;
  /** Workflow time of the look that found no live poller first. */
  since: string;
  /** One line for operators: what was seen and the command that fixes it. */
  detail: string;
}

export interface WorkerWaitHooks {
  waitingForWorker?(wait: WorkerWait): void;
  workerFound?(): void;
}

const BOUNDS = { minMs: 1_000, maxMs: 3_600_000, looks: 10_000 };
const DEFAULT_AFTER = '15s';
const DEFAULT_EVERY = '60s';

/** Refuses a malformed routing (anything can start a workflow) with a non-retryable failure; returns its checks in ms. */
export function checkRouting(r: StepRouting | undefined): { afterMs: number; everyMs: number } | undefined {
  if (r === undefined) return undefined;
  const bad: string[] = [];
  const refuse = (m: string) => ApplicationFailure.create({ type: 'InvalidStepRouting', nonRetryable: true, message: `stepRouting: ${m}` });
  if (typeof r !== 'object' || r === null) throw refuse('expected { taskQueue, site }');
  if (typeof r.taskQueue !== 'string' || !TASK_QUEUE_RE.test(r.taskQueue)) bad.push('taskQueue: a task queue name');
  if (typeof r.site !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(r.site)) bad.push('site: a site label');
  const ms = (v: Duration | undefined, d: Duration, what: string): number => {
    let n = NaN;
    try {
      n = msToNumber(v ?? d);
    } catch {
      /* not a duration */
    }
    if (!(n >= BOUNDS.minMs && n <= BOUNDS.maxMs)) bad.push(`check.${what}: a duration from 1s to 1h`);
    return n;
  };
  const afterMs = ms(r.check?.after, DEFAULT_AFTER, 'after');
  const everyMs = ms(r.check?.every, DEFAULT_EVERY, 'every');
  if (bad.length) throw refuse(bad.join('; '));
  return { afterMs, everyMs };
}

/**
 * Runs `call` (a step activity on `routing`'s queue) while watching that queue for a live worker. Without routing
 * it is just `call()`. The watch ends with the call (its timer cancelled: two history events for a quick step).
 */
export async function watchedCall<T>(routing: StepRouting | undefined, call: () => Promise<T>, hooks: WorkerWaitHooks): Promise<T> {
  const timing = checkRouting(routing);
  if (!routing || !timing) return call();
  let waiting = false;
  const watch = new CancellationScope();
  const watcher = watch
    .run(async () => {
      await sleep(timing.afterMs);
      for (let look = 0; look < BOUNDS.looks; look++) {
        const w = await siteQueueWorkers(routing.taskQueue);
        if (!w.live && !waiting) {
          waiting = true;
          hooks.waitingForWorker?.({ site: routing.site, taskQueue: routing.taskQueue, since: new Date().toISOString(), detail: describeWait(routing, w) });
        } else if (w.live && waiting) {
          waiting = false;
          hooks.workerFound?.();
        }
        await sleep(timing.everyMs);
      }
    })
    .catch((err: unknown) => {
      // The watch is only a report: a failing look never fails the step.
      if (!isCancellation(err)) log.warn('cannot look at the site task queue', { taskQueue: routing.taskQueue, error: String(err) });
    });
  try {
    return await call();
  } finally {
    watch.cancel();
    void watcher;
    if (waiting) hooks.workerFound?.();
  }
}

function describeWait(r: StepRouting, w: { pollers: number; lastSeen: string | null }): string {
  const seen = w.pollers && w.lastSeen ? `its workers last polled at ${w.lastSeen} (busy, or gone)` : 'no worker polls it';
  return `waiting for a worker of site ${r.site}: task queue ${r.taskQueue} — ${seen}; start one there with \`underlay worker --site ${r.site}\``;
}
