/**
 * Worker metrics on a real Temporal dev server: onboardings over fake steps (test/helpers/fake-steps.ts), then
 * a scrape of the Runtime's Prometheus endpoint shows the SDK's own metrics and underlay's per-step histograms
 * and counters labelled by step, hypervisor, kind and outcome.
 *
 * The Runtime is process-global and installs once; node --test runs each file in its own process, so this file
 * installs it (with the exporter, exactly as `underlay worker --metrics` does) before anything else touches it —
 * which is why it starts the dev server itself instead of through startTemporal (that installs a quiet Runtime).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { startOnboarding } from '../../src/cli/onboarding';
import { VerificationError } from '../../src/common/errors';
import { SEARCH_ATTRIBUTES } from '../../src/common/search-attributes';
import { STEPS } from '../../src/steps';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import { metricsRuntimeOptions, parseMetricsAddress, STEP_COUNT_METRIC, STEP_DURATION_BUCKETS, STEP_DURATION_METRIC } from '../../src/workers/step-metrics';
import { createWorker } from '../../src/workers/worker';
import { FakeHost, fakeSteps, nullConnector } from '../helpers/fake-steps';
import { TEMPORAL_BIN, workflowBundle } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
let metricsUrl: string;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

before(async () => {
  const address = `127.0.0.1:${await freePort()}`;
  Runtime.install({ ...metricsRuntimeOptions(address), logger: new DefaultLogger('ERROR') });
  metricsUrl = `http://${address}/metrics`;
  [env, baseSpec] = await Promise.all([
    TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: TEMPORAL_BIN },
        ip: '127.0.0.1',
        searchAttributes: SEARCH_ATTRIBUTES,
        log: { format: 'pretty', level: 'warn' },
      },
    }),
    loadSpecFile('examples/kvm-macvtap.yaml'),
    workflowBundle(),
  ]);
});
after(async () => {
  await env?.teardown();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (enough of it: no escaped quotes in our label values). */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(): Promise<Sample[]> {
  const res = await fetch(metricsUrl);
  assert.equal(res.status, 200);
  return parseMetrics(await res.text());
}

function find(samples: Sample[], name: string, labels: Record<string, string>): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  const hits = find(samples, name, labels);
  assert.ok(hits.length <= 1, `${name} ${JSON.stringify(labels)}: ${hits.length} series`);
  return hits[0]?.value;
}

let seq = 0;
async function onboard(host: FakeHost, during?: (h: Awaited<ReturnType<typeof startOnboarding>>) => Promise<void>) {
  const spec: ServerSpec = { ...baseSpec, id: `metrics-${process.pid}-${++seq}` };
  const taskQueue = `tq-${spec.id}`;
  const worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(nullConnector, fakeSteps(host)),
    dataConverter: undefined,
  });
  await worker.runUntil(async () => {
    const handle = await startOnboarding(env.client, spec, { taskQueue });
    if (during) await during(handle);
    await handle.result().catch(() => undefined);
  });
  return { taskQueue };
}

describe('worker metrics on the Prometheus endpoint', () => {
  test('a successful onboarding: a duration histogram and an ok count per step, labelled by step and hypervisor', async () => {
    const { taskQueue } = await onboard(new FakeHost());
    const samples = await scrape();
    for (const step of STEPS) {
      const labels = { taskQueue, step, hypervisor: 'kvm', kind: 'apply', outcome: 'ok' };
      assert.equal(value(samples, `${STEP_DURATION_METRIC}_count`, labels), 1, `${step} duration count`);
      const sum = value(samples, `${STEP_DURATION_METRIC}_sum`, labels);
      assert.ok(sum !== undefined && sum > 0 && sum < 60, `${step} duration ${sum}s`);
      const buckets = find(samples, `${STEP_DURATION_METRIC}_bucket`, labels).map((s) => s.labels.le);
      assert.deepEqual(buckets, [...STEP_DURATION_BUCKETS.map(String), '+Inf'], `${step} buckets in seconds, up to an hour`);
      assert.equal(value(samples, STEP_COUNT_METRIC, labels), 1, `${step} count`);
      assert.equal(find(samples, STEP_COUNT_METRIC, { taskQueue, step, outcome: 'failed' }).length, 0);
    }
    // The SDK's own metrics are served on the same endpoint.
    assert.ok(find(samples, 'temporal_activity_execution_latency_count', { task_queue: taskQueue }).length > 0, 'SDK activity latency');
    assert.ok(find(samples, 'temporal_workflow_completed', { task_queue: taskQueue }).length > 0, 'SDK workflow completed');
  });

  test('a failed step and its rollbacks: outcome=failed for the step, kind=rollback for every compensation', async () => {
    const host = new FakeHost();
    host.faults = [{ step: 'vlan', phase: 'verify', error: () => new VerificationError('injected mismatch', { step: 'vlan' }) }];
    const { taskQueue } = await onboard(host);
    const samples = await scrape();
    const count = (step: string, kind: string, outcome: string) => value(samples, STEP_COUNT_METRIC, { taskQueue, step, hypervisor: 'kvm', kind, outcome });
    assert.equal(count('cable', 'apply', 'ok'), 1);
    assert.equal(count('bond', 'apply', 'ok'), 1);
    assert.equal(count('vlan', 'apply', 'failed'), 1);
    assert.equal(count('vlan', 'apply', 'ok'), undefined);
    for (const step of ['vlan', 'bond', 'cable']) {
      assert.equal(count(step, 'rollback', 'ok'), 1, `${step} rolled back`);
      assert.equal(value(samples, `${STEP_DURATION_METRIC}_count`, { taskQueue, step, kind: 'rollback', outcome: 'ok' }), 1);
      assert.match(find(samples, STEP_COUNT_METRIC, { taskQueue, step, kind: 'rollback' })[0]?.labels.activityType ?? '', /^rollback/);
    }
    for (const step of ['sriov', 'hypervisor', 'attach']) assert.equal(find(samples, STEP_COUNT_METRIC, { taskQueue, step }).length, 0, `${step} never ran`);
  });

  test('a step cancelled mid-way counts as outcome=cancelled', async () => {
    const host = new FakeHost();
    host.faults = [{ step: 'sriov', phase: 'apply', block: true, error: () => new Error('unused') }];
    const { taskQueue } = await onboard(host, async (h) => {
      await host.blocked;
      await h.cancel();
    });
    const samples = await scrape();
    assert.equal(value(samples, STEP_COUNT_METRIC, { taskQueue, step: 'sriov', kind: 'apply', outcome: 'cancelled' }), 1);
    assert.equal(value(samples, STEP_COUNT_METRIC, { taskQueue, step: 'sriov', kind: 'rollback', outcome: 'ok' }), 1);
  });

  test('the metrics address is validated', () => {
    assert.equal(parseMetricsAddress('0.0.0.0:9464'), '0.0.0.0:9464');
    assert.equal(parseMetricsAddress('[::1]:9464'), '[::1]:9464');
    for (const bad of ['9464', 'localhost', 'host:0', 'host:70000', 'http://host:9464'])
      assert.throws(() => parseMetricsAddress(bad), /expected <host>:<port>/, bad);
  });
});
