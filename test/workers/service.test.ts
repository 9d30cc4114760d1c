/**
 * The worker as a service, on a real Temporal dev server, with real worker processes:
 * - SIGTERM mid-step: the running step gets the shutdown grace, finishes on the stopping worker, the workflow
 *   completes on another worker, and every step's effect happened exactly once;
 * - SIGTERM with a grace shorter than the step: the step is cancelled, retried on another worker, which finds
 *   the change already made (idempotent apply) and does not make it again;
 * - scale-out: two worker processes on one task queue share onboardings; SIGKILL one mid-step and its work
 *   moves to the other;
 * - bin/underlay worker itself: announces its Temporal profile, drains on SIGTERM, exits 0.
 * The worker processes run the CLI's own `worker` command (test/helpers/service-worker.ts) over a FileHost that
 * all of them share, so effects are counted on the host stand-in whichever process made them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import { startOnboarding } from '../../src/cli/onboarding';
import { STEPS } from '../../src/steps';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import { parseTuning, tuningFromEnv } from '../../src/workers/service';
import { createWorker, workerNodeFlags, workerTuning, WORKER_HEAP_MIB_BOUNDS, WORKER_TUNING } from '../../src/workers/worker';
import type { DetachedProcess } from '../helpers/detached';
import { spawnWorker as spawnWorker_, type WorkerProcess } from '../helpers/worker-process';
import { nullConnector } from '../helpers/fake-steps';
import { FileHost, fileHostSteps, type HostEvent } from '../helpers/file-host';
import { runInBackground, startTemporal, workflowBundle, type BackgroundWorker } from '../helpers/temporal';

/** The steps this file's spec runs: the runbook without the sections it does not set (dpdk). */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
let host: FileHost;
const home = mkdtempSync(join(tmpdir(), 'underlay-service-home-'));
const children: DetachedProcess[] = [];
let seq = 0;

const bundleFile = join(home, 'workflow-bundle.js');

before(async () => {
  // The spawned test workers load this bundle instead of bundling (≈ 2–10 s each); bin/underlay bundles itself.
  [env, baseSpec] = await Promise.all([
    startTemporal(),
    loadSpecFile('examples/kvm-macvtap.yaml'),
    workflowBundle().then((b) => writeFileSync(bundleFile, b.code)),
  ]);
  host = new FileHost();
});
after(async () => {
  for (const c of children) c.kill();
  await env?.teardown();
  host?.remove();
  rmSync(home, { recursive: true, force: true });
});

/** A worker process over the shared FileHost (or bin/underlay itself); resolves once it polls. */
function spawnWorker(taskQueue: string, grace: string, opts: { bin?: boolean } = {}): Promise<WorkerProcess> {
  return spawnWorker_({ taskQueue, grace, env: workerEnv(), bundleFile, track: children, ...opts });
}

function workerEnv(): NodeJS.ProcessEnv {
  // The dev server, and no Temporal config file from this machine's $HOME.
  return { ...process.env, HOME: home, TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default', FILE_HOST_DIR: host.dir };
}

/** A worker inside the test process over the same FileHost: "another worker" that picks up what is left. */
async function inProcessWorker(taskQueue: string): Promise<BackgroundWorker> {
  return runInBackground(
    await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(nullConnector, fileHostSteps(host)),
    }),
  );
}

function nextSpec(): ServerSpec {
  return { ...baseSpec, id: `svc${process.pid}-${++seq}` };
}

