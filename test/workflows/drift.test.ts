/**
 * Drift sweeps and checks on a real Temporal dev server. Servers are onboarded for real (onboardServer over the
 * fake hosts of test/helpers/fake-steps.ts), then changed "by hand" (FakeHost.drift); the drift workflows run
 * the real activities — inventory files, onboarding lookups through the worker's client, observation through
 * planOnboarding, remediation through the step runner. The fan-out test mocks only the per-server activities.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities, type OnboardingPlan } from '../../src/activities';
import { loadInventoryPage } from '../../src/activities/drift';
import { approveDrift, latestSweep, renderSweepReport, startSweep } from '../../src/cli/drift';
import { DriftRemediationRunningError, startOnboarding } from '../../src/cli/onboarding';
import { driftWorkflowId } from '../../src/common/config';
import { VerificationError } from '../../src/common/errors';
import { SA_DRIFT_STATUS, SA_DRIFTED_STEPS, SA_LAST_CHECKED } from '../../src/common/search-attributes';
import { STEPS } from '../../src/steps';
import { loadSpecFile } from '../../src/spec/load';
import type { ServerSpec } from '../../src/spec/server';
import type { driftCheck } from '../../src/workflows/drift';
import { driftProgressQuery, type DriftCheckProgress, type DriftMode } from '../../src/workflows/drift-messages';
import { createWorker } from '../../src/workers/worker';
import { FakeFleet, fleetSteps, nullConnector } from '../helpers/fake-steps';
import { startTemporal, workflowBundle, runInBackground, type BackgroundWorker } from '../helpers/temporal';
import { eventually } from '../helpers/eventually';

/** The steps this file's spec (examples/kvm-macvtap.yaml) runs: every step but dpdk, whose section it does not set. */
const RUNBOOK = STEPS.filter((s) => s !== 'dpdk');

let env: TestWorkflowEnvironment;
let baseSpec: ServerSpec;
let worker: BackgroundWorker | undefined;
const fleet = new FakeFleet();
const taskQueue = `drift-${process.pid}`;
const tmp = mkdtempSync(join(tmpdir(), 'underlay-drift-'));
let seq = 0;

before(async () => {
  [env, baseSpec] = await Promise.all([startTemporal(), loadSpecFile('examples/kvm-macvtap.yaml')]);
  worker = runInBackground(
    await createWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(nullConnector, fleetSteps(fleet)),
    }),
  );
});
after(async () => {
  await worker?.stop();
  await env?.teardown();
  rmSync(tmp, { recursive: true, force: true });
});

function nextSpec(): ServerSpec {
  return { ...baseSpec, id: `d${process.pid}-${++seq}` };
}

/** A real, completed onboarding of a fresh fake host; its calls are then forgotten. */
async function onboarded(spec = nextSpec()): Promise<ServerSpec> {
  const h = await startOnboarding(env.client, spec, { taskQueue });
  await h.result();
  fleet.host(spec.id).calls = [];
  return spec;
}

/** An inventory directory holding these specs (one <id>.json each) and any extra raw files. */
function inventory(specs: ServerSpec[], extra: Record<string, string> = {}): string {
  const dir = join(tmp, `inv-${++seq}`);
  mkdirSync(dir);
  for (const s of specs) writeFileSync(join(dir, `${s.id}.json`), JSON.stringify(s));
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, name), text);
  return dir;
}

function startCheck(spec: ServerSpec, mode: DriftMode, approvalTimeout: Duration = '1m'): Promise<WorkflowHandle<typeof driftCheck>> {
  return env.client.workflow.start<typeof driftCheck>('driftCheck', {
    taskQueue,
    workflowId: driftWorkflowId(spec.id),
    memo: { mode },
    args: [{ spec, mode, approvalTimeout }],
  });
}

/** Polls the check's progress query (bounded: 20 s) until it reaches `phase`. */
async function untilPhase(h: WorkflowHandle, phase: DriftCheckProgress['phase']): Promise<DriftCheckProgress> {
  let last: DriftCheckProgress | undefined;
  for (let i = 0; i < 200; i++) {
    last = await h.query(driftProgressQuery).catch(() => undefined);
    if (last?.phase === phase) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`drift check never reached ${phase}: ${JSON.stringify(last)}`);
}

async function searchAttributes(h: WorkflowHandle) {
  const sa = (await h.describe()).typedSearchAttributes;
  return { status: sa.get(SA_DRIFT_STATUS), steps: sa.get(SA_DRIFTED_STEPS), lastChecked: sa.get(SA_LAST_CHECKED) };
}

