/**
 * A worker process for the management-move lab test (killed with SIGKILL to its process group between the arm and
 * the confirm): the production Linux/KVM step activities over SSH. Env: TEMPORAL_ADDRESS, TASK_QUEUE, and optionally
 * UNDERLAY_METRICS_ADDRESS (host:port of its Prometheus endpoint).
 */
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { createActivities, stepSetOf } from '../../src/activities';
import { sshConnector } from '../../src/activities/connect';
import { createWorker } from '../../src/workers/worker';
import { metricsRuntimeOptions } from '../../src/workers/step-metrics';

async function main(): Promise<void> {
  const { TEMPORAL_ADDRESS, TASK_QUEUE } = process.env;
  if (!TEMPORAL_ADDRESS || !TASK_QUEUE) throw new Error('TEMPORAL_ADDRESS and TASK_QUEUE are required');
  // UNDERLAY_METRICS_ADDRESS: serve Prometheus metrics there, as `underlay worker --metrics` does.
  const metrics = process.env.UNDERLAY_METRICS_ADDRESS;
  Runtime.install({ logger: new DefaultLogger('WARN'), ...(metrics ? metricsRuntimeOptions(metrics) : {}) });
  const connection = await NativeConnection.connect({ address: TEMPORAL_ADDRESS });
  const workflowBundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('./move-workflow'),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m), log() {} },
  });
  const worker = await createWorker({
    connection,
    namespace: 'default',
    taskQueue: TASK_QUEUE,
    workflowBundle,
    activities: createActivities(sshConnector, stepSetOf('kvm')),
    dataConverter: undefined,
  });
  console.log('move-worker: running');
  await worker.run();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