/** Polls the host's events (bounded) until one matches. */
async function until(what: string, filter: Partial<HostEvent>, pred: (e: HostEvent) => boolean = () => true, ms = 90_000): Promise<HostEvent> {
  for (let t = 0; t < ms; t += 100) {
    const e = host.events(filter).find(pred);
    if (e) return e;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(host.events({ server: filter.server }))}`);
}

function appliesPerStep(server: string): Record<string, number> {
  return Object.fromEntries(RUNBOOK.map((s) => [s, host.events({ server, step: s, event: 'applied' }).length]));
}

const ONCE = Object.fromEntries(RUNBOOK.map((s) => [s, 1]));

describe('graceful shutdown', { concurrency: false }, () => {
  test('SIGTERM mid-step: the step finishes within the grace, the onboarding completes on another worker, each effect once', { timeout: 240_000 }, async () => {
    const taskQueue = `svc-grace-${process.pid}`;
    host.setPlan({ applyMs: { bond: 6_000 } });
    const w1 = await spawnWorker(taskQueue, '45s');
    const spec = nextSpec();
    const handle = await startOnboarding(env.client, spec, { taskQueue });
    await until('the bond apply on worker 1', { server: spec.id, step: 'bond', event: 'apply', pid: w1.pid });
    process.kill(w1.pid, 'SIGTERM');
    assert.equal(await w1.exited(60_000), 0, w1.output());
    assert.match(w1.output(), /SIGTERM: stopping — polling no new tasks; running steps have 45 s to finish/);
    assert.match(w1.output(), /underlay worker stopped after SIGTERM/);
    // The step finished on the stopping worker, after the signal.
    const applied = host.events({ server: spec.id, step: 'bond', event: 'applied' });
    assert.deepEqual(
      applied.map((e) => [e.pid, e.attempt]),
      [[w1.pid, 1]],
    );

    const w2 = await inProcessWorker(taskQueue);
    try {
      const result = await handle.result();
      assert.deepEqual(
        RUNBOOK.map((s) => [s, result.steps[s].state, result.steps[s].attempts]),
        RUNBOOK.map((s) => [s, 'done', 1]),
      );
    } finally {
      await w2.stop();
    }
    assert.deepEqual(appliesPerStep(spec.id), ONCE);
    assert.equal(host.events({ server: spec.id, step: 'attach', event: 'applied' })[0]?.pid, process.pid, 'the rest ran on the second worker');
    assert.deepEqual(host.events({ server: spec.id, event: 'undo' }), []);
  });

  test('SIGTERM with a grace shorter than the step: cancelled, retried on another worker, the change made once', { timeout: 240_000 }, async () => {
    const taskQueue = `svc-short-${process.pid}`;
    host.setPlan({ settleMs: { vlan: 30_000 } });
    const w1 = await spawnWorker(taskQueue, '1s');
    const spec = nextSpec();
    const handle = await startOnboarding(env.client, spec, { taskQueue });
    await until('the VLAN change on worker 1', { server: spec.id, step: 'vlan', event: 'applied', pid: w1.pid });
    process.kill(w1.pid, 'SIGTERM');
    assert.equal(await w1.exited(30_000), 0, w1.output());
    assert.equal(host.events({ server: spec.id, step: 'vlan', event: 'settled' }).length, 0, 'cancelled before it settled');

    const w2 = await inProcessWorker(taskQueue);
    try {
      const result = await handle.result();
      assert.equal(result.steps.vlan.state, 'done');
      assert.equal(result.steps.vlan.attempts, 2);
    } finally {
      await w2.stop();
    }
    // Attempt 2 ran on the second worker, observed the change already made, and did not make it again.
    const retry = host.events({ server: spec.id, step: 'vlan', event: 'observe', pid: process.pid });
    assert.deepEqual(
      retry.map((e) => e.attempt),
      [2],
    );
    assert.deepEqual(appliesPerStep(spec.id), ONCE);
    assert.deepEqual(host.events({ server: spec.id, event: 'undo' }), []);
  });
});

describe('scale-out', { concurrency: false }, () => {
  test('two worker processes share onboardings; SIGKILL one mid-step and the other finishes its work', { timeout: 300_000 }, async () => {
    const taskQueue = `svc-scale-${process.pid}`;
    host.setPlan({ applyMs: Object.fromEntries(RUNBOOK.map((s) => [s, 300])) });
    const [w1, w2] = await Promise.all([spawnWorker(taskQueue, '30s'), spawnWorker(taskQueue, '30s')]);
    const specs = Array.from({ length: 8 }, nextSpec);
    const handles = await Promise.all(specs.map((s) => startOnboarding(env.client, s, { taskQueue })));
    for (const h of handles) assert.equal((await h.result()).steps.attach.state, 'done');
    const ids = new Set(specs.map((s) => s.id));
    const runs = host.events({ event: 'observe' }).filter((e) => ids.has(e.server));
    const perWorker = { w1: runs.filter((e) => e.pid === w1.pid).length, w2: runs.filter((e) => e.pid === w2.pid).length };
    console.log(`step activities per worker: ${JSON.stringify(perWorker)} of ${runs.length}`);
    assert.equal(perWorker.w1 + perWorker.w2, 8 * RUNBOOK.length);
    assert.ok(perWorker.w1 > 0 && perWorker.w2 > 0, `both workers ran steps: ${JSON.stringify(perWorker)}`);
    for (const s of specs) assert.deepEqual(appliesPerStep(s.id), ONCE);

    // Now one worker dies without warning in the middle of a step.
    host.setPlan({ applyMs: { sriov: 8_000 } });
    const more = Array.from({ length: 2 }, nextSpec);
    const moreHandles = await Promise.all(more.map((s) => startOnboarding(env.client, s, { taskQueue })));
    const victim = await until('an SR-IOV apply', { step: 'sriov', event: 'apply' }, (e) => more.some((s) => s.id === e.server));
    const [dead, alive] = victim.pid === w1.pid ? [w1, w2] : [w2, w1];
    dead.kill(); // SIGKILL to its process group
    await dead.exited(10_000);
    for (const h of moreHandles) assert.equal((await h.result()).steps.attach.state, 'done');
    // The killed worker's step was retried on the survivor (after its 30 s heartbeat timeout) and completed there.
    const retried = host.events({ server: victim.server, step: 'sriov', event: 'applied' });
    assert.ok(retried.length >= 1 && retried.every((e) => e.pid === alive.pid && e.attempt >= 2), JSON.stringify(retried));
    assert.equal(host.events({ server: victim.server, step: 'attach', event: 'applied' })[0]?.pid, alive.pid);
    process.kill(alive.pid, 'SIGTERM');
    assert.equal(await alive.exited(45_000), 0, alive.output());
  });
});

describe('worker tuning', () => {
  test(
    'flags and environment are bounded integers, flags over environment over defaults; the FileHost worker runs with them',
    { timeout: 120_000 },
    async () => {
      assert.equal(parseTuning('maxCachedWorkflows', '0'), 0);
      assert.equal(parseTuning('maxCachedWorkflows', '10000'), 10_000);
      for (const bad of ['10001', '-1', '1e3', '2.5', '', '0x10', '12 13'])
        assert.throws(() => parseTuning('maxCachedWorkflows', bad), /--max-cached-workflows: expected an integer from 0 to 10000/, bad);
      assert.throws(() => parseTuning('maxConcurrentWorkflowTaskExecutions', '1'), /--max-workflow-tasks: expected an integer from 2 to 200/);
      assert.throws(() => parseTuning('maxConcurrentActivityTaskExecutions', '0'), /--max-activities: expected an integer from 1 to 1000/);
      assert.deepEqual(tuningFromEnv({ UNDERLAY_WORKER_MAX_ACTIVITIES: '7', UNDERLAY_WORKER_MAX_CACHED_WORKFLOWS: '' }), {
        maxConcurrentActivityTaskExecutions: 7,
      });
      assert.throws(
        () => tuningFromEnv({ UNDERLAY_WORKER_MAX_WORKFLOW_TASKS: '999' }),
        /UNDERLAY_WORKER_MAX_WORKFLOW_TASKS: expected an integer from 2 to 200/,
      );
      assert.throws(() => workerTuning({ maxCachedWorkflows: 20_000 }), /maxCachedWorkflows: expected an integer from 0 to 10000, got 20000/);
      assert.deepEqual(workerTuning(), WORKER_TUNING);
      // The CLI's worker command: the environment's value, overridden by a flag, is what the worker runs with.
      const w = await spawnWorker_({
        taskQueue: `svc-tune-${process.pid}`,
        grace: '0s',
        env: { ...workerEnv(), UNDERLAY_WORKER_MAX_ACTIVITIES: '9', UNDERLAY_WORKER_MAX_CACHED_WORKFLOWS: '11' },
        bundleFile,
        track: children,
        extraArgs: ['--max-cached-workflows', '12'],
      });
      assert.match(
        w.output(),
        new RegExp(`12 workflows cached, ${WORKER_TUNING.maxConcurrentWorkflowTaskExecutions} workflow tasks and 9 activities at once`),
        w.output(),
      );
      process.kill(w.pid, 'SIGTERM');
      assert.equal(await w.exited(30_000), 0, w.output());
    },
  );

  test('bin/underlay refuses a heap size out of bounds before starting node', () => {
    for (const bad of ['abc', '100', '99999', '384 ', '-1']) {
      const r = spawnSync(join(__dirname, '../../bin/underlay'), ['worker'], {
        env: { ...process.env, UNDERLAY_WORKER_HEAP_MIB: bad },
        encoding: 'utf8',
        timeout: 10_000,
      });
      assert.equal(r.status, 2, `${bad}: ${r.stderr}`);
      assert.match(r.stderr, /UNDERLAY_WORKER_HEAP_MIB: expected an integer from 192 to 16384/);
    }
    assert.deepEqual(WORKER_HEAP_MIB_BOUNDS, [192, 16_384]);
  });
});

describe('bin/underlay worker', () => {
  test('announces its Temporal profile on stderr, drains on SIGTERM and exits 0 well within the grace', { timeout: 180_000 }, async () => {
    const w = await spawnWorker(`svc-bin-${process.pid}`, '60s', { bin: true });
    assert.match(w.output(), /underlay: Temporal profile "default" \(no config file\): 127\.0\.0\.1:\d+, namespace default, plain text \(no TLS\)/);
    // The heap bounds bin/underlay gives the worker are worker.ts's, and the tuning defaults are in force.
    const argv = readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').split('\0');
    for (const f of workerNodeFlags()) assert.ok(argv.includes(f), `${f} not in ${argv.join(' ')}`);
    const t = WORKER_TUNING;
    assert.match(
      w.output(),
      new RegExp(
        `${t.maxCachedWorkflows} workflows cached, ${t.maxConcurrentWorkflowTaskExecutions} workflow tasks and ${t.maxConcurrentActivityTaskExecutions} activities at once`,
      ),
    );
    const t0 = Date.now();
    process.kill(w.pid, 'SIGTERM');
    assert.equal(await w.exited(30_000), 0, w.output());
    assert.ok(Date.now() - t0 < 20_000, `an idle worker stops at once, not after the grace (${Date.now() - t0} ms)`);
    assert.match(w.output(), /SIGTERM: stopping/);
    assert.match(w.output(), /underlay worker stopped after SIGTERM/);
  });
});