/**
 * A report sweep over `n` generated spec files on its own worker, where only the per-server activities are
 * mocked: every server is onboarded, and every 50th has drifted at the VLAN step.
 */
async function mockedSweep(prefix: string, n: number, o: { concurrency: number; pageSize: number; observeMs: number }) {
  const dir = join(tmp, `${prefix}-${n}`);
  mkdirSync(dir);
  for (let i = 0; i < n; i++) {
    const id = `${prefix}${String(i).padStart(4, '0')}`;
    writeFileSync(join(dir, `${id}.json`), JSON.stringify({ ...baseSpec, id }));
  }
  let inFlight = 0;
  let maxInFlight = 0;
  const queue = `${taskQueue}-${prefix}`;
  const w = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue: queue,
    workflowBundle: await workflowBundle(),
    activities: {
      ...createActivities(nullConnector, fleetSteps(fleet)),
      onboardingState: async () => ({ state: 'onboarded', detail: 'mocked' }),
      findUnmanaged: async () => ({ count: 0, serverIds: [] }),
      observeDrift: async (spec: ServerSpec): Promise<OnboardingPlan> => {
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await new Promise((r) => setTimeout(r, o.observeMs));
        inFlight--;
        const drifted = Number(spec.id.slice(prefix.length)) % 50 === 7;
        return {
          serverId: spec.id,
          steps: RUNBOOK.map((step) => ({
            step,
            applies: true,
            changes: step === 'vlan' && drifted ? [{ field: 'bond0.200', from: null, to: { id: 200 } }] : [],
          })),
        };
      },
    },
  });
  const started = Date.now();
  return w.runUntil(async () => {
    const handle = await startSweep(env.client, { inventoryDir: dir, mode: 'report', concurrency: o.concurrency, pageSize: o.pageSize, taskQueue: queue });
    const summary = await handle.result();
    return { handle, summary, maxInFlight, elapsedMs: Date.now() - started };
  });
}

test('inventory pages: a file-name cursor; invalid, misnamed and duplicate files reported with their issues', async () => {
  const [a, b] = [nextSpec(), nextSpec()];
  const dir = inventory([a, b], { [`${a.id}.yaml`]: JSON.stringify(a), 'zz-bad.yaml': 'id: zz-bad\nnics: 3\n', 'notes.txt': 'ignored' });
  const first = await loadInventoryPage({ dir, pageSize: 2 });
  assert.deepEqual(first.servers, []);
  assert.deepEqual(
    first.invalid.map((f) => f.file),
    [`${a.id}.json`, `${a.id}.yaml`],
  );
  assert.match(first.invalid[0]!.issues[0]!.message, new RegExp(`also described by ${a.id}\\.yaml: keep one file per server`));
  assert.equal(first.nextPageToken, `${a.id}.yaml`);
  const second = await loadInventoryPage({ dir, pageSize: 2, pageToken: first.nextPageToken });
  assert.deepEqual(
    second.servers.map((s) => s.id),
    [b.id],
  );
  assert.deepEqual(
    second.invalid.map((f) => f.file),
    ['zz-bad.yaml'],
  );
  assert.ok(
    second.invalid[0]!.issues.some((i) => i.path === 'nics'),
    JSON.stringify(second.invalid),
  );
  assert.equal(second.nextPageToken, undefined);
  await assert.rejects(loadInventoryPage({ dir: join(tmp, 'missing'), pageSize: 10 }), /inventory cannot be read: inventoryDir: .*ENOENT/);
});

