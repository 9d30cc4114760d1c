/**
 * The drift Schedule on a real Temporal dev server: create, describe, trigger now, pause, resume, delete, the
 * overlap policy SKIP skipping sweeps while one still runs, and the `underlay drift …` commands against it.
 * Observation and the onboarding lookup are mocked (no hosts); everything Temporal does is real.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type ScheduleHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities, type OnboardingPlan } from '../../src/activities';
import { approveDrift, latestSweep, renderScheduleStatus, scheduleHandle, scheduleSweeps } from '../../src/cli/drift';
import { DRIFT_SCHEDULE_ID } from '../../src/common/config';
import { STEPS } from '../../src/steps';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import { createWorker } from '../../src/workers/worker';
import { FakeFleet, fleetSteps, nullConnector } from '../helpers/fake-steps';
import { startTemporal, workflowBundle, runInBackground, type BackgroundWorker } from '../helpers/temporal';
import { eventually } from '../helpers/eventually';

/** The steps this file's spec (examples/kvm-macvtap.yaml) runs: every step but dpdk, whose section it does not set. */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

const root = resolve(__dirname, '../..');
let env: TestWorkflowEnvironment;
let worker: BackgroundWorker | undefined;
let baseSpec: ServerSpec;
const taskQueue = `schedule-${process.pid}`;
const tmp = mkdtempSync(join(tmpdir(), 'underlay-schedule-'));

before(async () => {
  [env, baseSpec] = await Promise.all([startTemporal(), loadSpecFile('examples/kvm-macvtap.yaml')]);
  const activities = {
    ...createActivities(nullConnector, fleetSteps(new FakeFleet())),
    onboardingState: async () => ({ state: 'onboarded' as const, detail: 'mocked' }),
    // Every server has drifted at the VLAN step.
    observeDrift: async (spec: ServerSpec): Promise<OnboardingPlan> => ({
      serverId: spec.id,
      steps: RUNBOOK.map((step) => ({ step, applies: true, changes: step === 'vlan' ? [{ field: 'bond0.200', from: null, to: 'present' }] : [] })),
    }),
  };
  worker = runInBackground(
    await createWorker({ connection: env.nativeConnection, namespace: 'default', taskQueue, workflowBundle: await workflowBundle(), activities }),
  );
});
after(async () => {
  await worker?.stop();
  await env?.teardown();
  rmSync(tmp, { recursive: true, force: true });
});

function inventory(name: string, ids: string[]): string {
  const dir = join(tmp, name);
  mkdirSync(dir);
  for (const id of ids) writeFileSync(join(dir, `${id}.json`), JSON.stringify({ ...baseSpec, id }));
  return dir;
}

/** Polls (bounded: 30 s) until `ok` holds for the schedule's description. */
async function until(handle: ScheduleHandle, what: string, ok: (d: Awaited<ReturnType<ScheduleHandle['describe']>>) => boolean) {
  let d = await handle.describe();
  for (let i = 0; i < 150 && !ok(d); i++) {
    await new Promise((r) => setTimeout(r, 200));
    d = await handle.describe();
  }
  assert.ok(ok(d), `${what}: ${JSON.stringify(d.info)}`);
  return d;
}

