/**
 * Site-local workers on a real Temporal dev server: workflows on a central worker, each server's step activities on
 * its site's task queue (`<central>-<site>`), polled by that site's worker only. Which worker ran each activity is
 * read twice: from the history (ActivityTaskStarted's worker identity) and from the workers' own records. A server
 * whose site has no worker says so in its status, the CLI's rendering and the Web UI's details, and goes on once a
 * worker of its site starts. And `underlay worker --site` itself, as a process (test/helpers/service-worker.ts).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities, siteActivities, SITE_ACTIVITY_NAMES } from '../../src/activities';
import { renderStatus } from '../../src/cli/render';
import { describeFailure, siteQueuesFromEnv, startOnboarding } from '../../src/cli/onboarding';
import { startSweep } from '../../src/cli/drift';
import { onboardingWorkflowId, siteTaskQueue } from '../../src/common/config';
import { VerificationError } from '../../src/common/errors';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import { STEPS } from '../../src/steps';
import { statusQuery, type OnboardingStatus } from '../../src/workflows/messages';
import { createWorker } from '../../src/workers/worker';
import { spawnDetached, type DetachedProcess } from '../helpers/detached';
import { FakeFleet, fleetSteps, nullConnector } from '../helpers/fake-steps';
import { FileHost, fileHostSteps } from '../helpers/file-host';
import { runInBackground, startTemporal, workflowBundle, type BackgroundWorker } from '../helpers/temporal';

/** The steps this file's spec (examples/kvm-macvtap.yaml) runs: every step but dpdk, whose section it does not set. */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

const root = resolve(__dirname, '../..');
let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
const central = `central-${process.pid}`;
const fleet = new FakeFleet();
const ran: Array<{ worker: string; activity: string; server: string }> = [];
const workers: BackgroundWorker[] = [];
const children: DetachedProcess[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'underlay-sites-'));
let seq = 0;

/** Every activity of `all`, recording which worker ran it for which server. */
function recorded(worker: string, all: object): object {
  return Object.fromEntries(
    Object.entries(all as Record<string, (...a: unknown[]) => unknown>).map(([name, fn]) => [
      name,
      (...args: unknown[]) => {
        const spec = args[0] as { id?: string } | undefined;
        ran.push({ worker, activity: name, server: typeof spec?.id === 'string' ? spec.id : '' });
        return fn(...args);
      },
    ]),
  );
}

async function siteWorker(site: string): Promise<BackgroundWorker> {
  const w = runInBackground(
    await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue: siteTaskQueue(site, central),
      identity: `site-${site}`,
      workflows: false,
      activities: recorded(`site-${site}`, siteActivities(createActivities(nullConnector, fleetSteps(fleet)))),
    }),
  );
  workers.push(w);
  return w;
}

before(async () => {
  [env, baseSpec] = await Promise.all([startTemporal(), loadSpecFile('examples/kvm-macvtap.yaml')]);
  workers.push(
    runInBackground(
      await createWorker({
        connection: env.nativeConnection,
        namespace: 'default',
        taskQueue: central,
        identity: 'central',
        workflowBundle: await workflowBundle(),
        activities: recorded('central', createActivities(nullConnector, fleetSteps(fleet))),
      }),
    ),
  );
  await Promise.all([siteWorker('fra1'), siteWorker('ams1')]);
});
after(async () => {
  for (const c of children) c.kill();
  await Promise.all(workers.map((w) => w.stop()));
  await env?.teardown();
  rmSync(tmp, { recursive: true, force: true });
});

function specAt(site: string): ServerSpec {
  return { ...baseSpec, id: `site${process.pid}-${++seq}`, site };
}

/** Activity type → worker identity, from ActivityTaskStarted events (the scheduled event names the type). */
async function activityWorkers(h: WorkflowHandle): Promise<Array<{ activity: string; identity: string; queue: string }>> {
  const events = (await h.fetchHistory()).events ?? [];
  const scheduled = new Map<string, { activity: string; queue: string }>();
  const out: Array<{ activity: string; identity: string; queue: string }> = [];
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(String(e.eventId), { activity: s.activityType?.name ?? '?', queue: s.taskQueue?.name ?? '?' });
    const st = e.activityTaskStartedEventAttributes;
    if (st) out.push({ ...scheduled.get(String(st.scheduledEventId))!, identity: st.identity ?? '?' });
  }
  return out;
}

