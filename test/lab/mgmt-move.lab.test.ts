/**
 * Commit-confirmed management moves (issue 12) on a real Debian VM managed over its data NIC: server1 (image
 * `networkd`, UNDERLAY_LAB_DATA_MGMT=1) is reached at first only through eth1 (198.18.10.21, the switch forwards
 * 127.0.0.1:BASE+21); the bond takes eth1 and the management address moves onto bond0.100 (192.0.2.21, forwarded
 * at 127.0.0.1:BASE+41). One lab boot; the host's state flows through the scenarios:
 *
 *   1. a wrong VLAN tag for the new path: the host becomes unreachable, rolls itself back inside the window, the
 *      step fails naming the window and the rollback, the old path answers with the pre-state;
 *   2. the worker SIGKILLed between arm and confirm: a new worker's retry never applies again — it confirms over the
 *      new path (or sees the rollback), and the workflow's result says which; rolled back, the VM is put back
 *      (QEMU loadvm); confirmed, the host stays moved for 3;
 *   3. straight through: cable and bond (the move, confirmed in one attempt) unless 2 confirmed it already; the VLAN
 *      step over the new path, the bond step again (nothing to change); one reboot; the host answers on the new path
 *      only, nothing of the transaction left;
 *   4. the rollback of the moved host (the production rollbackServer workflow on a worker; only its lookup of the
 *      onboarding's result is given the pre-states of 2/3, as no onboarding workflow ran here): the VLAN step's undo
 *      leaves the management VLAN to the bond's, which moves management back to the initial path as one
 *      commit-confirmed transaction; the host answers on the old path with its pre-onboarding state, nothing left.
 *
 * Metrics: this process installs the Runtime with a Prometheus exporter first (the in-process steps and workers
 * record on it), and the SIGKILL scenario's worker process serves its own; the last test scrapes both and checks
 * underlay_mgmt_move_total against what the scenarios saw.
 *
 * Its own lab (dir .lab-move, ports 24600+, one server + the switch), so it runs next to the other lab files: in
 * `npm test` on the lane of the VM-less files (scripts/test.sh); alone: `npm run test:lab-move`. Its figures are in
 * docs/management-move.md. Each step's progress notes are printed with their time, and an unexpected outcome
 * of the SIGKILL scenario prints the failure chain and the workflow's activity events.
 * UNDERLAY_MOVE_LAB_REUSE=1 runs it against an already booted lab (UNDERLAY_LAB_DIR / _PORT_BASE), for development
 * (a confirmed SIGKILL scenario leaves the host moved: restore your own snapshot before the next run).
 * UNDERLAY_MOVE_KILL_LATE=1 (by hand) starts the SIGKILL scenario's new worker after the window: the retry must
 * see the host's rollback.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ActivityFailure, ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { bondStep } from '../../src/activities/bond';
import { cableStep } from '../../src/activities/cable';
import { sshConnector } from '../../src/activities/connect';
import type { StepChoice, StepResult } from '../../src/activities/step';
import type { StepName } from '../../src/steps';
import { vlanStep } from '../../src/activities/vlan';
import type { ServerSpec, ServerSpecInput } from '../../src/spec/server';
import { applicationFailureOf } from '../helpers/failures';
import type { MoveMark } from '../../src/activities/move';
import { createActivities, stepSetOf } from '../../src/activities';
import { createWorker } from '../../src/workers/worker';
import { bundleWorkflowCode, Runtime } from '@temporalio/worker';
import { spawnDetached } from '../helpers/detached';
import { installRuntime, startTemporal, workflowBundle } from '../helpers/temporal';
import { metricsRuntimeOptions } from '../../src/workers/step-metrics';
import { MOVE_CONFIRM_METRIC, MOVE_COUNT_METRIC } from '../../src/activities/move';
import type { RollbackPlan } from '../../src/activities/rollback';
import { startRollback } from '../../src/cli/onboarding';
import { freshLab, onHost, restoreVm, snapshotVm, stopLab } from '../helpers/lab';
import { rebootVm } from '../helpers/lab-host';
import { total } from '../helpers/prometheus';
import { freePort } from '../helpers/sshd';
import { answers, journal, moveInputOf, netState, newPath, oldPath, runOn as runOnHost, secs, silent, specOf } from '../helpers/mgmt-move';

const root = resolve(__dirname, '../..');
// Read by lab/up.sh and lab/down.sh (through freshLab/stopLab) at call time.
process.env.UNDERLAY_LAB_DIR ??= resolve(root, '.lab-move');
process.env.UNDERLAY_LAB_PORT_BASE ??= '24600';
process.env.UNDERLAY_LAB_SERVERS = '1';
const LAB: string = process.env.UNDERLAY_LAB_DIR;
/** UNDERLAY_MOVE_KILL_LATE=1: the SIGKILL scenario starts the new worker only after the window (the rollback branch). */
const KILL_LATE = process.env.UNDERLAY_MOVE_KILL_LATE === '1';
/** The window of the moves that are meant to be confirmed (see the SIGKILL scenario). */
const MOVE_WINDOW = 150;
/** Set when the SIGKILL scenario's retry confirmed the move: the straight-through scenario goes on from there. */
let movedBy: string | undefined;
/** For the rollback scenario: the host's network state before any scenario, and the pre-states the steps observed. */
let preOnboarding: Awaited<ReturnType<typeof netState>> | undefined;
let bondPre: unknown;
let vlanPre: unknown;
/** What the metric must count (purpose → outcome → n), tallied from what the scenarios saw: this process's endpoint… */
const counted: Record<string, Record<string, number>> = {};
const tally = (purpose: string, outcome: string) => ((counted[purpose] ??= {})[outcome] = (counted[purpose]![outcome] ?? 0) + 1);
/** …and what the SIGKILL scenario's worker process had counted when it was killed (scraped just before). */
let killedWorkerMetrics: string | undefined;
let metricsAddress = '';

