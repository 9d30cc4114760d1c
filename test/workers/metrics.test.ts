/**
 * Worker metrics on a real Temporal dev server: onboardings over fake steps (test/helpers/fake-steps.ts), then
 * a scrape of the Runtime's Prometheus endpoint shows the SDK's own metrics and underlay's per-step histograms
 * and counters labelled by step, hypervisor, kind and outcome. And SSH session reuse: an onboarding whose steps
 * run real commands over the worker's session pool against a real sshd (test/helpers/sshd.ts) — one connection for
 * consecutive steps, a new one after the connection is cut, the handshakes saved counted on the same endpoint.
 *
 * The Runtime is process-global and installs once; node --test runs each file in its own process, so this file
 * installs it (with the exporter, exactly as `underlay worker --metrics` does) before anything else touches it —
 * which is why it starts the dev server itself instead of through startTemporal (that installs a quiet Runtime).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { createActivities, type StepSet } from '../../src/activities';
import { pooledSshConnector, SSH_HANDSHAKES_METRIC, SSH_SAVED_METRIC } from '../../src/activities/connect';
import type { Step } from '../../src/activities/step';
import { sh } from '../../src/drivers/shell';
import { SshPool } from '../../src/transports/ssh-pool';
import { startOnboarding } from '../../src/cli/onboarding';
import { VerificationError } from '../../src/common/errors';
import { SEARCH_ATTRIBUTES } from '../../src/common/search-attributes';
import { STEPS } from '../../src/steps';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import { metricsRuntimeOptions, parseMetricsAddress, STEP_COUNT_METRIC, STEP_DURATION_BUCKETS, STEP_DURATION_METRIC } from '../../src/workers/step-metrics';
import { createWorker } from '../../src/workers/worker';
import { FakeHost, fakeSteps, nullConnector } from '../helpers/fake-steps';
import { find, parseMetrics, type Sample } from '../helpers/prometheus';
import { freePort, startSshd, type Sshd } from '../helpers/sshd';
import { TEMPORAL_BIN, workflowBundle } from '../helpers/temporal';

/** The steps this file's spec (examples/kvm-macvtap.yaml) runs: every step but dpdk, whose section it does not set. */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
let metricsUrl: string;
let sshd: Sshd | undefined;

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
  await sshd?.stop();
});

async function scrape(): Promise<Sample[]> {
  const res = await fetch(metricsUrl);
  assert.equal(res.status, 200);
  return parseMetrics(await res.text());
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
    for (const step of RUNBOOK) {
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

  test('SSH session reuse: consecutive steps share one pooled connection, a cut connection is re-opened, the handshakes saved are counted', async () => {
    sshd = await startSshd();
    const pool = new SshPool();
    const host = new FakeHost();
    // The fake steps, each first asking the real host which TCP connection it came in on ($SSH_CONNECTION).
    const seen: Array<{ step: string; end: string }> = [];
    const base = fakeSteps(host) as Record<string, Step<unknown>>;
    const steps = Object.fromEntries(
      RUNBOOK.map((name) => {
        const b = base[name]!;
        const probe: Step<unknown> = {
          ...b,
          async observe(io) {
            const out = await io.host.read(sh`echo "$SSH_CONNECTION"`, { description: 'which connection' });
            seen.push({ step: name, end: out.trim().split(' ').slice(0, 2).join(' ') });
            return b.observe(io);
          },
          async verify(io) {
            await b.verify(io);
            // After the VLAN step, the host's side of every connection dies (a crashed sshd, a cut cable).
            if (name === 'vlan') assert.ok((await sshd!.dropConnections()) >= 1);
          },
        };
        return [name, probe];
      }),
    ) as StepSet;
    const spec: ServerSpec = {
      ...baseSpec,
      id: `ssh-pool-${process.pid}`,
      management: {
        address: '127.0.0.1',
        port: sshd.port,
        user: sshd.user,
        hostKey: sshd.hostKeyFingerprint,
        credentials: { privateKeyFile: sshd.userKeyPath },
      },
    };
    const taskQueue = `tq-${spec.id}`;
    const logins = sshd.acceptedLogins();
    const worker = await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(pooledSshConnector(pool), steps),
      dataConverter: undefined,
    });
    const result = await worker.runUntil(async () => (await startOnboarding(env.client, spec, { taskQueue })).result());
    pool.closeIdle();
    for (const s of RUNBOOK) assert.equal(result.steps[s].state, 'done', s);

    const ends = (which: string[]) => new Set(seen.filter((x) => which.includes(x.step)).map((x) => x.end));
    assert.equal(ends(['cable', 'bond', 'vlan']).size, 1, JSON.stringify(seen));
    assert.equal(ends(['sriov', 'hypervisor', 'attach']).size, 1, JSON.stringify(seen));
    assert.notDeepEqual([...ends(['cable'])], [...ends(['attach'])], 'a new connection after the cut');
    assert.equal(sshd.acceptedLogins() - logins, 2, 'two handshakes in all (sshd counted the logins)');
    // After the cut, the first lease may have found the dead session before its connection closed: that attempt
    // failed at the transport (retryable), the session was dropped, the retry connected anew.
    const stats = pool.stats();
    assert.equal(stats.handshakes, 2);
    assert.ok(stats.reused === 4 || stats.reused === 5, JSON.stringify(stats));
    assert.equal(stats.dropped, 1, JSON.stringify(stats));

    const samples = await scrape();
    const sum = (name: string) => find(samples, name, { taskQueue }).reduce((n, s) => n + s.value, 0);
    assert.equal(sum(SSH_HANDSHAKES_METRIC), 2);
    assert.equal(sum(SSH_SAVED_METRIC), stats.reused);
    assert.equal(find(samples, SSH_SAVED_METRIC, { taskQueue, activityType: 'configureBond' })[0]?.value, 1);
  });

  test('the metrics address is validated', () => {
    assert.equal(parseMetricsAddress('0.0.0.0:9464'), '0.0.0.0:9464');
    assert.equal(parseMetricsAddress('[::1]:9464'), '[::1]:9464');
    for (const bad of ['9464', 'localhost', 'host:0', 'host:70000', 'http://host:9464'])
      assert.throws(() => parseMetricsAddress(bad), /expected <host>:<port>/, bad);
  });
});