describe('site-local workers', () => {
  test('two sites: every step activity (and every rollback, and a drift check) ran on its own site worker; workflows stayed central', async () => {
    const [a, b] = [specAt('fra1'), specAt('ams1')];
    const failing = specAt('ams1');
    fleet.host(failing.id).faults = [{ step: 'vlan', phase: 'verify', error: () => new VerificationError('injected', { step: 'vlan' }) }];
    const handles = await Promise.all([a, b, failing].map((s) => startOnboarding(env.client, s, { taskQueue: central, siteQueues: true })));
    await Promise.all(handles.slice(0, 2).map((h) => h.result()));
    await assert.rejects(handles[2]!.result(), (err: unknown) => /failed at VLAN/.test(describeFailure(err)));

    for (const [spec, h, site] of [
      [a, handles[0]!, 'fra1'],
      [b, handles[1]!, 'ams1'],
      [failing, handles[2]!, 'ams1'],
    ] as const) {
      const acts = await activityWorkers(h);
      assert.ok(acts.length >= 6, JSON.stringify(acts));
      for (const x of acts) {
        assert.equal(x.queue, siteTaskQueue(site, central), `${spec.id} ${x.activity}`);
        assert.equal(x.identity, `site-${site}`, `${spec.id} ${x.activity} ran on ${x.identity}`);
      }
      const records = ran.filter((r) => r.server === spec.id);
      assert.ok(records.length > 0 && records.every((r) => r.worker === `site-${site}`), JSON.stringify(records));
      const status = await h.query(statusQuery);
      assert.equal(status.stepQueue, siteTaskQueue(site, central));
      assert.equal(status.waitingForWorker, null);
    }
    // The failed one was compensated on its site too: rollbackVlans, rollbackBond, rollbackCabling.
    const undo = (await activityWorkers(handles[2]!)).filter((x) => x.activity.startsWith('rollback'));
    assert.deepEqual(
      undo.map((x) => [x.activity, x.identity]),
      [
        ['rollbackVlans', 'site-ams1'],
        ['rollbackBond', 'site-ams1'],
        ['rollbackCabling', 'site-ams1'],
      ],
    );
    assert.deepEqual(fleet.host(a.id).applyCalls(), RUNBOOK);
    // The central worker ran no step activity at all (it would have, had any been scheduled on its queue).
    assert.deepEqual(
      ran.filter((r) => r.worker === 'central' && SITE_ACTIVITY_NAMES.includes(r.activity)),
      [],
    );

    // A drift sweep with site queues: inventory and lookups central, observation on the server's site.
    fleet.host(a.id).drift('vlan');
    const dir = join(tmp, 'inv');
    mkdirSync(dir);
    writeFileSync(join(dir, `${a.id}.json`), JSON.stringify(a));
    const sweep = await startSweep(env.client, { inventoryDir: dir, mode: 'remediate', taskQueue: central, siteQueues: true });
    assert.equal((await sweep.result()).counts.remediated, 1);
    const check = await activityWorkers(env.client.workflow.getHandle(`drift-${a.id}`));
    assert.deepEqual(
      check.map((x) => [x.activity, x.identity]),
      [
        ['observeDrift', 'site-fra1'],
        ['configureVlans', 'site-fra1'],
      ],
    );
  });

  test('no worker for the site: status, CLI and Web UI say which site it waits for; a worker of that site starting lets it finish', async () => {
    const spec = specAt('lon1');
    const h = await startOnboarding(env.client, spec, { taskQueue: central, siteQueues: true, siteCheck: { after: '1s', every: '1s' } });
    let status: OnboardingStatus | undefined;
    for (let i = 0; i < 150 && !status?.waitingForWorker; i++) {
      await sleep(100);
      status = await h.query(statusQuery);
    }
    const wait = status?.waitingForWorker;
    assert.ok(wait, `never reported the missing worker: ${JSON.stringify(status)}`);
    assert.equal(wait.site, 'lon1');
    assert.equal(wait.taskQueue, siteTaskQueue('lon1', central));
    assert.match(wait.detail, /no worker polls it; start one there with `underlay worker --site lon1`/);
    assert.equal(status!.currentStep, 'cable');
    assert.match(renderStatus(status!), /⏳ since \d\d:\d\d:\d\dZ waiting for a worker of site lon1: task queue central-\d+-lon1/);
    const meta = await h.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    assert.match(meta.currentDetails ?? '', /⏳ \*\*No worker for site lon1\*\* since .*underlay worker --site lon1/);
    assert.deepEqual(fleet.host(spec.id).calls, [], 'nothing ran meanwhile');

    await siteWorker('lon1');
    const result = await h.result();
    for (const s of RUNBOOK) assert.equal(result.steps[s].state, 'done');
    assert.equal((await h.query(statusQuery)).waitingForWorker, null);
    assert.doesNotMatch((await h.query<{ currentDetails?: string }>('__temporal_workflow_metadata')).currentDetails ?? '', /No worker/);
  });

  test('`underlay worker --site par1` (the CLI command, as a process) polls only that site queue and runs its steps', async () => {
    const host = new FileHost();
    const bundleFile = join(tmp, 'bundle.js');
    writeFileSync(bundleFile, (await workflowBundle()).code);
    const p = spawnDetached(
      process.execPath,
      ['--import', join(root, 'node_modules/tsx/dist/loader.mjs'), join(root, 'test/helpers/service-worker.ts'), '--task-queue', central, '--site', 'par1'],
      {
        cwd: root,
        env: { ...process.env, HOME: tmp, TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default', FILE_HOST_DIR: host.dir, WORKFLOW_BUNDLE: bundleFile },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(p);
    let out = '';
    p.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 900 && !/polling task queue/.test(out); i++) {
      assert.equal(p.child.exitCode, null, out);
      await sleep(100);
    }
    assert.match(out, new RegExp(`polling task queue "central-\\d+-par1" \\(site par1: step activities\\)`), out);
    assert.doesNotMatch(out, new RegExp(`polling task queue "${central}"`), 'no central polling without --workflows');

    // The workflow on the in-process central worker; the steps on the process (its pid on the host's records).
    const centralFileHost = runInBackground(
      await createWorker({
        connection: env.nativeConnection,
        namespace: 'default',
        taskQueue: `${central}-fh`,
        workflowBundle: await workflowBundle(),
        activities: createActivities(nullConnector, fileHostSteps(host)),
      }),
    );
    workers.push(centralFileHost);
    const spec = specAt('par1');
    const h = await env.client.workflow.start('onboardServer', {
      taskQueue: `${central}-fh`,
      workflowId: onboardingWorkflowId(spec.id),
      args: [{ spec, stepRouting: { taskQueue: siteTaskQueue('par1', central), site: 'par1' } }],
    });
    await h.result();
    const events = host.events().filter((e) => e.server === spec.id && e.event === 'apply');
    assert.deepEqual(
      events.map((e) => e.step),
      [...RUNBOOK],
    );
    assert.ok(
      events.every((e) => e.pid === p.child.pid),
      `every step applied by the site worker process ${p.child.pid}: ${JSON.stringify(events.map((e) => e.pid))}`,
    );
    p.child.kill('SIGTERM');
    host.remove();
  });

  test('UNDERLAY_SITE_QUEUES is read strictly', () => {
    assert.equal(siteQueuesFromEnv({}), false);
    assert.equal(siteQueuesFromEnv({ UNDERLAY_SITE_QUEUES: 'yes' }), true);
    assert.equal(siteQueuesFromEnv({ UNDERLAY_SITE_QUEUES: '0' }), false);
    assert.throws(() => siteQueuesFromEnv({ UNDERLAY_SITE_QUEUES: 'fra1' }), /expected 1, true, yes, on or 0, false, no, off/);
  });
});
