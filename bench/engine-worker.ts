/**
 * The engine scenario's worker in a process of its own, so its resident set can be measured apart from the bench
 * (client and dev server): `createWorker` (src/workers/worker.ts, the production options, with the tuning the parent
 * passes) over the simulated hosts of test/helpers/fake-steps.ts behind the real activity runner. The hosts live in
 * this process — they are the activities' counterpart — so they count in its RSS (a few KiB per host).
 *
 * Started by bench/scenarios.ts with an IPC channel and UNDERLAY_BENCH_WORKER (JSON: address, namespace, task queue,
 * tuning, bundle). Messages: it sends `ready` once polling; asked `spans` (server ids) it answers with each host's step
 * spans; asked `stop` it shuts the worker down and exits. It exits too when the parent goes away.
 */
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { z } from 'zod';
import { createActivities } from '../src/activities';
import { createWorker } from '../src/workers/worker';
import { FakeFleet, fleetSteps, nullConnector } from '../test/helpers/fake-steps';
import { workflowBundle } from '../test/helpers/temporal';

const Count = z.number().int().min(0).max(10_000);
const Config = z
  .object({
    address: z.string().regex(/^127\.0\.0\.1:\d{1,5}$/),
    namespace: z.string().min(1).max(64),
    taskQueue: z.string().min(1).max(200),
    /** `prebuilt`: load the bench's cached bundle; `at-start`: bundle src/workflows in this process, as `underlay worker` does. */
    bundle: z.enum(['prebuilt', 'at-start']),
    tuning: z.object({ maxCachedWorkflows: Count, maxConcurrentActivityTaskExecutions: Count, maxConcurrentWorkflowTaskExecutions: Count }).partial().strict(),
  })
  .strict();

const Request = z.discriminatedUnion('type', [
  z.object({ type: z.literal('spans'), ids: z.array(z.string().max(200)).max(100_000) }),
  z.object({ type: z.literal('stop') }),
]);

export type EngineWorkerConfig = z.infer<typeof Config>;
export type EngineWorkerRequest = z.infer<typeof Request>;
export type EngineWorkerReply =
  { type: 'ready' } | { type: 'spans'; spans: Record<string, Record<string, [number, number]>> } | { type: 'error'; message: string };

async function main(): Promise<void> {
  const send = (m: EngineWorkerReply) => process.send?.(m);
  if (!process.send) throw new Error('bench/engine-worker.ts runs as a child of the bench (an IPC channel)');
  const cfg = Config.parse(JSON.parse(process.env.UNDERLAY_BENCH_WORKER ?? 'null'));
  Runtime.install({ logger: new DefaultLogger('ERROR'), shutdownSignals: [] });
  const connection = await NativeConnection.connect({ address: cfg.address });
  const hosts = new FakeFleet();
  const worker = await createWorker({
    connection,
    namespace: cfg.namespace,
    taskQueue: cfg.taskQueue,
    ...(cfg.bundle === 'prebuilt' ? { workflowBundle: await workflowBundle() } : {}),
    activities: createActivities(nullConnector, fleetSteps(hosts)),
    tuning: cfg.tuning,
  });
  const stop = () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  process.on('message', (raw) => {
    const m = Request.safeParse(raw);
    if (!m.success) return send({ type: 'error', message: `bad request: ${m.error.message.slice(0, 200)}` });
    if (m.data.type === 'stop') return stop();
    const spans: Record<string, Record<string, [number, number]>> = {};
    for (const id of m.data.ids) spans[id] = hosts.host(id).spans as Record<string, [number, number]>;
    send({ type: 'spans', spans });
  });
  process.on('disconnect', stop);
  const running = worker.run();
  send({ type: 'ready' });
  try {
    await running;
  } finally {
    await connection.close();
    process.disconnect?.();
  }
}

main().catch((err: unknown) => {
  process.send?.({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  console.error(err instanceof Error ? err.stack : err);
  process.exitCode = 1;
});
