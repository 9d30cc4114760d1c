/** Follows an onboarding: re-renders its status when it changes, then prints the outcome. Returns an exit code. */
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { setTimeout as sleep } from 'node:timers/promises';
import { onboardingWorkflowId } from '../common/config';
import { describeFailure, queryStatus } from './onboarding';
import { renderStatus } from './render';

export async function watchOnboarding(client: Client, serverId: string, out: NodeJS.WritableStream, pollMs = 1000): Promise<number> {
  const handle = client.workflow.getHandle(onboardingWorkflowId(serverId));
  let done = false;
  const result = handle.result().then(
    () => 0,
    (err: unknown) => {
      out.write(`\n${err instanceof WorkflowFailedError ? 'FAILED: ' : ''}${describeFailure(err)}\n`);
      return 1;
    },
  );
  void result.finally(() => (done = true));
  // Re-render when a step changes state, and otherwise every 30 s (elapsed times tick every poll).
  let lastKey = '';
  let lastAt = 0;
  while (!done) {
    try {
      const status = await queryStatus(client, serverId);
      const key = JSON.stringify([status.phase, status.currentStep, Object.values(status.steps).map((s) => [s.state, s.attempts, s.error])]);
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
