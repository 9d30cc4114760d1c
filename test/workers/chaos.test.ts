/**
 * The chaos matrix, on a real Temporal dev server with real worker processes over a shared host stand-in
 * (test/helpers/file-host.ts; every observe / apply / undo is an event line naming the worker process and the
 * attempt, so effects are counted on the "host" whichever process made them):
 *
 * - worker SIGKILL before, during and after the apply of each of the six steps — 18 onboardings, each held at its
 *   own point on one worker process, which is then SIGKILLed once; a new worker finishes them all. Every case
 *   converges and every step's change was made exactly once. Retries start when the killed attempt's heartbeat
 *   times out (30 s; the hypervisor step's 2 min), so the matrix costs about one hypervisor heartbeat timeout.
 * - the Temporal dev server SIGKILLed in the middle of a step and restarted on its persisted state
 *   (`temporal server start-dev --db-filename`, the pinned CLI): the onboarding completes, each change once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { startOnboarding } from '../../src/cli/onboarding';
import { devServerSearchAttributeFlags } from '../../src/common/search-attributes';
import { STEPS, type StepName } from '../../src/steps';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import { createWorker } from '../../src/workers/worker';
import { spawnDetached, type DetachedProcess } from '../helpers/detached';
import { nullConnector } from '../helpers/fake-steps';
import { FileHost, fileHostSteps, type HoldPoint, type HostEvent } from '../helpers/file-host';
import { freePort } from '../helpers/sshd';
import { runInBackground, startTemporal, TEMPORAL_BIN, workflowBundle, type BackgroundWorker } from '../helpers/temporal';
import { spawnWorker } from '../helpers/worker-process';

/** The steps this file's spec runs: the runbook without the sections it does not set (dpdk). */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
let host: FileHost;
const home = mkdtempSync(join(tmpdir(), 'underlay-chaos-home-'));
const bundleFile = join(home, 'workflow-bundle.js');
const children: DetachedProcess[] = [];
const figures: string[] = [];

before(async () => {
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
  if (figures.length) console.log(`figures:\n${figures.map((f) => `  ${f}`).join('\n')}`);
});

function workerEnv(address: string): NodeJS.ProcessEnv {
  return { ...process.env, HOME: home, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: 'default', FILE_HOST_DIR: host.dir };
}

async function inProcessWorker(connection: NativeConnection, taskQueue: string): Promise<BackgroundWorker> {
  return runInBackground(
    await createWorker({
      connection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(nullConnector, fileHostSteps(host)),
    }),
  );
}