describe('drift detection and remediation on a real Temporal dev server', () => {
  test('report sweep: exactly the drifted steps, nothing changed; invalid, not-onboarded and unmanaged servers reported', async () => {
    const [drifted, clean, unmanaged] = [await onboarded(), await onboarded(), await onboarded()];
    const never = nextSpec();
    fleet.host(drifted.id).drift('vlan', 'sriov');
    const dir = inventory([drifted, clean, never], {
      'broken.yaml': 'id: broken\nsite: [unclosed\n',
      'misnamed.json': JSON.stringify({ ...clean, id: 'someone-else' }),
    });

    const sweep = await startSweep(env.client, { inventoryDir: dir, mode: 'report', taskQueue });
    const s = await sweep.result();
    assert.deepEqual(
      { ...s.counts, unmanaged: undefined },
      { servers: 3, clean: 1, drifted: 1, needsOperator: 0, remediated: 0, failed: 0, skipped: 0, notOnboarded: 1, invalid: 2, unmanaged: undefined },
      renderSweepReport(s),
    );
    const row = s.servers.find((r) => r.serverId === drifted.id)!;
    assert.equal(row.status, 'drifted');
    assert.deepEqual(row.driftedSteps, ['vlan', 'sriov']);
    assert.deepEqual(
      row.diffs.map((d) => [d.step, d.changes]),
      [
        ['vlan', [{ field: 'vlan', from: 'drifted', to: 'applied' }]],
        ['sriov', [{ field: 'sriov', from: 'drifted', to: 'applied' }]],
      ],
    );
    assert.deepEqual(s.notOnboarded, [never.id]);
    assert.deepEqual(
      s.invalid.map((f) => f.file),
      ['broken.yaml', 'misnamed.json'],
    );
    assert.match(s.invalid[1]!.issues[0]!.message, /file name says misnamed/);
    assert.ok(s.unmanaged.includes(unmanaged.id), `unmanaged: ${s.unmanaged.join(', ')}`);
    assert.ok(!s.unmanaged.includes(drifted.id));

    assert.deepEqual(fleet.host(drifted.id).calls, [], 'report changes nothing');
    assert.equal(fleet.host(drifted.id).state.vlan, 'drifted');
    assert.equal(fleet.host(never.id).calls.length, 0, 'a server never onboarded is not even observed for change');
    const sa = await searchAttributes(env.client.workflow.getHandle(driftWorkflowId(drifted.id)));
    assert.equal(sa.status, 'drifted');
    assert.deepEqual(sa.steps, ['vlan', 'sriov']);
    assert.ok(sa.lastChecked instanceof Date && Date.now() - sa.lastChecked.getTime() < 120_000);
    assert.equal((await searchAttributes(env.client.workflow.getHandle(driftWorkflowId(clean.id)))).status, 'clean');

    const table = renderSweepReport(s);
    assert.match(table, new RegExp(`${drifted.id}\\s+drifted\\s+vlan,sriov\\s+vlan: vlan "drifted" → "applied"`));
    assert.match(table, /broken\.yaml: /);
    // Visibility (the list of closed sweeps) trails the sweep's completion by a moment.
    const latest = await eventually(
      'the sweep listed as the latest',
      async () => {
        const l = await latestSweep(env.client);
        return l?.workflowId === sweep.workflowId && l;
      },
      10_000,
    );
    assert.equal(latest?.workflowId, sweep.workflowId);
  });

  test('remediate sweep: re-applies only the drifted steps with the onboarding activities, verified', async () => {
    const spec = await onboarded();
    const host = fleet.host(spec.id);
    host.drift('vlan', 'sriov');
    const s = await (await startSweep(env.client, { inventoryDir: inventory([spec]), mode: 'remediate', taskQueue })).result();
    assert.equal(s.counts.remediated, 1, renderSweepReport(s));
    assert.deepEqual(host.applyCalls(), ['vlan', 'sriov']);
    for (const st of RUNBOOK) assert.equal(host.state[st], 'applied', st);
    const r = s.servers[0]!;
    assert.equal(r.status, 'remediated');
    assert.deepEqual(r.remediation?.steps, ['vlan', 'sriov']);
    const h = env.client.workflow.getHandle(driftWorkflowId(spec.id));
    assert.deepEqual(await searchAttributes(h).then((a) => [a.status, a.steps]), ['remediated', ['vlan', 'sriov']]);
    const events = (await h.fetchHistory()).events!;
    const scheduled = events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    assert.deepEqual(scheduled, ['observeDrift', 'configureVlans', 'enableSriov'], 'one observation, then only the drifted steps');
    assert.equal(
      events.filter((e) => e.markerRecordedEventAttributes).length,
      2,
      'onboarding looked up (local activity) before observing and again before changing',
    );
  });

  test('approve: nothing changes until approved; the validator refuses a bad approval; then it remediates', async () => {
    const spec = await onboarded();
    const host = fleet.host(spec.id);
    host.drift('sriov');
    const h = await startCheck(spec, 'approve');
    const waiting = await untilPhase(h, 'awaiting-approval');
    assert.deepEqual(waiting.driftedSteps, ['sriov']);
    assert.equal((await searchAttributes(h)).status, 'awaiting-approval');
    assert.deepEqual(host.calls, [], 'nothing changed while waiting');

    await assert.rejects(approveDrift(env.client, spec.id, { by: 'x'.repeat(101) }), /approval refused: by: a name of at most 100/);
    const answer = await approveDrift(env.client, spec.id, { by: 'alice' });
    assert.deepEqual(answer, { serverId: spec.id, decision: 'approved', steps: ['sriov'] });
    const r = await h.result();
    assert.equal(r.status, 'remediated');
    assert.equal(r.remediation?.approvedBy, 'alice');
    assert.deepEqual(host.applyCalls(), ['sriov']);
    assert.equal(host.state.sriov, 'applied');
    await assert.rejects(approveDrift(env.client, spec.id), /no drift check is running/, 'a finished check takes no approval');
    await assert.rejects(approveDrift(env.client, `${spec.id}-nope`), /no drift check is running/);
  });

  test('approve: a timeout or a rejection changes nothing and leaves the server reported drifted', async () => {
    const [a, b] = [await onboarded(), await onboarded()];
    fleet.host(a.id).drift('vlan');
    fleet.host(b.id).drift('vlan');
    const [ha, hb] = [await startCheck(a, 'approve', '2s'), await startCheck(b, 'approve')];
    await untilPhase(hb, 'awaiting-approval');
    assert.deepEqual(await approveDrift(env.client, b.id, { approve: false, by: 'bob' }), { serverId: b.id, decision: 'rejected', steps: ['vlan'] });
    const [ra, rb] = [await ha.result(), await hb.result()];
    assert.equal(ra.status, 'drifted');
    assert.match(ra.reason!, /approval timed out after 2s; nothing changed/);
    assert.equal(rb.status, 'drifted');
    assert.match(rb.reason!, /rejected by bob/);
    for (const s of [a, b]) {
      assert.deepEqual(fleet.host(s.id).calls, []);
      assert.equal(fleet.host(s.id).state.vlan, 'drifted');
    }
    assert.equal((await searchAttributes(ha)).status, 'drifted');
  });

  test('health a re-apply cannot fix needs an operator: reported with its hint, never re-applied; other drift still remediated', async () => {
    const spec = await onboarded();
    const host = fleet.host(spec.id);
    host.unhealthy.bond = 'no LACP partner';
    // Health alone: nothing to re-apply, even in remediate mode.
    let r = await (await startCheck(spec, 'remediate')).result();
    assert.equal(r.status, 'needs-operator', JSON.stringify(r));
    assert.deepEqual(r.unhealthySteps, ['bond']);
    assert.deepEqual(r.driftedSteps, []);
    assert.match(
      r.reason ?? '',
      /needs an operator: bond \(bond\.health: expected "healthy", observed "no LACP partner" — look at the fake bond\); nothing re-applied/,
    );
    assert.deepEqual(host.applyCalls(), []);
    // With configuration drift elsewhere, and on the unhealthy step itself: only the healthy drifted step is re-applied.
    host.drift('vlan', 'bond');
    r = await (await startCheck(spec, 'remediate')).result();
    assert.equal(r.status, 'needs-operator', JSON.stringify(r));
    assert.deepEqual(r.driftedSteps, ['bond', 'vlan']);
    assert.deepEqual(r.remediation?.steps, ['vlan']);
    assert.deepEqual(host.applyCalls(), ['vlan']);
    assert.equal((await searchAttributes(await env.client.workflow.getHandle(driftWorkflowId(spec.id)))).status, 'needs-operator');
    // Fixed by a person: clean again once the bond's configuration is re-applied by the next check.
    host.unhealthy = {};
    r = await (await startCheck(spec, 'remediate')).result();
    assert.equal(r.status, 'remediated');
    assert.deepEqual(r.remediation?.steps, ['bond']);
  });

  test('a remediation that fails is compensated back to the drifted state and reported', async () => {
    const spec = await onboarded();
    const host = fleet.host(spec.id);
    host.drift('vlan', 'sriov');
    host.faults = [{ step: 'sriov', phase: 'verify', error: () => new VerificationError('sriov_numvfs stays 0', { step: 'sriov', host: spec.id }) }];
    const h = await startCheck(spec, 'remediate');
    const r = await h.result();
    assert.equal(r.status, 'failed');
    assert.equal(r.remediation?.failedStep, 'sriov');
    assert.match(r.remediation!.error!, /sriov_numvfs stays 0/);
    assert.deepEqual(
      r.remediation?.compensations?.map((c) => [c.step, c.outcome]),
      [
        ['sriov', 'restored'],
        ['vlan', 'restored'],
      ],
    );
    assert.match(r.reason!, /remediation failed at sriov: .*sriov_numvfs stays 0.* — rollback: sriov restored, vlan restored/);
    assert.deepEqual(host.calls, ['apply:vlan', 'apply:sriov', 'undo:sriov', 'undo:vlan']);
    assert.equal(host.state.vlan, 'drifted', 'back to the state the remediation found');
    assert.equal(host.state.sriov, 'drifted');
    assert.deepEqual(await searchAttributes(h).then((a) => [a.status, a.steps]), ['failed', ['vlan', 'sriov']]);
  });

  test('mutual exclusion: a drift check yields to a running onboarding, and onboarding is refused while a check may remediate', async () => {
    // An onboarding running (blocked in its bond step): the drift check skips the server, says why, observes nothing.
    const spec = await onboarded();
    const host = fleet.host(spec.id);
    host.drift('vlan');
    host.faults = [{ step: 'bond', phase: 'observe', block: true, times: 1, error: () => new Error('unused') }];
    const onboarding = await startOnboarding(env.client, spec, { taskQueue });
    await host.blocked;
    const r = await (await startCheck(spec, 'remediate')).result();
    assert.equal(r.status, 'skipped');
    assert.equal(r.skip, 'onboarding-running');
    assert.match(r.reason!, new RegExp(`skipped: onboarding running \\(onboard-${spec.id}`));
    await onboarding.cancel();
    await assert.rejects(onboarding.result());
    assert.deepEqual(host.applyCalls(), []);
    assert.equal(host.state.vlan, 'drifted');

    // A drift check waiting for approval (it may remediate): onboarding is refused with the reason.
    const waiting = await startCheck(spec, 'approve');
    await untilPhase(waiting, 'awaiting-approval');
    await assert.rejects(startOnboarding(env.client, spec, { taskQueue }), (err: unknown) => {
      assert.ok(err instanceof DriftRemediationRunningError);
      assert.match(err.message, new RegExp(`server ${spec.id} has a drift check in approve mode running \\(workflow drift-${spec.id}\\)`));
      assert.match(err.message, /underlay drift approve .* --reject/);
      return true;
    });
    await approveDrift(env.client, spec.id, { approve: false });
    assert.equal((await waiting.result()).status, 'drifted');
    // Once it ended, onboarding may start again.
    await (await startOnboarding(env.client, spec, { taskQueue })).result();
    assert.deepEqual(host.applyCalls(), ['vlan']);
  });

  test('concurrency cap: never more drift checks at once than asked for', async () => {
    const m = await mockedSweep('cap', 12, { concurrency: 3, pageSize: 100, observeMs: 300 });
    assert.equal(m.summary.counts.servers, 12);
    assert.equal(m.maxInFlight, 3, 'the lanes fill up to the cap, and no further');
  });

  // 300 servers, 3 pages: the chain of runs and the bounded history show at that size; the bench (docs/benchmarks.md)
  // runs the sweep over 1,000 and 10,000.
  test('fan-out: 300 servers (observation mocked), continue-as-new per page, bounded history', async () => {
    const n = 300;
    const pageSize = 100;
    const m = await mockedSweep('fleet', n, { concurrency: 40, pageSize, observeMs: 0 });
    const s = m.summary;
    assert.deepEqual(s.counts, {
      servers: n,
      clean: n - n / 50,
      drifted: n / 50,
      needsOperator: 0,
      remediated: 0,
      failed: 0,
      skipped: 0,
      notOnboarded: 0,
      invalid: 0,
      unmanaged: 0,
    });
    assert.equal(s.pages, n / pageSize);
    assert.equal(s.servers.length, n / 50);
    assert.ok(m.maxInFlight <= 40);

    // Follow the chain of runs: one per page, each but the last ending in continue-as-new, each history bounded.
    const lengths: number[] = [];
    let runId: string | undefined = m.handle.firstExecutionRunId;
    while (runId) {
      const events: Array<{ workflowExecutionContinuedAsNewEventAttributes?: { newExecutionRunId?: string | null } | null }> =
        (await env.client.workflow.getHandle(m.handle.workflowId, runId).fetchHistory()).events ?? [];
      lengths.push(events.length);
      runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
    }
    assert.equal(lengths.length, n / pageSize, `one run per page: ${lengths.join(', ')}`);
    assert.ok(Math.max(...lengths) < 1200, `every run stays under 1,200 events (got ${lengths.join(', ')})`);
    const child = (await env.client.workflow.getHandle(driftWorkflowId('fleet0007')).fetchHistory()).events ?? [];
    assert.ok(child.length < 40, `a check's own history is small (${child.length} events)`);
    console.log(`fan-out: ${n} servers in ${(m.elapsedMs / 1000).toFixed(1)} s; events per run ${lengths.join(', ')}; one check ${child.length}`);
  });
});
