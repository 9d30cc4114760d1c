/**
 * Follows an onboarding until it ends, then prints the outcome. Returns an exit code.
 *
 * On a terminal: one live frame redrawn in place — a progress bar, a spinner on the running step, elapsed time
 * per step ticking, the running step's attempt and last error (from the server's pending activity), and the
 * paused / awaiting-approval state with the command that continues it. Elsewhere (a pipe, a log): the status
 * is printed again when a step changes state, and otherwise every 30 s.
 */
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { setTimeout as sleep } from 'node:timers/promises';
import { onboardingWorkflowId } from '../common/config';
import type { OnboardingStatus } from '../workflows/messages';
import { describeFailure, heartbeatNote, queryStatus } from './onboarding';
import { renderStatus, SPINNER, type LiveActivity } from './render';

type Out = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

export interface WatchOptions {
  /** How often to ask the workflow for its status (ms). */
  pollMs?: number;
  /** Force the live (terminal) rendering on or off; default: whether `out` is a TTY. */
  live?: boolean;
  /** Animation tick of the live rendering (ms). */
  frameMs?: number;
}

/** The running step's activity as the server sees it: attempt number and the error it is retrying after. */
async function liveActivity(client: Client, workflowId: string): Promise<LiveActivity | undefined> {
  const desc = await client.workflow.getHandle(workflowId).describe();
  const a = desc.raw.pendingActivities?.[0];
  if (!a) return undefined;
  const note = await heartbeatNote(client, a.heartbeatDetails?.payloads);
  return {
    activityType: a.activityType?.name ?? '?',
    attempt: a.attempt ?? 1,
    ...(a.lastFailure?.message ? { lastFailure: a.lastFailure.message } : {}),
    ...(note ? { note } : {}),
  };
}

export async function watchOnboarding(client: Client, serverId: string, out: Out, opts: WatchOptions | number = {}): Promise<number> {
  const o: WatchOptions = typeof opts === 'number' ? { pollMs: opts } : opts;
  const pollMs = o.pollMs ?? 1000;
  const live = o.live ?? out.isTTY === true;
  const workflowId = onboardingWorkflowId(serverId);
  const handle = client.workflow.getHandle(workflowId);
  let done = false;
  let failure = '';
  const result = handle.result().then(
    () => 0,
    (err: unknown) => {
      failure = `${err instanceof WorkflowFailedError ? 'FAILED: ' : ''}${describeFailure(err)}`;
      return 1;
    },
  );
  void result.finally(() => (done = true));

  const code = live
    ? await watchLive(client, serverId, workflowId, out, result, () => done, pollMs, o.frameMs ?? 120)
    : await watchLog(client, serverId, out, result, () => done, pollMs);
  if (failure) out.write(`\n${failure}\n`);
  return code;
}

/** Pipes and logs: a status block on every state change (and every 30 s), then the final status. */
async function watchLog(client: Client, serverId: string, out: Out, result: Promise<number>, isDone: () => boolean, pollMs: number): Promise<number> {
  let lastKey = '';
  let lastAt = 0;
  while (!isDone()) {
    try {
      const status = await queryStatus(client, serverId);
      const key = JSON.stringify([status.phase, status.currentStep, Object.values(status.steps).map((s) => [s.state, s.attempts, s.error]), status.control]);
      if (key !== lastKey || Date.now() - lastAt >= 30_000) {
        out.write(`${renderStatus(status)}\n\n`);
        lastKey = key;
        lastAt = Date.now();
      }
    } catch {
      // The query needs a worker; keep waiting (the result promise ends the loop).
    }
    await Promise.race([sleep(pollMs), result]);
  }
  const code = await result;
  try {
    out.write(`${renderStatus(await queryStatus(client, serverId))}\n`);
  } catch {
    /* closed workflows answer queries only while a worker is up */
  }
  return code;
}

const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';

/** Terminals: one frame redrawn in place (cursor up, clear below), lines clipped to the terminal's width. */
async function watchLive(
  client: Client,
  serverId: string,
  workflowId: string,
  out: Out,
  result: Promise<number>,
  isDone: () => boolean,
  pollMs: number,
  frameMs: number,
): Promise<number> {
  let status: OnboardingStatus | undefined;
  let liveAct: LiveActivity | undefined;
  let note = 'waiting for a worker to answer…';
  let drawn = 0;
  let frame = 0;
  const draw = (text: string) => {
    const width = out.columns && out.columns > 20 ? out.columns - 1 : 0;
    const lines = text.split('\n').map((l) => (width && [...l].length > width ? [...l].slice(0, width - 1).join('') + '…' : l));
    out.write(`${drawn ? `\x1b[${drawn}A\r` : ''}\x1b[0J${lines.join('\n')}\n`);
    drawn = lines.length;
  };
  const restore = () => {
    out.write(SHOW_CURSOR);
    process.exit(130);
  };
  process.once('SIGINT', restore);
  out.write(HIDE_CURSOR);
  try {
    let nextPoll = 0;
    while (!isDone()) {
      if (Date.now() >= nextPoll) {
        nextPoll = Date.now() + pollMs;
        try {
          status = await queryStatus(client, serverId);
          note = '';
          const running = status.currentStep && ['running', 'compensating'].includes(status.steps[status.currentStep].state);
          liveAct = running ? await liveActivity(client, workflowId).catch(() => undefined) : undefined;
        } catch {
          // The query needs a worker; keep the last frame (the result promise ends the loop).
        }
      }
      if (status) draw(renderStatus(status, { frame: frame++, live: liveAct }) + (note ? `\n  ${note}` : ''));
      else draw(`${serverId}: ${SPINNER[frame++ % SPINNER.length]} ${note}`);
      await Promise.race([sleep(frameMs), result]);
    }
    const code = await result;
    try {
      draw(renderStatus(await queryStatus(client, serverId)));
    } catch {
      /* closed workflows answer queries only while a worker is up: the last frame stays */
    }
    return code;
  } finally {
    process.removeListener('SIGINT', restore);
    out.write(SHOW_CURSOR);
  }
}