/** Polls the host's events (bounded) until one matches. */
async function until(what: string, filter: Partial<HostEvent>, pred: (e: HostEvent) => boolean = () => true, ms = 120_000): Promise<HostEvent> {
  for (let t = 0; t < ms; t += 200) {
    const e = host.events(filter).find(pred);
    if (e) return e;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(host.events({ server: filter.server }))}`);
}

const applied = (server: string) => Object.fromEntries(RUNBOOK.map((s) => [s, host.events({ server, step: s, event: 'applied' }).length]));
const ONCE = Object.fromEntries(RUNBOOK.map((s) => [s, 1]));
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe('worker SIGKILL at each step, before / during / after its apply', () => {
  test('18 cases on one worker process killed at once: every case converges on a new worker, each change made once', { timeout: 480_000 }, async () => {
    const taskQueue = `chaos-matrix-${process.pid}`;
    const POINTS: HoldPoint[] = ['before', 'during', 'after'];
    const cases = RUNBOOK.flatMap((step) => POINTS.map((at) => ({ step, at, server: `chaos${process.pid}-${step}-${at}` })));
    host.setPlan({ hold: cases.map(({ server, step, at }) => ({ server, step, at })) });
    const w1 = await spawnWorker({ taskQueue, grace: '30s', env: workerEnv(env.address), bundleFile, track: children });
    const t0 = Date.now();
    const handles = await Promise.all(cases.map((c) => startOnboarding(env.client, { ...baseSpec, id: c.server }, { taskQueue })));
    for (const c of cases) await until(`${c.server} held ${c.at} ${c.step}`, { server: c.server, step: c.step, event: 'held', pid: w1.pid });
    const reached = Date.now();
    w1.kill();
    await w1.exited(15_000);
    const killedAt = Date.now();
    host.setPlan({});
    const w2 = await inProcessWorker(env.nativeConnection, taskQueue);
    let results;
    try {
      results = await Promise.all(handles.map((h) => h.result()));
    } finally {
      await w2.stop();
    }
    const doneAt: Record<StepName, number> = Object.fromEntries(RUNBOOK.map((s) => [s, 0])) as Record<StepName, number>;
    cases.forEach((c, i) => {
      const r = results[i]!;
      const where = `${c.server} (killed ${c.at} the ${c.step} apply)`;
      assert.deepEqual(
        RUNBOOK.map((s) => r.steps[s].state),
        RUNBOOK.map(() => 'done'),
        where,
      );
      assert.deepEqual(applied(c.server), ONCE, `${where}: each change made once`);
      assert.deepEqual(host.events({ server: c.server, event: 'undo' }), [], `${where}: nothing compensated`);
      assert.equal(r.steps[c.step].attempts, 2, `${where}: the killed step ran again, once`);
      const begun = host.events({ server: c.server, step: c.step, event: 'apply' }).map((e) => [e.pid === w1.pid ? 'w1' : 'w2', e.attempt]);
      const made = host.events({ server: c.server, step: c.step, event: 'applied' }).map((e) => [e.pid === w1.pid ? 'w1' : 'w2', e.attempt]);
      if (c.at === 'before') {
        assert.deepEqual(begun, [['w2', 2]], `${where}: the apply began only on the retry`);
        assert.deepEqual(made, [['w2', 2]], where);
      } else if (c.at === 'during') {
        assert.deepEqual(
          begun,
          [
            ['w1', 1],
            ['w2', 2],
          ],
          `${where}: begun on worker 1, redone from the start by the retry`,
        );
        assert.deepEqual(made, [['w2', 2]], where);
      } else {
        assert.deepEqual(begun, [['w1', 1]], `${where}: the retry found the change made and did not apply again`);
        assert.deepEqual(made, [['w1', 1]], where);
        assert.deepEqual(
          host.events({ server: c.server, step: c.step, event: 'observe' }).map((e) => e.attempt),
          [1, 2],
          where,
        );
      }
      const last = Math.max(...host.events({ server: c.server }).map((e) => e.at));
      doneAt[c.step] = Math.max(doneAt[c.step], last - killedAt);
    });
    figures.push(
      `matrix: 18 onboardings held at their points in ${secs(reached - t0)}; worker 1 SIGKILLed; all converged ${secs(Math.max(...Object.values(doneAt)))} after the kill`,
    );
    for (const s of RUNBOOK) figures.push(`  killed at ${s} (before/during/after): converged ≤ ${secs(doneAt[s])} after the kill`);
  });
});

describe('Temporal dev server killed and restarted mid-step', () => {
  test(
    'SIGKILL of the server during the VLAN apply, restart on the same database: the onboarding completes, each change once',
    { timeout: 300_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'underlay-chaos-temporal-'));
      const port = await freePort();
      const address = `127.0.0.1:${port}`;
      const args = [
        'server',
        'start-dev',
        '--ip',
        '127.0.0.1',
        '--port',
        String(port),
        '--headless',
        '--db-filename',
        join(dir, 'temporal.db'),
        '--log-level',
        'error',
        ...devServerSearchAttributeFlags(),
      ];
      let log = '';
      const startServer = async (): Promise<DetachedProcess> => {
        const p = spawnDetached(TEMPORAL_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: home } });
        children.push(p);
        p.child.stdout!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
        p.child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
        // Bounded wait for the frontend to answer.
        for (let i = 0; i < 150; i++) {
          if (p.child.exitCode !== null) throw new Error(`temporal exited ${p.child.exitCode}:\n${log}`);
          try {
            const c = await Connection.connect({ address, connectTimeout: 1_000 });
            await c.workflowService.getSystemInfo({});
            await c.close();
            return p;
          } catch {
            await sleep(200);
          }
        }
        throw new Error(`temporal did not answer on ${address}:\n${log}`);
      };
      let server = await startServer();
      const connection = await NativeConnection.connect({ address });
      const clientConnection = await Connection.connect({ address });
      const client = new Client({ connection: clientConnection, namespace: 'default' });
      const taskQueue = `chaos-temporal-${process.pid}`;
      const spec = { ...baseSpec, id: `chaos${process.pid}-temporal` };
      host.setPlan({ applyMs: { vlan: 10_000 } });
      const worker = await inProcessWorker(connection, taskQueue);
      try {
        const t0 = Date.now();
        const handle = await startOnboarding(client, spec, { taskQueue });
        await until('the VLAN apply', { server: spec.id, step: 'vlan', event: 'apply' });
        server.kill();
        await new Promise<void>((r) => (server.child.exitCode !== null || server.child.signalCode !== null ? r() : server.child.once('exit', () => r())));
        const down = Date.now();
        await sleep(3_000);
        server = await startServer();
        const up = Date.now();
        let result;
        for (let i = 0; i < 60 && !result; i++) {
          try {
            result = await handle.result();
          } catch (err) {
            // The long poll that was open when the server died; ask again (bounded).
            if (i === 59) throw err;
            await sleep(1_000);
          }
        }
        assert.deepEqual(
          RUNBOOK.map((s) => result!.steps[s].state),
          RUNBOOK.map(() => 'done'),
        );
        assert.deepEqual(applied(spec.id), ONCE, 'each change made once');
        assert.deepEqual(host.events({ server: spec.id, event: 'undo' }), []);
        figures.push(
          `temporal restart: server down ${secs(up - down)} during the VLAN apply; onboarding done ${secs(Date.now() - up)} after the restart (${secs(Date.now() - t0)} in all; VLAN attempts ${result!.steps.vlan.attempts})`,
        );
      } finally {
        await worker.stop();
        await connection.close();
        await clientConnection.close();
        server.kill();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
