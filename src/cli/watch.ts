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
  let last = '';
  while (!done) {
    try {
      const text = renderStatus(await queryStatus(client, serverId));
      if (text !== last) out.write(`${text}\n\n`);
      last = text;
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
