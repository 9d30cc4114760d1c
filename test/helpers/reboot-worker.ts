/**
 * A worker process for the reboot lab test (the test kills it mid-wait with SIGKILL to its process group).
 * Env: TEMPORAL_ADDRESS, TASK_QUEUE, BOOT_BEFORE (the boot id the step must leave behind).
 */
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { cachedWorkflowBundle } from './bundle';
import { createWorker } from '../../src/workers/worker';
import { rebootActivities } from './reboot-steps';

async function main(): Promise<void> {
  const { TEMPORAL_ADDRESS, TASK_QUEUE, BOOT_BEFORE } = process.env;
  if (!TEMPORAL_ADDRESS || !TASK_QUEUE || !BOOT_BEFORE) throw new Error('TEMPORAL_ADDRESS, TASK_QUEUE and BOOT_BEFORE are required');
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const connection = await NativeConnection.connect({ address: TEMPORAL_ADDRESS });
  const workflowBundle = await cachedWorkflowBundle(require.resolve('./reboot-workflow'));
  const worker = await createWorker({
    connection,
    namespace: 'default',
    taskQueue: TASK_QUEUE,
    workflowBundle,
    activities: rebootActivities(BOOT_BEFORE),
    dataConverter: undefined,
  });
  console.log('reboot-worker: running');
  await worker.run();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