function underlay(...args: string[]) {
  const r = spawnSync(join(root, 'bin/underlay'), args, {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('the drift Schedule on a real Temporal dev server', () => {
  test('create, describe, trigger now, pause, resume, replace, delete — and the CLI on it', async () => {
    const dir = inventory('two', ['sched-a', 'sched-b']);
    await assert.rejects(
      scheduleSweeps(env.client, { every: '1h', cron: '0 3 * * *', mode: 'report', inventoryDir: dir }),
      /exactly one of --every <interval> and --cron <expression>/,
    );
    await assert.rejects(
      scheduleSweeps(env.client, { every: 'soon', mode: 'report', inventoryDir: dir }),
      /--every: expected a duration such as 30m, 1h or 1d, got "soon"/,
    );
    const { handle, created } = await scheduleSweeps(env.client, { every: '1h', mode: 'report', inventoryDir: dir, taskQueue, paused: false });
    assert.ok(created);
    assert.equal(handle.scheduleId, DRIFT_SCHEDULE_ID);
    let d = await handle.describe();
    assert.equal(d.policies.overlap, ScheduleOverlapPolicy.SKIP);
    assert.equal(d.spec.intervals?.[0]?.every, 3_600_000);
    assert.equal(d.action.workflowType, 'driftSweep');
    assert.deepEqual(d.action.args, [{ inventoryDir: dir, mode: 'report' }]);
    assert.equal(d.state.paused, false);
    assert.ok(d.info.nextActionTimes.length > 0 && d.info.nextActionTimes[0]!.getTime() > Date.now() - 1000);

    // Trigger now: one sweep, which reports both servers drifted.
    await handle.trigger(ScheduleOverlapPolicy.SKIP);
    d = await until(handle, 'the triggered sweep was started', (x) => x.info.recentActions.length === 1);
    const wfId = d.info.recentActions[0]!.action.workflow.workflowId;
    assert.match(wfId, new RegExp(`^${DRIFT_SCHEDULE_ID}-sweep-`));
    const summary = await env.client.workflow.getHandle(wfId).result();
    assert.equal(summary.counts.drifted, 2);
    // Visibility (the list of closed sweeps) trails the completion by a moment.
    const latest = await eventually(
      'the triggered sweep listed as the latest',
      async () => {
        const l = await latestSweep(env.client);
        return l?.workflowId === wfId && l;
      },
      10_000,
    );
    assert.equal(latest?.workflowId, wfId);

    const status = await renderScheduleStatus(env.client, await handle.describe());
    assert.match(status, /schedule underlay-drift: active/);
    assert.match(status, /every 1h · mode report/);
    assert.match(status, /overlap SKIP/);
    assert.match(status, new RegExp(`${wfId}\\s+completed`));

    await handle.pause('maintenance window');
    d = await handle.describe();
    assert.equal(d.state.paused, true);
    assert.equal(d.state.note, 'maintenance window');
    const cliStatus = underlay('drift', 'status');
    assert.equal(cliStatus.code, 0, cliStatus.err);
    assert.match(cliStatus.out, /schedule underlay-drift: PAUSED \(maintenance window\)/);
    assert.match(cliStatus.out, /next runs: \(paused\)/);
    const cliResume = underlay('drift', 'resume');
    assert.equal(cliResume.code, 0, cliResume.err);
    assert.equal((await handle.describe()).state.paused, false);

    const report = underlay('drift', 'report');
    assert.equal(report.code, 0, report.err);
    assert.match(report.out, new RegExp(`${wfId} · mode report`));
    assert.match(report.out, /2 server\(s\): 0 clean · 2 drifted/);
    assert.match(report.out, /sched-a\s+drifted\s+vlan\s+vlan: bond0\.200 null → "present"/);

    // Scheduling again replaces the spec and the action of the same Schedule.
    const again = await scheduleSweeps(env.client, { cron: '0 3 * * *', mode: 'remediate', inventoryDir: dir, taskQueue });
    assert.equal(again.created, false);
    d = await handle.describe();
    assert.deepEqual(d.action.args, [{ inventoryDir: dir, mode: 'remediate' }]);
    assert.ok(d.spec.calendars?.length, 'the cron expression became a calendar spec');
    assert.equal(d.info.nextActionTimes[0]!.getUTCHours(), 3);

    const del = underlay('drift', 'unschedule');
    assert.equal(del.code, 0, del.err);
    await assert.rejects(handle.describe(), ScheduleNotFoundError);
    await assert.rejects(scheduleHandle(env.client), /no drift schedule underlay-drift: create it with `underlay drift schedule/);
  });

  test('overlap policy SKIP: while a sweep runs (waiting for an approval), the next ones are skipped', async () => {
    const dir = inventory('one', ['sched-c']);
    const scheduleId = `${DRIFT_SCHEDULE_ID}-overlap`;
    const { handle } = await scheduleSweeps(env.client, { scheduleId, every: '1s', mode: 'approve', approvalTimeout: '2m', inventoryDir: dir, taskQueue });
    try {
      const d = await until(
        handle,
        'a sweep runs and later ones are skipped',
        (x) => x.info.runningActions.length === 1 && x.info.numActionsSkippedOverlap >= 2,
      );
      assert.equal(d.info.numActionsTaken, 1, 'no second sweep started');
      const running = d.info.runningActions[0]!.workflow.workflowId;
      // A manual trigger with SKIP is refused in the same way.
      await handle.trigger(ScheduleOverlapPolicy.SKIP);
      await handle.pause('test done');
      const after = await handle.describe();
      assert.equal(after.info.numActionsTaken, 1);
      assert.equal(after.info.runningActions[0]?.workflow.workflowId, running);

      // Rejecting the approval lets the sweep finish: the server stays reported drifted, nothing changed.
      await approveDrift(env.client, 'sched-c', { approve: false, by: 'test' });
      const s = await env.client.workflow.getHandle(running).result();
      assert.equal(s.counts.drifted, 1);
      assert.match(s.servers[0]!.reason!, /rejected by test/);
    } finally {
      await handle.delete();
    }
  });
});