const figures: Record<string, string> = {};
/** Steps run in-process count on this process's Prometheus endpoint (the Runtime's meter), as a worker's would. */
const runOn = (name: StepName, step: StepChoice, raw: unknown): Promise<StepResult> => runOnHost(name, step, raw, name, Runtime.instance().metricMeter);

let started = 0;
let env: TestWorkflowEnvironment | undefined;

/** server1 with management moving onto bond0.<tag> (tag 100 is what the switch trunks and forwards to). */
const moveInput = (opts: { tag?: number; windowSec: number; id?: string }): ServerSpecInput => moveInputOf(LAB, 'server1', opts);

/** Prints the pending activity's attempt and progress note while the workflow runs (every 2 s, bounded by `stop`). */
function watchNotes(handle: WorkflowHandle, t0: number): { stop(): Promise<void> } {
  let stopped = false;
  let last = '';
  const loop = (async () => {
    for (let i = 0; i < 1_800 && !stopped; i++) {
      const d = await handle.describe().catch(() => undefined);
      const pending = d?.raw.pendingActivities?.[0];
      const payload = pending?.heartbeatDetails?.payloads?.at(-1);
      const note = payload ? (defaultPayloadConverter.fromPayload(payload as never) as { note?: string }).note : undefined;
      const line = `attempt ${pending?.attempt ?? '-'} ${pending?.state ?? ''}: ${note ?? ''}`;
      if (pending && line !== last) console.log(`  [kill +${secs(Date.now() - t0)}] ${(last = line)}`);
      await sleep(2_000);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

/** An unexpected workflow outcome, in full: the failure chain and the activity events of the history. */
async function diagnosis(handle: WorkflowHandle, err: Error): Promise<string> {
  const chain: string[] = [];
  for (let e: unknown = err, i = 0; e && i < 8; e = (e as { cause?: unknown }).cause, i++) {
    const f = e as { name?: string; type?: string; message?: string; nonRetryable?: boolean; details?: unknown };
    chain.push(`${f.name}${f.type ? ` (${f.type}${f.nonRetryable ? ', non-retryable' : ''})` : ''}: ${f.message}`);
  }
  const history = await handle.fetchHistory().catch(() => undefined);
  const events = (history?.events ?? []).map((ev) => {
    const attrs = Object.entries(ev).find(([k, v]) => k.endsWith('EventAttributes') && v) as [string, Record<string, unknown>] | undefined;
    const a = attrs?.[1] ?? {};
    const failure = (a.failure ?? a.lastFailure) as { message?: string; applicationFailureInfo?: { type?: string } } | undefined;
    const when = ev.eventTime?.seconds ? new Date(Number(ev.eventTime.seconds) * 1000).toISOString().slice(11, 19) : '';
    return `  ${ev.eventId} ${when} ${attrs?.[0] ?? '?'}${a.attempt ? ` attempt ${String(a.attempt)}` : ''}${a.timeoutType ? ` timeout ${String(a.timeoutType)}` : ''}${failure ? ` — ${failure.applicationFailureInfo?.type ?? ''}: ${failure.message}` : ''}`;
  });
  return `unexpected outcome of the SIGKILL scenario:\n${chain.map((c) => `  ${c}`).join('\n  caused by ')}\nhistory:\n${events.join('\n')}`;
}

before(async () => {
  started = Date.now();
  // First: the process-global Runtime with a Prometheus exporter (startTemporal then leaves it alone).
  metricsAddress = `127.0.0.1:${await freePort()}`;
  installRuntime(metricsRuntimeOptions(metricsAddress));
  if (process.env.UNDERLAY_MOVE_LAB_REUSE !== '1') freshLab(1, { images: ['networkd'], dataMgmt: [1] });
  else process.env.UNDERLAY_CREDENTIALS_DIR = LAB!;
  figures['lab boot'] = secs(Date.now() - started);
});

after(async () => {
  await env?.teardown();
  if (process.env.UNDERLAY_MOVE_LAB_REUSE !== '1') stopLab();
  figures['whole file (boot included)'] = secs(Date.now() - started);
  console.log(
    `figures:\n${Object.entries(figures)
      .map(([k, v]) => `  ${k}: ${v}`)
      .join('\n')}`,
  );
});

describe('commit-confirmed management move on a lab host managed over its data NIC', () => {
  test('wrong VLAN tag for the new path: unreachable, the host rolls itself back inside the window, the step fails naming both', async () => {
    // The spec's shortest window (30 s): a rollback waits all of it out, and no confirm can win here anyway; a
    // change still running when the timer fires is stopped by restore.sh first (and the checks below see the pre-state).
    const input = moveInput({ tag: 101, windowSec: 30 });
    const spec = specOf(input);
    const pre = await netState(oldPath(spec));
    assert.equal(pre.session, '198.18.10.21', 'managed over eth1 before');
    preOnboarding = pre;
    const t0 = Date.now();
    const failure = await applicationFailureOf(runOn('bond', bondStep, input), 'the move not to be confirmed');
    assert.equal(failure.type, 'ManagementMoveError');
    assert.equal(failure.nonRetryable, true);
    assert.match(failure.message, /management onto bond0\.101 .* was not confirmed within its 30 s window/);
    assert.match(failure.message, /rolled itself back \(transaction bond-[0-9a-f]+\) and answers on the old path 127\.0\.0\.1:\d+ with its pre-state/);
    figures['wrong tag: arm → step failed after the self-rollback'] = secs(Date.now() - t0);
    tally('bond', 'armed');
    tally('bond', 'rolled_back');
    assert.equal(await answers(newPath(spec)), false, 'nothing answers on the new path');
    assert.deepEqual(await netState(oldPath(spec)), pre, 'links, addresses, networkd files and the session as before');
    const lines = await journal(oldPath(spec));
    const id = /transaction (bond-[0-9a-f]+)/.exec(failure.message)![1]!;
    const events = lines.filter((l) => l.includes(id)).map((l) => l.split(' ').slice(2).join(' '));
    // Under TCG the change itself may still be running when the timer fires: the rollback stops it first.
    assert.equal(events.filter((e) => e === 'change-start').length, 1, `applied once: ${events.join(', ')}`);
    assert.equal(events.at(-1), 'rolled-back timer', `rolled back by the timer: ${events.join(', ')}`);
    // Nothing left armed: no timer, no boot guard, no transaction directory.
    const left = await onHost(oldPath(spec), (run) =>
      run(
        `systemctl list-units --all --no-legend 'underlay-txn-*' | grep -v 'inactive\\|dead' || true; ls /etc/systemd/system | grep underlay-txn || true; ls /var/lib/underlay/txn`,
      ),
    );
    assert.equal(left.trim(), 'journal', 'no timer, no boot guard, the transaction removed once its rollback was verified');
  });

  test('worker SIGKILLed between arm and confirm: the retry on a new worker never applies again, and the result says confirmed or rolled back', async () => {
    // A confirmed move never waits its window out, so a long one costs nothing; 150 s leaves room for the heartbeat
    // timeout (30 s) before the retry starts and a slow TCG host, so that the retry confirms rather than racing the timer.
    const input = moveInput({ windowSec: MOVE_WINDOW });
    const spec = specOf(input);
    await snapshotVm('server1', 'pre-move');
    // The journal keeps every transaction of this host (the wrong-tag scenario's too): count only what follows.
    const earlier = (await journal(oldPath(spec))).length;
    env = await startTemporal();
    const taskQueue = `move-kill-${Date.now()}`;
    const childMetrics = `127.0.0.1:${await freePort()}`;
    const { kill } = spawnDetached(process.execPath, ['--import', 'tsx', resolve(root, 'test/helpers/move-worker.ts')], {
      cwd: root,
      env: { ...process.env, TEMPORAL_ADDRESS: env.address, TASK_QUEUE: taskQueue, UNDERLAY_METRICS_ADDRESS: childMetrics },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    try {
      const handle = await env.client.workflow.start('moveBond', { taskQueue, workflowId: `move-kill-${Date.now()}`, args: [input] });
      // Bounded (≤ 5 min): the arm recorded in the activity's heartbeat; then the worker dies at once.
      let mark: MoveMark | undefined;
      for (let i = 0; i < 600 && mark?.phase !== 'armed'; i++) {
        const d = await handle.describe().catch(() => undefined);
        const payload = d?.raw.pendingActivities?.[0]?.heartbeatDetails?.payloads?.[0];
        const details = payload ? (defaultPayloadConverter.fromPayload(payload as never) as { marks?: Record<string, unknown> }) : undefined;
        mark = details?.marks?.['move:bond'] as MoveMark | undefined;
        if (mark?.phase !== 'armed') await sleep(500);
      }
      assert.equal(mark?.phase, 'armed', 'the arm was recorded within 5 min');
      // What the doomed worker counted (its own endpoint), then it dies at once.
      killedWorkerMetrics = await fetch(`http://${childMetrics}/metrics`, { signal: AbortSignal.timeout(5_000) })
        .then((r) => r.text())
        .catch((err: unknown) => `unreadable: ${String(err)}`);
      kill();
      const killedAt = Date.now();
      // Opt-in (by hand): the new worker only starts once the host's timer has fired — the rollback branch of a retry.
      if (KILL_LATE) await sleep(Math.max(0, mark.deadline! - Date.now() + 5_000));
      const worker = await createWorker({
        connection: env.nativeConnection,
        namespace: 'default',
        taskQueue,
        workflowBundle: await bundleWorkflowCode({ workflowsPath: require.resolve('../helpers/move-workflow'), logger: silent }),
        activities: createActivities(sshConnector, stepSetOf('kvm')),
        dataConverter: undefined,
      });
      const watch = watchNotes(handle, killedAt);
      const outcome: StepResult | Error = await worker.runUntil(
        handle.result().then(
          (r: StepResult) => r,
          (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
        ),
      );
      await watch.stop();
      figures['kill: worker killed → workflow decided'] = secs(Date.now() - killedAt);
      let onHostSpec: ServerSpec;
      let confirmed = false;
      if (KILL_LATE) assert.ok(outcome instanceof Error, `the retry started after the window must see the rollback: ${JSON.stringify(outcome)}`);
      if (outcome instanceof Error) {
        // The workflow's failure wraps the activity's (ActivityFailure), which wraps the step's typed error.
        const activity = outcome instanceof WorkflowFailedError ? outcome.cause : undefined;
        const cause = activity instanceof ActivityFailure ? activity.cause : undefined;
        const rolledBack = cause instanceof ApplicationFailure && cause.type === 'ManagementMoveError';
        if (!rolledBack) console.log(await diagnosis(handle, outcome));
        assert.ok(rolledBack, `the step failed with ManagementMoveError: ${String(outcome)} ← ${String(activity)} ← ${String(cause)}`);
        assert.match(cause.message, new RegExp(`rolled itself back \\(transaction ${mark!.id}\\)`));
        figures['kill: outcome'] = `rolled back (${cause.message.slice(0, 160)}…)`;
        onHostSpec = oldPath(spec);
        tally('bond', 'resumed');
        tally('bond', 'rolled_back');
      } else {
        assert.ok(outcome.attempt >= 2, `finished on a retry (attempt ${outcome.attempt})`);
        assert.match(outcome.note ?? '', new RegExp(`commit-confirmed \\(window ${MOVE_WINDOW} s, confirmed \\d+ s after arming, transaction ${mark!.id}\\)`));
        figures['kill: outcome'] = `confirmed on attempt ${outcome.attempt} (${outcome.note})`;
        onHostSpec = newPath(spec);
        assert.equal((await netState(onHostSpec)).session, '192.0.2.21');
        confirmed = true;
        bondPre = outcome.pre;
        tally('bond', 'resumed');
        tally('bond', 'confirmed');
      }
      const events = (await journal(onHostSpec)).slice(earlier).map((l) => l.split(' ').slice(1).join(' '));
      assert.equal(events.filter((e) => e.endsWith('change-start')).length, 1, `one apply in all: ${events.join(', ')}`);
      assert.ok(events.includes(`${mark!.id} change-start`), 'the one apply is the transaction the first worker armed');
      if (confirmed) movedBy = `the SIGKILL scenario's retry (attempt ${(outcome as StepResult).attempt}, transaction ${mark!.id})`;
    } finally {
      kill();
      // Confirmed: the next scenario goes on from the moved host (a second move would only repeat this one's apply and
      // confirm). Otherwise back to the pre-move host (QEMU loadvm: seconds, no reboot), whatever happened.
      if (!movedBy) await restoreVm('server1', 'pre-move');
    }
  });

  test('straight through: the move is confirmed over bond0.100 (here, unless the SIGKILL retry confirmed it), the VLAN step completes over the new path, and after a reboot the host answers there', async () => {
    const input = moveInput({ windowSec: MOVE_WINDOW });
    const spec = specOf(input);
    if (movedBy) {
      figures['straight: the move'] = `confirmed by ${movedBy}; not repeated`;
    } else {
      const t0 = Date.now();
      await runOn('cable', cableStep, input);
      const bond = await runOn('bond', bondStep, input);
      figures['straight: the move'] = `in one attempt, cable + bond step (arm → confirm) ${secs(Date.now() - t0)}`;
      assert.equal(bond.changed, true);
      bondPre = bond.pre;
      tally('bond', 'armed');
      tally('bond', 'confirmed');
      assert.match(
        bond.note ?? '',
        new RegExp(`management onto bond0\\.100 .*: commit-confirmed \\(window ${MOVE_WINDOW} s, confirmed \\d+ s after arming, transaction bond-[0-9a-f]+\\)`),
      );
    }
    const vlan = await runOn('vlan', vlanStep, input);
    assert.equal(vlan.changed, true, 'VLAN 200 added next to the management VLAN');
    vlanPre = vlan.pre;
    assert.equal((await netState(newPath(spec))).session, '192.0.2.21', 'managed over bond0.100');
    assert.equal(await answers(oldPath(spec)), false, 'the old path is gone');
    const again = await runOn('bond', bondStep, input);
    assert.equal(again.attempt, 1);
    assert.deepEqual(again.changes, [], 'the bond step again over the new path: nothing to change, no second move');
    const tReboot = Date.now();
    const waited = await rebootVm(newPath(spec));
    figures['straight: reboot → answering on the new path'] = secs(waited);
    const onboarded = await netState(newPath(spec));
    assert.equal(onboarded.session, '192.0.2.21');
    assert.match(onboarded.links, /^bond0\.100@bond0 UP/m);
    assert.equal(await answers(oldPath(spec)), false, 'still not on the old path after the reboot');
    const left = await onHost(newPath(spec), (run) => run('ls /etc/systemd/system | grep underlay-txn || true; ls /var/lib/underlay/txn'));
    assert.equal(left.trim(), 'journal', 'confirmed: the timer, the boot guard and the transaction are gone');
    figures['straight: reboot part'] = secs(Date.now() - tReboot);
  });

  test('rollback of the moved host: the VLAN undo leaves the management VLAN to the bond undo, which moves management back to the initial path as one commit-confirmed transaction; the pre-onboarding state answers there', async () => {
    const tScenario = Date.now();
    assert.ok(preOnboarding && bondPre && vlanPre, 'the earlier scenarios left a moved, onboarded host and the pre-states of its steps');
    const input = moveInput({ windowSec: MOVE_WINDOW });
    const spec = specOf(input);
    const earlier = (await journal(newPath(spec))).length;
    env ??= await startTemporal();
    const taskQueue = `move-undo-${Date.now()}`;
    // What `underlay rollback` loads from the onboarding's result (newest first); no onboarding workflow ran here.
    const plan: RollbackPlan = {
      serverId: spec.id,
      spec,
      runId: 'mgmt-move-lab',
      completedAt: null,
      compensations: [
        { step: 'vlan', pre: vlanPre },
        { step: 'bond', pre: bondPre },
      ],
    };
    const worker = await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: { ...createActivities(sshConnector, stepSetOf('kvm')), loadRollback: async () => plan },
      dataConverter: undefined,
    });
    const t0 = Date.now();
    figures['undo: worker set up (workflow bundle)'] = secs(t0 - tScenario);
    const handle = await startRollback(env.client, plan, { taskQueue, siteQueues: false });
    const result = await worker.runUntil(handle.result());
    figures['undo: rollback workflow (VLAN undo, reverse move confirmed)'] = secs(Date.now() - t0);
    const outcomes = Object.fromEntries(result.compensations.map((c) => [c.step, c]));
    assert.equal(outcomes.vlan?.outcome, 'restored', JSON.stringify(outcomes.vlan));
    assert.equal(outcomes.bond?.outcome, 'restored', JSON.stringify(outcomes.bond));
    tally('bond-undo', 'armed');
    tally('bond-undo', 'confirmed');
    // The pre-onboarding state, on the old path; the new one silent.
    assert.deepEqual(await netState(oldPath(spec)), preOnboarding, 'links, addresses, networkd files and the session as before onboarding');
    assert.equal(await answers(newPath(spec)), false, 'nothing answers on the new path');
    const events = (await journal(oldPath(spec))).slice(earlier).map((l) => l.split(' ').slice(1).join(' '));
    const id = /^(bond-undo-[0-9a-f]+) change-start$/.exec(events.find((e) => e.startsWith('bond-undo-')) ?? '')?.[1];
    assert.ok(id, `the undo ran as a transaction: ${events.join(', ')}`);
    // The change's exit and the confirm may be journalled in either order (the change is detached).
    assert.deepEqual(
      events.filter((e) => e.startsWith(`${id} `)).sort(),
      [`${id} change-exit 0`, `${id} change-start`, `${id} confirmed`],
      'one change, confirmed',
    );
    assert.equal(events.length, 3, `no other transaction: ${events.join(', ')}`);
    const left = await onHost(oldPath(spec), (run) =>
      run(
        `systemctl list-units --all --no-legend 'underlay-txn-*' | grep -v 'inactive\\|dead' || true; ls /etc/systemd/system | grep underlay-txn || true; ls /var/lib/underlay/txn`,
      ),
    );
    assert.equal(left.trim(), 'journal', 'no timer, no boot guard, no transaction directory');
    figures['undo: scenario'] = secs(Date.now() - tScenario);
  });

  test('metrics: underlay_mgmt_move_total counts every transaction by outcome, as the scenarios saw them', async () => {
    const text = await (await fetch(`http://${metricsAddress}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    const seen: Record<string, Record<string, number>> = {};
    for (const purpose of ['bond', 'bond-undo'])
      for (const outcome of ['armed', 'resumed', 'confirmed', 'rolled_back', 'failed']) {
        const n = total(text, MOVE_COUNT_METRIC, { step: 'bond', purpose, outcome });
        if (n) (seen[purpose] ??= {})[outcome] = n;
      }
    figures['metrics: this process'] = JSON.stringify(seen);
    assert.deepEqual(seen, counted, 'this process (in-process steps, the retry worker, the rollback worker)');
    const confirms = Object.values(counted).reduce((n, o) => n + (o.confirmed ?? 0), 0);
    assert.equal(total(text, `${MOVE_CONFIRM_METRIC}_count`, { step: 'bond' }), confirms, 'one arm → confirm duration per confirm');
    // The SIGKILL scenario's first worker (its own process and endpoint, scraped just before the kill): it armed.
    assert.ok(killedWorkerMetrics, 'the killed worker was scraped');
    figures['metrics: the killed worker'] = `armed ${total(killedWorkerMetrics, MOVE_COUNT_METRIC, { purpose: 'bond', outcome: 'armed' })}`;
    assert.equal(total(killedWorkerMetrics, MOVE_COUNT_METRIC, { step: 'bond', purpose: 'bond', outcome: 'armed' }), 1, killedWorkerMetrics.slice(0, 300));
  });
});
